/*-------------------------------------------------------------------------
 *
 * deadletter.c
 *	  What an operator does with dead letters: put them back in line
 *	  (outbox_requeue) or drop them for good (outbox_discard).
 *
 * One implementation behind both: the same argument checks, then one
 * statement compiled here, prepared once per backend, run as the extension
 * owner (privilege.c) because outbox_dead and outbox_retry are writable by
 * the owner alone.  The functions themselves are SECURITY INVOKER and
 * EXECUTE is granted to the operations role only (docs/operations.md,
 * "Privileges"): being allowed to call them is the whole check.  The ids are
 * the only caller value, and they are a parameter.
 *
 * IDENTIFICATION
 *	  src/outbox/deadletter.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "alexandrite.h"
#include "outbox/outbox.h"

typedef enum DeadAction
{
	DEAD_REQUEUE,
	DEAD_DISCARD
} DeadAction;

/*
 * The statements, by action: requeue moves the rows back into line; discard
 * moves them to outbox_discarded without their payload (which event, why it
 * was dead, who dropped it), so that the outbox view says "discarded".  An
 * event discarded, requeued from a restore and discarded again keeps one row.
 */
static const char *const dead_sql[] = {
	[DEAD_REQUEUE] =
	"WITH moved AS (DELETE FROM alexandrite.outbox_dead d"
	"                WHERE d.id OPERATOR(pg_catalog.=) ANY ($1) RETURNING d.*)"
	" INSERT INTO alexandrite.outbox_retry (id, aggregate_type, aggregate_id, aggregate_seq, event_type,"
	"                                       payload, headers, created_at, attempts, next_attempt_at, last_error)"
	" SELECT m.id, m.aggregate_type, m.aggregate_id, m.aggregate_seq, m.event_type, m.payload, m.headers,"
	"        m.created_at, 0, pg_catalog.now(), 'requeued after: ' OPERATOR(pg_catalog.||) m.reason"
	"   FROM moved m",
	[DEAD_DISCARD] =
	"WITH dropped AS (DELETE FROM alexandrite.outbox_dead d"
	"                  WHERE d.id OPERATOR(pg_catalog.=) ANY ($1) RETURNING d.*)"
	" INSERT INTO alexandrite.outbox_discarded (id, aggregate_type, aggregate_id, aggregate_seq, event_type,"
	"                                           created_at, attempts, reason, discarded_by)"
	" SELECT m.id, m.aggregate_type, m.aggregate_id, m.aggregate_seq, m.event_type,"
	"        m.created_at, m.attempts, m.reason, $2"
	"   FROM dropped m"
	" ON CONFLICT (id) DO UPDATE SET attempts = excluded.attempts, reason = excluded.reason,"
	"        discarded_at = excluded.discarded_at, discarded_by = excluded.discarded_by",
};

static SPIPlanPtr dead_plan[lengthof(dead_sql)];

/* the relay is woken when the calling transaction commits (emit.c) */
extern Datum alexandrite_outbox_wakeup_at_commit(PG_FUNCTION_ARGS);

/*
 * Checks the ids argument, runs the action's statement as the extension
 * owner and returns how many dead letters it moved or dropped.
 */
static int64
dead_letters_act(FunctionCallInfo fcinfo, DeadAction action)
{
	ArrayType  *ids;
	Datum		values[2];
	Oid			types[2] = {INT8ARRAYOID, NAMEOID};
	NameData	caller;
	AlxSavedUser save;
	int			ret;
	int64		n;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("ids must not be null")));
	ids = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(ids) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ids must be a one-dimensional array of outbox event ids")));
	values[0] = PointerGetDatum(ids);
	/* the role that called, before the switch to the extension owner */
	namestrcpy(&caller, GetUserNameFromId(GetUserId(), false));
	values[1] = NameGetDatum(&caller);

	AlxBecomeOwner(&save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	if (dead_plan[action] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(dead_sql[action], action == DEAD_REQUEUE ? 1 : 2, types);

		if (plan == NULL)
			elog(ERROR, "could not prepare the dead letter statement: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		dead_plan[action] = plan;
	}
	ret = SPI_execute_plan(dead_plan[action], values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "dead letter statement failed: %s", SPI_result_code_string(ret));
	n = (int64) SPI_processed;
	SPI_finish();
	AlxRestoreUser(&save);

	/* the relay may publish the aggregates this unblocks */
	{
		LOCAL_FCINFO(wake, 0);

		InitFunctionCallInfoData(*wake, NULL, 0, InvalidOid, NULL, NULL);
		(void) alexandrite_outbox_wakeup_at_commit(wake);
	}
	return n;
}

PG_FUNCTION_INFO_V1(alexandrite_outbox_requeue);

/* Puts the named dead letters back in line; returns how many. */
Datum
alexandrite_outbox_requeue(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(dead_letters_act(fcinfo, DEAD_REQUEUE));
}

PG_FUNCTION_INFO_V1(alexandrite_outbox_discard);

/* Drops the named dead letters for good, unblocking their aggregates; returns how many. */
Datum
alexandrite_outbox_discard(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(dead_letters_act(fcinfo, DEAD_DISCARD));
}
