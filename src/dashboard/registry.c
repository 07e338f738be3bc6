/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The registry of dashboards: reading rows back into validated
 *	  definitions, and writing them.
 *
 * A registry row is a declaration only (names, canonical expressions,
 * horizons).  Loading one always goes through AlxDashDefine() again.
 *
 * The registry is read with the latest snapshot, like a catalog: a
 * REPEATABLE READ writer whose snapshot predates a create_dashboard() that
 * has committed since must still feed the new dashboard (the base table's
 * relcache invalidation tells it to reload).  It is read without privilege
 * checks: any writer of a base table maintains its dashboards.
 *
 * Writes go through SPI as the extension owner (the caller switches).
 *
 * IDENTIFICATION
 *	  src/dashboard/registry.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "alexandrite.h"
#include "dashboard/dashboard.h"

/* The attribute numbers of the registry's columns. */
typedef struct AlxRegAtts
{
	AttrNumber	id,
				name,
				base,
				key_names,
				key_exprs,
				count_name,
				sum_names,
				sum_exprs,
				filter,
				due,
				horizons,
				horizon_names,
				builtin;
} AlxRegAtts;

static Oid
alx_registry_relid(void)
{
	Oid			nsp = get_namespace_oid(ALX_SCHEMA_NAME, true);

	return OidIsValid(nsp) ? get_relname_relid("dashboards", nsp) : InvalidOid;
}

/* a column of the registry, of the type it is decoded as (no view reads most of them) */
static AttrNumber
alx_att(Oid relid, const char *col, Oid type)
{
	AttrNumber	a = get_attnum(relid, col);

	if (a == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the dashboard registry has no column \"%s\"", col),
				 errhint("The library and the SQL objects of extension \"%s\" are of different versions: run ALTER EXTENSION %s UPDATE.",
						 ALX_EXTENSION_NAME, ALX_EXTENSION_NAME)));
	AlxCheckColumnType("alexandrite.dashboards", col, get_atttype(relid, a), type);
	return a;
}

/* text[] as C strings (NULL entries stay NULL) */
static char **
alx_text_array(Datum d, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **out;

	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	out = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		out[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	return out;
}

static char *
alx_text_or_null(HeapTuple tup, AttrNumber att, TupleDesc desc)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, att, desc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* One registry row, validated again. */
static AlxDashDef *
alx_row_to_def(HeapTuple tup, TupleDesc desc, const AlxRegAtts *a)
{
	AlxDashArgs args;
	AlxDashDef *def;
	bool		isnull;
	bool		bad = false;
	int			n;
	Datum	   *elems;
	bool	   *nulls;

	memset(&args, 0, sizeof(args));
	args.name = alx_text_or_null(tup, a->name, desc);
	args.base_relid = DatumGetObjectId(heap_getattr(tup, a->base, desc, &isnull));
	args.key_names = alx_text_array(heap_getattr(tup, a->key_names, desc, &isnull), &args.nkeys);
	args.key_exprs = alx_text_array(heap_getattr(tup, a->key_exprs, desc, &isnull), &n);
	bad |= n != args.nkeys;
	args.count_name = alx_text_or_null(tup, a->count_name, desc);
	args.sum_names = alx_text_array(heap_getattr(tup, a->sum_names, desc, &isnull), &args.nsums);
	args.sum_exprs = alx_text_array(heap_getattr(tup, a->sum_exprs, desc, &isnull), &n);
	bad |= n != args.nsums;
	args.filter = alx_text_or_null(tup, a->filter, desc);
	args.due = alx_text_or_null(tup, a->due, desc);
	args.horizon_names = alx_text_array(heap_getattr(tup, a->horizon_names, desc, &isnull), &args.nhorizons);
	deconstruct_array(DatumGetArrayTypeP(heap_getattr(tup, a->horizons, desc, &isnull)),
					  INTERVALOID, sizeof(Interval), false, TYPALIGN_DOUBLE, &elems, &nulls, &n);
	bad |= n != args.nhorizons;
	args.horizons = palloc(sizeof(Interval) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bad |= nulls[i];
		if (!nulls[i])
			args.horizons[i] = *DatumGetIntervalP(elems[i]);
	}
	for (int i = 0; !bad && i < args.nkeys; i++)
		bad |= args.key_names[i] == NULL || args.key_exprs[i] == NULL;
	for (int i = 0; !bad && i < args.nsums; i++)
		bad |= args.sum_names[i] == NULL || args.sum_exprs[i] == NULL;
	for (int i = 0; !bad && i < args.nhorizons; i++)
		bad |= args.horizon_names[i] == NULL;
	if (bad || args.name == NULL || args.count_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the registry row of dashboard \"%s\" is malformed", args.name ? args.name : "(null)"),
				 errhint("Drop the dashboard and declare it again.")));

	def = AlxDashDefine(&args);
	def->id = DatumGetInt32(heap_getattr(tup, a->id, desc, &isnull));
	def->builtin = DatumGetBool(heap_getattr(tup, a->builtin, desc, &isnull));
	return def;
}

static int
alx_def_cmp(const ListCell *a, const ListCell *b)
{
	int32		x = ((AlxDashDef *) lfirst(a))->id;
	int32		y = ((AlxDashDef *) lfirst(b))->id;

	return (x > y) - (x < y);
}

static void
alx_load_errcontext(void *arg)
{
	errcontext("loading dashboard \"%s\"", (const char *) arg);
}

/*
 * The validated definitions of the dashboards over one table (all when
 * base_relid is invalid, or the one named), in id order.
 */
static List *
alx_load(Oid base_relid, const char *only_name)
{
	Oid			regrelid = alx_registry_relid();
	Relation	reg;
	TupleDesc	desc;
	Snapshot	snap;
	TableScanDesc scan;
	HeapTuple	tup;
	AlxRegAtts	a;
	List	   *defs = NIL;

	if (!OidIsValid(regrelid))
		return NIL;
	a.id = alx_att(regrelid, "id", INT4OID);
	a.name = alx_att(regrelid, "name", TEXTOID);
	a.base = alx_att(regrelid, "base_table", REGCLASSOID);
	a.key_names = alx_att(regrelid, "key_names", TEXTARRAYOID);
	a.key_exprs = alx_att(regrelid, "key_exprs", TEXTARRAYOID);
	a.count_name = alx_att(regrelid, "count_name", TEXTOID);
	a.sum_names = alx_att(regrelid, "sum_names", TEXTARRAYOID);
	a.sum_exprs = alx_att(regrelid, "sum_exprs", TEXTARRAYOID);
	a.filter = alx_att(regrelid, "filter", TEXTOID);
	a.due = alx_att(regrelid, "due_expr", TEXTOID);
	a.horizons = alx_att(regrelid, "horizons", INTERVALARRAYOID);
	a.horizon_names = alx_att(regrelid, "horizon_names", TEXTARRAYOID);
	a.builtin = alx_att(regrelid, "builtin", BOOLOID);

	reg = table_open(regrelid, AccessShareLock);
	desc = RelationGetDescr(reg);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(reg, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Oid			base = DatumGetObjectId(heap_getattr(tup, a.base, desc, &isnull));
		char	   *name;
		ErrorContextCallback errcb;

		if (OidIsValid(base_relid) && base != base_relid)
			continue;
		name = alx_text_or_null(tup, a.name, desc);
		if (only_name != NULL && (name == NULL || strcmp(name, only_name) != 0))
			continue;
		/* a table dropped with CASCADE took the read view, left the declaration */
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(base)))
		{
			if (only_name != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_TABLE),
						 errmsg("the table of dashboard \"%s\" no longer exists", name),
						 errhint("Drop it: SELECT alexandrite.drop_dashboard('%s').", name)));
			ereport(WARNING,
					(errmsg("dashboard \"%s\" is skipped: its table no longer exists", name ? name : "(null)"),
					 errhint("Drop it with alexandrite.drop_dashboard().")));
			continue;
		}
		errcb.callback = alx_load_errcontext;
		errcb.arg = name ? name : "(null)";
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;
		defs = lappend(defs, alx_row_to_def(tup, desc, &a));
		error_context_stack = errcb.previous;
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(reg, AccessShareLock);
	list_sort(defs, alx_def_cmp);
	return defs;
}

/*
 * true while the SQL objects are still those of 1.1 (this library installed,
 * ALTER EXTENSION UPDATE not run yet): the registry still has fold_sql.
 */
bool
AlxDashLegacySchema(void)
{
	Oid			regrelid = alx_registry_relid();

	return OidIsValid(regrelid) && get_attnum(regrelid, "fold_sql") != InvalidAttrNumber;
}

/* The dashboards over one table (all when base_relid is invalid), in id order. */
List *
AlxDashLoad(Oid base_relid)
{
	return alx_load(base_relid, NULL);
}

/* One dashboard by name; NULL or an error (42704) when there is none. */
AlxDashDef *
AlxDashLoadByName(const char *name, bool missing_ok)
{
	List	   *defs = alx_load(InvalidOid, name);

	if (defs == NIL && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("dashboard \"%s\" does not exist", name)));
	return defs == NIL ? NULL : (AlxDashDef *) linitial(defs);
}

/* SQL arrays of a definition's parts */
static Datum
alx_cstring_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
alx_interval_array(const AlxDashDef *def)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(def->nhorizons, 1));

	for (int i = 0; i < def->nhorizons; i++)
		d[i] = IntervalPGetDatum(&def->horizons[i]);
	return PointerGetDatum(construct_array(d, def->nhorizons, INTERVALOID, sizeof(Interval),
										   false, TYPALIGN_DOUBLE));
}

/*
 * Inserts the registry row and the state row of a new dashboard (SPI
 * connected, as the owner); returns its id.  A dashboard declared by the
 * extension's own script is built in.
 */
int32
AlxDashRegister(AlxDashDef *def)
{
	Oid			types[12] = {TEXTOID, REGCLASSOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTOID, TEXTOID, INTERVALARRAYOID, TEXTARRAYOID, BOOLOID};
	Datum		values[12];
	char		nulls[12];
	bool		isnull;
	int			ret;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(def->name);
	values[1] = ObjectIdGetDatum(def->base_relid);
	values[2] = alx_cstring_array(def->key_names, def->nkeys);
	values[3] = alx_cstring_array(def->key_sql, def->nkeys);
	values[4] = CStringGetTextDatum(def->count_name);
	values[5] = alx_cstring_array(def->sum_names, def->nsums);
	values[6] = alx_cstring_array(def->sum_sql, def->nsums);
	values[7] = def->filter_sql ? CStringGetTextDatum(def->filter_sql) : (Datum) 0;
	nulls[7] = def->filter_sql ? ' ' : 'n';
	values[8] = def->due_sql ? CStringGetTextDatum(def->due_sql) : (Datum) 0;
	nulls[8] = def->due_sql ? ' ' : 'n';
	values[9] = alx_interval_array(def);
	values[10] = alx_cstring_array(def->horizon_names, def->nhorizons);
	def->builtin = creating_extension;
	values[11] = BoolGetDatum(def->builtin);

	ret = SPI_execute_with_args("INSERT INTO alexandrite.dashboards (name, base_table, key_names, key_exprs, "
								"count_name, sum_names, sum_exprs, filter, due_expr, horizons, horizon_names, builtin) "
								"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
								12, types, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not register dashboard \"%s\": %s", def->name, SPI_result_code_string(ret));
	def->id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return def->id;
}

/* Rewrites a registry row's expressions in canonical form (rebuild, upgrade). */
void
AlxDashUpdateRegistry(const AlxDashDef *def)
{
	Oid			types[5] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			ret;

	values[0] = Int32GetDatum(def->id);
	values[1] = alx_cstring_array(def->key_sql, def->nkeys);
	values[2] = alx_cstring_array(def->sum_sql, def->nsums);
	values[3] = def->filter_sql ? CStringGetTextDatum(def->filter_sql) : (Datum) 0;
	nulls[3] = def->filter_sql ? ' ' : 'n';
	values[4] = def->due_sql ? CStringGetTextDatum(def->due_sql) : (Datum) 0;
	nulls[4] = def->due_sql ? ' ' : 'n';
	ret = SPI_execute_with_args("UPDATE alexandrite.dashboards SET key_exprs = $2, sum_exprs = $3, "
								"filter = $4, due_expr = $5 WHERE id OPERATOR(pg_catalog.=) $1 "
								"AND (key_exprs, sum_exprs, filter, due_expr) IS DISTINCT FROM ($2, $3, $4, $5)",
								5, types, values, nulls, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not update dashboard \"%s\": %s", def->name, SPI_result_code_string(ret));
}

/* Deletes a registry row (its state row goes with it). */
void
AlxDashUnregister(const AlxDashDef *def)
{
	Oid			type = INT4OID;
	Datum		value = Int32GetDatum(def->id);
	int			ret;

	ret = SPI_execute_with_args("DELETE FROM alexandrite.dashboards WHERE id OPERATOR(pg_catalog.=) $1",
								1, &type, &value, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not delete dashboard \"%s\": %s", def->name, SPI_result_code_string(ret));
}

/*
 * The caller (before any switch to the owner) may read what the dashboard
 * counts: SELECT on the base table, or on every column its expressions read.
 */
void
AlxDashCheckReadable(const AlxDashDef *def)
{
	Oid			user = GetUserId();
	int			att = -1;

	if (pg_namespace_aclcheck(get_rel_namespace(def->base_relid), user, ACL_USAGE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for schema %s", get_namespace_name(get_rel_namespace(def->base_relid)))));
	/* a dashboard counts every row, also those the policies hide */
	if (check_enable_rls(def->base_relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row-level security applies to you on table %s", get_rel_name(def->base_relid)),
				 errdetail("Dashboard \"%s\" counts every row of that table, also the rows its policies hide from you.",
						   def->name),
				 errhint("Its owner, a superuser or a role with BYPASSRLS can manage the dashboard.")));
	if (pg_class_aclcheck(def->base_relid, user, ACL_SELECT) == ACLCHECK_OK)
		return;
	while ((att = bms_next_member(def->attnos, att)) >= 0)
		if (pg_attribute_aclcheck(def->base_relid, att, user, ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", get_rel_name(def->base_relid)),
					 errdetail("Dashboard \"%s\" counts rows of that table; its caller must be able to read them.",
							   def->name)));
}

/*
 * Locks a base table against writers: for a partitioned table, every
 * partition too (rows written straight into a partition do not lock the
 * parent, and they are captured).
 */
void
AlxDashLockBase(Oid relid, LOCKMODE mode)
{
	LockRelationOid(relid, mode);
	if (get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
		(void) find_all_inheritors(relid, mode, NULL);
}

/*
 * Operations that read the base table after locking it need a snapshot
 * taken after the lock: READ COMMITTED.
 */
void
AlxDashRequireReadCommitted(const char *what)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("%s must run in a READ COMMITTED transaction", what),
				 errdetail("It reads the base table after locking it, which needs a snapshot taken after the lock; the snapshot of this transaction may miss rows committed before the lock.")));
}

/* The owner switch, search_path pinned and SPI connected, around generated statements. */
void
AlxDashScopeEnter(AlxDashScope *s)
{
	AlxBecomeOwner(&s->save);
	s->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
AlxDashScopeLeave(AlxDashScope *s)
{
	SPI_finish();
	AtEOXact_GUC(true, s->nestlevel);
	AlxRestoreUser(&s->save);
}
