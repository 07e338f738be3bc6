#!/usr/bin/env bash
# The alert rules of docs/alerts.yml: promtool checks their syntax and runs
# the unit tests in test/prometheus/alerts_test.yml (every alert firing with
# its labels and annotations, not before its `for:`, not on a standby).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
command -v promtool >/dev/null || { echo "promtool is missing (Debian package prometheus)" >&2; exit 1; }
promtool check rules "$top/docs/alerts.yml"
promtool test rules "$top/test/prometheus/alerts_test.yml"
# every alert of docs/alerts.yml has a unit test
missing=$(comm -23 <(grep -oP '^\s*- alert: \K\S+' "$top/docs/alerts.yml" | sort -u) \
                   <(grep -oP '^\s*alertname: \K\S+' "$top/test/prometheus/alerts_test.yml" | sort -u))
[ -z "$missing" ] || { echo "alerts without a unit test: $missing" >&2; exit 1; }
echo "every alert of docs/alerts.yml is unit-tested"
