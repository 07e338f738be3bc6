-- mesh_ingest: store once per (bytes, unit), dedupe without parsing again
\set VERBOSITY terse
\set cube `python3 test/gen/genmesh.py cube stl --b64`
\set ring `python3 test/gen/genmesh.py ring obj --b64`
SELECT alexandrite.mesh_ingest(decode(:'cube', 'base64'), 'cube.stl') AS cube_id \gset
SELECT alexandrite.mesh_ingest(decode(:'cube', 'base64'), 'cube-again.stl') = :cube_id AS same_id;
SELECT alexandrite.mesh_ingest(decode(:'cube', 'base64'), 'cube.stl', 'mm') = :cube_id AS same_id_explicit_unit;
-- a second call does not run the helper: it still works with the helper gone
SET alexandrite.meshd_path = '/nonexistent/alexandrite-meshd';
SELECT alexandrite.mesh_ingest(decode(:'cube', 'base64'), 'cube.stl') = :cube_id AS same_id_without_helper;
-- new bytes do need it: an error here
SELECT alexandrite.mesh_ingest(decode(:'ring', 'base64'), 'ring.obj') > 0 AS stored;
RESET alexandrite.meshd_path;
-- a row written by an older analyzer is measured again by the next ingest,
-- keeping its id and its first file name
UPDATE alexandrite.meshes SET analyzer_version = 0, volume_mm3 = 1 WHERE id = :cube_id;
SELECT alexandrite.mesh_ingest(decode(:'cube', 'base64'), 'renamed.stl') = :cube_id AS same_id_reanalysed;
SELECT analyzer_version, volume_mm3, filename FROM alexandrite.meshes WHERE id = :cube_id;
-- the same bytes in inches are another mesh, scaled to mm
SELECT alexandrite.mesh_ingest(decode(:'cube', 'base64'), 'cube.stl', 'in') AS cube_in_id \gset
SELECT :cube_in_id <> :cube_id AS new_id;
SELECT unit, filename, format, triangles, vertices, round(volume_mm3::numeric, 4) AS volume,
       round(area_mm2::numeric, 4) AS area, size_x_mm, shells, watertight, boundary_edges,
       nonmanifold_edges, degenerate_triangles, unit_scale_mm, genus, warnings,
       analyzer_version, size_bytes, sha256 = sha256(decode(:'cube', 'base64')) AS sha_ok,
       analysis_ms >= 0 AS timed
  FROM alexandrite.meshes WHERE id IN (:cube_id, :cube_in_id) ORDER BY id;
SELECT count(*) FROM alexandrite.meshes WHERE sha256 = sha256(decode(:'cube', 'base64'));
-- the format comes from the contents; the file name is only stored
\set ring_ply `python3 test/gen/genmesh.py ring ply --b64`
SELECT alexandrite.mesh_ingest(decode(:'ring_ply', 'base64'), 'band') AS band_id \gset
SELECT format, triangles, filename FROM alexandrite.meshes WHERE id = :band_id;
-- the same bytes under another name are the same mesh (no parse, no hint check)
SELECT alexandrite.mesh_ingest(decode(:'ring_ply', 'base64'), 'band.stl')
       = :band_id AS same_id;
-- new bytes whose name's extension contradicts them: detected as PLY
SELECT alexandrite.mesh_ingest(decode(:'ring_ply', 'base64') || '\x0a'::bytea, 'band.stl') AS misnamed_id \gset
SELECT format, triangles, filename FROM alexandrite.meshes WHERE id = :misnamed_id;
-- called once per row in one statement: later calls see the first's row
SELECT count(DISTINCT alexandrite.mesh_ingest(decode(:'ring', 'base64'), 'ring.obj')) AS ids
  FROM generate_series(1, 3);
-- bad units
SELECT alexandrite.mesh_ingest(decode(:'cube', 'base64'), 'cube.stl', 'furlong');
SELECT alexandrite.mesh_ingest(decode(:'cube', 'base64'), 'cube.stl', NULL);
SELECT alexandrite.mesh_ingest(NULL, 'cube.stl');
-- an ingest that fails stores nothing
SELECT count(*) AS meshes_before FROM alexandrite.meshes \gset
SELECT alexandrite.mesh_ingest('\x00010203'::bytea, 'junk.stl');
SELECT count(*) = :meshes_before AS nothing_stored FROM alexandrite.meshes;
-- clean up what this file stored
DELETE FROM alexandrite.meshes WHERE sha256 IN (sha256(decode(:'cube', 'base64')),
    sha256(decode(:'ring', 'base64')), sha256(decode(:'ring_ply', 'base64')),
    sha256(decode(:'ring_ply', 'base64') || '\x0a'::bytea));
