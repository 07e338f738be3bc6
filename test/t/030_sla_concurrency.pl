# SLA under concurrency: eight clients claim, release and cancel orders of six
# operators at random while every transaction checks that nobody holds more
# open orders than their capacity.  Afterwards: no violation was ever seen,
# the load counters equal the orders, nobody in the pool has an operator,
# and every order's history is a chain of allowed transitions.  Then the
# same after a dump and restore (the load counters are derived, not dumped).
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $node = AlxTest::new_node('sla');
$node->start;
AlxTest::install($node, 'postgres');

$node->safe_psql('postgres', q{
	INSERT INTO alexandrite.operators (id, name, capacity)
	SELECT 'top' || i, 'Operator ' || i, (ARRAY[1, 2, 3, 5, 8, 13])[i] FROM generate_series(1, 6) i;
	SELECT count(alexandrite.create_order('CC-' || g, (ARRAY['shop', 'b2b_api', 'crm'])[1 + g % 3], 'c', NULL, NULL))
	  FROM generate_series(1, 300) g;
	-- fixture: due times spread over +-20 days
	UPDATE alexandrite.orders SET sla_due_at = now() + ((hashint4(id::int) % 480) * interval '1 hour');
	SELECT count(alexandrite.set_status(id, 'priced')) FROM alexandrite.orders WHERE id % 3 = 0;
	CREATE TABLE public.sla_violations (seen_at timestamptz DEFAULT clock_timestamp(), operator_id text,
	                                    held bigint, capacity int);
});

my $script = q{
\set op random(1, 6)
\set r random(1, 10)
\if :r <= 6
SELECT alexandrite.assign_next('top' || :op);
\elif :r <= 8
SELECT alexandrite.release_order(x.id)
  FROM (SELECT o.id FROM alexandrite.orders o
         WHERE o.operator_id = 'top' || :op AND o.status = 'assigned'
         ORDER BY o.id LIMIT 1 FOR UPDATE SKIP LOCKED) x;
\else
SELECT alexandrite.set_status(x.id, 'cancelled')
  FROM (SELECT o.id FROM alexandrite.orders o
         WHERE o.operator_id = 'top' || :op AND o.status = 'assigned'
         ORDER BY o.id DESC LIMIT 1 FOR UPDATE SKIP LOCKED) x;
\endif
INSERT INTO public.sla_violations (operator_id, held, capacity)
SELECT op.id, count(o.id), op.capacity
  FROM alexandrite.operators op
  LEFT JOIN alexandrite.orders o ON o.operator_id = op.id AND o.status < 'shipped'
 GROUP BY op.id, op.capacity
HAVING count(o.id) > op.capacity;
};

$node->pgbench(
	'--no-vacuum --client=8 --jobs=8 --transactions=150 --protocol=prepared',
	0,
	[qr{processed: 1200/1200}],
	[qr{^$}],
	'eight clients claim, release and cancel without errors',
	{ '030_sla_work' => $script });

sub invariants
{
	my ($label) = @_;
	is($node->safe_psql('postgres', 'SELECT count(*) FROM public.sla_violations'),
		'0', "$label: no operator ever held more than their capacity");
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
	    PERFORM alexandrite.assign_next('top' || (1 + i % 6));
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
