/*-------------------------------------------------------------------------
 *
 * escalate.c
 *	  escalate_overdue: record each open order past its due time in
 *	  sla_breaches, once, with its order.sla_breached event.
 *
 * A run that finds another in progress returns 0 at once.  It looks at the
 * due times since the previous run minus an hour (the margin for orders
 * committed after a run looked past their due time), or at every open
 * order when a full scan is due (hourly), asked for, or requested by a
 * back-dated write (sla_escalation_state.scan_from NULL, set by the orders
 * maintenance trigger).  Each candidate goes through the order core: its
 * row is locked and read again (a concurrent change may have closed it),
 * and the breach row, the bumped event_seq and the event are one
 * statement (AlxOrderWriteBreach).
 *
 * IDENTIFICATION
 *	  src/sla/escalate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "core/core.h"
#include "sla/sla.h"

static AlxPlan state_plan = {
	"SELECT s.scan_from, s.last_full_scan FROM alexandrite.sla_escalation_state s FOR UPDATE",
	0, {InvalidOid}
};

static AlxPlan state_row_plan = {
	"INSERT INTO alexandrite.sla_escalation_state (singleton) VALUES (true)"
	" ON CONFLICT DO NOTHING",
	0, {InvalidOid}
};

static AlxPlan state_done_plan = {
	"UPDATE alexandrite.sla_escalation_state s"
	"   SET scan_from = $1 OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval,"
	"       last_run = $1,"
	"       last_full_scan = CASE WHEN $2 THEN $1 ELSE s.last_full_scan END",
	2, {TIMESTAMPTZOID, BOOLOID}
};

/* every open order past due, not yet recorded */
static AlxPlan full_plan = {
	"SELECT o.id FROM alexandrite.orders o"
	" WHERE o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status"
	"   AND o.sla_due_at OPERATOR(pg_catalog.<) $1"
	"   AND NOT EXISTS (SELECT 1 FROM alexandrite.sla_breaches x"
	"                    WHERE x.order_id OPERATOR(pg_catalog.=) o.id)"
	" ORDER BY o.sla_due_at, o.id",
	1, {TIMESTAMPTZOID}
};

/* the window since the last run: a range scan per channel */
static AlxPlan window_plan = {
	"SELECT o.id FROM alexandrite.orders o"
	" WHERE o.channel OPERATOR(pg_catalog.=) ANY (alexandrite.sla_channels())"
	"   AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status"
	"   AND o.sla_due_at OPERATOR(pg_catalog.>=) $2"
	"   AND o.sla_due_at OPERATOR(pg_catalog.<) $1"
	"   AND NOT EXISTS (SELECT 1 FROM alexandrite.sla_breaches x"
	"                    WHERE x.order_id OPERATOR(pg_catalog.=) o.id)"
	" ORDER BY o.sla_due_at, o.id",
	2, {TIMESTAMPTZOID, TIMESTAMPTZOID}
};

/* key of escalate_overdue's lock (AlxLockInternal): 'ALXE' */
#define ALX_ESCALATE_LOCK_KEY	0x414C5845

PG_FUNCTION_INFO_V1(alexandrite_escalate_overdue);

/* escalate_overdue(full_scan): the number of orders newly recorded as breached. */
Datum
alexandrite_escalate_overdue(PG_FUNCTION_ARGS)
{
	bool		full = !PG_ARGISNULL(0) && PG_GETARG_BOOL(0);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	AlxSavedUser save;
	bool		isnull;
	TimestampTz from = 0;
	bool		windowed = false;
	int64	   *ids;
	int			n;
	int64		recorded = 0;
	Datum		values[2];

	/* one run at a time: another one in progress makes this one a no-op */
	if (!AlxLockInternal(ALX_LOCK_ESCALATE, ALX_ESCALATE_LOCK_KEY, 0, false))
		PG_RETURN_INT64(0);

	AlxCoreBegin(&save);
	/* the state row lock also orders us after a concurrent back-dating write */
	AlxPlanRun(&state_plan, NULL, NULL, false, 1);
	if (SPI_processed == 0)
		AlxPlanRun(&state_row_plan, NULL, NULL, false, 0);
	else
	{
		Datum		f = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		bool		fnull = isnull;
		Datum		l = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

		if (!full && !fnull && !isnull &&
			DatumGetTimestampTz(l) >= now - USECS_PER_HOUR)
		{
			from = DatumGetTimestampTz(f);
			windowed = true;
		}
	}

	values[0] = TimestampTzGetDatum(now);
	values[1] = TimestampTzGetDatum(from);
	AlxPlanRun(windowed ? &window_plan : &full_plan, values, NULL, false, 0);
	n = (int) SPI_processed;
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
		ids[i] = AlxSpiInt8(i, 1, &isnull);

	for (int i = 0; i < n; i++)
	{
		AlxOrderRow row;

		CHECK_FOR_INTERRUPTS();
		if (!AlxOrderLock(ids[i], &row, true))
			continue;			/* deleted meanwhile */
		if (!ALX_STATUS_OPEN(row.status) || row.sla_due_at >= now)
			continue;			/* closed or given more time meanwhile */
		if (AlxOrderWriteBreach(&row, now))
			recorded++;
	}

	values[1] = BoolGetDatum(!windowed);
	AlxPlanRun(&state_done_plan, values, NULL, false, 0);
	AlxCoreEnd(&save);
	PG_RETURN_INT64(recorded);
}
