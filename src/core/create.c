/*-------------------------------------------------------------------------
 *
 * create.c
 *	  alexandrite.create_order: a new order in one statement.
 *
 * The order's id, times and due date (the SLA policy, from the per-backend
 * cache of src/sla/sla.c) and its order.created event are computed here;
 * one statement inserts the order (ON CONFLICT on external_ref: a retry
 * writes nothing) and its first order_events row, and checks in the same
 * statement that the model and alloy exist; when it wrote them, the event
 * follows (AlxOutboxWrite).  Only when it writes nothing does create_order
 * look further: the order that already exists (a retry: its id), or the
 * reason (the model, or a concurrent retry).
 *
 * IDENTIFICATION
 *	  src/core/create.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "core/core.h"
#include "outbox/outbox.h"
#include "sla/sla.h"

/*
 * The order and its first history row in one statement, then order.created
 * (AlxOutboxWrite) when the statement wrote them.  ON CONFLICT makes a
 * retry (or a concurrent one) write nothing.  An order
 * without a model (the usual case) inserts VALUES; with a model the insert
 * checks in the same statement that the mesh exists and the alloy is
 * active, and writes nothing otherwise.
 */
#define CREATE_SQL(source) \
	"WITH o AS (INSERT INTO alexandrite.orders AS o" \
	"                  (id, external_ref, channel, customer_id, mesh_id, material, payload," \
	"                   created_at, sla_due_at, updated_at, status_changed_at, event_seq) " \
	source \
	"           ON CONFLICT ON CONSTRAINT orders_external_ref_key DO NOTHING" \
	"           RETURNING o.id) " \
	"INSERT INTO alexandrite.order_events" \
	"       (order_id, from_status, to_status, at, actor, traceparent) " \
	"SELECT o.id, NULL, 'new', $8, $10, $11 FROM o"
#define CREATE_VALUES \
	"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $8, 1)"
#define CREATE_SELECT(checks) \
	"SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $8, 1 WHERE true" checks
#define MESH_CHECK \
	" AND EXISTS (SELECT 1 FROM alexandrite.meshes m WHERE m.id OPERATOR(pg_catalog.=) $5)"
#define MATERIAL_CHECK \
	" AND EXISTS (SELECT 1 FROM alexandrite.materials m" \
	"              WHERE m.code OPERATOR(pg_catalog.=) $6 AND m.active)"
#define CREATE_TYPES \
	INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID, JSONBOID, TIMESTAMPTZOID, \
	TIMESTAMPTZOID, TEXTOID, TEXTOID

static AlxPlan create_plans[4] = {
	{CREATE_SQL(CREATE_VALUES), 11, {CREATE_TYPES}},
	{CREATE_SQL(CREATE_SELECT(MESH_CHECK)), 11, {CREATE_TYPES}},
	{CREATE_SQL(CREATE_SELECT(MATERIAL_CHECK)), 11, {CREATE_TYPES}},
	{CREATE_SQL(CREATE_SELECT(MESH_CHECK MATERIAL_CHECK)), 11, {CREATE_TYPES}}
};

static AlxPlan existing_plan = {
	"SELECT o.id, o.channel, o.customer_id FROM alexandrite.orders o"
	" WHERE o.external_ref OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static AlxPlan mesh_plan = {
	"SELECT 1 FROM alexandrite.meshes m WHERE m.id OPERATOR(pg_catalog.=) $1",
	1, {INT8OID}
};

static AlxPlan material_plan = {
	"SELECT 1 FROM alexandrite.materials m WHERE m.code OPERATOR(pg_catalog.=) $1 AND m.active",
	1, {TEXTOID}
};

/* what create_order may refuse only once it knows the order is new */
typedef enum CreateProblem
{
	CREATE_OK,
	CREATE_UNKNOWN_CHANNEL,
	CREATE_BAD_PAYLOAD
} CreateProblem;

/* The model and alloy an order names must exist (the alloy must be active). */
void
AlxCheckOrderModel(bool has_mesh, int64 mesh_id, const char *material)
{
	Datum		values[1];

	if (has_mesh)
	{
		values[0] = Int64GetDatum(mesh_id);
		AlxPlanRun(&mesh_plan, values, NULL, true, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("mesh " INT64_FORMAT " does not exist", mesh_id),
					 errhint("Store the model with alexandrite.mesh_ingest() first, or pass NULL until it is known.")));
	}
	if (material != NULL)
	{
		values[0] = CStringGetTextDatum(material);
		AlxPlanRun(&material_plan, values, NULL, true, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown material \"%s\"", material),
					 errhint("See alexandrite.materials for the active materials.")));
	}
}

/*
 * The order with this external_ref, if any: its id, after checking that the
 * retry describes the same order (channel and customer), else 23505.
 */
static bool
existing_order(const char *external_ref, const char *channel, const char *customer, int64 *id)
{
	Datum		values[1];
	bool		isnull;
	char	   *ch;
	char	   *cu;

	values[0] = CStringGetTextDatum(external_ref);
	AlxPlanRun(&existing_plan, values, NULL, false, 1);
	if (SPI_processed == 0)
		return false;
	*id = AlxSpiInt8(0, 1, &isnull);
	ch = AlxSpiText(0, 2);
	cu = AlxSpiText(0, 3);
	if ((channel != NULL && strcmp(ch, channel) != 0) || strcmp(cu, customer) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("order \"%s\" already exists for another channel or customer", external_ref),
				 errdetail("Existing order " INT64_FORMAT " has channel \"%s\" and customer \"%s\".",
						   *id, ch, cu)));
	return true;
}

/*
 * The id of the new order (alexandrite.orders_id_seq, as the owner).  A
 * retry, or an order refused for its model, uses up an id: sequences have
 * gaps.
 */
static int64
next_order_id(void)
{
	return nextval_internal(AlxRelid("orders_id_seq", false), true);
}

/* The order.created payload of the order create_order is about to write. */
static Jsonb *
created_payload(int64 id, const char *external_ref, const char *channel, const char *customer,
				bool has_mesh, int64 mesh_id, const char *material, TimestampTz now,
				TimestampTz due, const char *actor)
{
	AlxJson		j;

	AlxJsonBegin(&j);
	AlxJsonInt8(&j, "order_id", id, false);
	AlxJsonText(&j, "external_ref", external_ref);
	AlxJsonText(&j, "channel", channel);
	AlxJsonText(&j, "customer_id", customer);
	AlxJsonInt8(&j, "mesh_id", mesh_id, !has_mesh);
	AlxJsonText(&j, "material", material);
	AlxJsonText(&j, "status", "new");
	AlxJsonNumeric(&j, "price", NULL);
	AlxJsonTimestamp(&j, "created_at", now);
	AlxJsonTimestamp(&j, "sla_due_at", due);
	AlxJsonText(&j, "actor", actor);
	return AlxJsonEnd(&j);
}

/* Raises the error of a create_order that found neither a new nor an old order. */
static void
refuse(CreateProblem problem, const char *channel, bool has_mesh, int64 mesh_id,
	   const char *material, const char *external_ref)
{
	if (problem == CREATE_UNKNOWN_CHANNEL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown channel \"%s\"", channel ? channel : "<NULL>"),
				 errhint("Known channels: %s.", AlxSlaChannelList())));
	AlxCheckOrderModel(has_mesh, mesh_id, material);
	if (problem == CREATE_BAD_PAYLOAD)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payload must be a JSON object")));
	/* only possible when our snapshot predates the winner's commit */
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to concurrent create_order of \"%s\"", external_ref),
			 errhint("Retry the transaction.")));
}

PG_FUNCTION_INFO_V1(alexandrite_create_order);

/*
 * create_order(external_ref, channel, customer_id, mesh_id, material,
 * payload): the new order's id; a retry with the same external_ref returns
 * the same id and writes nothing.
 */
Datum
alexandrite_create_order(PG_FUNCTION_ARGS)
{
	char	   *ext = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *channel = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *customer = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	bool		has_mesh = !PG_ARGISNULL(3);
	int64		mesh_id = has_mesh ? PG_GETARG_INT64(3) : 0;
	char	   *material = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	Jsonb	   *payload = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);
	const char *actor = AlxActor(NULL, AlxCallerName());
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz due = 0;
	CreateProblem problem = CREATE_OK;
	Interval	target;
	AlxSavedUser save;
	int64		id;

	if (ext == NULL || ext[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("external_ref must not be empty")));
	/* the table's CHECK would say 23514: the caller's argument is what is wrong */
	if (strlen(ext) > 200 && pg_mbstrlen(ext) > 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("external_ref must be at most 200 characters")));
	if (customer == NULL || customer[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("customer_id must not be empty")));
	/* an index entry must fit a third of a page: 54000 from deep inside otherwise */
	if (strlen(customer) > 200 && pg_mbstrlen(customer) > 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("customer_id must be at most 200 characters")));

	AlxCoreBegin(&save);
	if (channel == NULL || !AlxSlaPolicyTarget(channel, customer, &target))
		problem = CREATE_UNKNOWN_CHANNEL;
	else if (payload == NULL || !JB_ROOT_IS_OBJECT(payload) || JB_ROOT_IS_SCALAR(payload))
		problem = CREATE_BAD_PAYLOAD;
	else
		due = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													  TimestampTzGetDatum(now),
													  IntervalPGetDatum(&target)));

	if (problem != CREATE_OK)
	{
		if (!existing_order(ext, channel, customer, &id))
			refuse(problem, channel, has_mesh, mesh_id, material, ext);
	}
	else
	{
		Jsonb	   *headers = AlxOutboxHeaders(NULL);
		Jsonb	   *event;
		char		idbuf[32];
		Datum		values[11];
		char		nulls[11];

		id = next_order_id();
		snprintf(idbuf, sizeof(idbuf), INT64_FORMAT, id);
		event = created_payload(id, ext, channel, customer, has_mesh, mesh_id, material,
								now, due, actor);
		AlxOutboxCheckOwnEvent(idbuf, "order.created", event, headers);

		memset(nulls, ' ', sizeof(nulls));
		values[0] = Int64GetDatum(id);
		values[1] = CStringGetTextDatum(ext);
		values[2] = CStringGetTextDatum(channel);
		values[3] = CStringGetTextDatum(customer);
		values[4] = Int64GetDatum(mesh_id);
		nulls[4] = has_mesh ? ' ' : 'n';
		values[5] = material ? CStringGetTextDatum(material) : (Datum) 0;
		nulls[5] = material ? ' ' : 'n';
		values[6] = JsonbPGetDatum(payload);
		values[7] = TimestampTzGetDatum(now);
		values[8] = TimestampTzGetDatum(due);
		values[9] = CStringGetTextDatum(actor);
		values[10] = (alx_traceparent && alx_traceparent[0]) ? CStringGetTextDatum(alx_traceparent) : (Datum) 0;
		nulls[10] = (alx_traceparent && alx_traceparent[0]) ? ' ' : 'n';
		AlxPlanRun(&create_plans[(has_mesh ? 1 : 0) + (material ? 2 : 0)], values, nulls, false, 0);
		if (SPI_processed == 1)
		{
			/* the new row is the order's lock: its first event, seq 1 */
			(void) AlxOutboxWrite(AlxOutboxCurrentTable(), "order", idbuf, 1, "order.created",
								  event, headers);
			AlxOutboxWakeupAtCommit();
		}
		else if (!existing_order(ext, channel, customer, &id))
			refuse(CREATE_OK, channel, has_mesh, mesh_id, material, ext);
	}
	AlxCoreEnd(&save);
	PG_RETURN_INT64(id);
}
