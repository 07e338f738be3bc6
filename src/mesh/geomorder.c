/*-------------------------------------------------------------------------
 *
 * geomorder.c
 *	  Put a welded mesh in a cache-friendly order before it is measured.
 *
 * Every pass of the metrics (edges, union-find, orientation, volume) and
 * every ray of the wall thickness follows triangles to their vertices and
 * neighbours.  When the triangles come in grid order (as CAD exporters
 * write them) those accesses are local; when they come shuffled, every one
 * is a cache miss, and a 1M-triangle file took three times as long.  So a
 * mesh whose triangles jump around is renumbered first: vertices along a
 * Morton (Z-order) curve of their positions, then triangles by their
 * lowest new vertex id (a stable counting sort).  Both are stable sorts of
 * the welded mesh, so the result depends only on the mesh as read, never
 * on the reader (the native STL path and assimp give the same order).
 *
 * A mesh that is already local (the mean jump of the lowest vertex id from
 * one triangle to the next is small) is left as it is: renumbering costs
 * some 40 ms per million triangles and would win nothing.
 *
 * IDENTIFICATION
 *	  src/mesh/geomorder.c
 *
 *-------------------------------------------------------------------------
 */
#include "geometry.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* mean jump of the lowest vertex id below which a mesh counts as local */
#define LOCAL_MEAN_JUMP		256

static inline uint32_t
tri_min(const uint32_t *t)
{
	uint32_t	m = t[0] < t[1] ? t[0] : t[1];

	return m < t[2] ? m : t[2];
}

/* Is the triangle order already local? */
static bool
already_local(const AlxGeom *g)
{
	uint64_t	sum = 0;
	uint32_t	prev = 0;

	for (uint64_t f = 0; f < g->ntris; f++)
	{
		uint32_t	m = tri_min(&g->tri[3 * f]);

		sum += m > prev ? m - prev : prev - m;
		prev = m;
	}
	return sum < (uint64_t) LOCAL_MEAN_JUMP * g->ntris;
}

/* spread the low 10 bits of x to every third bit */
static inline uint32_t
spread3(uint32_t x)
{
	x &= 0x3ff;
	x = (x | (x << 16)) & 0x030000FF;
	x = (x | (x << 8)) & 0x0300F00F;
	x = (x | (x << 4)) & 0x030C30C3;
	x = (x | (x << 2)) & 0x09249249;
	return x;
}

/* 30-bit Morton code of every vertex on a 1024^3 grid over the bbox */
static void
morton_codes(const AlxGeom *g, uint32_t *code)
{
	double		lo[3] = {INFINITY, INFINITY, INFINITY},
				hi[3] = {-INFINITY, -INFINITY, -INFINITY},
				sc[3];

	for (uint64_t v = 0; v < g->nverts; v++)
		for (int k = 0; k < 3; k++)
		{
			double		c = g->pos[3 * v + k];

			lo[k] = c < lo[k] ? c : lo[k];
			hi[k] = c > hi[k] ? c : hi[k];
		}
	for (int k = 0; k < 3; k++)
		sc[k] = (hi[k] > lo[k] && isfinite(hi[k] - lo[k])) ? 1023.0 / (hi[k] - lo[k]) : 0.0;
	for (uint64_t v = 0; v < g->nverts; v++)
	{
		uint32_t	q[3];

		for (int k = 0; k < 3; k++)
		{
			double		t = (g->pos[3 * v + k] - lo[k]) * sc[k];

			q[k] = (t > 0 && t <= 1023.0) ? (uint32_t) t : (t > 1023.0 ? 1023 : 0);
		}
		code[v] = spread3(q[0]) | (spread3(q[1]) << 1) | (spread3(q[2]) << 2);
	}
}

/* order[0..n) = 0..n-1 sorted stably by code (LSD radix, 3 x 10 bits) */
static bool
sort_by_code(const uint32_t *code, uint64_t n, uint32_t *order)
{
	uint32_t   *tmp = malloc(n * sizeof(uint32_t));
	uint32_t   *src = order,
			   *dst = tmp;

	if (tmp == NULL)
		return false;
	for (uint64_t i = 0; i < n; i++)
		order[i] = (uint32_t) i;
	for (int pass = 0; pass < 3; pass++)
	{
		uint64_t	count[1025];
		int			shift = 10 * pass;

		memset(count, 0, sizeof(count));
		for (uint64_t i = 0; i < n; i++)
			count[((code[src[i]] >> shift) & 0x3ff) + 1]++;
		for (int b = 0; b < 1024; b++)
			count[b + 1] += count[b];
		for (uint64_t i = 0; i < n; i++)
			dst[count[(code[src[i]] >> shift) & 0x3ff]++] = src[i];
		{
			uint32_t   *t = src;

			src = dst;
			dst = t;
		}
	}
	/* three passes: the result is in tmp */
	memcpy(order, src, n * sizeof(uint32_t));
	free(tmp);
	return true;
}

/* Renumber vertices by order (new -> old) and rewrite the triangles. */
static bool
renumber_vertices(AlxGeom *g, const uint32_t *order)
{
	uint64_t	V = g->nverts;
	uint32_t   *map = malloc(V * sizeof(uint32_t));
	double	   *npos = malloc(V * 3 * sizeof(double));

	if (map == NULL || npos == NULL)
	{
		free(map);
		free(npos);
		return false;
	}
	for (uint64_t i = 0; i < V; i++)
	{
		map[order[i]] = (uint32_t) i;
		memcpy(&npos[3 * i], &g->pos[3 * (uint64_t) order[i]], 3 * sizeof(double));
	}
	for (uint64_t i = 0; i < 3 * g->ntris; i++)
		g->tri[i] = map[g->tri[i]];
	free(map);
	free(g->pos);
	g->pos = npos;
	g->cap_verts = V;
	return true;
}

/*
 * Stable counting sort of the triangles by their lowest vertex id.
 */
static bool
sort_triangles(AlxGeom *g)
{
	uint64_t	F = g->ntris,
				V = g->nverts;
	uint64_t   *start = calloc(V + 1, sizeof(uint64_t));
	uint32_t   *ntri = malloc(F * 3 * sizeof(uint32_t));

	if (start == NULL || ntri == NULL)
	{
		free(start);
		free(ntri);
		return false;
	}
	for (uint64_t f = 0; f < F; f++)
		start[tri_min(&g->tri[3 * f]) + 1]++;
	for (uint64_t v = 0; v < V; v++)
		start[v + 1] += start[v];
	for (uint64_t f = 0; f < F; f++)
	{
		const uint32_t *t = &g->tri[3 * f];
		uint64_t	to = start[tri_min(t)]++;

		memcpy(&ntri[3 * to], t, 3 * sizeof(uint32_t));
	}
	free(start);
	free(g->tri);
	g->tri = ntri;
	g->cap_tris = F;
	return true;
}

/*
 * Renumber a mesh whose triangles jump around; false only when out of
 * memory (the mesh is then unchanged or consistently half done: vertex
 * numbering and triangles always agree).
 */
bool
AlxGeomLocalize(AlxGeom *g)
{
	uint32_t   *code,
			   *order;
	bool		ok;

	if (g->error != ALX_GEOM_OK || g->ntris < 2 || already_local(g))
		return g->error == ALX_GEOM_OK;
	code = malloc(g->nverts * sizeof(uint32_t));
	order = malloc(g->nverts * sizeof(uint32_t));
	ok = code != NULL && order != NULL;
	if (ok)
	{
		morton_codes(g, code);
		ok = sort_by_code(code, g->nverts, order);
	}
	free(code);
	ok = ok && renumber_vertices(g, order);
	free(order);
	ok = ok && sort_triangles(g);
	if (!ok && g->error == ALX_GEOM_OK)
	{
		g->error = ALX_GEOM_ERR_TOO_LARGE;
		strcpy(g->errmsg, "out of memory while ordering the mesh");
	}
	return ok;
}
