/*-------------------------------------------------------------------------
 *
 * relations.c
 *	  The extension's own relations by name, for the C code that reads or
 *	  writes them without a statement, and the one test of whether such a
 *	  read may use an index in place of the statement it replaces.
 *
 * AlxRelid: the OID of alexandrite.<name>, cached per backend.  An entry is
 * forgotten when its relation's relcache entry is invalidated (dropped,
 * altered), when a pg_class row under its name and schema changes (a
 * rename to or from it, a DROP and CREATE under the name), and every entry
 * when any schema changes; a look-up during which invalidations arrived is
 * not kept.  So a hit is exactly as current as the syscache look-ups it
 * replaces (both learn of other sessions' DDL when invalidations are
 * accepted, at the next lock).  Before a lock both may be stale: AlxRelationOpen locks,
 * then checks that the name still names what it locked, and looks again
 * if not.
 *
 * AlxRegisterRelcacheCallback: the extension's per-backend caches each
 * watch tables through one relcache callback of PostgreSQL's, dispatched
 * here: PostgreSQL has ten slots per backend (MAX_RELCACHE_CALLBACKS), two
 * of them its own, and a backend that ran out would die (FATAL) when some
 * other code registered one.
 *
 * AlxIndexTrusted: an index stands in for a statement only if it holds
 * every row it should and orders them as the statement compares: a valid,
 * ready, live btree of the table, with the given key columns in the given
 * operator classes, ascending, under each column's own collation.  A scan
 * of anything else could miss a row (a failed CREATE INDEX CONCURRENTLY, a
 * partial index under the name) or match other ones (another collation).
 * Callers that find an index untrusted run the statement instead.
 *
 * IDENTIFICATION
 *	  src/relations.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "miscadmin.h"
#include "storage/sinval.h"
#include "utils/snapmgr.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "alexandrite.h"

/* ---- one relcache callback for the whole extension ---------------------- */

#define ALX_RELCACHE_HANDLERS 16

static struct
{
	RelcacheCallbackFunction func;
	Datum		arg;
}			handlers[ALX_RELCACHE_HANDLERS];
static int	nhandlers = 0;

static void
relcache_dispatch(Datum arg, Oid relid)
{
	for (int i = 0; i < nhandlers; i++)
		handlers[i].func(handlers[i].arg, relid);
}

/* Registers func(arg, relid) for every relcache invalidation (once per backend). */
void
AlxRegisterRelcacheCallback(RelcacheCallbackFunction func, Datum arg)
{
	if (nhandlers == ALX_RELCACHE_HANDLERS)
		elog(FATAL, "out of alexandrite relcache callback slots");
	if (nhandlers == 0)
		CacheRegisterRelcacheCallback(relcache_dispatch, (Datum) 0);
	handlers[nhandlers].func = func;
	handlers[nhandlers].arg = arg;
	nhandlers++;
}

/* ---- relation OIDs by name ------------------------------------------------ */

#define RELID_NCACHED 32

typedef struct RelidEntry
{
	NameData	name;
	Oid			relid;
	uint32		hash;			/* of (name, schema) in RELNAMENSP */
} RelidEntry;

static RelidEntry relids[RELID_NCACHED];
static int	nrelids = 0;
static bool callbacks_registered = false;

static void
relid_forget(int i)
{
	relids[i] = relids[--nrelids];
}

/* a schema changed: forget everything */
static void
relid_forget_all(Datum arg, int cacheid, uint32 hashvalue)
{
	nrelids = 0;
}

/* a pg_class row of this name and schema changed (0: any) */
static void
relid_name_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	for (int i = nrelids - 1; i >= 0; i--)
		if (hashvalue == 0 || relids[i].hash == hashvalue)
			relid_forget(i);
}

static void
relid_relcache_callback(Datum arg, Oid relid)
{
	for (int i = nrelids - 1; i >= 0; i--)
		if (!OidIsValid(relid) || relids[i].relid == relid)
			relid_forget(i);
}

/*
 * The OID of alexandrite.<relname> (a table, sequence or index), or
 * InvalidOid when missing_ok and there is none.
 */
Oid
AlxRelid(const char *relname, bool missing_ok)
{
	uint64		inval_count;
	NameData	name;
	Oid			nsp;
	Oid			relid;

	for (int i = 0; i < nrelids; i++)
		if (strcmp(NameStr(relids[i].name), relname) == 0)
			return relids[i].relid;

	if (!callbacks_registered)
	{
		AlxRegisterRelcacheCallback(relid_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(RELNAMENSP, relid_name_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, relid_forget_all, (Datum) 0);
		callbacks_registered = true;
	}
	/* an invalidation during the lookup may concern what it found: not kept */
	inval_count = SharedInvalidMessageCounter;
	nsp = get_namespace_oid(ALX_SCHEMA_NAME, missing_ok);
	relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
	if (!OidIsValid(relid))
	{
		if (!missing_ok)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("relation \"%s.%s\" does not exist", ALX_SCHEMA_NAME, relname),
					 errhint("Reinstall the extension alexandrite.")));
		return InvalidOid;		/* absence is not cached */
	}
	if (inval_count != SharedInvalidMessageCounter)
		return relid;
	if (nrelids == RELID_NCACHED)
		nrelids = 0;
	namestrcpy(&name, relname);
	relids[nrelids].name = name;
	relids[nrelids].relid = relid;
	relids[nrelids].hash = GetSysCacheHashValue2(RELNAMENSP, NameGetDatum(&name),
												 ObjectIdGetDatum(nsp));
	nrelids++;
	return relid;
}

/*
 * Opens and locks alexandrite.<relname>: the relation the name denotes once
 * the lock is held (a DROP, or a rename, committed before it is seen and
 * the name looked up again).  NULL when missing_ok and there is none.
 */
Relation
AlxRelationOpen(const char *relname, LOCKMODE lockmode, bool missing_ok)
{
	for (;;)
	{
		Oid			relid = AlxRelid(relname, missing_ok);
		Relation	rel;

		if (!OidIsValid(relid))
			return NULL;
		rel = try_relation_open(relid, lockmode);
		/* locked: invalidations are in, and the cache forgot what changed */
		if (rel != NULL && AlxRelid(relname, true) == relid)
			return rel;
		if (rel != NULL)
			relation_close(rel, lockmode);
		else
			relid_relcache_callback((Datum) 0, relid);	/* dropped: forget it */
		/* dropped before the lock, or renamed: look again */
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * May a scan of idx stand in for a statement over rel?  idx must be a valid,
 * ready and live btree index of rel whose first nkeys key columns are
 * cols[] in operator classes opclasses[], ascending with nulls last, under
 * the collation of each column; and, unless partial_ok, not partial (a
 * caller that accepts a partial index checks its predicate itself).
 */
bool
AlxIndexTrusted(Relation rel, Relation idx, int nkeys, const AttrNumber *cols,
				const Oid *opclasses, bool partial_ok)
{
	Form_pg_index ind = idx->rd_index;
	TupleDesc	desc = RelationGetDescr(rel);
	oidvector  *cls;
	Datum		d;
	bool		isnull;

	if (idx->rd_rel->relkind != RELKIND_INDEX || ind == NULL ||
		ind->indrelid != RelationGetRelid(rel) ||
		!ind->indisvalid || !ind->indisready || !ind->indislive ||
		idx->rd_rel->relam != BTREE_AM_OID ||
		IndexRelationGetNumberOfKeyAttributes(idx) < nkeys)
		return false;
	if (!partial_ok && !heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL))
		return false;
	/* built over broken HOT chains: not for snapshots older than its row (as the planner) */
	if (ind->indcheckxmin &&
		!TransactionIdPrecedes(HeapTupleHeaderGetXmin(idx->rd_indextuple->t_data), TransactionXmin))
		return false;
	d = SysCacheGetAttr(INDEXRELID, idx->rd_indextuple, Anum_pg_index_indclass, &isnull);
	if (isnull)
		return false;
	cls = (oidvector *) DatumGetPointer(d);
	for (int i = 0; i < nkeys; i++)
	{
		if (cols[i] <= 0 || cols[i] > desc->natts ||
			ind->indkey.values[i] != cols[i] || cls->values[i] != opclasses[i] ||
			idx->rd_indoption[i] != 0 ||
			idx->rd_indcollation[i] != TupleDescAttr(desc, cols[i] - 1)->attcollation)
			return false;
	}
	return true;
}

/*
 * A column the library decodes by its type (a Datum read as a bigint, a
 * text, a timestamp) must still have that type.  An ALTER COLUMN ... TYPE
 * on one of the extension's tables would otherwise have a value read as
 * another type: a number taken for a pointer (a crash), or a pointer for a
 * number (an event with a garbage sequence).  The library stops instead.
 */
void
AlxCheckColumnType(const char *relation, const char *column, Oid actual, Oid expected)
{
	if (actual != expected)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("column \"%s\" of %s has type %s, not %s",
						column, relation, format_type_be(actual), format_type_be(expected)),
				 errdetail("The extension reads this column as %s.", format_type_be(expected)),
				 errhint("Change it back with ALTER TABLE ... ALTER COLUMN ... TYPE %s.",
						 format_type_be(expected))));
}
