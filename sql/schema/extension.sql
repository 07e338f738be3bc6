/* sql/schema/extension.sql: the schema and the library version
 * Part of the current install script (make concatenates the files of sql/schema in the
 * order of SCHEMA in the Makefile into alexandrite--<version>.sql).  A change
 * here needs the same change in the current upgrade script. */

-- No IF NOT EXISTS: a schema planted before the install makes it fail.
CREATE SCHEMA alexandrite;
COMMENT ON SCHEMA alexandrite IS 'alexandrite: order path of a jewelry manufacturer';

CREATE FUNCTION alexandrite.version() RETURNS text
    AS 'MODULE_PATHNAME', 'alexandrite_version'
    LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION alexandrite.version() IS 'version of the loaded alexandrite library';
