/*-------------------------------------------------------------------------
 *
 * durability.c
 *	  Publish an event only once its commit is durable where a failover
 *	  would look for it.
 *
 * The relay flushes the WAL locally up to the current insert position
 * before each chunk (relay.c), so a crash of this server cannot undo a
 * published event.  A failover can: the standby it promotes may lack commits
 * that were visible here.  Synchronous replication does not close that gap
 * by itself, because a commit becomes visible on the primary without the
 * standby's confirmation when its wait is cancelled (a cancel request,
 * statement_timeout, pg_terminate_backend: "the transaction has already
 * committed locally, but might not have been replicated to the standby"),
 * and when the session runs with synchronous_commit = local or off.  So before publishing, the relay also waits until
 *
 *	- the synchronous standbys have flushed that position, when
 *	  synchronous_standby_names is set: the same confirmation a commit waits
 *	  for (WalSndCtl->lsn[SYNC_REP_WAIT_FLUSH], maintained by the walsenders
 *	  of the synchronous standbys), so what Patroni's synchronous_mode
 *	  promises for commits holds for published events too;
 *	- the standbys named by alexandrite.publish_after_standby_flush have
 *	  flushed it.  That setting has the syntax and the meaning of
 *	  synchronous_standby_names ('ANY 1 (*)', 'FIRST 2 (a, b, c)', 'a, b'),
 *	  evaluated against the physical standbys connected now, by
 *	  application_name; it is for asynchronous replication.
 *
 * A wait is bounded: after ALX_DURABLE_SLICE_MS the caller gets false, does
 * its other work (broker heartbeats, configuration reload) and asks again.
 * While the relay waits, outbox_status.last_error says for what.
 *
 * IDENTIFICATION
 *	  src/outbox/durability.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "replication/syncrep.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "alexandrite.h"
#include "outbox/relay.h"

#define ALX_DURABLE_SLICE_MS	500
#define ALX_DURABLE_POLL_MS		2

/* parsed alexandrite.publish_after_standby_flush; NULL when empty */
static SyncRepConfigData *standby_flush_config = NULL;

/* the wait being reported in last_error, so that it is logged once */
static bool waiting_reported = false;
static TimestampTz waiting_since = 0;

/* One connected physical standby, as far as this check is concerned. */
typedef struct StandbyFlush
{
	int			priority;		/* 1-based position in the list */
	bool		streaming;		/* streaming or stopping (a FIRST candidate) */
	XLogRecPtr	flush;
} StandbyFlush;

/*
 * Check hook of alexandrite.publish_after_standby_flush: the grammar of
 * synchronous_standby_names, parsed by the server's own parser into a
 * malloc'd SyncRepConfigData (the GUC's extra).
 */
bool
AlxCheckStandbyFlush(char **newval, void **extra, GucSource source)
{
	return check_synchronous_standby_names(newval, extra, source);
}

void
AlxAssignStandbyFlush(const char *newval, void *extra)
{
	standby_flush_config = (SyncRepConfigData *) extra;
}

/* true when synchronous replication is configured on this server */
static bool
sync_rep_configured(void)
{
	return max_wal_senders > 0 && SyncRepConfig != NULL;
}

/* The position up to which the synchronous standbys confirmed a flush. */
static XLogRecPtr
sync_flushed(void)
{
	XLogRecPtr	lsn;

	LWLockAcquire(SyncRepLock, LW_SHARED);
	lsn = WalSndCtl->lsn[SYNC_REP_WAIT_FLUSH];
	LWLockRelease(SyncRepLock);
	return lsn;
}

/* Position of application name app in the configured list, 0 if absent. */
static int
standby_priority(const SyncRepConfigData *conf, const char *app)
{
	const char *name = conf->member_names;

	for (int p = 1; p <= conf->nmembers; p++)
	{
		if (strcmp(name, "*") == 0 || (app && pg_strcasecmp(name, app) == 0))
			return p;
		name += strlen(name) + 1;
	}
	return 0;
}

/*
 * The application name of walsender pid when it serves a physical standby
 * (logical walsenders are connected to a database); NULL otherwise.
 */
static const char *
physical_standby_name(int pid)
{
	int			n = pgstat_fetch_stat_numbackends();

	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *l = pgstat_fetch_stat_local_beentry(i);

		if (l == NULL || l->backendStatus.st_procpid != pid)
			continue;
		if (l->backendStatus.st_backendType != B_WAL_SENDER ||
			OidIsValid(l->backendStatus.st_databaseid))
			return NULL;
		return l->backendStatus.st_appname ? l->backendStatus.st_appname : "";
	}
	return NULL;
}

/* Collects the connected physical standbys that the list names. */
static int
collect_standbys(const SyncRepConfigData *conf, StandbyFlush *out)
{
	int			n = 0;

	pgstat_clear_backend_activity_snapshot();
	for (int i = 0; i < max_wal_senders; i++)
	{
		WalSnd	   *w = &WalSndCtl->walsnds[i];
		pid_t		pid;
		WalSndState state;
		XLogRecPtr	flush;
		const char *app;
		int			prio;

		SpinLockAcquire(&w->mutex);
		pid = w->pid;
		state = w->state;
		flush = w->flush;
		SpinLockRelease(&w->mutex);
		if (pid == 0 || XLogRecPtrIsInvalid(flush))
			continue;
		app = physical_standby_name(pid);
		if (app == NULL || (prio = standby_priority(conf, app)) == 0)
			continue;
		out[n].priority = prio;
		out[n].streaming = (state == WALSNDSTATE_STREAMING || state == WALSNDSTATE_STOPPING);
		out[n].flush = flush;
		n++;
	}
	pgstat_clear_backend_activity_snapshot();
	return n;
}

/*
 * true when the standbys of the list have flushed lsn: ANY n, at least n of
 * the named standbys; FIRST n, the n highest-priority named standbys that
 * stream now (as synchronous replication would pick them).  *have counts
 * the standbys that count and have flushed.
 */
static bool
named_standbys_flushed(const SyncRepConfigData *conf, XLogRecPtr lsn, int *have)
{
	StandbyFlush *s = palloc(sizeof(StandbyFlush) * Max(max_wal_senders, 1));
	int			n = collect_standbys(conf, s);
	int			ok = 0;
	bool		result;

	if (conf->syncrep_method == SYNC_REP_QUORUM)
	{
		for (int i = 0; i < n; i++)
			if (s[i].flush >= lsn)
				ok++;
		result = ok >= conf->num_sync;
	}
	else
	{
		int			chosen = 0;

		/* walk the priorities in order; equal priorities in walsender order */
		for (int p = 1; p <= conf->nmembers && chosen < conf->num_sync; p++)
			for (int i = 0; i < n && chosen < conf->num_sync; i++)
			{
				if (s[i].priority != p || !s[i].streaming)
					continue;
				chosen++;
				if (s[i].flush >= lsn)
					ok++;
			}
		result = chosen == conf->num_sync && ok == chosen;
	}
	pfree(s);
	*have = ok;
	return result;
}

/* the setting the reported wait is for: a wait under another setting (after a reload) is reported again */
static char waiting_setting[ALX_OUTBOX_ERRLEN];

/*
 * Reports what the relay waits for, in last_error and the log: once per
 * wait and setting (setting: the value of the parameter that makes it wait,
 * prefixed by its kind), not for every new position.
 */
static void
report_waiting(const char *setting, const char *what)
{
	char		msg[ALX_OUTBOX_ERRLEN];

	if (waiting_reported && strcmp(setting, waiting_setting) == 0)
		return;
	waiting_reported = true;
	strlcpy(waiting_setting, setting, sizeof(waiting_setting));
	snprintf(msg, sizeof(msg), "publishing waits until %s", what);
	AlxRelaySetError(msg);		/* outbox_status.last_error, logged once */
}

/*
 * Waits (at most ALX_DURABLE_SLICE_MS) until lsn, already flushed locally,
 * is flushed by the synchronous standbys and by the standbys named in
 * alexandrite.publish_after_standby_flush.  Returns false when it is not
 * yet, or when a configuration reload is pending (the caller reloads and
 * asks again).
 */
bool
AlxOutboxWaitDurable(XLogRecPtr lsn)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, ALX_DURABLE_SLICE_MS);

	for (;;)
	{
		bool		sync_ok = !sync_rep_configured() || sync_flushed() >= lsn;
		int			have = 0;
		bool		named_ok = sync_ok &&
			(standby_flush_config == NULL ||
			 named_standbys_flushed(standby_flush_config, lsn, &have));
		TimestampTz now;

		if (sync_ok && named_ok)
		{
			if (waiting_reported)
				ereport(LOG,
						(errmsg("alexandrite relay: the standbys confirmed; publishing again after %ld ms",
								(long) ((GetCurrentTimestamp() - waiting_since) / 1000))));
			waiting_reported = false;
			waiting_since = 0;
			return true;
		}
		if (waiting_since == 0)
			waiting_since = start;
		now = GetCurrentTimestamp();
		if (now >= deadline || ConfigReloadPending)
		{
			char		what[ALX_OUTBOX_ERRLEN];
			char		setting[ALX_OUTBOX_ERRLEN];
			const char *value = sync_ok ? alx_publish_after_standby_flush : SyncRepStandbyNames;

			snprintf(setting, sizeof(setting), "%c%s", sync_ok ? 'a' : 's', value ? value : "");
			if (!sync_ok)
				snprintf(what, sizeof(what),
						 "the synchronous standbys (synchronous_standby_names = '%s') have flushed %X/%X",
						 SyncRepStandbyNames, LSN_FORMAT_ARGS(lsn));
			else
				snprintf(what, sizeof(what),
						 "the standbys of alexandrite.publish_after_standby_flush = '%s' have flushed %X/%X (%d of %d have)",
						 alx_publish_after_standby_flush, LSN_FORMAT_ARGS(lsn), have,
						 standby_flush_config->num_sync);
			if (now - waiting_since >= ALX_DURABLE_SLICE_MS * 1000L)
				report_waiting(setting, what);
			return false;
		}
		(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ALX_DURABLE_POLL_MS,
						 PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
}
