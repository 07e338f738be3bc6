/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  metrics(), metric_samples() and metrics_render(): the Prometheus
 *	  figures of every capability, for a monitoring role that may not read
 *	  the orders.
 *
 * The collectors are fixed: one SQL function per capability, created by the
 * extension's script (sql/schema/observe.sql) and named in the table below,
 * compiled into the library.  No registry of function names is read and
 * nothing a caller supplies reaches SQL except collector names, which are
 * matched against that table.  metrics() and metric_samples() run as their
 * caller (EXECUTE on them is all a monitoring role needs) and call each
 * collector as the extension owner (src/privilege.c), after checking that
 * the function is a member of the extension.  A collector that fails is
 * reported by alexandrite_metrics_collector_success{collector="..."} 0 and a
 * WARNING; the others still answer (each runs in a subtransaction).
 *
 * IDENTIFICATION
 *	  src/observe/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "alexandrite.h"

/* The collectors, in the order of the exposition. */
typedef struct AlxCollector
{
	const char *name;
	const char *function;		/* in schema alexandrite, no arguments */
} AlxCollector;

static const AlxCollector alx_collectors[] = {
	{"server", "metrics_server"},
	{"orders", "metrics_orders"},
	{"sla", "metrics_sla"},
	{"assignment", "metrics_assignment"},
	{"outbox", "metrics_outbox"},
	{"dashboards", "metrics_dashboards"},
	{"meshes", "metrics_meshes"},
	{"quotes", "metrics_quotes"},
};

#define ALX_NCOLLECTORS lengthof(alx_collectors)

/* One sample (a row of alexandrite.metric_sample). */
typedef struct AlxSample
{
	char	   *family;
	char	   *type;
	char	   *help;
	char	   *suffix;
	Jsonb	   *labels;			/* NULL: none */
	float8		value;
	bool		value_null;
} AlxSample;

PG_FUNCTION_INFO_V1(alexandrite_metrics);
PG_FUNCTION_INFO_V1(alexandrite_metric_samples);
PG_FUNCTION_INFO_V1(alexandrite_metrics_render);

static AlxSample *
alx_sample(const char *family, const char *type, const char *help, const char *label, const char *labelvalue,
		   float8 value)
{
	AlxSample  *s = palloc0(sizeof(AlxSample));

	s->family = pstrdup(family);
	s->type = pstrdup(type);
	s->help = pstrdup(help);
	s->suffix = pstrdup("");
	s->value = value;
	if (label != NULL)
	{
		StringInfoData j;

		initStringInfo(&j);
		appendStringInfoChar(&j, '{');
		escape_json(&j, label);
		appendStringInfoChar(&j, ':');
		escape_json(&j, labelvalue);
		appendStringInfoChar(&j, '}');
		s->labels = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(j.data)));
	}
	return s;
}

/* A collector's function, if it is the extension's own: else InvalidOid. */
static Oid
alx_collector_function(const AlxCollector *c)
{
	Oid			fn = LookupFuncName(list_make2(makeString(ALX_SCHEMA_NAME), makeString((char *) c->function)),
									0, NULL, true);

	if (!OidIsValid(fn) ||
		getExtensionOfObject(ProcedureRelationId, fn) != get_extension_oid(ALX_EXTENSION_NAME, false))
		return InvalidOid;
	return fn;
}

/* Copies the rows of one collector's result into samples (in the outer context). */
static List *
alx_copy_samples(List *samples, MemoryContext outer)
{
	MemoryContext old = MemoryContextSwitchTo(outer);

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		AlxSample  *s = palloc0(sizeof(AlxSample));
		bool		isnull;
		Datum		d;

		s->family = SPI_getvalue(tup, desc, 1);
		s->type = SPI_getvalue(tup, desc, 2);
		s->help = SPI_getvalue(tup, desc, 3);
		s->suffix = SPI_getvalue(tup, desc, 4);
		d = SPI_getbinval(tup, desc, 5, &isnull);
		s->labels = isnull ? NULL : DatumGetJsonbPCopy(d);
		d = SPI_getbinval(tup, desc, 6, &isnull);
		s->value_null = isnull;
		s->value = isnull ? 0 : DatumGetFloat8(d);
		if (s->family == NULL || s->type == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a metrics sample without family or type")));
		if (s->help == NULL)
			s->help = pstrdup("");
		if (s->suffix == NULL)
			s->suffix = pstrdup("");
		samples = lappend(samples, s);
	}
	MemoryContextSwitchTo(old);
	return samples;
}

/*
 * Runs one collector in a subtransaction (SPI connected, as the owner);
 * appends its samples.  Returns false, with a WARNING, when it failed.
 */
static bool
alx_run_collector(const AlxCollector *c, List **samples, MemoryContext outer)
{
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(outer);
	PG_TRY();
	{
		int			ret;

		if (!OidIsValid(alx_collector_function(c)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("function %s.%s() of extension \"%s\" does not exist",
							ALX_SCHEMA_NAME, c->function, ALX_EXTENSION_NAME)));
		ret = SPI_execute(psprintf("SELECT s.family, s.type, s.help, s.suffix, s.labels, s.value "
								   "FROM %s.%s() s", ALX_SCHEMA_NAME, c->function), true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not run metrics collector \"%s\": %s", c->name, SPI_result_code_string(ret));
		*samples = alx_copy_samples(*samples, outer);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(outer);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
		ereport(WARNING,
				(errmsg("metrics collector \"%s\" failed: %s", c->name, edata->message)));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * The samples of the wanted collectors (all when want is NULL), then one
 * success and one duration sample per collector run.
 */
static List *
alx_collect(const bool *want)
{
	List	   *samples = NIL;
	List	   *success = NIL;
	List	   *durations = NIL;
	AlxSavedUser save;
	int			nestlevel;
	MemoryContext outer = CurrentMemoryContext;

	AlxBecomeOwner(&save);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int i = 0; i < ALX_NCOLLECTORS; i++)
	{
		const AlxCollector *c = &alx_collectors[i];
		TimestampTz start;
		bool		ok;

		if (want != NULL && !want[i])
			continue;
		start = GetCurrentTimestamp();
		ok = alx_run_collector(c, &samples, outer);
		MemoryContextSwitchTo(outer);
		success = lappend(success,
						  alx_sample("alexandrite_metrics_collector_success", "gauge",
									 "Whether the collector answered (1) or failed (0) in this scrape.",
									 "collector", c->name, ok ? 1 : 0));
		durations = lappend(durations,
							alx_sample("alexandrite_metrics_collector_duration_seconds", "gauge",
									   "Time the collector took in this scrape, in seconds.",
									   "collector", c->name,
									   (GetCurrentTimestamp() - start) / 1000000.0));
	}
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
	AlxRestoreUser(&save);
	return list_concat(list_concat(samples, success), durations);
}

/* Which collectors a text[] names (NULL: all); unknown names are an error. */
static bool *
alx_wanted(ArrayType *names)
{
	bool	   *want = palloc0(sizeof(bool) * ALX_NCOLLECTORS);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	StringInfoData unknown;

	initStringInfo(&unknown);
	deconstruct_array(names, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int j = 0; j < n; j++)
	{
		char	   *name;
		bool		found = false;

		if (nulls[j])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a metrics collector name must not be null"),
					 errhint("The collectors are server, orders, sla, assignment, outbox, dashboards, meshes and quotes; NULL instead of the array asks for all of them.")));
		name = TextDatumGetCString(elems[j]);

		for (int i = 0; i < ALX_NCOLLECTORS; i++)
			if (strcmp(name, alx_collectors[i].name) == 0)
				found = want[i] = true;
		if (!found)
			appendStringInfo(&unknown, "%s\"%s\"", unknown.len ? ", " : "", name);
	}
	if (unknown.len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown metrics collector: %s", unknown.data),
				 errhint("The collectors are server, orders, sla, assignment, outbox, dashboards, meshes and quotes.")));
	return want;
}

/* A label value as jsonb_each_text gives it ('' for null). */
static char *
alx_jsonb_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "";
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return v->val.boolean ? "true" : "false";
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			return "";
	}
}

typedef struct AlxLabel
{
	char	   *key;
	char	   *value;
} AlxLabel;

static int
alx_label_cmp(const void *a, const void *b)
{
	return strcmp(((const AlxLabel *) a)->key, ((const AlxLabel *) b)->key);
}

/* text with \, " (labels only) and newlines escaped */
static void
alx_escape(StringInfo buf, const char *s, bool quote)
{
	for (; *s; s++)
	{
		if (*s == '\\')
			appendStringInfoString(buf, "\\\\");
		else if (*s == '\n')
			appendStringInfoString(buf, "\\n");
		else if (quote && *s == '"')
			appendStringInfoString(buf, "\\\"");
		else
			appendStringInfoChar(buf, *s);
	}
}

/* {k="v",...} sorted by label name, or nothing */
static void
alx_render_labels(StringInfo buf, Jsonb *labels)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	AlxLabel   *items;
	int			n = 0;
	int			cap = 8;

	if (labels == NULL || !JB_ROOT_IS_OBJECT(labels) || JB_ROOT_COUNT(labels) == 0)
		return;
	items = palloc(sizeof(AlxLabel) * cap);
	it = JsonbIteratorInit(&labels->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			if (n == cap)
				items = repalloc(items, sizeof(AlxLabel) * (cap *= 2));
			items[n].key = pnstrdup(v.val.string.val, v.val.string.len);
		}
		else if (tok == WJB_VALUE)
			items[n++].value = alx_jsonb_text(&v);
	}
	qsort(items, n, sizeof(AlxLabel), alx_label_cmp);
	appendStringInfoChar(buf, '{');
	for (int i = 0; i < n; i++)
	{
		appendStringInfo(buf, "%s%s=\"", i ? "," : "", items[i].key);
		alx_escape(buf, items[i].value, true);
		appendStringInfoChar(buf, '"');
	}
	appendStringInfoChar(buf, '}');
}

static void
alx_render_value(StringInfo buf, const AlxSample *s)
{
	if (s->value_null || isnan(s->value))
		appendStringInfoString(buf, "NaN");
	else if (isinf(s->value))
		appendStringInfoString(buf, s->value > 0 ? "+Inf" : "-Inf");
	else
		appendStringInfoString(buf, DatumGetCString(DirectFunctionCall1(float8out, Float8GetDatum(s->value))));
}

/* A sample and its place: in the input, and of its family's first sample. */
typedef struct AlxSlot
{
	AlxSample  *s;
	int			idx;
	int			first;
} AlxSlot;

static int
alx_slot_by_family(const void *a, const void *b)
{
	const AlxSlot *x = a;
	const AlxSlot *y = b;
	int			c = strcmp(x->s->family, y->s->family);

	return c != 0 ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

static int
alx_slot_by_first(const void *a, const void *b)
{
	const AlxSlot *x = a;
	const AlxSlot *y = b;

	if (x->first != y->first)
		return (x->first > y->first) - (x->first < y->first);
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/*
 * Prometheus text exposition format 0.0.4: per family, in the order of its
 * first sample, HELP and TYPE (from that sample), then its samples in their
 * order.  Two sorts, so n samples cost O(n log n) whatever their families.
 */
static text *
alx_render(List *samples)
{
	StringInfoData buf;
	int			n = list_length(samples);
	AlxSlot    *slots = palloc(sizeof(AlxSlot) * Max(n, 1));
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < n; i++)
	{
		slots[i].s = (AlxSample *) list_nth(samples, i);
		slots[i].idx = i;
	}
	qsort(slots, n, sizeof(AlxSlot), alx_slot_by_family);
	for (i = 0; i < n; i++)
		slots[i].first = (i > 0 && strcmp(slots[i].s->family, slots[i - 1].s->family) == 0)
			? slots[i - 1].first : slots[i].idx;
	qsort(slots, n, sizeof(AlxSlot), alx_slot_by_first);
	for (i = 0; i < n; i++)
	{
		const AlxSample *s = slots[i].s;

		CHECK_FOR_INTERRUPTS();
		if (i == 0 || slots[i].first != slots[i - 1].first)
		{
			appendStringInfo(&buf, "# HELP %s ", s->family);
			alx_escape(&buf, s->help, false);
			appendStringInfo(&buf, "\n# TYPE %s %s\n", s->family, s->type);
		}
		appendStringInfo(&buf, "%s%s", s->family, s->suffix);
		alx_render_labels(&buf, s->labels);
		appendStringInfoChar(&buf, ' ');
		alx_render_value(&buf, s);
		appendStringInfoChar(&buf, '\n');
	}
	return cstring_to_text_with_len(buf.data, buf.len);
}

/* alexandrite.metrics() RETURNS text */
Datum
alexandrite_metrics(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(alx_render(alx_collect(NULL)));
}

/* alexandrite.metric_samples(collectors text[] DEFAULT NULL) RETURNS SETOF alexandrite.metric_sample */
Datum
alexandrite_metric_samples(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool	   *want = PG_ARGISNULL(0) ? NULL : alx_wanted(PG_GETARG_ARRAYTYPE_P(0));
	List	   *samples;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	samples = alx_collect(want);
	foreach(lc, samples)
	{
		AlxSample  *s = (AlxSample *) lfirst(lc);
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, s->labels == NULL, s->value_null};

		values[0] = CStringGetTextDatum(s->family);
		values[1] = CStringGetTextDatum(s->type);
		values[2] = CStringGetTextDatum(s->help);
		values[3] = CStringGetTextDatum(s->suffix);
		values[4] = s->labels ? JsonbPGetDatum(s->labels) : (Datum) 0;
		values[5] = Float8GetDatum(s->value);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* A text field of a metric_sample record ('' when null). */
static char *
alx_field(HeapTupleHeader rec, int attno, bool *isnull)
{
	Datum		d = GetAttributeByNum(rec, attno, isnull);

	return *isnull ? pstrdup("") : TextDatumGetCString(d);
}

/*
 * metrics_render() takes samples from anyone: each part that is printed
 * outside quotes must be what the text format allows there, or one sample
 * could add lines of its own to the exposition.
 */
static bool
alx_name_ok(const char *s, bool colon, bool empty_ok)
{
	if (*s == '\0')
		return empty_ok;
	for (const char *p = s; *p; p++)
	{
		char		c = *p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			  (colon && c == ':') || (p > s && c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

static void
alx_bad_sample(int i, const char *what, const char *value, const char *hint)
{
	int			len = strlen(value);
	int			clip = pg_mbcliplen(value, len, 64);
	StringInfoData shown;

	/* at most 64 bytes of it, whole characters, control characters escaped */
	initStringInfo(&shown);
	for (int k = 0; k < clip; k++)
	{
		unsigned char c = (unsigned char) value[k];

		if (c == '\n')
			appendStringInfoString(&shown, "\\n");
		else if (c < 0x20 || c == 0x7f)
			appendStringInfo(&shown, "\\x%02x", c);
		else
			appendStringInfoChar(&shown, (char) c);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s \"%s\"%s in metric sample %d", what,
					shown.data, clip < len ? "..." : "", i),
			 errhint("%s", hint)));
}

static void
alx_check_sample(const AlxSample *s, int i)
{
	static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
	bool		type_ok = false;

	if (!alx_name_ok(s->family, true, false))
		alx_bad_sample(i, "metric family name", s->family,
					   "A family name matches [a-zA-Z_:][a-zA-Z0-9_:]*.");
	/* the suffix continues the name: digits may come first (_bucket, 2) */
	for (const char *p = s->suffix; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':' ||
			  (*p >= '0' && *p <= '9')))
			alx_bad_sample(i, "metric suffix", s->suffix,
						   "A suffix is made of [a-zA-Z0-9_:], such as _total, _bucket, _sum or _count.");
	for (int k = 0; k < lengthof(types); k++)
		type_ok |= strcmp(s->type, types[k]) == 0;
	if (!type_ok)
		alx_bad_sample(i, "metric type", s->type,
					   "The types are counter, gauge, histogram, summary and untyped.");
	if (s->labels != NULL && !(JB_ROOT_IS_OBJECT(s->labels) && !JB_ROOT_IS_SCALAR(s->labels)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the labels of metric sample %d are not a JSON object", i),
				 errhint("Labels are an object of label names and values, such as {\"le\": \"0.5\"}.")));
	if (s->labels != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&s->labels->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			char	   *key;

			if (tok != WJB_KEY)
				continue;
			key = pnstrdup(v.val.string.val, v.val.string.len);
			if (!alx_name_ok(key, false, false) || strncmp(key, "__", 2) == 0)
				alx_bad_sample(i, "label name", key,
							   "A label name matches [a-zA-Z_][a-zA-Z0-9_]* and does not begin with __.");
		}
	}
}

/* alexandrite.metrics_render(samples alexandrite.metric_sample[]) RETURNS text */
Datum
alexandrite_metrics_render(PG_FUNCTION_ARGS)
{
	ArrayType  *arr;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *samples = NIL;

	if (PG_ARGISNULL(0))
		PG_RETURN_TEXT_P(cstring_to_text(""));
	arr = PG_GETARG_ARRAYTYPE_P(0);
	get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
	deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		HeapTupleHeader rec;
		AlxSample  *s;
		bool		isnull;
		Datum		d;

		if (nulls[i])
			continue;
		rec = DatumGetHeapTupleHeader(elems[i]);
		s = palloc0(sizeof(AlxSample));
		s->family = alx_field(rec, 1, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("metric sample %d has no family name", i + 1)));
		s->type = alx_field(rec, 2, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("metric sample %d has no type", i + 1),
					 errhint("The types are counter, gauge, histogram, summary and untyped.")));
		s->help = alx_field(rec, 3, &isnull);
		s->suffix = alx_field(rec, 4, &isnull);
		d = GetAttributeByNum(rec, 5, &isnull);
		s->labels = isnull ? NULL : DatumGetJsonbP(d);
		d = GetAttributeByNum(rec, 6, &isnull);
		s->value_null = isnull;
		s->value = isnull ? 0 : DatumGetFloat8(d);
		alx_check_sample(s, i + 1);
		samples = lappend(samples, s);
	}
	PG_RETURN_TEXT_P(alx_render(samples));
}
