/*-------------------------------------------------------------------------
 *
 * pool.c
 *	  A fixed set of worker threads for the helper.
 *
 * The workers are created by AlxPoolStart() before the sandbox locks down
 * and never exit (exit_group ends them with the process).  Each waits on
 * a condition variable for the next job -- one job for all threads, or one
 * job for worker 1 alone -- so that after the lockdown they need nothing
 * but futex.  The pool is deliberately tiny: two kinds of job, one at a
 * time, no queue.
 *
 * IDENTIFICATION
 *	  src/mesh/pool.c
 *
 *-------------------------------------------------------------------------
 */
#include "pool.h"

#include <fenv.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define POOL_MAX 16

static struct
{
	pthread_mutex_t lock;
	pthread_cond_t work;
	pthread_cond_t done;
	int			size;			/* threads, the caller included */
	uint64_t	generation;		/* bumped for every job */
	AlxPoolFn	fn;
	void	   *arg;
	bool		one;			/* the job is for worker 1 only */
	int			pending;		/* workers still running the job */
}			pool = {
	PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
	1, 0, NULL, NULL, false, 0
};

static void *
worker_main(void *p)
{
	int			me = (int) (intptr_t) p;
	uint64_t	seen = 0;

	pthread_mutex_lock(&pool.lock);
	for (;;)
	{
		AlxPoolFn	fn;
		void	   *arg;

		while (pool.generation == seen)
			pthread_cond_wait(&pool.work, &pool.lock);
		seen = pool.generation;
		if (pool.one && me != 1)
			continue;
		fn = pool.fn;
		arg = pool.arg;
		pthread_mutex_unlock(&pool.lock);
		fn(arg, me);
		pthread_mutex_lock(&pool.lock);
		if (--pool.pending == 0)
			pthread_cond_broadcast(&pool.done);
	}
	return NULL;
}

int
AlxPoolStart(int nthreads)
{
	if (nthreads > POOL_MAX)
		nthreads = POOL_MAX;
	for (int i = 1; i < nthreads; i++)
	{
		pthread_t	t;
		pthread_attr_t attr;
		bool		ok;

		/* small stacks: a worker only runs ray casting and BVH builds */
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, (size_t) 4 << 20);
		ok = pthread_create(&t, &attr, worker_main, (void *) (intptr_t) pool.size) == 0;
		pthread_attr_destroy(&attr);
		if (!ok)
			break;				/* fewer threads: still correct */
		pthread_detach(t);
		pool.size++;
	}
	return pool.size;
}

int
AlxPoolSize(void)
{
	return pool.size;
}

static void
post(AlxPoolFn fn, void *arg, bool one)
{
	pthread_mutex_lock(&pool.lock);
	pool.fn = fn;
	pool.arg = arg;
	pool.one = one;
	pool.pending = one ? 1 : pool.size - 1;
	pool.generation++;
	pthread_cond_broadcast(&pool.work);
	pthread_mutex_unlock(&pool.lock);
}

static void
wait_done(void)
{
	pthread_mutex_lock(&pool.lock);
	while (pool.pending > 0)
		pthread_cond_wait(&pool.done, &pool.lock);
	pthread_mutex_unlock(&pool.lock);
}

/*
 * Run a job on the calling thread.  A job may set the floating-point mode
 * of its thread (wall.c flushes denormals to zero for Embree); the caller's
 * own arithmetic -- the weld, the metrics -- must not change with it (a
 * denormal coordinate would become 0 and weld onto another vertex), so the
 * caller's environment (MXCSR included) is restored afterwards.
 */
static void
run_here(AlxPoolFn fn, void *arg)
{
	fenv_t		env;

	fegetenv(&env);
	fn(arg, 0);
	fesetenv(&env);
}

void
AlxPoolRunAll(AlxPoolFn fn, void *arg)
{
	if (pool.size > 1)
		post(fn, arg, false);
	run_here(fn, arg);
	if (pool.size > 1)
		wait_done();
}

void
AlxPoolRunOne(AlxPoolFn fn, void *arg)
{
	if (pool.size > 1)
		post(fn, arg, true);
	else
		run_here(fn, arg);
}

void
AlxPoolWaitOne(void)
{
	if (pool.size > 1)
		wait_done();
}
