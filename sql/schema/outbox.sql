/* sql/schema/outbox.sql: transactional outbox drained to RabbitMQ by the relay worker
 * Part of the current install script (make concatenates the files of sql/schema in the
 * order of SCHEMA in the Makefile into alexandrite--<version>.sql).  A change
 * here needs the same change in the current upgrade script. */

------------------------------------------------------------------------------
-- Storage
--
-- Events are written once and never updated: an insert-only log spread over
-- three tables (outbox_events_0..2, children of outbox_events) of which one is
-- current.  The relay reads the log in batches defined by two snapshots (an
-- event belongs to the batch when its transaction is visible in the new
-- snapshot and was not in the previous one, as in PgQ), so a transaction that
-- commits late is never skipped, and it recycles a table with TRUNCATE once
-- every event in it has been handled.  No UPDATE or DELETE ever touches the
-- log, so it never bloats whatever xmin is held.  Delivery state is derived
-- from the relay's cursor (outbox_relay) and the small retry and dead-letter
-- tables.
------------------------------------------------------------------------------

-- CACHE 1: ids must follow the order in which producers take them (see
-- docs/outbox.md, "ordering argument").
CREATE SEQUENCE alexandrite.outbox_id_seq CACHE 1;
COMMENT ON SEQUENCE alexandrite.outbox_id_seq IS 'outbox event ids (the AMQP message_id)';

CREATE TABLE alexandrite.outbox_events (
    id             bigint      NOT NULL,
    txid           xid8        NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    aggregate_seq  bigint      NOT NULL,
    event_type     text        NOT NULL,
    payload        jsonb       NOT NULL,
    headers        jsonb       NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE alexandrite.outbox_events IS 'the outbox event log (parent of the rotating tables outbox_events_0..2; insert-only)';

CREATE TABLE alexandrite.outbox_events_0 () INHERITS (alexandrite.outbox_events)
    WITH (fillfactor = 100, autovacuum_enabled = false, toast.autovacuum_enabled = false);
CREATE TABLE alexandrite.outbox_events_1 () INHERITS (alexandrite.outbox_events)
    WITH (fillfactor = 100, autovacuum_enabled = false, toast.autovacuum_enabled = false);
CREATE TABLE alexandrite.outbox_events_2 () INHERITS (alexandrite.outbox_events)
    WITH (fillfactor = 100, autovacuum_enabled = false, toast.autovacuum_enabled = false);
CREATE UNIQUE INDEX outbox_events_0_id_idx ON alexandrite.outbox_events_0 (id);
CREATE UNIQUE INDEX outbox_events_1_id_idx ON alexandrite.outbox_events_1 (id);
CREATE UNIQUE INDEX outbox_events_2_id_idx ON alexandrite.outbox_events_2 (id);
CREATE INDEX outbox_events_0_txid_idx ON alexandrite.outbox_events_0 (txid);
CREATE INDEX outbox_events_1_txid_idx ON alexandrite.outbox_events_1 (txid);
CREATE INDEX outbox_events_2_txid_idx ON alexandrite.outbox_events_2 (txid);
COMMENT ON TABLE alexandrite.outbox_events_0 IS 'outbox event log, rotating table 0 (truncated by the relay when drained)';
COMMENT ON TABLE alexandrite.outbox_events_1 IS 'outbox event log, rotating table 1 (truncated by the relay when drained)';
COMMENT ON TABLE alexandrite.outbox_events_2 IS 'outbox event log, rotating table 2 (truncated by the relay when drained)';

-- One row per aggregate: its row lock serialises the producers of one
-- aggregate until commit and gives the gap-free aggregate_seq.  Orders have
-- no row here: the order row is their lock and counter (orders.event_seq).
CREATE TABLE alexandrite.outbox_aggregates (
    aggregate_type text COLLATE pg_catalog."C" NOT NULL,   -- byte order: the key is compared on
    aggregate_id   text COLLATE pg_catalog."C" NOT NULL,   -- every first event, equality is the same
    last_seq       bigint NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) WITH (fillfactor = 70);
COMMENT ON TABLE alexandrite.outbox_aggregates IS 'last aggregate_seq given out per aggregate (orders: orders.event_seq)';

-- The relay's cursor (one row).
CREATE TABLE alexandrite.outbox_relay (
    one             boolean     PRIMARY KEY DEFAULT true CHECK (one),
    cur_table       int         NOT NULL DEFAULT 0 CHECK (cur_table OPERATOR(pg_catalog.>=) 0 AND cur_table OPERATOR(pg_catalog.<) 3),
    rotated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_snapshot   pg_snapshot NOT NULL,   -- every event visible here is handled
    batch_snapshot  pg_snapshot,            -- the batch being drained, or NULL
    batch_pos       bigint      NOT NULL DEFAULT 0,  -- batch events with id <= this are handled
    batch_end       bigint      NOT NULL DEFAULT 0,  -- the largest id in the batch
    published_total bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
) WITH (fillfactor = 50);
COMMENT ON TABLE alexandrite.outbox_relay IS 'the relay''s durable cursor and table rotation state (one row, written by the relay only)';
-- The empty snapshot: every event in the log is new to this relay row.  On a
-- fresh install the log is empty; after pg_restore (which recreates this row
-- but restores the events) the restored events are published again
-- (at least once; consumers dedupe on message_id).
INSERT INTO alexandrite.outbox_relay (last_snapshot) VALUES ('1:1:');

-- Events waiting for another attempt: the one that failed and every later
-- event of its aggregate (the aggregate is blocked until they are through).
CREATE TABLE alexandrite.outbox_retry (
    id              bigint      PRIMARY KEY,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    aggregate_seq   bigint      NOT NULL,
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    headers         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_error      text
);
CREATE INDEX outbox_retry_aggregate_idx ON alexandrite.outbox_retry (aggregate_type, aggregate_id, id);
COMMENT ON TABLE alexandrite.outbox_retry IS 'outbox events of blocked aggregates, retried in order with backoff';

CREATE TABLE alexandrite.outbox_dead (
    id             bigint      PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    aggregate_seq  bigint      NOT NULL,
    event_type     text        NOT NULL,
    payload        jsonb       NOT NULL,
    headers        jsonb       NOT NULL,
    created_at     timestamptz NOT NULL,
    attempts       int         NOT NULL,
    reason         text        NOT NULL,
    dead_at        timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX outbox_dead_aggregate_idx ON alexandrite.outbox_dead (aggregate_type, aggregate_id, id);
COMMENT ON TABLE alexandrite.outbox_dead IS 'outbox events that exhausted alexandrite.outbox_max_attempts; their aggregate stays blocked until outbox_requeue or outbox_discard';

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

SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_events_0', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_events_1', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_events_2', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_aggregates', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_retry', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_dead', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_discarded', '');

------------------------------------------------------------------------------
-- Producing
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.outbox_wakeup_at_commit() RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_wakeup_at_commit'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.outbox_wakeup_at_commit() IS 'wakes the relay when the calling transaction commits (used by outbox_requeue and outbox_discard)';

-- Writes one event in the calling transaction (C: src/outbox/produce.c).
-- Refuses what the relay could not frame: see docs/outbox.md, "Limits".
-- Events of aggregate type 'order' take their seq from the order row.
CREATE FUNCTION alexandrite.outbox_emit(aggregate_type text, aggregate_id text, event_type text,
                                        payload jsonb, headers jsonb DEFAULT '{}')
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_emit'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.outbox_emit(text, text, text, jsonb, jsonb)
    IS 'writes an event to the outbox in the calling transaction; returns its id (the AMQP message_id)';
REVOKE ALL ON FUNCTION alexandrite.outbox_emit(text, text, text, jsonb, jsonb) FROM PUBLIC;

-- Order events are written by the order API itself (src/core), in the same
-- statement as the change: no trigger emits anything, so rows loaded by
-- COPY, pg_restore or logical replication neither create nor lose events.

------------------------------------------------------------------------------
-- Reading the outbox
------------------------------------------------------------------------------
-- The views below are read with the rights of their owner (the extension
-- owner): they are the privilege boundary, a reader needs SELECT on the view
-- and nothing on the internal tables (docs/operations.md, "Privileges").
-- An event is handled (published, or moved to retry or dead letters) when
-- its transaction is visible in the relay's last snapshot, or in the batch
-- being drained at or before the batch cursor.
CREATE VIEW alexandrite.outbox AS
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

CREATE FUNCTION alexandrite.outbox_relay_info(
    OUT relay_pid int, OUT relay_connected boolean, OUT broker text, OUT last_error text,
    OUT last_error_at timestamptz, OUT published_since_start bigint, OUT confirms_failed bigint,
    OUT reconnects bigint)
    RETURNS record
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_relay_info'
    LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.outbox_relay_info()
    IS 'state of the relay worker from shared memory (broker URLs with their passwords masked)';

CREATE FUNCTION alexandrite.outbox_latency(OUT le_ms float8, OUT confirmed bigint, OUT sum_ms float8)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_latency'
    LANGUAGE C VOLATILE PARALLEL SAFE ROWS 14;
COMMENT ON FUNCTION alexandrite.outbox_latency()
    IS 'histogram of event creation -> broker confirm latency since server start: cumulative confirms per upper bound (ms)';

CREATE VIEW alexandrite.outbox_blocked AS
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

CREATE VIEW alexandrite.outbox_status AS
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
COMMENT ON VIEW alexandrite.outbox_status IS 'outbox backlog and relay health';

------------------------------------------------------------------------------
-- Operating on dead letters: one C implementation (src/outbox/deadletter.c)
-- behind both, which writes outbox_dead and outbox_retry as the extension
-- owner; EXECUTE is for the operations role (docs/operations.md, "Privileges").
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.outbox_requeue(ids bigint[]) RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_requeue'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.outbox_requeue(bigint[])
    IS 'puts dead letters back in line (in id order within their aggregate); returns how many';

CREATE FUNCTION alexandrite.outbox_discard(ids bigint[]) RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_discard'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.outbox_discard(bigint[])
    IS 'drops dead letters for good, unblocking their aggregates; returns how many';
