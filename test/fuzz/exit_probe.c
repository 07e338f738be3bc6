/*-------------------------------------------------------------------------
 *
 * exit_probe.c
 *	  libFuzzer target that checks run.sh's reading of exit statuses.
 *
 * run.sh decides whether the fork-mode decode run ended well from the
 * fuzzer's exit status, which in fork mode is the status of its last job.
 * A job killed by a signal the sanitizer handles (SIGSEGV, SIGBUS, SIGFPE)
 * exits with the sanitizer's "exitcode" option, 1 unless set, not with
 * libFuzzer's -error_exitcode: when the last job of a run crashed in assimp,
 * a finding the artifacts account for, the run exited 1 and looked like a
 * failure of the fuzzer itself (soak run 10 of b68a095, 2026-12-04: ASan
 * "BUS on unknown address" 39 s into 40).  run.sh therefore sets
 * exitcode=77 for both sanitizers, and checks with this target, run in fork
 * mode as the decode target is, that a run whose last job died by SIGBUS
 * ends with status 77: with EXIT_PROBE_CRASH set in the environment every
 * input raises SIGBUS (every job crashes, so the last one does); without
 * it, only the input "BUS" does.
 *
 * test/fuzz/exit_probe.c
 *
 *-------------------------------------------------------------------------
 */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (getenv("EXIT_PROBE_CRASH") != NULL || (size == 3 && memcmp(data, "BUS", 3) == 0))
		raise(SIGBUS);
	return 0;
}
