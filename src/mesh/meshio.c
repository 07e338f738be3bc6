/*-------------------------------------------------------------------------
 *
 * meshio.c
 *	  Decoding of an in-memory mesh with assimp, confined to its buffer.
 *
 * assimp's own in-memory entry point (aiImportFileFromMemory) falls back to
 * the real file system for every other name a loader asks for: an OBJ's
 * mtllib, a glTF buffer uri, a texture.  Here assimp gets its own aiFileIO
 * that serves exactly one name, "upload.<ext>", read-only from the input
 * buffer, and refuses everything else.  The format is pinned by that
 * extension after the caller's hint has been checked against the magic
 * bytes, so assimp never probes its other ~40 importers.
 *
 * The scene is walked node by node with the transforms applied in double
 * precision; the triangles go to geometry.c, which welds and measures.
 * The 3MF unit attribute (ignored by assimp 5.2.5) is read here from the
 * archive with zlib, and the archive's declared sizes are checked first so
 * that a zip bomb is refused before assimp allocates it.
 *
 * IDENTIFICATION
 *	  src/mesh/meshio.c
 *
 *-------------------------------------------------------------------------
 */
#include "meshio.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <assimp/cfileio.h>
#include <assimp/cimport.h>
#include <assimp/config.h>
#include <assimp/postprocess.h>
#include <assimp/scene.h>
#include <zlib.h>

#include "meshrecord.h"
#include "prescan.h"
#include "stlbin.h"
#include "timing.h"

/* set around assimp's import call: see faultguard.c */
volatile sig_atomic_t alx_mesh_in_assimp = 0;

/* phase timings on stderr (alexandrite-meshd --timing) */
bool		alx_timing = false;
double		alx_timing_wall = 0,
			alx_timing_cpu = 0;

/* ---------- the confined file system ---------- */

typedef struct MemFS
{
	const unsigned char *buf;
	size_t		len;
	char		name[32];		/* the only name that opens */
	int			opens;
	int			refused;
} MemFS;

typedef struct MemFile
{
	const unsigned char *buf;
	size_t		len;
	size_t		pos;
} MemFile;

static size_t
mem_read(struct aiFile *f, char *buffer, size_t size, size_t count)
{
	MemFile    *m = (MemFile *) f->UserData;
	size_t		avail = m->len - m->pos;
	size_t		n;

	if (size == 0 || count == 0)
		return 0;
	n = avail / size;			/* whole elements only */
	if (n > count)
		n = count;
	memcpy(buffer, m->buf + m->pos, n * size);
	m->pos += n * size;
	return n;
}

static size_t
mem_write(struct aiFile *f, const char *buffer, size_t size, size_t count)
{
	return 0;					/* read-only */
}

static size_t
mem_tell(struct aiFile *f)
{
	return ((MemFile *) f->UserData)->pos;
}

static size_t
mem_size(struct aiFile *f)
{
	return ((MemFile *) f->UserData)->len;
}

static void
mem_flush(struct aiFile *f)
{
}

static enum aiReturn
mem_seek(struct aiFile *f, size_t off, enum aiOrigin origin)
{
	MemFile    *m = (MemFile *) f->UserData;
	long long	base;
	long long	np;

	/* assimp passes negative offsets as wrapped size_t values */
	switch (origin)
	{
		case aiOrigin_SET:
			if (off > m->len)
				return aiReturn_FAILURE;
			m->pos = off;
			return aiReturn_SUCCESS;
		case aiOrigin_CUR:
			base = (long long) m->pos;
			break;
		case aiOrigin_END:
			base = (long long) m->len;
			break;
		default:
			return aiReturn_FAILURE;
	}
	np = base + (long long) off;
	if (np < 0 || np > (long long) m->len)
		return aiReturn_FAILURE;
	m->pos = (size_t) np;
	return aiReturn_SUCCESS;
}

/* Open: only the upload's own name, only for reading; nothing else exists. */
static struct aiFile *
mem_open(struct aiFileIO *io, const char *name, const char *mode)
{
	MemFS	   *fs = (MemFS *) io->UserData;
	struct aiFile *f;
	MemFile    *m;

	if (name == NULL || mode == NULL ||
		strcmp(name, fs->name) != 0 || strpbrk(mode, "wa+") != NULL)
	{
		fs->refused++;
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	m = calloc(1, sizeof(*m));
	if (!f || !m)
	{
		free(f);
		free(m);
		return NULL;
	}
	m->buf = fs->buf;
	m->len = fs->len;
	f->ReadProc = mem_read;
	f->WriteProc = mem_write;
	f->TellProc = mem_tell;
	f->FileSizeProc = mem_size;
	f->SeekProc = mem_seek;
	f->FlushProc = mem_flush;
	f->UserData = (aiUserData) m;
	fs->opens++;
	return f;
}

static void
mem_close(struct aiFileIO *io, struct aiFile *f)
{
	if (f)
	{
		free(f->UserData);
		free(f);
	}
}

/* ---------- hints, magic bytes, units ---------- */

static const char *const known_hints[] = {"stl", "obj", "ply", "gltf", "glb", "3mf", NULL};

/* Canonical extension of a format hint, or NULL. */
const char *
AlxMeshCanonicalHint(const char *hint)
{
	char		low[8];
	size_t		n;

	if (hint == NULL)
		return NULL;
	if (hint[0] == '.')
		hint++;
	n = strlen(hint);
	if (n == 0 || n >= sizeof(low))
		return NULL;
	for (size_t i = 0; i <= n; i++)
		low[i] = (char) tolower((unsigned char) hint[i]);
	for (int i = 0; known_hints[i]; i++)
		if (strcmp(low, known_hints[i]) == 0)
			return known_hints[i];
	return NULL;
}

/* mm per unit, 0 if the name is not accepted. */
double
AlxMeshUnitScale(const char *unit)
{
	if (unit == NULL)
		return 0;
	if (strcmp(unit, "mm") == 0)
		return 1.0;
	if (strcmp(unit, "cm") == 0)
		return 10.0;
	if (strcmp(unit, "m") == 0)
		return 1000.0;
	if (strcmp(unit, "in") == 0)
		return 25.4;
	return 0;
}

static bool
starts_with_ws(const unsigned char *buf, size_t len, const char *word)
{
	size_t		i = 0,
				n = strlen(word);

	if (len >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF)
		i = 3;					/* UTF-8 byte order mark */
	while (i < len && isspace(buf[i]))
		i++;
	return len - i >= n && strncasecmp((const char *) buf + i, word, n) == 0;
}

/* Text without NULs in its first 64 kB that has an OBJ vertex or face line. */
static bool
looks_like_obj(const unsigned char *buf, size_t len)
{
	size_t		lim = len < 65536 ? len : 65536;
	bool		line_start = true;

	if (memchr(buf, '\0', lim) != NULL)
		return false;
	for (size_t i = 0; i < lim; i++)
	{
		if (line_start)
		{
			size_t		j = i;

			while (j < lim && (buf[j] == ' ' || buf[j] == '\t'))
				j++;
			if (j + 1 < lim && (buf[j] == 'v' || buf[j] == 'f') &&
				(buf[j + 1] == ' ' || buf[j + 1] == '\t'))
				return true;
		}
		line_start = (buf[i] == '\n' || buf[i] == '\r');
	}
	return false;
}

/*
 * What the bytes are: "stl-binary", "stl-ascii", "obj", "ply", "glb",
 * "gltf", "3mf", or NULL.
 */
static const char *
sniff(const unsigned char *buf, size_t len)
{
	if (len >= 4 && memcmp(buf, "glTF", 4) == 0)
		return "glb";
	if (len >= 4 && memcmp(buf, "PK\003\004", 4) == 0)
		return "3mf";
	if (len >= 4 && memcmp(buf, "ply", 3) == 0 && (buf[3] == '\n' || buf[3] == '\r'))
		return "ply";
	if (len >= 84)
	{
		uint64_t	n = alx_get_u32(buf + 80);

		if (84 + 50 * n == (uint64_t) len)
			return "stl-binary";
	}
	if (starts_with_ws(buf, len, "solid"))
		return "stl-ascii";
	if (starts_with_ws(buf, len, "{"))
		return "gltf";
	if (looks_like_obj(buf, len))
		return "obj";
	return NULL;
}

/* the extension assimp gets for a sniffed format */
static const char *
ext_of(const char *fmt)
{
	if (strncmp(fmt, "stl", 3) == 0)
		return "stl";
	return fmt;
}

/* ---------- 3MF: archive checks and the unit attribute ---------- */

static uint16_t
get_u16(const unsigned char *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

/* The exit code of a corrupt archive, with its message in err. */
static int
corrupt_3mf(char *err, size_t errlen)
{
	snprintf(err, errlen, "3MF archive is corrupt");
	return ALX_MESHD_EXIT_BAD_FILE;
}

/* Where the model part is stored, as the central directory declares it. */
typedef struct ModelPart
{
	size_t		local;			/* offset of its local file header */
	uint32_t	csize;			/* compressed size */
	uint16_t	method;			/* 0 stored, 8 deflated */
} ModelPart;

/*
 * Offset of the end-of-central-directory record, searched backwards over
 * at most its size plus the longest comment (len is at least 22); false if
 * there is none.
 */
static bool
find_eocd(const unsigned char *buf, size_t len, size_t *eocd)
{
	for (size_t i = len - 22;; i--)
	{
		if (alx_get_u32(buf + i) == 0x06054b50)
		{
			*eocd = i;
			return true;
		}
		if (i == 0 || len - i > 22 + 65535)
			return false;
	}
}

/*
 * Walk the central directory: refuse an archive whose declared uncompressed
 * sizes add up to more than 100 times its size (at least 64 MB, at most
 * ALX_MESHIO_MAX_UNZIPPED), and pick the model part (3D/3dmodel.model if
 * present, else the first *.model).  Returns an exit code.
 */
static int
scan_3mf_directory(const unsigned char *buf, size_t len, size_t eocd,
				   ModelPart *model, char *err, size_t errlen)
{
	uint32_t	cd_off,
				cd_size;
	uint16_t	nentries;
	unsigned long long total = 0;
	unsigned long long limit;
	size_t		p;
	bool		have_model = false;
	bool		model_is_default = false;

	nentries = get_u16(buf + eocd + 10);
	cd_size = alx_get_u32(buf + eocd + 12);
	cd_off = alx_get_u32(buf + eocd + 16);
	if ((uint64_t) cd_off + cd_size > eocd)
		return corrupt_3mf(err, errlen);

	limit = (unsigned long long) len * 100;
	if (limit < 64ULL * 1024 * 1024)
		limit = 64ULL * 1024 * 1024;
	if (limit > ALX_MESHIO_MAX_UNZIPPED)
		limit = ALX_MESHIO_MAX_UNZIPPED;

	p = cd_off;
	for (uint32_t e = 0; e < nentries; e++)
	{
		uint16_t	namelen,
					extralen,
					commentlen;
		uint32_t	csize,
					usize;
		const char *name;

		if (p + 46 > (size_t) cd_off + cd_size || alx_get_u32(buf + p) != 0x02014b50)
			return corrupt_3mf(err, errlen);
		csize = alx_get_u32(buf + p + 20);
		usize = alx_get_u32(buf + p + 24);
		namelen = get_u16(buf + p + 28);
		extralen = get_u16(buf + p + 30);
		commentlen = get_u16(buf + p + 32);
		if (p + 46 + (size_t) namelen + extralen + commentlen > (size_t) cd_off + cd_size)
			return corrupt_3mf(err, errlen);
		name = (const char *) buf + p + 46;
		total += usize;
		if (total > limit)
		{
			snprintf(err, errlen, "3MF archive declares %llu uncompressed bytes or more, over the limit of %llu (a zip bomb?)",
					 total, limit);
			return ALX_MESHD_EXIT_TOO_LARGE;
		}
		if (namelen > 6 && strncasecmp(name + namelen - 6, ".model", 6) == 0)
		{
			bool		is_default = (namelen == 16 &&
									  strncasecmp(name, "3D/3dmodel.model", 16) == 0);

			if (!have_model || (is_default && !model_is_default))
			{
				have_model = true;
				model_is_default = is_default;
				model->local = alx_get_u32(buf + p + 42);
				model->csize = csize;
				model->method = get_u16(buf + p + 10);
			}
		}
		p += 46 + (size_t) namelen + extralen + commentlen;
	}
	if (!have_model)
	{
		snprintf(err, errlen, "3MF archive has no model part");
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	return ALX_MESHD_EXIT_OK;
}

/*
 * The first outsize - 1 bytes (or fewer) of the model part, stored or
 * deflated, NUL-terminated in out.  Returns an exit code.
 */
static int
read_model_head(const unsigned char *buf, size_t len, const ModelPart *model,
				unsigned char *out, size_t outsize, char *err, size_t errlen)
{
	size_t		outlen = 0;
	size_t		data;

	if (model->local + 30 > len || alx_get_u32(buf + model->local) != 0x04034b50)
		return corrupt_3mf(err, errlen);
	data = model->local + 30 + get_u16(buf + model->local + 26) +
		get_u16(buf + model->local + 28);
	if (data > len || model->csize > len - data)
		return corrupt_3mf(err, errlen);
	if (model->method == 0)
	{
		outlen = model->csize < outsize - 1 ? model->csize : outsize - 1;
		memcpy(out, buf + data, outlen);
	}
	else if (model->method == 8)
	{
		z_stream	zs;
		int			zr;

		memset(&zs, 0, sizeof(zs));
		if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
			return corrupt_3mf(err, errlen);
		zs.next_in = (Bytef *) (buf + data);
		zs.avail_in = model->csize;
		zs.next_out = out;
		zs.avail_out = outsize - 1;
		zr = inflate(&zs, Z_SYNC_FLUSH);
		outlen = outsize - 1 - zs.avail_out;
		inflateEnd(&zs);
		if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
			return corrupt_3mf(err, errlen);
	}
	else
	{
		snprintf(err, errlen, "3MF model part uses an unsupported compression method %u", model->method);
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	out[outlen] = '\0';
	return ALX_MESHD_EXIT_OK;
}

/* The scale of a 3MF unit name (millimetres per unit); false if unknown. */
static bool
unit_scale_3mf(const char *val, double *scale)
{
	if (strcmp(val, "micron") == 0)
		*scale = 0.001;
	else if (strcmp(val, "millimeter") == 0)
		*scale = 1.0;
	else if (strcmp(val, "centimeter") == 0)
		*scale = 10.0;
	else if (strcmp(val, "inch") == 0)
		*scale = 25.4;
	else if (strcmp(val, "foot") == 0)
		*scale = 304.8;
	else if (strcmp(val, "meter") == 0)
		*scale = 1000.0;
	else
		return false;
	return true;
}

/*
 * The unit attribute of the <model> element at the start of the model
 * part (text); *scale is left alone when there is none (millimetre).
 * Returns an exit code.
 */
static int
parse_model_unit(const char *text, double *scale, char *err, size_t errlen)
{
	const char *m,
			   *u,
			   *end;
	char		val[32];
	size_t		vl = 0;
	char		q;

	/* NULs inside would end the search early; that only hides a unit */
	m = strstr(text, "<model");
	if (m == NULL)
	{
		snprintf(err, errlen, "3MF model part has no <model> element in its first 64 kB");
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	end = strchr(m, '>');
	u = strstr(m, " unit=");
	if (u == NULL)
		u = strstr(m, "\tunit=");
	if (u == NULL || (end != NULL && u > end))
		return ALX_MESHD_EXIT_OK;	/* default: millimeter */
	u += 6;
	if (*u != '"' && *u != '\'')
		return corrupt_3mf(err, errlen);
	q = *u++;
	while (u[vl] && u[vl] != q && vl < sizeof(val) - 1)
	{
		val[vl] = u[vl];
		vl++;
	}
	val[vl] = '\0';
	if (!unit_scale_3mf(val, scale))
	{
		snprintf(err, errlen, "3MF model has an unknown unit \"%.31s\"", val);
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	return ALX_MESHD_EXIT_OK;
}

/*
 * Check the archive's declared sizes against the input size and read the
 * <model unit="..."> attribute.  Returns an exit code; *scale is the unit.
 */
static int
check_3mf(const unsigned char *buf, size_t len, double *scale,
		  char *err, size_t errlen)
{
	size_t		eocd = 0;
	ModelPart	model = {0, 0, 0};
	unsigned char out[65536];
	int			rc;

	*scale = 1.0;				/* millimeter is the 3MF default */
	if (len < 22 || !find_eocd(buf, len, &eocd))
		return corrupt_3mf(err, errlen);
	rc = scan_3mf_directory(buf, len, eocd, &model, err, errlen);
	if (rc != ALX_MESHD_EXIT_OK)
		return rc;
	/* the first 64 kB of the model part hold its unit */
	rc = read_model_head(buf, len, &model, out, sizeof(out), err, errlen);
	if (rc != ALX_MESHD_EXIT_OK)
		return rc;
	return parse_model_unit((const char *) out, scale, err, errlen);
}

/* ---------- scene walk ---------- */

typedef struct NodeItem
{
	const struct aiNode *node;
	double		m[16];			/* row-major, like aiMatrix4x4 */
	int			depth;
} NodeItem;

static void
mat_mul(double *r, const double *a, const double *b)
{
	double		t[16];

	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			t[4 * i + j] = a[4 * i] * b[j] + a[4 * i + 1] * b[4 + j] +
				a[4 * i + 2] * b[8 + j] + a[4 * i + 3] * b[12 + j];
	memcpy(r, t, sizeof(t));
}

static void
mat_from_ai(double *r, const struct aiMatrix4x4 *m)
{
	r[0] = m->a1; r[1] = m->a2; r[2] = m->a3; r[3] = m->a4;
	r[4] = m->b1; r[5] = m->b2; r[6] = m->b3; r[7] = m->b4;
	r[8] = m->c1; r[9] = m->c2; r[10] = m->c3; r[11] = m->c4;
	r[12] = m->d1; r[13] = m->d2; r[14] = m->d3; r[15] = m->d4;
}

/* Add one mesh instance with transform m (scale already folded in). */
static int
add_mesh(AlxGeom *g, const struct aiMesh *mesh, const double *m,
		 char *err, size_t errlen)
{
	uint32_t   *map;
	double		det;
	bool		mirror;

	if (mesh == NULL || mesh->mNumFaces == 0)
		return ALX_MESHD_EXIT_OK;
	if (mesh->mVertices == NULL || mesh->mFaces == NULL)
	{
		snprintf(err, errlen, "mesh has faces but no vertex positions");
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	det = m[0] * (m[5] * m[10] - m[6] * m[9]) -
		m[1] * (m[4] * m[10] - m[6] * m[8]) +
		m[2] * (m[4] * m[9] - m[5] * m[8]);
	mirror = det < 0;
	map = malloc((size_t) mesh->mNumVertices * sizeof(uint32_t) + 1);
	if (map == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return ALX_MESHD_EXIT_TOO_LARGE;
	}
	memset(map, 0xff, (size_t) mesh->mNumVertices * sizeof(uint32_t));
	for (unsigned int fi = 0; fi < mesh->mNumFaces; fi++)
	{
		const struct aiFace *face = &mesh->mFaces[fi];
		uint64_t	ids[3];

		if (face->mNumIndices != 3 || face->mIndices == NULL)
			continue;			/* points and lines are not surface */
		for (int k = 0; k < 3; k++)
		{
			unsigned int vi = face->mIndices[k];

			if (vi >= mesh->mNumVertices)
			{
				free(map);
				snprintf(err, errlen, "face refers to vertex %u of %u", vi, mesh->mNumVertices);
				return ALX_MESHD_EXIT_BAD_FILE;
			}
			if (map[vi] == UINT32_MAX)
			{
				const struct aiVector3D *v = &mesh->mVertices[vi];
				double		x = v->x,
							y = v->y,
							z = v->z;
				int64_t		id;

				id = AlxGeomAddVertex(g,
									  m[0] * x + m[1] * y + m[2] * z + m[3],
									  m[4] * x + m[5] * y + m[6] * z + m[7],
									  m[8] * x + m[9] * y + m[10] * z + m[11]);
				if (id < 0)
				{
					free(map);
					snprintf(err, errlen, "%s", g->errmsg);
					return g->error == ALX_GEOM_ERR_TOO_LARGE ?
						ALX_MESHD_EXIT_TOO_LARGE : ALX_MESHD_EXIT_BAD_FILE;
				}
				map[vi] = (uint32_t) id;
			}
			ids[k] = map[vi];
		}
		if (!(mirror ? AlxGeomAddTriangle(g, ids[0], ids[2], ids[1])
			  : AlxGeomAddTriangle(g, ids[0], ids[1], ids[2])))
		{
			free(map);
			snprintf(err, errlen, "%s", g->errmsg);
			return g->error == ALX_GEOM_ERR_TOO_LARGE ?
				ALX_MESHD_EXIT_TOO_LARGE : ALX_MESHD_EXIT_BAD_FILE;
		}
	}
	free(map);
	return ALX_MESHD_EXIT_OK;
}

/* Walk the node tree iteratively (no recursion on untrusted depth). */
static int
walk_scene(AlxGeom *g, const struct aiScene *sc, double scale,
		   char *err, size_t errlen)
{
	NodeItem   *stack;
	size_t		cap = 64,
				top = 0;
	uint64_t	visited = 0;
	int			rc = ALX_MESHD_EXIT_OK;

	if (sc->mRootNode == NULL)
	{
		snprintf(err, errlen, "scene has no root node");
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	stack = malloc(cap * sizeof(NodeItem));
	if (!stack)
	{
		snprintf(err, errlen, "out of memory");
		return ALX_MESHD_EXIT_TOO_LARGE;
	}
	/* the unit scale goes in front of every transform */
	memset(stack[0].m, 0, sizeof(stack[0].m));
	stack[0].m[0] = stack[0].m[5] = stack[0].m[10] = scale;
	stack[0].m[15] = 1.0;
	{
		double		local[16];

		mat_from_ai(local, &sc->mRootNode->mTransformation);
		mat_mul(stack[0].m, stack[0].m, local);
	}
	stack[0].node = sc->mRootNode;
	stack[0].depth = 0;
	top = 1;

	while (top > 0 && rc == ALX_MESHD_EXIT_OK)
	{
		NodeItem	it = stack[--top];
		const struct aiNode *n = it.node;

		if (++visited > 10000000)
		{
			snprintf(err, errlen, "scene has too many nodes");
			rc = ALX_MESHD_EXIT_TOO_LARGE;
			break;
		}
		for (unsigned int i = 0; i < n->mNumMeshes && rc == ALX_MESHD_EXIT_OK; i++)
		{
			unsigned int mi = n->mMeshes[i];

			if (mi >= sc->mNumMeshes)
			{
				snprintf(err, errlen, "node refers to mesh %u of %u", mi, sc->mNumMeshes);
				rc = ALX_MESHD_EXIT_BAD_FILE;
				break;
			}
			rc = add_mesh(g, sc->mMeshes[mi], it.m, err, errlen);
		}
		if (n->mNumChildren > 0 && n->mChildren != NULL && rc == ALX_MESHD_EXIT_OK)
		{
			if (it.depth + 1 > ALX_MESHIO_MAX_NODE_DEPTH)
			{
				snprintf(err, errlen, "scene nodes are nested deeper than %d levels", ALX_MESHIO_MAX_NODE_DEPTH);
				rc = ALX_MESHD_EXIT_BAD_FILE;
				break;
			}
			if (top + n->mNumChildren > cap)
			{
				size_t		ncap = cap;
				NodeItem   *ns;

				while (ncap < top + n->mNumChildren)
					ncap *= 2;
				ns = realloc(stack, ncap * sizeof(NodeItem));
				if (!ns)
				{
					snprintf(err, errlen, "out of memory");
					rc = ALX_MESHD_EXIT_TOO_LARGE;
					break;
				}
				stack = ns;
				cap = ncap;
			}
			for (unsigned int c = 0; c < n->mNumChildren; c++)
			{
				const struct aiNode *ch = n->mChildren[c];
				double		local[16];

				if (ch == NULL)
					continue;
				mat_from_ai(local, &ch->mTransformation);
				mat_mul(stack[top].m, it.m, local);
				stack[top].node = ch;
				stack[top].depth = it.depth + 1;
				top++;
			}
		}
	}
	free(stack);
	return rc;
}

/* ---------- the whole pipeline ---------- */

/* memguard.c overrides this in the helper program */
__attribute__((weak)) bool
AlxMeshAllocFailed(void)
{
	return false;
}

/* The cheap structural checks of prescan.c for the detected format. */
static int
prescan(const char *fmt, const unsigned char *buf, size_t len,
		char *err, size_t errlen)
{
	if (strcmp(fmt, "ply") == 0)
		return AlxPrescanPly(buf, len, err, errlen);
	if (strcmp(fmt, "obj") == 0)
		return AlxPrescanObj(buf, len, err, errlen);
	if (strcmp(fmt, "gltf") == 0)
		return AlxPrescanGltf(buf, len, err, errlen);
	if (strcmp(fmt, "glb") == 0)
		return AlxPrescanGlb(buf, len, err, errlen);
	return ALX_MESHD_EXIT_OK;
}

/*
 * What the bytes are, checked against the caller's hint: sets *fmtp to the
 * sniffed format ("stl-binary", "obj", ...).
 */
static int
detect_format(const unsigned char *buf, size_t len, const char *hint,
			  const char **fmtp, char *err, size_t errlen)
{
	const char *canon = NULL;
	const char *fmt;

	if (hint != NULL)
	{
		canon = AlxMeshCanonicalHint(hint);
		if (canon == NULL)
		{
			snprintf(err, errlen, "format \"%.40s\" is not supported (use stl, obj, ply, gltf, glb or 3mf)", hint);
			return ALX_MESHD_EXIT_USAGE;
		}
	}
	fmt = sniff(buf, len);
	if (fmt == NULL)
	{
		if (canon != NULL && strcmp(canon, "stl") == 0 && len >= 84)
			snprintf(err, errlen, "binary STL size %zu does not match its triangle count %u (expected %llu bytes)",
					 len, alx_get_u32(buf + 80), 84ULL + 50ULL * alx_get_u32(buf + 80));
		else if (canon != NULL)
			snprintf(err, errlen, "file does not look like a %s file", canon);
		else
			snprintf(err, errlen, "file format not recognised (STL, OBJ, PLY, glTF, GLB and 3MF are supported)");
		return canon != NULL && strcmp(canon, "stl") != 0 ?
			ALX_MESHD_EXIT_FORMAT : ALX_MESHD_EXIT_BAD_FILE;
	}
	if (canon != NULL)
	{
		bool		ok;

		if (strcmp(canon, "stl") == 0)
			ok = strncmp(fmt, "stl", 3) == 0;
		else if (strcmp(canon, "gltf") == 0 || strcmp(canon, "glb") == 0)
			ok = strcmp(fmt, "gltf") == 0 || strcmp(fmt, "glb") == 0;
		else
			ok = strcmp(fmt, canon) == 0;
		if (!ok)
		{
			snprintf(err, errlen, "file content looks like %s, not %s", fmt, canon);
			return ALX_MESHD_EXIT_FORMAT;
		}
	}
	*fmtp = fmt;
	return ALX_MESHD_EXIT_OK;
}

/* Import with assimp through the confined file system, into g. */
static int
import_assimp(AlxGeom *g, const unsigned char *buf, size_t len, const char *fmt,
			  double scale, char *err, size_t errlen)
{
	MemFS		fs;
	struct aiFileIO io;
	struct aiPropertyStore *props;
	const struct aiScene *sc;
	int			rc;

	memset(&fs, 0, sizeof(fs));
	fs.buf = buf;
	fs.len = len;
	snprintf(fs.name, sizeof(fs.name), "upload.%s", ext_of(fmt));
	memset(&io, 0, sizeof(io));
	io.OpenProc = mem_open;
	io.CloseProc = mem_close;
	io.UserData = (aiUserData) &fs;

	props = aiCreatePropertyStore();
	aiSetImportPropertyInteger(props, AI_CONFIG_PP_SBP_REMOVE,
							   aiPrimitiveType_POINT | aiPrimitiveType_LINE);
	alx_mesh_in_assimp = 1;
	sc = aiImportFileExWithProperties(fs.name,
									  aiProcess_Triangulate | aiProcess_SortByPType |
									  aiProcess_ValidateDataStructure,
									  &io, props);
	alx_mesh_in_assimp = 0;
	aiReleasePropertyStore(props);
	if (sc == NULL)
	{
		const char *msg = aiGetErrorString();

		snprintf(err, errlen, "%s file could not be parsed: %s", fmt,
				 (msg && msg[0]) ? msg : "no detail");
		/* assimp turns std::bad_alloc under RLIMIT_AS into an error string */
		if (msg && strstr(msg, "bad_alloc"))
			return ALX_MESHD_EXIT_TOO_LARGE;
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	rc = walk_scene(g, sc, scale, err, errlen);
	aiReleaseImport(sc);
	return rc;
}

/* The unit scale of a format: the caller's, or what the format fixes. */
static int
format_scale(const unsigned char *buf, size_t len, const char *fmt,
			 double *scale, char *err, size_t errlen)
{
	if (strcmp(fmt, "glb") == 0 || strcmp(fmt, "gltf") == 0)
		*scale = 1000.0;		/* glTF 2.0: "units for all linear distances are meters" */
	else if (strcmp(fmt, "3mf") == 0)
		return check_3mf(buf, len, scale, err, errlen);
	return ALX_MESHD_EXIT_OK;
}

static int
geom_rc(const AlxGeom *g, int gr, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", g->errmsg);
	return gr == ALX_GEOM_ERR_TOO_LARGE ? ALX_MESHD_EXIT_TOO_LARGE : ALX_MESHD_EXIT_BAD_FILE;
}

/*
 * The metrics of a loaded mesh: ordered for locality, then the wall
 * thickness structure is built on a worker while this thread computes the
 * other metrics, then the rays.
 */
static int
measure(AlxGeom *g, const AlxMeshOptions *opt, AlxMeshResult *res,
		char *err, size_t errlen)
{
	int			gr;

	alx_timing_mark("load");
	if (!AlxGeomLocalize(g))
		return geom_rc(g, g->error, err, errlen);
	alx_timing_mark("localize");
	if (opt->wall && AlxWallReady())
		AlxWallBuildStart(g);
	gr = AlxGeomCompute(g, &res->stats);
	alx_timing_mark("metrics");
	if (gr != ALX_GEOM_OK)
		return geom_rc(g, gr, err, errlen);
	gr = AlxWallMeasure(g, &res->wall, err, errlen);
	if (res->wall.skipped || res->wall.gave_up > 0)
		res->stats.warnings |= ALX_WARN_WALL_SKIPPED;
	alx_timing_mark("wall (wait+rays)");
	return gr;
}

/* Everything after the format is known: load, measure. */
static int
decode(const unsigned char *buf, size_t len, const AlxMeshOptions *opt,
	   AlxMeshResult *res, char *err, size_t errlen)
{
	const char *fmt = NULL;
	double		scale = opt->unit_scale;
	AlxGeom		g;
	bool		native_stl;
	int			rc;

	if (len == 0)
	{
		snprintf(err, errlen, "mesh file is empty");
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	if (!(scale > 0) || !isfinite(scale))
	{
		snprintf(err, errlen, "unit scale must be a positive number");
		return ALX_MESHD_EXIT_USAGE;
	}
	rc = detect_format(buf, len, opt->hint, &fmt, err, errlen);
	if (rc == ALX_MESHD_EXIT_OK)
		rc = prescan(fmt, buf, len, err, errlen);
	if (rc == ALX_MESHD_EXIT_OK)
		rc = format_scale(buf, len, fmt, &scale, err, errlen);
	if (rc != ALX_MESHD_EXIT_OK)
		return rc;

	AlxGeomInit(&g);
	native_stl = strcmp(fmt, "stl-binary") == 0 && !opt->stl_via_assimp;
	if (native_stl)
		rc = AlxStlBinaryLoad(&g, buf, len, scale, err, errlen);
	else
		rc = import_assimp(&g, buf, len, fmt, scale, err, errlen);
	if (rc == ALX_MESHD_EXIT_OK)
		rc = measure(&g, opt, res, err, errlen);
	AlxWallRelease();			/* before the mesh it reads is freed */
	AlxGeomFree(&g);
	if (rc == ALX_MESHD_EXIT_OK)
	{
		snprintf(res->format, sizeof(res->format), "%s", fmt);
		res->unit_scale_mm = scale;
	}
	return rc;
}

int
AlxMeshDecode(const unsigned char *buf, size_t len, const AlxMeshOptions *opt,
			  AlxMeshResult *res, char *err, size_t errlen)
{
	int			rc;

	memset(res, 0, sizeof(*res));
	err[0] = '\0';
	rc = decode(buf, len, opt, res, err, errlen);

	/*
	 * A failed allocation is the memory limit speaking, whatever error a
	 * parser made of it afterwards.
	 */
	if (rc == ALX_MESHD_EXIT_BAD_FILE && AlxMeshAllocFailed())
	{
		char		inner[256];

		snprintf(inner, sizeof(inner), "%s", err);
		snprintf(err, errlen, "out of memory under the helper's memory limit (%s)", inner);
		rc = ALX_MESHD_EXIT_TOO_LARGE;
	}
	return rc;
}
