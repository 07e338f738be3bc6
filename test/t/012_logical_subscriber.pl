# A logical replication subscriber of the orders: it receives the rows the
# MES wrote on the publisher and creates no outbox event of its own (events
# come from the API, which only the publisher ran); the rows it applies
# keep its operator load exact (the maintenance triggers fire always).
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $pub = AlxTest::new_node('pub', allows_streaming => 'logical', conf => "alexandrite.amqp_url = ''");
my $sub = AlxTest::new_node('sub', conf => "alexandrite.amqp_url = ''");
$pub->start;
$sub->start;
AlxTest::install($_, 'postgres') for ($pub, $sub);

my $setup = q{
	INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op1', 'Ana', 50), ('op2', 'Ben', 50);
};
$pub->safe_psql('postgres', $setup);
$sub->safe_psql('postgres', $setup);

# some history before the subscription (initial copy), some after (streaming)
my $work = sub {
	my ($tag) = @_;
	$pub->safe_psql('postgres', qq{
		SELECT count(alexandrite.create_order('$tag-' || g, 'shop', 'c', NULL, NULL)) FROM generate_series(1, 30) g;
		SELECT count(alexandrite.assign_next(CASE WHEN g % 2 = 0 THEN 'op1' ELSE 'op2' END)) FROM generate_series(1, 12) g;
		SELECT count(alexandrite.set_status(id, 'in_production', 'floor')) FROM alexandrite.orders
		 WHERE status = 'assigned' AND external_ref LIKE '$tag-%' AND id % 3 = 0;
		SELECT count(alexandrite.release_order(id)) FROM alexandrite.orders
		 WHERE status = 'assigned' AND external_ref LIKE '$tag-%' AND id % 3 = 1;
		SELECT count(alexandrite.set_status(id, 'cancelled')) FROM alexandrite.orders
		 WHERE status = 'new' AND external_ref LIKE '$tag-%' AND id % 4 = 0;
	});
};
$work->('before');
$pub->safe_psql('postgres',
	'CREATE PUBLICATION orders_pub FOR TABLE alexandrite.orders, alexandrite.order_events');
my $conn = $pub->connstr('postgres');
$conn =~ s/'/''/g;
$sub->safe_psql('postgres', "CREATE SUBSCRIPTION orders_sub CONNECTION '$conn' PUBLICATION orders_pub");
$sub->wait_for_subscription_sync($pub, 'orders_sub');
# the initial copy leaves the load unknown (as a restore does); count it, so
# that what follows shows the applied changes keeping it exact
$sub->safe_psql('postgres', 'SELECT alexandrite.sla_recount_load()');
$work->('after');
$pub->wait_for_catchup('orders_sub');

my $rows = q{SELECT md5(string_agg(o::text, '|' ORDER BY o.id)) FROM alexandrite.orders o};
is($sub->safe_psql('postgres', $rows), $pub->safe_psql('postgres', $rows), 'the subscriber has the orders');
my $events = q{SELECT md5(string_agg(e::text, '|' ORDER BY e.id)) FROM alexandrite.order_events e};
is($sub->safe_psql('postgres', $events), $pub->safe_psql('postgres', $events), 'and their history');
cmp_ok($pub->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.outbox_events'), '>=', 60,
	'the publisher emitted the events of its API calls');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.outbox_events'), '0',
	'the subscriber created no event for the rows it applied');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.outbox_aggregates'), '0',
	'nor any sequence row');
is($sub->safe_psql('postgres', q{
	SELECT count(*) FROM alexandrite.operator_load l
	 WHERE l.open_orders IS DISTINCT FROM (SELECT count(*) FROM alexandrite.orders o
	                                        WHERE o.operator_id = l.operator_id AND o.status < 'shipped')
	}), '0', 'the subscriber\'s operator load follows the applied rows exactly');

# the subscriber's orders go on from the replicated sequence when used there
# (logical replication does not carry sequences: move them on first, as a
# failover to a subscriber does)
$sub->safe_psql('postgres', q{
	ALTER SUBSCRIPTION orders_sub DISABLE;
	SELECT setval('alexandrite.orders_id_seq', (SELECT max(id) FROM alexandrite.orders));
	SELECT setval('alexandrite.order_events_id_seq', (SELECT max(id) FROM alexandrite.order_events));
});
my ($oid, $seq) = split /\|/, $sub->safe_psql('postgres',
	"SELECT id, event_seq FROM alexandrite.orders WHERE status = 'new' ORDER BY id LIMIT 1");
$sub->safe_psql('postgres', "SELECT alexandrite.set_status($oid, 'cancelled', 'failover')");
is($sub->safe_psql('postgres', "SELECT aggregate_seq FROM alexandrite.outbox_events WHERE aggregate_id = '$oid'"),
	$seq + 1, 'a change made on the subscriber continues the order\'s sequence');

$sub->stop;
$pub->stop;
done_testing();
