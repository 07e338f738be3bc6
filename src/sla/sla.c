/*-------------------------------------------------------------------------
 *
 * sla.c
 *	  SLA priority score with a per-backend cache of the channel policies.
 *
 * alexandrite.sla_priority(created_at, sla_due_at, channel, at) ranks open
 * orders: higher is more urgent.  With
 *
 *		x = (at - sla_due_at) / T(channel)		(lateness in channel targets)
 *		phi(x) = 1 / (1 - x)		for x <= 0	(0 < phi <= 1, slope <= 1)
 *		phi(x) = 1 + 4 x			for x >  0	(slope 4)
 *		priority = W(channel) * phi(x)
 *
 * where T and W are the target and weight of the channel's default policy in
 * alexandrite.sla_policies (docs/sla.md has the derivation, a worked
 * example and the proof that a per-channel due-time index scan, merged across
 * channels, yields exactly this order).
 *
 * The policies are read once per backend into a small array and kept until
 * the table changes: a statement trigger on alexandrite.sla_policies
 * (alexandrite.sla_policies_invalidate) broadcasts a relcache invalidation of
 * the table, and the relcache callback registered here drops the cache in
 * every backend.  A DDL change of the table, a sinval queue reset and DROP
 * EXTENSION reach the same callback.
 *
 * IDENTIFICATION
 *	  src/sla/sla.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "alexandrite.h"
#include "sla/sla.h"

/* slope of phi once the due time has passed (before it, at most 1) */
#define ALX_SLA_LATE_SLOPE	4.0

/* what the cache keeps per channel */
typedef struct AlxSlaChannel
{
	char	   *name;			/* channel name, in CacheMemoryContext */
	int			name_len;
	double		target_us;		/* T: default target, microseconds */
	double		weight;			/* W */
	bool		has_default;	/* a customer_id IS NULL row was seen */
} AlxSlaChannel;

/* one row of sla_policies, for the due time of a new order */
typedef struct AlxSlaPolicyRow
{
	char	   *channel;
	int			channel_len;
	char	   *customer;		/* NULL: the channel's default */
	int			customer_len;
	Interval	target;
} AlxSlaPolicyRow;

static AlxSlaChannel *sla_channels = NULL;
static AlxSlaPolicyRow *sla_rows = NULL;
static int	sla_nrows = 0;
static int	sla_nchannels = 0;
static bool sla_cache_valid = false;
static bool sla_callback_registered = false;
static Oid	sla_policies_relid = InvalidOid;
static int	sla_last_hit = 0;
static MemoryContext sla_cache_cxt = NULL;

/* qsort comparator: channels by name (byte order) */
static int
sla_channel_cmp(const void *a, const void *b)
{
	const AlxSlaChannel *ca = (const AlxSlaChannel *) a;
	const AlxSlaChannel *cb = (const AlxSlaChannel *) b;
	int			r = memcmp(ca->name, cb->name, Min(ca->name_len, cb->name_len));

	if (r != 0)
		return r;
	return (ca->name_len > cb->name_len) - (ca->name_len < cb->name_len);
}

/* sla_rows order: channel, then the default before the contracts, then customer */
static int
sla_row_cmp(const void *a, const void *b)
{
	const AlxSlaPolicyRow *ra = (const AlxSlaPolicyRow *) a;
	const AlxSlaPolicyRow *rb = (const AlxSlaPolicyRow *) b;
	int			r = memcmp(ra->channel, rb->channel, Min(ra->channel_len, rb->channel_len));

	if (r != 0)
		return r;
	if (ra->channel_len != rb->channel_len)
		return (ra->channel_len > rb->channel_len) - (ra->channel_len < rb->channel_len);
	if ((ra->customer == NULL) != (rb->customer == NULL))
		return ra->customer == NULL ? -1 : 1;
	if (ra->customer == NULL)
		return 0;
	r = memcmp(ra->customer, rb->customer, Min(ra->customer_len, rb->customer_len));
	if (r != 0)
		return r;
	return (ra->customer_len > rb->customer_len) - (ra->customer_len < rb->customer_len);
}

/* Drop the cache when sla_policies (or everything) is invalidated. */
static void
sla_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == sla_policies_relid)
	{
		sla_cache_valid = false;
		/* the table may have been dropped and created again: look it up anew */
		sla_policies_relid = InvalidOid;
	}
}

/* The OID of alexandrite.sla_policies; ERROR when the extension is absent. */
static Oid
sla_lookup_relid(void)
{
	Oid			nsp = get_namespace_oid(ALX_SCHEMA_NAME, true);
	Oid			relid = InvalidOid;

	if (OidIsValid(nsp))
		relid = get_relname_relid("sla_policies", nsp);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.sla_policies\" does not exist", ALX_SCHEMA_NAME),
				 errhint("Create the extension with CREATE EXTENSION alexandrite.")));
	return relid;
}

/* Interval to microseconds, with months as 30 days and days as 24 hours. */
static double
interval_to_us(Interval *iv)
{
	return (double) iv->time +
		((double) iv->month * DAYS_PER_MONTH + (double) iv->day) * (double) USECS_PER_DAY;
}

/* attribute numbers of the sla_policies columns the cache reads */
typedef struct AlxSlaAtts
{
	int			channel;
	int			customer;
	int			target;
	int			weight;
} AlxSlaAtts;

/* the cache being built: channels (scoring) and every policy row (due times) */
typedef struct AlxSlaBuild
{
	AlxSlaChannel *chans;
	int			n;
	int			allocated;
	AlxSlaPolicyRow *rows;
	int			nrows;
	int			rows_allocated;
} AlxSlaBuild;

/* Finds the columns by name and type; an altered table is an ERROR. */
static void
sla_policy_columns(TupleDesc tupdesc, AlxSlaAtts *atts)
{
	atts->channel = atts->customer = atts->target = atts->weight = -1;
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		const char *name = NameStr(att->attname);

		if (att->attisdropped)
			continue;
		if (strcmp(name, "channel") == 0 && att->atttypid == TEXTOID)
			atts->channel = i + 1;
		else if (strcmp(name, "customer_id") == 0 && att->atttypid == TEXTOID)
			atts->customer = i + 1;
		else if (strcmp(name, "target") == 0 && att->atttypid == INTERVALOID)
			atts->target = i + 1;
		else if (strcmp(name, "weight") == 0 && att->atttypid == FLOAT8OID)
			atts->weight = i + 1;
	}
	if (atts->channel < 0 || atts->customer < 0 || atts->target < 0 || atts->weight < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s.sla_policies\" lacks the columns channel, customer_id, target and weight",
						ALX_SCHEMA_NAME)));
}

/* A NUL-terminated copy of a text in the cache's context. */
static char *
sla_cache_text(text *t, int *len)
{
	char	   *s;

	*len = VARSIZE_ANY_EXHDR(t);
	s = MemoryContextAlloc(sla_cache_cxt, *len + 1);
	memcpy(s, VARDATA_ANY(t), *len);
	s[*len] = '\0';
	return s;
}

/*
 * Folds one channel's scoring parameters into the cache: a channel's
 * default policy wins; with only contracts so far, the strictest.
 */
static void
sla_cache_add_channel(AlxSlaBuild *b, text *chan, bool is_default,
					  double target_us, double weight)
{
	AlxSlaChannel *chans = b->chans;
	int			j;

	for (j = 0; j < b->n; j++)
		if (chans[j].name_len == VARSIZE_ANY_EXHDR(chan) &&
			memcmp(chans[j].name, VARDATA_ANY(chan), chans[j].name_len) == 0)
			break;
	if (j == b->n)
	{
		if (b->n == b->allocated)
		{
			b->allocated *= 2;
			b->chans = chans = repalloc(chans, b->allocated * sizeof(AlxSlaChannel));
		}
		chans[j].name = sla_cache_text(chan, &chans[j].name_len);
		chans[j].target_us = target_us;
		chans[j].weight = weight;
		chans[j].has_default = is_default;
		b->n++;
	}
	else if (is_default)
	{
		chans[j].target_us = target_us;
		chans[j].weight = weight;
		chans[j].has_default = true;
	}
	else if (!chans[j].has_default)
	{
		/* only contracts so far: keep the strictest */
		chans[j].target_us = Min(chans[j].target_us, target_us);
		chans[j].weight = Max(chans[j].weight, weight);
	}
}

/* One sla_policies row: its due-time row, and its channel's scoring. */
static void
sla_cache_add_policy(AlxSlaBuild *b, HeapTuple tuple, TupleDesc tupdesc,
					 const AlxSlaAtts *atts)
{
	bool		isnull;
	Datum		d;
	text	   *chan;
	text	   *cust = NULL;
	bool		is_default;
	double		target_us;
	double		weight;
	AlxSlaPolicyRow *row;

	d = heap_getattr(tuple, atts->channel, tupdesc, &isnull);
	if (isnull)
		return;
	chan = DatumGetTextPP(d);
	d = heap_getattr(tuple, atts->customer, tupdesc, &isnull);
	is_default = isnull;
	if (!isnull)
		cust = DatumGetTextPP(d);
	d = heap_getattr(tuple, atts->target, tupdesc, &isnull);
	if (isnull)
		return;
	target_us = interval_to_us(DatumGetIntervalP(d));

	/* every row, for the due time of new orders (AlxSlaPolicyTarget) */
	if (b->nrows == b->rows_allocated)
	{
		b->rows_allocated *= 2;
		b->rows = repalloc(b->rows, b->rows_allocated * sizeof(AlxSlaPolicyRow));
	}
	row = &b->rows[b->nrows];
	row->channel = sla_cache_text(chan, &row->channel_len);
	row->customer = NULL;
	row->customer_len = 0;
	if (cust != NULL)
		row->customer = sla_cache_text(cust, &row->customer_len);
	row->target = *DatumGetIntervalP(d);
	b->nrows++;

	d = heap_getattr(tuple, atts->weight, tupdesc, &isnull);
	if (isnull)
		return;
	weight = DatumGetFloat8(d);
	if (!(target_us > 0) || !(weight > 0) || isinf(weight))
		return;					/* the table's CHECKs forbid these */
	sla_cache_add_channel(b, chan, is_default, target_us, weight);
}

/*
 * Load the per-channel policies.  For each channel the default row
 * (customer_id IS NULL) wins; a channel that has only customer contracts
 * takes the strictest of them (largest weight, shortest target).
 */
static void
sla_load_cache(void)
{
	Oid			relid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	Snapshot	snapshot;
	AlxSlaAtts	atts;
	AlxSlaBuild b;

	if (!sla_callback_registered)
	{
		AlxRegisterRelcacheCallback(sla_relcache_callback, (Datum) 0);
		sla_callback_registered = true;
	}
	if (sla_cache_cxt == NULL)
		sla_cache_cxt = AllocSetContextCreate(CacheMemoryContext,
											  "alexandrite sla policies",
											  ALLOCSET_SMALL_SIZES);

	relid = sla_lookup_relid();
	rel = table_open(relid, AccessShareLock);
	tupdesc = RelationGetDescr(rel);
	sla_policy_columns(tupdesc, &atts);

	MemoryContextReset(sla_cache_cxt);
	sla_channels = NULL;
	sla_nchannels = 0;
	sla_rows = NULL;
	sla_nrows = 0;
	b.allocated = 8;
	b.n = 0;
	b.chans = MemoryContextAlloc(sla_cache_cxt, b.allocated * sizeof(AlxSlaChannel));
	b.rows_allocated = 16;
	b.nrows = 0;
	b.rows = MemoryContextAlloc(sla_cache_cxt, b.rows_allocated * sizeof(AlxSlaPolicyRow));

	/*
	 * The latest committed state (and this transaction's own changes); a
	 * parallel worker may not take a new snapshot and uses the query's.
	 */
	snapshot = RegisterSnapshot(IsInParallelMode() ? GetActiveSnapshot() : GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
		sla_cache_add_policy(&b, tuple, tupdesc, &atts);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	if (b.n > 1)
		qsort(b.chans, b.n, sizeof(AlxSlaChannel), sla_channel_cmp);
	if (b.nrows > 1)
		qsort(b.rows, b.nrows, sizeof(AlxSlaPolicyRow), sla_row_cmp);
	sla_channels = b.chans;
	sla_nchannels = b.n;
	sla_rows = b.rows;
	sla_nrows = b.nrows;
	sla_last_hit = 0;
	sla_policies_relid = relid;
	sla_cache_valid = true;
}

/* The cached policy of a channel, or NULL when the channel has none. */
static const AlxSlaChannel *
sla_find_channel(const char *name, int len)
{
	if (!sla_cache_valid)
		sla_load_cache();

	if (sla_last_hit < sla_nchannels)
	{
		const AlxSlaChannel *c = &sla_channels[sla_last_hit];

		if (c->name_len == len && memcmp(c->name, name, len) == 0)
			return c;
	}
	for (int i = 0; i < sla_nchannels; i++)
	{
		const AlxSlaChannel *c = &sla_channels[i];

		if (c->name_len == len && memcmp(c->name, name, len) == 0)
		{
			sla_last_hit = i;
			return c;
		}
	}
	return NULL;
}

/*
 * phi(x): positive, continuous, strictly increasing; slope below 1 before
 * the due time (x <= 0) and ALX_SLA_LATE_SLOPE after it.
 */
static inline double
sla_phi(double x)
{
	if (x <= 0.0)
		return 1.0 / (1.0 - x);
	return 1.0 + ALX_SLA_LATE_SLOPE * x;
}

/* The score of one order (see the file header); ERROR for an unknown channel. */
double
AlxSlaPriority(TimestampTz due, const char *channel, int channel_len, TimestampTz at)
{
	const AlxSlaChannel *c;

	if (TIMESTAMP_NOT_FINITE(due) || TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("sla_priority requires finite timestamps")));

	c = sla_find_channel(channel, channel_len);
	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no SLA policy for channel \"%.*s\"", channel_len, channel),
				 errhint("Add a row for the channel to alexandrite.sla_policies.")));

	/*
	 * In double: exact for times within 285 years of 2000 (2^53 us), and it
	 * cannot overflow at the ends of the timestamp range as int64 would.
	 */
	return c->weight * sla_phi(((double) at - (double) due) / c->target_us);
}

PG_FUNCTION_INFO_V1(alexandrite_sla_priority);

/*
 * sla_priority(created_at, sla_due_at, channel, at): higher is more urgent.
 * created_at does not enter the score (see docs/sla.md: within a channel the
 * score must depend on the due time alone to be index-ordered).
 */
Datum
alexandrite_sla_priority(PG_FUNCTION_ARGS)
{
	TimestampTz due = PG_GETARG_TIMESTAMPTZ(1);
	text	   *channel = PG_GETARG_TEXT_PP(2);
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(3);

	PG_RETURN_FLOAT8(AlxSlaPriority(due, VARDATA_ANY(channel),
									VARSIZE_ANY_EXHDR(channel), at));
}

/*
 * The lateness x at which a channel's score equals p (the inverse of
 * W * phi(x)); false when no lateness gives that score (p <= 0).
 */
static bool
sla_inverse(double p, const AlxSlaChannel *c, double *x)
{
	double		y;

	if (isnan(p))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("priority must not be NaN")));
	if (!(p > 0))
		return false;
	y = p / c->weight;
	if (y <= 1.0)
		*x = 1.0 - 1.0 / y;
	else
		*x = (y - 1.0) / ALX_SLA_LATE_SLOPE;
	return true;
}

/* Clamp a time in microseconds to the timestamptz range, infinities outside. */
static TimestampTz
sla_clamp_timestamp(double t)
{
	if (t < (double) MIN_TIMESTAMP)
		return DT_NOBEGIN;
	if (t >= (double) END_TIMESTAMP)
		return DT_NOEND;
	return (TimestampTz) rint(t);
}

/* The cached policy of a channel given as text; ERROR when there is none. */
static const AlxSlaChannel *
sla_require_channel(text *channel)
{
	const AlxSlaChannel *c;

	c = sla_find_channel(VARDATA_ANY(channel), VARSIZE_ANY_EXHDR(channel));
	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no SLA policy for channel \"%.*s\"",
						(int) VARSIZE_ANY_EXHDR(channel), VARDATA_ANY(channel)),
				 errhint("Add a row for the channel to alexandrite.sla_policies.")));
	return c;
}

PG_FUNCTION_INFO_V1(alexandrite_sla_due_for_priority);

/*
 * sla_due_for_priority(priority, channel, at): the due time an order of that
 * channel has when its score at "at" equals "priority" (sla_priority inverted
 * in the due time).  Later due times score lower.  'infinity' when no due time
 * scores that low (priority <= 0), '-infinity' below the timestamp range.
 * Rounded to the microsecond: use it as an index bound with a margin and
 * filter on sla_priority exactly.
 */
Datum
alexandrite_sla_due_for_priority(PG_FUNCTION_ARGS)
{
	double		p = PG_GETARG_FLOAT8(0);
	const AlxSlaChannel *c = sla_require_channel(PG_GETARG_TEXT_PP(1));
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(2);
	double		x;

	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("sla_due_for_priority requires a finite timestamp")));
	if (!sla_inverse(p, c, &x))
		PG_RETURN_TIMESTAMPTZ(DT_NOEND);
	PG_RETURN_TIMESTAMPTZ(sla_clamp_timestamp((double) at - x * c->target_us));
}

PG_FUNCTION_INFO_V1(alexandrite_sla_at_for_priority);

/*
 * sla_at_for_priority(priority, channel, sla_due_at): the moment at which an
 * order of that channel due at sla_due_at scores "priority" (sla_priority
 * inverted in "at"); NULL when it never does (priority <= 0).  order_board
 * uses it to evaluate later pages at the time of the first one.
 */
Datum
alexandrite_sla_at_for_priority(PG_FUNCTION_ARGS)
{
	double		p = PG_GETARG_FLOAT8(0);
	const AlxSlaChannel *c = sla_require_channel(PG_GETARG_TEXT_PP(1));
	TimestampTz due = PG_GETARG_TIMESTAMPTZ(2);
	double		x;
	TimestampTz at;

	if (TIMESTAMP_NOT_FINITE(due))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("sla_at_for_priority requires a finite timestamp")));
	if (!sla_inverse(p, c, &x))
		PG_RETURN_NULL();
	at = sla_clamp_timestamp((double) due + x * c->target_us);
	if (TIMESTAMP_NOT_FINITE(at))
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(at);
}

PG_FUNCTION_INFO_V1(alexandrite_sla_policies_invalidate);

/*
 * Statement trigger on alexandrite.sla_policies: tell every backend (at
 * commit) and this one (at the next command) to reload the cached policies.
 */
Datum
alexandrite_sla_policies_invalidate(PG_FUNCTION_ARGS)
{
	return AlxInvalidateTrigger(fcinfo, "sla_policies_invalidate");
}

PG_FUNCTION_INFO_V1(alexandrite_sla_channels);

/*
 * sla_channels(): the channels that have a policy, from the cache (so that
 * the claim query reads no table to learn them), sorted by name.
 */
Datum
alexandrite_sla_channels(PG_FUNCTION_ARGS)
{
	Datum	   *elems;
	ArrayType  *result;
	int			n;

	if (!sla_cache_valid)
		sla_load_cache();
	n = sla_nchannels;
	elems = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		elems[i] = PointerGetDatum(cstring_to_text_with_len(sla_channels[i].name,
															sla_channels[i].name_len));
	result = construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT);
	PG_RETURN_ARRAYTYPE_P(result);
}

/*
 * The SLA target of a new order of (channel, customer): the customer's own
 * contract, else the channel's default (alexandrite.sla_policy_for); false
 * when neither exists (an unknown channel).
 */
bool
AlxSlaPolicyTarget(const char *channel, const char *customer, Interval *target)
{
	AlxSlaPolicyRow key;
	AlxSlaPolicyRow *found;

	if (!sla_cache_valid)
		sla_load_cache();
	key.channel = (char *) channel;
	key.channel_len = strlen(channel);
	key.customer = (char *) customer;
	key.customer_len = customer ? strlen(customer) : 0;
	found = bsearch(&key, sla_rows, sla_nrows, sizeof(AlxSlaPolicyRow), sla_row_cmp);
	if (found == NULL && customer != NULL)
	{
		key.customer = NULL;
		key.customer_len = 0;
		found = bsearch(&key, sla_rows, sla_nrows, sizeof(AlxSlaPolicyRow), sla_row_cmp);
	}
	if (found == NULL)
		return false;
	*target = found->target;
	return true;
}

/*
 * The channels that have a policy, sorted by name, with their weight and
 * default target: copies in the current memory context, which a reload of
 * the cache leaves alone (a claim scores every candidate with one policy).
 */
AlxSlaPolicyCopy *
AlxSlaPolicies(int *n)
{
	AlxSlaPolicyCopy *c;

	if (!sla_cache_valid)
		sla_load_cache();
	*n = sla_nchannels;
	c = palloc(sizeof(AlxSlaPolicyCopy) * Max(sla_nchannels, 1));
	for (int i = 0; i < sla_nchannels; i++)
	{
		c[i].name = pnstrdup(sla_channels[i].name, sla_channels[i].name_len);
		c[i].len = sla_channels[i].name_len;
		c[i].weight = sla_channels[i].weight;
		c[i].target_us = sla_channels[i].target_us;
	}
	return c;
}

/* sla_priority of an order of the copied channel due at "due", at "at" */
double
AlxSlaScore(const AlxSlaPolicyCopy *c, TimestampTz due, TimestampTz at)
{
	if (TIMESTAMP_NOT_FINITE(due) || TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("sla_priority requires finite timestamps")));
	return c->weight * sla_phi(((double) at - (double) due) / c->target_us);
}

/*
 * A due time after which every order of the copied channel scores below p
 * at "at": the inverse of its score in the due time plus a margin of one
 * second for rounding (an index bound; the caller compares the scores
 * exactly).  DT_NOEND when every due time scores at least p (p <= 0) or
 * the bound is past the timestamp range.
 */
TimestampTz
AlxSlaBound(const AlxSlaPolicyCopy *c, double p, TimestampTz at)
{
	AlxSlaChannel ch;
	double		x;

	memset(&ch, 0, sizeof(ch));
	ch.weight = c->weight;
	ch.target_us = c->target_us;
	if (TIMESTAMP_NOT_FINITE(at) || !sla_inverse(p, &ch, &x))
		return DT_NOEND;
	return sla_clamp_timestamp((double) at - x * c->target_us + (double) USECS_PER_SEC);
}

/* "b2b_api, crm, shop": the channels that have a policy, for error hints. */
char *
AlxSlaChannelList(void)
{
	StringInfoData buf;

	if (!sla_cache_valid)
		sla_load_cache();
	initStringInfo(&buf);
	for (int i = 0; i < sla_nchannels; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		appendBinaryStringInfo(&buf, sla_channels[i].name, sla_channels[i].name_len);
	}
	return buf.data;
}
