# Makefile for alexandrite (PGXS)
#
# Each capability keeps its build pieces in src/<capability>/module.mk:
# objects (OBJS), pg_regress tests (REGRESS), isolation specs (ISOLATION) and
# any extra programs and install rules.  This file only ties them together.
# docs/development.md explains the layout.

EXTENSION  = alexandrite
MODULE_big = alexandrite
PGFILEDESC = "alexandrite - order path of a jewelry manufacturer"
EXTVERSION = 1.2

# the default goal, declared before any module.mk can add a rule
all:

OBJS       = src/alexandrite.o src/privilege.o src/worker.o src/invalidate.o src/relations.o
REGRESS    =
ISOLATION  =

include $(sort $(wildcard src/*/module.mk))

# operations reads every other capability: its tests run last
REGRESS := $(filter-out observe_%,$(REGRESS)) $(filter observe_%,$(REGRESS))

# SQL scripts (docs/development.md, "SQL versions"):
# - sql/alexandrite--X--Y.sql and sql/alexandrite--1.0.sql are released and
#   never edited (test/sql/core_upgrade.sql pins their checksums); the
#   step to the current version is written by hand;
# - the install script of the current version is sql/schema/*.sql, one file
#   per capability, concatenated in this order.
SCHEMA     = extension mesh core pricing sla outbox dashboard observe privileges
SCHEMA_SRC = $(foreach s,$(SCHEMA),sql/schema/$(s).sql)
DATA       = $(filter-out sql/$(EXTENSION)--$(EXTVERSION).sql,$(wildcard sql/$(EXTENSION)--*.sql))
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql

# pg_regress inputs and outputs live in test/sql and test/expected
REGRESS_OPTS   = --inputdir=test --temp-instance=./tmp_check --temp-config=test/regress.conf \
                 --temp-config=test/nofold.conf \
                 --create-role=alexandrite_worker
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/isolation/output_iso \
                 --temp-instance=./tmp_check_iso --temp-config=test/regress.conf \
                 --temp-config=test/nofold.conf \
                 --create-role=alexandrite_worker --load-extension=alexandrite

PG_CPPFLAGS += -I$(srcdir)/src -DALX_LIBRARY_VERSION=\"$(EXTVERSION).0\"
SHLIB_LINK  += $(ALX_SHLIB_LINK)

EXTRA_CLEAN += tmp_check_iso test/isolation/output_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# header dependencies (PGXS tracks none unless PostgreSQL was configured
# with --enable-depend): a changed struct in a header rebuilds its users
%.o: override CPPFLAGS += -MMD -MP
-include $(OBJS:.o=.d)
EXTRA_CLEAN += $(OBJS:.o=.d)

sql/$(EXTENSION)--$(EXTVERSION).sql: $(SCHEMA_SRC) Makefile
	@{ printf '%s\n' '/* $@: the current schema, built by make from sql/schema (see Makefile) */' \
	    '\echo Use "CREATE EXTENSION alexandrite" to load this file. \quit'; \
	  for f in $(SCHEMA_SRC); do printf '\n'; cat "$$f"; done; } > $@

# every test suite, on throwaway clusters; see scripts/test
PROVE ?= prove
.PHONY: pgtap tap
pgtap:
	scripts/run-pgtap
tap:
	rm -rf '$(CURDIR)'/tmp_check && mkdir -p '$(CURDIR)'/tmp_check
	TESTDIR='$(CURDIR)' PATH="$(bindir):$$PATH" PG_CONFIG=$(PG_CONFIG) \
	PG_REGRESS='$(dir $(PGXS))../../src/test/regress/pg_regress' \
	$(PROVE) -I $(dir $(PGXS))../../src/test/perl -I test/perl $(PROVE_FLAGS) $(if $(PROVE_TESTS),$(PROVE_TESTS),test/t/*.pl)
