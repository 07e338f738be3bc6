-- Catalog contracts of operations: metrics(), its collectors, tracing helpers.
BEGIN;
SELECT plan(35);

SELECT function_returns('alexandrite', 'metrics', ARRAY[]::text[], 'text', 'metrics() returns text');
SELECT function_returns('alexandrite', 'metric_samples', ARRAY['text[]'], 'setof alexandrite.metric_sample',
    'metric_samples(text[]) returns setof metric_sample');
SELECT function_returns('alexandrite', 'metrics_render', ARRAY['alexandrite.metric_sample[]'], 'text',
    'metrics_render(metric_sample[]) returns text');
SELECT function_returns('alexandrite', 'set_traceparent', ARRAY['text', 'boolean'], 'text',
    'set_traceparent(text, boolean) returns text');
SELECT function_returns('alexandrite', 'new_traceparent', ARRAY[]::text[], 'text', 'new_traceparent() returns text');
SELECT hasnt_table('alexandrite', 'metric_collectors', 'no table names the functions metrics() runs');

-- no SECURITY DEFINER: metrics() and metric_samples() are C, run as their
-- caller and call their fixed collectors as the extension owner
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p
                   WHERE p.pronamespace = 'alexandrite'::regnamespace AND p.prosecdef$$,
                'no function of the extension is SECURITY DEFINER');
SELECT function_lang_is('alexandrite', f, a, 'c', f || ' is C')
  FROM (VALUES ('metrics', ARRAY[]::text[]), ('metric_samples', ARRAY['text[]']),
               ('metrics_render', ARRAY['alexandrite.metric_sample[]'])) x(f, a);
SELECT function_privs_are('alexandrite', 'metric_samples', ARRAY['text[]'], 'public', ARRAY[]::text[],
    'PUBLIC cannot call metric_samples()');
SELECT function_privs_are('alexandrite', 'metric_samples', ARRAY['text[]'], 'pg_monitor', ARRAY['EXECUTE'],
    'pg_monitor may call metric_samples()');
SELECT function_privs_are('alexandrite', 'metrics', ARRAY[]::text[], 'public', ARRAY[]::text[],
    'PUBLIC cannot call metrics()');
SELECT function_privs_are('alexandrite', 'metrics', ARRAY[]::text[], 'pg_monitor', ARRAY['EXECUTE'],
    'pg_monitor may call metrics()');
SELECT ok(has_schema_privilege('pg_monitor', 'alexandrite', 'USAGE'), 'pg_monitor has USAGE on schema alexandrite');
SELECT ok(NOT has_table_privilege('pg_monitor', 'alexandrite.orders', 'SELECT'), 'pg_monitor cannot read orders');

-- the fixed collectors: functions of the extension, returning samples,
-- taking no argument, not definers, search_path pinned, not for PUBLIC
SELECT is((SELECT count(*)::int FROM pg_proc p
            WHERE p.oid = ('alexandrite.metrics_' || c || '()')::regprocedure
              AND p.prorettype = 'alexandrite.metric_sample'::regtype AND p.proretset AND NOT p.prosecdef
              AND p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp']
              AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
              AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                             AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e')), 1,
          'collector ' || c || ' is alexandrite.metrics_' || c || '()')
  FROM unnest(ARRAY['server', 'orders', 'sla', 'assignment', 'outbox', 'dashboards', 'meshes', 'quotes']) c;

-- a role with EXECUTE on metrics() and nothing else gets every figure
CREATE ROLE tap_monitor;
GRANT USAGE ON SCHEMA alexandrite TO tap_monitor;
GRANT EXECUTE ON FUNCTION alexandrite.metrics() TO tap_monitor;
SET ROLE tap_monitor;
SELECT matches(alexandrite.metrics(), 'alexandrite_metrics_collector_success\{collector="quotes"\} 1',
               'EXECUTE on metrics() is all a monitoring role needs');
SELECT doesnt_match(alexandrite.metrics(), '_success\{collector="[a-z]+"\} 0', 'every collector answers for it');
SELECT throws_ok($$SELECT count(*) FROM alexandrite.orders$$, '42501', NULL, 'and it reads no order');
RESET ROLE;
SELECT is_empty($$
    SELECT DISTINCT s.family FROM alexandrite.metric_samples() s
     WHERE s.family !~ '^alexandrite_[a-z0-9_]+$'
        OR s.type NOT IN ('counter', 'gauge', 'histogram')
        OR (s.type = 'counter') <> (s.family ~ '_total$')
$$, 'families are alexandrite_*, typed, and only counters end in _total');
SELECT is_empty($$
    SELECT s.family FROM alexandrite.metric_samples() s
     WHERE s.family ~ '(_ms|_minutes|_hours|_milliseconds|_bytes_kb)$'
$$, 'base units in names (seconds, not milliseconds)');

-- SQLSTATEs
SELECT throws_ok($$SELECT * FROM alexandrite.metric_samples(ARRAY['nope'])$$, '22023', NULL,
    'an unknown collector: invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.set_traceparent('00-xyz')$$, '22023', NULL,
    'a malformed traceparent: invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.set_traceparent('00-00000000000000000000000000000000-b7ad6b7169203331-01')$$,
    '22023', NULL, 'an all-zero trace id: invalid_parameter_value');
SELECT lives_ok($$SELECT alexandrite.set_traceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')$$,
    'a valid traceparent is accepted');
SELECT is(alexandrite.current_traceparent(), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    'and recorded for the transaction');
SELECT matches(alexandrite.metrics(), E'^# HELP alexandrite_', 'metrics() starts with a HELP line');

SELECT * FROM finish();
ROLLBACK;
