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
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;
use AlxBroker;

my $rounds = 30;
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

my ($fails, @errors) = (0);
for my $round (1 .. $rounds)
{
	my $version = $round % 2 ? '' : " VERSION '1.1'";
	my ($rc, $out, $err) = $node->psql('postgres', "CREATE EXTENSION alexandrite$version");
	push @errors, "round $round CREATE: $err" if $rc;
	if ($version)
	{
		# the relay and the workers start on 1.1; the update runs beside them
		$node->safe_psql('postgres', q{SELECT alexandrite.outbox_emit('test', 'u', 'test.happened', '{}')});
		($rc, $out, $err) = $node->psql('postgres', 'ALTER EXTENSION alexandrite UPDATE');
		push @errors, "round $round UPDATE: $err" if $rc;
	}
	make_busy($round);
	($rc, $out, $err) = $node->psql('postgres', 'DROP EXTENSION alexandrite');
	push @errors, "round $round DROP: $err" if $rc;
	last if @errors;
}
is(scalar(@errors), 0, "$rounds rounds of CREATE, ALTER EXTENSION UPDATE and DROP EXTENSION beside busy workers")
  or diag(join("\n", @errors));

# The gate is the owner's: a role that may not drop the extension gets the
# command's own error at once, without queueing for the exclusive lock on
# alexandrite.orders (which would stall every writer behind it) while a
# transaction reads the table.
$node->safe_psql('postgres', 'CREATE EXTENSION alexandrite');
$node->safe_psql('postgres', 'CREATE ROLE intruder LOGIN');
my $reader = $node->background_psql('postgres');
$reader->query_safe('BEGIN');
$reader->query_safe('SELECT count(*) FROM alexandrite.orders');
my ($rc, $out, $err) = $node->psql('postgres', "SET lock_timeout = '3s'; DROP EXTENSION alexandrite",
	extra_params => [ '-U', 'intruder' ]);
like($err, qr/must be owner of extension alexandrite/,
	'a non-owner\'s DROP EXTENSION fails at once with its own error, not after queueing for the gate');
($rc, $out, $err) = $node->psql('postgres', "SET lock_timeout = '3s'; ALTER EXTENSION alexandrite UPDATE",
	extra_params => [ '-U', 'intruder' ]);
like($err, qr/must be owner of extension alexandrite/, 'so does a non-owner\'s ALTER EXTENSION UPDATE');
$reader->query_safe('COMMIT');
$reader->quit;
unlike(slurp_file($node->logfile), qr/deadlock detected/, 'no deadlock in the server log');
$node->stop;
done_testing();
