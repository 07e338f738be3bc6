#!/usr/bin/env bash
# Build and run the mesh libFuzzer target for SECONDS (default 45).
#   test/fuzz/run.sh [SECONDS] [WORKDIR]
# Seeds: every fixture shape of test/gen in every encoding, plus the hostile
# corpus.  libFuzzer runs in fork mode and keeps going after crashes and
# out-of-memory inputs, because Debian's assimp 5.2.5 has known crashes of
# its own (docs/mesh.md): the run FAILS only if a sanitizer report's top
# frames are in our code (src/mesh/ or test/fuzz/).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-45}
work=${2:-}
keep=1
[ -z "$work" ] && { work=$(mktemp -d /tmp/alx-mesh-fuzz.XXXXXX); keep=0; }
mkdir -p "$work/corpus" "$work/seeds" "$work/artifacts"
command -v clang >/dev/null || { echo "clang not installed, skipping"; exit 0; }

bin=$work/mesh_fuzz
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$top/src/mesh" $(pkg-config --cflags assimp zlib) \
    "$top/test/fuzz/mesh_fuzz.c" "$top/src/mesh/meshio.c" "$top/src/mesh/geometry.c" "$top/src/mesh/prescan.c" \
    -o "$bin" $(pkg-config --libs assimp zlib) -lm || { echo "mesh fuzz target does not build"; exit 1; }

# seeds: selector byte + file
gen=$top/test/gen/genmesh.py
i=0
for shape in cube open twoshells void flipped degenerate; do
    for fmt in stl:0 stla:0 obj:1 ply:2 plyb:2 gltf:3 glb:4 3mf:5; do
        f=${fmt%%:*} sel=${fmt##*:}
        { printf "\\x$(printf %02x "$sel")"; python3 "$gen" "$shape" "$f"; } > "$work/seeds/$shape.$f"
        i=$((i + 1))
    done
done
python3 "$gen" --hostile "$work/hostile" >/dev/null
rm -f "$work/hostile/zip_bomb.3mf" "$work/hostile/star_polygon.obj"
for h in "$work"/hostile/*; do
    { printf '\x06'; cat "$h"; } > "$work/seeds/hostile.$(basename "$h")"
done
head -c 2000 /dev/urandom > "$work/seeds/soup.bin"; printf '\x09' | dd of="$work/seeds/soup.bin" conv=notrunc 2>/dev/null

log=$work/fuzz.log
ASAN_OPTIONS=detect_leaks=0 "$bin" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -max_len=65536 -artifact_prefix="$work/artifacts/" \
    "$work/corpus" "$work/seeds" > "$log" 2>&1
runs=$(grep -oE '^#[0-9]+' "$log" | tr -d '#' | sort -n | tail -1)
crashes=$(ls "$work"/artifacts/crash-* 2>/dev/null | wc -l)
# Replay every crash: the first stack frame outside the sanitizer, libFuzzer,
# libc and libstdc++ tells whose crash it is.
ours=0
for a in "$work"/artifacts/crash-*; do
    [ -e "$a" ] || continue
    frame=$(ASAN_OPTIONS=detect_leaks=0 "$bin" "$a" 2>&1 | grep -E '^ +#[0-9]+ 0x' |
        grep -vE '__sanitizer|fuzzer::|libc\.so|libstdc\+\+|pthread_kill|raise|abort|__asan|__ubsan|__interceptor|in malloc|in calloc|in realloc|operator new|__cxa|libgcc|libz\.so' |
        head -1)
    case $frame in
        *src/mesh/*|*test/fuzz/*)
            ours=$((ours + 1)); echo "crash in alexandrite code: $a"; echo "  $frame" ;;
        *)
            echo "crash in a library (assimp): $(basename "$a") ${frame:+at ${frame##* in }}" ;;
    esac
done
echo "mesh fuzz: ${secs}s, ${runs:-?} executions, $crashes crash inputs (assimp's own included), $ours in alexandrite code"
if [ "$ours" != 0 ]; then
    echo "mesh fuzz failed: sanitizer reports in alexandrite code (inputs in $work/artifacts, log $log)"
    exit 1
fi
echo "mesh fuzz ok: no crash in alexandrite code"
[ $keep = 1 ] || rm -rf "$work"
