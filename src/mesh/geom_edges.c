/*-------------------------------------------------------------------------
 *
 * geom_edges.c
 *	  Edge topology of the welded mesh: the edge table, consistent
 *	  orientation and the shells.
 *
 * Edges are grouped by their lower vertex id (a counting sort) rather than
 * hashed; each distinct edge is classified as boundary, manifold or
 * non-manifold, the faces sharing an edge are united (union-find) into
 * shells, and a breadth-first walk over the manifold edges makes the
 * winding of each connected patch consistent (the majority orientation
 * wins) before geom_shells.c sums the volume.
 *
 * IDENTIFICATION
 *	  src/mesh/geom_edges.c
 *
 *-------------------------------------------------------------------------
 */
#include "geom_int.h"

#include <stdlib.h>
#include <string.h>

/* ---------- edges ---------- */

/* Order of edge uses: by the higher vertex id, then face and slot. */
static int
edgeuse_cmp(const void *a, const void *b)
{
	const EdgeUse *x = a,
			   *y = b;

	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	if (x->fs != y->fs)
		return x->fs < y->fs ? -1 : 1;
	return 0;
}

/* ---------- union-find over faces ---------- */

/* Root of the set of face x, compressing the path to it. */
static uint32_t
uf_find(uint32_t *parent, uint32_t x)
{
	uint32_t	r = x;

	while (parent[r] != r)
		r = parent[r];
	while (parent[x] != r)
	{
		uint32_t	n = parent[x];

		parent[x] = r;
		x = n;
	}
	return r;
}

/* Merge the sets of faces a and b. */
static void
uf_union(uint32_t *parent, uint32_t a, uint32_t b)
{
	a = uf_find(parent, a);
	b = uf_find(parent, b);
	if (a == b)
		return;
	/* keep the smaller id as root: deterministic and cheap */
	if (a < b)
		parent[b] = a;
	else
		parent[a] = b;
}

/*
 * Edges, grouped by their lower vertex id (a counting sort): the uses of
 * one edge end up next to each other, and since neighbouring triangles
 * share nearby vertex ids the passes stay cache-friendly, unlike a hash
 * table over all edges.  false when out of memory.
 */
bool
AlxGeomBucketEdges(const AlxGeom *g, GeomWork *w)
{
	const uint64_t F = w->F;

	w->estart = calloc(g->nverts + 1, sizeof(uint64_t));
	if (!w->estart)
		return false;
	for (uint64_t f = 0; f < F; f++)
	{
		const uint32_t *t = &g->tri[3 * f];

		if (w->skip[f])
			continue;
		for (int j = 0; j < 3; j++)
		{
			uint32_t	a = t[j],
						b = t[(j + 1) % 3];

			w->estart[(a < b ? a : b) + 1]++;
		}
	}
	for (uint64_t v = 0; v < g->nverts; v++)
		w->estart[v + 1] += w->estart[v];
	w->eent = malloc((w->estart[g->nverts] + 1) * sizeof(EdgeUse));
	w->efill = calloc(g->nverts + 1, sizeof(uint32_t));
	if (!w->eent || !w->efill)
		return false;
	for (uint64_t f = 0; f < F; f++)
	{
		const uint32_t *t = &g->tri[3 * f];

		if (w->skip[f])
			continue;
		for (int j = 0; j < 3; j++)
		{
			uint32_t	a = t[j],
						b = t[(j + 1) % 3];
			uint32_t	lo = a < b ? a : b;
			EdgeUse    *u = &w->eent[w->estart[lo] + w->efill[lo]++];

			u->hi = a < b ? b : a;
			u->fs = (uint32_t) ((f << 2) | (uint64_t) j);
		}
	}
	free(w->efill);
	w->efill = NULL;
	return true;
}

/* Sort the k uses of one vertex's bucket by (other end, face and slot). */
static void
sort_edge_bucket(EdgeUse *bucket, uint64_t k)
{
	if (k <= 16)
	{
		for (uint64_t i = 1; i < k; i++)
		{
			EdgeUse		x = bucket[i];
			uint64_t	j = i;

			while (j > 0 && (bucket[j - 1].hi > x.hi ||
							 (bucket[j - 1].hi == x.hi && bucket[j - 1].fs > x.fs)))
			{
				bucket[j] = bucket[j - 1];
				j--;
			}
			bucket[j] = x;
		}
	}
	else
		qsort(bucket, k, sizeof(EdgeUse), edgeuse_cmp);
}

/*
 * One edge from vertex v, used by bucket[0 .. count-1]: unite its faces
 * into one shell, count it as boundary, non-manifold or manifold, and link
 * the two faces of a manifold edge as neighbours (noting whether they run
 * it the same way, i.e. are inconsistently wound).
 */
static void
classify_edge(const AlxGeom *g, GeomWork *w, AlxMeshStats *st, uint64_t v,
			  const EdgeUse *bucket, uint64_t count)
{
	st->edges++;
	for (uint64_t j = 1; j < count; j++)
		uf_union(w->parent, bucket[j].fs >> 2, bucket[0].fs >> 2);
	if (count == 1)
	{
		st->boundary_edges++;
		w->open_face[bucket[0].fs >> 2] = 1;
	}
	else if (count > 2)
	{
		st->nonmanifold_edges++;
		for (uint64_t j = 0; j < count; j++)
			w->open_face[bucket[j].fs >> 2] = 1;
	}
	else
	{
		uint32_t	f0 = bucket[0].fs,
					f1 = bucket[1].fs;
		uint32_t	fa = f0 >> 2,
					fb = f1 >> 2;

		/* the direction of a use: does it run from lo to hi? */
		bool		fwd0 = g->tri[3 * (uint64_t) fa + (f0 & 3)] == (uint32_t) v;
		bool		fwd1 = g->tri[3 * (uint64_t) fb + (f1 & 3)] == (uint32_t) v;
		bool		same = (fwd0 == fwd1);

		if (same)
			st->inconsistent_edges++;
		if (fa != fb)
		{
			w->nb[3 * (uint64_t) fa + (f0 & 3)] = fb;
			w->nbsame[3 * (uint64_t) fa + (f0 & 3)] = same;
			w->nb[3 * (uint64_t) fb + (f1 & 3)] = fa;
			w->nbsame[3 * (uint64_t) fb + (f1 & 3)] = same;
		}
	}
}

/*
 * Edge topology: every distinct edge classified (classify_edge), faces
 * united into shells and manifold neighbours linked; releases the edge
 * buckets.  false when out of memory.
 */
bool
AlxGeomLinkEdges(const AlxGeom *g, GeomWork *w, AlxMeshStats *st)
{
	const uint64_t F = w->F;

	w->nb = malloc(F * 3 * sizeof(uint32_t));
	w->nbsame = calloc(F * 3, 1);
	w->open_face = calloc(F, 1);
	if (!w->nb || !w->nbsame || !w->open_face)
		return false;
	memset(w->nb, 0xff, F * 3 * sizeof(uint32_t));
	for (uint64_t v = 0; v < g->nverts; v++)
	{
		EdgeUse    *bucket = &w->eent[w->estart[v]];
		uint64_t	k = w->estart[v + 1] - w->estart[v];

		if (k == 0)
			continue;
		/* group the uses of each edge (sort by the other end) */
		sort_edge_bucket(bucket, k);

		for (uint64_t i = 0; i < k;)
		{
			uint64_t	r = i + 1;

			while (r < k && bucket[r].hi == bucket[i].hi)
				r++;
			classify_edge(g, w, st, v, &bucket[i], r - i);
			i = r;
		}
	}
	free(w->eent);
	w->eent = NULL;
	free(w->estart);
	w->estart = NULL;
	st->watertight = (st->boundary_edges == 0 && st->nonmanifold_edges == 0);
	return true;
}

/*
 * Orientation: a breadth-first walk over the manifold edges makes each
 * connected patch consistently wound, and the majority orientation of the
 * patch wins (w->flip).  Releases the neighbour links.  false when out of
 * memory.
 */
bool
AlxGeomOrientFaces(GeomWork *w, AlxMeshStats *st)
{
	const uint64_t F = w->F;
	uint8_t    *flip;
	uint32_t   *queue;

	flip = w->flip = malloc(F);
	queue = w->queue = malloc(F * sizeof(uint32_t));
	if (!flip || !queue)
		return false;
	memset(flip, 2, F);
	for (uint64_t seed = 0; seed < F; seed++)
	{
		uint64_t	qh = 0,
					qt = 0,
					nflip = 0;

		if (w->skip[seed] || flip[seed] != 2)
			continue;
		flip[seed] = 0;
		queue[qt++] = (uint32_t) seed;
		while (qh < qt)
		{
			uint32_t	f = queue[qh++];

			for (int j = 0; j < 3; j++)
			{
				uint32_t	n = w->nb[3 * (uint64_t) f + j];
				uint8_t		want;

				if (n == UINT32_MAX)
					continue;
				want = flip[f] ^ w->nbsame[3 * (uint64_t) f + j];
				if (flip[n] == 2)
				{
					flip[n] = want;
					nflip += want;
					queue[qt++] = n;
				}
				else if (flip[n] != want)
					st->warnings |= ALX_WARN_NOT_ORIENTABLE;
			}
		}
		/* keep the majority as it is */
		if (nflip * 2 > qt)
		{
			for (uint64_t i = 0; i < qt; i++)
				flip[queue[i]] ^= 1;
			nflip = qt - nflip;
		}
		st->faces_reoriented += nflip;
	}
	free(w->nb);
	w->nb = NULL;
	free(w->nbsame);
	w->nbsame = NULL;
	free(w->queue);
	w->queue = NULL;
	return true;
}

/*
 * Shells: number the union-find roots (face_shell) and set up one Shell
 * each, closed unless one of its faces has an open edge.  false when out of
 * memory.
 */
bool
AlxGeomNumberShells(GeomWork *w, AlxMeshStats *st)
{
	const uint64_t F = w->F;
	uint64_t	nshells = 0;
	Shell	   *shells;

	w->face_shell = malloc(F * sizeof(uint32_t));
	w->root_shell = malloc(F * sizeof(uint32_t));
	if (!w->face_shell || !w->root_shell)
		return false;
	memset(w->root_shell, 0xff, F * sizeof(uint32_t));
	for (uint64_t f = 0; f < F; f++)
	{
		uint32_t	r;

		if (w->skip[f])
		{
			w->face_shell[f] = UINT32_MAX;
			continue;
		}
		r = uf_find(w->parent, (uint32_t) f);
		if (w->root_shell[r] == UINT32_MAX)
			w->root_shell[r] = (uint32_t) nshells++;
		w->face_shell[f] = w->root_shell[r];
	}
	free(w->root_shell);
	w->root_shell = NULL;
	st->shells = w->nshells = nshells;

	shells = w->shells = calloc(nshells ? nshells : 1, sizeof(Shell));
	if (!shells)
		return false;
	for (uint64_t s = 0; s < nshells; s++)
	{
		for (int k = 0; k < 3; k++)
		{
			shells[s].bmin[k] = INFINITY;
			shells[s].bmax[k] = -INFINITY;
		}
		shells[s].closed = true;
		shells[s].parent = -1;
		shells[s].eff_sign = 1;
		shells[s].first_face = UINT32_MAX;
	}
	for (uint64_t f = 0; f < F; f++)
		if (w->open_face[f])
			shells[w->face_shell[f]].closed = false;
	return true;
}
