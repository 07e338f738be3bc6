/*-------------------------------------------------------------------------
 *
 * relay_retry.c
 *	  The relay's retry and dead-letter policy: an event that failed, and every
 *	  later event of its aggregate, waits in outbox_retry and is tried again
 *	  with exponential backoff; after alexandrite.outbox_max_attempts it
 *	  moves to outbox_dead.  The events of an aggregate past the chunk's wave
 *	  bound (alexandrite.outbox_max_waves, publish_order.c) wait there too,
 *	  without an attempt counted or a delay: a round sends each aggregate's
 *	  first events up to the bound, in order, when its first one is due.
 *
 * IDENTIFICATION
 *	  src/outbox/relay_retry.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "alexandrite.h"
#include "outbox/relay.h"

#define RETRY_BASE_MS		1000
#define RETRY_MAX_MS		60000

static int
retry_delay_ms(int attempts)
{
	int64		ms = RETRY_BASE_MS;

	for (int i = 1; i < attempts && ms < RETRY_MAX_MS; i++)
		ms *= 2;
	return (int) Min(ms, RETRY_MAX_MS);
}

/*
 * Records a failed or held-back event of the stream in outbox_retry (or in
 * outbox_dead when it has no attempts left).
 */
void
AlxRelayRecordDiverted(AlxMsg *m)
{
	bool		failed = (m->state == ALX_MSG_FAILED);
	int			attempts = failed ? 1 : 0;
	Oid			types[4] = {INT8OID, INT4OID, INT4OID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(m->id);
	values[1] = Int32GetDatum(attempts);
	values[2] = Int32GetDatum(failed ? retry_delay_ms(1) : 0);
	if (m->error)
		values[3] = CStringGetTextDatum(m->error);
	else
		nulls[3] = 'n';

	/* an event that cannot be framed never will be: no retries */
	if (failed && (attempts >= alx_outbox_max_attempts || m->unframeable))
		AlxRelayExec("INSERT INTO alexandrite.outbox_dead (id, aggregate_type, aggregate_id, aggregate_seq,"
					 " event_type, payload, headers, created_at, attempts, reason)"
					 " SELECT e.id, e.aggregate_type, e.aggregate_id, e.aggregate_seq, e.event_type,"
					 " e.payload, e.headers, e.created_at, $2, $4"
					 " FROM alexandrite.outbox_events e WHERE e.id OPERATOR(pg_catalog.=) $1"
					 " ON CONFLICT (id) DO NOTHING",
					 4, types, values, nulls, SPI_OK_INSERT);
	else
		AlxRelayExec("INSERT INTO alexandrite.outbox_retry (id, aggregate_type, aggregate_id, aggregate_seq,"
					 " event_type, payload, headers, created_at, attempts, next_attempt_at, last_error)"
					 " SELECT e.id, e.aggregate_type, e.aggregate_id, e.aggregate_seq, e.event_type,"
					 " e.payload, e.headers, e.created_at, $2,"
					 " pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3 OPERATOR(pg_catalog./) 1000.0), $4"
					 " FROM alexandrite.outbox_events e WHERE e.id OPERATOR(pg_catalog.=) $1"
					 " ON CONFLICT (id) DO NOTHING",
					 4, types, values, nulls, SPI_OK_INSERT);
}

/* events per aggregate in a retry round, as in a chunk of the stream */
#define RETRY_WAVES() (alx_outbox_max_waves > 0 ? alx_outbox_max_waves : 16)

/*
 * Publishes the first events (up to the wave bound) of every aggregate in
 * outbox_retry whose first event is due, in waves.  Whether an event is due
 * is its aggregate's first event's next_attempt_at: a failed head has a
 * later one than the events held behind it.  Sets *wait_ms to the time until
 * the next head is due.  Same return values as AlxRelayDrainStream().
 */
int
AlxRelayProcessRetries(int *wait_ms)
{
	AlxMsg	   *msgs;
	int			n;
	int			ndue = 0;
	char		err[ALX_OUTBOX_ERRLEN];
	uint64		nok = 0;
	uint64		nfail = 0;
	int			nnacked = 0;

	MemoryContextReset(AlxRelayRoundCxt);
	AlxRelayBeginTxn("alexandrite relay: reading retries");
	if (!AlxRelayOutboxInstalled())
	{
		AlxRelayEndTxn();
		return 0;
	}
	{
		Oid			types[2] = {INT4OID, INT8OID};
		Datum		values[2];

		values[0] = Int32GetDatum(alx_outbox_batch_size);
		values[1] = Int64GetDatum((int64) RETRY_WAVES());
		/*
		 * The heads (first events) of at most $1 aggregates, the soonest
		 * due first; then up to $2 events of each, in id order, when its
		 * head has neither failed nor been requeued (a failed head goes
		 * alone: the events behind it would wait for it anyway).
		 */
		AlxRelayExecKept("WITH h AS (SELECT DISTINCT ON (q.aggregate_type, q.aggregate_id)"
					 "                  q.aggregate_type, q.aggregate_id, q.id AS head_id,"
					 "                  q.next_attempt_at AS head_at,"
					 "                  q.attempts OPERATOR(pg_catalog.>) 0 OR q.last_error IS NOT NULL AS failed"
					 "             FROM alexandrite.outbox_retry q"
					 "            ORDER BY q.aggregate_type, q.aggregate_id, q.id),"
					 "     heads AS (SELECT h.* FROM h"
					 "                WHERE NOT EXISTS (SELECT 1 FROM alexandrite.outbox_dead d"
					 "                                   WHERE d.aggregate_type OPERATOR(pg_catalog.=) h.aggregate_type"
					 "                                     AND d.aggregate_id OPERATOR(pg_catalog.=) h.aggregate_id)"
					 "                ORDER BY h.head_at, h.head_id LIMIT $1) "
					 "SELECT " ALX_RELAY_EVENT_COLS("e") ","
					 " heads.head_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp(), e.attempts,"
					 " (pg_catalog.date_part('epoch', heads.head_at OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())"
					 "   OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8"
					 " FROM heads CROSS JOIN LATERAL"
					 "      (SELECT q.* FROM alexandrite.outbox_retry q"
					 "        WHERE q.aggregate_type OPERATOR(pg_catalog.=) heads.aggregate_type"
					 "          AND q.aggregate_id OPERATOR(pg_catalog.=) heads.aggregate_id"
					 "        ORDER BY q.id LIMIT CASE WHEN heads.failed THEN 1 ELSE $2 END) e"
					 " ORDER BY heads.head_at, heads.head_id, e.id",
					 2, types, values, NULL, SPI_OK_SELECT, 0);
		/* at most ALX_RELAY_CHUNK_MAX_BYTES of heads per round: the rest wait */
		msgs = AlxRelayReadMsgs(&n, 2, &(int64) {ALX_RELAY_CHUNK_MAX_BYTES});
		for (int i = 0; i < n; i++)
		{
			bool		isnull;
			int64		ms = AlxRelayGetInt8(i, 12, &isnull);

			/* column 10 (read as divert) is "due": flip it to mean "skip" */
			msgs[i].divert = !msgs[i].divert;
			if (msgs[i].divert)
				*wait_ms = (int) Max(Min((int64) *wait_ms, ms), 10);
			else
				ndue++;
		}
	}
	AlxRelayEndTxn();
	if (ndue == 0)
		return 0;
	if (!AlxRelayEnsureConnected())
		return -1;
	if (!AlxRelayFlushWal())
		return 0;

	{
		MemoryContext old = MemoryContextSwitchTo(AlxRelayRoundCxt);
		bool		ok;

		/* each aggregate's events in order, one wave after the other */
		AlxOutboxOrderByWave(msgs, n, 0);
		ok = AlxRelayPublishRound(msgs, n, err, sizeof(err));

		MemoryContextSwitchTo(old);
		AlxAmqpEndRound();
		if (!ok)
		{
			AlxRelayConnectionBroken(err);
			return -1;
		}
	}

	AlxRelayBeginTxn("alexandrite relay: recording retries");
	for (int i = 0; i < n; i++)
	{
		AlxMsg	   *m = &msgs[i];
		Oid			types[4] = {INT8OID, INT4OID, INT4OID, TEXTOID};
		Datum		values[4];
		int			attempts = m->attempts + 1;

		if (m->divert)
			continue;
		values[0] = Int64GetDatum(m->id);
		if (m->state == ALX_MSG_CONFIRMED)
		{
			nok++;
			AlxRelayExec("DELETE FROM alexandrite.outbox_retry WHERE id OPERATOR(pg_catalog.=) $1",
						 1, types, values, NULL, SPI_OK_DELETE);
			continue;
		}
		nfail++;
		nnacked += ALX_RELAY_NACKED(m);
		values[1] = Int32GetDatum(attempts);
		values[2] = Int32GetDatum(retry_delay_ms(attempts));
		values[3] = CStringGetTextDatum(m->error ? m->error : "failed");
		{
			char		msg[ALX_OUTBOX_ERRLEN];

			snprintf(msg, sizeof(msg), "event %lld (%s %s seq %lld), attempt %d: %s",
					 (long long) m->id, m->aggregate_type, m->aggregate_id,
					 (long long) m->aggregate_seq, attempts, m->error ? m->error : "failed");
			AlxRelaySetError(msg);
		}
		if (attempts >= alx_outbox_max_attempts || m->unframeable)
			AlxRelayExec("WITH m AS (DELETE FROM alexandrite.outbox_retry q WHERE q.id OPERATOR(pg_catalog.=) $1 RETURNING q.*)"
						 " INSERT INTO alexandrite.outbox_dead (id, aggregate_type, aggregate_id, aggregate_seq,"
						 " event_type, payload, headers, created_at, attempts, reason)"
						 " SELECT m.id, m.aggregate_type, m.aggregate_id, m.aggregate_seq, m.event_type,"
						 " m.payload, m.headers, m.created_at, $2, $4 FROM m"
						 " WHERE $3 OPERATOR(pg_catalog.>=) 0",
						 4, types, values, NULL, SPI_OK_INSERT);
		else
			AlxRelayExec("UPDATE alexandrite.outbox_retry SET attempts = $2, last_error = $4,"
						 " next_attempt_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+)"
						 "   pg_catalog.make_interval(secs => $3 OPERATOR(pg_catalog./) 1000.0)"
						 " WHERE id OPERATOR(pg_catalog.=) $1",
						 4, types, values, NULL, SPI_OK_UPDATE);
	}
	if (nok > 0)
	{
		Oid			types[1] = {INT8OID};
		Datum		values[1];

		values[0] = Int64GetDatum((int64) nok);
		AlxRelayExec("UPDATE alexandrite.outbox_relay SET published_total = published_total OPERATOR(pg_catalog.+) $1",
					 1, types, values, NULL, SPI_OK_UPDATE);
	}
	AlxRelayEndTxn();
	AlxRelayCount(nok, nfail);
	AlxRelayCountLatency(msgs, n);
	if (nnacked > 0)
		AlxRelayReopenAfterNacks();
	return nok > 0 ? 1 : 0;
}
