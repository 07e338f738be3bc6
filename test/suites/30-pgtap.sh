#!/usr/bin/env bash
# pgTAP catalog contracts (test/pgtap/*.sql) on a throwaway cluster
# (scripts/run-pgtap).  Unit: assertions, counted from the TAP stream.
# Selection: PGTAP_TESTS="test/pgtap/a.sql ...".
set -uo pipefail
source "$ALX_TOP/scripts/lib.sh"
source "$ALX_TOP/test/suites/lib.sh"
cd "$ALX_TOP"
alx_unit assertions
files=()
if [ -n "${PGTAP_TESTS:-}" ]; then read -ra files <<< "$PGTAP_TESTS"; alx_subset; fi
ALX_WORK=$ALX_SUITE_WORK scripts/run-pgtap --results "$ALX_RESULTS" --tap-dir "$ALX_SUITE_WORK/tap" "${files[@]}"
