/*-------------------------------------------------------------------------
 *
 * geom_int.h
 *	  Private to the metrics (geometry.c, geom_edges.c, geom_shells.c): the
 *	  scratch state of one AlxGeomCompute() run and the steps that fill it.
 *
 * Never include it elsewhere: the public interface is geometry.h.
 *
 * IDENTIFICATION
 *	  src/mesh/geom_int.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_GEOM_INT_H
#define ALX_GEOM_INT_H

#include <math.h>

#include "geometry.h"

/* Neumaier compensated sum */
typedef struct KSum
{
	double		s;
	double		c;
} KSum;

static inline void
ksum_add(KSum *k, double x)
{
	double		t = k->s + x;

	if (fabs(k->s) >= fabs(x))
		k->c += (k->s - t) + x;
	else
		k->c += (x - t) + k->s;
	k->s = t;
}

static inline double
ksum_value(const KSum *k)
{
	return k->s + k->c;
}

/* one use of an edge by a face, filed under the edge's lower vertex id */
typedef struct EdgeUse
{
	uint32_t	hi;				/* the higher vertex id */
	uint32_t	fs;				/* face << 2 | slot (edge slot..slot+1) */
} EdgeUse;

/* per-shell data */
typedef struct Shell
{
	KSum		vol;			/* signed volume about the global centre */
	double		bmin[3];
	double		bmax[3];
	uint64_t	faces;
	uint32_t	first_face;
	bool		closed;
	int			parent;			/* directly containing shell, -1 if none */
	double		bbox_vol;
	int			eff_sign;
} Shell;

static inline void
sub3(double *r, const double *a, const double *b)
{
	r[0] = a[0] - b[0];
	r[1] = a[1] - b[1];
	r[2] = a[2] - b[2];
}

static inline void
cross3(double *r, const double *a, const double *b)
{
	r[0] = a[1] * b[2] - a[2] * b[1];
	r[1] = a[2] * b[0] - a[0] * b[2];
	r[2] = a[0] * b[1] - a[1] * b[0];
}

static inline double
dot3(const double *a, const double *b)
{
	return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

/*
 * The scratch arrays of one AlxGeomCompute() run, filled step by step;
 * geom_work_free() releases whatever is still held.
 */
typedef struct GeomWork
{
	uint64_t	F;				/* triangles */
	uint8_t    *used;			/* per vertex: used by a triangle */
	uint8_t    *skip;			/* per face: degenerate, out of the topology */
	uint32_t   *parent;			/* union-find over faces */
	uint64_t   *estart;			/* edge uses: bucket start per lower vertex */
	uint32_t   *efill;
	EdgeUse    *eent;
	uint8_t    *open_face;		/* per face: has a boundary or non-manifold edge */
	uint32_t   *nb;				/* per face edge: neighbour over a manifold edge */
	uint8_t    *nbsame;			/* ... whose use runs the same way */
	uint8_t    *flip;			/* per face: 1 = reversed for consistency, 2 = unvisited */
	uint32_t   *queue;
	uint32_t   *face_shell;		/* per face: shell number */
	uint32_t   *root_shell;
	uint32_t   *shell_faces;	/* faces grouped by shell */
	uint64_t   *shell_start;
	Shell	   *shells;
	uint64_t	nshells;
	double		c[3];			/* bounding-box centre */
	double		diag;			/* bounding-box diagonal */
} GeomWork;

/* geom_edges.c: edge table, orientation, shells; false when out of memory */
extern bool AlxGeomBucketEdges(const AlxGeom *g, GeomWork *w);
extern bool AlxGeomLinkEdges(const AlxGeom *g, GeomWork *w, AlxMeshStats *st);
extern bool AlxGeomOrientFaces(GeomWork *w, AlxMeshStats *st);
extern bool AlxGeomNumberShells(GeomWork *w, AlxMeshStats *st);

/* geom_shells.c: nesting and overlap of shells, the volume */
extern bool AlxGeomSumVolume(const AlxGeom *g, GeomWork *w, AlxMeshStats *st);

#endif							/* ALX_GEOM_INT_H */
