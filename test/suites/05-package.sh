#!/usr/bin/env bash
# alx-suite: root-before-build
# The release as users install it (scripts/test-package): the Debian package
# postgresql-15-alexandrite built with pg_buildext, installed with dpkg, the
# pg_regress and isolation files run against the installed files only, the
# package removed.  Runs as root before the build, so that no developer
# install masks the package's files.  Unit: test files (the same files are
# counted by statement and permutation in the regress and isolation suites;
# here each passing file proves the package, not the tree, passes it).
set -uo pipefail
source "$ALX_TOP/scripts/lib.sh"
source "$ALX_TOP/test/suites/lib.sh"
cd "$ALX_TOP"
alx_unit files
if [ "$(id -u)" != 0 ]; then
    alx_result skip 0 package "building and installing a .deb needs root (scripts/test as root, as CI runs it)"
    exit 0
fi
out=$ALX_SUITE_WORK/package.out
scripts/test-package 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
n=0
while read -r name result; do
    n=$((n + 1))
    if [ "$result" = ok ]; then alx_result pass 1 "$name"; else alx_result fail 1 "$name" "output differs"; fi
done < <(sed -nE 's/^(test|ok [0-9]+|not ok [0-9]+|     ) *[-+]? *([A-Za-z0-9_]+) +\.\.\. +(ok|FAILED|failed).*/\2 \3/p' "$out")
[ $n -gt 0 ] || { echo "the package ran no test"; exit 1; }
exit $rc
