/*-------------------------------------------------------------------------
 *
 * pending.c
 *	  The pending groups of the capture, and their flush to the delta tables.
 *
 * The capture adds each changed row's signed contribution (-old +new) to a
 * pending group: one per dashboard, subtransaction and group key (and due
 * minute), in memory emptied when the transaction ends.  A flush writes the
 * groups of the current subtransaction whose net change is not zero as one
 * delta row each, and forgets them.  So an UPDATE that touches none of a dashboard's
 * keys or measures writes nothing, and a statement writes one delta row per
 * group it changed, however many rows it touched.
 *
 * Flushes happen at the end of every statement that wrote a base table:
 * - the statement trigger alx_dashboard_flush (after the row triggers of
 *   the statement), which also covers COPY;
 * - when a query's executor finishes (ExecutorFinish_hook), which covers
 *   statements whose statement triggers never fire: a C caller that stops
 *   an INSERT ... RETURNING after its first row (SPI with a row count, as
 *   mesh_ingest did in 1.1), writes into one partition;
 * - before a subtransaction commits, and before the transaction commits or
 *   prepares, whatever is left.
 * Inside a call of the library's own (AlxCoreBegin to AlxCoreEnd: the
 * order core, the SLA engine, the outbox producer) the first two wait
 * (AlxDashboardHold): the call flushes once when it ends (AlxDashboardUnhold),
 * after its statements.  Flushed from the end of the foreign key check of
 * the order's history row, as they were, the delta tables were locked while
 * the statement still held its index locks, past the 16 that a backend
 * takes without the shared lock table: 2 of create_order's 3 delta tables
 * went through it.  An abort ends every hold (the call is gone); a
 * subtransaction that commits inside a call still flushes its own groups.
 * A subtransaction that aborts forgets its groups, as it forgets its rows;
 * a transaction that aborts forgets all.  A group is always written in the
 * subtransaction that changed its rows, never in an inner one that might
 * still roll back without them.
 *
 * The rows are appended directly (simple_heap_insert), so each flush first
 * checks the delta table it has locked: nothing the appends would bypass
 * (AlxDashCheckDelta: an index, a trigger, a rule, row security, UNLOGGED)
 * and the layout the target writes, column by column (alx_check_layout).
 * A DBA's change made after a session set up its capture is refused there.
 *
 * IDENTIFICATION
 *	  src/dashboard/pending.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "alexandrite.h"
#include "dashboard/dashboard.h"

/* Where a dashboard's deltas go, for this transaction. */
struct AlxPendingTarget
{
	int32		id;				/* hash key */
	char	   *name;
	Oid			delta_relid;
	int			nkeys;
	int16	   *typlen;
	bool	   *byval;
	Oid		   *types;			/* the keys' types and typmods */
	int32	   *typmods;
	int			ncols;			/* the delta table's layout (AlxDashLayoutColumn) */
	Oid		   *col_types;
	int32	   *col_typmods;
	bool		has_due;
	int			nsums;
};

/* A group key: dashboard, subtransaction and key image, hashed. */
typedef struct AlxGroupKey
{
	uint32		hash;
	int			len;
	char	   *data;
} AlxGroupKey;

typedef struct AlxGroup
{
	AlxGroupKey key;			/* hash key */
	AlxPendingTarget *target;
	SubTransactionId subid;
	Datum	   *vals;
	bool	   *nulls;
	Datum		due_bucket;
	bool		due_null;
	int64		cnt;
	Datum	   *sums;
} AlxGroup;

static MemoryContext alx_cxt = NULL;	/* the tables and the targets: the backend's life */
static HTAB *alx_targets = NULL;
static HTAB *alx_groups = NULL;
static MemoryContext alx_group_cxt = NULL;	/* keys and sums; reset when no group is left */
static Datum alx_zero;
static int	alx_ngroups = 0;
static int	alx_busy = 0;		/* > 0 while pending groups are being changed */
static int	alx_hold = 0;		/* > 0 inside a library call: its statements' ends do not flush */
static StringInfoData alx_keybuf;
static bool alx_keybuf_ready = false;

static ExecutorFinish_hook_type prev_executor_finish = NULL;

static uint32
alx_group_hash(const void *key, Size keysize)
{
	return ((const AlxGroupKey *) key)->hash;
}

static int
alx_group_match(const void *key1, const void *key2, Size keysize)
{
	const AlxGroupKey *a = (const AlxGroupKey *) key1;
	const AlxGroupKey *b = (const AlxGroupKey *) key2;

	if (a->hash != b->hash || a->len != b->len)
		return 1;
	return memcmp(a->data, b->data, a->len);
}

/*
 * The hash tables, created on first use and kept for the backend's life
 * (creating them for every transaction cost as much as a capture): the
 * targets stay valid across transactions, the groups and their values are
 * emptied when each transaction ends.
 */
static void
alx_pending_init(void)
{
	HASHCTL		ctl;
	MemoryContext old;

	if (alx_groups != NULL)
		return;
	alx_cxt = AllocSetContextCreate(TopMemoryContext, "alexandrite dashboard pending",
									ALLOCSET_SMALL_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(AlxPendingTarget);
	ctl.hcxt = alx_cxt;
	alx_targets = hash_create("alexandrite dashboard targets", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(AlxGroupKey);
	ctl.entrysize = sizeof(AlxGroup);
	ctl.hash = alx_group_hash;
	ctl.match = alx_group_match;
	ctl.hcxt = alx_cxt;
	alx_groups = hash_create("alexandrite dashboard pending groups", 64, &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	alx_group_cxt = AllocSetContextCreate(alx_cxt, "alexandrite dashboard pending values",
										  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(alx_cxt);
	alx_zero = NumericGetDatum(int64_to_numeric(0));
	MemoryContextSwitchTo(old);
	alx_ngroups = 0;
}

/* Frees what a target holds (not the hash entry itself). */
static void
alx_target_free(AlxPendingTarget *t)
{
	if (t->name != NULL)
		pfree(t->name);
	if (t->typlen != NULL)
		pfree(t->typlen);
	if (t->byval != NULL)
		pfree(t->byval);
	if (t->types != NULL)
		pfree(t->types);
	if (t->typmods != NULL)
		pfree(t->typmods);
	if (t->col_types != NULL)
		pfree(t->col_types);
	if (t->col_typmods != NULL)
		pfree(t->col_typmods);
	t->name = NULL;
	t->typlen = NULL;
	t->byval = NULL;
	t->types = NULL;
	t->typmods = NULL;
	t->col_types = NULL;
	t->col_typmods = NULL;
}

/* The transaction's target of a dashboard (its delta table and key layout). */
AlxPendingTarget *
AlxPendingTargetFor(const AlxDashDef *def, Oid delta_relid)
{
	AlxPendingTarget *t;
	bool		found;

	alx_pending_init();
	t = hash_search(alx_targets, &def->id, HASH_ENTER, &found);
	/* a rebuilt dashboard has another delta table: look again */
	if (!found || t->delta_relid != delta_relid || t->nkeys != def->nkeys ||
		t->nsums != def->nsums || t->has_due != (def->due != NULL) ||
		strcmp(t->name, def->name) != 0 ||
		memcmp(t->typlen, def->key_typlen, sizeof(int16) * def->nkeys) != 0 ||
		memcmp(t->byval, def->key_byval, sizeof(bool) * def->nkeys) != 0 ||
		memcmp(t->types, def->key_types, sizeof(Oid) * def->nkeys) != 0 ||
		memcmp(t->typmods, def->key_typmods, sizeof(int32) * def->nkeys) != 0)
	{
		MemoryContext old = MemoryContextSwitchTo(alx_cxt);

		/* until the end, an entry that can match nothing (an error between) */
		t->delta_relid = InvalidOid;
		if (found)
			alx_target_free(t);
		else
		{
			t->name = NULL;
			t->typlen = NULL;
			t->byval = NULL;
			t->types = NULL;
			t->typmods = NULL;
			t->col_types = NULL;
			t->col_typmods = NULL;
		}
		t->name = pstrdup(def->name);
		t->nkeys = def->nkeys;
		t->typlen = palloc(sizeof(int16) * Max(def->nkeys, 1));
		t->byval = palloc(sizeof(bool) * Max(def->nkeys, 1));
		memcpy(t->typlen, def->key_typlen, sizeof(int16) * def->nkeys);
		memcpy(t->byval, def->key_byval, sizeof(bool) * def->nkeys);
		t->types = palloc(sizeof(Oid) * Max(def->nkeys, 1));
		t->typmods = palloc(sizeof(int32) * Max(def->nkeys, 1));
		memcpy(t->types, def->key_types, sizeof(Oid) * def->nkeys);
		memcpy(t->typmods, def->key_typmods, sizeof(int32) * def->nkeys);
		{
			const char *name;
			Oid			type;
			int32		typmod;
			int			n = 0;

			while (AlxDashLayoutColumn(def, ALX_DASH_DELTA, n, &name, &type, &typmod))
				n++;
			t->ncols = n;
			t->col_types = palloc(sizeof(Oid) * Max(n, 1));
			t->col_typmods = palloc(sizeof(int32) * Max(n, 1));
			for (int i = 0; i < n; i++)
				(void) AlxDashLayoutColumn(def, ALX_DASH_DELTA, i, &name, &t->col_types[i],
										   &t->col_typmods[i]);
		}
		t->has_due = def->due != NULL;
		t->nsums = def->nsums;
		t->delta_relid = delta_relid;
		MemoryContextSwitchTo(old);
	}
	return t;
}

/*
 * Append the binary image of a key value.  Binary-equal values are equal;
 * values that are equal but binary-different (1.0 and 1.00) merely produce
 * two delta rows that the fold adds up in the same group.
 */
static void
alx_key_image(StringInfo buf, Datum value, bool isnull, int16 typlen, bool typbyval)
{
	if (isnull)
	{
		appendStringInfoChar(buf, 'n');
		return;
	}
	appendStringInfoChar(buf, 'v');
	if (typbyval)
	{
		char		tmp[sizeof(Datum)];

		memset(tmp, 0, sizeof(tmp));
		store_att_byval(tmp, value, typlen);
		appendBinaryStringInfo(buf, tmp, typlen);
	}
	else if (typlen > 0)
		appendBinaryStringInfo(buf, DatumGetPointer(value), typlen);
	else if (typlen == -1)
	{
		struct varlena *v = PG_DETOAST_DATUM_PACKED(value);
		int32		len = VARSIZE_ANY_EXHDR(v);

		appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
		appendBinaryStringInfo(buf, VARDATA_ANY(v), len);
	}
	else
	{
		const char *s = DatumGetCString(value);
		int32		len = strlen(s);

		appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
		appendBinaryStringInfo(buf, s, len);
	}
}

/* A new group: keys and zero measures, copied into the transaction's memory. */
static void
alx_group_fill(AlxGroup *g, AlxPendingTarget *t, SubTransactionId subid,
			   Datum *keys, bool *knulls, Datum due_bucket, bool due_null)
{
	MemoryContext old = MemoryContextSwitchTo(alx_group_cxt);

	g->key.data = memcpy(palloc(g->key.len), alx_keybuf.data, g->key.len);
	g->target = t;
	g->subid = subid;
	g->vals = palloc(sizeof(Datum) * t->nkeys);
	g->nulls = palloc(sizeof(bool) * t->nkeys);
	for (int i = 0; i < t->nkeys; i++)
	{
		g->nulls[i] = knulls[i];
		if (knulls[i])
			g->vals[i] = (Datum) 0;
		else if (t->typlen[i] == -1)
			g->vals[i] = PointerGetDatum(PG_DETOAST_DATUM_COPY(keys[i]));
		else
			g->vals[i] = datumCopy(keys[i], t->byval[i], t->typlen[i]);
	}
	g->due_bucket = due_bucket;
	g->due_null = due_null;
	g->cnt = 0;
	g->sums = palloc(sizeof(Datum) * Max(t->nsums, 1));
	for (int i = 0; i < t->nsums; i++)
		g->sums[i] = NumericGetDatum(int64_to_numeric(0));
	MemoryContextSwitchTo(old);
}

/*
 * Adds one row's contribution (sign -1 for an old row, +1 for a new one) to
 * its pending group of the current subtransaction.
 */
void
AlxPendingAdd(AlxPendingTarget *t, Datum *keys, bool *knulls, Datum due_bucket, bool due_null,
			  Datum *sums, bool *snulls, int sign)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	AlxGroupKey key;
	AlxGroup   *g;
	bool		found;

	if (!alx_keybuf_ready)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&alx_keybuf);
		alx_keybuf_ready = true;
		MemoryContextSwitchTo(old);
	}
	alx_busy++;
	resetStringInfo(&alx_keybuf);
	appendBinaryStringInfo(&alx_keybuf, (char *) &t->id, sizeof(int32));
	appendBinaryStringInfo(&alx_keybuf, (char *) &subid, sizeof(SubTransactionId));
	for (int i = 0; i < t->nkeys; i++)
		alx_key_image(&alx_keybuf, keys[i], knulls[i], t->typlen[i], t->byval[i]);
	if (t->has_due)
		alx_key_image(&alx_keybuf, due_bucket, due_null, sizeof(TimestampTz), true);
	key.len = alx_keybuf.len;
	key.data = alx_keybuf.data;
	key.hash = hash_bytes((const unsigned char *) key.data, key.len);

	g = hash_search(alx_groups, &key, HASH_ENTER, &found);
	if (!found)
	{
		/*
		 * Counted and marked as this subtransaction's before anything can
		 * fail, so that an error in the fill leaves an entry that the
		 * (sub)transaction's end removes, not one a later transaction finds.
		 */
		g->target = t;
		g->subid = subid;
		g->vals = NULL;
		g->nulls = NULL;
		g->sums = NULL;
		g->cnt = 0;
		alx_ngroups++;
		alx_group_fill(g, t, subid, keys, knulls, due_bucket, due_null);
	}
	g->cnt += sign;
	for (int i = 0; i < t->nsums; i++)
	{
		Datum		old = g->sums[i];
		MemoryContext oldcxt;

		/* sum() ignores nulls: they add nothing */
		if (snulls[i])
			continue;
		oldcxt = MemoryContextSwitchTo(alx_group_cxt);
		g->sums[i] = DirectFunctionCall2(sign > 0 ? numeric_add : numeric_sub, old, sums[i]);
		MemoryContextSwitchTo(oldcxt);
		pfree(DatumGetPointer(old));
	}
	alx_busy--;
}

/* true when the group changes its dashboard */
static bool
alx_group_nonzero(const AlxGroup *g)
{
	if (g->cnt != 0)
		return true;
	for (int i = 0; i < g->target->nsums; i++)
		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, g->sums[i], alx_zero)) != 0)
			return true;
	return false;
}

/*
 * The delta table has the layout the target writes (AlxDashLayoutColumn),
 * each column of its type, none dropped.  Checked by every flush after the
 * lock, with AlxDashCheckDelta: a row formed for a column retyped or
 * dropped since the capture was set up would be read with the wrong type
 * (a text column given a timestamptz crashed the backend).
 */
static void
alx_check_layout(const AlxPendingTarget *t, Relation drel)
{
	TupleDesc	desc = RelationGetDescr(drel);

	if (desc->natts != t->ncols)
		AlxDashDamaged(t->name, RelationGetRelationName(drel),
					   "It does not have the columns of the dashboard's definition.");
	for (int a = 0; a < t->ncols; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		if (att->attisdropped || att->atttypid != t->col_types[a] ||
			(t->col_typmods[a] >= 0 && att->atttypmod != t->col_typmods[a]))
			AlxDashDamaged(t->name, RelationGetRelationName(drel),
						   psprintf("Column %d is not of the type the dashboard's definition gives it.", a + 1));
	}
}

/* Writes one group as a delta row: keys, [due minute], count, sums, logged_at. */
static void
alx_group_write(AlxGroup *g, Relation drel, TimestampTz logged_at)
{
	AlxPendingTarget *t = g->target;
	TupleDesc	desc = RelationGetDescr(drel);
	int			natts = t->nkeys + (t->has_due ? 1 : 0) + 1 + t->nsums + 1;
	Datum	   *values = palloc(sizeof(Datum) * natts);
	bool	   *nulls = palloc0(sizeof(bool) * natts);
	int			a = 0;
	HeapTuple	tup;

	Assert(desc->natts == natts);	/* alx_check_layout */
	for (int i = 0; i < t->nkeys; i++, a++)
	{
		values[a] = g->vals[i];
		nulls[a] = g->nulls[i];
	}
	if (t->has_due)
	{
		values[a] = g->due_bucket;
		nulls[a++] = g->due_null;
	}
	values[a++] = Int64GetDatum(g->cnt);
	for (int i = 0; i < t->nsums; i++)
		values[a++] = g->sums[i];
	values[a] = TimestampTzGetDatum(logged_at);
	tup = heap_form_tuple(desc, values, nulls);
	simple_heap_insert(drel, tup);
	heap_freetuple(tup);
	pfree(values);
	pfree(nulls);
}

/* Forgets a group (its memory goes with the transaction). */
static void
alx_group_remove(AlxGroup *g)
{
	AlxGroupKey key = g->key;

	(void) hash_search(alx_groups, &key, HASH_REMOVE, NULL);
	if (--alx_ngroups == 0)
		MemoryContextReset(alx_group_cxt);
}

/*
 * Writes the pending groups of the current subtransaction to their delta
 * tables and forgets them.  Does nothing while groups are being changed (a
 * query run from within the capture).
 */
void
AlxDashboardFlush(void)
{
	SubTransactionId subid;
	HASH_SEQ_STATUS status;
	AlxGroup   *g;
	List	   *mine = NIL;
	List	   *open = NIL;
	TimestampTz logged_at;
	ListCell   *lc;
	ListCell   *r;

	if (alx_groups == NULL || alx_ngroups == 0 || alx_busy > 0)
		return;
	subid = GetCurrentSubTransactionId();
	hash_seq_init(&status, alx_groups);
	while ((g = hash_seq_search(&status)) != NULL)
		if (g->subid == subid)
			mine = lappend(mine, g);
	if (mine == NIL)
		return;

	logged_at = GetCurrentStatementStartTimestamp();
	alx_busy++;
	foreach(lc, mine)
	{
		Relation	drel = NULL;

		g = (AlxGroup *) lfirst(lc);
		if (!alx_group_nonzero(g))
			continue;
		foreach(r, open)
			if (RelationGetRelid((Relation) lfirst(r)) == g->target->delta_relid)
				drel = (Relation) lfirst(r);
		if (drel == NULL)
		{
			drel = table_open(g->target->delta_relid, RowExclusiveLock);
			/* after the lock: a change made since the capture was set up is seen */
			AlxDashCheckDelta(g->target->name, drel);
			alx_check_layout(g->target, drel);
			open = lappend(open, drel);
		}
		alx_group_write(g, drel, logged_at);
	}
	foreach(r, open)
		table_close((Relation) lfirst(r), NoLock);
	/* removed last: a reset of their memory must not pull keys from under the loop */
	foreach(lc, mine)
		alx_group_remove((AlxGroup *) lfirst(lc));
	list_free(mine);
	list_free(open);
	alx_busy--;
}

/* A library call begins: its statements' ends leave their groups pending. */
void
AlxDashboardHold(void)
{
	alx_hold++;
}

/* A library call ends: the outermost writes what its statements left pending. */
void
AlxDashboardUnhold(void)
{
	if (alx_hold > 0)
		alx_hold--;
	if (alx_hold == 0 && alx_ngroups > 0)
		AlxDashboardFlush();
}

/* The flush at the end of a statement (its trigger, or its executor). */
void
AlxDashboardFlushStatement(void)
{
	if (alx_hold == 0 && alx_ngroups > 0)
		AlxDashboardFlush();
}

/* Forgets the pending groups of a dashboard (dropped, or its table truncated). */
void
AlxDashboardForget(int32 dashboard_id)
{
	HASH_SEQ_STATUS status;
	AlxGroup   *g;

	if (alx_groups == NULL)
		return;
	hash_seq_init(&status, alx_groups);
	while ((g = hash_seq_search(&status)) != NULL)
		if (g->target->id == dashboard_id)
			alx_group_remove(g);
}

/* Forgets the groups of an aborted subtransaction. */
static void
alx_forget_subxact(SubTransactionId subid)
{
	HASH_SEQ_STATUS status;
	AlxGroup   *g;

	if (alx_groups == NULL)
		return;
	hash_seq_init(&status, alx_groups);
	while ((g = hash_seq_search(&status)) != NULL)
		if (g->subid == subid)
			alx_group_remove(g);
}

/*
 * The targets are looked up again on demand (AlxPendingTargetFor), and a
 * dropped dashboard's stays until then: past this many, all are forgotten
 * when a transaction ends (no group refers to one then), so a backend that
 * outlives many dashboards keeps a bounded table.
 */
#define ALX_MAX_TARGETS 256

static void
alx_forget_targets(void)
{
	HASH_SEQ_STATUS status;
	AlxPendingTarget *t;

	elog(DEBUG1, "alexandrite: forgetting %ld dashboard capture targets",
		 hash_get_num_entries(alx_targets));
	hash_seq_init(&status, alx_targets);
	while ((t = hash_seq_search(&status)) != NULL)
	{
		int32		id = t->id;

		alx_target_free(t);
		(void) hash_search(alx_targets, &id, HASH_REMOVE, NULL);
	}
}

static void
alx_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			alx_busy = 0;
			alx_hold = 0;
			AlxDashboardFlush();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* an aborted transaction's groups go with it (counted or not) */
			if (alx_groups != NULL && hash_get_num_entries(alx_groups) > 0)
			{
				HASH_SEQ_STATUS status;
				AlxGroup   *g;

				hash_seq_init(&status, alx_groups);
				while ((g = hash_seq_search(&status)) != NULL)
				{
					AlxGroupKey key = g->key;

					(void) hash_search(alx_groups, &key, HASH_REMOVE, NULL);
				}
				MemoryContextReset(alx_group_cxt);
			}
			if (alx_targets != NULL && hash_get_num_entries(alx_targets) > ALX_MAX_TARGETS)
				alx_forget_targets();
			alx_ngroups = 0;
			alx_busy = 0;
			alx_hold = 0;
			break;
		default:
			break;
	}
}

static void
alx_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_PRE_COMMIT_SUB)
		AlxDashboardFlush();
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		alx_forget_subxact(mySubid);
		alx_busy = 0;
		/* a call that held may be what aborted: flush at statement ends again */
		alx_hold = 0;
	}
}

/* After every query: write what its statement left pending. */
static void
alx_executor_finish(QueryDesc *queryDesc)
{
	if (prev_executor_finish)
		prev_executor_finish(queryDesc);
	else
		standard_ExecutorFinish(queryDesc);
	AlxDashboardFlushStatement();
}

/* From _PG_init: the flush points. */
void
AlxDashboardInit(void)
{
	RegisterXactCallback(alx_xact_callback, NULL);
	RegisterSubXactCallback(alx_subxact_callback, NULL);
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = alx_executor_finish;
}
