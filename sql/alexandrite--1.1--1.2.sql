/* sql/alexandrite--1.1--1.2.sql: upgrade from 1.1 to 1.2 (written by hand)
 *
 * One section per capability, in the order of the install script.  Every
 * change here has its twin in sql/schema/<capability>.sql: a fresh install
 * and this upgrade must give the same objects (test/sql/core_upgrade.sql).
 * Once 1.2 is released this file is never edited again. */

\echo Use "ALTER EXTENSION alexandrite UPDATE TO '1.2'" to load this file. \quit

------------------------------------------------------------------------------
-- extension
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- mesh
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- core
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- pricing
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- sla
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- outbox
------------------------------------------------------------------------------
-- dead letters: one C implementation behind requeue and discard, writing as
-- the extension owner (src/outbox/deadletter.c)
CREATE OR REPLACE FUNCTION alexandrite.outbox_requeue(ids bigint[]) RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_requeue'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
ALTER FUNCTION alexandrite.outbox_requeue(bigint[]) RESET ALL;
CREATE OR REPLACE FUNCTION alexandrite.outbox_discard(ids bigint[]) RETURNS bigint
    AS 'MODULE_PATHNAME', 'alexandrite_outbox_discard'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
ALTER FUNCTION alexandrite.outbox_discard(bigint[]) RESET ALL;

-- the reading views are the privilege boundary (owner's rights), with the
-- handled test inlined instead of a function the reader would need
ALTER VIEW alexandrite.outbox RESET (security_invoker);
CREATE OR REPLACE VIEW alexandrite.outbox AS
SELECT e.id, e.aggregate_type, e.aggregate_id, e.aggregate_seq, e.event_type, e.payload, e.headers,
       e.created_at,
       CASE WHEN d.id IS NOT NULL THEN 'dead'
            WHEN q.id IS NOT NULL THEN 'retrying'
            WHEN pg_catalog.pg_visible_in_snapshot(e.txid, r.last_snapshot)
                 OR (r.batch_snapshot IS NOT NULL
                     AND pg_catalog.pg_visible_in_snapshot(e.txid, r.batch_snapshot)
                     AND e.id OPERATOR(pg_catalog.<=) r.batch_pos) THEN 'published'
            ELSE 'pending' END AS state,
       COALESCE(d.attempts, q.attempts, 0) AS attempts,
       COALESCE(d.reason, q.last_error) AS last_error
  FROM alexandrite.outbox_events e
 CROSS JOIN alexandrite.outbox_relay r
  LEFT JOIN alexandrite.outbox_retry q ON q.id OPERATOR(pg_catalog.=) e.id
  LEFT JOIN alexandrite.outbox_dead d ON d.id OPERATOR(pg_catalog.=) e.id
UNION ALL
SELECT q.id, q.aggregate_type, q.aggregate_id, q.aggregate_seq, q.event_type, q.payload, q.headers,
       q.created_at, 'retrying', q.attempts, q.last_error
  FROM alexandrite.outbox_retry q
 WHERE NOT EXISTS (SELECT 1 FROM alexandrite.outbox_events e WHERE e.id OPERATOR(pg_catalog.=) q.id)
UNION ALL
SELECT d.id, d.aggregate_type, d.aggregate_id, d.aggregate_seq, d.event_type, d.payload, d.headers,
       d.created_at, 'dead', d.attempts, d.reason
  FROM alexandrite.outbox_dead d
 WHERE NOT EXISTS (SELECT 1 FROM alexandrite.outbox_events e WHERE e.id OPERATOR(pg_catalog.=) d.id);
ALTER VIEW alexandrite.outbox_blocked RESET (security_invoker);
ALTER VIEW alexandrite.outbox_status RESET (security_invoker);
CREATE OR REPLACE VIEW alexandrite.outbox_status AS
SELECT p.pending OPERATOR(pg_catalog.+) q.retrying AS pending,
       pg_catalog.now() OPERATOR(pg_catalog.-) LEAST(p.oldest, q.oldest) AS oldest_pending_age,
       r.published_total,
       (SELECT pg_catalog.count(*) FROM alexandrite.outbox_dead) AS dead_letters,
       COALESCE(i.relay_connected, false) AS relay_connected,
       i.last_error,
       (SELECT pg_catalog.count(*) FROM alexandrite.outbox_blocked) AS blocked_aggregates,
       q.retrying,
       i.relay_pid,
       i.broker,
       i.last_error_at
  FROM alexandrite.outbox_relay r
 CROSS JOIN LATERAL (
        SELECT pg_catalog.count(*) AS pending, pg_catalog.min(e.created_at) AS oldest
          FROM alexandrite.outbox_events e
         WHERE e.txid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin(r.last_snapshot)
           AND NOT (pg_catalog.pg_visible_in_snapshot(e.txid, r.last_snapshot)
                    OR (r.batch_snapshot IS NOT NULL
                        AND pg_catalog.pg_visible_in_snapshot(e.txid, r.batch_snapshot)
                        AND e.id OPERATOR(pg_catalog.<=) r.batch_pos))) p
 CROSS JOIN LATERAL (
        SELECT pg_catalog.count(*) AS retrying, pg_catalog.min(q.created_at) AS oldest
          FROM alexandrite.outbox_retry q) q
 CROSS JOIN alexandrite.outbox_relay_info() i;
DROP FUNCTION alexandrite.outbox_handled(alexandrite.outbox_relay, xid8, bigint);

------------------------------------------------------------------------------
-- dashboard
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- observe
------------------------------------------------------------------------------
-- metrics() renders the samples with the caller's rights
GRANT EXECUTE ON FUNCTION alexandrite.metrics_render(alexandrite.metric_sample[]) TO pg_monitor;

------------------------------------------------------------------------------
-- privileges (last: covers every routine above)
------------------------------------------------------------------------------
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA alexandrite FROM PUBLIC;
