-- Upgrades: installing 1.0 and updating gives the same objects as a fresh
-- install of the default version, and data written by 1.0 survives.
CREATE FUNCTION pg_temp.alx_fingerprint() RETURNS TABLE (object text, definition text)
LANGUAGE sql AS $$
    SELECT pg_describe_object(d.classid, d.objid, 0),
           CASE d.classid
             WHEN 'pg_proc'::regclass THEN pg_get_functiondef(d.objid)
             WHEN 'pg_class'::regclass THEN
                  (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                     || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                                     || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),
                                     ', ' ORDER BY a.attnum)
                     FROM pg_attribute a
                     LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                    WHERE a.attrelid = d.objid AND a.attnum > 0 AND NOT a.attisdropped)
               || coalesce(' | ' || (SELECT string_agg(pg_get_indexdef(i.indexrelid), '; ' ORDER BY pg_get_indexdef(i.indexrelid))
                                       FROM pg_index i WHERE i.indrelid = d.objid), '')
               || coalesce(' | ' || (SELECT string_agg(pg_get_constraintdef(c.oid), '; ' ORDER BY pg_get_constraintdef(c.oid))
                                       FROM pg_constraint c WHERE c.conrelid = d.objid), '')
               || coalesce(' | ' || (SELECT string_agg(pg_get_triggerdef(t.oid), '; ' ORDER BY pg_get_triggerdef(t.oid))
                                       FROM pg_trigger t WHERE t.tgrelid = d.objid AND NOT t.tgisinternal), '')
               || coalesce(' | ' || pg_get_viewdef(d.objid), '')
               || coalesce(' | ' || (SELECT array_to_string(c.reloptions, ',') FROM pg_class c WHERE c.oid = d.objid), '')
             WHEN 'pg_type'::regclass THEN format_type(d.objid, NULL)
             ELSE ''
           END
      FROM pg_depend d
     WHERE d.refclassid = 'pg_extension'::regclass
       AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'alexandrite')
       AND d.deptype = 'e'
$$;

DROP EXTENSION alexandrite;
CREATE EXTENSION alexandrite;
CREATE TEMP TABLE fresh AS SELECT * FROM pg_temp.alx_fingerprint();
SELECT count(*) > 20 AS many_objects FROM fresh;

DROP EXTENSION alexandrite;
CREATE EXTENSION alexandrite VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'alexandrite';
-- data written under 1.0
SELECT alexandrite.create_order('UPG-1', 'crm', 'c-upg', NULL, 'pt950') AS upg \gset
SELECT alexandrite.set_status(:upg, 'priced', 'before-upgrade');
ALTER EXTENSION alexandrite UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'alexandrite';
CREATE TEMP TABLE upgraded AS SELECT * FROM pg_temp.alx_fingerprint();

-- the same objects with the same definitions
SELECT 'only in fresh' AS side, object FROM (SELECT * FROM fresh EXCEPT SELECT * FROM upgraded) x
UNION ALL
SELECT 'only in upgraded', object FROM (SELECT * FROM upgraded EXCEPT SELECT * FROM fresh) y
ORDER BY 1, 2;

-- and the 1.0 data is still there and usable
SELECT external_ref, status FROM alexandrite.orders WHERE id = :upg;
SELECT to_status, actor FROM alexandrite.order_events WHERE order_id = :upg ORDER BY id;
SELECT alexandrite.set_status(:upg, 'cancelled', 'after-upgrade');

-- leave a fresh installation for the tests that follow
DROP EXTENSION alexandrite;
CREATE EXTENSION alexandrite;
