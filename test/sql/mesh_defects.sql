-- mesh_defects: topology defects, shells, orientation, transforms and units
\set VERBOSITY terse
CREATE TEMP TABLE dfx (name text, hint text, data bytea);
\set b `python3 test/gen/genmesh.py open stl --b64`
INSERT INTO dfx VALUES ('open', 'stl', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py twoshells stl --b64`
INSERT INTO dfx VALUES ('twoshells', 'stl', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py overlap stl --b64`
INSERT INTO dfx VALUES ('overlap', 'stl', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py void obj --b64`
INSERT INTO dfx VALUES ('void', 'obj', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py nested ply --b64`
INSERT INTO dfx VALUES ('nested', 'ply', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py inverted stl --b64`
INSERT INTO dfx VALUES ('inverted', 'stl', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py inverted glb --b64`
INSERT INTO dfx VALUES ('inverted.glb', 'glb', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py degenerate stl --b64`
INSERT INTO dfx VALUES ('degenerate', 'stl', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py nonmanifold stl --b64`
INSERT INTO dfx VALUES ('nonmanifold', 'stl', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py tinycube stl --b64`
INSERT INTO dfx VALUES ('tinycube', 'stl', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py bigcube stl --b64`
INSERT INTO dfx VALUES ('bigcube', 'stl', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py far stl --b64`
INSERT INTO dfx VALUES ('far', 'stl', decode(:'b', 'base64'));

SELECT name, (s).triangles, (s).vertices, round((s).volume_mm3::numeric, 6) AS volume,
       round((s).area_mm2::numeric, 6) AS area, (s).shells, (s).watertight,
       (s).boundary_edges AS boundary, (s).nonmanifold_edges AS nonmanifold,
       (s).inconsistent_edges AS inconsistent, (s).faces_reoriented AS reoriented,
       (s).degenerate_triangles AS degenerate, (s).genus,
       (s).volume_uncertainty_mm3 > 0 AS uncertain, (s).warnings
  FROM dfx, LATERAL (SELECT alexandrite.mesh_analyze(data, hint) AS s) a
 ORDER BY name;

-- 1 % of a 10,000-triangle torus flipped: the naive signed sum is off by
-- about 10 %; the reoriented volume matches the unflipped oracle (computed
-- by the generator in double precision over the same vertices) to 1e-7
\set b `python3 test/gen/genmesh.py flipped stl --b64`
\set oracle `python3 test/gen/genmesh.py --expect torus:100:50 | cut -d' ' -f1`
SELECT (s).faces_reoriented, (s).inconsistent_edges, (s).watertight, (s).genus,
       abs((s).volume_mm3 / :oracle - 1) < 1e-7 AS volume_ok, (s).warnings
  FROM (SELECT alexandrite.mesh_analyze(decode(:'b', 'base64'), 'stl') AS s) a;

-- glTF node transforms in double: scale 2 gives 8x the volume; a mirror
-- (negative determinant) keeps the volume positive
\set b `python3 test/gen/genmesh.py cube gltf --scale 2 --b64`
SELECT round(((alexandrite.mesh_analyze(decode(:'b', 'base64'), 'gltf')).volume_mm3)::numeric, 3) AS scaled_volume;
\set b `python3 test/gen/genmesh.py cube glb --mirror --b64`
SELECT round(((alexandrite.mesh_analyze(decode(:'b', 'base64'), 'glb')).volume_mm3)::numeric, 3) AS mirrored_volume,
       (alexandrite.mesh_analyze(decode(:'b', 'base64'), 'glb')).watertight;

-- 3MF carries its unit: the same 10 mm cube written in inch, cm, m, micron
\set b `python3 test/gen/genmesh.py cube 3mf --unit inch --b64`
SELECT 'inch' AS unit, (s).unit_scale_mm, round((s).volume_mm3::numeric, 4) AS volume
  FROM (SELECT alexandrite.mesh_analyze(decode(:'b', 'base64')) AS s) a;
\set b `python3 test/gen/genmesh.py cube 3mfz --unit centimeter --b64`
SELECT 'centimeter' AS unit, (s).unit_scale_mm, round((s).volume_mm3::numeric, 4) AS volume
  FROM (SELECT alexandrite.mesh_analyze(decode(:'b', 'base64')) AS s) a;
\set b `python3 test/gen/genmesh.py cube 3mf --unit micron --b64`
SELECT 'micron' AS unit, (s).unit_scale_mm, round((s).volume_mm3::numeric, 4) AS volume
  FROM (SELECT alexandrite.mesh_analyze(decode(:'b', 'base64')) AS s) a;

-- unitless formats take the unit argument: a 10-unit cube
\set b `python3 test/gen/genmesh.py cube stl --b64`
SELECT u, (s).unit_scale_mm, (s).volume_mm3, (s).area_mm2, (s).size_x_mm, (s).warnings
  FROM unnest(ARRAY['mm', 'cm', 'm', 'in']) AS u,
       LATERAL (SELECT alexandrite.mesh_analyze(decode(:'b', 'base64'), 'stl', u) AS s) a
 ORDER BY (s).unit_scale_mm;
-- ... but glTF is metres whatever the argument says
\set b `python3 test/gen/genmesh.py cube glb --b64`
SELECT round(((alexandrite.mesh_analyze(decode(:'b', 'base64'), NULL, 'in')).volume_mm3)::numeric, 3) AS glb_volume;
