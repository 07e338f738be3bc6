# pg_dump keeps the price list history and the stored quotes: change the
# price list and metal prices, price orders, dump, restore into a new
# database, and find the same versions, the same quotes, the same prices.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $node = AlxTest::new_node('pricing_dump');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');
AlxTest::install($node, 'shop');

$node->safe_psql('shop', q{
	INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
	                                size_x_mm, size_y_mm, size_z_mm, shells, watertight,
	                                boundary_edges, nonmanifold_edges, degenerate_triangles)
	VALUES (1, sha256('cube'), 'cube.stl', 'stl', 12, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 0),
	       (2, sha256('band'), 'band.stl', 'stl', 8192, 4096, 348.714596, 639.312282, 20, 20, 4, 1, true, 0, 0, 0);
	SELECT pg_catalog.setval('alexandrite.meshes_id_seq', 2);
	UPDATE alexandrite.price_rules SET margin_pct = 35, change_note = 'spring prices';
	UPDATE alexandrite.materials SET price_per_gram = 1.30 WHERE code = 'ag925';
	SELECT alexandrite.create_order('Q-' || i, 'shop', 'c' || i, 1 + i % 2, (ARRAY['ag925', 'pt950'])[1 + i % 2])
	  FROM generate_series(1, 6) i;
	SELECT alexandrite.price_order(id) FROM alexandrite.orders WHERE id <= 3;
	UPDATE alexandrite.price_rules SET labour_base = 27.50;
	SELECT alexandrite.price_order(id, '{"stones": 2}') FROM alexandrite.orders WHERE id > 3;
});

my @tables = AlxTest::config_tables($node, 'shop');
ok(scalar(grep { $_ eq 'alexandrite.price_list_versions' } @tables), 'price_list_versions is dumped');
ok(scalar(grep { $_ eq 'alexandrite.quotes' } @tables), 'quotes are dumped');
my %before = map { $_ => AlxTest::table_digest($node, 'shop', $_) } @tables;
my $quote_sql = q{SELECT q.total || ' ' || q.price_list_version
                    FROM alexandrite.price_quote(2, 'pt950', '{"stones": 1}') q};
my $quote_before = $node->safe_psql('shop', $quote_sql);

for my $format ('custom', 'plain')
{
	my $file = $node->basedir . "/pricing.$format";
	my $db   = "restored_$format";
	$node->command_ok([ 'pg_dump', '-d', $node->connstr('shop'), '-F', substr($format, 0, 1), '-f', $file ],
		"pg_dump ($format)");
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	if ($format eq 'custom')
	{
		$node->command_ok([ 'pg_restore', '-d', $node->connstr($db), '--exit-on-error', $file ], 'pg_restore');
	}
	else
	{
		$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-f', $file ],
			'psql < plain dump');
	}
	for my $t (grep { /price_list|quotes|materials/ } @tables)
	{
		is(AlxTest::table_digest($node, $db, $t), $before{$t}, "$format: every row of $t is back");
	}
	is($node->safe_psql($db, $quote_sql), $quote_before, "$format: the same quote, from the same version");
	# the history continues where it was, and old quotes stay reproducible
	is($node->safe_psql($db, q{
		UPDATE alexandrite.price_rules SET margin_pct = 31 RETURNING version - (SELECT max(price_list_version) FROM alexandrite.quotes)}),
		'1', "$format: the next version follows the restored ones");
	is($node->safe_psql($db, q{
		SELECT count(*) FILTER (WHERE (alexandrite.price_quote(q.mesh_id, q.material,
		           q.options || jsonb_build_object('price_list_version', q.price_list_version))).total <> q.total)
		  FROM alexandrite.quotes q}), '0', "$format: stored quotes are reproduced by their version");
	is($node->safe_psql($db, q{SELECT count(*) FROM alexandrite.orders WHERE status = 'priced' AND price IS NOT NULL}),
		'6', "$format: priced orders keep their price");
}

$node->stop;
done_testing();
