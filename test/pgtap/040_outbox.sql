-- Catalog contracts of the outbox: objects, signatures, privileges, SQLSTATEs.
BEGIN;
SELECT plan(55);

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
SELECT has_function('alexandrite', f, 'function alexandrite.' || f || ' exists')
  FROM unnest(ARRAY['outbox_discard', 'outbox_relay_info', 'outbox_latency']) AS f;
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
SELECT is_empty($$SELECT t.tgname FROM pg_trigger t
                    WHERE t.tgrelid IN ('alexandrite.order_events'::regclass, 'alexandrite.sla_breaches'::regclass,
                                        'alexandrite.outbox_events_0'::regclass)
                      AND NOT t.tgisinternal$$,
    'no trigger emits events: they come from the API');
SELECT hasnt_function('alexandrite', 'outbox_restoring', 'nothing guesses a restore from the statement text');
SELECT function_lang_is('alexandrite', 'outbox_emit', ARRAY['text', 'text', 'text', 'jsonb', 'jsonb'], 'c',
    'outbox_emit is C');
SELECT function_privs_are('alexandrite', 'outbox_emit', ARRAY['text', 'text', 'text', 'jsonb', 'jsonb'], 'public',
    ARRAY[]::text[], 'PUBLIC cannot emit (outbox_emit writes as the extension owner)');
SELECT throws_ok($$SELECT alexandrite.outbox_emit('x', 'x', 'e', '{}', jsonb_build_object(repeat('k', 256), 'v'))$$,
    '54000', NULL, 'a header name longer than 255 bytes raises program_limit_exceeded');
SELECT throws_ok($$SELECT alexandrite.outbox_emit('x', 'x', 'e', '{}', jsonb_build_object('k', repeat('v', 131072)))$$,
    '54000', NULL, 'headers beyond one AMQP frame raise program_limit_exceeded');
SELECT throws_ok($$SELECT alexandrite.outbox_emit('x', 'x', 'e', to_jsonb(repeat('p', 16777215)))$$,
    '54000', NULL, 'a payload beyond 16 MB of JSON text raises program_limit_exceeded');
SELECT throws_ok($$SELECT alexandrite.outbox_emit('order', '-1', 'e', '{}')$$,
    '22023', NULL, 'an order event names an order id');
SELECT throws_ok(format($$SELECT alexandrite.outbox_emit('order', '1', %L, '{}')$$, t), '42501', NULL,
                 format('%s of an order is the order functions'' own: insufficient_privilege', t))
  FROM unnest(ARRAY['order.created', 'order.status_changed', 'order.priced', 'order.sla_breached']) t;
SELECT throws_ok(format($$SELECT alexandrite.outbox_emit('mesh', '1', %L, '{}')$$, t), '42501', NULL,
                 format('%s of a mesh is the mesh jobs'' own: insufficient_privilege', t))
  FROM unnest(ARRAY['mesh.analyzed', 'mesh.rejected']) t;
SELECT ok((SELECT bool_and(reloptions @> ARRAY['autovacuum_enabled=false']) FROM pg_class
            WHERE oid IN ('alexandrite.outbox_events_0'::regclass, 'alexandrite.outbox_events_1'::regclass,
                          'alexandrite.outbox_events_2'::regclass)),
    'the rotating event tables are never vacuumed (they are truncated)');

SELECT * FROM finish();
ROLLBACK;
