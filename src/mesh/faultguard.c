/*-------------------------------------------------------------------------
 *
 * faultguard.c
 *	  Turn the two ways assimp gives up on a hostile file into refusals.
 *
 * assimp does not always throw when a file is inconsistent:
 *
 * - Its importers check many properties of the input with ai_assert(),
 *	 which Debian's build keeps: a failed check prints "ai_assert failure
 *	 in FILE(LINE): EXPR" and calls abort().  A 3MF whose model part fails
 *	 its CRC-32, a 3MF relationship to a missing part, a glTF 1.0 accessor
 *	 larger than its buffer view and a PLY face with an empty index list all
 *	 end there.  The check has done its job -- the file is inconsistent --
 *	 so the helper reports it as an invalid file (22P04) with the failed
 *	 expression, and exits cleanly.  assimp documents the handler as the
 *	 place to customise (ai_assert.h) but does not export its setter, so the
 *	 helper defines Assimp::aiAssertViolation itself: libassimp calls it
 *	 through the PLT, and the executable's definition comes first.
 * - Some importers follow a file's node or component references
 *	 recursively without noticing a cycle (a 3MF component that contains
 *	 itself, a glTF 1.0 node that is its own child): the recursion runs the
 *	 main thread's stack out and the process gets SIGSEGV.  The helper
 *	 handles SIGSEGV on an alternate stack; a fault on an address in the
 *	 main thread's stack range means the stack could not grow: at its
 *	 RLIMIT_STACK end the file nests too deeply or in a cycle (22P04, as the
 *	 prescan's own nesting limits), anywhere else the address-space limit
 *	 stopped it (54000).
 *
 * Any other SIGSEGV -- a bug in our code or in assimp -- is not ours to
 * explain: the handler is one-shot (SA_RESETHAND) and returns, the faulting
 * instruction runs again, and the process dies by the signal, which the
 * backend reports as XX000 "mesh helper crashed" and every test counts as a
 * failure.  An abort() outside ai_assert() stays a SIGABRT the same way.
 *
 * Linked only into the helper, never into the fuzz target: there both
 * failures are for the sanitizer to report.
 *
 * IDENTIFICATION
 *	  src/mesh/faultguard.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

#include "meshrecord.h"
#include "sandbox.h"

/* Main-thread stack range, set by AlxFaultGuardInstall(). */
static uintptr_t stack_lo;		/* lowest address RLIMIT_STACK lets it reach */
static uintptr_t stack_hi;

/* The kernel's gap below a stack (stack_guard_gap, 256 pages) and a margin. */
#define STACK_GAP	((uintptr_t) 1 << 20)
#define STACK_END	((uintptr_t) 64 << 10)

/* A stack larger than this is lowered to it, so an overflow ends at a known place. */
#define STACK_MAX	((rlim_t) 64 << 20)

static void
say(const char *s)
{
	ssize_t		r = write(2, s, strlen(s));

	(void) r;
}

/*
 * Replaces assimp's default handler (print, then abort()).  Called instead
 * of it by every ai_assert() of libassimp; must not return.
 */
void		alx_ai_assert(const char *expr, const char *file, int line)
			__asm__("_ZN6Assimp17aiAssertViolationEPKcS1_i");

void
alx_ai_assert(const char *expr, const char *file, int line)
{
	char		num[16];
	int			i = sizeof(num) - 1;
	unsigned int u = line < 0 ? 0 : (unsigned int) line;

	num[i] = '\0';
	do
	{
		num[--i] = (char) ('0' + u % 10);
		u /= 10;
	} while (u > 0 && i > 0);
	say("assimp found the file inconsistent: ");
	say(expr ? expr : "?");
	say(" (");
	say(file ? file : "?");
	say(":");
	say(num + i);
	say(")\n");
	_exit(ALX_MESHD_EXIT_BAD_FILE);
}

static void
on_segv(int sig, siginfo_t *si, void *uc)
{
	uintptr_t	a = (uintptr_t) si->si_addr;

	(void) sig;
	(void) uc;
	if (si->si_code == SEGV_MAPERR && stack_hi != 0 &&
		a >= stack_lo - STACK_GAP && a < stack_hi)
	{
		if (a < stack_lo + STACK_END)
		{
			say("mesh file nests too deeply or in a cycle: the parser ran out of stack\n");
			_exit(ALX_MESHD_EXIT_BAD_FILE);
		}
		say("out of memory: the parser's stack could not grow within the memory limit\n");
		_exit(ALX_MESHD_EXIT_TOO_LARGE);
	}
	/* not a stack overflow: return, fault again, die by SIGSEGV */
}

void
AlxFaultGuardInstall(void)
{
	static char altstack[64 << 10];
	struct rlimit rl;
	stack_t		ss;
	struct sigaction sa;
	pthread_attr_t attr;
	void	   *addr;
	size_t		size;

	if (getrlimit(RLIMIT_STACK, &rl) == 0 &&
		(rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > STACK_MAX))
	{
		rl.rlim_cur = STACK_MAX;
		(void) setrlimit(RLIMIT_STACK, &rl);
	}
	/* glibc derives the main thread's range from /proc/self/maps and the limit */
	if (pthread_getattr_np(pthread_self(), &attr) != 0)
		return;
	if (pthread_attr_getstack(&attr, &addr, &size) == 0)
	{
		stack_lo = (uintptr_t) addr;
		stack_hi = (uintptr_t) addr + size;
	}
	pthread_attr_destroy(&attr);

	memset(&ss, 0, sizeof(ss));
	ss.ss_sp = altstack;
	ss.ss_size = sizeof(altstack);
	if (sigaltstack(&ss, NULL) != 0)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	(void) sigaction(SIGSEGV, &sa, NULL);
}
