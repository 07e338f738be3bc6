/*-------------------------------------------------------------------------
 *
 * write.c
 *	  The outbox event row: one heap tuple and its index entries, written
 *	  by the library without a statement.
 *
 * Every event (outbox_emit and the order core's) is written here, after
 * the caller has taken the lock that orders its aggregate (the order row,
 * or the outbox_aggregates row): the id is taken from outbox_id_seq after
 * that lock (docs/outbox.md, "Ordering argument").  The row goes into the
 * rotating table the caller names, as CatalogTupleInsert writes a catalog
 * row: heap_insert, then an entry in each index.  Writing it through the
 * executor (a third ModifyTable in the order core's statement) cost 62k of
 * the 541k instructions of a create_order, most of it setting up and
 * tearing down the node; this costs the heap tuple, its two index entries,
 * their locks and WAL.
 *
 * So that nothing the executor would have done is skipped, the table must
 * be what the install script creates: a plain table without triggers,
 * rules, row security or CHECK constraints, with plain column indexes
 * (no expression, partial, exclusion or deferrable unique index) and
 * the columns and types of the install script.
 * Anything else is refused with an ERROR (only the extension owner could
 * add one).  Like the executor, the writer checks that the current user
 * (the owner, under the switch of the order core) may insert into it.
 *
 * IDENTIFICATION
 *	  src/outbox/write.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/xid8.h"

#include "alexandrite.h"
#include "outbox/outbox.h"

/* Refuses a log table that the writer would not write as the executor does. */
static void
check_log_table(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	/* rd_rules, not relhasrules: that stays true after the last rule is dropped */
	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->trigdesc != NULL ||
		rel->rd_rules != NULL || rel->rd_rel->relrowsecurity ||
		(desc->constr != NULL && desc->constr->num_check > 0))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outbox table \"%s\" must be a plain table without triggers, rules, row security or CHECK constraints",
						RelationGetRelationName(rel)),
				 errdetail("The outbox writes its rows directly (src/outbox/write.c).")));
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outbox table \"%s\" must be a logged table", RelationGetRelationName(rel)),
				 errdetail("Its rows are events not yet published: an unlogged table loses them at a crash, and a standby never has them.")));
	if (pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", RelationGetRelationName(rel))));
}

/* The entry of the new row in one index of the log table. */
static void
insert_index_entry(Relation rel, Oid indexoid, HeapTuple tup, Datum *values, bool *nulls)
{
	Relation	idx = index_open(indexoid, RowExclusiveLock);
	IndexInfo  *ii = BuildIndexInfo(idx);
	Datum		ivalues[INDEX_MAX_KEYS];
	bool		inulls[INDEX_MAX_KEYS];

	if (ii->ii_Expressions != NIL || ii->ii_Predicate != NIL || ii->ii_ExclusionOps != NULL ||
		(idx->rd_index->indisunique && !idx->rd_index->indimmediate))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index \"%s\" of outbox table \"%s\" must be a plain index of columns",
						RelationGetRelationName(idx), RelationGetRelationName(rel))));
	/* an index being built concurrently gets the row from its build */
	if (ii->ii_ReadyForInserts)
	{
		for (int k = 0; k < ii->ii_NumIndexAttrs; k++)
		{
			AttrNumber	att = ii->ii_IndexAttrNumbers[k];

			if (att <= 0)
				elog(ERROR, "outbox index \"%s\" has a system column", RelationGetRelationName(idx));
			ivalues[k] = values[att - 1];
			inulls[k] = nulls[att - 1];
		}
		(void) index_insert(idx, ivalues, inulls, &tup->t_self, rel,
							idx->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
							false, ii);
	}
	index_close(idx, NoLock);
}

/* the columns of an event row (cols[] maps attribute numbers to them) */
typedef enum
{
	EV_DROPPED, EV_ID, EV_TXID, EV_AGGREGATE_TYPE, EV_AGGREGATE_ID, EV_AGGREGATE_SEQ,
	EV_EVENT_TYPE, EV_PAYLOAD, EV_HEADERS, EV_CREATED_AT
} EventCol;

static const char *const event_col_names[] = {
	NULL, "id", "txid", "aggregate_type", "aggregate_id", "aggregate_seq",
	"event_type", "payload", "headers", "created_at"
};
static const Oid event_col_types[] = {
	InvalidOid, INT8OID, XID8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID, JSONBOID, JSONBOID,
	TIMESTAMPTZOID
};

/*
 * Per backend, the column maps of the log tables met so far, forgotten when
 * the table's relcache entry is invalidated.  The tables and the sequence
 * are found by name through AlxRelid's cache: looking them up for every
 * event cost more than the row.
 */
#define WRITE_NCACHED 8
typedef struct WriteTarget
{
	Oid			relid;
	int			natts;
	EventCol	cols[32];
} WriteTarget;

static WriteTarget targets[WRITE_NCACHED];
static int	ntargets = 0;
static bool write_callback_registered = false;

static void
write_relcache_callback(Datum arg, Oid relid)
{
	for (int i = 0; i < ntargets; i++)
		if (relid == InvalidOid || targets[i].relid == relid)
		{
			ntargets = 0;
			return;
		}
}

/* Opens (RowExclusiveLock) log table number table; its column map. */
static const WriteTarget *
write_target(int table, Relation *rel_out)
{
	char		relname[NAMEDATALEN];
	WriteTarget t;
	TupleDesc	desc;
	Relation	rel;

	snprintf(relname, sizeof(relname), "outbox_events_%d", table);
	/* locked, and the name checked after the lock: invalidations are in */
	rel = AlxRelationOpen(relname, RowExclusiveLock, false);
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s.%s\" is not a table", ALX_SCHEMA_NAME, relname)));
	for (int i = 0; i < ntargets; i++)
		if (targets[i].relid == RelationGetRelid(rel))
		{
			*rel_out = rel;
			return &targets[i];
		}

	if (!write_callback_registered)
	{
		AlxRegisterRelcacheCallback(write_relcache_callback, (Datum) 0);
		write_callback_registered = true;
	}
	t.relid = RelationGetRelid(rel);
	desc = RelationGetDescr(rel);
	if (desc->natts > lengthof(t.cols))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outbox table \"%s\" has too many columns", relname)));
	t.natts = desc->natts;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);
		const char *name = NameStr(a->attname);
		int			c;

		t.cols[i] = EV_DROPPED;
		if (a->attisdropped)
			continue;
		for (c = EV_ID; c <= EV_CREATED_AT; c++)
			if (strcmp(name, event_col_names[c]) == 0)
				break;
		if (c > EV_CREATED_AT)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("outbox table \"%s\" has an unknown column \"%s\"", relname, name)));
		/* the executor would convert or refuse a value of another type */
		if (a->atttypid != event_col_types[c])
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("column \"%s\" of outbox table \"%s\" has type %s, not %s",
							name, relname, format_type_be(a->atttypid),
							format_type_be(event_col_types[c]))));
		t.cols[i] = (EventCol) c;
	}
	*rel_out = rel;
	/* the open processed any pending invalidation: the entry is current */
	if (ntargets == WRITE_NCACHED)
		ntargets = 0;
	targets[ntargets] = t;
	return &targets[ntargets++];
}

/*
 * Writes one event into outbox_events_<table> and returns its id.  The
 * caller holds the aggregate's lock and has checked the event
 * (AlxOutboxCheckEvent or AlxOutboxCheckOwnEvent) and runs as the
 * extension owner.
 */
int64
AlxOutboxWrite(int table, const char *aggregate_type, const char *aggregate_id, int64 seq,
			   const char *event_type, Jsonb *payload, Jsonb *headers)
{
	const WriteTarget *t;
	Relation	rel;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	HeapTuple	tup;
	List	   *indexes;
	ListCell   *lc;
	int64		id;

	t = write_target(table, &rel);
	check_log_table(rel);
	desc = RelationGetDescr(rel);
	if (desc->natts != t->natts)
		elog(ERROR, "outbox table \"%s\" changed while in use", RelationGetRelationName(rel));

	/* after the aggregate's lock: ids follow the order of the locks */
	id = nextval_internal(AlxRelid("outbox_id_seq", false), true);

	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		nulls[i] = false;
		switch (t->cols[i])
		{
			case EV_DROPPED:
				values[i] = (Datum) 0;
				nulls[i] = true;
				break;
			case EV_ID:
				values[i] = Int64GetDatum(id);
				break;
			case EV_TXID:
				values[i] = FullTransactionIdGetDatum(GetTopFullTransactionId());
				break;
			case EV_AGGREGATE_TYPE:
				values[i] = CStringGetTextDatum(aggregate_type);
				break;
			case EV_AGGREGATE_ID:
				values[i] = CStringGetTextDatum(aggregate_id);
				break;
			case EV_AGGREGATE_SEQ:
				values[i] = Int64GetDatum(seq);
				break;
			case EV_EVENT_TYPE:
				values[i] = CStringGetTextDatum(event_type);
				break;
			case EV_PAYLOAD:
				values[i] = JsonbPGetDatum(payload);
				break;
			case EV_HEADERS:
				values[i] = JsonbPGetDatum(headers);
				break;
			case EV_CREATED_AT:
				values[i] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
				break;
		}
	}

	tup = heap_form_tuple(desc, values, nulls);
	heap_insert(rel, tup, GetCurrentCommandId(true), 0, NULL);

	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
		insert_index_entry(rel, lfirst_oid(lc), tup, values, nulls);
	list_free(indexes);

	heap_freetuple(tup);
	pfree(values);
	pfree(nulls);
	table_close(rel, NoLock);
	return id;
}
