/* sql/schema/privileges.sql: default deny, the last part of the install script
 * Part of the current install script (make concatenates the files of sql/schema in the
 * order of SCHEMA in the Makefile into alexandrite--<version>.sql).  A change
 * here needs the same change in the current upgrade script. */

-- No function of the extension is executable by PUBLIC, and no table is
-- writable by anyone but the extension owner (the scripts grant no table
-- privilege at all).  docs/operations.md, "Privileges", grants each role
-- what its job needs, function by function; test/t/063_observe_privileges.pl
-- runs that block as written and test/t/065_privilege_probes.pl tries to
-- break it.  This comes last so that it covers every routine created above.
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA alexandrite FROM PUBLIC;
