-- Catalog contracts of the mesh analysis: the composite type, the
-- functions' signatures, volatility, privileges and SQLSTATEs.
BEGIN;
SELECT plan(29);

SELECT has_type('alexandrite', 'mesh_stats', 'type alexandrite.mesh_stats exists');
SELECT is(
    (SELECT array_agg(attname::text ORDER BY attnum)
       FROM pg_attribute WHERE attrelid = 'alexandrite.mesh_stats'::regclass AND attnum > 0
        AND attnum <= 13),
    ARRAY['triangles', 'vertices', 'volume_mm3', 'area_mm2', 'size_x_mm', 'size_y_mm', 'size_z_mm',
          'shells', 'watertight', 'boundary_edges', 'nonmanifold_edges', 'degenerate_triangles', 'sha256'],
    'mesh_stats starts with the contract columns in order');
SELECT is(
    (SELECT array_agg(format_type(atttypid, atttypmod) ORDER BY attnum)
       FROM pg_attribute WHERE attrelid = 'alexandrite.mesh_stats'::regclass AND attnum > 0
        AND attnum <= 13),
    ARRAY['bigint', 'bigint', 'double precision', 'double precision', 'double precision',
          'double precision', 'double precision', 'integer', 'boolean', 'bigint', 'bigint',
          'bigint', 'bytea'],
    'the contract columns of mesh_stats have the contract types');

SELECT has_function('alexandrite', 'mesh_analyze', ARRAY['bytea', 'text', 'text'], 'mesh_analyze(bytea, text, text) exists');
SELECT has_function('alexandrite', 'mesh_ingest', ARRAY['bytea', 'text', 'text'], 'mesh_ingest(bytea, text, text) exists');
SELECT function_returns('alexandrite', 'mesh_analyze', ARRAY['bytea', 'text', 'text'], 'alexandrite.mesh_stats', 'mesh_analyze returns mesh_stats');
SELECT function_returns('alexandrite', 'mesh_ingest', ARRAY['bytea', 'text', 'text'], 'bigint', 'mesh_ingest returns bigint');
SELECT volatility_is('alexandrite', 'mesh_analyze', ARRAY['bytea', 'text', 'text'], 'volatile', 'mesh_analyze is volatile');
SELECT volatility_is('alexandrite', 'mesh_ingest', ARRAY['bytea', 'text', 'text'], 'volatile', 'mesh_ingest is volatile');
SELECT isnt_definer('alexandrite', 'mesh_analyze', ARRAY['bytea', 'text', 'text'], 'mesh_analyze is not SECURITY DEFINER');
SELECT isnt_definer('alexandrite', 'mesh_ingest', ARRAY['bytea', 'text', 'text'], 'mesh_ingest is not SECURITY DEFINER');
SELECT is((SELECT proparallel FROM pg_proc WHERE oid = 'alexandrite.mesh_ingest(bytea, text, text)'::regprocedure),
          'u'::"char", 'mesh_ingest is PARALLEL UNSAFE (it writes)');
SELECT function_privs_are('alexandrite', 'mesh_analyze', ARRAY['bytea', 'text', 'text'], 'public', ARRAY[]::text[],
    'PUBLIC cannot spawn the helper through mesh_analyze');
SELECT function_privs_are('alexandrite', 'mesh_ingest', ARRAY['bytea', 'text', 'text'], 'public', ARRAY[]::text[],
    'PUBLIC cannot spawn the helper through mesh_ingest');
SELECT ok(obj_description('alexandrite.mesh_analyze(bytea, text, text)'::regprocedure, 'pg_proc') IS NOT NULL,
    'mesh_analyze has a comment');
SELECT ok(obj_description('alexandrite.mesh_ingest(bytea, text, text)'::regprocedure, 'pg_proc') IS NOT NULL,
    'mesh_ingest has a comment');

SELECT has_column('alexandrite', 'meshes', c, 'meshes.' || c || ' exists')
  FROM unnest(ARRAY['warnings', 'analyzer_version', 'unit_scale_mm', 'genus', 'size_bytes']) AS c;

SELECT throws_ok($$SELECT alexandrite.mesh_analyze(''::bytea)$$, '22P04', NULL, 'an empty file raises 22P04');
SELECT throws_ok($$SELECT alexandrite.mesh_analyze('\x00010203'::bytea)$$, '22P04', NULL, 'garbage raises 22P04');
SELECT throws_ok($$SELECT alexandrite.mesh_analyze('solid x'::bytea, 'fbx')$$, '22023', NULL, 'an unsupported format raises 22023');
SELECT throws_ok($$SELECT alexandrite.mesh_analyze('solid x'::bytea, 'obj')$$, '22023', NULL, 'a hint that contradicts the bytes raises 22023');
SELECT throws_ok($$SELECT alexandrite.mesh_analyze('solid x'::bytea, 'stl', 'ft')$$, '22023', NULL, 'an unsupported unit raises 22023');
SELECT throws_ok($$SELECT alexandrite.mesh_ingest('\x00'::bytea, 'x.stl', NULL)$$, '22023', NULL, 'a NULL unit raises 22023');
SELECT is((alexandrite.mesh_analyze(E'v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n'::bytea)).triangles, 1::bigint,
    'a one-triangle OBJ analyses');

SET LOCAL alexandrite.mesh_max_bytes = 1024;
SELECT throws_ok($$SELECT alexandrite.mesh_analyze(pg_catalog.repeat(E'v 0 0 0\n', 200)::bytea)$$,
    '54000', NULL, 'a file over alexandrite.mesh_max_bytes raises 54000');

SELECT * FROM finish();
ROLLBACK;
