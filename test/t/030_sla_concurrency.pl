# SLA under concurrency: eight clients take every path that changes who
# holds what at once -- assign_next, release, cancel, rebalance, lowering and
# raising capacities, deactivating and reactivating operators, new orders --
# and every transaction checks, after its change, that capacity holds
# (test/perl/AlxCapacity.pm: I1 and I2).  Afterwards: the load counters equal
# the orders, nobody in the pool has an operator, and every order's history is
# a chain of allowed transitions.  Then the same after a dump and restore (the
# load counters are derived, not dumped).  Manual assignment (assign_order)
# on the same workload: 031_sla_capacity_all_paths.pl.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;
use AlxCapacity;

my $node = AlxTest::new_node('sla');
$node->start;
AlxTest::install($node, 'postgres');
AlxCapacity::setup($node, 'postgres');
AlxCapacity::run($node, 'postgres', assign_order => 0, clients => 8, transactions => 250);
AlxCapacity::assert_clean($node, 'postgres', 'automatic paths', assign_order => 0);

sub invariants
{
	my ($label) = @_;
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM alexandrite.operators op
		  LEFT JOIN alexandrite.operator_load l ON l.operator_id = op.id
		 WHERE l.open_orders IS NOT NULL
		   AND l.open_orders <> (SELECT count(*) FROM alexandrite.orders o
		                          WHERE o.operator_id = op.id AND o.status < 'shipped')}),
		'0', "$label: every known load counter equals the orders held");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM alexandrite.orders
		 WHERE status < 'assigned' AND operator_id IS NOT NULL}),
		'0', "$label: no order in the pool has an operator");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM alexandrite.orders
		 WHERE status = 'assigned' AND operator_id IS NULL}),
		'0', "$label: every assigned order has an operator");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM (
		    SELECT e.from_status, lag(e.to_status) OVER (PARTITION BY e.order_id ORDER BY e.id) AS prev
		      FROM alexandrite.order_events e) x
		 WHERE x.prev IS NOT NULL AND x.from_status IS DISTINCT FROM x.prev}),
		'0', "$label: every order's history is an unbroken chain");
}

invariants('after the run');
cmp_ok($node->safe_psql('postgres',
		q{SELECT count(*) FROM alexandrite.order_events WHERE to_status = 'assigned'}),
	'>', 100, 'many claims happened');

# capacity is still enforced right after a restore: the load counters are
# rebuilt from the restored orders, never counted twice
my $dump = $node->basedir . '/sla.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'restore');
is($node->safe_psql('restored', q{
	SELECT count(*) FROM alexandrite.operator_load l
	 WHERE l.open_orders IS NOT NULL
	   AND l.open_orders <> (SELECT count(*) FROM alexandrite.orders o
	                          WHERE o.operator_id = l.operator_id AND o.status < 'shipped')}),
	'0', 'restored load counters are exact or unknown');
$node->safe_psql('restored', q{
	DO $$ BEGIN FOR i IN 1..40 LOOP
	    BEGIN
	        PERFORM alexandrite.assign_next('cop' || (1 + i % 6));
	    EXCEPTION WHEN object_not_in_prerequisite_state THEN NULL;   -- an inactive operator
	    END;
	END LOOP; END $$});
is($node->safe_psql('restored', q{
	SELECT count(*) FROM alexandrite.operators op
	 WHERE (SELECT count(*) FROM alexandrite.orders o
	         WHERE o.operator_id = op.id AND o.status < 'shipped') > op.capacity}),
	'0', 'after a restore, claims still stop at capacity');
is($node->safe_psql('restored', q{
	SELECT count(*) FROM alexandrite.operators op
	  JOIN alexandrite.operator_load l ON l.operator_id = op.id
	 WHERE l.open_orders IS DISTINCT FROM (SELECT count(*) FROM alexandrite.orders o
	                                        WHERE o.operator_id = op.id AND o.status < 'shipped')}),
	'0', 'after a restore and new claims, the load counters are known and exact');

$node->stop;
done_testing();
