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

------------------------------------------------------------------------------
-- pricing
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- sla
------------------------------------------------------------------------------

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
CREATE TRIGGER alx_dashboard_capture AFTER INSERT OR UPDATE OR DELETE ON alexandrite.orders
    FOR EACH ROW EXECUTE FUNCTION alexandrite.dashboard_capture();
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
