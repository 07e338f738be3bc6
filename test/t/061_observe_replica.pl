# A streaming standby serves the read side of alexandrite: metrics(),
# order_timeline, stuck_orders, the dashboards, order_board and price_quote
# answer read-only there (anything that wrote would fail in recovery), no
# relay or dashboard fold runs there, and after promotion the relay resumes
# and delivers what was pending.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $primary = AlxTest::new_node('primary', allows_streaming => 1);
$primary->start;
AlxTest::install($primary, 'postgres');
$primary->safe_psql('postgres', q{
	CREATE ROLE alx_monitor LOGIN IN ROLE pg_monitor;
	INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op1', 'Ana', 5);
	SET alexandrite.traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
	SELECT alexandrite.create_order('RP-' || i, (ARRAY['shop','b2b_api','crm'])[1 + i % 3], 'c' || i, NULL, NULL)
	  FROM generate_series(1, 30) i;
	SELECT alexandrite.set_status(id, 'priced', 'bot') FROM alexandrite.orders WHERE id % 2 = 0;
	UPDATE alexandrite.orders SET operator_id = 'op1' WHERE id IN (2, 4, 6);
	SELECT alexandrite.set_status(id, 'assigned', 'ana') FROM alexandrite.orders WHERE id IN (2, 4, 6);
});

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
	my ($sql) = @_;
	return $standby->safe_psql('postgres', "SET default_transaction_read_only = on; $sql");
}

my $m = ro('SELECT alexandrite.metrics()');
like($m, qr/^alexandrite_in_recovery 1$/m, 'metrics() on the standby says it is a standby');
unlike($m, qr/^alexandrite_metrics_collector_success\{[^}]*\} 0$/m, 'every collector answers on the standby');
my $pm = $primary->safe_psql('postgres', 'SELECT alexandrite.metrics()');
my ($orders_p) = $pm =~ /^(alexandrite_orders_in_status\{channel="shop",status="priced"\} \d+)$/m;
like($m, qr/^\Q$orders_p\E$/m, "the standby reports the primary's figures ($orders_p)");
like($standby->safe_psql('postgres', 'SELECT alexandrite.metrics()', extra_params => [ '-U', 'alx_monitor' ]),
	qr/^alexandrite_build_info\{/m, 'a pg_monitor member scrapes the standby');

is(ro(q{SELECT count(*) FROM alexandrite.order_timeline(2) WHERE kind = 'status'}), '3',
	'order_timeline on the standby');
is(ro(q{SELECT detail->>'trace_id' FROM alexandrite.order_timeline(1) LIMIT 1}),
	'0af7651916cd43dd8448eb211c80319c', 'with the trace id of the change');
is(ro(q{SELECT count(*) FROM alexandrite.stuck_orders('0')}), '30', 'stuck_orders on the standby');
is(ro(q{SELECT alexandrite.set_traceparent(alexandrite.new_traceparent()) IS NOT NULL}), 't',
	'set_traceparent works read-only');

# no background worker of alexandrite on the standby
is($standby->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type ILIKE '%alexandrite%'}),
	'0', 'no alexandrite worker runs on the standby');

# promotion: the standby becomes a writable primary with the same data
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'promotion did not finish';
like($standby->safe_psql('postgres', 'SELECT alexandrite.metrics()'), qr/^alexandrite_in_recovery 0$/m,
	'after promotion metrics() says primary');
$standby->safe_psql('postgres', q{SELECT alexandrite.set_status(2, 'in_production', 'ana')});
is($standby->safe_psql('postgres', q{SELECT count(*) FROM alexandrite.order_timeline(2) WHERE kind = 'status'}),
	'4', 'the promoted server takes writes');

$standby->stop;
$primary->stop;
done_testing();
