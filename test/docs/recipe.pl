#!/usr/bin/perl
# The operations recipe of docs/operations.md and the README's Getting
# started, run as written on a Debian cluster made by pg_createcluster.
#
# Every marked block (test/docblocks.pl) runs as the user its first line
# names ("# as root", "# as postgres"; SQL in psql as postgres in database
# mes unless "-- as ROLE[, in database DB]"; README blocks without a user as
# root from the top of the tree), in the order of the plan below, which is
# the order of the documents.  After each block the dashboards must
# reconcile; at the points where the text promises something, the test
# checks it from outside: the workers connect as the documented role, the
# relay publishes to the documented queue, the pg_cron job succeeds, the
# exporter's series are those of metrics() (no NaN), the restore completes,
# the upgrade leaves everything running, the GUC table is pg_settings, the
# package lists are scripts/install-deps'.  Every sh/sql block of the two
# documents (outside "High availability", run by its own test) must be
# marked and in the plan.
#
# Runs as root: it builds a copy of the tree (the DBA's clone: the files
# git knows, tracked or not ignored) with the recipe's `make`, installs it
# into the system PostgreSQL with its `make install`, creates the cluster
# 15/mes on port 5433 with pg_createcluster and drops it at the end (also
# after a failure), in network and mount namespaces of its own when the
# kernel allows them (see below), so that the documented names and stock
# ports collide with nothing on a shared machine.  The broker is Debian's
# rabbitmq-server run by test/docs/broker (the recipe's rabbitmqctl reaches
# it through Debian's wrappers).  Prints TAP.
#
#   test/docs/recipe.pl            (scripts/test --only docs runs it)
use strict;
use warnings FATAL => 'all';

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IPC::Run;
use Test::More;
use Time::HiRes qw(time sleep);

my $TOP = abs_path(dirname(__FILE__) . '/../..');
require "$TOP/test/docblocks.pl";
my $OPS    = "$TOP/docs/operations.md";
my $README = "$TOP/README.md";

# the recipe's names (docs/operations.md, "Install on a real server")
my ($VERSION, $CLUSTER, $PORT, $PASSWORD) = ('15', 'mes', 5433, 'change-me');
my $EXPORTER = 'http://127.0.0.1:9187/metrics';
my $MARKER   = "/etc/postgresql/$VERSION/$CLUSTER/alexandrite-docs-test";
my $SERVER_LOG = "/var/log/postgresql/postgresql-$VERSION-$CLUSTER.log";

if ($> != 0)
{
	plan skip_all => 'runs as root (scripts/test runs it as root before the build)' unless $ENV{CI};
	BAIL_OUT('test/docs/recipe.pl must run as root');
}

# Namespaces of our own: a network namespace (its loopback up), so that the
# documented stock ports (5433, 5672, 15672, 9187) are free whatever the
# host runs, and a mount namespace in which Debian's cluster directories
# (/etc/postgresql, /var/lib/postgresql, /var/log/postgresql,
# /run/postgresql), the exporter's configuration (/etc/default,
# /etc/prometheus, /var/log/prometheus) and the PostgreSQL installation
# (/usr/lib/postgresql/15, /usr/share/postgresql/15) are private copies: the
# cluster 15/mes of the recipe is unique to this run, the recipe's
# `make install` installs into the system PostgreSQL's directories as seen
# by this run only, and nothing the host has changes (a server of another
# run keeps its library).  Without namespaces (unshare refused, e.g. an
# unprivileged container) the recipe installs into the system PostgreSQL
# itself and the documented names and ports must be free on the host.
if (!defined $ENV{ALX_DOCS_NS})
{
	if (system('unshare --net --mount true >/dev/null 2>&1') == 0)
	{
		$ENV{ALX_DOCS_NS} = 1;
		exec('unshare', '--net', '--mount', '--propagation', 'private', '--', $^X, $0, @ARGV);
		die "exec unshare: $!";
	}
	$ENV{ALX_DOCS_NS} = 0;
}
delete @ENV{qw(PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD PGCLUSTER PGSERVICE PGOPTIONS)};
$ENV{PATH} = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
$ENV{LC_ALL} = 'C.UTF-8';

# ---------------------------------------------------------------------------
# helpers

# run(CMD, input => TEXT, cwd => DIR, timeout => S, env => {...}) -> (rc, out, err)
sub run
{
	my ($cmd, %o) = @_;
	my ($in, $out, $err) = ($o{input} // '', '', '');
	my %env = %{ $o{env} // {} };
	my $ok = eval {
		IPC::Run::run($cmd, '<', \$in, '>', \$out, '2>', \$err,
			init => sub { chdir($o{cwd} // $TOP) or die "chdir: $!"; $ENV{$_} = $env{$_} for keys %env },
			IPC::Run::timeout($o{timeout} // 120));
		1;
	};
	return (-1, $out, $err . ($@ // '')) if !$ok && $@ =~ /timeout/;
	return ($? >> 8, $out, $err);
}

# psql as postgres over the socket (peer), as the recipe's SQL blocks run
sub psql_pg
{
	my ($db, $sql, %o) = @_;
	return run([ 'runuser', '-u', 'postgres', '--', 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
				 '-p', $PORT, '-d', $db, '-f', '-' ], input => $sql, %o);
}

sub sql1
{
	my ($db, $sql) = @_;
	my ($rc, $out, $err) = psql_pg($db, $sql);
	return undef if $rc != 0;
	chomp $out;
	return $out;
}

# psql as a documented role, over TCP with its password
sub psql_role
{
	my ($role, $db, $sql, %o) = @_;
	return run([ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
				 "host=127.0.0.1 port=$PORT dbname=$db user=$role", '-f', '-' ],
		input => $sql, env => { PGPASSWORD => $PASSWORD }, %o);
}

sub wait_for
{
	my ($what, $seconds, $cond) = @_;
	my $deadline = time + $seconds;
	while (1)
	{
		my $v = $cond->();
		return $v if $v;
		return 0 if time > $deadline;
		sleep 0.5;
	}
}

my $work = tempdir('/tmp/alexandrite-docs.XXXXXX', CLEANUP => 0);
chmod 0755, $work;
if ($ENV{ALX_DOCS_NS})
{
	system('ip link set lo up') == 0 or BAIL_OUT('ip link set lo up failed');
	# copies: what the recipe changes (the exporter's settings; the
	# PostgreSQL installation, into which its make install writes)
	my %copy = map { $_ => 1 } ('/etc/default', '/etc/prometheus',
		"/usr/lib/postgresql/$VERSION", "/usr/share/postgresql/$VERSION");
	mkdir "$work/ns" or die;
	for my $dir ('/etc/postgresql', '/var/lib/postgresql', '/var/log/postgresql', '/run/postgresql',
		'/etc/default', '/etc/prometheus', '/var/log/prometheus',
		"/usr/lib/postgresql/$VERSION", "/usr/share/postgresql/$VERSION")
	{
		next unless -d $dir;
		my $priv = "$work/ns/" . ($dir =~ s{/}{_}gr);
		my @st = stat($dir);
		mkdir $priv or die "mkdir $priv: $!";
		system('cp', '-a', "$dir/.", "$priv/") == 0 or die "copy $dir" if $copy{$dir};
		chown($st[4], $st[5], $priv) and chmod($st[2] & 07777, $priv) or die "chown $priv: $!";
		system('mount', '--bind', $priv, $dir) == 0 or BAIL_OUT("mount --bind $priv $dir failed");
	}
	diag('in network and mount namespaces of its own (private cluster directories, stock ports)');
}
else
{
	diag('no namespaces (unshare refused): the cluster 15/mes and the stock ports must be free on the host');
}
# the DBA's clone, where the recipe's make and the README's blocks run
my $clone = "$work/clone";
mkdir $clone or die;
{
	my ($rc, $files) = (0, '');
	IPC::Run::run([ 'git', '-c', "safe.directory=$TOP", '-C', $TOP, 'ls-files', '-z', '-co', '--exclude-standard' ],
		'>', \$files) or BAIL_OUT("git ls-files in $TOP failed (the recipe builds the files git knows)");
	IPC::Run::run([ 'rsync', '-a', '--from0', '--files-from=-', "$TOP/", "$clone/" ], '<', \$files)
	  or BAIL_OUT('rsync of the tree failed');
}
{
	open my $fh, '>', "$work/apt.conf" or die;
	print $fh qq{APT::Get::Simulate "true";\n};
	close $fh;
}
mkdir "$work/postgres" or die;
system('chown', 'postgres:', "$work/postgres") == 0 or die;
my $pgwork = "$work/postgres";

# ---------------------------------------------------------------------------
# what the recipe changes outside the cluster, restored at the end

my @system_files = ('/etc/default/prometheus-postgres-exporter', '/etc/prometheus/alexandrite-queries.yml',
	'/var/log/prometheus/prometheus-postgres-exporter.log');
my %saved;
for my $f (@system_files)
{
	if (-e $f)
	{
		system('cp', '-a', $f, "$work/saved." . ($f =~ s{/}{_}gr)) == 0 or die "could not save $f";
		$saved{$f} = "$work/saved." . ($f =~ s{/}{_}gr);
	}
}

my ($broker_up, $cluster_made) = (0, 0);
my (@script_ports, %script_env);    # the scripts/rabbitmq node of check_listeners
sub cleanup
{
	# the exporter, the way the recipe stops it (also when a test failed)
	if (-f '/run/prometheus-postgres-exporter.pid')
	{
		system('start-stop-daemon --stop --quiet --pidfile /run/prometheus-postgres-exporter.pid --remove-pidfile --retry 10');
	}
	if ($cluster_made || -f $MARKER)
	{
		system("pg_dropcluster --stop $VERSION $CLUSTER >/dev/null 2>&1");
	}
	if (@script_ports)
	{
		local @ENV{ keys %script_env } = values %script_env;
		system("$TOP/scripts/rabbitmq", 'stop', 'docs', $script_ports[0]);
	}
	if ($broker_up)
	{
		system("$TOP/test/docs/broker", 'stop', "$work/mq");
		# the epmd the broker's tools started in this namespace
		system('epmd -kill >/dev/null 2>&1') if $ENV{ALX_DOCS_NS};
	}
	for my $f (@system_files)
	{
		if ($saved{$f}) { system('cp', '-a', $saved{$f}, $f); }
		else { unlink $f; }
	}
	system('rm', '-rf', $work);
}
END { my $rc = $?; cleanup(); $? = $rc; }
$SIG{INT} = $SIG{TERM} = sub { exit 1 };

# ---------------------------------------------------------------------------
# before: a cluster 15/mes is ours (a test killed before its cleanup) or
# someone's (then stop)

if (-d "/etc/postgresql/$VERSION/$CLUSTER")
{
	BAIL_OUT("a cluster $VERSION/$CLUSTER exists that this test did not create; drop it or run elsewhere")
	  unless -f $MARKER;
	system("pg_dropcluster --stop $VERSION $CLUSTER") == 0 or BAIL_OUT("could not drop the old test cluster");
	diag("dropped the cluster $VERSION/$CLUSTER a previous run left");
}
for my $port ($PORT, 5672, 15672, 25672, 9187)
{
	my ($rc, $out) = run([ 'ss', '-ltnH', "sport = :$port" ]);
	BAIL_OUT("port $port is in use: $out") if $out =~ /\S/;
}

# ---------------------------------------------------------------------------
# the documents: every shell/SQL block marked, and the plan runs them all

my %blocks;
for my $doc ($OPS, $README)
{
	$blocks{$doc}{ $_->[0] } = { lang => $_->[1], line => $_->[2], text => $_->[3] } for DocBlocks::blocks($doc);
}

# fenced blocks of runnable languages that no marker names: all of
# operations.md but "High availability" (scripts/ha runs its block), the
# README's Installation and Getting started (its Quick start and
# Contributing blocks are the developer's scripts, run by CI anyway)
sub unmarked
{
	my ($file) = @_;
	open my $fh, '<', $file or die;
	my @lines = <$fh>;
	close $fh;
	my (@found, $section, $fence);
	for (my $i = 0; $i < @lines; $i++)
	{
		if (!defined $fence && $lines[$i] =~ /^## (.*)/) { $section = $1; next; }
		if (!defined $fence && $lines[$i] =~ /^(```+|~~~+)\s*([A-Za-z0-9_+-]*)\s*$/)
		{
			($fence, my $lang) = ($1, $2);
			my $marked = $i > 0 && $lines[ $i - 1 ] =~ /^<!--\s*docblock:/;
			push @found, "$file:" . ($i + 1) . " ($lang)"
			  if !$marked && $lang =~ /^(sh|bash|sql|python|console)$/
			  && ($section // '') ne 'High availability'
			  && ($file ne $README || ($section // '') =~ /^(Installation|Getting started)$/);
			next;
		}
		$fence = undef if defined $fence && $lines[$i] =~ /^\Q$fence\E\s*$/;
	}
	return @found;
}
my @unmarked = (unmarked($OPS), unmarked($README));
is(scalar(@unmarked), 0, 'every shell and SQL block of the recipe and of Getting started is marked (run here)')
  or diag("unmarked: @unmarked");

my @plan = (
	[ $OPS, 'install-packages' ],
	[ $OPS, 'install-build' ],
	[ $OPS, 'cluster-create' ],
	[ $OPS, 'cluster-createdb' ],
	[ $OPS, 'cluster-conf' ],
	[ $OPS, 'cluster-restart' ],
	[ $OPS, 'extension-create' ],
	[ $OPS, 'privileges-roles' ],
	[ $OPS, 'privileges-grants' ],
	[ $OPS, 'cron-schedule' ],
	[ $OPS, 'cron-runs' ],
	[ $OPS, 'rabbitmq-user' ],
	[ $OPS, 'rabbitmq-topology' ],
	[ $OPS, 'rabbitmq-management' ],
	[ $OPS, 'rabbitmq-relay' ],
	[ $OPS, 'rabbitmq-queues' ],
	[ $OPS, 'exporter-install' ],
	[ $OPS, 'exporter-start' ],
	[ $README, 'readme-packages' ],
	[ $README, 'readme-connect' ],
	[ $README, 'readme-operators' ],
	[ $README, 'readme-order' ],
	[ $README, 'readme-model' ],
	[ $README, 'readme-model-python' ],
	[ $README, 'readme-reads' ],
	[ $README, 'readme-metrics' ],
	[ $OPS, 'tracing' ],
	[ $OPS, 'reference-metrics' ],
	[ $OPS, 'reference-metric-samples' ],
	[ $OPS, 'backup-restore' ],
	[ $OPS, 'backup-check' ],
	[ $OPS, 'upgrade-install' ],
	[ $OPS, 'upgrade-update' ],
	[ $OPS, 'privileges-grants' ],    # "run the grants block again"
	[ $OPS, 'upgrade-restart' ],
	[ $OPS, 'exporter-stop' ],
);
my %planned = map { ("$_->[0]\0$_->[1]" => 1) } @plan;
my @unplanned;
for my $doc ($OPS, $README)
{
	push @unplanned, map { "$doc: $_" } grep { !$planned{"$doc\0$_"} } sort keys %{ $blocks{$doc} };
}
is(scalar(@unplanned), 0, 'every marked block is in the plan') or diag("not run: @unplanned");

# the package lists: README == install-deps' runtime group; the recipe ==
# runtime + services
{
	my ($rc, $out) = run([ "$TOP/scripts/install-deps", '--list' ]);
	my %group = map { /^(\w+): (.*)$/ ? ($1 => join(' ', sort split ' ', $2)) : () } split /\n/, $out;
	my $words = sub {
		my ($text) = @_;
		$text =~ s/^#.*$//mg;
		$text =~ s/\\\n/ /g;
		my @w = grep { !/^-/ && $_ ne 'apt-get' && $_ ne 'install' } split ' ', $text;
		return join(' ', sort @w);
	};
	is($words->($blocks{$README}{'readme-packages'}{text}), $group{runtime},
		"README's package list is scripts/install-deps' runtime group");
	is($words->($blocks{$OPS}{'install-packages'}{text}), join(' ', sort(split(' ', "$group{runtime} $group{services}"))),
		"the recipe's package list is the runtime and services groups");
	my @missing = grep { system("dpkg-query -W -f='\${Status}' $_ 2>/dev/null | grep -q 'install ok installed'") != 0 }
	  split ' ', $words->($blocks{$OPS}{'install-packages'}{text});
	is(scalar(@missing), 0, "every package of the recipe is installed (its apt-get runs simulated)") or diag("missing: @missing");
}

# ---------------------------------------------------------------------------
# running a block as written

my $extension_ready = 0;

# who runs a block, from its first line
sub runner
{
	my ($doc, $name) = @_;
	my $b = $blocks{$doc}{$name} or return ();
	my ($lang, $text) = ($b->{lang}, $b->{text});
	my ($first) = $text =~ /\A([^\n]*)/;
	if ($lang eq 'sh')
	{
		my $user;
		if ($first =~ /^#\s*as (root|postgres)\b/) { $user = $1; }
		elsif ($doc eq $README) { $user = 'root'; }    # any user; from the top of the tree
		else { return (error => "a shell block of the recipe must say who runs it (# as root|postgres)"); }
		my @cmd = ('bash', '-e', '-o', 'pipefail', '-c', $text);
		return (who => $user, cmd => [ 'runuser', '-u', 'postgres', '--', @cmd ], cwd => $pgwork)
		  if $user eq 'postgres';
		# MAKEFLAGS: the recipe's make, on both cores.  APT_CONFIG: apt-get
		# simulates (scripts/install-deps installed the packages; a real run
		# would upgrade the shared machine's packages, or prompt for it)
		return (who => 'root', cmd => \@cmd, cwd => $clone,
			env => { PGPASSWORD => $PASSWORD, MAKEFLAGS => '-j2', APT_CONFIG => "$work/apt.conf" });
	}
	if ($lang eq 'sql')
	{
		my ($role, $db) = ('postgres', 'mes');
		if ($first =~ /^--\s*as ([a-z_][a-z0-9_]*)(?:,\s*in database ([a-z_][a-z0-9_]*))?\s*$/)
		{
			($role, $db) = ($1, $2 // 'mes');
		}
		my @psql = ('psql', '-X', '-v', 'ON_ERROR_STOP=1', '-P', 'pager=off');
		return (who => "$role in $db",
			cmd => [ 'runuser', '-u', 'postgres', '--', @psql, '-p', $PORT, '-d', $db, '-f', '-' ],
			input => $text, cwd => $pgwork, sql => 1)
		  if $role eq 'postgres';
		return (who => "$role in $db",
			cmd => [ @psql, "host=127.0.0.1 port=$PORT dbname=$db user=$role", '-f', '-' ],
			input => $text, cwd => $clone, env => { PGPASSWORD => $PASSWORD }, sql => 1);
	}
	if ($lang eq 'python')
	{
		return (who => 'any user', cmd => [ 'python3', '-' ], input => $text, cwd => $clone,
			env => { PGPASSWORD => $PASSWORD });
	}
	return (error => "no way to run a $lang block");
}

my %output;
sub run_block
{
	my ($doc, $name) = @_;
	my $label = ($doc eq $README ? 'README' : 'operations.md') . " $name";
	my %r = runner($doc, $name);
	if (!%r || $r{error})
	{
		fail("$label runs as written");
		diag($r{error} // 'no such block');
		return 0;
	}
	my $t0 = time;
	note(sprintf('%s at %.0f s', $label, $t0 - $^T));
	my ($rc, $out, $err) = run($r{cmd}, input => $r{input} // '', cwd => $r{cwd}, env => $r{env} // {},
		timeout => $name =~ /install/ ? 1200 : 300);
	$output{$name} = $out;
	my $ok = ok($rc == 0, sprintf('%s runs as written (as %s, %.1f s)', $label, $r{who}, time - $t0));
	diag("exit $rc\n--- stdout\n" . substr($out, -3000) . "\n--- stderr\n" . substr($err, -3000)) unless $ok;
	if ($r{sql})
	{
		my @warn = grep { /WARNING:/ } split /\n/, $err;
		is(scalar(@warn), 0, "$label: no WARNING") or diag(join("\n", @warn));
	}
	reconciled("after $name") if $extension_ready;
	return $ok;
}

# reconcile_dashboards() is clean: every dashboard agrees with its table
sub reconciled
{
	my ($when, $db) = @_;
	$db //= 'mes';
	my ($rc, $out, $err) = psql_pg($db, q{SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok),
	        string_agg(dashboard, ' ') FILTER (WHERE NOT ok) FROM alexandrite.reconcile_dashboards()});
	chomp $out;
	my ($good, $bad, $which) = split /\|/, $out;
	ok($rc == 0 && ($good // 0) >= 6 && ($bad // 1) == 0 && $err !~ /WARNING/,
		"reconcile_dashboards() is clean $when ($db: " . ($good // '?') . ' dashboards)')
	  or diag("rc $rc, differing: " . ($which // '') . "\n$err");
}

# ---------------------------------------------------------------------------
# the broker (the recipe's RabbitMQ host), and a node of the project's own
# scripts/rabbitmq with the plugins that open HTTP ports (check_listeners):
# both start in the background while the recipe builds

my ($broker_out, $script_out) = ('', '');
my $broker_h = IPC::Run::start([ "$TOP/test/docs/broker", 'start', "$work/mq" ],
	'<', '/dev/null', '>&', \$broker_out);    # (it gives up after 60 s itself)
$broker_up = 1;
@script_ports = (free_port(), free_port(), free_port());
%script_env = (RABBITMQ_BASE => "$work/rabbitmq-script",
	RABBITMQ_PLUGINS => 'rabbitmq_management,rabbitmq_prometheus',
	RABBITMQ_MANAGEMENT_PORT => $script_ports[1], RABBITMQ_PROMETHEUS_PORT => $script_ports[2]);
my $script_h;
{
	local @ENV{ keys %script_env } = values %script_env;
	$script_h = IPC::Run::start([ "$TOP/scripts/rabbitmq", 'start', 'docs', $script_ports[0] ],
		'<', '/dev/null', '>&', \$script_out);    # (RABBITMQ_START_TIMEOUT: 120 s)
}
{
	my ($rc, $out) = run([ "$TOP/test/docs/broker", 'env', "$work/mq" ]);
	for (split /\n/, $out)
	{
		$ENV{$1} = $2 =~ s/^'(.*)'$/$1/r if /^export ([A-Z_]+)=(.*)$/;
	}
}

# the broker is up before the recipe's first rabbitmqctl
sub broker_ready
{
	my $ok = eval { $broker_h->finish };
	ok($ok && $broker_h->result == 0, 'the broker runs (Debian\'s rabbitmq-server, as user rabbitmq)')
	  or BAIL_OUT("broker: $broker_out " . ($@ // ''));
}

# ---------------------------------------------------------------------------
# the plan

my $scheduled_at;
for my $step (@plan)
{
	my ($doc, $name) = @$step;
	broker_ready() if $name eq 'rabbitmq-user';
	my $ok = run_block($doc, $name);
	if ($name eq 'cluster-create')
	{
		$cluster_made = 1;
		system('touch', $MARKER) if -d dirname($MARKER);
		my (undef, $out) = run([ 'pg_lsclusters', '-h' ]);
		like($out, qr/^$VERSION\s+$CLUSTER\s+$PORT\s+online\s+postgres\s/m,
			"pg_lsclusters: $VERSION/$CLUSTER on port $PORT, online");
		BAIL_OUT('no cluster, nothing else can run') unless $ok;
	}
	elsif ($name eq 'cluster-createdb')
	{
		# "Without shared_preload_libraries everything SQL works" (section 4):
		# the extension in a database of the cluster not yet preloading it
		my ($rc, $out, $err) = psql_pg('postgres', q{CREATE DATABASE alx_nopreload});
		($rc, $out, $err) = psql_pg('alx_nopreload', q{CREATE EXTENSION alexandrite;
			SELECT alexandrite.create_order('NP-1', 'shop', 'c-1', NULL, NULL) IS NOT NULL;
			SELECT bool_and(ok) FROM alexandrite.reconcile_dashboards()}) if $rc == 0;
		ok($rc == 0 && $out =~ /^t\nt$/, 'without shared_preload_libraries, CREATE EXTENSION and the SQL API work')
		  or diag("rc $rc: $out$err");
		psql_pg('postgres', q{DROP DATABASE alx_nopreload});
	}
	elsif ($name eq 'cluster-restart')
	{
		is(sql1('postgres', q{SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'}),
			'pg_cron,alexandrite', 'the cluster runs with pg_cron and alexandrite preloaded');
	}
	elsif ($name eq 'extension-create')
	{
		$extension_ready = $ok;
		reconciled('after CREATE EXTENSION') if $ok;
	}
	elsif ($name eq 'privileges-roles')
	{
		ok(wait_for('workers', 60, sub {
			(sql1('mes', q{SELECT count(*) FROM pg_stat_activity
			   WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold')
			     AND usename = 'alexandrite_worker'}) // '') eq '2' }),
			'the relay and the fold run as alexandrite_worker once the roles block named it');
	}
	elsif ($name eq 'cron-schedule')
	{
		$scheduled_at = time;
	}
	elsif ($name eq 'rabbitmq-relay')
	{
		ok(wait_for('relay', 60, sub {
			(sql1('mes', q{SELECT relay_connected AND last_error IS NULL FROM alexandrite.outbox_status}) // '') eq 't' }),
			'the relay connects to the broker as alexandrite, in vhost mes')
		  or diag(sql1('mes', q{SELECT last_error FROM alexandrite.outbox_status}));
	}
	elsif ($name eq 'exporter-start')
	{
		check_listeners();
	}
	elsif ($name eq 'readme-metrics')
	{
		check_delivery();
		check_exporter('after Getting started');
		check_guc_table();
	}
	elsif ($name eq 'reference-metric-samples')
	{
		check_cron();
	}
	elsif ($name eq 'backup-check')
	{
		check_restore();
	}
	elsif ($name eq 'upgrade-restart')
	{
		check_after_upgrade();
	}
	elsif ($name eq 'exporter-stop')
	{
		ok(!-f '/run/prometheus-postgres-exporter.pid', 'the exporter stopped, its pid file removed');
	}
}

check_server_log();
done_testing();
exit 0;

# ---------------------------------------------------------------------------
# the checks

# nothing the recipe started listens beyond loopback (without a namespace of
# our own: the recipe's ports only)
sub check_listeners
{
	my (undef, $out) = run([ 'ss', '-ltnpH' ]);
	my @lines = split /\n/, $out;
	@lines = grep { /:(5433|5672|15672|25672|9187)\s/ } @lines unless $ENV{ALX_DOCS_NS};
	my @wide = grep { !loopback($_) } @lines;
	cmp_ok(scalar(@lines), '>=', 3, 'listeners found: ' . scalar(@lines));
	is(scalar(@wide), 0, 'PostgreSQL, RabbitMQ (with the management plugin) and the exporter listen on loopback only')
	  or diag(join("\n", @wide));

	# the project's own broker script, with the plugins that open HTTP ports
	my @ports = @script_ports;
	my $started = eval { $script_h->finish } && $script_h->result == 0;
	ok($started, "scripts/rabbitmq starts a node with the management and prometheus plugins")
	  or diag($script_out . ($@ // ''));
	# (the plugins' listeners open after the AMQP port)
	my @mine;
	wait_for('plugins', 30, sub {
		(undef, $out) = run([ 'ss', '-ltnpH' ]);
		@mine = grep { /:($ports[0]|$ports[1]|$ports[2]|@{[ $ports[0] + 10000 ]})\s/ } split /\n/, $out;
		@mine >= 4;
	});
	is(scalar(@mine), 4, 'scripts/rabbitmq: AMQP, distribution, management and prometheus listeners') or diag($out);
	is(scalar(grep { !loopback($_) } @mine), 0, 'scripts/rabbitmq listens on loopback only, plugins included')
	  or diag(join("\n", @mine));
	run([ "$TOP/scripts/rabbitmq", 'stop', 'docs', $ports[0] ], env => \%script_env, timeout => 60);
	@script_ports = ();
}

sub loopback
{
	my ($line) = @_;
	my $local = (split ' ', $line)[3] // '';
	return $local =~ /^(127\.0\.0\.1|\[::1\]):\d+$/;
}

# a port that is free with port + 10000 (a RabbitMQ node's distribution
# port), both below the ephemeral range (32768 and up), where an outgoing
# connection could take them first: as alx_free_port in scripts/lib.sh
sub free_port
{
	for (1 .. 100)
	{
		my $port = 10200 + int(rand(12000));
		my (undef, $out) = run([ 'ss', '-ltnH', "( sport = :$port or sport = :" . ($port + 10000) . " )" ]);
		return $port if $out !~ /\S/;
	}
	die 'no free port';
}

# the relay published every order event of Getting started to crm.orders
sub check_delivery
{
	ok(wait_for('outbox', 60, sub { (sql1('mes', 'SELECT pending = 0 FROM alexandrite.outbox_status') // '') eq 't' }),
		'the relay published every event (outbox_status.pending = 0)');
	is(sql1('mes', 'SELECT dead_letters FROM alexandrite.outbox_status'), '0', 'no dead letter');
	my $events = sql1('mes', q{SELECT count(*) FROM alexandrite.outbox WHERE aggregate_type = 'order'});
	cmp_ok($events, '>=', 6, "Getting started emitted order events ($events)");
	my ($n, $out) = (0, '');
	wait_for('queue', 30, sub {
		(undef, $out) = run([ 'rabbitmqctl', '-q', 'list_queues', '-p', 'mes', 'name', 'messages' ]);
		($n) = $out =~ /^crm\.orders\s+(\d+)\s*$/m;
		defined $n && $n == $events;
	});
	is($n, $events, 'the CRM\'s queue holds one message per order event') or diag($out);
}

# the exporter's alexandrite_* series are exactly those of metrics()
sub parse_metrics
{
	my ($text) = @_;
	my %s;
	for my $line (split /\n/, $text)
	{
		next if $line =~ /^#/ || $line eq '';
		my ($name, $labels, $value) = $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/ or next;
		my @pairs = grep { !/^server=/ } ($labels // '') =~ /([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")/g;
		$s{$name}{ join(',', sort @pairs) } = $value;
	}
	return \%s;
}

sub check_exporter
{
	my ($when) = @_;
	my $http = HTTP::Tiny->new(timeout => 30);
	my $res = $http->get($EXPORTER);
	ok($res->{success}, "the exporter answers on 127.0.0.1:9187 $when") or return;
	my $body = $res->{content};
	my ($rc, $want_text, $err) = psql_role('alexandrite_monitor', 'mes', 'SELECT alexandrite.metrics()');
	is($rc, 0, 'metrics() as alexandrite_monitor') or diag($err);
	my ($got, $want) = (parse_metrics($body), parse_metrics($want_text));
	my $clock = qr/^alexandrite_(metrics_collector_duration_seconds|orders_max_time_in_status_seconds|\w+_age_seconds)$/;
	my (@missing, @differ, @extra, @nan);
	my $seen = 0;
	for my $name (sort keys %$want)
	{
		for my $l (sort keys %{ $want->{$name} })
		{
			$seen++;
			my $g = $got->{$name}{$l};
			if (!defined $g) { push @missing, "$name\{$l\}"; }
			elsif ($name !~ $clock && $g ne $want->{$name}{$l} && $g != $want->{$name}{$l})
			{
				push @differ, "$name\{$l\}: exporter $g, metrics() $want->{$name}{$l}";
			}
		}
	}
	for my $name (sort keys %$got)
	{
		for my $l (sort keys %{ $got->{$name} })
		{
			push @nan, "$name\{$l\}" if $got->{$name}{$l} =~ /nan/i;
			push @extra, "$name\{$l\}" if $name =~ /^alexandrite_/ && !exists $want->{$name}{$l};
		}
	}
	cmp_ok($seen, '>', 40, "metrics() has $seen series $when");
	is(scalar(@missing), 0, "every series of metrics() is exported $when") or diag("missing: @missing");
	is(scalar(@extra), 0, "the exporter has no alexandrite series metrics() has not $when") or diag("extra: @extra");
	is(scalar(@differ), 0, "with the same values $when") or diag(join("\n", @differ));
	is(scalar(@nan), 0, "no series of the exporter is NaN $when") or diag("NaN: @nan");
	unlike($want_text, qr/ NaN$/m, "metrics() has no NaN $when");
	is($got->{alexandrite_quotes_total}{'currency="EUR",needs_review="false"'}, 1,
		'the quote of Getting started is counted') if $when =~ /Getting started/;
	like($body, qr/^pg_up(?:\{[^}]*\})? 1$/m, "the exporter is connected (pg_up 1) $when");
}

# the GUC table of docs/operations.md is pg_settings
sub check_guc_table
{
	my %doc;
	open my $fh, '<', $OPS or die;
	my $in;
	while (<$fh>)
	{
		$in = 1 if /^## Configuration \(GUC table\)/;
		$in = 0 if $in && /^## / && !/^## Configuration/;
		next unless $in && /^\| `(alexandrite\.[a-z_]+)` \| (\w+) \| ([^|]*) \| ([^|]*) \| (.*) \|\s*$/;
		$doc{$1} = { type => $2, default => $3, context => $4, desc => $5 };
	}
	close $fh;
	my $rows = sql1('mes', q{SELECT name, vartype, boot_val, coalesce(unit, ''), context,
	                                short_desc || coalesce(' ' || extra_desc, '')
	                           FROM pg_settings WHERE name LIKE 'alexandrite.%' ORDER BY name});
	my (@wrong, %live);
	for my $row (split /\n/, $rows // '')
	{
		my ($name, $type, $boot, $unit, $context, $desc) = split /\|/, $row, 6;
		$live{$name} = 1;
		my $d = $doc{$name} or do { push @wrong, "$name is not in the table"; next; };
		my $want_default = $boot eq '' ? '(empty)' : '`' . $boot . ($unit ne '' ? " $unit" : '') . '`';
		push @wrong, "$name: type $d->{type}, pg_settings $type" if $d->{type} ne $type;
		push @wrong, "$name: default $d->{default}, pg_settings $want_default" if index($d->{default}, $want_default) != 0;
		push @wrong, "$name: context $d->{context}, pg_settings $context" if (split /,/, $d->{context})[0] ne $context;
		(my $ddesc = $d->{desc}) =~ s/ See \[[^\]]*\]\([^)]*\)\.$//;
		push @wrong, "$name: description differs:\n  doc: $ddesc\n  pg_settings: $desc" if $ddesc ne $desc;
	}
	push @wrong, map { "$_ is in the table, not in pg_settings" } grep { !$live{$_} } sort keys %doc;
	cmp_ok(scalar(keys %live), '>=', 15, 'pg_settings has the alexandrite settings');
	is(scalar(@wrong), 0, 'the GUC table of docs/operations.md is pg_settings (name, type, default, context, description)')
	  or diag(join("\n", @wrong));
}

# a pg_cron job the docs scheduled shows succeeded in cron.job_run_details
sub check_cron
{
	my $left = ($scheduled_at // time) + 75 - time;
	$left = 10 if $left < 10;
	my $t0 = time;
	ok(wait_for('cron', $left, sub {
		(sql1('mes', q{SELECT count(*) > 0 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
		                WHERE j.jobname = 'alexandrite-escalate-overdue' AND d.status = 'succeeded'}) // '') eq 't' }),
		sprintf('the job alexandrite-escalate-overdue succeeded (cron.job_run_details; waited %.0f s)', time - $t0));
	is(sql1('mes', q{SELECT count(*) FROM cron.job_run_details WHERE status NOT IN ('succeeded', 'running', 'starting')}),
		'0', 'no run failed') or diag(sql1('mes', q{SELECT status, return_message FROM cron.job_run_details}));
	is(sql1('mes', q{SELECT string_agg(jobname, ' ' ORDER BY jobname) FROM cron.job}),
		'alexandrite-escalate-overdue alx-purge-cron-log alx-rebalance alx-reconcile', 'the four documented jobs');
}

# the restore of the documented dump
sub check_restore
{
	like($output{'backup-check'} // '', qr/^\s*\d+ \|\s*\d+\s*$/m, 'the restored database answers the check');
	is(sql1('mes_restored', 'SELECT count(*) FROM alexandrite.orders'), sql1('mes', 'SELECT count(*) FROM alexandrite.orders'),
		'every order restored');
	is(sql1('mes_restored', 'SELECT count(*) FROM alexandrite.outbox'), sql1('mes', 'SELECT count(*) FROM alexandrite.outbox'),
		'every outbox event restored, none re-emitted');
	is(sql1('mes_restored', q{SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'}), '0',
		'pg_cron left out of the restored database, as the list says');
	reconciled('in the restored database', 'mes_restored');
	# why the list: the plain restore stops at pg_cron
	my ($rc, $out, $err) = run([ 'runuser', '-u', 'postgres', '--', 'sh', '-c',
		"createdb -p $PORT mes_restored_plain && pg_restore -p $PORT -d mes_restored_plain --exit-on-error mes.dump" ],
		cwd => $pgwork);
	ok($rc != 0 && $err =~ /can only create extension in database mes/,
		'without the list, pg_restore --exit-on-error stops at CREATE EXTENSION pg_cron (as the text says)')
	  or diag("rc $rc: $err");
}

sub check_after_upgrade
{
	is(sql1('mes', q{SELECT extversion = default_version FROM pg_extension e JOIN pg_available_extensions a
	                  ON a.name = e.extname WHERE extname = 'alexandrite'}), 't', 'the extension is at the installed version');
	ok(wait_for('workers', 60, sub {
		(sql1('mes', q{SELECT count(*) FROM pg_stat_activity
		   WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold', 'pg_cron launcher')}) // '') eq '3' }),
		'after the restart the relay, the fold and pg_cron run again');
	ok(wait_for('relay', 60, sub {
		(sql1('mes', q{SELECT relay_connected FROM alexandrite.outbox_status}) // '') eq 't' }),
		'the relay reconnects');
	my ($rc, $out, $err) = psql_role('mes', 'mes', q{SELECT alexandrite.create_order('AFTER-UPGRADE', 'crm', 'c-9', NULL, NULL)});
	is($rc, 0, 'the MES writes after the upgrade, with the grants run again') or diag($err);
	ok(wait_for('outbox', 60, sub { (sql1('mes', 'SELECT pending = 0 FROM alexandrite.outbox_status') // '') eq 't' }),
		'and its event is published');
	reconciled('after the upgrade');
	ok(wait_for('exporter', 60, sub { my $r = HTTP::Tiny->new(timeout => 10)->get($EXPORTER);
		$r->{success} && $r->{content} =~ /^pg_up(?:\{[^}]*\})? 1$/m }), 'the exporter reconnects after the restart');
	check_exporter('after the upgrade');
}

# the server log: no worker waiting for a database that does not exist, no
# failed connection of pg_cron, no crash
sub check_server_log
{
	open my $fh, '<', $SERVER_LOG or do { fail("read $SERVER_LOG: $!"); return; };
	my @lines = <$fh>;
	close $fh;
	my @missing_db = grep { /database "mes" does not exist/ } @lines;
	is(scalar(@missing_db), 0, 'no worker ever looked for a database that did not exist yet') or diag(@missing_db[0 .. 2]);
	my @bad = grep { /PANIC|terminated by signal|server process .* exited with exit code [^0]|connection failed/ } @lines;
	is(scalar(@bad), 0, 'no crash, no failed pg_cron connection in the server log') or diag(join('', @bad[0 .. ($#bad < 9 ? $#bad : 9)]));
}
