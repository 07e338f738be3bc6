-- Catalog contracts of operations: metrics(), its collectors, tracing helpers.
BEGIN;
SELECT plan(30);

SELECT function_returns('alexandrite', 'metrics', ARRAY[]::text[], 'text', 'metrics() returns text');
SELECT function_returns('alexandrite', 'metric_samples', ARRAY['text[]'], 'setof alexandrite.metric_sample',
    'metric_samples(text[]) returns setof metric_sample');
SELECT function_returns('alexandrite', 'metrics_render', ARRAY['alexandrite.metric_sample[]'], 'text',
    'metrics_render(metric_sample[]) returns text');
SELECT function_returns('alexandrite', 'set_traceparent', ARRAY['text', 'boolean'], 'text',
    'set_traceparent(text, boolean) returns text');
SELECT function_returns('alexandrite', 'new_traceparent', ARRAY[]::text[], 'text', 'new_traceparent() returns text');
SELECT has_table('alexandrite', 'metric_collectors', 'the collector registry exists');

-- the one SECURITY DEFINER function, and how it is fenced in
SELECT is_definer('alexandrite', 'metric_samples', ARRAY['text[]'], 'metric_samples() runs as the extension owner');
SELECT ok((SELECT p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'] FROM pg_proc p
            WHERE p.oid = 'alexandrite.metric_samples(text[])'::regprocedure),
    'metric_samples() pins search_path to pg_catalog, pg_temp');
SELECT function_privs_are('alexandrite', 'metric_samples', ARRAY['text[]'], 'public', ARRAY[]::text[],
    'PUBLIC cannot call metric_samples()');
SELECT function_privs_are('alexandrite', 'metric_samples', ARRAY['text[]'], 'pg_monitor', ARRAY['EXECUTE'],
    'pg_monitor may call metric_samples()');
SELECT isnt_definer('alexandrite', 'metrics', ARRAY[]::text[], 'metrics() is not SECURITY DEFINER');
SELECT function_privs_are('alexandrite', 'metrics', ARRAY[]::text[], 'public', ARRAY[]::text[],
    'PUBLIC cannot call metrics()');
SELECT function_privs_are('alexandrite', 'metrics', ARRAY[]::text[], 'pg_monitor', ARRAY['EXECUTE'],
    'pg_monitor may call metrics()');
SELECT ok(has_schema_privilege('pg_monitor', 'alexandrite', 'USAGE'), 'pg_monitor has USAGE on schema alexandrite');
SELECT ok(NOT has_table_privilege('pg_monitor', 'alexandrite.orders', 'SELECT'), 'pg_monitor cannot read orders');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'alexandrite'::regnamespace AND p.prosecdef
       AND has_function_privilege('pg_monitor', p.oid, 'EXECUTE')
       AND p.oid <> 'alexandrite.metric_samples(text[])'::regprocedure
$$, 'USAGE for pg_monitor opens no other SECURITY DEFINER function');
SELECT ok(NOT has_table_privilege('pg_monitor', 'alexandrite.metric_collectors', 'INSERT')
          AND NOT has_table_privilege('public', 'alexandrite.metric_collectors', 'INSERT'),
    'nobody but the owner registers collectors');

-- every registered collector: exists, returns samples, takes no argument, is
-- not a definer, pins its search_path, and is not open to PUBLIC
SELECT cmp_ok((SELECT count(*)::int FROM alexandrite.metric_collectors), '>=', 8, 'a collector per capability');
SELECT is_empty($$
    SELECT m.name FROM alexandrite.metric_collectors m JOIN pg_proc p ON p.oid = m.collector
     WHERE p.prorettype <> 'alexandrite.metric_sample'::regtype OR NOT p.proretset OR p.pronargs <> 0
$$, 'every collector returns setof metric_sample and takes no argument');
SELECT is_empty($$
    SELECT m.name FROM alexandrite.metric_collectors m JOIN pg_proc p ON p.oid = m.collector
     WHERE p.prosecdef OR p.pronamespace <> 'alexandrite'::regnamespace
        OR NOT COALESCE(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
$$, 'every collector lives in alexandrite, is not a definer and pins its search_path');
SELECT is_empty($$
    SELECT m.name FROM alexandrite.metric_collectors m
     WHERE has_function_privilege('public', m.collector, 'EXECUTE')
$$, 'no collector is open to PUBLIC');
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
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_extension e, unnest(e.extconfig) c
                       WHERE e.extname = 'alexandrite' AND c = 'alexandrite.metric_collectors'::regclass),
    'the registry is extension code, not user data (not dumped)');

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
