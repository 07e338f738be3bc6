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
-- Claiming
------------------------------------------------------------------------------

-- How many open orders each operator holds, kept by a trigger on orders so
-- that assign_next checks capacity in O(1) instead of counting the
-- operator's orders (which a benchmark operator with a large capacity holds
-- by the ten thousand).  Only transitions that change who holds an open
-- order touch it: assignment, release, and shipping or cancelling a held
-- order.  assign_next reads it under the operator's row lock.
--
-- A missing row or a NULL count means "unknown": after TRUNCATE, a restore
-- (whose COPY fires the triggers row by row, at the end of the statement),
-- or a new operator.  A delta leaves an unknown count unknown (NULL + 1);
-- assign_next turns it into a known one under the operator's lock
-- (sla_known_load).  So the table is exact whenever it is not NULL, and it
-- is never both dumped and re-derived.
CREATE TABLE alexandrite.operator_load (
    operator_id text PRIMARY KEY,
    open_orders integer CHECK (open_orders OPERATOR(pg_catalog.>=) 0)
);
COMMENT ON TABLE alexandrite.operator_load
    IS 'open orders held per operator, kept by the orders_operator_load triggers; NULL or no row: unknown, counted on demand; derived data, not dumped';

-- The open orders an operator holds, made known: called with the operator's
-- row locked when operator_load has no count for them.  The load row is
-- locked before counting, so a concurrent change either committed before
-- the count (and is in it) or applies its delta after ours.
CREATE FUNCTION alexandrite.sla_known_load(operator_id text) RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_open integer;
BEGIN
    INSERT INTO alexandrite.operator_load AS l (operator_id, open_orders)
    VALUES (sla_known_load.operator_id, NULL)
    ON CONFLICT ON CONSTRAINT operator_load_pkey DO NOTHING;
    SELECT l.open_orders INTO v_open
      FROM alexandrite.operator_load l
     WHERE l.operator_id OPERATOR(pg_catalog.=) sla_known_load.operator_id
       FOR UPDATE;
    IF v_open IS NULL THEN
        SELECT pg_catalog.count(*) INTO v_open
          FROM alexandrite.orders o
         WHERE o.operator_id OPERATOR(pg_catalog.=) sla_known_load.operator_id
           AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status;
        UPDATE alexandrite.operator_load l
           SET open_orders = v_open
         WHERE l.operator_id OPERATOR(pg_catalog.=) sla_known_load.operator_id;
    END IF;
    RETURN v_open;
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_known_load(text)
    IS 'internal: counts and records the open orders of an operator whose load is unknown (caller holds the operator lock)';

CREATE FUNCTION alexandrite.orders_operator_load() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT' AND OLD.operator_id IS NOT NULL
       AND OLD.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status THEN
        -- a count that would go negative has drifted (writes that skipped
        -- the triggers): it becomes unknown rather than failing the write
        UPDATE alexandrite.operator_load l
           SET open_orders = CASE WHEN l.open_orders OPERATOR(pg_catalog.>) 0
                                  THEN l.open_orders OPERATOR(pg_catalog.-) 1 END
         WHERE l.operator_id OPERATOR(pg_catalog.=) OLD.operator_id;
        IF NOT FOUND THEN            -- no row: unknown, counted on demand
            INSERT INTO alexandrite.operator_load AS l (operator_id, open_orders)
            VALUES (OLD.operator_id, NULL)
            ON CONFLICT ON CONSTRAINT operator_load_pkey DO NOTHING;
        END IF;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE' AND NEW.operator_id IS NOT NULL
       AND NEW.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status THEN
        UPDATE alexandrite.operator_load l
           SET open_orders = l.open_orders OPERATOR(pg_catalog.+) 1
         WHERE l.operator_id OPERATOR(pg_catalog.=) NEW.operator_id;
        IF NOT FOUND THEN
            INSERT INTO alexandrite.operator_load AS l (operator_id, open_orders)
            VALUES (NEW.operator_id, NULL)
            ON CONFLICT ON CONSTRAINT operator_load_pkey DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION alexandrite.orders_operator_load()
    IS 'internal: trigger keeping alexandrite.operator_load in step with orders';

CREATE TRIGGER orders_operator_load_ins
    AFTER INSERT ON alexandrite.orders FOR EACH ROW
    WHEN (NEW.operator_id IS NOT NULL)
    EXECUTE FUNCTION alexandrite.orders_operator_load();
CREATE TRIGGER orders_operator_load_upd
    AFTER UPDATE OF operator_id, status ON alexandrite.orders FOR EACH ROW
    WHEN (OLD.operator_id IS DISTINCT FROM NEW.operator_id
          OR (OLD.operator_id IS NOT NULL
              AND (OLD.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status)
                  OPERATOR(pg_catalog.<>) (NEW.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status)))
    EXECUTE FUNCTION alexandrite.orders_operator_load();
CREATE TRIGGER orders_operator_load_del
    AFTER DELETE ON alexandrite.orders FOR EACH ROW
    WHEN (OLD.operator_id IS NOT NULL)
    EXECUTE FUNCTION alexandrite.orders_operator_load();
COMMENT ON TRIGGER orders_operator_load_ins ON alexandrite.orders IS 'keeps alexandrite.operator_load';
COMMENT ON TRIGGER orders_operator_load_upd ON alexandrite.orders IS 'keeps alexandrite.operator_load';
COMMENT ON TRIGGER orders_operator_load_del ON alexandrite.orders IS 'keeps alexandrite.operator_load';

-- Rebuild operator_load from orders (after writes with
-- session_replication_role = replica, which skip the triggers).
-- Locks every operator, so it never races a claim.
CREATE FUNCTION alexandrite.sla_recount_load() RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    PERFORM 1 FROM alexandrite.operators op ORDER BY op.id FOR NO KEY UPDATE;
    LOCK TABLE alexandrite.operator_load IN EXCLUSIVE MODE;
    DELETE FROM alexandrite.operator_load;
    INSERT INTO alexandrite.operator_load (operator_id, open_orders)
    SELECT o.operator_id, pg_catalog.count(*)
      FROM alexandrite.orders o
     WHERE o.operator_id IS NOT NULL
       AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status
     GROUP BY o.operator_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_recount_load()
    IS 'rebuilds alexandrite.operator_load from the orders; returns the number of operators holding orders';

CREATE FUNCTION alexandrite.orders_operator_load_truncate() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE alexandrite.operator_load SET open_orders = 0;   -- no orders, no load
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION alexandrite.orders_operator_load_truncate()
    IS 'internal: empties alexandrite.operator_load when orders is truncated';
CREATE TRIGGER orders_operator_load_truncate
    AFTER TRUNCATE ON alexandrite.orders FOR EACH STATEMENT
    EXECUTE FUNCTION alexandrite.orders_operator_load_truncate();
COMMENT ON TRIGGER orders_operator_load_truncate ON alexandrite.orders IS 'keeps alexandrite.operator_load';


-- assign_next and rebalance lock an operator row and then count that
-- operator's open orders with a fresh snapshot; under REPEATABLE READ or
-- SERIALIZABLE the count would come from the transaction's first snapshot
-- and could miss a concurrent claim, so they refuse to run there.
CREATE FUNCTION alexandrite.sla_require_read_committed(what text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
        RAISE EXCEPTION '% requires the READ COMMITTED isolation level', what
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Call it in a READ COMMITTED transaction: capacity is checked under the operator''s row lock with a fresh snapshot.';
    END IF;
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_require_read_committed(text)
    IS 'internal: raises feature_not_supported outside READ COMMITTED';

-- The most urgent unheld order (new or priced, no operator), at time "at",
-- due before due_before, locked FOR NO KEY UPDATE; NULL when every such
-- order is taken or locked by a concurrent claimer.
--
-- Plans are generic (plan_cache_mode): replanning the candidate query on
-- every call cost four times its execution.
--
-- Candidates are the first lim rows of each channel's pool index (an index
-- range scan each), ranked by (priority desc, id asc).  The same statement
-- locks the first candidate nobody else holds (Limit over LockRows with SKIP
-- LOCKED: only the row returned is locked; a row claimed since the snapshot
-- fails the re-check and is skipped).  The ranking of truncated lists is
-- exact up to the last candidate of each truncated list; when lim or more
-- candidates were skipped (more concurrent claimers than lim), the row we
-- locked may lie beyond one, and we try again with a larger lim.  The row
-- locked by the failed attempt stays locked until commit, which only makes
-- other claimers skip it meanwhile (docs/sla.md).
CREATE FUNCTION alexandrite.sla_claim(at timestamptz, due_before timestamptz DEFAULT 'infinity')
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_lim  integer := 16;
    v_id   bigint;
    v_rank bigint;
BEGIN
    LOOP
        -- c: the candidates in rank order (the subquery's ORDER BY feeds the
        -- nested loop in order, so LockRows probes orders row by row and
        -- stops at the first one it can lock)
        SELECT o.id, c.rk INTO v_id, v_rank
          FROM (SELECT k.id, k.p, pg_catalog.row_number() OVER (ORDER BY k.p DESC, k.id) AS rk
                  FROM (SELECT h.id,
                               alexandrite.sla_priority(h.created_at, h.sla_due_at, ch.channel, sla_claim.at) AS p
                          FROM pg_catalog.unnest(alexandrite.sla_channels()) ch(channel)
                         CROSS JOIN LATERAL (
                               SELECT o2.id, o2.sla_due_at, o2.created_at
                                 FROM alexandrite.orders o2
                                WHERE o2.channel OPERATOR(pg_catalog.=) ch.channel
                                  AND o2.status OPERATOR(pg_catalog.<) 'assigned'::alexandrite.order_status
                                  AND o2.operator_id IS NULL
                                  AND o2.sla_due_at OPERATOR(pg_catalog.<) sla_claim.due_before
                                ORDER BY o2.sla_due_at, o2.id
                                LIMIT v_lim) h) k
                 ORDER BY k.p DESC, k.id) c
          JOIN alexandrite.orders o ON o.id OPERATOR(pg_catalog.=) c.id
         WHERE o.status OPERATOR(pg_catalog.<) 'assigned'::alexandrite.order_status
           AND o.operator_id IS NULL
         ORDER BY c.p DESC, c.id
         LIMIT 1
           FOR NO KEY UPDATE OF o SKIP LOCKED;
        -- Exact when fewer than lim candidates were skipped: a cut list's
        -- last candidate ranks after all of that list's others (Lemma 1),
        -- so it can precede the claimed row only if lim candidates did.
        IF v_id IS NOT NULL AND v_rank OPERATOR(pg_catalog.<=) v_lim THEN
            RETURN v_id;
        END IF;
        IF v_id IS NULL THEN
            -- nothing lockable among the candidates: done unless a list was cut short
            PERFORM 1 WHERE EXISTS (
                SELECT 1 FROM pg_catalog.unnest(alexandrite.sla_channels()) ch(channel)
                 CROSS JOIN LATERAL (
                       SELECT pg_catalog.count(*) AS n
                         FROM (SELECT 1 FROM alexandrite.orders o2
                                WHERE o2.channel OPERATOR(pg_catalog.=) ch.channel
                                  AND o2.status OPERATOR(pg_catalog.<) 'assigned'::alexandrite.order_status
                                  AND o2.operator_id IS NULL
                                  AND o2.sla_due_at OPERATOR(pg_catalog.<) sla_claim.due_before
                                LIMIT v_lim OPERATOR(pg_catalog.+) 1) x) k
                 WHERE k.n OPERATOR(pg_catalog.>) v_lim);
            IF NOT FOUND THEN
                RETURN NULL;
            END IF;
        END IF;
        v_lim := v_lim OPERATOR(pg_catalog.*) 8;
    END LOOP;
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_claim(timestamptz, timestamptz)
    IS 'internal: locks and returns the most urgent order of the pool (new or priced, no operator) due before due_before';

-- Lock an operator and return the number of open orders they hold; ERROR for
-- an unknown operator, or (when must_be_active) an inactive one.
CREATE FUNCTION alexandrite.sla_lock_operator(operator_id text, must_be_active boolean,
                                              OUT capacity integer, OUT open_orders integer, OUT active boolean)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF operator_id IS NULL THEN
        RAISE EXCEPTION 'operator_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- One claimer per operator at a time.  NO KEY UPDATE leaves foreign-key
    -- checks on the operator (FOR KEY SHARE) unblocked.
    SELECT op.capacity, op.active INTO capacity, active
      FROM alexandrite.operators op
     WHERE op.id OPERATOR(pg_catalog.=) sla_lock_operator.operator_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'operator "%" does not exist', operator_id
            USING ERRCODE = 'no_data_found';
    END IF;
    IF must_be_active AND NOT active THEN
        RAISE EXCEPTION 'operator "%" is not active', operator_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Set alexandrite.operators.active to true to let the operator take orders.';
    END IF;
    -- a fresh snapshot (READ COMMITTED): every committed claim is counted;
    -- an uncommitted release or shipment still counts (errs on the safe side)
    SELECT l.open_orders INTO open_orders
      FROM alexandrite.operator_load l
     WHERE l.operator_id OPERATOR(pg_catalog.=) sla_lock_operator.operator_id;
    IF open_orders IS NULL THEN
        open_orders := alexandrite.sla_known_load(sla_lock_operator.operator_id);
    END IF;
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_lock_operator(text, boolean)
    IS 'internal: locks an operator row and counts the open orders the operator holds';

-- Give a locked pool order to an operator.  The core's assign_order writes
-- operator_id, status 'assigned' and the order event in ONE update of
-- alexandrite.orders (going through set_status took two non-HOT updates:
-- every index twice, the capture triggers twice, 30 % of the assignment rate,
-- docs/benchmarks-sla.md).  The outbox event follows from its trigger on
-- order_events.  The caller holds the row lock (sla_claim).
CREATE FUNCTION alexandrite.sla_give(order_id bigint, operator_id text) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM alexandrite.assign_order(sla_give.order_id, sla_give.operator_id);
END;
$$;
COMMENT ON FUNCTION alexandrite.sla_give(bigint, text)
    IS 'internal: gives a locked pool order to an operator through the core''s assign_order';

CREATE FUNCTION alexandrite.assign_next(operator_id text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_capacity integer;
    v_open     integer;
    v_id       bigint;
BEGIN
    -- sla_require_read_committed's check, inlined: the call is only made
    -- to raise its error
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
        PERFORM alexandrite.sla_require_read_committed('assign_next');
    END IF;
    -- one claimer per operator at a time; its load under the lock
    SELECT l.capacity, l.open_orders INTO v_capacity, v_open
      FROM alexandrite.sla_lock_operator(assign_next.operator_id, true) l;
    IF v_open OPERATOR(pg_catalog.>=) v_capacity THEN
        RETURN NULL;                 -- at capacity
    END IF;
    v_id := alexandrite.sla_claim(pg_catalog.now());
    IF v_id IS NULL THEN
        RETURN NULL;                 -- nothing eligible
    END IF;
    -- operator, status and order event in one update of orders (the core's
    -- assign_order; the actor is alexandrite.actor, else the operator)
    PERFORM alexandrite.assign_order(v_id, assign_next.operator_id);
    RETURN v_id;
END;
$$;
COMMENT ON FUNCTION alexandrite.assign_next(text)
    IS 'claims the most urgent unassigned order (new or priced) for an active operator below capacity; NULL when none';

-- Back to the pool: the status the order had before it was assigned
-- ('priced' or 'new', from its history; else 'priced' when it has a price).
CREATE FUNCTION alexandrite.release_order(order_id bigint, actor text DEFAULT NULL)
    RETURNS alexandrite.order_status
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_order alexandrite.orders;
    v_back  alexandrite.order_status;
BEGIN
    SELECT * INTO v_order FROM alexandrite.orders o
     WHERE o.id OPERATOR(pg_catalog.=) release_order.order_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order % does not exist', order_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_order.status OPERATOR(pg_catalog.<>) 'assigned'::alexandrite.order_status THEN
        RAISE EXCEPTION 'cannot release order % in status "%"', order_id, v_order.status
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Only assigned orders go back to the pool; production has started on the others.';
    END IF;
    SELECT e.from_status INTO v_back
      FROM alexandrite.order_events e
     WHERE e.order_id OPERATOR(pg_catalog.=) release_order.order_id
       AND e.to_status OPERATOR(pg_catalog.=) 'assigned'::alexandrite.order_status
     ORDER BY e.id DESC
     LIMIT 1;
    IF v_back IS NULL OR v_back OPERATOR(pg_catalog.>=) 'assigned'::alexandrite.order_status THEN
        v_back := CASE WHEN v_order.price IS NOT NULL THEN 'priced'::alexandrite.order_status
                       ELSE 'new'::alexandrite.order_status END;
    END IF;
    -- set_status clears operator_id on the way back to new/priced
    PERFORM alexandrite.set_status(release_order.order_id, v_back, release_order.actor);
    RETURN v_back;
END;
$$;
COMMENT ON FUNCTION alexandrite.release_order(bigint, text)
    IS 'puts an assigned order back into the pool (status new or priced, no operator); returns the new status';

-- Spread the urgent part of the pool over the active operators by load:
-- 1. 'assigned' orders held by inactive operators go back to the pool;
-- 2. operators above capacity (it was lowered) give back their least urgent
--    'assigned' orders;
-- 3. pool orders due before now() + horizon, most urgent first, each go to
--    the active operator with the lowest load (open / capacity) who has room.
-- Returns one row per move.  All operator rows are locked (in id order) for
-- the duration, so assign_next cannot overfill anyone meanwhile.
CREATE FUNCTION alexandrite.rebalance(horizon interval DEFAULT '24 hours')
    RETURNS TABLE (order_id bigint, from_operator text, to_operator text)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now  timestamptz := pg_catalog.now();
    v_ops  text[];
    v_cap  integer[];
    v_open integer[];
    v_best integer;
    v_id   bigint;
    r      record;
BEGIN
    PERFORM alexandrite.sla_require_read_committed('rebalance');
    IF horizon IS NULL THEN
        RAISE EXCEPTION 'horizon must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM 1 FROM alexandrite.operators op ORDER BY op.id FOR NO KEY UPDATE;

    -- 1 and 2: give back what inactive or overfull operators hold
    FOR r IN
        SELECT o.id, o.operator_id
          FROM (SELECT o2.id, o2.operator_id, o2.status,
                       pg_catalog.row_number() OVER (PARTITION BY o2.operator_id
                                                     ORDER BY o2.sla_due_at, o2.id) AS rk,
                       op.capacity, op.active
                  FROM alexandrite.orders o2
                  JOIN alexandrite.operators op ON op.id OPERATOR(pg_catalog.=) o2.operator_id
                 WHERE o2.operator_id IS NOT NULL
                   AND o2.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status) o
         WHERE o.status OPERATOR(pg_catalog.=) 'assigned'::alexandrite.order_status
           AND (NOT o.active OR o.rk OPERATOR(pg_catalog.>) o.capacity)
         ORDER BY o.operator_id, o.id
    LOOP
        -- an order someone is changing right now is left for the next run
        -- (never wait on an order row while holding operator and load rows)
        PERFORM 1 FROM alexandrite.orders o
          WHERE o.id OPERATOR(pg_catalog.=) r.id
            AND o.status OPERATOR(pg_catalog.=) 'assigned'::alexandrite.order_status
            AND o.operator_id OPERATOR(pg_catalog.=) r.operator_id
            FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        PERFORM alexandrite.release_order(r.id, NULL);
        order_id := r.id; from_operator := r.operator_id; to_operator := NULL;
        RETURN NEXT;
    END LOOP;

    -- 3: fill the free capacity with the urgent pool (loads after 1 and 2,
    -- made known where they were not)
    v_ops := '{}'; v_cap := '{}'; v_open := '{}';
    FOR r IN SELECT op.id, op.capacity, l.open_orders
               FROM alexandrite.operators op
               LEFT JOIN alexandrite.operator_load l ON l.operator_id OPERATOR(pg_catalog.=) op.id
              WHERE op.active
              ORDER BY op.id
    LOOP
        v_ops := v_ops OPERATOR(pg_catalog.||) r.id;
        v_cap := v_cap OPERATOR(pg_catalog.||) r.capacity;
        v_open := v_open OPERATOR(pg_catalog.||) COALESCE(r.open_orders, alexandrite.sla_known_load(r.id));
    END LOOP;
    LOOP
        v_best := NULL;
        FOR i IN 1 .. COALESCE(pg_catalog.array_length(v_ops, 1), 0) LOOP
            CONTINUE WHEN v_open[i] OPERATOR(pg_catalog.>=) v_cap[i];
            IF v_best IS NULL
               OR (v_open[i]::float8 OPERATOR(pg_catalog./) v_cap[i])
                  OPERATOR(pg_catalog.<) (v_open[v_best]::float8 OPERATOR(pg_catalog./) v_cap[v_best]) THEN
                v_best := i;
            END IF;
        END LOOP;
        EXIT WHEN v_best IS NULL;    -- nobody has room
        v_id := alexandrite.sla_claim(v_now, v_now OPERATOR(pg_catalog.+) horizon);
        EXIT WHEN v_id IS NULL;      -- nothing urgent left
        PERFORM alexandrite.sla_give(v_id, v_ops[v_best]);
        v_open[v_best] := v_open[v_best] OPERATOR(pg_catalog.+) 1;
        order_id := v_id; from_operator := NULL; to_operator := v_ops[v_best];
        RETURN NEXT;
    END LOOP;
END;
$$;
COMMENT ON FUNCTION alexandrite.rebalance(interval)
    IS 'releases orders of inactive or overfull operators and spreads pool orders due within horizon over active operators by load';

------------------------------------------------------------------------------
-- Escalation
------------------------------------------------------------------------------

-- Where the next escalate_overdue() must look.  An order can become
-- overdue-and-unrecorded only by its due time passing (the window since the
-- last run), or by a write that puts its due time in the past (an insert or
-- a changed sla_due_at: the orders_sla_backdated trigger asks for a full
-- scan).  A margin of one hour covers transactions that commit an order
-- after a run has already looked past its due time, and a full scan at
-- least every hour bounds anything else.  Derived state: not dumped (a
-- restore starts with a full scan).
CREATE TABLE alexandrite.sla_escalation_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    scan_from      timestamptz,          -- NULL: the next run scans every open order
    last_run       timestamptz,
    last_full_scan timestamptz
);
COMMENT ON TABLE alexandrite.sla_escalation_state
    IS 'internal: the due-time window the next escalate_overdue() scans (NULL: all)';
INSERT INTO alexandrite.sla_escalation_state (singleton) VALUES (true);

CREATE FUNCTION alexandrite.orders_sla_backdated() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- once per window: later rows find it NULL already and write nothing
    UPDATE alexandrite.sla_escalation_state s SET scan_from = NULL
     WHERE s.scan_from IS NOT NULL AND s.scan_from OPERATOR(pg_catalog.>) NEW.sla_due_at;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION alexandrite.orders_sla_backdated()
    IS 'internal: an order written with a due time already past makes the next escalate_overdue() scan everything';
-- create_order always writes a due time in the future: it never fires
CREATE TRIGGER orders_sla_backdated_ins
    AFTER INSERT ON alexandrite.orders FOR EACH ROW
    WHEN (NEW.sla_due_at OPERATOR(pg_catalog.<) pg_catalog.now())
    EXECUTE FUNCTION alexandrite.orders_sla_backdated();
CREATE TRIGGER orders_sla_backdated_upd
    AFTER UPDATE OF sla_due_at ON alexandrite.orders FOR EACH ROW
    WHEN (NEW.sla_due_at OPERATOR(pg_catalog.<) pg_catalog.now()
          AND NEW.sla_due_at OPERATOR(pg_catalog.<) OLD.sla_due_at)
    EXECUTE FUNCTION alexandrite.orders_sla_backdated();
COMMENT ON TRIGGER orders_sla_backdated_ins ON alexandrite.orders IS 'keeps escalate_overdue() complete for back-dated orders';
COMMENT ON TRIGGER orders_sla_backdated_upd ON alexandrite.orders IS 'keeps escalate_overdue() complete for back-dated orders';

-- Record each open order whose due time has passed in sla_breaches, once
-- (the primary key and ON CONFLICT make a repeat a no-op; the outbox
-- capability's trigger on sla_breaches emits order.sla_breached).  A run
-- that finds another one in progress returns 0 at once instead of queueing.
-- A run looks at the due times since the previous run (minus a margin),
-- unless a full scan is due (see sla_escalation_state) or asked for.
CREATE FUNCTION alexandrite.escalate_overdue(full_scan boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now  timestamptz := pg_catalog.now();
    v_from timestamptz;
    v_full timestamptz;
    v_n    bigint;
BEGIN
    IF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('alexandrite.escalate_overdue')::bigint) THEN
        RETURN 0;
    END IF;
    -- the state row lock also orders us after a concurrent back-dating write
    SELECT s.scan_from, s.last_full_scan INTO v_from, v_full
      FROM alexandrite.sla_escalation_state s FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO alexandrite.sla_escalation_state (singleton) VALUES (true) ON CONFLICT DO NOTHING;
    END IF;
    IF COALESCE(full_scan, false) OR v_from IS NULL OR v_full IS NULL
       OR v_full OPERATOR(pg_catalog.<) (v_now OPERATOR(pg_catalog.-) '1 hour'::interval) THEN
        v_from := NULL;
    END IF;

    IF v_from IS NULL THEN
        -- every open order past due
        WITH ins AS (
            INSERT INTO alexandrite.sla_breaches AS b
                   (order_id, sla_due_at, breached_at, status_at_breach, operator_id)
            SELECT o.id, o.sla_due_at, v_now, o.status, o.operator_id
              FROM alexandrite.orders o
             WHERE o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status
               AND o.sla_due_at OPERATOR(pg_catalog.<) v_now
               AND NOT EXISTS (SELECT 1 FROM alexandrite.sla_breaches x
                                WHERE x.order_id OPERATOR(pg_catalog.=) o.id)
             ORDER BY o.sla_due_at, o.id
            ON CONFLICT (order_id) DO NOTHING
            RETURNING b.order_id)
        SELECT pg_catalog.count(*) INTO v_n FROM ins;
    ELSE
        -- the window since the last run: a range scan per channel
        WITH ins AS (
            INSERT INTO alexandrite.sla_breaches AS b
                   (order_id, sla_due_at, breached_at, status_at_breach, operator_id)
            SELECT o.id, o.sla_due_at, v_now, o.status, o.operator_id
              FROM alexandrite.orders o
             WHERE o.channel OPERATOR(pg_catalog.=) ANY (alexandrite.sla_channels())
               AND o.status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status
               AND o.sla_due_at OPERATOR(pg_catalog.>=) v_from
               AND o.sla_due_at OPERATOR(pg_catalog.<) v_now
               AND NOT EXISTS (SELECT 1 FROM alexandrite.sla_breaches x
                                WHERE x.order_id OPERATOR(pg_catalog.=) o.id)
             ORDER BY o.sla_due_at, o.id
            ON CONFLICT (order_id) DO NOTHING
            RETURNING b.order_id)
        SELECT pg_catalog.count(*) INTO v_n FROM ins;
    END IF;

    UPDATE alexandrite.sla_escalation_state s
       SET scan_from = v_now OPERATOR(pg_catalog.-) '1 hour'::interval,
           last_run = v_now,
           last_full_scan = CASE WHEN v_from IS NULL THEN v_now ELSE s.last_full_scan END;
    RETURN v_n;
END;
$$;
COMMENT ON FUNCTION alexandrite.escalate_overdue(boolean)
    IS 'records a breach (once per order) for every open order past its due time; returns how many were new';

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
