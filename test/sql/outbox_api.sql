-- Order events come from the order API, in the same statement as the change
-- they describe: never from a trigger, never from guessing what a statement
-- is.  So COPY, a statement inside COPY (...) TO, several statements in one
-- query string, and direct writes of the tables behave by construction.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- a model to price (the numbers do not matter here)
INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
                                size_x_mm, size_y_mm, size_z_mm, shells, watertight, boundary_edges,
                                nonmanifold_edges, degenerate_triangles)
VALUES (950001, sha256('outbox api cube'), 'cube.stl', 'stl', 12, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 0);
INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('obx-op', 'Olga', 5);

-- the events of one order, in order
CREATE FUNCTION pg_temp.events(ref text) RETURNS TABLE (seq bigint, event_type text, traced boolean)
LANGUAGE sql AS $$
    SELECT x.aggregate_seq, x.event_type, x.headers ? 'traceparent'
      FROM alexandrite.outbox x JOIN alexandrite.orders o ON x.aggregate_id = o.id::text
     WHERE x.aggregate_type = 'order' AND o.external_ref = ref
     ORDER BY x.id
$$;

BEGIN;
SET LOCAL alexandrite.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SELECT alexandrite.create_order('OBX-1', 'shop', 'cust-obx', 950001, 'ag925', '{"size": 54}') AS oid \gset
COMMIT;
-- price_order sets the price: order.status_changed, then order.priced
SELECT total > 0 AS priced FROM alexandrite.price_order(:oid);
-- a repeated request changes nothing and emits nothing
SELECT alexandrite.set_status(:oid, 'priced', 'pricer');
-- a refused transition emits nothing
SELECT alexandrite.set_status(:oid, 'shipped', 'pricer');
-- assigned and released back to 'priced': no price was set, no order.priced
SELECT alexandrite.assign_order(:oid, 'obx-op');
SELECT alexandrite.release_order(:oid, 'clerk');
-- a cancelled change leaves nothing behind
BEGIN;
SELECT alexandrite.set_status(:oid, 'cancelled', 'clerk');
ROLLBACK;
-- the SLA engine records a breach: order.sla_breached, once
UPDATE alexandrite.orders SET sla_due_at = now() - interval '1 day' WHERE id = :oid;
SELECT alexandrite.escalate_overdue(true) >= 1 AS escalated;
SELECT alexandrite.escalate_overdue(true) AS again;
SELECT * FROM pg_temp.events('OBX-1');
SELECT event_seq FROM alexandrite.orders WHERE id = :oid;

SELECT payload - 'created_at' - 'sla_due_at' - 'order_id' AS created
  FROM alexandrite.outbox WHERE aggregate_id = :'oid'::text AND event_type = 'order.created';
SELECT headers->>'traceparent' AS trace
  FROM alexandrite.outbox WHERE aggregate_id = :'oid'::text AND event_type = 'order.created';
SELECT payload->>'from_status' AS from_status, payload->>'to_status' AS to_status, payload->>'actor' AS actor,
       payload->>'operator_id' AS operator_id
  FROM alexandrite.outbox WHERE aggregate_id = :'oid'::text AND event_type = 'order.status_changed' ORDER BY id;
SELECT (x.payload->>'price')::numeric = o.price AS price_of_the_order, x.payload->>'material' AS material
  FROM alexandrite.outbox x JOIN alexandrite.orders o ON o.id::text = x.aggregate_id
 WHERE x.aggregate_id = :'oid'::text AND x.event_type = 'order.priced';
SELECT payload->>'status_at_breach' AS status_at_breach, payload ? 'breached_at' AS has_time
  FROM alexandrite.outbox WHERE aggregate_id = :'oid'::text AND event_type = 'order.sla_breached';

-- Writing the tables directly (a superuser here; the MES has no such
-- right) changes rows, and emits nothing: events come from the API.
INSERT INTO alexandrite.order_events (order_id, from_status, to_status, actor)
VALUES (:oid, 'priced', 'priced', 'direct');
DELETE FROM alexandrite.sla_breaches WHERE order_id = :oid;
INSERT INTO alexandrite.sla_breaches (order_id, sla_due_at, status_at_breach)
SELECT id, sla_due_at, status FROM alexandrite.orders WHERE id = :oid;
SELECT count(*) AS events_still FROM alexandrite.outbox WHERE aggregate_type = 'order' AND aggregate_id = :'oid'::text;

-- COPY into a table whose trigger calls the API: every order gets its event
-- (1.1 took any statement starting with COPY for a restore and emitted nothing)
CREATE TABLE public.shop_import (ref text, customer text);
CREATE FUNCTION public.shop_import_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM alexandrite.create_order(NEW.ref, 'shop', NEW.customer, NULL, NULL);
    RETURN NULL;
END $$;
CREATE TRIGGER shop_import_order AFTER INSERT ON public.shop_import
    FOR EACH ROW EXECUTE FUNCTION public.shop_import_order();
COPY public.shop_import (ref, customer) FROM stdin;
OBX-COPY-1	c-copy
OBX-COPY-2	c-copy
OBX-COPY-3	c-copy
\.
SELECT o.external_ref, e.seq, e.event_type
  FROM alexandrite.orders o, pg_temp.events(o.external_ref) e
 WHERE o.external_ref LIKE 'OBX-COPY-%' ORDER BY 1, 2;

-- a status change inside COPY (...) TO STDOUT
COPY (SELECT alexandrite.set_status(o.id, 'cancelled', 'copy-out') IS NULL AS done
        FROM alexandrite.orders o WHERE o.external_ref = 'OBX-COPY-1') TO STDOUT;
SELECT * FROM pg_temp.events('OBX-COPY-1');

-- several statements in one query string
SELECT alexandrite.create_order('OBX-MULTI', 'crm', 'c-multi', NULL, NULL) > 0 AS created \; SELECT alexandrite.set_status(id, 'cancelled', 'multi') FROM alexandrite.orders WHERE external_ref = 'OBX-MULTI' \; SELECT count(*) AS events FROM pg_temp.events('OBX-MULTI');
SELECT * FROM pg_temp.events('OBX-MULTI');

-- Loading rows the way pg_restore does (COPY of the tables) creates no
-- event, and the events loaded with them are kept as they were.
SELECT count(*) AS outbox_before FROM alexandrite.outbox_events \gset
COPY alexandrite.orders (external_ref, channel, customer_id, status, sla_due_at, event_seq) FROM stdin;
OBX-LOADED	shop	c-load	priced	2030-01-01 00:00:00+00	7
\.
SELECT count(*) - :outbox_before AS new_events FROM alexandrite.outbox_events;
SELECT status, event_seq FROM alexandrite.orders WHERE external_ref = 'OBX-LOADED';

DELETE FROM alexandrite.orders WHERE external_ref = 'OBX-LOADED';

-- every order has its order.created event (the core tests made some before us)
SELECT count(*) = (SELECT count(*) FROM alexandrite.orders) AS every_order_created
  FROM alexandrite.outbox WHERE event_type = 'order.created';
-- per order, gap-free: seqs 1..event_seq, one status event per status change
-- made through the API, order.priced only with a quote
SELECT bool_and(s.seqs = s.event_seq AND s.max_seq = s.event_seq) AS gap_free,
       bool_and(s.n_priced = s.n_quotes) AS priced_iff_quoted
  FROM (SELECT o.id, o.event_seq,
               (SELECT count(DISTINCT x.aggregate_seq) FROM alexandrite.outbox x
                 WHERE x.aggregate_type = 'order' AND x.aggregate_id = o.id::text) AS seqs,
               (SELECT max(x.aggregate_seq) FROM alexandrite.outbox x
                 WHERE x.aggregate_type = 'order' AND x.aggregate_id = o.id::text) AS max_seq,
               (SELECT count(*) FROM alexandrite.outbox x
                 WHERE x.aggregate_type = 'order' AND x.aggregate_id = o.id::text
                   AND x.event_type = 'order.priced') AS n_priced,
               (SELECT count(*) FROM alexandrite.quotes q WHERE q.order_id = o.id) AS n_quotes
          FROM alexandrite.orders o) s;

DROP TABLE public.shop_import;
DROP FUNCTION public.shop_import_order();
DELETE FROM alexandrite.orders WHERE external_ref LIKE 'OBX-%';
DELETE FROM alexandrite.operator_load WHERE operator_id = 'obx-op';
DELETE FROM alexandrite.operators WHERE id = 'obx-op';
