-- Search-path hijacking (CVE-2022-2625 class): objects planted in a schema
-- that comes first in search_path must never be called by the extension's
-- script or functions.  Modelled on contrib/seg/sql/security.sql.
CREATE ROLE alx_evil;
CREATE SCHEMA evil AUTHORIZATION alx_evil;
SET ROLE alx_evil;
CREATE FUNCTION evil.hijack_text(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'hijacked text = text'; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.hijack_text);
CREATE FUNCTION evil.hijack_bigint(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'hijacked bigint = bigint'; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.hijack_bigint);
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'hijacked now()'; RETURN pg_catalog.now(); END $$;
CREATE FUNCTION evil.length(text) RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'hijacked length()'; RETURN 1; END $$;
CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'hijacked current_setting()'; RETURN NULL; END $$;
CREATE FUNCTION evil.pg_extension_config_dump(regclass, text) RETURNS void LANGUAGE plpgsql AS
  $$ BEGIN RAISE NOTICE 'hijacked pg_extension_config_dump()'; END $$;
RESET ROLE;

-- reinstall and upgrade with the hostile schema first in the path
DROP EXTENSION alexandrite;
SET search_path = evil, public, pg_catalog;
CREATE EXTENSION alexandrite VERSION '1.0';
ALTER EXTENSION alexandrite UPDATE;
-- and use it: no "hijacked" notice may appear
INSERT INTO alexandrite.operators (id, name) VALUES ('op-sec', 'Sec');
SELECT alexandrite.create_order('SEC-1', 'shop', 'c-sec', NULL, 'ag925') AS sec \gset
SELECT alexandrite.create_order('SEC-1', 'shop', 'c-sec', NULL, 'ag925') = :sec AS idempotent;
SELECT alexandrite.set_status(:sec, 'priced');
SELECT count(*) FROM alexandrite.order_timeline(:sec);
SELECT count(*) FROM alexandrite.stuck_orders('0');
SELECT alexandrite.is_open('priced');
RESET search_path;

-- a schema named alexandrite planted before the install makes it fail
DROP EXTENSION alexandrite;
CREATE SCHEMA alexandrite AUTHORIZATION alx_evil;
CREATE EXTENSION alexandrite;
DROP SCHEMA alexandrite;

-- no function is SECURITY DEFINER (metrics() switches to the owner in C
-- around its fixed collectors), and PUBLIC has no access to the schema
-- until the DBA grants it
CREATE EXTENSION alexandrite;
SELECT p.oid::regprocedure AS definer_function, p.proconfig
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'alexandrite' AND p.prosecdef ORDER BY 1;
SET ROLE alx_evil;
SELECT count(*) FROM alexandrite.orders;
SELECT alexandrite.create_order('EVIL-1', 'shop', 'c', NULL, NULL);
RESET ROLE;

-- default deny (sql/schema/privileges.sql, docs/operations.md "Privileges"):
-- no routine is executable by PUBLIC; no table, view, sequence or column
-- grants anything to anyone but the owner; what the extension grants itself
-- is the 1.1 compatibility set for pg_monitor (the metrics), nothing else
SELECT p.oid::regprocedure AS public_routine
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'alexandrite'::regnamespace AND a.grantee = 0;
SELECT c.oid::regclass AS relation, a.privilege_type
  FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
 WHERE c.relnamespace = 'alexandrite'::regnamespace AND a.grantee <> c.relowner;
SELECT a.attrelid::regclass AS relation, a.attname
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'alexandrite'::regnamespace AND a.attacl IS NOT NULL;
SELECT p.oid::regprocedure AS routine, a.grantee::regrole AS granted_to
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.pronamespace = 'alexandrite'::regnamespace AND a.grantee <> p.proowner
 ORDER BY 1, 2;
SELECT a.grantee::regrole AS schema_usage
  FROM pg_namespace n, aclexplode(n.nspacl) a
 WHERE n.nspname = 'alexandrite' AND a.grantee <> n.nspowner;

-- a temporary object never stands in for a built-in under the owner's
-- pinned path: a temp table named text while a dashboard over orders casts
-- to text (its filter is parsed again in each session, inside create_order)
SELECT alexandrite.create_dashboard('sec_web', 'alexandrite.orders', ARRAY['customer_id'], 'n', NULL,
                                    $$channel = 'web'$$) IS NOT NULL AS made;
\c
CREATE TEMP TABLE text (x int);
SELECT alexandrite.create_order('SEC-TEMP-1', 'shop', 'c-sec', NULL, NULL) > 0 AS created;
SELECT alexandrite.set_status(o.id, 'cancelled') FROM alexandrite.orders o WHERE o.external_ref = 'SEC-TEMP-1';
DISCARD TEMP;
SELECT alexandrite.drop_dashboard('sec_web');

DROP SCHEMA evil CASCADE;
DROP ROLE alx_evil;
