# The GRANTs that docs/operations.md ("Privileges") gives for an MES role, a
# monitoring role and an admin role, run as written, then each role does its
# job and is refused what is not its job.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $doc = PostgreSQL::Test::Utils::slurp_file("$AlxTest::TOP/docs/operations.md");
my ($section) = $doc =~ /^## Privileges\n(.*?)^## /ms;
my ($grants) = ($section // '') =~ /```sql\n(.*?)```/s;
ok(defined $grants, 'docs/operations.md has the GRANTs in its Privileges section');

my $node = AlxTest::new_node('privileges');
$node->start;
AlxTest::install($node, 'postgres');
$node->safe_psql('postgres', q{
	CREATE ROLE alice LOGIN;
	INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op1', 'Ana', 5);
	INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
	                                size_x_mm, size_y_mm, size_z_mm, shells, watertight,
	                                boundary_edges, nonmanifold_edges, degenerate_triangles, analysis_ms)
	VALUES (1, sha256('ring'), 'ring.stl', 'stl', 2048, 1024, 850, 1200, 20, 20, 4, 1, true, 0, 0, 0, 40);
});
$node->safe_psql('postgres', $grants);

sub as
{
	my ($role, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-U', $role ]);
	return ($rc, $out, $err);
}
sub can
{
	my ($role, $sql, $what) = @_;
	my ($rc, $out, $err) = as($role, $sql);
	is($rc, 0, "$role can $what") or diag($err);
	return $out;
}
sub cannot
{
	my ($role, $sql, $what) = @_;
	my ($rc, $out, $err) = as($role, $sql);
	like($err, qr/permission denied/, "$role cannot $what");
	return;
}

# the MES
my $id = can('mes', q{SELECT alexandrite.create_order('M-1', 'shop', 'c1', 1, 'ag925')}, 'create an order');
can('mes', q{SELECT alexandrite.create_order('M-' || i, 'b2b_api', 'c2', 1, 'ag925') FROM generate_series(2, 4) i},
	'create more orders');
can('mes', qq{BEGIN; SELECT alexandrite.set_traceparent(alexandrite.new_traceparent());
              SELECT total FROM alexandrite.price_order($id); COMMIT;}, 'price an order with a trace context');
can('mes', q{SELECT alexandrite.assign_next('op1')}, 'assign the next order');
can('mes', q{SELECT alexandrite.set_status(o.id, 'in_production', 'op1') FROM alexandrite.orders o WHERE o.operator_id = 'op1'},
	'move an order along');
can('mes', q{SELECT * FROM alexandrite.order_board(NULL, 10)}, 'read the order board');
can('mes', qq{SELECT * FROM alexandrite.order_timeline($id)}, 'read a timeline');
can('mes', q{SELECT * FROM alexandrite.dashboard_status_counts; SELECT * FROM alexandrite.dashboard_sla;
             SELECT * FROM alexandrite.dashboard_operator_load}, 'read the dashboards');
can('mes', q{SELECT alexandrite.outbox_emit('invoice', 'I-1', 'invoice.sent', '{}')}, 'emit its own event');
can('mes', q{SELECT * FROM alexandrite.price_quote(1, 'au750_yellow')}, 'quote');
cannot('mes', q{SELECT alexandrite.metrics()}, 'read the metrics');
cannot('mes', q{SELECT alexandrite.rebalance()}, 'rebalance');
cannot('mes', q{SELECT alexandrite.outbox_requeue('{}')}, 'requeue dead letters');
cannot('mes', q{DELETE FROM alexandrite.orders}, 'delete orders');

# monitoring
like(can('alexandrite_monitor', q{SELECT alexandrite.metrics()}, 'read the metrics'),
	qr/^alexandrite_sla_open_orders\{channel="b2b_api"\} 3$/m, "and sees the figures");
cannot('alexandrite_monitor', q{SELECT count(*) FROM alexandrite.orders}, 'read orders');
cannot('alexandrite_monitor', q{SELECT * FROM alexandrite.dashboard_status_counts}, 'read the dashboards directly');
cannot('alexandrite_monitor', q{SELECT alexandrite.create_order('X', 'shop', 'c', NULL, NULL)}, 'create an order');

# operations staff, through membership
can('alice', q{SELECT alexandrite.refresh_dashboards()}, 'fold the dashboards');
can('alice', q{SELECT * FROM alexandrite.reconcile_dashboards()}, 'reconcile the dashboards');
can('alice', q{SELECT alexandrite.escalate_overdue()}, 'escalate overdue orders');
can('alice', q{SELECT alexandrite.rebalance()}, 'rebalance');
can('alice', q{SELECT alexandrite.outbox_requeue('{}')}, 'requeue dead letters');
can('alice', q{SELECT alexandrite.create_order('A-1', 'crm', 'c3', NULL, NULL)}, 'do what the MES does');
cannot('alice', q{SELECT alexandrite.metric_samples()}, 'run the collectors');

$node->stop;
done_testing();
