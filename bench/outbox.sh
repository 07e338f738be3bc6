#!/usr/bin/env bash
# Outbox benchmark, alexandrite's relay side by side with a raw rabbitmq-c
# publisher against the same private RabbitMQ node in the same run:
#   1. throughput: relay draining N events (persistent, confirms, window =
#      alexandrite.outbox_batch_size) vs bench/raw_publisher.c (same
#      properties, same window), best of R runs each;
#   2. emit-to-consumer latency p50/p99 at ~1000 events/s (pgbench -R);
#   (the cost of an order's event on its transaction: bench/writepath.sh).
# Usage: bench/outbox.sh  (env: N=20000 R=3 WINDOW=500 SECS=10)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
N=${N:-20000} R=${R:-3} WINDOW=${WINDOW:-500} SECS=${SECS:-10}
work=$(mktemp -d /tmp/alx-bench-outbox.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown postgres: "$work"
bindir=$(alx_bindir)
mqport=$(alx_free_port) pgport=$(alx_free_port)
mqname=alxbench$$
export RABBITMQ_BASE=$work/rabbitmq
cleanup() {
    alx_cluster_stop "$work/pg"
    [ -n "${KEEP_LOG:-}" ] && cp "$work/pg/server.log" "$KEEP_LOG" || true
    alx_as_pg env RABBITMQ_BASE="$RABBITMQ_BASE" "$ALX_TOP/scripts/rabbitmq" kill $mqname $mqport >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

alx_build_install
gcc -O2 -o "$work/raw_publisher" "$ALX_TOP/bench/raw_publisher.c" -lrabbitmq
alx_as_pg env RABBITMQ_BASE="$RABBITMQ_BASE" "$ALX_TOP/scripts/rabbitmq" start $mqname $mqport >&2
py() { /usr/bin/python3 "$@"; }
py "$ALX_TOP/test/outbox_consumer.py" declare $mqport bench alexandrite.events '#'
purge() { py -c "import pika; c=pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1',$mqport)); c.channel().queue_purge('bench'); c.close()"; }

alx_cluster_start "$work/pg" "$pgport" alxbench >&2
psql() { alx_as_pg "$bindir/psql" -X -q -At -h "$work/pg" -p "$pgport" -U postgres -d alxbench "$@"; }
psql -c "CREATE EXTENSION alexandrite" \
     -c "ALTER SYSTEM SET alexandrite.outbox_batch_size = $WINDOW" \
     -c "ALTER SYSTEM SET alexandrite.amqp_url = ''" -c "SELECT pg_reload_conf()" >/dev/null
url="amqp://guest:guest@127.0.0.1:$mqport/"

echo "machine: $(nproc) cores, $(grep MemTotal /proc/meminfo | awk '{print int($2/1024)}') MB, $(date -u +%F)"
echo "events per run: $N, window: $WINDOW, runs: $R"

# --- 1. throughput -----------------------------------------------------------
best_raw=0 best_relay=0
for run in $(seq 1 "$R"); do
    purge
    raw=$("$work/raw_publisher" 127.0.0.1 $mqport alexandrite.events "$N" "$WINDOW" 60 | awk '{print $3}')
    purge
    # fill the outbox while the relay is disconnected, then let it drain
    psql -c "ALTER SYSTEM SET alexandrite.amqp_url = ''" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 1
    per=$(( N / 20 ))
    for i in $(seq 1 20); do
        psql -c "SELECT count(alexandrite.outbox_emit('bench', (g % 1000)::text, 'bench.tick', jsonb_build_object('g', g))) FROM generate_series(1, $per) g" >/dev/null
    done
    p0=$(psql -c "SELECT published_total FROM alexandrite.outbox_status")
    psql -c "ALTER SYSTEM SET alexandrite.amqp_url = '$url'" -c "SELECT pg_reload_conf()" >/dev/null &
    # time from the first confirm to the last, watched by one backend that
    # sleeps 10 ms between looks (no process forked per poll)
    relay=$(psql -c "DO \$\$
      DECLARE p bigint; pa bigint; t0 timestamptz; t1 timestamptz;
      BEGIN
        LOOP SELECT published_total INTO pa FROM alexandrite.outbox_relay; EXIT WHEN pa > $p0; PERFORM pg_sleep(0.005); END LOOP;
        t0 := clock_timestamp();
        LOOP SELECT published_total INTO p FROM alexandrite.outbox_relay; EXIT WHEN p >= $p0 + $N; PERFORM pg_sleep(0.01); END LOOP;
        t1 := clock_timestamp();
        RAISE NOTICE 'rate %', round(($p0 + $N - pa) / extract(epoch FROM t1 - t0));
      END \$\$" 2>&1 | grep -oP 'rate \K[0-9]+')
    echo "run $run: raw rabbitmq-c publisher $raw msg/s, alexandrite relay $relay msg/s"
    [ "$raw" -gt "$best_raw" ] && best_raw=$raw
    [ "$relay" -gt "$best_relay" ] && best_relay=$relay
done
echo "throughput (best of $R): raw $best_raw msg/s, relay $best_relay msg/s, ratio $(echo "$best_relay / $best_raw" | bc -l | xargs printf '%.2f')"

# --- 2. latency at ~1000 events/s ---------------------------------------------
purge
cat > "$work/emit.sql" <<'SQL'
SELECT alexandrite.outbox_emit('bench', (random() * 1000)::int::text, 'bench.tick',
       jsonb_build_object('t', extract(epoch FROM clock_timestamp())));
SQL
chmod 644 "$work/emit.sql"
psql -c "CREATE TABLE lat0 AS SELECT * FROM alexandrite.outbox_latency()"
py "$ALX_TOP/bench/outbox_latency.py" $mqport bench $((SECS + 3)) > "$work/lat.txt" &
lpid=$!
alx_as_pg "$bindir/pgbench" -n -h "$work/pg" -p "$pgport" -U postgres -c 4 -j 2 -R 1000 -T "$SECS" -f "$work/emit.sql" alxbench > "$work/pgbench_lat.txt" 2>&1
wait $lpid
read -r nlat p50 p99 pmax < "$work/lat.txt"
# the relay's own histogram: created_at (the producing transaction) -> broker confirm
relay_lat=$(psql -c "WITH d AS (SELECT l.le_ms, l.confirmed - z.confirmed AS c FROM alexandrite.outbox_latency() l JOIN lat0 z USING (le_ms)),
    t AS (SELECT max(c) AS n FROM d)
  SELECT (SELECT min(le_ms) FROM d, t WHERE c >= 0.5 * n) || ' ' || (SELECT min(le_ms) FROM d, t WHERE c >= 0.99 * n) || ' ' || n FROM t")
read -r r50 r99 rn <<< "$relay_lat"
echo "latency at ~1000 events/s, relay histogram (transaction start -> broker confirm, $rn events): p50 <= $r50 ms, p99 <= $r99 ms"
echo "latency at $(grep -oP 'tps = \K[0-9.]+' "$work/pgbench_lat.txt" | head -1 | xargs printf '%.0f') events/s: $nlat messages, emit->consumer p50 ${p50} ms, p99 ${p99} ms, max ${pmax} ms"

# --- the outbox's state after the runs -------------------------------------------
# (The cost of an order's event on its transaction has no trigger to switch
# off since 1.2: the order API writes the event itself.  bench/writepath.sh
# measures it, against the bare-SQL write, with the relay on and off.)
psql -c "SELECT 'outbox after the run: pending ' || pending || ', published ' || published_total || ', dead ' || dead_letters FROM alexandrite.outbox_status"
