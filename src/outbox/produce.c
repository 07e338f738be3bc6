/*-------------------------------------------------------------------------
 *
 * produce.c
 *	  Writing outbox events: alexandrite.outbox_emit() and what the order
 *	  core shares with it (validation, framing limits, headers, the table).
 *
 * An event is one row in the current table of the rotating log
 * (outbox_events_0..2), written in the caller's transaction.  Its
 * aggregate_seq comes from a row that the producer locks until commit, so
 * the sequence of one aggregate is gap-free and follows commit order, and
 * the event id is taken after that lock (docs/outbox.md, "Ordering
 * argument"):
 *   - for an order, the order row itself: orders.event_seq, bumped by the
 *     same UPDATE that changes the order (src/core/orders.c), or here by
 *     outbox_emit('order', id, ...);
 *   - for any other aggregate type, its row in outbox_aggregates (an
 *     upsert, which locks it; written once per transaction, aggseq.c).
 * The row itself is written by AlxOutboxWrite (write.c).
 *
 * Every event is checked against what the relay can publish before it is
 * written: names, a header name of at most 255 bytes (an AMQP short
 * string), the message's content header frame within ALX_AMQP_FRAME_MAX,
 * and a payload of at most 16 MB of JSON text.  An event that the relay
 * could not frame would otherwise block its aggregate, or the relay.
 *
 * The current table is read from outbox_relay at most once a second per
 * backend.  An insert into the table that was current a moment ago is
 * harmless: the relay reads all three tables, and only truncates a table
 * under an ACCESS EXCLUSIVE lock once every committed event in it is
 * handled.
 *
 * IDENTIFICATION
 *	  src/outbox/produce.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "core/core.h"
#include "outbox/outbox.h"

/* how long a backend trusts its copy of outbox_relay.cur_table */
#define CUR_TABLE_TTL_MS 1000

static int	cur_table = -1;
static TimestampTz cur_table_at = 0;

static AlxPlan cur_table_plan = {
	"SELECT r.cur_table FROM alexandrite.outbox_relay r", 0, {InvalidOid}
};

/* The rotating table that takes new events (inside an SPI connection). */
int
AlxOutboxCurrentTable(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (cur_table < 0 || now - cur_table_at > CUR_TABLE_TTL_MS * (int64) 1000 || now < cur_table_at)
	{
		bool		isnull;
		int64		t;

		AlxPlanRun(&cur_table_plan, NULL, NULL, true, 1);
		t = SPI_processed == 1 ? AlxSpiInt8(0, 1, &isnull) : 0;
		cur_table = (t >= 0 && t < 3) ? (int) t : 0;
		cur_table_at = now;
	}
	return cur_table;
}

/*
 * The headers of an event: the given object (or {}), with the transaction's
 * traceparent (alexandrite.traceparent) unless it names one already.
 */
Jsonb *
AlxOutboxHeaders(Jsonb *given)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;
	JsonbValue	k,
				v;

	if (alx_traceparent == NULL || alx_traceparent[0] == '\0')
	{
		if (given != NULL)
			return given;
		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
	}
	if (given != NULL && JB_ROOT_IS_OBJECT(given))
	{
		JsonbValue *found;

		k.type = jbvString;
		k.val.string.val = "traceparent";
		k.val.string.len = strlen("traceparent");
		found = findJsonbValueFromContainer(&given->root, JB_FOBJECT, &k);
		if (found != NULL)
			return given;
	}
	if (given != NULL && !JB_ROOT_IS_OBJECT(given))
		return given;			/* refused by AlxOutboxCheckEvent */

	/* the given pairs, then traceparent (pushJsonbValue sorts the keys) */
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (given != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&given->root);
		JsonbIteratorToken tok;
		JsonbValue	x;

		while ((tok = JsonbIteratorNext(&it, &x, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY || tok == WJB_VALUE)
				pushJsonbValue(&st, tok, &x);
		}
	}
	k.type = jbvString;
	k.val.string.val = "traceparent";
	k.val.string.len = strlen("traceparent");
	v.type = jbvString;
	v.val.string.val = alx_traceparent;
	v.val.string.len = strlen(alx_traceparent);
	pushJsonbValue(&st, WJB_KEY, &k);
	pushJsonbValue(&st, WJB_VALUE, &v);
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* bytes escape_json() writes for a string, quotes included */
static int64
json_string_len(const char *s, int len)
{
	int64		n = 2;

	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
			n += 2;
		else if (c < ' ')
			n += 6;
		else
			n += 1;
	}
	return n;
}

/* bytes of a scalar as jsonb's text output writes it (strings quoted) */
static int64
json_scalar_len(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return 4;
		case jbvBool:
			return v->val.boolean ? 4 : 5;
		case jbvString:
			return json_string_len(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
																	NumericGetDatum(v->val.numeric)));
				int64		n = strlen(s);

				pfree(s);
				return n;
			}
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return 0;
}

/*
 * The length of a jsonb container's text output (jsonb_out: ", " between
 * elements, ": " after keys), computed without building the text; stops
 * once it exceeds limit (returning a value > limit), so a value that
 * renders far larger than it is stored costs no more than limit.
 */
static int64
json_text_len(JsonbContainer *c, int64 limit)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken tok;
	JsonbValue	v;
	int64		n = 0;
	bool		first = true;
	bool		raw_scalar = false;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
				if (!first)
					n += 2;
				if (v.val.array.rawScalar)
					raw_scalar = true;
				else
					n += 1;
				first = true;
				break;
			case WJB_BEGIN_OBJECT:
				if (!first)
					n += 2;
				n += 1;
				first = true;
				break;
			case WJB_KEY:
				if (!first)
					n += 2;
				first = true;
				n += json_scalar_len(&v) + 2;
				break;
			case WJB_VALUE:
				first = false;
				n += json_scalar_len(&v);
				break;
			case WJB_ELEM:
				if (!first)
					n += 2;
				first = false;
				n += json_scalar_len(&v);
				break;
			case WJB_END_ARRAY:
				if (!raw_scalar)
					n += 1;
				first = false;
				break;
			case WJB_END_OBJECT:
				n += 1;
				first = false;
				break;
			default:
				break;
		}
		if (n > limit)
			return n;
		CHECK_FOR_INTERRUPTS();
	}
	return n;
}

/* aggregate_type: [A-Za-z0-9_-]{1,100}; event_type: also '.', up to 140 */
static bool
valid_name(const char *s, int maxlen, bool dots)
{
	int			n = 0;

	for (; *s; s++, n++)
	{
		char		c = *s;

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '-' || (dots && c == '.')))
			return false;
	}
	return n >= 1 && n <= maxlen;
}

/*
 * The headers of an event, checked against what the relay can frame; the
 * bytes they add to the message's content header frame.
 */
static int64
check_headers(Jsonb *headers, int64 budget)
{
	static const char *const reserved[] = {"aggregate_id", "aggregate_type", "aggregate_seq", "event_type"};
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k,
				v;
	int64		used = 0;

	if (!JB_ROOT_IS_OBJECT(headers) || JB_ROOT_IS_SCALAR(headers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers must be a JSON object")));
	for (int i = 0; i < lengthof(reserved); i++)
	{
		k.type = jbvString;
		k.val.string.val = (char *) reserved[i];
		k.val.string.len = strlen(reserved[i]);
		if (findJsonbValueFromContainer(&headers->root, JB_FOBJECT, &k) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("headers must not set aggregate_id, aggregate_type, aggregate_seq or event_type"),
					 errdetail("The relay sets these headers itself.")));
	}

	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		int64		vlen;

		if (tok != WJB_KEY)
			continue;
		if (k.val.string.len > ALX_AMQP_SHORTSTR_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("outbox header name is longer than %d bytes", ALX_AMQP_SHORTSTR_MAX),
					 errdetail("The header name \"%.*s...\" has %d bytes; an AMQP header name is a short string.",
							   20, k.val.string.val, k.val.string.len)));
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		/* the relay sends each value as jsonb_each_text() gives it, NULL as "" */
		if (v.type == jbvString)
			vlen = v.val.string.len;
		else if (v.type == jbvNull)
			vlen = 0;
		else if (v.type == jbvBinary)
			vlen = json_text_len(v.val.binary.data, budget);
		else
			vlen = json_scalar_len(&v);
		used += ALX_AMQP_HEADER_ENTRY + k.val.string.len + vlen;
		if (used > budget)
			break;
	}
	return used;
}

/*
 * Refuses an event that the relay could not publish: invalid names, an
 * aggregate_id outside 1..200 bytes, headers that are not an object or set
 * the relay's own, a header name longer than 255 bytes, a content header
 * frame beyond ALX_AMQP_FRAME_MAX, a payload beyond 16 MB of JSON text.
 */
void
AlxOutboxCheckEvent(const char *aggregate_type, const char *aggregate_id,
					const char *event_type, Jsonb *payload, Jsonb *headers)
{
	int64		fixed;
	int64		budget;
	int64		used;
	int64		plen;
	int			idlen = strlen(aggregate_id);

	if (!valid_name(aggregate_type, 100, false))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid aggregate_type \"%s\"", aggregate_type),
				 errdetail("An aggregate type is 1 to 100 letters, digits, hyphens or underscores.")));
	if (!valid_name(event_type, 140, true))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event_type \"%s\"", event_type),
				 errdetail("An event type is 1 to 140 letters, digits, periods, hyphens or underscores.")));
	if (idlen < 1 || idlen > 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("aggregate_id must be 1 to 200 bytes long")));

	fixed = ALX_AMQP_HEADER_FIXED + strlen(aggregate_type) + idlen + 2 * strlen(event_type);
	budget = ALX_AMQP_FRAME_MAX - fixed;
	used = check_headers(headers, budget);
	if (used > budget)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("outbox headers are too large for one AMQP frame"),
				 errdetail("The message properties would take more than %d bytes; the headers may take %lld bytes here (6 bytes per header plus the bytes of its name and value).",
						   ALX_AMQP_FRAME_MAX, (long long) budget)));

	plen = json_text_len(&payload->root, ALX_OUTBOX_PAYLOAD_MAX);
	if (plen > ALX_OUTBOX_PAYLOAD_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("outbox payload is larger than 16 MB"),
				 errdetail("The payload is published as JSON text of at most %d bytes.",
						   ALX_OUTBOX_PAYLOAD_MAX)));
}

/*
 * The same check for an event the extension builds itself (the order
 * core's): names known valid, headers {} or a validated traceparent, and
 * numbers that render short (ids, prices).  Its JSON text is then at most
 * six bytes per stored byte (a control character becomes \u00XX), so most
 * events need no look at their text; a large one gets the full check.
 */
void
AlxOutboxCheckOwnEvent(const char *aggregate_id, const char *event_type,
					   Jsonb *payload, Jsonb *headers)
{
	int64		bound = (int64) VARSIZE(payload) * 6 + 64;
	int64		hbound = (int64) VARSIZE(headers) * 6 + 64;

	if (bound <= ALX_OUTBOX_PAYLOAD_MAX &&
		hbound + ALX_AMQP_HEADER_FIXED + 6 + strlen(aggregate_id) + 2 * strlen(event_type) <= ALX_AMQP_FRAME_MAX)
		return;
	AlxOutboxCheckEvent("order", aggregate_id, event_type, payload, headers);
}

/* The order id an order event names ("42"), or ERROR. */
static int64
order_aggregate_id(const char *aggregate_id)
{
	int64		id;
	char		buf[32];
	char	   *end;

	errno = 0;
	id = strtoi64(aggregate_id, &end, 10);
	if (errno != 0 || *end != '\0')
		id = -1;
	snprintf(buf, sizeof(buf), INT64_FORMAT, id);
	if (id <= 0 || strcmp(buf, aggregate_id) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("aggregate_id \"%s\" is not an order id", aggregate_id),
				 errdetail("Events of aggregate type \"order\" belong to an order and share its sequence; the aggregate_id is the order id in decimal.")));
	return id;
}

/*
 * The events the extension itself writes, by aggregate type; nobody else
 * may write them through outbox_emit(): a consumer could not tell a forged
 * status change or analysis result from a real one.
 */
static const struct
{
	const char *aggregate_type;
	const char *event_type;
	const char *writer;
}			own_events[] = {
	{"order", "order.created", "the order functions"},
	{"order", "order.status_changed", "the order functions"},
	{"order", "order.priced", "the order functions"},
	{"order", "order.sla_breached", "the order functions"},
	{"mesh", "mesh.analyzed", "the mesh analysis jobs"},
	{"mesh", "mesh.rejected", "the mesh analysis jobs"},
};

/*
 * Refuses an event that a consumer could not tell from one of the library's
 * own.  Consumers dispatch on the routing key or on the event type (the
 * AMQP "type" property and the event_type header): so no event type of the
 * library's, under any aggregate type, and no routing key of the library's
 * for its aggregate type.  The relay routes by
 * "<aggregate_type>.<event_type>", or by the event type alone when it
 * already starts with "<aggregate_type>." (amqp.c, routing_key), so
 * ('order', 'created') would go out as order.created too.
 */
static void
check_not_own_event(const char *agg_type, const char *event_type)
{
	char	   *rkey = AlxOutboxRoutingKey(agg_type, event_type);

	/* an own event type is its own routing key: "<aggregate_type>.<x>" */
	for (int i = 0; i < lengthof(own_events); i++)
		if (strcmp(rkey, own_events[i].event_type) == 0 ||
			strcmp(event_type, own_events[i].event_type) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("event type \"%s\" of aggregate type \"%s\" is written only by %s",
							event_type, agg_type, own_events[i].writer),
					 errhint("Give events of your own another event_type.")));
	pfree(rkey);
}

PG_FUNCTION_INFO_V1(alexandrite_outbox_emit);

/*
 * outbox_emit(aggregate_type, aggregate_id, event_type, payload, headers):
 * writes one event in the calling transaction and returns its id.
 */
Datum
alexandrite_outbox_emit(PG_FUNCTION_ARGS)
{
	char	   *agg_type;
	char	   *agg_id;
	char	   *event_type;
	Jsonb	   *payload;
	Jsonb	   *headers;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("aggregate_type, aggregate_id, event_type and payload must not be null")));
	agg_type = text_to_cstring(PG_GETARG_TEXT_PP(0));
	agg_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	event_type = text_to_cstring(PG_GETARG_TEXT_PP(2));
	payload = PG_GETARG_JSONB_P(3);
	headers = AlxOutboxHeaders(PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4));
	check_not_own_event(agg_type, event_type);
	PG_RETURN_INT64(AlxOutboxEmit(agg_type, agg_id, event_type, payload, headers));
}

/*
 * The body of outbox_emit() for the extension's own producers (the mesh
 * jobs), which may write their own event types: checks the event, takes
 * the aggregate's next sequence number and writes it as the extension
 * owner.  headers must be an object (AlxOutboxHeaders).
 */
int64
AlxOutboxEmit(const char *agg_type, const char *agg_id, const char *event_type,
			  Jsonb *payload, Jsonb *headers)
{
	AlxSavedUser save;
	int64		id;
	int64		seq;
	int			t;

	AlxOutboxCheckEvent(agg_type, agg_id, event_type, payload, headers);
	AlxCoreBegin(&save);
	t = AlxOutboxCurrentTable();
	if (strcmp(agg_type, "order") == 0)
		seq = AlxOrderNextEventSeq(order_aggregate_id(agg_id));
	else
		seq = AlxOutboxAggregateNextSeq(agg_type, agg_id);
	id = AlxOutboxWrite(t, agg_type, agg_id, seq, event_type, payload, headers);
	AlxCoreEnd(&save);
	AlxOutboxWakeupAtCommit();
	return id;
}
