/*-------------------------------------------------------------------------
 *
 * sandbox.c
 *	  Resource limits and the seccomp allow-list of alexandrite-meshd.
 *
 * The allow-list is what the helper was measured to need once its input is
 * in memory and its threads exist (strace -f -c over the test corpus, the
 * hostile corpus and the wall-thickness runs; docs/mesh.md): writing to
 * stdout and stderr, exiting, anonymous memory that is never executable,
 * futexes between its own threads, and what abort() needs to kill the
 * process itself.  Everything else -- opening anything, sockets, exec,
 * fork and clone, kill of another process, rename, unlink, io_uring,
 * ptrace, any x32 or 32-bit system call -- kills the whole process with
 * SIGSYS, which the backend reports as a sandbox violation.
 *
 * RLIMIT_NPROC is 0 as well: the thread pool and everything else that runs
 * threads is started before the lockdown (see meshd.c), so the helper never
 * needs to create a process or thread afterwards, and the limit is a second
 * line behind the filter's refusal of clone.
 *
 * IDENTIFICATION
 *	  src/mesh/sandbox.c
 *
 *-------------------------------------------------------------------------
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

static bool
is_regular_file(int fd)
{
	struct stat sb;

	return fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Process properties and input-independent limits, before reading input. */
void
AlxSandboxPrepare(void)
{
	struct rlimit rl;

	(void) prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	(void) prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	(void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	rl.rlim_cur = rl.rlim_max = 0;
	(void) setrlimit(RLIMIT_CORE, &rl);

	/*
	 * No file may grow.  When stdout or stderr itself is a regular file (the
	 * CLI redirected by a user) the limit would stop our own output, so it
	 * is left out; the seccomp filter still refuses opening anything.
	 */
	if (!is_regular_file(1) && !is_regular_file(2))
		(void) setrlimit(RLIMIT_FSIZE, &rl);
	rl.rlim_cur = rl.rlim_max = 16;
	(void) setrlimit(RLIMIT_NOFILE, &rl);
	if (chdir("/") != 0)
	{
		fprintf(stderr, "could not change to the root directory\n");
		exit(5);
	}
}

/* Size of the address space now, from /proc/self/statm (pages). */
unsigned long long
AlxSandboxAddressSpace(void)
{
	char		buf[128];
	int			fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	ssize_t		n;
	unsigned long long pages = 0;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	pages = strtoull(buf, NULL, 10);
	return pages * (unsigned long long) sysconf(_SC_PAGESIZE);
}

static bool
set_limit(int resource, rlim_t soft, rlim_t hard, const char *what,
		  char *err, size_t errlen)
{
	struct rlimit rl;

	rl.rlim_cur = soft;
	rl.rlim_max = hard;
	if (setrlimit(resource, &rl) != 0)
	{
		snprintf(err, errlen, "could not set the %s limit: %s", what, strerror(errno));
		return false;
	}
	return true;
}

/* Add one rule; remembers the first failure in *rc. */
static void
allow(scmp_filter_ctx ctx, int *rc, int nr, unsigned int nargs,
	  const struct scmp_arg_cmp *args)
{
	int			r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, nargs, args);

	if (r != 0 && *rc == 0)
		*rc = r;
}

/*
 * The allow-list.  Arguments are checked where a call could reach beyond
 * the process: write only to 1 and 2, memory only anonymous and never
 * executable, signals only SIGABRT to this very process.
 */
static bool
install_filter(char *err, size_t errlen)
{
	scmp_filter_ctx ctx;
	int			rc = 0;
	struct scmp_arg_cmp fd1[] = {SCMP_A0(SCMP_CMP_EQ, 1)};
	struct scmp_arg_cmp fd2[] = {SCMP_A0(SCMP_CMP_EQ, 2)};
	struct scmp_arg_cmp mmap_ok[] = {
		SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0),
		SCMP_A3(SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, MAP_ANONYMOUS),
	};
	struct scmp_arg_cmp mprotect_ok[] = {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)};
	struct scmp_arg_cmp abort_self[] = {
		SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t) getpid()),
		SCMP_A2(SCMP_CMP_EQ, SIGABRT),
	};
	/*
	 * Measured (strace -f over every fixture in every format, the hostile
	 * corpus and 1M-triangle files): exit_group, brk, munmap, madvise,
	 * futex, clock_gettime (Embree, TBB), mremap (glibc's realloc of a
	 * large block), sysinfo (glibc's qsort asks for the size of physical
	 * memory before sorting a large array: a vertex shared by thousands of
	 * triangles), plus mmap, mprotect and write below.  Not seen but kept:
	 * sched_yield (a spin-wait's back-off), harmless; what abort() needs to
	 * kill the process with SIGABRT (rt_sigprocmask, getpid, gettid, tgkill
	 * below), so that a crash stays a crash; and rt_sigreturn, so that the
	 * one-shot SIGSEGV handler of faultguard.c can return from a fault that
	 * is not a stack overflow and let the process die by the signal (it
	 * only restores registers: every later call still meets this filter).
	 * No thread ever exits: exit is not on the list.
	 */
	static const int plain[] = {
		SCMP_SYS(exit_group),
		SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise),
		SCMP_SYS(futex), SCMP_SYS(sched_yield), SCMP_SYS(clock_gettime),
		SCMP_SYS(sysinfo),
		SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(getpid),
		SCMP_SYS(gettid),
	};

	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (ctx == NULL)
	{
		snprintf(err, errlen, "could not create the seccomp filter");
		return false;
	}
	/* only the native architecture: i386 and x32 calls kill the process */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0 ||
		seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1) != 0 ||
		seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) != 0)
		rc = -1;
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		allow(ctx, &rc, plain[i], 0, NULL);
	allow(ctx, &rc, SCMP_SYS(write), 1, fd1);
	allow(ctx, &rc, SCMP_SYS(write), 1, fd2);
	allow(ctx, &rc, SCMP_SYS(mmap), 2, mmap_ok);
	allow(ctx, &rc, SCMP_SYS(mprotect), 1, mprotect_ok);
	allow(ctx, &rc, SCMP_SYS(tgkill), 2, abort_self);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc != 0)
	{
		snprintf(err, errlen, "could not install the seccomp filter: %s", strerror(rc < 0 ? -rc : rc));
		return false;
	}
	return true;
}

/* Limits that depend on the input, then the filter, for every thread. */
bool
AlxSandboxLockdown(const AlxSandboxLimits *lim, char *err, size_t errlen)
{
	if (lim->memory_mb > 0)
	{
		unsigned long long base = AlxSandboxAddressSpace();
		rlim_t		as = (rlim_t) (base + lim->memory_mb * 1024 * 1024);

		if (!set_limit(RLIMIT_AS, as, as, "memory", err, errlen))
			return false;
	}
	if (lim->cpu_s > 0 &&
		!set_limit(RLIMIT_CPU, (rlim_t) lim->cpu_s, (rlim_t) lim->cpu_s + 1,
				   "CPU", err, errlen))
		return false;
	if (!set_limit(RLIMIT_NPROC, 0, 0, "process", err, errlen))
		return false;
	return install_filter(err, errlen);
}
