/*-------------------------------------------------------------------------
 *
 * dashboard.h
 *	  Dashboards: the validated definition, the generated objects, capture,
 *	  fold.  The one place that describes what a dashboard is.
 *
 * A dashboard is a grouped count (and sums, and time-relative counts) over
 * one table, declared by a row of alexandrite.dashboards.  That row holds
 * only the declaration: names, expressions (as canonical SQL text) and
 * horizons.  Everything else is derived from it by the C code here, after
 * the expressions have been parsed and validated again (define.c):
 *
 *	 alexandrite.dashboard_<name>_summary   folded state, one row per group:
 *			keys..., count, sums..., horizon counts...
 *	 alexandrite.dashboard_<name>_delta     pending signed deltas, no index:
 *			keys..., [alx_due_bucket], count, sums..., logged_at
 *	 alexandrite.dashboard_<name>           the read view (owner's rights)
 *
 * all owned by the extension owner and found by these names (never through
 * an OID read from a table), the capture triggers on the base table, and
 * the statements that populate, fold, read and reconcile (sqlgen.c).
 *
 * Capturing a row change from C
 * -----------------------------
 * Any C trigger of the extension may feed the dashboards of its table
 * itself instead of the generic trigger alx_dashboard_capture:
 *
 *	 AlxDashboardCaptureRow(rel, oldslot, newslot)
 *
 * from an AFTER ... FOR EACH ROW trigger on rel (oldslot NULL for an
 * INSERT, newslot NULL for a DELETE).  It adds the row's contribution to
 * per-(sub)transaction pending groups; they are written to the delta tables
 * by the statement trigger alx_dashboard_flush (keep it on the table), or
 * at the latest when the statement's executor finishes, the subtransaction
 * commits or the transaction commits; an abort forgets them.  Such a table
 * must then not also carry alx_dashboard_capture (rows would count twice):
 * its schema file declares alx_dashboard_flush and alx_dashboard_truncate
 * and its own trigger.  create_dashboard() never adds triggers to the
 * extension's own tables: they are declared in sql/schema/dashboard.sql.
 *
 * IDENTIFICATION
 *	  src/dashboard/dashboard.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_DASHBOARD_H
#define ALX_DASHBOARD_H

#include "executor/tuptable.h"
#include "nodes/bitmapset.h"
#include "nodes/pg_list.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

#include "alexandrite.h"

/*
 * The lock held by every fold, rebuild and drop (AlxLockInternal,
 * ALX_LOCK_DASH_FOLD): "alxd" and 1.  A fold that cannot get it at once
 * skips its round.
 */
#define ALX_DASH_LOCK_CLASS		1634498660
#define ALX_DASH_LOCK_FOLD		1

/* names: 1 to 40 of [a-z0-9_], starting with a letter */
#define ALX_DASH_NAME_MAX		40

/*
 * The most bytes a group's keys may take together: the summary's unique
 * index holds them, and a btree entry must fit in a third of a page (2704
 * bytes).  A longer key would be captured but fail every later fold of the
 * dashboard, so the write that carries it is refused instead.
 */
#define ALX_DASH_KEYS_MAX		2000

/* the longest horizon, either way: now() + horizon must stay a timestamp */
#define ALX_DASH_HORIZON_MAX_HOURS	87600

/* reserved column names of the delta table */
#define ALX_DASH_DUE_BUCKET		"alx_due_bucket"
#define ALX_DASH_LOGGED_AT		"logged_at"

/* A validated dashboard definition (define.c). */
typedef struct AlxDashDef
{
	int32		id;				/* 0 until registered */
	char	   *name;
	Oid			base_relid;
	char		base_relkind;	/* RELKIND_RELATION or RELKIND_PARTITIONED_TABLE */
	bool		builtin;
	char	   *count_name;

	int			nkeys;
	char	  **key_names;
	Node	  **keys;			/* analyzed expressions over the base row */
	char	  **key_sql;		/* their canonical text (as registered) */
	Oid		   *key_types;
	int32	   *key_typmods;
	Oid		   *key_colls;
	int16	   *key_typlen;
	bool	   *key_byval;

	int			nsums;
	char	  **sum_names;
	Node	  **sums;			/* numeric */
	char	  **sum_sql;

	Node	   *filter;			/* boolean, or NULL */
	char	   *filter_sql;
	Node	   *due;			/* timestamptz, or NULL */
	char	   *due_sql;

	int			nhorizons;
	char	  **horizon_names;
	Interval   *horizons;		/* whole minutes */

	Bitmapset  *attnos;			/* base-table columns the expressions read */
} AlxDashDef;

/* What create_dashboard() is given (define.c validates it). */
typedef struct AlxDashArgs
{
	const char *name;
	Oid			base_relid;
	int			nkeys;
	char	  **key_exprs;
	char	  **key_names;		/* entries may be NULL: derived */
	const char *count_name;
	int			nsums;
	char	  **sum_exprs;
	char	  **sum_names;		/* entries may be NULL: derived */
	const char *filter;
	const char *due;
	int			nhorizons;
	Interval   *horizons;
	char	  **horizon_names;	/* entries may be NULL: derived */
	/*
	 * create_dashboard: the caller, who must hold EXECUTE on every function
	 * the expressions call (the capture evaluates them as the extension
	 * owner); InvalidOid when a stored definition is loaded again.
	 */
	Oid			execute_for;
} AlxDashArgs;

/* define.c: parse and validate a definition (errors for anything else) */
extern void AlxDashCheckName(const char *name);
extern AlxDashDef *AlxDashDefine(const AlxDashArgs *args);
extern Oid	AlxExtensionOid(void);
extern TimestampTz AlxDueMinute(TimestampTz t);

/* registry.c: the registry rows, loaded and validated */
extern List *AlxDashLoad(Oid base_relid);
extern bool AlxDashLegacySchema(void);
extern AlxDashDef *AlxDashLoadByName(const char *name, bool missing_ok);
extern int32 AlxDashRegister(AlxDashDef *def);
extern void AlxDashUpdateRegistry(const AlxDashDef *def);
extern void AlxDashUnregister(const AlxDashDef *def);
extern void AlxDashCheckReadable(const AlxDashDef *def);
extern void AlxDashRequireReadCommitted(const char *what);
extern void AlxDashLockBase(Oid relid, LOCKMODE mode);

/* registry.c: the owner switch, search_path pinned and SPI connected */
typedef struct AlxDashScope
{
	AlxSavedUser save;
	int			nestlevel;
} AlxDashScope;

extern void AlxDashScopeEnter(AlxDashScope *s);
extern void AlxDashScopeLeave(AlxDashScope *s);

/* rebuild.c: recompute from the base table (owner scope, SPI connected) */
extern int64 AlxDashPopulate(const AlxDashDef *def, Datum watermark, bool wm_null);
extern int64 AlxDashRebuild(const AlxDashDef *def, TimestampTz watermark);

/* objects.c: the generated objects */
typedef enum AlxDashObject
{
	ALX_DASH_SUMMARY,
	ALX_DASH_DELTA,
	ALX_DASH_VIEW
} AlxDashObject;

extern char *AlxDashObjectName(const AlxDashDef *def, AlxDashObject which);
extern char *AlxDashQualified(const AlxDashDef *def, AlxDashObject which);
extern Oid	AlxDashObjectRelid(const AlxDashDef *def, AlxDashObject which, bool verify);
extern void AlxDashBuildObjects(const AlxDashDef *def, bool replace);
extern void AlxDashDropObjects(const AlxDashDef *def);
extern bool AlxDashIsExtensionTable(Oid relid);
extern void AlxDashCheckDelta(const char *dashboard, Relation rel);
extern bool AlxDashLayoutColumn(const AlxDashDef *def, AlxDashObject which, int i,
								const char **name, Oid *type, int32 *typmod);
extern void AlxDashDamaged(const char *dashboard, const char *relname,
						   const char *detail) pg_attribute_noreturn();

/* sqlgen.c: the statements, generated from a validated definition */
extern char *AlxDashSqlSummaryTable(const AlxDashDef *def);
extern char *AlxDashSqlDeltaTable(const AlxDashDef *def);
extern char *AlxDashSqlView(const AlxDashDef *def);
extern char *AlxDashSqlAggregate(const AlxDashDef *def, const char *at_time);
extern char *AlxDashSqlFold(const AlxDashDef *def);
extern char *AlxDashSqlReconcile(const AlxDashDef *def);
extern char *AlxDashSqlPopulate(const AlxDashDef *def);

/* capture.c: row capture and TRUNCATE */
extern void AlxDashboardCaptureRow(Relation rel, TupleTableSlot *oldslot,
								   TupleTableSlot *newslot);

/* pending.c: pending groups and their flush to the delta tables */
typedef struct AlxPendingTarget AlxPendingTarget;
extern AlxPendingTarget *AlxPendingTargetFor(const AlxDashDef *def, Oid delta_relid);
extern void AlxPendingAdd(AlxPendingTarget *t, Datum *keys, bool *knulls,
						  Datum due_bucket, bool due_null,
						  Datum *sums, bool *snulls, int sign);
extern void AlxDashboardFlush(void);
extern void AlxDashboardFlushStatement(void);
extern void AlxDashboardHold(void);
extern void AlxDashboardUnhold(void);
extern void AlxDashboardForget(int32 dashboard_id);
extern void AlxDashboardInit(void);

/* fold.c: fold every dashboard; returns the delta rows folded, 0 if skipped */
extern int64 AlxFoldDashboards(void);

/* worker.c: the fold loop */
extern void AlxDashboardRegisterWorker(void);

#endif							/* ALX_DASHBOARD_H */
