/*-------------------------------------------------------------------------
 *
 * define.c
 *	  Parse and validate a dashboard definition.
 *
 * Every definition goes through AlxDashDefine(): the one given to
 * create_dashboard() and every registry row loaded by the capture, the fold,
 * rebuild and reconcile.  Nothing of the registry is used before it has
 * passed here again, so a row edited by hand or restored from a dump is held
 * to the same rules as a new one.
 *
 * Expressions (group keys, sums, filter, due) are parsed one by one as a
 * single expression over the base table, with search_path pinned to
 * pg_catalog, pg_temp, and then walked node by node against an allow-list:
 * columns of the base row, constants, casts, boolean, CASE and NULL tests,
 * and calls of immutable functions and operators that are built in (OID
 * below FirstNormalObjectId) or belong to the extension.  No subqueries,
 * aggregates, window or set-returning functions, no system columns.  So the
 * capture can evaluate them for any writer, under any identity, without
 * running code that a user wrote.  Types are checked here, once: sums must
 * convert to numeric by an implicit or assignment cast, the due expression
 * must be a timestamptz, the filter a boolean, keys sortable.
 *
 * The registry keeps the canonical text of each expression (deparsed from
 * the validated tree), which parses back to the same tree.
 *
 * IDENTIFICATION
 *	  src/dashboard/define.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/transam.h"
#include "catalog/catalog.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/typcache.h"

#include "alexandrite.h"
#include "dashboard/dashboard.h"

/* What is being parsed, for error messages and their context. */
typedef struct AlxExprCtx
{
	const char *dash;			/* dashboard name */
	const char *what;			/* e.g. group key "status" */
	char	   *sql;			/* SELECT <expr>, the text parsed */
	Oid			extoid;
	Oid			execute_for;	/* AlxDashArgs.execute_for */
} AlxExprCtx;

/* AlxDashArgs.execute_for of the definition being validated (set by every AlxDashDefine) */
static Oid	define_execute_for = InvalidOid;

static const char *const alx_search_path = "pg_catalog, pg_temp";

/* The OID of extension alexandrite (an error if it is not installed). */
Oid
AlxExtensionOid(void)
{
	return get_extension_oid(ALX_EXTENSION_NAME, false);
}

/*
 * The minute a due time falls in: timestamps count microseconds from
 * 2000-01-01 00:00 UTC, the origin of the buckets; infinities are their own
 * bucket.  The one definition of the due-time resolution of deltas and
 * watermarks (alexandrite.dashboard_due_bucket() calls it too).
 */
TimestampTz
AlxDueMinute(TimestampTz t)
{
	int64		rem;

	if (TIMESTAMP_NOT_FINITE(t))
		return t;
	rem = t % USECS_PER_MINUTE;
	if (rem < 0)
		rem += USECS_PER_MINUTE;
	return t - rem;
}

/* A dashboard name: 1 to 40 of [a-z0-9_], starting with a letter. */
void
AlxDashCheckName(const char *name)
{
	size_t		len = name ? strlen(name) : 0;
	bool		ok = len >= 1 && len <= ALX_DASH_NAME_MAX && name[0] >= 'a' && name[0] <= 'z';

	for (size_t i = 1; ok && i < len; i++)
		ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '_';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid dashboard name \"%s\"", name ? name : "(null)"),
				 errhint("A name is 1 to 40 lower-case letters, digits or underscores, starting with a letter.")));
}

/* A column name of the generated objects: a lower-case identifier, not reserved. */
static void
alx_check_column_name(const char *dash, const char *col)
{
	size_t		len = col ? strlen(col) : 0;
	bool		ok = len >= 1 && len < NAMEDATALEN &&
		((col[0] >= 'a' && col[0] <= 'z') || col[0] == '_');

	for (size_t i = 1; ok && i < len; i++)
		ok = (col[i] >= 'a' && col[i] <= 'z') || (col[i] >= '0' && col[i] <= '9') || col[i] == '_';
	if (ok && (strncmp(col, "alx_", 4) == 0 || strcmp(col, ALX_DASH_LOGGED_AT) == 0))
		ok = false;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid column name \"%s\" in dashboard \"%s\"", col ? col : "(null)", dash),
				 errhint("Column names are lower-case identifiers; \"logged_at\" and names starting with \"alx_\" are reserved.")));
}

/* true for a plain lower-case identifier (a column reference used as a name) */
static bool
alx_is_plain_identifier(const char *s)
{
	if (s == NULL || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (const char *p = s + 1; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return strlen(s) < NAMEDATALEN - 4;
}

/* Reports parse errors against the expression, not the caller's statement. */
static void
alx_expr_errcontext(void *arg)
{
	AlxExprCtx *cx = (AlxExprCtx *) arg;
	int			pos = geterrposition();

	if (pos > 0 && cx->sql != NULL)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery(cx->sql);
	}
	errcontext("%s of dashboard \"%s\"", cx->what, cx->dash);
}

static void
alx_not_allowed(AlxExprCtx *cx, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s of dashboard \"%s\" cannot be maintained incrementally", cx->what, cx->dash),
			 errdetail("%s", detail),
			 errhint("Group keys, sums, filter and due are expressions over the columns of one row of the table.")));
}

/* A function the capture may call: immutable, built in or the extension's own. */
static void
alx_check_function(Oid funcid, AlxExprCtx *cx)
{
	if (!OidIsValid(funcid))
		elog(ERROR, "dashboard expression without a function");
	if (funcid >= FirstNormalObjectId &&
		getExtensionOfObject(ProcedureRelationId, funcid) != cx->extoid)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("function %s is not allowed in a dashboard expression", format_procedure(funcid)),
				 errdetail("Dashboard expressions may call only built-in functions and those of extension \"%s\": every writer of the table evaluates them.",
						   ALX_EXTENSION_NAME)));
	if (OidIsValid(cx->execute_for) &&
		pg_proc_aclcheck(funcid, cx->execute_for, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(funcid)),
				 errdetail("A dashboard expression may call only functions its creator may execute.")));
	if (func_volatile(funcid) != PROVOLATILE_IMMUTABLE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("%s of dashboard \"%s\" is not immutable", cx->what, cx->dash),
				 errdetail("Function %s is not immutable; a row must count the same when it is removed as when it was added.",
						   format_procedure(funcid)),
				 errhint("Time-relative figures belong in due and horizons, not in keys, sums or the filter.")));
}

/* The allow-list walk over an analyzed, coerced expression. */
static bool
alx_check_walker(Node *node, void *context)
{
	AlxExprCtx *cx = (AlxExprCtx *) context;

	if (node == NULL)
		return false;
	check_stack_depth();
	switch (nodeTag(node))
	{
		case T_Var:
			{
				Var		   *var = (Var *) node;

				if (var->varlevelsup != 0 || var->varno != 1 || var->varattno <= 0)
					alx_not_allowed(cx, "System columns and whole-row references are not available to the capture.");
				return false;
			}
		case T_Const:
		case T_CaseTestExpr:
			return false;
		case T_FuncExpr:
			if (((FuncExpr *) node)->funcretset)
				alx_not_allowed(cx, "Set-returning functions are not allowed.");
			alx_check_function(((FuncExpr *) node)->funcid, cx);
			break;
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
			set_opfuncid((OpExpr *) node);
			if (((OpExpr *) node)->opretset)
				alx_not_allowed(cx, "Set-returning operators are not allowed.");
			alx_check_function(((OpExpr *) node)->opfuncid, cx);
			break;
		case T_ScalarArrayOpExpr:
			set_sa_opfuncid((ScalarArrayOpExpr *) node);
			alx_check_function(((ScalarArrayOpExpr *) node)->opfuncid, cx);
			break;
		case T_MinMaxExpr:
			{
				TypeCacheEntry *tce = lookup_type_cache(((MinMaxExpr *) node)->minmaxtype,
														TYPECACHE_CMP_PROC);

				alx_check_function(tce->cmp_proc, cx);
				break;
			}
		case T_CoerceViaIO:
			{
				CoerceViaIO *io = (CoerceViaIO *) node;
				Oid			outfn;
				Oid			infn;
				Oid			ioparam;
				bool		varlena;

				getTypeOutputInfo(exprType((Node *) io->arg), &outfn, &varlena);
				getTypeInputInfo(io->resulttype, &infn, &ioparam);
				alx_check_function(outfn, cx);
				alx_check_function(infn, cx);
				break;
			}
		case T_SubscriptingRef:
			alx_check_function(get_typsubscript(((SubscriptingRef *) node)->refcontainertype, NULL), cx);
			break;
		case T_BoolExpr:
		case T_NullTest:
		case T_BooleanTest:
		case T_CaseExpr:
		case T_CaseWhen:
		case T_CoalesceExpr:
		case T_RelabelType:
		case T_CollateExpr:
		case T_ArrayExpr:
		case T_ArrayCoerceExpr:
		case T_FieldSelect:
			break;
		case T_Aggref:
		case T_WindowFunc:
		case T_GroupingFunc:
			alx_not_allowed(cx, "Aggregate and window functions are not allowed.");
			break;
		case T_SubLink:
			alx_not_allowed(cx, "Subqueries are not allowed.");
			break;
		default:
			alx_not_allowed(cx, psprintf("Expression node %d is not supported.", (int) nodeTag(node)));
	}
	return expression_tree_walker(node, alx_check_walker, context);
}

/* Collects the base-table columns an expression reads. */
static bool
alx_attnos_walker(Node *node, void *context)
{
	Bitmapset **attnos = (Bitmapset **) context;

	if (node == NULL)
		return false;
	if (IsA(node, Var))
	{
		*attnos = bms_add_member(*attnos, ((Var *) node)->varattno);
		return false;
	}
	return expression_tree_walker(node, alx_attnos_walker, context);
}

/*
 * Parse one expression over the base row: exactly one expression, nothing
 * around it, no aggregate, window function, set-returning function or
 * subquery.  Returns the analyzed tree and its ParseState (for coercion).
 */
static Node *
alx_parse_expr(Relation rel, const char *text, AlxExprCtx *cx, ParseState **pstate_out)
{
	ParseState *pstate = make_parsestate(NULL);
	ParseNamespaceItem *nsitem;
	List	   *raws;
	SelectStmt *sel;
	ResTarget  *rt;
	Node	   *expr;

	if (text == NULL || text[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s of dashboard \"%s\" is empty", cx->what, cx->dash)));
	cx->sql = psprintf("SELECT %s", text);
	pstate->p_sourcetext = cx->sql;
	nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock, NULL, false, false);
	addNSItemToQuery(pstate, nsitem, false, true, true);

	raws = raw_parser(cx->sql, RAW_PARSE_DEFAULT);
	sel = (list_length(raws) == 1 && IsA(linitial_node(RawStmt, raws)->stmt, SelectStmt))
		? (SelectStmt *) linitial_node(RawStmt, raws)->stmt : NULL;
	if (sel == NULL || sel->op != SETOP_NONE || sel->fromClause != NIL || sel->whereClause != NULL ||
		sel->groupClause != NIL || sel->havingClause != NULL || sel->windowClause != NIL ||
		sel->distinctClause != NIL || sel->sortClause != NIL || sel->limitCount != NULL ||
		sel->limitOffset != NULL || sel->lockingClause != NIL || sel->withClause != NULL ||
		sel->intoClause != NULL || sel->valuesLists != NIL || list_length(sel->targetList) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s of dashboard \"%s\" is not a single expression", cx->what, cx->dash)));
	rt = linitial_node(ResTarget, sel->targetList);
	if (rt->name != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s of dashboard \"%s\" is not a single expression", cx->what, cx->dash),
				 errhint("Name columns with key_names, sum_names and horizon_names, not with AS.")));

	expr = transformExpr(pstate, rt->val, EXPR_KIND_SELECT_TARGET);
	if (pstate->p_hasAggs || pstate->p_hasWindowFuncs)
		alx_not_allowed(cx, "Aggregate and window functions are not allowed.");
	if (pstate->p_hasTargetSRFs)
		alx_not_allowed(cx, "Set-returning functions are not allowed.");
	if (pstate->p_hasSubLinks)
		alx_not_allowed(cx, "Subqueries are not allowed.");
	*pstate_out = pstate;
	return expr;
}

/* Coerce to the type a part of the definition must have (42804 otherwise). */
static Node *
alx_coerce(ParseState *pstate, Node *expr, Oid target, AlxExprCtx *cx)
{
	Oid			source = exprType(expr);
	Node	   *result;

	if (target == BOOLOID)
		return coerce_to_boolean(pstate, expr, "the dashboard filter");
	result = coerce_to_target_type(pstate, expr, source, target, -1,
								   COERCION_ASSIGNMENT, COERCE_IMPLICIT_CAST, -1);
	if (result == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s of dashboard \"%s\" is of type %s, not %s",
						cx->what, cx->dash, format_type_be(source), format_type_be(target)),
				 target == NUMERICOID
				 ? errhint("Sums are numeric: sum a number, or convert explicitly with ::numeric if every value converts.")
				 : errhint("The due time of a row is a timestamp with time zone.")));
	return result;
}

/*
 * Parse, type, validate and canonicalize one expression.  kind: 'k' key,
 * 's' sum (numeric), 'f' filter (boolean), 'd' due (timestamptz).
 */
static Node *
alx_define_expr(AlxDashDef *def, Relation rel, const char *text, char kind,
				const char *what, char **canonical)
{
	AlxExprCtx	cx;
	ErrorContextCallback errcb;
	ParseState *pstate;
	Node	   *expr;

	cx.dash = def->name;
	cx.what = what;
	cx.sql = NULL;
	cx.extoid = AlxExtensionOid();
	cx.execute_for = define_execute_for;
	errcb.callback = alx_expr_errcontext;
	errcb.arg = &cx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	expr = alx_parse_expr(rel, text, &cx, &pstate);
	if (kind == 'k' && exprType(expr) == UNKNOWNOID)
		expr = coerce_type(pstate, expr, UNKNOWNOID, TEXTOID, -1,
						   COERCION_IMPLICIT, COERCE_IMPLICIT_CAST, -1);
	else if (kind == 's')
		expr = alx_coerce(pstate, expr, NUMERICOID, &cx);
	else if (kind == 'f')
		expr = alx_coerce(pstate, expr, BOOLOID, &cx);
	else if (kind == 'd')
		expr = alx_coerce(pstate, expr, TIMESTAMPTZOID, &cx);
	assign_expr_collations(pstate, expr);
	(void) alx_check_walker(expr, &cx);
	if (kind == 'k' && !OidIsValid(GetDefaultOpClass(exprType(expr), BTREE_AM_OID)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s of dashboard \"%s\" is of type %s, which cannot be grouped",
						what, def->name, format_type_be(exprType(expr))),
				 errdetail("A group key needs a type with a default btree operator class.")));

	(void) alx_attnos_walker(expr, &def->attnos);
	*canonical = deparse_expression(expr,
									deparse_context_for(RelationGetRelationName(rel), RelationGetRelid(rel)),
									false, false);
	error_context_stack = errcb.previous;
	free_parsestate(pstate);
	return expr;
}

/* The base table: a plain or partitioned table of a user or of the extension. */
static Relation
alx_open_base(Oid relid, const char *dash)
{
	Relation	rel = table_open(relid, AccessShareLock);

	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel)),
				 errdetail("A dashboard counts the rows of a table or partitioned table.")));
	if (IsCatalogRelation(rel) || rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot declare dashboard \"%s\" over \"%s\"", dash, RelationGetRelationName(rel)),
				 errdetail("System catalogs and temporary tables cannot have dashboards.")));
	if (rel->rd_rel->relispartition)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot declare dashboard \"%s\" over partition \"%s\"", dash, RelationGetRelationName(rel)),
				 errhint("Declare it over the partitioned table: rows written into any partition are counted.")));
	return rel;
}

/* Column names: given, or derived from the expression; then checked. */
static char *
alx_column_name(const char *given, const char *expr, const char *prefix, int i)
{
	if (given != NULL)
		return pstrdup(given);
	if (prefix[0] == 'k' && alx_is_plain_identifier(expr))
		return pstrdup(expr);
	if (prefix[0] == 's' && alx_is_plain_identifier(expr))
		return psprintf("sum_%s", expr);
	return psprintf("%s%d", prefix, i + 1);
}

static void
alx_check_names(const AlxDashDef *def)
{
	List	   *all = NIL;
	ListCell   *a;

	for (int i = 0; i < def->nkeys; i++)
		all = lappend(all, def->key_names[i]);
	all = lappend(all, def->count_name);
	for (int i = 0; i < def->nsums; i++)
		all = lappend(all, def->sum_names[i]);
	for (int i = 0; i < def->nhorizons; i++)
		all = lappend(all, def->horizon_names[i]);
	foreach(a, all)
	{
		alx_check_column_name(def->name, (char *) lfirst(a));
		for (ListCell *b = lnext(all, a); b != NULL; b = lnext(all, b))
			if (strcmp((char *) lfirst(a), (char *) lfirst(b)) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("column names of dashboard \"%s\" are not distinct", def->name),
						 errdetail("\"%s\" is used twice.", (char *) lfirst(a))));
	}
}

/* Horizons count rows due before watermark + h: h must be whole minutes of fixed length. */
static void
alx_check_horizons(const AlxDashArgs *args)
{
	if ((args->due != NULL) != (args->nhorizons > 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("due and horizons go together"),
				 errhint("A due expression needs at least one horizon, e.g. horizons => ARRAY['0'::interval].")));
	for (int i = 0; i < args->nhorizons; i++)
	{
		Interval   *h = &args->horizons[i];

		if (h->month != 0 || h->day != 0 || h->time % USECS_PER_MINUTE != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid horizon \"%s\"",
							DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(h)))),
					 errhint("Give horizons in whole minutes or hours, e.g. '24 hours', not days or months.")));
		/*
		 * now() + h is computed at every read and fold, for ever.  New
		 * definitions only: one stored by 1.1 must still load (capture
		 * and drop_dashboard load it).
		 */
		if (OidIsValid(define_execute_for) &&
			(h->time > ALX_DASH_HORIZON_MAX_HOURS * USECS_PER_HOUR ||
			 h->time < -ALX_DASH_HORIZON_MAX_HOURS * USECS_PER_HOUR))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("horizon \"%s\" is out of range",
							DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(h)))),
					 errdetail("Horizons are at most %d hours (ten years) either way.", ALX_DASH_HORIZON_MAX_HOURS)));
	}
}

/*
 * Validate a definition; returns it with analyzed expressions, their types
 * and canonical texts.  Raises an error for anything the capture could not
 * maintain exactly, or that would run code a user wrote.
 */
AlxDashDef *
AlxDashDefine(const AlxDashArgs *args)
{
	AlxDashDef *def = palloc0(sizeof(AlxDashDef));
	Relation	rel;
	int			nestlevel;

	define_execute_for = args->execute_for;
	AlxDashCheckName(args->name);
	def->name = pstrdup(args->name);
	if (args->nkeys < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("group_by must list at least one expression, none of them null")));
	alx_check_horizons(args);

	def->count_name = pstrdup(args->count_name ? args->count_name : "count");
	def->nkeys = args->nkeys;
	def->nsums = args->nsums;
	def->nhorizons = args->nhorizons;
	def->key_names = palloc(sizeof(char *) * def->nkeys);
	def->sum_names = palloc(sizeof(char *) * Max(def->nsums, 1));
	def->horizon_names = palloc(sizeof(char *) * Max(def->nhorizons, 1));
	def->horizons = palloc(sizeof(Interval) * Max(def->nhorizons, 1));
	for (int i = 0; i < def->nkeys; i++)
		def->key_names[i] = alx_column_name(args->key_names ? args->key_names[i] : NULL,
											args->key_exprs[i], "key_", i);
	for (int i = 0; i < def->nsums; i++)
		def->sum_names[i] = alx_column_name(args->sum_names ? args->sum_names[i] : NULL,
											args->sum_exprs[i], "sum_", i);
	for (int i = 0; i < def->nhorizons; i++)
	{
		def->horizon_names[i] = alx_column_name(args->horizon_names ? args->horizon_names[i] : NULL,
												NULL, "due_before_", i);
		def->horizons[i] = args->horizons[i];
	}
	alx_check_names(def);

	rel = alx_open_base(args->base_relid, def->name);
	def->base_relid = RelationGetRelid(rel);
	def->base_relkind = rel->rd_rel->relkind;

	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", alx_search_path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	def->keys = palloc(sizeof(Node *) * def->nkeys);
	def->key_sql = palloc(sizeof(char *) * def->nkeys);
	def->key_types = palloc(sizeof(Oid) * def->nkeys);
	def->key_typmods = palloc(sizeof(int32) * def->nkeys);
	def->key_colls = palloc(sizeof(Oid) * def->nkeys);
	def->key_typlen = palloc(sizeof(int16) * def->nkeys);
	def->key_byval = palloc(sizeof(bool) * def->nkeys);
	for (int i = 0; i < def->nkeys; i++)
	{
		def->keys[i] = alx_define_expr(def, rel, args->key_exprs[i], 'k',
									   psprintf("group key \"%s\"", def->key_names[i]), &def->key_sql[i]);
		def->key_types[i] = exprType(def->keys[i]);
		def->key_typmods[i] = exprTypmod(def->keys[i]);
		def->key_colls[i] = exprCollation(def->keys[i]);
		get_typlenbyval(def->key_types[i], &def->key_typlen[i], &def->key_byval[i]);
	}
	def->sums = palloc(sizeof(Node *) * Max(def->nsums, 1));
	def->sum_sql = palloc(sizeof(char *) * Max(def->nsums, 1));
	for (int i = 0; i < def->nsums; i++)
		def->sums[i] = alx_define_expr(def, rel, args->sum_exprs[i], 's',
									   psprintf("sum \"%s\"", def->sum_names[i]), &def->sum_sql[i]);
	if (args->filter != NULL)
		def->filter = alx_define_expr(def, rel, args->filter, 'f', "the filter", &def->filter_sql);
	if (args->due != NULL)
		def->due = alx_define_expr(def, rel, args->due, 'd', "the due expression", &def->due_sql);

	AtEOXact_GUC(true, nestlevel);
	table_close(rel, NoLock);
	return def;
}
