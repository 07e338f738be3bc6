/*-------------------------------------------------------------------------
 *
 * sqlgen.c
 *	  The statements of a dashboard, generated from its validated definition.
 *
 * Every statement that touches a dashboard's objects is written here, from
 * an AlxDashDef that define.c has validated: identifiers are quoted, the
 * expressions are deparsed from their validated trees (never pasted from
 * text), and values a caller supplies are parameters.  The layout of the
 * summary and delta tables is described here and nowhere else (registry.c
 * and capture.c write rows in this order):
 *
 *	 summary:  keys..., count, sums..., horizon counts...
 *	 delta:    keys..., [alx_due_bucket], count, sums..., logged_at
 *
 * Callers run these with search_path pinned to pg_catalog, pg_temp and as
 * the extension owner: deparsing inlines the extension's SQL functions
 * (alexandrite.is_open) only where their owner may execute them, so that a
 * read view does not need EXECUTE on them from its readers.
 *
 * IDENTIFICATION
 *	  src/dashboard/sqlgen.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"

#include "alexandrite.h"
#include "dashboard/dashboard.h"

#define Q(s) quote_identifier(s)

/* The base table as a FROM item: ONLY for a plain table (inheritance children are not captured). */
static char *
alx_base_sql(const AlxDashDef *def)
{
	return psprintf("%s%s", def->base_relkind == 'p' ? "" : "ONLY ",
					quote_qualified_identifier(get_namespace_name(get_rel_namespace(def->base_relid)),
											   get_rel_name(def->base_relid)));
}

/* An expression over the base row aliased b, with the extension's SQL functions inlined. */
static char *
alx_expr_sql(const AlxDashDef *def, Node *expr, bool inline_functions)
{
	Node	   *e = (Node *) copyObject(expr);

	if (inline_functions)
		e = (Node *) expression_planner((Expr *) e);
	return deparse_expression(e, deparse_context_for("b", def->base_relid), true, false);
}

static char *
alx_type_sql(Oid type, int32 typmod)
{
	return format_type_extended(type, typmod, FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
}

/* COLLATE clause of a key whose collation is not its type's default */
static char *
alx_collate_sql(const AlxDashDef *def, int i)
{
	Oid			coll = def->key_colls[i];

	if (!OidIsValid(coll) || coll == get_typcollation(def->key_types[i]))
		return "";
	return psprintf(" COLLATE %s", generate_collation_name(coll));
}

static char *
alx_interval_sql(const Interval *h)
{
	return psprintf("%s::pg_catalog.interval",
					quote_literal_cstr(DatumGetCString(DirectFunctionCall1(interval_out,
																		   IntervalPGetDatum((Interval *) h)))));
}

/* "p.k1, p.k2" (prefix may be "") */
static void
alx_key_list(StringInfo buf, const AlxDashDef *def, const char *prefix)
{
	for (int i = 0; i < def->nkeys; i++)
		appendStringInfo(buf, "%s%s%s", i ? ", " : "", prefix, Q(def->key_names[i]));
}

/* ", p.s1, p.s2" */
static void
alx_col_list(StringInfo buf, char **names, int n, const char *prefix)
{
	for (int i = 0; i < n; i++)
		appendStringInfo(buf, ", %s%s", prefix, Q(names[i]));
}

/*
 * The counted rows of the base table, as a subquery aliased r: keys by
 * name, [sums], [alx_due], filtered.
 */
static char *
alx_rows_sql(const AlxDashDef *def, bool with_sums)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "(SELECT ");
	for (int i = 0; i < def->nkeys; i++)
		appendStringInfo(&buf, "%s%s AS %s", i ? ", " : "", alx_expr_sql(def, def->keys[i], true),
						 Q(def->key_names[i]));
	/*
	 * Each value is converted to numeric before it is summed, as the capture
	 * converts it: the deparsed expression leaves out the implicit cast, and
	 * sum() of a float8 column would add in float8, whose rounding depends on
	 * the order of the rows (0.1 + 0.2 is 0.30000000000000004 there, 0.3 in
	 * numeric).
	 */
	for (int i = 0; with_sums && i < def->nsums; i++)
		appendStringInfo(&buf, ", (%s)::pg_catalog.numeric AS %s", alx_expr_sql(def, def->sums[i], true),
						 Q(def->sum_names[i]));
	if (def->due != NULL)
		appendStringInfo(&buf, ", %s AS alx_due", alx_expr_sql(def, def->due, true));
	appendStringInfo(&buf, " FROM %s b", alx_base_sql(def));
	if (def->filter != NULL)
		appendStringInfo(&buf, " WHERE %s", alx_expr_sql(def, def->filter, true));
	appendStringInfoString(&buf, ") r");
	return buf.data;
}

/* The watermark of a dashboard as a FROM item aliased w (column wm): always one row. */
static char *
alx_watermark_sql(const AlxDashDef *def)
{
	return psprintf("(SELECT (SELECT st.watermark FROM alexandrite.dashboard_state st "
					"WHERE st.dashboard_id OPERATOR(pg_catalog.=) %d) AS wm) w", def->id);
}

/* CREATE TABLE of the summary, with its two indexes. */
char *
AlxDashSqlSummaryTable(const AlxDashDef *def)
{
	StringInfoData buf;
	StringInfoData keys;
	char	   *rel = AlxDashQualified(def, ALX_DASH_SUMMARY);

	initStringInfo(&keys);
	alx_key_list(&keys, def, "");
	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE TABLE %s (", rel);
	for (int i = 0; i < def->nkeys; i++)
		appendStringInfo(&buf, "%s %s%s, ", Q(def->key_names[i]),
						 alx_type_sql(def->key_types[i], def->key_typmods[i]), alx_collate_sql(def, i));
	appendStringInfo(&buf, "%s pg_catalog.int8 NOT NULL", Q(def->count_name));
	for (int i = 0; i < def->nsums; i++)
		appendStringInfo(&buf, ", %s pg_catalog.numeric NOT NULL", Q(def->sum_names[i]));
	for (int i = 0; i < def->nhorizons; i++)
		appendStringInfo(&buf, ", %s pg_catalog.int8 NOT NULL", Q(def->horizon_names[i]));
	/* one row per group, NULL keys included (as GROUP BY); the fold upserts on it */
	appendStringInfo(&buf, "); CREATE UNIQUE INDEX ON %s (%s) NULLS NOT DISTINCT", rel, keys.data);
	/* groups that became empty, removed after each fold */
	appendStringInfo(&buf, "; CREATE INDEX ON %s (%s) WHERE %s OPERATOR(pg_catalog.=) 0",
					 rel, Q(def->count_name), Q(def->count_name));
	return buf.data;
}

/* CREATE TABLE of the delta table: append-only, no index, vacuumed early. */
char *
AlxDashSqlDeltaTable(const AlxDashDef *def)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE TABLE %s (", AlxDashQualified(def, ALX_DASH_DELTA));
	for (int i = 0; i < def->nkeys; i++)
		appendStringInfo(&buf, "%s %s%s, ", Q(def->key_names[i]),
						 alx_type_sql(def->key_types[i], def->key_typmods[i]), alx_collate_sql(def, i));
	if (def->due != NULL)
		appendStringInfoString(&buf, ALX_DASH_DUE_BUCKET " pg_catalog.timestamptz, ");
	appendStringInfo(&buf, "%s pg_catalog.int8", Q(def->count_name));
	for (int i = 0; i < def->nsums; i++)
		appendStringInfo(&buf, ", %s pg_catalog.numeric", Q(def->sum_names[i]));
	appendStringInfoString(&buf, ", " ALX_DASH_LOGGED_AT " pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()) "
						   "WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000, "
						   "autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_insert_scale_factor = 0, "
						   "autovacuum_vacuum_insert_threshold = 100000)");
	return buf.data;
}

/* NULL of a key's type and collation */
static char *
alx_typed_null(const AlxDashDef *def, int i)
{
	return psprintf("NULL::%s%s", alx_type_sql(def->key_types[i], def->key_typmods[i]), alx_collate_sql(def, i));
}

/*
 * A branch that returns nothing but reads every column and function the
 * definition uses: it makes the view depend on them (a column cannot be
 * dropped or retyped under a dashboard, in this database or a restored
 * one), costs nothing (the planner drops it), and, being the first branch,
 * makes every reader lock the base table before the summary and delta
 * tables, in the order TRUNCATE, the fold and rebuild lock them.  It names
 * the columns of the union.
 */
static void
alx_dependency_branch(StringInfo buf, const AlxDashDef *def)
{
	appendStringInfoString(buf, "SELECT ");
	for (int i = 0; i < def->nkeys; i++)
		appendStringInfo(buf, "%s AS %s, ", alx_typed_null(def, i), Q(def->key_names[i]));
	appendStringInfo(buf, "0::pg_catalog.int8 AS %s", Q(def->count_name));
	for (int i = 0; i < def->nsums; i++)
		appendStringInfo(buf, ", 0::pg_catalog.numeric AS %s", Q(def->sum_names[i]));
	for (int i = 0; i < def->nhorizons; i++)
		appendStringInfo(buf, ", 0::pg_catalog.int8 AS %s", Q(def->horizon_names[i]));
	appendStringInfo(buf, " FROM %s b WHERE false", alx_base_sql(def));
	for (int i = 0; i < def->nkeys; i++)
		appendStringInfo(buf, " AND (%s) IS NULL", alx_expr_sql(def, def->keys[i], false));
	for (int i = 0; i < def->nsums; i++)
		appendStringInfo(buf, " AND (%s) IS NULL", alx_expr_sql(def, def->sums[i], false));
	if (def->due != NULL)
		appendStringInfo(buf, " AND (%s) IS NULL", alx_expr_sql(def, def->due, false));
	if (def->filter != NULL)
		appendStringInfo(buf, " AND %s", alx_expr_sql(def, def->filter, false));
}

/* The delta branch of the read view: pending deltas, counted in a horizon if due before watermark + h. */
static void
alx_view_delta_branch(StringInfo buf, const AlxDashDef *def)
{
	appendStringInfoString(buf, " UNION ALL SELECT ");
	alx_key_list(buf, def, "d.");
	appendStringInfo(buf, ", d.%s", Q(def->count_name));
	alx_col_list(buf, def->sum_names, def->nsums, "d.");
	for (int i = 0; i < def->nhorizons; i++)
		appendStringInfo(buf, ", CASE WHEN d." ALX_DASH_DUE_BUCKET " OPERATOR(pg_catalog.<) "
						 "(w.wm OPERATOR(pg_catalog.+) %s) THEN d.%s ELSE 0 END",
						 alx_interval_sql(&def->horizons[i]), Q(def->count_name));
	appendStringInfo(buf, " FROM %s d", AlxDashQualified(def, ALX_DASH_DELTA));
	if (def->due != NULL)
		appendStringInfo(buf, ", %s", alx_watermark_sql(def));
}

/*
 * The probe of horizon i: rows due in [watermark + h, now() + h), counted
 * positive, or in [now() + h, watermark + h) counted negative when the
 * reader's clock is behind the watermark.  An index on the due expression
 * keeps it to the minutes since the last fold.
 */
static void
alx_view_probe_branch(StringInfo buf, const AlxDashDef *def, int h)
{
	char	   *hs = alx_interval_sql(&def->horizons[h]);

	appendStringInfoString(buf, " UNION ALL SELECT ");
	alx_key_list(buf, def, "r.");
	appendStringInfoString(buf, ", 0::pg_catalog.int8");
	for (int i = 0; i < def->nsums; i++)
		appendStringInfoString(buf, ", 0::pg_catalog.numeric");
	for (int i = 0; i < def->nhorizons; i++)
		appendStringInfoString(buf, i == h
							   ? ", ((CASE WHEN pg_catalog.now() OPERATOR(pg_catalog.>=) w.wm THEN 1 ELSE -1 END) "
							   "OPERATOR(pg_catalog.*) pg_catalog.count(*))::pg_catalog.int8"
							   : ", 0::pg_catalog.int8");
	appendStringInfo(buf, " FROM %s, %s WHERE r.alx_due OPERATOR(pg_catalog.>=) "
					 "(LEAST(w.wm, pg_catalog.now()) OPERATOR(pg_catalog.+) %s) "
					 "AND r.alx_due OPERATOR(pg_catalog.<) (GREATEST(w.wm, pg_catalog.now()) OPERATOR(pg_catalog.+) %s) "
					 "GROUP BY ", alx_rows_sql(def, false), alx_watermark_sql(def), hs, hs);
	alx_key_list(buf, def, "r.");
	appendStringInfoString(buf, ", w.wm");
}

/*
 * The read view: summary (+) pending deltas (+) the probes of the
 * time-relative counts, grouped; exact at the reader's snapshot, folded or
 * not.  Owner's rights: readers need SELECT on the view only.
 */
char *
AlxDashSqlView(const AlxDashDef *def)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE OR REPLACE VIEW %s AS SELECT ", AlxDashQualified(def, ALX_DASH_VIEW));
	alx_key_list(&buf, def, "u.");
	appendStringInfo(&buf, ", pg_catalog.sum(u.%s)::pg_catalog.int8 AS %s", Q(def->count_name), Q(def->count_name));
	for (int i = 0; i < def->nsums; i++)
		appendStringInfo(&buf, ", pg_catalog.sum(u.%s) AS %s", Q(def->sum_names[i]), Q(def->sum_names[i]));
	for (int i = 0; i < def->nhorizons; i++)
		appendStringInfo(&buf, ", pg_catalog.sum(u.%s)::pg_catalog.int8 AS %s",
						 Q(def->horizon_names[i]), Q(def->horizon_names[i]));
	appendStringInfoString(&buf, " FROM (");
	alx_dependency_branch(&buf, def);
	appendStringInfoString(&buf, " UNION ALL SELECT ");
	alx_key_list(&buf, def, "s.");
	appendStringInfo(&buf, ", s.%s", Q(def->count_name));
	alx_col_list(&buf, def->sum_names, def->nsums, "s.");
	alx_col_list(&buf, def->horizon_names, def->nhorizons, "s.");
	appendStringInfo(&buf, " FROM %s s", AlxDashQualified(def, ALX_DASH_SUMMARY));
	alx_view_delta_branch(&buf, def);
	for (int h = 0; h < def->nhorizons; h++)
		alx_view_probe_branch(&buf, def, h);
	appendStringInfoString(&buf, ") u GROUP BY ");
	alx_key_list(&buf, def, "u.");
	appendStringInfo(&buf, " HAVING pg_catalog.sum(u.%s) OPERATOR(pg_catalog.<>) 0", Q(def->count_name));
	return buf.data;
}

/*
 * The GROUP BY of the base table: keys, count, sums, and the horizon
 * counts as of at_time (an SQL expression: "$1", "pg_catalog.now()").
 */
char *
AlxDashSqlAggregate(const AlxDashDef *def, const char *at_time)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "SELECT ");
	alx_key_list(&buf, def, "r.");
	appendStringInfoString(&buf, ", pg_catalog.count(*)::pg_catalog.int8");
	for (int i = 0; i < def->nsums; i++)
		appendStringInfo(&buf, ", COALESCE(pg_catalog.sum(r.%s), 0::pg_catalog.numeric)", Q(def->sum_names[i]));
	for (int i = 0; i < def->nhorizons; i++)
		appendStringInfo(&buf, ", (pg_catalog.count(*) FILTER (WHERE r.alx_due OPERATOR(pg_catalog.<) "
						 "((%s)::pg_catalog.timestamptz OPERATOR(pg_catalog.+) %s)))::pg_catalog.int8",
						 at_time, alx_interval_sql(&def->horizons[i]));
	appendStringInfo(&buf, " FROM %s GROUP BY ", alx_rows_sql(def, true));
	alx_key_list(&buf, def, "r.");
	return buf.data;
}

/* Fill an empty summary from the base table, horizons as of $1 (the watermark). */
char *
AlxDashSqlPopulate(const AlxDashDef *def)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "INSERT INTO %s (", AlxDashQualified(def, ALX_DASH_SUMMARY));
	alx_key_list(&buf, def, "");
	appendStringInfo(&buf, ", %s", Q(def->count_name));
	alx_col_list(&buf, def->sum_names, def->nsums, "");
	alx_col_list(&buf, def->horizon_names, def->nhorizons, "");
	appendStringInfo(&buf, ") %s", AlxDashSqlAggregate(def, "$1"));
	return buf.data;
}

/* ", t.s = t.s + excluded.s" for each column */
static void
alx_upsert_set(StringInfo buf, char **names, int n)
{
	for (int i = 0; i < n; i++)
		appendStringInfo(buf, ", %s = t.%s OPERATOR(pg_catalog.+) excluded.%s", Q(names[i]), Q(names[i]), Q(names[i]));
}

/* The rows the fold adds to the summary: deltas, and (with horizons) the rows that came due. */
static void
alx_fold_input(StringInfo buf, const AlxDashDef *def)
{
	appendStringInfoString(buf, "SELECT ");
	alx_key_list(buf, def, "d.");
	appendStringInfo(buf, ", d.%s", Q(def->count_name));
	alx_col_list(buf, def->sum_names, def->nsums, "d.");
	for (int i = 0; i < def->nhorizons; i++)
		appendStringInfo(buf, ", CASE WHEN d." ALX_DASH_DUE_BUCKET " OPERATOR(pg_catalog.<) "
						 "(w.w_old OPERATOR(pg_catalog.+) %s) THEN d.%s ELSE 0 END AS %s",
						 alx_interval_sql(&def->horizons[i]), Q(def->count_name), Q(def->horizon_names[i]));
	appendStringInfo(buf, ", 1 AS alx_n FROM d%s", def->due != NULL ? ", w" : "");
	for (int h = 0; h < def->nhorizons; h++)
	{
		char	   *hs = alx_interval_sql(&def->horizons[h]);

		appendStringInfoString(buf, " UNION ALL SELECT ");
		alx_key_list(buf, def, "r.");
		appendStringInfoString(buf, ", 0::pg_catalog.int8");
		for (int i = 0; i < def->nsums; i++)
			appendStringInfoString(buf, ", 0::pg_catalog.numeric");
		for (int i = 0; i < def->nhorizons; i++)
			appendStringInfoString(buf, i == h ? ", pg_catalog.count(*)" : ", 0::pg_catalog.int8");
		appendStringInfo(buf, ", 0 FROM %s, w WHERE r.alx_due OPERATOR(pg_catalog.>=) (w.w_old OPERATOR(pg_catalog.+) %s) "
						 "AND r.alx_due OPERATOR(pg_catalog.<) (w.w_new OPERATOR(pg_catalog.+) %s) GROUP BY ",
						 alx_rows_sql(def, false), hs, hs);
		alx_key_list(buf, def, "r.");
	}
}

/*
 * The fold, one statement and one snapshot: move the visible deltas into
 * the summary and (with horizons) the watermark to $1, the current minute,
 * adding the rows that came due in between.  Returns the delta rows folded.
 */
char *
AlxDashSqlFold(const AlxDashDef *def)
{
	StringInfoData buf;
	StringInfoData keys;
	StringInfoData cols;

	initStringInfo(&keys);
	alx_key_list(&keys, def, "");
	initStringInfo(&cols);
	appendStringInfo(&cols, "%s, %s", keys.data, Q(def->count_name));
	alx_col_list(&cols, def->sum_names, def->nsums, "");
	alx_col_list(&cols, def->horizon_names, def->nhorizons, "");

	initStringInfo(&buf);
	appendStringInfoString(&buf, "WITH ");
	if (def->due != NULL)
		appendStringInfo(&buf, "w AS (SELECT w.wm AS w_old, GREATEST(w.wm, $1) AS w_new FROM %s), ",
						 alx_watermark_sql(def));
	appendStringInfo(&buf, "d AS (DELETE FROM %s RETURNING *), a AS (SELECT %s, pg_catalog.sum(%s)::pg_catalog.int8 AS %s",
					 AlxDashQualified(def, ALX_DASH_DELTA), keys.data, Q(def->count_name), Q(def->count_name));
	for (int i = 0; i < def->nsums; i++)
		appendStringInfo(&buf, ", pg_catalog.sum(%s) AS %s", Q(def->sum_names[i]), Q(def->sum_names[i]));
	for (int i = 0; i < def->nhorizons; i++)
		appendStringInfo(&buf, ", pg_catalog.sum(%s)::pg_catalog.int8 AS %s",
						 Q(def->horizon_names[i]), Q(def->horizon_names[i]));
	appendStringInfoString(&buf, ", pg_catalog.sum(alx_n) AS alx_n FROM (");
	alx_fold_input(&buf, def);
	appendStringInfo(&buf, ") x GROUP BY %s), u AS (INSERT INTO %s AS t (%s) SELECT %s FROM a "
					 "ON CONFLICT (%s) DO UPDATE SET %s = t.%s OPERATOR(pg_catalog.+) excluded.%s",
					 keys.data, AlxDashQualified(def, ALX_DASH_SUMMARY), cols.data, cols.data,
					 keys.data, Q(def->count_name), Q(def->count_name), Q(def->count_name));
	alx_upsert_set(&buf, def->sum_names, def->nsums);
	alx_upsert_set(&buf, def->horizon_names, def->nhorizons);
	appendStringInfoString(&buf, ")");
	if (def->due != NULL)
		appendStringInfo(&buf, ", m AS (UPDATE alexandrite.dashboard_state st SET watermark = w.w_new FROM w "
						 "WHERE st.dashboard_id OPERATOR(pg_catalog.=) %d AND st.watermark IS DISTINCT FROM w.w_new)",
						 def->id);
	appendStringInfoString(&buf, " SELECT COALESCE(pg_catalog.sum(alx_n), 0)::pg_catalog.int8 FROM a");
	return buf.data;
}

/*
 * Reconcile: the read view against the GROUP BY of the base table in one
 * snapshot; returns (groups of the base table, groups that differ).
 */
char *
AlxDashSqlReconcile(const AlxDashDef *def)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "WITH v AS (SELECT ");
	alx_key_list(&buf, def, "");
	appendStringInfo(&buf, ", %s", Q(def->count_name));
	alx_col_list(&buf, def->sum_names, def->nsums, "");
	alx_col_list(&buf, def->horizon_names, def->nhorizons, "");
	appendStringInfo(&buf, " FROM %s), b AS (%s), "
					 "x AS ((SELECT * FROM v EXCEPT ALL SELECT * FROM b) UNION ALL (SELECT * FROM b EXCEPT ALL SELECT * FROM v)) "
					 "SELECT (SELECT pg_catalog.count(*) FROM b), (SELECT pg_catalog.count(*) FROM x)",
					 AlxDashQualified(def, ALX_DASH_VIEW), AlxDashSqlAggregate(def, "pg_catalog.now()"));
	return buf.data;
}
