# docs/operations.md, "Privileges", run as written: the two marked blocks
# (roles, then grants) on a cluster whose workers wait for a role; then the
# workers connect as the documented role, and each documented role does its
# job and is refused what is not its job.  test/t/065_privilege_probes.pl
# tries to break the same setup.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

require "$AlxTest::TOP/test/docblocks.pl";
my $doc = "$AlxTest::TOP/docs/operations.md";
my $roles = DocBlocks::block($doc, 'privileges-roles');
my $grants = DocBlocks::block($doc, 'privileges-grants');
like($roles, qr/CREATE ROLE alexandrite_worker LOGIN/, 'the roles block creates the workers\' role');

# the workers wait until the docs name their role
my $node = AlxTest::new_node('privileges', worker_role => 0, conf => "alexandrite.worker_role = ''");
$node->start;
AlxTest::install($node, 'postgres');
$node->safe_psql('postgres', $roles);
$node->safe_psql('postgres', $grants);
$node->safe_psql('postgres', $grants);    # again, as after an upgrade
pass('both blocks run as written, the grants twice');
ok(AlxTest::wait_until($node, 'postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold') AND usename = 'alexandrite_worker'}, 60),
	'the relay and the fold connect as alexandrite_worker');

# a model, as the DBA would ingest it: a tetrahedron, binary STL
my @v = ([ 0, 0, 0 ], [ 10, 0, 0 ], [ 0, 10, 0 ], [ 0, 0, 10 ]);
my $stl = pack('a80 V', 'tetrahedron', 4);
$stl .= pack('f<12 v', 0, 0, 0, map({ @{ $v[$_] } } @$_), 0) for ([ 0, 2, 1 ], [ 0, 1, 3 ], [ 0, 3, 2 ], [ 1, 2, 3 ]);
my $stl_hex = unpack('H*', $stl);
(my $stl2_hex = $stl_hex) =~ s/^(..)/ff/;    # another header: other bytes, another mesh
$node->safe_psql('postgres', q{INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op1', 'Ana', 5)});
my $mesh = $node->safe_psql('postgres', "SELECT alexandrite.mesh_ingest('\\x$stl_hex', 'tet.stl', 'mm')");

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
	my ($role, $sql, $what, $refusal) = @_;
	my ($rc, $out, $err) = as($role, $sql);
	like($err, $refusal // qr/permission denied/, "$role cannot $what");
	return;
}

# the MES
can('mes', "SELECT alexandrite.mesh_ingest('\\x$stl2_hex'::bytea, 'tet-2.stl', 'mm')", 'ingest a model');
# mesh_ingest writes alexandrite.meshes as the extension owner: a new model
# stored and quoted in one statement, and an older analyzer's row measured
# again (an UPDATE), all with mes's EXECUTE alone
(my $stl3_hex = $stl_hex) =~ s/^(..)/fe/;
is(can('mes', "SELECT (alexandrite.price_quote(alexandrite.mesh_ingest('\\x$stl3_hex'::bytea, 'tet-3.stl', 'mm'), 'ag925')).total > 0",
		'store and quote a new model in one statement'), 't', 'and gets a price');
$node->safe_psql('postgres', "UPDATE alexandrite.meshes SET analyzer_version = 1, min_wall_mm = NULL WHERE filename = 'tet-2.stl'");
can('mes', "SELECT alexandrite.mesh_ingest('\\x$stl2_hex'::bytea, 'tet-2.stl', 'mm')", 'measure an older analyzer\'s model again');
is($node->safe_psql('postgres', "SELECT analyzer_version > 1 AND min_wall_mm IS NOT NULL FROM alexandrite.meshes WHERE filename = 'tet-2.stl'"),
	't', 'the row was measured again');
can('mes', "SELECT (alexandrite.mesh_analyze('\\x$stl_hex'::bytea, 'stl')).watertight", 'analyze a model');
my $id = can('mes', "SELECT alexandrite.create_order('M-1', 'shop', 'c1', $mesh, 'ag925')", 'create an order');
$id = $node->safe_psql('postgres', "SELECT id FROM alexandrite.orders WHERE external_ref = 'M-1'") if ($id // '') eq '';
can('mes', q{SELECT alexandrite.create_order('M-' || i, 'b2b_api', 'c2', NULL, 'ag925') FROM generate_series(2, 4) i},
	'create more orders');
can('mes', qq{BEGIN; SELECT alexandrite.set_traceparent(alexandrite.new_traceparent());
              SELECT total FROM alexandrite.price_order($id); COMMIT;}, 'price an order with a trace context');
can('mes', q{SELECT alexandrite.assign_next('op1')}, 'assign the next order');
can('mes', q{SELECT alexandrite.set_status(o.id, 'in_production', 'op1') FROM alexandrite.orders o WHERE o.operator_id = 'op1'},
	'move an order along');
can('mes', q{SELECT alexandrite.release_order(alexandrite.assign_next('op1'))}, 'assign another order and release it');
can('mes', q{SELECT * FROM alexandrite.order_board(NULL, 10)}, 'read the order board');
can('mes', qq{SELECT * FROM alexandrite.order_timeline($id)}, 'read a timeline');
can('mes', q{SELECT * FROM alexandrite.stuck_orders('0')}, 'list stuck orders');
can('mes', q{SELECT * FROM alexandrite.dashboard_status_counts; SELECT * FROM alexandrite.dashboard_sla;
             SELECT * FROM alexandrite.dashboard_operator_load; SELECT * FROM alexandrite.dashboard_lag}, 'read the dashboards');
can('mes', q{SELECT alexandrite.outbox_emit('invoice', 'I-1', 'invoice.sent', '{}')}, 'emit its own event');
can('mes', q{SELECT count(*) FROM alexandrite.outbox; SELECT pending FROM alexandrite.outbox_status}, 'read the outbox and its status');
can('mes', "SELECT * FROM alexandrite.price_quote($mesh, 'au750_yellow')", 'quote');
cannot('mes', q{SELECT alexandrite.metrics()}, 'read the metrics');
cannot('mes', q{SELECT alexandrite.rebalance()}, 'rebalance');
cannot('mes', q{SELECT alexandrite.outbox_requeue('{}')}, 'requeue dead letters');
cannot('mes', q{SELECT * FROM alexandrite.outbox_dead}, 'read dead letters');
cannot('mes', q{SELECT * FROM alexandrite.outbox_discarded}, 'read the record of discarded dead letters');
cannot('mes', q{DELETE FROM alexandrite.orders}, 'delete orders');
cannot('mes', q{UPDATE alexandrite.orders SET price = 0}, 'update orders directly');
cannot('mes', q{INSERT INTO alexandrite.operators (id, name) VALUES ('x', 'x')}, 'add operators');
# mesh jobs: mes submits and reads its jobs (not their bytes), never writes them
my $jo = can('mes', q{SELECT alexandrite.create_order('M-J', 'shop', 'c1', NULL, 'ag925')}, 'create an order without a model');
my $job = can('mes', "SELECT alexandrite.mesh_submit('\\x$stl_hex'::bytea, 'tet.stl', 'mm', $jo)", 'submit a model for an order');
is($node->safe_psql('postgres', "SELECT status || ' ' || (mesh_id = $mesh) FROM alexandrite.orders WHERE id = $jo"),
	'priced true', 'the order got the model and its price');
is(can('mes', "SELECT state || ' ' || (mesh_id = $mesh) FROM alexandrite.mesh_job_status WHERE id = $job", 'read its job'),
	'done true', 'the known model completes the job at once');
cannot('mes', q{SELECT data FROM alexandrite.mesh_jobs}, 'read the bytes of the jobs');
cannot('mes', q{UPDATE alexandrite.mesh_jobs SET state = 'queued'}, 'update the jobs directly');
cannot('mes', q{DELETE FROM alexandrite.mesh_jobs}, 'delete jobs');
cannot('mes', "SELECT alexandrite.mesh_job_retry($job)", 'retry a mesh job');
cannot('mes', "SELECT alexandrite.mesh_job_discard($job)", 'discard a mesh job');
# (1.2 has no fold_sql any more: refused either way)
cannot('mes', q{UPDATE alexandrite.dashboards SET fold_sql = fold_sql}, 'touch the dashboard registry',
	qr/permission denied|does not exist/);

# monitoring
like(can('alexandrite_monitor', q{SELECT alexandrite.metrics()}, 'read the metrics') // '',
	qr/^alexandrite_sla_open_orders\{channel="b2b_api"\} 3$/m, 'and sees the figures');
can('alexandrite_monitor', q{SELECT count(*) FROM alexandrite.metric_samples(ARRAY['outbox'])}, 'run the exporter\'s queries');
cannot('alexandrite_monitor', q{SELECT count(*) FROM alexandrite.orders}, 'read orders');
cannot('alexandrite_monitor', q{SELECT * FROM alexandrite.dashboard_status_counts}, 'read the dashboards directly');
cannot('alexandrite_monitor', q{SELECT count(*) FROM alexandrite.outbox}, 'read the outbox');
cannot('alexandrite_monitor', q{SELECT alexandrite.create_order('X', 'shop', 'c', NULL, NULL)}, 'create an order');
like((as('alexandrite_monitor', q{SHOW alexandrite.amqp_url}))[2], qr/must be superuser or have privileges of pg_read_all_settings/,
	'alexandrite_monitor cannot read the broker URL and its password (not a pg_monitor member)');

# operations staff, through membership
can('alice', q{SELECT alexandrite.refresh_dashboards()}, 'fold the dashboards');
can('alice', q{SELECT * FROM alexandrite.reconcile_dashboards()}, 'reconcile the dashboards');
can('alice', q{SELECT alexandrite.escalate_overdue()}, 'escalate overdue orders');
can('alice', q{SELECT alexandrite.rebalance()}, 'rebalance');
can('alice', q{SELECT alexandrite.sla_recount_load()}, 'recount the operator load');
can('alice', q{SELECT alexandrite.outbox_requeue('{}'), alexandrite.outbox_discard('{}')}, 'requeue and discard dead letters');
can('alice', q{SELECT * FROM alexandrite.outbox_dead; SELECT * FROM alexandrite.outbox_blocked}, 'read dead letters');
can('alice', q{SELECT * FROM alexandrite.outbox_discarded}, 'read the record of discarded dead letters');
can('alice', q{INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op2', 'Bo', 3);
               UPDATE alexandrite.operators SET capacity = 4, active = false WHERE id = 'op2'}, 'add an operator and change it');
can('alice', q{SELECT alexandrite.create_order('A-1', 'crm', 'c3', NULL, NULL)}, 'do what the MES does');
like((as('alice', "SELECT alexandrite.mesh_job_retry($job)"))[2], qr/cannot retry mesh job \d+: it is done/,
	'alice may retry mesh jobs (a done one is refused by the function, not the privileges)');
like((as('alice', "SELECT alexandrite.mesh_job_discard($job)"))[2], qr/cannot discard mesh job \d+: it is done/,
	'alice may discard mesh jobs (likewise)');
cannot('alice', q{SELECT alexandrite.metric_samples()}, 'run the collectors');
cannot('alice', q{UPDATE alexandrite.operators SET created_at = now()}, 'rewrite when an operator was created');
cannot('alice', q{UPDATE alexandrite.price_rules SET margin_pct = 1}, 'change the price list');
cannot('alice', q{DELETE FROM alexandrite.outbox_dead}, 'delete dead letters directly');
cannot('alice', q{DELETE FROM alexandrite.outbox_discarded}, 'erase the record of discarded dead letters');
cannot('alice', q{TRUNCATE alexandrite.operator_load}, 'truncate an internal table');

# docs/mesh.md's grants for a role that only uploads models, as written
my $upload = DocBlocks::block("$AlxTest::TOP/docs/mesh.md", 'mesh-upload-grants');
$node->safe_psql('postgres', 'CREATE ROLE mes_upload LOGIN');
$node->safe_psql('postgres', $upload);
(my $upload_hex = $stl_hex) =~ s/^(..)/fd/;
like(can('mes_upload', "SELECT alexandrite.mesh_ingest('\\x$upload_hex'::bytea, 'tet-3.stl', 'mm')", 'ingest a model'),
	qr/^\d+$/, 'mes_upload: mesh_ingest returns the mesh id');
can('mes_upload', q{SELECT count(*) FROM alexandrite.meshes}, 'read the meshes back');
cannot('mes_upload', q{INSERT INTO alexandrite.meshes (filename) VALUES ('forged.stl')}, 'insert a mesh row directly');
cannot('mes_upload', q{SELECT nextval('alexandrite.meshes_id_seq')}, 'take mesh ids');
cannot('mes_upload', q{SELECT alexandrite.create_order('U-1', 'shop', 'c', NULL, NULL)}, 'create orders');

$node->stop;
done_testing();
