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
		"wal_writer_delay = 1000ms",
		# the asynchronous-commit window below: room for its unwritten WAL,
		# and nothing that writes or flushes the WAL on its own but the WAL
		# writer and the relay (no autovacuum or fold commits, no timed
		# checkpoint, no background writer flushing WAL before a page)
		"wal_buffers = 16MB",
		"autovacuum = off",
		"alexandrite.fold_interval = 0",
		"checkpoint_timeout = '1h'",
		"bgwriter_lru_maxpages = 0"));
$node->start;
AlxTest::install($node, 'postgres');
AlxBroker::ledger_setup($node, 'postgres');
$node->safe_psql('postgres', q{
	CREATE PROCEDURE burst(n int) LANGUAGE plpgsql AS $$
	BEGIN
	  FOR i IN 1..n LOOP
	    PERFORM produce(i % 30, i % 30, 1);
	    COMMIT;
	    -- at most about 500 transactions a second: enough for the window,
	    -- not a backlog that outlasts the checks on a loaded machine
	    PERFORM pg_sleep(0.002);
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

sub pending
{
	return $node->safe_psql('postgres', 'SELECT pending FROM alexandrite.outbox_status');
}

# Poll (every 20 ms, up to $timeout s) until $cond->() is true; returns it.
sub poll
{
	my ($cond, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	while (time < $deadline)
	{
		return 1 if $cond->();
		usleep(20_000);
	}
	return $cond->();
}

# Waits until the relay has started publishing what was just produced, and
# asserts that a stop now lands in the middle of the drain: publishing has
# begun and events are still pending.
sub in_the_middle_of_a_drain
{
	my ($what) = @_;
	my $p0 = published();
	ok(poll(sub { published() > $p0 }, 60), "$what: the relay is publishing");
	my $left = pending();
	cmp_ok($left, '>', 0, "$what: the fault lands in the middle of the drain ($left events still pending)");
	return;
}

# --- immediate stop in the middle of a drain --------------------------------
$node->safe_psql('postgres', 'SELECT produce(1, 40, 200)');
in_the_middle_of_a_drain('immediate stop');
$node->stop('immediate');
$node->start;
$node->safe_psql('postgres', 'SELECT produce(1, 40, 5)');
my $r = AlxBroker::check($node, 'postgres', $mq, timeout => 120);
AlxBroker::ledger_ok($r, 'immediate stop during a drain');

# --- SIGKILL of the postmaster in the middle of a drain ------------------------
$node->safe_psql('postgres', 'SELECT produce(41, 80, 200)');
in_the_middle_of_a_drain('postmaster SIGKILL');
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
# The window this scenario targets: transactions committed asynchronously,
# visible to every session (the relay's included), whose commit records are
# not yet written when the server crashes.  Left alone it lasts milliseconds
# (the WAL writer and the relay's own flush close it), so the test holds it
# open.  The WAL writer is stopped (SIGSTOP) while the burst runs and the relay
# keeps publishing: nothing but the relay's flush before each publication
# writes the WAL then, and a relay that published without flushing would
# publish events the crash undoes.  Then publishing is paused, the burst
# commits more, and SIGKILL of the stopped WAL writer crashes the server.
# Asserted: the relay published while the WAL writer was stopped, and
# transactions visible before the crash are gone after it (the crash landed
# in the window); then no phantom was delivered.
my $bg = $node->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/started/, "SET synchronous_commit = off;\n\\echo started\nCALL burst(1000000);\n");
my $last = sub { $node->safe_psql('postgres', 'SELECT coalesce(max(id), 0) FROM ledger') };
my $l0 = $last->();
ok(poll(sub { $last->() > $l0 + 100 }, 60), 'the asynchronous burst commits');
my $walwriter = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'});
ok($walwriter, "the WAL writer runs (pid $walwriter)");
kill 'STOP', $walwriter;
my $p0 = published();
ok(poll(sub { published() >= $p0 + 200 }, 60),
	sprintf('the relay publishes while the WAL writer is stopped (%d events)', published() - $p0));
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.amqp_url = ''");
$node->reload;
ok(AlxTest::wait_until($node, 'postgres', 'SELECT NOT relay_connected FROM alexandrite.outbox_status', 30),
	'publishing paused');
my $m0 = $last->();
ok(poll(sub { $last->() >= $m0 + 50 }, 60), 'the burst commits more while nothing writes the WAL');
my $visible = $last->();
my $log_offset = -s $node->logfile;
kill 'KILL', $walwriter;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
AlxBroker::wait_ready($node);
eval { $bg->quit; };
my $after = $last->();
cmp_ok($after, '<', $visible,
	"the crash undid transactions that were visible before it (last visible event $visible, last after recovery $after): "
	  . 'it landed in the asynchronous-commit window');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET alexandrite.amqp_url');
$node->reload;
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 120);
AlxBroker::ledger_ok($r, 'synchronous_commit = off and a crash');
diag("window: last visible $visible, last after recovery $after; relay: "
	  . $node->safe_psql('postgres', 'SELECT row_to_json(s) FROM alexandrite.outbox_status s')
	  . ' ' . $node->safe_psql('postgres', 'SELECT row_to_json(r) FROM alexandrite.outbox_relay r'))
  if $r->{lost};
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
