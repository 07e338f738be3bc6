/*-------------------------------------------------------------------------
 *
 * prescan.h
 *	  Cheap structural checks of a mesh file before assimp sees it.
 *
 * assimp trusts what a header says: a PLY that declares 4e9 vertices is
 * allocated for, a PLY header cut short loops, a 200,000-deep JSON array
 * recurses.  These checks read the declared counts and compare them with
 * the bytes that are actually there, in time linear in the file size and
 * with no allocation, and refuse a file that lies before any parser runs.
 *
 * Each returns an ALX_MESHD_EXIT_* code (0 when the file may be parsed)
 * and, on failure, a one-line message.
 *
 * IDENTIFICATION
 *	  src/mesh/prescan.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_PRESCAN_H
#define ALX_PRESCAN_H

#include <stddef.h>

/* most vertices one OBJ face may have (assimp's ear clipping is quadratic) */
#define ALX_PRESCAN_MAX_FACE_VERTICES	4096
/* deepest JSON nesting of a glTF document */
#define ALX_PRESCAN_MAX_JSON_DEPTH		64
/* longest PLY header */
#define ALX_PRESCAN_MAX_PLY_HEADER		(1024 * 1024)
/* most entries one PLY list property may have */
#define ALX_PRESCAN_MAX_PLY_LIST		4096

extern int	AlxPrescanPly(const unsigned char *buf, size_t len, char *err, size_t errlen);
extern int	AlxPrescanObj(const unsigned char *buf, size_t len, char *err, size_t errlen);
extern int	AlxPrescanGltf(const unsigned char *buf, size_t len, char *err, size_t errlen);
extern int	AlxPrescanGlb(const unsigned char *buf, size_t len, char *err, size_t errlen);

#endif							/* ALX_PRESCAN_H */
