/*-------------------------------------------------------------------------
 *
 * aggseq.c
 *	  The event sequence of an aggregate that is not an order: its row in
 *	  outbox_aggregates, written once per transaction.
 *
 * Each event carries aggregate_seq, one more than its aggregate's previous
 * event, and its outbox id is taken after the lock that orders the
 * aggregate's events (write.c; docs/outbox.md, "Ordering argument").  For an
 * order that lock and counter is the order row; for any other aggregate it
 * is the aggregate's row in outbox_aggregates, which an upsert advances and
 * so locks until the transaction ends.
 *
 * A transaction that emits several events of one aggregate holds that lock
 * from its first event to its end, so no other transaction can read or
 * write the row in between.  Only the first event of an aggregate in a
 * transaction runs the upsert; later ones count on in backend memory, and
 * the last value is written back once, just before the transaction commits
 * or prepares (XACT_EVENT_PRE_COMMIT, XACT_EVENT_PRE_PREPARE).  An event of
 * a subtransaction that aborts is rolled back with it, so what the
 * subtransaction counted is undone too: each cached aggregate keeps one
 * frame per open subtransaction level that counted it (as the GUC stack
 * does); commit of a subtransaction merges its frame into its parent's,
 * abort drops it, and an aggregate first counted in the aborted
 * subtransaction is forgotten with the upsert that locked its row.
 *
 * Only outbox_emit writes outbox_aggregates, and nothing reads last_seq but
 * this file, so the row lags only inside the transaction that holds its
 * lock.  Once the counts are stored the transaction is sealed: an event
 * of a non-order aggregate written after that (by a commit callback that
 * runs after this one) is an ERROR, never a number given out twice.  The
 * callbacks are registered when the library loads, so that every commit
 * seals.  At most ALX_AGGSEQ_CACHED aggregates are counted in memory per
 * transaction; events of any further aggregate run the upsert every time.
 *
 * IDENTIFICATION
 *	  src/outbox/aggseq.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "core/core.h"
#include "outbox/outbox.h"

/* aggregates counted in memory per transaction (about 350 bytes each) */
#define ALX_AGGSEQ_CACHED 4096

/* "<aggregate_type>:<aggregate_id>": a type has no ':', at most 100 + 1 + 200 bytes */
#define ALX_AGGSEQ_KEYLEN 304

/* the next seq of an aggregate, its row locked until commit */
static AlxPlan next_plan = {
	"INSERT INTO alexandrite.outbox_aggregates AS a (aggregate_type, aggregate_id, last_seq)"
	" VALUES ($1, $2, 1)"
	" ON CONFLICT ON CONSTRAINT outbox_aggregates_pkey"
	" DO UPDATE SET last_seq = a.last_seq OPERATOR(pg_catalog.+) 1"
	" RETURNING a.last_seq",
	2, {TEXTOID, TEXTOID}
};

/* the value counted in memory, written back under the lock the transaction holds */
static AlxPlan store_plan = {
	"INSERT INTO alexandrite.outbox_aggregates AS a (aggregate_type, aggregate_id, last_seq)"
	" VALUES ($1, $2, $3)"
	" ON CONFLICT ON CONSTRAINT outbox_aggregates_pkey"
	" DO UPDATE SET last_seq = EXCLUDED.last_seq",
	3, {TEXTOID, TEXTOID, INT8OID}
};

/* what one subtransaction level knows of an aggregate */
typedef struct SeqFrame
{
	SubTransactionId subid;		/* the level that counted */
	int64		current;		/* last seq given out */
	int64		stored;			/* last_seq in the row, as this level sees it */
	struct SeqFrame *prev;		/* the enclosing level's frame, if it counted */
} SeqFrame;

typedef struct SeqEntry
{
	char		key[ALX_AGGSEQ_KEYLEN];
	int			typelen;		/* bytes of aggregate_type in key */
	SeqFrame   *top;
} SeqEntry;

/*
 * Which aggregates a subtransaction level counted, innermost level last: at
 * most one pair per aggregate and level, so a subtransaction's end touches
 * only its own aggregates.  Top-level frames have no pair.
 */
typedef struct SeqTouch
{
	SubTransactionId subid;
	SeqEntry   *entry;
} SeqTouch;

static HTAB *seqs = NULL;		/* in TopTransactionContext, NULL outside */
static SeqTouch *touches = NULL;
static int	ntouches = 0;
static int	maxtouches = 0;
static bool sealed = false;		/* the counts were stored: no more events */

static void
forget_all(void)
{
	seqs = NULL;
	touches = NULL;
	ntouches = maxtouches = 0;
	sealed = false;
}

/* Room for one more pair, taken before anything is linked (out of memory here is harmless). */
static void
touch_reserve(void)
{
	if (ntouches < maxtouches)
		return;
	touches = touches == NULL
		? MemoryContextAlloc(TopTransactionContext, 16 * sizeof(SeqTouch))
		: repalloc(touches, maxtouches * 2 * sizeof(SeqTouch));
	maxtouches = maxtouches == 0 ? 16 : maxtouches * 2;
}

/* Records that level subid counted e (its frame for subid is new); cannot fail. */
static void
touch(SubTransactionId subid, SeqEntry *e)
{
	if (subid == TopSubTransactionId)
		return;
	Assert(ntouches < maxtouches);
	touches[ntouches].subid = subid;
	touches[ntouches].entry = e;
	ntouches++;
}

/*
 * Writes back every count that moved past its row.  Most transactions have
 * none: the snapshot, the owner and SPI are set up only at the first.
 */
static void
store_counts(void)
{
	HASH_SEQ_STATUS it;
	SeqEntry   *e;
	AlxSavedUser save;
	bool		begun = false;

	hash_seq_init(&it, seqs);
	while ((e = hash_seq_search(&it)) != NULL)
	{
		Datum		values[3];

		if (e->top->current == e->top->stored)
			continue;
		if (XactReadOnly)
			ereport(ERROR,
					(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
					 errmsg("cannot commit outbox events in a transaction that was made read-only after them"),
					 errdetail("The sequence of aggregate \"%s\" is stored when the transaction commits.", e->key)));
		if (!begun)
		{
			/* SPI needs an outer snapshot; COMMIT has popped the statement's */
			PushActiveSnapshot(GetTransactionSnapshot());
			AlxCoreBegin(&save);
			begun = true;
		}
		values[0] = PointerGetDatum(cstring_to_text_with_len(e->key, e->typelen));
		values[1] = CStringGetTextDatum(e->key + e->typelen + 1);
		values[2] = Int64GetDatum(e->top->current);
		AlxPlanRun(&store_plan, values, NULL, false, 0);
		e->top->stored = e->top->current;
	}
	if (begun)
	{
		AlxCoreEnd(&save);
		PopActiveSnapshot();
	}
}

static void
aggseq_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			sealed = true;
			if (seqs != NULL)
				store_counts();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			forget_all();
			break;
		default:
			break;
	}
}

/*
 * Subtransaction end: the pairs at the end of touches are its own, and
 * their frames are on top of their aggregates' stacks (deeper levels ended
 * first).  Commit merges each frame into the parent level's frame, or
 * makes it the parent's; abort drops it, and the aggregate with it if this
 * level counted it first.
 */
static void
aggseq_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	int			nparent = 0;
	int			first;

	if (seqs == NULL || ntouches == 0 || touches[ntouches - 1].subid != mySubid ||
		(event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB))
		return;
	first = ntouches;
	while (first > 0 && touches[first - 1].subid == mySubid)
		first--;
	for (int i = first; i < ntouches; i++)
	{
		SeqEntry   *e = touches[i].entry;
		SeqFrame   *f = e->top;

		Assert(f->subid == mySubid);
		if (event == SUBXACT_EVENT_ABORT_SUB)
		{
			e->top = f->prev;
			pfree(f);
			if (e->top == NULL)
				(void) hash_search(seqs, e->key, HASH_REMOVE, NULL);
		}
		else if (f->prev != NULL && f->prev->subid == parentSubid)
		{
			f->prev->current = f->current;
			f->prev->stored = f->stored;
			e->top = f->prev;
			pfree(f);
		}
		else
		{
			/* the frame becomes the parent's: so does its pair (in place, no allocation) */
			f->subid = parentSubid;
			if (parentSubid != TopSubTransactionId)
			{
				touches[first + nparent].subid = parentSubid;
				touches[first + nparent].entry = e;
				nparent++;
			}
		}
	}
	ntouches = first + nparent;
}

/*
 * The next aggregate_seq of a non-order aggregate.  The caller runs as the
 * extension owner inside an SPI connection (AlxCoreBegin) and has checked
 * the names (AlxOutboxCheckEvent).
 */
int64
AlxOutboxAggregateNextSeq(const char *aggregate_type, const char *aggregate_id)
{
	SubTransactionId cur = GetCurrentSubTransactionId();
	char		key[ALX_AGGSEQ_KEYLEN];
	int			typelen = strlen(aggregate_type);
	int			idlen = strlen(aggregate_id);
	SeqEntry   *e = NULL;
	Datum		values[2];
	bool		isnull;
	bool		found;
	int64		seq;

	if (sealed)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("outbox_emit cannot run once its transaction is committing")));
	if (typelen + 1 + idlen >= ALX_AGGSEQ_KEYLEN)
		elog(ERROR, "aggregate name too long for the sequence cache");
	memset(key, 0, sizeof(key));
	memcpy(key, aggregate_type, typelen);
	key[typelen] = ':';
	memcpy(key + typelen + 1, aggregate_id, idlen);

	if (seqs != NULL)
		e = hash_search(seqs, key, HASH_FIND, NULL);
	if (e != NULL)
	{
		if (e->top->subid != cur)
		{
			SeqFrame   *f;

			touch_reserve();
			f = MemoryContextAlloc(TopTransactionContext, sizeof(SeqFrame));
			*f = *e->top;
			f->subid = cur;
			f->prev = e->top;
			e->top = f;
			touch(cur, e);
		}
		return ++e->top->current;
	}

	/* first event of the aggregate in this transaction: the upsert locks its row */
	values[0] = CStringGetTextDatum(aggregate_type);
	values[1] = CStringGetTextDatum(aggregate_id);
	AlxPlanRun(&next_plan, values, NULL, false, 0);
	if (SPI_processed != 1)
		elog(ERROR, "outbox aggregate sequence was not advanced");
	seq = AlxSpiInt8(0, 1, &isnull);

	if (seqs == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = ALX_AGGSEQ_KEYLEN;
		ctl.entrysize = sizeof(SeqEntry);
		ctl.hcxt = TopTransactionContext;
		seqs = hash_create("alexandrite aggregate seqs", 64, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	if (hash_get_num_entries(seqs) < ALX_AGGSEQ_CACHED)
	{
		SeqFrame   *f;

		/* everything that can fail first: an entry is never half made */
		touch_reserve();
		f = MemoryContextAlloc(TopTransactionContext, sizeof(SeqFrame));
		f->subid = cur;
		f->current = seq;
		f->stored = seq;
		f->prev = NULL;
		e = hash_search(seqs, key, HASH_ENTER, &found);
		e->typelen = typelen;
		e->top = f;
		touch(cur, e);
	}
	return seq;
}

/* From _PG_init: every commit stores the counts and seals the transaction. */
void
AlxOutboxAggseqInit(void)
{
	RegisterXactCallback(aggseq_xact_callback, NULL);
	RegisterSubXactCallback(aggseq_subxact_callback, NULL);
}
