-- Catalog contracts of the outbox: objects, signatures, privileges, SQLSTATEs.
BEGIN;
SELECT plan(39);

SELECT has_view('alexandrite', v, 'view alexandrite.' || v || ' exists')
  FROM unnest(ARRAY['outbox', 'outbox_status', 'outbox_blocked']) AS v;
SELECT has_table('alexandrite', t, 'table alexandrite.' || t || ' exists')
  FROM unnest(ARRAY['outbox_events', 'outbox_events_0', 'outbox_events_1', 'outbox_events_2',
                    'outbox_aggregates', 'outbox_relay', 'outbox_retry', 'outbox_dead']) AS t;
SELECT has_column('alexandrite', 'outbox', c, 'outbox.' || c || ' exists')
  FROM unnest(ARRAY['id', 'aggregate_type', 'aggregate_id', 'aggregate_seq', 'event_type',
                    'payload', 'headers', 'created_at', 'state']) AS c;
SELECT has_column('alexandrite', 'outbox_status', c, 'outbox_status.' || c || ' exists')
  FROM unnest(ARRAY['pending', 'oldest_pending_age', 'published_total', 'dead_letters',
                    'relay_connected', 'last_error', 'blocked_aggregates']) AS c;
SELECT function_returns('alexandrite', 'outbox_emit', ARRAY['text', 'text', 'text', 'jsonb', 'jsonb'], 'bigint',
    'outbox_emit(text, text, text, jsonb, jsonb) returns bigint');
SELECT function_returns('alexandrite', 'outbox_requeue', ARRAY['bigint[]'], 'bigint',
    'outbox_requeue(bigint[]) returns bigint');
SELECT isnt_definer('alexandrite', 'outbox_emit', ARRAY['text', 'text', 'text', 'jsonb', 'jsonb'],
    'outbox_emit is not SECURITY DEFINER');
SELECT function_privs_are('alexandrite', 'outbox_requeue', ARRAY['bigint[]'], 'public', ARRAY[]::text[],
    'PUBLIC cannot requeue dead letters');
SELECT function_privs_are('alexandrite', 'outbox_discard', ARRAY['bigint[]'], 'public', ARRAY[]::text[],
    'PUBLIC cannot discard dead letters');

SELECT throws_ok($$SELECT alexandrite.outbox_emit(NULL, 'x', 'e', '{}')$$, '22004', NULL,
    'a NULL argument raises null_value_not_allowed');
SELECT throws_ok($$SELECT alexandrite.outbox_emit('a b', 'x', 'e', '{}')$$, '22023', NULL,
    'a bad aggregate_type raises invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.outbox_emit('order', 'x', 'e', '{}', '"h"')$$, '22023', NULL,
    'non-object headers raise invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.outbox_requeue(NULL)$$, '22004', NULL,
    'requeue(NULL) raises null_value_not_allowed');

SELECT is((SELECT seqcache FROM pg_sequence WHERE seqrelid = 'alexandrite.outbox_id_seq'::regclass), 1::bigint,
    'outbox ids are not cached per backend (ordering argument)');
SELECT is((SELECT count(*)::int FROM pg_trigger WHERE tgname IN ('outbox_emit_order_event', 'outbox_emit_sla_breach')
             AND NOT tgisinternal), 2, 'order_events and sla_breaches carry the emitting triggers');
SELECT ok((SELECT bool_and(reloptions @> ARRAY['autovacuum_enabled=false']) FROM pg_class
            WHERE oid IN ('alexandrite.outbox_events_0'::regclass, 'alexandrite.outbox_events_1'::regclass,
                          'alexandrite.outbox_events_2'::regclass)),
    'the rotating event tables are never vacuumed (they are truncated)');

SELECT * FROM finish();
ROLLBACK;
