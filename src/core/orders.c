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
 *		of the order and its history row; the UPDATE bumps the order's
 *		event_seq, the aggregate_seq of its outbox event(s);
 *	 4. the event(s), written by AlxOutboxWrite (src/outbox/write.c).
 *		The row lock taken in step 1 is what makes the sequence gap-free and
 *		commit-ordered; the event id (nextval) is taken after the lock.
 * The event payloads are built here, in C, from the locked row and the
 * change, and checked against what the relay can publish before anything
 * is written.  create.c does the same for a new order (one INSERT, then
 * its event).
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
#include "utils/array.h"
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

/*
 * The status write: the order row (u), then the order_events row, the
 * statement's result (one row when the order was written); its events
 * follow (AlxOutboxWrite).
 */
#define STATUS_WITH \
	"WITH u AS (UPDATE alexandrite.orders o" \
	"              SET status = $2::alexandrite.order_status, operator_id = $3, price = $4," \
	"                  updated_at = $5, status_changed_at = $5, event_seq = $6" \
	"            WHERE o.id OPERATOR(pg_catalog.=) $1 RETURNING o.id)"
#define STATUS_HISTORY \
	"INSERT INTO alexandrite.order_events" \
	"       (order_id, from_status, to_status, at, actor, traceparent) " \
	"SELECT u.id, $7::alexandrite.order_status, $2::alexandrite.order_status, $5, $8, $9" \
	"  FROM u"
#define STATUS_TYPES \
	INT8OID, TEXTOID, TEXTOID, NUMERICOID, TIMESTAMPTZOID, INT8OID, TEXTOID, TEXTOID, \
	TEXTOID

static AlxPlan status_plan = {
	STATUS_WITH " " STATUS_HISTORY,
	9, {STATUS_TYPES}
};

/*
 * ... and, when the holder of an open order changes (an assignment, a
 * release, shipping a held order), the operator load in the same statement
 * (upserts: a missing row stays unknown, NULL + 1 too); the maintenance
 * trigger then skips the rows this statement accounted for.
 */
#define LOAD_DEC(param) \
	"     d AS (INSERT INTO alexandrite.operator_load AS l (operator_id, open_orders)" \
	"           VALUES (" param ", NULL)" \
	"           ON CONFLICT ON CONSTRAINT operator_load_pkey" \
	"           DO UPDATE SET open_orders = CASE WHEN l.open_orders OPERATOR(pg_catalog.>) 0" \
	"                                            THEN l.open_orders OPERATOR(pg_catalog.-) 1 END)"
#define LOAD_INC(param) \
	"     i AS (INSERT INTO alexandrite.operator_load AS l (operator_id, open_orders)" \
	"           VALUES (" param ", NULL)" \
	"           ON CONFLICT ON CONSTRAINT operator_load_pkey" \
	"           DO UPDATE SET open_orders = l.open_orders OPERATOR(pg_catalog.+) 1)"

/* [0]: the old holder lets go ($10); [1]: a new holder takes it ($10); [2]: both ($10, $11) */
static AlxPlan status_load_plans[3] = {
	{STATUS_WITH "," LOAD_DEC("$10") " " STATUS_HISTORY, 10, {STATUS_TYPES, TEXTOID}},
	{STATUS_WITH "," LOAD_INC("$10") " " STATUS_HISTORY, 10, {STATUS_TYPES, TEXTOID}},
	{STATUS_WITH "," LOAD_DEC("$10") "," LOAD_INC("$11") " " STATUS_HISTORY, 11, {STATUS_TYPES, TEXTOID, TEXTOID}}
};

/* ... for price_order: with the quote row (two events follow) */
static AlxPlan priced_plan = {
	STATUS_WITH ","
	"     q AS (INSERT INTO alexandrite.quotes"
	"                  (order_id, mesh_id, mesh_sha256, material, options, price_list_version, total,"
	"                   currency, metal_weight_g, metal_cost, labour_cost, finishing_cost, needs_review,"
	"                   breakdown, created_by)"
	"           SELECT u.id, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23"
	"             FROM u) "
	STATUS_HISTORY,
	23, {STATUS_TYPES,
		INT8OID, BYTEAOID, TEXTOID, JSONBOID, INT8OID, NUMERICOID, TEXTOID, NUMERICOID,
	NUMERICOID, NUMERICOID, NUMERICOID, BOOLOID, JSONBOID, TEXTOID}
};

/* escalation: the breach row and the order's event_seq (order.sla_breached follows) */
static AlxPlan breach_plan = {
	"WITH b AS (INSERT INTO alexandrite.sla_breaches AS b"
	"                  (order_id, sla_due_at, breached_at, status_at_breach, operator_id)"
	"           VALUES ($1, $2, $3, $4::alexandrite.order_status, $5)"
	"           ON CONFLICT ON CONSTRAINT sla_breaches_pkey DO NOTHING RETURNING b.order_id) "
	"UPDATE alexandrite.orders o SET event_seq = $6 FROM b"
	" WHERE o.id OPERATOR(pg_catalog.=) b.order_id",
	6, {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, INT8OID}
};

/*
 * A status change in one statement (AlxOrderSetStatus): lock the row (p),
 * check the move against the allowed origins ($5, from the cached state
 * machine), update, history row; the result is the event's seq and payload
 * (built and checked by the same C code as the two-step write's,
 * order_status_payload), which AlxOutboxWrite then writes.  No row when the
 * order is missing, already in the status, or not allowed to move; the
 * caller then takes the two-step path, which explains.
 */
static AlxPlan fast_status_plan = {
	"WITH p AS (SELECT o.id, o.status, o.external_ref, o.operator_id, o.sla_due_at, o.event_seq"
	"             FROM alexandrite.orders o"
	"            WHERE o.id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE),"
	"     u AS (UPDATE alexandrite.orders o"
	"              SET status = $2::alexandrite.order_status,"
	"                  operator_id = CASE WHEN $3 THEN NULL ELSE p.operator_id END,"
	"                  updated_at = $4, status_changed_at = $4,"
	"                  event_seq = p.event_seq OPERATOR(pg_catalog.+) 1"
	"             FROM p"
	"            WHERE o.id OPERATOR(pg_catalog.=) p.id"
	"              AND p.status::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($5)"
	"              AND (p.operator_id IS NOT NULL OR NOT $6)"
	"           RETURNING o.id, o.operator_id, o.event_seq, p.status AS from_status,"
	"                     p.external_ref, p.sla_due_at),"
	"     e AS (INSERT INTO alexandrite.order_events"
	"                  (order_id, from_status, to_status, at, actor, traceparent)"
	"           SELECT u.id, u.from_status, $2::alexandrite.order_status, $4, $7, $8 FROM u) "
	"SELECT u.event_seq,"
	"       alexandrite.order_status_payload(u.id, u.external_ref, u.from_status::pg_catalog.text,"
	"                                        $2, $4, $7, u.operator_id, u.sla_due_at, $9)"
	"  FROM u",
	9, {INT8OID, TEXTOID, BOOLOID, TIMESTAMPTZOID, TEXTARRAYOID, BOOLOID, TEXTOID,
	TEXTOID, JSONBOID}
};

static AlxPlan model_plan = {
	"UPDATE alexandrite.orders o SET mesh_id = $2, material = $3, updated_at = $4,"
	"       price = CASE WHEN $5 THEN NULL ELSE o.price END"
	" WHERE o.id OPERATOR(pg_catalog.=) $1",
	5, {INT8OID, INT8OID, TEXTOID, TIMESTAMPTZOID, BOOLOID}
};

static AlxPlan next_seq_plan = {
	"UPDATE alexandrite.orders o SET event_seq = o.event_seq OPERATOR(pg_catalog.+) 1"
	" WHERE o.id OPERATOR(pg_catalog.=) $1 RETURNING o.event_seq",
	1, {INT8OID}
};

/*------------------------------------------------------------------------
 * Event payloads: JSON objects built in C.  The pairs are collected, put in
 * jsonb's key order (shorter keys first, then bytewise) and converted in
 * one step, which is what jsonb_build_object gives for the same pairs.
 *------------------------------------------------------------------------
 */
void
AlxJsonBegin(AlxJson *j)
{
	j->npairs = 0;
}

static JsonbValue *
json_add(AlxJson *j, const char *key)
{
	JsonbPair  *p;

	if (j->npairs >= ALX_JSON_MAXPAIRS)
		elog(ERROR, "too many keys in an alexandrite event payload");
	p = &j->pairs[j->npairs++];
	p->key.type = jbvString;
	p->key.val.string.val = (char *) key;
	p->key.val.string.len = strlen(key);
	p->order = j->npairs;
	return &p->value;
}

/* a string, or null when val is NULL */
void
AlxJsonText(AlxJson *j, const char *key, const char *val)
{
	JsonbValue *v = json_add(j, key);

	if (val == NULL)
		v->type = jbvNull;
	else
	{
		v->type = jbvString;
		v->val.string.val = (char *) val;
		v->val.string.len = strlen(val);
	}
}

/* a number, or null when isnull */
void
AlxJsonInt8(AlxJson *j, const char *key, int64 val, bool isnull)
{
	JsonbValue *v = json_add(j, key);

	if (isnull)
		v->type = jbvNull;
	else
	{
		v->type = jbvNumeric;
		v->val.numeric = int64_to_numeric(val);
	}
}

/* a number, or null when val is NULL */
void
AlxJsonNumeric(AlxJson *j, const char *key, Numeric val)
{
	JsonbValue *v = json_add(j, key);

	if (val == NULL)
		v->type = jbvNull;
	else
	{
		v->type = jbvNumeric;
		v->val.numeric = val;
	}
}

/* a timestamptz as jsonb_build_object writes it (ISO 8601, session zone) */
void
AlxJsonTimestamp(AlxJson *j, const char *key, TimestampTz ts)
{
	JsonbValue *v = json_add(j, key);

	v->type = jbvString;
	v->val.string.val = JsonEncodeDateTime(NULL, TimestampTzGetDatum(ts), TIMESTAMPTZOID, NULL);
	v->val.string.len = strlen(v->val.string.val);
}

/* jsonb's order of object keys */
static int
json_key_cmp(const void *a, const void *b)
{
	const JsonbPair *pa = (const JsonbPair *) a;
	const JsonbPair *pb = (const JsonbPair *) b;
	int			la = pa->key.val.string.len;
	int			lb = pb->key.val.string.len;

	if (la != lb)
		return la < lb ? -1 : 1;
	return memcmp(pa->key.val.string.val, pb->key.val.string.val, la);
}

Jsonb *
AlxJsonEnd(AlxJson *j)
{
	JsonbValue	obj;

	/* an insertion sort: at most ALX_JSON_MAXPAIRS pairs (qsort cost 6k of a create) */
	for (int i = 1; i < j->npairs; i++)
	{
		JsonbPair	p = j->pairs[i];
		int			k = i;

		while (k > 0 && json_key_cmp(&j->pairs[k - 1], &p) > 0)
		{
			j->pairs[k] = j->pairs[k - 1];
			k--;
		}
		j->pairs[k] = p;
	}
	obj.type = jbvObject;
	obj.val.object.nPairs = j->npairs;
	obj.val.object.pairs = j->pairs;
	return JsonbValueToJsonb(&obj);
}

/*------------------------------------------------------------------------
 * Locking and reading
 *------------------------------------------------------------------------
 */

/* the types ALX_ORDER_COLS are decoded as (here, and by the claim from the table) */
const Oid	AlxOrderColTypes[ALX_ORDER_NCOLS] = {
	INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID,
	TEXTOID, TEXTOID, NUMERICOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID
};

/* Decodes ALX_ORDER_COLS, starting at column first_col (1-based). */
void
AlxOrderFromTuple(HeapTuple tup, TupleDesc desc, int first_col, AlxOrderRow *row)
{
	bool		isnull;
	Datum		d;
	int			c = first_col;
	char	   *s;

	for (int i = 0; i < ALX_ORDER_NCOLS; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, first_col - 1 + i);

		AlxCheckColumnType("alexandrite.orders", NameStr(att->attname), att->atttypid,
						   AlxOrderColTypes[i]);
	}

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
	AlxPlanRun(&lock_plan, values, NULL, false, 1);
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
 * The order.status_changed payload, checked against the relay's limits:
 * the one builder for both forms of the status write.
 */
static Jsonb *
status_changed_payload(int64 id, const char *external_ref, const char *from, const char *to,
					   TimestampTz at, const char *actor, const char *operator_id,
					   TimestampTz sla_due_at, Jsonb *headers)
{
	AlxJson		j;
	Jsonb	   *payload;
	char		idbuf[32];

	AlxJsonBegin(&j);
	AlxJsonInt8(&j, "order_id", id, false);
	AlxJsonText(&j, "external_ref", external_ref);
	AlxJsonText(&j, "from_status", from);
	AlxJsonText(&j, "to_status", to);
	AlxJsonTimestamp(&j, "at", at);
	AlxJsonText(&j, "actor", actor);
	AlxJsonText(&j, "operator_id", operator_id);
	AlxJsonTimestamp(&j, "sla_due_at", sla_due_at);
	payload = AlxJsonEnd(&j);
	snprintf(idbuf, sizeof(idbuf), INT64_FORMAT, id);
	AlxOutboxCheckOwnEvent(idbuf, "order.status_changed", payload, headers);
	return payload;
}

PG_FUNCTION_INFO_V1(alexandrite_order_status_payload);

/*
 * order_status_payload(order_id, external_ref, from_status, to_status, at,
 * actor, operator_id, sla_due_at, headers): the payload of
 * order.status_changed, for the one-statement status write, which knows
 * the row's fields only inside the statement.  Internal (no EXECUTE for
 * PUBLIC); it only builds a value.
 */
Datum
alexandrite_order_status_payload(PG_FUNCTION_ARGS)
{
#define TXT(n) (PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n)))
	if (PG_ARGISNULL(0) || PG_ARGISNULL(4) || PG_ARGISNULL(7) || PG_ARGISNULL(8))
		elog(ERROR, "order_status_payload: unexpected NULL argument");
	PG_RETURN_JSONB_P(status_changed_payload(PG_GETARG_INT64(0), TXT(1), TXT(2), TXT(3),
											 PG_GETARG_TIMESTAMPTZ(4), TXT(5), TXT(6),
											 PG_GETARG_TIMESTAMPTZ(7), PG_GETARG_JSONB_P(8)));
#undef TXT
}


/*
 * Runs the status-and-load statement with the load mark set (the row
 * trigger skips what the statement accounts for).  A function of its own:
 * gcc's -Wclobbered flags PG_FINALLY and a PG_TRY in a long function.
 */
static void
run_with_load_mark(AlxCoreLoadMark *mark, AlxPlan *plan, Datum *values, char *nulls)
{
	PG_TRY();
	{
		AlxPlanRun(plan, values, nulls, false, 0);
	}
	PG_CATCH();
	{
		AlxCoreLoadEnd(mark);
		PG_RE_THROW();
	}
	PG_END_TRY();
	AlxCoreLoadEnd(mark);
}

/*
 * Changes the status (and holder, and for price_order the price) of a
 * locked order: one UPDATE and one order_events row in one statement, then
 * order.status_changed (and order.priced when the price is set).
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
	Datum		values[23];
	char		nulls[23];
	int			t;
	const char *old_holder;
	const char *new_holder;

	AlxOrderCheckTransition(row, chg->to_status);
	snprintf(idbuf, sizeof(idbuf), INT64_FORMAT, row->id);

	changed = status_changed_payload(row->id, row->external_ref, AlxStatusNames[row->status],
									 AlxStatusNames[chg->to_status], now, chg->actor,
									 chg->operator_id, row->sla_due_at, headers);
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

	t = AlxOutboxCurrentTable();
	old_holder = ALX_STATUS_OPEN(row->status) ? row->operator_id : NULL;
	new_holder = ALX_STATUS_OPEN(chg->to_status) ? chg->operator_id : NULL;
	if (!chg->set_price &&
		(old_holder != NULL || new_holder != NULL) &&
		!(old_holder != NULL && new_holder != NULL && strcmp(old_holder, new_holder) == 0))
	{
		AlxCoreLoadMark mark;

		int			k = 0;

		if (old_holder)
			values[9 + k++] = CStringGetTextDatum(old_holder);
		if (new_holder)
			values[9 + k++] = CStringGetTextDatum(new_holder);
		AlxCoreLoadBegin(&mark, row->id, old_holder, new_holder);
		run_with_load_mark(&mark, &status_load_plans[old_holder && new_holder ? 2 : old_holder ? 0 : 1],
						   values, nulls);
	}
	else if (!chg->set_price)
		AlxPlanRun(&status_plan, values, nulls, false, 0);
	else
	{
		Assert(chg->quote != NULL);
		memcpy(&values[9], chg->quote->values, sizeof(Datum) * 14);
		memcpy(&nulls[9], chg->quote->nulls, 14);
		AlxPlanRun(&priced_plan, values, nulls, false, 0);
	}
	if (SPI_processed != 1)
		elog(ERROR, "order " INT64_FORMAT " was not written", row->id);
	/* the locked row orders them: status_changed, then priced */
	if (chg->set_price)
	{
		(void) AlxOutboxWrite(t, "order", idbuf, seq - 1, "order.status_changed", changed, headers);
		(void) AlxOutboxWrite(t, "order", idbuf, seq, "order.priced", priced, headers);
	}
	else
		(void) AlxOutboxWrite(t, "order", idbuf, seq, "order.status_changed", changed, headers);

	row->status = chg->to_status;
	row->operator_id = chg->operator_id ? pstrdup(chg->operator_id) : NULL;
	row->price = price;
	row->event_seq = seq;
	AlxOutboxWakeupAtCommit();
}

/*
 * set_status's write: moves an order to a status, in one statement when
 * the move is allowed (the common case), else through the two-step path
 * (lock and read, check with the errors set_status documents, write).
 * A repeated request changes nothing.
 */
void
AlxOrderSetStatus(int64 order_id, AlxStatus to, const char *actor)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Jsonb	   *headers = AlxOutboxHeaders(NULL);
	int			norigins = 0;
	ArrayType  *origins = AlxTransitionOrigins(to, &norigins);
	Datum		values[9];
	char		nulls[9];
	int			t;
	AlxOrderRow row;
	AlxOrderChange chg;

	if (norigins > 0)
	{
		memset(nulls, ' ', sizeof(nulls));
		values[0] = Int64GetDatum(order_id);
		values[1] = CStringGetTextDatum(AlxStatusNames[to]);
		values[2] = BoolGetDatum(to < ALX_ST_ASSIGNED);
		values[3] = TimestampTzGetDatum(now);
		values[4] = PointerGetDatum(origins);
		values[5] = BoolGetDatum(to == ALX_ST_ASSIGNED);
		values[6] = CStringGetTextDatum(actor);
		values[7] = (alx_traceparent && alx_traceparent[0]) ? CStringGetTextDatum(alx_traceparent) : (Datum) 0;
		nulls[7] = (alx_traceparent && alx_traceparent[0]) ? ' ' : 'n';
		values[8] = JsonbPGetDatum(headers);
		t = AlxOutboxCurrentTable();
		AlxPlanRun(&fast_status_plan, values, nulls, false, 0);
		if (SPI_processed == 1)
		{
			bool		isnull;
			char		idbuf[32];
			int64		seq = AlxSpiInt8(0, 1, &isnull);
			Datum		payload = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

			snprintf(idbuf, sizeof(idbuf), INT64_FORMAT, order_id);
			(void) AlxOutboxWrite(t, "order", idbuf, seq, "order.status_changed",
								  DatumGetJsonbP(payload), headers);
			AlxOutboxWakeupAtCommit();
			return;
		}
	}

	AlxOrderLock(order_id, &row, false);
	if (row.status == to)
		return;					/* a repeated request changes nothing */
	AlxOrderCheckTransition(&row, to);
	if (to == ALX_ST_ASSIGNED && row.operator_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot mark order " INT64_FORMAT " assigned without an operator", order_id),
				 errhint("Use alexandrite.assign_next() to give an order to an operator.")));
	memset(&chg, 0, sizeof(chg));
	chg.to_status = to;
	/* back to the pool: nobody holds it any more */
	chg.operator_id = to < ALX_ST_ASSIGNED ? NULL : row.operator_id;
	chg.actor = actor;
	AlxOrderWriteStatus(&row, &chg);
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
	Datum		values[6];
	char		nulls[6];

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
	AlxPlanRun(&breach_plan, values, nulls, false, 0);
	if (SPI_processed == 0)
		return false;
	(void) AlxOutboxWrite(AlxOutboxCurrentTable(), "order", idbuf, seq, "order.sla_breached",
						  payload, headers);
	row->event_seq = seq;
	AlxOutboxWakeupAtCommit();
	return true;
}

/*
 * Sets the mesh and material of a locked order (no status change, no
 * event).  A price belongs to the model and alloy it was computed for: an
 * order sent back to new keeps its price until either changes, then loses
 * it (else a later move to priced would carry the old model's price).
 */
void
AlxOrderWriteModel(AlxOrderRow *row, bool has_mesh, int64 mesh_id, const char *material)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	bool		changed;

	changed = has_mesh != row->has_mesh || (has_mesh && mesh_id != row->mesh_id) ||
		(material == NULL) != (row->material == NULL) ||
		(material != NULL && strcmp(material, row->material) != 0);

	values[0] = Int64GetDatum(row->id);
	values[1] = Int64GetDatum(mesh_id);
	nulls[1] = has_mesh ? ' ' : 'n';
	values[2] = material ? CStringGetTextDatum(material) : (Datum) 0;
	nulls[2] = material ? ' ' : 'n';
	values[3] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[4] = BoolGetDatum(changed);
	AlxPlanRun(&model_plan, values, nulls, false, 0);
	row->has_mesh = has_mesh;
	row->mesh_id = mesh_id;
	row->material = material ? pstrdup(material) : NULL;
	if (changed)
		row->price = NULL;
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
	AlxPlanRun(&next_seq_plan, values, NULL, false, 0);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order " INT64_FORMAT " does not exist", order_id)));
	return AlxSpiInt8(0, 1, &isnull);
}
