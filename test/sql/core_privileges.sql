-- The MES needs nothing but EXECUTE on the order API and SELECT on what it
-- reads: the API runs its compiled statements as the extension owner, and
-- records the MES's role as the actor.  Writing the tables directly is
-- refused, as is every function it was not granted.
\set VERBOSITY terse
CREATE ROLE alx_mes;
GRANT USAGE ON SCHEMA alexandrite TO alx_mes;
GRANT EXECUTE ON FUNCTION
    alexandrite.create_order(text, text, text, bigint, text, jsonb),
    alexandrite.set_status(bigint, alexandrite.order_status, text),
    alexandrite.assign_next(text),
    alexandrite.assign_order(bigint, text, text),
    alexandrite.release_order(bigint, text),
    alexandrite.set_order_model(bigint, bigint, text),
    alexandrite.price_order(bigint, jsonb)
  TO alx_mes;
GRANT SELECT ON alexandrite.orders, alexandrite.order_events, alexandrite.operators TO alx_mes;

-- earlier test files leave open orders behind: close them, so that the
-- pool holds only this file's orders
SELECT count(alexandrite.set_status(id, 'cancelled', 'privileges-test')) >= 0 AS leftovers_closed
  FROM alexandrite.orders WHERE status < 'shipped';

-- reference data the DBA keeps
INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('mes-op', 'Mia', 3);
INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
                                size_x_mm, size_y_mm, size_z_mm, shells, watertight, boundary_edges,
                                nonmanifold_edges, degenerate_triangles)
VALUES (950101, sha256('mes cube'), 'cube.stl', 'stl', 12, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 0);

SET ROLE alx_mes;
-- a search_path of its own, with a table shadowing the extension's name
CREATE TEMP TABLE orders (id bigint);
SET search_path = pg_temp, public;
SELECT alexandrite.create_order('MES-1', 'shop', 'c-mes', NULL, NULL) AS o1 \gset
SELECT alexandrite.create_order('MES-1', 'shop', 'c-mes', NULL, NULL) = :o1 AS retry_same_id;
SELECT alexandrite.create_order('MES-2', 'b2b_api', 'c-mes', 950101, 'ag925') AS o2 \gset
SELECT count(*) AS shadow_untouched FROM pg_temp.orders;
SELECT total > 0 AS priced FROM alexandrite.price_order(:o2);
SELECT alexandrite.set_status(:o1, 'cancelled');
SELECT alexandrite.assign_next('mes-op') = :o2 AS claimed;
SELECT alexandrite.release_order(:o2);
SELECT alexandrite.assign_order(:o2, 'mes-op', 'mes-dispatch');
SELECT alexandrite.set_status(:o2, 'in_production');
RESET search_path;
SELECT external_ref, status, operator_id, price IS NOT NULL AS has_price
  FROM alexandrite.orders WHERE external_ref LIKE 'MES-%' ORDER BY 1;
-- the actor is the calling role (or the operator, or the one named), never the owner
SELECT e.to_status, e.actor FROM alexandrite.order_events e JOIN alexandrite.orders o ON o.id = e.order_id
 WHERE o.external_ref = 'MES-2' ORDER BY e.id;

-- no direct writes
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at) VALUES ('MES-X', 'shop', 'c', now());
UPDATE alexandrite.orders SET status = 'shipped' WHERE id = :o2;
DELETE FROM alexandrite.orders WHERE id = :o2;
INSERT INTO alexandrite.order_events (order_id, to_status) VALUES (:o2, 'shipped');
INSERT INTO alexandrite.outbox_events_0 (id, aggregate_type, aggregate_id, aggregate_seq, event_type, payload)
VALUES (-1, 'order', :'o2', 99, 'order.shipped', '{}');
INSERT INTO alexandrite.outbox_aggregates VALUES ('order', :'o2', 99);
UPDATE alexandrite.operator_load SET open_orders = 0;
INSERT INTO alexandrite.sla_breaches (order_id, sla_due_at, status_at_breach) VALUES (:o2, now(), 'new');
-- nor the functions it was not granted
SELECT alexandrite.outbox_emit('order', :'o2', 'order.shipped', '{}');
SELECT alexandrite.escalate_overdue();
SELECT count(*) FROM alexandrite.rebalance();
SELECT alexandrite.sla_recount_load();
DROP TABLE pg_temp.orders;
RESET ROLE;

-- the outbox has one event per change made through the API, in order
SELECT x.aggregate_seq, x.event_type FROM alexandrite.outbox x
 WHERE x.aggregate_type = 'order' AND x.aggregate_id = :'o2' ORDER BY x.id;
SELECT o.event_seq FROM alexandrite.orders o WHERE o.id = :o2;

DELETE FROM alexandrite.orders WHERE external_ref LIKE 'MES-%';
DELETE FROM alexandrite.operator_load WHERE operator_id = 'mes-op';
DELETE FROM alexandrite.operators WHERE id = 'mes-op';
DELETE FROM alexandrite.meshes WHERE id = 950101;
REVOKE ALL ON alexandrite.orders, alexandrite.order_events, alexandrite.operators FROM alx_mes;
REVOKE ALL ON FUNCTION
    alexandrite.create_order(text, text, text, bigint, text, jsonb),
    alexandrite.set_status(bigint, alexandrite.order_status, text),
    alexandrite.assign_next(text),
    alexandrite.assign_order(bigint, text, text),
    alexandrite.release_order(bigint, text),
    alexandrite.set_order_model(bigint, bigint, text),
    alexandrite.price_order(bigint, jsonb)
  FROM alx_mes;
REVOKE USAGE ON SCHEMA alexandrite FROM alx_mes;
DROP ROLE alx_mes;
