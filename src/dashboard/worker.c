/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The dashboard fold loop: a background worker that runs the fold of
 *	  refresh_dashboards() every alexandrite.fold_interval milliseconds.
 *
 * Reads are exact without it; folding often keeps them cheap (a read adds
 * up the pending deltas and probes the due times since the last fold) and
 * keeps the watermark of the time-relative counts close to now.  pg_cron
 * (schedule_refresh) can only fold once a minute.
 *
 * The worker connects to alexandrite.database as the bootstrap superuser and
 * folds only when the extension (at a version with dashboards) is installed
 * there.  It shares the fold's advisory lock: a fold already running
 * elsewhere makes it skip a round.  fold_interval = 0 pauses it.
 *
 * IDENTIFICATION
 *	  src/dashboard/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "alexandrite.h"
#include "dashboard/dashboard.h"

PGDLLEXPORT void AlxDashboardWorkerMain(Datum main_arg) pg_attribute_noreturn();

/* Register the fold worker (from _PG_init, when preloaded). */
void
AlxDashboardRegisterWorker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "alexandrite");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "AlxDashboardWorkerMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "alexandrite dashboard fold");
	snprintf(worker.bgw_type, BGW_MAXLEN, "alexandrite dashboard fold");
	RegisterBackgroundWorker(&worker);
}

/* true when the dashboard registry exists in this database */
static bool
alx_dashboards_installed(void)
{
	Oid			nsp = get_namespace_oid(ALX_SCHEMA_NAME, true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("dashboards", nsp));
}

void
AlxDashboardWorkerMain(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(alx_database, NULL, 0);
	pgstat_report_appname("alexandrite dashboard fold");

	for (;;)
	{
		int			timeout = alx_fold_interval_ms > 0 ? alx_fold_interval_ms : 60000;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (alx_fold_interval_ms <= 0)
			continue;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "alexandrite: folding dashboards");
		if (alx_dashboards_installed())
			(void) AlxFoldDashboards();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_stat(true);
		pgstat_report_activity(STATE_IDLE, NULL);
	}
}
