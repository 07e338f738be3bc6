-- On call: Prometheus metrics, an order traced across services, stuck orders
\set QUIET on
\o /dev/null
-- the MES moves an order along inside a traced transaction (W3C traceparent)
BEGIN;
SELECT alexandrite.set_traceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01') IS NOT NULL AS traced;
SELECT alexandrite.set_status(16, 'quality_check', 'qc-station-2');
COMMIT;
SELECT pg_sleep(1);     -- the relay publishes within a moment when RabbitMQ runs
\o
\set QUIET off
\echo
\echo 'Order 16 from the MES to RabbitMQ: each status, the time spent in it, each message with its delivery state and trace id:'
SELECT at::timestamp(0), kind, coalesce(to_status::text, event_type) AS what, actor,
       date_trunc('second', time_in_status) AS time_in_status, message_id, delivery_state,
       left(detail->>'trace_id', 12) AS trace_id
  FROM alexandrite.order_timeline(16);
\echo 'What Prometheus scrapes (alexandrite.metrics(), or prometheus-postgres-exporter with docs/prometheus-postgres-exporter.yml), a few lines:'
SELECT line FROM regexp_split_to_table(alexandrite.metrics(), E'\n') AS line
 WHERE line ~ '^alexandrite_(orders_in_status\{channel="shop"|stuck_orders|sla_breached_orders|outbox_(pending_messages|oldest_pending_age_seconds|published_total|relay_connected)|dashboard_pending_changes\{dashboard="status_counts"|operator_open_orders)';
\echo 'Alerts that would fire (docs/alerts.yml): stuck orders, SLA breaches, outbox backlog age, relay disconnected, dashboard lag.'
SELECT family, labels, value FROM alexandrite.metric_samples()
 WHERE (family = 'alexandrite_stuck_orders' AND value > 0)
    OR (family = 'alexandrite_sla_breached_orders' AND value > 0)
    OR (family = 'alexandrite_outbox_oldest_pending_age_seconds' AND value > 60)
    OR (family = 'alexandrite_outbox_relay_connected' AND value = 0)
    OR (family = 'alexandrite_dashboard_oldest_pending_age_seconds' AND value > 120)
 ORDER BY family, labels::text;
