/*-------------------------------------------------------------------------
 *
 * invalidate.c
 *	  The statement trigger behind every per-backend cache of a table:
 *	  status_transitions (src/core/transitions.c), sla_policies
 *	  (src/sla/sla.c) and the price list (src/pricing/pricelist.c).
 *
 * A change of the table invalidates its relcache entry: this backend
 * reloads at its next command, the others once the transaction commits.
 * Each cache watches its table with a relcache callback.  The SQL trigger
 * functions keep their own C symbols (released scripts name them) and are
 * one line each.
 *
 * IDENTIFICATION
 *	  src/invalidate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/inval.h"

#include "alexandrite.h"

Datum
AlxInvalidateTrigger(FunctionCallInfo fcinfo, const char *name)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s() must be called as a trigger", name)));
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
