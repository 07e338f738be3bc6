/*-------------------------------------------------------------------------
 *
 * pool.h
 *	  The helper's threads: started before the sandbox locks down (threads
 *	  count against RLIMIT_NPROC, which is then 0, and clone is not on the
 *	  seccomp allow-list), then only woken to run work.
 *
 * IDENTIFICATION
 *	  src/mesh/pool.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_POOL_H
#define ALX_POOL_H

/* a job: arg, and the index of the thread running it (0 = the caller) */
typedef void (*AlxPoolFn) (void *arg, int thread);

/*
 * Start up to nthreads - 1 workers (the caller is thread 0); returns the
 * number of threads available, at least 1.  Call once, before the lockdown.
 */
extern int	AlxPoolStart(int nthreads);

/* Number of threads (1 when no pool was started). */
extern int	AlxPoolSize(void);

/*
 * Run fn on every thread, the caller included; returns when all are done.
 * The caller's floating-point environment is the same afterwards.
 */
extern void AlxPoolRunAll(AlxPoolFn fn, void *arg);

/*
 * Start fn on worker 1 and return at once (without workers: run it now);
 * AlxPoolWaitOne() waits for it.  No other job may be started meanwhile.
 */
extern void AlxPoolRunOne(AlxPoolFn fn, void *arg);
extern void AlxPoolWaitOne(void);

#endif							/* ALX_POOL_H */
