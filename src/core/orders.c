/*-------------------------------------------------------------------------
 *
 * orders.c
 *	  The one write routine for orders.
 *
 * A change of an order is, in this order and nowhere else:
 *	 1. AlxOrderLock: lock the row (FOR NO KEY UPDATE, so foreign-key
 *		checks on it are not blocked) and read it;
 *	 2. the transition check against the cached state machine
 *		(transitions.c);
 *	 3. one statement (AlxOrderWriteStatus, AlxOrderWriteBreach): the UPDATE
 *		of the order, its history row, and its outbox event(s), whose
 *		aggregate_seq is the order's event_seq bumped by that same UPDATE.
 *		The row lock taken in step 1 is what makes the sequence gap-free and
 *		commit-ordered; the event id (nextval) is taken in the statement,
 *		after the lock.
 * The event payloads are built here, in C, from the locked row and the
 * change, and checked against what the relay can publish before anything
 * is written.  create.c does the same for a new order (one INSERT).
 *
 * Nothing here decides anything from the text of a statement: the events
 * are written because the API was called.  COPY, pg_restore and logical
 * replication write rows without going through here, and so neither
 * create nor lose events.
 *
 * IDENTIFICATION
 *	  src/core/orders.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "core/core.h"
#include "outbox/outbox.h"

static AlxPlan lock_plan = {
	"SELECT " ALX_ORDER_COLS " FROM alexandrite.orders o"
	" WHERE o.id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
	1, {INT8OID}
};

/* the status write: order row, order_events row (u, e) */
#define STATUS_WITH \
	"WITH u AS (UPDATE alexandrite.orders o" \
	"              SET status = $2::alexandrite.order_status, operator_id = $3, price = $4," \
	"                  updated_at = $5, status_changed_at = $5, event_seq = $6" \
	"            WHERE o.id OPERATOR(pg_catalog.=) $1 RETURNING o.id)," \
	"     e AS (INSERT INTO alexandrite.order_events" \
	"                  (order_id, from_status, to_status, at, actor, traceparent)" \
	"           SELECT u.id, $7::alexandrite.order_status, $2::alexandrite.order_status, $5, $8, $9" \
	"             FROM u)"
#define STATUS_TYPES \
	INT8OID, TEXTOID, TEXTOID, NUMERICOID, TIMESTAMPTZOID, INT8OID, TEXTOID, TEXTOID, \
	TEXTOID, TEXTOID, JSONBOID, JSONBOID

/* ... and its order.status_changed event */
static AlxPlan status_plan = {
	STATUS_WITH " " ALX_OUTBOX_INSERT
	"SELECT " ALX_OUTBOX_NEXT_ID ", 'order', $10, $6, 'order.status_changed', $11, $12 FROM u",
	12, {STATUS_TYPES}
};

/*
 * ... for price_order: with the quote row, and two events, status_changed
 * then priced (the ids are taken after the sort, in seq order)
 */
static AlxPlan priced_plan = {
	STATUS_WITH ","
	"     q AS (INSERT INTO alexandrite.quotes"
	"                  (order_id, mesh_id, mesh_sha256, material, options, price_list_version, total,"
	"                   currency, metal_weight_g, metal_cost, labour_cost, finishing_cost, needs_review,"
	"                   breakdown, created_by)"
	"           SELECT u.id, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27"
	"             FROM u) "
	ALX_OUTBOX_INSERT
	"SELECT " ALX_OUTBOX_NEXT_ID ", 'order', $10, v.seq, v.event_type, v.payload, $12"
	"  FROM u, (VALUES ($6 OPERATOR(pg_catalog.-) 1, 'order.status_changed', $11),"
	"                  ($6, 'order.priced', $13)) v(seq, event_type, payload)"
	" ORDER BY v.seq",
	27, {STATUS_TYPES, JSONBOID,
		INT8OID, BYTEAOID, TEXTOID, JSONBOID, INT8OID, NUMERICOID, TEXTOID, NUMERICOID,
	NUMERICOID, NUMERICOID, NUMERICOID, BOOLOID, JSONBOID, TEXTOID}
};

/* escalation: the breach row, the order's event_seq, order.sla_breached */
static AlxPlan breach_plan = {
	"WITH b AS (INSERT INTO alexandrite.sla_breaches AS b"
	"                  (order_id, sla_due_at, breached_at, status_at_breach, operator_id)"
	"           VALUES ($1, $2, $3, $4::alexandrite.order_status, $5)"
	"           ON CONFLICT ON CONSTRAINT sla_breaches_pkey DO NOTHING RETURNING b.order_id),"
	"     u AS (UPDATE alexandrite.orders o SET event_seq = $6 FROM b"
	"            WHERE o.id OPERATOR(pg_catalog.=) b.order_id RETURNING o.id) "
	ALX_OUTBOX_INSERT
	"SELECT " ALX_OUTBOX_NEXT_ID ", 'order', $7, $6, 'order.sla_breached', $8, $9 FROM u",
	9, {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, INT8OID, TEXTOID, JSONBOID, JSONBOID}
};

static AlxPlan model_plan = {
	"UPDATE alexandrite.orders o SET mesh_id = $2, material = $3, updated_at = $4"
	" WHERE o.id OPERATOR(pg_catalog.=) $1",
	4, {INT8OID, INT8OID, TEXTOID, TIMESTAMPTZOID}
};

static AlxPlan next_seq_plan = {
	"UPDATE alexandrite.orders o SET event_seq = o.event_seq OPERATOR(pg_catalog.+) 1"
	" WHERE o.id OPERATOR(pg_catalog.=) $1 RETURNING o.event_seq",
	1, {INT8OID}
};

/*------------------------------------------------------------------------
 * Event payloads: JSON objects built in C (jsonb sorts the keys)
 *------------------------------------------------------------------------
 */
void
AlxJsonBegin(AlxJson *j)
{
	j->st = NULL;
	pushJsonbValue(&j->st, WJB_BEGIN_OBJECT, NULL);
}

static void
json_key(AlxJson *j, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(&j->st, WJB_KEY, &k);
}

/* a string, or null when val is NULL */
void
AlxJsonText(AlxJson *j, const char *key, const char *val)
{
	JsonbValue	v;

	json_key(j, key);
	if (val == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) val;
		v.val.string.len = strlen(val);
	}
	pushJsonbValue(&j->st, WJB_VALUE, &v);
}

/* a number, or null when isnull */
void
AlxJsonInt8(AlxJson *j, const char *key, int64 val, bool isnull)
{
	JsonbValue	v;

	json_key(j, key);
	if (isnull)
		v.type = jbvNull;
	else
	{
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(val);
	}
	pushJsonbValue(&j->st, WJB_VALUE, &v);
}

/* a number, or null when val is NULL */
void
AlxJsonNumeric(AlxJson *j, const char *key, Numeric val)
{
	JsonbValue	v;

	json_key(j, key);
	if (val == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvNumeric;
		v.val.numeric = val;
	}
	pushJsonbValue(&j->st, WJB_VALUE, &v);
}

/* a timestamptz as jsonb_build_object writes it (ISO 8601, session zone) */
void
AlxJsonTimestamp(AlxJson *j, const char *key, TimestampTz ts)
{
	JsonbValue	v;

	json_key(j, key);
	v.type = jbvString;
	v.val.string.val = JsonEncodeDateTime(NULL, TimestampTzGetDatum(ts), TIMESTAMPTZOID, NULL);
	v.val.string.len = strlen(v.val.string.val);
	pushJsonbValue(&j->st, WJB_VALUE, &v);
}

Jsonb *
AlxJsonEnd(AlxJson *j)
{
	return JsonbValueToJsonb(pushJsonbValue(&j->st, WJB_END_OBJECT, NULL));
}

/*------------------------------------------------------------------------
 * Locking and reading
 *------------------------------------------------------------------------
 */

/* Decodes ALX_ORDER_COLS, starting at column first_col (1-based). */
void
AlxOrderFromTuple(HeapTuple tup, TupleDesc desc, int first_col, AlxOrderRow *row)
{
	bool		isnull;
	Datum		d;
	int			c = first_col;
	char	   *s;

#define COL() (d = SPI_getbinval(tup, desc, c++, &isnull))
#define TEXT_OR_NULL() (COL(), isnull ? NULL : TextDatumGetCString(d))
	row->id = DatumGetInt64(COL());
	row->external_ref = TEXT_OR_NULL();
	row->channel = TEXT_OR_NULL();
	row->customer_id = TEXT_OR_NULL();
	COL();
	row->has_mesh = !isnull;
	row->mesh_id = isnull ? 0 : DatumGetInt64(d);
	row->material = TEXT_OR_NULL();
	s = TEXT_OR_NULL();
	row->status = AlxStatusFromName(s);
	row->operator_id = TEXT_OR_NULL();
	COL();
	row->price = isnull ? NULL : DatumGetNumericCopy(d);
	row->created_at = DatumGetTimestampTz(COL());
	row->sla_due_at = DatumGetTimestampTz(COL());
	row->event_seq = DatumGetInt64(COL());
#undef TEXT_OR_NULL
#undef COL
}

/*
 * Locks an order row until the end of the transaction and reads it.
 * Missing: P0002, or false when missing_ok.
 */
bool
AlxOrderLock(int64 order_id, AlxOrderRow *row, bool missing_ok)
{
	Datum		values[1];

	values[0] = Int64GetDatum(order_id);
	AlxPlanRun(&lock_plan, 0, values, NULL, false, 1);
	if (SPI_processed != 1)
	{
		if (missing_ok)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order " INT64_FORMAT " does not exist", order_id)));
	}
	AlxOrderFromTuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, row);
	return true;
}

/* Raises set_status's error for a move the state machine does not allow. */
void
AlxOrderCheckTransition(const AlxOrderRow *row, AlxStatus to)
{
	if (AlxTransitionAllowed(row->status, to))
		return;
	if (!ALX_STATUS_OPEN(row->status))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot change order " INT64_FORMAT " from \"%s\" to \"%s\"",
						row->id, AlxStatusNames[row->status], AlxStatusNames[to]),
				 errhint("Status \"%s\" is final.", AlxStatusNames[row->status])));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("cannot change order " INT64_FORMAT " from \"%s\" to \"%s\"",
					row->id, AlxStatusNames[row->status], AlxStatusNames[to]),
			 errhint("From \"%s\" an order may go to: %s.", AlxStatusNames[row->status],
					 AlxTransitionTargets(row->status))));
}

/*------------------------------------------------------------------------
 * Writing
 *------------------------------------------------------------------------
 */

/*
 * Changes the status (and holder, and for price_order the price) of a
 * locked order: one UPDATE, one order_events row, order.status_changed
 * (and order.priced when the price is set), in one statement.
 */
void
AlxOrderWriteStatus(AlxOrderRow *row, const AlxOrderChange *chg)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Numeric		price = chg->set_price ? chg->price : row->price;
	int64		seq = row->event_seq + (chg->set_price ? 2 : 1);
	char		idbuf[32];
	Jsonb	   *headers = AlxOutboxHeaders(NULL);
	Jsonb	   *changed;
	Jsonb	   *priced = NULL;
	AlxJson		j;
	Datum		values[27];
	char		nulls[27];
	int			t;

	AlxOrderCheckTransition(row, chg->to_status);
	snprintf(idbuf, sizeof(idbuf), INT64_FORMAT, row->id);

	AlxJsonBegin(&j);
	AlxJsonInt8(&j, "order_id", row->id, false);
	AlxJsonText(&j, "external_ref", row->external_ref);
	AlxJsonText(&j, "from_status", AlxStatusNames[row->status]);
	AlxJsonText(&j, "to_status", AlxStatusNames[chg->to_status]);
	AlxJsonTimestamp(&j, "at", now);
	AlxJsonText(&j, "actor", chg->actor);
	AlxJsonText(&j, "operator_id", chg->operator_id);
	AlxJsonTimestamp(&j, "sla_due_at", row->sla_due_at);
	changed = AlxJsonEnd(&j);
	AlxOutboxCheckOwnEvent(idbuf, "order.status_changed", changed, headers);
	if (chg->set_price)
	{
		AlxJsonBegin(&j);
		AlxJsonInt8(&j, "order_id", row->id, false);
		AlxJsonText(&j, "external_ref", row->external_ref);
		AlxJsonNumeric(&j, "price", price);
		AlxJsonText(&j, "material", row->material);
		AlxJsonInt8(&j, "mesh_id", row->mesh_id, !row->has_mesh);
		AlxJsonTimestamp(&j, "at", now);
		AlxJsonText(&j, "actor", chg->actor);
		priced = AlxJsonEnd(&j);
		AlxOutboxCheckOwnEvent(idbuf, "order.priced", priced, headers);
	}

	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(row->id);
	values[1] = CStringGetTextDatum(AlxStatusNames[chg->to_status]);
	values[2] = chg->operator_id ? CStringGetTextDatum(chg->operator_id) : (Datum) 0;
	nulls[2] = chg->operator_id ? ' ' : 'n';
	values[3] = price ? NumericGetDatum(price) : (Datum) 0;
	nulls[3] = price ? ' ' : 'n';
	values[4] = TimestampTzGetDatum(now);
	values[5] = Int64GetDatum(seq);
	values[6] = CStringGetTextDatum(AlxStatusNames[row->status]);
	values[7] = CStringGetTextDatum(chg->actor);
	values[8] = (alx_traceparent && alx_traceparent[0]) ? CStringGetTextDatum(alx_traceparent) : (Datum) 0;
	nulls[8] = (alx_traceparent && alx_traceparent[0]) ? ' ' : 'n';
	values[9] = CStringGetTextDatum(idbuf);
	values[10] = JsonbPGetDatum(changed);
	values[11] = JsonbPGetDatum(headers);

	t = AlxOutboxCurrentTable();
	if (!chg->set_price)
		AlxPlanRun(&status_plan, t, values, nulls, false, 0);
	else
	{
		values[12] = JsonbPGetDatum(priced);
		Assert(chg->quote != NULL);
		memcpy(&values[13], chg->quote->values, sizeof(Datum) * 14);
		memcpy(&nulls[13], chg->quote->nulls, 14);
		AlxPlanRun(&priced_plan, t, values, nulls, false, 0);
	}
	if (SPI_processed != (chg->set_price ? 2 : 1))
		elog(ERROR, "order " INT64_FORMAT " was not written", row->id);

	row->status = chg->to_status;
	row->operator_id = chg->operator_id ? pstrdup(chg->operator_id) : NULL;
	row->price = price;
	row->event_seq = seq;
	AlxOutboxWakeupAtCommit();
}

/*
 * Records that a locked, open order passed its due time: the sla_breaches
 * row (once per order), the bumped event_seq and order.sla_breached.
 * Returns false when the order was recorded already.
 */
bool
AlxOrderWriteBreach(AlxOrderRow *row, TimestampTz breached_at)
{
	int64		seq = row->event_seq + 1;
	char		idbuf[32];
	Jsonb	   *headers = AlxOutboxHeaders(NULL);
	Jsonb	   *payload;
	AlxJson		j;
	Datum		values[9];
	char		nulls[9];

	snprintf(idbuf, sizeof(idbuf), INT64_FORMAT, row->id);
	AlxJsonBegin(&j);
	AlxJsonInt8(&j, "order_id", row->id, false);
	AlxJsonText(&j, "external_ref", row->external_ref);
	AlxJsonText(&j, "channel", row->channel);
	AlxJsonTimestamp(&j, "sla_due_at", row->sla_due_at);
	AlxJsonTimestamp(&j, "breached_at", breached_at);
	AlxJsonText(&j, "status_at_breach", AlxStatusNames[row->status]);
	AlxJsonText(&j, "operator_id", row->operator_id);
	payload = AlxJsonEnd(&j);
	AlxOutboxCheckOwnEvent(idbuf, "order.sla_breached", payload, headers);

	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(row->id);
	values[1] = TimestampTzGetDatum(row->sla_due_at);
	values[2] = TimestampTzGetDatum(breached_at);
	values[3] = CStringGetTextDatum(AlxStatusNames[row->status]);
	values[4] = row->operator_id ? CStringGetTextDatum(row->operator_id) : (Datum) 0;
	nulls[4] = row->operator_id ? ' ' : 'n';
	values[5] = Int64GetDatum(seq);
	values[6] = CStringGetTextDatum(idbuf);
	values[7] = JsonbPGetDatum(payload);
	values[8] = JsonbPGetDatum(headers);
	AlxPlanRun(&breach_plan, AlxOutboxCurrentTable(), values, nulls, false, 0);
	if (SPI_processed == 0)
		return false;
	row->event_seq = seq;
	AlxOutboxWakeupAtCommit();
	return true;
}

/* Sets the mesh and material of a locked order (no status change, no event). */
void
AlxOrderWriteModel(AlxOrderRow *row, bool has_mesh, int64 mesh_id, const char *material)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(row->id);
	values[1] = Int64GetDatum(mesh_id);
	nulls[1] = has_mesh ? ' ' : 'n';
	values[2] = material ? CStringGetTextDatum(material) : (Datum) 0;
	nulls[2] = material ? ' ' : 'n';
	values[3] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	AlxPlanRun(&model_plan, 0, values, nulls, false, 0);
	row->has_mesh = has_mesh;
	row->mesh_id = mesh_id;
	row->material = material ? pstrdup(material) : NULL;
}

/*
 * The next aggregate_seq of an order for outbox_emit('order', ...): bumps
 * event_seq, which locks the order row until commit.
 */
int64
AlxOrderNextEventSeq(int64 order_id)
{
	Datum		values[1];
	bool		isnull;

	values[0] = Int64GetDatum(order_id);
	AlxPlanRun(&next_seq_plan, 0, values, NULL, false, 0);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order " INT64_FORMAT " does not exist", order_id)));
	return AlxSpiInt8(0, 1, &isnull);
}
