/* sql/alexandrite--1.1--1.2.sql: upgrade from 1.1 to 1.2 (written by hand)
 *
 * One section per capability, in the order of the install script.  Every
 * change here has its twin in sql/schema/<capability>.sql: a fresh install
 * and this upgrade must give the same objects (test/sql/core_upgrade.sql).
 * Once 1.2 is released this file is never edited again. */

\echo Use "ALTER EXTENSION alexandrite UPDATE TO '1.2'" to load this file. \quit

------------------------------------------------------------------------------
-- extension
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- mesh
------------------------------------------------------------------------------
-- Wall thickness (analyzer version 2).  The new columns of existing meshes
-- stay NULL until the same bytes are ingested again: mesh_ingest measures a
-- row written by an older analyzer version again, under the same id, and
-- fills them then.
ALTER TYPE alexandrite.mesh_stats
    ADD ATTRIBUTE min_wall_mm float8,
    ADD ATTRIBUTE min_wall_x_mm float8,
    ADD ATTRIBUTE min_wall_y_mm float8,
    ADD ATTRIBUTE min_wall_z_mm float8,
    ADD ATTRIBUTE wall_below_0_3_mm2 float8,
    ADD ATTRIBUTE wall_below_0_5_mm2 float8,
    ADD ATTRIBUTE wall_below_0_8_mm2 float8,
    ADD ATTRIBUTE wall_below_1_0_mm2 float8;
ALTER TABLE alexandrite.meshes
    ADD COLUMN min_wall_mm            float8,
    ADD COLUMN min_wall_x_mm          float8,
    ADD COLUMN min_wall_y_mm          float8,
    ADD COLUMN min_wall_z_mm          float8,
    ADD COLUMN wall_below_0_3_mm2     float8,
    ADD COLUMN wall_below_0_5_mm2     float8,
    ADD COLUMN wall_below_0_8_mm2     float8,
    ADD COLUMN wall_below_1_0_mm2     float8;
COMMENT ON COLUMN alexandrite.meshes.min_wall_mm IS 'thinnest wall (ray along each face''s inward normal); NULL when nothing was measured or the row predates analyzer version 2';
COMMENT ON COLUMN alexandrite.meshes.min_wall_x_mm IS 'where the thinnest wall starts: centroid of its face, x';
COMMENT ON COLUMN alexandrite.meshes.min_wall_y_mm IS 'where the thinnest wall starts: centroid of its face, y';
COMMENT ON COLUMN alexandrite.meshes.min_wall_z_mm IS 'where the thinnest wall starts: centroid of its face, z';
COMMENT ON COLUMN alexandrite.meshes.wall_below_0_3_mm2 IS 'surface whose wall is thinner than 0.3 mm';
COMMENT ON COLUMN alexandrite.meshes.wall_below_0_5_mm2 IS 'surface whose wall is thinner than 0.5 mm';
COMMENT ON COLUMN alexandrite.meshes.wall_below_0_8_mm2 IS 'surface whose wall is thinner than 0.8 mm';
COMMENT ON COLUMN alexandrite.meshes.wall_below_1_0_mm2 IS 'surface whose wall is thinner than 1.0 mm';

------------------------------------------------------------------------------
-- Mesh jobs: models analysed in the background (src/mesh/jobs_*.c).
-- mesh_submit() stores the file's bytes here and returns at once; a pool of
-- alexandrite.mesh_workers background workers claims the most urgent job,
-- runs the same isolated helper as mesh_ingest, stores the mesh, drops the
-- bytes and, for a job attached to an order, sets the order's model and
-- prices it.  Written only by the extension owner (the C functions switch
-- to it); see docs/mesh.md, "Background analysis".
------------------------------------------------------------------------------
CREATE TABLE alexandrite.mesh_jobs (
    id              bigserial PRIMARY KEY,
    state           text NOT NULL DEFAULT 'queued',
    order_id        bigint,
    filename        text,
    unit            text NOT NULL DEFAULT 'mm',
    data            bytea,
    bytes           bigint NOT NULL,
    sha256          bytea NOT NULL CHECK (pg_catalog.length(sha256) OPERATOR(pg_catalog.=) 32),
    priority        float8,
    submitted_by    text NOT NULL,
    submitted_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    mesh_id         bigint,
    error_sqlstate  text,
    error_message   text,
    note            text,
    waiting_since   timestamptz,
    order_mesh_id   bigint,
    gave_model      boolean NOT NULL DEFAULT false,
    CONSTRAINT mesh_jobs_state_check
        CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'running', 'done', 'failed']::text[])),
    CONSTRAINT mesh_jobs_unit_check
        CHECK (unit OPERATOR(pg_catalog.=) ANY (ARRAY['mm', 'cm', 'm', 'in']::text[])),
    CONSTRAINT mesh_jobs_done_check
        CHECK (state OPERATOR(pg_catalog.<>) 'done' OR (mesh_id IS NOT NULL AND data IS NULL))
);
-- the bytes are stored as they came: no compression (a mesh file compresses
-- poorly and the submit must stay cheap), out of line
ALTER TABLE alexandrite.mesh_jobs ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX mesh_jobs_open_idx ON alexandrite.mesh_jobs (next_attempt_at, id)
    WHERE state OPERATOR(pg_catalog.<>) 'done';
CREATE INDEX mesh_jobs_order_idx ON alexandrite.mesh_jobs (order_id)
    WHERE order_id IS NOT NULL;
COMMENT ON TABLE alexandrite.mesh_jobs IS 'mesh files waiting for, in or after background analysis (mesh_submit); written only by the extension owner';
COMMENT ON COLUMN alexandrite.mesh_jobs.state IS 'queued, running (claimed by a worker), done (mesh_id set, bytes dropped) or failed (error set, bytes kept until mesh_job_retry or mesh_job_discard)';
COMMENT ON COLUMN alexandrite.mesh_jobs.order_id IS 'the order whose model this is: the job takes its SLA priority, and the order gets the mesh (and a price) when it is done';
COMMENT ON COLUMN alexandrite.mesh_jobs.data IS 'the file''s bytes, uncompressed; NULL once analysed or discarded';
COMMENT ON COLUMN alexandrite.mesh_jobs.bytes IS 'size of the file in bytes';
COMMENT ON COLUMN alexandrite.mesh_jobs.priority IS 'SLA priority of the order when the job was submitted (the pool ranks by the current one); NULL when not attached';
COMMENT ON COLUMN alexandrite.mesh_jobs.attempts IS 'analyses started; an attempt interrupted by a crash counts';
COMMENT ON COLUMN alexandrite.mesh_jobs.next_attempt_at IS 'not claimed before this time (backoff after a failed or interrupted attempt)';
COMMENT ON COLUMN alexandrite.mesh_jobs.error_sqlstate IS 'SQLSTATE of the last failed attempt';
COMMENT ON COLUMN alexandrite.mesh_jobs.waiting_since IS 'when an attempt first found the attached order held by another transaction, or a later job of the order not done (the job waits longer the longer it has waited); NULL if never or since mesh_job_retry';
COMMENT ON COLUMN alexandrite.mesh_jobs.order_mesh_id IS 'the model the attached order had when the job was submitted: the job gives the order its mesh only if the order still has that one (or one an earlier job gave it) and no later job of the order is done (it waits for one queued or running)';
COMMENT ON COLUMN alexandrite.mesh_jobs.gave_model IS 'the job gave its order this mesh';
COMMENT ON COLUMN alexandrite.mesh_jobs.note IS 'what happened to the attached order when the job was done, if not the obvious (not priced: why)';
SELECT pg_catalog.pg_extension_config_dump('alexandrite.mesh_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.mesh_jobs_id_seq', '');

-- what the MES reads: the jobs without their bytes, with the owner's rights
CREATE VIEW alexandrite.mesh_job_status AS
SELECT j.id, j.state, j.order_id, j.filename, j.unit, j.bytes, j.sha256, j.priority,
       j.submitted_by, j.submitted_at, j.started_at, j.finished_at, j.attempts,
       j.next_attempt_at, j.mesh_id, j.error_sqlstate, j.error_message, j.note,
       j.waiting_since, j.order_mesh_id, j.gave_model, j.data IS NOT NULL AS has_bytes
  FROM alexandrite.mesh_jobs j;
COMMENT ON VIEW alexandrite.mesh_job_status IS 'mesh jobs without their bytes (owner''s rights: readers need SELECT on the view only)';

CREATE FUNCTION alexandrite.mesh_submit(data bytea, filename text, unit text DEFAULT 'mm',
                                        order_id bigint DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_mesh_submit'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.mesh_submit(bytea, text, text, bigint)
    IS 'queue a mesh file for background analysis and return the job id at once; the same bytes and unit already analysed complete the job at once';
REVOKE ALL ON FUNCTION alexandrite.mesh_submit(bytea, text, text, bigint) FROM PUBLIC;

CREATE FUNCTION alexandrite.mesh_job_retry(job_id bigint)
    RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_mesh_job_retry'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.mesh_job_retry(bigint)
    IS 'queue a failed mesh job again, with a fresh count of attempts';
REVOKE ALL ON FUNCTION alexandrite.mesh_job_retry(bigint) FROM PUBLIC;

CREATE FUNCTION alexandrite.mesh_job_discard(job_id bigint)
    RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_mesh_job_discard'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.mesh_job_discard(bigint)
    IS 'drop the bytes of a queued or failed mesh job; the job stays, failed';
REVOKE ALL ON FUNCTION alexandrite.mesh_job_discard(bigint) FROM PUBLIC;

------------------------------------------------------------------------------
-- core
------------------------------------------------------------------------------

-- The order row holds its outbox sequence (orders.event_seq), taken over
-- from outbox_aggregates (whose 'order' rows the outbox section drops).
ALTER TABLE alexandrite.orders ADD COLUMN event_seq bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN alexandrite.orders.event_seq
    IS 'aggregate_seq of the order''s last outbox event (the order row is its lock and counter)';
UPDATE alexandrite.orders o SET event_seq = a.last_seq
  FROM alexandrite.outbox_aggregates a
 WHERE a.aggregate_type OPERATOR(pg_catalog.=) 'order'
   AND a.aggregate_id OPERATOR(pg_catalog.=) o.id::pg_catalog.text;

-- Every backend caches the state machine (src/core/transitions.c); a change
-- to the table tells them all to reload it.
CREATE FUNCTION alexandrite.status_transitions_invalidate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'alexandrite_status_transitions_invalidate'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.status_transitions_invalidate()
    IS 'internal: trigger that makes every backend reload its cached state machine';
REVOKE ALL ON FUNCTION alexandrite.status_transitions_invalidate() FROM PUBLIC;
CREATE TRIGGER status_transitions_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON alexandrite.status_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.status_transitions_invalidate();
COMMENT ON TRIGGER status_transitions_invalidate ON alexandrite.status_transitions
    IS 'invalidates the per-backend cache of the state machine when the transitions change';

-- The payload of order.status_changed, built and checked by the order
-- core's C code, for its one-statement status write (src/core/orders.c).
CREATE FUNCTION alexandrite.order_status_payload(
    order_id bigint, external_ref text, from_status text, to_status text, at timestamptz,
    actor text, operator_id text, sla_due_at timestamptz, headers jsonb)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'alexandrite_order_status_payload'
    LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.order_status_payload(bigint, text, text, text, timestamptz, text, text, timestamptz, jsonb)
    IS 'internal: the order.status_changed payload of a status write, checked against the relay''s limits';
REVOKE ALL ON FUNCTION alexandrite.order_status_payload(bigint, text, text, text, timestamptz, text, text, timestamptz, jsonb) FROM PUBLIC;

-- The writers become C entry points into the one write routine (src/core).
DROP FUNCTION alexandrite.lock_order(bigint);
DROP FUNCTION alexandrite.check_same_order(alexandrite.orders, text, text);
-- The order API: thin C entry points (src/core) into the one write routine
-- for orders.  They run as their caller (SECURITY INVOKER), capture the
-- caller as the default actor, and run their compiled statements as the
-- extension owner: a caller needs EXECUTE on them and nothing on the tables.
CREATE OR REPLACE FUNCTION alexandrite.create_order(
    external_ref text, channel text, customer_id text, mesh_id bigint, material text,
    payload jsonb DEFAULT '{}')
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_create_order'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.create_order(text, text, text, bigint, text, jsonb)
    IS 'creates an order with its order.created event; idempotent on external_ref (a retry returns the same id)';

CREATE OR REPLACE FUNCTION alexandrite.set_status(order_id bigint, status alexandrite.order_status, actor text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_set_status'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.set_status(bigint, alexandrite.order_status, text)
    IS 'moves an order along the state machine (alexandrite.status_transitions) and records the change and its event';

-- Giving an order to an operator changes two columns, operator_id and the
-- status, in one write.  Like every assignment it locks the operator's row
-- first and checks that the operator is active and has room.  Assignment
-- policies (alexandrite.assign_next) choose the order; this records a
-- choice made by hand.
CREATE OR REPLACE FUNCTION alexandrite.assign_order(order_id bigint, operator_id text, actor text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_assign_order'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.assign_order(bigint, text, text)
    IS 'gives a new or priced order to an active operator below capacity: operator, status assigned and the order event in one update';

-- The model or the alloy of an order is often known only after the order:
-- attach them while the order is still new (a priced order keeps the model
-- its price was computed for).
CREATE OR REPLACE FUNCTION alexandrite.set_order_model(order_id bigint, mesh_id bigint, material text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_set_order_model'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.set_order_model(bigint, bigint, text)
    IS 'attaches the mesh (and optionally the material) to a new order';

REVOKE ALL ON FUNCTION alexandrite.create_order(text, text, text, bigint, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.set_status(bigint, alexandrite.order_status, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.assign_order(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.set_order_model(bigint, bigint, text) FROM PUBLIC;

------------------------------------------------------------------------------
-- pricing
------------------------------------------------------------------------------
-- Castability limits of the materials (docs/pricing.md).  The alloys the
-- extension seeds get the values a fresh install seeds -- also where the
-- user has changed their price, since the limits are the process's -- and
-- keep their "seeded" flag (the seed guard would clear it on an UPDATE).
-- Materials the user added keep NULL (no limit) until the user sets them.
ALTER TABLE alexandrite.materials
    ADD COLUMN min_wall_mm      numeric CHECK (min_wall_mm OPERATOR(pg_catalog.>) 0 AND min_wall_mm OPERATOR(pg_catalog.<) 100),
    ADD COLUMN max_build_x_mm   numeric CHECK (max_build_x_mm OPERATOR(pg_catalog.>) 0 AND max_build_x_mm OPERATOR(pg_catalog.<) 100000),
    ADD COLUMN max_build_y_mm   numeric CHECK (max_build_y_mm OPERATOR(pg_catalog.>) 0 AND max_build_y_mm OPERATOR(pg_catalog.<) 100000),
    ADD COLUMN max_build_z_mm   numeric CHECK (max_build_z_mm OPERATOR(pg_catalog.>) 0 AND max_build_z_mm OPERATOR(pg_catalog.<) 100000);
COMMENT ON COLUMN alexandrite.materials.min_wall_mm IS 'thinnest wall the casting process holds in this alloy; a mesh with a thinner wall needs review (docs/pricing.md)';
COMMENT ON COLUMN alexandrite.materials.max_build_x_mm IS 'largest piece the process takes, first extent (the mesh may be turned: sorted extents are compared)';
COMMENT ON COLUMN alexandrite.materials.max_build_y_mm IS 'largest piece the process takes, second extent';
COMMENT ON COLUMN alexandrite.materials.max_build_z_mm IS 'largest piece the process takes, third extent';
ALTER TABLE alexandrite.materials DISABLE TRIGGER materials_seed_guard;
UPDATE alexandrite.materials m
   SET min_wall_mm = 0.8, max_build_x_mm = 76.2, max_build_y_mm = 101.6, max_build_z_mm = 101.6
 WHERE m.code OPERATOR(pg_catalog.=) ANY (ARRAY['au999', 'au750_yellow', 'au750_white', 'au750_rose',
                                               'au585_yellow', 'au585_white', 'au585_rose', 'ag925',
                                               'ag999', 'pt950', 'pd950', 'brass']);
ALTER TABLE alexandrite.materials ENABLE TRIGGER materials_seed_guard;

-- Quotes an order's mesh and material with the current price list, keeps
-- the quote, and sets the price and the status 'priced' in one write of
-- the order with its order_event, order.status_changed and order.priced
-- (C: src/pricing/order.c through the order core).  Runs its statements as
-- the extension owner: a caller needs EXECUTE on it only.
CREATE OR REPLACE FUNCTION alexandrite.price_order(order_id bigint, options jsonb DEFAULT '{}')
    RETURNS alexandrite.quote
    AS 'MODULE_PATHNAME', 'alexandrite_price_order'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.price_order(bigint, jsonb) IS
    'quotes an order''s mesh and material, stores the quote, sets the order price and moves it to priced';
REVOKE ALL ON FUNCTION alexandrite.price_order(bigint, jsonb) FROM PUBLIC;

------------------------------------------------------------------------------
-- sla
------------------------------------------------------------------------------

-- Claiming, escalation and the maintenance of orders move to C
-- (src/sla/assign.c, escalate.c, maintain.c): one trigger function for the
-- load and the escalation window instead of one PL/pgSQL trigger per concern.
DROP TRIGGER orders_operator_load_ins ON alexandrite.orders;
DROP TRIGGER orders_operator_load_upd ON alexandrite.orders;
DROP TRIGGER orders_operator_load_del ON alexandrite.orders;
DROP TRIGGER orders_operator_load_truncate ON alexandrite.orders;
DROP TRIGGER orders_sla_backdated_ins ON alexandrite.orders;
DROP TRIGGER orders_sla_backdated_upd ON alexandrite.orders;
DROP FUNCTION alexandrite.orders_operator_load();
DROP FUNCTION alexandrite.orders_operator_load_truncate();
DROP FUNCTION alexandrite.orders_sla_backdated();
DROP FUNCTION alexandrite.sla_known_load(text);
DROP FUNCTION alexandrite.sla_give(bigint, text);
DROP FUNCTION alexandrite.sla_lock_operator(text, boolean);
DROP FUNCTION alexandrite.sla_claim(timestamptz, timestamptz);
DROP FUNCTION alexandrite.sla_require_read_committed(text);
COMMENT ON TABLE alexandrite.operator_load
    IS 'open orders held per operator, kept by the orders_maintain triggers; NULL or no row: unknown, counted on demand; derived data, not dumped';
-- every writer keeps open_orders >= 0 by construction; the CHECK was parsed
-- again at every assignment (sql/schema/sla.sql)
ALTER TABLE alexandrite.operator_load DROP CONSTRAINT operator_load_open_orders_check;

CREATE OR REPLACE FUNCTION alexandrite.sla_recount_load() RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_sla_recount_load'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.sla_recount_load()
    IS 'rebuilds alexandrite.operator_load from the orders; returns the number of operators holding orders';

CREATE OR REPLACE FUNCTION alexandrite.assign_next(operator_id text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_assign_next'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.assign_next(text)
    IS 'claims the most urgent unassigned order (new or priced) for an active operator below capacity; NULL when none';

CREATE OR REPLACE FUNCTION alexandrite.release_order(order_id bigint, actor text DEFAULT NULL)
    RETURNS alexandrite.order_status
    AS 'MODULE_PATHNAME', 'alexandrite_release_order'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.release_order(bigint, text)
    IS 'puts an assigned order back into the pool (status new or priced, no operator); returns the new status';

CREATE OR REPLACE FUNCTION alexandrite.rebalance(horizon interval DEFAULT '24 hours')
    RETURNS TABLE (order_id bigint, from_operator text, to_operator text)
    AS 'MODULE_PATHNAME', 'alexandrite_rebalance'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.rebalance(interval)
    IS 'releases orders of inactive or overfull operators and spreads pool orders due within horizon over active operators by load';

CREATE OR REPLACE FUNCTION alexandrite.escalate_overdue(full_scan boolean DEFAULT false) RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_escalate_overdue'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.escalate_overdue(boolean)
    IS 'records a breach and its order.sla_breached event (once per order) for every open order past its due time; returns how many were new';

CREATE FUNCTION alexandrite.orders_maintain() RETURNS trigger
    AS 'MODULE_PATHNAME', 'alexandrite_orders_maintain'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.orders_maintain()
    IS 'internal: row trigger keeping alexandrite.operator_load, the escalation window and the dashboards in step with orders';
CREATE FUNCTION alexandrite.orders_truncated() RETURNS trigger
    AS 'MODULE_PATHNAME', 'alexandrite_orders_truncated'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.orders_truncated()
    IS 'internal: empties alexandrite.operator_load when orders is truncated';

CREATE TRIGGER orders_maintain_ins
    AFTER INSERT ON alexandrite.orders FOR EACH ROW
    EXECUTE FUNCTION alexandrite.orders_maintain();
CREATE TRIGGER orders_maintain_upd
    AFTER UPDATE ON alexandrite.orders FOR EACH ROW
    EXECUTE FUNCTION alexandrite.orders_maintain();
CREATE TRIGGER orders_maintain_del
    AFTER DELETE ON alexandrite.orders FOR EACH ROW
    EXECUTE FUNCTION alexandrite.orders_maintain();
CREATE TRIGGER orders_maintain_truncate
    AFTER TRUNCATE ON alexandrite.orders FOR EACH STATEMENT
    EXECUTE FUNCTION alexandrite.orders_truncated();
ALTER TABLE alexandrite.orders ENABLE ALWAYS TRIGGER orders_maintain_ins;
ALTER TABLE alexandrite.orders ENABLE ALWAYS TRIGGER orders_maintain_upd;
ALTER TABLE alexandrite.orders ENABLE ALWAYS TRIGGER orders_maintain_del;
ALTER TABLE alexandrite.orders ENABLE ALWAYS TRIGGER orders_maintain_truncate;
COMMENT ON TRIGGER orders_maintain_ins ON alexandrite.orders
    IS 'keeps alexandrite.operator_load, the escalation window and the dashboards (new rows)';
COMMENT ON TRIGGER orders_maintain_upd ON alexandrite.orders
    IS 'keeps alexandrite.operator_load, the escalation window and the dashboards (changed rows)';
COMMENT ON TRIGGER orders_maintain_del ON alexandrite.orders
    IS 'keeps alexandrite.operator_load and the dashboards (deleted rows)';
COMMENT ON TRIGGER orders_maintain_truncate ON alexandrite.orders
    IS 'keeps alexandrite.operator_load (no orders, no load)';
REVOKE ALL ON FUNCTION alexandrite.assign_next(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.release_order(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.orders_maintain() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.orders_truncated() FROM PUBLIC;

------------------------------------------------------------------------------
-- outbox
------------------------------------------------------------------------------
-- dead letters: one C implementation behind requeue and discard, writing as
-- the extension owner (src/outbox/deadletter.c)
CREATE OR REPLACE FUNCTION alexandrite.outbox_requeue(ids bigint[]) RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_requeue'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
ALTER FUNCTION alexandrite.outbox_requeue(bigint[]) RESET ALL;
CREATE OR REPLACE FUNCTION alexandrite.outbox_discard(ids bigint[]) RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_discard'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
ALTER FUNCTION alexandrite.outbox_discard(bigint[]) RESET ALL;

-- dead letters dropped by outbox_discard are remembered (without payload),
-- so the outbox view says "discarded" rather than "published"
CREATE TABLE alexandrite.outbox_discarded (
    id             bigint      PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    aggregate_seq  bigint      NOT NULL,
    event_type     text        NOT NULL,
    created_at     timestamptz NOT NULL,
    attempts       int         NOT NULL,
    reason         text        NOT NULL,
    discarded_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    discarded_by   name        NOT NULL
);
COMMENT ON TABLE alexandrite.outbox_discarded IS 'dead letters dropped by outbox_discard, without their payload: which event, why it was dead, who dropped it and when (consumers see a gap in aggregate_seq)';
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_discarded', '');

-- the reading views are the privilege boundary (owner's rights), with the
-- handled test inlined instead of a function the reader would need
ALTER VIEW alexandrite.outbox RESET (security_invoker);
CREATE OR REPLACE VIEW alexandrite.outbox AS
SELECT e.id, e.aggregate_type, e.aggregate_id, e.aggregate_seq, e.event_type, e.payload, e.headers,
       e.created_at,
       CASE WHEN d.id IS NOT NULL THEN 'dead'
            WHEN q.id IS NOT NULL THEN 'retrying'
            WHEN x.id IS NOT NULL THEN 'discarded'
            WHEN pg_catalog.pg_visible_in_snapshot(e.txid, r.last_snapshot)
                 OR (r.batch_snapshot IS NOT NULL
                     AND pg_catalog.pg_visible_in_snapshot(e.txid, r.batch_snapshot)
                     AND e.id OPERATOR(pg_catalog.<=) r.batch_pos) THEN 'published'
            ELSE 'pending' END AS state,
       COALESCE(d.attempts, q.attempts, x.attempts, 0) AS attempts,
       COALESCE(d.reason, q.last_error, x.reason) AS last_error
  FROM alexandrite.outbox_events e
 CROSS JOIN alexandrite.outbox_relay r
  LEFT JOIN alexandrite.outbox_retry q ON q.id OPERATOR(pg_catalog.=) e.id
  LEFT JOIN alexandrite.outbox_dead d ON d.id OPERATOR(pg_catalog.=) e.id
  LEFT JOIN alexandrite.outbox_discarded x ON x.id OPERATOR(pg_catalog.=) e.id
UNION ALL
SELECT q.id, q.aggregate_type, q.aggregate_id, q.aggregate_seq, q.event_type, q.payload, q.headers,
       q.created_at, 'retrying', q.attempts, q.last_error
  FROM alexandrite.outbox_retry q
 WHERE NOT EXISTS (SELECT 1 FROM alexandrite.outbox_events e WHERE e.id OPERATOR(pg_catalog.=) q.id)
UNION ALL
SELECT d.id, d.aggregate_type, d.aggregate_id, d.aggregate_seq, d.event_type, d.payload, d.headers,
       d.created_at, 'dead', d.attempts, d.reason
  FROM alexandrite.outbox_dead d
 WHERE NOT EXISTS (SELECT 1 FROM alexandrite.outbox_events e WHERE e.id OPERATOR(pg_catalog.=) d.id);
COMMENT ON VIEW alexandrite.outbox IS 'outbox events still retained, with their delivery state (pending, published, retrying, dead, discarded)';
ALTER VIEW alexandrite.outbox_blocked RESET (security_invoker);
CREATE OR REPLACE VIEW alexandrite.outbox_blocked AS
SELECT b.aggregate_type, b.aggregate_id, pg_catalog.min(b.id) AS head_id,
       pg_catalog.count(*) AS waiting_events,
       pg_catalog.bool_or(b.dead) AS dead,
       pg_catalog.min(b.created_at) AS oldest_created_at,
       (pg_catalog.array_agg(b.error ORDER BY b.id))[1] AS head_error
  FROM (SELECT q.id, q.aggregate_type, q.aggregate_id, false AS dead, q.created_at, q.last_error AS error,
               q.attempts OPERATOR(pg_catalog.>) 0 OR q.last_error IS NOT NULL AS failed
          FROM alexandrite.outbox_retry q
        UNION ALL
        SELECT d.id, d.aggregate_type, d.aggregate_id, true, d.created_at, d.reason, true
          FROM alexandrite.outbox_dead d) b
 GROUP BY b.aggregate_type, b.aggregate_id
-- an aggregate whose first waiting event has neither failed nor been
-- requeued is not blocked: its events past a chunk's wave bound
-- (alexandrite.outbox_max_waves) wait there.  Only the first waiting event
-- of an aggregate can have failed or been requeued (the relay sends none
-- behind it), so any() is the first one's.
HAVING pg_catalog.bool_or(b.dead) OR pg_catalog.bool_or(b.failed);
COMMENT ON VIEW alexandrite.outbox_blocked IS 'aggregates whose events wait behind a failed one (retrying, or dead until requeued); events deferred past a chunk''s wave bound do not count';
ALTER VIEW alexandrite.outbox_status RESET (security_invoker);
CREATE OR REPLACE VIEW alexandrite.outbox_status AS
SELECT p.pending OPERATOR(pg_catalog.+) q.retrying AS pending,
       pg_catalog.now() OPERATOR(pg_catalog.-) LEAST(p.oldest, q.oldest) AS oldest_pending_age,
       r.published_total,
       (SELECT pg_catalog.count(*) FROM alexandrite.outbox_dead) AS dead_letters,
       COALESCE(i.relay_connected, false) AS relay_connected,
       i.last_error,
       (SELECT pg_catalog.count(*) FROM alexandrite.outbox_blocked) AS blocked_aggregates,
       q.retrying,
       i.relay_pid,
       i.broker,
       i.last_error_at
  FROM alexandrite.outbox_relay r
 CROSS JOIN LATERAL (
        SELECT pg_catalog.count(*) AS pending, pg_catalog.min(e.created_at) AS oldest
          FROM alexandrite.outbox_events e
         WHERE e.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin(r.last_snapshot)
           AND NOT (pg_catalog.pg_visible_in_snapshot(e.txid, r.last_snapshot)
                    OR (r.batch_snapshot IS NOT NULL
                        AND pg_catalog.pg_visible_in_snapshot(e.txid, r.batch_snapshot)
                        AND e.id OPERATOR(pg_catalog.<=) r.batch_pos))) p
 CROSS JOIN LATERAL (
        SELECT pg_catalog.count(*) AS retrying, pg_catalog.min(q.created_at) AS oldest
          FROM alexandrite.outbox_retry q) q
 CROSS JOIN alexandrite.outbox_relay_info() i;
DROP FUNCTION alexandrite.outbox_handled(alexandrite.outbox_relay, xid8, bigint);

-- Events come from the API: no trigger emits order events, and nothing
-- guesses a restore from the text of a statement.
DROP TRIGGER outbox_emit_order_event ON alexandrite.order_events;
DROP TRIGGER outbox_emit_sla_breach ON alexandrite.sla_breaches;
DROP FUNCTION alexandrite.outbox_order_event_trigger();
DROP FUNCTION alexandrite.outbox_sla_breach_trigger();
DROP FUNCTION alexandrite.outbox_restoring();
-- orders keep their seq in orders.event_seq (core section)
DELETE FROM alexandrite.outbox_aggregates a WHERE a.aggregate_type OPERATOR(pg_catalog.=) 'order';
-- byte order for the key: compared on every first event of an aggregate in a
-- transaction (src/outbox/aggseq.c); equality is the same in every
-- deterministic collation
ALTER TABLE alexandrite.outbox_aggregates
    ALTER COLUMN aggregate_type TYPE text COLLATE pg_catalog."C",
    ALTER COLUMN aggregate_id TYPE text COLLATE pg_catalog."C";
COMMENT ON TABLE alexandrite.outbox_aggregates IS 'last aggregate_seq given out per aggregate (orders: orders.event_seq)';
COMMENT ON FUNCTION alexandrite.outbox_wakeup_at_commit() IS 'wakes the relay when the calling transaction commits (used by outbox_requeue and outbox_discard)';
-- Writes one event in the calling transaction (C: src/outbox/produce.c).
-- Refuses what the relay could not frame: see docs/outbox.md, "Limits".
-- Events of aggregate type 'order' take their seq from the order row.
CREATE OR REPLACE FUNCTION alexandrite.outbox_emit(aggregate_type text, aggregate_id text, event_type text,
                                        payload jsonb, headers jsonb DEFAULT '{}')
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_emit'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.outbox_emit(text, text, text, jsonb, jsonb)
    IS 'writes an event to the outbox in the calling transaction; returns its id (the AMQP message_id)';
REVOKE ALL ON FUNCTION alexandrite.outbox_emit(text, text, text, jsonb, jsonb) FROM PUBLIC;

------------------------------------------------------------------------------
-- dashboard
--
-- 1.1 built each dashboard's objects with a PL/pgSQL code generator and kept
-- its fold as SQL text in the registry (fold_sql).  1.2 keeps declarations
-- only and derives everything else in C (src/dashboard).  Every dashboard,
-- built in or declared by a DBA, is rebuilt from its declaration by the C
-- rebuild_dashboard(): its summary and delta tables (same layout) are kept,
-- given to the extension owner and recomputed from the base table, so the
-- figures are exact after the update whatever 1.1 had missed (mesh_ingest
-- was not captured); its read view is replaced by one with the owner's
-- rights; the definition views, the statement triggers and fold_sql go.
------------------------------------------------------------------------------
-- what 1.1 generated and ran as SQL text
DROP VIEW alexandrite.dashboard_lag;
DROP FUNCTION alexandrite.dashboard_pending(regclass);
DROP FUNCTION alexandrite.dashboard_check(integer);
DROP FUNCTION alexandrite.dashboard_invalidate(regclass);
DROP FUNCTION alexandrite.create_dashboard(text, regclass, text[], text, text[], text, text[], text[], text, interval[], text[]);
DROP FUNCTION alexandrite.drop_dashboard(text);
DROP FUNCTION alexandrite.rebuild_dashboard(text, timestamptz);
DROP FUNCTION alexandrite.reconcile_dashboards(text);
DROP FUNCTION alexandrite.dashboard_agg_sql(alexandrite.dashboards, text);
DROP FUNCTION alexandrite.dashboard_due_bucket(timestamptz);

COMMENT ON TABLE alexandrite.dashboards IS 'registry of incrementally maintained dashboards: declarations only (grouped count/sum over one table), validated again by the library whenever it reads them';
COMMENT ON FUNCTION alexandrite.dashboard_capture()
    IS 'internal: trigger of the dashboard capture (alx_dashboard_capture per row, alx_dashboard_flush per statement, alx_dashboard_truncate)';

CREATE FUNCTION alexandrite.dashboard_due_bucket(due timestamptz) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'alexandrite_dashboard_due_bucket'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.dashboard_due_bucket(timestamptz)
    IS 'the minute (UTC-aligned) a due time falls in: the resolution of dashboard deltas and watermarks';

CREATE FUNCTION alexandrite.create_dashboard(
    name text, base_table regclass, group_by text[],
    count_name text DEFAULT 'count', sums text[] DEFAULT '{}', filter text DEFAULT NULL,
    key_names text[] DEFAULT NULL, sum_names text[] DEFAULT NULL,
    due text DEFAULT NULL, horizons interval[] DEFAULT '{}', horizon_names text[] DEFAULT NULL)
    RETURNS regclass
    AS 'MODULE_PATHNAME', 'alexandrite_create_dashboard'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.create_dashboard(text, regclass, text[], text, text[], text, text[], text[], text, interval[], text[])
    IS 'declares an incrementally maintained grouped count/sum dashboard over a table (optionally with time-relative counts); returns its read view';
REVOKE ALL ON FUNCTION alexandrite.create_dashboard(text, regclass, text[], text, text[], text, text[], text[], text, interval[], text[]) FROM PUBLIC;

CREATE FUNCTION alexandrite.drop_dashboard(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_drop_dashboard'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.drop_dashboard(text) IS 'drops a user-declared dashboard and its generated objects';
REVOKE ALL ON FUNCTION alexandrite.drop_dashboard(text) FROM PUBLIC;

CREATE FUNCTION alexandrite.rebuild_dashboard(name text, watermark timestamptz DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_rebuild_dashboard'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.rebuild_dashboard(text, timestamptz)
    IS 'recomputes a dashboard from its base table (briefly blocks writers of that table) and builds again any of its objects that is missing, with its time-relative counts as of watermark (default: the current minute); returns the number of groups';
REVOKE ALL ON FUNCTION alexandrite.rebuild_dashboard(text, timestamptz) FROM PUBLIC;

CREATE FUNCTION alexandrite.reconcile_dashboards(name text DEFAULT NULL)
    RETURNS TABLE (dashboard text, groups bigint, mismatched_groups bigint, ok boolean)
    AS 'MODULE_PATHNAME', 'alexandrite_reconcile_dashboards'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.reconcile_dashboards(text)
    IS 'compares each dashboard (or the named one) with the same GROUP BY over its base table; flags mismatches for rebuild';
REVOKE ALL ON FUNCTION alexandrite.reconcile_dashboards(text) FROM PUBLIC;

-- 1.1's statement triggers (transition tables) give way to the row capture
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT DISTINCT d.base_table FROM alexandrite.dashboards d
              WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) d.base_table) LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS alx_dashboard_ins ON %1$s; DROP TRIGGER IF EXISTS alx_dashboard_upd ON %1$s; '
                                  'DROP TRIGGER IF EXISTS alx_dashboard_del ON %1$s; DROP TRIGGER IF EXISTS alx_dashboard_trunc ON %1$s', t);
    END LOOP;
END;
$$;
-- orders: its rows are captured by the order core's C trigger
-- (orders_maintain, sla section)
CREATE TRIGGER alx_dashboard_flush AFTER INSERT OR UPDATE OR DELETE ON alexandrite.orders
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture();
CREATE TRIGGER alx_dashboard_truncate AFTER TRUNCATE ON alexandrite.orders
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture();
CREATE TRIGGER alx_dashboard_capture AFTER INSERT OR UPDATE OR DELETE ON alexandrite.meshes
    FOR EACH ROW EXECUTE FUNCTION alexandrite.dashboard_capture();
CREATE TRIGGER alx_dashboard_flush AFTER INSERT OR UPDATE OR DELETE ON alexandrite.meshes
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture();
CREATE TRIGGER alx_dashboard_truncate AFTER TRUNCATE ON alexandrite.meshes
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture();
CREATE TRIGGER alx_dashboard_capture AFTER INSERT OR UPDATE OR DELETE ON alexandrite.quotes
    FOR EACH ROW EXECUTE FUNCTION alexandrite.dashboard_capture();
CREATE TRIGGER alx_dashboard_flush AFTER INSERT OR UPDATE OR DELETE ON alexandrite.quotes
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture();
CREATE TRIGGER alx_dashboard_truncate AFTER TRUNCATE ON alexandrite.quotes
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.dashboard_capture();

-- every dashboard rebuilt from its declaration (objects taken over, figures recomputed)
SELECT pg_catalog.count(alexandrite.rebuild_dashboard(d.name))
  FROM (SELECT x.name FROM alexandrite.dashboards x
         WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) x.base_table)
         ORDER BY x.id) d;
DO $$
DECLARE
    v regclass;
BEGIN
    FOR v IN SELECT d.def_view FROM alexandrite.dashboards d
              WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) d.def_view) LOOP
        EXECUTE pg_catalog.format('DROP VIEW %s', v);
    END LOOP;
END;
$$;
ALTER TABLE alexandrite.dashboards DROP COLUMN def_view, DROP COLUMN summary_table, DROP COLUMN delta_table,
    DROP COLUMN read_view, DROP COLUMN fold_sql;

COMMENT ON VIEW alexandrite.dashboard_status_counts
    IS 'orders per status and channel, exact at the reading transaction''s snapshot';
COMMENT ON VIEW alexandrite.dashboard_operator_load
    IS 'open and overdue (past due) orders per operator holding open orders, exact at the reading transaction''s snapshot';
-- owner's rights, like the read views
ALTER VIEW alexandrite.dashboard_sla RESET (security_invoker);

CREATE FUNCTION alexandrite.dashboard_pending()
    RETURNS TABLE (dashboard_id integer, pending_changes bigint, oldest_pending timestamptz, delta_bytes bigint)
    AS 'MODULE_PATHNAME', 'alexandrite_dashboard_pending'
    LANGUAGE C STABLE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.dashboard_pending()
    IS 'per dashboard: the pending delta rows, the time of the oldest and the size of the delta table (read as the extension owner)';
REVOKE ALL ON FUNCTION alexandrite.dashboard_pending() FROM PUBLIC;

CREATE VIEW alexandrite.dashboard_lag AS
SELECT d.name AS dashboard,
       p.pending_changes,
       pg_catalog.now() OPERATOR(pg_catalog.-) p.oldest_pending AS oldest_pending_age,
       p.delta_bytes,
       s.watermark,
       s.last_fold_at,
       s.last_fold_ms,
       s.last_fold_rows,
       s.folds,
       s.folded_total,
       COALESCE(s.needs_rebuild, true) AS rebuild_needed,
       CASE WHEN s.dashboard_id IS NULL THEN 'no state (restored from a dump?)' ELSE s.rebuild_reason END AS rebuild_reason,
       s.last_rebuild_at,
       s.last_truncate_at,
       s.last_reconcile_at,
       s.last_reconcile_ok
  FROM alexandrite.dashboards d
  LEFT JOIN alexandrite.dashboard_state s ON s.dashboard_id OPERATOR(pg_catalog.=) d.id
  LEFT JOIN alexandrite.dashboard_pending() p ON p.dashboard_id OPERATOR(pg_catalog.=) d.id;
COMMENT ON VIEW alexandrite.dashboard_lag
    IS 'per dashboard: pending (unfolded) changes and the age of the oldest, last fold, rebuild and reconcile state';


------------------------------------------------------------------------------
-- observe
--
-- metrics() no longer runs function names read from a table through a
-- SECURITY DEFINER function: the collectors are fixed, called by the C
-- functions below by names compiled into the library, as the owner.
------------------------------------------------------------------------------
DROP FUNCTION alexandrite.metrics();
DROP FUNCTION alexandrite.metric_samples(text[]);
DROP FUNCTION alexandrite.metrics_render(alexandrite.metric_sample[]);
DROP TABLE alexandrite.metric_collectors;

CREATE FUNCTION alexandrite.metric_samples(collectors text[] DEFAULT NULL)
    RETURNS SETOF alexandrite.metric_sample
    AS 'MODULE_PATHNAME', 'alexandrite_metric_samples'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.metric_samples(text[])
    IS 'the samples behind alexandrite.metrics(), from all collectors or the named ones (server, orders, sla, assignment, outbox, dashboards, meshes, quotes)';

CREATE FUNCTION alexandrite.metrics_render(samples alexandrite.metric_sample[])
    RETURNS text
    AS 'MODULE_PATHNAME', 'alexandrite_metrics_render'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.metrics_render(alexandrite.metric_sample[])
    IS 'renders metric samples in the Prometheus text exposition format';

CREATE FUNCTION alexandrite.metrics() RETURNS text
    AS 'MODULE_PATHNAME', 'alexandrite_metrics'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.metrics()
    IS 'Prometheus text exposition of alexandrite''s figures (orders, SLA, assignment, outbox, dashboards, meshes, quotes)';

REVOKE ALL ON FUNCTION alexandrite.metric_samples(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION alexandrite.metric_samples(text[]) TO pg_monitor;
GRANT EXECUTE ON FUNCTION alexandrite.metrics() TO pg_monitor;

-- mesh jobs (mesh section) in the figures and in the order's timeline
CREATE OR REPLACE FUNCTION alexandrite.metrics_meshes() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH h AS (
        SELECT d.le_seconds, sum(d.analyses) AS n, sum(d.sum_ms) AS ms
          FROM alexandrite.dashboard_mesh_analysis_time d GROUP BY d.le_seconds
    ), bounds AS (
        SELECT b FROM unnest('{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,Infinity}'::float8[]) AS b
    ), fam(family, help) AS (
        VALUES ('alexandrite_mesh_analysis_duration_seconds',
                'Time taken to analyse the stored meshes (alexandrite.meshes.analysis_ms), in seconds.')
    )
    (SELECT alexandrite.metric(fam.family, 'histogram', fam.help,
                COALESCE((SELECT sum(h.n) FROM h WHERE h.le_seconds <= bounds.b), 0),
                jsonb_build_object('le', CASE WHEN bounds.b = 'Infinity' THEN '+Inf' ELSE bounds.b::text END),
                '_bucket')
       FROM fam, bounds ORDER BY bounds.b)
    UNION ALL
    SELECT alexandrite.metric(fam.family, 'histogram', fam.help,
               COALESCE((SELECT sum(h.ms) FROM h), 0) / 1000.0, '{}', '_sum') FROM fam
    UNION ALL
    SELECT alexandrite.metric(fam.family, 'histogram', fam.help,
               COALESCE((SELECT sum(h.n) FROM h), 0), '{}', '_count') FROM fam
    UNION ALL
    -- the background analysis (mesh_submit): jobs not done, by state
    (SELECT alexandrite.metric('alexandrite_mesh_jobs', 'gauge',
                'Mesh jobs (mesh_submit) that are not done, by state.', COALESCE(c.n, 0),
                jsonb_build_object('state', s.state))
       FROM (VALUES ('failed'), ('queued'), ('running')) AS s(state)
       LEFT JOIN (SELECT j.state, count(*) AS n FROM alexandrite.mesh_jobs j
                   WHERE j.state <> 'done' GROUP BY j.state) c ON c.state = s.state
      ORDER BY s.state)
    UNION ALL
    SELECT alexandrite.metric('alexandrite_mesh_job_queue_bytes', 'gauge',
               'Bytes held by mesh jobs (queued, running, failed); alexandrite.mesh_queue_max_bytes bounds them.',
               COALESCE((SELECT sum(j.bytes) FROM alexandrite.mesh_jobs j
                          WHERE j.state <> 'done' AND j.data IS NOT NULL), 0))
    UNION ALL
    SELECT alexandrite.metric('alexandrite_mesh_job_oldest_seconds', 'gauge',
               'Age of the oldest mesh job that is queued or running, in seconds (0: none).',
               COALESCE((SELECT extract(epoch FROM now() - min(j.submitted_at)) FROM alexandrite.mesh_jobs j
                          WHERE j.state IN ('queued', 'running')), 0))
$$;
COMMENT ON FUNCTION alexandrite.metrics_meshes() IS 'metrics collector: mesh analyses and their duration histogram, the mesh job queue';

CREATE OR REPLACE FUNCTION alexandrite.order_timeline(order_id bigint)
    RETURNS TABLE (at timestamptz, kind text, from_status alexandrite.order_status,
                   to_status alexandrite.order_status, actor text, time_in_status interval,
                   event_type text, message_id bigint, delivery_state text, detail jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM alexandrite.orders o WHERE o.id = order_timeline.order_id) THEN
        RAISE EXCEPTION 'order % does not exist', order_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY
    SELECT t.at, t.kind, t.from_status, t.to_status, t.actor, t.time_in_status,
           t.event_type, t.message_id, t.delivery_state, t.detail
      FROM (
        -- status changes, with the time spent in each: until the next change,
        -- or until now while it lasts
        SELECT e.at, 'status'::text AS kind, e.from_status, e.to_status, e.actor,
               COALESCE(lead(e.at) OVER w, CASE WHEN alexandrite.is_open(e.to_status) THEN now() END) - e.at
                   AS time_in_status,
               NULL::text AS event_type, NULL::bigint AS message_id, NULL::text AS delivery_state,
               CASE WHEN e.traceparent IS NULL THEN e.detail
                    ELSE COALESCE(e.detail, '{}'::jsonb)
                         || jsonb_build_object('traceparent', e.traceparent,
                                               'trace_id', substr(e.traceparent, 4, 32)) END AS detail,
               0 AS sort_kind, e.id AS sort_id
          FROM alexandrite.order_events e
         WHERE e.order_id = order_timeline.order_id
        WINDOW w AS (ORDER BY e.id)
        UNION ALL
        -- the outbox messages about the order, while the outbox keeps them
        SELECT m.created_at, 'message', NULL, NULL, NULL, NULL,
               m.event_type, m.id, m.state,
               jsonb_strip_nulls(jsonb_build_object(
                   -- as the relay builds it: <aggregate_type>.<event_type>, no prefix twice
                   'routing_key', CASE WHEN starts_with(m.event_type, m.aggregate_type || '.') THEN m.event_type
                                       ELSE m.aggregate_type || '.' || m.event_type END,
                   'aggregate_seq', m.aggregate_seq,
                   'attempts', m.attempts,
                   'last_error', m.last_error,
                   'traceparent', m.headers->>'traceparent',
                   'trace_id', substr(m.headers->>'traceparent', 4, 32))),
               1, m.id
          FROM alexandrite.outbox m
         WHERE (m.aggregate_type = 'order' AND m.aggregate_id = order_timeline.order_id::text)
            OR (m.aggregate_type = 'mesh' AND m.aggregate_id IN
                  (SELECT j.id::text FROM alexandrite.mesh_job_status j WHERE j.order_id = order_timeline.order_id))
        UNION ALL
        -- the background analyses of its model (mesh_submit)
        SELECT j.submitted_at, 'mesh_job', NULL, NULL, j.submitted_by, NULL,
               NULL, NULL, NULL,
               jsonb_strip_nulls(jsonb_build_object(
                   'job_id', j.id, 'state', j.state, 'filename', j.filename, 'bytes', j.bytes,
                   'attempts', j.attempts, 'started_at', j.started_at, 'finished_at', j.finished_at,
                   'mesh_id', j.mesh_id, 'error_sqlstate', j.error_sqlstate,
                   'error_message', j.error_message, 'note', j.note)),
               2, j.id
          FROM alexandrite.mesh_job_status j
         WHERE j.order_id = order_timeline.order_id
      ) t
     ORDER BY t.at, t.sort_kind, t.sort_id;
END;
$$;
COMMENT ON FUNCTION alexandrite.order_timeline(bigint)
    IS 'status history of an order with the time spent in each status, its outbox messages with their delivery state, trace ids, and the mesh jobs of its model';


-- the two constraints below would fail on rows 1.1 accepted with a bare
-- check violation: name the rows and what to do first
DO $$
DECLARE
    bad text;
BEGIN
    -- (at most ten named: the message stays short whatever the table holds)
    SELECT pg_catalog.string_agg(pg_catalog.format('(%s, %s): %s', p.channel,
               COALESCE(p.customer_id, 'default'), p.weight), ', ')
      INTO bad
      FROM (SELECT * FROM alexandrite.sla_policies p
             WHERE NOT (p.weight OPERATOR(pg_catalog.>) 0
                        AND p.weight OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.float8)
             LIMIT 10) p;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'alexandrite 1.2 needs a finite SLA weight: %', bad
            USING ERRCODE = 'check_violation',
                  HINT = 'Set a finite positive weight on these policies (UPDATE alexandrite.sla_policies SET weight = ...), then run ALTER EXTENSION alexandrite UPDATE again.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('%s... (%s characters)',
               pg_catalog."left"(o.id, 40), pg_catalog.length(o.id)), ', ')
      INTO bad
      FROM (SELECT id FROM alexandrite.operators
             WHERE pg_catalog.length(id) OPERATOR(pg_catalog.>) 200 LIMIT 10) o;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'alexandrite 1.2 needs operator ids of at most 200 characters: %', bad
            USING ERRCODE = 'check_violation',
                  HINT = 'Rename or delete these operators first, then run ALTER EXTENSION alexandrite UPDATE again.';
    END IF;
END
$$;

-- an SLA weight must be finite: with 'Infinity' or 'NaN' (which passed
-- "weight > 0") the channel's orders could not be ranked, so they were left
-- off the board and never claimed
ALTER TABLE alexandrite.sla_policies DROP CONSTRAINT sla_policies_weight_check,
    ADD CONSTRAINT sla_policies_weight_check
    CHECK (weight OPERATOR(pg_catalog.>) 0 AND weight OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.float8);

-- an operator id is 1 to 200 characters: a longer one overflowed the
-- indexes it is a key of (operator_load, the dashboards), and rebalance()
-- failed for everyone while that operator was active
ALTER TABLE alexandrite.operators DROP CONSTRAINT operators_id_check,
    ADD CONSTRAINT operators_id_check
    CHECK (id OPERATOR(pg_catalog.<>) '' AND pg_catalog.length(id) OPERATOR(pg_catalog.<=) 200);

-- price_list_lock() takes a lock of the library's own: any role could take
-- the advisory lock of 1.1 with pg_advisory_lock() and hold off price changes
CREATE OR REPLACE FUNCTION alexandrite.price_list_lock() RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_price_list_lock'
    LANGUAGE C VOLATILE;

------------------------------------------------------------------------------
-- privileges (last: covers every routine above)
------------------------------------------------------------------------------
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA alexandrite FROM PUBLIC;
