-- Catalog contracts of the dashboards: objects, columns, signatures,
-- privileges, definer status, SQLSTATEs.
BEGIN;
SELECT plan(99);

-- the contract views and their columns
SELECT has_view('alexandrite', v, 'view alexandrite.' || v || ' exists')
  FROM unnest(ARRAY['dashboard_status_counts', 'dashboard_operator_load', 'dashboard_sla', 'dashboard_lag']) v;
SELECT columns_are('alexandrite', 'dashboard_status_counts', ARRAY['status', 'channel', 'orders'],
    'dashboard_status_counts has the contract columns');
SELECT col_type_is('alexandrite', 'dashboard_status_counts', 'orders', 'bigint', 'orders is a bigint');
SELECT col_type_is('alexandrite', 'dashboard_status_counts', 'status', 'alexandrite.order_status', 'status is an order_status');
SELECT columns_are('alexandrite', 'dashboard_operator_load', ARRAY['operator_id', 'open_orders', 'overdue_orders'],
    'dashboard_operator_load has the contract columns');
SELECT col_type_is('alexandrite', 'dashboard_operator_load', c, 'bigint', 'dashboard_operator_load.' || c || ' is a bigint')
  FROM unnest(ARRAY['open_orders', 'overdue_orders']) c;
SELECT columns_are('alexandrite', 'dashboard_sla', ARRAY['channel', 'open_orders', 'at_risk_orders', 'breached_orders'],
    'dashboard_sla has the contract columns');
SELECT col_type_is('alexandrite', 'dashboard_sla', c, 'bigint', 'dashboard_sla.' || c || ' is a bigint')
  FROM unnest(ARRAY['open_orders', 'at_risk_orders', 'breached_orders']) c;
SELECT has_column('alexandrite', 'dashboard_lag', c, 'dashboard_lag.' || c || ' exists')
  FROM unnest(ARRAY['dashboard', 'pending_changes', 'oldest_pending_age', 'last_fold_at', 'last_fold_ms',
                    'last_fold_rows', 'rebuild_needed']) c;
-- the views have their owner's rights (readers need SELECT on the view
-- only); every generated object belongs to the extension owner
SELECT is_empty($$SELECT c.relname FROM pg_class c
                   WHERE c.relnamespace = 'alexandrite'::regnamespace AND c.relkind = 'v'
                     AND c.relname LIKE 'dashboard%' AND 'security_invoker=true' = ANY (c.reloptions)$$,
                'no dashboard view runs with its reader''s rights');
SELECT is_empty($$SELECT c.relname FROM pg_class c, pg_namespace n
                   WHERE c.relnamespace = n.oid AND n.nspname = 'alexandrite' AND c.relkind IN ('r', 'v')
                     AND c.relname LIKE 'dashboard%' AND c.relowner <> n.nspowner$$,
                'every dashboard table and view belongs to the extension owner');

-- the registry: declarations only
SELECT has_table('alexandrite', 'dashboards', 'the dashboard registry exists');
SELECT columns_are('alexandrite', 'dashboards',
                   ARRAY['id', 'name', 'base_table', 'key_names', 'key_exprs', 'count_name', 'sum_names',
                         'sum_exprs', 'filter', 'due_expr', 'horizons', 'horizon_names', 'builtin'],
                   'the registry holds declarations: no SQL to run, no object to act on');
SELECT bag_has($$SELECT name FROM alexandrite.dashboards WHERE builtin$$,
              $$VALUES ('status_counts'), ('operator_load'), ('sla_due')$$,
              'the contract views are built on three registered dashboards');
SELECT has_trigger('alexandrite', t, g, t || ' has capture trigger ' || g)
  FROM (VALUES ('orders', 'alx_dashboard_flush'), ('orders', 'alx_dashboard_truncate'),
               ('meshes', 'alx_dashboard_capture'), ('meshes', 'alx_dashboard_flush'), ('meshes', 'alx_dashboard_truncate'),
               ('quotes', 'alx_dashboard_capture'), ('quotes', 'alx_dashboard_flush'), ('quotes', 'alx_dashboard_truncate')) v(t, g);
SELECT trigger_is('alexandrite', 'meshes', 'alx_dashboard_capture', 'alexandrite', 'dashboard_capture',
                  'the capture trigger calls alexandrite.dashboard_capture()');
-- orders: the order core's one C row trigger (orders_maintain) captures its
-- rows, so there is no second capture trigger to count them twice
SELECT is((SELECT string_agg(tgname || ':' || tgfoid::regproc::text, ',' ORDER BY tgname) FROM pg_trigger
            WHERE tgrelid = 'alexandrite.orders'::regclass AND (tgtype & 1) = 1 AND NOT tgisinternal),
          'orders_maintain_del:alexandrite.orders_maintain,orders_maintain_ins:alexandrite.orders_maintain,orders_maintain_upd:alexandrite.orders_maintain',
          'the rows of orders are captured by one row trigger, the order core''s');

-- functions: signatures and return types
SELECT function_returns('alexandrite', 'refresh_dashboards', ARRAY[]::text[], 'bigint', 'refresh_dashboards() returns bigint');
SELECT function_returns('alexandrite', 'schedule_refresh', ARRAY['text'], 'bigint', 'schedule_refresh(text) returns bigint');
SELECT function_returns('alexandrite', 'rebuild_dashboard', ARRAY['text', 'timestamp with time zone'], 'bigint', 'rebuild_dashboard(text, timestamptz) returns bigint');
SELECT function_returns('alexandrite', 'create_dashboard',
                        ARRAY['text', 'regclass', 'text[]', 'text', 'text[]', 'text', 'text[]', 'text[]', 'text', 'interval[]', 'text[]'],
                        'regclass', 'create_dashboard(...) returns the read view');
SELECT has_function('alexandrite', 'drop_dashboard', ARRAY['text'], 'drop_dashboard(text) exists');
SELECT has_function('alexandrite', 'reconcile_dashboards', ARRAY['text'], 'reconcile_dashboards(text) exists');
SELECT function_lang_is('alexandrite', 'refresh_dashboards', ARRAY[]::text[], 'c', 'refresh_dashboards is C');
SELECT function_lang_is('alexandrite', 'dashboard_capture', ARRAY[]::text[], 'c', 'the capture trigger is C');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p
                   WHERE p.pronamespace = 'alexandrite'::regnamespace AND p.proname LIKE '%dashboard%' AND p.proname NOT LIKE 'metrics\_%'
                     AND p.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'c')$$,
                'every dashboard function is C: one language for the mechanism');
SELECT volatility_is('alexandrite', 'dashboard_due_bucket', ARRAY['timestamp with time zone'], 'immutable', 'dashboard_due_bucket is immutable');

-- administrative functions: not for PUBLIC, not SECURITY DEFINER
SELECT function_privs_are('alexandrite', f, a, 'public', ARRAY[]::text[], 'PUBLIC cannot execute ' || f)
  FROM (VALUES ('refresh_dashboards', ARRAY[]::text[]),
               ('schedule_refresh', ARRAY['text']),
               ('rebuild_dashboard', ARRAY['text', 'timestamp with time zone']),
               ('drop_dashboard', ARRAY['text']),
               ('reconcile_dashboards', ARRAY['text']),
               ('create_dashboard', ARRAY['text', 'regclass', 'text[]', 'text', 'text[]', 'text', 'text[]', 'text[]', 'text', 'interval[]', 'text[]'])) x(f, a);
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_proc p
                       WHERE p.pronamespace = 'alexandrite'::regnamespace AND p.prosecdef
                         AND (p.proname LIKE '%dashboard%' OR p.proname IN ('schedule_refresh'))),
          'no dashboard function is SECURITY DEFINER');

-- errors and their SQLSTATEs
SELECT throws_ok($$SELECT alexandrite.rebuild_dashboard('no_such')$$, '42704', NULL, 'rebuild of an unknown dashboard: undefined_object');
SELECT throws_ok($$SELECT alexandrite.drop_dashboard('no_such')$$, '42704', NULL, 'drop of an unknown dashboard: undefined_object');
SELECT throws_ok($$SELECT alexandrite.drop_dashboard('status_counts')$$, '2BP01', NULL, 'a built-in dashboard cannot be dropped');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('status_counts', 'alexandrite.orders', ARRAY['status'])$$,
                 '42710', NULL, 'a duplicate name: duplicate_object');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('Bad', 'alexandrite.orders', ARRAY['status'])$$,
                 '22023', NULL, 'a bad name: invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('x1', 'alexandrite.orders', ARRAY['status'], filter => 'sla_due_at < now()')$$,
                 '42P17', NULL, 'a time-relative filter is refused');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('x2', 'alexandrite.orders', ARRAY['(SELECT 1)'])$$,
                 '0A000', NULL, 'a subquery is refused');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('x3', 'alexandrite.dashboard_sla', ARRAY['channel'])$$,
                 '42809', NULL, 'a view is not a base table');
SELECT throws_ok($$SELECT alexandrite.schedule_refresh('5 seconds')$$, '22023', NULL, 'sub-minute schedules are refused');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('x4', 'alexandrite.orders', ARRAY['channel'], due => 'sla_due_at', horizons => ARRAY['1 day'::interval])$$,
                 '22023', NULL, 'a horizon in days is refused (time-zone dependent)');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('x6', 'alexandrite.orders', ARRAY['channel'], due => 'sla_due_at', horizons => ARRAY['87601 hours'::interval])$$,
                 '22023', 'horizon "87601:00:00" is out of range', 'a horizon over ten years is refused (now() + horizon must stay a timestamp)');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('x7', 'alexandrite.orders', ARRAY['channel'], due => 'sla_due_at', horizons => ARRAY['-2561811567:30:00'::interval])$$,
                 '22023', NULL, 'and so is a negative one');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('x5', 'alexandrite.orders', ARRAY['channel'], due => 'sla_due_at')$$,
                 '22023', NULL, 'a due expression without horizons is refused');
SELECT throws_ok($$SELECT alexandrite.dashboard_capture()$$, '39P01', NULL, 'the capture function only runs as a trigger');
CREATE TABLE public.tap_dash (id int, label text, qty int, at timestamp);
CREATE FUNCTION public.tap_dash_f(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t1', 'public.tap_dash', ARRAY['id'], sums => ARRAY['label'])$$,
                 '42804', NULL, 'a sum over a text column is refused at creation, on an empty table');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t2', 'public.tap_dash', ARRAY['id'], filter => 'qty')$$,
                 '42804', NULL, 'a filter that is not boolean is refused');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t3', 'public.tap_dash', ARRAY['id'], due => 'at', horizons => ARRAY['0'::interval])$$,
                 '42P17', NULL, 'a due time that depends on the time zone is refused');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t4', 'public.tap_dash', ARRAY['public.tap_dash_f(qty)'])$$,
                 '42501', NULL, 'a function a user wrote is refused');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t5', 'public.tap_dash', ARRAY['ctid'])$$,
                 '0A000', NULL, 'a system column is refused');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t6', 'public.tap_dash', ARRAY['id) FROM pg_authid --'])$$,
                 '42601', NULL, 'text around the expression is refused');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t7', 'public.tap_dash', ARRAY['id; SELECT 1'])$$,
                 '42601', NULL, 'a second statement is refused');
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t8', 'public.tap_dash', ARRAY['label::json'])$$,
                 '42883', NULL, 'a key that cannot be grouped is refused');
SELECT is_empty($$SELECT name FROM alexandrite.dashboards WHERE name ~ '^t[0-9]$'$$, 'nothing of the refused dashboards was kept');
-- privileges: the caller must be able to read the table, and add triggers to it
CREATE ROLE tap_dash_admin;
GRANT USAGE ON SCHEMA alexandrite TO tap_dash_admin;
GRANT EXECUTE ON FUNCTION alexandrite.create_dashboard(text, regclass, text[], text, text[], text, text[], text[], text, interval[], text[]),
                          alexandrite.rebuild_dashboard(text, timestamptz), alexandrite.reconcile_dashboards(text)
   TO tap_dash_admin;
SET ROLE tap_dash_admin;
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t9', 'public.tap_dash', ARRAY['id'])$$,
                 '42501', NULL, 'no dashboard over a table the caller cannot read');
RESET ROLE;
GRANT SELECT ON public.tap_dash TO tap_dash_admin;
SET ROLE tap_dash_admin;
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t9', 'public.tap_dash', ARRAY['id'])$$,
                 '42501', NULL, 'no capture triggers on a table without TRIGGER privilege');
SELECT throws_ok($$SELECT alexandrite.rebuild_dashboard('status_counts')$$,
                 '42501', NULL, 'no rebuild of a dashboard over a table the caller cannot read');
RESET ROLE;
GRANT TRIGGER ON public.tap_dash TO tap_dash_admin;
SET ROLE tap_dash_admin;
SELECT lives_ok($$SELECT alexandrite.create_dashboard('t9', 'public.tap_dash', ARRAY['label'], sums => ARRAY['qty'])$$,
                'a caller who may read the table and add triggers to it declares a dashboard');
SELECT throws_ok($$SELECT * FROM alexandrite.dashboard_t9$$, '42501', NULL,
                 'and reads it only once granted');
-- its expressions are evaluated as the extension owner: they may call only
-- functions the creator may execute (metric_le_seconds is not granted)
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t11', 'public.tap_dash', ARRAY['alexandrite.metric_le_seconds(qty)'])$$,
                 '42501', NULL, 'no dashboard expression calling a function the creator may not execute');
SELECT throws_matching($$SELECT alexandrite.create_dashboard('t11', 'public.tap_dash', ARRAY['alexandrite.metric_le_seconds(qty)'])$$,
                       'permission denied for function .*metric_le_seconds', 'and the error names the function');
RESET ROLE;
SELECT is((SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'alexandrite.dashboard_t9'::regclass),
          (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'alexandrite'),
          'its objects belong to the extension owner, not to the caller');
-- row-level security that applies to the caller: a dashboard counts every
-- row, also those the policies hide, so nothing over such a table
ALTER TABLE public.tap_dash ENABLE ROW LEVEL SECURITY;
CREATE POLICY tap_none ON public.tap_dash USING (false);
SET ROLE tap_dash_admin;
SELECT throws_ok($$SELECT alexandrite.create_dashboard('t10', 'public.tap_dash', ARRAY['label'])$$,
                 '42501', NULL, 'no dashboard over a table whose row-level security applies to the caller');
SELECT throws_ok($$SELECT alexandrite.rebuild_dashboard('t9')$$,
                 '42501', NULL, 'no rebuild of it by such a caller');
SELECT throws_ok($$SELECT * FROM alexandrite.reconcile_dashboards('t9')$$,
                 '42501', NULL, 'no reconcile of it by such a caller');
RESET ROLE;
SELECT lives_ok($$SELECT alexandrite.rebuild_dashboard('t9')$$,
                'the table''s owner, whom the policies do not restrict, rebuilds it');
DROP POLICY tap_none ON public.tap_dash;
ALTER TABLE public.tap_dash DISABLE ROW LEVEL SECURITY;
INSERT INTO public.tap_dash VALUES (1, 'a', 2, now()), (2, 'a', 3, now());
GRANT SELECT ON alexandrite.dashboard_t9 TO tap_dash_admin;
SET ROLE tap_dash_admin;
SELECT results_eq($$SELECT label, count, sum_qty FROM alexandrite.dashboard_t9$$,
                  $$VALUES ('a'::text, 2::bigint, 5::numeric)$$, 'SELECT on the view is all a reader needs');
RESET ROLE;
-- a group key too long for the summary's unique index is refused by the
-- write that carries it (54000), instead of breaking every later fold
SELECT throws_ok($$INSERT INTO public.tap_dash SELECT 3, string_agg(md5(i::text), ''), 1, now() FROM generate_series(1, 32768) i$$,
                 '54000', 'group key of dashboard "t9" is too long: 1048576 bytes, at most 2000',
                 'a write with a 1 MiB group key is refused with 54000');
SELECT throws_ok($$INSERT INTO public.tap_dash VALUES (3, repeat('k', 2001), 1, now())$$,
                 '54000', 'group key of dashboard "t9" is too long: 2001 bytes, at most 2000',
                 'one byte over the limit is refused');
SELECT lives_ok($$INSERT INTO public.tap_dash VALUES (4, repeat('k', 2000), 1, now())$$,
                'a 2000-byte group key is accepted');
SELECT cmp_ok(alexandrite.refresh_dashboards(), '>', 0::bigint, 'and the fold takes it');
SELECT set_eq($$SELECT label, count, sum_qty FROM alexandrite.dashboard_t9$$,
              $$SELECT label, count(*), sum(qty)::numeric FROM public.tap_dash GROUP BY label$$,
              'the dashboard stays exact');

-- with pg_cron in this database: one job, upserted by name
SELECT is(alexandrite.schedule_refresh(), alexandrite.schedule_refresh('*/2 * * * *'),
          'schedule_refresh() upserts one pg_cron job by name');
SELECT is((SELECT schedule FROM cron.job WHERE jobname = 'alexandrite-refresh-dashboards'), '*/2 * * * *',
          'the job has the new schedule');

-- behaviour in one transaction: exact before and after a fold
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at)
VALUES ('tap-dash-1', 'shop', 'c', now() - interval '5 minutes'), ('tap-dash-2', 'crm', 'c', now() + interval '23 hours');
SELECT set_eq($$SELECT channel, open_orders, at_risk_orders, breached_orders FROM alexandrite.dashboard_sla$$,
              $$SELECT channel, count(*) AS o, count(*) FILTER (WHERE sla_due_at >= now() AND sla_due_at < now() + interval '24 hours') AS r,
                       count(*) FILTER (WHERE sla_due_at < now()) AS b
                  FROM alexandrite.orders WHERE alexandrite.is_open(status) GROUP BY channel$$,
              'dashboard_sla equals the GROUP BY over orders before a fold');
SELECT cmp_ok(alexandrite.refresh_dashboards(), '>', 0::bigint, 'the fold folds the pending changes');
SELECT set_eq($$SELECT status, channel, orders FROM alexandrite.dashboard_status_counts$$,
              $$SELECT status, channel, count(*) FROM alexandrite.orders GROUP BY 1, 2$$,
              'dashboard_status_counts equals the GROUP BY over orders after a fold');

SELECT * FROM finish();
ROLLBACK;
