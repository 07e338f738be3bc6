/*-------------------------------------------------------------------------
 *
 * jobs.h
 *	  Mesh jobs: background analysis of submitted mesh files
 *	  (alexandrite.mesh_jobs, mesh_submit, the worker pool).
 *
 * jobs_submit.c: the SQL entry points (mesh_submit, mesh_job_retry,
 *	  mesh_job_discard);
 * jobs_run.c: one job in three steps (read it, analyse it, store and attach
 *	  it to the order, price, events) and the error classification;
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

/* mesh_sql.c: mesh_ingest's three steps (a worker runs each in a transaction of its own) */
typedef struct AlxMeshAnalysis AlxMeshAnalysis;
extern int64 AlxMeshFind(bytea *sha, const char *unit, bool *current);
extern AlxMeshAnalysis *AlxMeshAnalyse(bytea *data, const char *unit);
extern int64 AlxMeshStore(bytea *sha, const char *unit, text *filename, bytea *data,
						  const AlxMeshAnalysis *an, int64 known_id);

/* jobs_run.c: a claimed job, carried between the worker's transactions */
typedef struct AlxMeshJob
{
	int64		job_id;
	int			attempts;		/* this one included */
	Oid			jobs_relid;		/* alexandrite.mesh_jobs when the job was read */
	MemoryContext cxt;			/* what follows lives here */
	bytea	   *data;
	text	   *filename;		/* NULL: none */
	char	   *filename_str;
	const char *unit;
	int64		order_id;		/* 0: none */
	bytea	   *sha;
	int64		mesh_id;		/* the stored row for these bytes, or 0 */
	bool		current;		/* ... measured by this analyzer: no analysis */
	AlxMeshAnalysis *analysis;
	ErrorData  *err;			/* the analysis failed */
} AlxMeshJob;

/* jobs_run.c */
extern const char *AlxMeshJobCheckUnit(text *unit);
extern char *AlxMeshJobAttach(int64 job_id, int64 order_id, int64 mesh_id, bool bounded_wait,
							  bool *gave, int64 *wait_for);
extern void AlxMeshJobEvent(int64 job_id, const char *event_type, int64 order_id, int attached,
							int64 mesh_id, const char *filename,
							const char *sqlstate, const char *message);
extern bool AlxMeshJobRetryable(int sqlerrcode);
extern TimestampTz AlxMeshJobBackoff(TimestampTz from, int attempts);
extern bool AlxMeshJobLoad(AlxMeshJob *job, int64 job_id, int attempts, MemoryContext cxt);
extern void AlxMeshJobAnalyse(AlxMeshJob *job);
extern void AlxMeshJobFinish(AlxMeshJob *job);

/* jobs_worker.c */
extern void AlxMeshJobLockTag(LOCKTAG *tag, int64 job_id);
extern void AlxMeshRegisterWorkers(void);
extern void AlxMeshPoolShmemRequest(void);
extern void AlxMeshPoolShmemStartup(void);
extern void AlxMeshPoolWakeupAtCommit(void);

#endif							/* ALX_MESH_JOBS_H */
