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
 * Files: this one has the loop, the shared state, the transactions and the
 * broker connection; relay_batch.c reads the stream, relay_publish.c
 * publishes a round, relay_retry.c keeps the retry and dead-letter policy.
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
#include "outbox/relay.h"

#define IDLE_POLL_MS		1000
/*
 * Under a steady stream of commits a drain round starts at most every
 * ROUND_GAP_MS (unless the previous one left a backlog): the events of
 * that gap go out as one batch, and the relay, busy or lingering rather
 * than asleep on its latch, is not signalled by every commit.  A commit
 * after an idle spell is still read at once.
 */
#define ROUND_GAP_MS		5
#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		5000

AlxOutboxShared *AlxOutbox = NULL;

const double AlxOutboxLatencyBounds[ALX_OUTBOX_LAT_BUCKETS] =
{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, -1};	/* -1: +Inf */

/* scratch memory of one round, reset by the loop */
MemoryContext AlxRelayRoundCxt = NULL;

/* broker connection management */
static int	url_index = 0;
static TimestampTz next_connect_at = 0;
static int	backoff_ms = BACKOFF_MIN_MS;
static char *conf_url = NULL;
static List *conf_urls = NIL;	/* conf_url split at commas */
char	   *AlxRelayExchange = NULL;
/* holds conf_url, conf_urls and AlxRelayExchange; reset on every change */
static MemoryContext conf_cxt = NULL;
static char last_logged[ALX_OUTBOX_ERRLEN];
static TimestampTz next_rotate_check = 0;

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
void
AlxRelaySetError(const char *msg)
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

void
AlxRelayCount(uint64 ok, uint64 failed)
{
	SpinLockAcquire(&AlxOutbox->mutex);
	AlxOutbox->published += ok;
	AlxOutbox->failed += failed;
	SpinLockRelease(&AlxOutbox->mutex);
}

/* Adds the created_at -> confirm latency of confirmed messages to the histogram. */
void
AlxRelayCountLatency(AlxMsg *msgs, int n)
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

void
AlxRelayBeginTxn(const char *what)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	AlxWorkerLockGate();		/* before any table of the extension (worker.c) */
	/* the outbox tables belong to the extension owner (src/privilege.c) */
	(void) AlxBecomeOwnerIfInstalled(&txn_user);
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, what);
}

void
AlxRelayEndTxn(void)
{
	SPI_finish();
	PopActiveSnapshot();
	AlxRestoreUser(&txn_user);
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
AlxRelayExec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (ret != expect)
		elog(ERROR, "alexandrite relay: query failed: %s: %s", SPI_result_code_string(ret), sql);
}

/* the statements of every round, prepared once (AlxRelayExecKept) */
typedef struct KeptStmt
{
	const char *sql;
	SPIPlanPtr	plan;
} KeptStmt;

static KeptStmt kept_stmts[16];
static int	nkept_stmts = 0;

/*
 * AlxRelayExec for a constant statement (a string literal: it is known by
 * its address) that runs every round: parsed once and its plan kept, which
 * the plan cache re-checks against the tables it reads.  cursor_options
 * CURSOR_OPT_CUSTOM_PLAN plans it anew with every call's values.
 */
void
AlxRelayExecKept(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
				 int expect, int cursor_options)
{
	SPIPlanPtr	plan = NULL;
	int			ret;

	for (int i = 0; i < nkept_stmts && plan == NULL; i++)
		if (kept_stmts[i].sql == sql)
			plan = kept_stmts[i].plan;
	if (plan == NULL)
	{
		plan = SPI_prepare_cursor(sql, nargs, types, cursor_options);
		if (plan == NULL)
			elog(ERROR, "alexandrite relay: could not prepare: %s: %s",
				 SPI_result_code_string(SPI_result), sql);
		if (nkept_stmts < lengthof(kept_stmts) && SPI_keepplan(plan) == 0)
		{
			kept_stmts[nkept_stmts].sql = sql;
			kept_stmts[nkept_stmts].plan = plan;
			nkept_stmts++;
		}
	}
	ret = SPI_execute_plan(plan, values, nulls, false, 0);
	if (ret != expect)
		elog(ERROR, "alexandrite relay: query failed: %s: %s", SPI_result_code_string(ret), sql);
}

char *
AlxRelayGetText(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

int64
AlxRelayGetInt8(int row, int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
	Oid			type = SPI_gettypeid(SPI_tuptable->tupdesc, col);

	/* outbox_relay's counters are not all read by a view: a DBA may retype them */
	if (type == INT4OID)
		return *isnull ? 0 : DatumGetInt32(d);
	if (type != INT8OID)
		AlxCheckColumnType("a relay statement's result", SPI_fname(SPI_tuptable->tupdesc, col),
						   type, INT8OID);
	return *isnull ? 0 : DatumGetInt64(d);
}

/* true when the outbox tables exist (extension created at 1.1 or later) */
bool
AlxRelayOutboxInstalled(void)
{
	bool		isnull;
	Datum		d;

	AlxRelayExecKept("SELECT pg_catalog.to_regclass('alexandrite.outbox_relay') IS NOT NULL",
					 0, NULL, NULL, NULL, SPI_OK_SELECT, 0);
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
bool
AlxRelayFlushWal(void)
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
/*
 * Splits a comma-separated list of broker URLs, trimming blanks; the list
 * and its strings are allocated in the current memory context.
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
bool
AlxRelayEnsureConnected(void)
{
	int			n;
	char		err[ALX_OUTBOX_ERRLEN];
	char		masked[ALX_OUTBOX_BROKERLEN];
	char		msg[ALX_OUTBOX_ERRLEN];

	if (AlxAmqpConnected())
		return true;
	if (GetCurrentTimestamp() < next_connect_at)
		return false;

	n = list_length(conf_urls);
	if (n == 0)
	{
		AlxRelaySetError("alexandrite.amqp_url is empty: publishing is disabled");
		next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);
		return false;
	}
	for (int i = 0; i < n; i++)
	{
		const char *url = list_nth(conf_urls, (url_index + i) % n);

		AlxMaskUrl(url, masked, sizeof(masked));
		CHECK_FOR_INTERRUPTS();
		if (AlxAmqpConnect(url, AlxRelayExchange, err, sizeof(err)))
		{
			url_index = (url_index + i) % n;
			set_connected(true, masked);
			backoff_ms = BACKOFF_MIN_MS;
			AlxRelayRetryNow = true;	/* what waited for the broker is due */
			ereport(LOG, (errmsg("alexandrite relay: connected to %s", masked)));
			last_logged[0] = '\0';
			return true;
		}
		snprintf(msg, sizeof(msg), "%s: %s", masked, err);
		AlxRelaySetError(msg);
	}
	url_index = (url_index + 1) % n;
	next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  backoff_ms + random() % (backoff_ms / 4 + 1));
	backoff_ms = Min(backoff_ms * 2, BACKOFF_MAX_MS);
	return false;
}

/* The connection broke: record why, and try the next broker soon. */
void
AlxRelayConnectionBroken(const char *err)
{
	char		msg[ALX_OUTBOX_ERRLEN];
	char		broker[ALX_OUTBOX_BROKERLEN];

	SpinLockAcquire(&AlxOutbox->mutex);
	strlcpy(broker, AlxOutbox->broker, sizeof(broker));
	SpinLockRelease(&AlxOutbox->mutex);
	snprintf(msg, sizeof(msg), "%s: %s", broker, err);
	AlxAmqpDisconnect();
	set_connected(false, NULL);
	AlxRelaySetError(msg);
	/* a broker that refused one message too large for it is still the one to use */
	if (!AlxAmqpClosedByRefusal())
		url_index++;
	next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BACKOFF_MIN_MS);
}

/*
 * After nacks: a RabbitMQ 3.10 channel that first published to a quorum
 * queue while the queue had no leader (a broker node just died, the queue
 * elects a new one) nacks every later publish to that queue, for good.  The
 * retries go out on a fresh connection to the same broker.
 */
void
AlxRelayReopenAfterNacks(void)
{
	AlxAmqpDisconnect();
	set_connected(false, NULL);
	next_connect_at = 0;
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

	AlxRelayBeginTxn("alexandrite relay: rotating the outbox");
	if (!AlxRelayOutboxInstalled())
	{
		AlxRelayEndTxn();
		return;
	}
	{
		Oid			t0[1] = {INT4OID};
		Datum		v0[1];

		v0[0] = Int32GetDatum(alx_outbox_rotate_interval_s);
		AlxRelayExec("SELECT r.cur_table, r.last_snapshot::pg_catalog.text,"
					 " r.rotated_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-)"
					 "   pg_catalog.make_interval(secs => $1))"
					 " FROM alexandrite.outbox_relay r",
					 1, t0, v0, NULL, SPI_OK_SELECT);
	}
	cur = (int) AlxRelayGetInt8(0, 1, &isnull);
	values[0] = CStringGetTextDatum(AlxRelayGetText(0, 2));
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)))
	{
		AlxRelayEndTxn();
		return;
	}
	next = (cur + 1) % 3;
	snprintf(relname, sizeof(relname), "outbox_events_%d", next);
	relid = RangeVarGetRelid(makeRangeVar(ALX_SCHEMA_NAME, relname, -1), NoLock, true);
	if (!OidIsValid(relid) || !ConditionalLockRelationOid(relid, AccessExclusiveLock))
	{
		AlxRelayEndTxn();
		ereport(DEBUG1, (errmsg("alexandrite relay: rotation skipped, \"%s\" is in use", relname)));
		return;
	}
	sql = psprintf("SELECT 1 FROM alexandrite.%s e"
				   " WHERE e.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin($1::pg_catalog.pg_snapshot)"
				   "   AND NOT pg_catalog.pg_visible_in_snapshot(e.txid, $1::pg_catalog.pg_snapshot) LIMIT 1",
				   relname);
	AlxRelayExec(sql, 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		AlxRelayEndTxn();
		return;					/* not drained yet */
	}
	AlxRelayExec(psprintf("TRUNCATE alexandrite.%s", relname), 0, NULL, NULL, NULL, SPI_OK_UTILITY);
	{
		Oid			t1[1] = {INT4OID};
		Datum		v1[1];

		v1[0] = Int32GetDatum(next);
		AlxRelayExec("UPDATE alexandrite.outbox_relay SET cur_table = $1, rotated_at = pg_catalog.now()",
					 1, t1, v1, NULL, SPI_OK_UPDATE);
	}
	AlxRelayEndTxn();
	ereport(DEBUG1, (errmsg("alexandrite relay: rotated the outbox to \"%s\"", relname)));
}

/* Picks up a changed configuration; a new URL or exchange means reconnecting. */
static void
reload_config(void)
{
	bool		changed;

	AlxWorkerReloadConfig("alexandrite relay");
	/* the operator may have raised the broker's max_message_size */
	AlxAmqpForgetLimits();
	changed = conf_url == NULL || strcmp(conf_url, alx_amqp_url ? alx_amqp_url : "") != 0 ||
		strcmp(AlxRelayExchange, alx_amqp_exchange ? alx_amqp_exchange : "") != 0;
	if (!changed)
		return;
	/* parsed once per change, not once per connection attempt */
	if (conf_cxt == NULL)
		conf_cxt = AllocSetContextCreate(TopMemoryContext, "alexandrite relay configuration",
										 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(conf_cxt);
	conf_url = MemoryContextStrdup(conf_cxt, alx_amqp_url ? alx_amqp_url : "");
	AlxRelayExchange = MemoryContextStrdup(conf_cxt, alx_amqp_exchange ? alx_amqp_exchange : "");
	{
		MemoryContext old = MemoryContextSwitchTo(conf_cxt);

		conf_urls = split_urls(conf_url);
		MemoryContextSwitchTo(old);
	}
	if (AlxAmqpConnected())
	{
		AlxAmqpDisconnect();
		set_connected(false, NULL);
	}
	url_index = 0;
	next_connect_at = 0;
	backoff_ms = BACKOFF_MIN_MS;
}

/* start of the last drain round, for round_gap() */
static TimestampTz last_round_at = 0;

/*
 * Waits until ROUND_GAP_MS after the start of the previous drain round,
 * unless that round stopped with more to read (AlxRelayBacklog).  Sleeps
 * outside WaitLatch: commits meanwhile set the latch without signalling.
 */
static void
round_gap(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = TimestampTzPlusMilliseconds(last_round_at, ROUND_GAP_MS);

	if (!AlxRelayBacklog && now >= last_round_at && now < until)
	{
		pg_usleep((long) Min(until - now, ROUND_GAP_MS * 1000));
		CHECK_FOR_INTERRUPTS();
		now = GetCurrentTimestamp();
	}
	last_round_at = now;
}

/* Entry point of the relay worker. */
void
AlxOutboxRelayMain(Datum main_arg)
{
	AlxWorkerStart("alexandrite relay");
	/* fixed search_path; bookkeeping commits need not wait (see docs/outbox.md) */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);


	AlxRelayRoundCxt = AllocSetContextCreate(TopMemoryContext, "alexandrite relay round",
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

		(void) AlxRelayEnsureConnected();
		round_gap();
		r = AlxRelayDrainStream();
		if (r > 0)
			work = 1;
		if (r >= 0)
		{
			TimestampTz now = GetCurrentTimestamp();

			/*
			 * A retry round when one may have work: the stream held back
			 * events by the wave bound, the last round sent some, the
			 * soonest first event it saw (or one the stream saw fail) is
			 * due, or outbox_requeue/outbox_discard committed (a poke);
			 * else once per IDLE_POLL_MS (a clock set back counts as
			 * due).  Not at every turn of a busy stream: a round reads the
			 * first event of every waiting aggregate, and thousands of
			 * aggregates blocked for a minute by a failing route, their
			 * producers writing on, would cost each turn that much.
			 */
			SpinLockAcquire(&AlxOutbox->mutex);
			if (AlxOutbox->retry_poke)
				AlxRelayRetryNow = true;
			AlxOutbox->retry_poke = false;
			SpinLockRelease(&AlxOutbox->mutex);
			if (AlxRelayRetryNow || now >= AlxRelayRetryDueAt ||
				AlxRelayRetryDueAt - now > (TimestampTz) IDLE_POLL_MS * 1000)
			{
				int			retry_wait = IDLE_POLL_MS;

				r = AlxRelayProcessRetries(&retry_wait);
				if (r > 0)
					work = 1;
				/* sent some: again at once; no broker: after the wait, not in a loop */
				AlxRelayRetryDueAt = r > 0 ? now :
					TimestampTzPlusMilliseconds(GetCurrentTimestamp(), retry_wait);
				/* not before the next try to connect (at most a poll away) */
				if (r < 0 && next_connect_at > AlxRelayRetryDueAt)
					AlxRelayRetryDueAt = Min(next_connect_at,
											 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), IDLE_POLL_MS));
			}
			wait_ms = (int) Min((int64) wait_ms,
								Max((int64) 0, (AlxRelayRetryDueAt - GetCurrentTimestamp()) / 1000 + 1));
		}
		maybe_rotate();
		MemoryContextReset(AlxRelayRoundCxt);
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
			else if (AlxAmqpWritable())
				events |= WL_SOCKET_READABLE;
			else
				events |= WL_SOCKET_WRITEABLE;	/* the pump reads once there is room */
		}
		rc = WaitLatchOrSocket(MyLatch, events, AlxAmqpSocket(), wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		(void) rc;
		if (AlxAmqpConnected())
		{
			char		err[ALX_OUTBOX_ERRLEN];

			/* heartbeats, and a close sent by the broker while idle */
			if (!AlxAmqpPump(0, err, sizeof(err)))
				AlxRelayConnectionBroken(err);
		}
	}
}
