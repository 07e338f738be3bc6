/*-------------------------------------------------------------------------
 *
 * geom_fuzz.c
 *	  libFuzzer target over alexandrite's own mesh code only: the metrics
 *	  of geometry.c (welding, edges, orientation, shells, nesting) over a
 *	  triangle soup read from the bytes, without any parser in between.
 *
 * Input: one byte n (1 + n % 64 vertices), then 12 bytes per vertex (three
 * floats, any bit pattern: NaN, Inf and denormals included), then 3 x uint16
 * vertex indices per triangle, taken modulo a little more than the vertex
 * count so that out-of-range indices are tried too.
 *
 * Every finding of this target is a bug in alexandrite: test/fuzz/run.sh
 * runs it without -ignore_crashes/-ignore_ooms/-ignore_timeouts and fails
 * on any crash, sanitizer report, leak, out-of-memory or timeout.
 *
 * IDENTIFICATION
 *	  test/fuzz/geom_fuzz.c
 *
 *-------------------------------------------------------------------------
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "geometry.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	AlxGeom		g;
	AlxMeshStats st;
	size_t		nv,
				pos = 0;
	int64_t		ids[64];

	if (size < 2)
		return 0;
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
		(void) AlxGeomAddTriangle(&g, t[0] % (nv + 2), t[1] % (nv + 2), t[2] % (nv + 2));
	}
	(void) AlxGeomCompute(&g, &st);
	AlxGeomFree(&g);
	return 0;
}
