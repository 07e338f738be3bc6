-- Installation: the extension, its schema, its GUCs and its seed data.
CREATE EXTENSION alexandrite;
SELECT extversion FROM pg_extension WHERE extname = 'alexandrite';
SELECT alexandrite.version() IS NOT NULL AS has_library;

-- the schema is created by the script (not relocatable)
SELECT n.nspname, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'alexandrite';

-- the state machine
SELECT pg_catalog.enum_range(NULL::alexandrite.order_status);
SELECT from_status, string_agg(to_status::text, ', ' ORDER BY to_status) AS may_go_to
  FROM alexandrite.status_transitions GROUP BY from_status ORDER BY from_status;

-- seed data: alloys and SLA policies
SELECT code, name, density_g_cm3 FROM alexandrite.materials ORDER BY code;
SELECT channel, customer_id, target, weight FROM alexandrite.sla_policies ORDER BY channel;

-- GUCs are registered (values of the superuser-only URL are not shown here)
SELECT name, setting, context FROM pg_settings
 WHERE name IN ('alexandrite.amqp_exchange', 'alexandrite.outbox_batch_size',
                'alexandrite.outbox_max_attempts', 'alexandrite.mesh_timeout',
                'alexandrite.actor', 'alexandrite.traceparent')
 ORDER BY name;
SET alexandrite.no_such_setting = 1;
SET alexandrite.traceparent = 'not a trace';
SET alexandrite.amqp_exchange = 'has space';

-- user-data tables are dumped by pg_dump
SELECT c.relname
  FROM pg_extension e, unnest(e.extconfig) AS t(oid) JOIN pg_class c ON c.oid = t.oid
 WHERE e.extname = 'alexandrite'
   AND c.relname IN ('orders', 'orders_id_seq', 'order_events', 'order_events_id_seq', 'operators',
                     'materials', 'sla_policies', 'sla_policies_id_seq', 'meshes', 'meshes_id_seq',
                     'sla_breaches')
 ORDER BY 1;
