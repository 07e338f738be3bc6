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

#include "access/genam.h"
#include "access/relation.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_opclass.h"
#include "common/hashfn.h"
#include "catalog/pg_type.h"
#include "pgstat.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

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
 * When the relay's loop runs a retry round (relay.c): at the next turn when
 * AlxRelayRetryNow (the stream held back events of an aggregate by the wave
 * bound: its first one waiting may be due at once), else from
 * AlxRelayRetryDueAt on (the soonest first event a round saw, or a failure
 * the stream recorded).
 */
bool		AlxRelayRetryNow = true;
TimestampTz AlxRelayRetryDueAt = 0;

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

	/*
	 * A new first waiting event: due at once when held back by the wave
	 * bound, after the first backoff when it failed.  An event diverted
	 * because its aggregate already waits changes no first event.
	 */
	if (m->wave_held)
		AlxRelayRetryNow = true;
	else if (failed)
		AlxRelayRetryDueAt = Min(AlxRelayRetryDueAt,
								 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), retry_delay_ms(1)));
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

/*
 * Probes for "does this aggregate wait?" (AlxRelayProbeBegin): the index on
 * (aggregate_type, aggregate_id, id) of outbox_retry and of outbox_dead, each
 * scanned by one descent per aggregate in the snapshot of the caller's
 * query, and the answers of the chunk so far.
 */
typedef struct ProbeIndex
{
	Relation	rel;
	AttrNumber	attno[2];		/* aggregate_type, aggregate_id */
	Oid			coll[2];
	Relation	idx;			/* NULL: not to be trusted, read the table */
	IndexScanDesc scan;
	TupleTableSlot *slot;
} ProbeIndex;

typedef struct ProbeKey
{
	const char *type;
	const char *id;
} ProbeKey;

typedef struct ProbeEntry
{
	ProbeKey	key;
	bool		waits;
} ProbeEntry;

struct AlxAggregateProbe
{
	ProbeIndex	t[2];
	HTAB	   *seen;
};

static uint32
probe_key_hash(const void *key, Size keysize)
{
	const ProbeKey *k = key;

	return hash_combine(hash_bytes((const unsigned char *) k->type, strlen(k->type)),
						hash_bytes((const unsigned char *) k->id, strlen(k->id)));
}

static int
probe_key_match(const void *key1, const void *key2, Size keysize)
{
	const ProbeKey *a = key1;
	const ProbeKey *b = key2;

	return strcmp(a->type, b->type) != 0 || strcmp(a->id, b->id) != 0;
}

/*
 * Opens table and its index, which must be a valid, complete btree on
 * (aggregate_type, aggregate_id, ...) of every row: a probe of anything else
 * could miss a waiting event and publish its successor ahead of it.  An
 * index it cannot trust (AlxIndexTrusted: not valid or not ready, as CREATE
 * INDEX CONCURRENTLY leaves one that failed, dropped under the name, partial,
 * not a btree on those columns in text_ops under their collations) is not used: the probes then read the table (correct,
 * slower), with a WARNING at most once a minute.
 */
static void
probe_open(ProbeIndex *pi, const char *table, const char *index)
{
	static const Oid text_ops[2] = {TEXT_BTREE_OPS_OID, TEXT_BTREE_OPS_OID};
	static TimestampTz warned_at = 0;
	TupleDesc	desc;

	pi->rel = AlxRelationOpen(table, AccessShareLock, false);
	desc = RelationGetDescr(pi->rel);
	pi->attno[0] = get_attnum(RelationGetRelid(pi->rel), "aggregate_type");
	pi->attno[1] = get_attnum(RelationGetRelid(pi->rel), "aggregate_id");
	if (pi->attno[0] <= 0 || pi->attno[1] <= 0)
		elog(ERROR, "alexandrite relay: alexandrite.%s has no aggregate_type or aggregate_id", table);
	pi->coll[0] = TupleDescAttr(desc, pi->attno[0] - 1)->attcollation;
	pi->coll[1] = TupleDescAttr(desc, pi->attno[1] - 1)->attcollation;
	pi->idx = AlxRelationOpen(index, AccessShareLock, true);
	if (pi->idx != NULL && !AlxIndexTrusted(pi->rel, pi->idx, 2, pi->attno, text_ops, false))
	{
		relation_close(pi->idx, NoLock);
		pi->idx = NULL;
	}
	pi->slot = table_slot_create(pi->rel, NULL);
	if (pi->idx != NULL)
	{
		pi->scan = index_beginscan(pi->rel, pi->idx, GetActiveSnapshot(), 2, 0);
		return;
	}
	pi->scan = NULL;
	if (TimestampDifferenceExceeds(warned_at, GetCurrentTimestamp(), 60000))
	{
		warned_at = GetCurrentTimestamp();
		ereport(WARNING,
				(errmsg("alexandrite relay: index alexandrite.%s is missing or not a valid btree on (aggregate_type, aggregate_id) of every row of %s: reading the table instead",
						index, table),
				 errhint("REINDEX INDEX alexandrite.%s as the extension's owner.", index)));
	}
}

static bool
probe_one(ProbeIndex *pi, Datum type, Datum id)
{
	ScanKeyData keys[2];
	bool		found;

	if (pi->scan == NULL)
	{
		TableScanDesc ts;

		/* no index to trust: the table's rows, in the same snapshot */
		ScanKeyEntryInitialize(&keys[0], 0, pi->attno[0], BTEqualStrategyNumber, InvalidOid,
							   pi->coll[0], F_TEXTEQ, type);
		ScanKeyEntryInitialize(&keys[1], 0, pi->attno[1], BTEqualStrategyNumber, InvalidOid,
							   pi->coll[1], F_TEXTEQ, id);
		ts = table_beginscan(pi->rel, GetActiveSnapshot(), 2, keys);
		found = table_scan_getnextslot(ts, ForwardScanDirection, pi->slot);
		ExecClearTuple(pi->slot);
		table_endscan(ts);
		return found;
	}
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   pi->idx->rd_indcollation[0], F_TEXTEQ, type);
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   pi->idx->rd_indcollation[1], F_TEXTEQ, id);
	index_rescan(pi->scan, keys, 2, NULL, 0);
	found = index_getnext_slot(pi->scan, ForwardScanDirection, pi->slot);
	ExecClearTuple(pi->slot);
	return found;
}

static void
probe_close(ProbeIndex *pi)
{
	if (pi->scan != NULL)
		index_endscan(pi->scan);
	ExecDropSingleTupleTableSlot(pi->slot);
	/* the locks are kept to the end of the transaction */
	if (pi->idx != NULL)
		index_close(pi->idx, NoLock);
	table_close(pi->rel, NoLock);
}

/*
 * Starts answering whether aggregates wait in outbox_retry or outbox_dead (a
 * new event of one that does must wait behind its events there), in the
 * active snapshot, until AlxRelayProbeEnd.  Index probes, not a query: the
 * stream asks for every aggregate of every chunk, and a kept plan rebuilt
 * while outbox_retry was empty read that table whole for each event (TAP
 * 047 part 5: 275k to 600k entries read for 300 chunks of 2 events).
 */
AlxAggregateProbe *
AlxRelayProbeBegin(void)
{
	AlxAggregateProbe *p = palloc0(sizeof(AlxAggregateProbe));
	HASHCTL		ctl;

	probe_open(&p->t[0], "outbox_retry", "outbox_retry_aggregate_idx");
	probe_open(&p->t[1], "outbox_dead", "outbox_dead_aggregate_idx");
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(ProbeKey);
	ctl.entrysize = sizeof(ProbeEntry);
	ctl.hash = probe_key_hash;
	ctl.match = probe_key_match;
	ctl.hcxt = CurrentMemoryContext;
	p->seen = hash_create("alexandrite relay aggregate probes", 64, &ctl,
						  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	return p;
}

/*
 * Whether events of the aggregate wait: one descent of each index the first
 * time the aggregate is asked for.  The strings must live until
 * AlxRelayProbeEnd.
 */
bool
AlxRelayProbeWaits(AlxAggregateProbe *p, const char *aggregate_type, const char *aggregate_id)
{
	ProbeKey	key = {aggregate_type, aggregate_id};
	ProbeEntry *e;
	bool		found;

	e = hash_search(p->seen, &key, HASH_ENTER, &found);
	if (!found)
	{
		Datum		type = PointerGetDatum(cstring_to_text(aggregate_type));
		Datum		id = PointerGetDatum(cstring_to_text(aggregate_id));

		CHECK_FOR_INTERRUPTS();
		e->waits = probe_one(&p->t[0], type, id) || probe_one(&p->t[1], type, id);
		pfree(DatumGetPointer(type));
		pfree(DatumGetPointer(id));
	}
	return e->waits;
}

void
AlxRelayProbeEnd(AlxAggregateProbe *p)
{
	probe_close(&p->t[0]);
	probe_close(&p->t[1]);
	hash_destroy(p->seen);
	pfree(p);
}

/* a waiting aggregate's head: its first event (alias q), due time, whether it failed */
#define RETRY_HEAD_COLS \
	"q.aggregate_type, q.aggregate_id, q.id AS head_id, q.next_attempt_at AS head_at," \
	" q.attempts OPERATOR(pg_catalog.>) 0 OR q.last_error IS NOT NULL AS failed"

/*
 * How many aggregates the retry round's skip scan may visit before it gives
 * way to one pass over outbox_retry: a sixteenth of the table's rows (the
 * statistics' count, which lags by a second at most), at least 64.
 */
static int64
retry_skip_cap(void)
{
	Oid			relid = AlxRelid("outbox_retry", true);
	PgStat_StatTabEntry *st = OidIsValid(relid) ? pgstat_fetch_stat_tabentry(relid) : NULL;
	int64		rows = st != NULL ? (int64) st->n_live_tuples : 0;

	return Max((int64) 64, rows / 16);
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

	AlxRelayRetryNow = false;
	MemoryContextReset(AlxRelayRoundCxt);
	AlxRelayBeginTxn("alexandrite relay: reading retries");
	if (!AlxRelayOutboxInstalled())
	{
		AlxRelayEndTxn();
		return 0;
	}
	{
		Oid			types[3] = {INT4OID, INT8OID, INT8OID};
		Datum		values[3];

		values[0] = Int32GetDatum(alx_outbox_batch_size);
		values[1] = Int64GetDatum((int64) RETRY_WAVES());
		values[2] = Int64GetDatum(retry_skip_cap());
		/*
		 * The heads (first events) of at most $1 aggregates, the soonest
		 * due first; then up to $2 events of each, in id order, when its
		 * head has neither failed nor been requeued (a failed head goes
		 * alone: the events behind it would wait for it anyway).
		 *
		 * The heads of every waiting aggregate are found by a skip scan
		 * of outbox_retry_aggregate_idx (s: one index descent per
		 * aggregate), so a round reads per aggregate, not per waiting
		 * event: one aggregate with 100k events diverted behind the wave
		 * bound drains in 6k rounds that read a few dozen entries each,
		 * where a DISTINCT ON over the table read all that was left in
		 * each.  A descent costs about as much as reading 16 rows in
		 * order, so with more than $3 aggregates waiting (retry_skip_cap:
		 * a sixteenth of the table's rows, at least 64) the skip scan stops
		 * after $3 + 1 descents and the DISTINCT ON reads the table (each
		 * branch is guarded by an InitPlan over the count of the
		 * materialised s: the branch not taken is never run).  Either way
		 * a round reads about as much as the cheaper of the two.  Whether
		 * an aggregate has a dead letter is an index probe per head, not a
		 * hash of all of outbox_dead.  Planned at each round (rounds run
		 * when they may have work, or once a second: relay.c), from the
		 * tables' sizes at that moment: a plan kept from a moment when
		 * outbox_retry or outbox_dead was empty would read them whole.
		 */
		AlxRelayExecKept("WITH RECURSIVE s AS ("
					 "       (SELECT " RETRY_HEAD_COLS ", 1 AS k FROM alexandrite.outbox_retry q"
					 "         ORDER BY q.aggregate_type, q.aggregate_id, q.id LIMIT 1)"
					 "       UNION ALL"
					 "       SELECT n.*, s.k OPERATOR(pg_catalog.+) 1 FROM s CROSS JOIN LATERAL"
					 "              (SELECT " RETRY_HEAD_COLS " FROM alexandrite.outbox_retry q"
					 "                WHERE ROW(q.aggregate_type, q.aggregate_id)"
					 "                      OPERATOR(pg_catalog.>) ROW(s.aggregate_type, s.aggregate_id)"
					 "                ORDER BY q.aggregate_type, q.aggregate_id, q.id LIMIT 1) n"
					 "        WHERE s.k OPERATOR(pg_catalog.<=) $3),"
					 "     h AS (SELECT s.aggregate_type, s.aggregate_id, s.head_id, s.head_at, s.failed FROM s"
					 "            WHERE (SELECT pg_catalog.count(*) FROM s) OPERATOR(pg_catalog.<=) $3"
					 "           UNION ALL"
					 "           (SELECT DISTINCT ON (q.aggregate_type, q.aggregate_id) " RETRY_HEAD_COLS
					 "              FROM alexandrite.outbox_retry q"
					 "             WHERE (SELECT pg_catalog.count(*) FROM s) OPERATOR(pg_catalog.>) $3"
					 "             ORDER BY q.aggregate_type, q.aggregate_id, q.id)),"
					 "     heads AS (SELECT h.* FROM h"
					 "                WHERE (SELECT true FROM alexandrite.outbox_dead d"
					 "                        WHERE d.aggregate_type OPERATOR(pg_catalog.=) h.aggregate_type"
					 "                          AND d.aggregate_id OPERATOR(pg_catalog.=) h.aggregate_id LIMIT 1) IS NULL"
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
					 3, types, values, NULL, SPI_OK_SELECT, CURSOR_OPT_CUSTOM_PLAN);
		/* at most ALX_RELAY_CHUNK_MAX_BYTES of heads per round: the rest wait */
		msgs = AlxRelayReadMsgs(&n, 2, &(int64) {ALX_RELAY_CHUNK_MAX_BYTES});
		for (int i = 0; i < n; i++)
		{
			bool		isnull;
			int64		ms = AlxRelayGetInt8(i, ALX_RELAY_EVENT_NCOLS + 3, &isnull);

			/* the first extra column (read as divert) is "due": flip it to mean "skip" */
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
	{
		AlxRelayRetryNow = true;	/* due heads: again at the next turn */
		return 0;
	}

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
