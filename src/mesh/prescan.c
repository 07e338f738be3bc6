/*-------------------------------------------------------------------------
 *
 * prescan.c
 *	  Cheap structural checks of PLY, OBJ, glTF and GLB files before assimp.
 *
 * - PLY: the header is parsed strictly (a header cut short, an unknown line
 *	 or a count beyond 2^32 is refused), then the declared rows are checked
 *	 against the bytes that follow: first arithmetically (rows x smallest
 *	 row size), then by walking the rows -- binary rows by their sizes and
 *	 list counts, ASCII rows token by token -- so a list that claims four
 *	 billion entries or a body shorter than its header says is refused
 *	 before assimp allocates for it.
 * - OBJ: no face may have more than ALX_PRESCAN_MAX_FACE_VERTICES vertices.
 * - glTF: JSON nesting at most ALX_PRESCAN_MAX_JSON_DEPTH deep (assimp's
 *	 JSON parser recurses).
 * - GLB: the header's length is the file's, the chunks lie inside it, the
 *	 first is JSON (checked like glTF), the version is 2.
 *
 * Everything is one pass over the bytes without allocation.
 *
 * IDENTIFICATION
 *	  src/mesh/prescan.c
 *
 *-------------------------------------------------------------------------
 */
#include "prescan.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshrecord.h"

#define PLY_MAX_ELEMENTS	16
#define PLY_MAX_PROPS		64

typedef struct PlyProp
{
	int			size;			/* scalar size, or item size of a list */
	int			count_size;		/* 0 for a scalar; size of the list count */
	bool		count_signed;
} PlyProp;

typedef struct PlyElem
{
	char		name[32];
	uint64_t	count;
	int			nprops;
	PlyProp		props[PLY_MAX_PROPS];
} PlyElem;

typedef struct PlyHeader
{
	int			format;			/* 0 ascii, 1 binary LE, 2 binary BE */
	int			nelems;
	PlyElem		elems[PLY_MAX_ELEMENTS];
	size_t		body;			/* offset of the first body byte */
} PlyHeader;

static int
fail(char *err, size_t errlen, int code, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return code;
}

/* Size of a PLY scalar type name, 0 if unknown; *sgn tells signedness. */
static int
ply_type_size(const char *t, size_t n, bool *sgn)
{
	static const struct
	{
		const char *name;
		int			size;
		bool		sgn;
	}			types[] = {
		{"char", 1, true}, {"uchar", 1, false}, {"int8", 1, true}, {"uint8", 1, false},
		{"short", 2, true}, {"ushort", 2, false}, {"int16", 2, true}, {"uint16", 2, false},
		{"int", 4, true}, {"uint", 4, false}, {"int32", 4, true}, {"uint32", 4, false},
		{"float", 4, true}, {"float32", 4, true}, {"double", 8, true}, {"float64", 8, true},
	};

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strlen(types[i].name) == n && memcmp(types[i].name, t, n) == 0)
		{
			*sgn = types[i].sgn;
			return types[i].size;
		}
	return 0;
}

/* Split one header line into at most 8 tokens (pointers and lengths). */
static int
tokenize(const char *p, const char *end, const char **tok, size_t *tlen, int max)
{
	int			n = 0;

	while (p < end && n < max)
	{
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
			p++;
		if (p == end)
			break;
		tok[n] = p;
		while (p < end && *p != ' ' && *p != '\t' && *p != '\r')
			p++;
		tlen[n] = (size_t) (p - tok[n]);
		n++;
	}
	return n;
}

static bool
tok_is(const char *t, size_t n, const char *word)
{
	return strlen(word) == n && memcmp(t, word, n) == 0;
}

/* A decimal count of at most 2^32 - 1; false otherwise. */
static bool
parse_count(const char *t, size_t n, uint64_t *out)
{
	uint64_t	v = 0;

	if (n == 0 || n > 10)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		if (t[i] < '0' || t[i] > '9')
			return false;
		v = v * 10 + (uint64_t) (t[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*out = v;
	return true;
}

/* One header line (without its newline); returns an exit code. */
static int
ply_header_line(PlyHeader *h, const char *line, const char *end, int lineno,
				char *err, size_t errlen)
{
	const char *tok[8];
	size_t		tl[8];
	int			nt = tokenize(line, end, tok, tl, 8);
	PlyElem    *e = h->nelems > 0 ? &h->elems[h->nelems - 1] : NULL;

	if (nt == 0 || tok_is(tok[0], tl[0], "comment") || tok_is(tok[0], tl[0], "obj_info"))
		return ALX_MESHD_EXIT_OK;
	if (tok_is(tok[0], tl[0], "format") && nt == 3)
	{
		if (tok_is(tok[1], tl[1], "ascii"))
			h->format = 0;
		else if (tok_is(tok[1], tl[1], "binary_little_endian"))
			h->format = 1;
		else if (tok_is(tok[1], tl[1], "binary_big_endian"))
			h->format = 2;
		else
			return fail(err, errlen, ALX_MESHD_EXIT_BAD_FILE, "PLY header names an unknown format");
		return ALX_MESHD_EXIT_OK;
	}
	if (tok_is(tok[0], tl[0], "element") && nt == 3)
	{
		if (h->nelems == PLY_MAX_ELEMENTS)
			return fail(err, errlen, ALX_MESHD_EXIT_BAD_FILE, "PLY header declares too many elements");
		e = &h->elems[h->nelems++];
		memset(e, 0, sizeof(*e));
		snprintf(e->name, sizeof(e->name), "%.*s", (int) (tl[1] < 31 ? tl[1] : 31), tok[1]);
		if (!parse_count(tok[2], tl[2], &e->count))
		{
			snprintf(err, errlen, "PLY element \"%s\" has an invalid count (at most 4294967295)", e->name);
			return ALX_MESHD_EXIT_BAD_FILE;
		}
		return ALX_MESHD_EXIT_OK;
	}
	if (tok_is(tok[0], tl[0], "property") && e != NULL && (nt == 3 || nt == 5))
	{
		PlyProp    *p;
		bool		sgn;

		if (e->nprops == PLY_MAX_PROPS)
			return fail(err, errlen, ALX_MESHD_EXIT_BAD_FILE, "PLY element declares too many properties");
		p = &e->props[e->nprops++];
		memset(p, 0, sizeof(*p));
		if (nt == 5 && tok_is(tok[1], tl[1], "list"))
		{
			p->count_size = ply_type_size(tok[2], tl[2], &p->count_signed);
			p->size = ply_type_size(tok[3], tl[3], &sgn);
			if (p->count_size == 8)
				p->count_size = 0;	/* a float count makes no sense */
		}
		else if (nt == 3)
			p->size = ply_type_size(tok[1], tl[1], &sgn);
		if (p->size == 0 || (nt == 5 && p->count_size == 0))
		{
			snprintf(err, errlen, "PLY header line %d has an unknown property type", lineno);
			return ALX_MESHD_EXIT_BAD_FILE;
		}
		return ALX_MESHD_EXIT_OK;
	}
	snprintf(err, errlen, "PLY header line %d is not understood", lineno);
	return ALX_MESHD_EXIT_BAD_FILE;
}

/* Parse the header up to and including its "end_header" line. */
static int
ply_header(const unsigned char *buf, size_t len, PlyHeader *h, char *err, size_t errlen)
{
	const char *p = (const char *) buf;
	size_t		lim = len < ALX_PRESCAN_MAX_PLY_HEADER ? len : ALX_PRESCAN_MAX_PLY_HEADER;
	const char *end = p + lim;
	int			lineno = 0;
	bool		have_format = false;

	memset(h, 0, sizeof(*h));
	h->format = -1;
	while (p < end)
	{
		const char *nl = memchr(p, '\n', (size_t) (end - p));
		const char *le;
		int			rc;

		if (nl == NULL)
			break;
		le = nl;
		lineno++;
		if (lineno == 1)
		{
			if (!(le - p >= 3 && memcmp(p, "ply", 3) == 0 &&
				  (le - p == 3 || (le - p == 4 && p[3] == '\r'))))
				return fail(err, errlen, ALX_MESHD_EXIT_BAD_FILE, "PLY file does not start with a \"ply\" line");
		}
		else
		{
			const char *tok[1];
			size_t		tl[1];

			if (tokenize(p, le, tok, tl, 1) == 1 && tok_is(tok[0], tl[0], "end_header"))
			{
				if (!have_format || h->format < 0)
					return fail(err, errlen, ALX_MESHD_EXIT_BAD_FILE, "PLY header has no format line");
				h->body = (size_t) (nl + 1 - (const char *) buf);
				return ALX_MESHD_EXIT_OK;
			}
			if (tokenize(p, le, tok, tl, 1) == 1 && tok_is(tok[0], tl[0], "format"))
				have_format = true;
			rc = ply_header_line(h, p, le, lineno, err, errlen);
			if (rc != ALX_MESHD_EXIT_OK)
				return rc;
		}
		p = nl + 1;
	}
	return fail(err, errlen, ALX_MESHD_EXIT_BAD_FILE,
				"PLY header is not terminated by an \"end_header\" line");
}

/* Read an unsigned list count of size n in the file's byte order. */
static bool
binary_count(const unsigned char *p, const PlyProp *pr, bool big, uint64_t *out)
{
	uint64_t	v = 0;
	int			n = pr->count_size;

	for (int i = 0; i < n; i++)
		v |= (uint64_t) p[big ? i : n - 1 - i] << (8 * (n - 1 - i));
	if (pr->count_signed && (v >> (8 * n - 1)) & 1)
		return false;			/* negative */
	*out = v;
	return true;
}

static int
row_error(char *err, size_t errlen, const PlyElem *e, uint64_t row, const char *what)
{
	snprintf(err, errlen, "PLY element \"%s\" row %llu %s", e->name,
			 (unsigned long long) row, what);
	return ALX_MESHD_EXIT_BAD_FILE;
}

/* Walk a binary body; every row must lie inside the file. */
static int
ply_binary_body(const unsigned char *buf, size_t len, const PlyHeader *h,
				char *err, size_t errlen)
{
	size_t		pos = h->body;
	bool		big = (h->format == 2);

	for (int ei = 0; ei < h->nelems; ei++)
	{
		const PlyElem *e = &h->elems[ei];
		uint64_t	minrow = 0;
		bool		lists = false;

		for (int k = 0; k < e->nprops; k++)
		{
			minrow += e->props[k].count_size ? (uint64_t) e->props[k].count_size
				: (uint64_t) e->props[k].size;
			lists |= e->props[k].count_size != 0;
		}
		if (e->count * minrow > len - pos)
		{
			snprintf(err, errlen, "PLY element \"%s\" declares %llu rows (at least %llu bytes) but only %zu bytes follow",
					 e->name, (unsigned long long) e->count,
					 (unsigned long long) (e->count * minrow), len - pos);
			return ALX_MESHD_EXIT_BAD_FILE;
		}
		if (!lists)
		{
			pos += (size_t) (e->count * minrow);
			continue;
		}
		for (uint64_t r = 0; r < e->count; r++)
			for (int k = 0; k < e->nprops; k++)
			{
				const PlyProp *pr = &e->props[k];
				uint64_t	n;

				if (pr->count_size == 0)
				{
					if ((size_t) pr->size > len - pos)
						return row_error(err, errlen, e, r, "runs past the end of the file");
					pos += (size_t) pr->size;
					continue;
				}
				if ((size_t) pr->count_size > len - pos)
					return row_error(err, errlen, e, r, "runs past the end of the file");
				if (!binary_count(buf + pos, pr, big, &n))
					return row_error(err, errlen, e, r, "has a negative list count");
				if (n > ALX_PRESCAN_MAX_PLY_LIST)
					return row_error(err, errlen, e, r, "has a list of more than 4096 entries");
				pos += (size_t) pr->count_size;
				if (n * (uint64_t) pr->size > len - pos)
					return row_error(err, errlen, e, r, "runs past the end of the file");
				pos += (size_t) (n * (uint64_t) pr->size);
			}
	}
	return ALX_MESHD_EXIT_OK;
}

static inline bool
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Next token: *pos moves past it; false at end of file. */
static inline bool
next_token(const unsigned char *buf, size_t len, size_t *pos,
		   size_t *tstart, size_t *tlen)
{
	size_t		p = *pos;

	while (p < len && is_space(buf[p]))
		p++;
	if (p == len)
		return false;
	*tstart = p;
	while (p < len && !is_space(buf[p]))
		p++;
	*tlen = p - *tstart;
	*pos = p;
	return true;
}

/* Walk an ASCII body token by token; list counts must be honest. */
static int
ply_ascii_body(const unsigned char *buf, size_t len, const PlyHeader *h,
			   char *err, size_t errlen)
{
	size_t		pos = h->body;

	for (int ei = 0; ei < h->nelems; ei++)
	{
		const PlyElem *e = &h->elems[ei];

		if (e->nprops == 0)
			continue;
		/* every row needs one byte per property at least */
		if (e->count * (uint64_t) e->nprops > len - pos)
		{
			snprintf(err, errlen, "PLY element \"%s\" declares %llu rows but only %zu bytes follow",
					 e->name, (unsigned long long) e->count, len - pos);
			return ALX_MESHD_EXIT_BAD_FILE;
		}
		for (uint64_t r = 0; r < e->count; r++)
			for (int k = 0; k < e->nprops; k++)
			{
				size_t		ts,
							tl;
				uint64_t	n;

				if (!next_token(buf, len, &pos, &ts, &tl))
					return row_error(err, errlen, e, r, "is missing: the file ends early");
				if (e->props[k].count_size == 0)
					continue;
				if (!parse_count((const char *) buf + ts, tl, &n))
					return row_error(err, errlen, e, r, "has an invalid list count");
				if (n > ALX_PRESCAN_MAX_PLY_LIST)
					return row_error(err, errlen, e, r, "has a list of more than 4096 entries");
				for (uint64_t i = 0; i < n; i++)
					if (!next_token(buf, len, &pos, &ts, &tl))
						return row_error(err, errlen, e, r, "is missing list entries: the file ends early");
			}
	}
	return ALX_MESHD_EXIT_OK;
}

int
AlxPrescanPly(const unsigned char *buf, size_t len, char *err, size_t errlen)
{
	PlyHeader	h;
	int			rc = ply_header(buf, len, &h, err, errlen);

	if (rc != ALX_MESHD_EXIT_OK)
		return rc;
	if (h.format == 0)
		return ply_ascii_body(buf, len, &h, err, errlen);
	return ply_binary_body(buf, len, &h, err, errlen);
}

/* assimp's IsLineEnd(): an OBJ line ends at any of these */
static inline bool
obj_line_end(unsigned char c)
{
	return c == '\n' || c == '\r' || c == '\0' || c == '\f';
}

/*
 * What assimp 5.2's OBJ face parser (ObjFileParser::getFace) stores from one
 * face line line[0..n) (the keyword first; line[n] stands for the '\n' the
 * reader puts after it): *nv, the vertex indices it keeps.  It skips the
 * keyword and the blanks after it, then walks the bytes: '/' moves to the
 * next part of a vertex (position, texture, normal), a blank back to the
 * position, and anything else is read with atoi() and stepped over by the
 * number of digits (and sign) of the value read, not of the text: "0001"
 * is four indices and "1-32000-31999" three.  Returns a reason when the
 * parser would run past the line into the bytes of earlier lines that its
 * buffer still holds (a fourth part after a third "/", an index whose
 * value has more digits than its text, a vertical tab that atoi() skips
 * like a blank): such faces are refused, NULL otherwise.
 */
static const char *
obj_face_vertices(const unsigned char *line, size_t n, size_t *nv)
{
	size_t		i = 0;
	int			part = 0;

	*nv = 0;
	while (i < n && line[i] != ' ' && line[i] != '\t' && !obj_line_end(line[i]))
		i++;
	while (i < n && (line[i] == ' ' || line[i] == '\t'))
		i++;
	while (i < n)
	{
		unsigned char c = line[i];
		size_t		step = 1;

		if (obj_line_end(c))
			break;
		if (c == '/')
		{
			if (++part > 2)
				return "has a vertex of more than three parts";
		}
		else if (c == ' ' || c == '\t')
			part = 0;
		else if (c == '\v')
			return "has a vertical tab";
		else
		{
			/* atoi(): (int) strtol(), which clamps to the range of long */
			size_t		j = i;
			bool		neg = false;
			uint64_t	mag = 0;
			int64_t		lv;
			int32_t		v;

			if (line[j] == '+' || line[j] == '-')
				neg = line[j++] == '-';
			for (; j < n && line[j] >= '0' && line[j] <= '9'; j++)
				mag = mag > (UINT64_MAX - 9) / 10 ? UINT64_MAX : mag * 10 + (line[j] - '0');
			if (mag > (uint64_t) INT64_MAX)
				lv = neg ? INT64_MIN : INT64_MAX;
			else
				lv = neg ? -(int64_t) mag : (int64_t) mag;
			v = (int32_t) (uint32_t) (uint64_t) lv;
			if (v == 0)
				return NULL;	/* assimp refuses the file: "Invalid face index" */
			if (v < 0)
				step++;
			for (int32_t t = v / 10; t != 0; t /= 10)
				step++;
			if (part == 0)
				(*nv)++;
		}
		i += step;
		if (i > n)
			return "has an index out of range";
	}
	return NULL;
}

/*
 * No face may list more than ALX_PRESCAN_MAX_FACE_VERTICES vertices, counted
 * as assimp 5.2 counts them (obj_face_vertices).  Lines are split as its OBJ
 * reader splits them (IOStreamBuffer::getNextDataLine), or a face could slip
 * past: a line ends at LF, CR, NUL or FF (a file with CR line ends is one
 * "line" to a reader that looks for LF only); a backslash right before a
 * line end continues the line: the reader skips through the next LF and
 * takes the byte after it as data, whatever it is.  A line whose first
 * byte is 'f' is a face.
 */
int
AlxPrescanObj(const unsigned char *buf, size_t len, char *err, size_t errlen)
{
	size_t		p = 0;
	unsigned char *line = NULL;
	size_t		cap = 0;
	int			rc = ALX_MESHD_EXIT_OK;

	while (p < len && rc == ALX_MESHD_EXIT_OK)
	{
		size_t		start = p;
		size_t		n = 0;
		bool		face = false;
		bool		first = true;

		while (p < len)
		{
			unsigned char c = buf[p];

			if (c == '\\' && p + 1 < len && obj_line_end(buf[p + 1]))
			{
				p++;
				while (p < len && buf[p] != '\n')
					p++;
				if (++p >= len)
					break;
				c = buf[p];		/* taken as data, unchecked */
			}
			else if (obj_line_end(c))
				break;
			p++;
			if (first)
			{
				face = (c == 'f');
				first = false;
			}
			if (!face)
				continue;
			if (n == cap)
			{
				size_t		ncap = cap ? cap * 2 : 4096;
				unsigned char *nl = realloc(line, ncap);

				if (nl == NULL)
				{
					free(line);
					return fail(err, errlen, ALX_MESHD_EXIT_TOO_LARGE, "out of memory");
				}
				line = nl;
				cap = ncap;
			}
			line[n++] = c;
		}
		p++;					/* past the line end */
		if (face)
		{
			size_t		nv;
			const char *why = obj_face_vertices(line, n, &nv);

			if (why != NULL || nv > ALX_PRESCAN_MAX_FACE_VERTICES)
			{
				/* the line number, as an editor counts (LF, CRLF or a lone CR) */
				uint64_t	lineno = 1;

				for (size_t i = 0; i < start; i++)
					if (buf[i] == '\n' || (buf[i] == '\r' && (i + 1 >= len || buf[i + 1] != '\n')))
						lineno++;
				if (why != NULL)
					snprintf(err, errlen, "OBJ face on line %llu %s",
							 (unsigned long long) lineno, why);
				else
					snprintf(err, errlen, "OBJ face on line %llu has %zu vertices (at most %d are accepted)",
							 (unsigned long long) lineno, nv, ALX_PRESCAN_MAX_FACE_VERTICES);
				rc = ALX_MESHD_EXIT_BAD_FILE;
			}
		}
	}
	free(line);
	return rc;
}

/*
 * The string between buf[s] and buf[e] (the quotes excluded), decoded into
 * out when it is at most outlen - 1 ASCII characters; false when it is not
 * (too long, not ASCII, a bad escape).  Keys are compared decoded, since
 * the JSON parser decodes "byte\u004fffset" to byteOffset too.
 */
static bool
json_short_string(const unsigned char *buf, size_t s, size_t e, char *out, size_t outlen)
{
	size_t		n = 0;

	for (size_t i = s; i < e;)
	{
		unsigned int c = buf[i];

		if (c == '\\')
		{
			if (i + 1 >= e)
				return false;
			c = buf[i + 1];
			if (c == 'u')
			{
				unsigned int v = 0;

				if (i + 6 > e)
					return false;
				for (int k = 2; k < 6; k++)
				{
					unsigned int h = buf[i + k];

					v <<= 4;
					if (h >= '0' && h <= '9')
						v |= h - '0';
					else if ((h | 0x20) >= 'a' && (h | 0x20) <= 'f')
						v |= (h | 0x20) - 'a' + 10;
					else
						return false;
				}
				c = v;
				i += 6;
			}
			else
			{
				/* \" \\ \/ stand for themselves; \b \f \n \r \t for control characters */
				switch (c)
				{
					case 'b':
						c = '\b';
						break;
					case 'f':
						c = '\f';
						break;
					case 'n':
						c = '\n';
						break;
					case 'r':
						c = '\r';
						break;
					case 't':
						c = '\t';
						break;
				}
				i += 2;
			}
		}
		else
			i++;
		if (c == 0 || c >= 128 || n + 1 >= outlen)
			return false;
		out[n++] = (char) c;
	}
	out[n] = '\0';
	return true;
}

/*
 * Walks glTF JSON (buf[0..len)): returns its nesting depth (stopping past
 * limit), or -1 if its brackets do not balance.  Also refuses, through
 * *bad (the key, and the value in *badval), a "byteOffset" or "byteLength"
 * whose integer value exceeds file_len: no buffer can extend beyond the
 * file that holds or embeds it, and assimp checks offset + length against
 * the buffer in 64-bit arithmetic that wraps, so an offset just below 2^64
 * passes its check and points before the buffer.
 */
static int
json_walk(const unsigned char *buf, size_t len, int limit, size_t file_len,
		  const char **bad, uint64_t *badval)
{
	int			depth = 0,
				max = 0;
	size_t		i = 0;

	*bad = NULL;
	while (i < len)
	{
		unsigned char c = buf[i++];

		if (c == '"')
		{
			size_t		s = i;
			char		key[16];

			while (i < len && buf[i] != '"')
				i += (buf[i] == '\\') ? 2 : 1;
			if (i <= len && json_short_string(buf, s, i < len ? i : len, key, sizeof(key)) &&
				(strcmp(key, "byteOffset") == 0 || strcmp(key, "byteLength") == 0))
			{
				size_t		j = i + 1;
				uint64_t	v = 0;
				bool		digits = false;

				while (j < len && is_space(buf[j]))
					j++;
				if (j < len && buf[j] == ':')
				{
					j++;
					while (j < len && is_space(buf[j]))
						j++;
					for (; j < len && buf[j] >= '0' && buf[j] <= '9'; j++)
					{
						digits = true;
						v = (v > (UINT64_MAX - 9) / 10) ? UINT64_MAX : v * 10 + (buf[j] - '0');
					}
					/* an integer (a fraction or exponent makes it a double, not a size) */
					if (digits && !(j < len && (buf[j] == '.' || buf[j] == 'e' || buf[j] == 'E')) &&
						v > file_len && *bad == NULL)
					{
						*bad = strcmp(key, "byteOffset") == 0 ? "byteOffset" : "byteLength";
						*badval = v;
					}
				}
			}
			i++;
		}
		else if (c == '{' || c == '[')
		{
			if (++depth > max)
				max = depth;
			if (max > limit)
				return max;
		}
		else if (c == '}' || c == ']')
		{
			if (--depth < 0)
				return -1;
		}
	}
	return depth == 0 ? max : -1;
}

static int
check_json(const unsigned char *buf, size_t len, size_t file_len, const char *what, char *err, size_t errlen)
{
	const char *bad;
	uint64_t	badval = 0;
	int			d = json_walk(buf, len, ALX_PRESCAN_MAX_JSON_DEPTH, file_len, &bad, &badval);

	if (d < 0)
	{
		snprintf(err, errlen, "%s JSON has unbalanced brackets", what);
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	if (d > ALX_PRESCAN_MAX_JSON_DEPTH)
	{
		snprintf(err, errlen, "%s JSON is nested deeper than %d levels", what, ALX_PRESCAN_MAX_JSON_DEPTH);
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	if (bad != NULL)
	{
		snprintf(err, errlen, "%s %s %llu is beyond the end of the file (%zu bytes)",
				 what, bad, (unsigned long long) badval, file_len);
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	return ALX_MESHD_EXIT_OK;
}

int
AlxPrescanGltf(const unsigned char *buf, size_t len, char *err, size_t errlen)
{
	return check_json(buf, len, len, "glTF", err, errlen);
}

int
AlxPrescanGlb(const unsigned char *buf, size_t len, char *err, size_t errlen)
{
	uint32_t	version,
				total,
				l0;

	if (len < 20)
		return fail(err, errlen, ALX_MESHD_EXIT_BAD_FILE, "GLB file is shorter than its headers");
	version = alx_get_u32(buf + 4);
	total = alx_get_u32(buf + 8);
	if (version != 2)
	{
		snprintf(err, errlen, "GLB version %u is not supported (glTF 2.0 only)", version);
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	if (total != len)
	{
		snprintf(err, errlen, "GLB header declares %u bytes but the file has %zu", total, len);
		return ALX_MESHD_EXIT_BAD_FILE;
	}
	l0 = alx_get_u32(buf + 12);
	if (alx_get_u32(buf + 16) != 0x4E4F534Au)
		return fail(err, errlen, ALX_MESHD_EXIT_BAD_FILE, "GLB first chunk is not JSON");
	if ((uint64_t) l0 > len - 20)
		return fail(err, errlen, ALX_MESHD_EXIT_BAD_FILE, "GLB JSON chunk runs past the end of the file");
	if (len - 20 - l0 > 0)
	{
		size_t		b = 20 + (size_t) l0;
		uint32_t	l1;

		if (len - b < 8)
			return fail(err, errlen, ALX_MESHD_EXIT_BAD_FILE, "GLB has a truncated second chunk");
		l1 = alx_get_u32(buf + b);
		if ((uint64_t) l1 > len - b - 8)
			return fail(err, errlen, ALX_MESHD_EXIT_BAD_FILE, "GLB binary chunk runs past the end of the file");
	}
	return check_json(buf + 20, l0, len, "GLB", err, errlen);
}
