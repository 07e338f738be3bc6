-- escalate_overdue: once per order, idempotent; schedule_escalation and pg_cron
\set VERBOSITY terse

-- Earlier test files may leave open orders behind: close them, so that the
-- pool and the board hold only this file's orders.
SELECT count(alexandrite.set_status(id, 'cancelled', 'sla-tests')) >= 0 AS leftovers_closed
  FROM alexandrite.orders WHERE status < 'shipped';

SELECT count(alexandrite.create_order(r, ch, 'cust-' || r, NULL, NULL))
  FROM (VALUES ('E1', 'shop'), ('E2', 'b2b_api'), ('E3', 'crm'), ('E4', 'shop'), ('E5', 'crm')) v(r, ch);
-- test fixture: move due times into the past (create_order sets now() + target)
UPDATE alexandrite.orders o SET sla_due_at = now() + v.off
  FROM (VALUES ('E1', interval '-2 days'), ('E2', '-1 hour'), ('E3', '-1 second'),
               ('E4', '-5 days'), ('E5', '3 days')) v(r, off)
 WHERE o.external_ref = v.r;
-- E4 was cancelled before anyone noticed: closed orders do not breach
SELECT alexandrite.set_status(id, 'cancelled') FROM alexandrite.orders WHERE external_ref = 'E4';
INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('sla_esc', 'Esc', 5);
SELECT alexandrite.assign_next('sla_esc') IS NOT NULL AS assigned;

SELECT alexandrite.escalate_overdue() AS first_run;
SELECT o.external_ref, b.status_at_breach, b.operator_id, b.sla_due_at = o.sla_due_at AS due_recorded,
       b.breached_at > b.sla_due_at AND b.breached_at <= now() AS breached_after_due
  FROM alexandrite.sla_breaches b JOIN alexandrite.orders o ON o.id = b.order_id
 WHERE o.external_ref ~ '^E[1-7]$' ORDER BY o.external_ref;
-- idempotent: nothing new, nothing changed
SELECT alexandrite.escalate_overdue() AS second_run;
SELECT count(*) AS breaches FROM alexandrite.sla_breaches b JOIN alexandrite.orders o ON o.id = b.order_id
 WHERE o.external_ref ~ '^E[1-7]$';
-- a breach stays recorded once, whatever happens to the order afterwards
UPDATE alexandrite.orders SET sla_due_at = now() - interval '1 day' WHERE external_ref = 'E5';
SELECT alexandrite.escalate_overdue() AS third_run;
SELECT alexandrite.set_status(id, 'priced') FROM alexandrite.orders WHERE external_ref = 'E5';
SELECT alexandrite.escalate_overdue() AS fourth_run;
SELECT o.external_ref, b.status_at_breach
  FROM alexandrite.sla_breaches b JOIN alexandrite.orders o ON o.id = b.order_id
 WHERE o.external_ref ~ '^E[1-7]$' ORDER BY o.external_ref;

-- Runs look at the due times since the previous run; writes that put a due
-- time in the past ask the next run for a full scan.
SELECT scan_from IS NOT NULL AS windowed, last_full_scan IS NOT NULL AS had_full_scan
  FROM alexandrite.sla_escalation_state;
-- an order loaded with a past due time (as a restore or an import would)
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at)
VALUES ('E6', 'crm', 'c', now() - interval '3 days');
SELECT scan_from IS NULL AS full_scan_requested FROM alexandrite.sla_escalation_state;
SELECT alexandrite.escalate_overdue() AS after_backdated_insert;
-- a write as a logical replication apply makes it (session_replication_role
-- = replica) is seen as well: the maintenance triggers fire always
SET session_replication_role = replica;
UPDATE alexandrite.orders SET sla_due_at = now() - interval '10 days' WHERE external_ref = 'E1';
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at)
VALUES ('E7', 'shop', 'c', now() - interval '9 days');
RESET session_replication_role;
SELECT alexandrite.escalate_overdue() AS windowed_run;
-- only a write with the triggers disabled escapes a windowed run; a full
-- scan (hourly, or asked for) still finds it
ALTER TABLE alexandrite.orders DISABLE TRIGGER orders_maintain_ins;
INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at)
VALUES ('E8', 'shop', 'c', now() - interval '8 days');
ALTER TABLE alexandrite.orders ENABLE ALWAYS TRIGGER orders_maintain_ins;
SELECT alexandrite.escalate_overdue() AS windowed_run_disabled;
SELECT alexandrite.escalate_overdue(full_scan => true) AS full_run;
-- those writes also skipped the dashboards' capture: rebuild them so that the
-- tests after this one read dashboards that match the orders
SELECT bool_and(alexandrite.rebuild_dashboard(name) >= 0) AS dashboards_rebuilt FROM alexandrite.dashboards;
SELECT o.external_ref FROM alexandrite.sla_breaches b JOIN alexandrite.orders o ON o.id = b.order_id
 WHERE o.external_ref ~ '^E[1-8]$' ORDER BY o.external_ref;

-- (a run racing another one: test/isolation/specs/sla_escalate_race.spec)

-- administrative: not for PUBLIC
CREATE ROLE alx_sla_clerk;
GRANT USAGE ON SCHEMA alexandrite TO alx_sla_clerk;
SET ROLE alx_sla_clerk;
SELECT alexandrite.escalate_overdue();
SELECT alexandrite.schedule_escalation();
SELECT count(*) FROM alexandrite.rebalance();
RESET ROLE;
REVOKE USAGE ON SCHEMA alexandrite FROM alx_sla_clerk;
DROP ROLE alx_sla_clerk;

-- schedule_escalation needs pg_cron in this database
SELECT count(*) AS pg_cron_installed FROM pg_extension WHERE extname = 'pg_cron';
SELECT alexandrite.schedule_escalation();
CREATE EXTENSION pg_cron;
SELECT alexandrite.schedule_escalation() AS jobid \gset
SELECT jobname, schedule, command FROM cron.job WHERE jobid = :jobid;
-- calling again changes the schedule of the same job
SELECT alexandrite.schedule_escalation('*/5 * * * *') = :jobid AS same_job;
SELECT jobname, schedule, command FROM cron.job ORDER BY jobid;
SELECT alexandrite.schedule_escalation('every full moon');
SELECT alexandrite.schedule_escalation('');
DROP EXTENSION pg_cron;

-- clean up
DELETE FROM alexandrite.orders WHERE external_ref ~ '^E[1-8]$';
DELETE FROM alexandrite.operator_load;
DELETE FROM alexandrite.operators WHERE id = 'sla_esc';
