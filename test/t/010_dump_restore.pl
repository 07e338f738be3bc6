# pg_dump keeps every row of alexandrite's data tables: dump a database with
# orders, restore it into a new one, find every row, and keep working.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $node = AlxTest::new_node('dump');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');
AlxTest::install($node, 'shop');

# a working database: operators, orders in every status, edited seed data
$node->safe_psql('shop', q{
	INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op1', 'Ana', 5), ('op2', 'Ben', 3);
	UPDATE alexandrite.materials SET price_per_gram = 61.25 WHERE code = 'au750_yellow';
	INSERT INTO alexandrite.materials (code, name, density_g_cm3, price_per_gram)
	VALUES ('au750_green', '18k green gold', 15.9, 58);
	INSERT INTO alexandrite.sla_policies (channel, customer_id, target, weight)
	VALUES ('b2b_api', 'acme', '7 days', 4);
	UPDATE alexandrite.sla_policies SET target = '20 days' WHERE channel = 'shop' AND customer_id IS NULL;
	SELECT alexandrite.create_order('R-' || i, (ARRAY['shop','b2b_api','crm'])[1 + i % 3], 'c' || (i % 7),
	                                NULL, (ARRAY['ag925','au750_yellow','au750_green'])[1 + i % 3])
	  FROM generate_series(1, 60) i;
	SELECT alexandrite.set_status(id, 'priced', 'bot') FROM alexandrite.orders WHERE id % 2 = 0;
	UPDATE alexandrite.orders SET operator_id = 'op1' WHERE id % 4 = 0;
	SELECT alexandrite.set_status(id, 'assigned', 'ana') FROM alexandrite.orders WHERE id % 4 = 0;
	SELECT alexandrite.set_status(id, 'cancelled', 'crm') FROM alexandrite.orders WHERE id % 5 = 0;
	INSERT INTO alexandrite.sla_breaches (order_id, sla_due_at, status_at_breach)
	SELECT id, sla_due_at, status FROM alexandrite.orders WHERE id < 4;
});

my @tables = AlxTest::config_tables($node, 'shop');
ok(scalar(grep { $_ eq 'alexandrite.orders' } @tables), 'orders are a configuration table');
my %before = map { $_ => AlxTest::table_digest($node, 'shop', $_) } @tables;

for my $format ('custom', 'plain')
{
	my $file = $node->basedir . "/shop.$format";
	my $db   = "restored_$format";
	$node->command_ok([ 'pg_dump', '-d', $node->connstr('shop'), '-F', substr($format, 0, 1), '-f', $file ],
		"pg_dump ($format)");
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	if ($format eq 'custom')
	{
		$node->command_ok([ 'pg_restore', '-d', $node->connstr($db), '--exit-on-error', $file ],
			'pg_restore');
	}
	else
	{
		$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-f', $file ],
			'psql < plain dump');
	}
	for my $t (@tables)
	{
		is(AlxTest::table_digest($node, $db, $t), $before{$t}, "$format: every row of $t is back");
	}
	# the sequences continue after the restored ids, the seeds were not doubled
	my $next = $node->safe_psql($db,
		q{SELECT alexandrite.create_order('R-NEW', 'shop', 'c1', NULL, 'au750_green')});
	cmp_ok($next, '>', 60, "$format: new orders get fresh ids ($next)");
	is($node->safe_psql($db, q{SELECT price_per_gram FROM alexandrite.materials WHERE code = 'au750_yellow'}),
		'61.25', "$format: the edited seed price survived");
	is($node->safe_psql($db, q{SELECT count(*) FROM alexandrite.sla_policies WHERE channel = 'shop'}),
		'1', "$format: seed SLA policy not doubled");
	is($node->safe_psql($db, q{SELECT sla_due_at - created_at FROM alexandrite.orders WHERE external_ref = 'R-NEW'}),
		'20 days', "$format: the edited SLA policy applies");
	is($node->safe_psql($db, q{SELECT count(*) FROM alexandrite.order_timeline(4) WHERE kind = 'status'}), '3',
		"$format: the timeline of an order is complete");
}

$node->stop;
done_testing();
