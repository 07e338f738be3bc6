/*-------------------------------------------------------------------------
 *
 * pricelist.c
 *	  The per-backend price list cache: loading a version from
 *	  alexandrite.price_list_versions, invalidation, access checks.
 *
 * price_quote must not read the price list per call.  Each backend keeps
 * the current version (and a few older ones that a caller asked for by
 * number), together with the materials, in memory.  Statement triggers on
 * price_list_versions and materials send a relcache invalidation for the
 * table whenever it changes; our relcache callback then marks the cached
 * lists stale, and the next quote reloads.  Invalidations are transactional: other backends see
 * them once the change committed, and the writing backend sees its own at
 * the next command (and again at rollback, which reloads the old list).
 *
 * The current list is read with a fresh snapshot rather than the caller's
 * transaction snapshot, like a system catalog: a REPEATABLE READ
 * transaction that received the invalidation must not cache the version its
 * old snapshot still shows.
 *
 * All the SQL of the pricing code is in this file.
 *
 * IDENTIFICATION
 *	  src/pricing/pricelist.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "alexandrite.h"
#include "pricing/pricing.h"

/* explicitly requested older versions kept per backend */
#define ALX_OLD_LISTS 4

static bool callbacks_registered = false;
static uint64 inval_count = 0;	/* bumped by every relevant invalidation */

static AlxPriceList *current_list = NULL;
static bool current_valid = false;
static AlxPriceList *old_lists[ALX_OLD_LISTS];
static int	old_next = 0;

/* relation OIDs, resolved again after any invalidation */
static Oid	versions_relid = InvalidOid;
static Oid	materials_relid = InvalidOid;
static Oid	meshes_relid = InvalidOid;
static bool oids_valid = false;

/* the last user whose SELECT privileges were checked, while nothing changed */
static Oid	checked_user = InvalidOid;

/*
 * Relcache callback: a new price list version (or DDL on our tables, or a
 * cache reset) makes the cached state stale.  Only flags are set here: a
 * callback may run in the middle of a quote that still uses the list.
 */
static void
pricing_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == versions_relid || relid == materials_relid ||
		relid == meshes_relid)
	{
		current_valid = false;
		oids_valid = false;
		checked_user = InvalidOid;
		inval_count++;
		/*
		 * Materials are in every cached list; and the versions table may have
		 * been dropped and re-created: forget the older versions too.
		 */
		if (relid != meshes_relid)
		{
			for (int i = 0; i < ALX_OLD_LISTS; i++)
				if (old_lists[i] != NULL)
					old_lists[i]->version = -1; /* never matches again */
		}
	}
}

/* Role membership changed: privileges must be checked again. */
static void
pricing_authmem_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	checked_user = InvalidOid;
}

static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	AlxRegisterRelcacheCallback(pricing_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, pricing_authmem_callback, (Datum) 0);
	callbacks_registered = true;
}

/* Look up the OIDs of the tables the pricing code reads. */
static void
resolve_oids(void)
{
	Oid			nsp;

	if (oids_valid)
		return;
	nsp = get_namespace_oid(ALX_SCHEMA_NAME, false);
	versions_relid = get_relname_relid("price_list_versions", nsp);
	materials_relid = get_relname_relid("materials", nsp);
	meshes_relid = get_relname_relid("meshes", nsp);
	if (!OidIsValid(versions_relid) || !OidIsValid(materials_relid) || !OidIsValid(meshes_relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("alexandrite pricing tables are missing"),
				 errhint("Update the extension with ALTER EXTENSION alexandrite UPDATE.")));
	oids_valid = true;
}

/* A number that changes whenever the tables pricing reads may have changed. */
uint64
AlxPricingGeneration(void)
{
	return inval_count;
}

/* The OID of alexandrite.meshes. */
Oid
AlxPricingMeshesRelid(void)
{
	register_callbacks();
	resolve_oids();
	return meshes_relid;
}

/*
 * price_quote reads alexandrite.meshes and the price list on behalf of the
 * caller, so the caller needs SELECT on both tables.  The answer is kept
 * until the user changes or an invalidation (GRANT and REVOKE send one for
 * the table; role membership changes reach the syscache callback) arrives.
 */
void
AlxPricingCheckAccess(void)
{
	Oid			user = GetUserId();

	register_callbacks();
	resolve_oids();
	if (user == checked_user)
		return;
	if (pg_class_aclcheck(meshes_relid, user, ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", "meshes"),
				 errdetail("price_quote reads alexandrite.meshes, alexandrite.materials and alexandrite.price_list_versions.")));
	if (pg_class_aclcheck(versions_relid, user, ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", "price_list_versions"),
				 errdetail("price_quote reads alexandrite.meshes, alexandrite.materials and alexandrite.price_list_versions.")));
	if (pg_class_aclcheck(materials_relid, user, ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", "materials"),
				 errdetail("price_quote reads alexandrite.meshes, alexandrite.materials and alexandrite.price_list_versions.")));
	checked_user = user;
}

/*
 * Parse the text of a finite numeric into an integer count of
 * 10^-scale units; raise an error if it has more decimals or is too large.
 */
static int64
numeric_to_fixed(Numeric num, int scale, const char *what)
{
	char	   *s;
	char	   *p;
	int128		v = 0;
	int			decimals = -1;
	bool		neg = false;

	if (numeric_is_nan(num) || numeric_is_inf(num))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("price list figure \"%s\" is not finite", what)));
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));
	p = s;
	if (*p == '-')
	{
		neg = true;
		p++;
	}
	for (; *p; p++)
	{
		if (*p == '.')
		{
			decimals = 0;
			continue;
		}
		if (*p < '0' || *p > '9')
			elog(ERROR, "unexpected numeric output \"%s\"", s);
		if (decimals >= 0)
		{
			decimals++;
			if (decimals > scale)
			{
				if (*p == '0')
					continue;	/* trailing zeros beyond the scale are harmless */
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("price list figure \"%s\" has more than %d decimals: %s",
								what, scale, s)));
			}
		}
		v = v * 10 + (*p - '0');
		if (v > (int128) PG_INT64_MAX / 1000)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("price list figure \"%s\" is out of range: %s", what, s)));
	}
	if (decimals < 0)
		decimals = 0;
	for (; decimals < scale; decimals++)
		v *= 10;
	if (v > (int128) PG_INT64_MAX / 1000)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("price list figure \"%s\" is out of range: %s", what, s)));
	pfree(s);
	return (int64) (neg ? -v : v);
}

/* A numeric copied into the list's context, and its fixed-point value. */
static Numeric
get_numeric(HeapTuple tup, TupleDesc desc, int col, const char *what, int64 *fixed)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	Numeric		n;

	/* materials is read by no view: a DBA may retype its columns */
	AlxCheckColumnType("a price list statement's result", what, SPI_gettypeid(desc, col), NUMERICOID);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("price list figure \"%s\" is null", what)));
	n = DatumGetNumericCopy(d);
	*fixed = numeric_to_fixed(n, ALX_RATE_SCALE, what);
	if (*fixed < 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("price list figure \"%s\" is negative", what)));
	return n;
}

static int
material_cmp(const void *a, const void *b)
{
	return strcmp(((const AlxMaterial *) a)->code, ((const AlxMaterial *) b)->code);
}

/* The header of a price list version into list (SPI connected); false if missing. */
static bool
read_list_header(AlxPriceList *list, int64 version)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	char		nulls[1];
	int			ret;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *mode;
	MemoryContext old;

	args[0] = Int64GetDatum(version);
	nulls[0] = version > 0 ? ' ' : 'n';
	ret = SPI_execute_with_args(
		"SELECT v.version, v.currency, v.currency_exponent, v.labour_base,"
		" v.finishing_per_cm2, v.stone_setting_per_stone, v.margin_pct, v.minimum_price,"
		" v.rounding_increment, v.rounding_mode"
		" FROM alexandrite.price_list_versions v"
		" WHERE v.version OPERATOR(pg_catalog.=) COALESCE($1,"
		"   (SELECT pg_catalog.max(w.version) FROM alexandrite.price_list_versions w))",
		1, argtypes, args, nulls, true, 2);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the price list: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	old = MemoryContextSwitchTo(list->cxt);
	list->version = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	strlcpy(list->currency, SPI_getvalue(tup, desc, 2), sizeof(list->currency));
	list->exponent = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	if (list->exponent < 0 || list->exponent > 4)
		elog(ERROR, "currency exponent %d out of range", list->exponent);
	list->labour_base_num = get_numeric(tup, desc, 4, "labour_base", &list->labour_base);
	list->finishing_num = get_numeric(tup, desc, 5, "finishing_per_cm2", &list->finishing_per_cm2);
	list->stone_setting_num = get_numeric(tup, desc, 6, "stone_setting_per_stone", &list->stone_setting);
	list->margin_num = get_numeric(tup, desc, 7, "margin_pct", &list->margin_pct);
	list->minimum_num = get_numeric(tup, desc, 8, "minimum_price", &list->minimum_price);
	list->increment_num = get_numeric(tup, desc, 9, "rounding_increment", &list->rounding_increment);
	mode = SPI_getvalue(tup, desc, 10);
	if (strcmp(mode, "half_up") == 0)
		list->rounding_mode = ALX_ROUND_HALF_UP, list->rounding_mode_name = "half_up";
	else if (strcmp(mode, "up") == 0)
		list->rounding_mode = ALX_ROUND_UP, list->rounding_mode_name = "up";
	else if (strcmp(mode, "down") == 0)
		list->rounding_mode = ALX_ROUND_DOWN, list->rounding_mode_name = "down";
	else
		elog(ERROR, "unexpected rounding mode \"%s\"", mode);
	if (list->rounding_increment <= 0)
		elog(ERROR, "rounding increment must be positive");
	MemoryContextSwitchTo(old);
	return true;
}

/* The complexity tiers of list->version, checked in order (SPI connected). */
static void
read_list_tiers(AlxPriceList *list)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	int			ret;
	TupleDesc	desc;
	bool		isnull;
	MemoryContext old;

	args[0] = Int64GetDatum(list->version);
	ret = SPI_execute_with_args(
		"SELECT t.from_triangles, t.charge"
		" FROM alexandrite.price_list_versions v,"
		"      pg_catalog.jsonb_to_recordset(v.complexity_tiers) AS t(from_triangles bigint, charge numeric)"
		" WHERE v.version OPERATOR(pg_catalog.=) $1",
		1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the complexity tiers: %s", SPI_result_code_string(ret));
	desc = SPI_tuptable->tupdesc;
	old = MemoryContextSwitchTo(list->cxt);
	list->ntiers = (int) SPI_processed;
	list->tiers = palloc0(sizeof(AlxTier) * Max(list->ntiers, 1));
	for (int i = 0; i < list->ntiers; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		Datum		d = SPI_getbinval(tup, desc, 1, &isnull);

		list->tiers[i].from_triangles = isnull ? -1 : DatumGetInt64(d);
		list->tiers[i].charge_num = get_numeric(tup, desc, 2, "complexity_tiers.charge",
												&list->tiers[i].charge);
		/* the array order is the tier order: validated on the way in */
		if (list->tiers[i].from_triangles < 0 ||
			(i == 0 && list->tiers[i].from_triangles != 0) ||
			(i > 0 && list->tiers[i].from_triangles <= list->tiers[i - 1].from_triangles))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("complexity tiers of price list version " INT64_FORMAT " are invalid",
							list->version)));
	}
	if (list->ntiers == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("price list version " INT64_FORMAT " has no complexity tiers",
						list->version)));
	MemoryContextSwitchTo(old);
}

/* A nullable limit column of materials: its text and value, or NULL / NaN. */
static char *
get_limit(HeapTuple tup, TupleDesc desc, int col, double *value)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (SPI_gettypeid(desc, col) != NUMERICOID)	/* (SPI_fname only for the error) */
		AlxCheckColumnType("alexandrite.materials", SPI_fname(desc, col), SPI_gettypeid(desc, col),
						   NUMERICOID);
	*value = get_float8_nan();
	if (isnull)
		return NULL;
	*value = DatumGetFloat8(DirectFunctionCall1(numeric_float8, d));
	return SPI_getvalue(tup, desc, col);
}

/*
 * The castability limits of a material: the thinnest wall, and the build
 * size sorted ascending (a piece may be turned to fit); any missing extent
 * means no size limit.
 */
static void
read_limits(HeapTuple tup, TupleDesc desc, AlxMaterial *m)
{
	int			order[3] = {0, 1, 2};
	char	   *text[3];
	double		v[3];
	bool		all = true;

	m->min_wall_text = get_limit(tup, desc, 6, &m->min_wall_mm);
	for (int k = 0; k < 3; k++)
	{
		text[k] = get_limit(tup, desc, 7 + k, &v[k]);
		all &= text[k] != NULL;
	}
	/* three elements: a tiny insertion sort */
	for (int i = 1; i < 3; i++)
		for (int j = i; j > 0 && v[order[j]] < v[order[j - 1]]; j--)
		{
			int			t = order[j];

			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	for (int k = 0; k < 3; k++)
	{
		m->max_build_text[k] = all ? text[order[k]] : NULL;
		m->max_build_mm[k] = all ? v[order[k]] : get_float8_nan();
	}
}

/* The materials as they are now (they are not versioned), sorted by code. */
static void
read_materials(AlxPriceList *list)
{
	int			ret;
	TupleDesc	desc;
	bool		isnull;
	MemoryContext old;

	ret = SPI_execute("SELECT m.code, m.active, m.density_g_cm3, m.price_per_gram, m.casting_loss_pct,"
					  " m.min_wall_mm, m.max_build_x_mm, m.max_build_y_mm, m.max_build_z_mm"
					  " FROM alexandrite.materials m", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the materials: %s",
			 SPI_result_code_string(ret));
	desc = SPI_tuptable->tupdesc;
	old = MemoryContextSwitchTo(list->cxt);
	list->nmaterials = (int) SPI_processed;
	list->materials = palloc0(sizeof(AlxMaterial) * Max(list->nmaterials, 1));
	for (int i = 0; i < list->nmaterials; i++)
	{
		AlxMaterial *m = &list->materials[i];
		HeapTuple	tup = SPI_tuptable->vals[i];
		Datum		d;

		m->code = SPI_getvalue(tup, desc, 1);
		d = SPI_getbinval(tup, desc, 2, &isnull);
		m->active = !isnull && DatumGetBool(d);
		m->density_num = get_numeric(tup, desc, 3, "density_g_cm3", &m->density);
		m->price_num = get_numeric(tup, desc, 4, "price_per_gram", &m->price_per_gram);
		m->loss_num = get_numeric(tup, desc, 5, "casting_loss_pct", &m->loss_pct);
		read_limits(tup, desc, m);
	}
	if (list->nmaterials > 1)
		qsort(list->materials, list->nmaterials, sizeof(AlxMaterial), material_cmp);
	MemoryContextSwitchTo(old);
}

/*
 * Read one version (version > 0) or the newest one (version 0) from the
 * tables.  Returns NULL if that version does not exist.  Runs as the caller
 * (whose SELECT privilege was checked) under a fresh snapshot.
 */
static AlxPriceList *
load_price_list(int64 version)
{
	MemoryContext cxt;
	AlxPriceList *list;

	/* under the caller's context until complete, so that an error frees it */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "alexandrite price list",
								ALLOCSET_SMALL_SIZES);
	list = MemoryContextAllocZero(cxt, sizeof(AlxPriceList));
	list->cxt = cxt;

	PushActiveSnapshot(GetLatestSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (!read_list_header(list, version))
	{
		SPI_finish();
		PopActiveSnapshot();
		MemoryContextDelete(cxt);
		if (version > 0)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("there is no price list"),
				 errhint("alexandrite.price_list_versions is empty; reinstall the extension or restore it.")));
	}
	read_list_tiers(list);
	read_materials(list);
	SPI_finish();
	PopActiveSnapshot();
	MemoryContextSetParent(cxt, TopMemoryContext);
	return list;
}

/*
 * The price list to quote with: the current one (version 0) or the given
 * version; NULL if that version does not exist.  The result stays valid
 * until the next call of this function.
 */
const AlxPriceList *
AlxPriceListGet(int64 version)
{
	register_callbacks();

	if (version > 0)
	{
		AlxPriceList *list;

		if (current_valid && current_list != NULL && current_list->version == version)
			return current_list;
		for (int i = 0; i < ALX_OLD_LISTS; i++)
			if (old_lists[i] != NULL && old_lists[i]->version == version)
				return old_lists[i];
		resolve_oids();
		list = load_price_list(version);
		if (list == NULL)
			return NULL;
		/* versions are immutable: keep it, replacing the oldest entry */
		if (old_lists[old_next] != NULL)
			MemoryContextDelete(old_lists[old_next]->cxt);
		old_lists[old_next] = list;
		old_next = (old_next + 1) % ALX_OLD_LISTS;
		return list;
	}

	if (current_valid && current_list != NULL)
		return current_list;

	/*
	 * Load until no invalidation arrived while loading (the loader opens
	 * relations, which processes pending invalidations).
	 */
	for (int attempt = 0;; attempt++)
	{
		uint64		before;
		AlxPriceList *list;

		resolve_oids();
		before = inval_count;
		list = load_price_list(0);
		if (current_list != NULL)
			MemoryContextDelete(current_list->cxt);
		current_list = list;
		if (inval_count == before || attempt >= 10)
		{
			current_valid = (inval_count == before);
			break;
		}
	}
	return current_list;
}

/* The material with this code in a price list, or NULL. */
const AlxMaterial *
AlxPriceListMaterial(const AlxPriceList *list, const char *code)
{
	int			lo = 0;
	int			hi = list->nmaterials - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = strcmp(code, list->materials[mid].code);

		if (c == 0)
			return &list->materials[mid];
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}

PG_FUNCTION_INFO_V1(alexandrite_price_list_invalidate);

/*
 * Statement trigger on price_list_versions: every backend (this one at its
 * next command, the others once this transaction commits) reloads the list.
 */
Datum
alexandrite_price_list_invalidate(PG_FUNCTION_ARGS)
{
	return AlxInvalidateTrigger(fcinfo, "price_list_invalidate");
}

PG_FUNCTION_INFO_V1(alexandrite_price_list_head);

/*
 * The newest price list version visible to a fresh snapshot (committed, or
 * written by this transaction), whatever the transaction's own snapshot.
 */
Datum
alexandrite_price_list_head(PG_FUNCTION_ARGS)
{
	int			ret;
	bool		isnull;
	Datum		d;
	int64		head;

	PushActiveSnapshot(GetLatestSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute("SELECT pg_catalog.max(v.version) FROM alexandrite.price_list_versions v",
					  true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the price list head: %s", SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	head = isnull ? 0 : DatumGetInt64(d);
	SPI_finish();
	PopActiveSnapshot();
	PG_RETURN_INT64(head);
}

/* key of the price list writers' lock: 'ALXP' */
#define ALX_PRICE_LIST_LOCK_KEY	0x414C5850

PG_FUNCTION_INFO_V1(alexandrite_price_list_lock);

/*
 * price_list_lock(): serialises the writers of price list versions until
 * the end of the transaction, on a lock of the library's own
 * (AlxLockInternal) that no role can take with pg_advisory_lock() to hold
 * off the DBA's price changes.  LOCK TABLE would need UPDATE rights on a
 * table nobody may update.
 */
Datum
alexandrite_price_list_lock(PG_FUNCTION_ARGS)
{
	(void) AlxLockInternal(ALX_LOCK_PRICE_LIST, ALX_PRICE_LIST_LOCK_KEY, 0, true);
	PG_RETURN_VOID();
}
