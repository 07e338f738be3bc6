/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  The claim: lock the most urgent pool order (docs/sla.md).
 *
 * The pool is the open orders nobody holds (status before 'assigned',
 * operator_id NULL), indexed per channel by due time in
 * orders_pool_due_idx (channel, sla_due_at, id).  Within one channel and at
 * one moment sla_priority falls as the due time grows, so a channel's index
 * order is its priority order; the global order is the merge of the
 * channels by (priority desc, id).
 *
 * AlxClaimOrder merges the channels' index scans lazily, in C (no
 * statement: the planner and executor setup of the ranking query cost more
 * than the rest of an assign_next), and locks the heads in the merged order,
 * SKIP LOCKED, until one that is still in the pool is locked (claim_merge
 * below has the details and the argument):
 *
 *	 - every scan is bounded while a bound is known to suffice, since a
 *	   btree scan reads a whole leaf page unless one stops it: the lead
 *	   channel (this backend's last) by a window after its last claimed due
 *	   time, the others by the lead head's score;
 *	 - a candidate updated since the snapshot is locked in its newest
 *	   version (READ COMMITTED, as SELECT ... FOR NO KEY UPDATE does) and
 *	   taken only if that version is still in the pool; a row locked and
 *	   found taken stays locked to commit, which only makes other claimers
 *	   skip it meanwhile;
 *	 - all scans read one snapshot, taken after the caller's own earlier
 *	   writes (a command counter increment, as a statement would), and every
 *	   score comes from one copy of the SLA policies, whatever reloads them
 *	   meanwhile.
 *
 * The index is used only when it is what the claim needs: a valid, ready
 * btree of orders on (channel, sla_due_at, id) with exactly the pool
 * predicate.  Otherwise (dropped, invalid after a failed concurrent build,
 * redefined) the claim runs as one statement (CLAIM_SQL), which is as exact
 * and slower, with a WARNING at most once a minute.
 *
 * IDENTIFICATION
 *	  src/sla/claim.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_index.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/primnodes.h"
#include "utils/builtins.h"
#include "storage/sinval.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "core/core.h"
#include "sla/sla.h"

/* the pool: unheld new or priced orders (see sla_claim in 1.1) */
#define POOL_QUAL(alias) \
	alias ".status OPERATOR(pg_catalog.<) 'assigned'::alexandrite.order_status" \
	" AND " alias ".operator_id IS NULL"

/*
 * The claim as one statement, for an index the claim cannot trust: with
 * the due bound of rebalance ($2) or without one (assign_next).
 */
#define CLAIM_SQL(due_cond) \
	"SELECT " ALX_ORDER_COLS ", c.rk" \
	"  FROM (SELECT k.id, k.p, pg_catalog.row_number() OVER (ORDER BY k.p DESC, k.id) AS rk" \
	"          FROM (SELECT h.id," \
	"                       alexandrite.sla_priority(h.created_at, h.sla_due_at, ch.channel, $1) AS p" \
	"                  FROM pg_catalog.unnest(alexandrite.sla_channels()) ch(channel)" \
	"                 CROSS JOIN LATERAL (" \
	"                       SELECT o2.id, o2.sla_due_at, o2.created_at" \
	"                         FROM alexandrite.orders o2" \
	"                        WHERE o2.channel OPERATOR(pg_catalog.=) ch.channel" \
	"                          AND " POOL_QUAL("o2") due_cond \
	"                        ORDER BY o2.sla_due_at, o2.id" \
	"                        LIMIT $3) h) k" \
	"         ORDER BY k.p DESC, k.id) c" \
	"  JOIN alexandrite.orders o ON o.id OPERATOR(pg_catalog.=) c.id" \
	" WHERE " POOL_QUAL("o") \
	" ORDER BY c.p DESC, c.id" \
	" LIMIT 1" \
	"   FOR NO KEY UPDATE OF o SKIP LOCKED"

/* [0]: due before $2; [1]: any due time ($2 unused) */
static AlxPlan claim_plans[2] = {
	{CLAIM_SQL(" AND o2.sla_due_at OPERATOR(pg_catalog.<) $2"), 3, {TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID}},
	{CLAIM_SQL(""), 3, {TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID}}
};

/* does some channel have more than $2 pool orders (due before $1)? */
#define CUT_SQL(due_cond) \
	"SELECT 1 FROM pg_catalog.unnest(alexandrite.sla_channels()) ch(channel)" \
	" CROSS JOIN LATERAL (" \
	"       SELECT pg_catalog.count(*) AS n" \
	"         FROM (SELECT 1 FROM alexandrite.orders o2" \
	"                WHERE o2.channel OPERATOR(pg_catalog.=) ch.channel" \
	"                  AND " POOL_QUAL("o2") due_cond \
	"                LIMIT $2 OPERATOR(pg_catalog.+) 1) x) k" \
	" WHERE k.n OPERATOR(pg_catalog.>) $2 LIMIT 1"

static AlxPlan cut_plans[2] = {
	{CUT_SQL(" AND o2.sla_due_at OPERATOR(pg_catalog.<) $1"), 2, {TIMESTAMPTZOID, INT8OID}},
	{CUT_SQL(""), 2, {TIMESTAMPTZOID, INT8OID}}
};

/* the columns of orders the claim reads (AlxOrderRow, ALX_ORDER_COLS) */
typedef enum
{
	C_ID, C_EXTERNAL_REF, C_CHANNEL, C_CUSTOMER_ID, C_MESH_ID, C_MATERIAL,
	C_STATUS, C_OPERATOR_ID, C_PRICE, C_CREATED_AT, C_SLA_DUE_AT, C_EVENT_SEQ,
	C_NCOLS
} ClaimCol;

static const char *const claim_col_names[C_NCOLS] = {
	"id", "external_ref", "channel", "customer_id", "mesh_id", "material",
	"status", "operator_id", "price", "created_at", "sla_due_at", "event_seq"
};

/* the columns of ALX_ORDER_COLS, in its order: row_from_slot decodes them as AlxOrderColTypes */
StaticAssertDecl(C_NCOLS == ALX_ORDER_NCOLS, "the claim reads the columns of ALX_ORDER_COLS");

/* one candidate of the merge */
typedef struct ClaimCand
{
	double		p;				/* sla_priority at the claim's moment */
	int64		id;
	TimestampTz due;
	ItemPointerData tid;		/* the version the snapshot saw */
} ClaimCand;

/* the orders table, its pool index, and what the claim needs to read them */
typedef struct ClaimRels
{
	Relation	rel;
	Relation	idx;
	AttrNumber	att[C_NCOLS];
	Oid			assigned;		/* the enum value 'assigned' */
	float4		assigned_order;	/* and its sort order */
	Oid			label_new;		/* the pool's statuses: 'new' and 'priced' */
	Oid			label_priced;
} ClaimRels;

/* (priority desc, id): the ranking of docs/sla.md */
static int
cand_cmp(const void *a, const void *b)
{
	const ClaimCand *x = a;
	const ClaimCand *y = b;

	if (x->p != y->p)
		return x->p > y->p ? -1 : 1;
	return x->id < y->id ? -1 : (x->id > y->id ? 1 : 0);
}

/* is e a Var of the index's table for column att? */
static bool
is_var(Node *e, AttrNumber att)
{
	return e != NULL && IsA(e, Var) && ((Var *) e)->varattno == att;
}

/*
 * Is the predicate of idx exactly the pool's: status < 'assigned' and
 * operator_id IS NULL, in either order?  A narrower predicate would hide
 * pool orders from the claim; a wider one would offer taken ones.
 */
static bool
pool_predicate(Relation idx, const ClaimRels *cr)
{
	List	   *pred = RelationGetIndexPredicate(idx);
	bool		saw_status = false;
	bool		saw_null = false;
	ListCell   *lc;

	if (list_length(pred) != 2)
		return false;
	foreach(lc, pred)
	{
		Node	   *n = lfirst(lc);

		if (IsA(n, NullTest))
		{
			NullTest   *t = (NullTest *) n;

			if (t->nulltesttype != IS_NULL || t->argisrow ||
				!is_var((Node *) t->arg, cr->att[C_OPERATOR_ID]))
				return false;
			saw_null = true;
		}
		else if (IsA(n, OpExpr))
		{
			OpExpr	   *op = (OpExpr *) n;
			Const	   *c;

			if (get_opcode(op->opno) != F_ENUM_LT || list_length(op->args) != 2 ||
				!is_var(linitial(op->args), cr->att[C_STATUS]) ||
				!IsA(lsecond(op->args), Const))
				return false;
			c = lsecond_node(Const, op->args);
			if (c->constisnull || DatumGetObjectId(c->constvalue) != cr->assigned)
				return false;
			saw_status = true;
		}
		else
			return false;
	}
	return saw_status && saw_null;
}

/* the OID (and sort order) of a label of order_status, resolved before any scan */
static Oid
label_oid(Oid typid, const char *label, float4 *order)
{
	HeapTuple	tup = SearchSysCache2(ENUMTYPOIDNAME, ObjectIdGetDatum(typid), CStringGetDatum(label));
	Oid			oid;

	if (!HeapTupleIsValid(tup))
		AlxStatusLabelMissing(label);
	oid = ((Form_pg_enum) GETSTRUCT(tup))->oid;
	if (order != NULL)
		*order = ((Form_pg_enum) GETSTRUCT(tup))->enumsortorder;
	ReleaseSysCache(tup);
	return oid;
}

/*
 * What claim_open finds out about orders and its pool index, kept for the
 * backend: the columns' numbers, the labels' OIDs and the index's verdict.
 * Forgotten on a relcache invalidation of either relation (ALTER TABLE,
 * REINDEX, a change of indisvalid) and on any change of pg_enum; a look-up
 * during which an invalidation arrived is not kept.  The verdict of an
 * index with indcheckxmin depends on the snapshot: it is never kept.
 */
typedef struct ClaimShape
{
	bool		valid;			/* relid, att and the labels */
	Oid			relid;
	AttrNumber	att[C_NCOLS];
	Oid			assigned;
	float4		assigned_order;
	Oid			label_new;
	Oid			label_priced;
	Oid			idxid;			/* the index the verdict is about, or InvalidOid */
	bool		idx_trusted;
} ClaimShape;

static ClaimShape shape;

static void
shape_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == shape.relid || relid == shape.idxid)
	{
		shape.valid = false;
		shape.idxid = InvalidOid;
	}
}

static void
shape_enum_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	shape.valid = false;
	shape.idxid = InvalidOid;
}

/* the columns and labels of orders, into shape */
static void
shape_compute(Relation rel)
{
	static bool registered = false;
	TupleDesc	desc = RelationGetDescr(rel);
	uint64		inval_count = SharedInvalidMessageCounter;
	Oid			status_type;

	if (!registered)
	{
		AlxRegisterRelcacheCallback(shape_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(ENUMTYPOIDNAME, shape_enum_callback, (Datum) 0);
		registered = true;
	}
	shape.valid = false;
	shape.idxid = InvalidOid;
	for (int c = 0; c < C_NCOLS; c++)
	{
		shape.att[c] = InvalidAttrNumber;
		for (int a = 0; a < desc->natts; a++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, a);

			if (!att->attisdropped && strcmp(NameStr(att->attname), claim_col_names[c]) == 0)
			{
				shape.att[c] = att->attnum;
				break;
			}
		}
		if (shape.att[c] == InvalidAttrNumber)
			elog(ERROR, "alexandrite.orders has no column \"%s\"", claim_col_names[c]);
		/* the claim decodes the row itself: no view reads orders, a DBA may retype it */
		if (c != C_STATUS)		/* the enum itself here (status::text in ALX_ORDER_COLS) */
			AlxCheckColumnType("alexandrite.orders", claim_col_names[c],
							   TupleDescAttr(desc, shape.att[c] - 1)->atttypid, AlxOrderColTypes[c]);
	}
	status_type = TupleDescAttr(desc, shape.att[C_STATUS] - 1)->atttypid;
	if (get_typtype(status_type) != TYPTYPE_ENUM)
		AlxCheckColumnType("alexandrite.orders", "status", status_type,
						   GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum("order_status"),
										   ObjectIdGetDatum(get_namespace_oid(ALX_SCHEMA_NAME, false))));
	shape.assigned = label_oid(status_type, "assigned", &shape.assigned_order);
	shape.label_new = label_oid(status_type, "new", NULL);
	shape.label_priced = label_oid(status_type, "priced", NULL);
	shape.relid = RelationGetRelid(rel);
	shape.valid = (inval_count == SharedInvalidMessageCounter);
}

/*
 * Opens orders (RowShareLock, as SELECT ... FOR NO KEY UPDATE takes) and
 * its pool index if the claim can trust it; idx is NULL otherwise.
 */
static void
claim_open(ClaimRels *cr)
{
	static const Oid opclasses[3] = {TEXT_BTREE_OPS_OID, TIMESTAMPTZ_BTREE_OPS_OID, INT8_BTREE_OPS_OID};
	static TimestampTz warned_at = 0;
	AttrNumber	keys[3];

	cr->rel = AlxRelationOpen("orders", RowShareLock, false);
	if (!shape.valid || shape.relid != RelationGetRelid(cr->rel))
		shape_compute(cr->rel);
	memcpy(cr->att, shape.att, sizeof(cr->att));
	cr->assigned = shape.assigned;
	cr->assigned_order = shape.assigned_order;
	cr->label_new = shape.label_new;
	cr->label_priced = shape.label_priced;

	/* the statement would apply row security: so must the claim */
	if (cr->rel->rd_rel->relrowsecurity)
	{
		if (TimestampDifferenceExceeds(warned_at, GetCurrentTimestamp(), 60000))
		{
			warned_at = GetCurrentTimestamp();
			ereport(WARNING,
					(errmsg("alexandrite.orders has row-level security: claims read it with a query")));
		}
		cr->idx = NULL;
		return;
	}
	/* (channel, sla_due_at, id) in the default classes, texteq under channel's collation */
	keys[0] = cr->att[C_CHANNEL];
	keys[1] = cr->att[C_SLA_DUE_AT];
	keys[2] = cr->att[C_ID];
	cr->idx = AlxRelationOpen("orders_pool_due_idx", AccessShareLock, true);
	if (cr->idx != NULL)
	{
		bool		trusted;

		if (shape.valid && shape.idxid == RelationGetRelid(cr->idx))
			trusted = shape.idx_trusted;
		else
		{
			uint64		inval_count = SharedInvalidMessageCounter;

			trusted = AlxIndexTrusted(cr->rel, cr->idx, 3, keys, opclasses, true) &&
				pool_predicate(cr->idx, cr);
			if (shape.valid && !cr->idx->rd_index->indcheckxmin &&
				inval_count == SharedInvalidMessageCounter)
			{
				shape.idxid = RelationGetRelid(cr->idx);
				shape.idx_trusted = trusted;
			}
		}
		if (!trusted)
		{
			relation_close(cr->idx, NoLock);
			cr->idx = NULL;
		}
	}
	if (cr->idx == NULL && TimestampDifferenceExceeds(warned_at, GetCurrentTimestamp(), 60000))
	{
		warned_at = GetCurrentTimestamp();
		ereport(WARNING,
				(errmsg("index alexandrite.orders_pool_due_idx is missing or not the pool index: claims read the table with a query instead"),
				 errdetail("The claim needs a valid btree on alexandrite.orders (channel, sla_due_at, id) WHERE status < 'assigned' AND operator_id IS NULL, with the default operator classes and the column's collation; an index just built over broken HOT chains (pg_index.indcheckxmin) is used once it is older than the claim's snapshot."),
				 errhint("REINDEX INDEX alexandrite.orders_pool_due_idx as the extension's owner, or reinstall the extension.")));
	}
}

/* the locks are kept to the end of the transaction */
static void
claim_close(ClaimRels *cr)
{
	if (cr->idx != NULL)
		index_close(cr->idx, NoLock);
	table_close(cr->rel, NoLock);
}

/* a text column of a slot, or NULL */
static char *
slot_text(TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * The locked version of a candidate, if it is still in the pool: read into
 * row (the columns of ALX_ORDER_COLS).
 */
static bool
row_from_slot(const ClaimRels *cr, TupleTableSlot *slot, AlxOrderRow *row)
{
	bool		isnull;
	Datum		d;

	slot_getallattrs(slot);
	d = slot_getattr(slot, cr->att[C_STATUS], &isnull);
	if (isnull)
		return false;
	if (DatumGetObjectId(d) == cr->label_new)
		row->status = ALX_ST_NEW;
	else if (DatumGetObjectId(d) == cr->label_priced)
		row->status = ALX_ST_PRICED;
	else
	{
		HeapTuple	tup = SearchSysCache1(ENUMOID, d);
		bool		pool;

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "invalid order_status value %u", DatumGetObjectId(d));
		pool = ((Form_pg_enum) GETSTRUCT(tup))->enumsortorder < cr->assigned_order;
		ReleaseSysCache(tup);
		/* a label added before 'assigned' would be a pool status the order core does not know */
		if (pool)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("order %s has an order_status the claim does not know",
							DatumGetCString(DirectFunctionCall1(int8out,
																slot_getattr(slot, cr->att[C_ID], &isnull))))));
		return false;			/* assigned or later: not in the pool */
	}
	(void) slot_getattr(slot, cr->att[C_OPERATOR_ID], &isnull);
	if (!isnull)
		return false;
	row->operator_id = NULL;

	row->id = DatumGetInt64(slot_getattr(slot, cr->att[C_ID], &isnull));
	row->external_ref = slot_text(slot, cr->att[C_EXTERNAL_REF]);
	row->channel = slot_text(slot, cr->att[C_CHANNEL]);
	row->customer_id = slot_text(slot, cr->att[C_CUSTOMER_ID]);
	d = slot_getattr(slot, cr->att[C_MESH_ID], &isnull);
	row->has_mesh = !isnull;
	row->mesh_id = isnull ? 0 : DatumGetInt64(d);
	row->material = slot_text(slot, cr->att[C_MATERIAL]);
	d = slot_getattr(slot, cr->att[C_PRICE], &isnull);
	row->price = isnull ? NULL : DatumGetNumericCopy(d);
	row->created_at = DatumGetTimestampTz(slot_getattr(slot, cr->att[C_CREATED_AT], &isnull));
	row->sla_due_at = DatumGetTimestampTz(slot_getattr(slot, cr->att[C_SLA_DUE_AT], &isnull));
	row->event_seq = DatumGetInt64(slot_getattr(slot, cr->att[C_EVENT_SEQ], &isnull));
	return true;
}

/*
 * A channel's cursor in the merge: its pool entries in index order, read
 * so far down to a due time bound (scanned_to; DT_NOEND: all of them), and
 * its head, the first entry not yet tried.
 */
typedef struct ClaimCursor
{
	const AlxSlaPolicyCopy *pol;	/* the channel and its policy at the start */
	Datum		name_text;
	IndexScanDesc scan;			/* NULL until first read */
	TimestampTz scanned_to;		/* entries due up to here are read or queued */
	bool		has_head;
	ClaimCand	head;
} ClaimCursor;

/*
 * (Re)starts a channel's scan at the entries due after "after" (DT_NOBEGIN:
 * from the start) up to "upto" (DT_NOEND: no bound), both within the
 * claim's due bound, and reads its head.
 */
static void
cursor_scan(ClaimRels *cr, ClaimCursor *cc, Snapshot snap, TimestampTz after,
			TimestampTz upto, TimestampTz due_before)
{
	ScanKeyData keys[4];
	int			n = 0;

	ScanKeyEntryInitialize(&keys[n++], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   cr->idx->rd_indcollation[0], F_TEXTEQ, cc->name_text);
	if (after != DT_NOBEGIN)
		ScanKeyEntryInitialize(&keys[n++], 0, 2, BTGreaterStrategyNumber, InvalidOid,
							   InvalidOid, F_TIMESTAMPTZ_GT, TimestampTzGetDatum(after));
	if (upto != DT_NOEND)
		ScanKeyEntryInitialize(&keys[n++], 0, 2, BTLessEqualStrategyNumber, InvalidOid,
							   InvalidOid, F_TIMESTAMPTZ_LE, TimestampTzGetDatum(upto));
	if (due_before != DT_NOEND)
		ScanKeyEntryInitialize(&keys[n++], 0, 2, BTLessStrategyNumber, InvalidOid,
							   InvalidOid, F_TIMESTAMPTZ_LT, TimestampTzGetDatum(due_before));
	/* a scan's key count is fixed when it begins */
	if (cc->scan != NULL)
		index_endscan(cc->scan);
	cc->scan = index_beginscan(cr->rel, cr->idx, snap, n, 0);
	index_rescan(cc->scan, keys, n, NULL, 0);
	cc->scanned_to = upto;
	cc->has_head = false;
}

/* Reads the next entry of a channel's current scan into its head. */
static void
cursor_next(ClaimRels *cr, ClaimCursor *cc, TupleTableSlot *slot, TimestampTz at)
{
	bool		isnull;

	cc->has_head = index_getnext_slot(cc->scan, ForwardScanDirection, slot);
	if (!cc->has_head)
		return;
	cc->head.id = DatumGetInt64(slot_getattr(slot, cr->att[C_ID], &isnull));
	cc->head.due = DatumGetTimestampTz(slot_getattr(slot, cr->att[C_SLA_DUE_AT], &isnull));
	cc->head.p = AlxSlaScore(cc->pol, cc->head.due, at);
	cc->head.tid = slot->tts_tid;
	ExecClearTuple(slot);
}

/*
 * The lead: the channel of this backend's last claim, whose head is usually
 * the next best, the due time of the order claimed from it, and the window
 * after that due time its first scan reads (0: no window yet).
 */
static char lead_name[NAMEDATALEN];
static TimestampTz lead_due;
static int64 lead_window;

#define LEAD_WINDOW_MIN USECS_PER_SEC
#define LEAD_WINDOW_START (60 * USECS_PER_SEC)
#define LEAD_WINDOW_MAX (30 * USECS_PER_DAY)

/* t + w, DT_NOEND past the timestamp range */
static TimestampTz
due_plus(TimestampTz t, int64 w)
{
	if (TIMESTAMP_NOT_FINITE(t) || w <= 0 || t > END_TIMESTAMP - w)
		return DT_NOEND;
	return t + w;
}

/*
 * The claim from the index: a k-way merge of the channels' pool entries by
 * (priority desc, id) (Lemma 2 of docs/sla.md), read lazily.
 *
 * A btree scan reads a whole leaf page unless a bound on its keys stops it,
 * so every scan here has a bound while one is known to suffice:
 *	 - the lead is read up to a window after the due time of the order last
 *	   claimed from it (claims move forward in due time), the window doubled
 *	   and read further until it holds a head or the channel is read to its
 *	   end; a window that sufficed at once shrinks by a quarter;
 *	 - every other channel is read only down to the lead head's score
 *	   (AlxSlaBound), which is usually nothing, and further whenever
 *	   the lead's head moves on; without a bound once the lead has none.
 * Whenever the merge picks a head, the lead's is its channel's best and
 * every other channel has been read down to the lead head's score, so no
 * unread entry ranks before the picked head: the merge is exact however
 * many heads are locked or taken on the way.
 *
 * Each head in turn is locked, SKIP LOCKED, in its newest version, and
 * taken if that version is still in the pool; true with the row read, false
 * when the pool (due before due_before) has nothing left to lock.
 */
static bool
claim_merge(ClaimRels *cr, TimestampTz at, TimestampTz due_before, Snapshot snap,
			AlxOrderRow *row)
{
	int			nch;
	AlxSlaPolicyCopy *pols = AlxSlaPolicies(&nch);
	ClaimCursor *cur = palloc0(sizeof(ClaimCursor) * Max(nch, 1));
	int			widened = 0;
	TupleTableSlot *slot = table_slot_create(cr->rel, NULL);
	ClaimCursor *lead = NULL;
	bool		got = false;

	for (int c = 0; c < nch; c++)
	{
		cur[c].pol = &pols[c];
		cur[c].name_text = PointerGetDatum(cstring_to_text_with_len(pols[c].name, pols[c].len));
		if (strcmp(pols[c].name, lead_name) == 0)
			lead = &cur[c];
	}
	if (nch == 0)
		goto done;
	if (lead == NULL)
	{
		lead = &cur[0];
		lead_window = 0;
	}
	cursor_scan(cr, lead, snap, DT_NOBEGIN, lead_window > 0 ? due_plus(lead_due, lead_window) : DT_NOEND,
				due_before);
	cursor_next(cr, lead, slot, at);
	if (lead->has_head && lead_window > 0)
		lead_window = Max(LEAD_WINDOW_MIN, lead_window - lead_window / 4);

	for (;;)
	{
		ClaimCursor *best = NULL;
		TM_FailureData tmfd;
		TM_Result	r;

		/*
		 * The lead's head: read further until there is one, or the channel
		 * ends: twice in a doubled window, then to the end (one scan that
		 * stops at its first entry), and not past the claim's own bound.
		 */
		while (!lead->has_head && lead->scanned_to != DT_NOEND)
		{
			TimestampTz upto = DT_NOEND;

			if (due_before != DT_NOEND && lead->scanned_to >= due_before)
			{
				lead->scanned_to = DT_NOEND;	/* nothing further qualifies */
				break;
			}
			if (widened++ < 2)
			{
				lead_window = Min(LEAD_WINDOW_MAX, Max(LEAD_WINDOW_MIN, lead_window * 2));
				upto = due_plus(lead->scanned_to, lead_window);
			}
			cursor_scan(cr, lead, snap, lead->scanned_to, upto, due_before);
			cursor_next(cr, lead, slot, at);
			CHECK_FOR_INTERRUPTS();
		}

		/* every channel read down to the lead head's score (all of it without one) */
		for (int c = 0; c < nch; c++)
		{
			ClaimCursor *cc = &cur[c];
			TimestampTz upto;

			if (cc == lead || cc->has_head || (cc->scan != NULL && cc->scanned_to == DT_NOEND))
				continue;
			upto = lead->has_head ? AlxSlaBound(cc->pol, lead->head.p, at) : DT_NOEND;
			if (cc->scan == NULL)
				cursor_scan(cr, cc, snap, DT_NOBEGIN, upto, due_before);
			else if (upto > cc->scanned_to)
				cursor_scan(cr, cc, snap, cc->scanned_to, upto, due_before);
			else
				continue;
			cursor_next(cr, cc, slot, at);
		}
		for (int c = 0; c < nch; c++)
		{
			ClaimCursor *cc = &cur[c];

			if (cc->has_head && (best == NULL || cand_cmp(&cc->head, &best->head) < 0))
				best = cc;
		}
		if (best == NULL)
			break;				/* nothing left to lock */

		r = table_tuple_lock(cr->rel, &best->head.tid, snap, slot, GetCurrentCommandId(true),
							 LockTupleNoKeyExclusive, LockWaitSkip,
							 TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
		if (r == TM_Ok && row_from_slot(cr, slot, row))
		{
			got = true;
			if (strcmp(lead_name, best->pol->name) != 0 || lead_window == 0)
				lead_window = LEAD_WINDOW_START;
			strlcpy(lead_name, best->pol->name, sizeof(lead_name));
			lead_due = best->head.due;
			break;
		}
		/* locked by another claimer, or taken meanwhile (a lock taken stays) */
		if (r != TM_Ok && r != TM_WouldBlock && r != TM_Deleted && r != TM_SelfModified)
			elog(ERROR, "unexpected result %d locking a pool order", (int) r);
		ExecClearTuple(slot);
		cursor_next(cr, best, slot, at);
		CHECK_FOR_INTERRUPTS();
	}
done:
	for (int c = 0; c < nch; c++)
		if (cur[c].scan != NULL)
			index_endscan(cur[c].scan);
	ExecDropSingleTupleTableSlot(slot);
	return got;
}

/*
 * The claim as a statement (an index the claim cannot trust): the same
 * rule, the ranking and the locks in one query per attempt.
 */
static int
claim_attempt_sql(TimestampTz at, TimestampTz due_before, int64 lim, Snapshot snap,
				  AlxOrderRow *row)
{
	int			unbounded = due_before == DT_NOEND ? 1 : 0;
	Datum		values[3];
	Datum		cut[2];
	bool		isnull;

	values[0] = TimestampTzGetDatum(at);
	values[1] = TimestampTzGetDatum(due_before);
	values[2] = Int64GetDatum(lim);
	AlxPlanRunSnapshot(&claim_plans[unbounded], values, NULL, snap, false, 1);
	if (SPI_processed == 1)
	{
		if (AlxSpiInt8(0, ALX_ORDER_NCOLS + 1, &isnull) > lim)
			return -1;
		AlxOrderFromTuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, row);
		return 1;
	}
	/* nothing lockable among the candidates: done unless a list was cut short */
	cut[0] = TimestampTzGetDatum(due_before);
	cut[1] = Int64GetDatum(lim);
	AlxPlanRunSnapshot(&cut_plans[unbounded], cut, NULL, snap, true, 1);
	return SPI_processed == 0 ? 0 : -1;
}

/*
 * Locks the most urgent pool order due before due_before (DT_NOEND: any),
 * ranked at "at", and reads it into row; false when every such order is
 * taken or locked.  The caller is connected to SPI, runs as the extension
 * owner and is READ COMMITTED (the claim reads a new snapshot).
 */
bool
AlxClaimOrder(TimestampTz at, TimestampTz due_before, AlxOrderRow *row)
{
	ClaimRels	cr;
	Snapshot	snap;
	int64		lim = 4;
	int			r;

	/* see the caller's own earlier writes, as a statement would */
	CommandCounterIncrement();
	claim_open(&cr);
	if (cr.idx != NULL)
	{
		bool		got;

		snap = RegisterSnapshot(GetTransactionSnapshot());
		got = claim_merge(&cr, at, due_before, snap, row);
		UnregisterSnapshot(snap);
		claim_close(&cr);
		return got;
	}
	for (;;)
	{
		snap = RegisterSnapshot(GetTransactionSnapshot());
		r = claim_attempt_sql(at, due_before, lim, snap, row);
		UnregisterSnapshot(snap);
		if (r >= 0)
			break;
		CHECK_FOR_INTERRUPTS();
		lim *= 8;
	}
	claim_close(&cr);
	return r == 1;
}
