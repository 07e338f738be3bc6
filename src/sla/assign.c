/*-------------------------------------------------------------------------
 *
 * assign.c
 *	  Assignment: operators and their load, the claim of the most urgent
 *	  pool order, assign_next and rebalance.
 *
 * Every assignment (assign_next, assign_order, rebalance) locks the
 * operator's row first and reads the operator's load (operator_load) with
 * a fresh snapshot after the lock: every earlier assignment to that
 * operator has committed or rolled back by then, because it held the same
 * lock.  A release or a shipment that has not committed yet still counts,
 * which errs on the safe side.  So capacity is never exceeded through the
 * API, whichever path assigns.
 *
 * The claim (claim_order) is the ranking of docs/sla.md: the first lim
 * candidates of each channel's pool index (orders_pool_due_idx), merged by
 * (sla_priority desc, id), and the first one nobody else holds locked in
 * the same statement (SKIP LOCKED).  The claimed row comes back with the
 * columns of the order core's lock (ALX_ORDER_COLS) and goes straight into
 * the core's write.
 *
 * IDENTIFICATION
 *	  src/sla/assign.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "funcapi.h"
#include "utils/builtins.h"
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

/* the pool: unheld new or priced orders (see sla_claim in 1.1) */
#define POOL_QUAL(alias) \
	alias ".status OPERATOR(pg_catalog.<) 'assigned'::alexandrite.order_status" \
	" AND " alias ".operator_id IS NULL"

/*
 * The claim, with the due bound of rebalance ($2) or without one
 * (assign_next: every pool order).  Without it the index scan of each
 * channel checks one key per index tuple instead of two; it reads the rest
 * of the channel head's leaf page either way.
 */
#define CLAIM_SQL(due_cond) \
	"SELECT " ALX_ORDER_COLS ", c.rk" \
	"  FROM (SELECT k.id, k.p, pg_catalog.row_number() OVER (ORDER BY k.p DESC, k.id) AS rk" \
	"          FROM (SELECT h.id," \
	"                       alexandrite.sla_priority(h.created_at, h.sla_due_at, ch.channel, $1) AS p" \
	"                  FROM pg_catalog.unnest(alexandrite.sla_channels()) ch(channel)" \
	"                 CROSS JOIN LATERAL (" \
	"                       SELECT o2.id, o2.sla_due_at, o2.created_at" \
	"                         FROM alexandrite.orders o2" \
	"                        WHERE o2.channel OPERATOR(pg_catalog.=) ch.channel" \
	"                          AND " POOL_QUAL("o2") due_cond \
	"                        ORDER BY o2.sla_due_at, o2.id" \
	"                        LIMIT $3) h) k" \
	"         ORDER BY k.p DESC, k.id) c" \
	"  JOIN alexandrite.orders o ON o.id OPERATOR(pg_catalog.=) c.id" \
	" WHERE " POOL_QUAL("o") \
	" ORDER BY c.p DESC, c.id" \
	" LIMIT 1" \
	"   FOR NO KEY UPDATE OF o SKIP LOCKED"

/* [0]: due before $2; [1]: any due time ($2 unused) */
static AlxPlan claim_plans[2] = {
	{CLAIM_SQL(" AND o2.sla_due_at OPERATOR(pg_catalog.<) $2"), 3, {TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID}},
	{CLAIM_SQL(""), 3, {TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID}}
};

/* does some channel have more than $2 pool orders (due before $1)? */
#define CUT_SQL(due_cond) \
	"SELECT 1 FROM pg_catalog.unnest(alexandrite.sla_channels()) ch(channel)" \
	" CROSS JOIN LATERAL (" \
	"       SELECT pg_catalog.count(*) AS n" \
	"         FROM (SELECT 1 FROM alexandrite.orders o2" \
	"                WHERE o2.channel OPERATOR(pg_catalog.=) ch.channel" \
	"                  AND " POOL_QUAL("o2") due_cond \
	"                LIMIT $2 OPERATOR(pg_catalog.+) 1) x) k" \
	" WHERE k.n OPERATOR(pg_catalog.>) $2 LIMIT 1"

static AlxPlan cut_plans[2] = {
	{CUT_SQL(" AND o2.sla_due_at OPERATOR(pg_catalog.<) $1"), 2, {TIMESTAMPTZOID, INT8OID}},
	{CUT_SQL(""), 2, {TIMESTAMPTZOID, INT8OID}}
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

/*
 * Locks an operator row until commit (one assignment per operator at a
 * time; NO KEY UPDATE leaves foreign-key checks unblocked).  P0002 for an
 * unknown operator, 55000 for an inactive one when must_be_active.
 */
void
AlxOperatorLock(const char *operator_id, bool must_be_active, int *capacity, bool *active)
{
	Datum		values[1];
	bool		isnull;

	if (operator_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("operator_id must not be null")));
	values[0] = CStringGetTextDatum(operator_id);
	AlxPlanRun(&op_lock_plan, values, NULL, false, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("operator \"%s\" does not exist", operator_id)));
	*capacity = (int) AlxSpiInt8(0, 1, &isnull);
	*active = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (must_be_active && !*active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("operator \"%s\" is not active", operator_id),
				 errhint("Set alexandrite.operators.active to true to let the operator take orders.")));
}

/*
 * The open orders an operator holds, for a caller that holds the operator's
 * lock.  A missing row or a NULL count is "unknown": the load row is locked,
 * the orders counted and the count recorded, so a concurrent change either
 * committed before the count (and is in it) or applies its delta after.
 */
int
AlxOperatorLoad(const char *operator_id)
{
	Datum		values[2];
	bool		isnull = true;
	int64		n = 0;

	values[0] = CStringGetTextDatum(operator_id);
	AlxPlanRun(&load_plan, values, NULL, false, 1);
	if (SPI_processed == 1)
		n = AlxSpiInt8(0, 1, &isnull);
	if (!isnull)
		return (int) n;

	AlxPlanRun(&load_row_plan, values, NULL, false, 0);
	AlxPlanRun(&load_lock_plan, values, NULL, false, 1);
	if (SPI_processed == 1)
		n = AlxSpiInt8(0, 1, &isnull);
	if (!isnull)
		return (int) n;
	AlxPlanRun(&count_plan, values, NULL, false, 1);
	n = AlxSpiInt8(0, 1, &isnull);
	values[1] = Int32GetDatum((int32) n);
	AlxPlanRun(&load_set_plan, values, NULL, false, 0);
	return (int) n;
}

/*
 * Locks the most urgent pool order due before due_before, ranked at "at",
 * and reads it into row; false when every such order is taken or locked.
 *
 * Exact when fewer than lim candidates were skipped: a cut list's last
 * candidate ranks after all of that list's others (docs/sla.md, Lemma 1),
 * so it can precede the claimed row only if lim candidates did; otherwise
 * try again with a larger lim.  A row locked by a failed attempt stays
 * locked until commit, which only makes other claimers skip it meanwhile.
 * The claim and the check for a cut list read one snapshot: with a new one
 * for the check, candidates that were locked during the claim and taken
 * (committed) just after it would be gone from the count, and a cut list
 * would look complete, so the claim would report an empty pool.
 */
static bool
claim_order(TimestampTz at, TimestampTz due_before, AlxOrderRow *row)
{
	int64		lim = 4;
	int			unbounded = due_before == DT_NOEND ? 1 : 0;
	Datum		values[3];
	bool		isnull;

	values[0] = TimestampTzGetDatum(at);
	values[1] = TimestampTzGetDatum(due_before);
	for (;;)
	{
		/* READ COMMITTED (the callers check): a new snapshot per attempt */
		Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());

		values[2] = Int64GetDatum(lim);
		AlxPlanRunSnapshot(&claim_plans[unbounded], values, NULL, snap, false, 1);
		if (SPI_processed == 1)
		{
			int64		rank = AlxSpiInt8(0, ALX_ORDER_NCOLS + 1, &isnull);

			if (rank <= lim)
			{
				AlxOrderFromTuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, row);
				UnregisterSnapshot(snap);
				return true;
			}
		}
		else
		{
			Datum		cut[2];

			/* nothing lockable among the candidates: done unless a list was cut short */
			cut[0] = TimestampTzGetDatum(due_before);
			cut[1] = Int64GetDatum(lim);
			AlxPlanRunSnapshot(&cut_plans[unbounded], cut, NULL, snap, true, 1);
			if (SPI_processed == 0)
			{
				UnregisterSnapshot(snap);
				return false;
			}
		}
		UnregisterSnapshot(snap);
		CHECK_FOR_INTERRUPTS();
		lim *= 8;
	}
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
		claim_order(GetCurrentTransactionStartTimestamp(), DT_NOEND, &row))
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
	for (int i = 0; i < n; i++)
		if (unknown[i])
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
		if (!claim_order(now, until, &row))
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
