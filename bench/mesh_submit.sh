#!/usr/bin/env bash
# Mesh job benchmark (issue 15's three targets), in one run on a throwaway
# cluster with the real pool and the real helper:
#   1. mesh_submit of a ~50 MB binary STL (1M triangles) vs mesh_ingest of
#      the same file (server-side time, median of REPS; target: submit
#      <= 0.1x ingest);
#   2. a backlog of SHOP shop jobs, then one B2B job: the B2B job's claim
#      rank once the pool runs (target: analysed next, rank <= mesh_workers);
#   3. throughput on JOBS 1M-triangle files: the pool (mesh_workers) vs
#      the same number of mesh_ingest calls run by as many parallel clients
#      (target: pool >= 0.9x clients).
#
# Usage: PG_CONFIG=... bench/mesh_submit.sh
# Env: REPS (3), SHOP (100), JOBS (6), WORKERS (2), SHAPE (torus:700:700),
#      PORT, KEEP=1.  Needs `make install` into the PostgreSQL of PG_CONFIG.
# Prints a Markdown report on stdout (and into bench/out/mesh_submit-<date>.md).
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-pg_config}
BIN=$($PG_CONFIG --bindir)
REPS=${REPS:-3}
SHOP=${SHOP:-100}
JOBS=${JOBS:-6}
WORKERS=${WORKERS:-2}
SHAPE=${SHAPE:-torus:700:700}
PORT=${PORT:-54397}
TOP=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/alx-bench-meshjobs.XXXXXX)
chmod 755 "$WORK"
OUT="$TOP/bench/out"
mkdir -p "$OUT"
REPORT="$OUT/mesh_submit-$(date -u +%Y%m%dT%H%M%SZ).md"

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PSQL() { as_pg "$BIN/psql" -X -q -h "$WORK" -p "$PORT" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
VAL() { PSQL -At -c "$1"; }
log() { echo "== $*" >&2; }
say() { echo "$*" | tee -a "$REPORT"; }
cleanup() {
    as_pg "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

chown postgres "$WORK" 2>/dev/null || true
as_pg "$BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
cat >> "$WORK/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
shared_preload_libraries = 'alexandrite'
alexandrite.database = 'bench'
alexandrite.worker_role = 'alexandrite_worker'
alexandrite.amqp_url = ''
alexandrite.fold_interval = 0
alexandrite.mesh_workers = $WORKERS
alexandrite.mesh_max_concurrent = $WORKERS
alexandrite.mesh_pool_paused = on
alexandrite.mesh_queue_max_bytes = '2000MB'
shared_buffers = 512MB
max_wal_size = 8GB
checkpoint_timeout = 30min
fsync = off
synchronous_commit = off
jit = off
EOF
echo "CREATE ROLE alexandrite_worker LOGIN;" |
    as_pg "$BIN/postgres" --single -D "$WORK/data" -c shared_preload_libraries= postgres >/dev/null
as_pg "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/log" -w start >/dev/null
as_pg "$BIN/createdb" -h "$WORK" -p "$PORT" -U postgres bench
PSQL -c "CREATE EXTENSION alexandrite"

log "generating $SHAPE (binary STL)"
python3 "$TOP/test/gen/genmesh.py" "$SHAPE" stl --out "$WORK/big.stl"
python3 "$TOP/test/gen/genmesh.py" torus:100:100 stl --out "$WORK/small.stl"
chmod 644 "$WORK"/*.stl
PSQL <<SQL
-- the files as the server reads them: uncompressed, out of line
CREATE TABLE files (name text, b bytea);
ALTER TABLE files ALTER b SET STORAGE EXTERNAL;
-- distinct bytes, same geometry: a binary STL's 80-byte header is free text
INSERT INTO files SELECT 'big' || i, overlay(pg_read_binary_file('$WORK/big.stl') PLACING int4send(i) FROM 1)
  FROM generate_series(1, greatest($REPS, $JOBS)) i;
INSERT INTO files SELECT 'small' || i, overlay(pg_read_binary_file('$WORK/small.stl') PLACING int4send(i) FROM 1)
  FROM generate_series(1, $SHOP + 1) i;
-- server-side time of one call, the bytes already in memory (as a client's parameter)
CREATE FUNCTION ms(fn text, n text) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE d bytea; t0 timestamptz;
BEGIN
    SELECT f.b || '\\x'::bytea INTO d FROM files f WHERE f.name = n;
    t0 := clock_timestamp();
    IF fn = 'submit' THEN PERFORM alexandrite.mesh_submit(d, n); ELSE PERFORM alexandrite.mesh_ingest(d, n); END IF;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END \$\$;
SQL
set_paused() {
    PSQL -c "ALTER SYSTEM SET alexandrite.mesh_pool_paused = $1" -c "SELECT pg_reload_conf()" >/dev/null
}
wait_idle() {
    while [ "$(VAL "SELECT count(*) FROM alexandrite.mesh_jobs WHERE state IN ('queued', 'running')")" != 0 ]; do
        sleep 0.2
    done
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

say "# mesh_submit benchmark ($(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
say ""
BYTES=$(VAL "SELECT length(b) FROM files WHERE name = 'big1'")
TRIS=$(( (BYTES - 84) / 50 ))
say "File: $SHAPE, $BYTES bytes, $TRIS triangles; pool: $WORKERS workers."
say ""

# --- 1. submit latency vs ingest ---------------------------------------------
log "1. submit vs ingest"
sub=() ing=()
for i in $(seq 1 "$REPS"); do
    sub+=("$(VAL "SELECT round(ms('submit', 'big$i'))")")
done
VAL "SELECT count(alexandrite.mesh_job_discard(id)) FROM alexandrite.mesh_jobs WHERE state = 'queued'" >/dev/null
for i in $(seq 1 "$REPS"); do
    ing+=("$(VAL "SELECT round(ms('ingest', 'big$i'))")")
done
sub_med=$(printf '%s\n' "${sub[@]}" | median)
ing_med=$(printf '%s\n' "${ing[@]}" | median)
say "## 1. mesh_submit vs mesh_ingest, one ${BYTES}-byte file (median of $REPS, ms)"
say ""
say "| call | runs (ms) | median (ms) |"
say "|---|---|---|"
say "| mesh_submit | ${sub[*]} | $sub_med |"
say "| mesh_ingest | ${ing[*]} | $ing_med |"
say ""
say "Ratio submit/ingest: $(awk -v a="$sub_med" -v b="$ing_med" 'BEGIN {printf "%.3f", a / b}') (target <= 0.1)"
say ""

# --- 2. B2B next under a shop backlog ---------------------------------------
log "2. B2B next under $SHOP shop jobs"
PSQL -At >/dev/null <<SQL
SELECT count(alexandrite.create_order('SHOP-' || i, 'shop', 'c' || i, NULL, 'ag925')) FROM generate_series(1, $SHOP) i;
SELECT count(alexandrite.mesh_submit(f.b, f.name, 'mm', o.id))
  FROM generate_series(1, $SHOP) i
  JOIN files f ON f.name = 'small' || i JOIN alexandrite.orders o ON o.external_ref = 'SHOP-' || i;
SELECT alexandrite.create_order('B2B-1', 'b2b_api', 'acme', NULL, 'au750_yellow');
SELECT alexandrite.mesh_submit(f.b, 'b2b.stl', 'mm', (SELECT id FROM alexandrite.orders WHERE external_ref = 'B2B-1'))
  FROM files f WHERE f.name = 'small$((SHOP + 1))';
SQL
set_paused off
wait_idle
set_paused on
rank=$(VAL "SELECT r FROM (SELECT j.filename, rank() OVER (ORDER BY j.started_at, j.id) AS r
                             FROM alexandrite.mesh_jobs j WHERE j.filename LIKE 'small%' OR j.filename = 'b2b.stl') x
             WHERE filename = 'b2b.stl'")
say "## 2. B2B job submitted after $SHOP shop jobs"
say ""
say "B2B job claimed at rank $rank of $((SHOP + 1)) (target: <= $WORKERS, the pool's width)."
say ""

# --- 3. throughput: pool vs parallel clients ---------------------------------
log "3. throughput, $JOBS files"
PSQL -At -c "SELECT count(alexandrite.mesh_submit(b, name, 'cm')) FROM files WHERE name ~ '^big' AND substr(name, 4)::int <= $JOBS" >/dev/null
t0=$(date +%s.%N)
set_paused off
wait_idle
t1=$(date +%s.%N)
failed=$(VAL "SELECT count(*) FROM alexandrite.mesh_jobs WHERE state = 'failed' AND unit = 'cm'")
pool_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
t0=$(date +%s.%N)
seq 1 "$JOBS" | xargs -P "$WORKERS" -I{} \
    bash -c "$(declare -f as_pg); as_pg '$BIN/psql' -X -q -h '$WORK' -p '$PORT' -U postgres -d bench -v ON_ERROR_STOP=1 -At \
             -c \"SELECT alexandrite.mesh_ingest(b, name, 'in') FROM files WHERE name = 'big{}'\" >/dev/null"
t1=$(date +%s.%N)
cli_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
say "## 3. Throughput on $JOBS files of $TRIS triangles"
say ""
say "| runner | wall (s) | files/s |"
say "|---|---|---|"
say "| pool ($WORKERS workers, from unpause to the last job done; $failed failed) | $pool_s | $(awk -v n="$JOBS" -v s="$pool_s" 'BEGIN {printf "%.3f", n / s}') |"
say "| $WORKERS parallel clients calling mesh_ingest | $cli_s | $(awk -v n="$JOBS" -v s="$cli_s" 'BEGIN {printf "%.3f", n / s}') |"
say ""
say "Pool / clients throughput: $(awk -v p="$pool_s" -v c="$cli_s" 'BEGIN {printf "%.2f", c / p}') (target >= 0.9)"
