/*-------------------------------------------------------------------------
 *
 * relay_batch.c
 *	  The relay's batch reader: the stream of newly committed events, read
 *	  batch by batch (two snapshots) and chunk by chunk (id ranges), published
 *	  and recorded with the relay's cursor.
 *
 * IDENTIFICATION
 *	  src/outbox/relay_batch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "postmaster/interrupt.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "alexandrite.h"
#include "outbox/relay.h"

static SPIPlanPtr chunk_plan = NULL;

/* the last AlxRelayDrainStream stopped with events left to read */
bool		AlxRelayBacklog = false;

/* a header and its text, for the sort of read_headers */
typedef struct HeaderPair
{
	char	   *key;
	int			keylen;
	char	   *value;
} HeaderPair;

static int
header_cmp(const void *a, const void *b)
{
	const HeaderPair *ha = (const HeaderPair *) a;
	const HeaderPair *hb = (const HeaderPair *) b;

	return varstr_cmp(ha->key, ha->keylen, hb->key, hb->keylen, DEFAULT_COLLATION_OID);
}

/*
 * The headers of an event as the relay sends them: each value as
 * jsonb_each_text() gives it (a string as itself, null as "", anything else
 * as its JSON text), in the order of the names under the database's
 * collation, as ORDER BY key over jsonb_each_text() gave them when the
 * relay read them in SQL (which cost 7 % of the relay's CPU).  The producer
 * stores objects only; anything else (written into the table by hand) is
 * sent without headers rather than stopping the stream.  Each header costs
 * its name and value from *budget.
 */
static void
read_headers(AlxMsg *m, Jsonb *jb, int64 *budget)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;
	JsonbValue	v;
	HeaderPair *pairs;
	int			n = 0;
	int			cap;

	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb) || JB_ROOT_COUNT(jb) == 0)
		return;
	cap = JB_ROOT_COUNT(jb);
	pairs = palloc(sizeof(HeaderPair) * cap);
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		HeaderPair *h;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE && n < cap);
		h = &pairs[n++];
		h->key = pnstrdup(k.val.string.val, k.val.string.len);
		h->keylen = k.val.string.len;
		if (v.type == jbvString)
			h->value = pnstrdup(v.val.string.val, v.val.string.len);
		else if (v.type == jbvNull)
			h->value = pstrdup("");
		else
		{
			Jsonb	   *vj = JsonbValueToJsonb(&v);

			h->value = JsonbToCString(NULL, &vj->root, VARSIZE(vj));
		}
	}
	if (n > 1)
		qsort(pairs, n, sizeof(HeaderPair), header_cmp);
	m->nheaders = n;
	m->hkeys = palloc(sizeof(char *) * Max(n, 1));
	m->hvalues = palloc(sizeof(char *) * Max(n, 1));
	for (int j = 0; j < n; j++)
	{
		m->hkeys[j] = pairs[j].key;
		m->hvalues[j] = pairs[j].value;
		if (budget != NULL)
			*budget -= (int64) pairs[j].keylen + strlen(pairs[j].value);
	}
	pfree(pairs);
}

/*
 * Reads the rows of the SPI result into messages (in AlxRelayRoundCxt), in
 * order.  With a budget, stops before a row once *budget is spent (so the
 * first row is always read): each row costs the size of its payload as
 * stored, before it is detoasted or converted to text, plus its headers.
 * *nout is the number of rows read.
 */
AlxMsg *
AlxRelayReadMsgs(int *nout, int extra_cols, int64 *budget)
{
	int			n = (int) SPI_processed;
	int			nread = 0;
	AlxMsg	   *msgs;
	MemoryContext old = MemoryContextSwitchTo(AlxRelayRoundCxt);

	msgs = palloc0(sizeof(AlxMsg) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		AlxMsg	   *m = &msgs[i];
		bool		isnull;
		Datum		d;
		Datum		raw;
		Jsonb	   *jb;

		raw = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 6, &isnull);
		if (budget != NULL)
		{
			if (*budget <= 0)
				break;
			*budget -= (int64) toast_raw_datum_size(raw) + ALX_RELAY_MSG_OVERHEAD;
		}
		nread++;
		m->id = AlxRelayGetInt8(i, 1, &isnull);
		m->aggregate_type = AlxRelayGetText(i, 2);
		m->aggregate_id = AlxRelayGetText(i, 3);
		m->aggregate_seq = AlxRelayGetInt8(i, 4, &isnull);
		m->event_type = AlxRelayGetText(i, 5);
		/* the JSON text, as payload::text gives it (jsonb_out) */
		jb = DatumGetJsonbP(raw);
		m->payload = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
		if ((Pointer) jb != DatumGetPointer(raw))
			pfree(jb);
		m->created_at = AlxRelayGetInt8(i, 8, &isnull);
		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 7, &isnull);
		if (!isnull)
		{
			jb = DatumGetJsonbP(d);
			read_headers(m, jb, budget);
			if ((Pointer) jb != DatumGetPointer(d))
				pfree(jb);
		}
		if (extra_cols >= 1)
		{
			d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, ALX_RELAY_EVENT_NCOLS + 1, &isnull);
			m->divert = !isnull && DatumGetBool(d);
		}
		if (extra_cols >= 2)
		{
			d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, ALX_RELAY_EVENT_NCOLS + 2, &isnull);
			m->attempts = isnull ? 0 : DatumGetInt32(d);
		}
	}
	MemoryContextSwitchTo(old);
	*nout = nread;
	return msgs;
}

typedef struct Chunk
{
	AlxMsg	   *msgs;
	int			n;
	int64		range_end;		/* the chunk covers ids up to here */
	int64		bytes;			/* payload and header bytes read (the budget spent) */
} Chunk;

/*
 * ... and per call of AlxRelayDrainStream, whose chunks all live in the
 * round's memory until the next call: it returns (to be called again)
 * once it has read this much.
 */
#define ALX_RELAY_ROUND_MAX_BYTES	(2 * ALX_RELAY_CHUNK_MAX_BYTES)

/* rows per fetch of the chunk cursor (payloads stay as stored until read) */
#define ALX_RELAY_FETCH_ROWS	64

/*
 * Reads the batch events with ids in (pos, pos + limit] (or up to the next
 * batch event after an empty stretch of ids) into c, in its own transaction,
 * stopping early after ALX_RELAY_CHUNK_MAX_BYTES (the chunk then ends at its
 * last event).  Bounding the id range keeps each read proportional to the
 * chunk, whatever plan the planner picks for the never-analyzed log tables.
 */
static void
read_chunk(Chunk *c, const char *last_snap, const char *batch_snap, int64 pos,
		   int64 batch_end, int limit)
{
	Oid			types[4] = {TEXTOID, TEXTOID, INT8OID, INT8OID};
	Datum		values[4];
	bool		isnull;

	c->range_end = Min(pos + limit, batch_end);
	AlxRelayBeginTxn("alexandrite relay: reading the outbox");

	values[0] = CStringGetTextDatum(last_snap);
	values[1] = CStringGetTextDatum(batch_snap);
	values[2] = Int64GetDatum(pos);
	values[3] = Int64GetDatum(c->range_end);
	/* a kept plan: the query is planned once, not once per chunk */
	if (chunk_plan == NULL)
	{
		/*
		 * The rows are put in id order first and converted to text only as
		 * they are fetched (OFFSET 0 keeps the planner from merging the
		 * two): a sort of the converted rows would hold the whole id range's
		 * payloads in memory before the first fetch.  Whether an event's
		 * aggregate waits is found after the read, by AlxRelayProbeWaits.
		 */
		SPIPlanPtr	plan = SPI_prepare("SELECT " ALX_RELAY_EVENT_COLS("e")
									   " FROM (SELECT o.id, o.aggregate_type, o.aggregate_id, o.aggregate_seq,"
									   "              o.event_type, o.payload, o.headers, o.created_at"
									   "         FROM alexandrite.outbox_events o"
									   "        WHERE o.id OPERATOR(pg_catalog.>) $3 AND o.id OPERATOR(pg_catalog.<=) $4"
									   "          AND pg_catalog.pg_visible_in_snapshot(o.txid, $2::pg_catalog.pg_snapshot)"
									   "          AND NOT pg_catalog.pg_visible_in_snapshot(o.txid, $1::pg_catalog.pg_snapshot)"
									   "        ORDER BY o.id OFFSET 0) e"
									   " ORDER BY e.id", 4, types);

		if (plan == NULL)
			elog(ERROR, "alexandrite relay: could not prepare the chunk query: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		chunk_plan = plan;
	}
	{
		Portal		portal = SPI_cursor_open(NULL, chunk_plan, values, NULL, true);
		int64		budget = ALX_RELAY_CHUNK_MAX_BYTES;
		int			cap = 0;

		c->msgs = NULL;
		c->n = 0;
		for (;;)
		{
			AlxMsg	   *got;
			int			ngot;
			int			nfetched;

			SPI_cursor_fetch(portal, true, ALX_RELAY_FETCH_ROWS);
			nfetched = (int) SPI_processed;
			got = AlxRelayReadMsgs(&ngot, 0, &budget);
			SPI_freetuptable(SPI_tuptable);
			if (ngot == 0)
				break;
			if (c->n + ngot > cap)
			{
				MemoryContext old = MemoryContextSwitchTo(AlxRelayRoundCxt);

				cap = Max(cap * 2, c->n + ngot);
				c->msgs = c->msgs ? repalloc(c->msgs, sizeof(AlxMsg) * cap) : palloc(sizeof(AlxMsg) * cap);
				MemoryContextSwitchTo(old);
			}
			for (int i = 0; i < ngot; i++)
				c->msgs[c->n++] = got[i];
			if (ngot < nfetched || budget <= 0)
			{
				/* the chunk ends at its last event read; the rest is the next chunk's */
				c->range_end = c->msgs[c->n - 1].id;
				break;
			}
		}
		SPI_cursor_close(portal);
		c->bytes = ALX_RELAY_CHUNK_MAX_BYTES - budget;

		/*
		 * An event whose aggregate waits in outbox_retry or outbox_dead goes
		 * there too, behind the events of its aggregate already waiting,
		 * seen in the chunk query's snapshot: one descent of each index per
		 * aggregate of the chunk.
		 */
		if (c->n > 0)
		{
			AlxAggregateProbe *probe = AlxRelayProbeBegin();

			for (int i = 0; i < c->n; i++)
				c->msgs[i].divert = AlxRelayProbeWaits(probe, c->msgs[i].aggregate_type,
													   c->msgs[i].aggregate_id);
			AlxRelayProbeEnd(probe);
		}
		if (c->msgs == NULL)
			c->msgs = MemoryContextAllocZero(AlxRelayRoundCxt, sizeof(AlxMsg));
	}
	if (c->n == 0 && c->range_end < batch_end)
	{
		/* an empty stretch of ids (other batches' events): jump over it */
		values[2] = Int64GetDatum(c->range_end);
		AlxRelayExec("SELECT pg_catalog.min(e.id) FROM alexandrite.outbox_events e"
					 " WHERE e.id OPERATOR(pg_catalog.>) $3"
					 "   AND pg_catalog.pg_visible_in_snapshot(e.txid, $2::pg_catalog.pg_snapshot)"
					 "   AND NOT pg_catalog.pg_visible_in_snapshot(e.txid, $1::pg_catalog.pg_snapshot)",
					 3, types, values, NULL, SPI_OK_SELECT);
		{
			int64		nextid = AlxRelayGetInt8(0, 1, &isnull);

			c->range_end = isnull ? batch_end : nextid - 1;
		}
	}
	AlxRelayEndTxn();
}

/* The batch being drained: between two snapshots, events with ids in (pos, end]. */
typedef struct Batch
{
	char	   *last_snap;
	char	   *batch_snap;
	int64		pos;
	int64		end;
} Batch;

/*
 * Reads the stored batch, or opens a new one (stored before anything is
 * published) if anything committed since the last.  False when there is
 * nothing to do.
 */
static bool
open_batch(Batch *b)
{
	bool		isnull;
	MemoryContext old;

	AlxRelayBeginTxn("alexandrite relay: reading the outbox");
	if (!AlxRelayOutboxInstalled())
	{
		AlxRelayEndTxn();
		return false;
	}
	AlxRelayExecKept("SELECT r.last_snapshot::pg_catalog.text, r.batch_snapshot::pg_catalog.text, r.batch_pos, r.batch_end"
					 " FROM alexandrite.outbox_relay r", 0, NULL, NULL, NULL, SPI_OK_SELECT, 0);
	if (SPI_processed != 1)
		elog(ERROR, "alexandrite relay: outbox_relay must hold exactly one row");
	old = MemoryContextSwitchTo(AlxRelayRoundCxt);
	b->last_snap = AlxRelayGetText(0, 1);
	b->batch_snap = AlxRelayGetText(0, 2);
	MemoryContextSwitchTo(old);
	b->pos = AlxRelayGetInt8(0, 3, &isnull);
	b->end = AlxRelayGetInt8(0, 4, &isnull);
	if (b->batch_snap == NULL)
	{
		Oid			types[3] = {TEXTOID, INT8OID, INT8OID};
		Datum		values[3];

		/*
		 * One scan of the txid range [xmin(last), xmax(cur)) finds the id
		 * bounds of the new batch; the chunks then walk the id index.  The
		 * OFFSET 0 keeps the planner from turning min() and max() into walks
		 * of the id index that filter on txid: those read every event still
		 * in the log, published or not, on every round.
		 */
		values[0] = CStringGetTextDatum(b->last_snap);
		AlxRelayExecKept("WITH s AS (SELECT pg_catalog.pg_current_snapshot() AS cur)"
					 " SELECT s.cur::pg_catalog.text, b.lo, b.hi FROM s, LATERAL"
					 " (SELECT pg_catalog.min(x.id) AS lo, pg_catalog.max(x.id) AS hi"
					 "    FROM (SELECT e.id FROM alexandrite.outbox_events e"
					 "           WHERE e.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin($1::pg_catalog.pg_snapshot)"
					 "             AND e.txid OPERATOR(pg_catalog.<) pg_catalog.pg_snapshot_xmax(s.cur)"
					 "             AND pg_catalog.pg_visible_in_snapshot(e.txid, s.cur)"
					 "             AND NOT pg_catalog.pg_visible_in_snapshot(e.txid, $1::pg_catalog.pg_snapshot)"
					 "          OFFSET 0) x) b",
					 1, types, values, NULL, SPI_OK_SELECT, CURSOR_OPT_CUSTOM_PLAN);
		(void) AlxRelayGetInt8(0, 2, &isnull);
		if (isnull)
		{
			/* nothing new committed */
			AlxRelayEndTxn();
			return false;
		}
		old = MemoryContextSwitchTo(AlxRelayRoundCxt);
		b->batch_snap = AlxRelayGetText(0, 1);
		MemoryContextSwitchTo(old);
		b->pos = AlxRelayGetInt8(0, 2, &isnull) - 1;
		b->end = AlxRelayGetInt8(0, 3, &isnull);
		values[0] = CStringGetTextDatum(b->batch_snap);
		values[1] = Int64GetDatum(b->pos);
		values[2] = Int64GetDatum(b->end);
		AlxRelayExecKept("UPDATE alexandrite.outbox_relay SET batch_snapshot = $1::pg_catalog.pg_snapshot,"
						 " batch_pos = $2, batch_end = $3, updated_at = pg_catalog.now()",
						 3, types, values, NULL, SPI_OK_UPDATE, 0);
	}
	AlxRelayEndTxn();
	return true;
}

/*
 * Records the outcome of a settled chunk and advances the cursor past it,
 * in one transaction: failed, held-back and diverted events go to retry
 * (their aggregates are remembered in failed, so that later chunks of this
 * drain hold them back too: the next chunk was read before this one's
 * retry rows were written, so its own check cannot see them).
 */
static int
record_chunk(Chunk *cur, bool done, HTAB *failed)
{
	uint64		nok = 0;
	uint64		nfail = 0;
	int			nnacked = 0;
	Oid			types[3] = {INT8OID, INT8OID, BOOLOID};
	Datum		values[3];

	AlxRelayBeginTxn("alexandrite relay: recording confirms");
	for (int i = 0; i < cur->n; i++)
	{
		AlxMsg	   *m = &cur->msgs[i];
		char		key[ALX_RELAY_AGGKEY_LEN];

		if (m->state == ALX_MSG_CONFIRMED)
		{
			nok++;
			continue;
		}
		if (m->state == ALX_MSG_FAILED)
		{
			char		msg[ALX_OUTBOX_ERRLEN];

			nfail++;
			nnacked += ALX_RELAY_NACKED(m);
			snprintf(msg, sizeof(msg), "event %lld (%s %s seq %lld): %s",
					 (long long) m->id, m->aggregate_type, m->aggregate_id,
					 (long long) m->aggregate_seq, m->error ? m->error : "failed");
			AlxRelaySetError(msg);
		}
		AlxRelayAggKey(m, key);
		(void) hash_search(failed, key, HASH_ENTER, NULL);
		AlxRelayRecordDiverted(m);
	}
	values[0] = Int64GetDatum(cur->range_end);
	values[1] = Int64GetDatum((int64) nok);
	values[2] = BoolGetDatum(done);
	AlxRelayExecKept("UPDATE alexandrite.outbox_relay SET"
				 " batch_pos = CASE WHEN $3 THEN 0 ELSE $1 END,"
				 " last_snapshot = CASE WHEN $3 THEN batch_snapshot ELSE last_snapshot END,"
				 " batch_snapshot = CASE WHEN $3 THEN NULL ELSE batch_snapshot END,"
				 " published_total = published_total OPERATOR(pg_catalog.+) $2,"
				 " updated_at = pg_catalog.now()",
				 3, types, values, NULL, SPI_OK_UPDATE, 0);
	AlxRelayEndTxn();
	AlxRelayCount(nok, nfail);
	AlxRelayCountLatency(cur->msgs, cur->n);
	return nnacked;
}

/*
 * Drains the current batch, opening one if none is open, chunk by chunk
 * (at most 16 chunks per call, so that retries and rotation get their turn).
 * While the broker confirms one chunk, the next is read from the database.
 * Returns 1 when it did work (call again), 0 when there is nothing to do,
 * -1 when the broker is unavailable.  AlxRelayBacklog tells whether it
 * stopped before the end of the batch (or to reopen it after nacks).
 */
int
AlxRelayDrainStream(void)
{
	Batch		b;
	Chunk		cur;
	Chunk		next;
	bool		have_next = false;
	int			limit = alx_outbox_batch_size;
	char		err[ALX_OUTBOX_ERRLEN];
	HTAB	   *failed;
	HASHCTL		ctl;
	int64		round_bytes = 0;

	AlxRelayBacklog = false;
	MemoryContextReset(AlxRelayRoundCxt);
	if (!open_batch(&b))
		return 0;
	if (!AlxRelayEnsureConnected())
		return -1;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = ALX_RELAY_AGGKEY_LEN;
	ctl.entrysize = sizeof(AlxRelayAgg);
	ctl.hcxt = AlxRelayRoundCxt;
	failed = hash_create("alexandrite relay failed aggregates", 64, &ctl,
						 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	for (int nchunks = 0; nchunks < 16; nchunks++)
	{
		TimestampTz deadline;
		bool		done;
		MemoryContext old;
		bool		ok;

		if (have_next)
			cur = next;
		else
			read_chunk(&cur, b.last_snap, b.batch_snap, b.pos, b.end, limit);
		have_next = false;
		round_bytes += cur.bytes;

		/* nothing is published before every commit it depends on is durable */
		if (!AlxRelayFlushWal())
			return 0;

		/* aggregates that failed in the previous chunk stay stopped */
		for (int i = 0; i < cur.n; i++)
		{
			char		key[ALX_RELAY_AGGKEY_LEN];

			AlxRelayAggKey(&cur.msgs[i], key);
			if (hash_search(failed, key, HASH_FIND, NULL) != NULL)
				cur.msgs[i].divert = true;
		}

		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ALX_RELAY_CONFIRM_TIMEOUT_MS);
		old = MemoryContextSwitchTo(AlxRelayRoundCxt);
		AlxOutboxOrderByWave(cur.msgs, cur.n, alx_outbox_max_waves);	/* publish_order.c */
		ok = AlxRelayPublishAll(cur.msgs, cur.n, deadline, err, sizeof(err));
		MemoryContextSwitchTo(old);
		if (ok && cur.range_end < b.end && round_bytes < ALX_RELAY_ROUND_MAX_BYTES)
		{
			read_chunk(&next, b.last_snap, b.batch_snap, cur.range_end, b.end, limit);
			have_next = true;
		}
		if (ok)
		{
			old = MemoryContextSwitchTo(AlxRelayRoundCxt);
			ok = AlxRelaySettleAll(cur.msgs, cur.n, deadline, err, sizeof(err));
			MemoryContextSwitchTo(old);
		}
		AlxAmqpEndRound();
		if (!ok)
		{
			AlxRelayConnectionBroken(err);
			return -1;
		}

		done = cur.range_end >= b.end;
		if (record_chunk(&cur, done, failed) > 0)
		{
			AlxRelayReopenAfterNacks();
			AlxRelayBacklog = true;
			return 1;
		}
		if (done)
			return 1;
		b.pos = cur.range_end;
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending || round_bytes >= ALX_RELAY_ROUND_MAX_BYTES)
			break;
	}
	AlxRelayBacklog = true;
	return 1;
}
