/*-------------------------------------------------------------------------
 *
 * jobs_submit.c
 *	  The SQL entry points of mesh jobs: mesh_submit(), mesh_job_retry(),
 *	  mesh_job_discard().
 *
 * mesh_submit() parses nothing: it checks the arguments, hashes the bytes
 * and stores them (uncompressed, out of line) in alexandrite.mesh_jobs for
 * the pool (jobs_worker.c).  When the same bytes in the same unit were
 * already analysed by this analyzer version, the job is done at once with
 * that mesh (and an attached order gets it and its price, in the caller's
 * transaction).  The queue is bounded: the bytes of the queued and
 * running jobs may not exceed alexandrite.mesh_queue_max_bytes, else ERROR
 * 53400 -- "try later"; a failed job's bytes do not count, so that
 * uploads that fail cannot lock out the others.  The
 * check runs after the row is written, under a transaction-level lock
 * that every submit takes, with a fresh snapshot: concurrent submits
 * cannot both pass on the same room.
 *
 * All three run as their caller and write as the extension owner.
 *
 * IDENTIFICATION
 *	  src/mesh/jobs_submit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"

#include "core/core.h"
#include "mesh/geometry.h"
#include "mesh/jobs.h"

/* the longest file name a job keeps (it goes into events) */
#define MESH_FILENAME_MAX 1024
/* key of the lock on the queue's room (AlxLockInternal, ALX_LOCK_MESH_QUEUE): 'ALXQ' */
#define MESH_QUEUE_KEY 0x414C5851u

static AlxPlan order_plan = {
	"SELECT o.status::pg_catalog.text,"
	"       alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, pg_catalog.now()),"
	"       o.mesh_id"
	"  FROM alexandrite.orders o WHERE o.id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}
};

static AlxPlan known_plan = {
	"SELECT m.id FROM alexandrite.meshes m"
	" WHERE m.sha256 OPERATOR(pg_catalog.=) $1 AND m.unit OPERATOR(pg_catalog.=) $2"
	"   AND m.analyzer_version OPERATOR(pg_catalog.=) $3",
	3, {BYTEAOID, TEXTOID, INT4OID}
};

static AlxPlan queued_bytes_plan = {
	"SELECT COALESCE(pg_catalog.sum(j.bytes), 0)::pg_catalog.int8 FROM alexandrite.mesh_jobs j"
	" WHERE j.state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[])"
	"   AND j.data IS NOT NULL",
	0, {InvalidOid}
};

/* $9: the mesh when it is known (the job is done), else NULL */
static AlxPlan insert_plan = {
	"INSERT INTO alexandrite.mesh_jobs (state, order_id, filename, unit, data, bytes, sha256,"
	" priority, submitted_by, mesh_id, started_at, finished_at, order_mesh_id)"
	" VALUES (CASE WHEN $9 IS NULL THEN 'queued' ELSE 'done' END, $1, $2, $3,"
	"         CASE WHEN $9 IS NULL THEN $4 END, $5, $6, $7, $8, $9,"
	"         CASE WHEN $9 IS NOT NULL THEN pg_catalog.now() END,"
	"         CASE WHEN $9 IS NOT NULL THEN pg_catalog.now() END, $10)"
	" RETURNING id",
	10, {INT8OID, TEXTOID, TEXTOID, BYTEAOID, INT8OID, BYTEAOID, FLOAT8OID, TEXTOID, INT8OID, INT8OID}
};

static AlxPlan note_plan = {
	"UPDATE alexandrite.mesh_jobs SET note = $2, gave_model = $3 WHERE id OPERATOR(pg_catalog.=) $1",
	3, {INT8OID, TEXTOID, BOOLOID}
};

/*
 * A job attached to an order sets the order's model and prices it, later,
 * as the worker pool: the caller must hold those rights itself (EXECUTE on
 * set_order_model and price_order), so that mesh_submit gives no role more
 * than it was granted.  Checked as the caller, before the owner switch.
 */
static void
check_attach_rights(void)
{
	static const char *const fns[] = {"set_order_model", "price_order"};
	static const int nargs[] = {3, 2};
	static const Oid types[][3] = {{INT8OID, INT8OID, TEXTOID}, {INT8OID, JSONBOID}};
	Oid			caller = GetUserId();

	for (int i = 0; i < lengthof(fns); i++)
	{
		AlxSavedUser save;
		Oid			fn;

		AlxBecomeOwner(&save);
		fn = LookupFuncName(list_make2(makeString(ALX_SCHEMA_NAME), makeString((char *) fns[i])),
							nargs[i], types[i], false);
		AlxRestoreUser(&save);
		if (pg_proc_aclcheck(fn, caller, ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to attach a model to an order"),
					 errdetail("mesh_submit with an order sets its model and prices it: the caller needs EXECUTE on %s.%s.",
							   ALX_SCHEMA_NAME, fns[i])));
	}
}

/*
 * The attached order: it must exist and still be new (the state in which
 * set_order_model takes a model).  Returns its current SLA priority and
 * sets *model to its model (0: none), which the job records.
 */
static double
check_order(int64 order_id, bool *null_priority, int64 *model)
{
	char	   *status;

	AlxPlanRun(&order_plan, (Datum[]) {Int64GetDatum(order_id)}, NULL, true, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order " INT64_FORMAT " does not exist", order_id)));
	status = AlxSpiText(0, 1);
	if (strcmp(status, "new") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot change the model of order " INT64_FORMAT " in status \"%s\"",
						order_id, status),
				 errhint("Only new orders take a new model; submit without the order.")));
	{
		bool		isnull;
		Datum		p = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

		bool		no_model;
		int64		m = AlxSpiInt8(0, 3, &no_model);

		*model = no_model ? 0 : m;
		*null_priority = isnull;
		return isnull ? 0 : DatumGetFloat8(p);
	}
}

/* ERROR 53400 when the queue's bytes (this job's included) exceed the limit. */
static void
check_queue_room(int64 len)
{
	int64		queued;
	int64		limit = (int64) alx_mesh_queue_max_kb * 1024;
	bool		isnull;

	(void) AlxLockInternal(ALX_LOCK_MESH_QUEUE, MESH_QUEUE_KEY, 0, true);
	/* not read-only: a fresh snapshot, which sees every earlier holder's job */
	AlxPlanRun(&queued_bytes_plan, NULL, NULL, false, 1);
	queued = AlxSpiInt8(0, 1, &isnull);
	if (queued > limit)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("mesh job queue is full"),
				 errdetail("The queued files would take " INT64_FORMAT " bytes with this one of " INT64_FORMAT " bytes; alexandrite.mesh_queue_max_bytes allows " INT64_FORMAT ".",
						   queued, len, limit),
				 errhint("Try again later, or use mesh_job_discard() on queued jobs.")));
}

/* Checks the arguments of mesh_submit; returns the unit. */
static const char *
submit_args(FunctionCallInfo fcinfo, bytea **data, text **filename, int64 *order_id)
{
	size_t		len;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("mesh data must not be null")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("unit must not be null")));
	*data = PG_GETARG_BYTEA_PP(0);
	*filename = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	*order_id = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3);
	len = VARSIZE_ANY_EXHDR(*data);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
				 errmsg("mesh file is empty")));
	if (len > (size_t) alx_mesh_max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("mesh file of %zu bytes exceeds the limit of %d bytes", len, alx_mesh_max_bytes),
				 errhint("alexandrite.mesh_max_bytes sets the limit.")));
	if (*filename && VARSIZE_ANY_EXHDR(*filename) > MESH_FILENAME_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("file name is longer than %d bytes", MESH_FILENAME_MAX)));
	return AlxMeshJobCheckUnit(PG_GETARG_TEXT_PP(2));
}

PG_FUNCTION_INFO_V1(alexandrite_mesh_submit);

/*
 * mesh_submit(data bytea, filename text, unit text DEFAULT 'mm',
 *			   order_id bigint DEFAULT NULL) RETURNS bigint
 */
Datum
alexandrite_mesh_submit(PG_FUNCTION_ARGS)
{
	bytea	   *data;
	text	   *filename;
	int64		order_id;
	const char *unit;
	int64		len;
	char	   *caller = AlxCallerName();
	bytea	   *sha;
	AlxSavedUser save;
	Datum		v[10];
	char		n[10];
	bool		isnull;
	int64		known = 0;
	int64		job_id;

	/* a job is a write: say so before any internal statement does */
	PreventCommandIfReadOnly("mesh_submit()");
	unit = submit_args(fcinfo, &data, &filename, &order_id);
	len = VARSIZE_ANY_EXHDR(data);
	sha = AlxMeshSha256(VARDATA_ANY(data), len);
	memset(n, ' ', sizeof(n));
	if (order_id != 0)
		check_attach_rights();
	AlxCoreBegin(&save);
	if (order_id != 0)
	{
		bool		null_priority;
		int64		model;

		v[6] = Float8GetDatum(check_order(order_id, &null_priority, &model));
		n[6] = null_priority ? 'n' : ' ';
		v[9] = Int64GetDatum(model);
		n[9] = model != 0 ? ' ' : 'n';
	}
	else
		n[6] = n[9] = 'n';
	AlxPlanRun(&known_plan, (Datum[]) {PointerGetDatum(sha), CStringGetTextDatum(unit),
			   Int32GetDatum(ALX_ANALYZER_VERSION)}, NULL, true, 1);
	if (SPI_processed == 1)
		known = AlxSpiInt8(0, 1, &isnull);

	v[0] = Int64GetDatum(order_id);
	n[0] = order_id != 0 ? ' ' : 'n';
	v[1] = PointerGetDatum(filename);
	n[1] = filename ? ' ' : 'n';
	v[2] = CStringGetTextDatum(unit);
	v[3] = PointerGetDatum(data);
	v[4] = Int64GetDatum(len);
	v[5] = PointerGetDatum(sha);
	v[7] = CStringGetTextDatum(caller);
	v[8] = Int64GetDatum(known);
	n[8] = known != 0 ? ' ' : 'n';
	AlxPlanRun(&insert_plan, v, n, false, 1);
	job_id = AlxSpiInt8(0, 1, &isnull);
	if (known == 0)
	{
		check_queue_room(len);
		AlxMeshPoolWakeupAtCommit();
	}
	AlxCoreEnd(&save);

	if (known != 0)
	{
		bool		gave = false;
		int64		wait_for;
		char	   *note = order_id != 0 ?
			AlxMeshJobAttach(job_id, order_id, known, false, &gave, &wait_for) : NULL;

		if (note != NULL || gave)
		{
			AlxCoreBegin(&save);
			AlxPlanRun(&note_plan, (Datum[]) {Int64GetDatum(job_id),
					   note ? CStringGetTextDatum(note) : (Datum) 0, BoolGetDatum(gave)},
					   note ? NULL : " n ", false, 0);
			AlxCoreEnd(&save);
		}
		AlxMeshJobEvent(job_id, "mesh.analyzed", order_id, order_id != 0 ? gave : -1, known,
						filename ? text_to_cstring(filename) : NULL, NULL, NULL);
	}

	PG_RETURN_INT64(job_id);
}

/* ---- retry and discard ------------------------------------------------ */

static AlxPlan retry_plan = {
	"UPDATE alexandrite.mesh_jobs SET state = 'queued', attempts = 0,"
	" next_attempt_at = pg_catalog.now(), started_at = NULL, finished_at = NULL,"
	" waiting_since = NULL"
	" WHERE id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'failed'"
	"   AND data IS NOT NULL"
	" RETURNING bytes",
	1, {INT8OID}
};

/* (the old state is returned: a queued job discarded is rejected by it) */
#define MESH_DISCARDED_STATE "57014"
#define MESH_DISCARDED_MSG "discarded before analysis"
static AlxPlan discard_plan = {
	"UPDATE alexandrite.mesh_jobs j SET"
	" error_sqlstate = CASE WHEN j.state OPERATOR(pg_catalog.=) 'queued' THEN '" MESH_DISCARDED_STATE "'"
	"                       ELSE j.error_sqlstate END,"
	" error_message = CASE WHEN j.state OPERATOR(pg_catalog.=) 'queued' THEN '" MESH_DISCARDED_MSG "'"
	"                      ELSE j.error_message END,"
	" state = 'failed', data = NULL,"
	" finished_at = COALESCE(j.finished_at, pg_catalog.clock_timestamp()),"
	" note = 'discarded by ' OPERATOR(pg_catalog.||) $2"
	" FROM (SELECT id, state FROM alexandrite.mesh_jobs WHERE id OPERATOR(pg_catalog.=) $1 FOR UPDATE) o"
	" WHERE j.id OPERATOR(pg_catalog.=) o.id"
	"   AND o.state OPERATOR(pg_catalog.=) ANY ('{queued,failed}'::pg_catalog.text[])"
	"   AND j.data IS NOT NULL"
	" RETURNING j.id, o.state, j.order_id, j.filename",
	2, {INT8OID, TEXTOID}
};

static AlxPlan job_plan = {
	"SELECT j.state, j.data IS NOT NULL FROM alexandrite.mesh_jobs j"
	" WHERE j.id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}
};

/* Why a job could not be retried or discarded (the statement matched nothing). */
static void
refuse(int64 job_id, const char *verb, bool discard)
{
	char	   *state;
	bool		has_bytes;
	bool		isnull;

	AlxPlanRun(&job_plan, (Datum[]) {Int64GetDatum(job_id)}, NULL, true, 1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("mesh job " INT64_FORMAT " does not exist", job_id)));
	state = AlxSpiText(0, 1);
	has_bytes = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (discard && strcmp(state, "failed") == 0 && !has_bytes)
		return;					/* discarded already */
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s mesh job " INT64_FORMAT ": it is %s%s", verb, job_id, state,
					strcmp(state, "failed") == 0 && !has_bytes ? " and its bytes were discarded" : ""),
			 errhint(discard ? "Only queued and failed jobs can be discarded." :
					 "Only failed jobs that still hold their bytes can be retried; submit the file again.")));
}

PG_FUNCTION_INFO_V1(alexandrite_mesh_job_retry);

/* mesh_job_retry(job_id): a failed job is queued again, attempts from 0. */
Datum
alexandrite_mesh_job_retry(PG_FUNCTION_ARGS)
{
	int64		job_id;
	AlxSavedUser save;

	PreventCommandIfReadOnly("mesh_job_retry()");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job_id must not be null")));
	job_id = PG_GETARG_INT64(0);
	AlxCoreBegin(&save);
	AlxPlanRun(&retry_plan, (Datum[]) {Int64GetDatum(job_id)}, NULL, false, 0);
	if (SPI_processed != 1)
		refuse(job_id, "retry", false);
	/* queued again, its bytes count against the queue's room */
	check_queue_room(AlxSpiInt8(0, 1, &(bool) {false}));
	AlxMeshPoolWakeupAtCommit();
	AlxCoreEnd(&save);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(alexandrite_mesh_job_discard);

/*
 * mesh_job_discard(job_id): drop the bytes of a queued or failed job; the
 * job stays, failed.  Discarding a discarded job does nothing.
 */
Datum
alexandrite_mesh_job_discard(PG_FUNCTION_ARGS)
{
	int64		job_id;
	char	   *caller = AlxCallerName();
	AlxSavedUser save;

	PreventCommandIfReadOnly("mesh_job_discard()");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job_id must not be null")));
	job_id = PG_GETARG_INT64(0);
	AlxCoreBegin(&save);
	AlxPlanRun(&discard_plan, (Datum[]) {Int64GetDatum(job_id), CStringGetTextDatum(caller)},
			   NULL, false, 0);
	if (SPI_processed != 1)
		refuse(job_id, "discard", true);
	else if (strcmp(AlxSpiText(0, 2), "queued") == 0)
	{
		bool		isnull;
		int64		order_id = AlxSpiInt8(0, 3, &isnull);
		char	   *filename = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);

		/* never analysed: mesh.rejected, as for a failed analysis */
		AlxMeshJobEvent(job_id, "mesh.rejected", isnull ? 0 : order_id, -1, 0, filename,
						MESH_DISCARDED_STATE, MESH_DISCARDED_MSG);
	}
	AlxCoreEnd(&save);
	PG_RETURN_VOID();
}
