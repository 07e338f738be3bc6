# High availability under fire: scripts/ha (etcd, three PostgreSQL nodes
# under Patroni with synchronous_mode, a three-node RabbitMQ cluster with a
# quorum queue, Prometheus with docs/alerts.yml) under sustained order
# traffic through the libpq multi-host URL, with client retries, while the
# schedule below kills things:
#
#   leader_postmaster  SIGKILL of the Patroni leader's postmaster
#   leader_node        SIGKILL of the leader's Patroni, postmaster and children
#   broker             SIGKILL of the RabbitMQ node the relay is connected to
#   broker_other       SIGKILL of a RabbitMQ node the relay is not connected to
#   replica_node       SIGKILL of the synchronous standby (Patroni, PostgreSQL)
#   outage             every RabbitMQ node killed until Prometheus fires the
#                      relay-disconnected and outbox-backlog alerts
#
# ALX_HA_CHAOS_SCHEDULE (comma-separated) overrides the default schedule.
# After each fault, `scripts/ha up` brings the dead member back.  An
# independent consumer records every delivery; the ledger (a table written
# in the producing transactions) and the clients' acknowledgements are
# compared with it at the end on the final leader: acknowledged changes
# lost, events lost, phantom events, per-order order violations, duplicates;
# and the time from each kill to the first delivery of an event whose
# transaction started after the kill.  The dashboards read on a replica
# must equal a count of its base table.
use strict;
use warnings FATAL => 'all';

use HTTP::Tiny;
use IPC::Run qw(run start);
use JSON::XS;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use Time::Local qw(timegm);
use AlxTest;

my $TOP = $AlxTest::TOP;
my $T_START = time;
my @schedule = split /\s*,\s*/,
  ($ENV{ALX_HA_CHAOS_SCHEDULE} || 'leader_postmaster,broker,leader_node,broker,outage');
my %target_s = (leader_postmaster => 30, leader_node => 30, replica_node => 30,
	broker => 10, broker_other => 10, outage => 60);
for (@schedule) { die "unknown fault $_" unless $target_s{$_}; }
my $rate = $ENV{ALX_HA_CHAOS_RATE} || 300;

my $dir = "$PostgreSQL::Test::Utils::tmp_check/ha";
$ENV{ALX_HA_DIR} = $dir;
$ENV{ALX_HA_ALERT_FOR} = '2s';    # docs/alerts.yml with every `for:` shortened
my $http = HTTP::Tiny->new(timeout => 3);
my $json = JSON::XS->new;

sub ha
{
	my @args = @_;
	my $t0 = time;
	my ($out, $err) = ('', '');
	my $ok = run([ "$TOP/scripts/ha", @args ], '>', \$out, '2>', \$err);
	note("scripts/ha @args (" . sprintf('%.1f s', time - $t0) . "): $err") if $args[0] ne 'env';
	die "scripts/ha @args failed:\n$err" unless $ok;
	return ($out, time - $t0);
}

# whatever happens, nothing of the setup outlives the test
my ($consumer, $traffic, %bg);
END
{
	local $?;
	eval { $_->{h}->kill_kill } for values %bg;
	eval { $traffic->kill_kill if $traffic && $traffic->pumpable; };
	eval { $consumer->kill_kill if $consumer && $consumer->pumpable; };
	# after a failure the logs stay in tmp_check/ha
	my @keep = Test::More->builder->is_passing ? () : ("--keep");
	run([ "$TOP/scripts/ha", 'down', @keep ], '>', '/dev/null', '2>', '/dev/null') if $TOP;
}

$SIG{TERM} = $SIG{INT} = sub { die "killed\n"; };

ha('down');
my (undef, $t_up) = ha('up', '--no-build');
note(sprintf('scripts/ha up: %.1f s', $t_up));
my %env;
for (split /\n/, (ha('env'))[0])
{
	next unless /^(\w+)=(.*)$/;
	my ($k, $v) = ($1, $2);
	$env{$k} = $v =~ s/^['"]|['"]$//gr;
}
ok($env{ALX_HA_PGURL} =~ /^postgresql:\/\/mes:\w+\@127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+\/mes\?target_session_attrs=read-write/,
	'scripts/ha env: a multi-host URL with target_session_attrs=read-write');
my @amqp_ports = split ' ', $env{ALX_HA_AMQP_PORTS};
is(scalar(@amqp_ports), 3, 'scripts/ha env: three broker ports');
my @pg_ports = split ' ', $env{ALX_HA_PG_PORTS};
my @rest = split ' ', $env{ALX_HA_PATRONI_URLS};
my ($super_pw) = $env{ALX_HA_ADMIN_PGURL} =~ /postgres:(\w+)\@/;

# psql on one member (1..3) as the superuser, or through a URL
sub mq
{
	my ($i, $sql, %o) = @_;
	my $url = $i =~ /^\d$/ ? "postgresql://postgres:$super_pw\@127.0.0.1:$pg_ports[$i - 1]/mes?connect_timeout=3" : $i;
	my ($out, $err) = ('', '');
	my $ok = run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $url, '-c', $sql ], '>', \$out, '2>', \$err);
	die "psql on $i failed: $err" if !$ok && !$o{may_fail};
	chomp $out;
	return $ok ? $out : undef;
}

sub wait_true
{
	my ($f, $timeout) = @_;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		my $r = eval { $f->() };
		return 1 if defined $r && $r eq 't';
		usleep(200_000);
	}
	return 0;
}

sub leader
{
	for my $i (1 .. 3)
	{
		my $r = $http->get("$rest[$i - 1]/primary");
		return $i if $r->{status} == 200;
	}
	return undef;
}

sub wait_leader
{
	my $deadline = time + 60;
	while (time < $deadline) { my $l = leader(); return $l if $l; usleep(100_000); }
	die 'no leader';
}

# The member Patroni may promote if leader $l fails: in synchronous mode only
# a synchronous standby (its /sync key, the "sync_standby" role of /cluster).
# Right after a failover or a rejoin there is none for a few seconds, while
# Patroni assigns one, and then no failover happens (docs/operations.md, High
# availability): a run once killed the leader 1.3 s into such a window.
sub sync_standby
{
	my ($l) = @_;
	my $r = $http->get("$rest[$l - 1]/cluster");
	return undef unless $r->{success};
	my ($m) = grep { $_->{role} eq 'sync_standby' && $_->{state} =~ /^(running|streaming)$/ }
	  @{ $json->decode($r->{content})->{members} };
	return $m && $m->{name} =~ /^pg(\d)$/ ? $1 : undef;
}

# A leader other than $old, and when it was first seen (undef: none in time).
sub wait_new_leader
{
	my ($old, $timeout) = @_;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		my $l = leader();
		return ($l, time) if $l && $l != $old;
		usleep(100_000);
	}
	return (undef, undef);
}

# there is no leader election on the open internet here: every address is loopback
my ($ss) = ('');
run([ 'ss', '-Hltnp' ], '>', \$ss);
my @outside = grep { my ($local) = (split ' ', $_)[3]; $local !~ /^(127\.0\.0\.1|\[::1\]):/ && $_ =~ /patroni|postgres|etcd|beam|prometheus/ } split /\n/, $ss;
is(scalar(@outside), 0, 'no server of the setup listens beyond loopback') or diag(join "\n", @outside);

# ---- schema of the test: ledger, operators -------------------------------------
my $l0 = wait_leader();
mq($l0, q{
	CREATE TABLE public.ledger (id bigint PRIMARY KEY, aggregate_id text NOT NULL, seq bigint NOT NULL, created_at timestamptz NOT NULL);
	-- the test's own bookkeeping, in the producing transaction: mes may not
	-- read the outbox log (docs/operations.md, "Privileges"), the ledger may
	CREATE FUNCTION public.ledger_mine() RETURNS void LANGUAGE sql SECURITY DEFINER
	  SET search_path = pg_catalog, pg_temp AS $$
	  INSERT INTO public.ledger SELECT e.id, e.aggregate_id, e.aggregate_seq, e.created_at FROM alexandrite.outbox_events e
	   WHERE e.txid OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id() ON CONFLICT DO NOTHING $$;
	REVOKE ALL ON FUNCTION public.ledger_mine() FROM PUBLIC;
	GRANT EXECUTE ON FUNCTION public.ledger_mine() TO mes;
	INSERT INTO alexandrite.operators (id, name, capacity) SELECT 'op' || i, 'Operator ' || i, 1000000 FROM generate_series(1, 4) i;
});

# ---- consumer and traffic --------------------------------------------------------
my $deliveries = "$PostgreSQL::Test::Utils::tmp_check/ha_deliveries.jsonl";
my $acks = "$PostgreSQL::Test::Utils::tmp_check/ha_acks.jsonl";
unlink $deliveries, $acks;
{
	local $ENV{ALX_AMQP_USER} = $env{ALX_HA_AMQP_USER};
	local $ENV{ALX_AMQP_PASSWORD} = $env{ALX_HA_AMQP_PASSWORD};
	$consumer = start([ '/usr/bin/python3', "$TOP/test/outbox_consumer.py", 'consume', $amqp_ports[0], 'ha.orders',
			$deliveries, @amqp_ports[ 1, 2 ] ], '>', '/dev/null', '2>', "$deliveries.err");
}
my $traffic_err = '';
# the clients use the multi-host URL (target_session_attrs=read-write) of
# the superuser: this test is about failover, the roles of docs/operations.md
# are tested by 063 and 065 (and until the order API runs as the extension
# owner, the documented mes role cannot write orders)
$traffic = start([ '/usr/bin/python3', "$TOP/test/ha_traffic.py", $env{ALX_HA_ADMIN_PGURL}, $acks, $rate, 4 ],
	'>', '/dev/null', '2>', \$traffic_err);

# incremental readers of the two JSON-lines files
my (%dpos, @dlist, %apos, @alist);
sub read_lines
{
	my ($file, $pos, $list) = @_;
	open my $f, '<', $file or return;
	seek $f, $pos->{$file} // 0, 0;
	while (my $l = <$f>)
	{
		last unless $l =~ /\n$/;
		push @$list, $json->decode($l);
		$pos->{$file} = tell $f;
	}
	close $f;
	return;
}

# epoch seconds of the producing transaction, from the event's payload
sub event_time
{
	my ($d) = @_;
	return $d->{_t} if exists $d->{_t};
	my $b = eval { $json->decode($d->{body}) } || {};
	my $ts = $b->{at} // $b->{created_at} // '';
	my $t;
	if ($ts =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d(?::?\d\d)?)$/)
	{
		$t = timegm($6, $5, $4, $3, $2 - 1, $1) + ($7 // 0);
		if ($8 ne 'Z')
		{
			my ($sg, $h, $m) = $8 =~ /([+-])(\d\d):?(\d\d)?/;
			$t -= ($sg eq '-' ? -1 : 1) * ($h * 3600 + ($m // 0) * 60);
		}
	}
	return $d->{_t} = $t;
}

# first delivery of an event whose transaction started after $t (the
# deliveries are in arrival order: search the first one after $t, then scan
# only what arrived since the last call for the same $t)
my %scanned;
sub first_new_delivery
{
	my ($t) = @_;
	read_lines($deliveries, \%dpos, \@dlist);
	my $i = $scanned{$t};
	if (!defined $i)
	{
		my ($lo, $hi) = (0, scalar @dlist);
		while ($lo < $hi)
		{
			my $mid = int(($lo + $hi) / 2);
			if ($dlist[$mid]{recv_t} > $t) { $hi = $mid; } else { $lo = $mid + 1; }
		}
		$i = $lo;
	}
	for (; $i < @dlist; $i++)
	{
		my $et = event_time($dlist[$i]);
		return $dlist[$i]{recv_t} if defined $et && $et > $t;
	}
	$scanned{$t} = $i;
	return undef;
}

sub wait_publishing
{
	my ($since, $timeout) = @_;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		my $r = first_new_delivery($since);
		return $r if defined $r;
		usleep(100_000);
	}
	return undef;
}

sub acks_since
{
	my ($t) = @_;
	read_lines($acks, \%apos, \@alist);
	my $n = 0;
	for (my $i = $#alist; $i >= 0 && $alist[$i]{t1} > $t - 10; $i--)
	{
		$n++ if $alist[$i]{t1} > $t;
	}
	return $n;
}

sub rmq_pid
{
	my ($i) = @_;
	my ($f) = glob("$dir/rabbitmq/*r$i/pid");
	return $f ? PostgreSQL::Test::Utils::slurp_file($f) =~ s/\s+//gr : undef;
}

sub children
{
	my ($ppid) = @_;
	my @k;
	for my $st (glob '/proc/[0-9]*/stat')
	{
		open my $f, '<', $st or next;
		my $l = <$f> // '';
		close $f;
		push @k, $1 if $l =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $ppid;
	}
	return @k;
}

my (@report, @kills);

# a fault's part of the setup, and bringing it back in the background
sub domain { return $_[0] =~ /^(broker|outage)/ ? 'rabbitmq' : 'postgres'; }
sub bring_back_start
{
	my ($what, $dom) = @_;
	my ($o, $e) = ('', '');
	my $h = start([ "$TOP/scripts/ha", 'up', '--no-build', '--only', $dom ], '>', \$o, '2>', \$e);
	$bg{$dom} = { h => $h, t0 => time, what => $what, err => \$e };
	return;
}
sub bring_back_finish
{
	my ($dom) = @_;
	my $b = delete $bg{$dom} or return;
	my $ok = eval { $b->{h}->finish };
	# its own figure: the harness may be collected long after it finished
	my ($dt) = ${ $b->{err} } =~ /ready after (\d+) s/;
	$dt //= time - $b->{t0};
	note("scripts/ha up --only $dom: ${ $b->{err} }");
	ok($ok, sprintf('%s: scripts/ha up --only %s brought it back (%.1f s)', $b->{what}, $dom, $dt));
	push @report, sprintf('%s: brought back in %.1f s', $b->{what}, $dt);
	return;
}

ok(defined wait_publishing(time - 1, 60), 'traffic flows: events are delivered');
sleep 3;
my $t_warm = time;

# ---- the faults ------------------------------------------------------------------------
my (%alert_fired, %alert_resolved);
for my $n (0 .. $#schedule)
{
	my $kind = $schedule[$n];
	my $what = sprintf('fault %d (%s)', $n + 1, $kind);
	# the part this fault hits must be whole again
	bring_back_finish(domain($kind));
	my $l = wait_leader();
	if ($kind =~ /^leader/)
	{
		# the failover this fault tests needs a synchronous standby to promote
		my ($s, $t_s) = (undef, time);
		while (time < $t_s + 60)
		{
			$s = sync_standby($l);
			last if defined $s;
			usleep(200_000);
		}
		ok(defined $s, sprintf('%s: Patroni names a synchronous standby it may promote (%s, waited %.1f s)',
				$what, defined $s ? "pg$s" : 'none within 60 s', time - $t_s));
		$l = wait_leader();
	}
	# the window: traffic acknowledged and events delivered just before the kill
	my $pre_t = time;
	ok(defined wait_publishing($pre_t - 2, 10), "$what: events of the last 2 s are being delivered before the kill");
	my $pending = mq($l, 'SELECT pending FROM alexandrite.outbox_status');
	my ($broker) = mq($l, 'SELECT broker FROM alexandrite.outbox_status') =~ /:(\d+)\/$/;
	my @pids;
	my $desc;
	if ($kind eq 'leader_postmaster' || $kind eq 'leader_node' || $kind eq 'replica_node')
	{
		my $m = $l;
		if ($kind eq 'replica_node')
		{
			my $sync = mq($l, q{SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'});
			($m) = $sync =~ /^pg(\d)$/ or die "no synchronous standby: $sync";
			is(mq($m, 'SELECT pg_is_in_recovery()'), 't', "$what: pg$m is the synchronous standby");
		}
		else
		{
			is(mq($m, 'SELECT pg_is_in_recovery()'), 'f', "$what: pg$m is the leader, in production");
		}
		my ($pm) = split /\n/, PostgreSQL::Test::Utils::slurp_file("$dir/pg$m/data/postmaster.pid");
		@pids = ($pm);
		if ($kind ne 'leader_postmaster')
		{
			push @pids, PostgreSQL::Test::Utils::slurp_file("$dir/pg$m/patroni.pid") =~ s/\s+//gr, children($pm);
		}
		$desc = "pg$m";
	}
	elsif ($kind eq 'broker' || $kind eq 'broker_other')
	{
		my ($i) = grep { $amqp_ports[ $_ - 1 ] == $broker } 1 .. 3;
		ok($i, "$what: the relay is connected to broker node $i (port $broker)");
		$i = 1 + ($i % 3) if $kind eq 'broker_other';
		@pids = (rmq_pid($i));
		$desc = "broker $i";
	}
	else
	{
		@pids = map { rmq_pid($_) } 1 .. 3;
		$desc = 'all brokers';
	}
	cmp_ok(acks_since($pre_t - 1), '>', 0, "$what: changes were acknowledged in the second before the kill");
	note("$what: pending $pending, relay on port $broker, killing $desc (pids @pids)");
	my $t_kill = time;
	kill 'KILL', @pids;
	push @kills, [ $what, $t_kill ];

	if ($kind eq 'outage')
	{
		# the relay and the backlog alerts must fire while every broker is down
		my $deadline = time + 120;
		while (time < $deadline && !($alert_fired{AlexandriteRelayDisconnected} && $alert_fired{AlexandriteOutboxBacklogOld}))
		{
			my $r = $http->get("$env{ALX_HA_PROMETHEUS}/api/v1/alerts");
			if ($r->{success})
			{
				for my $a (@{ $json->decode($r->{content})->{data}{alerts} })
				{
					next unless $a->{state} eq 'firing';
					$alert_fired{ $a->{labels}{alertname} } //= time - $t_kill;
				}
			}
			usleep(500_000);
		}
		for my $a ('AlexandriteRelayDisconnected', 'AlexandriteOutboxBacklogOld')
		{
			ok(defined $alert_fired{$a}, "$what: Prometheus fired $a during the outage"
				  . (defined $alert_fired{$a} ? sprintf(' (%.0f s after the kill)', $alert_fired{$a}) : ''));
		}
	}
	else
	{
		# After a kill of the leader's postmaster alone, its backends and the
		# relay live on until they notice (the postmaster's death is polled):
		# for a second or two they still commit and publish, and Patroni
		# still names the old leader.  So for a leader the new events are
		# those begun once a new leader is seen, and the failover is waited
		# for, not sampled (a run under load once read the old leader 2 s
		# after the kill, while orphaned backends still published).
		my $t_from = $t_kill;
		my ($nl, $t_fo);
		if ($kind =~ /^leader/)
		{
			($nl, $t_fo) = wait_new_leader($l, 60);
			$t_from = $t_fo if defined $t_fo;
		}
		my $t_new = wait_publishing($t_from, 60);
		my $dt = defined $t_new ? $t_new - $t_kill : undef;
		push @report, sprintf('%s: kill -> first new event delivered %s%s', $what,
			defined $dt ? sprintf('%.1f s', $dt) : 'never',
			defined $t_fo ? sprintf(' (new leader seen after %.1f s)', $t_fo - $t_kill) : '');
		ok(defined $dt && $dt < $target_s{$kind},
			"$what: publishing again " . (defined $dt ? sprintf('%.1f s', $dt) : 'never') . " after the kill (target < $target_s{$kind} s)");
		if ($kind =~ /^leader/)
		{
			ok(defined $nl, "$what: Patroni failed over from pg$l to pg" . ($nl // '(none within 60 s)'));
		}
		elsif ($kind eq 'broker')
		{
			my ($nb) = mq(wait_leader(), 'SELECT broker FROM alexandrite.outbox_status') =~ /:(\d+)\/$/;
			isnt($nb // '', $broker, "$what: the relay moved to another broker node");
		}
	}

	if ($kind ne 'outage')
	{
		# bring the dead member back while the next fault hits the other part
		bring_back_start($what, domain($kind));
		next;
	}
	# the outage ends: every broker back, then publishing and the alerts
	my $t_restart = time;
	my (undef, $t_up2) = ha('up', '--no-build');
	my $t_back = time;
	my $t_new = wait_publishing($t_kill, 90);
	push @report, sprintf('%s: brokers down %.0f s, all three back %.0f s later; first new event delivered %.1f s after the restart began',
		$what, $t_restart - $t_kill, $t_up2, defined $t_new ? $t_new - $t_restart : -1);
	ok(defined $t_new, "$what: publishing again once the brokers are back");
	my $deadline = time + 90;
	my %active;
	do
	{
		usleep(500_000);
		%active = ();
		my $r = $http->get("$env{ALX_HA_PROMETHEUS}/api/v1/alerts");
		$active{ $_->{labels}{alertname} } = 1 for ($r->{success} ? @{ $json->decode($r->{content})->{data}{alerts} } : ());
	} while (time < $deadline && ($active{AlexandriteRelayDisconnected} || $active{AlexandriteOutboxBacklogOld}));
	for my $a ('AlexandriteRelayDisconnected', 'AlexandriteOutboxBacklogOld')
	{
		ok(!$active{$a}, "$what: $a resolved after the brokers came back");
	}
	push @report, sprintf('%s: both alerts resolved %.0f s after the brokers were back', $what, time - $t_back);
}
bring_back_finish($_) for sort keys %bg;
ok(defined wait_publishing(time, 30), 'every member back: events flow');

# ---- the end: stop the traffic, drain, compare -----------------------------------------
$traffic->signal('TERM');
ok($traffic->finish, 'the clients met no error but lost or read-only servers') or diag($traffic_err);
note($traffic_err);
my $l = wait_leader();
ok(wait_true(sub { mq($l, 'SELECT pending = 0 FROM alexandrite.outbox_status') }, 120),
	'the final leader drains its outbox');
read_lines($acks, \%apos, \@alist);
my %ledger;
for (split /\n/, mq($l, 'SELECT id, aggregate_id, seq, extract(epoch FROM created_at) FROM public.ledger'))
{
	my ($id, $agg, $seq, $t) = split /\|/;
	$ledger{"$id/$agg/$seq"} = $t;
}
# the consumer may still be working through the queue: wait while it makes progress
{
	my %got;
	my ($n, $last, $idle) = (0, 0, time);
	while (1)
	{
		read_lines($deliveries, \%dpos, \@dlist);
		$got{"$_->{message_id}/$_->{aggregate_id}/$_->{aggregate_seq}"} = 1 for @dlist[ $n .. $#dlist ];
		$n = @dlist;
		my $missing = grep { !$got{$_} } keys %ledger;
		last if $missing == 0;
		$idle = time if $n > $last;
		$last = $n;
		last if time - $idle > 20;
		usleep(500_000);
	}
}
$consumer->signal('TERM');
$consumer->finish;
read_lines($deliveries, \%dpos, \@dlist);
my (%first, %last_seq, $dups, $order_violations);
$dups = $order_violations = 0;
for my $d (@dlist)
{
	my $k = "$d->{message_id}/$d->{aggregate_id}/$d->{aggregate_seq}";
	if ($first{$k}++) { $dups++; next; }
	my $a = $d->{aggregate_id};
	$order_violations++ if defined $last_seq{$a} && $d->{aggregate_seq} <= $last_seq{$a};
	$last_seq{$a} = $d->{aggregate_seq} if !defined $last_seq{$a} || $d->{aggregate_seq} > $last_seq{$a};
}
my @lost = grep { !$first{$_} } keys %ledger;
my @phantom = grep { !exists $ledger{$_} } keys %first;

# acknowledged changes, against the final leader's tables
my %ref2id = map { split /\|/ } split /\n/, mq($l, 'SELECT external_ref, id FROM alexandrite.orders');
my %evt = map { $_ => 1 } split /\n/, mq($l, q{SELECT order_id || '/' || to_status FROM alexandrite.order_events});
my $acked_lost = 0;
for my $a (@alist)
{
	my $ok = $a->{op} eq 'create' ? (($ref2id{ $a->{ref} } // -1) == $a->{id}) : $evt{"$a->{id}/$a->{to}"};
	$acked_lost++ unless $ok;
}
my $span = $alist[-1]{t1} - $alist[0]{t1};
push @report, sprintf('traffic: %d acknowledged changes in %.0f s (%.0f/s); %d events committed, %d delivered (%d duplicates)',
	scalar(@alist), $span, @alist / ($span || 1), scalar(keys %ledger), scalar(@dlist), $dups);

cmp_ok(scalar(keys %ledger), '>', 0, 'the ledger is not empty');
cmp_ok(scalar(@alist), '>', 0, 'changes were acknowledged');
is($acked_lost, 0, 'no acknowledged change lost (' . scalar(@alist) . ' acknowledged)');
is(scalar(@lost), 0, 'no committed event lost (' . scalar(keys %ledger) . ' committed)')
  or diag("lost: @lost[0 .. ($#lost < 9 ? $#lost : 9)]");
is(scalar(@phantom), 0, 'no phantom event (delivered, but its transaction does not exist after the failovers)')
  or diag("phantoms: @phantom[0 .. ($#phantom < 9 ? $#phantom : 9)]");
is($order_violations, 0, 'no per-order order violation (first deliveries of each order in seq order)');
note("duplicates: $dups");

# every fault happened inside the traffic: events committed in the second
# before each kill and in the 30 s after it are in the ledger
for my $k (@kills)
{
	my ($what, $t) = @$k;
	my $before = grep { $_ >= $t - 1 && $_ < $t } values %ledger;
	my $after = grep { $_ > $t && $_ < $t + 30 } values %ledger;
	ok($before > 0 && $after > 0, "$what: inside the traffic ($before events committed in the second before the kill, $after in the 30 s after)");
}

# ---- the dashboards on a replica equal their base table there ---------------------------
my ($r) = grep { $_ != $l } 1 .. 3;
my $lsn = mq($l, 'SELECT pg_current_wal_lsn()');
ok(wait_true(sub { mq($r, "SELECT pg_last_wal_replay_lsn() >= '$lsn'") }, 60), "replica pg$r caught up");
my $ro = 'SET default_transaction_read_only = on; ';
is(mq($r, $ro . q{SELECT count(*) FROM (
		(SELECT status::text, channel, orders FROM alexandrite.dashboard_status_counts WHERE orders > 0
		 EXCEPT SELECT status::text, channel, count(*) FROM alexandrite.orders GROUP BY 1, 2)
		UNION ALL
		(SELECT status::text, channel, count(*) FROM alexandrite.orders GROUP BY 1, 2
		 EXCEPT SELECT status::text, channel, orders FROM alexandrite.dashboard_status_counts WHERE orders > 0)) x}),
	'0', "pg$r (a replica): dashboard_status_counts equals a count of its orders");
is(mq($r, $ro . q{SELECT count(*) FROM (
		(SELECT operator_id, open_orders FROM alexandrite.dashboard_operator_load WHERE open_orders > 0
		 EXCEPT SELECT operator_id, count(*) FROM alexandrite.orders
		         WHERE operator_id IS NOT NULL AND alexandrite.is_open(status) GROUP BY 1)
		UNION ALL
		(SELECT operator_id, count(*) FROM alexandrite.orders
		  WHERE operator_id IS NOT NULL AND alexandrite.is_open(status) GROUP BY 1
		 EXCEPT SELECT operator_id, open_orders FROM alexandrite.dashboard_operator_load WHERE open_orders > 0)) x}),
	'0', "pg$r: dashboard_operator_load equals a count of its orders");
is(mq($r, $ro . q{SELECT count(*) FROM (
		(SELECT channel, open_orders FROM alexandrite.dashboard_sla WHERE open_orders > 0
		 EXCEPT SELECT channel, count(*) FROM alexandrite.orders WHERE alexandrite.is_open(status) GROUP BY 1)
		UNION ALL
		(SELECT channel, count(*) FROM alexandrite.orders WHERE alexandrite.is_open(status) GROUP BY 1
		 EXCEPT SELECT channel, open_orders FROM alexandrite.dashboard_sla WHERE open_orders > 0)) x}),
	'0', "pg$r: dashboard_sla equals a count of its open orders");
cmp_ok(mq($r, 'SELECT sum(orders) FROM alexandrite.dashboard_status_counts'), '>', 0, "pg$r: the dashboards are not empty");

my $elapsed = time - $T_START;
push @report, sprintf('whole test: %.0f s', $elapsed);
diag($_) for @report;
# The 6-minute target of the whole test is a figure for docs/operations.md,
# not an assertion: a loaded machine (a parallel build) makes it longer
# without anything being wrong.  The per-fault bounds above are assertions.
note(sprintf('the whole HA test took %.0f s (target < 6 min on an idle 2-core machine)', $elapsed));

done_testing();
