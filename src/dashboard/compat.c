/*-------------------------------------------------------------------------
 *
 * compat.c
 *	  Entry points that only the released 1.1 SQL calls.
 *
 * The 1.1 install and upgrade scripts (sql/alexandrite--1.0--1.1.sql, never
 * edited) create dashboard_check() and dashboard_invalidate() and call them
 * while they declare the built-in dashboards.  This library must still run
 * them, so that 1.1 installs (to be updated to 1.2) and a 1.1 database keeps
 * working between installing this library and ALTER EXTENSION UPDATE.  The
 * 1.2 objects do not use them; the update drops them.
 *
 * IDENTIFICATION
 *	  src/dashboard/compat.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/inval.h"

#include "alexandrite.h"
#include "dashboard/dashboard.h"

PG_FUNCTION_INFO_V1(alexandrite_dashboard_check);
PG_FUNCTION_INFO_V1(alexandrite_dashboard_invalidate);

/*
 * alexandrite.dashboard_check(id) (1.1): validates the registered
 * dashboards as the capture will (an error if one cannot be maintained).
 */
Datum
alexandrite_dashboard_check(PG_FUNCTION_ARGS)
{
	(void) AlxDashLoad(InvalidOid);
	PG_RETURN_VOID();
}

/* alexandrite.dashboard_invalidate(table) (1.1): reload the table's dashboards at commit. */
Datum
alexandrite_dashboard_invalidate(PG_FUNCTION_ARGS)
{
	CacheInvalidateRelcacheByRelid(PG_GETARG_OID(0));
	PG_RETURN_VOID();
}
