-- mesh_errors: every bad input is an ERROR with the right SQLSTATE
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE TEMP TABLE efx (name text, hint text, data bytea);
\set b `python3 test/gen/genmesh.py cube stl --b64`
INSERT INTO efx VALUES ('cube.stl as obj', 'obj', decode(:'b', 'base64')),
                       ('cube.stl as 3mf', '3mf', decode(:'b', 'base64')),
                       ('cube.stl as fbx', 'fbx', decode(:'b', 'base64')),
                       ('empty', NULL, ''::bytea),
                       ('empty as stl', 'stl', ''::bytea);
\set b `python3 test/gen/genmesh.py --hostile-case truncated.stl`
INSERT INTO efx VALUES ('truncated.stl', 'stl', decode(:'b', 'base64')), ('truncated.stl sniffed', NULL, decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case lying_count.stl`
INSERT INTO efx VALUES ('lying_count.stl', 'stl', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case nan.stl`
INSERT INTO efx VALUES ('nan.stl', 'stl', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case inf.obj`
INSERT INTO efx VALUES ('inf.obj', 'obj', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case oob_index.obj`
INSERT INTO efx VALUES ('oob_index.obj', 'obj', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case only_lines.obj`
INSERT INTO efx VALUES ('only_lines.obj', 'obj', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case ply_count_bomb_ascii.ply`
INSERT INTO efx VALUES ('ply_count_bomb_ascii.ply', 'ply', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case ply_bad_index.ply`
INSERT INTO efx VALUES ('ply_bad_index.ply', 'ply', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case uri_passwd.gltf`
INSERT INTO efx VALUES ('uri_passwd.gltf', 'gltf', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case deep_nodes.gltf`
INSERT INTO efx VALUES ('deep_nodes.gltf', NULL, decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case bad_unit.3mf`
INSERT INTO efx VALUES ('bad_unit.3mf', '3mf', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case no_model.3mf`
INSERT INTO efx VALUES ('no_model.3mf', '3mf', decode(:'b', 'base64'));
\set b `python3 test/gen/genmesh.py --hostile-case random.bin`
INSERT INTO efx VALUES ('random.bin', NULL, decode(:'b', 'base64')), ('random.bin as stl', 'stl', decode(:'b', 'base64'));

-- SQLSTATE and primary message of each (details are in the TAP test)
SELECT name, pg_temp.try(format('SELECT alexandrite.mesh_analyze(data, %L) FROM efx WHERE name = %L', hint, name)) AS result
  FROM efx ORDER BY name;

-- an OBJ whose mtllib names a server file still parses, without that file
\set b `python3 test/gen/genmesh.py --hostile-case mtllib_passwd.obj`
SELECT (s).triangles, (s).volume_mm3 FROM (SELECT alexandrite.mesh_analyze(decode(:'b', 'base64'), 'obj') AS s) a;

-- size limit: alexandrite.mesh_max_bytes (54000) before any process starts
\set b `python3 test/gen/genmesh.py ring stl --b64`
SET alexandrite.mesh_max_bytes = 1024;
SELECT pg_temp.try($$SELECT alexandrite.mesh_analyze(decode('$$ || :'b' || $$', 'base64'), 'stl')$$);
RESET alexandrite.mesh_max_bytes;

-- memory limit of the helper (54000): a 160,000-triangle 3MF (1.5 MB) is
-- analysed under the default limit, and refused under 64 MB (however assimp
-- words its failure, a failed allocation is reported as the limit)
\set b `python3 test/gen/genmesh.py torus:400:200 3mfz --b64`
SELECT (alexandrite.mesh_analyze(decode(:'b', 'base64'), '3mf')).triangles AS under_default_limit;
SET alexandrite.mesh_memory_limit = 64;
SELECT pg_temp.try($$SELECT alexandrite.mesh_analyze(decode('$$ || :'b' || $$', 'base64'), '3mf')$$);
RESET alexandrite.mesh_memory_limit;

-- any alexandrite.mesh_timeout works, however long (the CPU budget is
-- capped by it, not derived from it)
\set b `python3 test/gen/genmesh.py cube stl --b64`
SET alexandrite.mesh_timeout = '86399s';
SELECT (alexandrite.mesh_analyze(decode(:'b', 'base64'), 'stl')).triangles AS timeout_86399s;
SET alexandrite.mesh_timeout = 2147483647;
SELECT (alexandrite.mesh_analyze(decode(:'b', 'base64'), 'stl')).triangles AS timeout_max;
RESET alexandrite.mesh_timeout;

-- bad arguments
SELECT alexandrite.mesh_analyze('\x00'::bytea, 'stl', 'furlong');
SELECT alexandrite.mesh_analyze(NULL) IS NULL AS null_in_null_out;

\set b `python3 test/gen/genmesh.py cube obj --b64`
-- a missing helper is a clear error
SET alexandrite.meshd_path = '/nonexistent/alexandrite-meshd';
SELECT alexandrite.mesh_analyze('\x0102'::bytea, 'stl');
-- whatever runs in the helper's place, its output is checked strictly
SET alexandrite.meshd_path = '/bin/echo';     -- prints its arguments: garbage
SELECT pg_temp.try($$SELECT alexandrite.mesh_analyze(decode('$$ || :'b' || $$', 'base64'))$$);
SET alexandrite.meshd_path = '/bin/true';     -- exit 0, no record
SELECT pg_temp.try($$SELECT alexandrite.mesh_analyze(decode('$$ || :'b' || $$', 'base64'))$$);
SET alexandrite.meshd_path = '/bin/false';    -- unknown exit code
SELECT pg_temp.try($$SELECT alexandrite.mesh_analyze(decode('$$ || :'b' || $$', 'base64'))$$);
RESET alexandrite.meshd_path;

-- every analysis slot (alexandrite.mesh_max_concurrent) was given back,
-- after successes and errors alike
SELECT count(*) AS slots_held FROM pg_locks WHERE locktype = 'advisory' AND database = 0;

-- PUBLIC may not spawn the helper
CREATE ROLE alx_mesh_nobody;
GRANT USAGE ON SCHEMA alexandrite TO alx_mesh_nobody;
SET ROLE alx_mesh_nobody;
SELECT alexandrite.mesh_analyze('\x00'::bytea);
SELECT alexandrite.mesh_ingest('\x00'::bytea, 'x.stl');
RESET ROLE;
-- the documented grant lets a role analyse
GRANT EXECUTE ON FUNCTION alexandrite.mesh_analyze(bytea, text, text) TO alx_mesh_nobody;
SET ROLE alx_mesh_nobody;
SELECT (alexandrite.mesh_analyze(decode(:'b', 'base64'))).triangles;
RESET ROLE;
REVOKE ALL ON SCHEMA alexandrite FROM alx_mesh_nobody;
REVOKE ALL ON FUNCTION alexandrite.mesh_analyze(bytea, text, text) FROM alx_mesh_nobody;
DROP ROLE alx_mesh_nobody;
