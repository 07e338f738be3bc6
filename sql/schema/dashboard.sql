/* sql/schema/dashboard.sql: incrementally maintained dashboards (the MES first page)
 * Part of the current install script (make concatenates the files of sql/schema in the
 * order of SCHEMA in the Makefile into alexandrite--<version>.sql).  A change
 * here needs the same change in the current upgrade script. */

------------------------------------------------------------------------------
-- The registry: one row per declared dashboard
--
-- A dashboard is a grouped count (and optional sums) over one table.  Its
-- row declares it and nothing else: names, the expressions (canonical SQL
-- text) and horizons.  The C code (src/dashboard, docs/dashboards.md)
-- validates the expressions again each time it loads a row, and derives the
-- rest from the validated definition: in schema alexandrite, owned by the
-- extension owner,
--   dashboard_<name>_summary  folded state, one row per group
--   dashboard_<name>_delta    pending signed deltas, append-only, no index
--   dashboard_<name>          the read view: summary (+) pending deltas
-- the capture triggers of the base table, and the statements that
-- populate, fold, read and reconcile it.  Nothing in the registry is ever
-- run as SQL.
--
-- Time-relative counts ("rows whose due time is before now() + h") move with
-- the clock without any write.  For them a dashboard declares a due
-- expression and horizons h.  The summary holds, per group, the count of rows
-- due before watermark + h, where the watermark is the minute of the last
-- fold; deltas carry the due time to the minute; a read adds the pending
-- deltas due before watermark + h and an index probe of the base table for
-- the rows due in [watermark + h, now() + h), which spans only the time since
-- the last fold.  Each fold moves the watermark forward.
------------------------------------------------------------------------------
CREATE TABLE alexandrite.dashboards (
    id                  serial PRIMARY KEY,
    name                text NOT NULL UNIQUE
                        CHECK (name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]{0,39}$'),
    base_table          regclass NOT NULL,
    key_names           text[] NOT NULL,
    key_exprs           text[] NOT NULL,
    count_name          text NOT NULL,
    sum_names           text[] NOT NULL DEFAULT '{}',
    sum_exprs           text[] NOT NULL DEFAULT '{}',
    filter              text,
    due_expr            text,
    horizons            interval[] NOT NULL DEFAULT '{}',
    horizon_names       text[] NOT NULL DEFAULT '{}',
    builtin             boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE alexandrite.dashboards IS 'registry of incrementally maintained dashboards: declarations only (grouped count/sum over one table), validated again by the library whenever it reads them';
-- user-declared dashboards survive pg_dump; the built-in ones are recreated by the script
SELECT pg_catalog.pg_extension_config_dump('alexandrite.dashboards', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.dashboards_id_seq', '');

-- Runtime state of each dashboard: the watermark of its time-relative counts,
-- fold, rebuild and reconcile bookkeeping.  Not dumped: after a restore the
-- fold recreates missing rows and flags dashboards with horizons for rebuild.
CREATE TABLE alexandrite.dashboard_state (
    dashboard_id        integer PRIMARY KEY REFERENCES alexandrite.dashboards (id) ON DELETE CASCADE,
    watermark           timestamptz,
    created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    needs_rebuild       boolean NOT NULL DEFAULT false,
    rebuild_reason      text,
    last_rebuild_at     timestamptz,
    last_truncate_at    timestamptz,
    last_fold_at        timestamptz,
    last_fold_ms        float8,
    last_fold_rows      bigint,
    folds               bigint NOT NULL DEFAULT 0,
    folded_total        bigint NOT NULL DEFAULT 0,
    last_reconcile_at   timestamptz,
    last_reconcile_ok   boolean
);
COMMENT ON TABLE alexandrite.dashboard_state
    IS 'runtime state per dashboard: watermark of the time-relative counts, fold, rebuild and reconcile bookkeeping';

------------------------------------------------------------------------------
-- C entry points
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.dashboard_capture() RETURNS trigger
    AS 'MODULE_PATHNAME', 'alexandrite_dashboard_capture'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.dashboard_capture()
    IS 'internal: trigger of the dashboard capture (alx_dashboard_capture per row, alx_dashboard_flush per statement, alx_dashboard_truncate)';
REVOKE ALL ON FUNCTION alexandrite.dashboard_capture() FROM PUBLIC;

CREATE FUNCTION alexandrite.refresh_dashboards() RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_refresh_dashboards'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.refresh_dashboards()
    IS 'folds the pending dashboard deltas into the summaries; returns the number of delta rows folded (0 when another fold is running)';
REVOKE ALL ON FUNCTION alexandrite.refresh_dashboards() FROM PUBLIC;

-- The minute a due time falls in (UTC-aligned): the due-time resolution of
-- the deltas and of the watermark, computed by the same C function as the
-- capture's.  Immutable and total: infinite due times are their own bucket.
CREATE FUNCTION alexandrite.dashboard_due_bucket(due timestamptz) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'alexandrite_dashboard_due_bucket'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.dashboard_due_bucket(timestamptz)
    IS 'the minute (UTC-aligned) a due time falls in: the resolution of dashboard deltas and watermarks';

------------------------------------------------------------------------------
-- Declaring, dropping, rebuilding and reconciling dashboards (C, as the
-- caller; the generated statements run as the extension owner)
------------------------------------------------------------------------------
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

------------------------------------------------------------------------------
-- The capture triggers of the extension's own tables (user tables get the
-- same three from create_dashboard): the row trigger adds each row change to
-- pending groups, the statement trigger writes them as delta rows, the
-- TRUNCATE trigger empties the table's dashboards.  A table whose own C
-- trigger captures its rows (AlxDashboardCaptureRow, src/dashboard/dashboard.h)
-- keeps alx_dashboard_flush and alx_dashboard_truncate only.
------------------------------------------------------------------------------
-- orders: its rows are captured by the order core's C trigger
-- (orders_maintain, sql/schema/sla.sql)
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

------------------------------------------------------------------------------
-- The contract dashboards (CONTRACT.md section 3) as instances
------------------------------------------------------------------------------
-- probes of the current, partial due-time bucket
CREATE INDEX orders_open_due_at_idx ON alexandrite.orders (sla_due_at) INCLUDE (channel, operator_id)
    WHERE status OPERATOR(pg_catalog.<) 'shipped'::alexandrite.order_status;

SELECT alexandrite.create_dashboard('status_counts', 'alexandrite.orders', ARRAY['status', 'channel'],
                                    count_name => 'orders');
-- the contract view dashboard_operator_load is this dashboard's read view
SELECT alexandrite.create_dashboard('operator_load', 'alexandrite.orders', ARRAY['operator_id'],
                                    count_name => 'open_orders',
                                    filter => 'operator_id IS NOT NULL AND alexandrite.is_open(status)',
                                    due => 'sla_due_at', horizons => ARRAY['0'::interval],
                                    horizon_names => ARRAY['overdue_orders']);
SELECT alexandrite.create_dashboard('sla_due', 'alexandrite.orders', ARRAY['channel'],
                                    count_name => 'open_orders',
                                    filter => 'alexandrite.is_open(status)',
                                    due => 'sla_due_at', horizons => ARRAY['0'::interval, '24:00:00'::interval],
                                    horizon_names => ARRAY['breached_orders', 'due_within_24h_or_past']);
COMMENT ON VIEW alexandrite.dashboard_status_counts
    IS 'orders per status and channel, exact at the reading transaction''s snapshot';
COMMENT ON VIEW alexandrite.dashboard_operator_load
    IS 'open and overdue (past due) orders per operator holding open orders, exact at the reading transaction''s snapshot';

-- owner's rights, like the read views: SELECT on this view is all a reader needs
CREATE VIEW alexandrite.dashboard_sla AS
SELECT s.channel,
       s.open_orders,
       (s.due_within_24h_or_past OPERATOR(pg_catalog.-) s.breached_orders) AS at_risk_orders,
       s.breached_orders
  FROM alexandrite.dashboard_sla_due s;
COMMENT ON VIEW alexandrite.dashboard_sla
    IS 'per channel: open orders, at risk (open, due in [now, now + 24 h)) and breached (open, past due), exact at the reading transaction''s snapshot';

------------------------------------------------------------------------------
-- Lag
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.dashboard_pending()
    RETURNS TABLE (dashboard_id integer, pending_changes bigint, oldest_pending timestamptz, delta_bytes bigint)
    AS 'MODULE_PATHNAME', 'alexandrite_dashboard_pending'
    LANGUAGE C STABLE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.dashboard_pending()
    IS 'per dashboard: the pending delta rows, the time of the oldest and the size of the delta table (read as the extension owner)';
REVOKE ALL ON FUNCTION alexandrite.dashboard_pending() FROM PUBLIC;

-- owner's rights: readers need SELECT on the view and EXECUTE on dashboard_pending()
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
-- Scheduling with pg_cron (optional; 1.4.2 has one-minute granularity)
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.schedule_refresh(every text DEFAULT '* * * * *') RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    IF every IS NULL OR pg_catalog.btrim(every) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'schedule must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- pg_cron 1.4 reads five fields and silently ignores a sixth (seconds)
    IF pg_catalog.left(pg_catalog.btrim(every), 1) OPERATOR(pg_catalog.<>) '@'
       AND pg_catalog.cardinality(pg_catalog.regexp_split_to_array(pg_catalog.btrim(every), '\s+'))
           OPERATOR(pg_catalog.<>) 5 THEN
        RAISE EXCEPTION 'invalid schedule "%"', every
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a five-field cron schedule such as ''* * * * *''; pg_cron 1.4 cannot run jobs more often than once a minute.';
    END IF;
    IF pg_catalog.to_regprocedure('cron.schedule(text,text,text)') IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database and run CREATE EXTENSION pg_cron; or fold from the background worker (alexandrite.fold_interval).';
    END IF;
    EXECUTE 'SELECT cron.schedule($1, $2, $3)'
       INTO v_id
      USING 'alexandrite-refresh-dashboards'::text, every, 'SELECT alexandrite.refresh_dashboards()'::text;
    RETURN v_id;
END;
$$;
COMMENT ON FUNCTION alexandrite.schedule_refresh(text)
    IS 'registers (or updates) the pg_cron job alexandrite-refresh-dashboards that folds dashboard deltas; returns the job id';
REVOKE ALL ON FUNCTION alexandrite.schedule_refresh(text) FROM PUBLIC;
