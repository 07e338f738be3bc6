# One busy aggregate does not hold up the others (alexandrite.outbox_max_waves).
#
# The relay confirms an aggregate's events one after the other, one broker
# round trip each.  An aggregate with 2000 events ahead of 200 others, in one
# transaction, used to make the others wait for all 2000 round trips.  With
# the wave bound, a chunk publishes at most outbox_max_waves events of one
# aggregate; the rest wait in outbox_retry (not as failures: no attempt, no
# backoff, not "blocked") and go out in order in the retry rounds.
#  - bounded (8 waves): the other aggregates' events are delivered before
#    all but a few dozen of the busy aggregate's; the busy aggregate's
#    events waited in outbox_retry meanwhile, without it ever counting as
#    blocked; everything arrives, each aggregate in order, no dead letter,
#    outbox_retry drains, and outbox_latency counts every confirm (the
#    retry rounds' too);
#  - a SIGKILL of the relay while the busy aggregate's events wait in
#    outbox_retry loses nothing and keeps the order;
#  - a failing first event still blocks its aggregate, and the events
#    deferred behind it follow it once it goes through;
#  - control (0: no bound): the 200 others arrive only after all 2000.
# Real RabbitMQ node and an independent consumer; the ledger is written in
# the producing transactions.
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
$mq->declare('t047', 'test.#');
$mq->consume('t047');

my $node = AlxTest::new_node('outbox047', conf => join("\n",
		"alexandrite.amqp_url = '" . $mq->url . "'",
		"alexandrite.outbox_batch_size = 500",
		"alexandrite.outbox_max_waves = 8",
		"alexandrite.fold_interval = 0",
		"restart_after_crash = on"));
$node->start;
AlxTest::install($node, 'postgres');
AlxBroker::ledger_setup($node, 'postgres');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'the relay connects');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub confirmed { return sql('SELECT max(confirmed) FROM alexandrite.outbox_latency()') // 0; }

# In arrival order: how many first deliveries of aggregate $busy came before
# the last first delivery of any aggregate in $others (a hash of ids).
sub busy_before_others
{
	my ($busy, $others) = @_;
	my (@order, %seen);
	for my $d ($mq->deliveries)
	{
		next if $seen{ $d->{message_id} }++;
		push @order, $d->{aggregate_id};
	}
	my $last = -1;
	for my $i (0 .. $#order)
	{
		$last = $i if $others->{ $order[$i] };
	}
	return (scalar(grep { $_ eq $busy } @order[ 0 .. $last ]), $last >= 0);
}

# Samples outbox_retry and outbox_status until nothing is pending: the most
# events waiting in outbox_retry without an attempt, the most blocked
# aggregates, and whether anything pending was left at the deadline.
sub drain_watch
{
	my ($timeout) = @_;
	my ($max_deferred, $max_blocked) = (0, 0);
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		my ($deferred, $blocked, $pending) = split /\|/,
		  sql(q{SELECT (SELECT count(*) FROM alexandrite.outbox_retry WHERE attempts = 0),
		               blocked_aggregates, pending FROM alexandrite.outbox_status});
		$max_deferred = $deferred if $deferred > $max_deferred;
		$max_blocked = $blocked if $blocked > $max_blocked;
		return ($max_deferred, $max_blocked, 0) if $pending == 0;
		usleep(50_000);
	}
	return ($max_deferred, $max_blocked, 1);
}

# ---------------------------------------------------------------------------
# 1. bounded: agg-1 with 2000 events, then agg-2..agg-201 with one each
# ---------------------------------------------------------------------------
my $c0 = confirmed();
sql('BEGIN; SELECT produce(1, 1, 2000); SELECT produce(2, 201, 1); COMMIT');
my ($max_deferred, $max_blocked, $left) = drain_watch(180);
is($left, 0, 'bounded: the relay drained every event');
cmp_ok($max_deferred, '>', 0, "bounded: the busy aggregate's events waited in outbox_retry ($max_deferred at most)");
is($max_blocked, 0, 'bounded: and it never counted as blocked');
my $r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
AlxBroker::ledger_ok($r, 'bounded');
my ($before, $any) = busy_before_others('agg-1', { map { ("agg-$_" => 1) } 2 .. 201 });
ok($any, 'bounded: the other aggregates were delivered');
# one drain: the first chunk sends agg-1's first 8, the next ones divert the
# rest, the fifth sends the others (16: room for a second drain meanwhile)
cmp_ok($before, '<=', 16, "bounded: only $before of agg-1's 2000 events came before the last of the 200 others");
is(sql('SELECT count(*) FROM alexandrite.outbox_retry') . '/' . sql('SELECT count(*) FROM alexandrite.outbox_dead'),
	'0/0', 'bounded: outbox_retry drained, no dead letter');
cmp_ok(confirmed() - $c0, '>=', 2200, 'bounded: outbox_latency counts every confirm, the retry rounds\' too ('
	  . (confirmed() - $c0) . ')');

# ---------------------------------------------------------------------------
# 2. SIGKILL of the relay while the busy aggregate's events wait in retry
# ---------------------------------------------------------------------------
sql('BEGIN; SELECT produce(301, 301, 1500); SELECT produce(302, 351, 1); COMMIT');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT count(*) > 100 FROM alexandrite.outbox_retry WHERE attempts = 0', 60),
	'kill: agg-301 has events waiting in outbox_retry');
my $pid = sql('SELECT relay_pid FROM alexandrite.outbox_status');
kill 'STOP', $pid;    # frozen where it is: the deferred events stay deferred
cmp_ok(sql('SELECT count(*) FROM alexandrite.outbox_retry WHERE attempts = 0'), '>', 100,
	'kill: events of agg-301 still wait in outbox_retry when the relay is killed');
my $log_offset = -s $node->logfile;
kill 'KILL', $pid;    # the postmaster restarts the whole cluster
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
AlxBroker::wait_ready($node);
ok(AlxTest::wait_until($node, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 180),
	'kill: the new relay drains everything');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
AlxBroker::ledger_ok($r, 'relay SIGKILLed with deferred events');

# ---------------------------------------------------------------------------
# 3. a failing first event still blocks; the deferred events follow it
# ---------------------------------------------------------------------------
# The exchange refuses nothing, so a failure is made by unbinding the queue:
# a mandatory message with no queue comes back (basic.return) and fails.
$mq->unbind('t047', 'test.#');
sql('BEGIN; SELECT produce(401, 401, 100); COMMIT');
ok(AlxTest::wait_until($node, 'postgres',
		q{SELECT blocked_aggregates = 1 FROM alexandrite.outbox_status}, 60),
	'failing: agg-401 is blocked once its first event fails');
is(sql(q{SELECT aggregate_id || ':' || (head_error IS NOT NULL) FROM alexandrite.outbox_blocked}), 'agg-401:true',
	'failing: outbox_blocked names it, with the error of its first event');
# a failure of the retry path itself: the first event is tried again there
ok(AlxTest::wait_until($node, 'postgres',
		q{SELECT max(attempts) >= 2 FROM alexandrite.outbox_retry WHERE aggregate_id = 'agg-401'}, 60),
	'failing: its first event fails again in a retry round (attempts counted)');
is(sql(q{SELECT count(*) FILTER (WHERE attempts > 0) || '/' || count(*) FROM alexandrite.outbox_retry
          WHERE aggregate_id = 'agg-401'}), '1/100', 'failing: only the first of its 100 events has attempts');
$mq->declare('t047', 'test.#');    # bound again
ok(AlxTest::wait_until($node, 'postgres', 'SELECT pending = 0 AND blocked_aggregates = 0 FROM alexandrite.outbox_status', 120),
	'failing: once the queue is back, everything goes through');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
AlxBroker::ledger_ok($r, 'failing first event');

# ---------------------------------------------------------------------------
# 4. control: no bound, the others wait for all 2000
# ---------------------------------------------------------------------------
sql(q{ALTER SYSTEM SET alexandrite.outbox_max_waves = 0});
sql('SELECT pg_reload_conf()');
ok(AlxTest::wait_until($node, 'postgres', q{SELECT current_setting('alexandrite.outbox_max_waves') = '0'}, 30),
	'control: outbox_max_waves = 0');
sql('BEGIN; SELECT produce(1001, 1001, 2000); SELECT produce(1002, 1201, 1); COMMIT');
($max_deferred, $max_blocked, $left) = drain_watch(300);
is($left . '/' . $max_deferred, '0/0', 'control: everything drained, nothing deferred');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
AlxBroker::ledger_ok($r, 'control');
($before, $any) = busy_before_others('agg-1001', { map { ("agg-$_" => 1) } 1002 .. 1201 });
cmp_ok($before, '>=', 1990, "control: without the bound $before of agg-1001's 2000 events came first");

$node->stop;
done_testing();
