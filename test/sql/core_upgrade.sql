-- Upgrades.  The released scripts are byte for byte what was released; a
-- fresh install of the current version (sql/schema/*.sql) and every upgrade
-- path from a released version give the same objects, definitions,
-- privileges, comments and seed rows; data written under 1.0 survives.

-- 1. The released scripts, as installed, are the released bytes.
SELECT f.name, pg_catalog.encode(pg_catalog.sha256(pg_catalog.pg_read_binary_file(
           (SELECT setting FROM pg_catalog.pg_config WHERE name = 'SHAREDIR') || '/extension/' || f.name)), 'hex')
       = f.sha256 AS released_bytes
  FROM (VALUES ('alexandrite--1.0.sql', 'a4079988a5ba452e8d71466b89e0320de1e3bdbe369299a6ab872ca9eb0128f4'),
               ('alexandrite--1.0--1.1.sql', '9703bd47f383e69f59f690b955e0d6e619952b51cb231673d34bb1589cd10e5e')) f(name, sha256)
 ORDER BY 1;

-- 2. A fingerprint of every member of the extension.
CREATE FUNCTION pg_temp.alx_acl(acl aclitem[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(acl) a
$$;

CREATE FUNCTION pg_temp.alx_relation(rel oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT concat_ws(' | ',
        'kind ' || c.relkind::text || c.relpersistence::text || CASE WHEN c.relrowsecurity THEN ' rls' ELSE '' END,
        (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                           || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
                           || CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END
                           || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
                           || coalesce(' collate ' || NULLIF(a.attcollation, 0)::regcollation::text, '')
                           || coalesce(' acl ' || pg_temp.alx_acl(a.attacl), '')
                           || coalesce(' comment ' || col_description(a.attrelid, a.attnum), ''),
                           ', ' ORDER BY a.attnum)
           FROM pg_attribute a
           LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
          WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped),
        (SELECT string_agg(s, '; ' ORDER BY s) FROM (SELECT pg_get_indexdef(i.indexrelid) AS s
           FROM pg_index i WHERE i.indrelid = rel) q),
        (SELECT string_agg(s, '; ' ORDER BY s) FROM (SELECT co.conname || ' ' || pg_get_constraintdef(co.oid) AS s
           FROM pg_constraint co WHERE co.conrelid = rel) q),
        (SELECT string_agg(s, '; ' ORDER BY s) FROM (SELECT pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
                           || coalesce(' comment ' || obj_description(t.oid, 'pg_trigger'), '') AS s
           FROM pg_trigger t WHERE t.tgrelid = rel AND NOT t.tgisinternal) q),
        (SELECT string_agg(s, '; ' ORDER BY s) FROM (SELECT p.polname || ' ' || p.polcmd::text || ' ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
                           || ' ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') AS s
           FROM pg_policy p WHERE p.polrelid = rel) q),
        (SELECT string_agg(s, '; ' ORDER BY s) FROM (SELECT r.rulename || ' ' || pg_get_ruledef(r.oid) AS s
           FROM pg_rewrite r WHERE r.ev_class = rel AND r.rulename <> '_RETURN') q),
        (SELECT 'inherits ' || string_agg(i.inhparent::regclass::text, ',' ORDER BY i.inhseqno)
           FROM pg_inherits i WHERE i.inhrelid = rel),
        (SELECT 'sequence ' || concat_ws(' ', s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmax,
                                         s.seqmin, s.seqcache, s.seqcycle)
           FROM pg_sequence s WHERE s.seqrelid = rel),
        (SELECT 'owned by ' || d.refobjid::regclass || '.' || a.attname
           FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
          WHERE d.classid = 'pg_class'::regclass AND d.objid = rel AND d.deptype = 'a'
            AND d.refclassid = 'pg_class'::regclass),
        (SELECT 'view ' || pg_get_viewdef(rel) WHERE EXISTS (SELECT 1 FROM pg_class v WHERE v.oid = rel AND v.relkind IN ('v', 'm'))),
        (SELECT 'options ' || array_to_string(c2.reloptions, ',') FROM pg_class c2 WHERE c2.oid = rel),
        'acl ' || pg_temp.alx_acl(c.relacl))
      FROM pg_class c WHERE c.oid = rel
$$;

CREATE FUNCTION pg_temp.alx_type(typ oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT concat_ws(' | ', format_type(t.oid, NULL), t.typtype::text,
        (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
        (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
           FROM pg_attribute a
          WHERE a.attrelid = t.typrelid AND t.typrelid <> 0 AND a.attnum > 0 AND NOT a.attisdropped),
        'acl ' || pg_temp.alx_acl(t.typacl))
      FROM pg_type t WHERE t.oid = typ
$$;

-- every row of a table as JSON, without the columns whose value is the time
-- of the install (timestamptz) or a transaction id
CREATE FUNCTION pg_temp.alx_rows(rel oid) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_drop text[];
    v_out  text;
BEGIN
    SELECT coalesce(array_agg(a.attname::text), '{}') INTO v_drop
      FROM pg_attribute a
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
       AND a.atttypid IN ('timestamptz'::regtype, 'xid8'::regtype, 'pg_snapshot'::regtype);
    EXECUTE format('SELECT string_agg((to_jsonb(t) - %L::text[])::text, E''\n'' ORDER BY (to_jsonb(t) - %L::text[])::text) FROM %s t',
                   v_drop, v_drop, rel::regclass)
       INTO v_out;
    RETURN coalesce(v_out, '');
END;
$$;

CREATE FUNCTION pg_temp.alx_fingerprint() RETURNS TABLE (object text, definition text)
LANGUAGE sql STABLE AS $$
    SELECT pg_describe_object(d.classid, d.objid, 0),
           concat_ws(' || ',
               CASE d.classid
                 WHEN 'pg_proc'::regclass THEN
                      pg_get_functiondef(d.objid) || ' acl ' || coalesce(pg_temp.alx_acl(
                          (SELECT p.proacl FROM pg_proc p WHERE p.oid = d.objid)), '')
                 WHEN 'pg_class'::regclass THEN pg_temp.alx_relation(d.objid)
                 WHEN 'pg_type'::regclass THEN pg_temp.alx_type(d.objid)
                 WHEN 'pg_namespace'::regclass THEN
                      (SELECT 'acl ' || pg_temp.alx_acl(n.nspacl) FROM pg_namespace n WHERE n.oid = d.objid)
               END,
               'comment ' || obj_description(d.objid, (SELECT c.relname FROM pg_class c WHERE c.oid = d.classid)))
      FROM pg_depend d
     WHERE d.refclassid = 'pg_extension'::regclass
       AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'alexandrite')
       AND d.deptype = 'e'
    UNION ALL
    -- what pg_dump keeps (pg_extension_config_dump), with its filter
    SELECT 'config dump ' || c::regclass, coalesce(w, '')
      FROM pg_extension x, unnest(x.extconfig, x.extcondition) AS u(c, w)
     WHERE x.extname = 'alexandrite'
    UNION ALL
    -- the rows the scripts put in the extension's tables (timestamps aside)
    SELECT 'rows of ' || c.oid::regclass,
           (SELECT pg_temp.alx_rows(c.oid))
      FROM pg_class c JOIN pg_depend d ON d.objid = c.oid AND d.classid = 'pg_class'::regclass
     WHERE d.refclassid = 'pg_extension'::regclass
       AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'alexandrite')
       AND d.deptype = 'e' AND c.relkind = 'r'
$$;

CREATE TEMP TABLE paths (path text, object text, definition text);

DROP EXTENSION alexandrite;
CREATE EXTENSION alexandrite;
SELECT extversion AS fresh FROM pg_extension WHERE extname = 'alexandrite';
INSERT INTO paths SELECT 'fresh', * FROM pg_temp.alx_fingerprint();
SELECT count(*) > 100 AS many_objects FROM paths;

DROP EXTENSION alexandrite;
CREATE EXTENSION alexandrite VERSION '1.0';
ALTER EXTENSION alexandrite UPDATE;
INSERT INTO paths SELECT 'from 1.0', * FROM pg_temp.alx_fingerprint();

DROP EXTENSION alexandrite;
CREATE EXTENSION alexandrite VERSION '1.1';
ALTER EXTENSION alexandrite UPDATE;
INSERT INTO paths SELECT 'from 1.1', * FROM pg_temp.alx_fingerprint();

-- every path gives what a fresh install gives (no rows: identical)
SELECT u.path, 'only after upgrade' AS side, u.object
  FROM (SELECT path, object, definition FROM paths WHERE path <> 'fresh'
        EXCEPT SELECT u2.path, f.object, f.definition
                 FROM paths f CROSS JOIN (SELECT DISTINCT path FROM paths WHERE path <> 'fresh') u2
                WHERE f.path = 'fresh') u
UNION ALL
SELECT u.path, 'only in fresh install', u.object
  FROM (SELECT u2.path, f.object, f.definition
          FROM paths f CROSS JOIN (SELECT DISTINCT path FROM paths WHERE path <> 'fresh') u2
         WHERE f.path = 'fresh'
        EXCEPT SELECT path, object, definition FROM paths WHERE path <> 'fresh') u
ORDER BY 1, 2, 3;

-- 3. Data written under 1.0 survives the whole chain and stays usable.
DROP EXTENSION alexandrite;
CREATE EXTENSION alexandrite VERSION '1.0';
SELECT alexandrite.create_order('UPG-1', 'crm', 'c-upg', NULL, 'pt950') AS upg \gset
SELECT alexandrite.set_status(:upg, 'priced', 'before-upgrade');
ALTER EXTENSION alexandrite UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'alexandrite';
SELECT external_ref, status FROM alexandrite.orders WHERE id = :upg;
SELECT to_status, actor FROM alexandrite.order_events WHERE order_id = :upg ORDER BY id;
SELECT alexandrite.set_status(:upg, 'cancelled', 'after-upgrade');

-- 4. Rows 1.1 accepted that 1.2 refuses (a weight of NaN, an operator id of
-- 250 characters) stop the upgrade with a message that names them and what
-- to do, not a bare check violation; once fixed, the upgrade goes through.
DROP EXTENSION alexandrite;
CREATE EXTENSION alexandrite VERSION '1.1';
UPDATE alexandrite.sla_policies SET weight = 'NaN' WHERE channel = 'crm' AND customer_id IS NULL;
INSERT INTO alexandrite.operators (id, name) VALUES (repeat('o', 250), 'long');
\set SHOW_CONTEXT never
ALTER EXTENSION alexandrite UPDATE;
UPDATE alexandrite.sla_policies SET weight = 1.5 WHERE channel = 'crm' AND customer_id IS NULL;
ALTER EXTENSION alexandrite UPDATE;
DELETE FROM alexandrite.operators WHERE length(id) > 200;
ALTER EXTENSION alexandrite UPDATE;
\set SHOW_CONTEXT errors
SELECT extversion FROM pg_extension WHERE extname = 'alexandrite';

-- leave a fresh installation for the tests that follow
DROP EXTENSION alexandrite;
CREATE EXTENSION alexandrite;
