/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  What every alexandrite background worker does alike: registration,
 *	  signals, and connecting as the role the DBA names.
 *
 * Workers never connect as the bootstrap superuser by default.  They
 * connect to alexandrite.database as alexandrite.worker_role; until that
 * GUC names a role (it is reloadable), a worker waits and says so once in the
 * log.  A role with LOGIN is needed on PostgreSQL 15 (background workers go
 * through the same login check as clients); it needs no privilege on the
 * extension's objects: the statements compiled into the library run as the
 * extension owner (privilege.c).  A superuser named there is accepted, with
 * a warning: that is the DBA's explicit choice.  When the GUC later names
 * another role, the worker exits and is restarted as that role.
 *
 * The gate.  DROP EXTENSION alexandrite and ALTER EXTENSION alexandrite
 * UPDATE (and DROP OWNED or REASSIGN OWNED BY the extension's owner) lock
 * the extension's tables one after the other, in an order of their own; a
 * worker's transaction locks some of them in another order, so the two
 * could deadlock (soak run of daf91a3: DROP EXTENSION against the relay
 * reading the outbox and the mesh workers claiming a job).  Both sides
 * therefore take the same lock first: the workers a share lock on
 * alexandrite.orders (a table of every version) at the start of each
 * transaction (AlxWorkerLockGate), the commands an exclusive one before
 * anything else (the ProcessUtility hook below; preloaded only, like the
 * workers).  The command then waits for the workers' running transactions
 * and the workers wait for the command.
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/catalog.h"
#include "catalog/pg_authid.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/memutils.h"

#include "alexandrite.h"

/* the role this worker connected as (NULL before connecting) */
static char *connected_role = NULL;

/*
 * The server's values of the settings a session may change (user-settable
 * and superuser-settable), taken before connecting: what the worker runs
 * with in place of its role's and its database's settings.
 */
typedef struct ServerSetting
{
	const char *name;
	char	   *value;
} ServerSetting;

static ServerSetting *server_settings = NULL;
static int	n_server_settings = 0;

/* Registers a worker of this library: primary only, restarted after restart_secs. */
void
AlxRegisterWorker(const char *name, const char *function, int restart_secs)
{
	BackgroundWorker w;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = restart_secs;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "alexandrite");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(w.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(w.bgw_type, BGW_MAXLEN, "%s", name);
	RegisterBackgroundWorker(&w);
}

static bool
worker_role_set(void)
{
	return alx_worker_role != NULL && alx_worker_role[0] != '\0';
}

static bool
session_settable(struct config_generic *gconf)
{
	return gconf->context == PGC_USERSET || gconf->context == PGC_SUSET;
}

/*
 * Copies the server's value of every setting a session may change.  The
 * procedural language the workers may reach (PL/pgSQL: triggers of the
 * tables they write, the extension's own functions) is loaded first, so
 * that its settings are variables here, not placeholders a role's value
 * would fill when it loads.  Reals are printed in full (GetConfigOption
 * gives 6 digits).
 */
static void
keep_server_settings(void)
{
	struct config_generic **vars;
	int			n;
	MemoryContext old;

	load_file("plpgsql", false);
	vars = get_guc_variables();
	n = GetNumConfigOptions();
	old = MemoryContextSwitchTo(TopMemoryContext);
	server_settings = palloc0(sizeof(ServerSetting) * n);
	for (int i = 0; i < n; i++)
	{
		const char *value;

		if (!session_settable(vars[i]) || (vars[i]->flags & GUC_CUSTOM_PLACEHOLDER))
			continue;
		if (vars[i]->vartype == PGC_REAL)
			value = psprintf("%.17g", *((struct config_real *) vars[i])->variable);
		else
			value = GetConfigOption(vars[i]->name, true, false);
		if (value == NULL)
			continue;
		server_settings[n_server_settings].name = pstrdup(vars[i]->name);
		server_settings[n_server_settings].value = pstrdup(value);
		n_server_settings++;
	}
	MemoryContextSwitchTo(old);
}

/* did restore_server_settings put back any setting? (a reload then reconnects) */
static bool restored_any = false;

/* a SIGHUP came (a worker may also ask for a reload of its own, at start) */
static volatile sig_atomic_t sighup_received = false;

static void
worker_sighup(SIGNAL_ARGS)
{
	sighup_received = true;
	SignalHandlerForConfigReload(postgres_signal_arg);
}

/*
 * The role's and the database's settings (ALTER ROLE ... SET, ALTER
 * DATABASE ... SET, pg_db_role_setting) were applied when the worker
 * connected.  Anyone who can log in as the worker role can set the role's
 * own (a lock_timeout that fails every round at its first lock wait, a
 * search_path, planner settings, a role), so the worker puts back the value
 * it had from the configuration files before connecting, at a priority
 * above those sources (a SET or a function's SET clause still applies), and
 * says which in one LOG line, with the values.  A setting of a library not
 * loaded yet (a placeholder) has no server value to put back: it is named
 * in a WARNING.  Runs in a transaction: some settings' checks read the
 * catalogs.  A value the configuration gives that this database refuses (a
 * default_tablespace that does not exist here) leaves the role's, with a
 * WARNING, rather than failing the worker at every start.
 */
static void
restore_server_settings(const char *name)
{
	StringInfoData ignored;
	StringInfoData left;
	struct config_generic **vars = get_guc_variables();
	int			n = GetNumConfigOptions();
	List	   *names = NIL;
	ListCell   *lc;

	/* first the names (setting one may add a variable and move the array) */
	for (int i = 0; i < n; i++)
	{
		struct config_generic *gconf = vars[i];

		if (session_settable(gconf) &&
			(gconf->source == PGC_S_DATABASE || gconf->source == PGC_S_USER ||
			 gconf->source == PGC_S_DATABASE_USER))
			names = lappend(names, pstrdup(gconf->name));
	}
	initStringInfo(&ignored);
	initStringInfo(&left);
	foreach(lc, names)
	{
		const char *setting = lfirst(lc);
		int			i;

		for (i = 0; i < n_server_settings; i++)
			if (strcmp(server_settings[i].name, setting) == 0)
				break;
		if (i < n_server_settings &&
			set_config_option(setting, server_settings[i].value,
							  PGC_SUSET, PGC_S_OVERRIDE, GUC_ACTION_SET,
							  true, WARNING, false) > 0)
		{
			appendStringInfo(&ignored, "%s%s=%s", ignored.len > 0 ? ", " : "", setting,
							 server_settings[i].value);
			restored_any = true;
		}
		else
			appendStringInfo(&left, "%s%s", left.len > 0 ? ", " : "", setting);
	}
	if (ignored.len > 0)
		ereport(LOG,
				(errmsg("%s ignores the settings of role \"%s\" and of its database, and runs with the server's: %s",
						name, connected_role, ignored.data),
				 errdetail("The workers run with the configuration files' values (postgresql.conf, ALTER SYSTEM); while a role or database setting is ignored, a reload makes them reconnect."),
				 errhint("Set what the workers need in the configuration files; see RESET in ALTER ROLE and ALTER DATABASE.")));
	if (left.len > 0)
		ereport(WARNING,
				(errmsg("%s keeps settings of role \"%s\" or of its database that it cannot put back: %s",
						name, connected_role, left.data),
				 errdetail("The server gives no value for them (a library not loaded yet), or refused its own value in this database."),
				 errhint("RESET them in ALTER ROLE or ALTER DATABASE.")));
	pfree(ignored.data);
	pfree(left.data);
}

/*
 * Sets up signals, waits until alexandrite.worker_role names a role, then
 * connects to alexandrite.database as that role.
 */
void
AlxWorkerStart(const char *name)
{
	bool		said = false;
	bool		is_super;

	pqsignal(SIGHUP, worker_sighup);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	while (!worker_role_set())
	{
		if (!said)
		{
			ereport(LOG,
					(errmsg("%s is waiting for alexandrite.worker_role to name the role it runs as", name),
					 errhint("CREATE ROLE alexandrite_worker LOGIN; then set alexandrite.worker_role = 'alexandrite_worker' and reload.")));
			said = true;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
	/*
	 * A SIGHUP that came while waiting (usually the one that named the role)
	 * is handled here, before the server's values are copied: only a later
	 * one may make the worker reconnect.
	 */
	sighup_received = false;
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	connected_role = MemoryContextStrdup(TopMemoryContext, alx_worker_role);
	keep_server_settings();
	BackgroundWorkerInitializeConnection(alx_database, connected_role, 0);

	/*
	 * The workers' transactions read what committed before each statement
	 * (a lock wait, then a fresh read) and write: a default isolation level
	 * or read-only default set for the role or the database does not apply
	 * to them.
	 */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * superuser() may read pg_authid (its cache is reset by any role change
	 * since the login, e.g. the DBA's GRANTs): a catalog lookup needs a
	 * transaction.
	 */
	StartTransactionCommand();
	restore_server_settings(name);
	is_super = superuser();
	CommitTransactionCommand();
	/* after the settings: an application_name of the role's would hide it */
	pgstat_report_appname(name);
	if (is_super)
		ereport(WARNING,
				(errmsg("%s runs as superuser \"%s\" because alexandrite.worker_role names it", name, connected_role),
				 errhint("Name a role without superuser rights; the worker needs no privileges of its own.")));
}

/*
 * Reloads the configuration (after SIGHUP); a worker whose role changed
 * exits, to be restarted as the new role.
 */
void
AlxWorkerReloadConfig(const char *name)
{
	bool		signalled = sighup_received;

	sighup_received = false;
	ProcessConfigFile(PGC_SIGHUP);
	if (connected_role != NULL &&
		(!worker_role_set() || strcmp(connected_role, alx_worker_role) != 0))
	{
		ereport(LOG,
				(errmsg("%s exits to reconnect: alexandrite.worker_role changed", name)));
		proc_exit(1);
	}
	/* the values put back outrank the files: take the new ones at a new start */
	if (restored_any && signalled)
	{
		ereport(LOG,
				(errmsg("%s exits to reconnect: it ignores settings of its role or database, so it reads the reloaded configuration at a new start", name)));
		proc_exit(1);
	}
}

/* ---- the gate ------------------------------------------------------------ */

static ProcessUtility_hook_type prev_utility_hook = NULL;

/* alexandrite.orders, or InvalidOid when the extension is not installed */
static Oid
gate_relid(void)
{
	Oid			nsp = get_namespace_oid("alexandrite", true);

	return OidIsValid(nsp) ? get_relname_relid("orders", nsp) : InvalidOid;
}

/*
 * Takes the gate's share lock; call first in every transaction of a worker
 * (after StartTransactionCommand), before anything locks an extension table.
 */
void
AlxWorkerLockGate(void)
{
	Oid			relid = gate_relid();

	if (OidIsValid(relid))
		LockRelationOid(relid, AccessShareLock);
}

/* The role that owns the extension (pg_extension.extowner). */
static Oid
gate_extension_owner(Oid extoid)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return owner;
}

/*
 * Are these roles all valid, and has the caller the privileges of each (the
 * check of DROP OWNED and REASSIGN OWNED)?  *has_owner: one of them owns the
 * extension.
 */
static bool
gate_roles_allowed(List *roles, Oid owner, bool *has_owner)
{
	ListCell   *lc;

	foreach(lc, roles)
	{
		Oid			role = get_rolespec_oid(lfirst(lc), true);

		if (!OidIsValid(role) || !has_privs_of_role(GetUserId(), role))
			return false;
		if (role == owner)
			*has_owner = true;
	}
	return true;
}

/*
 * Does this command drop, update or re-own the extension, and will it get
 * as far as locking its tables?  DROP EXTENSION alexandrite and ALTER
 * EXTENSION alexandrite UPDATE, for the extension's owner or a superuser
 * (pg_extension_ownercheck); DROP OWNED and REASSIGN OWNED BY the
 * extension's owner (the first drops the extension, the second locks and
 * re-owns each of its tables, both in an order of their own), when the
 * caller has the privileges of every role named (their own check) and the
 * owner is not a role of the system itself (whose objects neither command
 * touches).  Never in a read-only transaction or on a standby, where the
 * command fails on its own.  DROP SCHEMA alexandrite CASCADE needs no gate:
 * the schema is a member of the extension, so PostgreSQL refuses to drop it
 * on its own.
 */
static bool
gate_command(Node *stmt, Oid extoid)
{
	Oid			owner;
	bool		has_owner = false;

	if (XactReadOnly || RecoveryInProgress())
		return false;
	if (IsA(stmt, AlterExtensionStmt) || IsA(stmt, DropStmt))
		return pg_extension_ownercheck(extoid, GetUserId());
	owner = gate_extension_owner(extoid);
	if (!OidIsValid(owner) || IsPinnedObject(AuthIdRelationId, owner))
		return false;
	if (IsA(stmt, DropOwnedStmt))
		return gate_roles_allowed(((DropOwnedStmt *) stmt)->roles, owner, &has_owner) && has_owner;
	if (IsA(stmt, ReassignOwnedStmt))
	{
		ReassignOwnedStmt *r = (ReassignOwnedStmt *) stmt;
		Oid			newrole = get_rolespec_oid(r->newrole, true);

		return gate_roles_allowed(r->roles, owner, &has_owner) && has_owner &&
			OidIsValid(newrole) && has_privs_of_role(GetUserId(), newrole);
	}
	return false;
}

/* Might this command need the gate (before any catalog lookup)? */
static bool
gate_candidate(Node *stmt)
{
	if (IsA(stmt, AlterExtensionStmt))
		return strcmp(((AlterExtensionStmt *) stmt)->extname, "alexandrite") == 0;
	if (IsA(stmt, DropStmt) && ((DropStmt *) stmt)->removeType == OBJECT_EXTENSION)
	{
		ListCell   *lc;

		foreach(lc, ((DropStmt *) stmt)->objects)
			if (strcmp(strVal(lfirst(lc)), "alexandrite") == 0)
				return true;
		return false;
	}
	return IsA(stmt, DropOwnedStmt) || IsA(stmt, ReassignOwnedStmt);
}

static void
alx_gate_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				 ProcessUtilityContext context, ParamListInfo params,
				 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (gate_candidate(stmt))
	{
		Oid			relid = gate_relid();
		Oid			extoid = get_extension_oid("alexandrite", true);

		/*
		 * Only for whom the command may run: anyone else gets the command's
		 * own "must be owner" or "permission denied" error at once, not a
		 * place in the queue for an exclusive lock on the orders table,
		 * which would stall every writer behind it.  DROP EXTENSION IF
		 * EXISTS of a missing extension: nothing to lock.
		 */
		if (OidIsValid(relid) && OidIsValid(extoid) && gate_command(stmt, extoid))
			LockRelationOid(relid, AccessExclusiveLock);
	}
	if (prev_utility_hook)
		prev_utility_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

/* Installs the gate's ProcessUtility hook (_PG_init, preloaded). */
void
AlxWorkerInstallGate(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = alx_gate_utility;
}
