#!/usr/bin/env bash
# Dashboard benchmark: the MES first page from alexandrite's dashboards vs the
# same figures from GROUP BY queries over orders vs REFRESH MATERIALIZED VIEW,
# the write overhead of capture (pgbench, with vs without the capture
# triggers), the fold of 10k pending changes, and first-page latency while
# 500 writes/s run.  Everything in one run, on a throwaway cluster.
#
# Usage: PG_CONFIG=... bench/dashboard.sh [ROWS...]      (default: 1000000)
#   e.g. bench/dashboard.sh 1000000 10000000
# Env: DURATION (seconds per pgbench write run, default 10), PORT, KEEP=1
# Needs `make install` into the PostgreSQL of PG_CONFIG first.  Prints a
# Markdown report on stdout (and into bench/out/dashboard-<date>.md).
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-pg_config}
BIN=$($PG_CONFIG --bindir)
DURATION=${DURATION:-10}
PORT=${PORT:-54399}
SCALES=("${@:-1000000}")
TOP=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/alx-bench-dashboard.XXXXXX)
chmod 755 "$WORK"
OUT="$TOP/bench/out"
mkdir -p "$OUT"
REPORT="$OUT/dashboard-$(date -u +%Y%m%dT%H%M%SZ).md"

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PSQL() { as_pg "$BIN/psql" -X -q -h "$WORK" -p "$PORT" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
VAL() { PSQL -At -c "$1"; }
log() { echo "== $*" >&2; }
say() { echo "$*" | tee -a "$REPORT"; }
fold_loop_pid=
cleanup() {
    [ -n "$fold_loop_pid" ] && kill "$fold_loop_pid" 2>/dev/null || true
    as_pg "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# a throwaway cluster; fsync off isolates CPU and lock effects from the disk
chown postgres "$WORK" 2>/dev/null || true
as_pg "$BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
cat >> "$WORK/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
shared_preload_libraries = 'alexandrite'
alexandrite.database = 'bench'
alexandrite.fold_interval = 0
shared_buffers = 1GB
work_mem = 64MB
maintenance_work_mem = 512MB
max_wal_size = 8GB
checkpoint_timeout = 30min
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
max_connections = 50
autovacuum_naptime = 10s
EOF
as_pg "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null
as_pg "$BIN/createdb" -h "$WORK" -p "$PORT" -U postgres bench
PSQL -c "CREATE EXTENSION alexandrite" -c "CREATE SEQUENCE public.bench_ref"

# pgbench scripts
cat > "$WORK/page.sql" <<'EOF'
SELECT * FROM alexandrite.dashboard_status_counts;
SELECT * FROM alexandrite.dashboard_operator_load;
SELECT * FROM alexandrite.dashboard_sla;
EOF
cat > "$WORK/groupby.sql" <<'EOF'
SELECT status, channel, count(*) FROM alexandrite.orders GROUP BY status, channel;
SELECT operator_id, count(*), count(*) FILTER (WHERE sla_due_at < now()) FROM alexandrite.orders
 WHERE operator_id IS NOT NULL AND alexandrite.is_open(status) GROUP BY operator_id;
SELECT channel, count(*), count(*) FILTER (WHERE sla_due_at >= now() AND sla_due_at <= now() + interval '24 hours'),
       count(*) FILTER (WHERE sla_due_at < now())
  FROM alexandrite.orders WHERE alexandrite.is_open(status) GROUP BY channel;
EOF
cat > "$WORK/matview_read.sql" <<'EOF'
SELECT * FROM public.mv_status_counts;
SELECT * FROM public.mv_operator_load;
SELECT * FROM public.mv_sla;
EOF
cat > "$WORK/ins.sql" <<'EOF'
\set ch random(1, 3)
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at)
VALUES ('pgb-' || nextval('public.bench_ref'), (ARRAY['shop', 'b2b_api', 'crm'])[:ch], 'c', now() + interval '10 days');
EOF
# the order API (PL/pgSQL, order event, idempotency check): what the MES calls
cat > "$WORK/api.sql" <<'EOF'
\set ch random(1, 3)
SELECT alexandrite.create_order('api-' || nextval('public.bench_ref'), (ARRAY['shop', 'b2b_api', 'crm'])[:ch], 'c', NULL, NULL);
EOF
# Since 1.2 one C row trigger of orders (orders_maintain_*) feeds both the
# dashboard capture and the SLA engine's operator_load counters; off, it
# takes both away (the counters are recounted after every "off").
capture() {   # capture on|off
    local verb=ENABLE; [ "$1" = off ] && verb=DISABLE
    for t in orders_maintain_ins orders_maintain_upd orders_maintain_del alx_dashboard_flush alx_dashboard_truncate; do
        PSQL -c "ALTER TABLE alexandrite.orders $verb TRIGGER $t"
    done
}
# the extension's fold worker, every second (alexandrite.fold_interval)
start_fold_loop() { PSQL -c "ALTER SYSTEM SET alexandrite.fold_interval = '1s'" -c "SELECT pg_reload_conf()" >/dev/null; }
stop_fold_loop() { PSQL -c "ALTER SYSTEM SET alexandrite.fold_interval = 0" -c "SELECT pg_reload_conf()" >/dev/null; sleep 1; }
pgb() { as_pg "$BIN/pgbench" -h "$WORK" -p "$PORT" -U postgres -n -M prepared "$@" bench; }
tps() { sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1; }
lat() { sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' | head -1; }
# percentiles (ms) of a pgbench --log file set: p50 p95 p99 max
pct() { cat "$@" | awk '{print $3/1000}' | sort -n | awk '{a[NR]=$1} END {printf "%.2f %.2f %.2f %.2f", a[int(NR*0.5)], a[int(NR*0.95)], a[int(NR*0.99)], a[NR]}'; }
timed() { PSQL -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1; }

: > "$REPORT"
say "# Dashboard benchmark"
say ""
say "- date: $(date -u +%Y-%m-%dT%H:%MZ); host: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB RAM, shared with other work while running"
say "- PostgreSQL $($BIN/postgres --version | awk '{print $3}'), fsync/synchronous_commit off (CPU and locking, not disk), shared_buffers 1GB, jit off"
say "- pgbench -M prepared; write runs ${DURATION}s each; folds by the extension's background worker every second (alexandrite.fold_interval) where stated"

loaded=0
for ROWS in "${SCALES[@]}"; do
    log "loading $ROWS orders"
    capture off
    PSQL <<EOF
INSERT INTO alexandrite.operators (id, name, capacity)
SELECT 'op' || g, 'Operator ' || g, 1000 FROM generate_series(1, 200) g ON CONFLICT DO NOTHING;
SELECT setseed(0.5);
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, status, operator_id, price,
                                created_at, sla_due_at, updated_at, status_changed_at)
SELECT 'B-' || g, (ARRAY['shop', 'b2b_api', 'crm'])[1 + g % 3], 'cust-' || (g % 50000), st,
       CASE WHEN st >= 'assigned' THEN 'op' || (1 + g % 200) END, (g % 1000) * 1.5,
       cr, CASE WHEN st < 'shipped' THEN now() + ((g * 31) % (51 * 24) - 30 * 24) * interval '1 hour'
                                                + (g % 3600) * interval '1 second'
                ELSE cr + interval '14 days' END, cr, cr
  FROM (SELECT g, now() - ((g * 17) % (365 * 24 * 60)) * interval '1 minute' AS cr,
               CASE WHEN (g * 7919) % 100 < 78 THEN 'shipped'
                    WHEN (g * 7919) % 100 < 83 THEN 'cancelled'
                    WHEN (g * 7919) % 100 < 88 THEN 'new'
                    WHEN (g * 7919) % 100 < 91 THEN 'priced'
                    WHEN (g * 7919) % 100 < 95 THEN 'assigned'
                    WHEN (g * 7919) % 100 < 98 THEN 'in_production'
                    ELSE 'quality_check' END::alexandrite.order_status AS st
          FROM generate_series($((loaded + 1))::bigint, $ROWS::bigint) g) x;
EOF
    loaded=$ROWS
    capture on
    PSQL -c "SELECT alexandrite.sla_recount_load()" >/dev/null
    t_rebuild=$( { for d in status_counts operator_load sla_due; do timed "SELECT alexandrite.rebuild_dashboard('$d')"; done; } | awk '{s+=$1} END {printf "%.0f", s}')
    PSQL -c "VACUUM (ANALYZE) alexandrite.orders" -c "SELECT alexandrite.refresh_dashboards()" >/dev/null
    open=$(VAL "SELECT count(*) FROM alexandrite.orders WHERE alexandrite.is_open(status)")
    groups=$(VAL "SELECT (SELECT count(*) FROM alexandrite.dashboard_status_counts_summary) + (SELECT count(*) FROM alexandrite.dashboard_operator_load_summary) + (SELECT count(*) FROM alexandrite.dashboard_sla_due_summary)")
    say ""
    say "## $ROWS orders ($open open; $groups summary groups over the three dashboards)"
    say ""
    say "Rebuild of the three dashboards from the base table: ${t_rebuild} ms."

    # --- reads: dashboards vs GROUP BY vs materialized views -------------
    log "reads"
    PSQL <<'EOF'
DROP MATERIALIZED VIEW IF EXISTS public.mv_status_counts, public.mv_operator_load, public.mv_sla;
CREATE MATERIALIZED VIEW public.mv_status_counts AS
SELECT status, channel, count(*) AS orders FROM alexandrite.orders GROUP BY status, channel;
CREATE MATERIALIZED VIEW public.mv_operator_load AS
SELECT operator_id, count(*) AS open_orders, count(*) FILTER (WHERE sla_due_at < now()) AS overdue_orders
  FROM alexandrite.orders WHERE operator_id IS NOT NULL AND alexandrite.is_open(status) GROUP BY operator_id;
CREATE MATERIALIZED VIEW public.mv_sla AS
SELECT channel, count(*) AS open_orders,
       count(*) FILTER (WHERE sla_due_at >= now() AND sla_due_at <= now() + interval '24 hours') AS at_risk_orders,
       count(*) FILTER (WHERE sla_due_at < now()) AS breached_orders
  FROM alexandrite.orders WHERE alexandrite.is_open(status) GROUP BY channel;
EOF
    pgb -f "$WORK/page.sql" -T 3 -c 1 >/dev/null    # warm
    page=$(pgb -f "$WORK/page.sql" -T 10 -c 1 --log --log-prefix="$WORK/pagelog" 2>&1)
    page_lat=$(echo "$page" | lat); read -r p50 p95 p99 pmax <<< "$(pct "$WORK"/pagelog.*)"; rm -f "$WORK"/pagelog.*
    gb=$(pgb -f "$WORK/groupby.sql" -t 3 -c 1 2>&1); gb_lat=$(echo "$gb" | lat)
    mvr=$(pgb -f "$WORK/matview_read.sql" -T 5 -c 1 2>&1); mvr_lat=$(echo "$mvr" | lat)
    refresh_ms=$( { for i in 1 2 3; do
        timed "REFRESH MATERIALIZED VIEW public.mv_status_counts; REFRESH MATERIALIZED VIEW public.mv_operator_load; REFRESH MATERIALIZED VIEW public.mv_sla"; done; } | sort -n | sed -n 2p)
    say ""
    say "### First page (three views), one client"
    say ""
    say "| Method | Latency per page | Freshness |"
    say "|---|---|---|"
    say "| alexandrite dashboards (summary + pending deltas) | avg ${page_lat} ms (p50 $p50, p95 $p95, p99 $p99, max $pmax ms) | exact at the reader's snapshot |"
    say "| GROUP BY over orders (same figures) | avg ${gb_lat} ms | exact |"
    say "| REFRESH MATERIALIZED VIEW of the three (median of 3) | ${refresh_ms} ms per refresh | stale between refreshes |"
    say "| reading the three materialized views | avg ${mvr_lat} ms | as of the last refresh |"
    say ""
    say "Speed-up of the first page over the GROUP BY queries: **$(awk -v a="$gb_lat" -v b="$page_lat" 'BEGIN {printf "%.0f", a / b}')x**."

    # --- write overhead --------------------------------------------------
    log "write overhead"
    maxid=$(VAL "SELECT max(id) FROM alexandrite.orders")
    cat > "$WORK/upd.sql" <<EOF
\set id random(1, $maxid)
\set st random(1, 7)
UPDATE alexandrite.orders SET status = (enum_range(NULL::alexandrite.order_status))[:st], updated_at = now() WHERE id = :id;
EOF
    say ""
    say "### Write overhead of capture (pgbench tps, ${DURATION}s per run, mean of two rounds, modes interleaved)"
    say ""
    say "(without capture: the orders_maintain row trigger off, which also keeps the operator_load counters)"
    say ""
    say "| Workload | Clients | without capture | with capture, no fold | change | with capture + fold every 1 s | change |"
    say "|---|---|---|---|---|---|---|"
    for script in ins upd api; do
        for c in 4 8; do
            off_sum=0; nof_sum=0; on_sum=0
            for round in 1 2; do
                capture off
                off=$(pgb -f "$WORK/$script.sql" -T "$DURATION" -c $c -j 2 2>&1 | tps)
                capture on
                nof=$(pgb -f "$WORK/$script.sql" -T "$DURATION" -c $c -j 2 2>&1 | tps)
                PSQL -c "SELECT alexandrite.refresh_dashboards()" >/dev/null
                start_fold_loop
                on=$(pgb -f "$WORK/$script.sql" -T "$DURATION" -c $c -j 2 2>&1 | tps)
                stop_fold_loop
                off_sum=$(awk -v a="$off_sum" -v b="$off" 'BEGIN {print a + b}')
                nof_sum=$(awk -v a="$nof_sum" -v b="$nof" 'BEGIN {print a + b}')
                on_sum=$(awk -v a="$on_sum" -v b="$on" 'BEGIN {print a + b}')
            done
            case $script in ins) name="one-row INSERT" ;; upd) name="one-row status UPDATE" ;; api) name="create_order() (the order API)" ;; esac
            say "| $name | $c | $(awk -v a="$off_sum" 'BEGIN {printf "%.0f", a / 2}') | $(awk -v a="$nof_sum" 'BEGIN {printf "%.0f", a / 2}') | $(awk -v a="$off_sum" -v b="$nof_sum" 'BEGIN {printf "%+.1f%%", (b - a) / a * 100}') | $(awk -v a="$on_sum" 'BEGIN {printf "%.0f", a / 2}') | $(awk -v a="$off_sum" -v b="$on_sum" 'BEGIN {printf "%+.1f%%", (b - a) / a * 100}') |"
        done
    done
    # the runs without capture left the dashboards behind: recompute them
    # (every dashboard over orders: status_age of the metrics too)
    PSQL -c "SELECT alexandrite.rebuild_dashboard(name) FROM alexandrite.dashboards WHERE base_table = 'alexandrite.orders'::regclass ORDER BY id" >/dev/null
    PSQL -c "SELECT alexandrite.sla_recount_load()" >/dev/null
    PSQL -c "VACUUM alexandrite.orders" >/dev/null

    # --- fold of 10k pending changes (three times) ------------------------
    log "fold of 10k changes"
    say ""
    say "### Fold of the changes of 10 000 one-row status updates (separate transactions, no fold running meanwhile; about 1 in 7 changes nothing)"
    say ""
    say "| Round | Pending delta rows | First page with them pending | refresh_dashboards() | ms per 10 000 delta rows | First page after the fold |"
    say "|---|---|---|---|---|---|"
    for round in 1 2 3; do
        pgb -f "$WORK/upd.sql" -t 2500 -c 4 -j 2 > "$WORK/fold10k.txt" 2>&1 || { cat "$WORK/fold10k.txt" >&2; exit 1; }
        pending=$(VAL "SELECT sum(pending_changes) FROM alexandrite.dashboard_lag")
        pgb -f "$WORK/page.sql" -T 3 -c 1 > "$WORK/pp.txt" 2>&1 || { cat "$WORK/pp.txt" >&2; exit 1; }; page_pending=$(lat < "$WORK/pp.txt")
        fold_ms=$(timed "SELECT alexandrite.refresh_dashboards()")
        page_after=$(pgb -f "$WORK/page.sql" -T 3 -c 1 2>&1 | lat)
        say "| $round | $pending | avg $page_pending ms | **$fold_ms ms** | $(awk -v p="$pending" -v t="$fold_ms" 'BEGIN {printf "%.0f", t * 10000 / p}') | avg $page_after ms |"
    done

    # --- first page while 500 writes/s run --------------------------------
    log "reads under 500 writes/s"
    start_fold_loop
    pgb -f "$WORK/upd.sql@8" -f "$WORK/ins.sql@2" -R 500 -T 15 -c 4 -j 2 > "$WORK/w500.txt" 2>&1 &
    wpid=$!
    sleep 1
    pgb -f "$WORK/page.sql" -T 12 -c 1 --log --log-prefix="$WORK/page500" > "$WORK/r500.txt" 2>&1
    wait $wpid || true
    stop_fold_loop
    read -r q50 q95 q99 qmax <<< "$(pct "$WORK"/page500.*)"; rm -f "$WORK"/page500.*
    wtps=$(tps < "$WORK/w500.txt")
    say ""
    say "### First page while writers run at 500 tps (80% status updates, 20% inserts), folding every second"
    say ""
    say "Writers achieved $wtps tps. First page: p50 $q50 ms, p95 $q95 ms, p99 $q99 ms, max $qmax ms."
    PSQL -c "SELECT alexandrite.refresh_dashboards()" -c "DELETE FROM alexandrite.orders WHERE external_ref LIKE 'pgb-%' OR external_ref LIKE 'api-%'" \
         -c "SELECT alexandrite.refresh_dashboards()" >/dev/null
    dbytes=$(VAL "SELECT pg_size_pretty(sum(delta_bytes)) FROM alexandrite.dashboard_lag")
    say ""
    say "Delta tables after the run (emptied by folds, cleaned by autovacuum): $dbytes in total."
    ok=$(VAL "SELECT bool_and(ok) FROM alexandrite.reconcile_dashboards()")
    say ""
    say "Reconcile after the run (every dashboard vs its base table): $([ "$ok" = t ] && echo "all equal" || echo "MISMATCH")."
done
echo "report: $REPORT" >&2
