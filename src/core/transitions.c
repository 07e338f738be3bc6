/*-------------------------------------------------------------------------
 *
 * transitions.c
 *	  The order state machine (alexandrite.status_transitions), cached per
 *	  backend.
 *
 * The table is read once per backend into a 7 x 7 matrix and kept until it
 * changes: a statement trigger on the table (status_transitions_invalidate)
 * broadcasts a relcache invalidation, and the callback registered here
 * drops the matrix in every backend, this one included at its next
 * command; an aborted change is undone the same way.  The matrix is read
 * with the latest snapshot, so a backend inside an old REPEATABLE READ
 * snapshot never keeps a stale copy for later transactions.
 *
 * IDENTIFICATION
 *	  src/core/transitions.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/sinval.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "core/core.h"

const char *const AlxStatusNames[ALX_NSTATUS] = {
	"new", "priced", "assigned", "in_production", "quality_check", "shipped", "cancelled"
};

static bool allowed[ALX_NSTATUS][ALX_NSTATUS];
static bool matrix_valid = false;
static uint64 matrix_generation = 0;	/* bumped at each load (AlxTransitionOrigins) */
static bool callback_registered = false;
static Oid	transitions_relid = InvalidOid;

static AlxPlan load_plan = {
	"SELECT t.from_status::pg_catalog.text, t.to_status::pg_catalog.text"
	" FROM alexandrite.status_transitions t",
	0, {InvalidOid}
};

/* The status of a label; ERROR for a label this library does not know. */
AlxStatus
AlxStatusFromName(const char *name)
{
	for (int i = 0; i < ALX_NSTATUS; i++)
		if (strcmp(name, AlxStatusNames[i]) == 0)
			return (AlxStatus) i;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("unexpected order status \"%s\"", name),
			 errdetail("The order API knows the statuses by the labels the extension created."),
			 errhint("If a label of alexandrite.order_status was renamed, rename it back with ALTER TYPE alexandrite.order_status RENAME VALUE.")));
	return ALX_ST_NEW;			/* keep the compiler quiet */
}

/*
 * A label the order API needs is gone from order_status (a RENAME VALUE):
 * the API stops here, with the way back, rather than with an internal error.
 */
void
AlxStatusLabelMissing(const char *label)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("type alexandrite.order_status has no label \"%s\"", label),
			 errdetail("The order API knows the statuses by the labels the extension created."),
			 errhint("If it was renamed, rename it back with ALTER TYPE alexandrite.order_status RENAME VALUE.")));
}

static void
transitions_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == transitions_relid)
	{
		matrix_valid = false;
		transitions_relid = InvalidOid;
	}
}

/* Loads the matrix (inside an SPI connection, as the owner). */
static void
load_matrix(void)
{
	Oid			nsp;
	bool		m[ALX_NSTATUS][ALX_NSTATUS];
	int			rc;
	uint64		inval_count;

	if (!callback_registered)
	{
		AlxRegisterRelcacheCallback(transitions_callback, (Datum) 0);
		callback_registered = true;
	}
	nsp = get_namespace_oid(ALX_SCHEMA_NAME, false);
	transitions_relid = get_relname_relid("status_transitions", nsp);

	/*
	 * Valid only once the new matrix is in place, and only if no
	 * invalidation arrived while it was read.  An error on the way (a label
	 * renamed, a cancel) leaves it invalid: the matrix still in memory may
	 * be one read in a transaction that rolled back since, whose
	 * invalidation has been spent.
	 */
	matrix_valid = false;
	inval_count = SharedInvalidMessageCounter;
	rc = SPI_execute_snapshot(AlxPlanGet(&load_plan), NULL, NULL,
							  GetLatestSnapshot(), InvalidSnapshot, true, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read alexandrite.status_transitions: %s", SPI_result_code_string(rc));
	memset(m, 0, sizeof(m));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *from = AlxSpiText(i, 1);
		char	   *to = AlxSpiText(i, 2);

		m[AlxStatusFromName(from)][AlxStatusFromName(to)] = true;
	}
	memcpy(allowed, m, sizeof(allowed));
	matrix_generation++;
	matrix_valid = (inval_count == SharedInvalidMessageCounter);
}

/* May an order go from one status to another?  (Needs an SPI connection.) */
bool
AlxTransitionAllowed(AlxStatus from, AlxStatus to)
{
	if (!matrix_valid)
		load_matrix();
	return allowed[from][to];
}

/*
 * The statuses an order may come to "to" from (other than "to"), as a text
 * array for a statement's parameter, and their number: built once per
 * loaded matrix, in the matrix's own memory.  (Needs an SPI connection.)
 */
static ArrayType *origins[ALX_NSTATUS];
static int	norigins[ALX_NSTATUS];
static uint64 built_at[ALX_NSTATUS];
static List *replaced_origins = NIL;	/* freed when the transaction ends */
static bool origins_callback_registered = false;

static void
origins_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		list_free_deep(replaced_origins);
		replaced_origins = NIL;
	}
}

ArrayType *
AlxTransitionOrigins(AlxStatus to, int *n)
{

	if (!matrix_valid)
		load_matrix();
	if (origins[to] == NULL || built_at[to] != matrix_generation)
	{
		Datum		elems[ALX_NSTATUS];
		int			k = 0;
		MemoryContext old;

		for (int s = 0; s < ALX_NSTATUS; s++)
			if (s != to && allowed[s][to])
				elems[k++] = CStringGetTextDatum(AlxStatusNames[s]);
		/* the old array may be a parameter of a statement up the stack: freed at the transaction's end */
		old = MemoryContextSwitchTo(TopMemoryContext);
		if (!origins_callback_registered)
		{
			RegisterXactCallback(origins_xact_callback, NULL);
			origins_callback_registered = true;
		}
		if (origins[to] != NULL)
			replaced_origins = lappend(replaced_origins, origins[to]);
		origins[to] = construct_array(elems, k, TEXTOID, -1, false, TYPALIGN_INT);
		MemoryContextSwitchTo(old);
		norigins[to] = k;
		built_at[to] = matrix_generation;
	}
	*n = norigins[to];
	return origins[to];
}

/* "assigned, cancelled": where an order may go from a status, in enum order. */
char *
AlxTransitionTargets(AlxStatus from)
{
	StringInfoData buf;

	if (!matrix_valid)
		load_matrix();
	initStringInfo(&buf);
	for (int i = 0; i < ALX_NSTATUS; i++)
	{
		if (!allowed[from][i])
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, AlxStatusNames[i]);
	}
	return buf.data;
}

PG_FUNCTION_INFO_V1(alexandrite_status_transitions_invalidate);

/*
 * Statement trigger on alexandrite.status_transitions: every backend (at
 * commit) and this one (at its next command) reloads the state machine.
 */
Datum
alexandrite_status_transitions_invalidate(PG_FUNCTION_ARGS)
{
	return AlxInvalidateTrigger(fcinfo, "status_transitions_invalidate");
}
