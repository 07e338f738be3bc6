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
 * Both apply only while assimp parses (alx_mesh_in_assimp, set by
 * meshio.c around its import call): a stack overflow or a wild access in
 * our own code (the weld, the metrics, the scene walk, Embree's build on
 * the main thread) is a bug, not a property of the file.  And when an
 * allocation has failed (memguard.c), both are the memory limit speaking,
 * whatever check failed afterwards: 54000, as meshio.c reports it.
 *
 * Any other SIGSEGV -- a bug in our code or in assimp -- is not ours to
 * explain: the handler is one-shot (SA_RESETHAND) and returns, the faulting
 * instruction runs again, and the process dies by the signal, which the
 * backend reports as XX000 "mesh helper crashed" and every test counts as a
 * failure.  An abort() outside ai_assert() stays a SIGABRT the same way.
 *
 * The reason goes where the mode's errors go: a line on stderr for the
 * backend (--stdin), the file's JSON line on stdout for the CLI.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

#include "meshio.h"
#include "meshout.h"
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

/* CLI mode: the start of the file's JSON line, {"file":"...","error":" */
static char cli_prefix[1200];

/* the line being built, written at once (async-signal-safe: no stdio) */
static char line[2048];
static size_t line_len;

static void
say(const char *s)
{
	for (; *s && line_len + 8 < sizeof(line); s++)
	{
		unsigned char ch = (unsigned char) *s;

		if (cli_prefix[0] != '\0' && (ch == '"' || ch == '\\'))
			line[line_len++] = '\\';
		if (cli_prefix[0] != '\0' && ch < 0x20)
		{
			static const char hex[] = "0123456789abcdef";

			memcpy(line + line_len, "\\u00", 4);
			line[line_len + 4] = hex[ch >> 4];
			line[line_len + 5] = hex[ch & 15];
			line_len += 6;
			continue;
		}
		line[line_len++] = (char) ch;
	}
}

/* Writes the reason (begun with say()) and exits with code. */
static void
give_up(int code)
{
	const char *tail = cli_prefix[0] != '\0' ? "\"}\n" : "\n";
	int			fd = cli_prefix[0] != '\0' ? 1 : 2;
	ssize_t		r;

	if (cli_prefix[0] != '\0')
		r = write(fd, cli_prefix, strlen(cli_prefix));
	r = write(fd, line, line_len);
	r = write(fd, tail, strlen(tail));
	(void) r;
	_exit(code);
}

/* The memory limit, if an allocation failed: 54000 whatever broke next. */
static void
give_up_if_out_of_memory(void)
{
	if (!AlxMeshAllocFailed())
		return;
	line_len = 0;
	say("out of memory under the helper's memory limit (then assimp failed)");
	give_up(ALX_MESHD_EXIT_TOO_LARGE);
}

/*
 * Replaces assimp's default handler (print, then abort()).  Called instead
 * of it by every ai_assert() of libassimp; must not return.
 */
void		alx_ai_assert(const char *expr, const char *file, int lineno)
			__asm__("_ZN6Assimp17aiAssertViolationEPKcS1_i");

void
alx_ai_assert(const char *expr, const char *file, int lineno)
{
	char		num[16];
	int			i = sizeof(num) - 1;
	unsigned int u = lineno < 0 ? 0 : (unsigned int) lineno;

	if (alx_mesh_in_assimp)
		give_up_if_out_of_memory();
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
	say(")");
	if (!alx_mesh_in_assimp)
	{
		/* not while parsing: a crash, as with assimp's own handler, which
		 * also prints the failed check first */
		ssize_t		r = write(2, line, line_len);

		r = write(2, "\n", 1);
		(void) r;
		abort();
	}
	give_up(ALX_MESHD_EXIT_BAD_FILE);
}

static void
on_segv(int sig, siginfo_t *si, void *uc)
{
	uintptr_t	a = (uintptr_t) si->si_addr;

	(void) sig;
	(void) uc;
	if (alx_mesh_in_assimp && si->si_code == SEGV_MAPERR && stack_hi != 0 &&
		a >= stack_lo - STACK_GAP && a < stack_hi)
	{
		give_up_if_out_of_memory();
		if (a < stack_lo + STACK_END)
		{
			say("mesh file nests too deeply or in a cycle: the parser ran out of stack");
			give_up(ALX_MESHD_EXIT_BAD_FILE);
		}
		say("out of memory: the parser's stack could not grow within the memory limit");
		give_up(ALX_MESHD_EXIT_TOO_LARGE);
	}
	/* not a stack overflow: return, fault again, die by SIGSEGV */
}

/* CLI mode: report as the JSON line of file (NULL: the backend's stderr line). */
void
AlxFaultGuardCliFile(const char *file)
{
	char		name[1024];

	if (file == NULL)
	{
		cli_prefix[0] = '\0';
		return;
	}
	AlxMeshJsonString(name, sizeof(name), file);
	snprintf(cli_prefix, sizeof(cli_prefix), "{\"file\":%s,\"error\":\"", name);
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
