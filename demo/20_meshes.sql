-- Customers upload 3D models: each is analysed once by the isolated helper and priced from its metadata
\set QUIET on
-- Three models, written here in SQL so that the demo needs no files:
-- a ring band (OBJ, mm), a faceted torus ring shank (ASCII PLY, cm) and a
-- pendant made of two overlapping bodies (ASCII STL, mm).
CREATE TEMP TABLE demo_models AS
WITH band AS (        -- annular prism: 96 segments, R = 9.5, r = 8.5, h = 3 mm
    SELECT 96 AS n, 9.5 AS r1, 8.5 AS r2, 3.0 AS h
), band_obj AS (
    SELECT string_agg(l, E'\n' ORDER BY o) || E'\n' AS txt FROM (
        SELECT 4 * k + j AS o, format('v %s %s %s',
                   round(((CASE WHEN j < 2 THEN r1 ELSE r2 END) * cos(2 * pi() * k / n))::numeric, 6),
                   round(((CASE WHEN j < 2 THEN r1 ELSE r2 END) * sin(2 * pi() * k / n))::numeric, 6),
                   CASE WHEN j % 2 = 0 THEN 0 ELSE h END) AS l
          FROM band, generate_series(0, 95) k, generate_series(0, 3) j
        UNION ALL
        SELECT 1000000 + 8 * k + q, format('f %s %s %s', a + 1, b + 1, c + 1)
          FROM band, generate_series(0, 95) k,
               LATERAL (SELECT 4 * k AS ob, 4 * k + 1 AS ot, 4 * k + 2 AS ib, 4 * k + 3 AS it,
                               4 * ((k + 1) % 96) AS ob2, 4 * ((k + 1) % 96) + 1 AS ot2,
                               4 * ((k + 1) % 96) + 2 AS ib2, 4 * ((k + 1) % 96) + 3 AS it2) v,
               LATERAL (VALUES (0, ob, ob2, ot2), (1, ob, ot2, ot), (2, ib, it2, ib2), (3, ib, it, it2),
                               (4, ot, ot2, it2), (5, ot, it2, it), (6, ob, ib2, ob2), (7, ob, ib, ib2)) t(q, a, b, c)
    ) s
), torus AS (         -- 48 x 16 facets, R = 1.0 cm, r = 0.12 cm
    SELECT 48 AS nu, 16 AS nv, 1.0 AS rr, 0.12 AS r
), torus_ply AS (
    SELECT format(E'ply\nformat ascii 1.0\nelement vertex %s\nproperty float x\nproperty float y\nproperty float z\nelement face %s\nproperty list uchar int vertex_indices\nend_header\n',
                  nu * nv, 2 * nu * nv)
           || (SELECT string_agg(format('%s %s %s', round(((rr + r * cos(2 * pi() * j / nv)) * cos(2 * pi() * i / nu))::numeric, 6),
                                                 round(((rr + r * cos(2 * pi() * j / nv)) * sin(2 * pi() * i / nu))::numeric, 6),
                                                 round((r * sin(2 * pi() * j / nv))::numeric, 6)), E'\n' ORDER BY i, j)
                 FROM generate_series(0, nu - 1) i, generate_series(0, nv - 1) j) || E'\n'
           || (SELECT string_agg(format('3 %s %s %s', a, b, c), E'\n' ORDER BY i, j, q)
                 FROM generate_series(0, nu - 1) i, generate_series(0, nv - 1) j,
                      LATERAL (SELECT i * nv + j AS p, ((i + 1) % nu) * nv + j AS p2,
                                      ((i + 1) % nu) * nv + (j + 1) % nv AS p3, i * nv + (j + 1) % nv AS p4) v,
                      LATERAL (VALUES (0, p, p2, p3), (1, p, p3, p4)) t(q, a, b, c)) || E'\n' AS txt
      FROM torus
), pendant AS (       -- two 8 mm cubes, the second shifted by 4 mm: they overlap
    SELECT E'solid pendant\n' || string_agg(format(E'facet normal 0 0 0\n outer loop\n  vertex %s %s %s\n  vertex %s %s %s\n  vertex %s %s %s\n endloop\nendfacet',
                  v[a][1] + d, v[a][2] + d, v[a][3] + d, v[b][1] + d, v[b][2] + d, v[b][3] + d,
                  v[c][1] + d, v[c][2] + d, v[c][3] + d), E'\n') || E'\nendsolid pendant\n' AS txt
      FROM (SELECT ARRAY[[0,0,0],[8,0,0],[8,8,0],[0,8,0],[0,0,8],[8,0,8],[8,8,8],[0,8,8]] AS v) cube,
           (VALUES (0), (4)) s(d),
           (VALUES (1,3,2),(1,4,3),(5,6,7),(5,7,8),(1,2,6),(1,6,5),(2,3,7),(2,7,6),(3,4,8),(3,8,7),(4,1,5),(4,5,8)) f(a, b, c)
)
SELECT 'band.obj' AS filename, 'mm' AS unit, convert_to(txt, 'UTF8') AS data FROM band_obj
UNION ALL SELECT 'shank.ply', 'cm', convert_to(txt, 'UTF8') FROM torus_ply
UNION ALL SELECT 'pendant.stl', 'mm', convert_to(txt, 'UTF8') FROM pendant;

-- ingest: parsed once in the helper, stored in alexandrite.meshes
CREATE TEMP TABLE demo_ids AS
SELECT filename, alexandrite.mesh_ingest(data, filename, unit) AS mesh_id FROM demo_models;
-- a re-upload of the same bytes is the same mesh, without parsing
SELECT alexandrite.mesh_ingest(data, 'band-copy.obj') = (SELECT mesh_id FROM demo_ids WHERE filename = 'band.obj')
       AS reupload_is_same_mesh
  FROM demo_models WHERE filename = 'band.obj';

\set QUIET off
\echo
\echo 'Analysed models (millimetres):'
SELECT m.id, m.filename, m.format, m.unit, m.triangles, m.vertices,
       round(m.volume_mm3::numeric, 2) AS volume_mm3, round(m.area_mm2::numeric, 1) AS area_mm2,
       round(m.size_x_mm::numeric, 2) || ' x ' || round(m.size_y_mm::numeric, 2) || ' x ' || round(m.size_z_mm::numeric, 2) AS bbox_mm,
       m.shells, m.watertight, m.genus, m.warnings, round(m.analysis_ms::numeric, 1) AS ms
  FROM alexandrite.meshes m JOIN demo_ids d ON d.mesh_id = m.id ORDER BY m.id;

\echo 'The same analysis without storing anything, and the helper''s verdict on a broken upload:'
SELECT (s).format, (s).triangles, round((s).volume_mm3::numeric, 3) AS volume_mm3, (s).watertight
  FROM demo_models, LATERAL (SELECT alexandrite.mesh_analyze(data) AS s) a WHERE filename = 'band.obj';
DO $$
BEGIN
    PERFORM alexandrite.mesh_analyze('solid broken'::bytea || '\x00ff'::bytea, 'stl');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'broken upload: SQLSTATE %: %', SQLSTATE, SQLERRM;
END $$;

-- quotes from the stored metadata, when pricing is installed
SELECT EXISTS (SELECT FROM pg_proc WHERE proname = 'price_quote'
               AND pronamespace = 'alexandrite'::regnamespace) AS have_pricing \gset
\if :have_pricing
\echo 'Quotes in 18k yellow gold and sterling silver:'
SELECT d.filename, mat.code AS material, (q).metal_weight_g, (q).total, (q).currency
  FROM demo_ids d CROSS JOIN (VALUES ('au750_yellow'), ('ag925')) mat(code),
       LATERAL (SELECT alexandrite.price_quote(d.mesh_id, mat.code) AS q) x
 ORDER BY d.filename, mat.code;
\endif
