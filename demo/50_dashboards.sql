-- The MES first page: exact dashboards read in milliseconds, folded in the background
\set QUIET on
\echo 'Orders per status and channel (dashboard_status_counts):'
SELECT * FROM alexandrite.dashboard_status_counts ORDER BY status, channel;
\echo 'Operator load (dashboard_operator_load):'
SELECT * FROM alexandrite.dashboard_operator_load ORDER BY operator_id;
\echo 'SLA per channel (dashboard_sla):'
SELECT * FROM alexandrite.dashboard_sla ORDER BY channel;
\echo 'Same figures from the orders table (they always agree):'
SELECT channel, count(*) FILTER (WHERE alexandrite.is_open(status)) AS open_orders,
       count(*) FILTER (WHERE alexandrite.is_open(status) AND sla_due_at >= now() AND sla_due_at < now() + interval '24 hours') AS at_risk_orders,
       count(*) FILTER (WHERE alexandrite.is_open(status) AND sla_due_at < now()) AS breached_orders
  FROM alexandrite.orders GROUP BY channel ORDER BY channel;
\echo 'Pending changes are folded into the summaries (the fold worker does it every second; pg_cron can too):'
SELECT alexandrite.refresh_dashboards() AS changes_folded;
SELECT dashboard, pending_changes, last_fold_at::timestamp(0), last_fold_ms FROM alexandrite.dashboard_lag ORDER BY dashboard;
\set QUIET off
