# Makefile for alexandrite (PGXS)
#
# Each capability keeps its build pieces in src/<capability>/module.mk:
# objects (OBJS), pg_regress tests (REGRESS), isolation specs (ISOLATION),
# the SQL fragments of the current upgrade step (SQL_1_1) and any extra
# programs and install rules.  This file only ties them together.

EXTENSION  = alexandrite
MODULE_big = alexandrite
PGFILEDESC = "alexandrite - order path of a jewelry manufacturer"

# the default goal, declared before any module.mk can add a rule
all:

OBJS       = src/alexandrite.o
REGRESS    =
ISOLATION  =
SQL_1_1    =

include $(sort $(wildcard src/*/module.mk))

# operations reads every other capability: its tests run last
REGRESS := $(filter-out observe_%,$(REGRESS)) $(filter observe_%,$(REGRESS))

# The 1.0 base script is released and never edited.  The 1.0 -> 1.1 step is
# built from one fragment per capability (sql/1.1/NN_<capability>.sql), so
# that a fresh install (base + chain) and an upgrade run the very same SQL.
SQL_1_1   := $(sort $(wildcard sql/1.1/*.sql))
DATA       = sql/alexandrite--1.0.sql
DATA_built = sql/alexandrite--1.0--1.1.sql

REGRESS_OPTS   = --temp-instance=./tmp_check --temp-config=test/regress.conf
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/isolation/output_iso \
                 --temp-instance=./tmp_check_iso --temp-config=test/regress.conf \
                 --load-extension=alexandrite

PG_CPPFLAGS += -I$(srcdir)/src -DALX_LIBRARY_VERSION=\"1.1.0\"
SHLIB_LINK  += $(ALX_SHLIB_LINK)

EXTRA_CLEAN = sql/alexandrite--1.0--1.1.sql tmp_check_iso test/isolation/output_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/alexandrite--1.0--1.1.sql: $(SQL_1_1) Makefile
	@{ printf '%s\n' '/* sql/alexandrite--1.0--1.1.sql: generated from the fragments in sql/1.1, do not edit */' \
	    '\echo Use "ALTER EXTENSION alexandrite UPDATE TO '"'"'1.1'"'"'" to load this file. \quit'; \
	  for f in $(SQL_1_1); do printf '\n-- ---- %s ----\n' "$$f"; sed '/^\\echo Use /d' "$$f"; done; } > $@

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
