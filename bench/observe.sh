#!/usr/bin/env bash
# Cost of a scrape: alexandrite.metrics() (dashboards, partial indexes) side by
# side with the peer a hand-written exporter query would be (counting the
# orders table: by status and channel, SLA states, operator load), in the
# same run, on a throwaway cluster with N orders (default 1,000,000).
#   PG_CONFIG=... bench/observe.sh [N] [RUNS]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
n=${1:-1000000}
runs=${2:-20}
work=$(mktemp -d /tmp/alexandrite-bench-observe.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$work"
port=$(alx_free_port)
trap 'alx_cluster_stop "$work"; rm -rf "$work"' EXIT
alx_cluster_start "$work" "$port" bench
psql() { alx_as_pg "$(alx_bindir)/psql" -X -q -h "$work" -p "$port" -U postgres -d bench "$@"; }

psql -c 'CREATE EXTENSION alexandrite'
alx_log "loading $n orders"
start=$(date +%s)
psql <<SQL
INSERT INTO alexandrite.operators (id, name, capacity) SELECT 'op' || i, 'Operator ' || i, 100 FROM generate_series(1, 50) i;
-- 88 % shipped, 2 % cancelled, 10 % open across the open statuses; created
-- over the last 30 days; the assigned ones spread over 50 operators
DO \$\$
DECLARE b int := 250000;
BEGIN
  FOR s IN 0 .. ($n - 1) / b LOOP
    INSERT INTO alexandrite.orders (external_ref, channel, customer_id, status, operator_id,
                                    created_at, sla_due_at, updated_at, status_changed_at)
    SELECT 'B' || i, (ARRAY['shop', 'b2b_api', 'crm'])[1 + i % 3], 'c' || (i % 50000),
           (CASE WHEN i % 100 < 88 THEN 'shipped' WHEN i % 100 < 90 THEN 'cancelled'
                 WHEN i % 100 < 93 THEN 'new' WHEN i % 100 < 95 THEN 'priced'
                 WHEN i % 100 < 97 THEN 'assigned' WHEN i % 100 < 99 THEN 'in_production'
                 ELSE 'quality_check' END)::alexandrite.order_status,
           CASE WHEN i % 100 BETWEEN 95 AND 99 THEN 'op' || (1 + i % 50) END,
           now() - (i % 720) * interval '1 hour', now() - (i % 720) * interval '1 hour' + interval '14 days',
           now(), now() - (i % 720) * interval '1 hour'
      FROM generate_series(s * b + 1, least((s + 1) * b, $n)) i;
    COMMIT;
  END LOOP;
END \$\$;
SELECT alexandrite.refresh_dashboards();
VACUUM ANALYZE;
SQL
alx_log "loaded in $(( $(date +%s) - start )) s"

# timings in ms of RUNS executions of a statement: median and max
timeit() {
    local label=$1 sql=$2
    psql -At <<SQL
CREATE TEMP TABLE IF NOT EXISTS t (label text, ms float8);
DO \$\$
DECLARE t0 timestamptz; x text;
BEGIN
  FOR i IN 1 .. $runs LOOP
    t0 := clock_timestamp();
    EXECUTE \$q\$ $sql \$q\$ INTO x;
    INSERT INTO t VALUES ('$label', extract(epoch FROM clock_timestamp() - t0) * 1000);
  END LOOP;
END \$\$;
SELECT format('| %s | %s | %s | %s |', '$label', $runs,
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
              round(max(ms)::numeric, 2)) FROM t WHERE label = '$label';
SQL
}

echo
echo "orders: $n, open: $(psql -At -c "SELECT count(*) FROM alexandrite.orders WHERE status < 'shipped'"), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores (shared)"
echo
echo '| query | runs | median ms | max ms |'
echo '|---|---|---|---|'
timeit 'alexandrite.metrics() (all collectors)' 'SELECT length(alexandrite.metrics())::text'
for c in orders sla assignment outbox dashboards meshes quotes; do
    timeit "collector $c" "SELECT count(*)::text FROM alexandrite.metric_samples(ARRAY['$c'])"
done
timeit 'peer: count orders by status, channel' \
    'SELECT count(*)::text FROM (SELECT status, channel, count(*) FROM alexandrite.orders GROUP BY 1, 2) x'
timeit 'peer: SLA states per channel (base table)' \
    "SELECT count(*)::text FROM (SELECT channel, count(*) FILTER (WHERE sla_due_at < now()), count(*) FILTER (WHERE sla_due_at >= now() AND sla_due_at < now() + interval '24 hours') FROM alexandrite.orders WHERE status < 'shipped' GROUP BY 1) x"
timeit 'peer: operator load (base table)' \
    "SELECT count(*)::text FROM (SELECT operator_id, count(*) FROM alexandrite.orders WHERE operator_id IS NOT NULL AND status < 'shipped' GROUP BY 1) x"
