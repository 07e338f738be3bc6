#!/usr/bin/env bash
# Isolation specs (make installcheck, test/isolation).  Unit: permutations:
# each passing spec counts the permutations whose output was compared; a
# failing spec counts one failure.  Selection: ISOLATION="a b".
set -uo pipefail
source "$ALX_TOP/scripts/lib.sh"
source "$ALX_TOP/test/suites/lib.sh"
cd "$ALX_TOP"
alx_unit permutations
sel=()
if [ -n "${ISOLATION:-}" ]; then sel=(ISOLATION="$ISOLATION"); alx_subset; fi
rm -rf test/isolation/output_iso
out=$ALX_SUITE_WORK/make.out
make -s PG_CONFIG="$PG_CONFIG" installcheck REGRESS= "${sel[@]}" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
diffs=test/isolation/output_iso/regression.diffs
[ $rc = 0 ] || { [ -f $diffs ] && head -200 $diffs; }
n=0
while read -r name result; do
    n=$((n + 1))
    res=test/isolation/output_iso/results/$name.out
    if [ "$result" = ok ]; then
        p=$(grep -c '^starting permutation' "$res" 2>/dev/null)
        if [ "${p:-0}" -gt 0 ]; then alx_result pass "$p" "$name"
        else alx_result fail 1 "$name" "no permutation in $res"; rc=1; fi
    else
        alx_result fail 1 "$name" "output differs ($diffs)"
    fi
done < <(sed -nE 's/^(test|ok [0-9]+|not ok [0-9]+|     ) *[-+]? *([A-Za-z0-9_]+) +\.\.\. +(ok|FAILED|failed).*/\2 \3/p' "$out")
[ $n -gt 0 ] || { echo "the isolation tester ran no spec"; exit 1; }
exit $rc
