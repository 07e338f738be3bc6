/*-------------------------------------------------------------------------
 *
 * sandbox.h
 *	  The confinement of alexandrite-meshd: resource limits, process
 *	  properties and the seccomp allow-list it parses untrusted bytes under.
 *
 * Two steps:
 *
 *	 AlxSandboxPrepare()   before the input is read: no new privileges,
 *						   death with the parent, not dumpable, no core
 *						   files, no file growth, few descriptors, cwd "/".
 *	 AlxSandboxLockdown()  after the input is in memory and every thread the
 *						   helper will ever have exists: the address-space
 *						   limit, the CPU budget, RLIMIT_NPROC 0 and the
 *						   seccomp allow-list (default action: kill the
 *						   process; any other architecture, x32 included,
 *						   killed too), applied to all threads at once.
 *
 * IDENTIFICATION
 *	  src/mesh/sandbox.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_SANDBOX_H
#define ALX_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

typedef struct AlxSandboxLimits
{
	unsigned long long memory_mb;	/* address space on top of the baseline; 0 = none */
	unsigned long long cpu_s;	/* RLIMIT_CPU soft limit; 0 = none */
} AlxSandboxLimits;

/*
 * Process properties and the limits that do not depend on the input
 * (RLIMIT_FSIZE 0 unless stdout or stderr is a regular file the caller
 * redirected to).
 */
extern void AlxSandboxPrepare(void);

/*
 * The rest: returns false (with a message) if a limit or the filter could
 * not be installed; the caller must then not parse anything.
 */
extern bool AlxSandboxLockdown(const AlxSandboxLimits *lim, char *err, size_t errlen);

#ifdef ALX_MESHD_SANDBOX_TEST
/* Test program only: make the forbidden call named by spec (sandbox_probe.c). */
extern void AlxSandboxProbe(const char *spec);
#endif

/*
 * faultguard.c: while assimp parses, a failed ai_assert() and a
 * main-thread stack overflow exit with their reason (22P04, or 54000 when
 * the memory limit is why); any other fault still kills the process.  In
 * CLI mode the reason is the file's JSON line.
 */
extern void AlxFaultGuardInstall(void);
extern void AlxFaultGuardCliFile(const char *file);

/* Current address-space size of the process in bytes (0 if unknown). */
extern unsigned long long AlxSandboxAddressSpace(void);

#endif							/* ALX_SANDBOX_H */
