/*-------------------------------------------------------------------------
 *
 * objects.c
 *	  The generated objects of a dashboard: found by name, checked, built,
 *	  dropped.
 *
 * The summary table, the delta table and the read view of dashboard <name>
 * are alexandrite.dashboard_<name>_summary, _delta and dashboard_<name>:
 * names derived from the validated dashboard name, never an OID read from a
 * table.  They belong to the extension owner, and the capture writes the
 * delta table with heap inserts, so before any use the table is checked to
 * be exactly the layout of sqlgen.c, owned by the owner, with no index,
 * trigger, rule or row security.
 *
 * Objects of a built-in dashboard (declared by the extension's script) are
 * members of the extension; those of a dashboard a DBA declares are not, so
 * that pg_dump keeps them with the registry row, also when ALTER EXTENSION
 * UPDATE rebuilds them.
 *
 * The capture triggers of a user table are created here; the extension's
 * own tables declare theirs in sql/schema/dashboard.sql.
 *
 * Everything here runs as the extension owner, SPI connected, with
 * search_path pinned (admin.c arranges it).
 *
 * IDENTIFICATION
 *	  src/dashboard/objects.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "alexandrite.h"
#include "dashboard/dashboard.h"

static const char *const alx_suffix[] = {"_summary", "_delta", ""};
static const char *const alx_triggers[] = {"alx_dashboard_capture", "alx_dashboard_flush", "alx_dashboard_truncate"};

/* dashboard_<name>[_summary|_delta] */
char *
AlxDashObjectName(const AlxDashDef *def, AlxDashObject which)
{
	return psprintf("dashboard_%s%s", def->name, alx_suffix[which]);
}

/* alexandrite.dashboard_<name>[...], quoted */
char *
AlxDashQualified(const AlxDashDef *def, AlxDashObject which)
{
	return quote_qualified_identifier(ALX_SCHEMA_NAME, AlxDashObjectName(def, which));
}

/* true when the table is one of the extension's own */
bool
AlxDashIsExtensionTable(Oid relid)
{
	Oid			ext = get_extension_oid(ALX_EXTENSION_NAME, true);

	return OidIsValid(ext) && getExtensionOfObject(RelationRelationId, relid) == ext;
}

/* One of a dashboard's generated relations is not as it was built. */
void
AlxDashDamaged(const char *dashboard, const char *relname, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("\"%s\" of dashboard \"%s\" has been altered", relname, dashboard),
			 errdetail("%s", detail),
			 errhint("Drop the relation (a summary or delta table with CASCADE: the dashboard's view depends on it) and run alexandrite.rebuild_dashboard('%s'), which builds them again.",
					 dashboard)));
}

static void
alx_damaged(const AlxDashDef *def, const char *relname, const char *detail)
{
	AlxDashDamaged(def->name, relname, detail);
}

/*
 * What the capture's direct appends to a delta table would bypass or
 * break: an index (not maintained), a trigger, a rule or row security (not
 * applied), a table that is not logged (its rows lost at a crash and never
 * on a standby).  Checked when the capture is set up (alx_verify_table)
 * and again by every flush after it has locked the table (pending.c), so
 * that such a change is refused in sessions whose capture was set up
 * before it, too.
 */
void
AlxDashCheckDelta(const char *dashboard, Relation rel)
{
	/* the name is read at each error: RelationGetIndexList may rebuild the entry */
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		AlxDashDamaged(dashboard, RelationGetRelationName(rel), "It is not a table.");
	/*
	 * pg_class's relhasindex, relhastriggers and relhasrules also stay true
	 * after the last one is dropped (until a VACUUM): the relcache's lists
	 * say what there is now.  The flag first, which is false on an intact
	 * table, so that the list is built only for a table that had an index.
	 */
	if ((rel->rd_rel->relhasindex && RelationGetIndexList(rel) != NIL) ||
		rel->trigdesc != NULL || rel->rd_rules != NULL || rel->rd_rel->relrowsecurity)
		AlxDashDamaged(dashboard, RelationGetRelationName(rel),
					   "The capture appends to it directly: it may have no index, trigger, rule or row security.");
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		AlxDashDamaged(dashboard, RelationGetRelationName(rel),
					   "It must be a logged table: its rows are the dashboard's changes not yet folded.");
}

/*
 * Column i of the layout of a summary or delta table: name and type (false
 * past the last).  Also what the capture's flush checks a delta table
 * against (pending.c).
 */
bool
AlxDashLayoutColumn(const AlxDashDef *def, AlxDashObject which, int i,
					const char **name, Oid *type, int32 *typmod)
{
	int			has_due = (which == ALX_DASH_DELTA && def->due != NULL) ? 1 : 0;

	*typmod = -1;
	if (i < def->nkeys)
	{
		*name = def->key_names[i];
		*type = def->key_types[i];
		*typmod = def->key_typmods[i];
		return true;
	}
	i -= def->nkeys;
	if (has_due && i-- == 0)
	{
		*name = ALX_DASH_DUE_BUCKET;
		*type = TIMESTAMPTZOID;
		return true;
	}
	if (i-- == 0)
	{
		*name = def->count_name;
		*type = INT8OID;
		return true;
	}
	if (i < def->nsums)
	{
		*name = def->sum_names[i];
		*type = NUMERICOID;
		return true;
	}
	i -= def->nsums;
	if (which == ALX_DASH_SUMMARY && i < def->nhorizons)
	{
		*name = def->horizon_names[i];
		*type = INT8OID;
		return true;
	}
	if (which == ALX_DASH_DELTA && i == 0)
	{
		*name = ALX_DASH_LOGGED_AT;
		*type = TIMESTAMPTZOID;
		return true;
	}
	return false;
}

/* The table has exactly the layout of sqlgen.c, and the delta table nothing else. */
static void
alx_verify_table(const AlxDashDef *def, AlxDashObject which, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *relname = RelationGetRelationName(rel);
	int			i;

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		alx_damaged(def, relname, "It is not a table.");
	if (which == ALX_DASH_DELTA)
		AlxDashCheckDelta(def->name, rel);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name;
		Oid			type;
		int32		typmod;

		if (att->attisdropped)
			alx_damaged(def, relname, "A column was dropped.");
		if (!AlxDashLayoutColumn(def, which, i, &name, &type, &typmod))
			alx_damaged(def, relname, "It has more columns than the definition.");
		if (strcmp(NameStr(att->attname), name) != 0 || att->atttypid != type ||
			(typmod >= 0 && att->atttypmod != typmod))
			alx_damaged(def, relname, psprintf("Column %d should be \"%s\" of type %s.", i + 1, name,
											   format_type_with_typemod(type, typmod)));
	}
	{
		const char *name;
		Oid			type;
		int32		typmod;

		if (AlxDashLayoutColumn(def, which, desc->natts, &name, &type, &typmod))
			alx_damaged(def, relname, "It has fewer columns than the definition.");
	}
}

/*
 * The OID of a generated relation, InvalidOid when it does not exist.  With
 * verify, it must belong to the extension owner and (tables) have the
 * layout of the definition.
 */
Oid
AlxDashObjectRelid(const AlxDashDef *def, AlxDashObject which, bool verify)
{
	Oid			nsp = get_namespace_oid(ALX_SCHEMA_NAME, false);
	Oid			relid = get_relname_relid(AlxDashObjectName(def, which), nsp);
	Relation	rel;

	if (!OidIsValid(relid) || !verify)
		return relid;
	rel = relation_open(relid, AccessShareLock);
	/* 1.1 left a DBA's dashboard to the DBA: taken over by ALTER EXTENSION UPDATE */
	if (rel->rd_rel->relowner != AlxExtensionOwner() && !AlxDashLegacySchema())
		alx_damaged(def, RelationGetRelationName(rel), "It does not belong to the extension owner.");
	if (which == ALX_DASH_VIEW)
	{
		if (rel->rd_rel->relkind != RELKIND_VIEW)
			alx_damaged(def, RelationGetRelationName(rel), "It is not a view.");
	}
	else
		alx_verify_table(def, which, rel);
	relation_close(rel, AccessShareLock);
	return relid;
}

/*
 * Runs generated DDL.  Objects of a user dashboard are kept out of the
 * extension even when ALTER EXTENSION UPDATE builds them; those of a
 * built-in one built outside the script are added to it.
 */
static void
alx_ddl(const AlxDashDef *def, const char *sql)
{
	bool		save = creating_extension;
	int			ret;

	if (!def->builtin)
		creating_extension = false;
	PG_TRY();
	{
		ret = SPI_execute(sql, false, 0);
	}
	PG_FINALLY();
	{
		creating_extension = save;
	}
	PG_END_TRY();
	if (ret < 0)
		elog(ERROR, "could not build dashboard \"%s\": %s", def->name, SPI_result_code_string(ret));
}

/* A relation built for a built-in dashboard outside the script joins the extension. */
static void
alx_membership(const AlxDashDef *def, Oid relid)
{
	ObjectAddress obj;
	ObjectAddress ext;

	if (!def->builtin || creating_extension)
		return;
	ext.classId = ExtensionRelationId;
	ext.objectId = AlxExtensionOid();
	ext.objectSubId = 0;
	if (getExtensionOfObject(RelationRelationId, relid) == ext.objectId)
		return;
	obj.classId = RelationRelationId;
	obj.objectId = relid;
	obj.objectSubId = 0;
	recordDependencyOn(&obj, &ext, DEPENDENCY_EXTENSION);
}

/* A relation of ours with another owner: taken over only by ALTER EXTENSION UPDATE (1.1 objects). */
static void
alx_own(const AlxDashDef *def, AlxDashObject which, Oid relid)
{
	Oid			owner = AlxExtensionOwner();
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			cur;
	char	   *ownername;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	cur = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	if (cur == owner)
		return;
	if (!creating_extension)
		alx_damaged(def, AlxDashObjectName(def, which), "It does not belong to the extension owner.");
	ownername = GetUserNameFromId(owner, false);
	alx_ddl(def, psprintf("ALTER %s %s OWNER TO %s", which == ALX_DASH_VIEW ? "VIEW" : "TABLE",
						  AlxDashQualified(def, which), quote_identifier(ownername)));
}

static void
alx_comment(const AlxDashDef *def, AlxDashObject which, const char *text)
{
	alx_ddl(def, psprintf("COMMENT ON %s %s IS %s", which == ALX_DASH_VIEW ? "VIEW" : "TABLE",
						  AlxDashQualified(def, which), quote_literal_cstr(text)));
}

static bool
alx_has_trigger(Oid relid, const char *name)
{
	Relation	rel = table_open(relid, AccessShareLock);
	bool		found = false;

	for (int i = 0; rel->trigdesc != NULL && i < rel->trigdesc->numtriggers; i++)
		found |= strcmp(rel->trigdesc->triggers[i].tgname, name) == 0;
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The capture triggers of the base table.  A user table gets them here; a
 * table of the extension must have been given them by its schema file.
 */
static void
alx_build_triggers(const AlxDashDef *def)
{
	char	   *base = quote_qualified_identifier(get_namespace_name(get_rel_namespace(def->base_relid)),
												  get_rel_name(def->base_relid));

	if (AlxDashIsExtensionTable(def->base_relid))
	{
		if (!alx_has_trigger(def->base_relid, "alx_dashboard_flush") ||
			!alx_has_trigger(def->base_relid, "alx_dashboard_truncate"))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table %s does not capture dashboard changes", base),
					 errdetail("Tables of the extension declare their capture triggers in its SQL script; this one has none.")));
		return;
	}
	if (!alx_has_trigger(def->base_relid, "alx_dashboard_capture"))
		alx_ddl(def, psprintf("CREATE TRIGGER alx_dashboard_capture AFTER INSERT OR UPDATE OR DELETE ON %s "
							  "FOR EACH ROW EXECUTE FUNCTION alexandrite.dashboard_capture()", base));
	if (!alx_has_trigger(def->base_relid, "alx_dashboard_flush"))
		alx_ddl(def, psprintf("CREATE TRIGGER alx_dashboard_flush AFTER INSERT OR UPDATE OR DELETE ON %s "
							  "FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture()", base));
	if (!alx_has_trigger(def->base_relid, "alx_dashboard_truncate"))
		alx_ddl(def, psprintf("CREATE TRIGGER alx_dashboard_truncate AFTER TRUNCATE ON %s "
							  "FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture()", base));
}

/* One table: created when missing, else checked (and taken over during an upgrade). */
static void
alx_build_table(const AlxDashDef *def, AlxDashObject which, bool replace)
{
	Oid			relid = AlxDashObjectRelid(def, which, false);

	if (OidIsValid(relid) && !replace)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"%s\" already exists", AlxDashObjectName(def, which))));
	if (!OidIsValid(relid))
	{
		alx_ddl(def, which == ALX_DASH_SUMMARY ? AlxDashSqlSummaryTable(def) : AlxDashSqlDeltaTable(def));
		CommandCounterIncrement();
		relid = AlxDashObjectRelid(def, which, false);
	}
	alx_own(def, which, relid);
	CommandCounterIncrement();
	(void) AlxDashObjectRelid(def, which, true);
	alx_membership(def, relid);
	alx_comment(def, which, which == ALX_DASH_SUMMARY
				? psprintf("folded state of dashboard %s, one row per group (written by the fold, rebuild and TRUNCATE only)", def->name)
				: psprintf("pending signed deltas of dashboard %s (appended by the capture, emptied by the fold)", def->name));
}

/*
 * Builds (or, with replace, completes and checks) the objects of a
 * dashboard: summary and delta tables, the read view, the capture triggers.
 */
void
AlxDashBuildObjects(const AlxDashDef *def, bool replace)
{
	Oid			view;
	StringInfoData keys;

	alx_build_table(def, ALX_DASH_SUMMARY, replace);
	alx_build_table(def, ALX_DASH_DELTA, replace);

	view = AlxDashObjectRelid(def, ALX_DASH_VIEW, false);
	if (OidIsValid(view) && !replace)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"%s\" already exists", AlxDashObjectName(def, ALX_DASH_VIEW))));
	if (OidIsValid(view))
		alx_own(def, ALX_DASH_VIEW, view);
	alx_ddl(def, AlxDashSqlView(def));
	CommandCounterIncrement();
	view = AlxDashObjectRelid(def, ALX_DASH_VIEW, true);
	alx_membership(def, view);
	initStringInfo(&keys);
	for (int i = 0; i < def->nkeys; i++)
		appendStringInfo(&keys, "%s%s", i ? ", " : "", def->key_names[i]);
	alx_comment(def, ALX_DASH_VIEW,
				psprintf("dashboard %s: rows of %s grouped by %s, exact at the reading transaction's snapshot",
						 def->name, get_rel_name(def->base_relid), keys.data));

	alx_build_triggers(def);
}

/* Drops the objects of a dashboard; the capture triggers go with a user table's last one. */
void
AlxDashDropObjects(const AlxDashDef *def)
{
	List	   *others;

	if (OidIsValid(AlxDashObjectRelid(def, ALX_DASH_VIEW, false)))
		alx_ddl(def, psprintf("DROP VIEW %s", AlxDashQualified(def, ALX_DASH_VIEW)));
	if (OidIsValid(AlxDashObjectRelid(def, ALX_DASH_SUMMARY, false)))
		alx_ddl(def, psprintf("DROP TABLE %s", AlxDashQualified(def, ALX_DASH_SUMMARY)));
	if (OidIsValid(AlxDashObjectRelid(def, ALX_DASH_DELTA, false)))
		alx_ddl(def, psprintf("DROP TABLE %s", AlxDashQualified(def, ALX_DASH_DELTA)));

	others = AlxDashLoad(def->base_relid);
	if (AlxDashIsExtensionTable(def->base_relid))
		return;
	for (ListCell *lc = list_head(others); lc != NULL; lc = lnext(others, lc))
		if (((AlxDashDef *) lfirst(lc))->id != def->id)
			return;
	{
		char	   *base = quote_qualified_identifier(get_namespace_name(get_rel_namespace(def->base_relid)),
													  get_rel_name(def->base_relid));

		for (int i = 0; i < lengthof(alx_triggers); i++)
			if (alx_has_trigger(def->base_relid, alx_triggers[i]))
				alx_ddl(def, psprintf("DROP TRIGGER %s ON %s", alx_triggers[i], base));
	}
}
