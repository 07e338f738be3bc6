# No phantom events across a failover: the relay publishes an event only once
# its commit is flushed by the standby a failover would promote.
#
# * synchronous replication (synchronous_standby_names): a commit whose wait
#   for the standby is cancelled, and a commit with synchronous_commit =
#   local, are visible on the primary at once; the relay must still wait for
#   the synchronous standby.  The primary then dies and the standby, which
#   never got those commits, is promoted: nothing of them was published.
# * asynchronous replication with alexandrite.publish_after_standby_flush:
#   the same, for the standbys the setting names.
# * the negative control: asynchronous replication without the setting
#   publishes what the standby lacks, and those events are phantoms after
#   the failover (the documented limit of that configuration).
# Real RabbitMQ node, independent consumer; events are matched by
# (message_id, aggregate_id, aggregate_seq), because a promoted standby may
# hand out again the ids and sequence numbers of transactions it never saw.
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
$mq->declare('t043', 'test.#');
$mq->consume('t043');

my $primary = AlxTest::new_node('p1', allows_streaming => 1, conf => join("\n",
		"alexandrite.amqp_url = '" . $mq->url . "'",
		"alexandrite.fold_interval = 0",
		"wal_receiver_status_interval = 1s"));
$primary->start;
AlxTest::install($primary, 'postgres');
AlxBroker::ledger_setup($primary, 'postgres');
ok(AlxTest::wait_until($primary, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'the relay connects');

# a streaming standby of $from named $name (its application_name)
sub new_standby
{
	my ($from, $name) = @_;
	$from->backup("b_$name");
	my $s = PostgreSQL::Test::Cluster->new($name);
	$s->init_from_backup($from, "b_$name", has_streaming => 1);
	$s->append_conf('postgresql.conf', "primary_conninfo = '" . $from->connstr . " application_name=$name'");
	$s->start;
	$from->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = '$name' AND state = 'streaming'")
	  or die "standby $name does not stream";
	return $s;
}

# the server's clock, to tell a wait the relay reports from here on from an
# earlier one (outbox_status keeps the last message until another replaces it)
sub server_now { return $_[0]->safe_psql('postgres', 'SELECT clock_timestamp()'); }

# the relay says, after $since, that it waits for what $re describes
sub relay_waits
{
	my ($node, $since, $re, $name) = @_;
	like(AlxTest::poll_value($node, 'postgres',
			"SELECT last_error FROM alexandrite.outbox_status WHERE last_error_at > '$since'", $re, 30),
		$re, $name);
	return;
}

sub set_conf
{
	my ($node, %kv) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $_ = '$kv{$_}'") for sort keys %kv;
	$node->reload;
	return;
}

# deliveries keyed by message_id/aggregate_id/seq, first arrival time kept
sub delivered
{
	my %d;
	for my $m ($mq->deliveries)
	{
		$d{"$m->{message_id}/$m->{aggregate_id}/$m->{aggregate_seq}"} //= $m;
	}
	return \%d;
}

sub ledger_keys
{
	my ($node, $where) = @_;
	$where //= 'true';
	return [ map { join '/', split /\|/ } split /\n/,
		$node->safe_psql('postgres', "SELECT id, aggregate_id, seq FROM ledger WHERE $where ORDER BY id") ];
}

# committed ledger events of aggregates agg-<lo>..agg-<hi> that the consumer got
sub count_delivered
{
	my ($node, $lo, $hi) = @_;
	my $d = delivered();
	return scalar grep { $d->{$_} } @{ ledger_keys($node,
			"substr(aggregate_id, 5)::int BETWEEN $lo AND $hi") };
}

# every committed event of the ledger delivered; nothing delivered that the
# ledger lacks (but the known phantoms of the negative control)
sub ledger_ok
{
	my ($node, $what, $known) = @_;
	my $keys = ledger_keys($node);
	my %ledger = map { $_ => 1 } @$keys;
	my $d;
	my $deadline = time + 60;
	do { usleep(200_000); $d = delivered(); } while (grep({ !$d->{$_} } @$keys) && time < $deadline);
	my @lost = grep { !$d->{$_} } @$keys;
	my @phantom = grep { !$ledger{$_} && !($known && $known->{$_}) } keys %$d;
	cmp_ok(scalar(@$keys), '>', 0, "$what: the ledger is not empty");
	is(scalar(@lost), 0, "$what: every committed event delivered (" . scalar(@$keys) . ')');
	is(scalar(@phantom), 0, "$what: no phantom event (delivered, but no such transaction here)")
	  or diag("phantoms: @phantom[0 .. ($#phantom < 9 ? $#phantom : 9)]");
	return;
}

# a commit that waits for the synchronous standby, cancelled: it is then
# committed locally (WARNING) and visible, but not replicated
sub cancelled_commit
{
	my ($node, $lo, $hi) = @_;
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	$bg->query_until(qr/go/, "\\echo go\nSELECT produce($lo, $hi, 2);\n");
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
	  or die 'the commit does not wait for the standby';
	$node->safe_psql('postgres', "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'");
	$bg->quit;
	return;
}

sub visible_locally
{
	my ($node, $lo, $hi) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM ledger WHERE substr(aggregate_id, 5)::int BETWEEN $lo AND $hi");
}

my $s1 = new_standby($primary, 's1');

# ---- A. synchronous replication, the standby away, then back ----------------
set_conf($primary, synchronous_standby_names => 's1');
$primary->safe_psql('postgres', 'SELECT produce(1, 5, 2)');
ok(AlxTest::wait_until($primary, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 30),
	'A: with a synchronous standby the relay publishes');
$s1->stop('fast');
my $since = server_now($primary);
cancelled_commit($primary, 10, 12);
$primary->safe_psql('postgres', 'SET synchronous_commit = local; SELECT produce(13, 14, 2)');
is(visible_locally($primary, 10, 14), '10', 'A: the cancelled and the local commits are visible on the primary');
# the relay has the events in hand and says it waits; 3 s more, nothing arrives
my $waits_a = qr/publishing waits until the synchronous standbys \(synchronous_standby_names = 's1'\) have flushed/;
relay_waits($primary, $since, $waits_a, 'A: outbox_status says what the relay waits for');
sleep 3;
is(count_delivered($primary, 10, 14), 0, 'A: the relay publishes none of them while the standby has not confirmed');
my $t_back = time;
$s1->start;
ok(AlxTest::wait_until($primary, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 30),
	'A: once the standby is back, the relay publishes them');
my $d = delivered();
my @early = grep { $_->{recv_t} && $_->{recv_t} < $t_back && $_->{aggregate_id} =~ /^agg-1[0-4]$/ } values %$d;
is(scalar(@early), 0, 'A: none was delivered before the standby came back');
ledger_ok($primary, 'A');

# ---- B. asynchronous replication, alexandrite.publish_after_standby_flush ----
set_conf($primary, synchronous_standby_names => '');
for my $bad ('ANY (s1', 'ANY 0 (s1)', 'FIRST -1 (s1)')
{
	my ($ret, $out, $err) = $primary->psql('postgres',
		"ALTER SYSTEM SET alexandrite.publish_after_standby_flush = '$bad'");
	like($err, qr/invalid value for parameter "alexandrite.publish_after_standby_flush"|syntax error|must be greater than zero/,
		"B: '$bad' is refused");
}
set_conf($primary, 'alexandrite.publish_after_standby_flush' => 'ANY 1 (s1)');
is($primary->safe_psql('postgres', 'SHOW alexandrite.publish_after_standby_flush'), 'ANY 1 (s1)', 'B: the setting is taken');
$primary->safe_psql('postgres', 'SELECT produce(20, 22, 2)');
ok(AlxTest::wait_until($primary, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 30),
	'B: with the named standby streaming the relay publishes');
$s1->stop('fast');
$since = server_now($primary);
$primary->safe_psql('postgres', 'SELECT produce(23, 25, 2)');
my $waits_b = qr/alexandrite.publish_after_standby_flush = 'ANY 1 \(s1\)' have flushed .* \(0 of 1 have\)/;
relay_waits($primary, $since, $waits_b, 'B: outbox_status says what the relay waits for');
sleep 3;
is(count_delivered($primary, 23, 25), 0, 'B: nothing the named standby lacks is published');
# FIRST: the first listed standby that streams; none streams, so still nothing
$since = server_now($primary);
set_conf($primary, 'alexandrite.publish_after_standby_flush' => 'FIRST 1 (nosuch, s1)');
my $waits_first = qr/alexandrite.publish_after_standby_flush = 'FIRST 1 \(nosuch, s1\)' have flushed/;
relay_waits($primary, $since, $waits_first, "B: the relay waits under 'FIRST 1 (nosuch, s1)'");
sleep 2;
is(count_delivered($primary, 23, 25), 0, "B: 'FIRST 1 (nosuch, s1)' without s1 publishes nothing either");
$s1->start;
ok(AlxTest::wait_until($primary, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 30),
	"B: s1 back: 'FIRST 1 (nosuch, s1)' is satisfied by s1");
# more standbys than there are: the relay waits; back to one, it goes on
set_conf($primary, 'alexandrite.publish_after_standby_flush' => 'ANY 2 (*)');
$since = server_now($primary);
$primary->safe_psql('postgres', 'SELECT produce(26, 26, 2)');
my $waits_any2 = qr/alexandrite.publish_after_standby_flush = 'ANY 2 \(\*\)' have flushed .* \([01] of 2 have\)/;
relay_waits($primary, $since, $waits_any2, "B: the relay waits under 'ANY 2 (*)', two needed, one exists");
sleep 2;
is(count_delivered($primary, 26, 26), 0, "B: 'ANY 2 (*)' with one standby publishes nothing");
set_conf($primary, 'alexandrite.publish_after_standby_flush' => 'ANY 1 (*)');
ok(AlxTest::wait_until($primary, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 30),
	"B: 'ANY 1 (*)' lets it through");
ledger_ok($primary, 'B');

# ---- C. negative control: asynchronous, no setting, failover -----------------
set_conf($primary, 'alexandrite.publish_after_standby_flush' => '');
$primary->wait_for_catchup($s1, 'flush');
$s1->stop('fast');
$primary->safe_psql('postgres', 'SELECT produce(30, 32, 2)');
ok(AlxTest::wait_until($primary, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 30),
	'C: without the setting, asynchronous replication publishes what the standby lacks');
my $c_keys = ledger_keys($primary, "substr(aggregate_id, 5)::int BETWEEN 30 AND 32");
$primary->stop('immediate');
$s1->start;
$s1->promote;
$s1->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'promotion failed';
ok(AlxTest::wait_until($s1, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'C: the relay runs on the promoted standby');
is(visible_locally($s1, 30, 32), '0', 'C: the promoted standby never got those transactions');
$d = delivered();
is(scalar(grep { $d->{$_} } @$c_keys), scalar(@$c_keys),
	'C: so the ' . scalar(@$c_keys) . ' events published before the failover are phantoms (the documented limit)');
my %known = map { $_ => 1 } @$c_keys;

# ---- D. synchronous replication, cancelled wait, failover ----------------------
my $s2 = new_standby($s1, 's2');
set_conf($s1, synchronous_standby_names => 's2');
$s1->safe_psql('postgres', 'SELECT produce(40, 42, 2)');
ok(AlxTest::wait_until($s1, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 30), 'D: published');
$s1->wait_for_catchup($s2, 'flush');
$s2->stop('fast');
$since = server_now($s1);
cancelled_commit($s1, 43, 45);
$s1->safe_psql('postgres', 'SET synchronous_commit = local; SELECT produce(46, 47, 2)');
is(visible_locally($s1, 43, 47), '10', 'D: the cancelled and the local commits are visible on the primary');
# the relay has them in hand and waits for s2 when the primary dies
my $waits_d = qr/publishing waits until the synchronous standbys \(synchronous_standby_names = 's2'\) have flushed/;
relay_waits($s1, $since, $waits_d, 'D: outbox_status says the relay waits for s2');
sleep 3;
$s1->stop('immediate');
$s2->start;
$s2->promote;
$s2->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'promotion failed';
ok(AlxTest::wait_until($s2, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'D: the relay runs on the promoted standby');
is(visible_locally($s2, 43, 47), '0', 'D: the promoted standby never got those transactions');
$s2->safe_psql('postgres', 'SELECT produce(43, 47, 1)');    # the same aggregates again, on the new primary
ledger_ok($s2, 'D, after the failover', \%known);

# ---- E. asynchronous replication with the setting, failover --------------------
my $s3 = new_standby($s2, 's3');
set_conf($s2, 'alexandrite.publish_after_standby_flush' => 'ANY 1 (s3)');
$s2->safe_psql('postgres', 'SELECT produce(50, 52, 2)');
ok(AlxTest::wait_until($s2, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 30), 'E: published');
$s2->wait_for_catchup($s3, 'flush');
$s3->stop('fast');
$since = server_now($s2);
$s2->safe_psql('postgres', 'SELECT produce(53, 55, 2)');
my $waits_e = qr/alexandrite.publish_after_standby_flush = 'ANY 1 \(s3\)' have flushed .* \(0 of 1 have\)/;
relay_waits($s2, $since, $waits_e, 'E: outbox_status says the relay waits for s3');
sleep 3;
$s2->stop('immediate');
$s3->start;
$s3->promote;
$s3->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'promotion failed';
ok(AlxTest::wait_until($s3, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'E: the relay runs on the promoted standby');
is(visible_locally($s3, 53, 55), '0', 'E: the promoted standby never got those transactions');
$s3->safe_psql('postgres', 'SELECT produce(53, 55, 1)');
ledger_ok($s3, 'E, after the failover', \%known);

$mq->stop_consumers;
$s3->stop;
$mq->stop;
done_testing();
