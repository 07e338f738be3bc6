/*-------------------------------------------------------------------------
 *
 * stlbin.h
 *	  Native reader of binary STL into the welding of geometry.h.
 *
 * IDENTIFICATION
 *	  src/mesh/stlbin.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_STLBIN_H
#define ALX_STLBIN_H

#include <stdbool.h>
#include <stddef.h>

#include "geometry.h"

/*
 * Read a binary STL (exactly 84 + 50 n bytes) into g, every coordinate
 * multiplied by scale.  Returns an ALX_MESHD_EXIT_* code; on failure err
 * holds a one-line message.
 */
extern int	AlxStlBinaryLoad(AlxGeom *g, const unsigned char *buf, size_t len,
							 double scale, char *err, size_t errlen);

#endif							/* ALX_STLBIN_H */
