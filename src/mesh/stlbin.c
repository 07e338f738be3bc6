/*-------------------------------------------------------------------------
 *
 * stlbin.c
 *	  Binary STL read directly: 84 header bytes, then one 50-byte record per
 *	  triangle (normal, three vertices as little-endian float32, 2 bytes of
 *	  attributes).
 *
 * The records are welded in file order, the way the assimp path hands them
 * over (assimp gives each STL face three vertices of its own, which the
 * scene walk welds face by face, numbering new positions as they come), and
 * each coordinate is scaled in double exactly as the scene walk does: the
 * two paths give bit-identical statistics (test/t/022_mesh_stl_native.pl).
 * What assimp adds for binary STL -- a scene graph, 3n float vertices,
 * per-face normals, a validation pass -- is skipped, which is most of the
 * time a 1M-triangle file used to take.
 *
 * The stored normal and the attribute bytes are ignored (the orientation
 * comes from the vertex order, like every other reader does).
 *
 * IDENTIFICATION
 *	  src/mesh/stlbin.c
 *
 *-------------------------------------------------------------------------
 */
#include "stlbin.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshrecord.h"

/*
 * The weld of the binary STL path: an open-addressing table keyed by the
 * raw bits of the three float32 coordinates (-0 folded onto +0).  Two float
 * triples are equal exactly when their scaled doubles are (scaling by the
 * same double is exact and monotonic for float inputs), so this welds
 * exactly as AlxGeomAddVertex would, but compares 12 bytes kept in the
 * slot itself instead of three doubles elsewhere, and looks up a batch of
 * vertices at a time after prefetching their slots.
 */
typedef struct StlSlot
{
	uint32_t	k[3];
	uint32_t	id1;			/* vertex id + 1; 0 = empty */
} StlSlot;

typedef struct StlWeld
{
	StlSlot    *slot;
	uint64_t	size;			/* a power of two */
	uint64_t	used;
} StlWeld;

#define STL_BATCH	48			/* vertices looked up together: 16 triangles */

static inline uint64_t
key_hash(const uint32_t *k)
{
	uint64_t	h = ((uint64_t) k[0] | ((uint64_t) k[1] << 32)) * UINT64_C(0x9E3779B97F4A7C15);

	h ^= (uint64_t) k[2] * UINT64_C(0xC2B2AE3D27D4EB4F);
	h ^= h >> 29;
	h *= UINT64_C(0xBF58476D1CE4E5B9);
	return h ^ (h >> 32);
}

static bool
weld_resize(StlWeld *w, uint64_t nsize)
{
	StlSlot    *ns = calloc(nsize, sizeof(StlSlot));

	if (ns == NULL)
		return false;
	for (uint64_t i = 0; i < w->size; i++)
	{
		uint64_t	h;

		if (w->slot[i].id1 == 0)
			continue;
		h = key_hash(w->slot[i].k) & (nsize - 1);
		while (ns[h].id1 != 0)
			h = (h + 1) & (nsize - 1);
		ns[h] = w->slot[i];
	}
	free(w->slot);
	w->slot = ns;
	w->size = nsize;
	return true;
}

/* little-endian uint32 at p */
static inline uint32_t
get_u32le(const unsigned char *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static inline double
bits_to_double(uint32_t u)
{
	float		f;

	memcpy(&f, &u, sizeof(f));
	return (double) f;
}

static int
geom_error(const AlxGeom *g, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", g->errmsg);
	return g->error == ALX_GEOM_ERR_TOO_LARGE ?
		ALX_MESHD_EXIT_TOO_LARGE : ALX_MESHD_EXIT_BAD_FILE;
}

/*
 * Weld nv vertices (keys k, 3 words each, already -0 folded and hashed
 * into h) in order, appending new ones to g; ids into out.
 */
static bool
weld_batch(StlWeld *w, AlxGeom *g, double scale, const uint32_t *k,
		   const uint64_t *h, int nv, uint32_t *out)
{
	uint64_t	mask = w->size - 1;

	for (int j = 0; j < nv; j++)
	{
		const uint32_t *kj = &k[3 * j];
		uint64_t	i = h[j] & mask;

		for (;;)
		{
			StlSlot    *s = &w->slot[i];

			if (s->id1 == 0)
			{
				int64_t		id = AlxGeomAppendVertex(g, scale * bits_to_double(kj[0]),
													 scale * bits_to_double(kj[1]),
													 scale * bits_to_double(kj[2]));

				if (id < 0)
					return false;
				memcpy(s->k, kj, sizeof(s->k));
				s->id1 = (uint32_t) id + 1;
				w->used++;
				out[j] = (uint32_t) id;
				break;
			}
			if (s->k[0] == kj[0] && s->k[1] == kj[1] && s->k[2] == kj[2])
			{
				out[j] = s->id1 - 1;
				break;
			}
			i = (i + 1) & mask;
		}
	}
	return true;
}

int
AlxStlBinaryLoad(AlxGeom *g, const unsigned char *buf, size_t len, double scale,
				 char *err, size_t errlen)
{
	uint64_t	n;
	StlWeld		w;
	uint64_t	size = 1024;
	int			rc = ALX_MESHD_EXIT_OK;

	if (len < 84)
	{
		snprintf(err, errlen, "binary STL is shorter than its 84-byte header");
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	n = alx_get_u32(buf + 80);
	if ((uint64_t) len != 84 + 50 * n)
	{
		snprintf(err, errlen, "binary STL size %zu does not match its triangle count %llu (expected %llu bytes)",
				 len, (unsigned long long) n, (unsigned long long) (84 + 50 * n));
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	if (n == 0)
	{
		snprintf(err, errlen, "binary STL has no triangles");
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	/* closed meshes have about n/2 distinct vertices: a table half full */
	if (!AlxGeomReserve(g, n / 2 + 16, n, false))
		return geom_error(g, err, errlen);
	while (size < n + 32)
		size *= 2;
	memset(&w, 0, sizeof(w));
	if (!weld_resize(&w, size))
	{
		snprintf(err, errlen, "out of memory while welding vertices");
		return ALX_MESHD_EXIT_TOO_LARGE;
	}

	for (uint64_t t0 = 0; t0 < n && rc == ALX_MESHD_EXIT_OK; t0 += STL_BATCH / 3)
	{
		uint32_t	k[3 * STL_BATCH];
		uint64_t	h[STL_BATCH];
		uint32_t	ids[STL_BATCH];
		int			nt = (int) ((n - t0) < STL_BATCH / 3 ? (n - t0) : STL_BATCH / 3);
		int			nv = 3 * nt;

		/* keep the table at most half full */
		if ((w.used + nv) * 2 > w.size && !weld_resize(&w, w.size * 2))
		{
			snprintf(err, errlen, "out of memory while welding vertices");
			rc = ALX_MESHD_EXIT_TOO_LARGE;
			break;
		}
		/* the records a few batches ahead: the input streams from memory */
		if (t0 + 4 * (STL_BATCH / 3) < n)
		{
			const unsigned char *ahead = buf + 84 + 50 * (t0 + 4 * (STL_BATCH / 3));

			for (int b = 0; b < 50 * (STL_BATCH / 3); b += 64)
				__builtin_prefetch(ahead + b);
		}
		for (int j = 0; j < nv; j++)
		{
			const unsigned char *v = buf + 84 + 50 * (t0 + (uint64_t) (j / 3)) + 12 + 12 * (j % 3);

			for (int c = 0; c < 3; c++)
			{
				uint32_t	u = get_u32le(v + 4 * c);

				k[3 * j + c] = (u == 0x80000000u) ? 0 : u;	/* -0 is +0 */
			}
			h[j] = key_hash(&k[3 * j]);
			__builtin_prefetch(&w.slot[h[j] & (w.size - 1)]);
		}
		if (!weld_batch(&w, g, scale, k, h, nv, ids))
		{
			rc = geom_error(g, err, errlen);
			break;
		}
		for (int t = 0; t < nt; t++)
			if (!AlxGeomAddTriangle(g, ids[3 * t], ids[3 * t + 1], ids[3 * t + 2]))
			{
				rc = geom_error(g, err, errlen);
				break;
			}
	}
	free(w.slot);
	return rc;
}
