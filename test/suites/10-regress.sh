#!/usr/bin/env bash
# pg_regress (make installcheck) on a temporary instance.  Unit: statements.
# pg_regress compares a file's whole output, so a test file that passes
# vouches for the output of every statement it ran: each passing file counts
# the statements psql sent for it (log_statement = all on the temporary
# instance, application_name "pg_regress/<test>"); a failing file counts one
# failure.  Selection: REGRESS="a b" (the floor then does not apply).
set -uo pipefail
source "$ALX_TOP/scripts/lib.sh"
source "$ALX_TOP/test/suites/lib.sh"
cd "$ALX_TOP"
alx_unit statements
sel=()
if [ -n "${REGRESS:-}" ]; then sel=(REGRESS="$REGRESS"); alx_subset; fi
conf=$ALX_SUITE_WORK/count.conf
echo "log_statement = 'all'" > "$conf"
rm -f log/postmaster.log
out=$ALX_SUITE_WORK/make.out
make -s PG_CONFIG="$PG_CONFIG" installcheck ISOLATION= "${sel[@]}" \
    EXTRA_REGRESS_OPTS="--temp-config=$conf" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
[ $rc = 0 ] || { [ -f regression.diffs ] && head -200 regression.diffs; }
log=log/postmaster.log
[ -f "$log" ] || { echo "no server log $log: cannot count statements"; exit 1; }
n=0
while read -r name result; do
    n=$((n + 1))
    if [ "$result" = ok ]; then
        s=$(grep -cE "\] pg_regress/$name LOG:  statement: " "$log")
        if [ "$s" -gt 0 ]; then alx_result pass "$s" "$name"
        else alx_result fail 1 "$name" "no statement of this test reached the server"; rc=1; fi
    else
        alx_result fail 1 "$name" "output differs (regression.diffs)"
    fi
done < <(sed -nE 's/^(test|ok [0-9]+|not ok [0-9]+|     ) *[-+]? *([A-Za-z0-9_]+) +\.\.\. +(ok|FAILED|failed).*/\2 \3/p' "$out")
[ $n -gt 0 ] || { echo "pg_regress ran no test"; exit 1; }
exit $rc
