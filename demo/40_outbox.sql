-- Every order change went to RabbitMQ through the outbox (exchange alexandrite.events)
\set QUIET on
-- wait (at most 20 s) for the relay: it starts 5 s after the demo database appeared
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        EXIT WHEN (SELECT relay_connected AND pending = 0 FROM alexandrite.outbox_status);
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
\echo '-- the relay and the backlog'
SELECT pending, published_total, dead_letters, relay_connected, blocked_aggregates,
       coalesce(last_error, '-') AS last_error
  FROM alexandrite.outbox_status;
\echo '-- the events of one order, in aggregate_seq order, with their delivery state'
SELECT aggregate_seq, event_type, state, payload->>'to_status' AS to_status
  FROM alexandrite.outbox
 WHERE aggregate_type = 'order'
   AND aggregate_id = (SELECT min(id)::text FROM alexandrite.orders WHERE status = 'in_production')
 ORDER BY aggregate_seq;
\echo '-- events per type'
SELECT event_type, count(*) AS events, count(*) FILTER (WHERE state = 'published') AS published
  FROM alexandrite.outbox GROUP BY 1 ORDER BY 1;
