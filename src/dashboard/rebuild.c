/*-------------------------------------------------------------------------
 *
 * rebuild.c
 *	  Recompute a dashboard from its base table (rebuild_dashboard, and the
 *	  fold after a restore), and compare it with its base table
 *	  (reconcile_dashboards).
 *
 * IDENTIFICATION
 *	  src/dashboard/rebuild.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/inval.h"
#include "utils/timestamp.h"

#include "alexandrite.h"
#include "dashboard/dashboard.h"

PG_FUNCTION_INFO_V1(alexandrite_rebuild_dashboard);
PG_FUNCTION_INFO_V1(alexandrite_reconcile_dashboards);

/* Fills the empty summary from the base table; returns the groups. */
int64
AlxDashPopulate(const AlxDashDef *def, Datum watermark, bool wm_null)
{
	Oid			type = TIMESTAMPTZOID;
	int			ret;

	ret = SPI_execute_with_args(AlxDashSqlPopulate(def), 1, &type, &watermark, wm_null ? "n" : " ", false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not populate dashboard \"%s\": %s", def->name, SPI_result_code_string(ret));
	return (int64) SPI_processed;
}

/*
 * rebuild_dashboard(name text, watermark timestamptz DEFAULT NULL) RETURNS
 * bigint: recompute from the base table; also builds again any generated
 * object that is missing (and, during ALTER EXTENSION UPDATE, takes over
 * the objects 1.1 built).
 */
/*
 * Recompute a dashboard from its base table (as the owner, SPI connected):
 * waits for any fold and for the writers in flight, builds again what is
 * missing of its objects, replaces the summary by the GROUP BY of the base
 * table with the time-relative counts as of the watermark's minute, forgets
 * the deltas.  Needs READ COMMITTED (a snapshot taken after the lock).
 * Returns the number of groups.
 */
int64
AlxDashRebuild(const AlxDashDef *def, TimestampTz watermark)
{
	Datum		wm = (Datum) 0;
	Datum		values[2];
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	int64		groups;
	int			ret;

	AlxDashRequireReadCommitted("rebuild_dashboard()");
	/* no fold in between, no writer in flight: the recompute sees every commit */
	(void) AlxLockInternal(ALX_LOCK_DASH_FOLD, ALX_DASH_LOCK_CLASS, ALX_DASH_LOCK_FOLD, true);
	AlxDashLockBase(def->base_relid, ShareLock);
	if (def->due != NULL)
		wm = TimestampTzGetDatum(AlxDueMinute(watermark));

	AlxDashUpdateRegistry(def);
	AlxDashBuildObjects(def, true);
	if (SPI_execute(psprintf("DELETE FROM %s", AlxDashQualified(def, ALX_DASH_DELTA)), false, 0) != SPI_OK_DELETE ||
		SPI_execute(psprintf("DELETE FROM %s", AlxDashQualified(def, ALX_DASH_SUMMARY)), false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not empty dashboard \"%s\"", def->name);
	AlxDashboardForget(def->id);
	groups = AlxDashPopulate(def, wm, def->due == NULL);
	values[0] = Int32GetDatum(def->id);
	values[1] = wm;
	ret = SPI_execute_with_args("INSERT INTO alexandrite.dashboard_state AS x (dashboard_id, watermark, last_rebuild_at) "
								"VALUES ($1, $2, pg_catalog.clock_timestamp()) ON CONFLICT (dashboard_id) DO UPDATE "
								"SET needs_rebuild = false, rebuild_reason = NULL, "
								"last_rebuild_at = excluded.last_rebuild_at, watermark = excluded.watermark",
								2, types, values, def->due ? "  " : " n", false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not update the dashboard state: %s", SPI_result_code_string(ret));
	CacheInvalidateRelcacheByRelid(def->base_relid);
	return groups;
}

/*
 * rebuild_dashboard(name text, watermark timestamptz DEFAULT NULL) RETURNS
 * bigint: recompute from the base table; also builds again any generated
 * object that is missing (and, during ALTER EXTENSION UPDATE, takes over
 * the objects 1.1 built).
 */
Datum
alexandrite_rebuild_dashboard(PG_FUNCTION_ARGS)
{
	char	   *name = PG_ARGISNULL(0) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(0));
	AlxDashDef *def;
	AlxDashScope scope;
	int64		groups;

	AlxDashCheckName(name);
	def = AlxDashLoadByName(name, false);
	AlxDashRequireReadCommitted("rebuild_dashboard()");
	AlxDashCheckReadable(def);
	AlxDashScopeEnter(&scope);
	groups = AlxDashRebuild(def, PG_ARGISNULL(1) ? GetCurrentTransactionStartTimestamp() : PG_GETARG_TIMESTAMPTZ(1));
	AlxDashScopeLeave(&scope);
	PG_RETURN_INT64(groups);
}

/* Reconcile one dashboard: (groups, mismatched groups), recorded in its state. */
static void
alx_reconcile_one(const AlxDashDef *def, int64 *groups, int64 *mismatched)
{
	bool		isnull;
	int			ret;
	Oid			types[3] = {INT4OID, BOOLOID, INT8OID};
	Datum		values[3];

	ret = SPI_execute(AlxDashSqlReconcile(def), true, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not reconcile dashboard \"%s\": %s", def->name, SPI_result_code_string(ret));
	*groups = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*mismatched = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (*mismatched != 0)
		ereport(WARNING,
				(errmsg("dashboard \"%s\" differs from its base table in " INT64_FORMAT " groups",
						def->name, *mismatched),
				 errhint("Run SELECT alexandrite.rebuild_dashboard('%s').", def->name)));
	values[0] = Int32GetDatum(def->id);
	values[1] = BoolGetDatum(*mismatched == 0);
	values[2] = Int64GetDatum(*mismatched);
	ret = SPI_execute_with_args("UPDATE alexandrite.dashboard_state x "
								"SET last_reconcile_at = pg_catalog.clock_timestamp(), last_reconcile_ok = $2, "
								"needs_rebuild = x.needs_rebuild OR NOT $2, "
								"rebuild_reason = CASE WHEN $2 THEN x.rebuild_reason "
								"ELSE 'reconcile found ' OPERATOR(pg_catalog.||) $3 OPERATOR(pg_catalog.||) ' differing groups' END "
								"WHERE x.dashboard_id OPERATOR(pg_catalog.=) $1",
								3, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not update the dashboard state: %s", SPI_result_code_string(ret));
}

/*
 * reconcile_dashboards(name text DEFAULT NULL) RETURNS TABLE (dashboard
 * text, groups bigint, mismatched_groups bigint, ok boolean)
 */
Datum
alexandrite_reconcile_dashboards(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *defs;
	ListCell   *lc;
	AlxDashScope scope;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		defs = AlxDashLoad(InvalidOid);
	else
	{
		char	   *name = TextDatumGetCString(PG_GETARG_DATUM(0));

		AlxDashCheckName(name);
		defs = list_make1(AlxDashLoadByName(name, false));
	}
	foreach(lc, defs)
		AlxDashCheckReadable((AlxDashDef *) lfirst(lc));

	AlxDashScopeEnter(&scope);
	foreach(lc, defs)
	{
		AlxDashDef *def = (AlxDashDef *) lfirst(lc);
		int64		groups;
		int64		mismatched;
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		alx_reconcile_one(def, &groups, &mismatched);
		values[0] = CStringGetTextDatum(def->name);
		values[1] = Int64GetDatum(groups);
		values[2] = Int64GetDatum(mismatched);
		values[3] = BoolGetDatum(mismatched == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	AlxDashScopeLeave(&scope);
	return (Datum) 0;
}

