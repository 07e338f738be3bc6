/*-------------------------------------------------------------------------
 *
 * jobs_worker.c
 *	  The mesh job pool: alexandrite.mesh_workers background workers that
 *	  claim the most urgent job and run it (jobs_run.c).
 *
 * Each worker connects to alexandrite.database as alexandrite.worker_role
 * (src/worker.c) and runs its compiled statements as the extension owner.
 * A round is four transactions:
 *
 *	 1. the claim: a due job (next_attempt_at) found running without a
 *		worker (below), else the first queued job in the pool's order, locked
 *		FOR UPDATE SKIP LOCKED, whose job lock the worker gets (a
 *		session-level advisory lock, held until the job is over), is marked
 *		running, its attempt counted and its next_attempt_at set to the
 *		backoff of that attempt; this commits before the analysis;
 *	 2-4. the run (jobs_run.c): read the job; the helper's analysis, with
 *		no snapshot and no gate; the mesh, order, price, events and the
 *		job's new state, under the gate and only if the extension the job
 *		was read from is still the installed one; then the job lock is
 *		released.
 *
 * The pool's order: jobs attached to an order first, by the order's
 * current SLA priority (alexandrite.sla_priority at the claim, so B2B
 * before shop at the same lateness, as the channels' weights say), then by
 * submission; then unattached jobs in submission order.
 *
 * A job found running whose job lock nobody holds was interrupted: its
 * worker, the helper's backend or the postmaster crashed (locks do not
 * survive any of them).  It is claimed again once its backoff has passed,
 * as a new attempt; when it has used alexandrite.mesh_job_max_attempts
 * attempts it fails with "interrupted" as its last error.  Because the
 * attempt is counted and committed before the analysis starts, a file that
 * kills its worker every time cannot keep the pool busy for ever.
 *
 * alexandrite.mesh_pool_paused stops claiming (running jobs finish).
 *
 * Waking up: each worker records its PGPROC number in shared memory; a
 * transaction that queued a job (mesh_submit, mesh_job_retry) sets every
 * worker's latch when it commits, so a job starts at once.  An idle worker
 * also looks every MESH_POLL_MS, for jobs whose backoff has passed.
 *
 * IDENTIFICATION
 *	  src/mesh/jobs_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "core/core.h"
#include "mesh/jobs.h"

PGDLLEXPORT void AlxMeshWorkerMain(Datum main_arg) pg_attribute_noreturn();

#define MESH_WORKER_NAME "alexandrite mesh worker"
/* how often an idle worker looks for work it was not woken for (retries) */
#define MESH_POLL_MS 1000
/* the GUC's maximum of alexandrite.mesh_workers */
#define MESH_MAX_WORKERS 64

/* the pool's workers, for waking them (procno -1: a free slot) */
typedef struct AlxMeshPoolShared
{
	slock_t		mutex;
	int			procno[MESH_MAX_WORKERS];
} AlxMeshPoolShared;

static AlxMeshPoolShared *MeshPool = NULL;
static bool wakeup_pending = false;
static bool callback_registered = false;
/* advisory-lock key of the job locks: 'ALXJ', field 4 = 5 */
#define MESH_JOB_KEY 0x414C584Au

/*
 * The claim's candidates, in the pool's order: first jobs found running
 * (interrupted ones, or live ones: the job lock tells), then the first
 * queued job that nobody holds locked.  The queued job is claimed alone
 * (LIMIT 1), so that concurrent claims pass each other by one job at most.
 */
#define MESH_CLAIM_SQL(state, lim) \
	"SELECT j.id, j.state, j.attempts, j.order_id, j.filename, pg_catalog.clock_timestamp()" \
	"  FROM alexandrite.mesh_jobs j" \
	"  LEFT JOIN alexandrite.orders o ON o.id OPERATOR(pg_catalog.=) j.order_id" \
	" WHERE j.state OPERATOR(pg_catalog.<>) 'done' AND j.state OPERATOR(pg_catalog.=) '" state "'" \
	"   AND j.next_attempt_at OPERATOR(pg_catalog.<=) $1" \
	" ORDER BY j.order_id IS NULL," \
	"          alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, $1) DESC NULLS LAST," \
	"          j.id" \
	" LIMIT " lim " FOR UPDATE OF j SKIP LOCKED"

static AlxPlan running_plan = {
	MESH_CLAIM_SQL("running", "$2"),
	2, {TIMESTAMPTZOID, INT4OID}
};

static AlxPlan queued_plan = {
	MESH_CLAIM_SQL("queued", "1"),
	1, {TIMESTAMPTZOID}
};

static AlxPlan start_plan = {
	"UPDATE alexandrite.mesh_jobs SET state = 'running', attempts = attempts OPERATOR(pg_catalog.+) 1,"
	" started_at = $5, next_attempt_at = $2,"
	" error_sqlstate = COALESCE($3, error_sqlstate), error_message = COALESCE($4, error_message)"
	" WHERE id OPERATOR(pg_catalog.=) $1",
	5, {INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TIMESTAMPTZOID}
};

static AlxPlan interrupted_plan = {
	"UPDATE alexandrite.mesh_jobs SET state = 'failed', finished_at = pg_catalog.clock_timestamp(),"
	" error_sqlstate = $2, error_message = $3"
	" WHERE id OPERATOR(pg_catalog.=) $1",
	3, {INT8OID, TEXTOID, TEXTOID}
};

/* SQLSTATE and text of an interrupted attempt */
#define MESH_INTERRUPTED_STATE "57P02"
#define MESH_INTERRUPTED_MSG "mesh analysis was interrupted (a crash of its worker or of the server)"

void
AlxMeshJobLockTag(LOCKTAG *tag, int64 job_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) ((uint64) job_id >> 32),
						 (uint32) job_id, 5);
}

void
AlxMeshPoolShmemRequest(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(AlxMeshPoolShared)));
}

void
AlxMeshPoolShmemStartup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	MeshPool = ShmemInitStruct("alexandrite mesh pool", sizeof(AlxMeshPoolShared), &found);
	if (!found)
	{
		SpinLockInit(&MeshPool->mutex);
		for (int i = 0; i < MESH_MAX_WORKERS; i++)
			MeshPool->procno[i] = -1;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Sets every pool worker's latch at commit of a transaction that queued a job. */
static void
pool_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		if (wakeup_pending && MeshPool != NULL)
		{
			int			procnos[MESH_MAX_WORKERS];

			SpinLockAcquire(&MeshPool->mutex);
			memcpy(procnos, MeshPool->procno, sizeof(procnos));
			SpinLockRelease(&MeshPool->mutex);
			for (int i = 0; i < MESH_MAX_WORKERS; i++)
				if (procnos[i] >= 0)
					SetLatch(&ProcGlobal->allProcs[procnos[i]].procLatch);
		}
		wakeup_pending = false;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
		wakeup_pending = false;
}

/* Wakes the pool when the current transaction commits (a job was queued). */
void
AlxMeshPoolWakeupAtCommit(void)
{
	if (MeshPool == NULL)
		return;					/* not preloaded: there is no pool */
	if (!callback_registered)
	{
		RegisterXactCallback(pool_xact_callback, NULL);
		callback_registered = true;
	}
	wakeup_pending = true;
}

/* This worker's slot in the pool, freed when it exits. */
static void
pool_leave(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg);

	SpinLockAcquire(&MeshPool->mutex);
	MeshPool->procno[slot] = -1;
	SpinLockRelease(&MeshPool->mutex);
}

static void
pool_join(void)
{
	int			slot = -1;

	if (MeshPool == NULL)
		return;
	SpinLockAcquire(&MeshPool->mutex);
	for (int i = 0; i < MESH_MAX_WORKERS && slot < 0; i++)
		if (MeshPool->procno[i] < 0)
		{
			MeshPool->procno[i] = MyProc->pgprocno;
			slot = i;
		}
	SpinLockRelease(&MeshPool->mutex);
	if (slot >= 0)
		before_shmem_exit(pool_leave, Int32GetDatum(slot));
}

/* Register the pool (from _PG_init, when preloaded). */
void
AlxMeshRegisterWorkers(void)
{
	for (int i = 0; i < alx_mesh_workers; i++)
	{
		char		name[BGW_MAXLEN];

		snprintf(name, sizeof(name), MESH_WORKER_NAME " %d", i + 1);
		AlxRegisterWorker(name, "AlxMeshWorkerMain", 5);
	}
}

/* true when the job table exists in this database */
static bool
jobs_installed(void)
{
	Oid			nsp = get_namespace_oid(ALX_SCHEMA_NAME, true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("mesh_jobs", nsp)) &&
		OidIsValid(get_relname_relid("orders", nsp));
}

/*
 * A candidate whose job lock we got: a queued job starts; a job found
 * running was interrupted and starts again, or fails when it has had all
 * its attempts.  Returns whether it starts.
 */
static bool
start_candidate(int64 job_id, bool interrupted, int attempts, int64 order_id,
				const char *filename, TimestampTz now, TimestampTz claimed_at)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(job_id);
	/* started_at: when the claim saw the row, not when this UPDATE ran (a
	 * worker descheduled in between would look as if it claimed late) */
	values[4] = TimestampTzGetDatum(claimed_at);
	if (interrupted && attempts >= alx_mesh_job_max_attempts)
	{
		values[1] = CStringGetTextDatum(MESH_INTERRUPTED_STATE);
		values[2] = CStringGetTextDatum(MESH_INTERRUPTED_MSG);
		AlxPlanRun(&interrupted_plan, values, NULL, false, 0);
		ereport(LOG,
				(errmsg("mesh job " INT64_FORMAT " failed: interrupted in each of its %d attempts",
						job_id, attempts)));
		AlxMeshJobEvent(job_id, "mesh.rejected", order_id, -1, 0, filename,
						MESH_INTERRUPTED_STATE, MESH_INTERRUPTED_MSG);
		return false;
	}
	values[1] = TimestampTzGetDatum(AlxMeshJobBackoff(now, attempts + 1));
	if (interrupted)
	{
		values[2] = CStringGetTextDatum(MESH_INTERRUPTED_STATE);
		values[3] = CStringGetTextDatum(MESH_INTERRUPTED_MSG);
		ereport(LOG,
				(errmsg("mesh job " INT64_FORMAT " was interrupted in attempt %d; trying again",
						job_id, attempts)));
	}
	else
		nulls[2] = nulls[3] = 'n';
	AlxPlanRun(&start_plan, values, nulls, false, 0);
	return true;
}

/*
 * Tries the candidates of the last statement in order; returns the first
 * one that starts (its job lock then held by this session), or 0.
 */
static int64
claim_candidate(TimestampTz now, int *attempt)
{
	SPITupleTable *cands = SPI_tuptable;
	uint64		ncands = SPI_processed;

	for (uint64 i = 0; i < ncands; i++)
	{
		HeapTuple	t = cands->vals[i];
		TupleDesc	d = cands->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
		char	   *state = TextDatumGetCString(SPI_getbinval(t, d, 2, &isnull));
		int			attempts = DatumGetInt32(SPI_getbinval(t, d, 3, &isnull));
		Datum		ov = SPI_getbinval(t, d, 4, &isnull);
		int64		order_id = isnull ? 0 : DatumGetInt64(ov);
		char	   *filename = SPI_getvalue(t, d, 5);
		TimestampTz claimed_at = DatumGetTimestampTz(SPI_getbinval(t, d, 6, &isnull));
		LOCKTAG		tag;

		AlxMeshJobLockTag(&tag, id);
		if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
			continue;			/* a live worker runs it */
		if (start_candidate(id, strcmp(state, "running") == 0, attempts, order_id,
							filename, now, claimed_at))
		{
			*attempt = attempts + 1;
			return id;
		}
		LockRelease(&tag, ExclusiveLock, true);
	}
	return 0;
}

/*
 * Claims a job; returns its id (its job lock held by this session) and its
 * attempt number, or 0.  In the caller's transaction.
 */
static int64
claim_job(int *attempt)
{
	AlxSavedUser save;
	Datum		values[2];
	TimestampTz now = GetCurrentTimestamp();
	int64		claimed;

	AlxCoreBegin(&save);
	values[0] = TimestampTzGetDatum(now);
	/* at most one live job per worker of the cluster, and some interrupted ones */
	values[1] = Int32GetDatum(Max(alx_mesh_workers, 1) * 2 + 2);
	AlxPlanRun(&running_plan, values, NULL, false, 0);
	claimed = claim_candidate(now, attempt);
	if (claimed == 0)
	{
		AlxPlanRun(&queued_plan, values, NULL, false, 0);
		claimed = claim_candidate(now, attempt);
	}
	AlxCoreEnd(&save);
	return claimed;
}

/*
 * One round: claim and run one job.  Returns whether there was one.  The
 * job is read, analysed, and stored in three transactions (jobs_run.c):
 * the analysis, which may take alexandrite.mesh_timeout, holds no snapshot
 * and no lock but the job's and its analysis slot.  CurrentMemoryContext
 * (reset by the caller after the round) holds the job between them.
 */
static bool
mesh_round(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	int64		job_id = 0;
	int			attempt = 0;
	AlxMeshJob	job;
	bool		more = false;
	LOCKTAG		tag;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	AlxWorkerLockGate();		/* before any table of the extension (worker.c) */
	PushActiveSnapshot(GetTransactionSnapshot());
	if (jobs_installed())
		job_id = claim_job(&attempt);
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (job_id == 0)
		return false;

	/* each step's own start time: query_start tells the steps apart */
	SetCurrentStatementStartTimestamp();
	pgstat_report_activity(STATE_RUNNING, "alexandrite: reading a mesh job");
	StartTransactionCommand();
	AlxWorkerLockGate();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (jobs_installed())
		more = AlxMeshJobLoad(&job, job_id, attempt, cxt);
	PopActiveSnapshot();
	CommitTransactionCommand();

	if (more)
	{
		/* no snapshot, no gate: the analysis reads no table */
		SetCurrentStatementStartTimestamp();
		pgstat_report_activity(STATE_RUNNING, "alexandrite: analysing a mesh job");
		StartTransactionCommand();
		AlxMeshJobAnalyse(&job);
		CommitTransactionCommand();

		SetCurrentStatementStartTimestamp();
		pgstat_report_activity(STATE_RUNNING, "alexandrite: storing a mesh job");
		StartTransactionCommand();
		AlxWorkerLockGate();
		PushActiveSnapshot(GetTransactionSnapshot());
		/* a DROP EXTENSION in between: nothing left to store into (and after
		 * a CREATE, job ids start again: AlxMeshJobFinish checks the table) */
		if (jobs_installed())
			AlxMeshJobFinish(&job);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	MemoryContextSwitchTo(cxt);
	AlxMeshJobLockTag(&tag, job_id);
	LockRelease(&tag, ExclusiveLock, true);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return true;
}

void
AlxMeshWorkerMain(Datum main_arg)
{
	MemoryContext cxt;

	AlxWorkerStart(MESH_WORKER_NAME);
	pool_join();
	cxt = AllocSetContextCreate(TopMemoryContext, "alexandrite mesh worker",
								ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		bool		worked = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			AlxWorkerReloadConfig(MESH_WORKER_NAME);
		}
		if (!alx_mesh_pool_paused)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			worked = mesh_round();
			MemoryContextSwitchTo(old);
			MemoryContextReset(cxt);
		}
		if (!worked)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 MESH_POLL_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}
