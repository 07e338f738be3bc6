/*-------------------------------------------------------------------------
 *
 * privilege.c
 *	  Who runs what: the extension owner for the library's own statements.
 *
 * alexandrite's internal tables (registries, summaries, deltas, outbox
 * internals, caches) are writable only by the extension's owner.  The SQL
 * API and the background workers run as their caller (the MES role, the
 * role named by alexandrite.worker_role) and switch to the owner only around
 * statements compiled into this library, with parameters for every value a
 * caller supplies, the way PostgreSQL runs VACUUM and REFRESH MATERIALIZED
 * VIEW as the table owner: SECURITY_LOCAL_USERID_CHANGE |
 * SECURITY_RESTRICTED_OPERATION, so that nothing reached from there can SET
 * ROLE, create temporary objects or otherwise keep the owner's rights.
 * Nothing read from a table is ever executed as SQL under the switch.
 *
 * An ERROR inside the switch needs no cleanup: transaction and
 * subtransaction abort restore the user id, the security context and the
 * search_path.
 *
 * IDENTIFICATION
 *	  src/privilege.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#include "alexandrite.h"

/*
 * The owner of the extension: the owner of schema alexandrite, which the
 * install script creates (no IF NOT EXISTS, so nobody else can have made it)
 * and which only its owner or a superuser could give away.  Two syscache
 * lookups, cheap enough for every call.
 */
Oid
AlxExtensionOwner(void)
{
	Oid			nsp = get_namespace_oid(ALX_SCHEMA_NAME, true);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is not installed in this database", ALX_EXTENSION_NAME)));
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Become the extension owner for the library's own statements.  The
 * search_path is pinned to pg_catalog, pg_temp until AlxRestoreUser, as
 * SECURITY DEFINER functions with a SET clause do: the statements are
 * schema-qualified, and a caller who put its own schema first in the path
 * (with an "=" operator or a now() of its own) still reaches nothing of its
 * own as the owner.
 */
void
AlxBecomeOwner(AlxSavedUser *save)
{
	Oid			owner = AlxExtensionOwner();

	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	save->pushed = false;
	save->guc_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	SetUserIdAndSecContext(owner, save->sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/*
 * The same switch for a section that begins and ends in one call of an SQL
 * function (AlxCoreBegin/AlxCoreEnd: the order core, the SLA engine, the
 * outbox producer), at the same transaction nesting level, with no
 * transaction control in between.  The path is pushed as an override
 * search path, as PostgreSQL's CREATE SCHEMA does, instead of being SET: a
 * GUC change and its undo cost 13k of the 541k instructions of a
 * create_order (callgrind), the override 4k.  It is pg_catalog alone: an
 * override would put the session's temporary schema first (a temporary
 * table named "text" would then be the type of a ::text cast), and nothing
 * here needs it.  The override also wins over every SET search_path inside
 * the section, a function's SET clause or the dashboard parser's own pin
 * (src/dashboard/define.c), which then resolve names in pg_catalog alone
 * too; only the extension's statements, its triggers (and PostgreSQL's
 * foreign key checks) and dashboard expressions run there, and those call
 * built-in and extension functions only.  There is no creation namespace:
 * an unqualified CREATE fails.  Abort of the (sub)transaction pops the
 * override, as it restores the user.
 */
void
AlxBecomeOwnerInCall(AlxSavedUser *save)
{
	Oid			owner = AlxExtensionOwner();
	OverrideSearchPath path;

	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	save->guc_nestlevel = 0;
	path.schemas = NIL;
	path.addCatalog = true;
	path.addTemp = false;
	path.generation = 0;
	PushOverrideSearchPath(&path);
	save->pushed = true;
	SetUserIdAndSecContext(owner, save->sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/*
 * For the workers, which also run where the extension is not installed
 * (yet): become the owner when the schema exists, else keep the worker's
 * identity.  Returns whether the switch happened; AlxRestoreUser undoes
 * either.
 */
bool
AlxBecomeOwnerIfInstalled(AlxSavedUser *save)
{
	if (!OidIsValid(get_namespace_oid(ALX_SCHEMA_NAME, true)))
	{
		GetUserIdAndSecContext(&save->userid, &save->sec_context);
		save->guc_nestlevel = 0;
		save->pushed = false;
		return false;
	}
	AlxBecomeOwner(save);
	return true;
}

/* Back to the caller's identity (and search_path) saved by AlxBecomeOwner. */
void
AlxRestoreUser(const AlxSavedUser *save)
{
	SetUserIdAndSecContext(save->userid, save->sec_context);
	if (save->pushed)
		PopOverrideSearchPath();
	if (save->guc_nestlevel > 0)
		AtEOXact_GUC(true, save->guc_nestlevel);
}

/*
 * Takes an exclusive lock of the library's own until the end of the
 * transaction: kind is one of ALX_LOCK_*, key1 and key2 name the object in
 * the current database.  With wait false, returns false at once when
 * another transaction holds it; with wait true, waits (interruptible,
 * subject to lock_timeout and deadlock detection like any lock).
 */
bool
AlxLockInternal(uint16 kind, uint32 key1, uint32 key2, bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, key1, key2, kind);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}
