-- mesh_jobs: the SQL surface of background analysis (mesh_submit,
-- mesh_job_retry, mesh_job_discard, mesh_job_status).  The pool itself
-- (priority, crashes, backpressure, hostile files) is tested with real
-- workers in test/t/024_mesh_jobs.pl.  This runs in a database of its own,
-- where no worker runs (alexandrite.database is contrib_regression): jobs
-- stay queued, and the other tests see none of its rows.
\set VERBOSITY terse
CREATE DATABASE alx_mesh_jobs;
\c alx_mesh_jobs
CREATE EXTENSION alexandrite;
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
\set cube `python3 test/gen/genmesh.py cube stl --b64`
SELECT alexandrite.mesh_ingest(decode(:'cube', 'base64'), 'cube.stl') AS cube_id \gset

-- the same bytes in the same unit, analysed already: done at once, no bytes kept
SELECT alexandrite.mesh_submit(decode(:'cube', 'base64'), 'again.stl') AS j1 \gset
SELECT state, mesh_id = :cube_id AS same_mesh, has_bytes, attempts, bytes, filename,
       submitted_by = current_user AS by_me, finished_at IS NOT NULL AS finished
  FROM alexandrite.mesh_job_status WHERE id = :j1;
SELECT count(*) AS meshes FROM alexandrite.meshes;

-- another unit is another mesh: queued with its bytes and hash, nothing parsed
SELECT alexandrite.mesh_submit(decode(:'cube', 'base64'), 'cube-cm.stl', 'cm') AS j2 \gset
SELECT state, unit, has_bytes, mesh_id, started_at, attempts,
       sha256 = sha256(decode(:'cube', 'base64')) AS hashed
  FROM alexandrite.mesh_job_status WHERE id = :j2;
SELECT count(*) AS meshes FROM alexandrite.meshes;

-- the bytes are stored without compression
SELECT attstorage FROM pg_attribute
 WHERE attrelid = 'alexandrite.mesh_jobs'::regclass AND attname = 'data';

-- an order that is still new gets the known model and, with a material, its price
SELECT alexandrite.create_order('MJ-1', 'shop', 'c1', NULL, 'ag925') AS o1 \gset
SELECT alexandrite.mesh_submit(decode(:'cube', 'base64'), 'ring.stl', 'mm', :o1) AS j3 \gset
SELECT o.status, o.mesh_id = :cube_id AS has_model, o.price > 0 AS priced
  FROM alexandrite.orders o WHERE o.id = :o1;
SELECT state, order_id = :o1 AS attached, priority > 0 AS has_priority, note
  FROM alexandrite.mesh_job_status WHERE id = :j3;
SELECT kind, event_type, detail->>'state' AS job_state, (detail->>'job_id')::bigint = :j3 AS this_job
  FROM alexandrite.order_timeline(:o1) WHERE kind IN ('mesh_job', 'message')
 ORDER BY kind, event_type;
SELECT aggregate_type, event_type, payload->>'order_id' = :'o1' AS for_order,
       (payload->>'mesh_id')::bigint = :cube_id AS mesh
  FROM alexandrite.outbox WHERE aggregate_type = 'mesh' AND aggregate_id = :'j3';

-- an order without a material gets the model, no price
SELECT alexandrite.create_order('MJ-2', 'b2b_api', 'c2', NULL, NULL) AS o2 \gset
SELECT alexandrite.mesh_submit(decode(:'cube', 'base64'), 'ring.stl', 'mm', :o2) AS j4 \gset
SELECT status, mesh_id = :cube_id AS has_model, price FROM alexandrite.orders WHERE id = :o2;

-- bad arguments
SELECT pg_temp.try($$SELECT alexandrite.mesh_submit(NULL, 'x.stl')$$);
SELECT pg_temp.try($$SELECT alexandrite.mesh_submit(''::bytea, 'x.stl')$$);
SELECT pg_temp.try(format('SELECT alexandrite.mesh_submit(%L::bytea, %L, %L)', decode(:'cube', 'base64'), 'x.stl', 'furlong'));
SELECT pg_temp.try(format('SELECT alexandrite.mesh_submit(%L::bytea, %L, NULL)', decode(:'cube', 'base64'), 'x.stl'));
SELECT pg_temp.try(format('SELECT alexandrite.mesh_submit(%L::bytea, %L)', decode(:'cube', 'base64'), repeat('x', 1025)));
SELECT pg_temp.try(format('SELECT alexandrite.mesh_submit(%L::bytea, %L, %L, %s)', decode(:'cube', 'base64'), 'x.stl', 'mm', 424242));
-- a priced order keeps the model its price was computed for
SELECT pg_temp.try(format('SELECT alexandrite.mesh_submit(%L::bytea, %L, %L, %s)', decode(:'cube', 'base64'), 'x.stl', 'mm', :o1));
SET alexandrite.mesh_max_bytes = 1024;
SELECT pg_temp.try($$SELECT alexandrite.mesh_submit(decode(repeat('00', 2000), 'hex'), 'big.stl')$$);
RESET alexandrite.mesh_max_bytes;
SELECT count(*) AS jobs FROM alexandrite.mesh_jobs;

-- retry and discard: only what they apply to
SELECT pg_temp.try('SELECT alexandrite.mesh_job_retry(424242)');
SELECT pg_temp.try('SELECT alexandrite.mesh_job_discard(424242)');
SELECT pg_temp.try('SELECT alexandrite.mesh_job_retry(NULL)');
SELECT pg_temp.try(format('SELECT alexandrite.mesh_job_retry(%s)', :j1));
SELECT pg_temp.try(format('SELECT alexandrite.mesh_job_discard(%s)', :j1));
SELECT pg_temp.try(format('SELECT alexandrite.mesh_job_retry(%s)', :j2));
-- a queued job can be discarded: failed, bytes gone, not retryable, discarding again is a no-op
SELECT alexandrite.mesh_job_discard(:j2);
SELECT state, has_bytes, error_sqlstate, error_message, note = 'discarded by ' || current_user AS noted
  FROM alexandrite.mesh_job_status WHERE id = :j2;
SELECT pg_temp.try(format('SELECT alexandrite.mesh_job_retry(%s)', :j2));
SELECT pg_temp.try(format('SELECT alexandrite.mesh_job_discard(%s)', :j2));
-- a queued job discarded was never analysed: one mesh.rejected event (57014);
-- discarding it again (a no-op, above) adds none
SELECT event_type, payload ->> 'sqlstate' AS sqlstate, payload ->> 'error' AS error
  FROM alexandrite.outbox_events WHERE aggregate_type = 'mesh' AND aggregate_id = :'j2';
-- a failed job that keeps its bytes is queued again with a fresh count
-- (made failed here by hand: no worker runs in this database)
SELECT alexandrite.mesh_submit(decode(:'cube', 'base64'), 'cube-in.stl', 'in') AS j5 \gset
UPDATE alexandrite.mesh_jobs SET state = 'failed', attempts = 5, error_sqlstate = 'XX000',
       error_message = 'mesh helper crashed', finished_at = now() WHERE id = :j5;
SELECT alexandrite.mesh_job_retry(:j5);
SELECT state, attempts, has_bytes, finished_at, next_attempt_at <= now() AS due, error_sqlstate
  FROM alexandrite.mesh_job_status WHERE id = :j5;

-- the latest request for an order's model wins (the workers' side: TAP
-- 024): a job records the model its order had when it was submitted
SELECT alexandrite.create_order('MJ-LATER', 'shop', 'c7', NULL, NULL) AS o_later \gset
SELECT alexandrite.mesh_submit(decode(:'cube', 'base64'), 'first.stl', 'cm', :o_later) AS jl1 \gset
SELECT alexandrite.set_order_model(:o_later, :cube_id, NULL);
SELECT alexandrite.mesh_submit(decode(:'cube', 'base64'), 'second.stl', 'm', :o_later) AS jl2 \gset
SELECT id = :jl1 AS first, state, order_id = :o_later AS attached,
       order_mesh_id IS NULL AS had_none, order_mesh_id = :cube_id AS had_cube
  FROM alexandrite.mesh_jobs WHERE id IN (:jl1, :jl2) ORDER BY id;
-- a mesh known at once is the latest request: given at once, no note
SELECT alexandrite.create_order('MJ-LATER-2', 'shop', 'c8', NULL, NULL) AS o_later2 \gset
SELECT alexandrite.mesh_submit(decode(:'cube', 'base64'), 'third.stl', 'in', :o_later2) AS jl3 \gset
SELECT alexandrite.mesh_submit(decode(:'cube', 'base64'), 'fourth.stl', 'mm', :o_later2) AS jl4 \gset
SELECT j.state, j.note, o.mesh_id = :cube_id AS order_has_it
  FROM alexandrite.mesh_jobs j, alexandrite.orders o WHERE j.id = :jl4 AND o.id = :o_later2;

-- a job is a write: a read-only transaction (or a standby) is told so by
-- the function, not by one of its internal statements (no CONTEXT)
BEGIN READ ONLY;
SELECT alexandrite.mesh_submit(decode(:'cube', 'base64'), 'ro.stl');
ROLLBACK;
BEGIN READ ONLY;
SELECT alexandrite.mesh_job_retry(:j5);
ROLLBACK;
BEGIN READ ONLY;
SELECT alexandrite.mesh_job_discard(:j5);
ROLLBACK;

-- the queue limit is the DBA's: not settable in a session
SELECT pg_temp.try($$SET alexandrite.mesh_queue_max_bytes = '1GB'$$);
SELECT pg_temp.try($$SET alexandrite.mesh_workers = 4$$);

-- internal: writable by the owner only, dumped, no function for PUBLIC
SELECT c.relname, c.relacl IS NULL AS no_grants,
       c.oid = ANY (e.extconfig) AS dumped
  FROM pg_class c, pg_extension e
 WHERE e.extname = 'alexandrite' AND c.relnamespace = 'alexandrite'::regnamespace
   AND c.relname IN ('mesh_jobs', 'mesh_jobs_id_seq', 'mesh_job_status')
 ORDER BY 1;
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_may
  FROM pg_proc p
 WHERE p.pronamespace = 'alexandrite'::regnamespace AND p.proname LIKE 'mesh\_%'
 ORDER BY 1;

-- attaching to an order sets its model and prices it: the caller needs
-- those rights itself, mesh_submit alone does not give them
CREATE ROLE alx_mj_uploader;
GRANT USAGE ON SCHEMA alexandrite TO alx_mj_uploader;
GRANT EXECUTE ON FUNCTION alexandrite.mesh_submit(bytea, text, text, bigint) TO alx_mj_uploader;
SELECT alexandrite.create_order('MJ-ACL', 'shop', 'c9', NULL, 'ag925') AS o_acl \gset
SET ROLE alx_mj_uploader;
SELECT pg_temp.try(format($q$SELECT alexandrite.mesh_submit(decode(%L, 'base64'), 'acl.stl', 'mm', %s)$q$, :'cube', :o_acl));
SELECT pg_temp.try(format($q$SELECT alexandrite.mesh_submit(decode(%L, 'base64'), 'acl.stl')$q$, :'cube'));
RESET ROLE;
SELECT mesh_id IS NULL AS no_model, price IS NULL AS no_price FROM alexandrite.orders WHERE id = :o_acl;
REVOKE ALL ON FUNCTION alexandrite.mesh_submit(bytea, text, text, bigint) FROM alx_mj_uploader;
REVOKE USAGE ON SCHEMA alexandrite FROM alx_mj_uploader;
DROP ROLE alx_mj_uploader;

-- the figures
SELECT family, labels->>'state' AS state
  FROM alexandrite.metric_samples(ARRAY['meshes'])
 WHERE family LIKE 'alexandrite\_mesh\_job%'
 ORDER BY family, state;

\c contrib_regression
DROP DATABASE alx_mesh_jobs;
