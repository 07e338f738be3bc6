# src/mesh/module.mk: mesh analysis (backend side, helper program, tests)
#
# The backend object (mesh_sql.o) links nothing but libc: assimp, libseccomp
# (and Embree) are linked only into the helper program alexandrite-meshd,
# which is installed next to the postgres binary ($(bindir)) and spawned per
# analysis.  meshd-sandbox-test is the same program plus a probe that makes
# forbidden system calls after the lockdown; it is built for the tests and
# never installed.

OBJS    += src/mesh/mesh_sql.o src/mesh/jobs_submit.o src/mesh/jobs_run.o src/mesh/jobs_worker.o
REGRESS += mesh_formats mesh_defects mesh_ingest mesh_errors mesh_wall mesh_jobs

MESHD          = src/mesh/alexandrite-meshd
MESHD_TEST     = src/mesh/meshd-sandbox-test
MESHD_SRCS     = src/mesh/meshd.c src/mesh/meshio.c src/mesh/geometry.c \
                 src/mesh/geom_edges.c src/mesh/geom_shells.c \
                 src/mesh/meshout.c src/mesh/prescan.c src/mesh/sandbox.c \
                 src/mesh/memguard.c src/mesh/stlbin.c src/mesh/geomorder.c \
                 src/mesh/pool.c src/mesh/wall.c src/mesh/faultguard.c
MESHD_HDRS     = src/mesh/geometry.h src/mesh/geom_int.h src/mesh/meshio.h \
                 src/mesh/meshrecord.h src/mesh/meshout.h src/mesh/prescan.h \
                 src/mesh/sandbox.h \
                 src/mesh/stlbin.h src/mesh/pool.h src/mesh/wall.h
MESHD_LIBS     = $(shell pkg-config --libs assimp zlib libseccomp) -lembree3 -lpthread -lm
MESHD_CPPFLAGS = $(shell pkg-config --cflags assimp zlib libseccomp)

all: $(MESHD) $(MESHD_TEST)

$(MESHD): $(MESHD_SRCS) $(MESHD_HDRS)
	$(CC) $(CFLAGS) $(MESHD_CPPFLAGS) -o $@ $(MESHD_SRCS) $(LDFLAGS) $(MESHD_LIBS)

$(MESHD_TEST): $(MESHD_SRCS) $(MESHD_HDRS) src/mesh/sandbox_probe.c
	$(CC) $(CFLAGS) $(MESHD_CPPFLAGS) -DALX_MESHD_SANDBOX_TEST -o $@ \
		$(MESHD_SRCS) src/mesh/sandbox_probe.c $(LDFLAGS) $(MESHD_LIBS)

src/mesh/mesh_sql.o: src/mesh/meshrecord.h src/mesh/geometry.h

install: install-meshd
.PHONY: install-meshd uninstall-meshd
install-meshd: $(MESHD)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(MESHD) '$(DESTDIR)$(bindir)/alexandrite-meshd'

uninstall: uninstall-meshd
uninstall-meshd:
	rm -f '$(DESTDIR)$(bindir)/alexandrite-meshd'

EXTRA_CLEAN += $(MESHD) $(MESHD_TEST) test/fuzz/mesh_fuzz test/gen/out
