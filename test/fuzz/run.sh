#!/usr/bin/env bash
# Build and run the mesh libFuzzer target for SECONDS (default 45).
#   test/fuzz/run.sh [SECONDS] [WORKDIR]
# Seeds: the corpus kept in the repository (test/fuzz/corpus), every
# fixture shape of test/gen in every encoding, and the hostile corpus.
# libFuzzer runs in fork mode and keeps going after crashes, out-of-memory
# inputs and timeouts, because Debian's assimp 5.2.5 has known crashes of
# its own (docs/mesh.md).  Every such artifact is replayed and attributed by
# the first stack frame outside the sanitizers, libFuzzer and the C/C++
# runtimes; the run FAILS when:
#   - the target does not build, or clang is missing under CI=true;
#   - the fuzzer exits with an error of its own or ran no input at all;
#   - a crash, an out-of-memory input or a timeout is in our code
#     (src/mesh/ or test/fuzz/), including a trap of the differential STL
#     check (native reader and assimp disagree).
# Prints PASS/FAIL lines for scripts/test.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-45}
work=${2:-}
keep=1
[ -z "$work" ] && { work=$(mktemp -d /tmp/alx-mesh-fuzz.XXXXXX); keep=0; }
mkdir -p "$work/corpus" "$work/seeds" "$work/artifacts"
if ! command -v clang >/dev/null; then
    if [ -n "${CI:-}" ]; then echo "FAIL mesh fuzz: clang is not installed (scripts/install-deps)"; exit 1; fi
    echo "mesh fuzz: clang not installed, not run"; exit 0
fi

bin=$work/mesh_fuzz
src=$top/src/mesh
# shellcheck disable=SC2046
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$src" $(pkg-config --cflags assimp zlib) \
    "$top/test/fuzz/mesh_fuzz.c" "$src/meshio.c" "$src/geometry.c" "$src/prescan.c" \
    "$src/stlbin.c" "$src/geomorder.c" "$src/wall.c" "$src/pool.c" \
    -o "$bin" $(pkg-config --libs assimp zlib) -lembree3 -lpthread -lm ||
    { echo "FAIL mesh fuzz: the target does not build"; exit 1; }

# seeds: selector byte + file
gen=$top/test/gen/genmesh.py
for shape in cube open twoshells void flipped degenerate; do
    for fmt in stl:0 stla:0 obj:1 ply:2 plyb:2 gltf:3 glb:4 3mf:5; do
        f=${fmt%%:*} sel=${fmt##*:}
        { printf "\\x$(printf %02x "$sel")"; python3 "$gen" "$shape" "$f"; } > "$work/seeds/$shape.$f"
    done
    # the differential binary STL path takes the records without a header
    { printf '\x07'; python3 "$gen" "$shape" stl | tail -c +85; } > "$work/seeds/$shape.stlpair"
done
python3 "$gen" --hostile "$work/hostile" >/dev/null
rm -f "$work/hostile/zip_bomb.3mf"
for h in "$work"/hostile/*; do
    { printf '\x06'; cat "$h"; } > "$work/seeds/hostile.$(basename "$h")"
done
head -c 2000 /dev/urandom > "$work/seeds/soup.bin"; printf '\x09' | dd of="$work/seeds/soup.bin" conv=notrunc 2>/dev/null
dirs=("$work/corpus" "$work/seeds")
[ -d "$top/test/fuzz/corpus" ] && dirs+=("$top/test/fuzz/corpus")

log=$work/fuzz.log
ASAN_OPTIONS=detect_leaks=0 "$bin" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -max_len=65536 -artifact_prefix="$work/artifacts/" "${dirs[@]}" > "$log" 2>&1
frc=$?
runs=$(grep -oE '^#[0-9]+' "$log" | tr -d '#' | sort -n | tail -1)
if [ $frc != 0 ]; then
    tail -20 "$log"; echo "FAIL mesh fuzz: libFuzzer exited with status $frc (log $log)"; exit 1
fi
if [ -z "$runs" ] || [ "$runs" = 0 ]; then
    tail -20 "$log"; echo "FAIL mesh fuzz: no input was run (log $log)"; exit 1
fi

# Replay every artifact: the first stack frame outside the sanitizer,
# libFuzzer, libc and libstdc++ tells whose crash, leak, OOM or hang it is.
ours=0 theirs=0
for a in "$work"/artifacts/crash-* "$work"/artifacts/oom-* "$work"/artifacts/timeout-* "$work"/artifacts/leak-*; do
    [ -e "$a" ] || continue
    out=$(ASAN_OPTIONS=detect_leaks=0 timeout 60 "$bin" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 "$a" 2>&1)
    frame=$(printf '%s\n' "$out" | grep -E '^ +#[0-9]+ 0x' |
        grep -vE '__sanitizer|fuzzer::|libc\.so|libstdc\+\+|pthread_kill|raise|abort|__asan|__ubsan|__interceptor|in malloc|in calloc|in realloc|operator new|__cxa|libgcc|libz\.so|in __libc' |
        head -1)
    case $frame in
        *src/mesh/*|*test/fuzz/*)
            ours=$((ours + 1)); echo "in alexandrite code: $(basename "$a")"; echo "  $frame" ;;
        '')
            # no stack at all (a trap without symbols, a hang with no report)
            ours=$((ours + 1)); echo "unattributed artifact (counted as ours): $(basename "$a")"
            printf '%s\n' "$out" | tail -5 ;;
        *)
            theirs=$((theirs + 1)); echo "in a library (assimp): $(basename "$a") at ${frame##* in }" ;;
    esac
done
echo "mesh fuzz: ${secs}s, $runs executions, $((ours + theirs)) artifacts (crash/oom/timeout), $ours in alexandrite code"
if [ "$ours" != 0 ]; then
    echo "FAIL mesh fuzz: artifacts in alexandrite code (inputs in $work/artifacts, log $log)"
    exit 1
fi
echo "PASS mesh fuzz: $runs executions, nothing in alexandrite code"
[ $keep = 1 ] || rm -rf "$work"
exit 0
