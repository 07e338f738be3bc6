/*-------------------------------------------------------------------------
 *
 * meshout.c
 *	  The helper's output: the fixed-size record for the backend
 *	  (meshrecord.h) and one JSON line per file for the CLI.
 *
 * IDENTIFICATION
 *	  src/mesh/meshout.c
 *
 *-------------------------------------------------------------------------
 */
#include "meshout.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "geometry.h"
#include "meshrecord.h"

static void
write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0)
	{
		ssize_t		w = write(fd, c, n);

		if (w < 0)
		{
			if (errno == EINTR)
				continue;
			exit(ALX_MESHD_EXIT_INTERNAL);
		}
		c += w;
		n -= (size_t) w;
	}
}

/* JSON string escaping into a bounded buffer. */
void
AlxMeshJsonString(char *out, size_t outsize, const char *s)
{
	size_t		o = 0;

	if (outsize < 3)
		return;
	out[o++] = '"';
	for (; *s && o + 8 < outsize; s++)
	{
		unsigned char ch = (unsigned char) *s;

		if (ch == '"' || ch == '\\')
		{
			out[o++] = '\\';
			out[o++] = (char) ch;
		}
		else if (ch < 0x20)
			o += (size_t) snprintf(out + o, outsize - o, "\\u%04x", ch);
		else
			out[o++] = (char) ch;
	}
	out[o++] = '"';
	out[o] = '\0';
}

/* Fill and encode the record of a result. */
static void
result_to_record(const AlxMeshResult *res, size_t source_bytes, unsigned char *out)
{
	AlxMeshRecord r;
	const AlxMeshStats *s = &res->stats;

	memset(&r, 0, sizeof(r));
	r.record_version = ALX_RECORD_VERSION;
	r.analyzer_version = ALX_ANALYZER_VERSION;
	r.warnings = s->warnings;
	r.u[ALX_RU_TRIANGLES] = s->triangles;
	r.u[ALX_RU_VERTICES] = s->vertices;
	r.u[ALX_RU_SHELLS] = s->shells;
	r.u[ALX_RU_BOUNDARY] = s->boundary_edges;
	r.u[ALX_RU_NONMANIFOLD] = s->nonmanifold_edges;
	r.u[ALX_RU_INCONSISTENT] = s->inconsistent_edges;
	r.u[ALX_RU_DEGENERATE] = s->degenerate_triangles;
	r.u[ALX_RU_REORIENTED] = s->faces_reoriented;
	r.u[ALX_RU_EDGES] = s->edges;
	r.u[ALX_RU_SOURCE_BYTES] = source_bytes;
	r.i[ALX_RI_EULER] = s->euler_characteristic;
	r.i[ALX_RI_GENUS] = s->genus;
	r.f[ALX_RF_VOLUME] = s->volume_mm3;
	r.f[ALX_RF_AREA] = s->area_mm2;
	r.f[ALX_RF_SIZE_X] = s->size[0];
	r.f[ALX_RF_SIZE_Y] = s->size[1];
	r.f[ALX_RF_SIZE_Z] = s->size[2];
	r.f[ALX_RF_MIN_X] = s->bbox_min[0];
	r.f[ALX_RF_MIN_Y] = s->bbox_min[1];
	r.f[ALX_RF_MIN_Z] = s->bbox_min[2];
	r.f[ALX_RF_UNCERTAINTY] = s->volume_uncertainty_mm3;
	r.f[ALX_RF_UNIT_SCALE] = res->unit_scale_mm;
	if (res->wall.measured)
	{
		r.flags |= ALX_RECORD_WALL;
		r.f[ALX_RF_MIN_WALL] = res->wall.min_mm;
		r.f[ALX_RF_WALL_X] = res->wall.at_mm[0];
		r.f[ALX_RF_WALL_Y] = res->wall.at_mm[1];
		r.f[ALX_RF_WALL_Z] = res->wall.at_mm[2];
		for (int i = 0; i < ALX_WALL_NTHRESH; i++)
			r.f[ALX_RF_WALL_BELOW_03 + i] = res->wall.area_below_mm2[i];
	}
	r.u[ALX_RU_WALL_RAYS] = res->wall.rays;
	snprintf(r.format, sizeof(r.format), "%s", res->format);
	if (s->watertight)
		r.flags |= ALX_RECORD_WATERTIGHT;
	AlxMeshRecordEncode(&r, out);
}

/* One JSON line for a result (or an error) of the file name given. */
void
AlxMeshPrintJson(const char *file, const AlxMeshResult *res, const char *error)
{
	char		name[1024];
	char		body[4096];

	AlxMeshJsonString(name, sizeof(name), file ? file : "-");
	if (error)
	{
		char		e[1024];

		AlxMeshJsonString(e, sizeof(e), error);
		printf("{\"file\":%s,\"error\":%s}\n", name, e);
	}
	else
	{
		char		wall[512];
		const AlxWallStats *w = &res->wall;

		AlxGeomStatsToJson(&res->stats, body, sizeof(body));
		if (w->measured)
			snprintf(wall, sizeof(wall),
					 "\"min_wall_mm\":%.17g,\"wall_at_mm\":[%.17g,%.17g,%.17g],"
					 "\"wall_area_below_mm2\":{\"0.3\":%.17g,\"0.5\":%.17g,\"0.8\":%.17g,\"1.0\":%.17g},"
					 "\"wall_rays\":%llu,",
					 w->min_mm, w->at_mm[0], w->at_mm[1], w->at_mm[2],
					 w->area_below_mm2[0], w->area_below_mm2[1], w->area_below_mm2[2],
					 w->area_below_mm2[3], (unsigned long long) w->rays);
		else
			snprintf(wall, sizeof(wall), "\"min_wall_mm\":null,\"wall_rays\":%llu,",
					 (unsigned long long) w->rays);
		/* splice the file, format, unit and wall in front of the stats */
		printf("{\"file\":%s,\"format\":\"%s\",\"unit_scale_mm\":%.17g,\"analyzer_version\":%d,%s%s\n",
			   name, res->format, res->unit_scale_mm, ALX_ANALYZER_VERSION, wall, body + 1);
	}
	fflush(stdout);
}

/* The record of a result on stdout. */
void
AlxMeshWriteRecord(const AlxMeshResult *res, size_t source_bytes)
{
	unsigned char rec[ALX_RECORD_SIZE];

	result_to_record(res, source_bytes, rec);
	write_all(1, rec, sizeof(rec));
}
