-- Tracing: a W3C traceparent attached to a transaction is recorded with the
-- order events it writes; order_timeline shows statuses, the time spent in
-- each, and the events' trace ids.
\set VERBOSITY terse

-- set_traceparent: per transaction by default, validated, NULL clears
SET alexandrite.actor = 'mes';
BEGIN;
SELECT alexandrite.set_traceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01') AS set;
SELECT alexandrite.current_traceparent();
SELECT alexandrite.create_order('TR-1', 'shop', 'tr-c', NULL, NULL) > 0 AS created;
SELECT alexandrite.set_traceparent(NULL) AS cleared, alexandrite.current_traceparent() AS now_none;
COMMIT;
SELECT alexandrite.current_traceparent() AS after_commit;
SELECT alexandrite.set_traceparent('00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01');
SELECT alexandrite.set_traceparent('not a trace');
SELECT alexandrite.set_traceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', false) IS NOT NULL AS session_wide;
SELECT alexandrite.set_status(id, 'priced', 'tr') FROM alexandrite.orders WHERE external_ref = 'TR-1';
SELECT alexandrite.set_traceparent(NULL, false) AS cleared_session;
SELECT alexandrite.set_status(id, 'cancelled', 'tr') FROM alexandrite.orders WHERE external_ref = 'TR-1';

SELECT e.from_status, e.to_status, e.actor, e.traceparent
  FROM alexandrite.order_events e JOIN alexandrite.orders o ON o.id = e.order_id
 WHERE o.external_ref = 'TR-1' ORDER BY e.id;

-- new_traceparent: a valid, fresh context each call
SELECT alexandrite.new_traceparent() ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-01$' AS well_formed,
       alexandrite.new_traceparent() <> alexandrite.new_traceparent() AS fresh;
BEGIN;
SELECT alexandrite.set_traceparent(alexandrite.new_traceparent()) = alexandrite.current_traceparent() AS accepted;
ROLLBACK;

-- the timeline: statuses in order, the time spent in each (none after a
-- final status), and the trace id of each change
UPDATE alexandrite.order_events SET at = at - interval '3 hours'
 WHERE order_id = (SELECT id FROM alexandrite.orders WHERE external_ref = 'TR-1') AND to_status = 'new';
SELECT kind, from_status, to_status, actor, time_in_status >= interval '3 hours' AS long_in_status,
       time_in_status IS NULL AS no_time, detail->>'trace_id' AS trace_id
  FROM alexandrite.order_timeline((SELECT id FROM alexandrite.orders WHERE external_ref = 'TR-1'))
 WHERE kind = 'status';
-- and the outbox messages about the order, with their delivery state and
-- the trace id they carry in their traceparent header
SELECT event_type, message_id IS NOT NULL AS has_id,
       delivery_state IN ('pending', 'published') AS delivery_known,
       detail->>'routing_key' AS routing_key, detail->>'aggregate_seq' AS seq, detail->>'trace_id' AS trace_id
  FROM alexandrite.order_timeline((SELECT id FROM alexandrite.orders WHERE external_ref = 'TR-1'))
 WHERE kind = 'message';
-- statuses and messages interleave by time: each status before the messages it caused
SELECT string_agg(CASE kind WHEN 'status' THEN to_status::text ELSE event_type END, ' > ' ORDER BY n)
  FROM alexandrite.order_timeline((SELECT id FROM alexandrite.orders WHERE external_ref = 'TR-1'))
       WITH ORDINALITY AS t(at, kind, from_status, to_status, actor, time_in_status, event_type,
                            message_id, delivery_state, detail, n);
SELECT * FROM alexandrite.order_timeline(-42);

DELETE FROM alexandrite.orders WHERE external_ref = 'TR-1';
RESET alexandrite.actor;
