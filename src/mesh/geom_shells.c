/*-------------------------------------------------------------------------
 *
 * geom_shells.c
 *	  Shells compared pairwise for nesting and overlap, and the volume.
 *
 * Bounding boxes first, then ray parity (Moller-Trumbore in double), within
 * a work budget: nested shells are found (voids subtract, solids inside
 * solids are flagged) and overlapping shells flagged; the outermost shells
 * count positively, so a mesh wound inside out as a whole still has the
 * right positive volume.
 *
 * IDENTIFICATION
 *	  src/mesh/geom_shells.c
 *
 *-------------------------------------------------------------------------
 */
#include "geom_int.h"

#include <stdlib.h>
#include <string.h>

/*
 * Ray parity: does the ray from p along a fixed skewed direction cross the
 * faces of shell s an odd number of times?  Uses Moller-Trumbore in double.
 */
static bool
point_inside_shell(const AlxGeom *g, const uint32_t *faces, uint64_t nfaces,
				   const double *p, uint64_t *budget)
{
	static const double dir[3] = {0.4801710357, 0.6025703125, 0.6377917321};
	uint64_t	hits = 0;

	*budget = (*budget > nfaces) ? *budget - nfaces : 0;
	for (uint64_t i = 0; i < nfaces; i++)
	{
		uint64_t	f = faces[i];
		const double *v0, *v1, *v2;
		double		e1[3], e2[3], pv[3], tv[3], qv[3];
		double		det, inv, u, v, t;
		v0 = &g->pos[3 * (uint64_t) g->tri[3 * f]];
		v1 = &g->pos[3 * (uint64_t) g->tri[3 * f + 1]];
		v2 = &g->pos[3 * (uint64_t) g->tri[3 * f + 2]];
		sub3(e1, v1, v0);
		sub3(e2, v2, v0);
		cross3(pv, dir, e2);
		det = dot3(e1, pv);
		if (det == 0.0)
			continue;
		inv = 1.0 / det;
		sub3(tv, p, v0);
		u = dot3(tv, pv) * inv;
		if (u < 0.0 || u > 1.0)
			continue;
		cross3(qv, tv, e1);
		v = dot3(dir, qv) * inv;
		if (v < 0.0 || u + v > 1.0)
			continue;
		t = dot3(e2, qv) * inv;
		if (t > 0.0)
			hits++;
	}
	return (hits & 1) != 0;
}

/* Does the bounding box of outer contain that of inner? */
static bool
bbox_contains(const Shell *outer, const Shell *inner)
{
	for (int k = 0; k < 3; k++)
		if (inner->bmin[k] < outer->bmin[k] || inner->bmax[k] > outer->bmax[k])
			return false;
	return true;
}

/* Do the bounding boxes of a and b touch or overlap? */
static bool
bbox_overlaps(const Shell *a, const Shell *b)
{
	for (int k = 0; k < 3; k++)
		if (a->bmax[k] < b->bmin[k] || b->bmax[k] < a->bmin[k])
			return false;
	return true;
}

/*
 * The faces of each shell next to each other (a counting sort), for the
 * parity tests, and each shell's bounding-box volume.  false when out of
 * memory.
 */
static bool
group_shell_faces(GeomWork *w)
{
	const uint64_t F = w->F;
	const uint64_t nshells = w->nshells;
	Shell	   *shells = w->shells;
	uint64_t   *fill;

	w->shell_start = calloc(nshells + 1, sizeof(uint64_t));
	w->shell_faces = malloc(F * sizeof(uint32_t));
	if (!w->shell_start || !w->shell_faces)
		return false;
	for (uint64_t f = 0; f < F; f++)
		if (!w->skip[f])
			w->shell_start[w->face_shell[f] + 1]++;
	for (uint64_t s = 0; s < nshells; s++)
		w->shell_start[s + 1] += w->shell_start[s];
	fill = calloc(nshells, sizeof(uint64_t));
	if (!fill)
		return false;
	for (uint64_t f = 0; f < F; f++)
		if (!w->skip[f])
		{
			uint32_t	s = w->face_shell[f];

			w->shell_faces[w->shell_start[s] + fill[s]++] = (uint32_t) f;
		}
	free(fill);

	for (uint64_t s = 0; s < nshells; s++)
		shells[s].bbox_vol = (shells[s].bmax[0] - shells[s].bmin[0]) *
			(shells[s].bmax[1] - shells[s].bmin[1]) *
			(shells[s].bmax[2] - shells[s].bmin[2]);
	return true;
}

/* Is point p inside closed shell b (ray parity over b's faces)? */
static bool
inside_shell(const AlxGeom *g, const GeomWork *w, uint64_t b, const double *p,
			 uint64_t *budget)
{
	return point_inside_shell(g, &w->shell_faces[w->shell_start[b]],
							  w->shell_start[b + 1] - w->shell_start[b],
							  p, budget);
}

/*
 * Partial overlap: does one of a few sampled vertices of shell a lie
 * strictly inside the bounding box and inside closed shell b?
 */
static bool
shell_overlaps(const AlxGeom *g, const GeomWork *w, uint64_t a, uint64_t b,
			   uint64_t *budget)
{
	const Shell *B = &w->shells[b];
	uint64_t	na = w->shell_start[a + 1] - w->shell_start[a];
	uint64_t	step = na / 8 + 1;

	for (uint64_t i = 0; i < na; i += step)
	{
		uint64_t	f = w->shell_faces[w->shell_start[a] + i];
		const double *p;

		p = &g->pos[3 * (uint64_t) g->tri[3 * f]];
		if (p[0] <= B->bmin[0] || p[0] >= B->bmax[0] ||
			p[1] <= B->bmin[1] || p[1] >= B->bmax[1] ||
			p[2] <= B->bmin[2] || p[2] >= B->bmax[2])
			continue;
		if (inside_shell(g, w, b, p, budget))
			return true;
	}
	return false;
}

/*
 * Nesting and overlap between every pair of shells, within a work budget
 * of ray-triangle tests: each shell's parent is the smallest closed shell
 * that contains it; partially overlapping shells are flagged.
 */
static void
compare_shells(const AlxGeom *g, GeomWork *w, AlxMeshStats *st)
{
	const uint64_t nshells = w->nshells;
	Shell	   *shells = w->shells;
	uint64_t	budget = UINT64_C(300000000);

	for (uint64_t a = 0; a < nshells && budget > 0; a++)
	{
		for (uint64_t b = 0; b < nshells && budget > 0; b++)
		{
			Shell	   *A = &shells[a],
					   *B = &shells[b];
			const uint32_t *t;

			if (a == b || !B->closed || !bbox_overlaps(A, B))
				continue;
			if (bbox_contains(B, A) && !(bbox_contains(A, B) && a < b))
			{
				/* is A inside B?  test its first vertex */
				t = &g->tri[3 * (uint64_t) A->first_face];
				if (inside_shell(g, w, b, &g->pos[3 * (uint64_t) t[0]], &budget))
				{
					/* the smallest container is the direct parent */
					if (A->parent < 0 || B->bbox_vol < shells[A->parent].bbox_vol)
						A->parent = (int) b;
					continue;
				}
			}
			if (!bbox_contains(B, A) && !bbox_contains(A, B) &&
				shell_overlaps(g, w, a, b, &budget))
				st->warnings |= ALX_WARN_OVERLAPPING_SHELLS;
		}
	}
	if (budget == 0)
		st->warnings |= ALX_WARN_SHELL_CHECK_SKIPPED;
}

/*
 * Effective signs: outermost shells count positively; a nested shell
 * wound against its parent is a void, one wound like its parent is a
 * solid inside a solid.  Resolve parents before children by depth.  false
 * when out of memory.
 */
static bool
resolve_shell_signs(GeomWork *w, AlxMeshStats *st)
{
	const uint64_t nshells = w->nshells;
	Shell	   *shells = w->shells;
	uint64_t	n = 0;
	int			depth_max = 0;
	int		   *order;
	int		   *depth;

	order = malloc(nshells * sizeof(int));
	if (!order)
		return false;
	depth = calloc(nshells, sizeof(int));
	if (!depth)
	{
		free(order);
		return false;
	}
	for (uint64_t s = 0; s < nshells; s++)
	{
		int			d = 0;
		int			p = shells[s].parent;

		while (p >= 0 && d <= (int) nshells)
		{
			d++;
			p = shells[p].parent;
		}
		depth[s] = d;
		if (d > depth_max)
			depth_max = d;
	}
	for (int d = 0; d <= depth_max; d++)
		for (uint64_t s = 0; s < nshells; s++)
			if (depth[s] == d)
				order[n++] = (int) s;
	for (uint64_t i = 0; i < n; i++)
	{
		Shell	   *S = &shells[order[i]];
		double		vs = ksum_value(&S->vol);

		if (S->parent < 0)
			S->eff_sign = 1;
		else
		{
			Shell	   *P = &shells[S->parent];
			bool		same = (vs >= 0) == (ksum_value(&P->vol) >= 0);

			S->eff_sign = same ? P->eff_sign : -P->eff_sign;
			if (S->eff_sign < 0)
				st->warnings |= ALX_WARN_INNER_VOID;
			else
				st->warnings |= ALX_WARN_NESTED_SHELLS;
		}
	}
	free(depth);
	free(order);
	return true;
}

/*
 * The volume: with few enough shells, nested shells are found and voids
 * subtract (the outermost shells count positively, so a mesh wound inside
 * out as a whole still has a positive volume); with more, the signed shell
 * volumes are simply added.  false when out of memory.
 */
bool
AlxGeomSumVolume(const AlxGeom *g, GeomWork *w, AlxMeshStats *st)
{
	const uint64_t nshells = w->nshells;
	KSum		vol = {0, 0};

	if (nshells > 1)
		st->warnings |= ALX_WARN_MULTIPLE_SHELLS;
	if (nshells > 1 && nshells <= ALX_GEOM_MAX_SHELL_PAIRS_SHELLS)
	{
		if (!group_shell_faces(w))
			return false;
		compare_shells(g, w, st);
		if (!resolve_shell_signs(w, st))
			return false;
		for (uint64_t s = 0; s < nshells; s++)
			ksum_add(&vol, w->shells[s].eff_sign * fabs(ksum_value(&w->shells[s].vol)));
	}
	else
	{
		if (nshells > 1)
			st->warnings |= ALX_WARN_SHELL_CHECK_SKIPPED;
		for (uint64_t s = 0; s < nshells; s++)
			ksum_add(&vol, ksum_value(&w->shells[s].vol));
	}
	st->volume_mm3 = fabs(ksum_value(&vol));
	return true;
}
