/* sql/schema/mesh.sql: mesh analysis: mesh_stats, meshes, mesh_analyze, mesh_ingest
 * Part of the current install script (make concatenates the files of sql/schema in the
 * order of SCHEMA in the Makefile into alexandrite--<version>.sql).  A change
 * here needs the same change in the current upgrade script. */

------------------------------------------------------------------------------
-- The statistics of one analysed mesh.  The first thirteen columns are the
-- contract (CONTRACT.md section 1); the rest explain them.
------------------------------------------------------------------------------
CREATE TYPE alexandrite.mesh_stats AS (
    triangles              bigint,
    vertices               bigint,
    volume_mm3             float8,
    area_mm2               float8,
    size_x_mm              float8,
    size_y_mm              float8,
    size_z_mm              float8,
    shells                 integer,
    watertight             boolean,
    boundary_edges         bigint,
    nonmanifold_edges      bigint,
    degenerate_triangles   bigint,
    sha256                 bytea,
    format                 text,
    unit_scale_mm          float8,
    inconsistent_edges     bigint,
    faces_reoriented       bigint,
    euler_characteristic   bigint,
    genus                  integer,
    volume_uncertainty_mm3 float8,
    min_x_mm               float8,
    min_y_mm               float8,
    min_z_mm               float8,
    warnings               text[],
    analyzer_version       integer,
    analysis_ms            float8,
    min_wall_mm            float8,
    min_wall_x_mm          float8,
    min_wall_y_mm          float8,
    min_wall_z_mm          float8,
    wall_below_0_3_mm2     float8,
    wall_below_0_5_mm2     float8,
    wall_below_0_8_mm2     float8,
    wall_below_1_0_mm2     float8
);
COMMENT ON TYPE alexandrite.mesh_stats IS 'metrics of a mesh file in millimetres, computed by alexandrite-meshd (see docs/mesh.md)';

------------------------------------------------------------------------------
-- Analysed meshes (filled by mesh_ingest; the order core only references them)
------------------------------------------------------------------------------
CREATE TABLE alexandrite.meshes (
    id                   bigserial PRIMARY KEY,
    sha256               bytea NOT NULL CHECK (pg_catalog.length(sha256) OPERATOR(pg_catalog.=) 32),
    unit                 text NOT NULL DEFAULT 'mm',
    filename             text,
    format               text NOT NULL,
    triangles            bigint NOT NULL,
    vertices             bigint NOT NULL,
    volume_mm3           float8 NOT NULL,
    area_mm2             float8 NOT NULL,
    size_x_mm            float8 NOT NULL,
    size_y_mm            float8 NOT NULL,
    size_z_mm            float8 NOT NULL,
    shells               integer NOT NULL,
    watertight           boolean NOT NULL,
    boundary_edges       bigint NOT NULL,
    nonmanifold_edges    bigint NOT NULL,
    degenerate_triangles bigint NOT NULL,
    analyzed_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    analysis_ms          float8,
    unit_scale_mm          float8,
    inconsistent_edges     bigint,
    faces_reoriented       bigint,
    euler_characteristic   bigint,
    genus                  integer,
    volume_uncertainty_mm3 float8,
    min_x_mm               float8,
    min_y_mm               float8,
    min_z_mm               float8,
    warnings               text[] NOT NULL DEFAULT '{}',
    analyzer_version       integer,
    size_bytes             bigint,
    min_wall_mm            float8,
    min_wall_x_mm          float8,
    min_wall_y_mm          float8,
    min_wall_z_mm          float8,
    wall_below_0_3_mm2     float8,
    wall_below_0_5_mm2     float8,
    wall_below_0_8_mm2     float8,
    wall_below_1_0_mm2     float8,
    -- the same bytes in another unit are another mesh
    UNIQUE (sha256, unit),
    CONSTRAINT meshes_unit_check
        CHECK (unit OPERATOR(pg_catalog.=) ANY (ARRAY['mm', 'cm', 'm', 'in']::text[]))
);
COMMENT ON TABLE alexandrite.meshes IS 'analysed 3D models: geometry in millimetres, keyed by the SHA-256 of the file bytes and the unit';
COMMENT ON COLUMN alexandrite.meshes.unit IS 'unit the caller declared for unitless formats (STL, OBJ, PLY); glTF is metres and 3MF carries its own unit';
COMMENT ON COLUMN alexandrite.meshes.unit_scale_mm IS 'factor from the file''s unit to millimetres that was applied';
COMMENT ON COLUMN alexandrite.meshes.warnings IS 'flags for review: open_mesh, overlapping_shells, inner_void, unit_suspect, ... (docs/mesh.md)';
COMMENT ON COLUMN alexandrite.meshes.analyzer_version IS 'version of the metrics code that produced the row';
COMMENT ON COLUMN alexandrite.meshes.genus IS 'number of through-holes of a closed orientable mesh, NULL otherwise';
COMMENT ON COLUMN alexandrite.meshes.volume_uncertainty_mm3 IS 'error bound of the volume of an open mesh (0 when watertight)';
COMMENT ON COLUMN alexandrite.meshes.min_wall_mm IS 'thinnest wall (ray along each face''s inward normal); NULL when nothing was measured or the row predates analyzer version 2';
COMMENT ON COLUMN alexandrite.meshes.min_wall_x_mm IS 'where the thinnest wall starts: centroid of its face, x';
COMMENT ON COLUMN alexandrite.meshes.min_wall_y_mm IS 'where the thinnest wall starts: centroid of its face, y';
COMMENT ON COLUMN alexandrite.meshes.min_wall_z_mm IS 'where the thinnest wall starts: centroid of its face, z';
COMMENT ON COLUMN alexandrite.meshes.wall_below_0_3_mm2 IS 'surface whose wall is thinner than 0.3 mm';
COMMENT ON COLUMN alexandrite.meshes.wall_below_0_5_mm2 IS 'surface whose wall is thinner than 0.5 mm';
COMMENT ON COLUMN alexandrite.meshes.wall_below_0_8_mm2 IS 'surface whose wall is thinner than 0.8 mm';
COMMENT ON COLUMN alexandrite.meshes.wall_below_1_0_mm2 IS 'surface whose wall is thinner than 1.0 mm';
SELECT pg_catalog.pg_extension_config_dump('alexandrite.meshes', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.meshes_id_seq', '');


------------------------------------------------------------------------------
-- Functions.  Both spawn a helper process per call, so PUBLIC may not run
-- them; grant EXECUTE to the roles that upload models (docs/mesh.md).
------------------------------------------------------------------------------
CREATE FUNCTION alexandrite.mesh_analyze(data bytea, format text DEFAULT NULL, unit text DEFAULT 'mm')
    RETURNS alexandrite.mesh_stats
    AS 'MODULE_PATHNAME', 'alexandrite_mesh_analyze'
    LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION alexandrite.mesh_analyze(bytea, text, text)
    IS 'parse a mesh file (STL, OBJ, PLY, glTF/GLB, 3MF) in an isolated helper and return its metrics; stores nothing';
REVOKE ALL ON FUNCTION alexandrite.mesh_analyze(bytea, text, text) FROM PUBLIC;

CREATE FUNCTION alexandrite.mesh_ingest(data bytea, filename text, unit text DEFAULT 'mm')
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_mesh_ingest'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.mesh_ingest(bytea, text, text)
    IS 'analyse a mesh file and store it in alexandrite.meshes; the same bytes in the same unit return the same id without parsing again';
REVOKE ALL ON FUNCTION alexandrite.mesh_ingest(bytea, text, text) FROM PUBLIC;

------------------------------------------------------------------------------
-- Mesh jobs: models analysed in the background (src/mesh/jobs_*.c).
-- mesh_submit() stores the file's bytes here and returns at once; a pool of
-- alexandrite.mesh_workers background workers claims the most urgent job,
-- runs the same isolated helper as mesh_ingest, stores the mesh, drops the
-- bytes and, for a job attached to an order, sets the order's model and
-- prices it.  Written only by the extension owner (the C functions switch
-- to it); see docs/mesh.md, "Background analysis".
------------------------------------------------------------------------------
CREATE TABLE alexandrite.mesh_jobs (
    id              bigserial PRIMARY KEY,
    state           text NOT NULL DEFAULT 'queued',
    order_id        bigint,
    filename        text,
    unit            text NOT NULL DEFAULT 'mm',
    data            bytea,
    bytes           bigint NOT NULL,
    sha256          bytea NOT NULL CHECK (pg_catalog.length(sha256) OPERATOR(pg_catalog.=) 32),
    priority        float8,
    submitted_by    text NOT NULL,
    submitted_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    mesh_id         bigint,
    error_sqlstate  text,
    error_message   text,
    note            text,
    waiting_since   timestamptz,
    order_mesh_id   bigint,
    gave_model      boolean NOT NULL DEFAULT false,
    CONSTRAINT mesh_jobs_state_check
        CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'running', 'done', 'failed']::text[])),
    CONSTRAINT mesh_jobs_unit_check
        CHECK (unit OPERATOR(pg_catalog.=) ANY (ARRAY['mm', 'cm', 'm', 'in']::text[])),
    CONSTRAINT mesh_jobs_done_check
        CHECK (state OPERATOR(pg_catalog.<>) 'done' OR (mesh_id IS NOT NULL AND data IS NULL))
);
-- the bytes are stored as they came: no compression (a mesh file compresses
-- poorly and the submit must stay cheap), out of line
ALTER TABLE alexandrite.mesh_jobs ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX mesh_jobs_open_idx ON alexandrite.mesh_jobs (next_attempt_at, id)
    WHERE state OPERATOR(pg_catalog.<>) 'done';
CREATE INDEX mesh_jobs_order_idx ON alexandrite.mesh_jobs (order_id)
    WHERE order_id IS NOT NULL;
COMMENT ON TABLE alexandrite.mesh_jobs IS 'mesh files waiting for, in or after background analysis (mesh_submit); written only by the extension owner';
COMMENT ON COLUMN alexandrite.mesh_jobs.state IS 'queued, running (claimed by a worker), done (mesh_id set, bytes dropped) or failed (error set, bytes kept until mesh_job_retry or mesh_job_discard)';
COMMENT ON COLUMN alexandrite.mesh_jobs.order_id IS 'the order whose model this is: the job takes its SLA priority, and the order gets the mesh (and a price) when it is done';
COMMENT ON COLUMN alexandrite.mesh_jobs.data IS 'the file''s bytes, uncompressed; NULL once analysed or discarded';
COMMENT ON COLUMN alexandrite.mesh_jobs.bytes IS 'size of the file in bytes';
COMMENT ON COLUMN alexandrite.mesh_jobs.priority IS 'SLA priority of the order when the job was submitted (the pool ranks by the current one); NULL when not attached';
COMMENT ON COLUMN alexandrite.mesh_jobs.attempts IS 'analyses started; an attempt interrupted by a crash counts';
COMMENT ON COLUMN alexandrite.mesh_jobs.next_attempt_at IS 'not claimed before this time (backoff after a failed or interrupted attempt)';
COMMENT ON COLUMN alexandrite.mesh_jobs.error_sqlstate IS 'SQLSTATE of the last failed attempt';
COMMENT ON COLUMN alexandrite.mesh_jobs.waiting_since IS 'when an attempt first found the attached order held by another transaction, or a later job of the order not done (the job waits longer the longer it has waited); NULL if never or since mesh_job_retry';
COMMENT ON COLUMN alexandrite.mesh_jobs.order_mesh_id IS 'the model the attached order had when the job was submitted: the job gives the order its mesh only if the order still has that one (or one an earlier job gave it) and no later job of the order is done (it waits for one queued or running)';
COMMENT ON COLUMN alexandrite.mesh_jobs.gave_model IS 'the job gave its order this mesh';
COMMENT ON COLUMN alexandrite.mesh_jobs.note IS 'what happened to the attached order when the job was done, if not the obvious (not priced: why)';
SELECT pg_catalog.pg_extension_config_dump('alexandrite.mesh_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('alexandrite.mesh_jobs_id_seq', '');

-- what the MES reads: the jobs without their bytes, with the owner's rights
CREATE VIEW alexandrite.mesh_job_status AS
SELECT j.id, j.state, j.order_id, j.filename, j.unit, j.bytes, j.sha256, j.priority,
       j.submitted_by, j.submitted_at, j.started_at, j.finished_at, j.attempts,
       j.next_attempt_at, j.mesh_id, j.error_sqlstate, j.error_message, j.note,
       j.waiting_since, j.order_mesh_id, j.gave_model, j.data IS NOT NULL AS has_bytes
  FROM alexandrite.mesh_jobs j;
COMMENT ON VIEW alexandrite.mesh_job_status IS 'mesh jobs without their bytes (owner''s rights: readers need SELECT on the view only)';

CREATE FUNCTION alexandrite.mesh_submit(data bytea, filename text, unit text DEFAULT 'mm',
                                        order_id bigint DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_mesh_submit'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.mesh_submit(bytea, text, text, bigint)
    IS 'queue a mesh file for background analysis and return the job id at once; the same bytes and unit already analysed complete the job at once';
REVOKE ALL ON FUNCTION alexandrite.mesh_submit(bytea, text, text, bigint) FROM PUBLIC;

CREATE FUNCTION alexandrite.mesh_job_retry(job_id bigint)
    RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_mesh_job_retry'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.mesh_job_retry(bigint)
    IS 'queue a failed mesh job again, with a fresh count of attempts';
REVOKE ALL ON FUNCTION alexandrite.mesh_job_retry(bigint) FROM PUBLIC;

CREATE FUNCTION alexandrite.mesh_job_discard(job_id bigint)
    RETURNS void
    AS 'MODULE_PATHNAME', 'alexandrite_mesh_job_discard'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alexandrite.mesh_job_discard(bigint)
    IS 'drop the bytes of a queued or failed mesh job; the job stays, failed';
REVOKE ALL ON FUNCTION alexandrite.mesh_job_discard(bigint) FROM PUBLIC;
