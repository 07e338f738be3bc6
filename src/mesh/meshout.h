/*-------------------------------------------------------------------------
 *
 * meshout.h
 *	  What alexandrite-meshd writes: the backend's binary record and the
 *	  CLI's JSON lines.
 *
 * IDENTIFICATION
 *	  src/mesh/meshout.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_MESHOUT_H
#define ALX_MESHOUT_H

#include <stddef.h>

#include "meshio.h"

/* Write the record of a result to fd 1; exits on a write error. */
extern void AlxMeshWriteRecord(const AlxMeshResult *res, size_t source_bytes);

/* One JSON line on stdout for a result, or for an error when error != NULL. */
extern void AlxMeshPrintJson(const char *file, const AlxMeshResult *res, const char *error);
/* s as a JSON string, quotes included, cut to fit outsize */
extern void AlxMeshJsonString(char *out, size_t outsize, const char *s);

#endif							/* ALX_MESHOUT_H */
