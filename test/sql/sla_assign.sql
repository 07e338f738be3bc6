-- assign_next, release_order, rebalance and the operator load they keep
\set VERBOSITY terse

-- Earlier test files may leave open orders behind: close them, so that the
-- pool and the board hold only this file's orders.
SELECT count(alexandrite.set_status(id, 'cancelled', 'sla-tests')) >= 0 AS leftovers_closed
  FROM alexandrite.orders WHERE status < 'shipped';

-- run a statement; its error with the numbers (order ids) masked, if any
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9]+', 'N', 'g');
END $$;

-- claim one order for an operator; its external_ref, or NULL
CREATE FUNCTION pg_temp.claim(op text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE v bigint;
BEGIN
    v := alexandrite.assign_next(op);
    RETURN (SELECT o.external_ref FROM alexandrite.orders o WHERE o.id = v);
END $$;

INSERT INTO alexandrite.operators (id, name, capacity, active) VALUES
    ('sla_ann', 'Ann', 2, true),
    ('sla_bob', 'Bob', 3, true),
    ('sla_cid', 'Cid', 5, false),
    ('sla_eve', 'Eve', 100, true),
    ('sla_zero', 'Zero', 0, true);

-- Twelve orders, four per channel, due at known offsets from now.  The due
-- and creation times are set directly here as a test fixture: create_order
-- derives them from now() and the policy.
SELECT count(alexandrite.create_order(r, ch, 'cust-' || r, NULL, NULL))
  FROM (VALUES ('S1', 'shop'), ('S2', 'shop'), ('S3', 'shop'), ('S4', 'shop'),
               ('B1', 'b2b_api'), ('B2', 'b2b_api'), ('B3', 'b2b_api'), ('B4', 'b2b_api'),
               ('C1', 'crm'), ('C2', 'crm'), ('C3', 'crm'), ('C4', 'crm')) v(r, ch);
UPDATE alexandrite.orders o
   SET sla_due_at = now() + v.off, created_at = now() + v.off - p.target
  FROM (VALUES ('S1', interval '-3 days'), ('S2', '1 day'), ('S3', '10 days'), ('S4', '20 days'),
               ('B1', '-1 day'), ('B2', '2 days'), ('B3', '5 days'), ('B4', '9 days'),
               ('C1', '-2 days'), ('C2', '3 days'), ('C3', '7 days'), ('C4', '13 days')) v(r, off),
       alexandrite.sla_policies p
 WHERE o.external_ref = v.r AND p.channel = o.channel AND p.customer_id IS NULL;
-- one of them was priced first
SELECT alexandrite.set_status(id, 'priced') FROM alexandrite.orders WHERE external_ref = 'C2';

-- the ranking assign_next must follow: sla_priority now, across channels
SELECT external_ref, channel, round(alexandrite.sla_priority(created_at, sla_due_at, channel)::numeric, 3) AS priority
  FROM alexandrite.orders
 WHERE status < 'shipped'
 ORDER BY alexandrite.sla_priority(created_at, sla_due_at, channel) DESC, id;

-- Claim in one transaction (one now()): Ann (capacity 2) gets the two most
-- urgent, then nothing; Bob the next three; Eve the rest; then the pool is empty.
BEGIN;
CREATE TEMP TABLE claims (n serial, operator text, external_ref text);
INSERT INTO claims (operator, external_ref)
SELECT op, pg_temp.claim(op)
  FROM unnest(ARRAY['sla_ann', 'sla_ann', 'sla_ann', 'sla_bob', 'sla_bob', 'sla_bob', 'sla_bob',
                    'sla_eve', 'sla_eve', 'sla_eve', 'sla_eve', 'sla_eve', 'sla_eve', 'sla_eve',
                    'sla_eve', 'sla_zero']) WITH ORDINALITY AS u(op, i)
 ORDER BY i;
SELECT n, operator, external_ref FROM claims ORDER BY n;
-- the claimed sequence is exactly the sla_priority ranking
SELECT array_agg(external_ref ORDER BY n) FILTER (WHERE external_ref IS NOT NULL)
     = (SELECT array_agg(external_ref ORDER BY alexandrite.sla_priority(created_at, sla_due_at, channel) DESC, id)
          FROM alexandrite.orders WHERE operator_id IS NOT NULL) AS claims_follow_priority
  FROM claims;
COMMIT;
DROP TABLE claims;

SELECT external_ref, status, operator_id FROM alexandrite.orders WHERE external_ref ~ '^[SBC][1-4]$' ORDER BY external_ref;
-- the claim went through set_status: an order event with the operator as actor
SELECT e.from_status, e.to_status, e.actor
  FROM alexandrite.order_events e JOIN alexandrite.orders o ON o.id = e.order_id
 WHERE o.external_ref IN ('B1', 'C2') ORDER BY o.external_ref, e.id;
-- the load table agrees with the orders
SELECT l.operator_id, l.open_orders,
       (SELECT count(*) FROM alexandrite.orders o WHERE o.operator_id = l.operator_id AND o.status < 'shipped') AS counted
  FROM alexandrite.operator_load l ORDER BY 1;

-- Errors
SELECT alexandrite.assign_next('nobody');
SELECT alexandrite.assign_next('sla_cid');
SELECT alexandrite.assign_next(NULL);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT alexandrite.assign_next('sla_eve');
ROLLBACK;

-- release_order: back to the status before the claim, operator cleared
SELECT alexandrite.release_order(id) FROM alexandrite.orders WHERE external_ref = 'B1';
SELECT alexandrite.release_order(id) FROM alexandrite.orders WHERE external_ref = 'C2';
SELECT external_ref, status, operator_id FROM alexandrite.orders WHERE external_ref IN ('B1', 'C2') ORDER BY 1;
SELECT pg_temp.try($$SELECT alexandrite.release_order(id) FROM alexandrite.orders WHERE external_ref = 'B1'$$);
SELECT alexandrite.release_order(424242);
SELECT operator_id, open_orders FROM alexandrite.operator_load ORDER BY 1;
-- Ann has room again and gets the most urgent released order
SELECT pg_temp.claim('sla_ann');
SELECT pg_temp.claim('sla_eve');

-- shipped or cancelled orders free capacity
SELECT alexandrite.set_status(id, 'cancelled') FROM alexandrite.orders WHERE external_ref = 'S1';
SELECT operator_id, open_orders FROM alexandrite.operator_load ORDER BY 1;

-- rebalance: Bob's capacity drops to 1 and Eve goes off sick.  Bob gives back
-- his least urgent 'assigned' orders, Eve all hers except the one in
-- production; then the urgent pool (due within 4 days) goes to whoever has
-- the lowest load.
UPDATE alexandrite.operators SET capacity = 1 WHERE id = 'sla_bob';
UPDATE alexandrite.operators SET active = false WHERE id = 'sla_eve';
UPDATE alexandrite.operators SET active = true, capacity = 2 WHERE id = 'sla_cid';
SELECT alexandrite.set_status(id, 'in_production') FROM alexandrite.orders WHERE external_ref = 'C4';
SELECT o.external_ref, r.from_operator, r.to_operator
  FROM alexandrite.rebalance('4 days') r JOIN alexandrite.orders o ON o.id = r.order_id
 ORDER BY r.from_operator NULLS LAST, o.external_ref;
SELECT external_ref, status, operator_id FROM alexandrite.orders WHERE external_ref ~ '^[SBC][1-4]$' ORDER BY external_ref;
SELECT l.operator_id, l.open_orders, op.capacity
  FROM alexandrite.operator_load l JOIN alexandrite.operators op ON op.id = l.operator_id ORDER BY 1;
-- a second run has nothing to do
SELECT count(*) AS moves FROM alexandrite.rebalance('4 days');
SELECT alexandrite.rebalance(NULL);

-- the load table rebuilds itself when rows are missing
DELETE FROM alexandrite.operator_load;
SELECT alexandrite.assign_next('sla_cid') IS NULL AS cid_full;
SELECT alexandrite.sla_recount_load() AS operators_holding;
SELECT operator_id, open_orders FROM alexandrite.operator_load ORDER BY 1;

-- a bulk load of held orders (as a restore's COPY does: the row triggers
-- fire after the whole statement) leaves the count unknown, never double
UPDATE alexandrite.operators SET capacity = 10 WHERE id = 'sla_ann';
DELETE FROM alexandrite.operator_load WHERE operator_id = 'sla_ann';
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, status, operator_id, sla_due_at)
SELECT 'L' || g, 'shop', 'c', 'assigned', 'sla_ann', now() + interval '30 days' FROM generate_series(1, 3) g;
SELECT operator_id, open_orders FROM alexandrite.operator_load WHERE operator_id = 'sla_ann';
SELECT pg_temp.claim('sla_ann');
SELECT operator_id, open_orders,
       (SELECT count(*) FROM alexandrite.orders o WHERE o.operator_id = 'sla_ann' AND o.status < 'shipped') AS counted
  FROM alexandrite.operator_load WHERE operator_id = 'sla_ann';

-- the claim's one write is set_status's: status, operator and both times
-- in the order row, the order event with the actor and the traceparent, and
-- the outbox event from its trigger
BEGIN;
SET LOCAL alexandrite.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SELECT count(alexandrite.create_order('S9', 'shop', 'cust-S9', NULL, NULL)) AS created;
SELECT alexandrite.assign_next('sla_ann') AS claimed \gset
SELECT o.status, o.operator_id, o.status_changed_at = e.at AND o.updated_at = e.at AS same_time,
       e.from_status, e.to_status, e.actor, e.traceparent,
       (SELECT count(*) FROM alexandrite.order_events x
         WHERE x.order_id = o.id AND x.to_status = 'assigned') AS assign_events
  FROM alexandrite.orders o
  JOIN alexandrite.order_events e ON e.order_id = o.id
 WHERE o.id = :claimed
   AND e.id = (SELECT max(x.id) FROM alexandrite.order_events x WHERE x.order_id = o.id);
SELECT count(*) AS outbox_assigned_events
  FROM alexandrite.outbox_events ev
 WHERE ev.aggregate_id = :'claimed' AND ev.event_type = 'order.status_changed'
   AND ev.payload->>'to_status' = 'assigned' AND ev.payload->>'operator_id' = 'sla_ann'
   AND ev.headers->>'traceparent' = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
ROLLBACK;
-- off the fast path (the state machine no longer allows the move): the
-- core's way, and the core's error
BEGIN;
SELECT count(alexandrite.create_order('S9', 'shop', 'cust-S9', NULL, NULL)) AS created;
DELETE FROM alexandrite.status_transitions WHERE to_status = 'assigned';
SELECT pg_temp.try($$SELECT alexandrite.assign_next('sla_ann')$$);
ROLLBACK;

-- a label the API names renamed under it (a DBA's ALTER TYPE ... RENAME
-- VALUE, in a session that has claimed before): 55000 with the way back, not
-- an internal error; the order read in a renamed status likewise
-- (right after the rolled-back change of status_transitions above: the
-- rename's failed load must not leave that transaction's state machine in
-- use, so nothing may load it in between)
BEGIN;
SELECT count(alexandrite.create_order('S9', 'shop', 'cust-S9', NULL, NULL)) AS created;
ALTER TYPE alexandrite.order_status RENAME VALUE 'assigned' TO 'taken';
SELECT pg_temp.try($$SELECT alexandrite.assign_next('sla_ann')$$);
ALTER TYPE alexandrite.order_status RENAME VALUE 'new' TO 'fresh';
SELECT pg_temp.try(format('SELECT alexandrite.set_status(%s, %L)',
                          (SELECT id FROM alexandrite.orders WHERE external_ref = 'S9'), 'cancelled'));
ROLLBACK;
BEGIN;
SELECT count(alexandrite.create_order('S9', 'shop', 'cust-S9', NULL, NULL)) AS created;
SELECT pg_temp.claim('sla_ann') IS NOT NULL AS claims_again;
ROLLBACK;

-- the operator's row is read through the primary key only while that is a
-- valid btree on id: with the key replaced by a partial index that misses
-- the operator, the claim reads the table with a query, and still claims
-- within capacity
BEGIN;
SELECT count(alexandrite.create_order('S9', 'shop', 'cust-S9', NULL, NULL)) AS created;
ALTER TABLE alexandrite.operators DROP CONSTRAINT operators_pkey CASCADE;
CREATE UNIQUE INDEX operators_not_ann ON alexandrite.operators (id) WHERE id <> 'sla_ann';
SELECT pg_temp.claim('sla_ann') IS NOT NULL AS claimed_without_key;
SELECT l.open_orders = (SELECT count(*) FROM alexandrite.orders o
                         WHERE o.operator_id = 'sla_ann' AND o.status < 'shipped') AS load_exact
  FROM alexandrite.operator_load l WHERE l.operator_id = 'sla_ann';
ROLLBACK;
-- a column the library decodes by its type, retyped by a DBA (no view
-- reads these): 55000 naming the column, not a value read as another type
-- (a numeric event_seq had events published with a garbage sequence)
BEGIN;
SELECT count(alexandrite.create_order('S9', 'shop', 'cust-S9', NULL, NULL)) AS created;
ALTER TABLE alexandrite.orders ALTER COLUMN event_seq TYPE numeric;
SELECT pg_temp.try(format('SELECT alexandrite.set_status(%s, %L)',
                          (SELECT id FROM alexandrite.orders WHERE external_ref = 'S9'), 'cancelled'));
ROLLBACK;
BEGIN;
SELECT count(alexandrite.create_order('S9', 'shop', 'cust-S9', NULL, NULL)) AS created;
ALTER TABLE alexandrite.operator_load ALTER COLUMN open_orders TYPE bigint;
SELECT pg_temp.try($$SELECT alexandrite.assign_next('sla_ann')$$);
ROLLBACK;
BEGIN;
ALTER TABLE alexandrite.operators ALTER COLUMN capacity TYPE numeric;
SELECT pg_temp.try($$SELECT alexandrite.assign_next('sla_ann')$$);
ROLLBACK;
-- the claim decodes the pool's rows itself: a retyped price (float8, read
-- as a numeric: a crash) or event_seq is 55000 there too
BEGIN;
SELECT count(alexandrite.create_order('S9', 'shop', 'cust-S9', NULL, NULL)) AS created;
UPDATE alexandrite.orders SET price = 10 WHERE status < 'assigned';
SAVEPOINT retyped;
ALTER TABLE alexandrite.orders ALTER COLUMN price TYPE float8;
SELECT pg_temp.try($$SELECT alexandrite.assign_next('sla_ann')$$);
ROLLBACK TO retyped;
ALTER TABLE alexandrite.orders ALTER COLUMN event_seq TYPE numeric;
SELECT pg_temp.try($$SELECT alexandrite.assign_next('sla_ann')$$);
ROLLBACK;
-- clean up
DELETE FROM alexandrite.orders WHERE external_ref ~ '^[SBCL][1-4]$';
SELECT count(*) AS load_rows_left FROM alexandrite.operator_load WHERE open_orders <> 0;
DELETE FROM alexandrite.operator_load;
DELETE FROM alexandrite.operators WHERE id LIKE 'sla\_%';
