#!/usr/bin/env bash
# Builds and runs the mesh fuzz targets; prints TAP (scripts/test's extra
# suite counts its assertions).
#   test/fuzz/run.sh [SECONDS] [WORKDIR]
# SECONDS (default $ALX_MESH_FUZZ_SECONDS, else 60) is the fuzzing time of
# both targets together: a third for geom, the rest for decode.  WORKDIR keeps
# the binaries, logs, new inputs and artifacts (default: a temporary
# directory, removed when everything passed).
#
# Two targets, built with clang, libFuzzer, ASan and UBSan from the helper's
# sources (MESHD_SRCS of src/mesh/module.mk, without its main program and
# its allocation interposer, which the sanitizer replaces):
#   geom_fuzz    alexandrite's own metrics code over triangle soups (the soup
#                path of mesh_fuzz.c, never a parser; geom_fuzz.c).  Strict:
#                no -ignore_* flag, leaks detected; any crash, sanitizer
#                report, leak, out-of-memory or timeout fails the run.
#   decode_fuzz  mesh_fuzz.c, every path: AlxMeshDecode() as the helper calls
#                it (our format checks, the confined I/O callbacks, assimp
#                5.2.5 from Debian, not instrumented, the scene walk, the
#                metrics) and whatever else mesh_fuzz.c selects.  assimp has
#                memory-safety bugs of its own (docs/mesh.md), contained by the
#                helper's process boundary, so this target runs in fork mode
#                and every artifact (crash, out-of-memory, timeout) is replayed
#                and attributed by its stack:
#                  - frames of the sanitizers, libFuzzer, libc, libstdc++,
#                    libgcc, zlib and the allocator are passed over;
#                  - a crash or out-of-memory is attributed to the first frame
#                    left: alexandrite's (src/mesh/, test/fuzz/) fails the
#                    run, libassimp's is reported as assimp's;
#                  - a timeout is a sample of where the time goes: when that
#                    frame is one of our I/O callbacks (mem_read, mem_seek,
#                    mem_tell, mem_size) called by assimp, the loop is
#                    assimp's and the next frame decides;
#                  - anything else (no frame, another library) fails the run.
# The seed corpus is in git (test/fuzz/corpus/, see make-corpus.py); every
# seed must replay cleanly in its target.  The run fails when clang is
# missing, a target does not build, a replay or a fuzzer fails, a fuzzer
# runs no input, or a finding is alexandrite's.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-${ALX_MESH_FUZZ_SECONDS:-60}}
work=${2:-}
keep=1
[ -z "$work" ] && { work=$(mktemp -d /tmp/alx-mesh-fuzz.XXXXXX); keep=0; }
mkdir -p "$work"
corpus=$top/test/fuzz/corpus
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() { local what=$1 crc; shift; "$@"; crc=$?; if [ $crc = 0 ]; then ok "$what"; else not_ok "$what"; fi; return $crc; }
finish() { echo "1..$n"; [ $failed = 0 ] && [ $keep = 0 ] && rm -rf "$work"; [ $failed = 0 ] || echo "# inputs, logs and artifacts kept in $work"; exit $((failed > 0)); }

if ! command -v clang >/dev/null; then
    not_ok "clang is installed (scripts/install-deps installs it; a missing fuzzer is an install bug)"
    finish
fi
ok "clang is installed"

# The helper's sources and libraries, as the build defines them
# (src/mesh/module.mk), without its main program.
mkvar() { make -s --no-print-directory -C "$top" --eval='alx-print-%: ; @echo $($*)' "alx-print-$1" 2>/dev/null; }
srcs=$(mkvar MESHD_SRCS) cppflags=$(mkvar MESHD_CPPFLAGS) libs=$(mkvar MESHD_LIBS)
if [ -z "$srcs" ]; then
    srcs="src/mesh/meshio.c src/mesh/geometry.c"
    cppflags=$(pkg-config --cflags assimp zlib) libs="$(pkg-config --libs assimp zlib) -lm"
fi
srcs=$(for s in $srcs; do case $s in */meshd.c|*/memguard.c|*/faultguard.c|*/sandbox_probe.c) ;; *) echo "$top/$s" ;; esac; done)
san="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
build() {   # build NAME SOURCES... -- LIBS...
    local name=$1; shift
    # shellcheck disable=SC2086
    clang $san -I"$top/src/mesh" $cppflags "$@" -o "$work/$name" >"$work/$name.build.log" 2>&1
}
# shellcheck disable=SC2086
check "geom_fuzz builds (test/fuzz/geom_fuzz.c)" \
    build geom_fuzz -I"$top/test/fuzz" "$top/test/fuzz/geom_fuzz.c" $srcs $libs \
    || sed 's/^/# /' "$work/geom_fuzz.build.log"
# shellcheck disable=SC2086
check "decode_fuzz builds (test/fuzz/mesh_fuzz.c $(echo $srcs | sed "s|$top/||g"))" \
    build decode_fuzz "$top/test/fuzz/mesh_fuzz.c" $srcs $libs \
    || sed 's/^/# /' "$work/decode_fuzz.build.log"
[ -x "$work/geom_fuzz" ] && [ -x "$work/decode_fuzz" ] || finish


common="-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=65536"
# A crash by a signal the sanitizer handles (SIGSEGV, SIGBUS, SIGFPE) exits
# with the sanitizer's "exitcode", 1 unless set: 77 here, libFuzzer's
# -error_exitcode, so that a fork-mode run whose last job crashed is told
# from a failure of the fuzzer itself (see exit_probe.c).
sanexit=exitcode=77
export UBSAN_OPTIONS=print_stacktrace=1:$sanexit

# The exit statuses the decode check below relies on: a fork-mode run, with
# the decode run's flags, whose last job died by SIGBUS ends with 77, runs
# to its end and leaves an artifact (exit_probe.c; before exitcode=77 it
# ended with 1).  2 s.
probe_exit() {
    local st
    build exit_probe "$top/test/fuzz/exit_probe.c" || { sed 's/^/# /' "$work/exit_probe.build.log"; return 1; }
    mkdir -p "$work/exit_probe.corpus" "$work/exit_probe.artifacts"
    EXIT_PROBE_CRASH=1 ASAN_OPTIONS=detect_leaks=0:$sanexit "$work/exit_probe" $common -error_exitcode=77 \
        -timeout_exitcode=70 -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -max_total_time=2 \
        -artifact_prefix="$work/exit_probe.artifacts/" "$work/exit_probe.corpus" > "$work/exit_probe.log" 2>&1 && st=0 || st=$?
    grep -q 'AddressSanitizer: BUS' "$work/exit_probe.log" && grep -q '^INFO: fuzzed for ' "$work/exit_probe.log" &&
        [ "$st" = 77 ] && ls "$work"/exit_probe.artifacts/crash-* >/dev/null 2>&1 ||
        { echo "# exit status $st"; grep -E 'ERROR|SUMMARY|INFO: (fuzzed|exiting)' "$work/exit_probe.log" | tail -5 | sed 's/^/# /'; return 1; }
}
check "a fork-mode run whose last job died by SIGBUS exits 77 and leaves its artifact (test/fuzz/exit_probe.c)" probe_exit

# replay TARGET ENV_ASAN: every seed once, nothing may fail
replay() {
    local t=$1 asan=$2 files count ran rc
    files=("$corpus/$t"/*)
    count=${#files[@]}
    ASAN_OPTIONS=$asan "$work/${t}_fuzz" $common "${files[@]}" > "$work/$t.replay.log" 2>&1
    rc=$?
    ran=$(grep -c '^Executed ' "$work/$t.replay.log")
    if [ $rc = 0 ] && [ "$ran" = "$count" ] && [ "$count" -gt 0 ]; then
        ok "$t: every seed of test/fuzz/corpus/$t replays cleanly ($ran inputs)"
    else
        not_ok "$t: every seed of test/fuzz/corpus/$t replays cleanly ($ran of $count inputs, exit status $rc)"
        grep -E 'ERROR|SUMMARY|Running|^ +#[0-9]' "$work/$t.replay.log" | tail -40 | sed 's/^/# /'
    fi
}
replay geom detect_leaks=1:$sanexit
replay decode detect_leaks=0:$sanexit

# --- geom: strict ---------------------------------------------------------
gsecs=$(( secs / 3 )); [ $gsecs -lt 1 ] && gsecs=1
dsecs=$(( secs - gsecs )); [ $dsecs -lt 1 ] && dsecs=1
mkdir -p "$work/geom.new" "$work/geom.artifacts"
ASAN_OPTIONS=detect_leaks=1:$sanexit "$work/geom_fuzz" $common -max_len=4096 -max_total_time="$gsecs" \
    -print_final_stats=1 -artifact_prefix="$work/geom.artifacts/" \
    "$work/geom.new" "$corpus/geom" > "$work/geom.log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/geom.log" | tail -1)
if [ $rc = 0 ]; then
    ok "geom: ${gsecs} s of fuzzing, no crash, sanitizer report, leak, out-of-memory or timeout"
else
    not_ok "geom: ${gsecs} s of fuzzing, no crash, sanitizer report, leak, out-of-memory or timeout (exit status $rc)"
    grep -E 'ERROR|SUMMARY|^ +#[0-9]|Test unit written' "$work/geom.log" | head -40 | sed 's/^/# /'
fi
check "geom: the fuzzer ran inputs (${runs:-no} executions)" test "${runs:-0}" -gt 0

# --- decode: fork mode, findings attributed -----------------------------------
mkdir -p "$work/decode.new" "$work/decode.artifacts"
ASAN_OPTIONS=detect_leaks=0:$sanexit "$work/decode_fuzz" $common -error_exitcode=77 -timeout_exitcode=70 -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -max_total_time="$dsecs" -artifact_prefix="$work/decode.artifacts/" \
    "$work/decode.new" "$corpus/decode" > "$work/decode.log" 2>&1
rc=$?
runs=$(grep -oE '^#[0-9]+' "$work/decode.log" | tr -d '#' | sort -n | tail -1)
# In fork mode libFuzzer exits with the status of its last job: 70
# (timeout), 71 (out-of-memory) or 77 (crash, by a signal too: exitcode=77 above) when that job ended on a
# finding, which the artifacts below account for; anything else, or no
# "fuzzed for" line, means the fuzzer itself failed.
# A finding's status needs its artifact.
fork_ok() {
    grep -q '^INFO: fuzzed for ' "$work/decode.log" &&
        case $rc in
            0) true ;;
            70|71|77) ls "$work"/decode.artifacts/* >/dev/null 2>&1 ;;
            *) false ;;
        esac
}
check "decode: the fork-mode fuzzer ran its ${dsecs} s to the end (exit status $rc)" fork_ok ||
    grep -vE 'NEW_FUNC' "$work/decode.log" | tail -20 | sed 's/^/# /'
check "decode: the fuzzer ran inputs (${runs:-no} executions in ${dsecs} s)" test "${runs:-0}" -gt 0

# attribute ARTIFACT: prints "ours FRAME", "assimp FRAME" or "unknown FRAME"
runtime='__sanitizer|fuzzer::|libc\.so|libstdc\+\+|libgcc|ld-linux| in (__pthread_kill_implementation|raise|abort) |__asan|__ubsan|__interceptor|__lsan| in malloc| in calloc| in realloc| in free| in operator new| in operator delete|__cxa|libz\.so|_start|__libc_start|LLVMFuzzerTestOneInput|/decode_fuzz\+|/geom_fuzz\+'
attribute() {
    local a=$1 kind frames first second
    case $(basename "$a") in timeout-*) kind=timeout ;; oom-*) kind=oom ;; *) kind=crash ;; esac
    # full stacks (the fast unwinder stops in libstdc++), the run's limits
    local out st
    out=$(ASAN_OPTIONS=detect_leaks=0:fast_unwind_on_malloc=0:malloc_context_size=64 \
        timeout 120 "$work/decode_fuzz" $common "$a" 2>&1) && st=0 || st=$?
    # A timeout that the replay, with the same 10 s limit, runs to the end
    # was the machine (load), not the input: a real hang times out again.
    if [ $kind = timeout ] && [ $st = 0 ]; then
        echo "unreproduced timeout: ran to the end on replay"
        return
    fi
    frames=$(echo "$out" | grep -E '^ +#[0-9]+ 0x' | grep -vE "$runtime")
    first=$(echo "$frames" | sed -n 1p) second=$(echo "$frames" | sed -n 2p)
    if [ $kind = timeout ] && echo "$first" | grep -qE ' in mem_(read|seek|tell|size) .*src/mesh/' &&
        echo "$second" | grep -q 'libassimp\.so'; then
        first=$second
    fi
    case $first in
        *src/mesh/*|*test/fuzz/*) echo "ours $kind ${first##* in }" ;;
        *libassimp.so*) echo "assimp $kind ${first##* in }" ;;
        *) echo "unknown $kind ${first:-no frame}" ;;
    esac
}
ours=0 theirs=0 unknown=0 unreproduced=0
for a in "$work"/decode.artifacts/*; do
    [ -e "$a" ] || continue
    verdict=$(attribute "$a")
    echo "# $(basename "$a"): $verdict"
    case $verdict in
        ours*) ours=$((ours + 1)) ;;
        assimp*) theirs=$((theirs + 1)) ;;
        unreproduced*) unreproduced=$((unreproduced + 1)) ;;
        *) unknown=$((unknown + 1)) ;;
    esac
done
check "decode: no crash, out-of-memory or timeout in alexandrite code ($ours; assimp's own: $theirs)" test $ours = 0
check "decode: every finding attributed to alexandrite or assimp ($unknown unattributed; $unreproduced timeouts not reproduced on replay)" test $unknown = 0
finish
