/*-------------------------------------------------------------------------
 *
 * wall.c
 *	  Wall thickness with Embree 3: one ray per face along its inward normal.
 *
 * Geometry.  The mesh is handed to Embree centred on its bounding box and
 * divided by its diagonal (coordinates within +-0.5, in float32: about
 * 1e-7 of the model's size, far below a jeweller's 0.01 mm), so that every
 * tolerance is relative to the model's size.  The index buffer is the
 * mesh's own triangle array, shared.  The ray of a face starts at its
 * centroid and goes against the face's outward normal (geometry.c makes
 * the winding consistent per patch and turns whole shells so that the
 * normals point out of the material, voids included).  The first surface
 * the ray leaves the material through is the opposite wall:
 *
 *  - the face itself is never a hit (the ray carries its face id and an
 *	  intersection filter drops it), nor is anything closer than 1e-5 of
 *	  the diagonal (a neighbour touched at the start);
 *  - a surface the ray enters the material through (a normal facing the
 *	  ray) is passed over: that only happens with overlapping shells or
 *	  faces whose orientation could not be made consistent;
 *  - watertight intersection (RTC_SCENE_FLAG_ROBUST): a ray through a
 *	  shared edge of the opposite wall cannot slip through the crack;
 *  - degenerate faces cast no ray and cannot be hit; a ray that hits
 *	  nothing (an open sheet) measures nothing.
 *
 * Threads and the sandbox.  Embree's device runs with threads=1 (its TBB
 * tasking then never starts a worker); the parallelism is the helper's own
 * pool (pool.c), started before the lockdown like everything else: the BVH
 * is built on worker 1 while the main thread computes the other metrics,
 * then every thread casts rays for chunks of faces.  AlxWallPrepare() runs
 * a small scene on every thread first, so that no lazy initialisation
 * (TBB's per-thread setup reads the CPU affinity) happens after the filter
 * is installed.
 *
 * Thresholds.  A face counts as thinner than a threshold when its wall is
 * shorter by more than 1e-6 of the diagonal (float32 noise is about 1e-7):
 * a plate modelled 0.8 mm thick is not "below 0.8 mm".
 *
 * Determinism.  Each thread keeps its thinnest wall (ties go to the lower
 * face number) and the areas are summed per fixed chunk of faces, then in
 * chunk order: the result does not depend on the number of threads.  Each
 * ray's far limit is the larger of the largest threshold and the thinnest
 * wall its thread has seen (a little more, so that ties are still found):
 * walls that can change neither the minimum nor an area are not traced to
 * their end.
 *
 * IDENTIFICATION
 *	  src/mesh/wall.c
 *
 *-------------------------------------------------------------------------
 */
#include "wall.h"

#include <math.h>
#include <pmmintrin.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xmmintrin.h>
#include <embree3/rtcore.h>

#include "meshrecord.h"
#include "pool.h"
#include "timing.h"

#define WALL_CHUNK		1024	/* faces per unit of work */
#define WALL_TNEAR		1e-5f	/* of the diagonal */
#define WALL_EPS		1e-6	/* of the diagonal: below float32 noise, a wall is not thinner */
#define WALL_MAX_PASSES	16		/* surfaces a ray may pass over before it gives up */
#define WALL_GAVE_UP	255		/* marks a ray that gave up */

static const double thresholds_mm[ALX_WALL_NTHRESH] = ALX_WALL_THRESHOLDS;

static RTCDevice device;
static volatile int embree_error;	/* first RTCError seen, 0 = none */
static double ray_share_s = 0;	/* AlxWallSetDeadline() */
static double ray_cap_s = 0;
static double deadline_cpu_s = 0;	/* for the rays running now */

void
AlxWallSetDeadline(double share_s, double cap_s)
{
	ray_share_s = share_s;
	ray_cap_s = cap_s;
}

/* CPU time of the whole process so far, in seconds (0 if unknown). */
static double
process_cpu_s(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
		return 0;
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Has the process used up the time the rays may take? */
static bool
past_deadline(void)
{
	return deadline_cpu_s > 0 && process_cpu_s() > deadline_cpu_s;
}

/* the build, done on worker 1 */
typedef struct WallBuild
{
	const AlxGeom *g;			/* the welded, ordered mesh */
	double		center[3];
	double		diag;
	float	   *verts;			/* normalised, 3 per vertex (+ padding) */
	uint64_t	nverts;
	const uint32_t *index;		/* the mesh's triangles, shared */
	uint64_t	nprims;
	double		thr_rel[ALX_WALL_NTHRESH];	/* thresholds, normalised, less WALL_EPS */
	RTCScene	scene;
	bool		started;
	bool		oom;			/* an allocation failed (not: nothing to measure) */
	int			rc;
	char		err[160];
	double		convert_ms;		/* thread CPU times, for --timing */
	double		build_ms;
} WallBuild;

static WallBuild build;

/* ray casting, on every thread */
typedef struct WallJob
{
	const AlxGeom *g;
	uint8_t    *passes;			/* per primitive: see wall_filter() */
	uint64_t	nchunks;
	uint64_t	next_chunk;		/* atomic */
	int			stop;			/* atomic: past the deadline */
	uint64_t	gave_up;		/* atomic: rays that gave up */
	double	   *chunk_area;		/* ALX_WALL_NTHRESH per chunk */
	uint64_t   *chunk_rays;
	float		best_t[ALX_WALL_MAX_THREADS];
	uint64_t	best_face[ALX_WALL_MAX_THREADS];
} WallJob;

/* the intersect context: Embree's, then what the filter needs */
typedef struct WallContext
{
	struct RTCIntersectContext rtc;
	const uint8_t *face_out;
	uint8_t    *passes;			/* per primitive: surfaces its ray passed over */
} WallContext;

static void
error_callback(void *user, enum RTCError code, const char *str)
{
	if (embree_error == 0)
		embree_error = (int) code;
}

static void
fast_float_mode(void)
{
	/*
	 * Embree's advice; only this thread, only for the rays and the build
	 * (the pool restores the caller's mode after a job it ran: pool.c)
	 */
	_MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
	_MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
}

/*
 * Field k of lane i of a runtime-size-N ray or hit packet (the layout of
 * Embree's C++-only RTCRayN_* / RTCHitN_* accessors in rtcore_ray.h: the
 * ray is org_x, org_y, org_z, tnear, dir_x, dir_y, dir_z, time, tfar,
 * mask, id, flags; the hit Ng_x, Ng_y, Ng_z, u, v, primID, geomID).
 */
static inline float
ray_f(const struct RTCRayN *ray, unsigned int n, int k, unsigned int i)
{
	return ((const float *) ray)[k * n + i];
}

static inline unsigned int
ray_u(const struct RTCRayN *ray, unsigned int n, int k, unsigned int i)
{
	return ((const unsigned int *) ray)[k * n + i];
}

static inline float
hit_f(const struct RTCHitN *hit, unsigned int n, int k, unsigned int i)
{
	return ((const float *) hit)[k * n + i];
}

static inline unsigned int
hit_u(const struct RTCHitN *hit, unsigned int n, int k, unsigned int i)
{
	return ((const unsigned int *) hit)[k * n + i];
}

/*
 * Keep a hit only if it is not the ray's own face and the ray leaves the
 * material there: its direction and the hit face's outward normal agree.
 * Embree's Ng is (v1 - v0) x (v2 - v0) of the stored winding.
 */
static void
wall_filter(const struct RTCFilterFunctionNArguments *args)
{
	const WallContext *ctx = (const WallContext *) args->context;
	unsigned int n = args->N;

	for (unsigned int i = 0; i < n; i++)
	{
		unsigned int prim,
					self;
		float		d;

		if (args->valid[i] != -1)
			continue;
		prim = hit_u(args->hit, n, 5, i);
		self = ray_u(args->ray, n, 10, i);
		if (prim == self)
		{
			args->valid[i] = 0;
			continue;
		}
		d = hit_f(args->hit, n, 0, i) * ray_f(args->ray, n, 4, i) +
			hit_f(args->hit, n, 1, i) * ray_f(args->ray, n, 5, i) +
			hit_f(args->hit, n, 2, i) * ray_f(args->ray, n, 6, i);
		if (ctx->face_out[prim] & 1)
			d = -d;
		if (d > 0.0f)
			continue;			/* the ray leaves the material here: a wall */

		/*
		 * Entering: passed over.  A ray that has to pass over many surfaces
		 * (sheets stacked on each other) gives up, so that no ray visits
		 * every triangle: the hit is kept to end the traversal, and the
		 * face is marked unmeasured (each primitive casts one ray, so the
		 * counter is only ever written by one thread).
		 */
		if (ctx->passes[self] == WALL_GAVE_UP || ++ctx->passes[self] >= WALL_MAX_PASSES)
			ctx->passes[self] = WALL_GAVE_UP;
		else
			args->valid[i] = 0;
	}
}

/*
 * The settings of every build, the warm-up's included (so that nothing the
 * real build takes is first set up after the lockdown): compact leaves
 * (indices, not vertex copies) and Embree's Morton-code builder (low
 * quality, for the scene and the geometry).  On a 1M-face mesh the build
 * takes ~95 ms instead of ~275 ms and ~40 MB less memory, the rays ~25%
 * more (~130 ms a thread instead of ~100 ms): the build is the longer
 * wait, the rays are spread over every thread.  Robust (watertight)
 * intersection: a ray through a shared edge cannot slip through the crack.
 */
static void
configure_build(RTCScene s, RTCGeometry geom)
{
	rtcSetSceneFlags(s, RTC_SCENE_FLAG_ROBUST | RTC_SCENE_FLAG_COMPACT);
	rtcSetSceneBuildQuality(s, RTC_BUILD_QUALITY_LOW);
	rtcSetGeometryBuildQuality(geom, RTC_BUILD_QUALITY_LOW);
}

/* A unit tetrahedron on every thread: all lazy set-up happens now. */
static void
warm_up(void *arg, int thread)
{
	static const float v[12] = {0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1};
	static const unsigned int ix[12] = {0, 2, 1, 0, 1, 3, 1, 2, 3, 0, 3, 2};
	RTCScene	s;
	RTCGeometry geom;
	float	   *vb;
	unsigned int *ib;
	struct RTCIntersectContext ctx;
	struct RTCRayHit rh;
	_Alignas(64) struct RTCRayHit16 r16;
	_Alignas(64) int valid[16];

	fast_float_mode();
	s = rtcNewScene(device);
	geom = rtcNewGeometry(device, RTC_GEOMETRY_TYPE_TRIANGLE);
	configure_build(s, geom);
	vb = rtcSetNewGeometryBuffer(geom, RTC_BUFFER_TYPE_VERTEX, 0, RTC_FORMAT_FLOAT3, 12, 4);
	ib = rtcSetNewGeometryBuffer(geom, RTC_BUFFER_TYPE_INDEX, 0, RTC_FORMAT_UINT3, 12, 4);
	if (vb == NULL || ib == NULL)
		return;
	memcpy(vb, v, sizeof(v));
	memcpy(ib, ix, sizeof(ix));
	rtcCommitGeometry(geom);
	rtcAttachGeometry(s, geom);
	rtcReleaseGeometry(geom);
	rtcCommitScene(s);
	rtcInitIntersectContext(&ctx);
	memset(&rh, 0, sizeof(rh));
	rh.ray.org_x = rh.ray.org_y = 0.2f;
	rh.ray.org_z = -1.0f;
	rh.ray.dir_z = 1.0f;
	rh.ray.tfar = 10.0f;
	rh.ray.mask = ~0u;
	rh.hit.geomID = RTC_INVALID_GEOMETRY_ID;
	rtcIntersect1(s, &ctx, &rh);
	memset(&r16, 0, sizeof(r16));
	for (int i = 0; i < 16; i++)
	{
		valid[i] = -1;
		r16.ray.org_x[i] = r16.ray.org_y[i] = 0.2f;
		r16.ray.org_z[i] = -1.0f;
		r16.ray.dir_z[i] = 1.0f;
		r16.ray.tfar[i] = 10.0f;
		r16.ray.mask[i] = ~0u;
		r16.hit.geomID[i] = RTC_INVALID_GEOMETRY_ID;
	}
	rtcIntersect16(valid, s, &ctx, &r16);
	rtcReleaseScene(s);
}

/* CPUs this process may run on */
static int
cpus_allowed(void)
{
	long		n = sysconf(_SC_NPROCESSORS_ONLN);

#ifdef CPU_COUNT
	{
		cpu_set_t	set;

		if (sched_getaffinity(0, sizeof(set), &set) == 0)
			n = CPU_COUNT(&set);
	}
#endif
	return n > 0 ? (int) n : 1;
}

bool
AlxWallPrepare(int nthreads, char *err, size_t errlen)
{
	if (nthreads <= 0)
		nthreads = cpus_allowed();
	if (nthreads > ALX_WALL_MAX_THREADS)
		nthreads = ALX_WALL_MAX_THREADS;
	device = rtcNewDevice("threads=1,set_affinity=0,verbose=0");
	if (device == NULL)
	{
		snprintf(err, errlen, "could not start Embree (error %d)", (int) rtcGetDeviceError(NULL));
		return false;
	}
	rtcSetDeviceErrorFunction(device, error_callback, NULL);
	AlxPoolStart(nthreads);
	AlxPoolRunAll(warm_up, NULL);
	if (embree_error != 0)
	{
		snprintf(err, errlen, "Embree failed its warm-up (error %d)", embree_error);
		rtcReleaseDevice(device);
		device = NULL;
		return false;
	}
	return true;
}

bool
AlxWallReady(void)
{
	return device != NULL;
}

static void
set_frame(WallBuild *b, const double *lo, const double *hi)
{
	for (int k = 0; k < 3; k++)
		b->center[k] = 0.5 * (lo[k] + hi[k]);
	b->diag = sqrt((hi[0] - lo[0]) * (hi[0] - lo[0]) + (hi[1] - lo[1]) * (hi[1] - lo[1]) +
				   (hi[2] - lo[2]) * (hi[2] - lo[2]));
	/* a wall of exactly 0.8 mm is not thinner than 0.8 mm, float noise aside */
	for (int i = 0; i < ALX_WALL_NTHRESH; i++)
		b->thr_rel[i] = thresholds_mm[i] / b->diag - WALL_EPS;
}

/* Normalised float vertices of the welded mesh; false if unmeasurable. */
static bool
vertices_from_mesh(WallBuild *b)
{
	const AlxGeom *g = b->g;
	double		lo[3] = {INFINITY, INFINITY, INFINITY},
				hi[3] = {-INFINITY, -INFINITY, -INFINITY},
				inv;

	for (uint64_t v = 0; v < g->nverts; v++)
		for (int k = 0; k < 3; k++)
		{
			double		c = g->pos[3 * v + k];

			lo[k] = c < lo[k] ? c : lo[k];
			hi[k] = c > hi[k] ? c : hi[k];
		}
	set_frame(b, lo, hi);
	if (!(b->diag > 0) || !isfinite(b->diag))
		return false;			/* a point or worse: nothing to measure */
	inv = 1.0 / b->diag;
	/* Embree reads 16 bytes at the last vertex: one float of padding */
	b->verts = malloc((g->nverts * 3 + 1) * sizeof(float));
	if (b->verts == NULL)
	{
		b->oom = true;
		return false;
	}
	for (uint64_t i = 0; i < g->nverts * 3; i++)
		b->verts[i] = (float) ((g->pos[i] - b->center[i % 3]) * inv);
	b->verts[g->nverts * 3] = 0.0f;
	b->nverts = g->nverts;
	b->index = g->tri;
	b->nprims = g->ntris;
	return true;
}

/* The build job: vertices, index buffer, a BVH. */
static void
build_job(void *arg, int thread)
{
	WallBuild  *b = arg;
	RTCGeometry geom;
	bool		ok;

	fast_float_mode();
	ok = vertices_from_mesh(b);
	if (!ok)
	{
		/* (a mesh that is a point has nothing to measure: not an error) */
		if (b->oom)
		{
			b->rc = ALX_MESHD_EXIT_TOO_LARGE;
			snprintf(b->err, sizeof(b->err), "out of memory while preparing the wall thickness");
		}
		return;
	}
	b->scene = rtcNewScene(device);
	geom = rtcNewGeometry(device, RTC_GEOMETRY_TYPE_TRIANGLE);
	configure_build(b->scene, geom);
	rtcSetSharedGeometryBuffer(geom, RTC_BUFFER_TYPE_VERTEX, 0, RTC_FORMAT_FLOAT3,
							   b->verts, 0, 3 * sizeof(float), b->nverts);
	rtcSetSharedGeometryBuffer(geom, RTC_BUFFER_TYPE_INDEX, 0, RTC_FORMAT_UINT3,
							   b->index, 0, 3 * sizeof(uint32_t), b->nprims);
	rtcSetGeometryIntersectFilterFunction(geom, wall_filter);
	rtcCommitGeometry(geom);
	rtcAttachGeometry(b->scene, geom);
	rtcReleaseGeometry(geom);
	b->convert_ms = alx_now_ms(CLOCK_THREAD_CPUTIME_ID);
	rtcCommitScene(b->scene);
	b->build_ms = alx_now_ms(CLOCK_THREAD_CPUTIME_ID) - b->convert_ms;
	if (embree_error != 0)
	{
		b->rc = embree_error == RTC_ERROR_OUT_OF_MEMORY ?
			ALX_MESHD_EXIT_TOO_LARGE : ALX_MESHD_EXIT_INTERNAL;
		snprintf(b->err, sizeof(b->err), "Embree could not build the wall-thickness structure (error %d)",
				 embree_error);
	}
}

void
AlxWallBuildStart(const AlxGeom *g)
{
	memset(&build, 0, sizeof(build));
	build.g = g;
	build.rc = ALX_MESHD_EXIT_OK;
	if (device == NULL || g->ntris == 0 || g->error != ALX_GEOM_OK)
		return;
	build.started = true;
	AlxPoolRunOne(build_job, &build);
}

/* Wait for the build if one runs and release what it made. */
void
AlxWallRelease(void)
{
	if (build.started)
		AlxPoolWaitOne();
	if (build.scene != NULL)
		rtcReleaseScene(build.scene);
	free(build.verts);
	memset(&build, 0, sizeof(build));
}

/* A packet of up to 16 rays, traced; results folded into the thread's. */
typedef struct Packet
{
	_Alignas(64) struct RTCRayHit16 rh;
	_Alignas(64) int valid[16];
	uint64_t	face[16];
	double		area[16];
	int			n;
} Packet;

typedef struct ThreadBest
{
	float		t;				/* thinnest, normalised */
	uint64_t	face;
} ThreadBest;

static void
trace_packet(Packet *p, const WallContext *ctx, double *area, ThreadBest *best,
			 uint64_t *gave_up)
{
	for (int k = p->n; k < 16; k++)
		p->valid[k] = 0;
	rtcIntersect16(p->valid, build.scene, (struct RTCIntersectContext *) &ctx->rtc, &p->rh);
	for (int k = 0; k < p->n; k++)
	{
		float		t;
		double		t_rel;

		if (p->rh.hit.geomID[k] == RTC_INVALID_GEOMETRY_ID)
			continue;
		if (ctx->passes[p->rh.ray.id[k]] == WALL_GAVE_UP)
		{
			(*gave_up)++;
			continue;
		}
		t = p->rh.ray.tfar[k];
		t_rel = (double) t;
		for (int i = 0; i < ALX_WALL_NTHRESH; i++)
			if (t_rel < build.thr_rel[i])
				area[i] += p->area[k];
		if (t < best->t || (t == best->t && p->face[k] < best->face))
		{
			best->t = t;
			best->face = p->face[k];
		}
	}
	p->n = 0;
}

/* Put the ray of face f into the packet; false for a face with no ray. */
static bool
add_ray(Packet *p, const AlxGeom *g, uint64_t f, float tfar)
{
	const uint32_t *t = &g->tri[3 * f];
	const double *a = &g->pos[3 * (uint64_t) t[0]],
			   *b = &g->pos[3 * (uint64_t) t[1]],
			   *c = &g->pos[3 * (uint64_t) t[2]];
	double		e1[3],
				e2[3],
				n[3],
				nn,
				s,
				inv = 1.0 / build.diag;
	int			k = p->n;

	for (int i = 0; i < 3; i++)
	{
		e1[i] = b[i] - a[i];
		e2[i] = c[i] - a[i];
	}
	n[0] = e1[1] * e2[2] - e1[2] * e2[1];
	n[1] = e1[2] * e2[0] - e1[0] * e2[2];
	n[2] = e1[0] * e2[1] - e1[1] * e2[0];
	nn = sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
	if (!(nn > 0) || !isfinite(nn))
		return false;
	/* inward: against the outward normal */
	s = (g->face_out[f] & 1) ? 1.0 / nn : -1.0 / nn;
	p->rh.ray.org_x[k] = (float) (((a[0] + b[0] + c[0]) / 3.0 - build.center[0]) * inv);
	p->rh.ray.org_y[k] = (float) (((a[1] + b[1] + c[1]) / 3.0 - build.center[1]) * inv);
	p->rh.ray.org_z[k] = (float) (((a[2] + b[2] + c[2]) / 3.0 - build.center[2]) * inv);
	p->rh.ray.dir_x[k] = (float) (n[0] * s);
	p->rh.ray.dir_y[k] = (float) (n[1] * s);
	p->rh.ray.dir_z[k] = (float) (n[2] * s);
	p->rh.ray.tnear[k] = WALL_TNEAR;
	p->rh.ray.tfar[k] = tfar;
	p->rh.ray.time[k] = 0.0f;
	p->rh.ray.mask[k] = ~0u;
	p->rh.ray.id[k] = (uint32_t) f;	/* primitive f is face f: the filter drops hits on it */
	p->rh.ray.flags[k] = 0;
	p->rh.hit.geomID[k] = RTC_INVALID_GEOMETRY_ID;
	p->valid[k] = -1;
	p->face[k] = f;
	p->area[k] = 0.5 * nn;
	p->n++;
	return true;
}

/* Take chunks of faces until none is left. */
static void
ray_job(void *arg, int thread)
{
	WallJob    *j = arg;
	const AlxGeom *g = j->g;
	WallContext ctx;
	Packet	   *p = aligned_alloc(64, sizeof(Packet));
	ThreadBest	best = {INFINITY, UINT64_MAX};
	float		thr = (float) (thresholds_mm[ALX_WALL_NTHRESH - 1] / build.diag);

	if (p == NULL)
	{
		j->best_t[thread] = NAN;	/* the caller reports it */
		return;
	}
	fast_float_mode();
	rtcInitIntersectContext(&ctx.rtc);
	ctx.rtc.flags = RTC_INTERSECT_CONTEXT_FLAG_COHERENT;
	ctx.face_out = g->face_out;
	ctx.passes = j->passes;
	p->n = 0;
	for (;;)
	{
		uint64_t	c = __atomic_fetch_add(&j->next_chunk, 1, __ATOMIC_RELAXED);
		uint64_t	f1;
		double		area[ALX_WALL_NTHRESH] = {0};
		uint64_t	rays = 0,
					gave_up = 0;

		if (c >= j->nchunks || __atomic_load_n(&j->stop, __ATOMIC_RELAXED))
			break;
		if (past_deadline())
		{
			__atomic_store_n(&j->stop, 1, __ATOMIC_RELAXED);
			break;
		}
		f1 = (c + 1) * WALL_CHUNK < g->ntris ? (c + 1) * WALL_CHUNK : g->ntris;
		for (uint64_t f = c * WALL_CHUNK; f < f1; f++)
		{
			/* far limit: nothing beyond can change the minimum or an area */
			float		tfar = (best.t > thr ? best.t : thr) * 1.0001f;

			if (g->face_out[f] == 2 ||
				!add_ray(p, g, f, tfar))
				continue;
			rays++;
			if (p->n == 16)
				trace_packet(p, &ctx, area, &best, &gave_up);
		}
		if (p->n > 0)
			trace_packet(p, &ctx, area, &best, &gave_up);
		memcpy(&j->chunk_area[ALX_WALL_NTHRESH * c], area, sizeof(area));
		j->chunk_rays[c] = rays;
		__atomic_fetch_add(&j->gave_up, gave_up, __ATOMIC_RELAXED);
	}
	j->best_t[thread] = best.t;
	j->best_face[thread] = best.face;
	free(p);
}

/* Fold the threads' and chunks' results into ws. */
static void
merge(const WallJob *j, int nthreads, AlxWallStats *ws)
{
	float		t = INFINITY;
	uint64_t	face = UINT64_MAX;

	for (int i = 0; i < nthreads; i++)
		if (j->best_t[i] < t || (j->best_t[i] == t && j->best_face[i] < face))
		{
			t = j->best_t[i];
			face = j->best_face[i];
		}
	for (uint64_t c = 0; c < j->nchunks; c++)
	{
		ws->rays += j->chunk_rays[c];
		for (int i = 0; i < ALX_WALL_NTHRESH; i++)
			ws->area_below_mm2[i] += j->chunk_area[ALX_WALL_NTHRESH * c + i];
	}
	if (face == UINT64_MAX)
	{
		memset(ws->area_below_mm2, 0, sizeof(ws->area_below_mm2));
		return;					/* no ray hit anything */
	}
	ws->measured = true;
	ws->min_mm = (double) t * build.diag;
	for (int k = 0; k < 3; k++)
	{
		const uint32_t *tri = &j->g->tri[3 * face];

		ws->at_mm[k] = (j->g->pos[3 * (uint64_t) tri[0] + k] + j->g->pos[3 * (uint64_t) tri[1] + k] +
						j->g->pos[3 * (uint64_t) tri[2] + k]) / 3.0;
	}
}

int
AlxWallMeasure(const AlxGeom *g, AlxWallStats *ws, char *err, size_t errlen)
{
	WallJob		j;
	int			rc = ALX_MESHD_EXIT_OK;
	int			nthreads = AlxPoolSize();

	memset(ws, 0, sizeof(*ws));
	if (!build.started)
		return ALX_MESHD_EXIT_OK;
	AlxPoolWaitOne();
	build.started = false;
	if (alx_timing)
		fprintf(stderr, "timing: (worker) BVH build cpu %.1f ms\n", build.build_ms);
	if (build.rc != ALX_MESHD_EXIT_OK)
	{
		snprintf(err, errlen, "%s", build.err);
		rc = build.rc;
	}
	if (rc != ALX_MESHD_EXIT_OK || build.scene == NULL || g->face_out == NULL)
	{
		AlxWallRelease();
		return rc;
	}
	memset(&j, 0, sizeof(j));
	j.g = g;
	deadline_cpu_s = 0;
	if (ray_share_s > 0)
	{
		deadline_cpu_s = process_cpu_s() + ray_share_s;
		if (ray_cap_s > 0 && deadline_cpu_s > ray_cap_s)
			deadline_cpu_s = ray_cap_s;
	}
	j.nchunks = (g->ntris + WALL_CHUNK - 1) / WALL_CHUNK;
	j.chunk_area = calloc(j.nchunks * ALX_WALL_NTHRESH, sizeof(double));
	j.chunk_rays = calloc(j.nchunks, sizeof(uint64_t));
	j.passes = calloc(build.nprims, 1);
	if (j.chunk_area == NULL || j.chunk_rays == NULL || j.passes == NULL)
	{
		free(j.chunk_area);
		free(j.chunk_rays);
		free(j.passes);
		AlxWallRelease();
		snprintf(err, errlen, "out of memory while measuring the wall thickness");
		return ALX_MESHD_EXIT_TOO_LARGE;
	}
	AlxPoolRunAll(ray_job, &j);
	for (int i = 0; i < nthreads; i++)
		if (isnan(j.best_t[i]))
		{
			snprintf(err, errlen, "out of memory while measuring the wall thickness");
			rc = ALX_MESHD_EXIT_TOO_LARGE;
		}
	if (rc == ALX_MESHD_EXIT_OK && embree_error != 0)
	{
		snprintf(err, errlen, "Embree failed while casting rays (error %d)", embree_error);
		rc = embree_error == RTC_ERROR_OUT_OF_MEMORY ?
			ALX_MESHD_EXIT_TOO_LARGE : ALX_MESHD_EXIT_INTERNAL;
	}
	if (rc == ALX_MESHD_EXIT_OK && j.stop)
		ws->skipped = true;		/* partial results would mislead: none */
	else if (rc == ALX_MESHD_EXIT_OK)
	{
		merge(&j, nthreads, ws);
		ws->gave_up = j.gave_up;
	}
	free(j.chunk_area);
	free(j.chunk_rays);
	free(j.passes);
	AlxWallRelease();
	return rc;
}
