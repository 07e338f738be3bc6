-- alexandrite.metrics(): Prometheus text exposition.  Checks the format of
-- every line, the family list, and that the figures move with the orders
-- (as differences, so that rows left by earlier tests do not matter).
\set VERBOSITY terse
SET client_min_messages = warning;

-- one parsed sample per line: family, sample name, labels, value
CREATE FUNCTION pg_temp.scrape() RETURNS TABLE (name text, labels text, value float8)
LANGUAGE sql AS $$
    SELECT m[1], COALESCE(m[3], ''), CASE m[4] WHEN '+Inf' THEN 'Infinity' WHEN '-Inf' THEN '-Infinity' ELSE m[4] END::float8
      FROM regexp_split_to_table(alexandrite.metrics(), E'\n') AS l,
           regexp_match(l, '^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$') AS m
     WHERE l !~ '^#' AND l <> ''
$$;
CREATE FUNCTION pg_temp.val(n text, lab text DEFAULT '') RETURNS float8
LANGUAGE sql AS $$ SELECT value FROM pg_temp.scrape() WHERE name = n AND labels = lab $$;

-- the format: HELP, TYPE, samples of that family; every line parseable;
-- label pairs well formed; final newline; no family twice
SELECT right(alexandrite.metrics(), 1) = E'\n' AS ends_with_newline;
WITH lines AS (
    SELECT l, n FROM regexp_split_to_table(alexandrite.metrics(), E'\n') WITH ORDINALITY AS t(l, n) WHERE l <> ''
), checked AS (
    SELECT n, l,
           CASE
             WHEN l ~ '^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* \S' THEN 'help'
             WHEN l ~ '^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram)$' THEN 'type'
             WHEN l ~ '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*")*\})? (NaN|[+-]Inf|-?[0-9.]+(e[+-]?[0-9]+)?)$' THEN 'sample'
             ELSE 'bad' END AS kind,
           (regexp_match(l, '^# (?:HELP|TYPE) (\S+)'))[1] AS declared,
           (regexp_match(l, '^# TYPE \S+ (\S+)$'))[1] AS type,
           (regexp_match(l, '^([a-zA-Z_:][a-zA-Z0-9_:]*)'))[1] AS sample
      FROM lines
), ctx AS (
    SELECT c.*, lag(kind) OVER w AS prev_kind, lag(declared) OVER w AS prev_declared,
           (SELECT c2.declared FROM checked c2 WHERE c2.n < c.n AND c2.kind = 'type' ORDER BY c2.n DESC LIMIT 1) AS family,
           (SELECT c2.type FROM checked c2 WHERE c2.n < c.n AND c2.kind = 'type' ORDER BY c2.n DESC LIMIT 1) AS family_type
      FROM checked c WINDOW w AS (ORDER BY n)
)
SELECT count(*) FILTER (WHERE kind = 'bad') AS bad_lines,
       count(*) FILTER (WHERE kind = 'type' AND (prev_kind IS DISTINCT FROM 'help' OR prev_declared <> declared)) AS type_without_help,
       count(*) FILTER (WHERE kind = 'sample' AND NOT (sample = family OR
                        (family_type = 'histogram' AND sample IN (family || '_bucket', family || '_sum', family || '_count')))) AS sample_outside_family,
       count(*) FILTER (WHERE kind = 'type' AND type = 'counter' AND declared !~ '_total$') AS counter_without_total,
       count(*) FILTER (WHERE kind = 'help') - count(DISTINCT declared) FILTER (WHERE kind = 'help') AS families_twice
  FROM ctx;

-- the families and their types (from the samples behind the text)
SELECT family, type, count(*) > 0 AS has_samples
  FROM alexandrite.metric_samples() GROUP BY family, type ORDER BY family;
-- the collectors are fixed (compiled into the library); no table names them
SELECT DISTINCT ON (labels->>'collector') labels->>'collector' AS collector
  FROM alexandrite.metric_samples() WHERE family = 'alexandrite_metrics_collector_success'
 ORDER BY labels->>'collector';
SELECT count(*) AS metric_registry_tables FROM pg_class
 WHERE relnamespace = 'alexandrite'::regnamespace AND relname LIKE 'metric%' AND relkind IN ('r', 'p', 'v');
SELECT count(*) AS failed_collectors FROM pg_temp.scrape()
 WHERE name = 'alexandrite_metrics_collector_success' AND value <> 1;

-- the figures follow the orders.  Earlier test files leave open orders whose
-- due times may cross now() while this file runs: start from an empty book.
DELETE FROM alexandrite.orders;
CREATE TEMP TABLE before AS SELECT * FROM pg_temp.scrape();
INSERT INTO alexandrite.operators (id, name, capacity) VALUES
    ('obs-op1', 'Observer', 4), (E'obs "q"\\ \nx', 'Quoting', 2);
SELECT count(*) FROM (SELECT alexandrite.create_order('OBS-' || i, 'crm', 'obs-c', NULL, NULL)
                        FROM generate_series(1, 5) i) s;
SELECT alexandrite.set_status(id, 'priced', 'obs') FROM alexandrite.orders WHERE external_ref = 'OBS-1';
UPDATE alexandrite.orders SET operator_id = 'obs-op1' WHERE external_ref IN ('OBS-2', 'OBS-3');
SELECT alexandrite.set_status(id, 'assigned', 'obs') FROM alexandrite.orders WHERE external_ref IN ('OBS-2', 'OBS-3');
SELECT alexandrite.set_status(id, 'cancelled', 'obs') FROM alexandrite.orders WHERE external_ref = 'OBS-4';
-- one breached, one at risk, one stuck for two days (written directly: the
-- test plays the clock)
UPDATE alexandrite.orders SET sla_due_at = now() - interval '1 hour' WHERE external_ref = 'OBS-2';
UPDATE alexandrite.orders SET sla_due_at = now() + interval '1 hour' WHERE external_ref = 'OBS-5';
UPDATE alexandrite.orders SET status_changed_at = now() - interval '2 days' WHERE external_ref = 'OBS-5';
INSERT INTO alexandrite.sla_breaches (order_id, sla_due_at, status_at_breach, operator_id)
SELECT id, sla_due_at, status, operator_id FROM alexandrite.orders WHERE external_ref = 'OBS-2';
-- two analysed meshes (30 ms and 2 s) and a quote for one of them
INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
                                size_x_mm, size_y_mm, size_z_mm, shells, watertight,
                                boundary_edges, nonmanifold_edges, degenerate_triangles, analysis_ms)
VALUES (960001, sha256('observe cube'), 'cube.stl', 'stl', 12, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 0, 30),
       (960002, sha256('observe slow'), 'slow.stl', 'stl', 12, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 0, 2000);
SELECT alexandrite.create_order('OBS-Q', 'shop', 'obs-c', 960001, 'ag925') AS q \gset
SELECT currency FROM alexandrite.price_order(:q);

-- (the outbox and dashboard figures depend on the relay and the fold, which
-- run on their own; their changes are checked as presence above)
SELECT a.name, a.labels, round((a.value - COALESCE(b.value, 0))::numeric, 3) AS delta
  FROM pg_temp.scrape() a LEFT JOIN before b USING (name, labels)
 WHERE a.name NOT IN ('alexandrite_metrics_collector_duration_seconds',
                      'alexandrite_orders_max_time_in_status_seconds')
   AND a.name !~ '^alexandrite_(outbox|dashboard)_'
   AND a.name NOT IN ('alexandrite_quotes_value_total', 'alexandrite_mesh_analysis_duration_seconds_sum')
   AND a.value IS DISTINCT FROM b.value
 ORDER BY a.name, a.labels;
-- (the sum is a float over every stored mesh, also earlier tests' ones: compared
-- within a tolerance)
SELECT abs((SELECT a.value - COALESCE(b.value, 0) FROM pg_temp.scrape() a LEFT JOIN before b USING (name, labels)
             WHERE a.name = 'alexandrite_mesh_analysis_duration_seconds_sum') - 2.030) < 0.01 AS mesh_seconds_summed;
SELECT (SELECT a.value - COALESCE(b.value, 0) FROM pg_temp.scrape() a LEFT JOIN before b USING (name, labels)
         WHERE a.name = 'alexandrite_quotes_value_total' AND a.labels = 'currency="EUR",needs_review="false"')
       - (SELECT q.total::float8 FROM alexandrite.quotes q WHERE q.order_id = :q) BETWEEN -0.01 AND 0.01 AS quote_value_counted;
SELECT pg_temp.val('alexandrite_orders_max_time_in_status_seconds') >= 2 * 86400 AS max_time_in_status_sees_the_stuck_order;

-- a failing collector is reported; the others still answer (the test
-- breaks one for a moment, then puts its definition back)
SELECT pg_get_functiondef('alexandrite.metrics_quotes()'::regprocedure) AS quotes_def \gset
CREATE OR REPLACE FUNCTION alexandrite.metrics_quotes() RETURNS SETOF alexandrite.metric_sample
    LANGUAGE sql AS $$ SELECT alexandrite.metric('x_total', 'counter', 'x', 1 / 0) $$;
SET client_min_messages = notice;
SELECT name, labels, value FROM pg_temp.scrape()
 WHERE name = 'alexandrite_metrics_collector_success' ORDER BY labels;
SET client_min_messages = warning;
SELECT count(*) > 0 AS other_figures_still_there FROM pg_temp.scrape() WHERE name = 'alexandrite_orders_in_status';
\set ECHO none
SELECT :'quotes_def' \gexec
\set ECHO all
-- a function of that name that is not the extension's own is not called
ALTER EXTENSION alexandrite DROP FUNCTION alexandrite.metrics_quotes();
SET client_min_messages = notice;
SELECT value FROM pg_temp.scrape()
 WHERE name = 'alexandrite_metrics_collector_success' AND labels = 'collector="quotes"';
SET client_min_messages = warning;
ALTER EXTENSION alexandrite ADD FUNCTION alexandrite.metrics_quotes();
SELECT value FROM pg_temp.scrape()
 WHERE name = 'alexandrite_metrics_collector_success' AND labels = 'collector="quotes"';

-- one collector, and an unknown one
SELECT DISTINCT family FROM alexandrite.metric_samples(ARRAY['sla']) ORDER BY 1;
SELECT * FROM alexandrite.metric_samples(ARRAY['sla', 'nope', 'neither']);
SELECT * FROM alexandrite.metric_samples(ARRAY['sla', NULL]);
SELECT count(*) FROM alexandrite.metric_samples(ARRAY[]::text[]);

-- rendering: escaping, special values, histogram families
SELECT alexandrite.metrics_render(ARRAY[
    alexandrite.metric('t_seconds', 'histogram', E'back\\slash \nnewline', 1, '{"le": "0.5"}', '_bucket'),
    alexandrite.metric('t_seconds', 'histogram', 'ignored', 'Infinity', '{"le": "+Inf"}', '_bucket'),
    alexandrite.metric('t_seconds', 'histogram', 'ignored', 0.25, '{}', '_sum'),
    alexandrite.metric('t_seconds', 'histogram', 'ignored', 2, '{}', '_count'),
    alexandrite.metric('u', 'gauge', 'u', 'NaN', '{"b": "2", "a": "x\"y"}'),
    alexandrite.metric('u', 'gauge', 'u', NULL, '{"a": "-", "c": null}'),
    alexandrite.metric('v', 'gauge', 'v', '-Infinity'),
    alexandrite.metric('w', 'gauge', 'w', 1e300)]);
SELECT alexandrite.metrics_render('{}') = '' AS empty_renders_empty;

-- a family's samples are grouped wherever they are in the array, families in
-- the order of their first sample
SELECT alexandrite.metrics_render(ARRAY[
    alexandrite.metric('b', 'gauge', 'b help', 1),
    alexandrite.metric('a', 'counter', 'a help', 2, '{}', '_total'),
    alexandrite.metric('b', 'gauge', 'ignored', 3, '{"k": "2"}'),
    alexandrite.metric('a', 'counter', 'ignored', 4, '{"k": "1"}', '_total'),
    alexandrite.metric('b', 'gauge', 'ignored', 5, '{"k": "3"}')]);
-- samples from anyone: nothing outside quotes may carry a line of its own
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric(E'x 1\nevil_metric', 'gauge', 'h', 1)]);
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric('x', 'gauge', 'h', 1),
                                        alexandrite.metric('2x', 'gauge', 'h', 1)]);
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric('x', E'gauge\nevil 1', 'h', 1)]);
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric('x', NULL, 'h', 1)]);
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric(NULL, 'gauge', 'h', 1)]);
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric('x', 'gauge', 'h', 1, '{}', E'_total 1\nevil')]);
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric('x', 'gauge', 'h', 1, jsonb_build_object(E'a="1"} 1\nevil{b', 'v'))]);
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric('x', 'gauge', 'h', 1, '{"__name__": "y"}')]);
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric('x', 'gauge', 'h', 1, '["a", "b"]')]);
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric('x', 'gauge', 'h', 1, '"a"')]);
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric(repeat('y', 100) || '-', 'gauge', 'h', 1)]);
-- names with colons, suffixes with digits, NULL labels: accepted
SELECT alexandrite.metrics_render(ARRAY[alexandrite.metric('job:rate5m', 'untyped', 'h', 1, NULL, '_2')]);
SET statement_timeout = '20s';
-- 200,000 samples of 100,000 families render in time proportional to them
-- (was quadratic: each family scanned every sample; b68a095 hit the 20 s)
SELECT length(alexandrite.metrics_render(array_agg(alexandrite.metric('f' || (i % 100000), 'gauge', 'h', i))))
  FROM generate_series(1, 200000) i;
RESET statement_timeout;
-- the library's own samples render as metrics() does
SELECT alexandrite.metrics_render(array_agg(s)) IS NOT NULL AS own_samples_render
  FROM alexandrite.metric_samples() s;

-- privileges: pg_monitor members read the figures but no order; a role
-- with EXECUTE on metrics() alone reads them too; others nothing
CREATE ROLE alx_obs_mon IN ROLE pg_monitor;
CREATE ROLE alx_obs_exec;
CREATE ROLE alx_obs_nobody;
GRANT USAGE ON SCHEMA alexandrite TO alx_obs_nobody, alx_obs_exec;
GRANT EXECUTE ON FUNCTION alexandrite.metrics() TO alx_obs_exec;
SET ROLE alx_obs_mon;
SELECT count(*) > 20 AS monitor_reads_metrics FROM pg_temp.scrape();
SELECT count(*) FROM alexandrite.orders;
SELECT * FROM alexandrite.metrics_orders();
RESET ROLE;
SET ROLE alx_obs_exec;
SELECT count(*) > 20 AS execute_on_metrics_is_enough,
       count(*) FILTER (WHERE name = 'alexandrite_metrics_collector_success' AND value <> 1) AS failed_collectors
  FROM pg_temp.scrape();
SELECT count(*) FROM alexandrite.orders;
SELECT * FROM alexandrite.dashboard_status_counts;
SELECT * FROM alexandrite.metric_samples();
RESET ROLE;
SET ROLE alx_obs_nobody;
SELECT alexandrite.metrics();
SELECT * FROM alexandrite.metric_samples();
RESET ROLE;
REVOKE USAGE ON SCHEMA alexandrite FROM alx_obs_nobody, alx_obs_exec;
REVOKE EXECUTE ON FUNCTION alexandrite.metrics() FROM alx_obs_exec;
DROP ROLE alx_obs_mon;
DROP ROLE alx_obs_exec;
DROP ROLE alx_obs_nobody;

-- clean up the orders of this test
DELETE FROM alexandrite.sla_breaches WHERE order_id IN (SELECT id FROM alexandrite.orders WHERE external_ref LIKE 'OBS-%');
DELETE FROM alexandrite.orders WHERE external_ref LIKE 'OBS-%';
DELETE FROM alexandrite.meshes WHERE id IN (960001, 960002);
DELETE FROM alexandrite.operators WHERE id IN ('obs-op1', E'obs "q"\\ \nx');
RESET client_min_messages;
