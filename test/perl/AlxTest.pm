# AlxTest: shared helpers of alexandrite's TAP tests (test/t/*.pl).
#
#   my $node = AlxTest::new_node('primary');   # initialised, not started;
#                                             # test/regress.conf applied
#   $node->start;
#   AlxTest::install($node, 'postgres');      # CREATE EXTENSION alexandrite
#   my $digest = AlxTest::table_digest($node, 'postgres', 'alexandrite.orders');
package AlxTest;

use strict;
use warnings FATAL => 'all';

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our $TOP = abs_path(dirname(__FILE__) . '/../..');

# test/regress.conf, pointed at the given database
sub regress_conf
{
	my ($dbname) = @_;
	$dbname //= 'postgres';
	my $conf = PostgreSQL::Test::Utils::slurp_file("$TOP/test/regress.conf");
	$conf =~ s/contrib_regression/$dbname/g;
	return $conf;
}

# A new cluster with pg_cron and alexandrite preloaded.
#   dbname      => the database of the relay and pg_cron (default postgres)
#   conf        => extra postgresql.conf lines
#   worker_role => 0: do not create the workers' role (a test that creates
#                  it itself, e.g. from the docs)
#   any other option goes to PostgreSQL::Test::Cluster::init
sub new_node
{
	my ($name, %opts) = @_;
	my $dbname = delete $opts{dbname};
	my $extra  = delete $opts{conf};
	my $worker = delete $opts{worker_role} // 1;
	my $node   = PostgreSQL::Test::Cluster->new($name);
	$node->init(%opts);
	create_worker_role($node) if $worker;
	$node->append_conf('postgresql.conf', regress_conf($dbname));
	$node->append_conf('postgresql.conf', $extra) if defined $extra;
	return $node;
}

# The role the background workers connect as (alexandrite.worker_role in
# test/regress.conf), created in single-user mode before the first start so
# that the workers connect at once.
sub create_worker_role
{
	my ($node) = @_;
	my $in = "CREATE ROLE alexandrite_worker LOGIN;\n";
	my ($out, $err);
	IPC::Run::run([ 'postgres', '--single', '-D', $node->data_dir, '-c', 'shared_preload_libraries=', 'postgres' ],
		'<', \$in, '>', \$out, '2>', \$err)
	  or die "could not create the worker role: $err";
	return;
}

# CREATE EXTENSION alexandrite (and any others named) in a database.
sub install
{
	my ($node, $dbname, @more) = @_;
	$node->safe_psql($dbname, "CREATE EXTENSION $_") for ('alexandrite', @more);
	return;
}

# An order-independent digest of a table's rows, to compare two databases.
sub table_digest
{
	my ($node, $dbname, $table) = @_;
	return $node->safe_psql($dbname,
		"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM $table t");
}

# Tables and sequences whose rows pg_dump keeps (pg_extension_config_dump).
sub config_tables
{
	my ($node, $dbname) = @_;
	my $out = $node->safe_psql($dbname, q{
		SELECT c.oid::regclass
		  FROM pg_extension e, unnest(e.extconfig) AS t(oid) JOIN pg_class c ON c.oid = t.oid
		 WHERE e.extname = 'alexandrite' AND c.relkind IN ('r', 'p')
		 ORDER BY 1});
	return split /\n/, $out;
}

# Poll a query until it returns 't' or the timeout (seconds) passes.
sub wait_until
{
	my ($node, $dbname, $query, $timeout) = @_;
	$timeout //= 60;
	# a deadline in time, not a count of polls: psql takes long on a busy machine
	my $deadline = time() + $timeout;
	while (1)
	{
		my $r = $node->safe_psql($dbname, $query);
		return 1 if $r eq 't';
		return 0 if time() > $deadline;
		select(undef, undef, undef, 0.1);
	}
}

# Polls $query until its value matches $re or $timeout seconds pass;
# returns the last value (for like()), so a slow machine waits, not fails.
sub poll_value
{
	my ($node, $dbname, $query, $re, $timeout) = @_;
	my $deadline = time() + ($timeout // 60);
	while (1)
	{
		my $r = $node->safe_psql($dbname, $query);
		return $r if $r =~ $re || time() > $deadline;
		select(undef, undef, undef, 0.2);
	}
}

# A free TCP port below the kernel's ephemeral range (32768 and up), for a
# server the test starts itself: get_free_port() picks from 49152 up, where
# an outgoing connection may take the port between the check and the bind.
# pair => N: port + N must be free and below that range too (a RabbitMQ
# node's Erlang distribution port is its AMQP port + 10000).
sub low_free_port
{
	my (%opt) = @_;
	my $pair = $opt{pair} // 0;
	for (1 .. 50)
	{
		# get_free_port() walks up from the last port it assigned: start low
		$PostgreSQL::Test::Cluster::last_port_assigned = 10200 + int(rand(12000))
		  if $PostgreSQL::Test::Cluster::last_port_assigned + $pair >= 32700;
		my $port = PostgreSQL::Test::Cluster::get_free_port();
		return $port
		  if $port + $pair < 32768
		  && ($pair == 0 || PostgreSQL::Test::Cluster::can_bind('127.0.0.1', $port + $pair));
	}
	die "no free port" . ($pair ? " pair (+$pair)" : '') . " below 32768";
}

1;
