-- Catalog contracts of pricing: objects, signatures, volatility, who may
-- change the price list, who may quote, SQLSTATEs, dump registration.
BEGIN;
SELECT plan(56);

-- objects
SELECT has_view('alexandrite', 'price_rules', 'view alexandrite.price_rules exists');
SELECT has_table('alexandrite', 'price_list_versions', 'table alexandrite.price_list_versions exists');
SELECT has_table('alexandrite', 'quotes', 'table alexandrite.quotes exists');
SELECT has_type('alexandrite', 'quote', 'type alexandrite.quote exists');
SELECT is(
    (SELECT array_agg(a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
       FROM pg_attribute a WHERE a.attrelid = 'alexandrite.quote'::regclass AND a.attnum > 0),
    ARRAY['total numeric', 'currency text', 'metal_weight_g numeric', 'metal_cost numeric',
          'labour_cost numeric', 'finishing_cost numeric', 'price_list_version bigint', 'breakdown jsonb'],
    'quote has the contract fields, in order, with their types');
SELECT has_column('alexandrite', 'price_rules', c, 'price_rules.' || c || ' exists')
  FROM unnest(ARRAY['version', 'currency', 'labour_base', 'complexity_tiers', 'finishing_per_cm2',
                    'minimum_price', 'margin_pct', 'rounding_increment', 'rounding_mode']) AS c;
SELECT has_column('alexandrite', 'quotes', c, 'quotes.' || c || ' exists')
  FROM unnest(ARRAY['order_id', 'mesh_id', 'mesh_sha256', 'material', 'options', 'price_list_version',
                    'total', 'created_at']) AS c;

-- signatures and properties
SELECT function_returns('alexandrite', 'price_quote', ARRAY['bigint', 'text', 'jsonb'], 'alexandrite.quote',
    'price_quote(bigint, text, jsonb) returns alexandrite.quote');
SELECT function_lang_is('alexandrite', 'price_quote', ARRAY['bigint', 'text', 'jsonb'], 'c',
    'price_quote is written in C');
SELECT volatility_is('alexandrite', 'price_quote', ARRAY['bigint', 'text', 'jsonb'], 'stable',
    'price_quote is STABLE');
SELECT is((SELECT pronargdefaults FROM pg_proc WHERE oid = 'alexandrite.price_quote(bigint,text,jsonb)'::regprocedure),
    1::int2, 'price_quote options default to {}');
SELECT function_returns('alexandrite', 'price_order', ARRAY['bigint', 'jsonb'], 'alexandrite.quote',
    'price_order(bigint, jsonb) returns alexandrite.quote');
SELECT volatility_is('alexandrite', 'price_order', ARRAY['bigint', 'jsonb'], 'volatile',
    'price_order is VOLATILE');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'alexandrite'::regnamespace AND p.prosecdef
       AND p.proname IN ('price_quote', 'price_order', 'price_rules_update', 'materials_changed',
                         'price_list_head', 'price_list_lock', 'price_list_invalidate')$$,
    'no pricing function is SECURITY DEFINER');
SELECT function_privs_are('alexandrite', 'price_list_invalidate', ARRAY[]::text[], 'public', ARRAY[]::text[],
    'PUBLIC cannot call the cache invalidation trigger function');

-- PUBLIC has no rights on the price list or the quotes
SELECT table_privs_are('alexandrite', 'price_rules', 'public', ARRAY[]::text[], 'PUBLIC has no rights on price_rules');
SELECT table_privs_are('alexandrite', 'price_list_versions', 'public', ARRAY[]::text[],
    'PUBLIC has no rights on price_list_versions');
SELECT table_privs_are('alexandrite', 'quotes', 'public', ARRAY[]::text[], 'PUBLIC has no rights on quotes');

-- pg_dump keeps the user data
SELECT ok((SELECT 'alexandrite.' || t = ANY (e.extconfig::regclass[]::text[]) FROM pg_extension e
            WHERE e.extname = 'alexandrite'), t || ' is a configuration table of the extension')
  FROM unnest(ARRAY['price_list_versions', 'price_list_version_seq', 'quotes', 'quotes_id_seq']) AS t;

-- a mesh to quote
INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
                                size_x_mm, size_y_mm, size_z_mm, shells, watertight,
                                boundary_edges, nonmanifold_edges, degenerate_triangles)
VALUES (940001, sha256('pgtap cube'), 'cube.stl', 'stl', 12, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 0);

-- SQLSTATEs
SELECT throws_ok($$SELECT alexandrite.price_quote(940001, 'unobtainium')$$, '22023', NULL,
    'an unknown material is invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.price_quote(-940001, 'ag925')$$, 'P0002', NULL,
    'a missing mesh is no_data_found');
SELECT throws_ok($$SELECT alexandrite.price_quote(NULL, 'ag925')$$, '22004', NULL,
    'a null mesh id is null_value_not_allowed');
SELECT throws_ok($$SELECT alexandrite.price_quote(940001, 'ag925', '{"bogus": 1}')$$, '22023', NULL,
    'an unknown option is invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.price_order(-1)$$, 'P0002', NULL, 'price_order of a missing order is no_data_found');
SELECT isnt((alexandrite.price_quote(940001, 'ag925')).total, NULL, 'a quote has a total');

-- Who may change the price list: nobody but the owner, unless the DBA grants
-- the documented rights.
CREATE ROLE alx_pgtap_clerk;
CREATE ROLE alx_pgtap_pricing;
GRANT USAGE ON SCHEMA alexandrite TO alx_pgtap_clerk, alx_pgtap_pricing;
GRANT SELECT ON alexandrite.price_rules, alexandrite.materials TO alx_pgtap_clerk;
GRANT EXECUTE ON FUNCTION alexandrite.price_quote TO alx_pgtap_clerk, alx_pgtap_pricing;
-- the documented grant set of a price list manager (docs/pricing.md)
GRANT SELECT, UPDATE ON alexandrite.price_rules TO alx_pgtap_pricing;
GRANT SELECT, INSERT ON alexandrite.price_list_versions TO alx_pgtap_pricing;
GRANT USAGE ON SEQUENCE alexandrite.price_list_version_seq TO alx_pgtap_pricing;
GRANT EXECUTE ON FUNCTION alexandrite.check_complexity_tiers, alexandrite.price_list_lock,
    alexandrite.price_list_head, alexandrite.current_actor TO alx_pgtap_pricing;
GRANT SELECT, UPDATE ON alexandrite.materials TO alx_pgtap_pricing;
GRANT SELECT ON alexandrite.meshes TO alx_pgtap_pricing;

SELECT version AS v0 FROM alexandrite.price_rules \gset
SET ROLE alx_pgtap_clerk;
SELECT throws_ok($$UPDATE alexandrite.price_rules SET margin_pct = 99$$, '42501', NULL,
    'a role without UPDATE on price_rules cannot change the price list');
SELECT throws_ok($$UPDATE alexandrite.materials SET price_per_gram = 0 WHERE code = 'ag925'$$, '42501', NULL,
    'nor the metal prices');
SELECT throws_ok($$INSERT INTO alexandrite.price_list_versions SELECT * FROM alexandrite.price_list_versions LIMIT 1$$,
    '42501', NULL, 'nor write a version directly');
-- quoting reads meshes and the price list as the caller
SELECT throws_ok($$SELECT alexandrite.price_quote(940001, 'ag925')$$, '42501', NULL,
    'price_quote needs SELECT on the meshes and the price list');
RESET ROLE;

SET ROLE alx_pgtap_pricing;
SELECT lives_ok($$UPDATE alexandrite.price_rules SET margin_pct = 35, change_note = 'pgtap'$$,
    'the price list manager can change the price list');
SELECT is((SELECT changed_by FROM alexandrite.price_rules), 'alx_pgtap_pricing', 'the version records who made it');
SELECT lives_ok($$UPDATE alexandrite.materials SET price_per_gram = 1.30 WHERE code = 'ag925'$$,
    'the price list manager can change metal prices');
-- 10.982 g * 1.30 = 14.28; + 25.00 + 4.80 = 44.08; margin 35 % 15.43; 59.51 -> 59.50
SELECT is((alexandrite.price_quote(940001, 'ag925')).total, 59.50,
    'with SELECT on meshes and the price list the manager can quote, with the new figures');
RESET ROLE;
SELECT is((SELECT version FROM alexandrite.price_rules) - :v0, 1::bigint,
    'the price change made a version (metal prices are not versioned)');
SELECT is((SELECT count(*) FROM alexandrite.price_list_versions WHERE version > :v0), 1::bigint,
    'the version is in the history');
SELECT is((alexandrite.price_quote(940001, 'ag925')).price_list_version, (SELECT version FROM alexandrite.price_rules),
    'quotes use the newest version');

-- price_quote reads the mesh directly: with row-level security on meshes
-- it refuses rather than bypass the policies
ALTER TABLE alexandrite.meshes ENABLE ROW LEVEL SECURITY;
CREATE POLICY pgtap_none ON alexandrite.meshes USING (false);
SET ROLE alx_pgtap_pricing;
SELECT throws_ok($$SELECT alexandrite.price_quote(940001, 'ag925')$$, '0A000', NULL,
    'price_quote refuses to bypass row-level security on meshes');
RESET ROLE;
SELECT is((alexandrite.price_quote(940001, 'ag925')).total, 59.50,
    'a role that bypasses row-level security (the owner) still quotes, the same total');

SELECT * FROM finish();
ROLLBACK;
