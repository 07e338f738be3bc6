/*-------------------------------------------------------------------------
 *
 * geom_fuzz.c
 *	  Strict libFuzzer target over alexandrite's own mesh code only: the
 *	  triangle-soup path of mesh_fuzz.c (welding, edges, orientation,
 *	  shells, nesting, over vertices and indices read straight from the
 *	  bytes), with no parser in between.
 *
 * mesh_fuzz.c chooses its path by the first input byte; its highest
 * selectors are the soup.  This target includes it, renames its entry point
 * and always calls it with selector 255, so that the soup code stays in one
 * place and mutations can never wander into assimp.  Every finding of this
 * target is a bug in alexandrite: test/fuzz/run.sh runs it without
 * -ignore_crashes/-ignore_ooms/-ignore_timeouts and fails on any crash,
 * sanitizer report, leak, out-of-memory or timeout.
 *
 * IDENTIFICATION
 *	  test/fuzz/geom_fuzz.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LLVMFuzzerTestOneInput alx_mesh_fuzz_entry
#include "mesh_fuzz.c"
#undef LLVMFuzzerTestOneInput

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *buf;

	if (size > 65536)
		return 0;
	buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	buf[0] = 255;				/* the soup selector */
	memcpy(buf + 1, data, size);
	(void) alx_mesh_fuzz_entry(buf, size + 1);
	free(buf);
	return 0;
}
