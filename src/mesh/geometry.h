/*-------------------------------------------------------------------------
 *
 * geometry.h
 *	  PostgreSQL-free mesh metrics: welding, volume, area, bounding box,
 *	  shells, edge topology and the warnings a jeweller needs.
 *
 * The library is shared by the helper program (alexandrite-meshd), its CLI
 * mode and the fuzz target.  It never aborts: every failure is reported
 * through a return code and a message buffer.  It must not include any
 * PostgreSQL header.
 *
 * Usage: AlxGeomInit, then AlxGeomAddVertex (returns the welded id of an
 * exact position) and AlxGeomAddTriangle (welded ids) as often as needed,
 * then AlxGeomCompute and AlxGeomFree.
 *
 * IDENTIFICATION
 *	  src/mesh/geometry.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_GEOMETRY_H
#define ALX_GEOMETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * bumped whenever a metric changes; stored with every analysed mesh, and a
 * mesh stored by an older version is measured again on its next ingest
 * (2: wall thickness; shuffled meshes reordered before summing)
 */
#define ALX_ANALYZER_VERSION	2

/* hard caps, far above jewellery sizes; beyond them the mesh is refused */
#define ALX_GEOM_MAX_VERTICES	((uint64_t) 200000000)
#define ALX_GEOM_MAX_TRIANGLES	((uint64_t) 200000000)

/* shells are only tested pairwise for nesting/overlap up to this count */
#define ALX_GEOM_MAX_SHELL_PAIRS_SHELLS 256

/* warning flags (bit numbers are part of the helper's record format) */
#define ALX_WARN_OPEN_MESH			(1u << 0)	/* boundary edges */
#define ALX_WARN_NONMANIFOLD		(1u << 1)	/* edges used > 2 times */
#define ALX_WARN_INCONSISTENT		(1u << 2)	/* faces had to be reoriented */
#define ALX_WARN_MULTIPLE_SHELLS	(1u << 3)
#define ALX_WARN_OVERLAPPING_SHELLS (1u << 4)
#define ALX_WARN_NESTED_SHELLS		(1u << 5)	/* a solid inside a solid */
#define ALX_WARN_INNER_VOID			(1u << 6)	/* closed cavity: cannot be cast */
#define ALX_WARN_UNIT_SUSPECT		(1u << 7)	/* largest extent < 1 or > 300 mm */
#define ALX_WARN_DEGENERATE			(1u << 8)
#define ALX_WARN_SHELL_CHECK_SKIPPED (1u << 9)	/* too many shells to compare */
#define ALX_WARN_NOT_ORIENTABLE		(1u << 10)
#define ALX_WARN_WALL_SKIPPED		(1u << 11)	/* wall thickness over its work budget */
#define ALX_WARN_COUNT				12

/* The warning names in bit order: the helper and the backend's decoder share them. */
#define ALX_WARN_NAMES \
	"open_mesh", "nonmanifold_edges", "inconsistent_orientation", \
	"multiple_shells", "overlapping_shells", "nested_shells", "inner_void", \
	"unit_suspect", "degenerate_triangles", "shell_check_skipped", \
	"not_orientable", "wall_check_skipped"

/* result codes */
#define ALX_GEOM_OK				0
#define ALX_GEOM_ERR_NONFINITE	1	/* NaN or infinite coordinate */
#define ALX_GEOM_ERR_TOO_LARGE	2	/* over a hard cap, or out of memory */
#define ALX_GEOM_ERR_INDEX		3	/* vertex index out of range */
#define ALX_GEOM_ERR_EMPTY		4	/* no triangles */

typedef struct AlxMeshStats
{
	uint64_t	triangles;
	uint64_t	vertices;		/* distinct welded positions used by triangles */
	double		volume_mm3;		/* absolute enclosed volume */
	double		area_mm2;
	double		bbox_min[3];
	double		bbox_max[3];
	double		size[3];		/* bbox extents */
	uint64_t	shells;			/* edge-connected components */
	bool		watertight;		/* every edge used by exactly two triangles */
	uint64_t	boundary_edges;
	uint64_t	nonmanifold_edges;
	uint64_t	inconsistent_edges; /* manifold edges used twice the same way */
	uint64_t	degenerate_triangles;
	uint64_t	faces_reoriented;
	uint64_t	edges;
	int64_t		euler_characteristic;	/* V - E + F */
	int64_t		genus;			/* -1 unless a closed, orientable manifold */
	double		volume_uncertainty_mm3; /* |S| * diag / 3, 0 for closed */
	uint32_t	warnings;		/* ALX_WARN_* */
} AlxMeshStats;

typedef struct AlxVertexMap AlxVertexMap;

typedef struct AlxGeom
{
	/* welded vertices */
	double	   *pos;			/* 3 per vertex */
	uint64_t	nverts;
	uint64_t	cap_verts;
	uint32_t   *vhash;			/* open addressing: vertex id + 1, 0 = empty */
	uint64_t	vhash_size;		/* power of two */

	/* triangles as welded ids */
	uint32_t   *tri;
	uint64_t	ntris;
	uint64_t	cap_tris;

	/*
	 * per face after AlxGeomCompute(): 0 = its winding points out of the
	 * material, 1 = reversed, 2 = left out (degenerate)
	 */
	uint8_t    *face_out;

	bool		oom;
	int			error;
	char		errmsg[256];
} AlxGeom;

extern void AlxGeomInit(AlxGeom *g);
extern void AlxGeomFree(AlxGeom *g);

/*
 * Make room for about nverts welded vertices and exactly ntris triangles
 * (a hint: both still grow), and for the vertex hash if the vertices will
 * be added by AlxGeomAddVertex; false on error (see g->error).
 */
extern bool AlxGeomReserve(AlxGeom *g, uint64_t nverts, uint64_t ntris, bool hashed);

/* Welded id of an exact position, or -1 on error (see g->error). */
extern int64_t AlxGeomAddVertex(AlxGeom *g, double x, double y, double z);

/*
 * Append a position the caller has welded itself (different from every
 * vertex so far; AlxGeomAddVertex must then not be used on this mesh);
 * its id, or -1 on error.
 */
extern int64_t AlxGeomAppendVertex(AlxGeom *g, double x, double y, double z);

/* Add a triangle of welded ids; false on error (see g->error). */
extern bool AlxGeomAddTriangle(AlxGeom *g, uint64_t a, uint64_t b, uint64_t c);

/*
 * Renumber a mesh whose triangles jump around (Morton order of vertices,
 * triangles by lowest vertex; geomorder.c) so that the metrics and the wall
 * thickness run cache-friendly; a local mesh is left alone.  No vertex may
 * be added afterwards.  false only when out of memory (see g->error).
 */
extern bool AlxGeomLocalize(AlxGeom *g);

/* Compute every metric; ALX_GEOM_OK or an error code with g->errmsg set. */
extern int	AlxGeomCompute(AlxGeom *g, AlxMeshStats *st);

/* Name of warning bit i (0 .. ALX_WARN_COUNT-1), e.g. "open_mesh". */
extern const char *AlxGeomWarningName(int bit);

/* Append the stats as one JSON object (no newline) to buf; returns length. */
extern int	AlxGeomStatsToJson(const AlxMeshStats *st, char *buf, size_t bufsize);

#endif							/* ALX_GEOMETRY_H */
