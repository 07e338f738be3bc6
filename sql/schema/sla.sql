/* sql/schema/sla.sql: SLA priority, assignment to operators, escalation, order board
 * Part of the current install script (make concatenates the files of sql/schema in the
 * order of SCHEMA in the Makefile into alexandrite--<version>.sql).  A change
 * here needs the same change in the current upgrade script. */

------------------------------------------------------------------------------
-- The score (C, src/sla/sla.c; formula and proofs in docs/sla.md)
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.sla_priority(created_at timestamptz, sla_due_at timestamptz,
                                         channel text, at timestamptz DEFAULT pg_catalog.now())
    RETURNS float8
    AS 'MODULE_PATHNAME', 'alexandrite_sla_priority'
    LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.sla_priority(timestamptz, timestamptz, text, timestamptz)
    IS 'urgency of an order at time "at": weight * phi((at - sla_due_at) / target) of the channel policy; higher is more urgent';

CREATE FUNCTION alexandrite.sla_due_for_priority(priority float8, channel text, at timestamptz)
    RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'alexandrite_sla_due_for_priority'
    LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.sla_due_for_priority(float8, text, timestamptz)
    IS 'the due time at which an order of the channel scores "priority" at time "at" (sla_priority inverted in the due time)';

CREATE FUNCTION alexandrite.sla_at_for_priority(priority float8, channel text, sla_due_at timestamptz)
    RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'alexandrite_sla_at_for_priority'
    LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.sla_at_for_priority(float8, text, timestamptz)
    IS 'the moment at which an order of the channel due at sla_due_at scores "priority" (sla_priority inverted in "at")';

CREATE FUNCTION alexandrite.sla_channels() RETURNS text[]
    AS 'MODULE_PATHNAME', 'alexandrite_sla_channels'
    LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.sla_channels()
    IS 'the channels that have an SLA policy, from the per-backend cache';

-- Every backend caches the channel policies; a change to the table tells
-- them all to reload (relcache invalidation, as pg_cron does for cron.job).
CREATE FUNCTION alexandrite.sla_policies_invalidate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'alexandrite_sla_policies_invalidate'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.sla_policies_invalidate()
    IS 'internal: trigger that makes every backend reload its cached SLA policies';
CREATE TRIGGER sla_policies_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON alexandrite.sla_policies
    FOR EACH STATEMENT EXECUTE FUNCTION alexandrite.sla_policies_invalidate();
COMMENT ON TRIGGER sla_policies_invalidate ON alexandrite.sla_policies
    IS 'invalidates the per-backend cache of sla_priority when the policies change';

------------------------------------------------------------------------------
-- Index-friendly order.  For one channel and one moment, sla_priority is
-- strictly decreasing in sla_due_at, so (sla_due_at, id) ascending within a
-- channel is (priority descending, id ascending); the global order is the
-- merge of the channels' index scans by priority (docs/sla.md, "Proof").
------------------------------------------------------------------------------
-- the pool: open orders nobody holds (what assign_next and rebalance take)
CREATE INDEX orders_pool_due_idx ON alexandrite.orders (channel, sla_due_at, id)
    WHERE status OPERATOR(pg_catalog.<) 'assigned'::alexandrite.order_status AND operator_id IS NULL;
-- every open order (order_board, escalate_overdue)
CREATE INDEX orders_open_due_idx ON alexandrite.orders (channel, sla_due_at, id)
    WHERE status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status;

------------------------------------------------------------------------------
-- Claiming (C: src/sla/assign.c)
------------------------------------------------------------------------------

-- How many open orders each operator holds, kept by the orders_maintain
-- triggers so that an assignment checks capacity in O(1) instead of
-- counting the operator's orders (which a benchmark operator with a large
-- capacity holds by the ten thousand).  Only writes that change who holds
-- an open order touch it: assignment, release, and shipping or cancelling a
-- held order.  Every assignment reads it under the operator's row lock.
--
-- A missing row or a NULL count means "unknown": after TRUNCATE, a restore
-- (whose COPY fires the triggers row by row, at the end of the statement),
-- or a new operator.  A delta leaves an unknown count unknown (NULL + 1);
-- an assignment turns it into a known one under the operator's lock.  So
-- the table is exact whenever it is not NULL, and it is never both dumped
-- and re-derived.  No CHECK (open_orders >= 0): every writer keeps it by
-- construction (a move below 0 gives NULL, a count is a count(*)), only the
-- extension owner may write the table, and a CHECK is parsed again at every
-- execution of a cached statement (it cost 14k instructions per assignment).
-- Readers count a negative value again, like NULL; TAP 030/031 compare the
-- counts with the orders.
CREATE TABLE alexandrite.operator_load (
    operator_id text PRIMARY KEY,
    open_orders integer
);
COMMENT ON TABLE alexandrite.operator_load
    IS 'open orders held per operator, kept by the orders_maintain triggers; NULL or no row: unknown, counted on demand; derived data, not dumped';

-- Rebuild operator_load from orders (after writes with
-- session_replication_role = replica and the triggers disabled).  Locks
-- every operator, so it never races an assignment.
CREATE FUNCTION alexandrite.sla_recount_load() RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_sla_recount_load'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.sla_recount_load()
    IS 'rebuilds alexandrite.operator_load from the orders; returns the number of operators holding orders';

-- Claims the most urgent unheld order (new or priced, no operator) for an
-- active operator below capacity, locked FOR NO KEY UPDATE SKIP LOCKED so
-- that concurrent callers never get the same order, and gives it to the
-- operator through the order core (one write: operator, status, event).
-- Candidates are the first rows of each channel's pool index, ranked by
-- (sla_priority desc, id) (docs/sla.md).  Refuses to run outside READ
-- COMMITTED: capacity is read under the operator's lock with a fresh
-- snapshot.
CREATE FUNCTION alexandrite.assign_next(operator_id text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_assign_next'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.assign_next(text)
    IS 'claims the most urgent unassigned order (new or priced) for an active operator below capacity; NULL when none';

-- Back to the pool: the status the order had before it was assigned
-- ('priced' or 'new', from its history; else 'priced' when it has a price).
CREATE FUNCTION alexandrite.release_order(order_id bigint, actor text DEFAULT NULL)
    RETURNS alexandrite.order_status
    AS 'MODULE_PATHNAME', 'alexandrite_release_order'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.release_order(bigint, text)
    IS 'puts an assigned order back into the pool (status new or priced, no operator); returns the new status';

-- Spread the urgent part of the pool over the active operators by load:
-- 1. 'assigned' orders held by inactive operators go back to the pool;
-- 2. operators above capacity (it was lowered) give back their least urgent
--    'assigned' orders;
-- 3. pool orders due before now() + horizon, most urgent first, each go to
--    the active operator with the lowest load (open / capacity) who has room.
-- Returns one row per move.  All operator rows are locked (in id order) for
-- the duration, so no assignment can overfill anyone meanwhile.
CREATE FUNCTION alexandrite.rebalance(horizon interval DEFAULT '24 hours')
    RETURNS TABLE (order_id bigint, from_operator text, to_operator text)
    AS 'MODULE_PATHNAME', 'alexandrite_rebalance'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.rebalance(interval)
    IS 'releases orders of inactive or overfull operators and spreads pool orders due within horizon over active operators by load';

------------------------------------------------------------------------------
-- Escalation (C: src/sla/escalate.c)
------------------------------------------------------------------------------

-- Where the next escalate_overdue() must look.  An order can become
-- overdue-and-unrecorded only by its due time passing (the window since the
-- last run), or by a write that puts its due time in the past (an insert or
-- a changed sla_due_at: the orders_maintain trigger asks for a full scan).
-- A margin of one hour covers transactions that commit an order after a run
-- has already looked past its due time, and a full scan at least every
-- hour bounds anything else.  Derived state: not dumped (a restore starts
-- with a full scan).
CREATE TABLE alexandrite.sla_escalation_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    scan_from      timestamptz,          -- NULL: the next run scans every open order
    last_run       timestamptz,
    last_full_scan timestamptz
);
COMMENT ON TABLE alexandrite.sla_escalation_state
    IS 'internal: the due-time window the next escalate_overdue() scans (NULL: all)';
INSERT INTO alexandrite.sla_escalation_state (singleton) VALUES (true);

-- Record each open order whose due time has passed in sla_breaches, once,
-- with its order.sla_breached event (through the order core).  A run that
-- finds another one in progress returns 0 at once instead of queueing.  A
-- run looks at the due times since the previous run (minus a margin),
-- unless a full scan is due (see sla_escalation_state) or asked for.
CREATE FUNCTION alexandrite.escalate_overdue(full_scan boolean DEFAULT false) RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_escalate_overdue'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.escalate_overdue(boolean)
    IS 'records a breach and its order.sla_breached event (once per order) for every open order past its due time; returns how many were new';

------------------------------------------------------------------------------
-- What every write of orders keeps exact (C: src/sla/maintain.c): the load
-- of operator_load, the escalation window and the dashboards' capture (the
-- row half of it: orders has no alx_dashboard_capture trigger, see
-- sql/schema/dashboard.sql), for the API, a superuser's direct SQL, COPY
-- and a logical replication subscriber alike (ENABLE ALWAYS).  One C row
-- trigger instead of one trigger per concern.  (No WHEN clause: PostgreSQL
-- parses a trigger's WHEN clause anew for every statement, which costs
-- more than calling the function.)
------------------------------------------------------------------------------
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

-- Run escalate_overdue() from pg_cron (1.4: one-minute granularity).  The
-- job name is fixed, so calling again changes the schedule of the same job.
CREATE FUNCTION alexandrite.schedule_escalation(every text DEFAULT '* * * * *') RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF every IS NULL OR every OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'schedule must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                    WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'undefined_object',
                  HINT = 'Run CREATE EXTENSION pg_cron in the database named by cron.database_name, or call alexandrite.escalate_overdue() from another scheduler every minute.';
    END IF;
    RETURN cron.schedule('alexandrite-escalate-overdue'::text, every::text,
                         'SELECT alexandrite.escalate_overdue()'::text);
END;
$$;
COMMENT ON FUNCTION alexandrite.schedule_escalation(text)
    IS 'registers escalate_overdue() with pg_cron under the job name alexandrite-escalate-overdue; returns the job id';

------------------------------------------------------------------------------
-- The order board (CONTRACT.md section 3)
------------------------------------------------------------------------------
CREATE TYPE alexandrite.order_board_row AS (
    id           bigint,
    external_ref text,
    status       alexandrite.order_status,
    channel      text,
    operator_id  text,
    sla_due_at   timestamptz,
    priority     float8
);
COMMENT ON TYPE alexandrite.order_board_row IS 'one line of alexandrite.order_board()';

-- The most urgent open orders, by (priority desc, id asc), lim at a time.
-- Next page: pass the last row's priority and id.  Later pages are ranked at
-- the moment of the first (recovered from the cursor row), so pages neither
-- repeat nor skip rows while the clock moves.  Served from indexes: one
-- bounded range scan per channel (orders_open_due_idx), or one operator's
-- open orders (orders_operator_open_idx).
CREATE FUNCTION alexandrite.order_board(operator_id text DEFAULT NULL, lim integer DEFAULT 50,
                                        after_priority float8 DEFAULT NULL, after_id bigint DEFAULT NULL)
    RETURNS SETOF alexandrite.order_board_row
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_at        timestamptz := pg_catalog.now();
    v_channel   text;           -- the cursor row's channel and due time
    v_due       timestamptz;
    v_cursor_ok boolean := false;
BEGIN
    IF lim IS NULL OR lim OPERATOR(pg_catalog.<) 0 OR lim OPERATOR(pg_catalog.>) 10000 THEN
        RAISE EXCEPTION 'lim must be between 0 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (after_priority IS NULL) OPERATOR(pg_catalog.<>) (after_id IS NULL) THEN
        RAISE EXCEPTION 'after_priority and after_id must be given together'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the priority and id of the last row of the previous page.';
    END IF;
    IF after_priority OPERATOR(pg_catalog.=) 'NaN'::float8 THEN
        RAISE EXCEPTION 'after_priority must not be NaN' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF after_id IS NOT NULL THEN
        SELECT o.channel, o.sla_due_at INTO v_channel, v_due
          FROM alexandrite.orders o WHERE o.id OPERATOR(pg_catalog.=) order_board.after_id;
        IF FOUND THEN
            -- rank this page at the moment the cursor row scored after_priority
            v_at := COALESCE(alexandrite.sla_at_for_priority(after_priority, v_channel, v_due), v_at);
            v_cursor_ok := true;
        END IF;
    END IF;

    IF order_board.operator_id IS NOT NULL THEN
        RETURN QUERY
        SELECT q.id, q.external_ref, q.status, q.channel, q.operator_id, q.sla_due_at, q.p
          FROM (SELECT o.id, o.external_ref, o.status, o.channel, o.operator_id, o.sla_due_at,
                       alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, v_at) AS p
                  FROM alexandrite.orders o
                 WHERE o.operator_id OPERATOR(pg_catalog.=) order_board.operator_id
                   AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status) q
         WHERE after_id IS NULL
            OR (v_cursor_ok AND q.channel OPERATOR(pg_catalog.=) v_channel
                AND (q.sla_due_at, q.id) OPERATOR(pg_catalog.>) (v_due, after_id))
            OR ((NOT v_cursor_ok OR q.channel OPERATOR(pg_catalog.<>) v_channel)
                AND (q.p OPERATOR(pg_catalog.<) after_priority
                     OR (q.p OPERATOR(pg_catalog.=) after_priority AND q.id OPERATOR(pg_catalog.>) after_id)))
         ORDER BY q.p DESC, q.id
         LIMIT lim;
        RETURN;
    END IF;

    RETURN QUERY
    SELECT k.id, k.external_ref, k.status, k.channel, k.operator_id, k.sla_due_at, k.p
      FROM pg_catalog.unnest(alexandrite.sla_channels()) ch(channel)
     CROSS JOIN LATERAL (
           SELECT o.id, o.external_ref, o.status, o.channel, o.operator_id, o.sla_due_at,
                  alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, v_at) AS p
             FROM alexandrite.orders o
            WHERE o.channel OPERATOR(pg_catalog.=) ch.channel
              AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status
              -- index bound: due times scoring at most after_priority (with a
              -- margin for rounding); the exact test follows
              AND (after_id IS NULL
                   OR o.sla_due_at OPERATOR(pg_catalog.>=)
                      (alexandrite.sla_due_for_priority(after_priority, ch.channel, v_at)
                       OPERATOR(pg_catalog.-) '1 second'::interval))
              AND (after_id IS NULL
                   OR (v_cursor_ok AND ch.channel OPERATOR(pg_catalog.=) v_channel
                       AND (o.sla_due_at, o.id) OPERATOR(pg_catalog.>) (v_due, after_id))
                   OR ((NOT v_cursor_ok OR ch.channel OPERATOR(pg_catalog.<>) v_channel)
                       AND (alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, v_at)
                                OPERATOR(pg_catalog.<) after_priority
                            OR (alexandrite.sla_priority(o.created_at, o.sla_due_at, o.channel, v_at)
                                    OPERATOR(pg_catalog.=) after_priority
                                AND o.id OPERATOR(pg_catalog.>) after_id))))
            ORDER BY o.sla_due_at, o.id
            LIMIT lim) k
     ORDER BY k.p DESC, k.id
     LIMIT lim;
END;
$$;
COMMENT ON FUNCTION alexandrite.order_board(text, integer, float8, bigint)
    IS 'the most urgent open orders (all, or one operator''s) by priority, with keyset pagination on (priority, id)';

------------------------------------------------------------------------------
-- Privileges: administrative functions are not for PUBLIC (docs/sla.md)
------------------------------------------------------------------------------
REVOKE ALL ON FUNCTION alexandrite.rebalance(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.escalate_overdue(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.schedule_escalation(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.sla_recount_load() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.assign_next(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.release_order(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.orders_maintain() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.orders_truncated() FROM PUBLIC;
