/*-------------------------------------------------------------------------
 *
 * alexandrite.h
 *	  Shared declarations of the alexandrite extension: GUC variables and
 *	  the init entry points of each capability.
 *
 * IDENTIFICATION
 *	  src/alexandrite.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALEXANDRITE_H
#define ALEXANDRITE_H

#include "fmgr.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"

#define ALX_EXTENSION_NAME	"alexandrite"
#define ALX_SCHEMA_NAME		"alexandrite"

/* GUC variables, all defined in src/alexandrite.c */
extern char *alx_database;
extern char *alx_amqp_url;
extern char *alx_amqp_exchange;
extern int	alx_outbox_batch_size;
extern int	alx_outbox_max_waves;
extern int	alx_outbox_max_attempts;
extern int	alx_outbox_rotate_interval_s;
extern char *alx_publish_after_standby_flush;
extern int	alx_mesh_max_bytes;
extern int	alx_mesh_timeout_ms;
extern int	alx_mesh_memory_limit_mb;
extern int	alx_mesh_max_concurrent;
extern char *alx_meshd_path;
extern int	alx_mesh_workers;
extern int	alx_mesh_queue_max_kb;
extern int	alx_mesh_job_max_attempts;
extern int	alx_mesh_job_retry_delay_ms;
extern bool alx_mesh_pool_paused;
extern int	alx_fold_interval_ms;
extern char *alx_actor;
extern char *alx_traceparent;
extern char *alx_worker_role;

/* true when the library was loaded through shared_preload_libraries */
extern bool alx_preloaded;

/* dashboards: register the fold worker (src/dashboard/worker.c) */
extern void AlxDashboardRegisterWorker(void);

/* privilege.c: the library's own statements run as the extension owner */
typedef struct AlxSavedUser
{
	Oid			userid;
	int			sec_context;
	int			guc_nestlevel;	/* of the pinned search_path; 0: none */
	bool		pushed;			/* the pinned path is an override (AlxBecomeOwnerInCall) */
} AlxSavedUser;

extern Oid	AlxExtensionOwner(void);
extern void AlxBecomeOwner(AlxSavedUser *save);
extern void AlxBecomeOwnerInCall(AlxSavedUser *save);
extern bool AlxBecomeOwnerIfInstalled(AlxSavedUser *save);
extern void AlxRestoreUser(const AlxSavedUser *save);

/*
 * privilege.c: transaction locks of the library's own (one run at a time),
 * on advisory lock tags whose fourth field no SQL function can set, so that
 * no role can take them with pg_advisory_lock() to stall a worker or an
 * administrator.  pg_advisory_* use 1 and 2; the mesh code also uses 3
 * (slots, cluster-wide) and 5 (jobs), as session locks of its own.
 */
#define ALX_LOCK_MESH_QUEUE		6	/* the room of the mesh job queue */
#define ALX_LOCK_DASH_FOLD		7	/* fold, rebuild and drop of dashboards */
#define ALX_LOCK_ESCALATE		8	/* escalate_overdue */
#define ALX_LOCK_PRICE_LIST		9	/* writers of price list versions */
extern bool AlxLockInternal(uint16 kind, uint32 key1, uint32 key2, bool wait);

/* worker.c: registration and connection of the background workers */
extern void AlxRegisterWorker(const char *name, const char *function, int restart_secs);
extern void AlxWorkerStart(const char *name);
extern void AlxWorkerReloadConfig(const char *name);
extern void AlxWorkerLockGate(void);
extern void AlxWorkerInstallGate(void);

/* relations.c: the extension's relations by name (cached), trusted indexes and column types */
extern void AlxRegisterRelcacheCallback(void (*func) (Datum arg, Oid relid), Datum arg);
extern Oid	AlxRelid(const char *relname, bool missing_ok);
extern Relation AlxRelationOpen(const char *relname, LOCKMODE lockmode, bool missing_ok);
extern bool AlxIndexTrusted(Relation rel, Relation idx, int nkeys, const AttrNumber *cols,
							const Oid *opclasses, bool partial_ok);
extern void AlxCheckColumnType(const char *relation, const char *column, Oid actual,
							   Oid expected);

/* invalidate.c: the statement trigger of a cached table */
extern Datum AlxInvalidateTrigger(FunctionCallInfo fcinfo, const char *name);

#endif							/* ALEXANDRITE_H */
