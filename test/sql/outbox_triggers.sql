-- Order changes emit outbox events by themselves, in the same transaction.
\set VERBOSITY default
\set SHOW_CONTEXT never

BEGIN;
SET LOCAL alexandrite.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SELECT alexandrite.create_order('OBX-1', 'shop', 'cust-obx', NULL, 'ag925', '{"size": 54}') AS oid \gset
COMMIT;
-- the pricing engineer's step: set the price, then the status
BEGIN;
UPDATE alexandrite.orders SET price = 1234.50 WHERE id = :oid;
SELECT alexandrite.set_status(:oid, 'priced', 'pricer');
COMMIT;
-- a repeated request changes nothing and emits nothing
SELECT alexandrite.set_status(:oid, 'priced', 'pricer');
-- a refused transition emits nothing
SELECT alexandrite.set_status(:oid, 'shipped', 'pricer');
-- an SLA breach recorded by the SLA engine
INSERT INTO alexandrite.sla_breaches (order_id, sla_due_at, status_at_breach)
SELECT id, sla_due_at, status FROM alexandrite.orders WHERE id = :oid;
-- a cancelled change leaves nothing behind
BEGIN;
SELECT alexandrite.set_status(:oid, 'cancelled', 'clerk');
ROLLBACK;

SELECT aggregate_type, aggregate_id = :'oid' AS is_order, aggregate_seq, event_type,
       headers ? 'traceparent' AS traced
  FROM alexandrite.outbox WHERE aggregate_type = 'order' AND aggregate_id = :'oid'::text ORDER BY id;
SELECT payload - 'created_at' - 'sla_due_at' - 'order_id' AS created
  FROM alexandrite.outbox WHERE aggregate_id = :'oid'::text AND event_type = 'order.created';
SELECT headers->>'traceparent' AS trace
  FROM alexandrite.outbox WHERE aggregate_id = :'oid'::text AND event_type = 'order.created';
SELECT payload->>'from_status' AS from_status, payload->>'to_status' AS to_status, payload->>'actor' AS actor
  FROM alexandrite.outbox WHERE aggregate_id = :'oid'::text AND event_type = 'order.status_changed';
SELECT payload->>'price' AS price, payload->>'material' AS material
  FROM alexandrite.outbox WHERE aggregate_id = :'oid'::text AND event_type = 'order.priced';
SELECT payload->>'status_at_breach' AS status_at_breach, payload ? 'breached_at' AS has_time
  FROM alexandrite.outbox WHERE aggregate_id = :'oid'::text AND event_type = 'order.sla_breached';

-- every order has its order.created event (the core tests made some before us)
SELECT count(*) = (SELECT count(*) FROM alexandrite.orders) AS every_order_created
  FROM alexandrite.outbox WHERE event_type = 'order.created';
-- per order, the events follow the order_events rows one to one (plus priced)
SELECT bool_and(n_out = n_ev + n_priced) AS one_event_per_change
  FROM (SELECT o.id,
               (SELECT count(*) FROM alexandrite.outbox x WHERE x.aggregate_type = 'order' AND x.aggregate_id = o.id::text
                   AND x.event_type <> 'order.sla_breached') AS n_out,
               (SELECT count(*) FROM alexandrite.order_events e WHERE e.order_id = o.id) AS n_ev,
               (SELECT count(*) FROM alexandrite.order_events e WHERE e.order_id = o.id AND e.to_status = 'priced') AS n_priced
          FROM alexandrite.orders o) s;
