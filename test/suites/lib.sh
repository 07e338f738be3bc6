# shellcheck shell=bash
# Helpers of the suite scripts (test/suites/NN-name.sh), sourced after
# scripts/lib.sh.  scripts/test runs each suite script with:
#   ALX_TOP        the tree under test (the current directory)
#   ALX_RESULTS    the file the suite writes its counts to (alx_result)
#   ALX_SUITE_WORK an empty directory for the suite's own files
#   PG_CONFIG, CI  as given to scripts/test
# and tees the suite's output into the suite's log.  See test/suites/README.md.

# alx_result KIND N ITEM [WHY]: N assertions of ITEM (a file, a spec)
#   KIND pass | fail | skip | todo
alx_result() {
    local kind=$1 n=$2 item=$3; shift 3
    case $kind in pass|fail|skip|todo) ;; *) alx_die "alx_result: bad kind $kind" ;; esac
    echo "$kind $n $item${*:+ $*}" >> "${ALX_RESULTS:?not run by scripts/test}"
}

# alx_unit WORD: what one assertion of this suite is (statements, permutations)
alx_unit() { echo "unit $1" >> "${ALX_RESULTS:?not run by scripts/test}"; }

# alx_subset: this run is a selection (PROVE_TESTS, REGRESS, ...): the
# suite's floor does not apply
alx_subset() { echo "subset" >> "${ALX_RESULTS:?not run by scripts/test}"; }
