/*-------------------------------------------------------------------------
 *
 * plans.c
 *	  Statements compiled into the library, prepared once per backend and
 *	  run as the extension owner.
 *
 * Every statement the order core, the SLA engine and the outbox producer
 * run is a constant of this library with a parameter for every value a
 * caller supplies.  AlxPlanGet prepares it the first time a backend needs
 * it (SPI_prepare_cursor with CURSOR_OPT_GENERIC_PLAN: one generic plan,
 * never re-planned per call) and keeps it (SPI_keepplan); the plan cache
 * re-analyses it by itself when a table it reads changes, including a
 * DROP and CREATE EXTENSION in the same session.  Outbox rows are not
 * written by statements (src/outbox/write.c).
 *
 * The texts are parsed under the caller's search_path, so every name in
 * them is schema-qualified and every operator is OPERATOR(pg_catalog.x):
 * nothing a caller creates can be reached from them.
 *
 * AlxCoreBegin/AlxCoreEnd bracket an entry point's statements: they switch
 * to the extension owner (privilege.c) and open an SPI connection.  An
 * ERROR in between needs no cleanup (abort restores the user and SPI).
 *
 * IDENTIFICATION
 *	  src/core/plans.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "core/core.h"
#include "dashboard/dashboard.h"

/* Prepares (once per backend) and returns a statement's plan. */
SPIPlanPtr
AlxPlanGet(AlxPlan *plan)
{
	if (plan->plan == NULL)
	{
		SPIPlanPtr	p;

		p = SPI_prepare_cursor(plan->sql, plan->nargs, plan->argtypes, CURSOR_OPT_GENERIC_PLAN);
		if (p == NULL)
			elog(ERROR, "could not prepare an alexandrite statement: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "could not keep an alexandrite statement");
		plan->plan = p;
	}
	return plan->plan;
}

/*
 * Runs a prepared statement; returns the SPI result code (never an error
 * code: those raise).
 */
int
AlxPlanRun(AlxPlan *plan, Datum *values, const char *nulls, bool read_only, long count)
{
	int			rc;

	rc = SPI_execute_plan(AlxPlanGet(plan), values, nulls, read_only, count);
	if (rc < 0)
		elog(ERROR, "could not run an alexandrite statement: %s", SPI_result_code_string(rc));
	return rc;
}

/*
 * Runs a prepared statement on the given snapshot, so that two statements
 * see the same rows (a READ COMMITTED caller would otherwise get a new
 * snapshot for each).
 */
int
AlxPlanRunSnapshot(AlxPlan *plan, Datum *values, const char *nulls, Snapshot snapshot,
				   bool read_only, long count)
{
	int			rc;

	rc = SPI_execute_snapshot(AlxPlanGet(plan), values, nulls, snapshot, InvalidSnapshot,
							  read_only, true, count);
	if (rc < 0)
		elog(ERROR, "could not run an alexandrite statement: %s", SPI_result_code_string(rc));
	return rc;
}

/*
 * Become the extension owner and connect to SPI for an entry point's
 * statements; the dashboard capture writes what they change when the call
 * ends (src/dashboard/pending.c).
 */
void
AlxCoreBegin(AlxSavedUser *save)
{
	AlxBecomeOwnerInCall(save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	AlxDashboardHold();
}

/* Back to the caller: deltas written, SPI closed (its memory freed), user restored. */
void
AlxCoreEnd(const AlxSavedUser *save)
{
	AlxDashboardUnhold();
	SPI_finish();
	AlxRestoreUser(save);
}

/* The calling role's name, for the default actor; call before AlxCoreBegin. */
char *
AlxCallerName(void)
{
	return GetUserNameFromId(GetUserId(), false);
}

/*
 * Who made a change: the explicit actor, else alexandrite.actor (which an
 * MES can SET LOCAL per transaction), else the fallback (the calling role,
 * or the operator for an assignment).
 */
const char *
AlxActor(const char *given, const char *fallback)
{
	if (given != NULL && given[0] != '\0')
		return given;
	if (alx_actor != NULL && alx_actor[0] != '\0')
		return alx_actor;
	return fallback;
}

/* A text column of the current SPI result, or NULL (valid until SPI_finish). */
char *
AlxSpiText(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);
	Oid			type = SPI_gettypeid(SPI_tuptable->tupdesc, col);

	if (type != TEXTOID && type != VARCHAROID)
		AlxCheckColumnType("a statement's result", SPI_fname(SPI_tuptable->tupdesc, col), type,
						   TEXTOID);
	return isnull ? NULL : TextDatumGetCString(d);
}

/* A bigint (or integer) column of the current SPI result. */
int64
AlxSpiInt8(int row, int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);

	Oid			type = SPI_gettypeid(SPI_tuptable->tupdesc, col);

	if (type == INT4OID)
		return *isnull ? 0 : DatumGetInt32(d);
	if (type != INT8OID)
		AlxCheckColumnType("a statement's result", SPI_fname(SPI_tuptable->tupdesc, col), type,
						   INT8OID);
	return *isnull ? 0 : DatumGetInt64(d);
}
