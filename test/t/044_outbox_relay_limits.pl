# The relay never stalls on one event and never blocks without a deadline:
#  - reconnecting to a list of dead brokers again and again does not grow
#    the relay's memory (the URL list is parsed once per configuration);
#  - events that cannot be framed (a header key over 255 bytes, headers that
#    do not fit in one content header frame, a routing key over 255 bytes),
#    written behind outbox_emit's back as a restore or an older version
#    would, are dead-lettered with their reason while the events around them
#    are published, on the same connection;
#  - a broker whose max_message_size is lower than the relay's limit refuses
#    a large event by closing the channel: that event alone is dead-lettered,
#    after one reconnect, and goes through once the limit is raised;
#  - with RabbitMQ in a memory alarm (publishers blocked, the relay stuck
#    writing), `pg_ctl stop -m fast` finishes within seconds, and nothing is
#    lost once the alarm clears.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use Encode ();
use AlxTest;
use AlxBroker;

my $mq = AlxBroker->new;
$mq->start;
$mq->declare('t044', 'test.#', 'big.#', 'odd.#');

# ---------------------------------------------------------------------------
# 1. reconnect memory: 100 dead brokers of 2 kB URLs each
# ---------------------------------------------------------------------------
my $dead_port = PostgreSQL::Test::Cluster::get_free_port();
my $dead = join(',', map { "amqp://u:p\@127.0.0.1:$dead_port/" . ('v' x 2000) . $_ } 1 .. 100);

my $node = AlxTest::new_node('outbox044', conf => join("\n",
		"alexandrite.amqp_url = '$dead'",
		"alexandrite.outbox_batch_size = 100"));
$node->start;
AlxTest::install($node, 'postgres');

my $relay_pid;
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT relay_pid > 0 AND last_error IS NOT NULL FROM alexandrite.outbox_relay_info()", 30),
	'the relay runs and fails to connect to the dead brokers');
$relay_pid = $node->safe_psql('postgres', 'SELECT relay_pid FROM alexandrite.outbox_relay_info()');

# Memory in use by the relay (all contexts), from pg_log_backend_memory_contexts.
sub relay_memory
{
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($relay_pid)");
	for (1 .. 200)
	{
		my $log = substr(slurp_file($node->logfile), $offset);
		return $1 if $log =~ /\[$relay_pid\].*Grand total: \d+ bytes in \d+ blocks; \d+ free \(\d+ chunks\); (\d+) used/;
		usleep(100_000);
	}
	die 'the relay did not log its memory contexts';
}

# Connection attempts follow a backoff of 0.1, 0.2, 0.4 ... s, capped at
# 5 s.  The relay's first rounds fill its caches once (catalog entries,
# the plans it keeps, the first rotation check), so the window measured
# starts after ~6 s and ~7 attempts; it spans at least 3 more rounds,
# each of which would leak ~200 kB if a round kept its copy of the URLs.
sleep 6;
my $m0 = relay_memory();
sleep 6;
my $m1 = relay_memory();
sleep 15;
my $m2 = relay_memory();
note("relay memory in use: $m0, $m1 then $m2 bytes");
cmp_ok($m2 - $m1, '<', 64 * 1024,
	'three more rounds of connection attempts to 100 brokers (200 kB of URLs) do not grow the relay\'s memory');

# ---------------------------------------------------------------------------
# 2. events that cannot be framed
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.amqp_url = '" . $mq->url . "'");
$node->reload;
$mq->consume('t044');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT relay_connected FROM alexandrite.outbox_status', 60),
	'the relay connects to the broker');
AlxBroker::ledger_setup($node, 'postgres');
my $reconnects = $node->safe_psql('postgres', 'SELECT reconnects FROM alexandrite.outbox_relay_info()');

# Rows the way pg_restore or a 1.1 server could have written them: straight
# into the current log table, with the next id and aggregate seq.
$node->safe_psql('postgres', q{
	CREATE FUNCTION raw_event(agg text, typ text, payload jsonb, headers jsonb) RETURNS bigint
	LANGUAGE plpgsql AS $$
	DECLARE v_id bigint; v_seq bigint; v_cur int;
	BEGIN
	  INSERT INTO alexandrite.outbox_aggregates AS a VALUES ('odd', agg, 1)
	    ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET last_seq = a.last_seq + 1
	    RETURNING a.last_seq INTO v_seq;
	  v_id := nextval('alexandrite.outbox_id_seq');
	  SELECT cur_table INTO v_cur FROM alexandrite.outbox_relay;
	  EXECUTE format('INSERT INTO alexandrite.outbox_events_%s (id, aggregate_type, aggregate_id, aggregate_seq,'
	                 ' event_type, payload, headers) VALUES ($1, ''odd'', $2, $3, $4, $5, $6)', v_cur)
	    USING v_id, agg, v_seq, typ, payload, headers;
	  RETURN v_id;
	END $$;
});
my %bad = (
	'bad-key' => [ "'odd.happened'", "jsonb_build_object(repeat('k', 300), 'v')", qr/header key "k+\.\.\." is 300 bytes long, AMQP allows 255/ ],
	'bad-headers' => [ "'odd.happened'", "jsonb_build_object('big', repeat('h', 200000))", qr/headers do not fit in one AMQP content header frame \(frame_max 131072 bytes\)/ ],
	'bad-rkey' => [ "'odd.' || repeat('e', 300)", "'{}'", qr/routing key "odd\.e+\.\.\." is 304 bytes long, AMQP allows 255/ ],
);
# one transaction: good events of other aggregates around each bad event, and
# a later event of each bad aggregate
my $sql = "BEGIN;\nSELECT produce(1, 20, 1);\n";
for my $agg (sort keys %bad)
{
	my ($typ, $hdr) = @{ $bad{$agg} };
	$sql .= "SELECT raw_event('$agg', $typ, '{\"n\": 1}', $hdr) AS \"$agg\";\n";
	$sql .= "SELECT produce(21, 40, 1);\n";
	$sql .= "SELECT raw_event('$agg', 'odd.happened', '{\"n\": 2}', '{}');\n";
}
$sql .= "SELECT produce(41, 60, 1);\nCOMMIT;\n";
$node->safe_psql('postgres', $sql);
my %bad_id = map { $_ => $node->safe_psql('postgres',
		"SELECT min(id) FROM alexandrite.outbox_events WHERE aggregate_type = 'odd' AND aggregate_id = '$_'") } keys %bad;

my $r = AlxBroker::check($node, 'postgres', $mq, timeout => 60);
AlxBroker::ledger_ok($r, 'good events around unframeable ones');
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT count(*) = 3 FROM alexandrite.outbox_dead WHERE aggregate_type = 'odd'", 30),
	'the three unframeable events are dead letters');
for my $agg (sort keys %bad)
{
	my ($attempts, $reason) = split /\|/, $node->safe_psql('postgres',
		"SELECT attempts, reason FROM alexandrite.outbox_dead WHERE id = $bad_id{$agg}");
	like($reason // '', $bad{$agg}[2], "$agg: dead at once with the reason");
	is($attempts, 1, "$agg: after one attempt, not outbox_max_attempts");
	is($node->safe_psql('postgres', "SELECT state FROM alexandrite.outbox WHERE aggregate_id = '$agg' AND id > $bad_id{$agg}"),
		'retrying', "$agg: the next event of the aggregate waits behind it");
}
is($node->safe_psql('postgres', 'SELECT reconnects FROM alexandrite.outbox_relay_info()'), $reconnects,
	'the relay kept its connection (no reconnect)');
ok(!(grep { ($_->{aggregate_type} // '') eq 'odd' } $mq->deliveries), 'nothing of the bad aggregates was delivered');

# discarding the dead letters lets their aggregates through
$node->safe_psql('postgres', 'SELECT alexandrite.outbox_discard(array_agg(id)) FROM alexandrite.outbox_dead');
my $bad_ids = join(',', map { $bad_id{$_} } sort keys %bad);
is($node->safe_psql('postgres', "SELECT string_agg(state, ',') FROM alexandrite.outbox WHERE id IN ($bad_ids)"),
	'discarded,discarded,discarded', 'the outbox view shows the discarded events as discarded, not published');
is($node->safe_psql('postgres', "SELECT count(*) FROM alexandrite.outbox_discarded WHERE id IN ($bad_ids) AND reason LIKE 'cannot be framed:%'"),
	3, 'outbox_discarded records them with the reason they died');
my $t0 = time;
usleep(100_000) while (grep { ($_->{aggregate_type} // '') eq 'odd' } $mq->deliveries) < 3 && time - $t0 < 30;
is(scalar(grep { ($_->{aggregate_type} // '') eq 'odd' } $mq->deliveries), 3,
	'after outbox_discard the waiting events of the three aggregates are delivered');

# Headers of every JSON type go out as jsonb_each_text() gives them (null as
# ""), in the order of their names under the database's collation; headers
# that are not an object (written into the table by hand) are left off, and
# the events behind them are not held up.
my $hdr = q[{"b": 1, "a": true, "c": null, "d": {"x": [1, 2.50]}, "Z": "s", "é": "x", "a b": "sp", "n": -0.5e3}];
$node->safe_psql('postgres', "SELECT alexandrite.outbox_emit('odd', 'hdr-1', 'odd.headers', '{}', '$hdr')");
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT raw_event('hdr-2', 'odd.headers', '{"n": 1}', '[1, 2]');
	SELECT raw_event('hdr-2', 'odd.headers', '{"n": 2}', '"just a string"');
	SELECT raw_event('hdr-3', 'odd.headers', '{"n": 3}', '{"k": "v"}');
	COMMIT;
});
my $want = $node->safe_psql('postgres',
	"SELECT string_agg(key || '=' || coalesce(value, ''), ';' ORDER BY key) FROM jsonb_each_text('$hdr')");
$t0 = time;
my @hd;
while (time - $t0 < 30)
{
	@hd = grep { ($_->{aggregate_id} // '') =~ /^hdr-/ } $mq->deliveries;
	last if @hd >= 4;
	usleep(100_000);
}
my %reserved = map { $_ => 1 } qw(aggregate_type aggregate_id aggregate_seq event_type);
my %by_agg;
# (the deliveries are decoded JSON, psql's output is UTF-8 bytes)
push @{ $by_agg{ $_->{aggregate_id} } },
  Encode::encode_utf8(join(';', map { "$_->[0]=$_->[1]" } grep { !$reserved{ $_->[0] } } @{ $_->{header_list} }))
  for @hd;
is_deeply($by_agg{'hdr-1'}, [$want], "headers of every JSON type as jsonb_each_text gives them, in the order of their names ($want)");
is_deeply($by_agg{'hdr-2'}, ['', ''], 'headers that are not an object are left off');
is_deeply($by_agg{'hdr-3'}, ['k=v'], 'the event behind them is delivered with its headers');
is($node->safe_psql('postgres', "SELECT count(*) FROM alexandrite.outbox_dead WHERE aggregate_id LIKE 'hdr-%'"), 0,
	'none of them is a dead letter');

# ---------------------------------------------------------------------------
# 3. a broker whose max_message_size is below the relay's limits
# ---------------------------------------------------------------------------
# RabbitMQ refuses a larger message by closing the channel (406
# PRECONDITION_FAILED "message size N is larger than configured max size M"),
# and does not announce M beforehand.  Each channel reads the setting when it
# opens: set it, then make the relay reconnect.
sub max_message_size
{
	my ($n) = @_;
	$mq->_script('ctl', 'eval', "application:set_env(rabbit, max_message_size, $n).")
	  or die 'could not set max_message_size';
	return;
}
# closes every connection and waits until the relay has made a new one
sub close_connections
{
	my $n = $node->safe_psql('postgres', 'SELECT reconnects FROM alexandrite.outbox_relay_info()');
	$mq->_script('ctl', 'close_all_connections', 'test 044')
	  or die 'could not close the connections';
	return AlxTest::wait_until($node, 'postgres',
		"SELECT reconnects > $n AND relay_connected FROM alexandrite.outbox_relay_info()", 60);
}
max_message_size(1048576);
ok(close_connections(), 'the relay reconnects to the broker limited to 1 MiB messages');
my $limit_log = -s $node->logfile;
my $before = $node->safe_psql('postgres', 'SELECT max(id) FROM ledger');
my $reconnects_limit = $node->safe_psql('postgres', 'SELECT reconnects FROM alexandrite.outbox_relay_info()');
# a 2 MiB event of aggregate big/over-limit between good events of 40 other
# aggregates, then a later event of big/over-limit
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT produce(61, 80, 1);
	SELECT alexandrite.outbox_emit('big', 'over-limit', 'big.blob', jsonb_build_object('blob', repeat('x', 2097152)));
	SELECT produce(81, 100, 1);
	SELECT alexandrite.outbox_emit('big', 'over-limit', 'big.after', '{"n": 2}');
	COMMIT;
});
my ($big_id, $after_id) = split /\n/, $node->safe_psql('postgres',
	"SELECT id FROM alexandrite.outbox_events WHERE aggregate_id = 'over-limit' ORDER BY aggregate_seq");
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60, where => "id > $before", only_ledger => 1);
AlxBroker::ledger_ok($r, 'good events around one the broker refuses');
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT count(*) = 1 FROM alexandrite.outbox_dead WHERE id = $big_id", 30),
	'the refused event is a dead letter');
my ($attempts, $reason) = split /\|/, $node->safe_psql('postgres',
	"SELECT attempts, reason FROM alexandrite.outbox_dead WHERE id = $big_id");
like($reason // '', qr/^cannot be framed: the payload is 2097164 bytes, more than the 1048576 the broker accepts \(its max_message_size\)$/,
	'its reason gives its size and the broker\'s limit');
is($attempts, 1, 'dead after one attempt, not outbox_max_attempts');
is($node->safe_psql('postgres', "SELECT state FROM alexandrite.outbox WHERE id = $after_id"),
	'retrying', 'the next event of its aggregate waits behind it');
like(substr(slurp_file($node->logfile), $limit_log),
	qr/alexandrite relay: the broker accepts messages of at most 1048576 bytes \(its max_message_size\)/,
	'the relay logs the limit it learned');
# one refusal costs one reconnect, and the relay does not keep trying: the
# count stays put over a further 3 s of normal traffic
my $reconnects_after = $node->safe_psql('postgres', 'SELECT reconnects FROM alexandrite.outbox_relay_info()');
cmp_ok($reconnects_after - $reconnects_limit, '<=', 1, 'the refusal cost at most one reconnect ('
	  . ($reconnects_after - $reconnects_limit) . ')');
$before = $node->safe_psql('postgres', 'SELECT max(id) FROM ledger');
$node->safe_psql('postgres', 'SELECT produce(1, 20, 1)');
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 60, where => "id > $before", only_ledger => 1);
AlxBroker::ledger_ok($r, 'events after the refusal');
sleep 3;
is($node->safe_psql('postgres', 'SELECT reconnects FROM alexandrite.outbox_relay_info()'), $reconnects_after,
	'no further reconnects: the relay does not resend the refused event');
ok(!(grep { ($_->{aggregate_id} // '') eq 'over-limit' } $mq->deliveries), 'nothing of big/over-limit was delivered');

# the operator raises the limit; the relay reconnects (the broker closed its
# connection, as a broker restart would), forgets what it learned, and the
# requeued event goes through with the one behind it
max_message_size(134217728);
ok(close_connections(), 'the relay reconnects to the broker with the default limit');
is($node->safe_psql('postgres', "SELECT alexandrite.outbox_requeue(ARRAY[$big_id])"), 1,
	'outbox_requeue takes the dead letter back');
$t0 = time;
usleep(100_000) while (grep { ($_->{aggregate_id} // '') eq 'over-limit' } $mq->deliveries) < 2 && time - $t0 < 60;
is(join(',', map { $_->{event_type} } grep { ($_->{aggregate_id} // '') eq 'over-limit' } $mq->deliveries),
	'big.blob,big.after', 'then the 2 MiB event and the one behind it are delivered, in order');
$node->safe_psql('postgres', "INSERT INTO ledger SELECT id, aggregate_id, aggregate_seq FROM alexandrite.outbox_events WHERE aggregate_id = 'over-limit'");

# ---------------------------------------------------------------------------
# 4. memory alarm: publishing blocks, pg_ctl stop -m fast still works
# ---------------------------------------------------------------------------
sub alarms
{
	my ($out, $err);
	IPC::Run::run([ "$AlxTest::TOP/scripts/rabbitmq", 'ctl', $mq->{name}, $mq->port, 'eval', 'rabbit_alarm:get_alarms().' ],
		'>', \$out, '2>', \$err);
	return $out // '';
}
$mq->_script('ctl', 'set_vm_memory_high_watermark', '0.0000001');
$t0 = time;
sleep 1 while alarms() !~ /memory/ && time - $t0 < 30;
like(alarms(), qr/memory/, 'RabbitMQ is in a memory alarm');

# 40 MB of events: more than the socket buffers between relay and broker hold
$node->safe_psql('postgres', q{
	INSERT INTO ledger
	SELECT v, 'big-' || i, 1
	  FROM generate_series(1, 40) i,
	       LATERAL alexandrite.outbox_emit('big', 'big-' || i, 'big.blob',
	                                       jsonb_build_object('blob', repeat(md5(i::text), 32768))) v;
});
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'alexandrite relay'"
		  . " AND query LIKE '%waiting for the broker to read%'", 60),
	'the relay is blocked writing to the broker (pg_stat_activity says so)');

$t0 = time;
my $stopped = PostgreSQL::Test::Utils::system_log('pg_ctl', '-D', $node->data_dir, '-m', 'fast', '-t', '60', 'stop') == 0;
my $took = time - $t0;
$node->_update_pid(0) if $stopped;
ok($stopped, 'pg_ctl stop -m fast succeeds while the broker blocks publishers');
cmp_ok($took, '<', 5, sprintf('and takes less than 5 s (%.1f s)', $took));

# the alarm clears; after a restart everything committed is delivered
$mq->_script('ctl', 'set_vm_memory_high_watermark', '0.4');
$t0 = time;
sleep 1 while alarms() =~ /memory/ && time - $t0 < 30;
unlike(alarms(), qr/memory/, 'the memory alarm cleared');
$node->start;
$r = AlxBroker::check($node, 'postgres', $mq, timeout => 90,
	allow_unexpected => sub { ($_[0]->{aggregate_type} // '') eq 'odd' });
AlxBroker::ledger_ok($r, 'after the memory alarm');

$node->stop;
$mq->stop_consumers;
done_testing();
