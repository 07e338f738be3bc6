/*-------------------------------------------------------------------------
 *
 * emit.c
 *	  Producer side of the outbox: wake the relay when a transaction that
 *	  wrote outbox events commits, and report the relay's state to SQL.
 *
 * The events themselves are written in the caller's transaction by
 * outbox_emit() and the order core (produce.c, src/core).  They call
 * AlxOutboxWakeupAtCommit(), which sets a backend-local flag; a transaction
 * callback sets the relay's latch once the commit is visible (XACT_EVENT_COMMIT runs after the transaction left the
 * proc array), as core does for the logical replication launcher.  A relay
 * that is not connected to a broker is not woken: it reads every committed
 * event once it connects.  Setting the latch signals the relay only while it
 * sleeps on it; under a stream of commits it does not sleep between its
 * rounds (relay.c, ROUND_GAP_MS), so most commits signal nobody.  Abort and
 * PREPARE clear the flag: a prepared transaction committed later is found by
 * the relay's fallback timer.
 *
 * IDENTIFICATION
 *	  src/outbox/emit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/timestamp.h"

#include "alexandrite.h"
#include "outbox/outbox.h"

static bool wakeup_pending = false;
static bool retry_poke_pending = false;
static bool callback_registered = false;

/* Sets the relay's latch at commit of a transaction that emitted. */
static void
outbox_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wakeup_pending && AlxOutbox != NULL)
			{
				int			procno;
				bool		connected;

				SpinLockAcquire(&AlxOutbox->mutex);
				procno = AlxOutbox->relay_pgprocno;
				connected = AlxOutbox->connected;
				if (retry_poke_pending)
					AlxOutbox->retry_poke = true;
				SpinLockRelease(&AlxOutbox->mutex);
				/* a relay without a broker drains everything once it connects */
				if (procno >= 0 && connected)
					SetLatch(&ProcGlobal->allProcs[procno].procLatch);
			}
			wakeup_pending = false;
			retry_poke_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wakeup_pending = false;
			retry_poke_pending = false;
			break;
		default:
			break;
	}
}

/* Arranges for the relay to be woken when the current transaction commits. */
void
AlxOutboxWakeupAtCommit(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(outbox_xact_callback, NULL);
		callback_registered = true;
	}
	wakeup_pending = true;
}

PG_FUNCTION_INFO_V1(alexandrite_outbox_wakeup_at_commit);

/*
 * SQL: wake the relay when the calling transaction commits, for a retry
 * round at once (outbox_requeue and outbox_discard change outbox_retry;
 * the relay otherwise looks there at most once per second while nothing
 * it knows of is due).
 */
Datum
alexandrite_outbox_wakeup_at_commit(PG_FUNCTION_ARGS)
{
	AlxOutboxWakeupAtCommit();
	retry_poke_pending = true;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(alexandrite_outbox_restoring);

/*
 * SQL 1.0 and 1.1 only (their order triggers call it; 1.2 has neither):
 * true while the top-level statement is a COPY.  Kept so that a database
 * still on the old SQL keeps working with this library until ALTER
 * EXTENSION alexandrite UPDATE.  1.2 does not guess from statement text:
 * its events come from the API (src/core).
 */
Datum
alexandrite_outbox_restoring(PG_FUNCTION_ARGS)
{
	const char *q = debug_query_string;

	if (q == NULL)
		PG_RETURN_BOOL(false);
	while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
		q++;
	PG_RETURN_BOOL(pg_strncasecmp(q, "copy", 4) == 0 &&
				   (q[4] == ' ' || q[4] == '\t' || q[4] == '\n'));
}

PG_FUNCTION_INFO_V1(alexandrite_outbox_relay_info);

/*
 * The relay's state from shared memory.  Broker URLs are stored masked, so
 * nothing here reveals a password.  Without preloading, all NULL.
 */
Datum
alexandrite_outbox_relay_info(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8];
	AlxOutboxShared snap;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	memset(nulls, 0, sizeof(nulls));

	if (AlxOutbox == NULL)
	{
		memset(nulls, 1, sizeof(nulls));
		values[1] = BoolGetDatum(false);
		nulls[1] = false;
		nulls[3] = false;
		values[3] = CStringGetTextDatum("alexandrite is not in shared_preload_libraries: no relay");
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	SpinLockAcquire(&AlxOutbox->mutex);
	memcpy(&snap, AlxOutbox, sizeof(snap));
	SpinLockRelease(&AlxOutbox->mutex);

	values[0] = Int32GetDatum(snap.relay_pid);
	nulls[0] = snap.relay_pid == 0;
	values[1] = BoolGetDatum(snap.relay_pid != 0 && snap.connected);
	snap.broker[ALX_OUTBOX_BROKERLEN - 1] = '\0';
	values[2] = CStringGetTextDatum(snap.broker);
	nulls[2] = snap.broker[0] == '\0';
	snap.last_error[ALX_OUTBOX_ERRLEN - 1] = '\0';
	values[3] = CStringGetTextDatum(snap.last_error);
	nulls[3] = snap.last_error[0] == '\0';
	values[4] = TimestampTzGetDatum(snap.last_error_at);
	nulls[4] = snap.last_error_at == 0;
	values[5] = Int64GetDatum((int64) snap.published);
	values[6] = Int64GetDatum((int64) snap.failed);
	values[7] = Int64GetDatum((int64) snap.reconnects);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(alexandrite_outbox_latency);

/*
 * The relay's histogram of created_at -> broker confirm latency since the
 * server started: cumulative counts per upper bound in ms (Prometheus
 * style; the last bound is +Infinity), and the sum in ms.
 */
Datum
alexandrite_outbox_latency(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	uint64		counts[ALX_OUTBOX_LAT_BUCKETS];
	double		sum = 0;
	uint64		cum = 0;

	InitMaterializedSRF(fcinfo, 0);
	memset(counts, 0, sizeof(counts));
	if (AlxOutbox != NULL)
	{
		SpinLockAcquire(&AlxOutbox->mutex);
		memcpy(counts, AlxOutbox->latency, sizeof(counts));
		sum = AlxOutbox->latency_sum_ms;
		SpinLockRelease(&AlxOutbox->mutex);
	}
	for (int b = 0; b < ALX_OUTBOX_LAT_BUCKETS; b++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		cum += counts[b];
		values[0] = Float8GetDatum(AlxOutboxLatencyBounds[b] < 0 ? get_float8_infinity() : AlxOutboxLatencyBounds[b]);
		values[1] = Int64GetDatum((int64) cum);
		values[2] = Float8GetDatum(sum);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
