# What the relay can frame, at the edge, through a real broker: outbox_emit
# accepts exactly the events that rabbitmq-c 0.11 can publish in frames of
# alexandrite's frame_max (docs/outbox.md, "Limits") and refuses the rest
# with 54000, so the relay never meets an event it cannot send.  The events
# at the limit are published and confirmed; the relay keeps going.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;
use AlxBroker;

my $mq = AlxBroker->new;
$mq->start;
$mq->declare('t043', 'lim.#');
my $node = AlxTest::new_node('outbox043', conf => "alexandrite.amqp_url = '" . $mq->url . "'");
$node->start;
AlxTest::install($node, 'postgres');
$mq->consume('t043');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'the relay connects');

# the headers' budget for an event (docs/outbox.md): 131072 - 162 - the
# lengths of aggregate_type and aggregate_id - twice that of event_type,
# each header taking 6 bytes plus its name and value
my ($at, $aid, $et) = ('lim', 'edge-1', 'lim.edge');
my $budget = 131072 - 162 - length($at) - length($aid) - 2 * length($et);
my $vlen = $budget - 6 - 1;             # one header "k": 6 + 1 + vlen = budget
my $emit = sub {
	my ($id, $headers, $payload) = @_;
	$payload //= "'{}'";
	return $node->psql('postgres',
		"SELECT alexandrite.outbox_emit('$at', '$id', '$et', $payload, $headers)", on_error_stop => 0);
};
my ($rc, $out, $err);

$rc = $emit->('edge-1', "jsonb_build_object('k', repeat('v', $vlen))");
is($rc, 0, "headers of exactly $budget bytes are accepted");
($rc, $out, $err) = $node->psql('postgres',
	"SELECT alexandrite.outbox_emit('$at', 'edge-1', '$et', '{}', jsonb_build_object('k', repeat('v', $vlen + 1)))",
	on_error_stop => 0, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/54000/, 'one byte more is refused with program_limit_exceeded (54000)');

$rc = $emit->('edge-2', "jsonb_build_object(repeat('n', 255), 'x')");
is($rc, 0, 'a header name of 255 bytes is accepted');
($rc, $out, $err) = $node->psql('postgres',
	"SELECT alexandrite.outbox_emit('$at', 'edge-2', '$et', '{}', jsonb_build_object(repeat('n', 256), 'x'))",
	on_error_stop => 0, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/54000/, 'a header name of 256 bytes is refused (54000)');

# many small headers add up the same way (2000 of them)
my $n = 2000;
my $each = int($budget / $n);
my $klen = 10;                                 # "h" . 9 digits
my $vl = $each - 6 - $klen;
$rc = $emit->('edge-3', "(SELECT jsonb_object_agg('h' || lpad(g::text, 9, '0'), repeat('w', $vl)) FROM generate_series(1, $n) g)");
is($rc, 0, "$n headers within the budget are accepted");

# a large payload (2 MB of JSON text)
$rc = $emit->('edge-4', "'{}'", "jsonb_build_object('blob', repeat('p', 2000000))");
is($rc, 0, 'a 2 MB payload is accepted');

# and an ordinary event after them
$rc = $emit->('edge-5', "'{\"tenant\": \"eu\"}'");
is($rc, 0, 'an ordinary event');

# every accepted event is published and confirmed, none is dead-lettered
ok(AlxTest::wait_until($node, 'postgres',
	"SELECT pending = 0 AND published_total >= 5 FROM alexandrite.outbox_status", 90),
	'the relay published every accepted event');
is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.outbox_dead'), '0', 'no dead letters');
ok($node->safe_psql('postgres', 'SELECT relay_connected FROM alexandrite.outbox_status') eq 't',
	'the relay is still connected');
my %got;
for my $i (1 .. 300)
{
	%got = map { ($_->{aggregate_id} => $_) } grep { ($_->{routing_key} // '') eq 'lim.edge' } $mq->deliveries;
	last if keys %got >= 5;
	select(undef, undef, undef, 0.1);
}
is(scalar(keys %got), 5, 'the consumer received the five events');
is($got{'edge-1'}{header_bytes}, 1 + $vlen + length('aggregate_type') + length($at) + length('aggregate_id')
	+ length($aid) + length('aggregate_seq') + 1 + length('event_type') + length($et),
	'the event at the header budget arrived with its header whole');
is($got{'edge-2'}{longest_header_name}, 255, 'the 255-byte header name arrived whole');
is($got{'edge-3'}{nheaders}, $n + 4, "the $n headers arrived");
is(length($got{'edge-4'}{body}), length('{"blob": ""}') + 2000000, 'the 2 MB body arrived');

# --- one transaction of large events does not stall the relay ----------------
# A small event and 40 events of 15 MB (600 MB of payload) in one
# transaction, then a small event of another aggregate.  The relay reads them in chunks of at most
# 32 MB: it answers the broker's heartbeats (5 s) and its memory stays
# bounded.  Before, it read the whole id range at once (more than 15 s and
# 2.2 times the payload in memory), the broker closed the connection for
# missed heartbeats, and the relay read the same range again, for ever,
# while the small event waited.  (A queue nobody consumes holds them.)
$mq->declare('tbig', 'big.#');
my $log_connects = sub { my @c = (slurp_file($node->logfile) =~ /alexandrite relay: connected to/g); scalar @c };
my $connects = $log_connects->();
my $rpid = $node->safe_psql('postgres', 'SELECT relay_pid FROM alexandrite.outbox_status');
# a small event first in the same transaction: the reader must not size the
# rest of the chunk from it
$node->safe_psql('postgres', "BEGIN;
	SELECT alexandrite.outbox_emit('lim', 'small-before', 'lim.before', '{}');
	SELECT count(alexandrite.outbox_emit('big', 'big-' || (g % 4), 'blob',
	  jsonb_build_object('g', g, 'blob', repeat('b', 15000000)))) FROM generate_series(1, 40) g;
	COMMIT");
$node->safe_psql('postgres', "SELECT alexandrite.outbox_emit('lim', 'small-after', 'lim.after', '{}')");
# Polls until $done_sql is true (at most 240 s); returns whether it became
# true and the relay's peak resident memory (VmHWM, kB) seen meanwhile.
sub drain_watching_memory
{
	my ($pid, $done_sql) = @_;
	my ($peak, $done) = (0, 0);
	my $deadline = time() + 240;
	while (time() < $deadline)
	{
		if (open(my $st, '<', "/proc/$pid/status"))
		{
			for (<$st>) { $peak = $1 if /^VmHWM:\s+(\d+) kB/ && $1 > $peak; }
			close $st;
		}
		$done = $node->safe_psql('postgres', $done_sql) eq 't';
		last if $done;
		select(undef, undef, undef, 0.5);
	}
	return ($done, $peak);
}
my ($drained, $peak) = drain_watching_memory($rpid, 'SELECT pending = 0 FROM alexandrite.outbox_status');
ok($drained, 'large events: the 40 events of 15 MB and the small ones before and after them are published');
is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.outbox_dead'), '0', 'large events: no dead letters');
is($log_connects->(), $connects, 'large events: the relay never lost its connection (no missed heartbeats)');
cmp_ok($peak, '<', 400 * 1024, "large events: the relay's peak memory stayed under 400 MB (${peak} kB; the payload is 600 MB)");
note("relay peak memory: $peak kB");

# --- the retry path reads its heads in bounded chunks too ---------------------
# 40 aggregates, each with one event of 4 MB that the broker returned (no
# queue bound to "late.#" yet), wait in outbox_retry.  Once a queue is bound,
# their heads are due together; the retry reader takes at most 32 MB of
# heads per round and leaves the rest for the next, so the relay's memory
# stays bounded (reading all 160 MB of heads at once would take more than
# twice that) and its connection alive.
$node->safe_psql('postgres', "SELECT count(alexandrite.outbox_emit('late', 'late-' || g, 'blob',
	  jsonb_build_object('g', g, 'blob', repeat('r', 4000000)))) FROM generate_series(1, 40) g");
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT count(*) = 40 FROM alexandrite.outbox_retry WHERE aggregate_type = 'late'", 120),
	'retry path: the 40 returned events of 4 MB wait in outbox_retry');
$rpid = $node->safe_psql('postgres', 'SELECT relay_pid FROM alexandrite.outbox_status');
$connects = $log_connects->();
# the peak so far was the 600 MB scenario: start the high-water mark afresh
open(my $clear, '>', "/proc/$rpid/clear_refs") or die "cannot reset the relay's peak memory: $!";
print $clear "5\n";
close $clear;
$mq->declare('tlate', 'late.#');
($drained, $peak) = drain_watching_memory($rpid,
	"SELECT count(*) = 0 FROM alexandrite.outbox_retry WHERE aggregate_type = 'late'");
ok($drained, 'retry path: the 40 heads are published once their queue is bound');
is($node->safe_psql('postgres', "SELECT count(*) FROM alexandrite.outbox_dead WHERE aggregate_type = 'late'"), '0',
	'retry path: no dead letters');
is($log_connects->(), $connects, 'retry path: the relay never lost its connection');
cmp_ok($peak, '<', 200 * 1024, "retry path: the relay's peak memory stayed under 200 MB (${peak} kB; the heads are 160 MB)");
note("relay peak memory on the retry path: $peak kB");

$node->stop;
$mq->stop;
done_testing();
