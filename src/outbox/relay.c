/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  The outbox relay: a background worker that drains the outbox of one
 *	  database (alexandrite.database) to RabbitMQ.
 *
 * Batches.  An event belongs to a batch when its transaction is visible in
 * the batch snapshot and was not in the previous one (PgQ); the snapshot is
 * stored before anything is published, so a transaction that commits after
 * later ones is picked up by the batch that first sees it, never skipped.
 * Before publishing, the WAL is flushed up to the current insert position:
 * every commit visible in the snapshot is then durable, so an asynchronous
 * commit that a crash would undo is never published (no phantoms).
 *
 * Chunks.  A batch is drained in chunks of alexandrite.outbox_batch_size
 * events in id order.  A chunk is published as a window of unconfirmed
 * messages, with at most one unconfirmed message per aggregate, so a later
 * event of an aggregate is never confirmed before an earlier one.  When every
 * message of the chunk is settled, one transaction moves failed events (and
 * every later event of their aggregates) to outbox_retry and advances the
 * cursor.  If the connection breaks, nothing is recorded and the chunk is
 * published again after reconnecting: at least once, never lost.
 *
 * Retries.  The head event of each blocked aggregate is retried with
 * exponential backoff; after alexandrite.outbox_max_attempts it moves to
 * outbox_dead and its aggregate stays blocked until an operator requeues or
 * discards it.  Other aggregates keep flowing.
 *
 * Rotation.  The log lives in three tables; the relay truncates the oldest
 * one once every event in it is handled and makes it current.
 *
 * IDENTIFICATION
 *	  src/outbox/relay.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/pmsignal.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "alexandrite.h"
#include "outbox/outbox.h"

#define CONFIRM_TIMEOUT_MS	30000
#define IDLE_POLL_MS		1000
#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		30000
#define RETRY_BASE_MS		1000
#define RETRY_MAX_MS		60000

AlxOutboxShared *AlxOutbox = NULL;

const double AlxOutboxLatencyBounds[ALX_OUTBOX_LAT_BUCKETS] =
{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, -1};	/* -1: +Inf */

static MemoryContext round_cxt = NULL;

/* broker connection management */
static int	url_index = 0;
static TimestampTz next_connect_at = 0;
static int	backoff_ms = BACKOFF_MIN_MS;
static char *conf_url = NULL;
static char *conf_exchange = NULL;
static char last_logged[ALX_OUTBOX_ERRLEN];
static TimestampTz next_rotate_check = 0;
static SPIPlanPtr chunk_plan = NULL;

/* ---------------------------------------------------------------------
 * Shared memory and registration
 * ---------------------------------------------------------------------
 */

/* Reserves the relay's shared state (called from shmem_request_hook). */
void
AlxOutboxShmemRequest(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(AlxOutboxShared)));
}

/* Creates or attaches the relay's shared state (shmem_startup_hook). */
void
AlxOutboxShmemStartup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	AlxOutbox = ShmemInitStruct("alexandrite outbox relay", sizeof(AlxOutboxShared), &found);
	if (!found)
	{
		memset(AlxOutbox, 0, sizeof(AlxOutboxShared));
		SpinLockInit(&AlxOutbox->mutex);
		AlxOutbox->relay_pgprocno = -1;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Registers the relay: primary only, restarted 5 s after it exits. */
void
AlxOutboxRegisterWorker(void)
{
	AlxRegisterWorker("alexandrite relay", "AlxOutboxRelayMain", 5);
}

/* ---------------------------------------------------------------------
 * State reporting
 * ---------------------------------------------------------------------
 */

/* Records (and logs once) the relay's last error; msg never holds a password. */
static void
set_error(const char *msg)
{
	SpinLockAcquire(&AlxOutbox->mutex);
	strlcpy(AlxOutbox->last_error, msg, ALX_OUTBOX_ERRLEN);
	AlxOutbox->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&AlxOutbox->mutex);
	if (strcmp(last_logged, msg) != 0)
	{
		ereport(LOG, (errmsg("alexandrite relay: %s", msg)));
		strlcpy(last_logged, msg, sizeof(last_logged));
	}
}

static void
set_connected(bool connected, const char *masked)
{
	SpinLockAcquire(&AlxOutbox->mutex);
	AlxOutbox->connected = connected;
	if (masked)
		strlcpy(AlxOutbox->broker, masked, ALX_OUTBOX_BROKERLEN);
	if (connected)
		AlxOutbox->reconnects++;
	SpinLockRelease(&AlxOutbox->mutex);
}

static void
count(uint64 ok, uint64 failed)
{
	SpinLockAcquire(&AlxOutbox->mutex);
	AlxOutbox->published += ok;
	AlxOutbox->failed += failed;
	SpinLockRelease(&AlxOutbox->mutex);
}

/* Adds the created_at -> confirm latency of confirmed messages to the histogram. */
static void
count_latency(AlxMsg *msgs, int n)
{
	SpinLockAcquire(&AlxOutbox->mutex);
	for (int i = 0; i < n; i++)
	{
		double		ms;
		int			b;

		if (msgs[i].state != ALX_MSG_CONFIRMED)
			continue;
		ms = (double) (msgs[i].confirmed_at - msgs[i].created_at);
		if (ms < 0)
			ms = 0;
		for (b = 0; b < ALX_OUTBOX_LAT_BUCKETS - 1; b++)
			if (ms <= AlxOutboxLatencyBounds[b])
				break;
		AlxOutbox->latency[b]++;
		AlxOutbox->latency_sum_ms += ms;
	}
	SpinLockRelease(&AlxOutbox->mutex);
}

static void
relay_exit(int code, Datum arg)
{
	AlxAmqpDisconnect();
	SpinLockAcquire(&AlxOutbox->mutex);
	AlxOutbox->relay_pid = 0;
	AlxOutbox->relay_pgprocno = -1;
	AlxOutbox->connected = false;
	SpinLockRelease(&AlxOutbox->mutex);
}

/* ---------------------------------------------------------------------
 * Transactions and SPI
 * ---------------------------------------------------------------------
 */
/* the worker's own identity while a transaction runs as the owner */
static AlxSavedUser txn_user;

static void
begin_txn(const char *what)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* the outbox tables belong to the extension owner (src/privilege.c) */
	(void) AlxBecomeOwnerIfInstalled(&txn_user);
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, what);
}

static void
end_txn(void)
{
	SPI_finish();
	PopActiveSnapshot();
	AlxRestoreUser(&txn_user);
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (ret != expect)
		elog(ERROR, "alexandrite relay: query failed: %s: %s", SPI_result_code_string(ret), sql);
}

static char *
get_text(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

static int64
get_int8(int row, int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
}

/* true when the outbox tables exist (extension created at 1.1 or later) */
static bool
outbox_installed(void)
{
	bool		isnull;
	Datum		d;

	spi_exec("SELECT pg_catalog.to_regclass('alexandrite.outbox_relay') IS NOT NULL",
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * Flushes the WAL up to everything inserted so far: every commit visible in
 * a snapshot taken before this call is then durable (no phantom messages).
 * When the insert position sits right after a page header that no record
 * has reached yet, flush up to the page start: asking for more would be a
 * request past the end of generated WAL.  Then waits until the standbys a
 * failover would promote have it too (durability.c); false when they have
 * not yet (publish nothing, try again later).
 */
static bool
flush_wal(void)
{
	XLogRecPtr	ptr = GetXLogInsertRecPtr();

	if (XLogSegmentOffset(ptr, wal_segment_size) == SizeOfXLogLongPHD)
		ptr -= SizeOfXLogLongPHD;
	else if (ptr % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		ptr -= SizeOfXLogShortPHD;
	XLogFlush(ptr);
	return AlxOutboxWaitDurable(ptr);
}

/* ---------------------------------------------------------------------
 * Broker connection
 * ---------------------------------------------------------------------
 */
static List *
split_urls(const char *s)
{
	List	   *l = NIL;
	char	   *copy = pstrdup(s ? s : "");
	char	   *save = NULL;

	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		char	   *end;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*tok)
			l = lappend(l, tok);
	}
	return l;
}

/* Connects to the next broker in alexandrite.amqp_url, with backoff. */
static bool
ensure_connected(void)
{
	List	   *urls;
	int			n;
	char		err[ALX_OUTBOX_ERRLEN];
	char		masked[ALX_OUTBOX_BROKERLEN];
	char		msg[ALX_OUTBOX_ERRLEN];

	if (AlxAmqpConnected())
		return true;
	if (GetCurrentTimestamp() < next_connect_at)
		return false;

	urls = split_urls(conf_url);
	n = list_length(urls);
	if (n == 0)
	{
		set_error("alexandrite.amqp_url is empty: publishing is disabled");
		next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);
		return false;
	}
	for (int i = 0; i < n; i++)
	{
		const char *url = list_nth(urls, (url_index + i) % n);

		AlxMaskUrl(url, masked, sizeof(masked));
		CHECK_FOR_INTERRUPTS();
		if (AlxAmqpConnect(url, conf_exchange, err, sizeof(err)))
		{
			url_index = (url_index + i) % n;
			set_connected(true, masked);
			backoff_ms = BACKOFF_MIN_MS;
			ereport(LOG, (errmsg("alexandrite relay: connected to %s", masked)));
			last_logged[0] = '\0';
			return true;
		}
		snprintf(msg, sizeof(msg), "%s: %s", masked, err);
		set_error(msg);
	}
	url_index = (url_index + 1) % n;
	next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  backoff_ms + random() % (backoff_ms / 4 + 1));
	backoff_ms = Min(backoff_ms * 2, BACKOFF_MAX_MS);
	return false;
}

/* The connection broke: record why, and try the next broker soon. */
static void
connection_broken(const char *err)
{
	char		msg[ALX_OUTBOX_ERRLEN];
	char		broker[ALX_OUTBOX_BROKERLEN];

	SpinLockAcquire(&AlxOutbox->mutex);
	strlcpy(broker, AlxOutbox->broker, sizeof(broker));
	SpinLockRelease(&AlxOutbox->mutex);
	snprintf(msg, sizeof(msg), "%s: %s", broker, err);
	AlxAmqpDisconnect();
	set_connected(false, NULL);
	set_error(msg);
	url_index++;
	next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BACKOFF_MIN_MS);
}

/*
 * After nacks: a RabbitMQ 3.10 channel that first published to a quorum
 * queue while the queue had no leader (a broker node just died, the queue
 * elects a new one) nacks every later publish to that queue, for good.  The
 * retries go out on a fresh connection to the same broker.
 */
static void
reopen_after_nacks(void)
{
	AlxAmqpDisconnect();
	set_connected(false, NULL);
	next_connect_at = 0;
}

/* ---------------------------------------------------------------------
 * Publishing a round of messages
 * ---------------------------------------------------------------------
 */
typedef struct AggKey
{
	char		key[320];
	AlxMsg	   *last;			/* latest message of the aggregate this round */
	bool		blocked;
} AggKey;

static void
agg_key(AlxMsg *m, char *buf)
{
	snprintf(buf, 320, "%s\x01%s", m->aggregate_type, m->aggregate_id);
}

/* Pumps until m is settled; false if the connection broke (err set). */
static bool
wait_settled(AlxMsg *m, TimestampTz deadline, char *err, size_t errlen)
{
	while (m->state == ALX_MSG_INFLIGHT)
	{
		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (GetCurrentTimestamp() > deadline)
		{
			snprintf(err, errlen, "no publisher confirm within %d ms", CONFIRM_TIMEOUT_MS);
			return false;
		}
		if (!AlxAmqpPump(100, err, errlen))
			return false;
	}
	return true;
}

/*
 * Publishes msgs[0..n) in order, skipping those marked divert and holding
 * back any message whose aggregate failed earlier in the round (it is marked
 * divert too).  At most one unconfirmed message per aggregate: before the
 * next message of an aggregate goes out, the previous one must be confirmed.
 * Returns false if the connection broke: then no outcome may be recorded.
 * The caller then waits for the rest with settle_all().
 */
static bool
publish_all(AlxMsg *msgs, int n, TimestampTz deadline, char *err, size_t errlen)
{
	HASHCTL		ctl;
	HTAB	   *aggs;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = 320;
	ctl.entrysize = sizeof(AggKey);
	ctl.hcxt = CurrentMemoryContext;
	aggs = hash_create("alexandrite relay aggregates", Max(n, 16), &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	AlxAmqpBeginRound(msgs, n);
	for (int i = 0; i < n; i++)
	{
		AlxMsg	   *m = &msgs[i];
		char		key[320];
		AggKey	   *a;
		bool		found;

		agg_key(m, key);
		a = hash_search(aggs, key, HASH_ENTER, &found);
		if (!found)
		{
			a->last = NULL;
			a->blocked = false;
		}
		if (a->blocked || m->divert)
		{
			a->blocked = true;
			m->divert = true;
			continue;
		}
		if (a->last != NULL)
		{
			/* the previous event of this aggregate must be confirmed first */
			if (!wait_settled(a->last, deadline, err, errlen))
				return false;
			if (a->last->state == ALX_MSG_FAILED)
			{
				a->blocked = true;
				m->divert = true;
				continue;
			}
		}
		if (!AlxAmqpPublish(m, conf_exchange, err, errlen))
			return false;
		a->last = m;
		if ((i & 63) == 63 && !AlxAmqpPump(0, err, errlen))
			return false;
	}
	return true;
}

/* Waits until every published message of the round is confirmed or failed. */
static bool
settle_all(AlxMsg *msgs, int n, TimestampTz deadline, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++)
	{
		if (msgs[i].state == ALX_MSG_INFLIGHT &&
			!wait_settled(&msgs[i], deadline, err, errlen))
			return false;
	}
	return true;
}

static bool
publish_round(AlxMsg *msgs, int n, char *err, size_t errlen)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CONFIRM_TIMEOUT_MS);

	return publish_all(msgs, n, deadline, err, errlen) &&
		settle_all(msgs, n, deadline, err, errlen);
}

/* Reads the rows of the SPI result into messages (in round_cxt). */
static AlxMsg *
read_msgs(int *nout, int extra_cols)
{
	int			n = (int) SPI_processed;
	AlxMsg	   *msgs;
	MemoryContext old = MemoryContextSwitchTo(round_cxt);

	msgs = palloc0(sizeof(AlxMsg) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		AlxMsg	   *m = &msgs[i];
		bool		isnull;
		Datum		d;

		m->id = get_int8(i, 1, &isnull);
		m->aggregate_type = get_text(i, 2);
		m->aggregate_id = get_text(i, 3);
		m->aggregate_seq = get_int8(i, 4, &isnull);
		m->event_type = get_text(i, 5);
		m->payload = get_text(i, 6);
		m->created_at = get_int8(i, 9, &isnull);
		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 7, &isnull);
		if (!isnull)
		{
			Datum	   *keys;
			Datum	   *vals;
			bool	   *knulls;
			bool	   *vnulls;
			int			nk;
			int			nv;

			deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
							  &keys, &knulls, &nk);
			d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 8, &isnull);
			deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
							  &vals, &vnulls, &nv);
			m->nheaders = Min(nk, nv);
			m->hkeys = palloc(sizeof(char *) * Max(m->nheaders, 1));
			m->hvalues = palloc(sizeof(char *) * Max(m->nheaders, 1));
			for (int j = 0; j < m->nheaders; j++)
			{
				m->hkeys[j] = TextDatumGetCString(keys[j]);
				m->hvalues[j] = vnulls[j] ? pstrdup("") : TextDatumGetCString(vals[j]);
			}
		}
		if (extra_cols >= 1)
		{
			d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 10, &isnull);
			m->divert = !isnull && DatumGetBool(d);
		}
		if (extra_cols >= 2)
		{
			d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 11, &isnull);
			m->attempts = isnull ? 0 : DatumGetInt32(d);
		}
	}
	MemoryContextSwitchTo(old);
	*nout = n;
	return msgs;
}

#define EVENT_COLS(alias) \
	alias ".id, " alias ".aggregate_type, " alias ".aggregate_id, " alias ".aggregate_seq, " \
	alias ".event_type, " alias ".payload::pg_catalog.text, " \
	"(SELECT pg_catalog.array_agg(kv.key ORDER BY kv.key) FROM pg_catalog.jsonb_each_text(" alias ".headers) kv), " \
	"(SELECT pg_catalog.array_agg(kv.value ORDER BY kv.key) FROM pg_catalog.jsonb_each_text(" alias ".headers) kv), " \
	"(pg_catalog.date_part('epoch', " alias ".created_at) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8"

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
static void
record_diverted(AlxMsg *m)
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

	if (failed && attempts >= alx_outbox_max_attempts)
		spi_exec("INSERT INTO alexandrite.outbox_dead (id, aggregate_type, aggregate_id, aggregate_seq,"
				 " event_type, payload, headers, created_at, attempts, reason)"
				 " SELECT e.id, e.aggregate_type, e.aggregate_id, e.aggregate_seq, e.event_type,"
				 " e.payload, e.headers, e.created_at, $2, $4"
				 " FROM alexandrite.outbox_events e WHERE e.id OPERATOR(pg_catalog.=) $1"
				 " ON CONFLICT (id) DO NOTHING",
				 4, types, values, nulls, SPI_OK_INSERT);
	else
		spi_exec("INSERT INTO alexandrite.outbox_retry (id, aggregate_type, aggregate_id, aggregate_seq,"
				 " event_type, payload, headers, created_at, attempts, next_attempt_at, last_error)"
				 " SELECT e.id, e.aggregate_type, e.aggregate_id, e.aggregate_seq, e.event_type,"
				 " e.payload, e.headers, e.created_at, $2,"
				 " pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3 OPERATOR(pg_catalog./) 1000.0), $4"
				 " FROM alexandrite.outbox_events e WHERE e.id OPERATOR(pg_catalog.=) $1"
				 " ON CONFLICT (id) DO NOTHING",
				 4, types, values, nulls, SPI_OK_INSERT);
}

typedef struct Chunk
{
	AlxMsg	   *msgs;
	int			n;
	int64		range_end;		/* the chunk covers ids up to here */
} Chunk;

/*
 * Reads the batch events with ids in (pos, pos + limit] (or up to the next
 * batch event after an empty stretch of ids) into c, in its own transaction.
 * Bounding the id range keeps each read proportional to the chunk, whatever
 * plan the planner picks for the never-analyzed log tables.
 */
static void
read_chunk(Chunk *c, const char *last_snap, const char *batch_snap, int64 pos,
		   int64 batch_end, int limit)
{
	Oid			types[4] = {TEXTOID, TEXTOID, INT8OID, INT8OID};
	Datum		values[4];
	bool		isnull;

	c->range_end = Min(pos + limit, batch_end);
	begin_txn("alexandrite relay: reading the outbox");
	values[0] = CStringGetTextDatum(last_snap);
	values[1] = CStringGetTextDatum(batch_snap);
	values[2] = Int64GetDatum(pos);
	values[3] = Int64GetDatum(c->range_end);
	/* a kept plan: the query is planned once, not once per chunk */
	if (chunk_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare("SELECT " EVENT_COLS("e") ","
									   " (EXISTS (SELECT 1 FROM alexandrite.outbox_retry q"
									   "           WHERE q.aggregate_type OPERATOR(pg_catalog.=) e.aggregate_type"
									   "             AND q.aggregate_id OPERATOR(pg_catalog.=) e.aggregate_id)"
									   "  OR EXISTS (SELECT 1 FROM alexandrite.outbox_dead d"
									   "           WHERE d.aggregate_type OPERATOR(pg_catalog.=) e.aggregate_type"
									   "             AND d.aggregate_id OPERATOR(pg_catalog.=) e.aggregate_id))"
									   " FROM alexandrite.outbox_events e"
									   " WHERE e.id OPERATOR(pg_catalog.>) $3 AND e.id OPERATOR(pg_catalog.<=) $4"
									   "   AND pg_catalog.pg_visible_in_snapshot(e.txid, $2::pg_catalog.pg_snapshot)"
									   "   AND NOT pg_catalog.pg_visible_in_snapshot(e.txid, $1::pg_catalog.pg_snapshot)"
									   " ORDER BY e.id", 4, types);

		if (plan == NULL)
			elog(ERROR, "alexandrite relay: could not prepare the chunk query: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		chunk_plan = plan;
	}
	{
		int			ret = SPI_execute_plan(chunk_plan, values, NULL, true, 0);

		if (ret != SPI_OK_SELECT)
			elog(ERROR, "alexandrite relay: chunk query failed: %s", SPI_result_code_string(ret));
	}
	c->msgs = read_msgs(&c->n, 1);
	if (c->n == 0 && c->range_end < batch_end)
	{
		/* an empty stretch of ids (other batches' events): jump over it */
		values[2] = Int64GetDatum(c->range_end);
		spi_exec("SELECT pg_catalog.min(e.id) FROM alexandrite.outbox_events e"
				 " WHERE e.id OPERATOR(pg_catalog.>) $3"
				 "   AND pg_catalog.pg_visible_in_snapshot(e.txid, $2::pg_catalog.pg_snapshot)"
				 "   AND NOT pg_catalog.pg_visible_in_snapshot(e.txid, $1::pg_catalog.pg_snapshot)",
				 3, types, values, NULL, SPI_OK_SELECT);
		{
			int64		nextid = get_int8(0, 1, &isnull);

			c->range_end = isnull ? batch_end : nextid - 1;
		}
	}
	end_txn();
}

/*
 * Drains the current batch, opening one if none is open, chunk by chunk
 * (at most 16 chunks per call, so that retries and rotation get their turn).
 * Returns 1 when it did work (call again), 0 when there is nothing to do,
 * -1 when the broker is unavailable.
 */
static int
drain_stream(void)
{
	char	   *last_snap;
	char	   *batch_snap = NULL;
	int64		batch_pos;
	int64		batch_end;
	bool		isnull;
	int			limit = alx_outbox_batch_size;
	char		err[ALX_OUTBOX_ERRLEN];
	MemoryContext old;

	MemoryContextReset(round_cxt);

	/* 1. the batch: the stored one, or a new one if anything committed */
	begin_txn("alexandrite relay: reading the outbox");
	if (!outbox_installed())
	{
		end_txn();
		return 0;
	}
	spi_exec("SELECT r.last_snapshot::pg_catalog.text, r.batch_snapshot::pg_catalog.text, r.batch_pos, r.batch_end"
			 " FROM alexandrite.outbox_relay r", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "alexandrite relay: outbox_relay must hold exactly one row");
	old = MemoryContextSwitchTo(round_cxt);
	last_snap = get_text(0, 1);
	batch_snap = get_text(0, 2);
	MemoryContextSwitchTo(old);
	batch_pos = get_int8(0, 3, &isnull);
	batch_end = get_int8(0, 4, &isnull);
	if (batch_snap == NULL)
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1];

		/*
		 * One scan of the txid range [xmin(last), xmax(cur)) finds the id
		 * bounds of the new batch; the chunks then walk the id index.
		 */
		values[0] = CStringGetTextDatum(last_snap);
		spi_exec("WITH s AS (SELECT pg_catalog.pg_current_snapshot() AS cur)"
				 " SELECT s.cur::pg_catalog.text, b.lo, b.hi FROM s, LATERAL"
				 " (SELECT pg_catalog.min(e.id) AS lo, pg_catalog.max(e.id) AS hi FROM alexandrite.outbox_events e"
				 "   WHERE e.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin($1::pg_catalog.pg_snapshot)"
				 "     AND e.txid OPERATOR(pg_catalog.<) pg_catalog.pg_snapshot_xmax(s.cur)"
				 "     AND pg_catalog.pg_visible_in_snapshot(e.txid, s.cur)"
				 "     AND NOT pg_catalog.pg_visible_in_snapshot(e.txid, $1::pg_catalog.pg_snapshot)) b",
				 1, types, values, NULL, SPI_OK_SELECT);
		(void) get_int8(0, 2, &isnull);
		if (isnull)
		{
			/* nothing new committed */
			end_txn();
			return 0;
		}
		old = MemoryContextSwitchTo(round_cxt);
		batch_snap = get_text(0, 1);
		MemoryContextSwitchTo(old);
		batch_pos = get_int8(0, 2, &isnull) - 1;
		batch_end = get_int8(0, 3, &isnull);
		{
			Oid			t2[3] = {TEXTOID, INT8OID, INT8OID};
			Datum		v2[3];

			v2[0] = CStringGetTextDatum(batch_snap);
			v2[1] = Int64GetDatum(batch_pos);
			v2[2] = Int64GetDatum(batch_end);
			spi_exec("UPDATE alexandrite.outbox_relay SET batch_snapshot = $1::pg_catalog.pg_snapshot,"
					 " batch_pos = $2, batch_end = $3, updated_at = pg_catalog.now()",
					 3, t2, v2, NULL, SPI_OK_UPDATE);
		}
	}
	end_txn();

	if (!ensure_connected())
		return -1;

	/*
	 * 2. chunks: batch events with ids in (batch_pos, range_end].  While the
	 * broker confirms one chunk, the next is read from the database.
	 */
	{
		Chunk		cur;
		Chunk		next;
		bool		have_next = false;
		HTAB	   *failed;
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = 320;
		ctl.entrysize = sizeof(AggKey);
		ctl.hcxt = round_cxt;
		failed = hash_create("alexandrite relay failed aggregates", 64, &ctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

		for (int nchunks = 0; nchunks < 16; nchunks++)
		{
			TimestampTz deadline;
			uint64		nok = 0;
			uint64		nfail = 0;
			int			nnacked = 0;
			bool		done;
			MemoryContext old2;
			bool		ok;

			if (have_next)
				cur = next;
			else
				read_chunk(&cur, last_snap, batch_snap, batch_pos, batch_end, limit);
			have_next = false;

			/* nothing is published before every commit it depends on is durable */
			if (!flush_wal())
				return 0;

			/* aggregates that failed in the previous chunk stay stopped */
			for (int i = 0; i < cur.n; i++)
			{
				char		key[320];

				agg_key(&cur.msgs[i], key);
				if (hash_search(failed, key, HASH_FIND, NULL) != NULL)
					cur.msgs[i].divert = true;
			}

			deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CONFIRM_TIMEOUT_MS);
			old2 = MemoryContextSwitchTo(round_cxt);
			AlxOutboxOrderByWave(cur.msgs, cur.n);	/* publish_order.c */
			ok = publish_all(cur.msgs, cur.n, deadline, err, sizeof(err));
			MemoryContextSwitchTo(old2);
			if (ok && cur.range_end < batch_end)
			{
				read_chunk(&next, last_snap, batch_snap, cur.range_end, batch_end, limit);
				have_next = true;
			}
			if (ok)
			{
				old2 = MemoryContextSwitchTo(round_cxt);
				ok = settle_all(cur.msgs, cur.n, deadline, err, sizeof(err));
				MemoryContextSwitchTo(old2);
			}
			AlxAmqpEndRound();
			if (!ok)
			{
				connection_broken(err);
				return -1;
			}

			/* 3. record the outcome and advance the cursor, in one transaction */
			done = cur.range_end >= batch_end;
			begin_txn("alexandrite relay: recording confirms");
			for (int i = 0; i < cur.n; i++)
			{
				AlxMsg	   *m = &cur.msgs[i];

				if (m->state == ALX_MSG_CONFIRMED)
					nok++;
				else
				{
					if (m->state == ALX_MSG_FAILED)
					{
						char		msg[ALX_OUTBOX_ERRLEN];
						char		key[320];

						nfail++;
						nnacked += !m->returned;
						snprintf(msg, sizeof(msg), "event %lld (%s %s seq %lld): %s",
								 (long long) m->id, m->aggregate_type, m->aggregate_id,
								 (long long) m->aggregate_seq, m->error ? m->error : "failed");
						set_error(msg);
						agg_key(m, key);
						(void) hash_search(failed, key, HASH_ENTER, NULL);
					}
					record_diverted(m);
				}
			}
			{
				Oid			types[3] = {INT8OID, INT8OID, BOOLOID};
				Datum		values[3];

				values[0] = Int64GetDatum(cur.range_end);
				values[1] = Int64GetDatum((int64) nok);
				values[2] = BoolGetDatum(done);
				spi_exec("UPDATE alexandrite.outbox_relay SET"
						 " batch_pos = CASE WHEN $3 THEN 0 ELSE $1 END,"
						 " last_snapshot = CASE WHEN $3 THEN batch_snapshot ELSE last_snapshot END,"
						 " batch_snapshot = CASE WHEN $3 THEN NULL ELSE batch_snapshot END,"
						 " published_total = published_total OPERATOR(pg_catalog.+) $2,"
						 " updated_at = pg_catalog.now()",
						 3, types, values, NULL, SPI_OK_UPDATE);
			}
			end_txn();
			count(nok, nfail);
			count_latency(cur.msgs, cur.n);
			if (nnacked > 0)
			{
				reopen_after_nacks();
				return 1;
			}
			if (done)
				break;
			batch_pos = cur.range_end;
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending)
				break;
		}
	}
	return 1;
}

/*
 * Retries the head event of every blocked aggregate that is due.  Sets
 * *wait_ms to the time until the next head is due.  Same return values as
 * drain_stream().
 */
static int
process_retries(int *wait_ms)
{
	AlxMsg	   *msgs;
	int			n;
	int			ndue = 0;
	char		err[ALX_OUTBOX_ERRLEN];
	uint64		nok = 0;
	uint64		nfail = 0;
	int			nnacked = 0;

	MemoryContextReset(round_cxt);
	begin_txn("alexandrite relay: reading retries");
	if (!outbox_installed())
	{
		end_txn();
		return 0;
	}
	{
		Oid			types[1] = {INT4OID};
		Datum		values[1];

		values[0] = Int32GetDatum(alx_outbox_batch_size);
		spi_exec("SELECT " EVENT_COLS("h") ","
				 " h.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp(), h.attempts,"
				 " (pg_catalog.date_part('epoch', h.next_attempt_at OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())"
				 "   OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8"
				 " FROM (SELECT DISTINCT ON (q.aggregate_type, q.aggregate_id) q.*"
				 "         FROM alexandrite.outbox_retry q"
				 "        ORDER BY q.aggregate_type, q.aggregate_id, q.id) h"
				 " WHERE NOT EXISTS (SELECT 1 FROM alexandrite.outbox_dead d"
				 "                    WHERE d.aggregate_type OPERATOR(pg_catalog.=) h.aggregate_type"
				 "                      AND d.aggregate_id OPERATOR(pg_catalog.=) h.aggregate_id)"
				 " ORDER BY h.next_attempt_at, h.id LIMIT $1",
				 1, types, values, NULL, SPI_OK_SELECT);
		msgs = read_msgs(&n, 2);
		for (int i = 0; i < n; i++)
		{
			bool		isnull;
			int64		ms = get_int8(i, 12, &isnull);

			/* column 10 (read as divert) is "due": flip it to mean "skip" */
			msgs[i].divert = !msgs[i].divert;
			if (msgs[i].divert)
				*wait_ms = (int) Max(Min((int64) *wait_ms, ms), 10);
			else
				ndue++;
		}
	}
	end_txn();
	if (ndue == 0)
		return 0;
	if (!ensure_connected())
		return -1;
	if (!flush_wal())
		return 0;

	{
		MemoryContext old = MemoryContextSwitchTo(round_cxt);
		bool		ok = publish_round(msgs, n, err, sizeof(err));

		MemoryContextSwitchTo(old);
		AlxAmqpEndRound();
		if (!ok)
		{
			connection_broken(err);
			return -1;
		}
	}

	begin_txn("alexandrite relay: recording retries");
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
			spi_exec("DELETE FROM alexandrite.outbox_retry WHERE id OPERATOR(pg_catalog.=) $1",
					 1, types, values, NULL, SPI_OK_DELETE);
			continue;
		}
		nfail++;
		nnacked += !m->returned;
		values[1] = Int32GetDatum(attempts);
		values[2] = Int32GetDatum(retry_delay_ms(attempts));
		values[3] = CStringGetTextDatum(m->error ? m->error : "failed");
		{
			char		msg[ALX_OUTBOX_ERRLEN];

			snprintf(msg, sizeof(msg), "event %lld (%s %s seq %lld), attempt %d: %s",
					 (long long) m->id, m->aggregate_type, m->aggregate_id,
					 (long long) m->aggregate_seq, attempts, m->error ? m->error : "failed");
			set_error(msg);
		}
		if (attempts >= alx_outbox_max_attempts)
			spi_exec("WITH m AS (DELETE FROM alexandrite.outbox_retry q WHERE q.id OPERATOR(pg_catalog.=) $1 RETURNING q.*)"
					 " INSERT INTO alexandrite.outbox_dead (id, aggregate_type, aggregate_id, aggregate_seq,"
					 " event_type, payload, headers, created_at, attempts, reason)"
					 " SELECT m.id, m.aggregate_type, m.aggregate_id, m.aggregate_seq, m.event_type,"
					 " m.payload, m.headers, m.created_at, $2, $4 FROM m"
					 " WHERE $3 OPERATOR(pg_catalog.>=) 0",
					 4, types, values, NULL, SPI_OK_INSERT);
		else
			spi_exec("UPDATE alexandrite.outbox_retry SET attempts = $2, last_error = $4,"
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
		spi_exec("UPDATE alexandrite.outbox_relay SET published_total = published_total OPERATOR(pg_catalog.+) $1",
				 1, types, values, NULL, SPI_OK_UPDATE);
	}
	end_txn();
	count(nok, nfail);
	if (nnacked > 0)
		reopen_after_nacks();
	return nok > 0 ? 1 : 0;
}

/*
 * Truncates the oldest log table once everything in it is handled, and
 * makes it current.  Skipped (and tried again later) while anyone holds a
 * lock on it.
 */
static void
maybe_rotate(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		isnull;
	int			cur;
	int			next;
	char		relname[NAMEDATALEN];
	Oid			relid;
	char	   *sql;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	if (now < next_rotate_check)
		return;
	next_rotate_check = TimestampTzPlusMilliseconds(now, Min(alx_outbox_rotate_interval_s * 1000, 10000));

	begin_txn("alexandrite relay: rotating the outbox");
	if (!outbox_installed())
	{
		end_txn();
		return;
	}
	{
		Oid			t0[1] = {INT4OID};
		Datum		v0[1];

		v0[0] = Int32GetDatum(alx_outbox_rotate_interval_s);
		spi_exec("SELECT r.cur_table, r.last_snapshot::pg_catalog.text,"
				 " r.rotated_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-)"
				 "   pg_catalog.make_interval(secs => $1))"
				 " FROM alexandrite.outbox_relay r",
				 1, t0, v0, NULL, SPI_OK_SELECT);
	}
	cur = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	values[0] = CStringGetTextDatum(get_text(0, 2));
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)))
	{
		end_txn();
		return;
	}
	next = (cur + 1) % 3;
	snprintf(relname, sizeof(relname), "outbox_events_%d", next);
	relid = RangeVarGetRelid(makeRangeVar(ALX_SCHEMA_NAME, relname, -1), NoLock, true);
	if (!OidIsValid(relid) || !ConditionalLockRelationOid(relid, AccessExclusiveLock))
	{
		end_txn();
		ereport(DEBUG1, (errmsg("alexandrite relay: rotation skipped, \"%s\" is in use", relname)));
		return;
	}
	sql = psprintf("SELECT 1 FROM alexandrite.%s e"
				   " WHERE e.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin($1::pg_catalog.pg_snapshot)"
				   "   AND NOT pg_catalog.pg_visible_in_snapshot(e.txid, $1::pg_catalog.pg_snapshot) LIMIT 1",
				   relname);
	spi_exec(sql, 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		end_txn();
		return;					/* not drained yet */
	}
	spi_exec(psprintf("TRUNCATE alexandrite.%s", relname), 0, NULL, NULL, NULL, SPI_OK_UTILITY);
	{
		Oid			t1[1] = {INT4OID};
		Datum		v1[1];

		v1[0] = Int32GetDatum(next);
		spi_exec("UPDATE alexandrite.outbox_relay SET cur_table = $1, rotated_at = pg_catalog.now()",
				 1, t1, v1, NULL, SPI_OK_UPDATE);
	}
	end_txn();
	ereport(DEBUG1, (errmsg("alexandrite relay: rotated the outbox to \"%s\"", relname)));
}

/* Picks up a changed configuration; a new URL or exchange means reconnecting. */
static void
reload_config(void)
{
	bool		changed;

	AlxWorkerReloadConfig("alexandrite relay");
	changed = conf_url == NULL || strcmp(conf_url, alx_amqp_url ? alx_amqp_url : "") != 0 ||
		strcmp(conf_exchange, alx_amqp_exchange ? alx_amqp_exchange : "") != 0;
	if (!changed)
		return;
	if (conf_url)
		pfree(conf_url);
	if (conf_exchange)
		pfree(conf_exchange);
	conf_url = MemoryContextStrdup(TopMemoryContext, alx_amqp_url ? alx_amqp_url : "");
	conf_exchange = MemoryContextStrdup(TopMemoryContext, alx_amqp_exchange ? alx_amqp_exchange : "");
	if (AlxAmqpConnected())
	{
		AlxAmqpDisconnect();
		set_connected(false, NULL);
	}
	url_index = 0;
	next_connect_at = 0;
	backoff_ms = BACKOFF_MIN_MS;
}

/* Entry point of the relay worker. */
void
AlxOutboxRelayMain(Datum main_arg)
{
	AlxWorkerStart("alexandrite relay");
	/* fixed search_path; bookkeeping commits need not wait (see docs/outbox.md) */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	round_cxt = AllocSetContextCreate(TopMemoryContext, "alexandrite relay round",
									  ALLOCSET_DEFAULT_SIZES);
	SpinLockAcquire(&AlxOutbox->mutex);
	AlxOutbox->relay_pid = MyProcPid;
	AlxOutbox->relay_pgprocno = MyProc->pgprocno;
	AlxOutbox->connected = false;
	SpinLockRelease(&AlxOutbox->mutex);
	before_shmem_exit(relay_exit, (Datum) 0);

	ConfigReloadPending = true;
	for (;;)
	{
		int			wait_ms = IDLE_POLL_MS;
		int			rc;
		int			events;
		int			work = 0;
		int			r;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			reload_config();
		}

		(void) ensure_connected();
		r = drain_stream();
		if (r > 0)
			work = 1;
		if (r >= 0)
		{
			r = process_retries(&wait_ms);
			if (r > 0)
				work = 1;
		}
		maybe_rotate();
		MemoryContextReset(round_cxt);
		if (work)
			continue;

		/* sleep until a commit wakes us, the broker talks, or the timer fires */
		if (!AlxAmqpConnected())
		{
			TimestampTz now = GetCurrentTimestamp();

			if (next_connect_at > now)
				wait_ms = Min(wait_ms, (int) ((next_connect_at - now) / 1000) + 1);
		}
		events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
		if (AlxAmqpConnected())
		{
			if (AlxAmqpHasBuffered())
				wait_ms = 0;
			else
				events |= WL_SOCKET_READABLE;
		}
		rc = WaitLatchOrSocket(MyLatch, events, AlxAmqpSocket(), wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		(void) rc;
		if (AlxAmqpConnected())
		{
			char		err[ALX_OUTBOX_ERRLEN];

			/* heartbeats, and a close sent by the broker while idle */
			if (!AlxAmqpPump(0, err, sizeof(err)))
				connection_broken(err);
		}
	}
}
