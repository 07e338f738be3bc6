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
-- aggregate until commit and gives the gap-free aggregate_seq.
CREATE TABLE alexandrite.outbox_aggregates (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_seq       bigint NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) WITH (fillfactor = 70);
COMMENT ON TABLE alexandrite.outbox_aggregates IS 'last aggregate_seq given out per aggregate';

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

SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_events_0', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_events_1', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_events_2', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_aggregates', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_retry', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.outbox_dead', '');

------------------------------------------------------------------------------
-- Producing
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.outbox_wakeup_at_commit() RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_wakeup_at_commit'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.outbox_wakeup_at_commit() IS 'wakes the relay when the calling transaction commits (used by outbox_emit)';

CREATE FUNCTION alexandrite.outbox_emit(aggregate_type text, aggregate_id text, event_type text,
                                        payload jsonb, headers jsonb DEFAULT '{}')
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_seq   bigint;
    v_id    bigint;
    v_cur   int;
    v_hdr   jsonb := COALESCE(headers, '{}'::jsonb);
    v_trace text;
BEGIN
    IF aggregate_type IS NULL OR aggregate_id IS NULL OR event_type IS NULL OR payload IS NULL THEN
        RAISE EXCEPTION 'aggregate_type, aggregate_id, event_type and payload must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF aggregate_type OPERATOR(pg_catalog.!~) '^[A-Za-z0-9_-]{1,100}$' THEN
        RAISE EXCEPTION 'invalid aggregate_type "%"', aggregate_type
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An aggregate type is 1 to 100 letters, digits, hyphens or underscores.';
    END IF;
    IF event_type OPERATOR(pg_catalog.!~) '^[A-Za-z0-9_.-]{1,140}$' THEN
        RAISE EXCEPTION 'invalid event_type "%"', event_type
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An event type is 1 to 140 letters, digits, periods, hyphens or underscores.';
    END IF;
    IF aggregate_id OPERATOR(pg_catalog.=) '' OR pg_catalog.octet_length(aggregate_id) OPERATOR(pg_catalog.>) 200 THEN
        RAISE EXCEPTION 'aggregate_id must be 1 to 200 bytes long'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.jsonb_typeof(v_hdr) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION 'headers must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_hdr OPERATOR(pg_catalog.?|) ARRAY['aggregate_id', 'aggregate_type', 'aggregate_seq', 'event_type'] THEN
        RAISE EXCEPTION 'headers must not set aggregate_id, aggregate_type, aggregate_seq or event_type'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The relay sets these headers itself.';
    END IF;
    IF pg_catalog.pg_column_size(payload) OPERATOR(pg_catalog.>) 16777216 THEN
        RAISE EXCEPTION 'outbox payload is larger than 16 MB'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    v_trace := alexandrite.current_traceparent();
    IF v_trace IS NOT NULL AND NOT v_hdr OPERATOR(pg_catalog.?) 'traceparent' THEN
        v_hdr := v_hdr OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('traceparent', v_trace);
    END IF;

    -- 1. the aggregate's row lock (held until commit) and its next seq
    INSERT INTO alexandrite.outbox_aggregates AS a (aggregate_type, aggregate_id, last_seq)
    VALUES (outbox_emit.aggregate_type, outbox_emit.aggregate_id, 1)
    ON CONFLICT ON CONSTRAINT outbox_aggregates_pkey
    DO UPDATE SET last_seq = a.last_seq OPERATOR(pg_catalog.+) 1
    RETURNING a.last_seq INTO v_seq;
    -- 2. the id, only after the lock: ids of one aggregate follow its seq
    v_id := pg_catalog.nextval('alexandrite.outbox_id_seq'::pg_catalog.regclass);
    -- 3. the current table of the rotating log
    SELECT r.cur_table INTO v_cur FROM alexandrite.outbox_relay r;
    IF v_cur OPERATOR(pg_catalog.=) 1 THEN
        INSERT INTO alexandrite.outbox_events_1 (id, aggregate_type, aggregate_id, aggregate_seq, event_type, payload, headers)
        VALUES (v_id, outbox_emit.aggregate_type, outbox_emit.aggregate_id, v_seq, outbox_emit.event_type, outbox_emit.payload, v_hdr);
    ELSIF v_cur OPERATOR(pg_catalog.=) 2 THEN
        INSERT INTO alexandrite.outbox_events_2 (id, aggregate_type, aggregate_id, aggregate_seq, event_type, payload, headers)
        VALUES (v_id, outbox_emit.aggregate_type, outbox_emit.aggregate_id, v_seq, outbox_emit.event_type, outbox_emit.payload, v_hdr);
    ELSE
        INSERT INTO alexandrite.outbox_events_0 (id, aggregate_type, aggregate_id, aggregate_seq, event_type, payload, headers)
        VALUES (v_id, outbox_emit.aggregate_type, outbox_emit.aggregate_id, v_seq, outbox_emit.event_type, outbox_emit.payload, v_hdr);
    END IF;
    -- 4. wake the relay when (if) this transaction commits
    PERFORM alexandrite.outbox_wakeup_at_commit();
    RETURN v_id;
END;
$$;
COMMENT ON FUNCTION alexandrite.outbox_emit(text, text, text, jsonb, jsonb)
    IS 'writes an event to the outbox in the calling transaction; returns its id (the AMQP message_id)';

------------------------------------------------------------------------------
-- Order events, emitted by triggers on the order core
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.outbox_restoring() RETURNS boolean
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_restoring'
    LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.outbox_restoring() IS 'true while rows are loaded by COPY (pg_restore): the triggers then emit nothing';

CREATE FUNCTION alexandrite.outbox_order_event_trigger() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o   alexandrite.orders;
    hdr jsonb := '{}';
BEGIN
    IF alexandrite.outbox_restoring() THEN
        RETURN NULL;        -- restored rows: their events are restored with the outbox
    END IF;
    SELECT * INTO o FROM alexandrite.orders x WHERE x.id OPERATOR(pg_catalog.=) NEW.order_id;
    IF NEW.traceparent IS NOT NULL THEN
        hdr := pg_catalog.jsonb_build_object('traceparent', NEW.traceparent);
    END IF;
    IF NEW.from_status IS NULL THEN
        PERFORM alexandrite.outbox_emit('order', NEW.order_id::text, 'order.created',
            pg_catalog.jsonb_build_object(
                'order_id', o.id, 'external_ref', o.external_ref, 'channel', o.channel,
                'customer_id', o.customer_id, 'mesh_id', o.mesh_id, 'material', o.material,
                'status', NEW.to_status, 'price', o.price, 'created_at', o.created_at,
                'sla_due_at', o.sla_due_at, 'actor', NEW.actor),
            hdr);
    ELSE
        PERFORM alexandrite.outbox_emit('order', NEW.order_id::text, 'order.status_changed',
            pg_catalog.jsonb_build_object(
                'order_id', NEW.order_id, 'external_ref', o.external_ref,
                'from_status', NEW.from_status, 'to_status', NEW.to_status,
                'at', NEW.at, 'actor', NEW.actor, 'operator_id', o.operator_id,
                'sla_due_at', o.sla_due_at),
            hdr);
        IF NEW.to_status OPERATOR(pg_catalog.=) 'priced'::alexandrite.order_status THEN
            PERFORM alexandrite.outbox_emit('order', NEW.order_id::text, 'order.priced',
                pg_catalog.jsonb_build_object(
                    'order_id', NEW.order_id, 'external_ref', o.external_ref,
                    'price', o.price, 'material', o.material, 'mesh_id', o.mesh_id,
                    'at', NEW.at, 'actor', NEW.actor),
                hdr);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION alexandrite.outbox_order_event_trigger()
    IS 'emits order.created / order.status_changed / order.priced for each order_events row';

CREATE TRIGGER outbox_emit_order_event AFTER INSERT ON alexandrite.order_events
    FOR EACH ROW EXECUTE FUNCTION alexandrite.outbox_order_event_trigger();

CREATE FUNCTION alexandrite.outbox_sla_breach_trigger() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o   alexandrite.orders;
    hdr jsonb := '{}';
BEGIN
    IF alexandrite.outbox_restoring() THEN
        RETURN NULL;
    END IF;
    SELECT * INTO o FROM alexandrite.orders x WHERE x.id OPERATOR(pg_catalog.=) NEW.order_id;
    PERFORM alexandrite.outbox_emit('order', NEW.order_id::text, 'order.sla_breached',
        pg_catalog.jsonb_build_object(
            'order_id', NEW.order_id, 'external_ref', o.external_ref, 'channel', o.channel,
            'sla_due_at', NEW.sla_due_at, 'breached_at', NEW.breached_at,
            'status_at_breach', NEW.status_at_breach, 'operator_id', NEW.operator_id),
        hdr);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION alexandrite.outbox_sla_breach_trigger()
    IS 'emits order.sla_breached for each sla_breaches row';

CREATE TRIGGER outbox_emit_sla_breach AFTER INSERT ON alexandrite.sla_breaches
    FOR EACH ROW EXECUTE FUNCTION alexandrite.outbox_sla_breach_trigger();

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
            WHEN pg_catalog.pg_visible_in_snapshot(e.txid, r.last_snapshot)
                 OR (r.batch_snapshot IS NOT NULL
                     AND pg_catalog.pg_visible_in_snapshot(e.txid, r.batch_snapshot)
                     AND e.id OPERATOR(pg_catalog.<=) r.batch_pos) THEN 'published'
            ELSE 'pending' END AS state,
       COALESCE(d.attempts, q.attempts, 0) AS attempts,
       COALESCE(d.reason, q.last_error) AS last_error
  FROM alexandrite.outbox_events e
 CROSS JOIN alexandrite.outbox_relay r
  LEFT JOIN alexandrite.outbox_retry q ON q.id OPERATOR(pg_catalog.=) e.id
  LEFT JOIN alexandrite.outbox_dead d ON d.id OPERATOR(pg_catalog.=) e.id
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
COMMENT ON VIEW alexandrite.outbox IS 'outbox events still retained, with their delivery state (pending, published, retrying, dead)';

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
  FROM (SELECT q.id, q.aggregate_type, q.aggregate_id, false AS dead, q.created_at, q.last_error AS error
          FROM alexandrite.outbox_retry q
        UNION ALL
        SELECT d.id, d.aggregate_type, d.aggregate_id, true, d.created_at, d.reason
          FROM alexandrite.outbox_dead d) b
 GROUP BY b.aggregate_type, b.aggregate_id;
COMMENT ON VIEW alexandrite.outbox_blocked IS 'aggregates whose events wait behind a failed one (retrying, or dead until requeued)';

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
