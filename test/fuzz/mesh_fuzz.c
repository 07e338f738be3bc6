/*-------------------------------------------------------------------------
 *
 * mesh_fuzz.c
 *	  libFuzzer target over the mesh helper's decoding and metrics.
 *
 * The first input byte chooses the path:
 *	 0..6	AlxMeshDecode() with hint stl, obj, ply, gltf, glb, 3mf or NULL
 *			(magic-byte checks, the header checks of prescan.c, the 3MF
 *			archive checks, the native binary STL reader, assimp through the
 *			confined aiFileIO, the scene walk, the metrics);
 *	 7		differential: the bytes made into a binary STL of valid size
 *			(header, count, 50-byte records), read natively and through
 *			assimp; the two results must be identical, or the target traps;
 *	 8..255	the metrics alone over a triangle soup read from the bytes
 *			(12 bytes per vertex as three floats, then 3 x uint16 indices),
 *			which reaches welding, ordering, edges, orientation and shell
 *			nesting much faster than through a parser.
 * Every decode also measures the wall thickness (Embree, one thread), so the
 * orientation, the ray set-up and the STL record path of wall.c are fuzzed
 * too.  assimp and Embree are not instrumented; test/fuzz/run.sh tells
 * crashes in them from crashes in src/mesh.
 *
 * IDENTIFICATION
 *	  test/fuzz/mesh_fuzz.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "geometry.h"
#include "meshio.h"
#include "wall.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const hints[] = {"stl", "obj", "ply", "gltf", "glb", "3mf", NULL};

/* Embree once per process, single-threaded */
static bool
wall_ready(void)
{
	static int	state = 0;
	char		err[256];

	if (state == 0)
		state = AlxWallPrepare(1, err, sizeof(err)) ? 1 : -1;
	return state == 1;
}

static void
fuzz_soup(const uint8_t *data, size_t size)
{
	AlxGeom		g;
	AlxMeshStats st;
	size_t		nv,
				pos = 0;
	int64_t		ids[256];

	if (size < 2)
		return;
	nv = data[0] % 64 + 1;
	data++;
	size--;
	AlxGeomInit(&g);
	for (size_t i = 0; i < nv && pos + 12 <= size; i++, pos += 12)
	{
		float		f[3];

		memcpy(f, data + pos, sizeof(f));
		ids[i] = AlxGeomAddVertex(&g, f[0], f[1], f[2]);
		if (ids[i] < 0)
			break;
	}
	while (pos + 6 <= size && g.error == ALX_GEOM_OK)
	{
		uint16_t	t[3];

		memcpy(t, data + pos, sizeof(t));
		pos += 6;
		/* indices modulo a little more than nv: out-of-range ones are tested */
		(void) AlxGeomAddTriangle(&g, t[0] % (nv + 2), t[1] % (nv + 2), t[2] % (nv + 2));
	}
	if (AlxGeomLocalize(&g))
	{
		AlxWallStats ws;
		char		err[256];

		if (wall_ready())
			AlxWallBuildStart(&g);
		if (AlxGeomCompute(&g, &st) == ALX_GEOM_OK)
			(void) AlxWallMeasure(&g, &ws, err, sizeof(err));
		AlxWallRelease();
	}
	AlxGeomFree(&g);
}

/* Native and assimp binary STL readers must agree on every byte. */
static void
fuzz_stl_pair(const uint8_t *data, size_t size)
{
	static unsigned char buf[84 + 50 * 256];
	size_t		n = size / 50;
	AlxMeshOptions opt;
	AlxMeshResult a,
				b;
	char		ea[512],
				eb[512];
	int			ra,
				rb;

	if (n > 256)
		n = 256;
	memset(buf, ' ', 80);
	buf[80] = (unsigned char) n;
	buf[81] = buf[82] = buf[83] = 0;
	memcpy(buf + 84, data, 50 * n);
	memset(&opt, 0, sizeof(opt));
	opt.hint = "stl";
	opt.unit_scale = (size % 3 == 0) ? 25.4 : 1.0;
	opt.wall = wall_ready();
	ra = AlxMeshDecode(buf, 84 + 50 * n, &opt, &a, ea, sizeof(ea));
	opt.stl_via_assimp = true;
	rb = AlxMeshDecode(buf, 84 + 50 * n, &opt, &b, eb, sizeof(eb));
	/*
	 * Subnormal coordinates: assimp's path may flush them to zero (Embree's
	 * threads run with FTZ/DAZ) and merge vertices the native reader keeps
	 * apart by their bits; both must still decode without a crash, but
	 * their counts are not compared.
	 */
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < 12; k++)
		{
			float		f;

			memcpy(&f, buf + 84 + 50 * i + 4 * k, sizeof(f));
			if (f != 0.0f && fpclassify(f) == FP_SUBNORMAL)
				return;
		}
	if (ra != rb)
		__builtin_trap();
	if (ra == 0 && (memcmp(&a.stats, &b.stats, sizeof(a.stats)) != 0 ||
					memcmp(&a.wall, &b.wall, sizeof(a.wall)) != 0))
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	AlxMeshResult res;
	AlxMeshOptions opt;
	char		err[512];
	uint8_t		sel;

	if (size < 1)
		return 0;
	sel = data[0];
	if (sel == 7)
	{
		fuzz_stl_pair(data + 1, size - 1);
		return 0;
	}
	if (sel >= 8)
	{
		fuzz_soup(data + 1, size - 1);
		return 0;
	}
	if (size > 1 << 20)
		return 0;				/* like assimp's own harness */
	memset(&opt, 0, sizeof(opt));
	opt.hint = hints[sel];
	opt.unit_scale = 1.0;
	opt.wall = wall_ready();
	(void) AlxMeshDecode(data + 1, size - 1, &opt, &res, err, sizeof(err));
	return 0;
}
