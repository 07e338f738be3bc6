/*-------------------------------------------------------------------------
 *
 * jobs.h
 *	  Mesh jobs: background analysis of submitted mesh files
 *	  (alexandrite.mesh_jobs, mesh_submit, the worker pool).
 *
 * jobs_submit.c: the SQL entry points (mesh_submit, mesh_job_retry,
 *	  mesh_job_discard);
 * jobs_run.c: what a finished analysis does (store, attach to the order,
 *	  price, events) and the error classification;
 * jobs_worker.c: the pool of background workers, the claim.
 *
 * IDENTIFICATION
 *	  src/mesh/jobs.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ALX_MESH_JOBS_H
#define ALX_MESH_JOBS_H

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "storage/lock.h"

/* mesh_sql.c: SHA-256 of a file's bytes */
extern bytea *AlxMeshSha256(const char *data, size_t len);

/* jobs_run.c */
extern const char *AlxMeshJobCheckUnit(text *unit);
extern char *AlxMeshJobAttach(int64 job_id, int64 order_id, int64 mesh_id, bool bounded_wait,
							  bool *gave, int64 *wait_for);
extern void AlxMeshJobEvent(int64 job_id, const char *event_type, int64 order_id, int attached,
							int64 mesh_id, const char *filename,
							const char *sqlstate, const char *message);
extern bool AlxMeshJobRetryable(int sqlerrcode);
extern TimestampTz AlxMeshJobBackoff(TimestampTz from, int attempts);
extern void AlxMeshJobRun(int64 job_id, int attempts);

/* jobs_worker.c */
extern void AlxMeshJobLockTag(LOCKTAG *tag, int64 job_id);
extern void AlxMeshRegisterWorkers(void);
extern void AlxMeshPoolShmemRequest(void);
extern void AlxMeshPoolShmemStartup(void);
extern void AlxMeshPoolWakeupAtCommit(void);

#endif							/* ALX_MESH_JOBS_H */
