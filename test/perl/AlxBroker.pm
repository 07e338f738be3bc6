# AlxBroker: a private RabbitMQ node and an independent consumer for the
# outbox TAP tests, plus the ledger checker.
#
#   my $mq = AlxBroker->new;                # picks free ports, does not start
#   $mq->start; $mq->kill9; $mq->restart; $mq->stop;
#   $mq->declare('q1', 'order.#');          # quorum queue bound to the exchange
#   $mq->consume('q1');                     # background consumer -> $mq->{out}
#   my @d = $mq->deliveries;                # every delivery, in arrival order
#
#   AlxBroker::ledger_setup($node, $db);    # table + produce() helper
#   my $r = AlxBroker::check($node, $db, $mq);   # lost/unexpected/order/dups
package AlxBroker;

use strict;
use warnings FATAL => 'all';

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use JSON::PP;
use AlxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our $TOP = abs_path(dirname(__FILE__) . '/../..');
our $EXCHANGE = 'alexandrite.events';
my $count = 0;
my @all;

sub new
{
	my ($class, %opts) = @_;
	# The node also needs port+10000 for Erlang distribution, and both must
	# lie below the kernel's ephemeral range (an outgoing connection may take
	# a free ephemeral port before the node binds it: dist_port_already_used,
	# seen in CI).
	my $port = AlxTest::low_free_port(pair => 10000);
	my $self = bless {
		name => $opts{name} // sprintf('alxt%d_%d', $$, ++$count),
		port => $port,
		out => "$PostgreSQL::Test::Utils::tmp_check/consumer_${port}_" . ++$count . '.jsonl',
		consumers => [],
	}, $class;
	$ENV{RABBITMQ_BASE} //= "$PostgreSQL::Test::Utils::tmp_check/rabbitmq";
	push @all, $self;
	return $self;
}

sub port { return $_[0]->{port}; }
sub url { my ($self, $pw) = @_; $pw //= 'guest'; return "amqp://guest:$pw\@127.0.0.1:$self->{port}/"; }

sub _script
{
	my ($self, @args) = @_;
	my ($out, $err);
	my $ok = IPC::Run::run([ "$TOP/scripts/rabbitmq", $args[0], $self->{name}, $self->{port}, @args[ 1 .. $#args ] ],
		'>', \$out, '2>', \$err);
	note("rabbitmq $args[0] $self->{name}: " . ($out // '') . ($err // ''));
	return $ok;
}

sub start   { my $s = shift; $s->_script('start') or die "could not start RabbitMQ node $s->{name}"; $s->{up} = 1; return; }
sub stop    { my $s = shift; $s->_script('stop'); $s->{up} = 0; return; }
sub kill9   { my $s = shift; $s->_script('kill'); $s->{up} = 0; return; }
sub restart { my $s = shift; $s->start; return; }

# A durable quorum queue bound to the outbox exchange with the given keys.
sub declare
{
	my ($self, $queue, @keys) = @_;
	for my $try (1 .. 50)
	{
		return if IPC::Run::run([ '/usr/bin/python3', "$TOP/test/outbox_consumer.py", 'declare',
				$self->{port}, $queue, $EXCHANGE, @keys ], '>', \my $o, '2>', \my $e);
		usleep(200_000);
	}
	die "could not declare queue $queue";
}

# A queue that holds one message and nacks the rest (overflow reject-publish).
sub declare_full
{
	my ($self, $queue, $key) = @_;
	IPC::Run::run([ '/usr/bin/python3', "$TOP/test/outbox_consumer.py", 'declare_full',
			$self->{port}, $queue, $EXCHANGE, $key ]) or die "could not declare $queue";
	return;
}

sub unbind
{
	my ($self, $queue, $key) = @_;
	IPC::Run::run([ '/usr/bin/python3', "$TOP/test/outbox_consumer.py", 'unbind',
			$self->{port}, $queue, $EXCHANGE, $key ]) or die "could not unbind";
	return;
}

# Starts the independent consumer of a queue; deliveries go to $self->{out}.
# Extra brokers (for failover) are tried in turn.
sub consume
{
	my ($self, $queue, @others) = @_;
	my $h = IPC::Run::start([ '/usr/bin/python3', "$TOP/test/outbox_consumer.py", 'consume',
			$self->{port}, $queue, $self->{out}, map { $_->{port} } @others ],
		'>', '/dev/null', '2>', "$self->{out}.err");
	push @{ $self->{consumers} }, $h;
	return $h;
}

sub stop_consumers
{
	my ($self) = @_;
	for my $h (@{ $self->{consumers} })
	{
		$h->signal('TERM');
		eval { $h->finish; };
	}
	$self->{consumers} = [];
	return;
}

# Every delivery recorded so far, in arrival order.
sub deliveries
{
	my ($self) = @_;
	return () unless -f $self->{out};
	open my $f, '<', $self->{out} or die;
	my @d;
	while (my $l = <$f>)
	{
		next unless $l =~ /\n$/;
		push @d, decode_json($l);
	}
	close $f;
	return @d;
}

# The ledger: committed events, written in the producing transactions.
sub ledger_setup
{
	my ($node, $db) = @_;
	$node->safe_psql($db, q{
		CREATE TABLE IF NOT EXISTS ledger (id bigint PRIMARY KEY, aggregate_id text, seq bigint);
		-- n events for each of the aggregates agg-<from>..agg-<to>, one
		-- transaction per call; the ledger row commits (or not) with them
		CREATE OR REPLACE FUNCTION produce(a_from int, a_to int, n int, typ text DEFAULT 'test')
		RETURNS void LANGUAGE plpgsql AS $$
		DECLARE v bigint;
		BEGIN
		  FOR i IN 1..n LOOP
		    FOR a IN a_from..a_to LOOP
		      v := alexandrite.outbox_emit(typ, 'agg-' || a, typ || '.happened', jsonb_build_object('i', i, 'a', a));
		      INSERT INTO ledger SELECT e.id, e.aggregate_id, e.aggregate_seq FROM alexandrite.outbox_events e WHERE e.id = v;
		    END LOOP;
		  END LOOP;
		END $$;
		-- record the events the current transaction emitted any other way
		CREATE OR REPLACE FUNCTION ledger_mine() RETURNS void LANGUAGE sql AS $$
		  INSERT INTO ledger SELECT e.id, e.aggregate_id, e.aggregate_seq FROM alexandrite.outbox_events e
		   WHERE e.txid = pg_current_xact_id() ON CONFLICT DO NOTHING $$;
	});
	return;
}

# Compares the ledger with the consumer's deliveries.  Waits until nothing
# is lost, or until no new delivery has arrived for $timeout s (a loaded
# machine drains a long backlog slowly; only a stall ends the wait early),
# and at most $opts{max_wait} s (default 900).  Returns a hash: lost,
# unexpected, reordered, duplicates, delivered, committed.
sub check
{
	my ($node, $db, $mq, %opts) = @_;
	my $timeout = $opts{timeout} // 90;
	my $where = $opts{where} // 'true';
	my %ledger;
	for my $l (split /\n/, $node->safe_psql($db, "SELECT id, aggregate_id, seq FROM ledger WHERE $where"))
	{
		my ($id, $agg, $seq) = split /\|/, $l;
		$ledger{$id} = [ $agg, $seq ];
	}
	my (%seen, @first, $dups, @d);
	my $deadline = time + $timeout;
	my $cap = time + ($opts{max_wait} // 900);
	my $count = -1;
	while (1)
	{
		@d = map { $_->deliveries } (ref $mq eq 'ARRAY' ? @$mq : ($mq));
		%seen = ();
		$seen{ $_->{message_id} }++ for @d;
		my $lost = grep { !$seen{$_} } keys %ledger;
		last if $lost == 0 || time > $deadline || time > $cap;
		$deadline = time + $timeout if @d > $count;    # progress
		$count = @d;
		usleep(200_000);
	}
	my %r = (committed => scalar(keys %ledger), delivered => scalar(@d), lost => 0,
		unexpected => 0, reordered => 0, duplicates => 0, badseq => 0);
	my @lost = sort { $a <=> $b } grep { !$seen{$_} } keys %ledger;
	$r{lost} = scalar(@lost);
	$r{lost_ids} = \@lost;
	diag('lost (first 20): ' . join(' ', map { "$_($ledger{$_}[0]/$ledger{$_}[1])" } @lost[ 0 .. ($#lost < 19 ? $#lost : 19) ]))
	  if @lost;
	my (%first_seen, %last_seq);
	for my $m (@d)
	{
		my $id = $m->{message_id};
		if ($first_seen{$id}++)
		{
			$r{duplicates}++;
			next;
		}
		next if $opts{only_ledger} && !$ledger{$id};
		if (!$ledger{$id})
		{
			$r{unexpected}++ unless $opts{allow_unexpected} && $opts{allow_unexpected}->($m);
			next;
		}
		my ($agg, $seq) = @{ $ledger{$id} };
		$r{badseq}++ if $m->{aggregate_id} ne $agg || $m->{aggregate_seq} != $seq;
		my $key = "$m->{aggregate_type}/$agg";
		$r{reordered}++ if defined $last_seq{$key} && $seq <= $last_seq{$key} && !$opts{skip_order};
		$last_seq{$key} = $seq;
	}
	note(sprintf('ledger check: committed %d delivered %d lost %d unexpected %d reordered %d badseq %d duplicates %d',
			@r{qw(committed delivered lost unexpected reordered badseq duplicates)}));
	return \%r;
}

# Waits until the server accepts queries again (after a crash restart).
sub wait_ready
{
	my ($node, $timeout) = @_;
	$timeout //= 90;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		my ($ret) = $node->psql('postgres', 'SELECT 1');
		return 1 if defined $ret && $ret == 0;
		usleep(200_000);
	}
	die 'server did not come back';
}

# The standard assertions on a check result.
sub ledger_ok
{
	my ($r, $what) = @_;
	# a check of nothing proves nothing: the scenario must have committed
	# events for the other assertions to mean anything
	cmp_ok($r->{committed}, '>', 0, "$what: the ledger holds committed events ($r->{committed})");
	is($r->{lost}, 0, "$what: no committed event lost ($r->{committed} committed)");
	is($r->{unexpected}, 0, "$what: no unexpected (uncommitted) event delivered");
	is($r->{reordered}, 0, "$what: first deliveries of each aggregate in seq order");
	is($r->{badseq}, 0, "$what: aggregate_id/aggregate_seq headers match the ledger");
	note("$what: $r->{duplicates} duplicate deliveries");
	return;
}

END
{
	for my $mq (@all)
	{
		eval { $mq->stop_consumers; };
		eval { $mq->_script('kill') if $mq->{port}; };
	}
}

1;
