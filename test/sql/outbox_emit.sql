-- The outbox: outbox_emit, gap-free aggregate_seq, headers, errors, dead letters.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- ids grow; aggregate_seq counts 1, 2, 3 per aggregate
SELECT alexandrite.outbox_emit('invoice', 'inv-1', 'invoice.issued', '{"n": 1}') AS first_id \gset
SELECT alexandrite.outbox_emit('invoice', 'inv-1', 'invoice.paid', '{"n": 2}') > :first_id AS later_id_is_larger;
SELECT alexandrite.outbox_emit('invoice', 'inv-2', 'invoice.issued', '{"n": 3}', '{"tenant": "eu"}') > :first_id AS ok;
SELECT aggregate_id, aggregate_seq, event_type, payload, headers
  FROM alexandrite.outbox WHERE aggregate_type = 'invoice' ORDER BY id;

-- a rolled-back savepoint leaves no event and no gap in the sequence
BEGIN;
SELECT alexandrite.outbox_emit('invoice', 'inv-1', 'invoice.reminded', '{"n": 4}') IS NOT NULL AS emitted;
SAVEPOINT s1;
SELECT alexandrite.outbox_emit('invoice', 'inv-1', 'invoice.cancelled', '{"n": 5}') IS NOT NULL AS emitted;
ROLLBACK TO SAVEPOINT s1;
SELECT alexandrite.outbox_emit('invoice', 'inv-1', 'invoice.refunded', '{"n": 6}') IS NOT NULL AS emitted;
COMMIT;
-- a rolled-back transaction neither
BEGIN;
SELECT alexandrite.outbox_emit('invoice', 'inv-1', 'invoice.voided', '{"n": 7}') IS NOT NULL AS emitted;
ROLLBACK;
SELECT aggregate_seq, event_type FROM alexandrite.outbox
 WHERE aggregate_type = 'invoice' AND aggregate_id = 'inv-1' ORDER BY id;
SELECT last_seq FROM alexandrite.outbox_aggregates WHERE aggregate_type = 'invoice' ORDER BY aggregate_id;

-- several events of one aggregate in one transaction: counted in memory
-- under the row lock, the row written once before commit (aggseq.c)
BEGIN;
SELECT count(alexandrite.outbox_emit('burst', 'b-' || (g % 3), 'burst.tick', jsonb_build_object('g', g)))
  FROM generate_series(1, 30) g;
-- inside the transaction, the events are numbered; the row lags until commit
SELECT aggregate_id, count(*), min(aggregate_seq), max(aggregate_seq),
       bool_and(aggregate_seq = rn) AS gap_free
  FROM (SELECT aggregate_id, aggregate_seq, row_number() OVER (PARTITION BY aggregate_id ORDER BY id) AS rn
          FROM alexandrite.outbox_events WHERE aggregate_type = 'burst') e
 GROUP BY 1 ORDER BY 1;
SELECT aggregate_id, last_seq AS before_commit FROM alexandrite.outbox_aggregates WHERE aggregate_type = 'burst' ORDER BY 1;
COMMIT;
SELECT aggregate_id, last_seq FROM alexandrite.outbox_aggregates WHERE aggregate_type = 'burst' ORDER BY 1;
-- the next transaction goes on from the stored value
SELECT alexandrite.outbox_emit('burst', 'b-0', 'burst.tick', '{}') IS NOT NULL AS emitted;
SELECT max(aggregate_seq) FROM alexandrite.outbox_events WHERE aggregate_type = 'burst' AND aggregate_id = 'b-0';

-- savepoints: what a rolled-back level counted is undone, a released one kept
BEGIN;
SELECT alexandrite.outbox_emit('sp', 'a', 'sp.x', '{"n": 1}') IS NOT NULL AS a1;
SELECT alexandrite.outbox_emit('sp', 'a', 'sp.x', '{"n": 2}') IS NOT NULL AS a2;
SAVEPOINT s1;
SELECT alexandrite.outbox_emit('sp', 'a', 'sp.x', '{"n": "rolled back"}') IS NOT NULL AS a3_undone;
SELECT alexandrite.outbox_emit('sp', 'b', 'sp.x', '{"n": "rolled back"}') IS NOT NULL AS b1_undone;
SAVEPOINT s2;
SELECT alexandrite.outbox_emit('sp', 'a', 'sp.x', '{"n": "rolled back"}') IS NOT NULL AS a4_undone;
RELEASE SAVEPOINT s2;
ROLLBACK TO SAVEPOINT s1;
SELECT alexandrite.outbox_emit('sp', 'a', 'sp.x', '{"n": 3}') IS NOT NULL AS a3;
SELECT alexandrite.outbox_emit('sp', 'b', 'sp.x', '{"n": 1}') IS NOT NULL AS b1;
SAVEPOINT s3;
SELECT alexandrite.outbox_emit('sp', 'a', 'sp.x', '{"n": 4}') IS NOT NULL AS a4;
SELECT alexandrite.outbox_emit('sp', 'c', 'sp.x', '{"n": 1}') IS NOT NULL AS c1;
RELEASE SAVEPOINT s3;
-- a PL/pgSQL exception block is a subtransaction too
DO $$
BEGIN
  PERFORM alexandrite.outbox_emit('sp', 'a', 'sp.x', '{"n": "rolled back"}');
  PERFORM alexandrite.outbox_emit('sp', 'd', 'sp.x', '{"n": "rolled back"}');
  RAISE division_by_zero;
EXCEPTION WHEN division_by_zero THEN NULL;
END $$;
SELECT alexandrite.outbox_emit('sp', 'a', 'sp.x', '{"n": 5}') IS NOT NULL AS a5;
COMMIT;
SELECT aggregate_id, aggregate_seq, payload->>'n' AS n FROM alexandrite.outbox_events
 WHERE aggregate_type = 'sp' ORDER BY id;
SELECT aggregate_id, last_seq FROM alexandrite.outbox_aggregates WHERE aggregate_type = 'sp' ORDER BY 1;

-- nested levels: a level's count merges into its parent on release and
-- goes with it on rollback
BEGIN;
SELECT alexandrite.outbox_emit('nest', 'outer', 'nest.x', '{"n": 1}') IS NOT NULL AS o1;
SAVEPOINT n1;
SELECT alexandrite.outbox_emit('nest', 'inner', 'nest.x', '{"n": "undone"}') IS NOT NULL AS i1_undone;
SELECT alexandrite.outbox_emit('nest', 'outer', 'nest.x', '{"n": "undone"}') IS NOT NULL AS o2_undone;
SAVEPOINT n2;
SELECT alexandrite.outbox_emit('nest', 'inner', 'nest.x', '{"n": "undone"}') IS NOT NULL AS i2_undone;
SAVEPOINT n3;
SELECT alexandrite.outbox_emit('nest', 'inner', 'nest.x', '{"n": "undone"}') IS NOT NULL AS i3_undone;
SELECT alexandrite.outbox_emit('nest', 'outer', 'nest.x', '{"n": "undone"}') IS NOT NULL AS o3_undone;
RELEASE SAVEPOINT n3;
RELEASE SAVEPOINT n2;
ROLLBACK TO SAVEPOINT n1;
SELECT alexandrite.outbox_emit('nest', 'outer', 'nest.x', '{"n": 2}') IS NOT NULL AS o2;
SAVEPOINT n4;
SELECT alexandrite.outbox_emit('nest', 'outer', 'nest.x', '{"n": 3}') IS NOT NULL AS o3;
SELECT alexandrite.outbox_emit('nest', 'inner', 'nest.x', '{"n": 1}') IS NOT NULL AS i1;
RELEASE SAVEPOINT n4;
COMMIT;
SELECT aggregate_id, aggregate_seq, payload->>'n' AS n FROM alexandrite.outbox_events WHERE aggregate_type = 'nest' ORDER BY id;
SELECT aggregate_id, last_seq FROM alexandrite.outbox_aggregates WHERE aggregate_type = 'nest' ORDER BY 1;

-- a transaction made read-only after its events cannot store its count:
-- its COMMIT fails and nothing of it stays
BEGIN;
SELECT count(alexandrite.outbox_emit('ro', 'r', 'ro.x', '{}')) FROM generate_series(1, 2);
SET LOCAL transaction_read_only = on;
COMMIT;
SELECT count(*) AS events FROM alexandrite.outbox_events WHERE aggregate_type = 'ro';
SELECT count(*) AS rows FROM alexandrite.outbox_aggregates WHERE aggregate_type = 'ro';

-- a procedure that commits between its events
CREATE PROCEDURE public.outbox_test_proc() LANGUAGE plpgsql AS $$
BEGIN
  PERFORM alexandrite.outbox_emit('proc', 'p', 'proc.x', '{"n": 1}');
  PERFORM alexandrite.outbox_emit('proc', 'p', 'proc.x', '{"n": 2}');
  COMMIT;
  PERFORM alexandrite.outbox_emit('proc', 'p', 'proc.x', '{"n": 3}');
  ROLLBACK;
  PERFORM alexandrite.outbox_emit('proc', 'p', 'proc.x', '{"n": 3}');
END $$;
CALL public.outbox_test_proc();
DROP PROCEDURE public.outbox_test_proc();
SELECT aggregate_seq, payload->>'n' AS n FROM alexandrite.outbox_events WHERE aggregate_type = 'proc' ORDER BY id;
SELECT last_seq FROM alexandrite.outbox_aggregates WHERE aggregate_type = 'proc';

-- a prepared transaction stores its counts before it is prepared
BEGIN;
SELECT count(alexandrite.outbox_emit('twopc', 't', 'twopc.x', '{}')) FROM generate_series(1, 4);
PREPARE TRANSACTION 'alx_outbox_twopc';
SELECT count(*) AS before_commit FROM alexandrite.outbox_aggregates WHERE aggregate_type = 'twopc';
COMMIT PREPARED 'alx_outbox_twopc';
SELECT last_seq FROM alexandrite.outbox_aggregates WHERE aggregate_type = 'twopc';
SELECT alexandrite.outbox_emit('twopc', 't', 'twopc.x', '{}') IS NOT NULL AS emitted;
SELECT max(aggregate_seq) FROM alexandrite.outbox_events WHERE aggregate_type = 'twopc';

-- more aggregates than are counted in memory (4096): the rest upsert every time
BEGIN;
SELECT count(alexandrite.outbox_emit('many', (g % 5000)::text, 'many.x', '{}')) FROM generate_series(0, 14999) g;
COMMIT;
SELECT count(*), min(last_seq), max(last_seq) FROM alexandrite.outbox_aggregates WHERE aggregate_type = 'many';
SELECT count(*) AS not_gap_free
  FROM (SELECT aggregate_seq, row_number() OVER (PARTITION BY aggregate_id ORDER BY id) AS rn
          FROM alexandrite.outbox_events WHERE aggregate_type = 'many') e
 WHERE aggregate_seq <> rn;

-- the transaction's traceparent becomes a header (an explicit one wins)
BEGIN;
SET LOCAL alexandrite.traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
SELECT alexandrite.outbox_emit('invoice', 'inv-3', 'invoice.issued', '{}') AS traced \gset
SELECT alexandrite.outbox_emit('invoice', 'inv-3', 'invoice.paid', '{}',
       '{"traceparent": "00-11111111111111111111111111111111-2222222222222222-01"}') AS explicit \gset
COMMIT;
SELECT id = :traced AS traced, headers FROM alexandrite.outbox WHERE id IN (:traced, :explicit) ORDER BY id;

-- every event is in exactly one of the rotating tables, with the writer's xid
SELECT (SELECT count(*) FROM ONLY alexandrite.outbox_events) AS in_parent,
       (SELECT count(*) FROM alexandrite.outbox_events_0) +
       (SELECT count(*) FROM alexandrite.outbox_events_1) +
       (SELECT count(*) FROM alexandrite.outbox_events_2) = (SELECT count(*) FROM alexandrite.outbox_events) AS all_in_children;
SELECT state IN ('pending', 'published') AS sane_state, count(*) > 0 AS some
  FROM alexandrite.outbox WHERE aggregate_type = 'invoice' GROUP BY 1;

-- bad input
SELECT alexandrite.outbox_emit(NULL, 'x', 'e', '{}');
SELECT alexandrite.outbox_emit('order', 'x', 'e', NULL);
SELECT alexandrite.outbox_emit('or der', 'x', 'e', '{}');
SELECT alexandrite.outbox_emit('order', '', 'e', '{}');
SELECT alexandrite.outbox_emit('order', repeat('x', 201), 'e', '{}');
SELECT alexandrite.outbox_emit('order', 'x', 'order created', '{}');
SELECT alexandrite.outbox_emit('order', 'x', 'e', '{}', '[1]');
SELECT alexandrite.outbox_emit('order', 'x', 'e', '{}', '{"aggregate_seq": 7}');
-- nothing was written by the failed calls
SELECT count(*) FROM alexandrite.outbox WHERE aggregate_id = 'x';
-- the order functions' own event types cannot be forged for an order
-- (42501); other event types of an order, and these names for another
-- aggregate type, are the caller's own
-- (the order id is given back at the end: later tests print ids)
SELECT last_value AS emit_seq_last, is_called AS emit_seq_called FROM alexandrite.orders_id_seq \gset
SELECT alexandrite.create_order('emit-core-1', 'shop', 'c', NULL, NULL) AS core_o \gset
SELECT alexandrite.outbox_emit('order', :'core_o', 'order.status_changed', '{"from": "new", "to": "shipped"}');
SELECT alexandrite.outbox_emit('order', :'core_o', 'order.created', '{}');
SELECT alexandrite.outbox_emit('order', :'core_o', 'order.priced', '{}');
SELECT alexandrite.outbox_emit('order', :'core_o', 'order.sla_breached', '{}');
SELECT alexandrite.outbox_emit('order', :'core_o', 'order.note', '{}') > 0 AS own_event_type;
SELECT alexandrite.outbox_emit('invoice', 'core-1', 'order.note', '{}') > 0 AS other_aggregate;
-- the mesh jobs' results cannot be forged either
SELECT alexandrite.outbox_emit('mesh', '1', 'mesh.analyzed', '{"order_id": 1, "mesh_id": 1}');
SELECT alexandrite.outbox_emit('mesh', '1', 'mesh.rejected', '{}');
-- nor under a short name that the relay routes the same way
-- (<aggregate_type>.<event_type>: order.created, mesh.rejected)
SELECT alexandrite.outbox_emit('order', :'core_o', 'created', '{}');
SELECT alexandrite.outbox_emit('order', :'core_o', 'sla_breached', '{}');
SELECT alexandrite.outbox_emit('mesh', '1', 'rejected', '{}');
-- nor under another aggregate type: consumers dispatch on the type too
SELECT alexandrite.outbox_emit('invoice', 'core-1', 'order.status_changed', '{}');
SELECT alexandrite.outbox_emit('invoice', '1', 'mesh.analyzed', '{}');
SELECT alexandrite.outbox_emit('order', :'core_o', 'order.order.created', '{}') > 0 AS routed_elsewhere;
SELECT aggregate_seq, event_type FROM alexandrite.outbox
 WHERE aggregate_type = 'order' AND aggregate_id = :'core_o' ORDER BY aggregate_seq;
DELETE FROM alexandrite.outbox_events WHERE aggregate_type = 'order' AND aggregate_id = :'core_o';
DELETE FROM alexandrite.orders WHERE id = :core_o;
SELECT pg_catalog.setval('alexandrite.orders_id_seq', :emit_seq_last, :'emit_seq_called'::boolean) IS NOT NULL AS ids_given_back;

-- dead letters: requeue puts them back in line (the aggregate stays blocked
-- until they are through), discard drops them
INSERT INTO alexandrite.outbox_dead (id, aggregate_type, aggregate_id, aggregate_seq, event_type,
                                     payload, headers, created_at, attempts, reason)
VALUES (-2, 'test', 't-1', 1, 'test.x', '{}', '{}', now(), 3, 'returned by the broker: 312 NO_ROUTE'),
       (-1, 'test', 't-2', 1, 'test.x', '{}', '{}', now(), 3, 'returned by the broker: 312 NO_ROUTE');
SELECT aggregate_type, aggregate_id, head_id, waiting_events, dead, head_error FROM alexandrite.outbox_blocked
 WHERE aggregate_type = 'test' ORDER BY aggregate_id;
SELECT dead_letters, blocked_aggregates FROM alexandrite.outbox_status;
-- (inside a transaction, so that a running relay cannot take the row yet)
BEGIN;
SELECT alexandrite.outbox_requeue(ARRAY[-2, 12345]);
SELECT id, attempts, last_error FROM alexandrite.outbox_retry WHERE id < 0;
SELECT aggregate_id, dead FROM alexandrite.outbox_blocked WHERE aggregate_type = 'test' ORDER BY 1;
ROLLBACK;
SELECT alexandrite.outbox_discard(ARRAY[-2, -1]);
SELECT count(*) FROM alexandrite.outbox_dead WHERE id < 0;
-- a discarded dead letter leaves a record, without its payload, naming who dropped it
SELECT id, aggregate_id, aggregate_seq, event_type, attempts, reason, discarded_by = current_user AS by_caller
  FROM alexandrite.outbox_discarded WHERE id < 0 ORDER BY id;
DELETE FROM alexandrite.outbox_discarded WHERE id < 0;
SELECT alexandrite.outbox_requeue(NULL);
SELECT alexandrite.outbox_discard(NULL);

-- administrative functions are not for everyone
SELECT has_function_privilege('public', 'alexandrite.outbox_requeue(bigint[])', 'EXECUTE') AS public_requeue,
       has_function_privilege('public', 'alexandrite.outbox_discard(bigint[])', 'EXECUTE') AS public_discard;

-- pg_dump keeps the outbox
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS t(oid) JOIN pg_class c ON c.oid = t.oid
 WHERE e.extname = 'alexandrite' AND c.relname LIKE 'outbox%' ORDER BY 1;

-- the event row is written by the library (src/outbox/write.c), not by a
-- statement: every index of the log table gets its entry, and a log table
-- that a statement would treat differently (a trigger, a CHECK constraint,
-- an expression index) is refused rather than written around
CREATE INDEX outbox_test_agg_idx ON alexandrite.outbox_events_0 (aggregate_id, aggregate_seq);
CREATE INDEX outbox_test_agg_idx1 ON alexandrite.outbox_events_1 (aggregate_id, aggregate_seq);
CREATE INDEX outbox_test_agg_idx2 ON alexandrite.outbox_events_2 (aggregate_id, aggregate_seq);
BEGIN;
SELECT alexandrite.outbox_emit('test', 'idx-1', 'test.indexed', '{"n": 1}') > 0 AS emitted;
SET LOCAL enable_seqscan = off;
SELECT aggregate_seq, event_type, payload, headers, txid = pg_current_xact_id() AS this_txid,
       created_at = now() AS this_now, id = currval('alexandrite.outbox_id_seq') AS id_from_seq
  FROM alexandrite.outbox_events WHERE aggregate_id = 'idx-1';
COMMIT;
DROP INDEX alexandrite.outbox_test_agg_idx, alexandrite.outbox_test_agg_idx1, alexandrite.outbox_test_agg_idx2;
CREATE FUNCTION public.outbox_test_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
DO $$ BEGIN FOR t IN 0..2 LOOP
  EXECUTE format('CREATE TRIGGER outbox_test_trg BEFORE INSERT ON alexandrite.outbox_events_%s FOR EACH ROW EXECUTE FUNCTION public.outbox_test_trg()', t);
END LOOP; END $$;
\set VERBOSITY sqlstate
SELECT alexandrite.outbox_emit('test', 'trg-1', 'test.x', '{}');
\set VERBOSITY default
SELECT alexandrite.outbox_emit('test', 'trg-1', 'test.x', '{}');
DO $$ BEGIN FOR t IN 0..2 LOOP
  EXECUTE format('DROP TRIGGER outbox_test_trg ON alexandrite.outbox_events_%s', t);
  EXECUTE format('ALTER TABLE alexandrite.outbox_events_%s ADD CONSTRAINT outbox_test_chk CHECK (aggregate_seq > 0)', t);
END LOOP; END $$;
SELECT alexandrite.outbox_emit('test', 'chk-1', 'test.x', '{}');
DO $$ BEGIN FOR t IN 0..2 LOOP
  EXECUTE format('ALTER TABLE alexandrite.outbox_events_%s DROP CONSTRAINT outbox_test_chk', t);
  EXECUTE format('CREATE INDEX outbox_test_expr_idx%s ON alexandrite.outbox_events_%s (lower(event_type))', t, t);
END LOOP; END $$;
SELECT alexandrite.outbox_emit('test', 'expr-1', 'test.x', '{}');
DO $$ BEGIN FOR t IN 0..2 LOOP
  EXECUTE format('DROP INDEX alexandrite.outbox_test_expr_idx%s', t);
END LOOP; END $$;
-- an unlogged log table would lose unpublished events at a crash and on failover
ALTER TABLE alexandrite.outbox_events_0 SET UNLOGGED;
ALTER TABLE alexandrite.outbox_events_1 SET UNLOGGED;
ALTER TABLE alexandrite.outbox_events_2 SET UNLOGGED;
SELECT alexandrite.outbox_emit('test', 'unlogged-1', 'test.x', '{}');
ALTER TABLE alexandrite.outbox_events_0 SET LOGGED;
ALTER TABLE alexandrite.outbox_events_1 SET LOGGED;
ALTER TABLE alexandrite.outbox_events_2 SET LOGGED;
DROP FUNCTION public.outbox_test_trg();
-- a column the install script does not create is refused, not left NULL;
-- once dropped, the writer steps over it
ALTER TABLE alexandrite.outbox_events ADD COLUMN note text;
SELECT alexandrite.outbox_emit('test', 'type-1', 'test.x', '{}');
ALTER TABLE alexandrite.outbox_events DROP COLUMN note;
SELECT alexandrite.outbox_emit('test', 'drop-1', 'test.x', '{"after": "drop"}') > 0 AS emitted;
SELECT aggregate_seq, payload FROM alexandrite.outbox_events WHERE aggregate_id = 'drop-1';
-- nothing was written by the refused calls, and the writer works again
SELECT count(*) FROM alexandrite.outbox_events WHERE aggregate_id IN ('trg-1', 'chk-1', 'expr-1', 'type-1', 'unlogged-1');
SELECT alexandrite.outbox_emit('test', 'trg-1', 'test.x', '{}') > 0 AS emitted;
SELECT aggregate_seq FROM alexandrite.outbox_events WHERE aggregate_id = 'trg-1';
