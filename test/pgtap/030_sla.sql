-- Catalog contracts of the SLA capability: functions, signatures,
-- volatility, privileges, indexes, triggers, SQLSTATEs.
BEGIN;
SELECT plan(71);

-- the contract functions and their signatures
SELECT function_returns('alexandrite', 'sla_priority', ARRAY['timestamp with time zone', 'timestamp with time zone', 'text', 'timestamp with time zone'],
    'double precision', 'sla_priority(created_at, sla_due_at, channel, at) returns float8');
SELECT function_lang_is('alexandrite', 'sla_priority', ARRAY['timestamp with time zone', 'timestamp with time zone', 'text', 'timestamp with time zone'],
    'c', 'sla_priority is a C function');
SELECT volatility_is('alexandrite', 'sla_priority', ARRAY['timestamp with time zone', 'timestamp with time zone', 'text', 'timestamp with time zone'],
    'stable', 'sla_priority is STABLE (it reads sla_policies)');
SELECT is_strict('alexandrite', 'sla_priority', ARRAY['timestamp with time zone', 'timestamp with time zone', 'text', 'timestamp with time zone'],
    'sla_priority is STRICT');
SELECT is(alexandrite.sla_priority('2026-03-01', '2026-03-11', 'shop', '2026-03-11'), 1::float8,
          'sla_priority is weight x 1 at the due time');
SELECT function_returns('alexandrite', 'assign_next', ARRAY['text'], 'bigint', 'assign_next(operator_id) returns bigint');
SELECT function_returns('alexandrite', 'release_order', ARRAY['bigint', 'text'], 'alexandrite.order_status',
    'release_order(order_id, actor) returns the new status');
SELECT function_returns('alexandrite', 'rebalance', ARRAY['interval'], 'setof record', 'rebalance(horizon) returns the moves');
SELECT function_returns('alexandrite', 'escalate_overdue', ARRAY['boolean'], 'bigint', 'escalate_overdue(full_scan) returns bigint');
SELECT function_returns('alexandrite', 'schedule_escalation', ARRAY['text'], 'bigint', 'schedule_escalation(every) returns the job id');
SELECT function_returns('alexandrite', 'order_board', ARRAY['text', 'integer', 'double precision', 'bigint'],
    'setof alexandrite.order_board_row', 'order_board(operator_id, lim, after_priority, after_id) returns board rows');
SELECT results_eq($$SELECT attname::text COLLATE "default" FROM pg_attribute
                      WHERE attrelid = 'alexandrite.order_board_row'::regclass AND attnum > 0 ORDER BY attnum$$,
    ARRAY['id', 'external_ref', 'status', 'channel', 'operator_id', 'sla_due_at', 'priority'],
    'order_board rows have the contract columns');
SELECT is_empty($$SELECT * FROM alexandrite.order_board()$$, 'order_board() with every default, no open order: no row');
SELECT is_empty($$SELECT * FROM alexandrite.rebalance()$$, 'rebalance() with its default horizon, nothing to move: no row');

-- nothing is SECURITY DEFINER
SELECT isnt_definer('alexandrite', f, f || ' is not SECURITY DEFINER')
  FROM unnest(ARRAY['sla_priority', 'assign_next', 'release_order', 'rebalance', 'escalate_overdue',
                    'schedule_escalation', 'order_board', 'sla_recount_load']) f;

-- administrative functions are not for PUBLIC; the operator-facing ones are
SELECT function_privs_are('alexandrite', 'rebalance', ARRAY['interval'], 'public', ARRAY[]::text[],
    'PUBLIC cannot rebalance');
SELECT function_privs_are('alexandrite', 'escalate_overdue', ARRAY['boolean'], 'public', ARRAY[]::text[],
    'PUBLIC cannot escalate');
SELECT function_privs_are('alexandrite', 'schedule_escalation', ARRAY['text'], 'public', ARRAY[]::text[],
    'PUBLIC cannot schedule the escalation');
SELECT function_privs_are('alexandrite', 'sla_recount_load', ARRAY[]::text[], 'public', ARRAY[]::text[],
    'PUBLIC cannot rebuild the operator load');
SELECT function_privs_are('alexandrite', 'assign_next', ARRAY['text'], 'public', ARRAY[]::text[],
    'PUBLIC cannot claim orders (docs/operations.md grants assign_next to mes)');

-- the indexes behind the index-friendly order
SELECT has_index('alexandrite', 'orders', 'orders_pool_due_idx', ARRAY['channel', 'sla_due_at', 'id'],
    'pool index on (channel, sla_due_at, id)');
SELECT has_index('alexandrite', 'orders', 'orders_open_due_idx', ARRAY['channel', 'sla_due_at', 'id'],
    'open-orders index on (channel, sla_due_at, id)');
SELECT ok(pg_get_indexdef('alexandrite.orders_pool_due_idx'::regclass) ~ 'WHERE .*status < ''assigned''.*operator_id IS NULL',
    'the pool index holds only unheld new or priced orders');

-- the cache invalidation and load triggers
SELECT has_trigger('alexandrite', 'sla_policies', 'sla_policies_invalidate', 'sla_policies invalidates the priority cache');
SELECT has_trigger('alexandrite', 'orders', t, 'orders has trigger ' || t)
  FROM unnest(ARRAY['orders_maintain_ins', 'orders_maintain_upd', 'orders_maintain_del',
                    'orders_maintain_truncate']) t;
SELECT has_table('alexandrite', 'operator_load', 'operator_load exists');
SELECT is(alexandrite.sla_channels(), ARRAY['b2b_api', 'crm', 'shop'], 'sla_channels lists the policy channels from the cache');
SELECT volatility_is('alexandrite', 'order_board', ARRAY['text', 'integer', 'double precision', 'bigint'],
    'stable', 'order_board is STABLE');

-- fixtures for the SQLSTATE checks
INSERT INTO alexandrite.operators (id, name, capacity, active) VALUES ('tap_on', 'On', 1, true), ('tap_off', 'Off', 1, false);
SELECT alexandrite.create_order('TAP-SLA-1', 'shop', 'c', NULL, NULL);

SELECT throws_ok($$SELECT alexandrite.sla_priority(now(), now(), 'telex', now())$$, '22023', NULL,
    'a channel without policy raises invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.sla_priority(now(), 'infinity', 'shop', now())$$, '22008', NULL,
    'an infinite due time raises datetime_field_overflow');
SELECT throws_ok($$SELECT alexandrite.assign_next('tap_nobody')$$, 'P0002', NULL,
    'an unknown operator raises no_data_found');
SELECT throws_ok($$SELECT alexandrite.assign_next('tap_off')$$, '55000', NULL,
    'an inactive operator raises object_not_in_prerequisite_state');
SELECT throws_ok($$SELECT alexandrite.assign_next(NULL)$$, '22004', NULL,
    'a NULL operator raises null_value_not_allowed');
SELECT throws_ok($$SELECT alexandrite.release_order(-1)$$, 'P0002', NULL,
    'releasing an unknown order raises no_data_found');
SELECT throws_ok($$SELECT alexandrite.release_order((SELECT id FROM alexandrite.orders WHERE external_ref = 'TAP-SLA-1'))$$,
    '22023', NULL, 'releasing an order nobody holds raises invalid_parameter_value');
SELECT throws_ok($$SELECT * FROM alexandrite.order_board(NULL, -1)$$, '22023', NULL,
    'a negative lim raises invalid_parameter_value');
SELECT throws_ok($$SELECT * FROM alexandrite.order_board(NULL, 5, 1.0, NULL)$$, '22023', NULL,
    'after_priority without after_id raises invalid_parameter_value');
SELECT throws_ok($$SELECT alexandrite.rebalance(NULL)$$, '22004', NULL,
    'a NULL horizon raises null_value_not_allowed');
SELECT throws_ok($$SELECT alexandrite.schedule_escalation('not a schedule')$$, '22023', 'invalid schedule: not a schedule',
    'pg_cron rejects a bad schedule with invalid_parameter_value');

-- behaviour in one transaction
SELECT ok(alexandrite.assign_next('tap_on') = (SELECT id FROM alexandrite.orders WHERE external_ref = 'TAP-SLA-1'),
    'assign_next hands out the only pool order');
SELECT is(alexandrite.assign_next('tap_on'), NULL, 'at capacity assign_next returns NULL');
SELECT is((SELECT status::text FROM alexandrite.orders WHERE external_ref = 'TAP-SLA-1'), 'assigned', 'the order is assigned');
SELECT is(alexandrite.release_order((SELECT id FROM alexandrite.orders WHERE external_ref = 'TAP-SLA-1')),
    'new'::alexandrite.order_status, 'release_order puts it back to new');
SELECT is((SELECT operator_id FROM alexandrite.orders WHERE external_ref = 'TAP-SLA-1'), NULL, 'and clears the operator');
SELECT ok(alexandrite.schedule_escalation() > 0, 'schedule_escalation returns a pg_cron job id');
SELECT is((SELECT command FROM cron.job WHERE jobname = 'alexandrite-escalate-overdue'),
    'SELECT alexandrite.escalate_overdue()', 'the job runs escalate_overdue()');


-- order_board() with its defaults lists every open order, most urgent first
-- (one channel: the due time alone orders them)
SELECT is(count(alexandrite.create_order('TAP-SLA-' || i, 'shop', 'c', NULL, NULL)), 3::bigint, 'three more shop orders')
  FROM generate_series(2, 4) i;
UPDATE alexandrite.orders SET sla_due_at = now() + interval '1 hour' WHERE external_ref = 'TAP-SLA-3';
UPDATE alexandrite.orders SET sla_due_at = now() - interval '1 hour' WHERE external_ref = 'TAP-SLA-4';
SELECT results_eq($$SELECT id FROM alexandrite.order_board()$$,
    $$SELECT id FROM alexandrite.orders WHERE status < 'shipped'
       ORDER BY alexandrite.sla_priority(created_at, sla_due_at, channel) DESC, id$$,
    'order_board() with every default lists the open orders by priority, then id');
SELECT results_eq($$SELECT external_ref FROM alexandrite.order_board(NULL, 1)$$, ARRAY['TAP-SLA-4'],
    'the overdue order leads the board');

-- rebalance() with its default horizon (24 hours) gives the urgent pool
-- orders to the active operator with room, most urgent first, and stops at
-- capacity; a second run moves nothing
SELECT results_eq($$SELECT o.external_ref, r.from_operator, r.to_operator
                      FROM alexandrite.rebalance() r JOIN alexandrite.orders o ON o.id = r.order_id$$,
    $$VALUES ('TAP-SLA-4'::text, NULL::text, 'tap_on'::text)$$,
    'rebalance() gives the most urgent pool order to the only active operator, within its capacity of 1');
SELECT results_eq($$SELECT status::text, operator_id FROM alexandrite.orders WHERE external_ref = 'TAP-SLA-4'$$,
    $$VALUES ('assigned', 'tap_on')$$, 'the moved order is assigned to that operator');
SELECT is_empty($$SELECT * FROM alexandrite.rebalance()$$, 'a second rebalance() moves nothing');
-- a lowered capacity and a deactivated operator give orders back
UPDATE alexandrite.operators SET capacity = 3 WHERE id = 'tap_on';
SELECT results_eq($$SELECT o.external_ref FROM alexandrite.rebalance() r JOIN alexandrite.orders o ON o.id = r.order_id$$,
    ARRAY['TAP-SLA-3'], 'with a capacity of 3, the other urgent order (due within 24 h) follows, and only that one');
UPDATE alexandrite.operators SET capacity = 1 WHERE id = 'tap_on';
SELECT results_eq($$SELECT o.external_ref, r.from_operator, r.to_operator
                      FROM alexandrite.rebalance() r JOIN alexandrite.orders o ON o.id = r.order_id$$,
    $$VALUES ('TAP-SLA-3'::text, 'tap_on'::text, NULL::text)$$,
    'capacity lowered to 1: the least urgent of its orders goes back to the pool');
UPDATE alexandrite.operators SET active = false WHERE id = 'tap_on';
SELECT results_eq($$SELECT o.external_ref, r.from_operator, r.to_operator
                      FROM alexandrite.rebalance() r JOIN alexandrite.orders o ON o.id = r.order_id$$,
    $$VALUES ('TAP-SLA-4'::text, 'tap_on'::text, NULL::text)$$,
    'a deactivated operator gives back what it held, and nobody active is left to take it');
SELECT is((SELECT count(*) FROM alexandrite.orders WHERE operator_id IS NOT NULL), 0::bigint,
    'nobody holds an order');

-- an SLA weight is finite and positive: 'NaN' (greater than every number
-- in PostgreSQL) and 'Infinity' would leave the channel's orders unranked
SELECT throws_ok($$UPDATE alexandrite.sla_policies SET weight = 'NaN' WHERE channel = 'shop' AND customer_id IS NULL$$,
                 '23514', NULL, 'a NaN weight is refused (check_violation)');
SELECT throws_ok($$UPDATE alexandrite.sla_policies SET weight = 'Infinity' WHERE channel = 'shop' AND customer_id IS NULL$$,
                 '23514', NULL, 'an infinite weight is refused (check_violation)');
SELECT throws_ok($$UPDATE alexandrite.sla_policies SET weight = 0 WHERE channel = 'shop' AND customer_id IS NULL$$,
                 '23514', NULL, 'a zero weight is refused (check_violation)');
-- an operator id is 1 to 200 characters (a key of several indexes)
SELECT throws_ok($$INSERT INTO alexandrite.operators (id, name) VALUES (repeat('o', 201), 'long')$$,
                 '23514', NULL, 'an operator id over 200 characters is refused (check_violation)');
SELECT lives_ok($$INSERT INTO alexandrite.operators (id, name) VALUES (repeat('o', 200), 'long enough')$$,
                'an operator id of 200 characters is accepted');
SELECT * FROM finish();
ROLLBACK;
