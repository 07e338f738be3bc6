# PostgreSQL crashes during a drain: immediate stop, SIGKILL of the
# postmaster, and producers with synchronous_commit = off crashed before
# their commits reached the disk (no phantom message may be published).
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
$mq->declare('t042', 'test.#');

my $node = AlxTest::new_node('outbox042', conf => join("\n",
		"alexandrite.amqp_url = '" . $mq->url . "'",
		"alexandrite.outbox_batch_size = 200",
		"restart_after_crash = on",
		"wal_writer_delay = 1000ms"));
$node->start;
AlxTest::install($node, 'postgres');
AlxBroker::ledger_setup($node, 'postgres');
$node->safe_psql('postgres', q{
	CREATE PROCEDURE burst(n int) LANGUAGE plpgsql AS $$
	BEGIN
	  FOR i IN 1..n LOOP
	    PERFORM produce(i % 30, i % 30, 1);
	    COMMIT;
	  END LOOP;
	END $$;
});
$mq->consume('t042');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'the relay connects');

sub published
{
	return $node->safe_psql('postgres', 'SELECT published_since_start FROM alexandrite.outbox_relay_info()');
}

sub wait_publishing
{
	my $p0 = published();
	my $t0 = time;
	usleep(20_000) while published() == $p0 && time - $t0 < 10;
	return;
}

# --- immediate stop in the middle of a drain --------------------------------
$node->safe_psql('postgres', 'SELECT produce(1, 40, 200)');
wait_publishing();
$node->stop('immediate');
$node->start;
$node->safe_psql('postgres', 'SELECT produce(1, 40, 5)');
my $r = AlxBroker::check($node, 'postgres', $mq, timeout => 120);
AlxBroker::ledger_ok($r, 'immediate stop during a drain');

# --- SIGKILL of the postmaster in the middle of a drain ------------------------
$node->safe_psql('postgres', 'SELECT produce(41, 80, 200)');
wait_publishing();
my @pids = split /\n/, $node->safe_psql('postgres', 'SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()');
$node->kill9;
# the children notice the postmaster's death and exit (a publish blocked by
# the broker's flow control ends at the heartbeat deadline at the latest)
my $t0 = time;
usleep(100_000) while grep({ kill 0, $_ } @pids) && time - $t0 < 60;
ok(!grep({ kill 0, $_ } @pids), sprintf('every child, the relay included, exited %.1f s after the postmaster died', time - $t0));
$node->start;
$node->safe_psql('postgres', 'SELECT produce(41, 80, 5)');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 120);
AlxBroker::ledger_ok($r, 'postmaster SIGKILL during a drain');

# --- synchronous_commit = off, then a crash: no phantoms ------------------------
my $bg = $node->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/started/, "SET synchronous_commit = off;\n\\echo started\nCALL burst(1000000);\n");
sleep 2;
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM ledger');
$node->stop('immediate');
eval { $bg->quit; };
$node->start;
my $after = $node->safe_psql('postgres', 'SELECT count(*) FROM ledger');
note("asynchronous commits seen before the crash: $before; after recovery: $after");
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 120);
AlxBroker::ledger_ok($r, 'synchronous_commit = off and a crash');
cmp_ok($r->{delivered}, '>', 0, 'messages were delivered');

# --- pg_dump / pg_restore with pending outbox rows: the relay drains them --------
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.amqp_url = ''");
$node->reload;
ok(AlxTest::wait_until($node, 'postgres', 'SELECT NOT relay_connected FROM alexandrite.outbox_status', 30),
	'publishing paused');
$node->safe_psql('postgres', 'SELECT produce(500, 509, 3)');
my $pend = $node->safe_psql('postgres', 'SELECT pending FROM alexandrite.outbox_status');
cmp_ok($pend, '>=', 30, 'events pending before the dump');
my $dump = "$PostgreSQL::Test::Utils::tmp_check/outbox042.dump";
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-Fc', '-f', $dump ], 'pg_dump with pending events');
$node->safe_psql('template1', 'DROP DATABASE postgres WITH (FORCE)');
$node->safe_psql('template1', 'CREATE DATABASE postgres');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('postgres'), '--exit-on-error', $dump ], 'pg_restore');
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.amqp_url = '" . $mq->url . "'");
$node->reload;
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 120);
is($r->{lost}, 0, 'after pg_restore: every committed event is delivered (retained ones again: at least once)');
is($r->{unexpected}, 0, 'after pg_restore: nothing unexpected');
is($node->safe_psql('postgres', q{SELECT count(*) FROM alexandrite.outbox_events e
	WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.id = e.id)}), '0', 'pg_restore added no event of its own');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 60),
	'the restored outbox drains');

$mq->stop_consumers;
$node->stop;
$mq->stop;
done_testing();
