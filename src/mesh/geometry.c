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
 * This file welds the vertices, runs the steps in order and sums the faces;
 * the edge topology, orientation and shells are in geom_edges.c, the shell
 * nesting and the volume in geom_shells.c (geom_int.h is their shared state).
 *
 * Nothing here aborts: allocation failures and invalid input are reported
 * through the return code.
 *
 * IDENTIFICATION
 *	  src/mesh/geometry.c
 *
 *-------------------------------------------------------------------------
 */
#include "geom_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Release the scratch arrays still held; every step leaves NULL behind. */
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
		!AlxGeomBucketEdges(g, &w) ||
		!AlxGeomLinkEdges(g, &w, st) ||
		!AlxGeomOrientFaces(&w, st) ||
		!AlxGeomNumberShells(&w, st))
		goto oom;
	sum_faces(g, &w, st);
	if (!AlxGeomSumVolume(g, &w, st) || !orient_outward(g, &w))
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
