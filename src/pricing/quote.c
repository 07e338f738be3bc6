/*-------------------------------------------------------------------------
 *
 * quote.c
 *	  price_quote: the price of a stored mesh in a material.
 *
 * The formula (docs/pricing.md) is evaluated in 128-bit fixed point with
 * an explicit rounding at each documented step, so that the result is
 * exact and identical to the same formula written with numeric in SQL.
 * The only floating-point input is the mesh geometry, which is first
 * rounded to 0.001 mm3 / mm2 with rint(), as SQL's round(float8) does.
 *
 * Per call the function reads one row of alexandrite.meshes by primary
 * key and nothing else: the price list comes from the backend cache
 * (pricelist.c).
 *
 * IDENTIFICATION
 *	  src/pricing/quote.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "alexandrite.h"
#include "pricing/pricing.h"

/* the largest stone count an option may give */
#define ALX_MAX_STONES		100000
/* bounding-box extents outside this band (mm) suggest a wrong unit */
#define ALX_UNIT_MIN_MM		1.0
#define ALX_UNIT_MAX_MM		300.0

/* the columns of alexandrite.meshes that pricing reads */
typedef enum MeshCol
{
	MC_TRIANGLES,
	MC_VOLUME,
	MC_AREA,
	MC_SIZE_X,
	MC_SIZE_Y,
	MC_SIZE_Z,
	MC_SHELLS,
	MC_WATERTIGHT,
	MC_BOUNDARY,
	MC_NONMANIFOLD,
	MC_DEGENERATE,
	MC_MIN_WALL,				/* the wall columns may be NULL */
	MC_WALL_X,
	MC_WALL_Y,
	MC_WALL_Z,
	MC_NCOLS
} MeshCol;

static const struct
{
	const char *name;
	Oid			type;
}			mesh_cols[MC_NCOLS] =
{
	{"triangles", INT8OID},
	{"volume_mm3", FLOAT8OID},
	{"area_mm2", FLOAT8OID},
	{"size_x_mm", FLOAT8OID},
	{"size_y_mm", FLOAT8OID},
	{"size_z_mm", FLOAT8OID},
	{"shells", INT4OID},
	{"watertight", BOOLOID},
	{"boundary_edges", INT8OID},
	{"nonmanifold_edges", INT8OID},
	{"degenerate_triangles", INT8OID},
	{"min_wall_mm", FLOAT8OID},
	{"min_wall_x_mm", FLOAT8OID},
	{"min_wall_y_mm", FLOAT8OID},
	{"min_wall_z_mm", FLOAT8OID},
};

/* where those columns are; recomputed whenever the table may have changed */
static Oid	layout_relid = InvalidOid;
static uint64 layout_gen = 0;
static Oid	layout_pkey = InvalidOid;
static AttrNumber layout_att[MC_NCOLS];

typedef struct MeshFacts
{
	int64		triangles;
	double		volume_mm3;
	double		area_mm2;
	double		size[3];
	int32		shells;
	bool		watertight;
	int64		boundary_edges;
	int64		nonmanifold_edges;
	int64		degenerate_triangles;
	bool		has_wall;		/* measured (analyzer version 2 and later) */
	double		min_wall_mm;
	double		wall_at[3];
} MeshFacts;

typedef struct QuoteOptions
{
	int64		stones;
	int64		version;		/* 0: current */
	bool		accept_review;
} QuoteOptions;

static const int128 pow10_tab[] = {
	1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
	1000000000, 10000000000, 100000000000, 1000000000000,
	10000000000000, 100000000000000, 1000000000000000,
	10000000000000000, 100000000000000000, 1000000000000000000,
	(int128) 1000000000000000000 * 10, (int128) 1000000000000000000 * 100,
	(int128) 1000000000000000000 * 1000
};

static pg_attribute_noreturn() void
quote_out_of_range(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("quote is out of range")));
}

static inline int128
mul128(int128 a, int128 b)
{
	int128		r;

	if (__builtin_mul_overflow(a, b, &r))
		quote_out_of_range();
	return r;
}

static inline int128
add128(int128 a, int128 b)
{
	int128		r;

	if (__builtin_add_overflow(a, b, &r))
		quote_out_of_range();
	return r;
}

/* Divide a non-negative v by 10^drop, rounding as mode says. */
static inline int128
round_drop(int128 v, int drop, AlxRoundingMode mode)
{
	int128		d;
	int128		q;
	int128		r;

	Assert(v >= 0 && drop >= 0 && drop < lengthof(pow10_tab));
	if (drop == 0)
		return v;
	d = pow10_tab[drop];
	q = v / d;
	r = v % d;
	if (r != 0 && (mode == ALX_ROUND_UP || (mode == ALX_ROUND_HALF_UP && r * 2 >= d)))
		q++;
	return q;
}

/*
 * A numeric of v * 10^-scale; trailing zeros are dropped down to min_scale
 * decimals, so that 4.500000 prints as 4.50 for a currency of 2 decimals.
 */
static Numeric
fx_numeric(int128 v, int scale, int min_scale)
{
	while (scale > min_scale && v % 10 == 0)
	{
		v /= 10;
		scale--;
	}
	if (v > PG_INT64_MAX || v < PG_INT64_MIN)
		quote_out_of_range();
	return int64_div_fast_to_numeric((int64) v, scale);
}

/* Parse a JSON number option that must be a whole number in [lo, hi]. */
static int64
option_integer(JsonbValue *v, const char *key, int64 lo, int64 hi)
{
	char	   *s;
	char	   *end;
	long long	n;

	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a number", key),
				 errhint("Give a whole number from " INT64_FORMAT " to " INT64_FORMAT ".", lo, hi)));
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	errno = 0;
	n = strtoll(s, &end, 10);
	if (*end != '\0' || errno != 0 || n < lo || n > hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" is out of range: %s", key, s),
				 errhint("Give a whole number from " INT64_FORMAT " to " INT64_FORMAT ".", lo, hi)));
	return (int64) n;
}

/* Read the options object; anything unexpected is invalid_parameter_value. */
static void
parse_options(Jsonb *jb, QuoteOptions *opts)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	memset(opts, 0, sizeof(*opts));
	if (jb == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("price_quote options must be a JSON object"),
				 errhint("For example '{\"stones\": 3}'.")));
	if (JB_ROOT_COUNT(jb) == 0)
		return;

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		if (strcmp(key, "stones") == 0)
			opts->stones = option_integer(&v, key, 0, ALX_MAX_STONES);
		else if (strcmp(key, "price_list_version") == 0)
			opts->version = option_integer(&v, key, 1, PG_INT64_MAX);
		else if (strcmp(key, "accept_review") == 0)
		{
			if (v.type != jbvBool)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"%s\" must be true or false", key)));
			opts->accept_review = v.val.boolean;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized price_quote option \"%s\"", key),
					 errhint("Valid options are \"stones\", \"price_list_version\" and \"accept_review\".")));
	}
}

/* Find the columns pricing reads and check their types. */
static void
resolve_layout(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	layout_relid = InvalidOid;	/* until complete */
	for (int c = 0; c < MC_NCOLS; c++)
	{
		layout_att[c] = InvalidAttrNumber;
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), mesh_cols[c].name) == 0)
			{
				if (att->atttypid != mesh_cols[c].type)
					ereport(ERROR,
							(errcode(ERRCODE_DATATYPE_MISMATCH),
							 errmsg("column \"%s\" of alexandrite.meshes has an unexpected type",
									mesh_cols[c].name)));
				layout_att[c] = att->attnum;
				break;
			}
		}
		if (layout_att[c] == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of alexandrite.meshes does not exist", mesh_cols[c].name)));
	}
	layout_pkey = RelationGetPrimaryKeyIndex(rel);
	if (!OidIsValid(layout_pkey))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("alexandrite.meshes has no primary key")));
	layout_relid = RelationGetRelid(rel);
}

/* deformed mesh row, sized for the table's attributes */
static Datum *row_values = NULL;
static bool *row_nulls = NULL;
static int	row_alloc = 0;

static Datum
mesh_attr(MeshCol c)
{
	int			i = layout_att[c] - 1;

	if (row_nulls[i])
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("column \"%s\" of the mesh is null", mesh_cols[c].name)));
	return row_values[i];
}

/* A column that may be NULL (the wall thickness of an older row). */
static bool
mesh_attr_opt(MeshCol c, double *out)
{
	int			i = layout_att[c] - 1;

	if (row_nulls[i])
		return false;
	*out = DatumGetFloat8(row_values[i]);
	return isfinite(*out);
}

/*
 * Read the facts pricing needs about one mesh; P0002 if there is none.
 *
 * The row is read with the statement's snapshot brought up to the current
 * command, so that a mesh stored earlier in the same statement is seen:
 * SELECT price_quote(mesh_ingest(bytes, 'ring.stl'), 'ag925') quotes the
 * mesh it has just stored.  Other transactions' changes stay as invisible
 * as the statement's snapshot has them (REPEATABLE READ holds).
 */
static void
fetch_mesh(int64 mesh_id, MeshFacts *m)
{
	Oid			relid = AlxPricingMeshesRelid();
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	TupleDesc	desc;
	Snapshot	snap;

	rel = table_open(relid, AccessShareLock);
	/* any invalidation of the table (DDL included) recomputes the layout */
	if (layout_relid != relid || layout_gen != AlxPricingGeneration())
	{
		resolve_layout(rel);
		layout_gen = AlxPricingGeneration();
	}

	/* the scan below would bypass row-level security: refuse instead */
	if (rel->rd_rel->relrowsecurity &&
		check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("price_quote does not support row-level security on alexandrite.meshes"),
				 errhint("Disable row-level security on alexandrite.meshes, or quote as a role that bypasses it.")));

	PushCopiedSnapshot(ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	snap = GetActiveSnapshot();
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(mesh_id));
	scan = systable_beginscan(rel, layout_pkey, true, snap, 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("mesh " INT64_FORMAT " does not exist", mesh_id),
				 errhint("Store the mesh with alexandrite.mesh_ingest() first.")));
	desc = RelationGetDescr(rel);
	/* one pass over the row: the columns sit behind variable-width ones */
	if (row_alloc < desc->natts)
	{
		if (row_values != NULL)
		{
			pfree(row_values);
			pfree(row_nulls);
		}
		row_values = MemoryContextAlloc(TopMemoryContext, sizeof(Datum) * desc->natts);
		row_nulls = MemoryContextAlloc(TopMemoryContext, sizeof(bool) * desc->natts);
		row_alloc = desc->natts;
	}
	heap_deform_tuple(tup, desc, row_values, row_nulls);
	m->triangles = DatumGetInt64(mesh_attr(MC_TRIANGLES));
	m->volume_mm3 = DatumGetFloat8(mesh_attr(MC_VOLUME));
	m->area_mm2 = DatumGetFloat8(mesh_attr(MC_AREA));
	m->size[0] = DatumGetFloat8(mesh_attr(MC_SIZE_X));
	m->size[1] = DatumGetFloat8(mesh_attr(MC_SIZE_Y));
	m->size[2] = DatumGetFloat8(mesh_attr(MC_SIZE_Z));
	m->shells = DatumGetInt32(mesh_attr(MC_SHELLS));
	m->watertight = DatumGetBool(mesh_attr(MC_WATERTIGHT));
	m->boundary_edges = DatumGetInt64(mesh_attr(MC_BOUNDARY));
	m->nonmanifold_edges = DatumGetInt64(mesh_attr(MC_NONMANIFOLD));
	m->degenerate_triangles = DatumGetInt64(mesh_attr(MC_DEGENERATE));
	m->min_wall_mm = m->wall_at[0] = m->wall_at[1] = m->wall_at[2] = 0;
	m->has_wall = mesh_attr_opt(MC_MIN_WALL, &m->min_wall_mm) &&
		mesh_attr_opt(MC_WALL_X, &m->wall_at[0]) &&
		mesh_attr_opt(MC_WALL_Y, &m->wall_at[1]) &&
		mesh_attr_opt(MC_WALL_Z, &m->wall_at[2]);
	systable_endscan(scan);
	PopActiveSnapshot();
	table_close(rel, AccessShareLock);
}

/* A measurement in 0.001 units, rounded half-even like SQL's round(float8). */
static int64
geometry_milli(double v, int64 mesh_id, const char *what)
{
	double		r;

	if (isnan(v) || isinf(v) || v < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mesh " INT64_FORMAT " has an invalid %s: %g", mesh_id, what, v),
				 errhint("Analyse the mesh again.")));
	r = rint(v * 1000.0);
	if (r > 1e15)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("mesh " INT64_FORMAT " is too large to price: %s %g", mesh_id, what, v)));
	return (int64) r;
}

/*
 * The breakdown object.  Its keys are fixed, so they are put in jsonb's key
 * order (shorter first, then bytewise) once per backend and the object is
 * built as a JsonbValue tree directly: pushJsonbValue would sort ~35 pairs
 * on every call, which was a third of the time of a quote.
 */
typedef enum BKey
{
	BK_MESH_ID, BK_MATERIAL, BK_VERSION, BK_CURRENCY, BK_VOLUME, BK_AREA,
	BK_TRIANGLES, BK_DENSITY, BK_LOSS, BK_NET_WEIGHT, BK_METAL_WEIGHT,
	BK_PRICE_PER_GRAM, BK_METAL_COST, BK_LABOUR_BASE, BK_TIER_FROM,
	BK_COMPLEXITY, BK_STONES, BK_STONE_RATE, BK_STONE_SETTING, BK_LABOUR,
	BK_FINISHING_RATE, BK_FINISHING, BK_SUBTOTAL, BK_MARGIN_PCT, BK_MARGIN,
	BK_MINIMUM, BK_MINIMUM_APPLIED, BK_INCREMENT, BK_MODE, BK_ADJUSTMENT,
	BK_TOTAL, BK_NEEDS_REVIEW, BK_WARNINGS,
	BK_NKEYS
} BKey;

static const char *const bkey_names[BK_NKEYS] = {
	"mesh_id", "material", "price_list_version", "currency", "volume_mm3", "area_mm2",
	"triangles", "density_g_cm3", "casting_loss_pct", "net_weight_g", "metal_weight_g",
	"price_per_gram", "metal_cost", "labour_base", "complexity_tier_from",
	"complexity_charge", "stones", "stone_setting_per_stone", "stone_setting", "labour_cost",
	"finishing_per_cm2", "finishing_cost", "subtotal", "margin_pct", "margin",
	"minimum_price", "minimum_applied", "rounding_increment", "rounding_mode", "rounding_adjustment",
	"total", "needs_review", "warnings"
};

static int	bkey_pos[BK_NKEYS];		/* index of each key in jsonb order */
static bool bkey_ready = false;

static int
bkey_cmp(const void *a, const void *b)
{
	const char *ka = bkey_names[*(const int *) a];
	const char *kb = bkey_names[*(const int *) b];
	size_t		la = strlen(ka);
	size_t		lb = strlen(kb);

	if (la != lb)
		return la < lb ? -1 : 1;
	return memcmp(ka, kb, la);
}

static void
bkey_init(void)
{
	int			order[BK_NKEYS];

	for (int i = 0; i < BK_NKEYS; i++)
		order[i] = i;
	qsort(order, BK_NKEYS, sizeof(int), bkey_cmp);
	for (int i = 0; i < BK_NKEYS; i++)
		bkey_pos[order[i]] = i;
	bkey_ready = true;
}

static inline JsonbValue *
bk_slot(JsonbPair *pairs, BKey k)
{
	JsonbPair  *p = &pairs[bkey_pos[k]];

	p->key.type = jbvString;
	p->key.val.string.val = (char *) bkey_names[k];
	p->key.val.string.len = strlen(bkey_names[k]);
	p->order = bkey_pos[k];
	return &p->value;
}

static inline void
bk_numeric(JsonbPair *pairs, BKey k, Numeric n)
{
	JsonbValue *v = bk_slot(pairs, k);

	v->type = jbvNumeric;
	v->val.numeric = n;
}

static inline void
bk_int(JsonbPair *pairs, BKey k, int64 i)
{
	bk_numeric(pairs, k, int64_to_numeric(i));
}

static inline void
bk_string(JsonbPair *pairs, BKey k, const char *s)
{
	JsonbValue *v = bk_slot(pairs, k);

	v->type = jbvString;
	v->val.string.val = (char *) s;
	v->val.string.len = strlen(s);
}

static inline void
bk_bool(JsonbPair *pairs, BKey k, bool b)
{
	JsonbValue *v = bk_slot(pairs, k);

	v->type = jbvBool;
	v->val.boolean = b;
}

/* Every figure of one quote, exact, in fixed point (docs/pricing.md). */
typedef struct QuoteCalc
{
	int			e;				/* decimals of the currency */
	int64		vol;			/* mm3, ALX_GEOM_SCALE decimals */
	int64		area;			/* mm2, ALX_GEOM_SCALE decimals */
	const AlxTier *tier;
	int128		net_g,
				metal_g,
				metal_cost,
				finishing,
				stone_exact,
				labour,
				subtotal,
				margin,
				price,
				total;
	bool		minimum_applied;
	/* the figures of the result, as numerics (in the breakdown too) */
	Numeric		total_num,
				metal_g_num,
				metal_cost_num,
				labour_num,
				finishing_num;
	const char *warnings[10];
	int			nwarnings;
	bool		needs_review;
} QuoteCalc;

/* The composite result type, once per call site. */
static TupleDesc
quote_tupdesc(FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc = (TupleDesc) fcinfo->flinfo->fn_extra;

	if (tupdesc == NULL)
	{
		MemoryContext old;
		TupleDesc	td;

		if (get_call_result_type(fcinfo, NULL, &td) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		tupdesc = BlessTupleDesc(CreateTupleDescCopy(td));
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = tupdesc;
	}
	return tupdesc;
}

/* The price list version and the active material a quote uses, or ERROR. */
static const AlxMaterial *
quote_material(const AlxPriceList **list_out, int64 version, const char *material)
{
	const AlxPriceList *list = AlxPriceListGet(version);
	const AlxMaterial *mat;

	if (list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("price list version " INT64_FORMAT " does not exist", version),
				 errhint("See alexandrite.price_list_versions.")));
	mat = AlxPriceListMaterial(list, material);
	if (mat == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown material \"%s\"", material),
				 errhint("See alexandrite.materials for the active materials.")));
	if (!mat->active)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("material \"%s\" is not active", material),
				 errhint("See alexandrite.materials for the active materials.")));
	*list_out = list;
	return mat;
}

/* Rounds a price to the list's increment, by its rounding mode. */
static int128
round_to_increment(int128 price, int128 increment, AlxRoundingMode mode)
{
	int128		q = price / increment;
	int128		r = price % increment;

	if (r != 0 && (mode == ALX_ROUND_UP || (mode == ALX_ROUND_HALF_UP && r * 2 >= increment)))
		q++;
	return mul128(q, increment);
}

/*
 * The arithmetic of a quote (docs/pricing.md), every step exact in 128-bit
 * fixed point and rounded once where the document says.
 */
static void
quote_compute(const AlxPriceList *list, const AlxMaterial *mat, const MeshFacts *mesh,
			  const QuoteOptions *opts, QuoteCalc *q)
{
	int			e = list->exponent;
	int128		labour_exact,
				minimum,
				increment;

	q->e = e;

	/*----------
	 * Metal, in grams with 3 decimals (docs/pricing.md, step 1):
	 *	 net   = V[mm3] / 1000 * density
	 *	 metal = V[mm3] / 1000 * density * (100 + loss_pct) / 100
	 * vol has 3 decimals and the rates 6, so the exact products have 12
	 * (net) and 20 (metal) decimals once the divisions are folded in.
	 *----------
	 */
	q->net_g = round_drop(mul128(q->vol, mat->density), 12 - ALX_WEIGHT_SCALE, ALX_ROUND_HALF_UP);
	q->metal_g = round_drop(mul128(mul128(q->vol, mat->density),
								   add128((int128) 100 * pow10_tab[ALX_RATE_SCALE], mat->loss_pct)),
							20 - ALX_WEIGHT_SCALE, ALX_ROUND_HALF_UP);
	/* metal cost = metal_g * price_per_gram, 9 decimals -> currency */
	q->metal_cost = round_drop(mul128(q->metal_g, mat->price_per_gram),
							   ALX_WEIGHT_SCALE + ALX_RATE_SCALE - e, ALX_ROUND_HALF_UP);
	/* finishing = A[mm2] / 100 * rate per cm2: 3 + 6 + 2 decimals */
	q->finishing = round_drop(mul128(q->area, list->finishing_per_cm2),
							  ALX_GEOM_SCALE + ALX_RATE_SCALE + 2 - e, ALX_ROUND_HALF_UP);
	/* labour = base + complexity tier charge + stones * per stone */
	q->tier = &list->tiers[0];
	for (int i = 1; i < list->ntiers && list->tiers[i].from_triangles <= mesh->triangles; i++)
		q->tier = &list->tiers[i];
	q->stone_exact = mul128(opts->stones, list->stone_setting);
	labour_exact = add128(add128(list->labour_base, q->tier->charge), q->stone_exact);
	q->labour = round_drop(labour_exact, ALX_RATE_SCALE - e, ALX_ROUND_HALF_UP);
	q->subtotal = add128(add128(q->metal_cost, q->labour), q->finishing);
	/* margin = subtotal * margin_pct / 100, rounded to the currency */
	q->margin = round_drop(mul128(q->subtotal, list->margin_pct), ALX_RATE_SCALE + 2, ALX_ROUND_HALF_UP);
	q->price = add128(q->subtotal, q->margin);
	/* minimum and increment have at most e decimals (table constraint) */
	minimum = list->minimum_price / pow10_tab[ALX_RATE_SCALE - e];
	increment = list->rounding_increment / pow10_tab[ALX_RATE_SCALE - e];
	if (increment <= 0)
		elog(ERROR, "rounding increment below the currency's smallest unit");
	q->minimum_applied = q->price < minimum;
	if (q->minimum_applied)
		q->price = minimum;
	q->total = round_to_increment(q->price, increment, list->rounding_mode);

	q->total_num = fx_numeric(q->total, e, e);
	q->metal_g_num = fx_numeric(q->metal_g, ALX_WEIGHT_SCALE, ALX_WEIGHT_SCALE);
	q->metal_cost_num = fx_numeric(q->metal_cost, e, e);
	q->labour_num = fx_numeric(q->labour, e, e);
	q->finishing_num = fx_numeric(q->finishing, e, e);
}

/*
 * Castability against the material's limits: a wall thinner than the
 * process holds (named with its value and where it is), a piece larger than
 * the process takes (extents compared sorted: the piece may be turned).
 */
static void
castability_warnings(const MeshFacts *mesh, const AlxMaterial *mat, QuoteCalc *q)
{
	if (mat->min_wall_text != NULL && mesh->has_wall && mesh->min_wall_mm < mat->min_wall_mm)
		q->warnings[q->nwarnings++] =
			psprintf("thin_wall: %.3f mm at (%.2f, %.2f, %.2f) mm, under the %s mm that %s needs",
					 mesh->min_wall_mm, mesh->wall_at[0], mesh->wall_at[1], mesh->wall_at[2],
					 mat->min_wall_text, mat->code);
	if (mat->max_build_text[0] != NULL)
	{
		double		d[3] = {mesh->size[0], mesh->size[1], mesh->size[2]};
		bool		over = false;

		for (int i = 1; i < 3; i++)
			for (int j = i; j > 0 && d[j] < d[j - 1]; j--)
			{
				double		t = d[j];

				d[j] = d[j - 1];
				d[j - 1] = t;
			}
		for (int k = 0; k < 3; k++)
			over |= d[k] > mat->max_build_mm[k];
		if (over)
			q->warnings[q->nwarnings++] =
				psprintf("too_large: %.1f x %.1f x %.1f mm, over the %s x %s x %s mm that %s takes",
						 mesh->size[0], mesh->size[1], mesh->size[2], mat->max_build_text[0],
						 mat->max_build_text[1], mat->max_build_text[2], mat->code);
	}
}

/* What a jeweller must look at before the price is binding. */
static void
quote_warnings(const MeshFacts *mesh, const AlxMaterial *mat, QuoteCalc *q)
{
	double		maxdim = Max(mesh->size[0], Max(mesh->size[1], mesh->size[2]));

	q->nwarnings = 0;
	if (!mesh->watertight || mesh->boundary_edges > 0)
		q->warnings[q->nwarnings++] = "open_mesh";
	if (mesh->nonmanifold_edges > 0)
		q->warnings[q->nwarnings++] = "nonmanifold_edges";
	if (mesh->shells > 1)
		q->warnings[q->nwarnings++] = "multiple_shells";
	if (q->vol == 0)
		q->warnings[q->nwarnings++] = "no_volume";
	if (!(maxdim >= ALX_UNIT_MIN_MM && maxdim <= ALX_UNIT_MAX_MM))
		q->warnings[q->nwarnings++] = "unit_suspect";
	castability_warnings(mesh, mat, q);
	q->needs_review = q->nwarnings > 0;
	/* degenerate triangles do not change volume or area: a note only */
	if (mesh->degenerate_triangles > 0)
		q->warnings[q->nwarnings++] = "degenerate_triangles";
}

/* Every term of the quote as a JSON object, so that it can be explained later. */
static Jsonb *
quote_breakdown(int64 mesh_id, const AlxPriceList *list, const AlxMaterial *mat,
				const MeshFacts *mesh, const QuoteOptions *opts, const QuoteCalc *q)
{
	int			e = q->e;
	JsonbPair	pairs[BK_NKEYS];
	JsonbValue	warning_vals[lengthof(q->warnings)];
	JsonbValue	breakdown;
	JsonbValue *arr;

	if (!bkey_ready)
		bkey_init();
	bk_int(pairs, BK_MESH_ID, mesh_id);
	bk_string(pairs, BK_MATERIAL, mat->code);
	bk_int(pairs, BK_VERSION, list->version);
	bk_string(pairs, BK_CURRENCY, list->currency);
	bk_numeric(pairs, BK_VOLUME, fx_numeric(q->vol, ALX_GEOM_SCALE, 0));
	bk_numeric(pairs, BK_AREA, fx_numeric(q->area, ALX_GEOM_SCALE, 0));
	bk_int(pairs, BK_TRIANGLES, mesh->triangles);
	bk_numeric(pairs, BK_DENSITY, mat->density_num);
	bk_numeric(pairs, BK_LOSS, mat->loss_num);
	bk_numeric(pairs, BK_NET_WEIGHT, fx_numeric(q->net_g, ALX_WEIGHT_SCALE, ALX_WEIGHT_SCALE));
	bk_numeric(pairs, BK_METAL_WEIGHT, q->metal_g_num);
	bk_numeric(pairs, BK_PRICE_PER_GRAM, mat->price_num);
	bk_numeric(pairs, BK_METAL_COST, q->metal_cost_num);
	bk_numeric(pairs, BK_LABOUR_BASE, list->labour_base_num);
	bk_int(pairs, BK_TIER_FROM, q->tier->from_triangles);
	bk_numeric(pairs, BK_COMPLEXITY, q->tier->charge_num);
	bk_int(pairs, BK_STONES, opts->stones);
	bk_numeric(pairs, BK_STONE_RATE, list->stone_setting_num);
	bk_numeric(pairs, BK_STONE_SETTING, fx_numeric(q->stone_exact, ALX_RATE_SCALE, e));
	bk_numeric(pairs, BK_LABOUR, q->labour_num);
	bk_numeric(pairs, BK_FINISHING_RATE, list->finishing_num);
	bk_numeric(pairs, BK_FINISHING, q->finishing_num);
	bk_numeric(pairs, BK_SUBTOTAL, fx_numeric(q->subtotal, e, e));
	bk_numeric(pairs, BK_MARGIN_PCT, list->margin_num);
	bk_numeric(pairs, BK_MARGIN, fx_numeric(q->margin, e, e));
	bk_numeric(pairs, BK_MINIMUM, list->minimum_num);
	bk_bool(pairs, BK_MINIMUM_APPLIED, q->minimum_applied);
	bk_numeric(pairs, BK_INCREMENT, list->increment_num);
	bk_string(pairs, BK_MODE, list->rounding_mode_name);
	bk_numeric(pairs, BK_ADJUSTMENT, fx_numeric(q->total - q->price, e, e));
	bk_numeric(pairs, BK_TOTAL, q->total_num);
	bk_bool(pairs, BK_NEEDS_REVIEW, q->needs_review);
	for (int i = 0; i < q->nwarnings; i++)
	{
		warning_vals[i].type = jbvString;
		warning_vals[i].val.string.val = (char *) q->warnings[i];
		warning_vals[i].val.string.len = strlen(q->warnings[i]);
	}
	arr = bk_slot(pairs, BK_WARNINGS);
	arr->type = jbvArray;
	arr->val.array.nElems = q->nwarnings;
	arr->val.array.elems = warning_vals;
	arr->val.array.rawScalar = false;
	breakdown.type = jbvObject;
	breakdown.val.object.nPairs = BK_NKEYS;
	breakdown.val.object.pairs = pairs;
	return JsonbValueToJsonb(&breakdown);
}

PG_FUNCTION_INFO_V1(alexandrite_price_quote);

/*
 * price_quote(mesh_id bigint, material text, options jsonb) RETURNS quote
 *
 * Never returns NULL: missing arguments, an unknown mesh or material, an
 * inactive material and invalid options are errors.
 */
Datum
alexandrite_price_quote(PG_FUNCTION_ARGS)
{
	int64		mesh_id;
	QuoteOptions opts;
	const AlxPriceList *list;
	const AlxMaterial *mat;
	MeshFacts	mesh;
	QuoteCalc	q;
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8] = {false};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("mesh_id must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("material must not be null")));
	mesh_id = PG_GETARG_INT64(0);
	parse_options(PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2), &opts);
	tupdesc = quote_tupdesc(fcinfo);

	AlxPricingCheckAccess();
	mat = quote_material(&list, opts.version, text_to_cstring(PG_GETARG_TEXT_PP(1)));
	fetch_mesh(mesh_id, &mesh);
	memset(&q, 0, sizeof(q));
	q.vol = geometry_milli(mesh.volume_mm3, mesh_id, "volume");
	q.area = geometry_milli(mesh.area_mm2, mesh_id, "surface area");
	quote_compute(list, mat, &mesh, &opts, &q);
	quote_warnings(&mesh, mat, &q);

	values[0] = NumericGetDatum(q.total_num);
	values[1] = CStringGetTextDatum(list->currency);
	values[2] = NumericGetDatum(q.metal_g_num);
	values[3] = NumericGetDatum(q.metal_cost_num);
	values[4] = NumericGetDatum(q.labour_num);
	values[5] = NumericGetDatum(q.finishing_num);
	values[6] = Int64GetDatum(list->version);
	values[7] = JsonbPGetDatum(quote_breakdown(mesh_id, list, mat, &mesh, &opts, &q));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
