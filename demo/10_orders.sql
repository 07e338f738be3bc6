-- Orders arrive from the shop, B2B partners and the CRM, and move through production
\set QUIET on
INSERT INTO alexandrite.operators (id, name, capacity) VALUES
    ('ana', 'Ana (casting)', 5), ('ben', 'Ben (setting)', 3), ('cleo', 'Cleo (polishing)', 4);
-- 30 orders over the last 25 days
SELECT count(*) AS orders_created FROM (
    SELECT alexandrite.create_order('DEMO-' || i, (ARRAY['shop', 'b2b_api', 'crm'])[1 + i % 3],
                                    'customer-' || (i % 9), NULL,
                                    (ARRAY['au750_yellow', 'ag925', 'pt950', 'au585_rose'])[1 + i % 4],
                                    jsonb_build_object('item', (ARRAY['ring', 'pendant', 'earrings'])[1 + i % 3]))
      FROM generate_series(1, 30) i) x;
-- pretend they arrived over the last weeks
UPDATE alexandrite.orders SET created_at = created_at - (id * interval '20 hours'),
       sla_due_at = sla_due_at - (id * interval '20 hours'),
       status_changed_at = status_changed_at - (id * interval '20 hours');
UPDATE alexandrite.order_events SET at = at - (order_id * interval '20 hours');
SELECT alexandrite.set_status(id, 'priced', 'pricing') FROM alexandrite.orders WHERE id % 2 = 0;
UPDATE alexandrite.orders SET operator_id = (ARRAY['ana', 'ben', 'cleo'])[1 + id % 3] WHERE id % 4 = 0;
SELECT alexandrite.set_status(id, 'assigned', operator_id) FROM alexandrite.orders WHERE id % 4 = 0;
SELECT alexandrite.set_status(id, 'in_production', operator_id) FROM alexandrite.orders WHERE id % 8 = 0;
SELECT alexandrite.set_status(id, 'cancelled', 'crm') FROM alexandrite.orders WHERE id = 5;
\set QUIET off
\echo
\echo 'Orders per status and channel:'
SELECT status, channel, count(*) FROM alexandrite.orders GROUP BY 1, 2 ORDER BY 1, 2;
\echo 'The history of order 8:'
SELECT at::timestamp(0), from_status, to_status, actor, date_trunc('second', time_in_status) AS time_in_status
  FROM alexandrite.order_timeline(8);
\echo 'Orders stuck for more than 10 days:'
SELECT external_ref, status, channel, operator_id, date_trunc('hour', stuck_for) AS stuck_for, overdue
  FROM alexandrite.stuck_orders('10 days') LIMIT 10;
