/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The order API's entry points besides create_order: set_status,
 *	  assign_order, release_order, set_order_model.
 *
 * Each is a thin C function (SECURITY INVOKER): it captures the caller's
 * identity (the default actor), switches to the extension owner for its
 * compiled statements, and goes through the write routine of orders.c.
 * Callers need EXECUTE on the function and nothing on the tables.
 *
 * IDENTIFICATION
 *	  src/core/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "core/core.h"
#include "sla/sla.h"

static AlxPlan back_plan = {
	"SELECT e.from_status::pg_catalog.text FROM alexandrite.order_events e"
	" WHERE e.order_id OPERATOR(pg_catalog.=) $1"
	"   AND e.to_status OPERATOR(pg_catalog.=) 'assigned'::alexandrite.order_status"
	" ORDER BY e.id DESC LIMIT 1",
	1, {INT8OID}
};

/* An order id argument, or P0002 for NULL (as a lookup of NULL finds nothing). */
static int64
order_id_arg(FunctionCallInfo fcinfo, int n)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order <NULL> does not exist")));
	return PG_GETARG_INT64(n);
}

/* An order_status argument as a status. */
static AlxStatus
status_arg(FunctionCallInfo fcinfo, int n)
{
	return AlxStatusFromName(DatumGetCString(DirectFunctionCall1(enum_out, PG_GETARG_DATUM(n))));
}

PG_FUNCTION_INFO_V1(alexandrite_set_status);

/*
 * set_status(order_id, status, actor): moves an order along the state
 * machine; a repeated request changes nothing.
 */
Datum
alexandrite_set_status(PG_FUNCTION_ARGS)
{
	const char *caller = AlxCallerName();
	const char *actor = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	int64		order_id;
	AlxStatus	to;
	AlxSavedUser save;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("status must not be null")));
	to = status_arg(fcinfo, 1);
	order_id = order_id_arg(fcinfo, 0);

	AlxCoreBegin(&save);
	AlxOrderSetStatus(order_id, to, AlxActor(actor, caller));
	AlxCoreEnd(&save);
	PG_RETURN_VOID();
}

/* Raises assign_order's error for an order that cannot be assigned. */
void
AlxOrderCheckAssign(const AlxOrderRow *row)
{
	if (AlxTransitionAllowed(row->status, ALX_ST_ASSIGNED))
		return;
	if (row->status == ALX_ST_ASSIGNED)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot assign order " INT64_FORMAT " in status \"%s\"",
						row->id, AlxStatusNames[row->status]),
				 errhint("It is held by \"%s\": release it first.",
						 row->operator_id ? row->operator_id : "")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("cannot assign order " INT64_FORMAT " in status \"%s\"",
					row->id, AlxStatusNames[row->status]),
			 errhint("Only new and priced orders can be assigned.")));
}

/*
 * Gives a locked order to an operator: operator, status 'assigned' and the
 * event in one write.  The actor: explicit, else alexandrite.actor, else
 * the operator.
 */
void
AlxOrderGive(AlxOrderRow *row, const char *operator_id, const char *actor)
{
	AlxOrderChange chg;

	AlxOrderCheckAssign(row);
	memset(&chg, 0, sizeof(chg));
	chg.to_status = ALX_ST_ASSIGNED;
	chg.operator_id = operator_id;
	chg.actor = AlxActor(actor, operator_id);
	AlxOrderWriteStatus(row, &chg);
}

PG_FUNCTION_INFO_V1(alexandrite_assign_order);

/*
 * assign_order(order_id, operator_id, actor): gives a new or priced order to
 * an active operator who has room, checked under the operator's row lock
 * (the lock every assignment takes, so that two of them never both see the
 * last free slot).
 */
Datum
alexandrite_assign_order(PG_FUNCTION_ARGS)
{
	char	   *op = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *actor = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	int64		order_id;
	int			capacity;
	bool		active;
	int			load;
	AlxSavedUser save;
	AlxOrderRow row;

	if (op == NULL || op[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("operator_id must not be empty")));
	AlxRequireReadCommitted("assign_order");

	AlxCoreBegin(&save);
	AlxOperatorLock(op, false, &capacity, &active);
	order_id = order_id_arg(fcinfo, 0);
	AlxOrderLock(order_id, &row, false);
	if (row.status == ALX_ST_ASSIGNED && row.operator_id != NULL && strcmp(row.operator_id, op) == 0)
	{
		AlxCoreEnd(&save);		/* a repeated request changes nothing */
		PG_RETURN_VOID();
	}
	if (!active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("operator \"%s\" is not active", op),
				 errhint("Set alexandrite.operators.active to true to let the operator take orders.")));
	AlxOrderCheckAssign(&row);
	load = AlxOperatorLoad(op);
	if (load >= capacity)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("operator \"%s\" is at capacity", op),
				 errdetail("The operator holds %d open orders; the capacity is %d.", load, capacity),
				 errhint("Release or finish one of the operator's orders, or raise alexandrite.operators.capacity.")));
	AlxOrderGive(&row, op, actor);
	AlxCoreEnd(&save);
	PG_RETURN_VOID();
}

/*
 * Puts a locked, assigned order back into the pool: the status it had
 * before it was assigned (from its history; else 'priced' when it has a
 * price, 'new' otherwise), no operator.  Returns that status.
 */
AlxStatus
AlxOrderRelease(AlxOrderRow *row, const char *actor)
{
	Datum		values[1];
	AlxStatus	back = ALX_ST_ASSIGNED;
	AlxOrderChange chg;

	if (row->status != ALX_ST_ASSIGNED)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot release order " INT64_FORMAT " in status \"%s\"",
						row->id, AlxStatusNames[row->status]),
				 errhint("Only assigned orders go back to the pool; production has started on the others.")));
	values[0] = Int64GetDatum(row->id);
	AlxPlanRun(&back_plan, values, NULL, false, 1);
	if (SPI_processed == 1)
	{
		char	   *s = AlxSpiText(0, 1);

		if (s != NULL)
			back = AlxStatusFromName(s);
	}
	if (back >= ALX_ST_ASSIGNED)
		back = row->price != NULL ? ALX_ST_PRICED : ALX_ST_NEW;

	memset(&chg, 0, sizeof(chg));
	chg.to_status = back;
	chg.operator_id = NULL;
	chg.actor = actor;
	AlxOrderWriteStatus(row, &chg);
	return back;
}

PG_FUNCTION_INFO_V1(alexandrite_release_order);

/* release_order(order_id, actor): back to the pool; returns the new status. */
Datum
alexandrite_release_order(PG_FUNCTION_ARGS)
{
	const char *caller = AlxCallerName();
	const char *actor = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		order_id = order_id_arg(fcinfo, 0);
	AlxSavedUser save;
	AlxOrderRow row;
	AlxStatus	back;

	AlxCoreBegin(&save);
	AlxOrderLock(order_id, &row, false);
	back = AlxOrderRelease(&row, AlxActor(actor, caller));
	AlxCoreEnd(&save);
	PG_RETURN_DATUM(DirectFunctionCall2(enum_in, CStringGetDatum(AlxStatusNames[back]),
										ObjectIdGetDatum(get_func_rettype(fcinfo->flinfo->fn_oid))));
}

PG_FUNCTION_INFO_V1(alexandrite_set_order_model);

/*
 * set_order_model(order_id, mesh_id, material): attaches the model (and the
 * alloy) to an order that is still new; NULL keeps what the order has.
 */
Datum
alexandrite_set_order_model(PG_FUNCTION_ARGS)
{
	int64		order_id = order_id_arg(fcinfo, 0);
	bool		has_mesh = !PG_ARGISNULL(1);
	int64		mesh_id = has_mesh ? PG_GETARG_INT64(1) : 0;
	char	   *material = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	AlxSavedUser save;
	AlxOrderRow row;

	AlxCoreBegin(&save);
	AlxOrderLock(order_id, &row, false);
	if (row.status != ALX_ST_NEW)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot change the model of order " INT64_FORMAT " in status \"%s\"",
						order_id, AlxStatusNames[row.status]),
				 errhint("Only new orders take a new model or material; cancel and re-create a priced order.")));
	AlxCheckOrderModel(has_mesh, mesh_id, material);
	AlxOrderWriteModel(&row, has_mesh || row.has_mesh, has_mesh ? mesh_id : row.mesh_id,
					   material ? material : row.material);
	AlxCoreEnd(&save);
	PG_RETURN_VOID();
}
