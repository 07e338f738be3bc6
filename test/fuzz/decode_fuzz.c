/*-------------------------------------------------------------------------
 *
 * decode_fuzz.c
 *	  libFuzzer target over the mesh helper's decoding: AlxMeshDecode() as
 *	  alexandrite-meshd calls it, assimp included.
 *
 * The first input byte (modulo 7) chooses the format hint: stl, obj, ply,
 * gltf, glb, 3mf or none (sniffed); the rest is the file.  This reaches the
 * magic-byte checks, the 3MF archive checks, assimp through the confined
 * aiFileIO, the scene walk and the metrics.  The metrics alone are fuzzed
 * faster, and strictly, by geom_fuzz.c.
 *
 * assimp itself is not instrumented, and Debian's assimp 5.2.5 has bugs of
 * its own: test/fuzz/run.sh runs this target in fork mode and attributes
 * every crash, out-of-memory and timeout to alexandrite or to assimp by
 * its stack (see the rules there); a finding in alexandrite fails the run.
 *
 * IDENTIFICATION
 *	  test/fuzz/decode_fuzz.c
 *
 *-------------------------------------------------------------------------
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "geometry.h"
#include "meshio.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const hints[] = {"stl", "obj", "ply", "gltf", "glb", "3mf", NULL};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	AlxMeshResult res;
	char		err[512];
	uint8_t		sel;

	if (size < 1)
		return 0;
	sel = data[0] % 7;
	if (size > 1 << 20)
		return 0;				/* like assimp's own harness */
	(void) AlxMeshDecode(data + 1, size - 1, hints[sel], 1.0, &res, err, sizeof(err));
	return 0;
}
