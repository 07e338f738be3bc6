#!/usr/bin/env bash
# Mesh analysis benchmark: alexandrite (helper CLI and mesh_analyze through
# SQL, wall thickness included) side by side with admesh 0.98.4 and
# numpy-stl (python3-stl) on the same generated tori, in the same run.
# Each SQL and admesh figure is the best of $REPEAT runs (default 3), taken
# alternately; the ratio column is SQL wall time over admesh wall time.
#
#   PG_CONFIG=... bench/mesh.sh [--quick] [--fuzz SECONDS]
#
# Prints a Markdown table (also written to $OUT, default
# /tmp/alx-bench-mesh.md).  CPU time (user+sys) and peak RSS come from
# /usr/bin/time; wall time is also shown because the helper's cost through
# SQL includes the process spawn and the pipe.  --fuzz runs the libFuzzer
# target for that long afterwards.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
quick=0 fuzz=0
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1; shift ;;
        --fuzz) fuzz=$2; shift 2 ;;
        *) alx_die "unknown argument $1" ;;
    esac
done
OUT=${OUT:-/tmp/alx-bench-mesh.md}
work=$(mktemp -d /tmp/alx-bench-mesh.XXXXXX)
chmod 755 "$work"
trap 'alx_cluster_stop "$work/pg"; rm -rf "$work"' EXIT
bindir=$(alx_bindir)
meshd=$bindir/alexandrite-meshd
[ -x "$meshd" ] || alx_die "alexandrite-meshd is not installed in $bindir (make install)"
gen="$ALX_TOP/test/gen/genmesh.py"
PY=/usr/bin/python3

# torus R = 10, r = 1.5 mm; NU x NV x 2 triangles
sizes="100k:500:100 1M:1000:500"
[ $quick = 1 ] && sizes="100k:500:100"
alx_log "generating meshes in $work"
for s in $sizes; do
    name=${s%%:*} rest=${s#*:}
    # grid order (cache-friendly for everyone) and shuffled triangle order,
    # closer to real CAD exports
    python3 "$gen" "torus:$rest" stl --out "$work/torus_$name.stl"
    python3 "$gen" "torus:$rest" stl --shuffle --out "$work/torus_$name-shuffled.stl"
    if [ $name = 1M ] || [ $quick = 1 ]; then
        for f in obj plyb glb 3mfz; do python3 "$gen" "torus:$rest" $f --shuffle --out "$work/torus_$name-shuffled.$f"; done
    fi
done
chmod 644 "$work"/*

port=$(alx_free_port)
alx_cluster_start "$work/pg" "$port" bench >/dev/null
psql_b() { alx_as_pg "$bindir/psql" -h "$work/pg" -p "$port" -U postgres -d bench -XAtq "$@"; }
psql_b -c "CREATE EXTENSION alexandrite"

# run CMD, print "cpu_s wall_s rss_mb"
measure() {
    /usr/bin/time -o "$work/time.txt" -f '%U %S %e %M' "$@" >/dev/null 2>&1 || true
    tail -1 "$work/time.txt" | awk '{printf "%.2f %.2f %.0f\n", $1 + $2, $3, $4 / 1024}'
}
# for SQL: backend CPU cannot be split out cleanly, so wall time of the
# statement (server side, \timing) is reported and the helper's own CPU
# and RSS from the CLI column
sql_ms() {
    local f=$1 hint=$2
    psql_b -c '\timing on' -c "SELECT (alexandrite.mesh_analyze(pg_read_binary_file('$f'), '$hint')).min_wall_mm" |
        sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}
REPEAT=${REPEAT:-3}
# best of REPEAT: "sql_ms admesh_s" alternating the two
best_pair() {
    local f=$1 hint=$2 best_sql='' best_adm='' ms w
    for _ in $(seq "$REPEAT"); do
        ms=$(sql_ms "$f" "$hint")
        read -r _ w _ < <(measure admesh "$f")
        best_sql=$(awk -v a="$best_sql" -v b="$ms" 'BEGIN{print (a=="" || b<a) ? b : a}')
        best_adm=$(awk -v a="$best_adm" -v b="$w" 'BEGIN{print (a=="" || b<a) ? b : a}')
    done
    echo "$best_sql $best_adm"
}
volume_of() { "$meshd" "$1" | sed -n 's/.*"volume_mm3":\([^,]*\),.*/\1/p'; }

rows=()
ratios=()
for s in $sizes; do
    for name in ${s%%:*} ${s%%:*}-shuffled; do
    for ext in stl obj plyb glb 3mfz; do
        f="$work/torus_$name.$ext"
        [ -f "$f" ] || continue
        case $ext in plyb) hint=ply ;; 3mfz) hint=3mf ;; *) hint=$ext ;; esac
        sz=$(du -m "$f" | cut -f1)
        alx_log "torus $name $ext"
        read -r cpu wall rss < <(measure "$meshd" --max-memory-mb=4096 "$f")
        vol=$(volume_of "$f")
        wallmm=$("$meshd" "$f" | sed -n 's/.*"min_wall_mm":\([^,]*\),.*/\1/p')
        row="| torus $name | $ext (${sz} MB) | alexandrite-meshd CLI (wall thickness included) | $cpu | $wall | $rss | $vol |"
        rows+=("$row")
        if [ "$ext" = stl ]; then
            read -r cpu wall rss < <(measure "$meshd" --no-wall --max-memory-mb=4096 "$f")
            rows+=("| torus $name | stl | alexandrite-meshd CLI --no-wall | $cpu | $wall | $rss | same |")
            read -r ms adm < <(best_pair "$f" "$hint")
            rows+=("| torus $name | stl | mesh_analyze() via SQL (wall thickness included; spawn+pipe+sha256) | – | $(awk "BEGIN{printf \"%.2f\", $ms/1000}") | – | same |")
            vol=$(admesh "$f" 2>/dev/null | sed -n 's/.*Volume *: *\([0-9.e+-]*\).*/\1/p')
            rows+=("| torus $name | stl | admesh 0.98.4 (default: checks and fixes) | – | $adm | – | $vol |")
            ratios+=("torus $name stl: mesh_analyze/admesh = $(awk "BEGIN{printf \"%.2f\", ($ms/1000)/$adm}") (min wall ${wallmm} mm)")
            cat > "$work/npstl.py" <<'PY'
import sys
from stl import mesh
m = mesh.Mesh.from_file(sys.argv[1])
vol, cog, inertia = m.get_mass_properties()
print("%.9f" % vol)
PY
            read -r cpu wall rss < <(measure $PY "$work/npstl.py" "$f")
            vol=$($PY "$work/npstl.py" "$f" 2>/dev/null)
            rows+=("| torus $name | stl | numpy-stl 2.9.0 (mass properties, no topology) | $cpu | $wall | $rss | $vol |")
        else
            ms=$(sql_ms "$f" "$hint")
            rows+=("| torus $name | $ext | mesh_analyze() via SQL (wall thickness included) | – | $(awk "BEGIN{printf \"%.2f\", $ms/1000}") | – | same |")
        fi
    done
    done
done

{
    echo "Machine: $(nproc) vCPU, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME"), shared with other work; $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "| mesh | file | tool | CPU s | wall s | peak RSS MB | volume mm³ |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo
    printf '%s\n' "${ratios[@]}"
    for s in $sizes; do
        echo "Oracle volume of the $(echo ${s%%:*}) torus (math.fsum over the generator's double-precision vertices; files store float32): $(python3 "$gen" --expect "torus:${s#*:}" | cut -d' ' -f1) mm³."
    done
} | tee "$OUT"

if [ "$fuzz" != 0 ]; then
    alx_log "fuzzing for $fuzz s"
    "$ALX_TOP/test/fuzz/run.sh" "$fuzz"
fi
