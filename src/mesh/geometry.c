/*-------------------------------------------------------------------------
 *
 * geometry.c
 *	  PostgreSQL-free mesh metrics over a welded triangle soup.
 *
 * Vertices are welded by their exact position (the bit pattern of the three
 * doubles, -0 folded onto +0).  Everything is computed in double precision:
 *
 * - area and volume with Neumaier-compensated sums; the volume is the sum of
 *   signed tetrahedra over the bounding-box centre (re-centering keeps the
 *   cancellation small for meshes far from the origin);
 * - an edge table keyed by (min id, max id) gives boundary, non-manifold and
 *   inconsistently oriented edges, and unites the faces that share an edge
 *   (union-find) into shells;
 * - a breadth-first walk over the manifold edges makes the winding of each
 *   connected patch consistent (the majority orientation wins) before the
 *   volume is summed, so that a few flipped faces do not change the volume;
 * - shells are then compared pairwise (bounding boxes, then ray parity) to
 *   find nested shells (voids subtract, solids inside solids are flagged) and
 *   overlapping shells; the outermost shells count positively, so a mesh
 *   wound inside-out as a whole still has the right positive volume.
 *
 * Nothing here aborts: allocation failures and invalid input are reported
 * through the return code.
 *
 * IDENTIFICATION
 *	  src/mesh/geometry.c
 *
 *-------------------------------------------------------------------------
 */
#include "geometry.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static const char *const warning_names[ALX_WARN_COUNT] = {ALX_WARN_NAMES};

/* Name of a warning bit. */
const char *
AlxGeomWarningName(int bit)
{
	if (bit < 0 || bit >= ALX_WARN_COUNT)
		return "unknown";
	return warning_names[bit];
}

static void
geom_fail(AlxGeom *g, int code, const char *msg)
{
	if (g->error == ALX_GEOM_OK)
	{
		g->error = code;
		snprintf(g->errmsg, sizeof(g->errmsg), "%s", msg);
	}
}

/* Set up an empty mesh. */
void
AlxGeomInit(AlxGeom *g)
{
	memset(g, 0, sizeof(*g));
}

/* Release everything the mesh holds; safe to call twice. */
void
AlxGeomFree(AlxGeom *g)
{
	free(g->pos);
	free(g->vhash);
	free(g->tri);
	free(g->face_out);
	free(g->face_src);
	g->face_src = NULL;
	g->pos = NULL;
	g->vhash = NULL;
	g->tri = NULL;
	g->face_out = NULL;
	g->nverts = g->ntris = 0;
	g->cap_verts = g->cap_tris = 0;
	g->vhash_size = 0;
}

static inline uint64_t
mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return x;
}

static inline uint64_t
dbl_bits(double d)
{
	uint64_t	u;

	if (d == 0.0)
		d = 0.0;				/* fold -0 onto +0 */
	memcpy(&u, &d, sizeof(u));
	return u;
}

static inline uint64_t
pos_hash(const double *p)
{
	return mix64(dbl_bits(p[0]) ^ mix64(dbl_bits(p[1]) ^ mix64(dbl_bits(p[2]) + 0x9e3779b97f4a7c15ULL)));
}

/* Grow the vertex hash table to nsize slots (a power of two) and rehash. */
static bool
vhash_resize(AlxGeom *g, uint64_t nsize)
{
	uint32_t   *nh = calloc(nsize, sizeof(uint32_t));

	if (nh == NULL)
		return false;
	for (uint64_t i = 0; i < g->nverts; i++)
	{
		uint64_t	h = pos_hash(&g->pos[3 * i]) & (nsize - 1);

		while (nh[h] != 0)
			h = (h + 1) & (nsize - 1);
		nh[h] = (uint32_t) (i + 1);
	}
	free(g->vhash);
	g->vhash = nh;
	g->vhash_size = nsize;
	return true;
}

/* Double the vertex hash table (or create it). */
static bool
vhash_grow(AlxGeom *g)
{
	return vhash_resize(g, g->vhash_size ? g->vhash_size * 2 : 1024);
}

/* Room for about nverts vertices and ntris triangles. */
bool
AlxGeomReserve(AlxGeom *g, uint64_t nverts, uint64_t ntris, bool hashed)
{
	uint64_t	hsize = 1024;

	if (g->error != ALX_GEOM_OK)
		return false;
	if (nverts > ALX_GEOM_MAX_VERTICES)
		nverts = ALX_GEOM_MAX_VERTICES;
	if (ntris > ALX_GEOM_MAX_TRIANGLES)
		ntris = ALX_GEOM_MAX_TRIANGLES;
	while (hsize < 2 * nverts)
		hsize *= 2;
	if (hashed && hsize > g->vhash_size && !vhash_resize(g, hsize))
		goto oom;
	if (nverts > g->cap_verts)
	{
		double	   *np = realloc(g->pos, nverts * 3 * sizeof(double));

		if (np == NULL)
			goto oom;
		g->pos = np;
		g->cap_verts = nverts;
	}
	if (ntris > g->cap_tris)
	{
		uint32_t   *nt = realloc(g->tri, ntris * 3 * sizeof(uint32_t));

		if (nt == NULL)
			goto oom;
		g->tri = nt;
		g->cap_tris = ntris;
	}
	return true;
oom:
	geom_fail(g, ALX_GEOM_ERR_TOO_LARGE, "out of memory while reserving room for the mesh");
	return false;
}

/* Room for one more vertex position; false on error. */
static bool
pos_room(AlxGeom *g)
{
	if (g->nverts >= ALX_GEOM_MAX_VERTICES)
	{
		geom_fail(g, ALX_GEOM_ERR_TOO_LARGE, "mesh has too many distinct vertices");
		return false;
	}
	if (g->nverts == g->cap_verts)
	{
		uint64_t	ncap = g->cap_verts ? g->cap_verts * 2 : 1024;
		double	   *np = realloc(g->pos, ncap * 3 * sizeof(double));

		if (np == NULL)
		{
			geom_fail(g, ALX_GEOM_ERR_TOO_LARGE, "out of memory while welding vertices");
			return false;
		}
		g->pos = np;
		g->cap_verts = ncap;
	}
	return true;
}

/* Welded id of an exact position; -1 on error. */
int64_t
AlxGeomAddVertex(AlxGeom *g, double x, double y, double z)
{
	double		p[3];
	uint64_t	h;

	if (g->error != ALX_GEOM_OK)
		return -1;
	if (!isfinite(x) || !isfinite(y) || !isfinite(z))
	{
		geom_fail(g, ALX_GEOM_ERR_NONFINITE, "mesh has a NaN or infinite vertex coordinate");
		return -1;
	}
	p[0] = (x == 0.0) ? 0.0 : x;
	p[1] = (y == 0.0) ? 0.0 : y;
	p[2] = (z == 0.0) ? 0.0 : z;

	if ((g->nverts + 1) * 2 > g->vhash_size && !vhash_grow(g))
	{
		geom_fail(g, ALX_GEOM_ERR_TOO_LARGE, "out of memory while welding vertices");
		return -1;
	}
	h = pos_hash(p) & (g->vhash_size - 1);
	while (g->vhash[h] != 0)
	{
		uint64_t	id = g->vhash[h] - 1;
		const double *q = &g->pos[3 * id];

		if (q[0] == p[0] && q[1] == p[1] && q[2] == p[2])
			return (int64_t) id;
		h = (h + 1) & (g->vhash_size - 1);
	}
	if (!pos_room(g))
		return -1;
	memcpy(&g->pos[3 * g->nverts], p, sizeof(p));
	g->vhash[h] = (uint32_t) (g->nverts + 1);
	return (int64_t) g->nverts++;
}

/*
 * Append a position the caller has already welded (it differs from every
 * vertex added so far); -1 on error.  Does not use the vertex hash.
 */
int64_t
AlxGeomAppendVertex(AlxGeom *g, double x, double y, double z)
{
	double	   *q;

	if (g->error != ALX_GEOM_OK)
		return -1;
	if (!isfinite(x) || !isfinite(y) || !isfinite(z))
	{
		geom_fail(g, ALX_GEOM_ERR_NONFINITE, "mesh has a NaN or infinite vertex coordinate");
		return -1;
	}
	if (!pos_room(g))
		return -1;
	q = &g->pos[3 * g->nverts];
	q[0] = (x == 0.0) ? 0.0 : x;
	q[1] = (y == 0.0) ? 0.0 : y;
	q[2] = (z == 0.0) ? 0.0 : z;
	return (int64_t) g->nverts++;
}

/* Append a triangle of welded ids; every id is bounds-checked. */
bool
AlxGeomAddTriangle(AlxGeom *g, uint64_t a, uint64_t b, uint64_t c)
{
	if (g->error != ALX_GEOM_OK)
		return false;
	if (a >= g->nverts || b >= g->nverts || c >= g->nverts)
	{
		geom_fail(g, ALX_GEOM_ERR_INDEX, "triangle refers to a vertex that does not exist");
		return false;
	}
	if (g->ntris >= ALX_GEOM_MAX_TRIANGLES)
	{
		geom_fail(g, ALX_GEOM_ERR_TOO_LARGE, "mesh has too many triangles");
		return false;
	}
	if (g->ntris == g->cap_tris)
	{
		uint64_t	ncap = g->cap_tris ? g->cap_tris * 2 : 1024;
		uint32_t   *nt = realloc(g->tri, ncap * 3 * sizeof(uint32_t));

		if (nt == NULL)
		{
			geom_fail(g, ALX_GEOM_ERR_TOO_LARGE, "out of memory while reading triangles");
			return false;
		}
		g->tri = nt;
		g->cap_tris = ncap;
	}
	g->tri[3 * g->ntris] = (uint32_t) a;
	g->tri[3 * g->ntris + 1] = (uint32_t) b;
	g->tri[3 * g->ntris + 2] = (uint32_t) c;
	g->ntris++;
	return true;
}

/* ---------- edges ---------- */

/* one use of an edge by a face, filed under the edge's lower vertex id */
typedef struct EdgeUse
{
	uint32_t	hi;				/* the higher vertex id */
	uint32_t	fs;				/* face << 2 | slot (edge slot..slot+1) */
} EdgeUse;

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

static bool
bbox_contains(const Shell *outer, const Shell *inner)
{
	for (int k = 0; k < 3; k++)
		if (inner->bmin[k] < outer->bmin[k] || inner->bmax[k] > outer->bmax[k])
			return false;
	return true;
}

static bool
bbox_overlaps(const Shell *a, const Shell *b)
{
	for (int k = 0; k < 3; k++)
		if (a->bmax[k] < b->bmin[k] || b->bmax[k] < a->bmin[k])
			return false;
	return true;
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

static void
geom_work_free(GeomWork *w)
{
	free(w->used);
	free(w->skip);
	free(w->estart);
	free(w->efill);
	free(w->eent);
	free(w->open_face);
	free(w->parent);
	free(w->nb);
	free(w->nbsame);
	free(w->flip);
	free(w->queue);
	free(w->face_shell);
	free(w->root_shell);
	free(w->shell_faces);
	free(w->shell_start);
	free(w->shells);
}

/*
 * Used vertices, bounding box (with its centre and diagonal) and degenerate
 * faces (two equal ids); sets up the union-find.  false when out of memory.
 */
static bool
scan_faces(const AlxGeom *g, GeomWork *w, AlxMeshStats *st)
{
	const uint64_t F = w->F;

	w->used = calloc(g->nverts, 1);
	w->skip = calloc(F, 1);
	w->parent = malloc(F * sizeof(uint32_t));
	if (!w->used || !w->skip || !w->parent)
		return false;

	for (int k = 0; k < 3; k++)
	{
		st->bbox_min[k] = INFINITY;
		st->bbox_max[k] = -INFINITY;
	}
	for (uint64_t f = 0; f < F; f++)
	{
		const uint32_t *t = &g->tri[3 * f];

		w->parent[f] = (uint32_t) f;
		if (t[0] == t[1] || t[1] == t[2] || t[0] == t[2])
		{
			w->skip[f] = 1;		/* no area, no edges: out of the topology */
			st->degenerate_triangles++;
		}
		for (int j = 0; j < 3; j++)
		{
			if (!w->used[t[j]])
			{
				const double *p = &g->pos[3 * (uint64_t) t[j]];

				w->used[t[j]] = 1;
				st->vertices++;
				for (int k = 0; k < 3; k++)
				{
					if (p[k] < st->bbox_min[k])
						st->bbox_min[k] = p[k];
					if (p[k] > st->bbox_max[k])
						st->bbox_max[k] = p[k];
				}
			}
		}
	}
	for (int k = 0; k < 3; k++)
	{
		w->c[k] = 0.5 * (st->bbox_min[k] + st->bbox_max[k]);
		st->size[k] = st->bbox_max[k] - st->bbox_min[k];
	}
	w->diag = sqrt(st->size[0] * st->size[0] + st->size[1] * st->size[1] +
				   st->size[2] * st->size[2]);
	return true;
}

/*
 * Edges, grouped by their lower vertex id (a counting sort): the uses of
 * one edge end up next to each other, and since neighbouring triangles
 * share nearby vertex ids the passes stay cache-friendly, unlike a hash
 * table over all edges.  false when out of memory.
 */
static bool
bucket_edges(const AlxGeom *g, GeomWork *w)
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
static bool
link_edges(const AlxGeom *g, GeomWork *w, AlxMeshStats *st)
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
static bool
orient_faces(GeomWork *w, AlxMeshStats *st)
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
static bool
number_shells(GeomWork *w, AlxMeshStats *st)
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

/*
 * Area, vector area (hence the volume uncertainty of an open mesh) and the
 * signed volume, face count and bounding box of every shell, in one pass
 * over the consistently wound faces.
 */
static void
sum_faces(const AlxGeom *g, GeomWork *w, AlxMeshStats *st)
{
	KSum		area = {0, 0};
	KSum		sv[3] = {{0, 0}, {0, 0}, {0, 0}};
	const double *c = w->c;

	for (uint64_t f = 0; f < w->F; f++)
	{
		const uint32_t *t = &g->tri[3 * f];
		const double *pa, *pb, *pc;
		double		a[3], b[3], d[3], e1[3], e2[3], n[3], bxd[3];
		double		nn;
		Shell	   *sh;

		pa = &g->pos[3 * (uint64_t) t[0]];
		if (w->flip[f] == 1)
		{
			pb = &g->pos[3 * (uint64_t) t[2]];
			pc = &g->pos[3 * (uint64_t) t[1]];
		}
		else
		{
			pb = &g->pos[3 * (uint64_t) t[1]];
			pc = &g->pos[3 * (uint64_t) t[2]];
		}
		sub3(e1, pb, pa);
		sub3(e2, pc, pa);
		cross3(n, e1, e2);
		nn = sqrt(dot3(n, n));
		if (w->skip[f])
			continue;
		if (nn == 0.0)
			st->degenerate_triangles++;
		ksum_add(&area, 0.5 * nn);
		ksum_add(&sv[0], 0.5 * n[0]);
		ksum_add(&sv[1], 0.5 * n[1]);
		ksum_add(&sv[2], 0.5 * n[2]);

		sub3(a, pa, c);
		sub3(b, pb, c);
		sub3(d, pc, c);
		cross3(bxd, b, d);
		sh = &w->shells[w->face_shell[f]];
		ksum_add(&sh->vol, dot3(a, bxd) / 6.0);
		sh->faces++;
		if (sh->first_face == UINT32_MAX)
			sh->first_face = (uint32_t) f;
		for (int j = 0; j < 3; j++)
		{
			const double *p = &g->pos[3 * (uint64_t) t[j]];

			for (int k = 0; k < 3; k++)
			{
				if (p[k] < sh->bmin[k])
					sh->bmin[k] = p[k];
				if (p[k] > sh->bmax[k])
					sh->bmax[k] = p[k];
			}
		}
	}
	st->area_mm2 = ksum_value(&area);
	{
		double		s0 = ksum_value(&sv[0]),
					s1 = ksum_value(&sv[1]),
					s2 = ksum_value(&sv[2]);

		st->volume_uncertainty_mm3 = st->watertight ? 0.0 :
			sqrt(s0 * s0 + s1 * s1 + s2 * s2) * w->diag / 3.0;
	}
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
static bool
sum_volume(const AlxGeom *g, GeomWork *w, AlxMeshStats *st)
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

/*
 * Outward orientation of every face, for the wall thickness: the
 * patch's consistent winding, turned over when its shell as a whole is
 * wound against its role (an outer solid with negative volume, a void
 * with positive volume).  2 marks the faces left out of the topology.
 * false when out of memory.
 */
static bool
orient_outward(AlxGeom *g, const GeomWork *w)
{
	free(g->face_out);
	g->face_out = malloc(w->F);
	if (!g->face_out)
		return false;
	for (uint64_t f = 0; f < w->F; f++)
	{
		const Shell *sh;
		bool		rev;

		if (w->skip[f])
		{
			g->face_out[f] = 2;
			continue;
		}
		sh = &w->shells[w->face_shell[f]];
		rev = (ksum_value(&sh->vol) >= 0) != (sh->eff_sign > 0);
		g->face_out[f] = (uint8_t) ((w->flip[f] & 1) ^ (rev ? 1 : 0));
	}
	return true;
}

/* Euler characteristic V - E + F, and the genus of a closed orientable mesh. */
static void
count_topology(const GeomWork *w, AlxMeshStats *st)
{
	uint64_t	kept = 0;

	for (uint64_t f = 0; f < w->F; f++)
		kept += !w->skip[f];
	st->euler_characteristic = (int64_t) st->vertices -
		(int64_t) st->edges + (int64_t) kept;
	if (st->watertight && !(st->warnings & ALX_WARN_NOT_ORIENTABLE))
	{
		int64_t		twice = 2 * (int64_t) w->nshells - st->euler_characteristic;

		if (twice >= 0 && twice % 2 == 0)
			st->genus = twice / 2;
	}
}

/* The warnings that follow from the counts and the size. */
static void
flag_warnings(AlxMeshStats *st)
{
	double		m = st->size[0];

	if (st->boundary_edges > 0)
		st->warnings |= ALX_WARN_OPEN_MESH;
	if (st->nonmanifold_edges > 0)
		st->warnings |= ALX_WARN_NONMANIFOLD;
	if (st->faces_reoriented > 0 || st->inconsistent_edges > 0)
		st->warnings |= ALX_WARN_INCONSISTENT;
	if (st->degenerate_triangles > 0)
		st->warnings |= ALX_WARN_DEGENERATE;
	if (st->size[1] > m)
		m = st->size[1];
	if (st->size[2] > m)
		m = st->size[2];
	if (m < 1.0 || m > 300.0)
		st->warnings |= ALX_WARN_UNIT_SUSPECT;
}

/*
 * Compute every metric.  On error nothing in *st is meaningful.
 *
 * The steps run in order, each releasing the scratch arrays no later step
 * needs (the helper runs under an address-space limit): faces and bounding
 * box, edges, orientation, shells, sums, nesting and volume, outward
 * orientation, topology, warnings.
 */
int
AlxGeomCompute(AlxGeom *g, AlxMeshStats *st)
{
	GeomWork	w;
	int			rc = ALX_GEOM_OK;

	memset(st, 0, sizeof(*st));
	st->genus = -1;
	if (g->error != ALX_GEOM_OK)
		return g->error;
	if (g->ntris == 0)
	{
		geom_fail(g, ALX_GEOM_ERR_EMPTY, "mesh contains no triangles");
		return g->error;
	}
	st->triangles = g->ntris;
	memset(&w, 0, sizeof(w));
	w.F = g->ntris;

	if (!scan_faces(g, &w, st) ||
		!bucket_edges(g, &w) ||
		!link_edges(g, &w, st) ||
		!orient_faces(&w, st) ||
		!number_shells(&w, st))
		goto oom;
	sum_faces(g, &w, st);
	if (!sum_volume(g, &w, st) || !orient_outward(g, &w))
		goto oom;
	count_topology(&w, st);

	/* finite coordinates can still overflow a product (|x| > 1e102) */
	if (!isfinite(st->volume_mm3) || !isfinite(st->area_mm2) ||
		!isfinite(st->volume_uncertainty_mm3) || !isfinite(w.diag))
	{
		geom_fail(g, ALX_GEOM_ERR_NONFINITE, "mesh coordinates are too large to measure");
		rc = g->error;
	}
	else
		flag_warnings(st);
	geom_work_free(&w);
	return rc;

oom:
	geom_fail(g, ALX_GEOM_ERR_TOO_LARGE, "out of memory while analysing the mesh");
	geom_work_free(&w);
	return g->error;
}

/* Append formatted text to a bounded buffer, tracking the length. */
static void
jappend(char *buf, size_t size, size_t *len, const char *fmt, double d)
{
	int			n;

	if (*len >= size)
		return;
	n = snprintf(buf + *len, size - *len, fmt, d);
	if (n > 0)
		*len += (size_t) n;
}

/* The stats as one JSON object; the numbers round-trip (%.17g). */
int
AlxGeomStatsToJson(const AlxMeshStats *st, char *buf, size_t bufsize)
{
	size_t		len = 0;
	bool		first = true;
	int			n;

	n = snprintf(buf, bufsize,
				 "{\"triangles\":%llu,\"vertices\":%llu,\"volume_mm3\":%.17g,"
				 "\"area_mm2\":%.17g,\"size_x_mm\":%.17g,\"size_y_mm\":%.17g,"
				 "\"size_z_mm\":%.17g,\"shells\":%llu,\"watertight\":%s,"
				 "\"boundary_edges\":%llu,\"nonmanifold_edges\":%llu,"
				 "\"degenerate_triangles\":%llu,\"inconsistent_edges\":%llu,"
				 "\"faces_reoriented\":%llu,\"euler_characteristic\":%lld,",
				 (unsigned long long) st->triangles,
				 (unsigned long long) st->vertices,
				 st->volume_mm3, st->area_mm2,
				 st->size[0], st->size[1], st->size[2],
				 (unsigned long long) st->shells,
				 st->watertight ? "true" : "false",
				 (unsigned long long) st->boundary_edges,
				 (unsigned long long) st->nonmanifold_edges,
				 (unsigned long long) st->degenerate_triangles,
				 (unsigned long long) st->inconsistent_edges,
				 (unsigned long long) st->faces_reoriented,
				 (long long) st->euler_characteristic);
	if (n < 0)
		return 0;
	len = (size_t) n;
	if (st->genus >= 0)
		jappend(buf, bufsize, &len, "\"genus\":%.0f,", (double) st->genus);
	else
		jappend(buf, bufsize, &len, "\"genus\":null,", 0.0);
	jappend(buf, bufsize, &len, "\"volume_uncertainty_mm3\":%.17g,", st->volume_uncertainty_mm3);
	jappend(buf, bufsize, &len, "\"bbox_min_mm\":[%.17g,", st->bbox_min[0]);
	jappend(buf, bufsize, &len, "%.17g,", st->bbox_min[1]);
	jappend(buf, bufsize, &len, "%.17g],", st->bbox_min[2]);
	if (len < bufsize)
	{
		n = snprintf(buf + len, bufsize - len, "\"warnings\":[");
		if (n > 0)
			len += (size_t) n;
	}
	for (int i = 0; i < ALX_WARN_COUNT; i++)
	{
		if (!(st->warnings & (1u << i)) || len >= bufsize)
			continue;
		n = snprintf(buf + len, bufsize - len, "%s\"%s\"", first ? "" : ",",
					 warning_names[i]);
		if (n > 0)
			len += (size_t) n;
		first = false;
	}
	if (len < bufsize)
	{
		n = snprintf(buf + len, bufsize - len, "]}");
		if (n > 0)
			len += (size_t) n;
	}
	return (int) (len < bufsize ? len : bufsize - 1);
}
