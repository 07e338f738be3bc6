#!/usr/bin/env bash
# Cluster tests (test/t/*.pl, PostgreSQL::Test::Cluster, real RabbitMQ,
# exporter...).  Unit: assertions, counted from each file's TAP stream by
# scripts/tap-run (make tap PROVE=scripts/tap-run).
# Selection: PROVE_TESTS="test/t/a.pl ...".
set -uo pipefail
source "$ALX_TOP/scripts/lib.sh"
source "$ALX_TOP/test/suites/lib.sh"
cd "$ALX_TOP"
alx_unit assertions
[ -n "${PROVE_TESTS:-}" ] && alx_subset
make -s PG_CONFIG="$PG_CONFIG" tap PROVE="$ALX_TOP/scripts/tap-run" \
    PROVE_FLAGS="--timer --results $ALX_RESULTS --tap-dir $ALX_SUITE_WORK/tap" \
    PROVE_TESTS="${PROVE_TESTS:-}" 2>&1
