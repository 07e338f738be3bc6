/*-------------------------------------------------------------------------
 *
 * sandbox_probe.c
 *	  Test-only: make one forbidden system call after the lockdown.
 *
 * Linked only into meshd-sandbox-test (never installed).  The program runs
 * exactly like alexandrite-meshd up to and including AlxSandboxLockdown(),
 * then AlxSandboxProbe() announces on stderr what it tries and tries it.
 * A sandbox that holds kills the process with SIGSYS before the call
 * returns; if it returns, the probe says so and exits with code 99, which
 * test/t/021_mesh_sandbox.pl reports as a failure.
 *
 * Probes that must be refused: fork, fork_in_worker (from a thread of the
 * pool started before the lockdown), thread, execve, open, socket, unlink,
 * rename, kill, io_uring_setup, x32, ptrace, mmap_exec, mprotect_exec,
 * setrlimit, write_fd (a write to a descriptor other than 1 and 2).
 * Controls: "none" (the analysis proceeds and succeeds), "abort" (abort()
 * still kills with SIGABRT, not SIGSYS), "segv" (a write to an unmapped
 * address still kills with SIGSEGV, even while assimp parses: faultguard.c
 * lets every fault but a stack overflow through), "recurse" (unbounded
 * recursion in the main thread while assimp parses ends in faultguard.c's
 * clean refusal, exit 3), "recurse_outside" (the same in our own code is a
 * crash, SIGSEGV), "assert" (assimp's ai_assert() handler while it parses:
 * exit 3 with the expression), "assert_outside" (the handler outside the
 * parse: SIGABRT, the expression on stderr), "assert_after_oom" (the
 * handler after an allocation failed under RLIMIT_AS: exit 4, the memory
 * limit), "spin" (burn CPU until the CPU
 * budget stops the process with SIGXCPU; meanwhile the test reads the
 * process's limits and seccomp state from /proc).
 *
 * IDENTIFICATION
 *	  src/mesh/sandbox_probe.c
 *
 *-------------------------------------------------------------------------
 */
#include "sandbox.h"
#include "meshio.h"
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#define PROBE_RETURNED 99

static void *
thread_main(void *arg)
{
	return arg;
}

/* fork from a pool thread: the filter must hold for every thread */
static void
fork_in_worker(void *arg, int thread)
{
	long	   *rc = arg;

	*rc = fork();
}

static void
say(const char *what, const char *arg)
{
	char		line[512];
	int			n = snprintf(line, sizeof(line), "sandbox probe: trying %s%s%s\n",
							 what, arg ? " " : "", arg ? arg : "");

	if (n > 0)
		(void) write(2, line, (size_t) n < sizeof(line) ? (size_t) n : sizeof(line) - 1);
}

static void
returned(const char *what, long rc)
{
	char		line[256];
	int			n = snprintf(line, sizeof(line), "sandbox probe: %s returned %ld (errno %d)\n",
							 what, rc, errno);

	if (n > 0)
		(void) write(2, line, (size_t) n);
	_exit(PROBE_RETURNED);
}

/* Recursion that no compiler may turn into a loop: a frame of 1 kB each. */
static volatile int recurse_stop = -1;	/* never reached */

static int
recurse(int depth)
{
	volatile char frame[1024];

	if (depth == recurse_stop)
		return 0;
	frame[0] = (char) depth;
	frame[sizeof(frame) - 1] = (char) (depth >> 8);
	return recurse(depth + 1) + frame[0] + frame[sizeof(frame) - 1];
}

/* libassimp's ai_assert() handler, which the helper defines (faultguard.c) */
extern void assimp_assert_violation(const char *expr, const char *file, int line)
			__asm__("_ZN6Assimp17aiAssertViolationEPKcS1_i");

/* name[:path]; returns only for the control "none". */
void
AlxSandboxProbe(const char *spec)
{
	char		name[64];
	const char *path = strchr(spec, ':');
	long		rc = 0;

	snprintf(name, sizeof(name), "%.*s", (int) (path ? path - spec : (long) strlen(spec)), spec);
	if (path)
		path++;
	else
		path = "/etc/passwd";
	say(name, path);
	if (strcmp(name, "none") == 0)
		return;
	if (strcmp(name, "fork") == 0)
		rc = fork();
	else if (strcmp(name, "fork_in_worker") == 0)
	{
		if (AlxPoolSize() < 2)
		{
			fprintf(stderr, "sandbox probe: no worker thread to fork from\n");
			_exit(PROBE_RETURNED);
		}
		AlxPoolRunOne(fork_in_worker, &rc);
		AlxPoolWaitOne();
	}
	else if (strcmp(name, "thread") == 0)
	{
		pthread_t	t;

		rc = pthread_create(&t, NULL, thread_main, NULL);
	}
	else if (strcmp(name, "execve") == 0)
	{
		char	   *argv[] = {"true", NULL};
		char	   *envp[] = {NULL};

		rc = execve("/bin/true", argv, envp);
	}
	else if (strcmp(name, "open") == 0)
		rc = open(path, O_RDONLY);
	else if (strcmp(name, "socket") == 0)
		rc = socket(AF_INET, SOCK_STREAM, 0);
	else if (strcmp(name, "unlink") == 0)
		rc = unlink(path);
	else if (strcmp(name, "rename") == 0)
	{
		char		to[4096];

		snprintf(to, sizeof(to), "%s.renamed", path);
		rc = rename(path, to);
	}
	else if (strcmp(name, "kill") == 0)
		rc = kill(getppid(), 0);
	else if (strcmp(name, "io_uring_setup") == 0)
	{
		char		params[120];

		memset(params, 0, sizeof(params));
		rc = syscall(SYS_io_uring_setup, 4, params);
	}
	else if (strcmp(name, "x32") == 0)
		rc = syscall(0x40000000 | SYS_getpid);
	else if (strcmp(name, "ptrace") == 0)
		rc = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	else if (strcmp(name, "mmap_exec") == 0)
		rc = (long) mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	else if (strcmp(name, "mprotect_exec") == 0)
	{
		void	   *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		rc = mprotect(p, 4096, PROT_READ | PROT_EXEC);
	}
	else if (strcmp(name, "setrlimit") == 0)
	{
		struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};

		rc = setrlimit(RLIMIT_CPU, &rl);
	}
	else if (strcmp(name, "write_fd") == 0)
		rc = write(0, "x", 1);
	else if (strcmp(name, "read_stdin") == 0)
	{
		char		c;

		rc = read(0, &c, 1);
	}
	else if (strcmp(name, "read_fd") == 0)
	{
		char		c;

		rc = read(3, &c, 1);
	}
	else if (strcmp(name, "abort") == 0)
		abort();
	else if (strcmp(name, "segv") == 0)
	{
		volatile uintptr_t unmapped = 64;	/* the first page is never mapped */

		alx_mesh_in_assimp = 1;
		*(volatile int *) unmapped = 1;
	}
	else if (strcmp(name, "recurse") == 0)
	{
		alx_mesh_in_assimp = 1;
		rc = recurse(0);
	}
	else if (strcmp(name, "recurse_outside") == 0)
		rc = recurse(0);
	else if (strcmp(name, "assert") == 0)
	{
		alx_mesh_in_assimp = 1;
		assimp_assert_violation("probe \"quoted\" != nullptr", "./code/Probe.cpp", 42);
	}
	else if (strcmp(name, "assert_outside") == 0)
		assimp_assert_violation("probe != nullptr", "./code/Probe.cpp", 42);
	else if (strcmp(name, "assert_after_oom") == 0)
	{
		/* 32 TB: beyond any RLIMIT_AS, so malloc() fails (memguard.c notes it) */
		void	   *volatile p = malloc((size_t) 1 << 45);

		if (p != NULL)
		{
			fprintf(stderr, "sandbox probe: a 32 TB allocation succeeded\n");
			_exit(PROBE_RETURNED);
		}
		alx_mesh_in_assimp = 1;
		assimp_assert_violation("mRootStream != nullptr", "./code/Probe.cpp", 43);
	}
	else if (strcmp(name, "spin") == 0)
	{
		volatile unsigned long long x = 0;

		for (;;)
			x++;
	}
	else
	{
		fprintf(stderr, "sandbox probe: unknown probe \"%s\"\n", name);
		_exit(2);
	}
	returned(name, rc);
}
