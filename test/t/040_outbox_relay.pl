# The outbox relay against a real RabbitMQ node: happy path with the order
# core, message format, wake-up at commit, savepoints and rollbacks, a
# transaction that commits long after later ones, unroutable events to dead
# letters and back, a wrong password, the relay killed and restarted, and
# table rotation.
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
$mq->declare('t040', 'order.#', 'test.#');

my $node = AlxTest::new_node('outbox040', conf => join("\n",
		"alexandrite.amqp_url = '" . $mq->url . "'",
		"alexandrite.outbox_max_attempts = 3",
		"alexandrite.outbox_rotate_interval = 1",
		"alexandrite.outbox_batch_size = 100",
		"restart_after_crash = on",
		"log_min_messages = log"));
$node->start;
AlxTest::install($node, 'postgres');
AlxBroker::ledger_setup($node, 'postgres');
$mq->consume('t040');

ok(AlxTest::wait_until($node, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'the relay connects to the broker');

# --- the order API emits by itself -----------------------------------------
$node->safe_psql('postgres', q{
	INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
	                                size_x_mm, size_y_mm, size_z_mm, shells, watertight, boundary_edges,
	                                nonmanifold_edges, degenerate_triangles)
	VALUES (940001, sha256('t040 cube'), 'cube.stl', 'stl', 12, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 0);
	BEGIN;
	SET LOCAL alexandrite.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
	SELECT alexandrite.create_order('T040-1', 'shop', 'c1', 940001, 'ag925');
	SELECT ledger_mine();
	COMMIT;
	BEGIN;
	SELECT total FROM alexandrite.price_order((SELECT id FROM alexandrite.orders WHERE external_ref = 'T040-1'));
	SELECT ledger_mine();
	COMMIT;
	UPDATE alexandrite.orders SET sla_due_at = now() - interval '1 day' WHERE external_ref = 'T040-1';
	BEGIN;
	SELECT alexandrite.escalate_overdue(true);
	SELECT ledger_mine();
	COMMIT;
});
my $r = AlxBroker::check($node, 'postgres', $mq, timeout => 30);
AlxBroker::ledger_ok($r, 'order core');
is($r->{committed}, 4, 'created, status_changed, priced, sla_breached');
my @d = $mq->deliveries;
my $oid = $node->safe_psql('postgres', "SELECT id FROM alexandrite.orders WHERE external_ref = 'T040-1'");
is_deeply([ map { $_->{routing_key} } @d ],
	[ 'order.created', 'order.status_changed', 'order.priced', 'order.sla_breached' ],
	'routing keys <aggregate_type>.<event>, in order');
is_deeply([ map { $_->{aggregate_seq} } @d ], [ 1, 2, 3, 4 ], 'aggregate_seq 1..4');
ok((!grep { $_->{aggregate_id} ne $oid || $_->{aggregate_type} ne 'order' } @d), 'aggregate headers name the order');
ok((!grep { $_->{delivery_mode} != 2 || $_->{content_type} ne 'application/json' } @d), 'persistent JSON messages');
is($d[0]{traceparent}, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'traceparent header from the transaction');
my $price = $node->safe_psql('postgres', "SELECT price FROM alexandrite.orders WHERE external_ref = 'T040-1'");
like($d[2]{body}, qr/"price": \Q$price\E[,}]/, "order.priced carries the price ($price)");
is($d[1]{type}, 'order.status_changed', 'AMQP type is the event type');

# --- wake-up at commit, not at the 1 s fallback timer -----------------------
# Measured by the relay's own histogram of event creation -> broker confirm
# (outbox_latency(); created_at is the producing transaction's start, and each
# transaction here is one statement), so no client start-up is included.  If
# the relay only woke on its 1 s fallback poll, each latency would be uniform
# over 0..1 s: 17 or more of 20 under 500 ms would then happen about once in
# 800 runs; waking at commit, they all are, even on a loaded machine.
sub latency
{
	return { map { split /\|/ } split /\n/,
		$node->safe_psql('postgres', 'SELECT le_ms, confirmed FROM alexandrite.outbox_latency()') };
}
my $h0 = latency();
for my $i (1 .. 20)
{
	my $c0 = latency()->{Infinity};
	$node->safe_psql('postgres', "SELECT produce(900, 900, 1)");
	# wait for its confirm (a poll with a deadline), so that each event finds
	# the relay idle
	my $deadline = time + 30;
	usleep(5_000) while latency()->{Infinity} == $c0 && time < $deadline;
}
my $h1 = latency();
my %d = map { $_ => $h1->{$_} - $h0->{$_} } keys %$h1;
note('commit-to-confirm latencies from the relay\'s histogram: '
	  . join(' ', map { "le $_ ms: $d{$_}" } sort { $a <=> $b } grep { $_ ne 'Infinity' } keys %d) . " all: $d{Infinity}");
is($d{Infinity}, 20, 'the relay confirmed the twenty events (its histogram counts them)');
cmp_ok($d{500}, '>=', 17, 'at least 17 of 20 confirmed within 500 ms of their transaction: the relay wakes at commit');

# --- one aggregate's events, each after the previous one's confirm ---------
# The relay keeps one unconfirmed message per aggregate: 200 events of one
# aggregate committed together go out one at a time, each once the previous
# one is confirmed.  It writes messages with MSG_MORE and pushes them out
# before it waits for a confirm; a wait that did not would find its message
# still held by the kernel, about 200 ms for each of the 200 (measured with
# that push removed: 38.9 s here, against 0.3 s with it; 047 failed its
# drains).
{
	my $c0 = latency()->{Infinity};
	my $t0 = time;
	$node->safe_psql('postgres', 'SELECT produce(901, 901, 200)');
	my $deadline = time + 120;
	usleep(10_000) while latency()->{Infinity} < $c0 + 200 && time < $deadline;
	my $dt = time - $t0;
	is(latency()->{Infinity} - $c0, 200, 'the 200 events of one aggregate are confirmed');
	cmp_ok($dt, '<', 15, sprintf('one after the other within 15 s (%.1f s): each wait for a confirm first pushes what the socket holds', $dt));
}

# --- savepoints and rollbacks: exactly the committed events ----------------
$node->safe_psql('postgres', q{
	BEGIN; SELECT produce(1, 3, 2); SAVEPOINT a; SELECT produce(4, 5, 2); ROLLBACK TO a; SELECT produce(6, 6, 1); COMMIT;
	BEGIN; SELECT produce(7, 8, 3); ROLLBACK;
});
$node->psql('postgres', q{BEGIN; SELECT produce(9, 9, 1); SELECT 1/0; COMMIT;});
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 30);
AlxBroker::ledger_ok($r, 'savepoints and rollbacks');
ok((!grep { ($_->{aggregate_id} // '') =~ /^agg-[4579]$/ || ($_->{aggregate_id} // '') eq 'agg-8' } $mq->deliveries),
	'nothing from rolled-back savepoints or transactions');

# --- a transaction that commits long after later ones is not skipped -------
my $late = $node->background_psql('postgres');
$late->query_safe('BEGIN');
$late->query_safe('SELECT produce(50, 50, 3)');
$node->safe_psql('postgres', 'SELECT produce(51, 60, 5)') for 1 .. 5;
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 30);
is($r->{lost}, 0, 'later transactions are published while an earlier one is open');
$late->query_safe('COMMIT');
$late->quit;
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 30);
AlxBroker::ledger_ok($r, 'late commit');
ok((grep { ($_->{aggregate_id} // '') eq 'agg-50' } $mq->deliveries) == 3, 'the late transaction\'s events arrive');

# --- inverted xids: T2 takes its xid first, then waits for T1 on the same
# aggregate while an unrelated transaction between them stays open ----------
my $t2 = $node->background_psql('postgres');
my $t1 = $node->background_psql('postgres');
my $t3 = $node->background_psql('postgres');
$t2->query_safe('BEGIN');
$t2->query_safe('SELECT pg_current_xact_id()');          # T2's xid is the smallest
$t3->query_safe('BEGIN');
$t3->query_safe('SELECT pg_current_xact_id()');          # an open transaction in between
$t1->query_safe('BEGIN');
$t1->query_safe("SELECT produce(40, 40, 1)");             # T1 holds agg-40's row lock
$t2->query_until(qr/waiting/, "\\echo waiting\nSELECT produce(40, 40, 1);\n");  # T2 blocks on it
$t1->query_safe('COMMIT');
$t2->query_safe('COMMIT');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 30);
AlxBroker::ledger_ok($r, 'inverted xids with a transaction open in between');
my @a40 = grep { ($_->{aggregate_id} // '') eq 'agg-40' } $mq->deliveries;
is_deeply([ map { $_->{aggregate_seq} } @a40 ], [ 1, 2 ], 'agg-40 arrives in seq order although T2 has the smaller xid');
$t3->query_safe('COMMIT');
$_->quit for ($t1, $t2, $t3);

# --- two-phase commit: COMMIT PREPARED publishes, ROLLBACK PREPARED does not ---
$node->safe_psql('postgres', q{
	BEGIN; SELECT produce(41, 41, 2); PREPARE TRANSACTION 'obx_a';
	BEGIN; SELECT produce(42, 42, 2); PREPARE TRANSACTION 'obx_b';
});
# a barrier instead of a sleep: an event committed after the prepares is
# delivered, so the relay has drained past them
$node->safe_psql('postgres', 'SELECT produce(43, 43, 1)');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 30, where => "aggregate_id = 'agg-43'");
is($r->{lost}, 0, 'an event committed after the prepared transactions is delivered');
ok(!grep({ ($_->{aggregate_id} // '') =~ /^agg-4[12]$/ } $mq->deliveries), 'nothing of a prepared transaction is published');
$node->safe_psql('postgres', "COMMIT PREPARED 'obx_a'; ROLLBACK PREPARED 'obx_b';");
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 30);
AlxBroker::ledger_ok($r, 'two-phase commit');
is(scalar(grep { ($_->{aggregate_id} // '') eq 'agg-41' } $mq->deliveries), 2, 'the committed prepared transaction is published');
ok(!grep({ ($_->{aggregate_id} // '') eq 'agg-42' } $mq->deliveries), 'the rolled back one is not');

# --- unroutable: retried, then dead letters; the aggregate stops ----------
$node->safe_psql('postgres', q{
	SELECT produce(70, 70, 2, 'nobind');   -- routing key nobind.happened: no queue
	SELECT produce(71, 71, 1);              -- another aggregate keeps flowing
});
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT count(*) = 1 FROM alexandrite.outbox_dead WHERE aggregate_id = 'agg-70'", 60),
	'the unroutable head event becomes a dead letter after its attempts');
is($node->safe_psql('postgres', "SELECT attempts || ' ' || (reason LIKE '%312 NO_ROUTE%')::int FROM alexandrite.outbox_dead"),
	'3 1', 'dead after alexandrite.outbox_max_attempts, reason 312 NO_ROUTE');
is($node->safe_psql('postgres',
		"SELECT aggregate_id || ' ' || waiting_events || ' ' || dead::int FROM alexandrite.outbox_blocked"),
	'agg-70 2 1', 'the blocked aggregate holds its later event back');
is($node->safe_psql('postgres', 'SELECT dead_letters || \' \' || blocked_aggregates FROM alexandrite.outbox_status'),
	'1 1', 'outbox_status shows the dead letter and the blocked aggregate');
like($node->safe_psql('postgres', 'SELECT last_error FROM alexandrite.outbox_status'), qr/NO_ROUTE/,
	'last_error says why');
$r = AlxBroker::check($node, 'postgres', $mq, where => "aggregate_id <> 'agg-70'", timeout => 30);
is($r->{lost}, 0, 'other aggregates keep flowing');
# bind the routing key, requeue: both events arrive, in order
$mq->declare('t040', 'nobind.#');
$node->safe_psql('postgres', 'SELECT alexandrite.outbox_requeue(array_agg(id)) FROM alexandrite.outbox_dead');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 30);
AlxBroker::ledger_ok($r, 'requeued dead letters');
is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.outbox_blocked'), '0', 'no aggregate blocked any more');

# --- outbox_requeue pokes the relay: a retry round at once, not at its next poll ---
# Twelve dead letters, requeued one at a time once their key is bound.  The
# time from each requeue's commit until its event is confirmed (gone from
# outbox_retry) is measured in the server, 2 ms polls.  Without the poke the
# relay looks at outbox_retry once per second when idle (IDLE_POLL_MS):
# each wait would be uniform over 0-1000 ms, and 10 of 12 under 250 ms
# would have a chance of about 4 in 10^5.
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.gone_after(agg text) RETURNS float8 LANGUAGE plpgsql AS $$
	DECLARE t0 timestamptz := clock_timestamp();
	BEGIN
	  WHILE EXISTS (SELECT 1 FROM alexandrite.outbox_retry WHERE aggregate_id = agg)
	     OR EXISTS (SELECT 1 FROM alexandrite.outbox_dead WHERE aggregate_id = agg) LOOP
	    IF clock_timestamp() > t0 + interval '20 s' THEN RETURN 'Infinity'; END IF;
	    PERFORM pg_sleep(0.002);
	  END LOOP;
	  RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
	END $$;
	SELECT produce(200, 211, 1, 'poke');});
ok(AlxTest::wait_until($node, 'postgres',
		q{SELECT count(*) = 12 FROM alexandrite.outbox_dead WHERE aggregate_id LIKE 'agg-2__'}, 90),
	'poke: twelve dead letters');
$mq->declare('t040', 'poke.#');
my @waits;
for my $a (200 .. 211)
{
	my $id = $node->safe_psql('postgres', "SELECT id FROM alexandrite.outbox_dead WHERE aggregate_id = 'agg-$a'");
	push @waits, $node->safe_psql('postgres',
		"SELECT alexandrite.outbox_requeue(ARRAY[$id]::bigint[]); SELECT round(public.gone_after('agg-$a'))::text");
}
@waits = map { (split /\n/)[-1] } @waits;
my $quick = grep { $_ ne 'Infinity' && $_ < 250 } @waits;
cmp_ok($quick, '>=', 10, "poke: a requeued event is confirmed within 250 ms of the requeue, 10 of 12 times (ms: @waits)");
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 30);
AlxBroker::ledger_ok($r, 'requeued one at a time');

# --- a full queue nacks: the aggregate stops, retries, then dead letters --------
$mq->declare_full('t040full', 'full.#');
$node->safe_psql('postgres', q{
	SELECT produce(90, 90, 3, 'full');   -- the first fits, the second is nacked, the third waits
	SELECT produce(91, 91, 2);            -- another aggregate keeps flowing
});
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT count(*) = 1 FROM alexandrite.outbox_dead WHERE aggregate_id = 'agg-90'", 60),
	'a nacked event becomes a dead letter after its attempts');
like($node->safe_psql('postgres', "SELECT reason FROM alexandrite.outbox_dead WHERE aggregate_id = 'agg-90'"),
	qr/nack/, 'the reason says the broker rejected it');
is($node->safe_psql('postgres', "SELECT aggregate_seq FROM alexandrite.outbox_dead WHERE aggregate_id = 'agg-90'"),
	'2', 'the second event of the aggregate failed');
is($node->safe_psql('postgres', "SELECT waiting_events FROM alexandrite.outbox_blocked WHERE aggregate_id = 'agg-90'"),
	'2', 'the third waits behind it');
$r = AlxBroker::check($node, 'postgres', $mq, where => "aggregate_id NOT IN ('agg-90')", timeout => 30);
is($r->{lost}, 0, 'other aggregates keep flowing past the full queue');
$node->safe_psql('postgres', "SELECT alexandrite.outbox_discard(array_agg(id)) FROM alexandrite.outbox_dead;
	DELETE FROM alexandrite.outbox_retry WHERE aggregate_id = 'agg-90'; DELETE FROM ledger WHERE aggregate_id = 'agg-90'");

# --- wrong password: visible error, masked, no crash loop ---------------------
my $pid = $node->safe_psql('postgres', 'SELECT relay_pid FROM alexandrite.outbox_status');
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.amqp_url = '" . $mq->url('s3cret-pw') . "'");
$node->reload;
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT NOT relay_connected AND last_error LIKE '%ACCESS_REFUSED%' FROM alexandrite.outbox_status", 30),
	'a wrong password shows as last_error');
$node->safe_psql('postgres', 'SELECT produce(80, 80, 2)');
# no crash loop: the same relay process fails to connect and tries again
# (each attempt updates last_error_at): wait for one more attempt
my $e0 = $node->safe_psql('postgres', 'SELECT last_error_at FROM alexandrite.outbox_status');
ok(AlxTest::wait_until($node, 'postgres', qq{SELECT last_error_at > '$e0' FROM alexandrite.outbox_status}, 90),
	'the relay tries again');
is($node->safe_psql('postgres', 'SELECT relay_pid FROM alexandrite.outbox_status'), $pid, 'the relay did not restart (no crash loop)');
cmp_ok($node->safe_psql('postgres', 'SELECT pending FROM alexandrite.outbox_status'), '>=', 2, 'events wait in the outbox');
$node->safe_psql('postgres', 'CREATE ROLE watcher LOGIN; GRANT USAGE ON SCHEMA alexandrite TO watcher;
	GRANT SELECT ON ALL TABLES IN SCHEMA alexandrite TO watcher;
	GRANT EXECUTE ON FUNCTION alexandrite.outbox_relay_info TO watcher;');
my $seen = $node->safe_psql('postgres', 'SELECT last_error || broker FROM alexandrite.outbox_status', extra_params => [ '-U', 'watcher' ]);
unlike($seen, qr/s3cret-pw/, 'a non-superuser never sees the password in last_error or broker');
like($seen, qr/guest:\*\*\*\@/, 'the URL is shown masked');
my ($ret, $out, $err) = $node->psql('postgres', 'SHOW alexandrite.amqp_url', extra_params => [ '-U', 'watcher' ]);
isnt($ret, 0, 'a non-superuser cannot read alexandrite.amqp_url');
ok(!grep({ /alexandrite relay/ && /s3cret-pw/ } split /\n/, slurp_file($node->logfile)),
	'the relay never logs the password');
# a password with an unescaped '@' (the URL parser refuses it and the error
# shows the URL): masked whole, up to the last '@'
my $at_url = "amqp://us\@er:pa\@ss-w0rd\@127.0.0.1:$mq->{port}/";
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.amqp_url = '$at_url'");
$node->reload;
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT last_error LIKE 'amqp://us\@er:***\@127.0.0.1:%' FROM alexandrite.outbox_status", 30),
	'an URL with an unescaped @ in its password shows as last_error, masked');
$seen = $node->safe_psql('postgres', 'SELECT last_error || coalesce(broker, \'\') FROM alexandrite.outbox_status',
	extra_params => [ '-U', 'watcher' ]);
unlike($seen, qr/ss-w0rd|pa\@ss/, 'no part of a password with an @ is shown');
# a user and password whose "@host" is missing (a typo): the URL is invalid
# and shown in the error, without the password; a port stays readable
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.amqp_url = 'amqp://alexandrite:s3cret-pw127.0.0.1/mes'");
$node->reload;
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT last_error LIKE 'amqp://alexandrite:***: %' FROM alexandrite.outbox_status", 30),
	'an URL whose @host is missing shows as last_error, its password masked');
$seen = $node->safe_psql('postgres', 'SELECT last_error || coalesce(broker, \'\') FROM alexandrite.outbox_status',
	extra_params => [ '-U', 'watcher' ]);
unlike($seen, qr/s3cret-pw/, 'and no part of that password is shown');
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.amqp_url = 'amqp://127.0.0.1:1/novhost'");
$node->reload;
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT last_error LIKE 'amqp://127.0.0.1:1/novhost:%' FROM alexandrite.outbox_status", 30),
	'a host:port URL is shown whole');
ok(!grep({ /alexandrite relay/ && /s3cret-pw/ } split /\n/, slurp_file($node->logfile)),
	'the relay never logs these passwords');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET alexandrite.amqp_url');
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.amqp_url = '" . $mq->url . "'");
$node->reload;
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
AlxBroker::ledger_ok($r, 'after fixing the password');

# --- the relay killed during a drain ------------------------------------------
$node->safe_psql('postgres', 'SELECT produce(100, 149, 20)');
$node->safe_psql('postgres', 'SELECT pg_terminate_backend(relay_pid) FROM alexandrite.outbox_status');
$node->safe_psql('postgres', 'SELECT produce(100, 149, 2)');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
AlxBroker::ledger_ok($r, 'relay terminated during a drain');
$node->safe_psql('postgres', 'SELECT produce(200, 249, 20)');
$pid = $node->safe_psql('postgres', 'SELECT relay_pid FROM alexandrite.outbox_status');
my $log_offset = -s $node->logfile;
kill 'KILL', $pid;    # SIGKILL: the postmaster restarts the whole cluster
# wait for the crash restart itself, not just for a connection that the
# restart may still kill
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
AlxBroker::wait_ready($node);
$node->safe_psql('postgres', 'SELECT produce(200, 249, 2)');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 90);
AlxBroker::ledger_ok($r, 'relay SIGKILLed during a drain');
isnt($node->safe_psql('postgres', 'SELECT relay_pid FROM alexandrite.outbox_status'), $pid, 'a new relay runs');

# --- a held xmin: the event log still rotates and never bloats ----------------
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$holder->query_safe('SELECT count(*) FROM ledger');
my $cur0 = $node->safe_psql('postgres', 'SELECT cur_table FROM alexandrite.outbox_relay');
# produce until the log has rotated twice (outbox_rotate_interval = 1 s), with
# a deadline, instead of sleeping through a fixed number of seconds
my ($rotations, $cur, $deadline) = (0, $cur0, time + 120);
while ($rotations < 2 && time < $deadline)
{
	$node->safe_psql('postgres', 'SELECT produce(300, 339, 10)');
	my $now = $node->safe_psql('postgres', 'SELECT cur_table FROM alexandrite.outbox_relay');
	$rotations++ if $now ne $cur;
	$cur = $now;
	usleep(100_000);
}
is($rotations, 2, 'the log rotated twice while the writes went on and xmin was held');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
AlxBroker::ledger_ok($r, 'while a REPEATABLE READ transaction holds xmin');
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT cur_table <> $cur0 FROM alexandrite.outbox_relay", 30),
	'the log rotated while xmin was held');
is($node->safe_psql('postgres', q{
	SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE relname LIKE 'outbox_events%'}),
	'0', 'no dead tuples in the event tables while xmin is held');
$holder->query_safe('COMMIT');
$holder->quit;

# --- rotation: drained tables are truncated, never vacuumed ---------------------
ok(AlxTest::wait_until($node, 'postgres', q{
	SELECT (SELECT count(*) FROM alexandrite.outbox_events) < (SELECT count(*) FROM ledger)}, 30),
	'drained outbox tables were truncated by rotation');
is($node->safe_psql('postgres', q{
	SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE relname LIKE 'outbox_events%'}),
	'0', 'no dead tuples in the event tables');
is($node->safe_psql('postgres', 'SELECT pending FROM alexandrite.outbox_status'), '0', 'nothing pending at the end');
is($node->safe_psql('postgres', 'SELECT published_total >= (SELECT count(*) FROM ledger) FROM alexandrite.outbox_status'),
	't', 'published_total counts every confirmed event');

$mq->stop_consumers;
$node->stop;
$mq->stop;
done_testing();
