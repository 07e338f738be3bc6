/*-------------------------------------------------------------------------
 *
 * wall.h
 *	  Wall thickness by ray casting with Intel Embree 3, inside the helper.
 *
 * For every face, a ray from its centroid along its inward normal (the
 * orientation made consistent by geometry.c, outward from the material)
 * to the first surface it leaves the material through: the distance is
 * the wall thickness at that face.  Reported: the thinnest wall and where
 * it starts (the centroid of its face), and the area of the faces whose
 * wall is thinner than each of ALX_WALL_THRESHOLDS.
 *
 * Usage: AlxWallPrepare() once before the sandbox locks down (it starts the
 * threads and Embree); per mesh, AlxWallBuildStart() right after the mesh
 * is loaded (the acceleration structure is built on a worker while the
 * metrics are computed), then AlxWallMeasure() after AlxGeomCompute().
 *
 * IDENTIFICATION
 *	  src/mesh/wall.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_WALL_H
#define ALX_WALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "geometry.h"

#define ALX_WALL_NTHRESH	4
/* mm; the record and the SQL columns follow this order */
#define ALX_WALL_THRESHOLDS	{0.3, 0.5, 0.8, 1.0}

/* most threads the helper starts */
#define ALX_WALL_MAX_THREADS 4

typedef struct AlxWallStats
{
	bool		measured;		/* some ray found an opposite surface */
	bool		skipped;		/* stopped at its CPU deadline: nothing measured */
	uint64_t	gave_up;		/* rays that passed over too many surfaces: unmeasured */
	uint64_t	rays;			/* faces a ray was cast from */
	double		min_mm;			/* thinnest wall */
	double		at_mm[3];		/* centroid of the face it starts from */
	double		area_below_mm2[ALX_WALL_NTHRESH];	/* faces thinner than each threshold */
} AlxWallStats;

/*
 * Start nthreads threads (0 = as many CPUs as the process may use, at most
 * ALX_WALL_MAX_THREADS) and an Embree device, and run a small scene on
 * every thread so that nothing is initialised lazily later.  false (with a
 * message) if Embree cannot start.
 */
extern bool AlxWallPrepare(int nthreads, char *err, size_t errlen);

/* Whether AlxWallPrepare() succeeded in this process. */
extern bool AlxWallReady(void);

/*
 * Start building the acceleration structure of g on a worker thread.  g's
 * vertices and triangles must not change until AlxWallMeasure() returns.
 */
extern void AlxWallBuildStart(const AlxGeom *g);

/*
 * Wait for the build, cast one ray per face (g->face_out from
 * AlxGeomCompute() gives the orientation) on every thread.  Returns an
 * ALX_MESHD_EXIT_* code; ws->measured is false when no ray hit anything
 * (an open sheet, say).
 */
extern int	AlxWallMeasure(const AlxGeom *g, AlxWallStats *ws, char *err, size_t errlen);

/*
 * Let the rays use at most share_s seconds of CPU (all threads) from their
 * start, and never run past cap_s of the process's CPU time (0 = no
 * limit): triangles that all overlap make every ray visit every triangle,
 * and the wall is then reported as not measured (with the warning
 * wall_check_skipped) rather than the whole analysis running into its CPU
 * budget.  The helper takes 10 % and 90 % of that budget.
 */
extern void AlxWallSetDeadline(double share_s, double cap_s);

/* Wait for a build that may still run and release it (any error path). */
extern void AlxWallRelease(void);

#endif							/* ALX_WALL_H */
