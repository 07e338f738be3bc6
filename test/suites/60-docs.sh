#!/usr/bin/env bash
# alx-suite: root-before-build
# The documents as a DBA follows them: docs/operations.md's recipe (Debian's
# pg_createcluster, postgresql.conf, createdb, CREATE EXTENSION, the roles
# and grants, pg_cron jobs, RabbitMQ, the exporter, backup and restore,
# upgrade) and the README's Getting started, every block run as written by
# test/docs/recipe.pl as the users and roles the text names, on a cluster
# 15/mes of the system PostgreSQL (the recipe's `make install` installs
# into it; the cluster is dropped at the end).  Runs as root before the
# build, like the package suite.  Unit: assertions, from the TAP stream.
set -uo pipefail
source "$ALX_TOP/scripts/lib.sh"
source "$ALX_TOP/test/suites/lib.sh"
cd "$ALX_TOP"
alx_unit assertions
if [ "$(id -u)" != 0 ]; then
    alx_result skip 0 docs "pg_createcluster and the recipe's make install need root (scripts/test as root, as CI runs it)"
    exit 0
fi
scripts/tap-run --timer --results "$ALX_RESULTS" --tap-dir "$ALX_SUITE_WORK/tap" test/docs/recipe.pl
