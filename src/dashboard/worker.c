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
 * The worker connects to alexandrite.database as alexandrite.worker_role
 * (src/worker.c), folds as the extension owner, and folds only when the extension (at a version with dashboards) is installed
 * there.  It shares the fold's advisory lock: a fold already running
 * elsewhere makes it skip a round.  fold_interval = 0 pauses it.
 *
 * Every ALX_VACUUM_SECS it also vacuums the delta tables: each fold deletes
 * what it folded, and a read scans the whole delta heap, so the dead rows
 * should not wait for autovacuum's next round (autovacuum_naptime, a minute
 * by default).  VACUUM does not block writers or readers.
 *
 * IDENTIFICATION
 *	  src/dashboard/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/vacuum.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define ALX_VACUUM_SECS 10

#include "alexandrite.h"
#include "dashboard/dashboard.h"

PGDLLEXPORT void AlxDashboardWorkerMain(Datum main_arg) pg_attribute_noreturn();

/* Register the fold worker (from _PG_init, when preloaded). */
void
AlxDashboardRegisterWorker(void)
{
	AlxRegisterWorker("alexandrite dashboard fold", "AlxDashboardWorkerMain", 10);
}

/* true when the dashboard registry exists in this database */
static bool
alx_dashboards_installed(void)
{
	Oid			nsp = get_namespace_oid(ALX_SCHEMA_NAME, true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("dashboards", nsp));
}

/*
 * The delta tables of every dashboard, as (schema, name) RangeVars: the
 * names derived from the dashboard names (objects.c).
 */
static List *
alx_delta_tables(MemoryContext cxt)
{
	List	   *result = NIL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT d.name FROM alexandrite.dashboards d ORDER BY d.id", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the dashboard registry");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		AlxDashDef	stub;
		MemoryContext old;

		memset(&stub, 0, sizeof(stub));
		stub.name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		AlxDashCheckName(stub.name);
		if (!OidIsValid(AlxDashObjectRelid(&stub, ALX_DASH_DELTA, false)))
			continue;
		old = MemoryContextSwitchTo(cxt);
		result = lappend(result, makeRangeVar(pstrdup(ALX_SCHEMA_NAME),
											  AlxDashObjectName(&stub, ALX_DASH_DELTA), -1));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return result;
}

/* VACUUM the delta tables, each in its own transactions (as VACUUM does). */
static void
alx_vacuum_deltas(List *rels)
{
	ListCell   *lc;

	foreach(lc, rels)
	{
		VacuumStmt *stmt = makeNode(VacuumStmt);
		ParseState *pstate;
		AlxSavedUser save;

		stmt->options = NIL;
		stmt->rels = list_make1(makeVacuumRelation((RangeVar *) lfirst(lc), InvalidOid, NIL));
		stmt->is_vacuumcmd = true;
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		AlxWorkerLockGate();	/* before any table of the extension (worker.c) */
		pgstat_report_activity(STATE_RUNNING, "alexandrite: vacuuming dashboard deltas");
		/* the delta tables belong to the extension owner */
		AlxBecomeOwner(&save);
		pstate = make_parsestate(NULL);
		ExecVacuum(pstate, stmt, true);
		AlxRestoreUser(&save);
		CommitTransactionCommand();
	}
}

void
AlxDashboardWorkerMain(Datum main_arg)
{
	MemoryContext cxt;
	TimestampTz last_vacuum = GetCurrentTimestamp();

	AlxWorkerStart("alexandrite dashboard fold");
	cxt = AllocSetContextCreate(TopMemoryContext, "alexandrite dashboard worker",
								ALLOCSET_DEFAULT_SIZES);

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
			AlxWorkerReloadConfig("alexandrite dashboard fold");
		}
		if (alx_fold_interval_ms <= 0)
			continue;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		AlxWorkerLockGate();	/* before any table of the extension (worker.c) */
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "alexandrite: folding dashboards");
		{
			bool		installed = alx_dashboards_installed();
			List	   *rels = NIL;
			AlxSavedUser save;

			if (installed)
			{
				AlxBecomeOwner(&save);
				(void) AlxFoldDashboards();
				if (TimestampDifferenceExceeds(last_vacuum, GetCurrentTimestamp(), ALX_VACUUM_SECS * 1000))
					rels = alx_delta_tables(cxt);
				AlxRestoreUser(&save);
			}
			PopActiveSnapshot();
			CommitTransactionCommand();
			if (rels != NIL)
			{
				alx_vacuum_deltas(rels);
				last_vacuum = GetCurrentTimestamp();
			}
		}
		pgstat_report_stat(true);
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextReset(cxt);
	}
}
