# A streaming standby serves the read side of alexandrite: metrics(), the
# dashboards, order_board, order_timeline, stuck_orders and price_quote answer
# in read-only transactions there (anything that wrote would fail), exactly;
# no relay or fold runs there; and after the primary dies and the standby is
# promoted, the relay starts on it and delivers every committed event that
# the old primary had not published (real RabbitMQ node, independent
# consumer, ledger of committed events).
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;
use AlxBroker;

my $mq = AlxBroker->new;
$mq->start;
$mq->declare('r061', 'order.#', 'test.#');
$mq->consume('r061');

# the primary's fold worker is off so that the replicated fold counters stay
# still: any change seen on the standby would then be its own doing
my $primary = AlxTest::new_node('primary', allows_streaming => 1,
	conf => "alexandrite.amqp_url = '" . $mq->url . "'\nalexandrite.fold_interval = 0");
$primary->start;
AlxTest::install($primary, 'postgres');
AlxBroker::ledger_setup($primary, 'postgres');
ok(AlxTest::wait_until($primary, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'the relay of the primary connects');

$primary->safe_psql('postgres', q{
	CREATE ROLE alx_monitor LOGIN IN ROLE pg_monitor;
	INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op1', 'Ana', 5);
	INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
	                                size_x_mm, size_y_mm, size_z_mm, shells, watertight,
	                                boundary_edges, nonmanifold_edges, degenerate_triangles, analysis_ms)
	VALUES (1, sha256('ring'), 'ring.stl', 'stl', 2048, 1024, 850, 1200, 20, 20, 4, 1, true, 0, 0, 0, 40);
	BEGIN;
	SET LOCAL alexandrite.traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
	SELECT alexandrite.create_order('RP-' || i, (ARRAY['shop','b2b_api','crm'])[1 + i % 3], 'c' || i, 1, 'ag925')
	  FROM generate_series(1, 30) i;
	SELECT ledger_mine();
	COMMIT;
	BEGIN;
	SELECT alexandrite.price_order(id) FROM alexandrite.orders WHERE id % 2 = 0;
	SELECT ledger_mine();
	COMMIT;
	BEGIN;
	SELECT alexandrite.assign_next('op1') FROM generate_series(1, 3);
	SELECT ledger_mine();
	COMMIT;
});
my $r = AlxBroker::check($primary, 'postgres', $mq, timeout => 60);
is($r->{lost}, 0, "the primary's relay delivered the first $r->{committed} events");
# the trace context travels with the messages of the traced transaction
my @created = grep { $_->{routing_key} eq 'order.created' } $mq->deliveries;
is(scalar(grep { ($_->{traceparent} // '') eq '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } @created),
	30, 'every order.created message carries the traceparent header of its transaction');
is($primary->safe_psql('postgres', q{SELECT string_agg(DISTINCT detail->>'trace_id', ',')
                                       FROM alexandrite.order_timeline(7) WHERE kind = 'message' AND event_type = 'order.created'}),
	'0af7651916cd43dd8448eb211c80319c', 'order_timeline shows the trace id of the published message');

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby, 'replay');

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');

# every read below runs in a read-only transaction: a function that wrote
# would fail with "cannot execute ... in a read-only transaction"
sub ro
{
	my ($sql, @opts) = @_;
	return $standby->safe_psql('postgres', "SET default_transaction_read_only = on; $sql", @opts);
}

my $m = ro('SELECT alexandrite.metrics()');
like($m, qr/^alexandrite_in_recovery 1$/m, 'metrics() on the standby says it is a standby');
unlike($m, qr/^alexandrite_metrics_collector_success\{[^}]*\} 0$/m, 'every collector answers on the standby');
like($m, qr/^alexandrite_outbox_relay_running 0$/m, 'metrics(): no relay running on the standby');
my $pm = $primary->safe_psql('postgres', 'SELECT alexandrite.metrics()');
for my $series ('alexandrite_orders_in_status{channel="shop",status="priced"}',
	'alexandrite_operator_open_orders{operator="op1"}', 'alexandrite_quotes_total{currency="EUR",needs_review="false"}',
	'alexandrite_sla_open_orders{channel="crm"}')
{
	my ($line) = $pm =~ /^(\Q$series\E \S+)$/m;
	ok(defined $line && $m =~ /^\Q$line\E$/m, "the standby reports the primary's $line");
}
like(ro('SELECT alexandrite.metrics()', extra_params => [ '-U', 'alx_monitor' ]),
	qr/^alexandrite_build_info\{/m, 'a pg_monitor member scrapes the standby');

# the dashboards are exact on the standby: the same as counting the orders
is(ro(q{SELECT count(*) FROM (
		SELECT status, channel, orders FROM alexandrite.dashboard_status_counts WHERE orders > 0
		EXCEPT
		SELECT status, channel, count(*) FROM alexandrite.orders GROUP BY 1, 2) x}),
	'0', 'dashboard_status_counts on the standby equals a count of the orders');
is(ro(q{SELECT sum(orders) FROM alexandrite.dashboard_status_counts}), '30', 'and covers every order');
is(ro(q{SELECT open_orders FROM alexandrite.dashboard_operator_load WHERE operator_id = 'op1'}), '3',
	'dashboard_operator_load on the standby');
is(ro(q{SELECT sum(open_orders) FROM alexandrite.dashboard_sla}), '30', 'dashboard_sla on the standby');
is(ro(q{SELECT count(*) FROM alexandrite.order_board(NULL, 10)}), '10', 'order_board on the standby');
is(ro(q{SELECT count(*) FROM alexandrite.order_board('op1')}), '3', "order_board of one operator on the standby");
is(ro(q{SELECT total > 0 FROM alexandrite.price_quote(1, 'ag925')}), 't', 'price_quote on the standby');
is(ro(q{SELECT count(*) FROM alexandrite.order_timeline(2) WHERE kind = 'status'}), '2',
	'order_timeline on the standby');
is(ro(q{SELECT count(*) FROM alexandrite.order_timeline(2) WHERE kind = 'message' AND delivery_state = 'published'}),
	'3', 'with the messages the primary published');
is(ro(q{SELECT detail->>'trace_id' FROM alexandrite.order_timeline(1) LIMIT 1}),
	'0af7651916cd43dd8448eb211c80319c', 'and the trace id of the change');
is(ro(q{SELECT count(*) FROM alexandrite.stuck_orders('0')}), '30', 'stuck_orders on the standby');
is(ro(q{SELECT alexandrite.set_traceparent(alexandrite.new_traceparent()) IS NOT NULL}), 't',
	'set_traceparent works read-only');

# no background worker of alexandrite on the standby: they are registered
# to start when recovery ends (BgWorkerStart_RecoveryFinished), so the
# postmaster never forks them during recovery and there is nothing to wait
# for; the check is repeated at the end of the standby's life, below
my $no_workers = q{SELECT count(*) FROM pg_stat_activity WHERE backend_type ILIKE '%alexandrite%'};
is($standby->safe_psql('postgres', $no_workers), '0', 'no alexandrite worker (relay, fold) runs on the standby');
my $folds = ro(q{SELECT sum(folds) FROM alexandrite.dashboard_lag});

# the broker goes away; the primary keeps taking orders; then the primary dies
$mq->stop_consumers;
$mq->stop;
$primary->safe_psql('postgres', q{
	BEGIN;
	SELECT alexandrite.set_status(id, 'in_production', 'ana') FROM alexandrite.orders WHERE operator_id = 'op1';
	SELECT ledger_mine();
	COMMIT;
	SELECT produce(1, 5, 4);
});
my $pending = $primary->safe_psql('postgres', 'SELECT pending FROM alexandrite.outbox_status');
cmp_ok($pending, '>=', 23, "events wait on the primary while the broker is down ($pending)");
$primary->wait_for_catchup($standby, 'replay');
is(ro(q{SELECT sum(folds) FROM alexandrite.dashboard_lag}), $folds, 'nothing folded on the standby meanwhile');
is($standby->safe_psql('postgres', $no_workers), '0', 'still no alexandrite worker on the standby');
like(ro('SELECT alexandrite.metrics()'), qr/^alexandrite_outbox_pending_messages $pending$/m,
	'the standby sees the backlog');
$primary->stop('immediate');

# promotion: the relay starts on the new primary and drains the backlog
$mq->start;
$mq->consume('r061');
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'promotion did not finish';
ok(AlxTest::wait_until($standby, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'after promotion the relay runs on the new primary and connects');
$r = AlxBroker::check($standby, 'postgres', $mq, timeout => 90);
AlxBroker::ledger_ok($r, 'after promotion');
cmp_ok($r->{duplicates}, '<=', 0 + $r->{committed} - $pending, 'duplicates only within what was already published');
ok(AlxTest::wait_until($standby, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 60),
	'the backlog is drained');
my $after = $standby->safe_psql('postgres', 'SELECT alexandrite.metrics()');
like($after, qr/^alexandrite_in_recovery 0$/m, 'after promotion metrics() says primary');
like($after, qr/^alexandrite_outbox_relay_connected 1$/m, 'and the relay connected');
my $n = $standby->safe_psql('postgres', q{SELECT count(*) FROM alexandrite.order_timeline(2) WHERE kind = 'status'});
$standby->safe_psql('postgres', q{SELECT alexandrite.set_status(2, 'cancelled', 'ana')});
is($standby->safe_psql('postgres', q{SELECT count(*) FROM alexandrite.order_timeline(2) WHERE kind = 'status'}),
	$n + 1, 'the promoted server takes writes');

$mq->stop_consumers;
$mq->stop;
$standby->stop;
done_testing();
