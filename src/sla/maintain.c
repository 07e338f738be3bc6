/*-------------------------------------------------------------------------
 *
 * maintain.c
 *	  What every write of alexandrite.orders keeps exact, whoever writes:
 *	  operator_load and the escalation window.
 *
 * One C trigger function (alexandrite.orders_maintain) serves the row
 * triggers of orders and returns at once for rows that change nothing it
 * keeps (no WHEN clause: PostgreSQL parses a trigger's WHEN clause again
 * for every statement, which costs more than this call):
 *	 - the load: a row that starts or stops being an open order held by an
 *	   operator moves that operator's count in operator_load by one.  A
 *	   missing row or NULL count means "unknown" and stays so (NULL + 1);
 *	   assignment counts it under the operator's lock (assign.c).  A count
 *	   that would go negative has drifted and becomes unknown;
 *	 - back-dating: a row written with a due time already past (an insert,
 *	   or a due time moved earlier) makes the next escalate_overdue() scan
 *	   every open order.
 *	 - the dashboards: every row change of orders goes to the dashboard
 *	   capture (AlxDashboardCaptureRow, src/dashboard); orders carries no
 *	   alx_dashboard_capture row trigger of its own, only the statement
 *	   triggers that flush and truncate.  One row trigger, not one per
 *	   concern.
 * The triggers fire for the API's writes, a superuser's direct SQL, COPY
 * and a logical replication subscriber's apply alike (ENABLE ALWAYS), and
 * run their statements as the extension owner.  TRUNCATE empties the load.
 *
 * IDENTIFICATION
 *	  src/sla/maintain.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "storage/proc.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "core/core.h"
#include "dashboard/dashboard.h"
#include "sla/sla.h"

/* one move of an operator's count; a missing row stays unknown (NULL) */
static AlxPlan dec_plan = {
	"INSERT INTO alexandrite.operator_load AS l (operator_id, open_orders) VALUES ($1, NULL)"
	" ON CONFLICT ON CONSTRAINT operator_load_pkey"
	" DO UPDATE SET open_orders = CASE WHEN l.open_orders OPERATOR(pg_catalog.>) 0"
	"                                  THEN l.open_orders OPERATOR(pg_catalog.-) 1 END",
	1, {TEXTOID}
};

static AlxPlan inc_plan = {
	"INSERT INTO alexandrite.operator_load AS l (operator_id, open_orders) VALUES ($1, NULL)"
	" ON CONFLICT ON CONSTRAINT operator_load_pkey"
	" DO UPDATE SET open_orders = l.open_orders OPERATOR(pg_catalog.+) 1",
	1, {TEXTOID}
};

static AlxPlan backdate_plan = {
	"UPDATE alexandrite.sla_escalation_state s SET scan_from = NULL"
	" WHERE s.scan_from IS NOT NULL AND s.scan_from OPERATOR(pg_catalog.>) $1",
	1, {TIMESTAMPTZOID}
};

static AlxPlan truncate_plan = {
	"UPDATE alexandrite.operator_load SET open_orders = 0", 0, {InvalidOid}
};

static AlxPlan recount_lock_plan = {
	"SELECT 1 FROM alexandrite.operators op ORDER BY op.id FOR NO KEY UPDATE", 0, {InvalidOid}
};

static AlxPlan recount_table_plan = {
	"LOCK TABLE alexandrite.operator_load IN EXCLUSIVE MODE", 0, {InvalidOid}
};

static AlxPlan recount_clear_plan = {
	"DELETE FROM alexandrite.operator_load", 0, {InvalidOid}
};

static AlxPlan recount_fill_plan = {
	"INSERT INTO alexandrite.operator_load (operator_id, open_orders)"
	" SELECT o.operator_id, pg_catalog.count(*)"
	"   FROM alexandrite.orders o"
	"  WHERE o.operator_id IS NOT NULL"
	"    AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status"
	"  GROUP BY o.operator_id",
	0, {InvalidOid}
};

/*
 * Per backend: the OID of order_status 'shipped' (open = sorts before it),
 * the openness of the labels met so far, and the columns the trigger reads
 * of its table.  An invalidation of pg_enum forgets the labels, one of the
 * table forgets its columns.
 */
static Oid	shipped_type = InvalidOid;
static float4 shipped_order;
#define MAINT_NLABELS 16
static Oid	label_oid[MAINT_NLABELS];
static bool label_open[MAINT_NLABELS];
static int	nlabels = 0;
static Oid	maint_relid = InvalidOid;
static int	maint_att[4];		/* operator_id, status, sla_due_at, id */
static bool maint_callbacks = false;

static void
maint_enum_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	shipped_type = InvalidOid;
	nlabels = 0;
}

static void
maint_rel_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == maint_relid)
		maint_relid = InvalidOid;
}

/* Is an order_status value an open status (before 'shipped')? */
static bool
status_open(Oid typid, Datum value)
{
	HeapTuple	tup;
	float4		order;
	bool		open;

	if (typid != shipped_type)
	{
		tup = SearchSysCache2(ENUMTYPOIDNAME, ObjectIdGetDatum(typid), CStringGetDatum("shipped"));
		if (!HeapTupleIsValid(tup))
			AlxStatusLabelMissing("shipped");
		shipped_order = ((Form_pg_enum) GETSTRUCT(tup))->enumsortorder;
		ReleaseSysCache(tup);
		shipped_type = typid;
		nlabels = 0;
	}
	for (int i = 0; i < nlabels; i++)
		if (label_oid[i] == DatumGetObjectId(value))
			return label_open[i];
	tup = SearchSysCache1(ENUMOID, value);
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "invalid order_status value %u", DatumGetObjectId(value));
	order = ((Form_pg_enum) GETSTRUCT(tup))->enumsortorder;
	ReleaseSysCache(tup);
	open = order < shipped_order;
	if (nlabels < MAINT_NLABELS)
	{
		label_oid[nlabels] = DatumGetObjectId(value);
		label_open[nlabels++] = open;
	}
	return open;
}

/* The operator holding an order row, if it is an open order; else NULL. */
static char *
holder(HeapTuple tup, TupleDesc desc, int att_op, int att_status)
{
	bool		isnull;
	Datum		op = heap_getattr(tup, att_op, desc, &isnull);
	Datum		st;

	if (isnull)
		return NULL;
	st = heap_getattr(tup, att_status, desc, &isnull);
	if (isnull || !status_open(TupleDescAttr(desc, att_status - 1)->atttypid, st))
		return NULL;
	return TextDatumGetCString(op);
}

/*
 * Moves an operator's count by one (up or down).  No row (or NULL) means
 * unknown, and stays so: the upsert adds a NULL row that an assignment
 * counts under the operator's lock; if that count is being taken right now,
 * the upsert waits for it and then applies the move to it (the count did
 * not see this uncommitted change).
 */
static void
move_load(const char *operator_id, bool up)
{
	Datum		values[1];

	values[0] = CStringGetTextDatum(operator_id);
	AlxPlanRun(up ? &inc_plan : &dec_plan, values, NULL, false, 0);
}

/* the load moves the order core's running statement makes itself */
static AlxCoreLoadMark core_mark;

/* Marks the load moves of one order that the caller's statement makes. */
void
AlxCoreLoadBegin(AlxCoreLoadMark *save, int64 order_id, const char *old_holder,
				 const char *new_holder)
{
	*save = core_mark;
	core_mark.active = true;
	core_mark.lxid = MyProc->lxid;
	core_mark.subxid = GetCurrentSubTransactionId();
	core_mark.order_id = order_id;
	core_mark.old_holder = old_holder;
	core_mark.new_holder = new_holder;
}

/* Back to the enclosing mark (call also when the statement fails). */
void
AlxCoreLoadEnd(const AlxCoreLoadMark *save)
{
	core_mark = *save;
}

static bool
same_holder(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Did the order core's statement move the load for this row already? */
static bool
moved_by_core(int64 order_id, const char *old_holder, const char *new_holder)
{
	return core_mark.active &&
		core_mark.lxid == MyProc->lxid &&
		core_mark.subxid == GetCurrentSubTransactionId() &&
		core_mark.order_id == order_id &&
		same_holder(core_mark.old_holder, old_holder) &&
		same_holder(core_mark.new_holder, new_holder);
}

PG_FUNCTION_INFO_V1(alexandrite_orders_maintain);

/* AFTER ROW trigger of orders: operator_load and the escalation window. */
Datum
alexandrite_orders_maintain(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	int			att_op,
				att_status,
				att_due,
				att_id;
	bool		isnull_id;
	HeapTuple	oldt = NULL;
	HeapTuple	newt = NULL;
	char	   *old_holder = NULL;
	char	   *new_holder = NULL;
	bool		backdated = false;
	TimestampTz due = 0;
	AlxSavedUser save;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orders_maintain must be called as an AFTER ROW trigger")));
	desc = RelationGetDescr(td->tg_relation);
	if (RelationGetRelid(td->tg_relation) != maint_relid)
	{
		if (!maint_callbacks)
		{
			AlxRegisterRelcacheCallback(maint_rel_callback, (Datum) 0);
			CacheRegisterSyscacheCallback(ENUMOID, maint_enum_callback, (Datum) 0);
			maint_callbacks = true;
		}
		maint_att[0] = SPI_fnumber(desc, "operator_id");
		maint_att[1] = SPI_fnumber(desc, "status");
		maint_att[2] = SPI_fnumber(desc, "sla_due_at");
		maint_att[3] = SPI_fnumber(desc, "id");
		if (maint_att[0] <= 0 || maint_att[1] <= 0 || maint_att[2] <= 0 || maint_att[3] <= 0)
			elog(ERROR, "orders_maintain fired on a table without operator_id, status and sla_due_at");
		maint_relid = RelationGetRelid(td->tg_relation);
	}
	att_op = maint_att[0];
	att_status = maint_att[1];
	att_due = maint_att[2];
	att_id = maint_att[3];

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		newt = td->tg_trigtuple;
		AlxDashboardCaptureRow(td->tg_relation, NULL, td->tg_trigslot);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		oldt = td->tg_trigtuple;
		newt = td->tg_newtuple;
		AlxDashboardCaptureRow(td->tg_relation, td->tg_trigslot, td->tg_newslot);
	}
	else
	{
		oldt = td->tg_trigtuple;
		AlxDashboardCaptureRow(td->tg_relation, td->tg_trigslot, NULL);
	}

	if (oldt)
		old_holder = holder(oldt, desc, att_op, att_status);
	if (newt)
	{
		bool		isnull;
		Datum		d;

		new_holder = holder(newt, desc, att_op, att_status);
		d = heap_getattr(newt, att_due, desc, &isnull);
		if (!isnull)
		{
			due = DatumGetTimestampTz(d);
			backdated = due < GetCurrentTransactionStartTimestamp();
			if (backdated && oldt)
			{
				Datum		o = heap_getattr(oldt, att_due, desc, &isnull);

				backdated = isnull || due < DatumGetTimestampTz(o);
			}
		}
	}
	/* same holder, still open: nothing moved */
	if (old_holder && new_holder && strcmp(old_holder, new_holder) == 0)
		old_holder = new_holder = NULL;
	/* moved already by the order core's statement (src/core/orders.c) */
	if ((old_holder || new_holder) &&
		moved_by_core(DatumGetInt64(heap_getattr(newt ? newt : oldt, att_id, desc, &isnull_id)),
					  old_holder, new_holder))
		old_holder = new_holder = NULL;
	if (old_holder == NULL && new_holder == NULL && !backdated)
		return PointerGetDatum(NULL);

	AlxCoreBegin(&save);
	if (old_holder)
		move_load(old_holder, false);
	if (new_holder)
		move_load(new_holder, true);
	if (backdated)
	{
		Datum		values[1];

		/* once per window: later rows find scan_from NULL and write nothing */
		values[0] = TimestampTzGetDatum(due);
		AlxPlanRun(&backdate_plan, values, NULL, false, 0);
	}
	AlxCoreEnd(&save);
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(alexandrite_orders_truncated);

/* AFTER TRUNCATE trigger of orders: no orders, no load. */
Datum
alexandrite_orders_truncated(PG_FUNCTION_ARGS)
{
	AlxSavedUser save;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orders_truncated must be called as a trigger")));
	AlxCoreBegin(&save);
	AlxPlanRun(&truncate_plan, NULL, NULL, false, 0);
	AlxCoreEnd(&save);
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(alexandrite_sla_recount_load);

/*
 * sla_recount_load(): rebuilds operator_load from the orders (after writes
 * that skipped the triggers); returns the number of operators holding
 * orders.  Locks every operator, so it never races an assignment.
 */
Datum
alexandrite_sla_recount_load(PG_FUNCTION_ARGS)
{
	AlxSavedUser save;
	int64		n;

	AlxCoreBegin(&save);
	AlxPlanRun(&recount_lock_plan, NULL, NULL, false, 0);
	AlxPlanRun(&recount_table_plan, NULL, NULL, false, 0);
	AlxPlanRun(&recount_clear_plan, NULL, NULL, false, 0);
	AlxPlanRun(&recount_fill_plan, NULL, NULL, false, 0);
	n = (int64) SPI_processed;
	AlxCoreEnd(&save);
	PG_RETURN_INT64(n);
}
