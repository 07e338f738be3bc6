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

-- the reading views are the privilege boundary (owner's rights), with the
-- handled test inlined instead of a function the reader would need
ALTER VIEW alexandrite.outbox RESET (security_invoker);
CREATE OR REPLACE VIEW alexandrite.outbox AS
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
ALTER VIEW alexandrite.outbox_blocked RESET (security_invoker);
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

------------------------------------------------------------------------------
-- privileges (last: covers every routine above)
------------------------------------------------------------------------------
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA alexandrite FROM PUBLIC;
