/*-------------------------------------------------------------------------
 *
 * capture.c
 *	  Dashboard capture: every row change of a base table becomes a signed
 *	  contribution to its dashboards' pending groups (pending.c).
 *
 * alexandrite.dashboard_capture() is the trigger function of the three
 * capture triggers of a base table:
 *   alx_dashboard_capture   AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW:
 *                           the row change (AlxDashboardCaptureRow)
 *   alx_dashboard_flush     the same events FOR EACH STATEMENT: writes the
 *                           statement's groups to the delta tables
 *   alx_dashboard_truncate  AFTER TRUNCATE: empties the dashboards
 * Row triggers fire for every row whatever the statement, the client or
 * the caller's way of running it, also for rows written directly into a
 * partition (PostgreSQL clones them onto every partition).
 *
 * Writers therefore only ever insert delta rows: no shared counter row, no
 * lock queue, no deadlock.  The deltas are tuples of the writer's
 * (sub)transaction, so savepoint rollbacks and aborts undo them with the
 * base rows.
 *
 * The definitions of a table's dashboards are loaded (and validated) once
 * per backend, with their expressions compiled, and dropped on a relcache
 * invalidation of the table (create_dashboard, drop_dashboard and
 * rebuild_dashboard send one).  Expressions are compiled and evaluated as
 * the extension owner: the writer needs no EXECUTE on the extension's
 * functions, and validation guarantees that nothing a user wrote runs.
 *
 * IDENTIFICATION
 *	  src/dashboard/capture.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/attmap.h"
#include "access/detoast.h"
#include "nodes/makefuncs.h"
#include "access/table.h"
#include "access/tupconvert.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "alexandrite.h"
#include "dashboard/dashboard.h"

/* One dashboard, compiled for the capture. */
typedef struct AlxCaptureDash
{
	AlxDashDef *def;
	Oid			delta_relid;
	ExprState  *qual;
	ExprState **keys;
	ExprState **sums;
	ExprState  *due;
} AlxCaptureDash;

/* The dashboards fed by the rows of one relation (a base table or one of its partitions). */
typedef struct AlxCaptureEntry
{
	Oid			relid;			/* hash key: the relation the triggers fire on */
	bool		valid;
	MemoryContext cxt;
	Oid			root_relid;		/* the table the dashboards are declared on */
	Oid			owner;			/* the extension owner */
	int			ndash;
	AlxCaptureDash *dash;
	Bitmapset  *attnos;			/* columns read, numbered as in relid */
	AttrMap    *map;			/* relid's row to root_relid's, or NULL */
	TupleTableSlot *rootslot;
	ExprContext *econtext;
	int			busy;			/* captures running with these states */
} AlxCaptureEntry;

static HTAB *alx_capture_cache = NULL;

PG_FUNCTION_INFO_V1(alexandrite_dashboard_capture);

/* Forget the dashboards of a table (or of all) on relcache invalidation. */
static void
alx_capture_inval(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	AlxCaptureEntry *e;

	if (alx_capture_cache == NULL)
		return;
	hash_seq_init(&status, alx_capture_cache);
	while ((e = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || e->relid == relid || e->root_relid == relid)
			e->valid = false;
}

/* ... and all of them when a schema changes owner (the owner is cached). */
static void
alx_capture_inval_all(Datum arg, int cacheid, uint32 hashvalue)
{
	alx_capture_inval(arg, InvalidOid);
}

/* The table whose dashboards a relation feeds: itself, or the partition root that has them. */
static Oid
alx_capture_root(Oid relid, List **defs)
{
	List	   *ancestors;
	ListCell   *lc;

	*defs = AlxDashLoad(relid);
	if (*defs != NIL || !get_rel_relispartition(relid))
		return relid;
	ancestors = get_partition_ancestors(relid);
	foreach(lc, ancestors)
	{
		*defs = AlxDashLoad(lfirst_oid(lc));
		if (*defs != NIL)
			return lfirst_oid(lc);
	}
	return relid;
}

/* Compile one dashboard's expressions (as the owner: EXECUTE is checked here). */
static void
alx_capture_compile(AlxCaptureDash *cd, AlxDashDef *def)
{
	cd->def = def;
	cd->delta_relid = AlxDashObjectRelid(def, ALX_DASH_DELTA, true);
	if (!OidIsValid(cd->delta_relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the delta table of dashboard \"%s\" does not exist", def->name),
				 errhint("Run alexandrite.rebuild_dashboard('%s').", def->name)));
	cd->keys = palloc(sizeof(ExprState *) * def->nkeys);
	for (int i = 0; i < def->nkeys; i++)
		cd->keys[i] = ExecInitExpr(expression_planner((Expr *) def->keys[i]), NULL);
	cd->sums = palloc(sizeof(ExprState *) * Max(def->nsums, 1));
	for (int i = 0; i < def->nsums; i++)
		cd->sums[i] = ExecInitExpr(expression_planner((Expr *) def->sums[i]), NULL);
	cd->due = def->due ? ExecInitExpr(expression_planner((Expr *) def->due), NULL) : NULL;
	cd->qual = def->filter ? ExecInitQual(make_ands_implicit(expression_planner((Expr *) def->filter)), NULL) : NULL;
}

/* Load, validate and compile the dashboards a relation's rows feed. */
static void
alx_capture_build(AlxCaptureEntry *e)
{
	List	   *defs;
	ListCell   *lc;
	int			i = 0;
	AlxSavedUser save;
	Relation	rel;

	e->root_relid = alx_capture_root(e->relid, &defs);
	e->owner = defs != NIL ? AlxExtensionOwner() : InvalidOid;
	e->ndash = list_length(defs);
	e->dash = palloc0(sizeof(AlxCaptureDash) * Max(e->ndash, 1));
	e->attnos = NULL;
	e->map = NULL;
	if (e->ndash == 0)
		return;

	AlxBecomeOwner(&save);
	foreach(lc, defs)
		alx_capture_compile(&e->dash[i++], (AlxDashDef *) lfirst(lc));
	AlxRestoreUser(&save);

	rel = table_open(e->relid, AccessShareLock);
	if (e->root_relid != e->relid)
	{
		Relation	root = table_open(e->root_relid, AccessShareLock);

		e->map = build_attrmap_by_name(RelationGetDescr(rel), RelationGetDescr(root));
		e->rootslot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(root)), &TTSOpsVirtual);
		table_close(root, AccessShareLock);
	}
	foreach(lc, defs)
	{
		AlxDashDef *def = (AlxDashDef *) lfirst(lc);
		int			att = -1;

		while ((att = bms_next_member(def->attnos, att)) >= 0)
			e->attnos = bms_add_member(e->attnos, e->map ? e->map->attnums[att - 1] : att);
	}
	table_close(rel, AccessShareLock);
	e->econtext = CreateStandaloneExprContext();
}

/* The compiled dashboards of a relation, from the cache or freshly loaded. */
static AlxCaptureEntry *
alx_capture_lookup(Oid relid)
{
	AlxCaptureEntry *e;
	bool		found;
	MemoryContext old;

	if (alx_capture_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(AlxCaptureEntry);
		ctl.hcxt = CacheMemoryContext;
		alx_capture_cache = hash_create("alexandrite dashboard capture", 16, &ctl,
										HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		AlxRegisterRelcacheCallback(alx_capture_inval, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, alx_capture_inval_all, (Datum) 0);
	}
	e = hash_search(alx_capture_cache, &relid, HASH_ENTER, &found);
	if (!found)
	{
		e->cxt = NULL;
		e->valid = false;
		e->busy = 0;
		e->root_relid = relid;
	}
	if (e->valid)
		return e;
	/* states still in use by an outer capture stay until the transaction ends */
	if (e->cxt != NULL && e->busy == 0)
		MemoryContextDelete(e->cxt);
	e->cxt = AllocSetContextCreate(CacheMemoryContext, "alexandrite dashboard definitions",
								   ALLOCSET_SMALL_SIZES);
	e->busy = 0;
	e->valid = true;
	old = MemoryContextSwitchTo(e->cxt);
	PG_TRY();
	{
		alx_capture_build(e);
	}
	PG_CATCH();
	{
		e->valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return e;
}

/* true when an UPDATE changed a column some dashboard reads */
static bool
alx_capture_changed(AlxCaptureEntry *e, TupleTableSlot *oldslot, TupleTableSlot *newslot)
{
	TupleDesc	desc = oldslot->tts_tupleDescriptor;
	int			att = -1;

	while ((att = bms_next_member(e->attnos, att)) >= 0)
	{
		Form_pg_attribute a = TupleDescAttr(desc, att - 1);
		bool		n1;
		bool		n2;
		Datum		v1 = slot_getattr(oldslot, att, &n1);
		Datum		v2 = slot_getattr(newslot, att, &n2);

		if (n1 != n2 || (!n1 && !datumIsEqual(v1, v2, a->attbyval, a->attlen)))
			return true;
	}
	return false;
}

/* The group key expressions of def, for a message. */
static char *
alx_capture_key_list(const AlxDashDef *def)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < def->nkeys; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", def->key_sql[i]);
	return buf.data;
}

/*
 * Refuses a group key too long for the summary's unique index
 * (ALX_DASH_KEYS_MAX): the delta row would be written, but every fold of the
 * dashboard would then fail on it, for every writer and reader.  Sizes are
 * uncompressed, so the limit does not depend on how well a value compresses.
 */
static void
alx_capture_check_keys(const AlxDashDef *def, Datum *keys, bool *knulls)
{
	Size		total = 0;

	for (int i = 0; i < def->nkeys; i++)
	{
		if (knulls[i])
			continue;
		if (def->key_typlen[i] > 0)
			total += def->key_typlen[i];
		else if (def->key_typlen[i] == -1)
			total += toast_raw_datum_size(keys[i]) - VARHDRSZ;
		else
			total += strlen(DatumGetCString(keys[i])) + 1;
	}
	if (total > ALX_DASH_KEYS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("group key of dashboard \"%s\" is too long: %zu bytes, at most %d",
						def->name, total, ALX_DASH_KEYS_MAX),
				 errdetail("The dashboard groups rows of %s by (%s).",
						   get_rel_name(def->base_relid), alx_capture_key_list(def)),
				 errhint("Shorten the value, or define the dashboard on a shorter expression such as left(column, 100).")));
}

/* One dashboard, one row: evaluate and add to the pending group. */
static void
alx_capture_one(AlxCaptureDash *cd, ExprContext *econtext, int sign)
{
	AlxDashDef *def = cd->def;
	Datum	   *keys = palloc(sizeof(Datum) * def->nkeys);
	bool	   *knulls = palloc(sizeof(bool) * def->nkeys);
	Datum	   *sums = palloc(sizeof(Datum) * Max(def->nsums, 1));
	bool	   *snulls = palloc(sizeof(bool) * Max(def->nsums, 1));
	Datum		due = (Datum) 0;
	bool		due_null = true;

	if (cd->qual != NULL && !ExecQual(cd->qual, econtext))
		return;
	for (int i = 0; i < def->nkeys; i++)
		keys[i] = ExecEvalExpr(cd->keys[i], econtext, &knulls[i]);
	/* new row images only: an existing row with a longer key (written before
	 * the limit, or present when the dashboard was created) can still be
	 * deleted or given a shorter key */
	if (sign > 0)
		alx_capture_check_keys(def, keys, knulls);
	for (int i = 0; i < def->nsums; i++)
		sums[i] = ExecEvalExpr(cd->sums[i], econtext, &snulls[i]);
	if (cd->due != NULL)
	{
		due = ExecEvalExpr(cd->due, econtext, &due_null);
		if (!due_null)
			due = TimestampTzGetDatum(AlxDueMinute(DatumGetTimestampTz(due)));
	}
	AlxPendingAdd(AlxPendingTargetFor(def, cd->delta_relid), keys, knulls, due, due_null,
				  sums, snulls, sign);
}

/* One row image (old or new) into every dashboard of the entry. */
static void
alx_capture_slot(AlxCaptureEntry *e, TupleTableSlot *slot, int sign)
{
	ExprContext *econtext = e->econtext;
	MemoryContext old;

	if (e->map != NULL)
		slot = execute_attr_map_slot(e->map, slot, e->rootslot);
	econtext->ecxt_scantuple = slot;
	old = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
	for (int d = 0; d < e->ndash; d++)
		alx_capture_one(&e->dash[d], econtext, sign);
	MemoryContextSwitchTo(old);
	ResetExprContext(econtext);
}

/*
 * A row change of rel (a base table, or a partition of one): oldslot is the
 * row before (NULL for an INSERT), newslot after (NULL for a DELETE).  For
 * AFTER ... FOR EACH ROW triggers; see dashboard.h.
 */
void
AlxDashboardCaptureRow(Relation rel, TupleTableSlot *oldslot, TupleTableSlot *newslot)
{
	AlxCaptureEntry *e = alx_capture_lookup(RelationGetRelid(rel));
	Oid			save_user;
	int			save_sec;

	if (e->ndash == 0)
		return;
	if (oldslot != NULL && newslot != NULL && !alx_capture_changed(e, oldslot, newslot))
		return;
	if (e->busy > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("a dashboard expression of table \"%s\" writes that table", RelationGetRelationName(rel))));

	/* AlxBecomeOwner with the owner cached per table: this runs for every row */
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(e->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	e->busy++;
	PG_TRY();
	{
		if (oldslot != NULL)
			alx_capture_slot(e, oldslot, -1);
		if (newslot != NULL)
			alx_capture_slot(e, newslot, +1);
	}
	PG_FINALLY();
	{
		e->busy--;
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
}

/*
 * TRUNCATE of a base table: its dashboards are truncated too, in the same
 * transaction.  TRUNCATE, not DELETE: it removes every row whatever the
 * snapshot (in REPEATABLE READ, deltas and folded groups that others
 * committed after the transaction's snapshot must go too), and it is
 * exactly as visible as the TRUNCATE of the base table, so a reader sees
 * either both tables full or both empty.  No writer is in flight (TRUNCATE
 * holds the base table), folds and readers lock the base table first and
 * wait.  The state row is written with the latest snapshot for the same
 * reason.
 */
static void
alx_capture_truncate(Relation rel)
{
	List	   *defs = AlxDashLoad(RelationGetRelid(rel));
	ListCell   *lc;
	AlxSavedUser save;
	int			nestlevel;
	Oid			type = INT4OID;
	SPIPlanPtr	plan;

	if (defs == NIL)
		return;
	AlxBecomeOwner(&save);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare("UPDATE alexandrite.dashboard_state SET last_truncate_at = pg_catalog.now() "
					   "WHERE dashboard_id OPERATOR(pg_catalog.=) $1", 1, &type);
	if (plan == NULL)
		elog(ERROR, "could not prepare: %s", SPI_result_code_string(SPI_result));
	foreach(lc, defs)
	{
		AlxDashDef *def = (AlxDashDef *) lfirst(lc);
		Datum		id = Int32GetDatum(def->id);
		int			ret;

		(void) AlxDashObjectRelid(def, ALX_DASH_SUMMARY, true);
		(void) AlxDashObjectRelid(def, ALX_DASH_DELTA, true);
		AlxDashboardForget(def->id);
		ret = SPI_execute(psprintf("TRUNCATE %s, %s", AlxDashQualified(def, ALX_DASH_SUMMARY),
								   AlxDashQualified(def, ALX_DASH_DELTA)), false, 0);
		if (ret != SPI_OK_UTILITY)
			elog(ERROR, "could not empty dashboard \"%s\": %s", def->name, SPI_result_code_string(ret));
		ret = SPI_execute_snapshot(plan, &id, NULL, GetLatestSnapshot(), InvalidSnapshot, false, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "could not update the state of dashboard \"%s\": %s", def->name, SPI_result_code_string(ret));
	}
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	AlxRestoreUser(&save);
}

/*
 * The statement triggers of 1.1 (alx_dashboard_ins/upd/del) hand over
 * transition tables: their rows are captured one by one, so a 1.1 schema
 * keeps its dashboards exact under this library until ALTER EXTENSION
 * UPDATE replaces those triggers.
 */
static void
alx_capture_transition(Relation rel, Tuplestorestate *ts, bool old)
{
	TupleTableSlot *slot;
	int			readptr;

	if (ts == NULL)
		return;
	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsMinimalTuple);
	/* our own read pointer: other triggers read the same tuplestore */
	readptr = tuplestore_alloc_read_pointer(ts, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(ts, readptr);
	tuplestore_rescan(ts);
	while (tuplestore_gettupleslot(ts, true, false, slot))
		AlxDashboardCaptureRow(rel, old ? slot : NULL, old ? NULL : slot);
	tuplestore_select_read_pointer(ts, 0);
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * alexandrite.dashboard_capture(): the trigger function of
 * alx_dashboard_capture (row), alx_dashboard_flush (statement) and
 * alx_dashboard_truncate.
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
	if (!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("alexandrite.dashboard_capture() must be fired AFTER the change")));

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		alx_capture_truncate(td->tg_relation);
	else if (TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
	{
		alx_capture_transition(td->tg_relation, td->tg_oldtable, true);
		alx_capture_transition(td->tg_relation, td->tg_newtable, false);
		AlxDashboardFlushStatement();
	}
	else if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		AlxDashboardCaptureRow(td->tg_relation, NULL, td->tg_trigslot);
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
		AlxDashboardCaptureRow(td->tg_relation, td->tg_trigslot, NULL);
	else
		AlxDashboardCaptureRow(td->tg_relation, td->tg_trigslot, td->tg_newslot);
	return PointerGetDatum(NULL);
}
