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
#  - the retry rounds read outbox_retry per aggregate, not all of it per
#    round: draining 5000 events of one aggregate read 157k of its entries,
#    not 1.6M; and a round runs when it may have work (or once a second),
#    not at every turn of the relay;
#  - control (0: no bound): the 200 others arrive only after all 2000;
#  - an aggregate index that is not valid is not used: the relay warns and
#    reads the table instead, and still holds back the new events of an
#    aggregate that waits.
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

# "tried/all" of the events of aggregate $agg waiting in outbox_retry
sub tried_of
{
	my ($agg) = @_;
	return sql(qq{SELECT count(*) FILTER (WHERE attempts > 0) || '/' || count(*) FROM alexandrite.outbox_retry
	               WHERE aggregate_id = '$agg'});
}

# binds the queue again (a failure was made by unbinding it: a mandatory
# message with no queue comes back and fails); then everything must go
# through, and the ledger must hold
sub rebind_and_drain
{
	my ($name, $ledger) = @_;
	$mq->declare('t047', 'test.#');
	ok(AlxTest::wait_until($node, 'postgres', 'SELECT pending = 0 AND blocked_aggregates = 0 FROM alexandrite.outbox_status', 120),
		"$name: once the queue is back, everything goes through");
	AlxBroker::ledger_ok(AlxBroker::check($node, 'postgres', $mq, timeout => 60), $ledger);
	return;
}

# true once the server log, from byte $from on, holds the relay's WARNING
# that it does not trust the aggregate index (polled for up to 60 s)
sub relay_distrusts_index
{
	my ($from) = @_;
	for (1 .. 600)
	{
		return 1
		  if substr(slurp_file($node->logfile), $from) =~
		  /WARNING: .*index alexandrite.outbox_retry_aggregate_idx is missing or not a valid btree .* reading the table instead/;
		usleep(100_000);
	}
	return 0;
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
is(tried_of('agg-401'), '1/100', 'failing: only the first of its 100 events has attempts');
rebind_and_drain('failing', 'failing first event');

# ---------------------------------------------------------------------------
# 4. the retry rounds read per aggregate, not per waiting event
# ---------------------------------------------------------------------------
# 5000 events of one aggregate drain in about 625 retry rounds of 8.  Each
# round used to find the heads with a DISTINCT ON over all of outbox_retry,
# so the drain read about 5000^2 / 16 = 1.56M entries of it (1,638,061
# measured on 2026-12-04); with a skip scan over the aggregates it read
# 156,609, mostly index entries of the last rounds' deleted rows that are
# not yet known dead to everyone (the relay commits asynchronously, so their
# hint bits wait for the WAL writer).  That is per event, not per event and
# round: the bound is 80 per event.  The figure is the table's own
# statistics (every index and sequential read of outbox_retry), read once
# the relay has flushed them (stable for two polls).
# "reads inserted": entries read from outbox_retry (index entries and rows
# of sequential scans), and rows inserted into it
sub retry_reads
{
	return sql(q{SELECT pg_stat_clear_snapshot();
	             SELECT COALESCE((SELECT sum(idx_tup_read) FROM pg_stat_user_indexes
	                               WHERE relid = 'alexandrite.outbox_retry'::regclass), 0)
	                  + COALESCE((SELECT seq_tup_read FROM pg_stat_user_tables
	                               WHERE relid = 'alexandrite.outbox_retry'::regclass), 0)
	                  || ' ' || (SELECT n_tup_ins FROM pg_stat_user_tables
	                              WHERE relid = 'alexandrite.outbox_retry'::regclass)});
}
sub stable_retry_reads
{
	my ($prev, $now) = ('', retry_reads());
	my $deadline = time + 30;
	while ($now ne $prev && time < $deadline)
	{
		usleep(1_500_000);    # the relay flushes its statistics at most once a second
		($prev, $now) = ($now, retry_reads());
	}
	return split / /, $now;
}
# Nothing but the relay reads outbox_retry meanwhile: the wait polls the
# relay's confirm count (shared memory).
my ($reads0, $ins0) = stable_retry_reads();
my $c4 = confirmed();
sql('BEGIN; SELECT produce(501, 501, 5000); COMMIT');
ok(AlxTest::wait_until($node, 'postgres', "SELECT max(confirmed) >= $c4 + 5000 FROM alexandrite.outbox_latency()", 300),
	'reads: 5000 events of one aggregate confirmed');
my ($reads1, $ins1) = stable_retry_reads();
my ($reads, $ins) = ($reads1 - $reads0, $ins1 - $ins0);
cmp_ok($ins, '>=', 4000, "reads: most of them waited in outbox_retry ($ins)");
cmp_ok($reads, '<', 400_000, "reads: the drain read $reads entries of outbox_retry (80 per event at most; all of it per round: 1.6M)");
is(sql('SELECT count(*) FROM alexandrite.outbox_retry'), '0', 'reads: outbox_retry drained');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
AlxBroker::ledger_ok($r, 'one aggregate of 5000 events');

# ---------------------------------------------------------------------------
# 5. a retry round runs when it may have work, not at every turn
# ---------------------------------------------------------------------------
# 600 aggregates wait behind dead letters: their first events were returned
# (no queue is bound to gone.#) and, with outbox_max_attempts = 1, went
# dead at once; their second events sit in outbox_retry and are never due.
# Each retry round reads the heads of all 600 (about 1000 entries: more
# aggregates than a sixteenth of the rows, so the skip scan gives up after
# 65 descents and the round reads the table once).
# Then 300 transactions, each a turn of the relay, each with an event of a
# new aggregate (one each: a relay that falls behind on a loaded machine
# must not divert them by the wave bound, which would give the retry
# rounds work) and one of a blocked aggregate (diverted behind its dead
# letter: that changes no first waiting event, so it calls for no round).
# A round at every turn would read about 300 * 1000 = 300k entries; rounds
# at most once a second read about 1000 per second of the window.  Measured on
# 2026-12-04: 5,206 entries in 6.5 s.  With a round at every turn (the
# throttle disabled, before the blocked producers were added) 444,804 in
# 5.5 s; with a round at every diverted event, 16.9M in 8.7 s; and while
# the stream's chunk query still used EXISTS (the generic plan hashed all
# of outbox_retry for every chunk), 274,933 in 5.9 s.
sql(q{ALTER SYSTEM SET alexandrite.outbox_max_attempts = 1});
sql('SELECT pg_reload_conf()');
ok(AlxTest::wait_until($node, 'postgres', q{SELECT current_setting('alexandrite.outbox_max_attempts') = '1'}, 30),
	'rounds: outbox_max_attempts = 1');
# part 4 left 5000 deleted rows in outbox_retry; until a vacuum, each
# descent into them reads their index entries again (a vacuum's business,
# not the rounds' count)
sql('VACUUM alexandrite.outbox_retry');
sql(q{BEGIN; SELECT produce(2001, 2600, 2, 'gone'); COMMIT});
ok(AlxTest::wait_until($node, 'postgres',
		q{SELECT (SELECT count(*) FROM alexandrite.outbox_dead) = 600
		     AND (SELECT count(*) FROM alexandrite.outbox_retry) = 600}, 120),
	'rounds: 600 dead letters, 600 events waiting behind them');
my ($rreads0) = split / /, retry_reads();
my ($c5, $t0) = (confirmed(), time);
$node->safe_psql('postgres', join("\n", map {
		'BEGIN; SELECT produce(' . (2700 + $_) . ', ' . (2700 + $_) . ', 1); SELECT produce(' . (2000 + $_) . ', '
		  . (2000 + $_) . ", 1, 'gone'); COMMIT;"
		  . ' SELECT pg_sleep(0.01);' } 1 .. 300));
ok(AlxTest::wait_until($node, 'postgres', "SELECT max(confirmed) >= $c5 + 300 FROM alexandrite.outbox_latency()", 60),
	'rounds: the 300 events of unblocked aggregates went out');
usleep(1_500_000);    # the relay's statistics of the window
my ($rreads1) = split / /, retry_reads();
my $secs = time - $t0;
my $rreads = $rreads1 - $rreads0;
cmp_ok($rreads, '<', 1100 * ($secs + 3) * 2,
	sprintf('rounds: %d entries of outbox_retry read in %.1f s of 300 turns (about one round a second: at every turn, 330k)',
		$rreads, $secs));
# back to normal: the route exists, the dead letters are requeued (the
# requeue pokes the relay for a retry round), and everything goes out
$mq->declare('t047', 'test.#', 'gone.#');
sql(q{ALTER SYSTEM RESET alexandrite.outbox_max_attempts});
sql('SELECT pg_reload_conf()');
is(sql('SELECT alexandrite.outbox_requeue(ARRAY(SELECT id FROM alexandrite.outbox_dead))'), '600',
	'rounds: the 600 dead letters requeued');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 120),
	'rounds: and everything went out');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
AlxBroker::ledger_ok($r, 'dead letters requeued');

# ---------------------------------------------------------------------------
# 6. control: no bound, the others wait for all 2000
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

# ---------------------------------------------------------------------------
# 7. the stream asks the aggregate indexes of outbox_retry and outbox_dead
#    directly (no plan); an index it cannot trust to hold every waiting
#    event (here marked invalid, as a failed CREATE INDEX CONCURRENTLY
#    leaves one) is not used: the relay says so (a WARNING) and reads the
#    table instead, and the events still go out, in order
# ---------------------------------------------------------------------------
my $logstart = -s $node->logfile;
sql(q{UPDATE pg_catalog.pg_index SET indisvalid = false
	   WHERE indexrelid = 'alexandrite.outbox_retry_aggregate_idx'::regclass});
sql('SELECT produce(1301, 1303, 3)');
ok(relay_distrusts_index($logstart), 'probe: the relay does not trust an aggregate index that is not valid, and says so');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 120),
	'probe: reading the table instead, the 9 events go out');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
AlxBroker::ledger_ok($r, 'aggregate index not valid');
# ... and reading the table, it still holds back the new events of an
# aggregate that waits: agg-1401's first event fails (no queue bound), then
# five more of it are written; they must wait behind it in outbox_retry
# untried, not be sent ahead of it (sent, they would fail and count attempts)
$mq->unbind('t047', 'test.#');
sql('SELECT produce(1401, 1401, 1)');
ok(AlxTest::wait_until($node, 'postgres',
		q{SELECT max(attempts) >= 1 FROM alexandrite.outbox_retry WHERE aggregate_id = 'agg-1401'}, 60),
	'probe: with the table read, agg-1401 waits behind its failed first event');
sql('SELECT produce(1401, 1401, 5)');
ok(AlxTest::wait_until($node, 'postgres',
		q{SELECT count(*) = 6 FROM alexandrite.outbox_retry WHERE aggregate_id = 'agg-1401'}, 60),
	'probe: its five new events are held back in outbox_retry');
is(tried_of('agg-1401'), '1/6', 'probe: none of the five was tried ahead of the first');
rebind_and_drain('probe (agg-1401 waiting)', 'aggregate index not valid, a waiting aggregate');
sql(q{UPDATE pg_catalog.pg_index SET indisvalid = true
	   WHERE indexrelid = 'alexandrite.outbox_retry_aggregate_idx'::regclass});

# ---------------------------------------------------------------------------
# 8. nor an index of another collation or operator class under the name
#    (AlxIndexTrusted): each case restarts the server, so that the new relay
#    warns again (once a minute per process), and its events go out
# ---------------------------------------------------------------------------
my @swaps = (
	[ 'another collation', q{(aggregate_type COLLATE "C", aggregate_id)} ],
	[ 'another operator class', q{(aggregate_type text_pattern_ops, aggregate_id)} ]);
my $agg = 1500;
for my $swap (@swaps)
{
	my ($what, $cols) = @$swap;
	sql(qq{ALTER INDEX alexandrite.outbox_retry_aggregate_idx RENAME TO outbox_retry_aggregate_saved;
	       CREATE INDEX outbox_retry_aggregate_idx ON alexandrite.outbox_retry $cols});
	$node->restart;
	$logstart = -s $node->logfile;
	sql("SELECT produce($agg, " . ($agg + 2) . ', 3)');
	ok(relay_distrusts_index($logstart), "probe: the relay does not trust an aggregate index of $what, and says so");
	ok(AlxTest::wait_until($node, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 120),
		"probe ($what): reading the table instead, the 9 events go out");
	$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
	AlxBroker::ledger_ok($r, "aggregate index of $what");
	sql(q{DROP INDEX alexandrite.outbox_retry_aggregate_idx;
	      ALTER INDEX alexandrite.outbox_retry_aggregate_saved RENAME TO outbox_retry_aggregate_idx});
	$agg += 100;
}

$node->stop;
done_testing();
