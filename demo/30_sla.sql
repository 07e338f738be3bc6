-- Operators claim the most urgent orders: SLA priority across channels, capacity respected
\set QUIET on
\echo 'Priority of an order due in 2 days, created 8 days ago, per channel (higher = more urgent):'
SELECT channel, round(alexandrite.sla_priority(now() - interval '8 days', now() + interval '2 days', channel)::numeric, 3) AS priority
  FROM (VALUES ('shop'), ('crm'), ('b2b_api')) c(channel) ORDER BY priority DESC;
\echo 'The five most urgent open orders (order_board, keyset-paginated):'
SELECT id, external_ref, status, channel, operator_id, sla_due_at::timestamp(0) AS due, round(priority::numeric, 3) AS priority
  FROM alexandrite.order_board(NULL, 5);
\echo 'Each operator claims work until full (assign_next is atomic; concurrent callers never get the same order):'
SELECT op.id AS operator, op.capacity, array_agg(o.external_ref ORDER BY c.n) FILTER (WHERE o.id IS NOT NULL) AS claimed
  FROM alexandrite.operators op
  CROSS JOIN LATERAL (SELECT n, alexandrite.assign_next(op.id) AS order_id FROM generate_series(1, 3) n) c
  LEFT JOIN alexandrite.orders o ON o.id = c.order_id
 GROUP BY op.id, op.capacity ORDER BY op.id;
\echo 'Overdue orders escalated once (each emits order.sla_breached to RabbitMQ):'
SELECT alexandrite.escalate_overdue() AS breaches_recorded;
SELECT alexandrite.escalate_overdue() AS recorded_again;
\set QUIET off
