/*-------------------------------------------------------------------------
 *
 * assign.c
 *	  Assignment: operators and their load, assign_next and rebalance
 *	  (the claim itself is claim.c).
 *
 * Every assignment (assign_next, assign_order, rebalance) locks the
 * operator's row first and reads the operator's load (operator_load) with
 * a fresh snapshot after the lock: every earlier assignment to that
 * operator has committed or rolled back by then, because it held the same
 * lock.  A release or a shipment that has not committed yet still counts,
 * which errs on the safe side.  So capacity is never exceeded through the
 * API, whichever path assigns.
 *
 * The claim (AlxClaimOrder, claim.c) locks the most urgent pool order in
 * the ranking of docs/sla.md and reads it with the columns of the order
 * core's lock; it goes straight into the core's write.
 *
 * IDENTIFICATION
 *	  src/sla/assign.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "core/core.h"
#include "sla/sla.h"

static AlxPlan op_lock_plan = {
	"SELECT op.capacity, op.active FROM alexandrite.operators op"
	" WHERE op.id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
	1, {TEXTOID}
};

static AlxPlan load_plan = {
	"SELECT l.open_orders FROM alexandrite.operator_load l"
	" WHERE l.operator_id OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static AlxPlan load_row_plan = {
	"INSERT INTO alexandrite.operator_load AS l (operator_id, open_orders) VALUES ($1, NULL)"
	" ON CONFLICT ON CONSTRAINT operator_load_pkey DO NOTHING",
	1, {TEXTOID}
};

static AlxPlan load_lock_plan = {
	"SELECT l.open_orders FROM alexandrite.operator_load l"
	" WHERE l.operator_id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
	1, {TEXTOID}
};

static AlxPlan count_plan = {
	"SELECT pg_catalog.count(*) FROM alexandrite.orders o"
	" WHERE o.operator_id OPERATOR(pg_catalog.=) $1"
	"   AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status",
	1, {TEXTOID}
};

static AlxPlan load_set_plan = {
	"UPDATE alexandrite.operator_load l SET open_orders = $2"
	" WHERE l.operator_id OPERATOR(pg_catalog.=) $1",
	2, {TEXTOID, INT4OID}
};

static AlxPlan ops_lock_plan = {
	"SELECT op.id FROM alexandrite.operators op ORDER BY op.id FOR NO KEY UPDATE",
	0, {InvalidOid}
};

/* rebalance steps 1 and 2: 'assigned' orders of inactive or overfull operators */
static AlxPlan giveback_plan = {
	"SELECT o.id, o.operator_id"
	"  FROM (SELECT o2.id, o2.operator_id, o2.status,"
	"               pg_catalog.row_number() OVER (PARTITION BY o2.operator_id"
	"                                             ORDER BY o2.sla_due_at, o2.id) AS rk,"
	"               op.capacity, op.active"
	"          FROM alexandrite.orders o2"
	"          JOIN alexandrite.operators op ON op.id OPERATOR(pg_catalog.=) o2.operator_id"
	"         WHERE o2.operator_id IS NOT NULL"
	"           AND o2.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status) o"
	" WHERE o.status OPERATOR(pg_catalog.=) 'assigned'::alexandrite.order_status"
	"   AND (NOT o.active OR o.rk OPERATOR(pg_catalog.>) o.capacity)"
	" ORDER BY o.operator_id, o.id",
	0, {InvalidOid}
};

/* an order someone is changing right now is left for the next run */
static AlxPlan trylock_plan = {
	"SELECT " ALX_ORDER_COLS " FROM alexandrite.orders o"
	" WHERE o.id OPERATOR(pg_catalog.=) $1"
	"   AND o.status OPERATOR(pg_catalog.=) 'assigned'::alexandrite.order_status"
	"   AND o.operator_id OPERATOR(pg_catalog.=) $2"
	"   FOR NO KEY UPDATE SKIP LOCKED",
	2, {INT8OID, TEXTOID}
};

static AlxPlan op_loads_plan = {
	"SELECT op.id, op.capacity, l.open_orders"
	"  FROM alexandrite.operators op"
	"  LEFT JOIN alexandrite.operator_load l ON l.operator_id OPERATOR(pg_catalog.=) op.id"
	" WHERE op.active ORDER BY op.id",
	0, {InvalidOid}
};

/*
 * Assignment counts load under the operator's lock with a fresh snapshot;
 * under REPEATABLE READ or SERIALIZABLE the count would come from the
 * transaction's first snapshot, so those levels are refused.
 */
void
AlxRequireReadCommitted(const char *what)
{
	if (XactIsoLevel != XACT_READ_COMMITTED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s requires the READ COMMITTED isolation level", what),
				 errhint("Call it in a READ COMMITTED transaction: capacity is checked under the operator's row lock with a fresh snapshot.")));
}

/*------------------------------------------------------------------------
 * Rows by their text key, without a statement
 *
 * The operator lock and the load read are the two statements every
 * assignment runs before its claim; as statements they cost more than a
 * third of an assign_next's own work (planning is cached, executor setup
 * is not).  They read the row through the table's primary key index
 * directly, when it is a valid plain btree on the key column; otherwise
 * (or with row security on the table) the statements run instead.
 *------------------------------------------------------------------------
 */

/* the table, its key index (NULL: use the statement) and the slot */
typedef struct KeyedRow
{
	Relation	rel;
	Relation	idx;
	TupleTableSlot *slot;
} KeyedRow;

/* the attribute number of a column of rel, of type type (ERROR when missing or of another) */
static AttrNumber
column_of(Relation rel, const char *name, Oid type)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
		{
			if (att->atttypid != type)	/* (the relation's name only for the error) */
				AlxCheckColumnType(psprintf("alexandrite.%s", RelationGetRelationName(rel)), name,
								   att->atttypid, type);
			return att->attnum;
		}
	}
	elog(ERROR, "alexandrite.%s has no column \"%s\"", RelationGetRelationName(rel), name);
	return InvalidAttrNumber;	/* keep the compiler quiet */
}

/*
 * Opens alexandrite.<table> with lockmode and its primary key index, if it
 * is a valid btree of text_ops on key alone (kr->idx NULL otherwise).
 */
static void
keyed_open(KeyedRow *kr, const char *table, const char *key, LOCKMODE lockmode)
{
	static const Oid text_ops[1] = {TEXT_BTREE_OPS_OID};
	AttrNumber	col[1];
	Oid			idxid;

	kr->rel = AlxRelationOpen(table, lockmode, false);
	kr->idx = NULL;
	kr->slot = NULL;
	idxid = RelationGetPrimaryKeyIndex(kr->rel);
	if (!OidIsValid(idxid) || kr->rel->rd_rel->relrowsecurity)
		return;
	kr->idx = index_open(idxid, AccessShareLock);
	col[0] = column_of(kr->rel, key, TEXTOID);
	if (!kr->idx->rd_index->indisunique ||
		IndexRelationGetNumberOfKeyAttributes(kr->idx) != 1 ||
		!AlxIndexTrusted(kr->rel, kr->idx, 1, col, text_ops, false))
	{
		index_close(kr->idx, NoLock);
		kr->idx = NULL;
		return;
	}
	kr->slot = table_slot_create(kr->rel, NULL);
}

/* the locks are kept to the end of the transaction */
static void
keyed_close(KeyedRow *kr)
{
	if (kr->slot != NULL)
		ExecDropSingleTupleTableSlot(kr->slot);
	if (kr->idx != NULL)
		index_close(kr->idx, NoLock);
	table_close(kr->rel, NoLock);
}

/* Reads the row of key visible in snap into kr->slot; false when none. */
static bool
keyed_fetch(KeyedRow *kr, const char *key, Snapshot snap)
{
	ScanKeyData sk;
	IndexScanDesc scan;
	bool		found;

	ScanKeyEntryInitialize(&sk, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   kr->idx->rd_indcollation[0], F_TEXTEQ, CStringGetTextDatum(key));
	scan = index_beginscan(kr->rel, kr->idx, snap, 1, 0);
	index_rescan(scan, &sk, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, kr->slot);
	index_endscan(scan);
	return found;
}

/*
 * Locks an operator row until commit (one assignment per operator at a
 * time; NO KEY UPDATE leaves foreign-key checks unblocked), waiting for
 * another holder as SELECT ... FOR NO KEY UPDATE does, and reads the
 * locked (newest) version.  P0002 for an unknown operator (or one renamed
 * meanwhile), 55000 for an inactive one when must_be_active.
 */
void
AlxOperatorLock(const char *operator_id, bool must_be_active, int *capacity, bool *active)
{
	Datum		values[1];
	bool		isnull;
	bool		found = false;
	KeyedRow	kr;

	if (operator_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("operator_id must not be null")));
	/* see the caller's own earlier writes, as a statement would */
	CommandCounterIncrement();
	keyed_open(&kr, "operators", "id", RowShareLock);
	if (kr.idx != NULL)
	{
		Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());

		if (keyed_fetch(&kr, operator_id, snap))
		{
			ItemPointerData tid = kr.slot->tts_tid;
			TM_FailureData tmfd;
			TM_Result	r;

			r = table_tuple_lock(kr.rel, &tid, snap, kr.slot, GetCurrentCommandId(true),
								 LockTupleNoKeyExclusive, LockWaitBlock,
								 TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
			if (r == TM_Ok)
			{
				Datum		id = slot_getattr(kr.slot, column_of(kr.rel, "id", TEXTOID), &isnull);

				/* the re-check of the newest version: still this operator? */
				found = !isnull && strcmp(TextDatumGetCString(id), operator_id) == 0;
				if (found)
				{
					*capacity = DatumGetInt32(slot_getattr(kr.slot, column_of(kr.rel, "capacity", INT4OID), &isnull));
					*active = DatumGetBool(slot_getattr(kr.slot, column_of(kr.rel, "active", BOOLOID), &isnull));
				}
			}
			else if (r != TM_Deleted && r != TM_SelfModified)
				elog(ERROR, "unexpected result %d locking operator \"%s\"", (int) r, operator_id);
		}
		UnregisterSnapshot(snap);
	}
	else
	{
		values[0] = CStringGetTextDatum(operator_id);
		AlxPlanRun(&op_lock_plan, values, NULL, false, 1);
		found = SPI_processed == 1;
		if (found)
		{
			*capacity = (int) AlxSpiInt8(0, 1, &isnull);
			*active = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		}
	}
	keyed_close(&kr);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("operator \"%s\" does not exist", operator_id)));
	if (must_be_active && !*active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("operator \"%s\" is not active", operator_id),
				 errhint("Set alexandrite.operators.active to true to let the operator take orders.")));
}

/*
 * The open orders an operator holds, for a caller that holds the operator's
 * lock, read in a snapshot taken after it.  A missing row or a NULL count is
 * "unknown": the load row is locked, the orders counted and the count
 * recorded, so a concurrent change either committed before the count (and
 * is in it) or applies its delta after.
 */
int
AlxOperatorLoad(const char *operator_id)
{
	Datum		values[2];
	bool		isnull = true;
	int64		n = 0;
	KeyedRow	kr;

	values[0] = CStringGetTextDatum(operator_id);
	/* a snapshot after the lock and after this transaction's last load move */
	CommandCounterIncrement();
	keyed_open(&kr, "operator_load", "operator_id", AccessShareLock);
	if (kr.idx != NULL)
	{
		Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());

		if (keyed_fetch(&kr, operator_id, snap))
			n = DatumGetInt32(slot_getattr(kr.slot, column_of(kr.rel, "open_orders", INT4OID), &isnull));
		UnregisterSnapshot(snap);
	}
	else
	{
		AlxPlanRun(&load_plan, values, NULL, false, 1);
		if (SPI_processed == 1)
			n = AlxSpiInt8(0, 1, &isnull);
	}
	keyed_close(&kr);
	/* a negative count (no writer of ours stores one) is not trusted either */
	if (!isnull && n >= 0)
		return (int) n;

	AlxPlanRun(&load_row_plan, values, NULL, false, 0);
	AlxPlanRun(&load_lock_plan, values, NULL, false, 1);
	isnull = true;
	if (SPI_processed == 1)
		n = AlxSpiInt8(0, 1, &isnull);
	if (!isnull && n >= 0)
		return (int) n;
	AlxPlanRun(&count_plan, values, NULL, false, 1);
	n = AlxSpiInt8(0, 1, &isnull);
	values[1] = Int32GetDatum((int32) n);
	AlxPlanRun(&load_set_plan, values, NULL, false, 0);
	return (int) n;
}

PG_FUNCTION_INFO_V1(alexandrite_assign_next);

/*
 * assign_next(operator_id): claims the most urgent unassigned order for an
 * active operator below capacity; NULL when the operator is full or
 * nothing is eligible.
 */
Datum
alexandrite_assign_next(PG_FUNCTION_ARGS)
{
	char	   *op;
	AlxSavedUser save;
	int			capacity;
	bool		active;
	AlxOrderRow row;
	bool		got = false;

	AlxRequireReadCommitted("assign_next");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("operator_id must not be null")));
	op = text_to_cstring(PG_GETARG_TEXT_PP(0));

	AlxCoreBegin(&save);
	AlxOperatorLock(op, true, &capacity, &active);
	if (AlxOperatorLoad(op) < capacity &&
		AlxClaimOrder(GetCurrentTransactionStartTimestamp(), DT_NOEND, &row))
	{
		AlxOrderGive(&row, op, NULL);
		got = true;
	}
	AlxCoreEnd(&save);
	if (!got)
		PG_RETURN_NULL();
	PG_RETURN_INT64(row.id);
}

/* one row of rebalance's result */
static void
put_move(ReturnSetInfo *rsinfo, int64 order_id, const char *from, const char *to)
{
	Datum		values[3];
	bool		nulls[3] = {false, from == NULL, to == NULL};

	values[0] = Int64GetDatum(order_id);
	values[1] = from ? CStringGetTextDatum(from) : (Datum) 0;
	values[2] = to ? CStringGetTextDatum(to) : (Datum) 0;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* rebalance steps 1 and 2: inactive or overfull operators give back orders */
static void
give_back(ReturnSetInfo *rsinfo, const char *actor)
{
	int64	   *ids;
	char	  **ops;
	int			n;

	AlxPlanRun(&giveback_plan, NULL, NULL, false, 0);
	n = (int) SPI_processed;
	ids = palloc(sizeof(int64) * Max(n, 1));
	ops = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = AlxSpiInt8(i, 1, &isnull);
		ops[i] = AlxSpiText(i, 2);
	}
	for (int i = 0; i < n; i++)
	{
		Datum		values[2];
		AlxOrderRow row;

		values[0] = Int64GetDatum(ids[i]);
		values[1] = CStringGetTextDatum(ops[i]);
		/* never wait on an order row while holding the operators */
		AlxPlanRun(&trylock_plan, values, NULL, false, 1);
		if (SPI_processed != 1)
			continue;
		AlxOrderFromTuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &row);
		AlxOrderRelease(&row, actor);
		put_move(rsinfo, ids[i], ops[i], NULL);
	}
}

/* rebalance step 3: the urgent pool to the active operators with the lowest load */
static void
fill(ReturnSetInfo *rsinfo, Interval *horizon)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz until = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
																TimestampTzGetDatum(now),
																IntervalPGetDatum(horizon)));
	char	  **ops;
	int		   *cap;
	int		   *open;
	bool	   *unknown;
	int			n;

	AlxPlanRun(&op_loads_plan, NULL, NULL, false, 0);
	n = (int) SPI_processed;
	ops = palloc(sizeof(char *) * Max(n, 1));
	cap = palloc(sizeof(int) * Max(n, 1));
	open = palloc(sizeof(int) * Max(n, 1));
	unknown = palloc(sizeof(bool) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		ops[i] = AlxSpiText(i, 1);
		cap[i] = (int) AlxSpiInt8(i, 2, &isnull);
		open[i] = (int) AlxSpiInt8(i, 3, &unknown[i]);
	}
	/* unknown, or negative (not trusted either): counted under the lock */
	for (int i = 0; i < n; i++)
		if (unknown[i] || open[i] < 0)
			open[i] = AlxOperatorLoad(ops[i]);

	for (;;)
	{
		int			best = -1;
		AlxOrderRow row;

		for (int i = 0; i < n; i++)
		{
			if (open[i] >= cap[i])
				continue;
			if (best < 0 || (double) open[i] / cap[i] < (double) open[best] / cap[best])
				best = i;
		}
		if (best < 0)
			break;				/* nobody has room */
		if (!AlxClaimOrder(now, until, &row))
			break;				/* nothing urgent left */
		AlxOrderGive(&row, ops[best], NULL);
		open[best]++;
		put_move(rsinfo, row.id, NULL, ops[best]);
		CHECK_FOR_INTERRUPTS();
	}
}

PG_FUNCTION_INFO_V1(alexandrite_rebalance);

/*
 * rebalance(horizon): releases the 'assigned' orders of inactive operators
 * and the least urgent ones of operators above capacity, then spreads pool
 * orders due within horizon over the active operators by load.  One row
 * per move.  Every operator row is locked (in id order) for the duration.
 */
Datum
alexandrite_rebalance(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const char *actor = AlxActor(NULL, AlxCallerName());
	Interval   *horizon;
	AlxSavedUser save;

	AlxRequireReadCommitted("rebalance");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("horizon must not be null")));
	horizon = PG_GETARG_INTERVAL_P(0);
	InitMaterializedSRF(fcinfo, 0);

	AlxCoreBegin(&save);
	AlxPlanRun(&ops_lock_plan, NULL, NULL, false, 0);
	give_back(rsinfo, actor);
	fill(rsinfo, horizon);
	AlxCoreEnd(&save);
	return (Datum) 0;
}
