#!/usr/bin/env bash
# The alert rules of docs/alerts.yml: promtool checks their syntax and runs
# the unit tests in test/prometheus/alerts_test.yml (every alert firing with
# its labels and annotations, not before its `for:`, not on a standby).
# Prints TAP (test/suites/50-extra.sh counts its assertions).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
n=0 failed=0
step() {    # step DESCRIPTION COMMAND...: one assertion, the output as diagnostics
    local what=$1 out rc; shift
    out=$("$@" 2>&1); rc=$?
    n=$((n + 1))
    if [ $rc = 0 ]; then echo "ok $n - $what"; else echo "not ok $n - $what"; failed=$((failed + 1)); fi
    [ -n "$out" ] && echo "$out" | sed 's/^/# /'
    return 0
}
every_alert_tested() {
    local missing
    missing=$(comm -23 <(grep -oP '^\s*- alert: \K\S+' "$top/docs/alerts.yml" | sort -u) \
                       <(grep -oP '^\s*alertname: \K\S+' "$top/test/prometheus/alerts_test.yml" | sort -u))
    [ -z "$missing" ] || { echo "alerts without a unit test: $missing"; return 1; }
}
step "promtool is installed (Debian package prometheus)" command -v promtool
step "promtool check rules docs/alerts.yml" promtool check rules "$top/docs/alerts.yml"
step "promtool test rules test/prometheus/alerts_test.yml" promtool test rules "$top/test/prometheus/alerts_test.yml"
step "every alert of docs/alerts.yml is unit-tested" every_alert_tested
echo "1..$n"
exit $((failed > 0))
