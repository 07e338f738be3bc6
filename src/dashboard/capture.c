/*-------------------------------------------------------------------------
 *
 * capture.c
 *	  Dashboard capture: the statement-level AFTER trigger that turns the
 *	  transition tables of a write into signed, pre-aggregated deltas.
 *
 * One trigger function serves every dashboard declared over a table.  Per
 * statement it reads the OLD and NEW transition tables once, evaluates each
 * dashboard's filter and group keys (compiled from its definition view,
 * alexandrite.dashboard_<name>_def), sums -1/+1 and the measures per group
 * in a hash table, drops the groups whose net change is zero (an UPDATE that
 * does not touch a dashboard's keys or measures writes nothing) and appends
 * one heap tuple per remaining group to the dashboard's delta table.
 *
 * Writers therefore only ever insert: no shared counter row, no lock queue,
 * no deadlock.  The deltas are ordinary tuples of the writer's
 * (sub)transaction, so savepoint rollbacks and aborts undo them with the
 * base rows.
 *
 * The compiled definitions are cached per backend and per base table, and
 * dropped on a relcache invalidation of that table (create_dashboard and
 * drop_dashboard send one).
 *
 * IDENTIFICATION
 *	  src/dashboard/capture.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteHandler.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "alexandrite.h"
#include "dashboard/dashboard.h"

/* A base-table column a compiled expression reads, checked per statement. */
typedef struct AlxDashVar
{
	AttrNumber	attno;
	Oid			atttypid;
} AlxDashVar;

/* One dashboard, compiled for the capture trigger. */
typedef struct AlxDashDef
{
	int32		id;
	char	   *name;
	Oid			summary_relid;
	Oid			delta_relid;
	int			nkeys;
	int			nsums;
	List	   *keys;			/* planned key expressions */
	List	   *sums;			/* planned measure expressions (numeric) */
	Expr	   *due;			/* planned due expression (timestamptz), or NULL */
	List	   *quals;			/* planned filter, implicit AND */
	int16	   *typlen;			/* of each key */
	bool	   *typbyval;
	int			nvars;
	AlxDashVar *vars;
} AlxDashDef;

/* The dashboards of one base table. */
typedef struct AlxDashCacheEntry
{
	Oid			relid;			/* hash key */
	bool		valid;
	MemoryContext cxt;
	int			ndash;
	AlxDashDef *dash;
} AlxDashCacheEntry;

/* A group key: its binary image, hashed. */
typedef struct AlxGroupKey
{
	uint32		hash;
	int			len;
	char	   *data;
} AlxGroupKey;

typedef struct AlxGroup
{
	AlxGroupKey key;			/* hash key */
	Datum	   *vals;
	bool	   *nulls;
	Datum		due_bucket;
	bool		due_null;
	int64		cnt;
	Datum	   *sums;
} AlxGroup;

/* Per statement and dashboard: its executable expressions and groups. */
typedef struct AlxDashRun
{
	AlxDashDef *def;
	List	   *keystates;
	List	   *sumstates;
	ExprState  *duestate;
	ExprState  *qual;
	HTAB	   *groups;
} AlxDashRun;

static HTAB *alx_dash_cache = NULL;
static int	alx_capture_depth = 0;

PG_FUNCTION_INFO_V1(alexandrite_dashboard_capture);
PG_FUNCTION_INFO_V1(alexandrite_dashboard_check);
PG_FUNCTION_INFO_V1(alexandrite_dashboard_invalidate);

/* Forget the dashboards of a table (or of all tables) on relcache invalidation. */
static void
alx_dash_inval_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	AlxDashCacheEntry *entry;

	if (alx_dash_cache == NULL)
		return;
	hash_seq_init(&status, alx_dash_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (relid == InvalidOid || entry->relid == relid)
			entry->valid = false;
	}
}

static Oid
alx_dash_registry_relid(bool missing_ok)
{
	Oid			nsp = get_namespace_oid(ALX_SCHEMA_NAME, missing_ok);

	if (!OidIsValid(nsp))
		return InvalidOid;
	return get_relname_relid("dashboards", nsp);
}

/* Collect the Vars of an expression tree. */
static bool
alx_collect_vars_walker(Node *node, List **vars)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var))
	{
		*vars = lappend(*vars, node);
		return false;
	}
	return expression_tree_walker(node, alx_collect_vars_walker, (void *) vars);
}

/*
 * Compile one dashboard from its definition view: the view's target list is
 * the keys followed by the measures, its WHERE clause the filter.  Raises an
 * error for anything the capture trigger could not maintain exactly.
 */
static void
alx_dash_compile(AlxDashDef *def, Oid base_relid, Oid def_view, int nkeys, int nsums, bool has_due)
{
	Relation	vrel;
	Query	   *query;
	RangeTblRef *rtr;
	Index		rtindex;
	RangeTblEntry *rte;
	List	   *allexprs = NIL;
	List	   *vars = NIL;
	ListCell   *lc;
	int			i;
	Relation	drel;
	TupleDesc	dd;

	vrel = table_open(def_view, AccessShareLock);
	if (vrel->rd_rel->relkind != RELKIND_VIEW)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("definition of dashboard \"%s\" is not a view", def->name)));
	query = copyObject(get_view_query(vrel));
	table_close(vrel, AccessShareLock);

	if (query->commandType != CMD_SELECT || query->hasAggs || query->hasWindowFuncs ||
		query->hasTargetSRFs || query->hasSubLinks || query->hasDistinctOn ||
		query->hasRecursive || query->hasModifyingCTE || query->hasForUpdate ||
		query->cteList != NIL || query->groupClause != NIL || query->groupingSets != NIL ||
		query->havingQual != NULL || query->distinctClause != NIL ||
		query->sortClause != NIL || query->limitCount != NULL ||
		query->limitOffset != NULL || query->setOperations != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("dashboard \"%s\" cannot be maintained incrementally", def->name),
				 errdetail("Group keys, measures and filter must be plain row expressions: no aggregates, window functions, set-returning functions or subqueries.")));

	if (list_length(query->jointree->fromlist) != 1 ||
		!IsA(linitial(query->jointree->fromlist), RangeTblRef))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("dashboard \"%s\" must read exactly one table", def->name)));
	rtr = (RangeTblRef *) linitial(query->jointree->fromlist);
	rtindex = rtr->rtindex;
	rte = rt_fetch(rtindex, query->rtable);
	if (rte->rtekind != RTE_RELATION || rte->relid != base_relid)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("dashboard \"%s\" must read exactly one table", def->name)));

	if (list_length(query->targetList) != nkeys + nsums + (has_due ? 1 : 0))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("definition view of dashboard \"%s\" does not match the registry", def->name),
				 errdetail("The view has %d columns; the registry declares %d keys, %d sums and %s due expression.",
						   list_length(query->targetList), nkeys, nsums, has_due ? "a" : "no")));

	def->nkeys = nkeys;
	def->nsums = nsums;
	def->keys = NIL;
	def->sums = NIL;
	def->due = NULL;
	def->typlen = palloc(sizeof(int16) * nkeys);
	def->typbyval = palloc(sizeof(bool) * nkeys);
	i = 0;
	foreach(lc, query->targetList)
	{
		TargetEntry *tle = (TargetEntry *) lfirst(lc);
		Expr	   *expr = expression_planner(tle->expr);

		if (contain_mutable_functions((Node *) expr))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("%s of dashboard \"%s\" is not immutable",
							i < nkeys ? "a group key" : i < nkeys + nsums ? "a measure" : "the due expression",
							def->name),
					 errdetail("A row must fall into the same group and count the same when it is removed as when it was added."),
					 errhint("Time-relative figures belong in the read query; group by an immutable bucket such as alexandrite.dashboard_bucket(column).")));
		if (i < nkeys)
		{
			def->keys = lappend(def->keys, expr);
			get_typlenbyval(exprType((Node *) expr), &def->typlen[i], &def->typbyval[i]);
		}
		else if (i >= nkeys + nsums)
		{
			if (exprType((Node *) expr) != TIMESTAMPTZOID)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("due expression of dashboard \"%s\" is not a timestamptz", def->name)));
			def->due = expr;
		}
		else
		{
			if (exprType((Node *) expr) != NUMERICOID)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("measure of dashboard \"%s\" is not numeric", def->name)));
			def->sums = lappend(def->sums, expr);
		}
		allexprs = lappend(allexprs, expr);
		i++;
	}

	def->quals = NIL;
	if (query->jointree->quals != NULL)
	{
		Expr	   *qual = expression_planner((Expr *) query->jointree->quals);

		if (contain_mutable_functions((Node *) qual))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("the filter of dashboard \"%s\" is not immutable", def->name),
					 errdetail("A row must pass the filter when it is removed exactly as it did when it was added."),
					 errhint("Time-relative conditions belong in the read query, not in the filter.")));
		def->quals = make_ands_implicit(qual);
		allexprs = lappend(allexprs, qual);
	}

	/* every column read is an ordinary column of the base row */
	(void) alx_collect_vars_walker((Node *) allexprs, &vars);
	def->nvars = list_length(vars);
	def->vars = palloc(sizeof(AlxDashVar) * Max(def->nvars, 1));
	i = 0;
	foreach(lc, vars)
	{
		Var		   *var = (Var *) lfirst(lc);

		if (var->varlevelsup != 0 || var->varno != rtindex || var->varattno <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("dashboard \"%s\" may only use ordinary columns of its table", def->name),
					 errdetail("System columns and whole-row references are not available to the capture trigger.")));
		def->vars[i].attno = var->varattno;
		def->vars[i].atttypid = var->vartype;
		i++;
	}

	/* the delta table: keys, [due minute], count, sums, logged_at; plain heap, no index */
	drel = table_open(def->delta_relid, AccessShareLock);
	dd = RelationGetDescr(drel);
	if (drel->rd_rel->relkind != RELKIND_RELATION || drel->rd_rel->relhasindex ||
		drel->rd_rel->relhastriggers || drel->rd_rel->relhasrules ||
		dd->natts != nkeys + nsums + 2 + (has_due ? 1 : 0))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("delta table of dashboard \"%s\" has been altered", def->name),
				 errhint("Drop and declare the dashboard again.")));
	for (i = 0; i < dd->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(dd, i);
		Oid			want;

		int			j = i;

		if (has_due && i == nkeys)
			want = TIMESTAMPTZOID;
		else
		{
			if (has_due && i > nkeys)
				j = i - 1;
			if (j < nkeys)
				want = exprType((Node *) list_nth(def->keys, j));
			else if (j == nkeys)
				want = INT8OID;
			else if (j < nkeys + 1 + nsums)
				want = NUMERICOID;
			else
				want = TIMESTAMPTZOID;
		}
		if (att->attisdropped || att->atttypid != want)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("delta table of dashboard \"%s\" has been altered", def->name),
					 errhint("Drop and declare the dashboard again.")));
	}
	table_close(drel, AccessShareLock);
}

/* Read the registry rows of one base table (all when base_relid is invalid, or one id). */
static int
alx_dash_load(Oid base_relid, int32 only_id, AlxDashDef **defs_out)
{
	Oid			regrelid = alx_dash_registry_relid(true);
	Relation	reg;
	TupleDesc	rd;
	Snapshot	snap;
	TableScanDesc scan;
	HeapTuple	tup;
	AttrNumber	a_id,
				a_name,
				a_base,
				a_keys,
				a_sums,
				a_due,
				a_def,
				a_summary,
				a_delta;
	int			n = 0;
	int			cap = 4;
	AlxDashDef *defs;

	*defs_out = NULL;
	if (!OidIsValid(regrelid))
		return 0;

	a_id = get_attnum(regrelid, "id");
	a_name = get_attnum(regrelid, "name");
	a_base = get_attnum(regrelid, "base_table");
	a_keys = get_attnum(regrelid, "key_names");
	a_sums = get_attnum(regrelid, "sum_names");
	a_due = get_attnum(regrelid, "due_expr");
	a_def = get_attnum(regrelid, "def_view");
	a_summary = get_attnum(regrelid, "summary_table");
	a_delta = get_attnum(regrelid, "delta_table");

	defs = palloc0(sizeof(AlxDashDef) * cap);

	/*
	 * The latest snapshot, not the writer's: a REPEATABLE READ writer whose
	 * snapshot predates create_dashboard() must still feed the new dashboard.
	 * The registry is read like a catalog, without privilege checks: any
	 * writer of the base table maintains its dashboards.
	 */
	reg = table_open(regrelid, AccessShareLock);
	rd = RelationGetDescr(reg);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(reg, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Oid			base = DatumGetObjectId(heap_getattr(tup, a_base, rd, &isnull));
		int32		id = DatumGetInt32(heap_getattr(tup, a_id, rd, &isnull));
		ArrayType  *arr;

		if (OidIsValid(base_relid) && base != base_relid)
			continue;
		if (only_id != 0 && id != only_id)
			continue;
		if (n == cap)
		{
			cap *= 2;
			defs = repalloc(defs, sizeof(AlxDashDef) * cap);
			memset(&defs[n], 0, sizeof(AlxDashDef) * (cap - n));
		}
		defs[n].id = id;
		defs[n].name = TextDatumGetCString(heap_getattr(tup, a_name, rd, &isnull));
		defs[n].summary_relid = DatumGetObjectId(heap_getattr(tup, a_summary, rd, &isnull));
		defs[n].delta_relid = DatumGetObjectId(heap_getattr(tup, a_delta, rd, &isnull));
		arr = DatumGetArrayTypeP(heap_getattr(tup, a_keys, rd, &isnull));
		defs[n].nkeys = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
		arr = DatumGetArrayTypeP(heap_getattr(tup, a_sums, rd, &isnull));
		defs[n].nsums = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
		(void) heap_getattr(tup, a_due, rd, &isnull);
		/* stash "has a due expression" until compiled */
		defs[n].due = isnull ? NULL : (Expr *) makeBoolConst(true, false);
		/* stash the view oid in quals until compiled */
		defs[n].quals = list_make1_oid(DatumGetObjectId(heap_getattr(tup, a_def, rd, &isnull)));
		defs[n].keys = list_make1_oid(base);
		n++;
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(reg, AccessShareLock);

	for (int i = 0; i < n; i++)
	{
		Oid			def_view = linitial_oid(defs[i].quals);
		Oid			base = linitial_oid(defs[i].keys);

		alx_dash_compile(&defs[i], base, def_view, defs[i].nkeys, defs[i].nsums,
						 defs[i].due != NULL);
	}
	*defs_out = defs;
	return n;
}

/* The compiled dashboards of a table, from the cache or freshly loaded. */
static AlxDashCacheEntry *
alx_dash_lookup(Oid relid)
{
	AlxDashCacheEntry *entry;
	bool		found;
	MemoryContext oldcxt;

	if (alx_dash_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(AlxDashCacheEntry);
		ctl.hcxt = CacheMemoryContext;
		alx_dash_cache = hash_create("alexandrite dashboards", 16, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(alx_dash_inval_callback, (Datum) 0);
	}

	entry = hash_search(alx_dash_cache, &relid, HASH_ENTER, &found);
	if (!found)
	{
		entry->valid = false;
		entry->cxt = NULL;
		entry->ndash = 0;
		entry->dash = NULL;
	}
	if (entry->valid)
		return entry;

	/* an outer capture may still use the old definitions: leave them be */
	if (entry->cxt != NULL && alx_capture_depth <= 1)
		MemoryContextDelete(entry->cxt);
	entry->cxt = NULL;
	entry->ndash = 0;
	entry->dash = NULL;

	entry->cxt = AllocSetContextCreate(CacheMemoryContext, "alexandrite dashboard definitions",
									   ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(entry->cxt);
	/* valid from here on unless an invalidation arrives while loading */
	entry->valid = true;
	PG_TRY();
	{
		entry->ndash = alx_dash_load(relid, 0, &entry->dash);
	}
	PG_CATCH();
	{
		entry->valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	return entry;
}

static uint32
alx_group_hash(const void *key, Size keysize)
{
	return ((const AlxGroupKey *) key)->hash;
}

static int
alx_group_match(const void *key1, const void *key2, Size keysize)
{
	const AlxGroupKey *a = (const AlxGroupKey *) key1;
	const AlxGroupKey *b = (const AlxGroupKey *) key2;

	if (a->hash != b->hash || a->len != b->len)
		return 1;
	return memcmp(a->data, b->data, a->len);
}

/*
 * Append the binary image of a key value.  Binary-equal values are equal;
 * values that are equal but binary-different (1.0 and 1.00) merely produce
 * two delta rows that the fold adds up in the same group.
 */
static void
alx_key_image(StringInfo buf, Datum value, bool isnull, int16 typlen, bool typbyval)
{
	if (isnull)
	{
		appendStringInfoChar(buf, 'n');
		return;
	}
	appendStringInfoChar(buf, 'v');
	if (typbyval)
	{
		char		tmp[sizeof(Datum)];

		memset(tmp, 0, sizeof(tmp));
		store_att_byval(tmp, value, typlen);
		appendBinaryStringInfo(buf, tmp, typlen);
	}
	else if (typlen > 0)
		appendBinaryStringInfo(buf, DatumGetPointer(value), typlen);
	else if (typlen == -1)
	{
		struct varlena *v = PG_DETOAST_DATUM_PACKED(value);
		int32		len = VARSIZE_ANY_EXHDR(v);

		appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
		appendBinaryStringInfo(buf, VARDATA_ANY(v), len);
	}
	else
	{
		const char *s = DatumGetCString(value);
		int32		len = strlen(s);

		appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
		appendBinaryStringInfo(buf, s, len);
	}
}

/*
 * The minute a due time falls in, as alexandrite.dashboard_due_bucket()
 * computes it: timestamps count microseconds from 2000-01-01 00:00 UTC, the
 * origin of the buckets; infinities are their own bucket.
 */
static TimestampTz
alx_due_minute(TimestampTz t)
{
	int64		rem;

	if (TIMESTAMP_NOT_FINITE(t))
		return t;
	rem = t % USECS_PER_MINUTE;
	if (rem < 0)
		rem += USECS_PER_MINUTE;
	return t - rem;
}

/* Fold one transition table into the groups of every dashboard, with sign +1 or -1. */
static void
alx_capture_table(Tuplestorestate *ts, int sign, TupleTableSlot *slot,
				  AlxDashRun *runs, int nruns, ExprContext *econtext,
				  StringInfo buf, MemoryContext cxt)
{
	int			readptr;
	int			nkeys_max = 0;
	Datum	   *vals;
	bool	   *nulls;

	if (ts == NULL)
		return;
	for (int d = 0; d < nruns; d++)
		nkeys_max = Max(nkeys_max, runs[d].def->nkeys);
	vals = palloc(sizeof(Datum) * nkeys_max);
	nulls = palloc(sizeof(bool) * nkeys_max);

	/* our own read pointer: other triggers read the same tuplestore */
	readptr = tuplestore_alloc_read_pointer(ts, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(ts, readptr);
	tuplestore_rescan(ts);

	while (tuplestore_gettupleslot(ts, true, false, slot))
	{
		econtext->ecxt_scantuple = slot;
		for (int d = 0; d < nruns; d++)
		{
			AlxDashRun *run = &runs[d];
			AlxDashDef *def = run->def;
			AlxGroupKey key;
			AlxGroup   *group;
			bool		found;
			Datum		due_bucket = (Datum) 0;
			bool		due_null = true;
			ListCell   *lc;
			int			i;

			if (run->qual != NULL && !ExecQual(run->qual, econtext))
				continue;

			resetStringInfo(buf);
			i = 0;
			foreach(lc, run->keystates)
			{
				vals[i] = ExecEvalExprSwitchContext((ExprState *) lfirst(lc), econtext, &nulls[i]);
				alx_key_image(buf, vals[i], nulls[i], def->typlen[i], def->typbyval[i]);
				i++;
			}
			if (run->duestate != NULL)
			{
				bool		isnull;
				Datum		due = ExecEvalExprSwitchContext(run->duestate, econtext, &isnull);

				due_null = isnull;
				due_bucket = isnull ? (Datum) 0 : TimestampTzGetDatum(alx_due_minute(DatumGetTimestampTz(due)));
				alx_key_image(buf, due_bucket, due_null, sizeof(TimestampTz), true);
			}
			key.len = buf->len;
			key.data = buf->data;
			key.hash = hash_bytes((const unsigned char *) buf->data, buf->len);

			group = hash_search(run->groups, &key, HASH_ENTER, &found);
			if (!found)
			{
				/* keep the key image and values for the statement */
				group->key.data = palloc(key.len);
				memcpy(group->key.data, key.data, key.len);
				group->vals = palloc(sizeof(Datum) * def->nkeys);
				group->nulls = palloc(sizeof(bool) * def->nkeys);
				for (i = 0; i < def->nkeys; i++)
				{
					group->nulls[i] = nulls[i];
					if (nulls[i])
						group->vals[i] = (Datum) 0;
					else if (def->typlen[i] == -1)
						group->vals[i] = PointerGetDatum(PG_DETOAST_DATUM_COPY(vals[i]));
					else
						group->vals[i] = datumCopy(vals[i], def->typbyval[i], def->typlen[i]);
				}
				group->due_bucket = due_bucket;
				group->due_null = due_null;
				group->cnt = 0;
				group->sums = palloc(sizeof(Datum) * Max(def->nsums, 1));
				for (i = 0; i < def->nsums; i++)
					group->sums[i] = NumericGetDatum(int64_to_numeric(0));
			}
			group->cnt += sign;

			i = 0;
			foreach(lc, run->sumstates)
			{
				bool		isnull;
				Datum		v = ExecEvalExprSwitchContext((ExprState *) lfirst(lc), econtext, &isnull);

				/* sum() ignores nulls: they add nothing */
				if (!isnull)
				{
					Datum		old = group->sums[i];

					group->sums[i] = DirectFunctionCall2(sign > 0 ? numeric_add : numeric_sub, old, v);
					pfree(DatumGetPointer(old));
				}
				i++;
			}
		}
		ResetExprContext(econtext);
	}
	tuplestore_select_read_pointer(ts, 0);
	pfree(vals);
	pfree(nulls);
	(void) cxt;
}

/* Append the non-zero groups of one dashboard to its delta table. */
static int64
alx_emit_deltas(AlxDashRun *run, TimestampTz logged_at)
{
	AlxDashDef *def = run->def;
	HASH_SEQ_STATUS status;
	AlxGroup   *group;
	Relation	drel = NULL;
	TupleDesc	dd = NULL;
	Datum	   *values = NULL;
	bool	   *nulls = NULL;
	int			has_due = def->due != NULL ? 1 : 0;
	int			natts = def->nkeys + has_due + def->nsums + 2;
	int64		written = 0;
	Datum		zero = NumericGetDatum(int64_to_numeric(0));

	hash_seq_init(&status, run->groups);
	while ((group = hash_seq_search(&status)) != NULL)
	{
		bool		nonzero = group->cnt != 0;
		HeapTuple	tup;
		int			i;

		for (i = 0; !nonzero && i < def->nsums; i++)
			nonzero = DatumGetInt32(DirectFunctionCall2(numeric_cmp, group->sums[i], zero)) != 0;
		if (!nonzero)
			continue;

		if (drel == NULL)
		{
			drel = table_open(def->delta_relid, RowExclusiveLock);
			dd = RelationGetDescr(drel);
			if (drel->rd_rel->relhasindex || dd->natts != natts)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("delta table of dashboard \"%s\" has been altered", def->name),
						 errhint("Drop and declare the dashboard again.")));
			values = palloc(sizeof(Datum) * natts);
			nulls = palloc(sizeof(bool) * natts);
		}
		for (i = 0; i < def->nkeys; i++)
		{
			values[i] = group->vals[i];
			nulls[i] = group->nulls[i];
		}
		if (has_due)
		{
			values[def->nkeys] = group->due_bucket;
			nulls[def->nkeys] = group->due_null;
		}
		values[def->nkeys + has_due] = Int64GetDatum(group->cnt);
		nulls[def->nkeys + has_due] = false;
		for (i = 0; i < def->nsums; i++)
		{
			values[def->nkeys + has_due + 1 + i] = group->sums[i];
			nulls[def->nkeys + has_due + 1 + i] = false;
		}
		values[natts - 1] = TimestampTzGetDatum(logged_at);
		nulls[natts - 1] = false;

		tup = heap_form_tuple(dd, values, nulls);
		simple_heap_insert(drel, tup);
		heap_freetuple(tup);
		written++;
	}
	if (drel != NULL)
		table_close(drel, NoLock);
	return written;
}

/*
 * TRUNCATE of the base table: its dashboards become empty too, in the same
 * transaction (so they stay exact).  Runs as the owner of the dashboard
 * tables, after waiting for any fold.
 */
static void
alx_capture_truncate(Relation rel, AlxDashCacheEntry *entry)
{
	Oid			save_userid;
	int			save_sec;

	if (entry->ndash == 0)
		return;

	(void) DirectFunctionCall2(pg_advisory_xact_lock_int4,
							   Int32GetDatum(ALX_DASH_LOCK_CLASS),
							   Int32GetDatum(ALX_DASH_LOCK_FOLD));
	GetUserIdAndSecContext(&save_userid, &save_sec);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int d = 0; d < entry->ndash; d++)
	{
		AlxDashDef *def = &entry->dash[d];
		Oid			owner;
		HeapTuple	ct;
		char	   *sql;
		Datum		arg = Int32GetDatum(def->id);
		Oid			argtype = INT4OID;

		ct = SearchSysCache1(RELOID, ObjectIdGetDatum(def->summary_relid));
		if (!HeapTupleIsValid(ct))
			elog(ERROR, "cache lookup failed for relation %u", def->summary_relid);
		owner = ((Form_pg_class) GETSTRUCT(ct))->relowner;
		ReleaseSysCache(ct);

		SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		sql = psprintf("DELETE FROM %s; DELETE FROM %s",
					   quote_qualified_identifier(get_namespace_name(get_rel_namespace(def->summary_relid)),
												  get_rel_name(def->summary_relid)),
					   quote_qualified_identifier(get_namespace_name(get_rel_namespace(def->delta_relid)),
												  get_rel_name(def->delta_relid)));
		if (SPI_execute(sql, false, 0) < 0)
			elog(ERROR, "could not empty dashboard \"%s\"", def->name);
		if (SPI_execute_with_args("UPDATE alexandrite.dashboards SET last_truncate_at = pg_catalog.now() "
								  "WHERE id OPERATOR(pg_catalog.=) $1",
								  1, &argtype, &arg, NULL, false, 0) < 0)
			elog(ERROR, "could not update the dashboard registry");
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	SPI_finish();
	(void) rel;
}

/* The work of one trigger call (kept out of the PG_TRY frame). */
static void
alx_capture(TriggerData *td)
{
	Relation	rel = td->tg_relation;
	AlxDashCacheEntry *entry;
	Tuplestorestate *oldts = NULL;
	Tuplestorestate *newts = NULL;
	MemoryContext cxt;
	MemoryContext oldcxt;
	ExprContext *econtext;
	TupleTableSlot *slot;
	AlxDashRun *runs;
	StringInfoData buf;
	TimestampTz logged_at;

	entry = alx_dash_lookup(RelationGetRelid(rel));

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		alx_capture_truncate(rel, entry);
		return;
	}
	if (entry->ndash == 0)
		return;

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		newts = td->tg_newtable;
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		oldts = td->tg_oldtable;
	if ((TRIGGER_FIRED_BY_INSERT(td->tg_event) && newts == NULL) ||
		(TRIGGER_FIRED_BY_DELETE(td->tg_event) && oldts == NULL) ||
		(TRIGGER_FIRED_BY_UPDATE(td->tg_event) && (oldts == NULL || newts == NULL)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("alexandrite.dashboard_capture() needs the transition tables of the statement"),
				 errhint("Create the trigger with REFERENCING NEW TABLE and/or OLD TABLE.")));

	cxt = AllocSetContextCreate(CurrentMemoryContext, "alexandrite dashboard capture",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);

	runs = palloc0(sizeof(AlxDashRun) * entry->ndash);
	for (int d = 0; d < entry->ndash; d++)
	{
		AlxDashDef *def = &entry->dash[d];
		TupleDesc	bd = RelationGetDescr(rel);
		HASHCTL		ctl;
		ListCell   *lc;

		/* the columns the compiled expressions read are still what they were */
		for (int v = 0; v < def->nvars; v++)
		{
			Form_pg_attribute att;

			if (def->vars[v].attno > bd->natts)
				att = NULL;
			else
				att = TupleDescAttr(bd, def->vars[v].attno - 1);
			if (att == NULL || att->attisdropped || att->atttypid != def->vars[v].atttypid)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("dashboard \"%s\" no longer matches table \"%s\"",
								def->name, RelationGetRelationName(rel)),
						 errhint("Drop and declare the dashboard again.")));
		}

		runs[d].def = def;
		foreach(lc, def->keys)
			runs[d].keystates = lappend(runs[d].keystates, ExecInitExpr((Expr *) lfirst(lc), NULL));
		foreach(lc, def->sums)
			runs[d].sumstates = lappend(runs[d].sumstates, ExecInitExpr((Expr *) lfirst(lc), NULL));
		runs[d].duestate = def->due != NULL ? ExecInitExpr(def->due, NULL) : NULL;
		runs[d].qual = def->quals != NIL ? ExecInitQual(def->quals, NULL) : NULL;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(AlxGroupKey);
		ctl.entrysize = sizeof(AlxGroup);
		ctl.hash = alx_group_hash;
		ctl.match = alx_group_match;
		ctl.hcxt = cxt;
		runs[d].groups = hash_create("alexandrite dashboard groups", 16, &ctl,
									 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	}

	econtext = CreateStandaloneExprContext();
	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsMinimalTuple);
	initStringInfo(&buf);

	alx_capture_table(oldts, -1, slot, runs, entry->ndash, econtext, &buf, cxt);
	alx_capture_table(newts, +1, slot, runs, entry->ndash, econtext, &buf, cxt);

	logged_at = GetCurrentStatementStartTimestamp();
	for (int d = 0; d < entry->ndash; d++)
		(void) alx_emit_deltas(&runs[d], logged_at);

	ExecDropSingleTupleTableSlot(slot);
	FreeExprContext(econtext, true);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
}

/*
 * alexandrite.dashboard_capture(): AFTER INSERT/UPDATE/DELETE/TRUNCATE
 * FOR EACH STATEMENT, with NEW/OLD transition tables.
 */
Datum
alexandrite_dashboard_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("alexandrite.dashboard_capture() may only be called as a trigger")));
	td = (TriggerData *) fcinfo->context;
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("alexandrite.dashboard_capture() must be fired AFTER ... FOR EACH STATEMENT")));

	alx_capture_depth++;
	PG_TRY();
	{
		alx_capture(td);
	}
	PG_FINALLY();
	{
		alx_capture_depth--;
	}
	PG_END_TRY();

	return PointerGetDatum(NULL);
}

/*
 * alexandrite.dashboard_check(id): compile a registered dashboard as the
 * capture trigger will; errors out when it cannot be maintained.
 */
Datum
alexandrite_dashboard_check(PG_FUNCTION_ARGS)
{
	int32		id = PG_GETARG_INT32(0);
	AlxDashDef *defs;
	int			n;

	n = alx_dash_load(InvalidOid, id, &defs);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("dashboard %d does not exist", id)));
	PG_RETURN_VOID();
}

/*
 * alexandrite.dashboard_invalidate(table): at commit, every backend drops
 * its compiled dashboards of that table and reloads them at its next write.
 */
Datum
alexandrite_dashboard_invalidate(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);

	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}
