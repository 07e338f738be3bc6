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

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->trigdesc != NULL ||
		rel->rd_rel->relhasrules || rel->rd_rel->relrowsecurity ||
		(desc->constr != NULL && desc->constr->num_check > 0))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outbox table \"%s\" must be a plain table without triggers, rules, row security or CHECK constraints",
						RelationGetRelationName(rel)),
				 errdetail("The outbox writes its rows directly (src/outbox/write.c).")));
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
	Oid			nsp = get_namespace_oid(ALX_SCHEMA_NAME, false);
	char		relname[NAMEDATALEN];
	Oid			relid;
	Oid			seqid;
	Relation	rel;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	HeapTuple	tup;
	List	   *indexes;
	ListCell   *lc;
	int64		id;

	snprintf(relname, sizeof(relname), "outbox_events_%d", table);
	relid = get_relname_relid(relname, nsp);
	seqid = get_relname_relid("outbox_id_seq", nsp);
	if (!OidIsValid(relid) || !OidIsValid(seqid))
		elog(ERROR, "alexandrite.%s or alexandrite.outbox_id_seq does not exist", relname);

	rel = table_open(relid, RowExclusiveLock);
	check_log_table(rel);
	desc = RelationGetDescr(rel);

	/* after the aggregate's lock: ids follow the order of the locks */
	id = nextval_internal(seqid, true);

	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);
		const char *name = NameStr(a->attname);
		Oid			type;

		nulls[i] = false;
		if (a->attisdropped)
		{
			values[i] = (Datum) 0;
			nulls[i] = true;
			continue;
		}
		else if (strcmp(name, "id") == 0)
			values[i] = Int64GetDatum(id), type = INT8OID;
		else if (strcmp(name, "txid") == 0)
			values[i] = FullTransactionIdGetDatum(GetTopFullTransactionId()), type = XID8OID;
		else if (strcmp(name, "aggregate_type") == 0)
			values[i] = CStringGetTextDatum(aggregate_type), type = TEXTOID;
		else if (strcmp(name, "aggregate_id") == 0)
			values[i] = CStringGetTextDatum(aggregate_id), type = TEXTOID;
		else if (strcmp(name, "aggregate_seq") == 0)
			values[i] = Int64GetDatum(seq), type = INT8OID;
		else if (strcmp(name, "event_type") == 0)
			values[i] = CStringGetTextDatum(event_type), type = TEXTOID;
		else if (strcmp(name, "payload") == 0)
			values[i] = JsonbPGetDatum(payload), type = JSONBOID;
		else if (strcmp(name, "headers") == 0)
			values[i] = JsonbPGetDatum(headers), type = JSONBOID;
		else if (strcmp(name, "created_at") == 0)
			values[i] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()), type = TIMESTAMPTZOID;
		else
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("outbox table \"%s\" has an unknown column \"%s\"", relname, name)));
		/* the executor would convert or refuse a value of another type */
		if (a->atttypid != type)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("column \"%s\" of outbox table \"%s\" has type %s, not %s",
							name, relname, format_type_be(a->atttypid), format_type_be(type))));
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
