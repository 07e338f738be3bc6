-- Catalog contracts of the order core: objects, signatures, privileges,
-- SQLSTATEs.
BEGIN;
SELECT plan(64);

SELECT has_schema('alexandrite', 'schema alexandrite exists');
SELECT enum_has_labels('alexandrite', 'order_status',
    ARRAY['new', 'priced', 'assigned', 'in_production', 'quality_check', 'shipped', 'cancelled'],
    'order_status has the contract labels in order');

SELECT has_table('alexandrite', t, 'table alexandrite.' || t || ' exists')
  FROM unnest(ARRAY['orders', 'order_events', 'operators', 'materials', 'sla_policies',
                    'meshes', 'status_transitions', 'sla_breaches']) AS t;

SELECT columns_are('alexandrite', 'operators', ARRAY['id', 'name', 'capacity', 'active', 'created_at'],
    'operators has the contract columns');
SELECT has_column('alexandrite', 'orders', c, 'orders.' || c || ' exists')
  FROM unnest(ARRAY['id', 'external_ref', 'channel', 'customer_id', 'mesh_id', 'material', 'status',
                    'operator_id', 'price', 'created_at', 'sla_due_at', 'updated_at']) AS c;
SELECT col_type_is('alexandrite', 'orders', 'status', 'alexandrite.order_status', 'orders.status is an order_status');
SELECT col_is_unique('alexandrite', 'orders', 'external_ref', 'external_ref is unique');
SELECT has_column('alexandrite', 'order_events', c, 'order_events.' || c || ' exists')
  FROM unnest(ARRAY['order_id', 'from_status', 'to_status', 'at', 'actor']) AS c;

SELECT function_returns('alexandrite', 'create_order', ARRAY['text', 'text', 'text', 'bigint', 'text', 'jsonb'],
    'bigint', 'create_order(...) returns bigint');
SELECT function_returns('alexandrite', 'set_status', ARRAY['bigint', 'alexandrite.order_status', 'text'],
    'void', 'set_status(...) returns void');
SELECT has_function('alexandrite', 'order_timeline', ARRAY['bigint'], 'order_timeline(bigint) exists');
SELECT has_function('alexandrite', 'stuck_orders', ARRAY['interval'], 'stuck_orders(interval) exists');

-- every member of the extension lives in schema alexandrite (an unqualified
-- CREATE in the script would land in pg_catalog)
SELECT is_empty($$
    SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
      FROM pg_depend d
     WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'alexandrite')
       AND pg_describe_object(d.classid, d.objid, d.objsubid) !~ '(^| )alexandrite\.'
       AND d.classid <> 'pg_namespace'::regclass
$$, 'every extension member is in schema alexandrite');

SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'alexandrite'::regnamespace AND p.prosecdef
       AND p.oid <> 'alexandrite.metric_samples(text[])'::regprocedure
$$, 'no function but the metrics reader is SECURITY DEFINER');

SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'alexandrite'::regnamespace AND p.prolang = (SELECT l.oid FROM pg_language l WHERE l.lanname = 'plpgsql')
       AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')
$$, 'every PL/pgSQL function pins its search_path') ;

SELECT ok(NOT has_schema_privilege('public', 'alexandrite', 'USAGE'),
    'PUBLIC has no USAGE on schema alexandrite until granted');
SELECT ok(NOT has_table_privilege('public', 'alexandrite.orders', 'INSERT'),
    'PUBLIC cannot write orders');

SELECT is((SELECT count(*)::int FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'alexandrite'
             AND c IN ('alexandrite.orders'::regclass, 'alexandrite.order_events'::regclass,
                       'alexandrite.operators'::regclass, 'alexandrite.materials'::regclass,
                       'alexandrite.sla_policies'::regclass, 'alexandrite.meshes'::regclass,
                       'alexandrite.sla_breaches'::regclass)),
    7, 'user-data tables are registered with pg_extension_config_dump');

-- the writers: C entry points, SECURITY INVOKER, nothing for PUBLIC
SELECT isnt_definer('alexandrite', f, a, f || ' is SECURITY INVOKER')
  FROM (VALUES ('create_order', ARRAY['text', 'text', 'text', 'bigint', 'text', 'jsonb']),
               ('set_status', ARRAY['bigint', 'alexandrite.order_status', 'text']),
               ('assign_order', ARRAY['bigint', 'text', 'text']),
               ('set_order_model', ARRAY['bigint', 'bigint', 'text'])) v(f, a);
SELECT function_privs_are('alexandrite', f, a, 'public', ARRAY[]::text[], 'PUBLIC cannot execute ' || f)
  FROM (VALUES ('create_order', ARRAY['text', 'text', 'text', 'bigint', 'text', 'jsonb']),
               ('set_status', ARRAY['bigint', 'alexandrite.order_status', 'text']),
               ('assign_order', ARRAY['bigint', 'text', 'text']),
               ('set_order_model', ARRAY['bigint', 'bigint', 'text'])) v(f, a);
SELECT has_column('alexandrite', 'orders', 'event_seq', 'orders.event_seq holds the order''s outbox sequence');
SELECT has_trigger('alexandrite', 'status_transitions', 'status_transitions_invalidate',
    'a change of the state machine invalidates the per-backend cache');

-- SQLSTATEs
SELECT throws_ok($$SELECT alexandrite.create_order('T-1', 'telex', 'c', NULL, NULL)$$, '22023', NULL,
    'unknown channel: invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.create_order('T-1', 'shop', 'c', NULL, 'wood')$$, '22023', NULL,
    'unknown material: invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.create_order('T-1', 'shop', 'c', -1, NULL)$$, '22023', NULL,
    'unknown mesh: invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.create_order(repeat('x', 201), 'shop', 'c', NULL, NULL)$$, '22023',
    'external_ref must be at most 200 characters', 'an external_ref over 200 characters: invalid_parameter_value');
-- characters, not bytes (in a UTF8 database 'é' is two bytes; in another it is what the encoding says)
SELECT lives_ok(format($$SELECT alexandrite.create_order(%L, 'shop', 'c', NULL, NULL)$$,
                       repeat(CASE WHEN getdatabaseencoding() = 'UTF8' THEN 'é' ELSE 'x' END, 200)),
    'an external_ref of 200 characters is accepted');
SELECT throws_ok($$SELECT alexandrite.create_order('T-long-c', 'shop', repeat('c', 201), NULL, NULL)$$, '22023',
    'customer_id must be at most 200 characters', 'a customer_id over 200 characters: invalid_parameter_value (not 54000 from an index)');
SELECT throws_ok($$SELECT alexandrite.create_order('T-huge-c', 'shop', repeat('c', 3000), NULL, NULL)$$, '22023',
    'customer_id must be at most 200 characters', 'a 3000-character customer_id too');
SELECT lives_ok($$SELECT alexandrite.create_order('T-200-c', 'shop', repeat('c', 200), NULL, NULL)$$,
    'a customer_id of 200 characters is accepted');
SELECT lives_ok($$SELECT alexandrite.create_order('T-1', 'shop', 'c', NULL, NULL)$$, 'a valid order is created');
SELECT results_eq($$SELECT channel, customer_id, status::text FROM alexandrite.orders WHERE external_ref = 'T-1'$$,
    $$VALUES ('shop', 'c', 'new')$$, 'it is stored as new, with its channel and customer');
SELECT throws_ok($$SELECT alexandrite.create_order('T-1', 'crm', 'c', NULL, NULL)$$, '23505', NULL,
    'a conflicting retry: unique_violation');
SELECT throws_ok($$SELECT alexandrite.set_status((SELECT id FROM alexandrite.orders WHERE external_ref = 'T-1'), 'shipped')$$,
    '22023', NULL, 'an invalid transition: invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.set_status(-1, 'priced')$$, 'P0002', NULL,
    'a missing order: no_data_found');
SELECT throws_ok($$SELECT * FROM alexandrite.order_timeline(-1)$$, 'P0002', NULL,
    'timeline of a missing order: no_data_found');

SELECT * FROM finish();
ROLLBACK;
