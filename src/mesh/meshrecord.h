/*-------------------------------------------------------------------------
 *
 * meshrecord.h
 *	  The record alexandrite-meshd writes on stdout for the backend, and the
 *	  exit codes it uses.  Shared by the helper and the backend; free of
 *	  PostgreSQL headers.
 *
 * The record is a fixed-size little-endian byte string:
 *
 *	 offset size  field
 *	   0     8    magic "ALXMESH\0"
 *	   8     4    record version (ALX_RECORD_VERSION)
 *	  12     4    analyzer version (ALX_ANALYZER_VERSION)
 *	  16     4    record length in bytes (ALX_RECORD_SIZE)
 *	  20     4    warning bits (ALX_WARN_*)
 *	  24   8*11   u64 triangles, vertices, shells, boundary_edges,
 *	              nonmanifold_edges, inconsistent_edges, degenerate_triangles,
 *	              faces_reoriented, edges, source_bytes, wall_rays
 *	 112   8*2    i64 euler_characteristic, genus (-1 = none)
 *	 128   8*18   f64 volume_mm3, area_mm2, size_x, size_y, size_z,
 *	              bbox_min_x, bbox_min_y, bbox_min_z, volume_uncertainty_mm3,
 *	              unit_scale_mm, min_wall_mm, wall_x, wall_y, wall_z,
 *	              wall_area_below 0.3, 0.5, 0.8 and 1.0 mm (0 unmeasured)
 *	 272    16    format name, NUL-padded ("stl-binary", "obj", ...)
 *	 288     4    u32 bit 0: watertight, bit 1: wall thickness measured
 *	 292     4    u32 checksum: FNV-1a over bytes 0..291
 *	 296          end
 *
 * The backend accepts exactly one record of exactly this size followed by
 * end of file, and checks every field for plausibility.
 *
 * IDENTIFICATION
 *	  src/mesh/meshrecord.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_MESHRECORD_H
#define ALX_MESHRECORD_H

#include <stdint.h>
#include <string.h>

#define ALX_RECORD_MAGIC	"ALXMESH"	/* 8 bytes with the NUL */
#define ALX_RECORD_VERSION	2
#define ALX_RECORD_NU64		11
#define ALX_RECORD_NI64		2
#define ALX_RECORD_NF64		18
#define ALX_RECORD_FORMAT_LEN 16
#define ALX_RECORD_OFF_U64	24
#define ALX_RECORD_OFF_I64	(ALX_RECORD_OFF_U64 + 8 * ALX_RECORD_NU64)
#define ALX_RECORD_OFF_F64	(ALX_RECORD_OFF_I64 + 8 * ALX_RECORD_NI64)
#define ALX_RECORD_OFF_FMT	(ALX_RECORD_OFF_F64 + 8 * ALX_RECORD_NF64)
#define ALX_RECORD_OFF_FLAGS (ALX_RECORD_OFF_FMT + ALX_RECORD_FORMAT_LEN)
#define ALX_RECORD_OFF_SUM	(ALX_RECORD_OFF_FLAGS + 4)
#define ALX_RECORD_SIZE		(ALX_RECORD_OFF_SUM + 4)

/* bits of the flags word */
#define ALX_RECORD_WATERTIGHT	1u
#define ALX_RECORD_WALL			2u

/*
 * Exit codes of alexandrite-meshd and the SQLSTATE the backend reports for
 * each (docs/mesh.md has the full table, signals included).
 */
#define ALX_MESHD_EXIT_OK			0
#define ALX_MESHD_EXIT_USAGE		2	/* bad argument (22023) */
#define ALX_MESHD_EXIT_BAD_FILE		3	/* not a valid mesh (22P04) */
#define ALX_MESHD_EXIT_TOO_LARGE	4	/* size or memory limit (54000) */
#define ALX_MESHD_EXIT_INTERNAL		5	/* the helper could not set itself up (58000) */
#define ALX_MESHD_EXIT_FORMAT		6	/* hint does not match the bytes (22023) */

/*
 * CPU budget of one analysis (RLIMIT_CPU of the helper): ALX_CPU_BASE_S
 * plus one second per whole ALX_CPU_BYTES_PER_S bytes of input, at most
 * cap_s (the backend passes alexandrite.mesh_timeout).  Anything under a
 * megabyte gets one second; the slowest legitimate input per byte
 * (deflated 3MF, wall thickness included) needs about a third of its
 * budget (docs/mesh.md).
 */
#define ALX_CPU_BASE_S		1
#define ALX_CPU_BYTES_PER_S	((uint64_t) 1024 * 1024)

static inline uint64_t
alx_cpu_budget_s(uint64_t bytes, uint64_t cap_s)
{
	uint64_t	s = ALX_CPU_BASE_S + bytes / ALX_CPU_BYTES_PER_S;

	if (cap_s > 0 && s > cap_s)
		s = cap_s;
	return s;
}

typedef struct AlxMeshRecord
{
	uint32_t	record_version;
	uint32_t	analyzer_version;
	uint32_t	warnings;
	uint64_t	u[ALX_RECORD_NU64];
	int64_t		i[ALX_RECORD_NI64];
	double		f[ALX_RECORD_NF64];
	char		format[ALX_RECORD_FORMAT_LEN + 1];
	uint32_t	flags;			/* ALX_RECORD_WATERTIGHT | ALX_RECORD_WALL */
} AlxMeshRecord;

enum
{
	ALX_RU_TRIANGLES, ALX_RU_VERTICES, ALX_RU_SHELLS, ALX_RU_BOUNDARY,
	ALX_RU_NONMANIFOLD, ALX_RU_INCONSISTENT, ALX_RU_DEGENERATE,
	ALX_RU_REORIENTED, ALX_RU_EDGES, ALX_RU_SOURCE_BYTES, ALX_RU_WALL_RAYS
};
enum
{
	ALX_RI_EULER, ALX_RI_GENUS
};
enum
{
	ALX_RF_VOLUME, ALX_RF_AREA, ALX_RF_SIZE_X, ALX_RF_SIZE_Y, ALX_RF_SIZE_Z,
	ALX_RF_MIN_X, ALX_RF_MIN_Y, ALX_RF_MIN_Z, ALX_RF_UNCERTAINTY,
	ALX_RF_UNIT_SCALE, ALX_RF_MIN_WALL, ALX_RF_WALL_X, ALX_RF_WALL_Y,
	ALX_RF_WALL_Z, ALX_RF_WALL_BELOW_03, ALX_RF_WALL_BELOW_05,
	ALX_RF_WALL_BELOW_08, ALX_RF_WALL_BELOW_10
};

static inline uint32_t
alx_fnv1a(const unsigned char *p, size_t n)
{
	uint32_t	h = 2166136261u;

	for (size_t i = 0; i < n; i++)
	{
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

static inline void
alx_put_u32(unsigned char *p, uint32_t v)
{
	for (int k = 0; k < 4; k++)
		p[k] = (unsigned char) (v >> (8 * k));
}

static inline uint32_t
alx_get_u32(const unsigned char *p)
{
	uint32_t	v = 0;

	for (int k = 0; k < 4; k++)
		v |= (uint32_t) p[k] << (8 * k);
	return v;
}

static inline void
alx_put_u64(unsigned char *p, uint64_t v)
{
	for (int k = 0; k < 8; k++)
		p[k] = (unsigned char) (v >> (8 * k));
}

static inline uint64_t
alx_get_u64(const unsigned char *p)
{
	uint64_t	v = 0;

	for (int k = 0; k < 8; k++)
		v |= (uint64_t) p[k] << (8 * k);
	return v;
}

/* Serialise a record into exactly ALX_RECORD_SIZE bytes. */
static inline void
AlxMeshRecordEncode(const AlxMeshRecord *r, unsigned char *out)
{
	unsigned char *p = out;

	memset(out, 0, ALX_RECORD_SIZE);
	memcpy(p, ALX_RECORD_MAGIC, 8);
	alx_put_u32(p + 8, r->record_version);
	alx_put_u32(p + 12, r->analyzer_version);
	alx_put_u32(p + 16, ALX_RECORD_SIZE);
	alx_put_u32(p + 20, r->warnings);
	for (int k = 0; k < ALX_RECORD_NU64; k++)
		alx_put_u64(p + ALX_RECORD_OFF_U64 + 8 * k, r->u[k]);
	for (int k = 0; k < ALX_RECORD_NI64; k++)
		alx_put_u64(p + ALX_RECORD_OFF_I64 + 8 * k, (uint64_t) r->i[k]);
	for (int k = 0; k < ALX_RECORD_NF64; k++)
	{
		uint64_t	bits;

		memcpy(&bits, &r->f[k], 8);
		alx_put_u64(p + ALX_RECORD_OFF_F64 + 8 * k, bits);
	}
	strncpy((char *) p + ALX_RECORD_OFF_FMT, r->format, ALX_RECORD_FORMAT_LEN);
	alx_put_u32(p + ALX_RECORD_OFF_FLAGS, r->flags);
	alx_put_u32(p + ALX_RECORD_OFF_SUM, alx_fnv1a(p, ALX_RECORD_OFF_SUM));
}

/*
 * Parse exactly ALX_RECORD_SIZE bytes; returns NULL on success or a static
 * description of what is wrong with the framing (field plausibility is the
 * caller's business).
 */
static inline const char *
AlxMeshRecordDecode(const unsigned char *p, size_t len, AlxMeshRecord *r)
{
	if (len != ALX_RECORD_SIZE)
		return "record has the wrong length";
	if (memcmp(p, ALX_RECORD_MAGIC, 8) != 0)
		return "record has no valid magic";
	if (alx_get_u32(p + ALX_RECORD_OFF_SUM) != alx_fnv1a(p, ALX_RECORD_OFF_SUM))
		return "record checksum does not match";
	r->record_version = alx_get_u32(p + 8);
	if (r->record_version != ALX_RECORD_VERSION)
		return "record version is not supported";
	r->analyzer_version = alx_get_u32(p + 12);
	if (alx_get_u32(p + 16) != ALX_RECORD_SIZE)
		return "record declares the wrong length";
	r->warnings = alx_get_u32(p + 20);
	for (int k = 0; k < ALX_RECORD_NU64; k++)
		r->u[k] = alx_get_u64(p + ALX_RECORD_OFF_U64 + 8 * k);
	for (int k = 0; k < ALX_RECORD_NI64; k++)
		r->i[k] = (int64_t) alx_get_u64(p + ALX_RECORD_OFF_I64 + 8 * k);
	for (int k = 0; k < ALX_RECORD_NF64; k++)
	{
		uint64_t	bits = alx_get_u64(p + ALX_RECORD_OFF_F64 + 8 * k);

		memcpy(&r->f[k], &bits, 8);
	}
	memcpy(r->format, p + ALX_RECORD_OFF_FMT, ALX_RECORD_FORMAT_LEN);
	r->format[ALX_RECORD_FORMAT_LEN] = '\0';
	if (memchr(p + ALX_RECORD_OFF_FMT, '\0', ALX_RECORD_FORMAT_LEN) == NULL)
		return "record format name is not terminated";
	r->flags = alx_get_u32(p + ALX_RECORD_OFF_FLAGS);
	if ((r->flags & ~(ALX_RECORD_WATERTIGHT | ALX_RECORD_WALL)) != 0)
		return "record has unknown flags";
	return NULL;
}

#endif							/* ALX_MESHRECORD_H */
