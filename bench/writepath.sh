#!/usr/bin/env bash
# bench/writepath.sh: the order write path against its bare-SQL peer, in the
# same run, on a throwaway cluster with every capability on (the relay
# publishing to a private RabbitMQ node, the dashboards captured and folded
# by their worker):
#   create   alexandrite.create_order      vs  INSERT of the order + its history row
#   status   alexandrite.set_status        vs  lock + UPDATE of the order + its history row
#   claim    alexandrite.assign_next       vs  the bare claim write (lock the operator,
#            take the first pool order of a channel SKIP LOCKED, UPDATE + history)
# The peer's tables (schema bare) have the shape, indexes, CHECKs and foreign
# keys of alexandrite.orders and order_events, and no extension code.  A and
# B runs are interleaved ROUNDS times; the report gives every run and the
# ratio per round (the machine may be shared: compare ratios, not tps).
# Then the outbox end to end: N outbox_emit in one statement until every
# event is confirmed by the broker, against bench/raw_publisher.c sending
# N messages with confirms to the same broker.
#
# Usage: PG_CONFIG=... bench/writepath.sh
# Env: SECS (per run, default 10), ROUNDS (default 3), CLIENTS (default 2),
#      FSYNC (off|on, default off: CPU, not the disk), N (outbox events, 50000),
#      ONLY (create,status,claim,outbox; or instructions, below), RELAY (on|off: off leaves the
#      events unpublished, to see what the relay and the broker cost),
#      CALLS (the calls ONLY=instructions counts, default "create status
#      claim"), KEEP (keep the work directory, with the callgrind profiles
#      callgrind.KIND.N of ONLY=instructions, for callgrind_annotate).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
SECS=${SECS:-10} ROUNDS=${ROUNDS:-3} CLIENTS=${CLIENTS:-2} FSYNC=${FSYNC:-off} N=${N:-50000}
ONLY=${ONLY:-create,status,claim,outbox} RELAY=${RELAY:-on}
work=$(mktemp -d /tmp/alx-bench-writepath.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown postgres: "$work"
bindir=$(alx_bindir)
mqport=$(alx_free_port) pgport=$(alx_free_port)
mqname=alxwp$$
export RABBITMQ_BASE=$work/rabbitmq
cleanup() {
    alx_cluster_stop "$work/pg"
    alx_as_pg env RABBITMQ_BASE="$RABBITMQ_BASE" "$ALX_TOP/scripts/rabbitmq" kill $mqname $mqport >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

alx_build_install
gcc -O2 -o "$work/raw_publisher" "$ALX_TOP/bench/raw_publisher.c" -lrabbitmq
alx_as_pg env RABBITMQ_BASE="$RABBITMQ_BASE" "$ALX_TOP/scripts/rabbitmq" start $mqname $mqport >&2
/usr/bin/python3 "$ALX_TOP/test/outbox_consumer.py" declare $mqport bench alexandrite.events '#' >&2
purge() { /usr/bin/python3 -c "import pika; c=pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1',$mqport)); c.channel().queue_purge('bench'); c.close()"; }

alx_cluster_start "$work/pg" "$pgport" alxbench >&2
cat >> "$work/pg/data/postgresql.conf" <<CONF
shared_buffers = 512MB
max_wal_size = 4GB
checkpoint_timeout = 30min
fsync = $FSYNC
synchronous_commit = on
jit = off
alexandrite.database = 'alxbench'
alexandrite.amqp_url = '$([ "$RELAY" = on ] && echo "amqp://guest:guest@127.0.0.1:$mqport/")'
alexandrite.outbox_batch_size = 500
alexandrite.fold_interval = 1000
CONF
alx_as_pg "$bindir/pg_ctl" -D "$work/pg/data" -w restart >/dev/null
psql() { alx_as_pg "$bindir/psql" -X -q -At -h "$work/pg" -p "$pgport" -U postgres -d alxbench -v ON_ERROR_STOP=1 "$@"; }

psql <<'SQL'
CREATE EXTENSION alexandrite;
INSERT INTO alexandrite.operators (id, name, capacity)
SELECT 'op' || i, 'Operator ' || i, 1000000000 FROM generate_series(0, 15) i;

-- the peer: the same tables, indexes, CHECKs and foreign keys, no extension code
CREATE SCHEMA bare;
CREATE TABLE bare.operators (LIKE alexandrite.operators INCLUDING ALL);
INSERT INTO bare.operators SELECT * FROM alexandrite.operators;
CREATE TABLE bare.orders (LIKE alexandrite.orders INCLUDING ALL);
CREATE SEQUENCE bare.orders_id_seq OWNED BY bare.orders.id;
ALTER TABLE bare.orders ALTER id SET DEFAULT nextval('bare.orders_id_seq'),
    ADD FOREIGN KEY (mesh_id) REFERENCES alexandrite.meshes (id),
    ADD FOREIGN KEY (material) REFERENCES alexandrite.materials (code) ON UPDATE CASCADE,
    ADD FOREIGN KEY (operator_id) REFERENCES bare.operators (id) ON UPDATE CASCADE;
CREATE TABLE bare.order_events (LIKE alexandrite.order_events INCLUDING ALL);
CREATE SEQUENCE bare.order_events_id_seq OWNED BY bare.order_events.id;
ALTER TABLE bare.order_events ALTER id SET DEFAULT nextval('bare.order_events_id_seq'),
    ADD FOREIGN KEY (order_id) REFERENCES bare.orders (id) ON DELETE CASCADE;
CREATE SEQUENCE public.ref;
SQL
# what each index and trigger costs is in the figures: list them
echo "orders: $(psql -c "SELECT count(*) FROM pg_index WHERE indrelid = 'alexandrite.orders'::regclass") indexes," \
     "triggers: $(psql -c "SELECT string_agg(tgname, ' ' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'alexandrite.orders'::regclass AND NOT tgisinternal")" >&2
echo "bare.orders: $(psql -c "SELECT count(*) FROM pg_index WHERE indrelid = 'bare.orders'::regclass") indexes" >&2

# fixtures: orders in production (status toggles) and a pool (claims), the
# same rows in both schemas, written directly (as a restore would)
FIX=20000 POOL=200000
psql <<SQL
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, status, operator_id, created_at,
                                sla_due_at, updated_at, status_changed_at)
SELECT 'fix-' || g, 'shop', 'cust-' || (g % 500), 'in_production', 'op' || (g % 16),
       now(), now() + interval '21 days', now(), now()
  FROM generate_series(1, $FIX) g;
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, status, created_at, sla_due_at,
                                updated_at, status_changed_at)
SELECT 'pool-' || g, (ARRAY['shop', 'b2b_api', 'crm'])[1 + g % 3], 'cust-' || (g % 500), 'new',
       now() - interval '1 day', now() + (g % 5000) * interval '1 minute', now(), now()
  FROM generate_series(1, $POOL) g;
INSERT INTO bare.orders SELECT * FROM alexandrite.orders;
SELECT setval('bare.orders_id_seq', (SELECT max(id) FROM bare.orders));
SELECT alexandrite.sla_recount_load();
SELECT alexandrite.rebuild_dashboard(name) FROM alexandrite.dashboards;
VACUUM ANALYZE;
SQL
fix0=$(psql -c "SELECT min(id) FROM alexandrite.orders WHERE external_ref LIKE 'fix-%'")

mk() { cat > "$work/$1.sql"; chmod 644 "$work/$1.sql"; }
mk create_a <<'SQL'
SELECT alexandrite.create_order('c-' || nextval('public.ref'), 'shop', 'cust-1', NULL, NULL);
SQL
mk create_b <<'SQL'
WITH o AS (INSERT INTO bare.orders (external_ref, channel, customer_id, sla_due_at)
           VALUES ('c-' || nextval('public.ref'), 'shop', 'cust-1', now() + interval '21 days')
           RETURNING id)
INSERT INTO bare.order_events (order_id, from_status, to_status, actor) SELECT o.id, NULL, 'new', current_user FROM o;
SQL
# each client walks its own slice of the orders in production, flipping
# in_production <-> quality_check one pass at a time
slice=$(( FIX / CLIENTS ))
mk status_a <<SQL
\\set n :n + 1
\\set id $fix0 + :client_id * $slice + (:n % $slice)
\\set odd (:n / $slice) % 2
SELECT alexandrite.set_status(:id, CASE WHEN :odd = 0 THEN 'quality_check' ELSE 'in_production' END::alexandrite.order_status);
SQL
mk status_b <<SQL
\\set n :n + 1
\\set id $fix0 + :client_id * $slice + (:n % $slice)
\\set odd (:n / $slice) % 2
WITH p AS (SELECT o.id, o.status FROM bare.orders o WHERE o.id = :id FOR NO KEY UPDATE),
     u AS (UPDATE bare.orders o
              SET status = CASE WHEN :odd = 0 THEN 'quality_check' ELSE 'in_production' END::alexandrite.order_status,
                  updated_at = now(), status_changed_at = now()
             FROM p WHERE o.id = p.id RETURNING o.id, p.status AS old, o.status AS new)
INSERT INTO bare.order_events (order_id, from_status, to_status, actor) SELECT u.id, u.old, u.new, current_user FROM u;
SQL
mk claim_a <<'SQL'
SELECT alexandrite.assign_next('op' || :client_id);
SQL
mk claim_b <<'SQL'
WITH op AS (SELECT p.id FROM bare.operators p WHERE p.id = 'op' || :client_id FOR NO KEY UPDATE),
     c AS (SELECT o.id, o.status FROM bare.orders o
            WHERE o.channel = 'shop' AND o.status < 'assigned' AND o.operator_id IS NULL
            ORDER BY o.sla_due_at, o.id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED),
     u AS (UPDATE bare.orders o SET status = 'assigned', operator_id = op.id, updated_at = now(), status_changed_at = now()
             FROM c, op WHERE o.id = c.id RETURNING o.id, c.status AS old, o.operator_id)
INSERT INTO bare.order_events (order_id, from_status, to_status, actor) SELECT u.id, u.old, 'assigned', u.operator_id FROM u;
SQL

# ONLY=instructions: instructions per call instead of tps, counted by
# callgrind in a single-user backend (postgres --single) on a copy of this
# cluster, restored before every count: (count of 400 prepared executions -
# count of 100) / 300, each execution its own transaction.  Unlike time on
# a shared machine, the count does not move between runs.
if [[ ",$ONLY," == *",instructions,"* ]]; then
    command -v valgrind >/dev/null || { echo "valgrind is missing (scripts/install-deps installs it)" >&2; exit 1; }
    alx_as_pg "$bindir/pg_ctl" -D "$work/pg/data" -w stop -m fast >/dev/null
    cp -a "$work/pg/data" "$work/base"
    # statements KIND N: the prepared statement of KIND and N executions of it
    statements() {
        case $1 in
            create_a) echo "PREPARE s(text) AS SELECT alexandrite.create_order(\$1, 'shop', 'cust-1', NULL, NULL);" ;;
            create_b) echo "PREPARE s(text) AS WITH o AS (INSERT INTO bare.orders (external_ref, channel, customer_id, sla_due_at) VALUES (\$1, 'shop', 'cust-1', now() + interval '21 days') RETURNING id) INSERT INTO bare.order_events (order_id, from_status, to_status, actor) SELECT o.id, NULL, 'new', current_user FROM o;" ;;
            status_a) echo "PREPARE s(bigint, text) AS SELECT alexandrite.set_status(\$1, \$2::alexandrite.order_status);" ;;
            status_b) echo "PREPARE s(bigint, text) AS WITH p AS (SELECT o.id, o.status FROM bare.orders o WHERE o.id = \$1 FOR NO KEY UPDATE), u AS (UPDATE bare.orders o SET status = \$2::alexandrite.order_status, updated_at = now(), status_changed_at = now() FROM p WHERE o.id = p.id RETURNING o.id, p.status AS old, o.status AS new) INSERT INTO bare.order_events (order_id, from_status, to_status, actor) SELECT u.id, u.old, u.new, current_user FROM u;" ;;
            claim_a) echo "PREPARE s(text) AS SELECT alexandrite.assign_next(\$1);" ;;
            claim_b) echo "PREPARE s(text) AS WITH op AS (SELECT p.id FROM bare.operators p WHERE p.id = \$1 FOR NO KEY UPDATE), c AS (SELECT o.id, o.status FROM bare.orders o WHERE o.channel = 'shop' AND o.status < 'assigned' AND o.operator_id IS NULL ORDER BY o.sla_due_at, o.id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED), u AS (UPDATE bare.orders o SET status = 'assigned', operator_id = op.id, updated_at = now(), status_changed_at = now() FROM c, op WHERE o.id = c.id RETURNING o.id, c.status AS old, o.operator_id) INSERT INTO bare.order_events (order_id, from_status, to_status, actor) SELECT u.id, u.old, 'assigned', u.operator_id FROM u;" ;;
        esac
        for i in $(seq 1 "$2"); do
            case $1 in
                create_*) echo "EXECUTE s('vg-$1-$2-$i');" ;;
                status_*) echo "EXECUTE s($(( fix0 + i - 1 )), 'quality_check');" ;;
                claim_*) echo "EXECUTE s('op$(( i % 4 ))');" ;;
            esac
        done
    }
    count() {
        rm -rf "$work/vgdata" && cp -a "$work/base" "$work/vgdata"
        statements "$1" "$2" > "$work/vg.sql"
        chmod 644 "$work/vg.sql"
        alx_as_pg valgrind --tool=callgrind --callgrind-out-file="$work/vg.out" \
            "$bindir/postgres" --single -D "$work/vgdata" -c log_min_messages=fatal alxbench \
            < "$work/vg.sql" > "$work/vg.log" 2>&1
        if grep -q "ERROR" "$work/vg.log"; then grep -m3 "ERROR" "$work/vg.log" >&2; exit 1; fi
        [ -n "${KEEP:-}" ] && cp "$work/vg.out" "$work/callgrind.$1.$2"
        awk '/^(summary|totals):/ {print $2; exit}' "$work/vg.out"
    }
    per_call() { local a b; a=$(count "$1" 100); b=$(count "$1" 400); echo $(( (b - a) / 300 )); }
    echo "## Instructions per call ($(date -u '+%Y-%m-%d %H:%M UTC'), callgrind, postgres --single, from the same data each time)"
    echo
    echo "| call | alexandrite | bare SQL peer | bare / alexandrite |"
    echo "|---|---|---|---|"
    for w in ${CALLS:-create status claim}; do
        a=$(per_call ${w}_a); b=$(per_call ${w}_b)
        echo "| $w | $a | $b | $(echo "$b / $a" | bc -l | xargs printf '%.2f')x |"
    done
    rm -rf "$work/vgdata" "$work/base"
    alx_as_pg "$bindir/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w start >/dev/null
    ONLY=${ONLY//instructions/}
fi

# CPU ticks used so far by the cluster (the postmaster, its live children and
# the children it reaped: backends, relay, fold worker) and the broker, as
# "total relay broker" (the relay's and the broker's share of the total apart).
# On a shared machine, CPU per transaction is steadier than transactions per
# second.
ticks() {
    local pm beam t=0 p relay=0 broker=0 c
    pm=$(head -1 "$work/pg/data/postmaster.pid")
    t=$(awk '{print $14 + $15 + $16 + $17}' /proc/$pm/stat)
    for p in $(pgrep -P "$pm"); do
        c=$(awk '{print $14 + $15}' /proc/$p/stat 2>/dev/null || echo 0)
        t=$(( t + c ))
        if grep -q 'alexandrite relay' /proc/$p/cmdline 2>/dev/null; then relay=$(( relay + c )); fi
    done
    for beam in $(pgrep -f "beam.smp.*$mqname"); do
        c=$(awk '{print $14 + $15 + $16 + $17}' /proc/$beam/stat 2>/dev/null || echo 0)
        t=$(( t + c )) broker=$(( broker + c ))
    done
    echo "$t $relay $broker"
}
# ticks to µs per transaction
us_per() { echo $(( $1 * 1000000 / $(getconf CLK_TCK) / ($2 > 0 ? $2 : 1) )); }
# run NAME -> "tps cpu_us_per_transaction relay_us broker_us" (server and
# broker CPU; the client's aside)
tps() {
    local t0 r0 b0 t1 r1 b1 tps n
    read -r t0 r0 b0 < <(ticks)
    alx_as_pg "$bindir/pgbench" -n -M prepared -h "$work/pg" -p "$pgport" -U postgres -c "$CLIENTS" -j "$CLIENTS" \
        -D n=0 -T "$SECS" -f "$work/$1.sql" alxbench > "$work/$1.out" 2>&1
    sleep 1                                        # let the relay drain this run's events
    read -r t1 r1 b1 < <(ticks)
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/$1.out")
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/$1.out")
    echo "$tps $(us_per $(( t1 - t0 )) "$n") $(us_per $(( r1 - r0 )) "$n") $(us_per $(( b1 - b0 )) "$n")"
}

if [[ ",$ONLY," =~ ,(create|status|claim|outbox), ]]; then
echo "## Write path vs bare SQL ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load at start: $(cut -d' ' -f1-3 /proc/loadavg), fsync=$FSYNC, relay $RELAY, $CLIENTS clients, ${SECS}s runs)"
echo
echo "| call | round | alexandrite tps | bare SQL tps | tps ratio | alexandrite CPU µs/txn | of which relay / broker | bare CPU µs/txn | CPU ratio (bare/alexandrite) |"
echo "|---|---|---|---|---|---|---|---|---|"
for w in create status claim; do
    [[ ",$ONLY," == *",$w,"* ]] || continue
    ratios=() cratios=()
    for r in $(seq 1 "$ROUNDS"); do
        # every run starts from orders in production: its first pass then
        # moves each order (set_status to the status an order already has
        # writes nothing, so a pass left over from the previous run would
        # count cheap no-ops against the peer's real UPDATEs)
        [ "$w" = status ] && psql -c "UPDATE alexandrite.orders SET status = 'in_production'
                                        WHERE external_ref LIKE 'fix-%' AND status <> 'in_production'" \
                                  -c "UPDATE bare.orders SET status = 'in_production'
                                        WHERE external_ref LIKE 'fix-%' AND status <> 'in_production'" >/dev/null
        psql -c "CHECKPOINT" >/dev/null
        if [ $(( r % 2 )) = 1 ]; then
            read -r a ac ar ab < <(tps "${w}_a"); read -r b bc_ _ _ < <(tps "${w}_b")
        else
            read -r b bc_ _ _ < <(tps "${w}_b"); read -r a ac ar ab < <(tps "${w}_a")
        fi
        ratio=$(echo "$a / $b" | bc -l | xargs printf '%.2f')
        cratio=$(echo "$bc_ / $ac" | bc -l | xargs printf '%.2f')
        ratios+=("$ratio") cratios+=("$cratio")
        echo "| $w | $r | ${a%.*} | ${b%.*} | ${ratio}x | $ac | $ar / $ab | $bc_ | ${cratio}x |"
    done
    med() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
    echo "| $w | median | | | $(med "${ratios[@]}")x | | | | $(med "${cratios[@]}")x |"
done
echo
echo "outbox after the runs: $(psql -c "SELECT 'pending ' || pending || ', published ' || published_total || ', dead ' || dead_letters || ', relay_connected ' || relay_connected FROM alexandrite.outbox_status")"
echo "dashboards: $(psql -c "SELECT string_agg(dashboard || ' ' || ok, ', ') FROM alexandrite.reconcile_dashboards()" 2>/dev/null)"
fi

# --- outbox end to end: emit until confirmed vs the raw publisher --------------
if [[ ",$ONLY," == *",outbox,"* ]]; then
    echo
    echo "| outbox end to end ($N events) | round | seconds | msg/s | ratio to raw |"
    echo "|---|---|---|---|---|"
    plen=$(psql -c "SELECT length(jsonb_build_object('g', 12345)::text)")
    ratios=()
    for r in $(seq 1 "$ROUNDS"); do
        psql -c "SELECT pg_sleep(1)" >/dev/null
        purge
        raw=$("$work/raw_publisher" 127.0.0.1 $mqport alexandrite.events "$N" 500 "$plen" | awk '{print $3}')
        purge
        p0=$(psql -c "SELECT published_total FROM alexandrite.outbox_relay")
        # one backend: emit N events in one statement, then poll (10 ms) until confirmed
        t=$(psql -c "DO \$\$
          DECLARE p bigint; t0 timestamptz := clock_timestamp();
          BEGIN
            PERFORM count(alexandrite.outbox_emit('bench', (g % 1000)::text, 'bench.tick', jsonb_build_object('g', g)))
               FROM generate_series(1, $N) g;
            COMMIT;
            LOOP SELECT published_total INTO p FROM alexandrite.outbox_relay; EXIT WHEN p >= $p0 + $N; PERFORM pg_sleep(0.01); END LOOP;
            RAISE NOTICE 'secs %', extract(epoch FROM clock_timestamp() - t0);
          END \$\$" 2>&1 | grep -oP 'secs \K[0-9.]+')
        rate=$(echo "$N / $t" | bc -l | xargs printf '%.0f')
        ratio=$(echo "$rate / $raw" | bc -l | xargs printf '%.2f')
        ratios+=("$ratio")
        echo "| alexandrite (emit + relay) vs raw rabbitmq-c ($raw msg/s) | $r | $(printf '%.2f' "$t") | $rate | ${ratio}x |"
    done
    echo "| | median | | | $(printf '%s\n' "${ratios[@]}" | sort -n | sed -n "$(( (${#ratios[@]} + 1) / 2 ))p")x |"
fi
