/*-------------------------------------------------------------------------
 *
 * alexandrite.c
 *	  Module entry point: PG_MODULE_MAGIC, _PG_init and every GUC.
 *
 * Every configuration parameter of the extension is defined here, in one
 * place, so that the SQL functions can read them whether or not the library
 * was preloaded.  Background workers and shared memory are only set up when
 * the library is loaded through shared_preload_libraries.
 *
 * IDENTIFICATION
 *	  src/alexandrite.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "alexandrite.h"
#include "dashboard/dashboard.h"
#include "mesh/jobs.h"
#include "outbox/outbox.h"

PG_MODULE_MAGIC;

PGDLLEXPORT void _PG_init(void);

char	   *alx_database = NULL;
char	   *alx_amqp_url = NULL;
char	   *alx_amqp_exchange = NULL;
int			alx_outbox_batch_size = 500;
int			alx_outbox_max_waves = 16;
int			alx_outbox_max_attempts = 10;
int			alx_outbox_rotate_interval_s = 60;
char	   *alx_publish_after_standby_flush = NULL;
int			alx_mesh_max_bytes = 256 * 1024 * 1024;
int			alx_mesh_timeout_ms = 60000;
int			alx_mesh_memory_limit_mb = 2048;
int			alx_mesh_max_concurrent = 4;
char	   *alx_meshd_path = NULL;
int			alx_mesh_workers = 2;
int			alx_mesh_queue_max_kb = 1024 * 1024;
int			alx_mesh_job_max_attempts = 5;
int			alx_mesh_job_retry_delay_ms = 10000;
bool		alx_mesh_pool_paused = false;
int			alx_fold_interval_ms = 1000;
char	   *alx_actor = NULL;
char	   *alx_traceparent = NULL;
char	   *alx_worker_role = NULL;

bool		alx_preloaded = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Requests the shared memory of every capability (PG 15 shmem_request_hook). */
static void
alx_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	AlxOutboxShmemRequest();
	AlxMeshPoolShmemRequest();
}

/* Creates or attaches the shared memory of every capability. */
static void
alx_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	AlxOutboxShmemStartup();
	AlxMeshPoolShmemStartup();
}

/*
 * An AMQP URL must name the amqp or amqps scheme; several URLs may be given,
 * separated by commas, for broker failover.
 */
static bool
check_amqp_url(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	char	   *tok;
	char	   *save = NULL;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;			/* empty disables publishing */

	copy = pstrdup(*newval);
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
		 tok = strtok_r(NULL, ",", &save))
	{
		while (*tok == ' ')
			tok++;
		if (strncmp(tok, "amqp://", 7) != 0 && strncmp(tok, "amqps://", 8) != 0)
		{
			GUC_check_errdetail("Each URL must start with \"amqp://\" or \"amqps://\".");
			pfree(copy);
			return false;
		}
	}
	pfree(copy);
	return true;
}

/* An exchange name is at most 255 bytes of letters, digits, - _ . : */
static bool
check_exchange(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (*newval == NULL)
		return true;
	if (strlen(*newval) > 255)
	{
		GUC_check_errdetail("An exchange name is at most 255 bytes long.");
		return false;
	}
	for (p = *newval; *p; p++)
	{
		if (!(isalnum((unsigned char) *p) || *p == '-' || *p == '_' ||
			  *p == '.' || *p == ':'))
		{
			GUC_check_errdetail("An exchange name may only contain letters, digits, hyphens, underscores, periods and colons.");
			return false;
		}
	}
	return true;
}

/*
 * A W3C trace context header: version "00", 32 hex digits of trace id, 16 of
 * parent span id, 2 of flags, all lower case, ids not all zero.
 */
static bool
check_traceparent(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	static const int field_len[] = {2, 32, 16, 2};
	int			pos = 0;

	if (v == NULL || v[0] == '\0')
		return true;
	if (strlen(v) != 55)
		goto bad;
	for (int f = 0; f < 4; f++)
	{
		bool		all_zero = true;

		for (int i = 0; i < field_len[f]; i++, pos++)
		{
			char		c = v[pos];

			if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
				goto bad;
			if (c != '0')
				all_zero = false;
		}
		if ((f == 1 || f == 2) && all_zero)
			goto bad;
		if (f < 3 && v[pos++] != '-')
			goto bad;
	}
	if (strncmp(v, "ff", 2) == 0)
		goto bad;
	return true;

bad:
	GUC_check_errdetail("A traceparent looks like \"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\" (W3C Trace Context).");
	return false;
}

/* The database and the role of the background workers. */
static void
define_worker_gucs(void)
{
	DefineCustomStringVariable("alexandrite.database",
							   "Sets the database in which the background worker drains the outbox.",
							   NULL,
							   &alx_database,
							   "postgres",
							   /* (loaded later, by a SQL call: no worker reads it) */
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("alexandrite.worker_role",
							   "Sets the role the background workers connect as.",
							   "Empty means the workers wait until a role is named; they never connect as the bootstrap superuser by default.",
							   &alx_worker_role,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
}

/* The outbox relay: broker, exchange, batches, retries, rotation, standbys. */
static void
define_outbox_gucs(void)
{
	DefineCustomStringVariable("alexandrite.amqp_url",
							   "Sets the URL of the RabbitMQ broker, or a comma-separated list of URLs for failover.",
							   "An empty string disables publishing.",
							   &alx_amqp_url,
							   "amqp://guest:guest@127.0.0.1:5672/",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_amqp_url, NULL, NULL);

	DefineCustomStringVariable("alexandrite.amqp_exchange",
							   "Sets the topic exchange the outbox is published to.",
							   NULL,
							   &alx_amqp_exchange,
							   "alexandrite.events",
							   PGC_SIGHUP,
							   0,
							   check_exchange, NULL, NULL);

	DefineCustomIntVariable("alexandrite.outbox_batch_size",
							"Sets the number of outbox rows the relay reads and publishes per batch.",
							NULL,
							&alx_outbox_batch_size,
							500, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alexandrite.outbox_max_waves",
							"Sets how many events of one aggregate the relay publishes per chunk.",
							NULL,
							&alx_outbox_max_waves,
							16, 0, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alexandrite.outbox_max_attempts",
							"Sets how many times the relay tries to publish an event before it becomes a dead letter.",
							NULL,
							&alx_outbox_max_attempts,
							10, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alexandrite.outbox_rotate_interval",
							"Sets how often the relay recycles a drained outbox table.",
							"The outbox log rotates over three tables; a drained table is truncated, never vacuumed.",
							&alx_outbox_rotate_interval_s,
							60, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("alexandrite.publish_after_standby_flush",
							   "Sets the standbys that must have flushed an event's commit before the relay publishes it.",
							   "Same syntax as synchronous_standby_names, e.g. 'ANY 1 (*)'. Empty means: the synchronous standbys when synchronous_standby_names is set, else none.",
							   &alx_publish_after_standby_flush,
							   "",
							   PGC_SIGHUP,
							   0,
							   AlxCheckStandbyFlush, AlxAssignStandbyFlush, NULL);
}

/* Mesh analysis: input size, time, memory, concurrency and the helper program. */
static void
define_mesh_gucs(void)
{
	DefineCustomIntVariable("alexandrite.mesh_max_bytes",
							"Sets the largest mesh file, in bytes, that mesh_analyze accepts.",
							NULL,
							&alx_mesh_max_bytes,
							256 * 1024 * 1024, 1024, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alexandrite.mesh_timeout",
							"Sets the longest time one mesh analysis may take.",
							"The helper process is killed when it runs longer (a small file gets less: four times its CPU budget plus 2 s); statement_timeout also applies.",
							&alx_mesh_timeout_ms,
							60000, 100, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alexandrite.mesh_memory_limit",
							"Sets the memory the mesh helper may map for one analysis, on top of its program, libraries and input.",
							"A mesh whose analysis needs more fails with SQLSTATE 54000.",
							&alx_mesh_memory_limit_mb,
							2048, 64, 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alexandrite.mesh_max_concurrent",
							"Sets how many mesh analyses may run at once in the whole cluster.",
							"Further calls wait for a free slot (within alexandrite.mesh_timeout); 0 means no limit.",
							&alx_mesh_max_concurrent,
							4, 0, 1024,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("alexandrite.meshd_path",
							   "Sets the path of the mesh helper program.",
							   "Empty means alexandrite-meshd next to the postgres binary.",
							   &alx_meshd_path,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
}

/* The mesh job pool: workers, queue size, retries and pause. */
static void
define_mesh_job_gucs(void)
{
	DefineCustomIntVariable("alexandrite.mesh_workers",
							"Sets the number of background workers that analyse submitted meshes (mesh_submit).",
							"Needs shared_preload_libraries; 0 means no pool.",
							&alx_mesh_workers,
							2, 0, 64,
							/* as alexandrite.database: postmaster only when preloaded */
							process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alexandrite.mesh_queue_max_bytes",
							"Sets the bytes that queued and running mesh jobs may hold before mesh_submit refuses more.",
							"mesh_submit raises SQLSTATE 53400 beyond it.",
							&alx_mesh_queue_max_kb,
							1024 * 1024, 16, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alexandrite.mesh_job_max_attempts",
							"Sets how many times a mesh job is tried (crashes and transient errors count) before it fails.",
							NULL,
							&alx_mesh_job_max_attempts,
							5, 1, 100,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("alexandrite.mesh_job_retry_delay",
							"Sets the delay before a mesh job's second attempt; it doubles with each further attempt (at most an hour).",
							NULL,
							&alx_mesh_job_retry_delay_ms,
							10000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("alexandrite.mesh_pool_paused",
							 "Stops the mesh workers from claiming jobs; running jobs finish.",
							 NULL,
							 &alx_mesh_pool_paused,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
}

/* Dashboards: the fold interval of the background worker. */
static void
define_dashboard_gucs(void)
{
	DefineCustomIntVariable("alexandrite.fold_interval",
							"Sets the delay between dashboard folds by the background worker.",
							"Zero disables folding in the worker; schedule_refresh() can use pg_cron instead.",
							&alx_fold_interval_ms,
							1000, 0, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* Order events: the actor and trace context recorded with them. */
static void
define_event_gucs(void)
{
	DefineCustomStringVariable("alexandrite.actor",
							   "Sets the actor recorded in order events when a call names none.",
							   "Empty means the current database user.",
							   &alx_actor,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("alexandrite.traceparent",
							   "Sets the W3C trace context recorded with order events and outbox messages.",
							   "Set it per transaction with SET LOCAL; empty means none.",
							   &alx_traceparent,
							   "",
							   PGC_USERSET,
							   0,
							   check_traceparent, NULL, NULL);
}

/*
 * Define every alexandrite.* configuration parameter, capability by
 * capability, and reserve the prefix.
 */
static void
alx_define_gucs(void)
{
	define_worker_gucs();
	define_outbox_gucs();
	define_mesh_gucs();
	define_mesh_job_gucs();
	define_dashboard_gucs();
	define_event_gucs();

	MarkGUCPrefixReserved("alexandrite");
}

/*
 * Module load: GUCs always; workers and shared memory only when preloaded
 * (and never during pg_upgrade).
 */
void
_PG_init(void)
{
	alx_define_gucs();
	AlxDashboardInit();			/* flush points of the dashboard capture */
	AlxOutboxAggseqInit();		/* aggregate counts stored at commit */

	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;

	alx_preloaded = true;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = alx_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = alx_shmem_startup;
	AlxWorkerInstallGate();		/* DROP/ALTER EXTENSION vs the workers (worker.c) */

	AlxOutboxRegisterWorker();
	AlxDashboardRegisterWorker();	/* dashboard fold loop (fold_interval) */
	AlxMeshRegisterWorkers();	/* mesh job pool (mesh_workers) */
}

PG_FUNCTION_INFO_V1(alexandrite_version);

/* The version of the loaded library (the SQL version is in pg_extension). */
Datum
alexandrite_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(ALX_LIBRARY_VERSION));
}
