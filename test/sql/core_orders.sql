-- The order core: create_order, set_status, order_timeline, stuck_orders.
\set VERBOSITY default
\set SHOW_CONTEXT never
INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op1', 'Ana', 2), ('op2', 'Ben', 1);

-- create: the due time follows the channel's SLA policy
SELECT alexandrite.create_order('SHOP-1', 'shop', 'cust-1', NULL, 'au750_yellow', '{"note": "ring"}') AS id \gset
SELECT external_ref, channel, status, sla_due_at - created_at AS promised, payload
  FROM alexandrite.orders WHERE id = :id;
SELECT alexandrite.create_order('B2B-1', 'b2b_api', 'partner-9', NULL, 'pt950') AS b2b \gset
SELECT sla_due_at - created_at AS promised FROM alexandrite.orders WHERE id = :b2b;

-- a customer with its own contract
INSERT INTO alexandrite.sla_policies (channel, customer_id, target, weight)
VALUES ('b2b_api', 'partner-vip', '5 days', 4);
SELECT alexandrite.create_order('B2B-2', 'b2b_api', 'partner-vip', NULL, 'ag925') AS vip \gset
SELECT sla_due_at - created_at AS promised FROM alexandrite.orders WHERE id = :vip;

-- idempotent: a retry returns the same id and creates nothing
SELECT alexandrite.create_order('SHOP-1', 'shop', 'cust-1', NULL, 'au750_yellow') = :id AS same_id;
SELECT count(*) AS orders, (SELECT count(*) FROM alexandrite.order_events) AS events FROM alexandrite.orders;
-- ... but a "retry" that names another customer is a conflict
SELECT alexandrite.create_order('SHOP-1', 'shop', 'cust-2', NULL, 'au750_yellow');

-- bad input
SELECT alexandrite.create_order('X-1', 'fax', 'cust-1', NULL, 'ag925');
SELECT alexandrite.create_order('X-1', 'shop', 'cust-1', NULL, 'unobtainium');
SELECT alexandrite.create_order('', 'shop', 'cust-1', NULL, 'ag925');
SELECT alexandrite.create_order('X-1', 'shop', NULL, NULL, 'ag925');
SELECT alexandrite.create_order('X-1', 'shop', 'c', NULL, 'ag925', '[1,2]');
SELECT alexandrite.create_order('X-1', 'shop', 'c', 424242, 'ag925');
UPDATE alexandrite.materials SET active = false WHERE code = 'brass';
SELECT alexandrite.create_order('X-1', 'shop', 'c', NULL, 'brass');
SELECT count(*) AS still FROM alexandrite.orders;

-- the state machine
SELECT alexandrite.set_status(:id, 'priced', 'pricing-bot');
SELECT alexandrite.set_status(:id, 'priced');                  -- repeated: no change, no event
SELECT alexandrite.set_status(:id, 'shipped');                 -- skipping steps
SELECT alexandrite.set_status(:id, 'assigned');                -- no operator
SELECT alexandrite.set_status(424242, 'priced');
SELECT alexandrite.set_status(:id, NULL);
SELECT alexandrite.set_status(:id, 'lost');
UPDATE alexandrite.orders SET operator_id = 'op1' WHERE id = :id;
SELECT alexandrite.set_status(:id, 'assigned', 'ana');
SELECT alexandrite.set_status(:id, 'in_production', 'ana');
SELECT alexandrite.set_status(:id, 'quality_check', 'qc');
SELECT alexandrite.set_status(:id, 'in_production', 'qc');     -- rework
SELECT alexandrite.set_status(:id, 'quality_check', 'qc');
SELECT alexandrite.set_status(:id, 'shipped', 'shipping');
SELECT alexandrite.set_status(:id, 'cancelled');               -- final
SELECT status, operator_id FROM alexandrite.orders WHERE id = :id;

-- releasing an assigned order gives it back to the pool
UPDATE alexandrite.orders SET operator_id = 'op2' WHERE id = :b2b;
SELECT alexandrite.set_status(:b2b, 'assigned');
SELECT alexandrite.set_status(:b2b, 'new');
SELECT status, operator_id FROM alexandrite.orders WHERE id = :b2b;
SELECT alexandrite.set_status(:b2b, 'cancelled');
SELECT alexandrite.set_status(:b2b, 'new');

-- assign_order: operator and status in one step, with its event
SELECT alexandrite.create_order('ASG-1', 'crm', 'cust-4', NULL, NULL) AS asg \gset
SELECT alexandrite.assign_order(:asg, 'nobody');                -- not an operator
SELECT alexandrite.assign_order(:asg, 'op1');
SELECT alexandrite.assign_order(:asg, 'op1');                   -- repeated: no change
SELECT alexandrite.assign_order(:asg, 'op2');                   -- held by op1
SELECT status, operator_id FROM alexandrite.orders WHERE id = :asg;
SELECT from_status, to_status, actor FROM alexandrite.order_events WHERE order_id = :asg ORDER BY id;
SELECT alexandrite.assign_order(:asg, NULL);
SELECT alexandrite.assign_order(-1, 'op1');
SELECT alexandrite.set_status(:asg, 'cancelled');
SELECT alexandrite.assign_order(:asg, 'op1');

-- the actor: explicit, else alexandrite.actor, else the user
BEGIN;
SET LOCAL alexandrite.actor = 'mes-batch';
SELECT alexandrite.create_order('SHOP-2', 'shop', 'cust-3', NULL, NULL) AS s2 \gset
COMMIT;
SELECT actor FROM alexandrite.order_events WHERE order_id = :s2;

-- an error rolls back the whole change: no status without its event
BEGIN;
SELECT alexandrite.set_status(:s2, 'priced');
SELECT alexandrite.set_status(:s2, 'shipped');
ROLLBACK;
SELECT status, (SELECT count(*) FROM alexandrite.order_events WHERE order_id = :s2) AS events
  FROM alexandrite.orders WHERE id = :s2;

-- the model arrives after the order
INSERT INTO alexandrite.meshes (sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
                                size_x_mm, size_y_mm, size_z_mm, shells, watertight, boundary_edges,
                                nonmanifold_edges, degenerate_triangles)
VALUES (sha256('ring'), 'ring.stl', 'stl', 12, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 0)
RETURNING id AS mesh \gset
SELECT alexandrite.set_order_model(:s2, :mesh, 'pt950');
SELECT mesh_id = :mesh AS has_mesh, material FROM alexandrite.orders WHERE id = :s2;
SELECT alexandrite.set_order_model(:s2, NULL, 'ag925');
SELECT mesh_id = :mesh AS kept_mesh, material FROM alexandrite.orders WHERE id = :s2;
SELECT alexandrite.set_order_model(:s2, -5);
SELECT alexandrite.set_order_model(:s2, NULL, 'tin');
SELECT alexandrite.set_order_model(-1, :mesh);
SELECT alexandrite.set_order_model(:id, :mesh);

-- the timeline: every change, in order, with the time spent in each status
SELECT kind, from_status, to_status, actor, time_in_status IS NOT NULL AS timed
  FROM alexandrite.order_timeline(:id) WHERE kind = 'status';
SELECT count(*) FROM alexandrite.order_timeline(424242);

-- stuck orders: open, unchanged for longer than asked
UPDATE alexandrite.orders SET status_changed_at = now() - interval '3 days' WHERE id = :s2;
SELECT external_ref, status, stuck_for >= interval '3 days' AS three_days
  FROM alexandrite.stuck_orders();
SELECT count(*) FROM alexandrite.stuck_orders('4 days');
SELECT external_ref FROM alexandrite.stuck_orders('0') ORDER BY 1;
