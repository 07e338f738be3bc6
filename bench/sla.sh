#!/usr/bin/env bash
# bench/sla.sh: assign_next against the naive ORDER BY sla_priority(...) LIMIT 1
# FOR UPDATE SKIP LOCKED, in the same run, on a throwaway cluster.
#   - N open orders (default 1,000,000) over three channels, due times spread
#     around now (some overdue), status new or priced;
#   - assign_next latency p50/p99 and throughput with 1 and 8 clients (pgbench);
#   - the naive claim, same clients, same data;
#   - sla_priority evaluations per second in one statement.
# Usage: PG_CONFIG=... bench/sla.sh [N] [SECONDS]
# Writes the figures to stdout (markdown) and keeps the raw logs in $OUT.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
N=${1:-1000000}
SECS=${2:-15}
OUT=${OUT:-$(mktemp -d /tmp/alx-bench-sla.XXXXXX)}
mkdir -p "$OUT"; chmod 777 "$OUT"
bindir=$(alx_bindir)
dir=$OUT/cluster
port=$(alx_free_port)
trap 'alx_cluster_stop "$dir"' EXIT

make -C "$ALX_TOP" -s PG_CONFIG="$PG_CONFIG" >/dev/null
make -C "$ALX_TOP" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
alx_cluster_start "$dir" "$port" bench >/dev/null
cat >> "$dir/data/postgresql.conf" <<CONF
shared_buffers = 512MB
max_connections = 50
CONF
alx_as_pg "$bindir/pg_ctl" -D "$dir/data" -w restart >/dev/null
psql() { alx_as_pg "$bindir/psql" -h "$dir" -p "$port" -U postgres -d bench -X -q -v ON_ERROR_STOP=1 "$@"; }
pgbench() { alx_as_pg "$bindir/pgbench" -h "$dir" -p "$port" -U postgres "$@" bench; }

psql <<SQL
CREATE EXTENSION alexandrite;
-- fixture: N open orders, created over the last 30 days, due created + target
-- (the rows are written directly, as a restore would; create_order is what the
-- MES calls)
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, status, created_at, sla_due_at,
                                updated_at, status_changed_at, price)
SELECT 'bench-' || g, c.channel, 'cust-' || (g % 5000),
       CASE WHEN g % 3 = 0 THEN 'priced' ELSE 'new' END::alexandrite.order_status,
       t.created, t.created + p.target, t.created, t.created,
       CASE WHEN g % 3 = 0 THEN 100 END
  FROM generate_series(1, $N) g
 CROSS JOIN LATERAL (SELECT CASE WHEN g % 10 < 5 THEN 'shop' WHEN g % 10 < 7 THEN 'b2b_api' ELSE 'crm' END AS channel) c
 CROSS JOIN LATERAL (SELECT now() - (hashint4(g)::float8 / 2147483648.0 + 1) / 2 * interval '30 days' AS created) t
  JOIN alexandrite.sla_policies p ON p.channel = c.channel AND p.customer_id IS NULL;
INSERT INTO alexandrite.operators (id, name, capacity)
SELECT 'op' || i, 'Operator ' || i, 1000000000 FROM generate_series(1, 8) i;
VACUUM ANALYZE alexandrite.orders;
VACUUM ANALYZE alexandrite.operators;

-- the peer: the obvious query, then the same write as assign_next through
-- assign_order (operator lock, active and capacity checks, the order's
-- update, history row and event)
CREATE FUNCTION public.naive_assign(op text) RETURNS bigint LANGUAGE plpgsql AS \$\$
DECLARE v_id bigint;
BEGIN
    SELECT o.id INTO v_id FROM alexandrite.orders o
     WHERE o.status < 'assigned' AND o.operator_id IS NULL
     ORDER BY alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, now()) DESC, o.id
     LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF v_id IS NULL THEN RETURN NULL; END IF;
    PERFORM alexandrite.assign_order(v_id, op);
    RETURN v_id;
END \$\$;

-- the floor: what any assignment costs without choosing (the same write
-- through assign_order), taking an arbitrary pool order near a random id
CREATE FUNCTION public.floor_assign(op text) RETURNS bigint LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan AS \$\$
DECLARE v_id bigint; v_from bigint := (random() * $N)::bigint;
BEGIN
    SELECT o.id INTO v_id FROM alexandrite.orders o
     WHERE o.id >= v_from AND o.status < 'assigned' AND o.operator_id IS NULL
     ORDER BY o.id LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF v_id IS NULL THEN RETURN NULL; END IF;
    PERFORM alexandrite.assign_order(v_id, op);
    RETURN v_id;
END \$\$;
SQL

cat > "$OUT/floor.sql" <<'SQL'
\set op :client_id + 1
SELECT public.floor_assign('op' || :op);
SQL

cat > "$OUT/assign.sql" <<'SQL'
\set op :client_id + 1
SELECT alexandrite.assign_next('op' || :op);
SQL
cat > "$OUT/naive.sql" <<'SQL'
\set op :client_id + 1
SELECT public.naive_assign('op' || :op);
SQL

# run NAME SCRIPT CLIENTS SECONDS -> "tps p50 p99" (latencies in ms)
run() {
    local name=$1 script=$2 clients=$3 secs=$4
    rm -f "$OUT/$name".[0-9]*
    (cd "$OUT" && pgbench -n -M prepared -f "$script" -c "$clients" -j "$clients" -T "$secs" \
        -l --log-prefix="$OUT/$name" > "$OUT/$name.out" 2>&1)
    local tps; tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$OUT/$name.out")
    # per-transaction log: client xact latency_us script_no epoch us
    local pct; pct=$(cat "$OUT/$name".[0-9]* | awk '{print $3}' | sort -n |
        awk '{a[NR]=$1} END {if (NR == 0) {print "- -"; exit}
             i50=int(NR*0.50); if (i50<1) i50=1; i99=int(NR*0.99); if (i99<1) i99=1;
             printf "%.3f %.3f", a[i50]/1000, a[i99]/1000}')
    echo "$tps $pct"
}

pool() { psql -At -c "SELECT count(*) FROM alexandrite.orders WHERE status < 'assigned' AND operator_id IS NULL"; }
open_n() { psql -At -c "SELECT count(*) FROM alexandrite.orders WHERE status < 'shipped'"; }

echo "## SLA benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average at start: $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "Open orders: $(open_n); unassigned pool before the runs: $(pool). Run length ${SECS}s per line (naive: shorter, see below)."
echo
echo "| claim | clients | assignments/s | p50 ms | p99 ms | pool after |"
echo "|---|---|---|---|---|---|"
for c in 1 8; do
    read -r tps p50 p99 < <(run "assign_c$c" "$OUT/assign.sql" "$c" "$SECS")
    echo "| assign_next | $c | $tps | $p50 | $p99 | $(pool) |"
done
for c in 1 8; do
    read -r tps p50 p99 < <(run "floor_c$c" "$OUT/floor.sql" "$c" "$SECS")
    echo "| floor: lock + capacity + the same write, no ranking | $c | $tps | $p50 | $p99 | $(pool) |"
done
NSECS=${NAIVE_SECS:-$(( SECS < 10 ? SECS : 10 ))}
for c in 1 8; do
    read -r tps p50 p99 < <(run "naive_c$c" "$OUT/naive.sql" "$c" "$NSECS")
    echo "| naive ORDER BY sla_priority LIMIT 1 FOR UPDATE SKIP LOCKED | $c | $tps | $p50 | $p99 | $(pool) |"
done

# the order board: first page and a deep page, against the same ranking
# computed from the table
cat > "$OUT/board.sql" <<'SQL'
SELECT count(*) FROM alexandrite.order_board(NULL, 50);
SQL
cat > "$OUT/board_deep.sql" <<'SQL'
SELECT count(*) FROM (SELECT b.* FROM (SELECT priority, id FROM alexandrite.order_board(NULL, 500) OFFSET 499) last,
                      alexandrite.order_board(NULL, 50, last.priority, last.id) b) x;
SQL
cat > "$OUT/board_naive.sql" <<'SQL'
SELECT count(*) FROM (SELECT id FROM alexandrite.orders WHERE status < 'shipped'
                       ORDER BY alexandrite.sla_priority(created_at, sla_due_at, channel, now()) DESC, id LIMIT 50) x;
SQL
echo
echo "| order board query | clients | calls/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
read -r tps p50 p99 < <(run board "$OUT/board.sql" 1 "$NSECS")
echo "| order_board(NULL, 50): first page | 1 | $tps | $p50 | $p99 |"
read -r tps p50 p99 < <(run board_deep "$OUT/board_deep.sql" 1 "$NSECS")
echo "| order_board: 500 rows, then the page after them (two calls) | 1 | $tps | $p50 | $p99 |"
read -r tps p50 p99 < <(run board_naive "$OUT/board_naive.sql" 1 "$NSECS")
echo "| naive ORDER BY sla_priority DESC, id LIMIT 50 over open orders | 1 | $tps | $p50 | $p99 |"

# escalation: the first run records every overdue order, a repeat finds nothing
esc=$(psql -At <<'SQL'
\timing on
SELECT alexandrite.escalate_overdue();
SELECT alexandrite.escalate_overdue();
SELECT alexandrite.escalate_overdue(full_scan => true);
SQL
)
ms() { echo "$esc" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sed -n "$1p"; }
echo
echo "escalate_overdue over $(open_n) open orders: first run (full scan) $(echo "$esc" | sed -n 1p) breaches in $(ms 1) ms;"\
     "the next run (the window since the previous one, as every minute) $(echo "$esc" | sed -n 3p) new in $(ms 2) ms;"\
     "a forced full scan (at most hourly) $(echo "$esc" | sed -n 5p) new in $(ms 3) ms."

# sla_priority throughput: the same scan with and without the function
t_base=$(psql -At <<'SQL' | tail -1
SET max_parallel_workers_per_gather = 0;
\timing on
SELECT count(*) FILTER (WHERE o.sla_due_at > o.created_at) FROM alexandrite.orders o;
SELECT count(*) FILTER (WHERE o.sla_due_at > o.created_at) FROM alexandrite.orders o;
SQL
)
t_fn=$(psql -At <<'SQL' | tail -1
SET max_parallel_workers_per_gather = 0;
\timing on
SELECT count(*) FILTER (WHERE alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, now()) > 0) FROM alexandrite.orders o;
SELECT count(*) FILTER (WHERE alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, now()) > 0) FROM alexandrite.orders o;
SQL
)
t_base=$(echo "$t_base" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
t_fn=$(echo "$t_fn" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
rows=$(psql -At -c "SELECT count(*) FROM alexandrite.orders")
echo
echo "sla_priority over $rows rows in one statement (one process, no parallel workers): ${t_fn} ms"\
     "($(awk -v n="$rows" -v t="$t_fn" 'BEGIN {printf "%.2f", n / t / 1000}') M evaluations/s including the scan;"\
     "the same scan without the function: ${t_base} ms, so the function alone runs at"\
     "$(awk -v n="$rows" -v t="$t_fn" -v b="$t_base" 'BEGIN {printf "%.2f", (t > b) ? n / (t - b) / 1000 : 0}') M/s)."
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg). Raw pgbench output and per-transaction logs: $OUT"
