# src/mesh/module.mk: mesh analysis (backend side, helper program, tests)
#
# The backend object (mesh_sql.o) links nothing but libc: assimp is linked
# only into the helper program alexandrite-meshd, which is installed next to
# the postgres binary ($(bindir)) and spawned per analysis.

OBJS    += src/mesh/mesh_sql.o
REGRESS += mesh_formats mesh_defects mesh_ingest mesh_errors

MESHD          = src/mesh/alexandrite-meshd
MESHD_SRCS     = src/mesh/meshd.c src/mesh/meshio.c src/mesh/geometry.c
MESHD_HDRS     = src/mesh/geometry.h src/mesh/meshio.h src/mesh/meshrecord.h
MESHD_LIBS     = $(shell pkg-config --libs assimp zlib) -lm
MESHD_CPPFLAGS = $(shell pkg-config --cflags assimp zlib)

all: $(MESHD)

$(MESHD): $(MESHD_SRCS) $(MESHD_HDRS)
	$(CC) $(CFLAGS) $(MESHD_CPPFLAGS) -o $@ $(MESHD_SRCS) $(LDFLAGS) $(MESHD_LIBS)

src/mesh/mesh_sql.o: src/mesh/meshrecord.h src/mesh/geometry.h

install: install-meshd
.PHONY: install-meshd uninstall-meshd
install-meshd: $(MESHD)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(MESHD) '$(DESTDIR)$(bindir)/alexandrite-meshd'

uninstall: uninstall-meshd
uninstall-meshd:
	rm -f '$(DESTDIR)$(bindir)/alexandrite-meshd'

EXTRA_CLEAN += $(MESHD) test/fuzz/mesh_fuzz test/gen/out
