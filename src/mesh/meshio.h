/*-------------------------------------------------------------------------
 *
 * meshio.h
 *	  Decoding of an in-memory mesh file with assimp, confined to its input
 *	  buffer, into the metrics of geometry.h.  Used by alexandrite-meshd
 *	  and the fuzz target; never linked into the backend.
 *
 * IDENTIFICATION
 *	  src/mesh/meshio.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_MESHIO_H
#define ALX_MESHIO_H

#include <stdbool.h>
#include <stddef.h>

#include "geometry.h"
#include "wall.h"

/* upper bound on the nesting of scene nodes we walk */
#define ALX_MESHIO_MAX_NODE_DEPTH	256
/* upper bound on the declared uncompressed size of a 3MF archive */
#define ALX_MESHIO_MAX_UNZIPPED		((unsigned long long) 1024 * 1024 * 1024)

typedef struct AlxMeshResult
{
	AlxMeshStats stats;
	AlxWallStats wall;			/* measured only with opt->wall */
	char		format[17];		/* "stl-binary", "stl-ascii", "obj", ... */
	double		unit_scale_mm;	/* file unit -> mm factor applied */
} AlxMeshResult;

/*
 * Map a user-supplied format hint ("stl", ".STL", "glb", ...) to the
 * canonical extension; NULL if not supported.
 */
extern const char *AlxMeshCanonicalHint(const char *hint);

/*
 * Map a unit name ('mm','cm','m','in') to its factor in mm; 0 if invalid.
 */
extern double AlxMeshUnitScale(const char *unit);

typedef struct AlxMeshOptions
{
	const char *hint;			/* format hint, NULL to sniff */
	double		unit_scale;		/* mm per unit for STL, OBJ, PLY */
	bool		stl_via_assimp; /* read binary STL with assimp, not natively */
	bool		wall;			/* measure the wall thickness (needs AlxWallPrepare) */
} AlxMeshOptions;

/*
 * Decode and analyse.  The unit scale applies to the formats without units
 * (STL, OBJ, PLY); glTF is in metres and 3MF carries its own unit.  Returns
 * an ALX_MESHD_EXIT_* code; on failure err holds a one-line message.
 */
extern int	AlxMeshDecode(const unsigned char *buf, size_t len,
						  const AlxMeshOptions *opt, AlxMeshResult *res,
						  char *err, size_t errlen);

/*
 * Whether an allocation failed in this process (memguard.c in the helper;
 * a weak default that says no elsewhere).
 */
extern bool AlxMeshAllocFailed(void);

/* Non-zero while assimp parses (faultguard.c explains only its failures). */
#include <signal.h>
extern volatile sig_atomic_t alx_mesh_in_assimp;

#endif							/* ALX_MESHIO_H */
