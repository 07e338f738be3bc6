# Broker faults during a drain: RabbitMQ SIGKILLed repeatedly, stopped
# gracefully, and failover between two nodes listed in alexandrite.amqp_url.
# Checked with the ledger of committed events and an independent consumer.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use AlxTest;
use AlxBroker;

my $mq = AlxBroker->new;
$mq->start;
$mq->declare('t041', 'test.#');

my $node = AlxTest::new_node('outbox041', conf => join("\n",
		"alexandrite.amqp_url = '" . $mq->url . "'",
		"alexandrite.outbox_batch_size = 200",
		"alexandrite.outbox_rotate_interval = 2"));
$node->start;
AlxTest::install($node, 'postgres');
AlxBroker::ledger_setup($node, 'postgres');
$mq->consume('t041');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'the relay connects');

# published (confirmed) so far, from shared memory
sub published
{
	return $node->safe_psql('postgres', 'SELECT published_since_start FROM alexandrite.outbox_relay_info()');
}

# Waits (with a deadline) until the relay publishes again after $p0.
sub publishing_since
{
	my ($p0) = @_;
	my $deadline = time + 60;
	usleep(20_000) while published() == $p0 && time < $deadline;
	return published() > $p0;
}

# --- SIGKILL of the broker in the middle of a drain, three times -------------
for my $round (1 .. 3)
{
	my $p0 = published();
	$node->safe_psql('postgres', "SELECT produce(1, 40, 1)") for 1 .. 20;    # 800 events, 20 transactions
	$node->safe_psql('postgres', "SELECT produce(1, 40, 200)");                # 8000 in one
	ok(publishing_since($p0), "round $round: the relay is publishing");
	$mq->kill9;
	my $left = $node->safe_psql('postgres', 'SELECT pending FROM alexandrite.outbox_status');
	cmp_ok($left, '>', 0, "round $round: the kill lands in the middle of the drain ($left events not yet confirmed)");
	$node->safe_psql('postgres', "SELECT produce(1, 40, 1)") for 1 .. 5;      # committed while the broker is down
	ok(AlxTest::wait_until($node, 'postgres',
			"SELECT NOT relay_connected AND last_error IS NOT NULL FROM alexandrite.outbox_status", 30),
		"round $round: the relay notices the dead broker");
	cmp_ok($node->safe_psql('postgres', 'SELECT pending FROM alexandrite.outbox_status'), '>', 0,
		"round $round: the backlog waits in the outbox");
	$mq->restart;
	$mq->consume('t041') if $round == 1;    # (the consumer reconnects by itself)
	my $r = AlxBroker::check($node, 'postgres', $mq, timeout => 120);
	AlxBroker::ledger_ok($r, "broker SIGKILL round $round");
}

# --- graceful stop (during or right after a drain) and start, with a backlog
# committed while the broker is down -------------------------------------------
$node->safe_psql('postgres', "SELECT produce(41, 60, 400)");
$mq->stop;
$node->safe_psql('postgres', "SELECT produce(41, 60, 1)") for 1 .. 5;
cmp_ok($node->safe_psql('postgres', 'SELECT pending FROM alexandrite.outbox_status'), '>=', 100,
	'a backlog waits while the broker is stopped');
$mq->start;
my $r = AlxBroker::check($node, 'postgres', $mq, timeout => 120);
AlxBroker::ledger_ok($r, 'graceful broker restart');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 30),
	'connected again');

# --- failover: two nodes in amqp_url; the first dies --------------------------
my $mq2 = AlxBroker->new;
$mq2->start;
$mq2->declare('t041', 'test.#');
$mq2->consume('t041');
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.amqp_url = '" . $mq->url . ", " . $mq2->url . "'");
$node->reload;
ok(AlxTest::wait_until($node, 'postgres', "SELECT relay_connected AND broker LIKE '%:" . $mq->port . "/' FROM alexandrite.outbox_status", 30),
	'connected to the first node of the list');
my $p1 = published();
$node->safe_psql('postgres', "SELECT produce(61, 80, 400)");
ok(publishing_since($p1), 'the relay publishes to the first node');
$mq->kill9;
cmp_ok($node->safe_psql('postgres', 'SELECT pending FROM alexandrite.outbox_status'), '>', 0,
	'the first node dies in the middle of the drain');
$node->safe_psql('postgres', "SELECT produce(61, 80, 1)") for 1 .. 10;
ok(AlxTest::wait_until($node, 'postgres', "SELECT relay_connected AND broker LIKE '%:" . $mq2->port . "/' FROM alexandrite.outbox_status", 30),
	'the relay moved to the second node');
# what the first node confirmed before dying is still in its queue
$mq->restart;
$r = AlxBroker::check($node, 'postgres', [ $mq, $mq2 ], timeout => 120, skip_order => 1);
is($r->{lost}, 0, 'failover: no committed event lost');
is($r->{unexpected}, 0, 'failover: nothing unexpected');
ok((grep { $_->{port} == $mq2->port } $mq2->deliveries) > 0, 'the second node received events');
# order holds on the queue of each node (first deliveries)
for my $b ($mq, $mq2)
{
	my (%last, %seen, $bad);
	for my $d (grep { $_->{message_id} && !$seen{ $_->{message_id} }++ } $b->deliveries)
	{
		my $k = $d->{aggregate_id};
		$bad++ if defined $last{$k} && $d->{aggregate_seq} < $last{$k};
		$last{$k} = $d->{aggregate_seq};
	}
	is($bad // 0, 0, 'per-aggregate order on the queue of node ' . $b->port);
}

$mq->stop_consumers;
$mq2->stop_consumers;
$node->stop;
$mq->stop;
$mq2->stop;
done_testing();
