/* sql/schema/observe.sql: operations - Prometheus metrics, tracing, timeline
 * Part of the current install script (make concatenates the files of sql/schema in the
 * order of SCHEMA in the Makefile into alexandrite--<version>.sql).  A change
 * here needs the same change in the current upgrade script. */

------------------------------------------------------------------------------
-- Metrics
--
-- Every capability contributes its figures through one collector: a set-
-- returning function of alexandrite.metric_sample rows created below.  The
-- collectors are fixed: alexandrite.metrics() and alexandrite.metric_samples()
-- (C, src/observe/metrics.c) call them by the names compiled into the
-- library, as the extension owner, so that a monitoring role with EXECUTE on
-- those two functions (pg_monitor has it) sees counts and ages but no order
-- data.  A collector that fails is reported by
-- alexandrite_metrics_collector_success{collector="..."} 0 and a WARNING; the
-- other collectors still answer.
--
-- Cost: collectors read dashboards (summary + pending changes; three are
-- declared here: status_age, mesh_analysis_time, quote_counts), the relay's
-- state and single index probes: never a scan of the orders, the meshes or
-- the quotes (docs/benchmarks-observe.md).
------------------------------------------------------------------------------
CREATE TYPE alexandrite.metric_sample AS (
    family text,          -- metric family name, e.g. alexandrite_orders_in_status
    type   text,          -- counter, gauge or histogram
    help   text,          -- one line of help text
    suffix text,          -- '' or, for histograms, _bucket, _sum, _count
    labels jsonb,         -- label name -> value (a JSON object of strings)
    value  float8
);
COMMENT ON TYPE alexandrite.metric_sample IS 'one sample of a metric, as returned by the collectors behind alexandrite.metrics()';

-- Helper: a sample row.
CREATE FUNCTION alexandrite.metric(family text, type text, help text, value float8,
                                   labels jsonb DEFAULT '{}', suffix text DEFAULT '')
    RETURNS alexandrite.metric_sample
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ROW(family, type, help, suffix, labels, value)::alexandrite.metric_sample;
COMMENT ON FUNCTION alexandrite.metric(text, text, text, float8, jsonb, text)
    IS 'internal: builds one alexandrite.metric_sample';

-- The library and the standby/primary role of this server.
CREATE FUNCTION alexandrite.metrics_server() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT alexandrite.metric('alexandrite_build_info', 'gauge',
               'Version of the alexandrite library and of its SQL objects.', 1,
               jsonb_build_object('version', alexandrite.version(),
                                  'extversion', (SELECT e.extversion FROM pg_extension e
                                                  WHERE e.extname = 'alexandrite')))
    UNION ALL
    SELECT alexandrite.metric('alexandrite_in_recovery', 'gauge',
               'Whether this server is a standby (1) or a primary (0).',
               CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END)
$$;
COMMENT ON FUNCTION alexandrite.metrics_server() IS 'metrics collector: library version and recovery state';

-- Stuck orders per status, kept by a dashboard: open orders by status, with
-- the count of those whose last status change is more than 24 hours old (a
-- moving watermark on status_changed_at), so a scrape reads a few groups
-- instead of every stuck order.
SELECT alexandrite.create_dashboard('status_age', 'alexandrite.orders', ARRAY['status'],
                                    count_name => 'open_orders',
                                    filter => 'alexandrite.is_open(status)',
                                    due => 'status_changed_at', horizons => ARRAY['-24:00:00'::interval],
                                    horizon_names => ARRAY['stuck_orders']);

-- Orders: how many are in each status (the status_counts dashboard: summary
-- plus pending changes, exact), which ones stopped moving (the status_age
-- dashboard) and for how long at most (one probe of the core's partial index
-- on open orders by status_changed_at).
CREATE FUNCTION alexandrite.metrics_orders() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    (WITH counts AS (
        SELECT d.status, d.channel, sum(d.orders) AS n
          FROM alexandrite.dashboard_status_counts d GROUP BY d.status, d.channel
     ), channels AS (
        SELECT p.channel FROM alexandrite.sla_policies p UNION SELECT c.channel FROM counts c
     )
     SELECT alexandrite.metric('alexandrite_orders_in_status', 'gauge',
                'Orders in each status, by channel.', COALESCE(c.n, 0),
                jsonb_build_object('status', s.status, 'channel', ch.channel))
       FROM unnest(enum_range(NULL::alexandrite.order_status)) AS s(status)
      CROSS JOIN channels ch
       LEFT JOIN counts c ON c.status = s.status AND c.channel = ch.channel
      ORDER BY s.status, ch.channel)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_stuck_orders', 'gauge',
                'Open orders whose status has not changed for 24 hours or more (alexandrite.stuck_orders()), by status.',
                COALESCE(c.n, 0), jsonb_build_object('status', s.status))
       FROM unnest(enum_range(NULL::alexandrite.order_status)) AS s(status)
       LEFT JOIN (SELECT d.status, sum(d.stuck_orders) AS n FROM alexandrite.dashboard_status_age d
                   GROUP BY d.status) c ON c.status = s.status
      WHERE alexandrite.is_open(s.status)
      ORDER BY s.status)
    UNION ALL
    SELECT alexandrite.metric('alexandrite_orders_max_time_in_status_seconds', 'gauge',
               'Longest time an open order has spent in its current status, in seconds (0 when no order is open).',
               COALESCE(extract(epoch FROM now() - min(o.status_changed_at)), 0)::float8)
      FROM alexandrite.orders o
     WHERE o.status < 'shipped'::alexandrite.order_status
$$;
COMMENT ON FUNCTION alexandrite.metrics_orders() IS 'metrics collector: orders by status and channel, stuck orders';

-- SLA: open, at risk (due within 24 h) and breached orders per channel
-- (dashboard_sla), and the breaches recorded so far.
CREATE FUNCTION alexandrite.metrics_sla() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS (
        SELECT s.channel, s.open_orders, s.at_risk_orders, s.breached_orders FROM alexandrite.dashboard_sla s
    ), channels AS (
        SELECT p.channel FROM alexandrite.sla_policies p UNION SELECT d.channel FROM d
    ), v AS (
        SELECT ch.channel, COALESCE(d.open_orders, 0) AS open_orders,
               COALESCE(d.at_risk_orders, 0) AS at_risk, COALESCE(d.breached_orders, 0) AS breached
          FROM channels ch LEFT JOIN d USING (channel)
    )
    (SELECT alexandrite.metric('alexandrite_sla_open_orders', 'gauge',
                'Open orders (neither shipped nor cancelled), by channel.', v.open_orders,
                jsonb_build_object('channel', v.channel)) FROM v ORDER BY v.channel)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_sla_at_risk_orders', 'gauge',
                'Open orders not yet due but due within 24 hours, by channel.', v.at_risk,
                jsonb_build_object('channel', v.channel)) FROM v ORDER BY v.channel)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_sla_breached_orders', 'gauge',
                'Open orders past their SLA due time, by channel.', v.breached,
                jsonb_build_object('channel', v.channel)) FROM v ORDER BY v.channel)
    UNION ALL
    SELECT alexandrite.metric('alexandrite_sla_breaches_recorded_total', 'counter',
               'Orders ever recorded as having breached their SLA (alexandrite.sla_breaches).',
               (SELECT count(*) FROM alexandrite.sla_breaches)::float8)
$$;
COMMENT ON FUNCTION alexandrite.metrics_sla() IS 'metrics collector: SLA at risk and breached';

-- Assignment: each operator's open and overdue orders (dashboard_operator_load)
-- against capacity.
CREATE FUNCTION alexandrite.metrics_assignment() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH v AS (
        SELECT op.id, op.capacity, op.active, COALESCE(l.open_orders, 0) AS open_orders,
               COALESCE(l.overdue_orders, 0) AS overdue
          FROM alexandrite.operators op
          LEFT JOIN alexandrite.dashboard_operator_load l ON l.operator_id = op.id
         WHERE op.active OR l.open_orders > 0
    )
    (SELECT alexandrite.metric('alexandrite_operator_open_orders', 'gauge',
                'Open orders assigned to each operator.', v.open_orders,
                jsonb_build_object('operator', v.id)) FROM v ORDER BY v.id)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_operator_overdue_orders', 'gauge',
                'Open orders assigned to each operator that are past their SLA due time.', v.overdue,
                jsonb_build_object('operator', v.id)) FROM v ORDER BY v.id)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_operator_capacity_orders', 'gauge',
                'Open orders each active operator may hold (alexandrite.operators.capacity; 0 when inactive).',
                CASE WHEN v.active THEN v.capacity ELSE 0 END,
                jsonb_build_object('operator', v.id)) FROM v ORDER BY v.id)
$$;
COMMENT ON FUNCTION alexandrite.metrics_assignment() IS 'metrics collector: open and overdue orders per operator';

-- Outbox and relay: backlog, its age, what was published, dead letters, and
-- the relay's connection (outbox_status, outbox_relay_info()).
CREATE FUNCTION alexandrite.metrics_outbox() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH s AS (SELECT * FROM alexandrite.outbox_status), i AS (SELECT * FROM alexandrite.outbox_relay_info())
    SELECT alexandrite.metric('alexandrite_outbox_pending_messages', 'gauge',
               'Outbox events not yet confirmed by the broker (pending or retrying).', s.pending) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_oldest_pending_age_seconds', 'gauge',
               'Age of the oldest outbox event not yet confirmed by the broker, in seconds (0 when none).',
               COALESCE(extract(epoch FROM s.oldest_pending_age), 0)::float8) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_published_total', 'counter',
               'Outbox events confirmed by the broker.', s.published_total) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_dead_letters', 'gauge',
               'Outbox events that exhausted their attempts (alexandrite.outbox_dead).', s.dead_letters) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_retrying_messages', 'gauge',
               'Outbox events waiting for another attempt, with the later events of their aggregates.', s.retrying) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_blocked_aggregates', 'gauge',
               'Aggregates whose events wait behind a failed one (alexandrite.outbox_blocked).', s.blocked_aggregates) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_relay_connected', 'gauge',
               'Whether the relay is connected to a broker (1) or not (0).',
               CASE WHEN s.relay_connected THEN 1 ELSE 0 END) FROM s
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_relay_running', 'gauge',
               'Whether the relay background worker is running on this server (1) or not (0).',
               CASE WHEN i.relay_pid IS NOT NULL AND i.relay_pid <> 0 THEN 1 ELSE 0 END) FROM i
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_relay_reconnects_total', 'counter',
               'Broker connections the relay opened since the server started.', COALESCE(i.reconnects, 0)) FROM i
    UNION ALL
    SELECT alexandrite.metric('alexandrite_outbox_relay_confirm_failures_total', 'counter',
               'Publishes the broker did not confirm (nack, return, timeout) since the server started.',
               COALESCE(i.confirms_failed, 0)) FROM i
$$;
COMMENT ON FUNCTION alexandrite.metrics_outbox() IS 'metrics collector: outbox backlog, dead letters, relay connection';

-- Dashboards: pending changes and their age, folds (dashboard_lag).
CREATE FUNCTION alexandrite.metrics_dashboards() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH l AS (SELECT * FROM alexandrite.dashboard_lag)
    (SELECT alexandrite.metric('alexandrite_dashboard_pending_changes', 'gauge',
                'Changes captured but not yet folded into the dashboard''s summary.', l.pending_changes,
                jsonb_build_object('dashboard', l.dashboard)) FROM l ORDER BY l.dashboard)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_dashboard_oldest_pending_age_seconds', 'gauge',
                'Age of the oldest change not yet folded, in seconds (0 when none).',
                COALESCE(extract(epoch FROM l.oldest_pending_age), 0)::float8,
                jsonb_build_object('dashboard', l.dashboard)) FROM l ORDER BY l.dashboard)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_dashboard_folds_total', 'counter',
                'Folds of the dashboard''s pending changes into its summary.', COALESCE(l.folds, 0),
                jsonb_build_object('dashboard', l.dashboard)) FROM l ORDER BY l.dashboard)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_dashboard_folded_changes_total', 'counter',
                'Changes folded into the dashboard''s summary.', COALESCE(l.folded_total, 0),
                jsonb_build_object('dashboard', l.dashboard)) FROM l ORDER BY l.dashboard)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_dashboard_rebuild_needed', 'gauge',
                'Whether the dashboard must be rebuilt (1: after a TRUNCATE or a failed reconcile).',
                CASE WHEN l.rebuild_needed THEN 1 ELSE 0 END,
                jsonb_build_object('dashboard', l.dashboard)) FROM l ORDER BY l.dashboard)
$$;
COMMENT ON FUNCTION alexandrite.metrics_dashboards() IS 'metrics collector: dashboard lag and folds';

-- Histogram bounds of durations, in seconds.
CREATE FUNCTION alexandrite.metric_le_seconds(ms float8) RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(min(b), 'Infinity'::float8)
      FROM unnest('{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60}'::float8[]) AS b
     WHERE b >= ms / 1000.0
$$;
COMMENT ON FUNCTION alexandrite.metric_le_seconds(float8)
    IS 'internal: the histogram bucket (upper bound, seconds) of a duration given in milliseconds';

-- Mesh analyses: how many stored meshes were analysed and how long it took
-- (meshes.analysis_ms), kept by a dashboard so that a scrape reads a dozen
-- buckets, not the meshes.
SELECT alexandrite.create_dashboard('mesh_analysis_time', 'alexandrite.meshes',
                                    ARRAY['alexandrite.metric_le_seconds(analysis_ms)'],
                                    count_name => 'analyses', sums => ARRAY['analysis_ms'],
                                    filter => 'analysis_ms IS NOT NULL',
                                    key_names => ARRAY['le_seconds'], sum_names => ARRAY['sum_ms']);
-- Quotes given for orders (quotes), by currency and review flag, with their
-- summed totals.
SELECT alexandrite.create_dashboard('quote_counts', 'alexandrite.quotes',
                                    ARRAY['currency', 'needs_review'],
                                    count_name => 'quotes', sums => ARRAY['total'],
                                    sum_names => ARRAY['sum_total']);

CREATE FUNCTION alexandrite.metrics_meshes() RETURNS SETOF alexandrite.metric_sample
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

CREATE FUNCTION alexandrite.metrics_quotes() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH counted AS (
        SELECT d.currency, d.needs_review, sum(d.quotes) AS quotes, sum(d.sum_total) AS total
          FROM alexandrite.dashboard_quote_counts d GROUP BY d.currency, d.needs_review
    ), q AS (
        -- zeros for the current price list's currency, so the series exist from the start
        SELECT k.currency, k.needs_review, COALESCE(c.quotes, 0) AS quotes, COALESCE(c.total, 0) AS total
          FROM (SELECT r.currency, f.needs_review FROM alexandrite.price_rules r,
                       (VALUES (false), (true)) AS f(needs_review)
                UNION SELECT c.currency, c.needs_review FROM counted c) k
          LEFT JOIN counted c ON c.currency = k.currency AND c.needs_review = k.needs_review
    )
    (SELECT alexandrite.metric('alexandrite_quotes_total', 'counter',
                'Quotes given for orders (alexandrite.quotes), by currency and whether they need review.', q.quotes,
                jsonb_build_object('currency', q.currency, 'needs_review', q.needs_review::text))
       FROM q ORDER BY q.currency, q.needs_review)
    UNION ALL
    (SELECT alexandrite.metric('alexandrite_quotes_value_total', 'counter',
                'Sum of the totals of the quotes given, in their currency.', q.total,
                jsonb_build_object('currency', q.currency, 'needs_review', q.needs_review::text))
       FROM q ORDER BY q.currency, q.needs_review)
$$;
COMMENT ON FUNCTION alexandrite.metrics_quotes() IS 'metrics collector: quotes given, by currency';

-- The samples of all collectors, or of the named ones, as rows (C: the
-- collectors are called by names compiled into the library, as the
-- extension owner).
CREATE FUNCTION alexandrite.metric_samples(collectors text[] DEFAULT NULL)
    RETURNS SETOF alexandrite.metric_sample
    AS 'MODULE_PATHNAME', 'alexandrite_metric_samples'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.metric_samples(text[])
    IS 'the samples behind alexandrite.metrics(), from all collectors or the named ones (server, orders, sla, assignment, outbox, dashboards, meshes, quotes)';

-- Prometheus text exposition format 0.0.4: HELP and TYPE once per family,
-- then its samples; label values and help text escaped.
CREATE FUNCTION alexandrite.metrics_render(samples alexandrite.metric_sample[])
    RETURNS text
    AS 'MODULE_PATHNAME', 'alexandrite_metrics_render'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.metrics_render(alexandrite.metric_sample[])
    IS 'renders metric samples in the Prometheus text exposition format';

-- VOLATILE: each call is a new scrape (durations, ages).
CREATE FUNCTION alexandrite.metrics() RETURNS text
    AS 'MODULE_PATHNAME', 'alexandrite_metrics'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.metrics()
    IS 'Prometheus text exposition of alexandrite''s figures (orders, SLA, assignment, outbox, dashboards, meshes, quotes)';

-- Monitoring roles read the figures, nobody else by default: EXECUTE on
-- metrics() and metric_samples() is all they need (no SELECT on any table).
-- The collectors are internal.
REVOKE ALL ON FUNCTION alexandrite.metric_samples(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_server() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_orders() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_sla() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_assignment() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_outbox() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_dashboards() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_meshes() FROM PUBLIC;
REVOKE ALL ON FUNCTION alexandrite.metrics_quotes() FROM PUBLIC;
GRANT USAGE ON SCHEMA alexandrite TO pg_monitor;
GRANT EXECUTE ON FUNCTION alexandrite.metric_samples(text[]) TO pg_monitor;
GRANT EXECUTE ON FUNCTION alexandrite.metrics() TO pg_monitor;

------------------------------------------------------------------------------
-- Tracing: W3C trace context for the MES's transactions
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.set_traceparent(traceparent text, is_local boolean DEFAULT true)
    RETURNS text
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NULLIF(set_config('alexandrite.traceparent', COALESCE(traceparent, ''), is_local), '')
$$;
COMMENT ON FUNCTION alexandrite.set_traceparent(text, boolean)
    IS 'attaches a W3C traceparent to this transaction (or session, is_local => false); NULL clears it';

CREATE FUNCTION alexandrite.new_traceparent() RETURNS text
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '00-' || replace(gen_random_uuid()::text, '-', '') || '-' ||
           substr(replace(gen_random_uuid()::text, '-', ''), 1, 16) || '-01'
$$;
COMMENT ON FUNCTION alexandrite.new_traceparent()
    IS 'a fresh W3C traceparent (random trace and span ids, sampled) for a caller that has none';

------------------------------------------------------------------------------
-- The timeline of an order
--
-- The trace context of each change is in detail:
-- {"traceparent": ..., "trace_id": ...}.
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.order_timeline(order_id bigint)
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
