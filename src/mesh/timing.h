/*-------------------------------------------------------------------------
 *
 * timing.h
 *	  Phase timings of the helper on stderr (alexandrite-meshd --timing),
 *	  for profiling; clock_gettime only, so it works under the sandbox.
 *
 * IDENTIFICATION
 *	  src/mesh/timing.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_TIMING_H
#define ALX_TIMING_H

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

extern bool alx_timing;
extern double alx_timing_wall,
			alx_timing_cpu;

static inline double
alx_now_ms(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Print the wall and this thread's CPU time since the previous mark. */
static inline void
alx_timing_mark(const char *label)
{
	double		w,
				c;

	if (!alx_timing)
		return;
	w = alx_now_ms(CLOCK_MONOTONIC);
	c = alx_now_ms(CLOCK_THREAD_CPUTIME_ID);
	if (alx_timing_wall > 0)
		fprintf(stderr, "timing: %-22s wall %8.1f ms  cpu %8.1f ms\n", label,
				w - alx_timing_wall, c - alx_timing_cpu);
	alx_timing_wall = w;
	alx_timing_cpu = c;
}

#endif							/* ALX_TIMING_H */
