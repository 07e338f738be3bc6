#!/usr/bin/env bash
# Scripts that print TAP (test/extra/*.sh: the mesh fuzz run and the like).
# Unit: assertions, counted from the TAP stream.
# Selection: EXTRA_TESTS="test/extra/a.sh ...".
set -uo pipefail
source "$ALX_TOP/scripts/lib.sh"
source "$ALX_TOP/test/suites/lib.sh"
cd "$ALX_TOP"
alx_unit assertions
if [ -n "${EXTRA_TESTS:-}" ]; then read -ra files <<< "$EXTRA_TESTS"; alx_subset
else files=(test/extra/*.sh); fi
[ -e "${files[0]}" ] || { echo "no script in test/extra"; exit 1; }
scripts/tap-run --timer --results "$ALX_RESULTS" --tap-dir "$ALX_SUITE_WORK/tap" "${files[@]}"
