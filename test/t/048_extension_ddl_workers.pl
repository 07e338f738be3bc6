# DROP EXTENSION and ALTER EXTENSION UPDATE while every worker is busy.
#
# The commands lock the extension's tables in an order of their own, the
# workers' transactions in another: a soak run of daf91a3 (2026-12-04) had
# DROP EXTENSION fail with "deadlock detected" against the relay reading the
# outbox and the mesh workers claiming a job.  Both now take the same lock
# first (the gate, src/worker.c).  Here the relay publishes a backlog to a
# real RabbitMQ node, two mesh workers analyse queued jobs and the fold
# worker folds every 50 ms, while the extension is dropped and created
# again, and updated from 1.1, ROUNDS times: every command must succeed.
# In every fourth round a superuser "dba" creates it and drops it with DROP
# OWNED BY dba (which locks the tables it owns before the extension); in
# another, dba creates it and REASSIGN OWNED BY dba TO postgres re-owns it
# (locking each table) before the DROP EXTENSION.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;
use AlxBroker;

my $rounds = 48;
my $mq = AlxBroker->new;
$mq->start;
$mq->declare('t048', 'test.#');

my $node = AlxTest::new_node('ddl048', conf => join("\n",
		"alexandrite.amqp_url = '" . $mq->url . "'",
		"alexandrite.outbox_batch_size = 50",
		"alexandrite.mesh_workers = 2",
		"alexandrite.fold_interval = 50"));
$node->start;
my $gen = "$AlxTest::TOP/test/gen/genmesh.py";
my $dir = PostgreSQL::Test::Utils::tempdir();
my @files = map {
	my $p = "$dir/c$_.stl";
	system('python3', $gen, 'cube', 'stl', '--scale', 1 + $_ / 7, '--out', $p) == 0 or BAIL_OUT('genmesh');
	chmod 0644, $p;
	$p
} 1 .. 4;

# busy: events for the relay, jobs for the mesh workers, orders for the folds
sub make_busy
{
	my ($round) = @_;
	$node->safe_psql('postgres', qq{
		SELECT alexandrite.outbox_emit('test', 'a' || (g % 20), 'test.happened', '{}') FROM generate_series(1, 400) g;
		SELECT alexandrite.create_order('r$round-' || g, 'shop', 'c', NULL, NULL) FROM generate_series(1, 50) g;
		SELECT alexandrite.mesh_submit(overlay(pg_read_binary_file(f) placing convert_to('r$round', 'UTF8') from 1),
		                               'c.stl') FROM unnest(ARRAY['@{[ join("','", @files) ]}']) f;});
	return;
}

$node->safe_psql('postgres', 'CREATE ROLE dba SUPERUSER LOGIN');
my ($fails, @errors, %done) = (0);
for my $round (1 .. $rounds)
{
	# 1: fresh; 2: 1.1, then UPDATE; 3: the dba's, then DROP OWNED; 0: the dba's, re-owned, then DROP
	my $mode = $round % 4;
	my $version = $mode == 2 ? " VERSION '1.1'" : '';
	my @as = $mode == 3 || $mode == 0 ? (extra_params => [ '-U', 'dba' ]) : ();
	my ($rc, $out, $err) = $node->psql('postgres', "CREATE EXTENSION alexandrite$version", @as);
	push @errors, "round $round CREATE: $err" if $rc;
	if ($version)
	{
		# the relay and the workers start on 1.1; the update runs beside them
		$node->safe_psql('postgres', q{SELECT alexandrite.outbox_emit('test', 'u', 'test.happened', '{}')});
		($rc, $out, $err) = $node->psql('postgres', 'ALTER EXTENSION alexandrite UPDATE');
		push @errors, "round $round UPDATE: $err" if $rc;
	}
	make_busy($round);
	if ($mode == 0)
	{
		($rc, $out, $err) = $node->psql('postgres', 'REASSIGN OWNED BY dba TO postgres', @as);
		push @errors, "round $round REASSIGN OWNED: $err" if $rc;
		$done{reassign}++ unless $rc;
		@as = ();
	}
	my $drop = $mode == 3 ? 'DROP OWNED BY dba' : 'DROP EXTENSION alexandrite';
	($rc, $out, $err) = $node->psql('postgres', $drop, @as);
	push @errors, "round $round $drop: $err" if $rc;
	$done{$drop}++ unless $rc;
	last if @errors;
}
is(scalar(@errors), 0, "$rounds rounds of CREATE, ALTER EXTENSION UPDATE, REASSIGN OWNED, DROP EXTENSION and DROP OWNED beside busy workers")
  or diag(join("\n", @errors));
is(($done{'DROP OWNED BY dba'} // 0) . '/' . ($done{reassign} // 0), ($rounds / 4) . '/' . ($rounds / 4),
	'DROP OWNED BY the extension\'s owner dropped it, and REASSIGN OWNED re-owned it, in every fourth round each');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_extension WHERE extname = 'alexandrite'}), '0',
	'the last round left no extension');

# The gate is only for a command that will get as far as locking the
# extension's tables: anyone else gets the command's own error at once,
# without queueing for the exclusive lock on alexandrite.orders (which would
# stall every writer behind it) while a transaction reads the table.  The
# extension is dba's here (the bootstrap superuser's objects are out of
# reach of DROP OWNED and REASSIGN OWNED).
$node->safe_psql('postgres', 'CREATE EXTENSION alexandrite', extra_params => [ '-U', 'dba' ]);
$node->safe_psql('postgres', 'CREATE ROLE intruder LOGIN');
my $reader = $node->background_psql('postgres');
$reader->query_safe('BEGIN');
$reader->query_safe('SELECT count(*) FROM alexandrite.orders');
sub at_once
{
	my ($role, $sql, $re, $what) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "SET lock_timeout = '3s'; $sql", extra_params => [ '-U', $role ]);
	like($err, $re, $what);
	return;
}
at_once('intruder', 'DROP EXTENSION alexandrite', qr/must be owner of extension alexandrite/,
	'a non-owner\'s DROP EXTENSION fails at once with its own error, not after queueing for the gate');
at_once('intruder', 'ALTER EXTENSION alexandrite UPDATE', qr/must be owner of extension alexandrite/,
	'so does a non-owner\'s ALTER EXTENSION UPDATE');
at_once('intruder', 'DROP OWNED BY dba', qr/permission denied to drop objects/,
	'and a DROP OWNED BY the extension\'s owner from a role without its privileges');
at_once('intruder', 'REASSIGN OWNED BY dba TO intruder', qr/permission denied to reassign objects/,
	'and a REASSIGN OWNED BY it');
at_once('postgres', 'DROP OWNED BY dba, nosuchrole', qr/role "nosuchrole" does not exist/,
	'and a superuser\'s DROP OWNED BY the owner and a role that does not exist');
at_once('postgres', 'REASSIGN OWNED BY dba TO nosuchrole', qr/role "nosuchrole" does not exist/,
	'and a REASSIGN OWNED to a role that does not exist');
at_once('postgres', 'BEGIN READ ONLY; DROP EXTENSION alexandrite', qr/cannot execute DROP EXTENSION in a read-only transaction/,
	'and a DROP EXTENSION in a read-only transaction');
$reader->query_safe('COMMIT');
$reader->quit;

# DROP SCHEMA alexandrite CASCADE takes no gate: the schema is a member of
# the extension, so PostgreSQL refuses it before locking anything of it.
my ($rc, $out, $err) = $node->psql('postgres', 'DROP SCHEMA alexandrite CASCADE');
like($err, qr/cannot drop schema alexandrite because extension alexandrite requires it/,
	'DROP SCHEMA alexandrite CASCADE is refused (the schema is the extension\'s)');
unlike(slurp_file($node->logfile), qr/deadlock detected/, 'no deadlock in the server log');
$node->stop;
done_testing();
