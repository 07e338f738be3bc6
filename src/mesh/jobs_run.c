/*-------------------------------------------------------------------------
 *
 * jobs_run.c
 *	  One mesh job, claimed by a worker of the pool: analyse, store, attach
 *	  to the order, price, tell; or retry, or fail.
 *
 * The analysis is mesh_ingest()'s (mesh_sql.c: AlxMeshFind, AlxMeshAnalyse,
 * AlxMeshStore): the same helper, the same limits, the same slots
 * (alexandrite.mesh_max_concurrent), the same row in alexandrite.meshes for
 * the same bytes and unit.  Each step runs in a subtransaction: whatever the
 * file does to the helper ends as an error that the job records, never as
 * an error of the worker.  The helper runs in a transaction of its own,
 * without a snapshot or the workers' gate (AlxMeshJobLoad, below).
 *
 * An error of the file itself (class 22: not a valid mesh, format; class
 * 54: over a limit) fails the job at once.  Any other error (the helper
 * crashed or was stopped by its sandbox, no analysis slot, a timeout, a
 * cancel) is retried with exponential backoff from
 * alexandrite.mesh_job_retry_delay, up to alexandrite.mesh_job_max_attempts
 * attempts, and then fails the job with that last error.  A failed job keeps
 * its bytes until mesh_job_retry() or mesh_job_discard().
 *
 * A job attached to an order then sets the order's model through the order
 * core (src/core: the lock, the check and the write of set_order_model),
 * and prices the order with price_order() when it has a material.  Those
 * run as the worker's role (their writes switch to the owner themselves),
 * so the quote's actor is the worker's role.  A refusal (the order is no
 * longer new, the model needs review) does not undo the analysis: it is the
 * job's note.  The latest request for the order's model wins: under the
 * order's lock, a job gives the order its mesh only if the order still has
 * the model it had when the job was submitted (or one that an earlier job
 * of the order gave it: gave_model) and no later job of the order is done;
 * while a later job of the order is queued or running, the job waits for it
 * (deferred, as for a held order), so that a later job that fails leaves
 * the order to this one.  Else the note says why.  Nothing but the worker
 * writes a job's row for this, so set_order_model and mesh_submit take no
 * lock on jobs.
 * Events: mesh.analyzed or mesh.rejected (aggregate "mesh",
 * the job id), through AlxOutboxEmit() (outbox_emit() refuses them to
 * everyone else).
 *
 * IDENTIFICATION
 *	  src/mesh/jobs_run.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "core/core.h"
#include "mesh/jobs.h"
#include "outbox/outbox.h"


static AlxPlan load_plan = {
	"SELECT j.data, j.filename, j.unit, j.order_id FROM alexandrite.mesh_jobs j"
	" WHERE j.id OPERATOR(pg_catalog.=) $1 AND j.state OPERATOR(pg_catalog.=) 'running'"
	" AND j.data IS NOT NULL",
	1, {INT8OID}
};

/*
 * Whether job $1 may still give its order the mesh, read under the order's
 * lock ($2: the order's model now, NULL if none): the model the order had
 * when the job was submitted; the latest later job of the order that is
 * done, and one that is queued or running; whether an earlier job of the
 * order gave it the model it has now.
 */
static AlxPlan latest_plan = {
	"SELECT j.order_mesh_id,"
	"       (SELECT pg_catalog.max(k.id) FROM alexandrite.mesh_jobs k"
	"         WHERE k.order_id OPERATOR(pg_catalog.=) j.order_id AND k.id OPERATOR(pg_catalog.>) j.id"
	"           AND k.state OPERATOR(pg_catalog.=) 'done'),"
	"       (SELECT pg_catalog.max(k.id) FROM alexandrite.mesh_jobs k"
	"         WHERE k.order_id OPERATOR(pg_catalog.=) j.order_id AND k.id OPERATOR(pg_catalog.>) j.id"
	"           AND k.state OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'running']::pg_catalog.text[])),"
	"       EXISTS (SELECT FROM alexandrite.mesh_jobs e"
	"                WHERE e.order_id OPERATOR(pg_catalog.=) j.order_id AND e.id OPERATOR(pg_catalog.<) j.id"
	"                  AND e.gave_model AND e.mesh_id OPERATOR(pg_catalog.=) $2)"
	"  FROM alexandrite.mesh_jobs j WHERE j.id OPERATOR(pg_catalog.=) $1",
	2, {INT8OID, INT8OID}
};

static AlxPlan done_plan = {
	"UPDATE alexandrite.mesh_jobs SET state = 'done', mesh_id = $2, data = NULL,"
	" finished_at = pg_catalog.clock_timestamp(), note = $3, gave_model = $4"
	" WHERE id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'running'",
	4, {INT8OID, INT8OID, TEXTOID, BOOLOID}
};

/*
 * An order that another transaction holds (an open transaction of the MES,
 * say), or a later job of the order not done yet: the job waits for it, its attempt given back, instead of its
 * worker waiting on the row (which stalled the pool).  It waits half as
 * long as it has waited for the order so far (waiting_since, set by its
 * first such attempt), at least the retry delay ($2 seconds), at most a
 * minute: each try costs a worker up to a second on the row, so the jobs
 * of orders held for long must not keep the pool busy.
 */
static AlxPlan defer_plan = {
	"UPDATE alexandrite.mesh_jobs SET state = 'queued', attempts = attempts OPERATOR(pg_catalog.-) 1,"
	" waiting_since = COALESCE(waiting_since, pg_catalog.clock_timestamp()),"
	" next_attempt_at = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+)"
	"   GREATEST(pg_catalog.make_interval(secs => $2),"
	"            LEAST((pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)"
	"                   COALESCE(waiting_since, pg_catalog.clock_timestamp()))"
	"                  OPERATOR(pg_catalog./) 2::pg_catalog.float8,"
	"                  '1 min'::pg_catalog.interval)),"
	" note = $3"
	" WHERE id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'running'",
	3, {INT8OID, FLOAT8OID, TEXTOID}
};

/* how long a job's worker waits for its order's row before it defers the job */
#define MESH_ATTACH_LOCK_TIMEOUT "1s"

static AlxPlan fail_plan = {
	"UPDATE alexandrite.mesh_jobs SET"
	" state = CASE WHEN $5 THEN 'failed' ELSE 'queued' END,"
	" data = CASE WHEN $6 THEN NULL ELSE data END,"
	" error_sqlstate = $2, error_message = $3, next_attempt_at = $4,"
	" finished_at = CASE WHEN $5 THEN pg_catalog.clock_timestamp() END"
	" WHERE id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'running'",
	6, {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID, BOOLOID, BOOLOID}
};

/* Normalise and check a unit argument; returns a static string. */
const char *
AlxMeshJobCheckUnit(text *unit)
{
	char	   *u = text_to_cstring(unit);
	static const char *const units[] = {"mm", "cm", "m", "in", NULL};

	for (int i = 0; units[i]; i++)
		if (strcmp(u, units[i]) == 0)
			return units[i];
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unit \"%s\" is not supported", u),
			 errhint("Use \"mm\", \"cm\", \"m\" or \"in\".")));
	return NULL;				/* keep compiler quiet */
}

/* a step of a job, run in a subtransaction */
typedef void (*AlxJobStep) (void *arg);

/*
 * Runs step(arg) in a subtransaction; returns NULL, or the error it raised
 * (copied; the subtransaction rolled back).  Allocations of the step live
 * in the caller's memory context.
 */
static ErrorData *
run_step(AlxJobStep step, void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile err = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		step(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		err = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return err;
}

/* ---- pricing ---------------------------------------------------------- */

static void
price_step(void *arg)
{
	int64		order_id = *(int64 *) arg;
	Oid			argtypes[2] = {INT8OID, JSONBOID};
	Oid			fn;
	AlxSavedUser save;

	/* looked up as the owner: the worker's role has no USAGE on the schema */
	AlxBecomeOwner(&save);
	fn = LookupFuncName(list_make2(makeString(ALX_SCHEMA_NAME), makeString("price_order")),
						2, argtypes, false);
	AlxRestoreUser(&save);
	(void) OidFunctionCall2(fn, Int64GetDatum(order_id),
							DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
}

/*
 * Sets the model of an order that is still new (the order core's lock,
 * check and write, as set_order_model does) and prices it when it has a
 * material, if job job_id is still the latest request for the order's
 * model (latest_plan; *gave tells whether the model was written).  A worker
 * (bounded_wait) whose job has a later job of the order queued or running
 * gets *wait_for, that job's id, and the order unchanged: it defers the
 * job.  Runs as its caller; returns NULL or a note on what was not done.  An error of the model write
 * propagates; a refused price is a note.
 */
char *
AlxMeshJobAttach(int64 job_id, int64 order_id, int64 mesh_id, bool bounded_wait,
				 bool *gave, int64 *wait_for)
{
	AlxSavedUser save;
	AlxOrderRow row;
	AlxStatus	status;
	bool		has_material;
	ErrorData  *err;
	int			nest = NewGUCNestLevel();
	MemoryContext cxt = CurrentMemoryContext;

	*gave = false;
	*wait_for = 0;

	/*
	 * a worker waits at most MESH_ATTACH_LOCK_TIMEOUT for the order's row
	 * (55P03 then: the caller defers the job); the pricing below waits as
	 * it always did
	 */
	if (bounded_wait)
		(void) set_config_option("lock_timeout", MESH_ATTACH_LOCK_TIMEOUT, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	AlxCoreBegin(&save);
	if (!AlxOrderLock(order_id, &row, true))
	{
		AlxCoreEnd(&save);
		AtEOXact_GUC(true, nest);
		return psprintf("order " INT64_FORMAT " does not exist", order_id);
	}
	/*
	 * a later request for the model, committed before the lock was ours:
	 * read with a new snapshot (not read-only), as the lock was
	 */
	AlxPlanRun(&latest_plan, (Datum[]) {Int64GetDatum(job_id), Int64GetDatum(row.mesh_id)},
			   row.has_mesh ? NULL : " n", false, 1);
	if (SPI_processed == 1)
	{
		bool		isnull;
		bool		no_model;
		int64		then = AlxSpiInt8(0, 1, &no_model);
		int64		later_done = AlxSpiInt8(0, 2, &isnull);
		int64		later_open = AlxSpiInt8(0, 3, &isnull);
		bool		by_earlier_job = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
															   SPI_tuptable->tupdesc, 4, &isnull));
		char	   *note = NULL;

		if (later_done == 0 && later_open > 0 && bounded_wait)
		{
			AlxCoreEnd(&save);
			AtEOXact_GUC(true, nest);
			*wait_for = later_open;
			return NULL;
		}
		/*
		 * (mesh_submit's known mesh, not a worker, does not wait: a later
		 * job still queued will find the model this one gives, gave_model)
		 */
		if (later_done > 0)
			note = psprintf("order " INT64_FORMAT " was not changed: job " INT64_FORMAT
							", submitted later for the order, replaces this one", order_id,
							later_done);
		else if ((no_model ? row.has_mesh : (!row.has_mesh || row.mesh_id != then)) && !by_earlier_job)
			note = psprintf("order " INT64_FORMAT " was not changed: its model was changed after this job was submitted",
							order_id);
		if (note != NULL)
		{
			/* SPI's memory goes with AlxCoreEnd */
			note = MemoryContextStrdup(cxt, note);
			AlxCoreEnd(&save);
			AtEOXact_GUC(true, nest);
			return note;
		}
	}
	status = row.status;
	has_material = row.material != NULL;
	if (status == ALX_ST_NEW)
	{
		AlxCheckOrderModel(true, mesh_id, row.material);
		AlxOrderWriteModel(&row, true, mesh_id, row.material);
		*gave = true;
	}
	AlxCoreEnd(&save);
	AtEOXact_GUC(true, nest);
	if (status != ALX_ST_NEW)
		return psprintf("order " INT64_FORMAT " was not changed: it is %s",
						order_id, AlxStatusNames[status]);
	if (!has_material)
		return NULL;
	err = run_step(price_step, &order_id);
	if (err != NULL)
		return psprintf("order " INT64_FORMAT " was not priced: %s", order_id, err->message);
	return NULL;
}

/* ---- events ----------------------------------------------------------- */

typedef struct EventArgs
{
	const char *agg_id;
	const char *event_type;
	Jsonb	   *payload;
} EventArgs;

static void
event_step(void *arg)
{
	EventArgs  *e = (EventArgs *) arg;

	(void) AlxOutboxEmit("mesh", e->agg_id, e->event_type, e->payload,
						 AlxOutboxHeaders(NULL));
}

static void
json_key(StringInfo s, const char *key)
{
	if (s->len > 1)
		appendStringInfoString(s, ", ");
	escape_json(s, key);
	appendStringInfoString(s, ": ");
}

/*
 * Writes mesh.analyzed or mesh.rejected (aggregate "mesh", the job id) in
 * the current transaction.  attached (0 or 1) says whether the job's order
 * took the mesh, -1 leaves the key out (no order, or a rejection).  An event the outbox refuses is logged, never
 * an error of the job.
 */
void
AlxMeshJobEvent(int64 job_id, const char *event_type, int64 order_id,
				int attached, int64 mesh_id, const char *filename,
				const char *sqlstate, const char *message)
{
	StringInfoData s;
	EventArgs	e;
	ErrorData  *err;

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	json_key(&s, "job_id");
	appendStringInfo(&s, INT64_FORMAT, job_id);
	json_key(&s, "order_id");
	if (order_id > 0)
		appendStringInfo(&s, INT64_FORMAT, order_id);
	else
		appendStringInfoString(&s, "null");
	if (attached >= 0)
	{
		json_key(&s, "attached");
		appendStringInfoString(&s, attached ? "true" : "false");
	}
	if (mesh_id > 0)
	{
		json_key(&s, "mesh_id");
		appendStringInfo(&s, INT64_FORMAT, mesh_id);
	}
	json_key(&s, "filename");
	if (filename)
		escape_json(&s, filename);
	else
		appendStringInfoString(&s, "null");
	if (sqlstate)
	{
		json_key(&s, "sqlstate");
		escape_json(&s, sqlstate);
		json_key(&s, "error");
		escape_json(&s, message ? message : "");
	}
	appendStringInfoChar(&s, '}');

	e.agg_id = psprintf(INT64_FORMAT, job_id);
	e.event_type = event_type;
	e.payload = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s.data)));
	err = run_step(event_step, &e);
	if (err != NULL)
		ereport(WARNING,
				(errmsg("event %s of mesh job " INT64_FORMAT " was not written: %s",
						event_type, job_id, err->message)));
}

/* ---- the job ---------------------------------------------------------- */

/*
 * Errors of the file itself (class 22, data exception: not a valid mesh,
 * format; class 54: over a limit) are final; anything else may pass.
 */
bool
AlxMeshJobRetryable(int sqlerrcode)
{
	int			cat = ERRCODE_TO_CATEGORY(sqlerrcode);

	return cat != ERRCODE_DATA_EXCEPTION && cat != ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

/* When a job that has made `attempts` attempts may be tried again. */
TimestampTz
AlxMeshJobBackoff(TimestampTz from, int attempts)
{
	int64		delay_ms = alx_mesh_job_retry_delay_ms;
	int			shift = Max(0, Min(attempts - 1, 20));

	delay_ms <<= shift;
	delay_ms = Min(delay_ms, (int64) 3600 * 1000);
	return TimestampTzPlusMilliseconds(from, delay_ms);
}

/* mesh_ingest's steps for a job, in a subtransaction (run_step) */
static void
find_step(void *arg)
{
	AlxMeshJob *job = (AlxMeshJob *) arg;

	job->sha = AlxMeshSha256(VARDATA_ANY(job->data), VARSIZE_ANY_EXHDR(job->data));
	job->mesh_id = AlxMeshFind(job->sha, job->unit, &job->current);
}

static void
analyse_step(void *arg)
{
	AlxMeshJob *job = (AlxMeshJob *) arg;

	job->analysis = AlxMeshAnalyse(job->data, job->unit);
}

static void
store_step(void *arg)
{
	AlxMeshJob *job = (AlxMeshJob *) arg;

	job->mesh_id = AlxMeshStore(job->sha, job->unit, job->filename, job->data,
								job->analysis, job->mesh_id);
}

/* Reads the claimed job's input into job->cxt; false when it is no longer there. */
static bool
load_job(AlxMeshJob *job)
{
	AlxSavedUser save;
	Datum		values[1];
	bool		found = false;

	AlxCoreBegin(&save);
	values[0] = Int64GetDatum(job->job_id);
	AlxPlanRun(&load_plan, values, NULL, true, 1);
	if (SPI_processed == 1)
	{
		HeapTuple	t = SPI_tuptable->vals[0];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		v;
		MemoryContext old = MemoryContextSwitchTo(job->cxt);

		/* detoasted into the job's memory, outliving SPI and the transaction */
		job->data = DatumGetByteaPCopy(SPI_getbinval(t, d, 1, &isnull));
		v = SPI_getbinval(t, d, 2, &isnull);
		job->filename = isnull ? NULL : DatumGetTextPCopy(v);
		job->filename_str = job->filename ? text_to_cstring(job->filename) : NULL;
		v = SPI_getbinval(t, d, 3, &isnull);
		job->unit = pstrdup(TextDatumGetCString(v));
		v = SPI_getbinval(t, d, 4, &isnull);
		job->order_id = isnull ? 0 : DatumGetInt64(v);
		MemoryContextSwitchTo(old);
		found = true;
	}
	AlxCoreEnd(&save);
	return found;
}

/* Records a failed attempt: queued again after a backoff, or failed. */
static void
record_failure(int64 job_id, int attempts, int64 order_id, const char *filename,
			   ErrorData *err)
{
	const char *sqlstate = unpack_sql_state(err->sqlerrcode);
	bool		file_error = !AlxMeshJobRetryable(err->sqlerrcode);
	bool		final = file_error || attempts >= alx_mesh_job_max_attempts;
	Datum		values[6];
	AlxSavedUser save;

	values[0] = Int64GetDatum(job_id);
	values[1] = CStringGetTextDatum(sqlstate);
	values[2] = CStringGetTextDatum(err->message ? err->message : "");
	values[3] = TimestampTzGetDatum(AlxMeshJobBackoff(GetCurrentTimestamp(), attempts));
	values[4] = BoolGetDatum(final);
	/*
	 * a file refused for what it is would be refused again: its bytes are
	 * dropped (a job failed after its attempts keeps them for
	 * mesh_job_retry, outside the queue's room)
	 */
	values[5] = BoolGetDatum(file_error);
	AlxCoreBegin(&save);
	AlxPlanRun(&fail_plan, values, NULL, false, 0);
	AlxCoreEnd(&save);
	ereport(LOG,
			(errmsg("mesh job " INT64_FORMAT " attempt %d failed%s: %s (SQLSTATE %s)",
					job_id, attempts, final ? ", job failed" : ", will retry",
					err->message ? err->message : "", sqlstate)));
	if (final)
		AlxMeshJobEvent(job_id, "mesh.rejected", order_id, -1, 0, filename,
						sqlstate, err->message);
}

typedef struct AttachArgs
{
	int64		job_id;
	int64		order_id;
	int64		mesh_id;
	char	   *note;			/* out */
	bool		gave;			/* out */
	int64		wait_for;		/* out */
} AttachArgs;

static void
attach_step(void *arg)
{
	AttachArgs *a = (AttachArgs *) arg;

	a->note = AlxMeshJobAttach(a->job_id, a->order_id, a->mesh_id, true, &a->gave, &a->wait_for);
}

/*
 * Puts a job whose order is held by another transaction back in the queue,
 * its attempt given back, to try again later (defer_plan); its bytes
 * stay, and its mesh (stored by this attempt) is found again by its hash.
 */
static void
defer_job(int64 job_id, const char *note)
{
	Datum		values[3];
	AlxSavedUser save;

	values[0] = Int64GetDatum(job_id);
	values[1] = Float8GetDatum(alx_mesh_job_retry_delay_ms / 1000.0);
	values[2] = CStringGetTextDatum(note);
	AlxCoreBegin(&save);
	AlxPlanRun(&defer_plan, values, NULL, false, 0);
	AlxCoreEnd(&save);
	ereport(LOG, (errmsg("mesh job " INT64_FORMAT ": %s; will try again", job_id, note)));
}

/*
 * A job the caller has claimed (state running, its lock held) runs in three
 * of the caller's transactions (jobs_worker.c): AlxMeshJobLoad and
 * AlxMeshJobFinish with a snapshot and the workers' gate, AlxMeshJobAnalyse
 * in between with neither, so the helper's run (up to
 * alexandrite.mesh_timeout) holds back no vacuum and no DROP EXTENSION.
 * The job stays 'running' under its lock throughout; a worker that dies in
 * between leaves it to the reaper, as before.
 */

/*
 * Step 1: reads the job into cxt and looks for a stored row of its bytes.
 * False when there is nothing more to do: the job is gone, or the look-up
 * failed (recorded as a failed attempt).
 */
bool
AlxMeshJobLoad(AlxMeshJob *job, int64 job_id, int attempts, MemoryContext cxt)
{
	MemoryContext old;

	memset(job, 0, sizeof(*job));
	job->job_id = job_id;
	job->attempts = attempts;
	job->cxt = cxt;
	if (!load_job(job))
		return false;
	job->jobs_relid = AlxRelid("mesh_jobs", false);
	old = MemoryContextSwitchTo(cxt);
	job->err = run_step(find_step, job);
	MemoryContextSwitchTo(old);
	if (job->err != NULL)
	{
		record_failure(job_id, attempts, job->order_id, job->filename_str, job->err);
		return false;
	}
	return true;
}

/*
 * Step 2, in a transaction without a snapshot: the helper's analysis, unless
 * a row of this analyzer already holds it.  Its error is kept for step 3.
 */
void
AlxMeshJobAnalyse(AlxMeshJob *job)
{
	MemoryContext old;

	if (job->mesh_id != 0 && job->current)
		return;
	old = MemoryContextSwitchTo(job->cxt);
	job->err = run_step(analyse_step, job);
	MemoryContextSwitchTo(old);
}

/* Step 3: store the analysis (or record its failure), attach, tell. */
void
AlxMeshJobFinish(AlxMeshJob *job)
{
	int64		order_id = job->order_id;
	char	   *note = NULL;
	ErrorData  *err;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		gave = false;
	AlxSavedUser save;

	/*
	 * The analysis held no gate: the extension may have been dropped and
	 * created again meanwhile, and job ids started again.  The job read is
	 * not this table's (the state checks of the plans guard the rest).
	 */
	if (AlxRelid("mesh_jobs", true) != job->jobs_relid)
	{
		ereport(LOG,
				(errmsg("mesh job " INT64_FORMAT ": the extension was installed again during its analysis; its result is dropped",
						job->job_id)));
		return;
	}
	if (job->err == NULL && !(job->mesh_id != 0 && job->current))
		job->err = run_step(store_step, job);
	if (job->err != NULL)
	{
		record_failure(job->job_id, job->attempts, order_id, job->filename_str, job->err);
		return;
	}
	/* the order core's read-only checks must see the new mesh row */
	CommandCounterIncrement();
	PopActiveSnapshot();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (order_id > 0)
	{
		AttachArgs	att = {job->job_id, order_id, job->mesh_id, NULL, false, 0};

		err = run_step(attach_step, &att);
		if (err != NULL && err->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
		{
			defer_job(job->job_id, psprintf("waiting for order " INT64_FORMAT ", which another transaction holds",
											order_id));
			return;
		}
		if (err == NULL && att.wait_for > 0)
		{
			defer_job(job->job_id, psprintf("waiting for job " INT64_FORMAT ", submitted later for order " INT64_FORMAT,
											att.wait_for, order_id));
			return;
		}
		gave = err == NULL && att.gave;
		note = err != NULL ?
			psprintf("order " INT64_FORMAT " was not changed: %s", order_id, err->message) :
			att.note;
	}
	values[0] = Int64GetDatum(job->job_id);
	values[1] = Int64GetDatum(job->mesh_id);
	if (note != NULL)
		values[2] = CStringGetTextDatum(note);
	else
		nulls[2] = 'n';
	values[3] = BoolGetDatum(gave);
	AlxCoreBegin(&save);
	AlxPlanRun(&done_plan, values, nulls, false, 0);
	AlxCoreEnd(&save);
	AlxMeshJobEvent(job->job_id, "mesh.analyzed", order_id, order_id > 0 ? gave : -1,
					job->mesh_id, job->filename_str, NULL, NULL);
}
