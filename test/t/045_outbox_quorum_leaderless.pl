# A RabbitMQ 3.10 channel that first publishes to a quorum queue while the
# queue has no leader nacks every later publish to that queue, even after a
# leader is elected.  That is what the relay meets when the broker node it
# uses dies together with the queue's leader and it reconnects to another
# node during the election.  The relay must not wear its events out against
# such a channel: after nacks it reconnects, and the retries go through.
#
# Three clustered nodes A, B, C; the queue's leader is A; the relay only
# knows B.  C is frozen (SIGSTOP) and A killed: the queue cannot elect a
# leader.  The relay's URL is rewritten (the same broker), so it opens a
# fresh channel on B while the queue is leaderless, and its publishes are
# nacked.  C is thawed, a leader is elected: every event must arrive, none
# may become a dead letter, order per aggregate kept.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use AlxTest;
use AlxBroker;

my @mq = map { AlxBroker->new } 1 .. 3;
my $cookie = join '', map { ('A' .. 'Z')[ rand 26 ] } 1 .. 20;
for my $i (0 .. 2)
{
	local $ENV{RABBITMQ_COOKIE} = $cookie;
	local $ENV{RABBITMQ_CONF_EXTRA} = $i == 0 ? '' : join("\n",
		'cluster_formation.peer_discovery_backend = classic_config',
		"cluster_formation.classic_config.nodes.1 = $mq[0]{name}\@localhost");
	$mq[$i]->start;
}
$mq[0]->declare('t045', 'test.#');    # a quorum queue led by A, with members on A, B, C
my ($out, $err) = ('', '');
IPC::Run::run([ "$AlxBroker::TOP/scripts/rabbitmq", 'ctl', $mq[0]{name}, $mq[0]->port, 'list_queues', 'name', 'leader', 'members' ],
	'>', \$out, '2>', \$err);
like($out, qr/^t045\s+\Q$mq[0]{name}\E\@localhost\s+\[.*\Q$mq[1]{name}\E.*\]/m, 'the quorum queue is led by A and has B as a member')
  or diag($out . $err);
$mq[1]->consume('t045', $mq[2]);

my $node = AlxTest::new_node('q045', conf => "alexandrite.amqp_url = '" . $mq[1]->url . "'");
$node->start;
AlxTest::install($node, 'postgres');
AlxBroker::ledger_setup($node, 'postgres');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'the relay connects to B');
$node->safe_psql('postgres', 'SELECT produce(1, 20, 2)');
my $r = AlxBroker::check($node, 'postgres', $mq[1], timeout => 60);
is($r->{lost}, 0, "events flow through B ($r->{committed})");

# no leader can be elected: A is dead, C is frozen (briefly: a node frozen
# longer than net_ticktime, 60 s, would partition the cluster)
my ($cpid) = PostgreSQL::Test::Utils::slurp_file("$ENV{RABBITMQ_BASE}/$mq[2]{name}/pid") =~ /(\d+)/;
kill 'STOP', $cpid;
my $t_freeze = time;
$mq[0]->kill9;
# the same broker written differently (a leading blank, which the relay
# trims): the relay reconnects at once, and
# publishes on a fresh channel while the queue has no leader
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.amqp_url = ' " . $mq[1]->url . "'");
$node->reload;
$node->safe_psql('postgres', 'SELECT produce(1, 20, 1)') for 1 .. 3;
my $nacked = 0;
while (time - $t_freeze < 20 && !$nacked)
{
	$nacked = $node->safe_psql('postgres', 'SELECT confirms_failed > 0 FROM alexandrite.outbox_relay_info()') eq 't';
	usleep(100_000) unless $nacked;
}
my $t_thaw = time;
kill 'CONT', $cpid;
ok($nacked, sprintf('publishes to the leaderless quorum queue are nacked (C thawed after %.1f s)', $t_thaw - $t_freeze));
$node->safe_psql('postgres', 'SELECT produce(1, 20, 1)');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 60),
	sprintf('once the queue has a leader again, the relay delivers everything (%.1f s)', time - $t_thaw));
is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.outbox_dead'), '0', 'no event became a dead letter');
$r = AlxBroker::check($node, 'postgres', $mq[1], timeout => 60);
AlxBroker::ledger_ok($r, 'leaderless quorum queue');

$mq[1]->stop_consumers;
$node->stop;
$_->kill9 for @mq;
done_testing();
