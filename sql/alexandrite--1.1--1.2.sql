/* sql/alexandrite--1.1--1.2.sql: upgrade from 1.1 to 1.2 (written by hand)
 *
 * One section per capability, in the order of the install script.  Every
 * change here has its twin in sql/schema/<capability>.sql: a fresh install
 * and this upgrade must give the same objects (test/sql/core_upgrade.sql).
 * Once 1.2 is released this file is never edited again. */

\echo Use "ALTER EXTENSION alexandrite UPDATE TO '1.2'" to load this file. \quit

------------------------------------------------------------------------------
-- extension
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- mesh
------------------------------------------------------------------------------
-- Wall thickness (analyzer version 2).  The new columns of existing meshes
-- stay NULL until the same bytes are ingested again: mesh_ingest measures a
-- row written by an older analyzer version again, under the same id, and
-- fills them then.
ALTER TYPE alexandrite.mesh_stats
    ADD ATTRIBUTE min_wall_mm float8,
    ADD ATTRIBUTE min_wall_x_mm float8,
    ADD ATTRIBUTE min_wall_y_mm float8,
    ADD ATTRIBUTE min_wall_z_mm float8,
    ADD ATTRIBUTE wall_below_0_3_mm2 float8,
    ADD ATTRIBUTE wall_below_0_5_mm2 float8,
    ADD ATTRIBUTE wall_below_0_8_mm2 float8,
    ADD ATTRIBUTE wall_below_1_0_mm2 float8;
ALTER TABLE alexandrite.meshes
    ADD COLUMN min_wall_mm            float8,
    ADD COLUMN min_wall_x_mm          float8,
    ADD COLUMN min_wall_y_mm          float8,
    ADD COLUMN min_wall_z_mm          float8,
    ADD COLUMN wall_below_0_3_mm2     float8,
    ADD COLUMN wall_below_0_5_mm2     float8,
    ADD COLUMN wall_below_0_8_mm2     float8,
    ADD COLUMN wall_below_1_0_mm2     float8;
COMMENT ON COLUMN alexandrite.meshes.min_wall_mm IS 'thinnest wall (ray along each face''s inward normal); NULL when nothing was measured or the row predates analyzer version 2';
COMMENT ON COLUMN alexandrite.meshes.min_wall_x_mm IS 'where the thinnest wall starts: centroid of its face, x';
COMMENT ON COLUMN alexandrite.meshes.min_wall_y_mm IS 'where the thinnest wall starts: centroid of its face, y';
COMMENT ON COLUMN alexandrite.meshes.min_wall_z_mm IS 'where the thinnest wall starts: centroid of its face, z';
COMMENT ON COLUMN alexandrite.meshes.wall_below_0_3_mm2 IS 'surface whose wall is thinner than 0.3 mm';
COMMENT ON COLUMN alexandrite.meshes.wall_below_0_5_mm2 IS 'surface whose wall is thinner than 0.5 mm';
COMMENT ON COLUMN alexandrite.meshes.wall_below_0_8_mm2 IS 'surface whose wall is thinner than 0.8 mm';
COMMENT ON COLUMN alexandrite.meshes.wall_below_1_0_mm2 IS 'surface whose wall is thinner than 1.0 mm';

------------------------------------------------------------------------------
-- core
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- pricing
------------------------------------------------------------------------------
-- Castability limits of the materials (docs/pricing.md).  The alloys the
-- extension seeds get the values a fresh install seeds -- also where the
-- user has changed their price, since the limits are the process's -- and
-- keep their "seeded" flag (the seed guard would clear it on an UPDATE).
-- Materials the user added keep NULL (no limit) until the user sets them.
ALTER TABLE alexandrite.materials
    ADD COLUMN min_wall_mm      numeric CHECK (min_wall_mm OPERATOR(pg_catalog.>) 0 AND min_wall_mm OPERATOR(pg_catalog.<) 100),
    ADD COLUMN max_build_x_mm   numeric CHECK (max_build_x_mm OPERATOR(pg_catalog.>) 0 AND max_build_x_mm OPERATOR(pg_catalog.<) 100000),
    ADD COLUMN max_build_y_mm   numeric CHECK (max_build_y_mm OPERATOR(pg_catalog.>) 0 AND max_build_y_mm OPERATOR(pg_catalog.<) 100000),
    ADD COLUMN max_build_z_mm   numeric CHECK (max_build_z_mm OPERATOR(pg_catalog.>) 0 AND max_build_z_mm OPERATOR(pg_catalog.<) 100000);
COMMENT ON COLUMN alexandrite.materials.min_wall_mm IS 'thinnest wall the casting process holds in this alloy; a mesh with a thinner wall needs review (docs/pricing.md)';
COMMENT ON COLUMN alexandrite.materials.max_build_x_mm IS 'largest piece the process takes, first extent (the mesh may be turned: sorted extents are compared)';
COMMENT ON COLUMN alexandrite.materials.max_build_y_mm IS 'largest piece the process takes, second extent';
COMMENT ON COLUMN alexandrite.materials.max_build_z_mm IS 'largest piece the process takes, third extent';
ALTER TABLE alexandrite.materials DISABLE TRIGGER materials_seed_guard;
UPDATE alexandrite.materials m
   SET min_wall_mm = 0.8, max_build_x_mm = 76.2, max_build_y_mm = 101.6, max_build_z_mm = 101.6
 WHERE m.code OPERATOR(pg_catalog.=) ANY (ARRAY['au999', 'au750_yellow', 'au750_white', 'au750_rose',
                                               'au585_yellow', 'au585_white', 'au585_rose', 'ag925',
                                               'ag999', 'pt950', 'pd950', 'brass']);
ALTER TABLE alexandrite.materials ENABLE TRIGGER materials_seed_guard;

------------------------------------------------------------------------------
-- sla
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- outbox
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- dashboard
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- observe
------------------------------------------------------------------------------
