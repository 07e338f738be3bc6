# pg_dump / pg_restore of a busy database: the MES keeps creating, changing,
# assigning and pricing orders while pg_dump runs.  The restored outbox is
# exactly the dumped one (no event duplicated by the restore, none lost),
# every restored order's events are gap-free up to its event_seq, restoring
# emits nothing, and the restored orders continue their sequences.
use strict;
use warnings FATAL => 'all';

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $node = AlxTest::new_node('busy', conf => "alexandrite.amqp_url = ''");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE shop');
AlxTest::install($node, 'shop');
$node->safe_psql('shop', q{
	INSERT INTO alexandrite.operators (id, name, capacity)
	SELECT 'op' || i, 'Operator ' || i, 100000 FROM generate_series(0, 3) i;
	INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
	                                size_x_mm, size_y_mm, size_z_mm, shells, watertight, boundary_edges,
	                                nonmanifold_edges, degenerate_triangles)
	VALUES (1, sha256('busy cube'), 'cube.stl', 'stl', 12, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 0);
	SELECT count(alexandrite.create_order('B-seed-' || g, 'shop', 'c', 1, 'ag925')) FROM generate_series(1, 200) g;
	SELECT count(alexandrite.outbox_emit('invoice', 'inv-' || (g % 7), 'invoice.issued', '{}')) FROM generate_series(1, 50) g;
	CREATE SEQUENCE public.ref;
	-- one API call of the MES; a refusal (a race between clients) is a warning
	CREATE FUNCTION public.mes_step(r int, o int, op text) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE v bigint;
	BEGIN
	    IF r <= 4 THEN
	        PERFORM alexandrite.create_order('B-' || nextval('public.ref'), 'crm', 'c', 1, 'ag925');
	    ELSIF r <= 6 THEN
	        SELECT id INTO v FROM alexandrite.orders WHERE external_ref = 'B-seed-' || o AND status = 'new';
	        IF FOUND THEN PERFORM alexandrite.price_order(v); END IF;
	    ELSIF r <= 8 THEN
	        PERFORM alexandrite.assign_next(op);
	    ELSIF r <= 9 THEN
	        SELECT id INTO v FROM alexandrite.orders WHERE status = 'assigned' AND operator_id = op LIMIT 1;
	        IF FOUND THEN PERFORM alexandrite.release_order(v); END IF;
	    ELSIF r <= 11 THEN
	        SELECT id INTO v FROM alexandrite.orders WHERE status = 'assigned' AND operator_id = op LIMIT 1;
	        IF FOUND THEN PERFORM alexandrite.set_status(v, 'in_production'); END IF;
	    ELSE
	        PERFORM alexandrite.outbox_emit('invoice', 'inv-' || o % 7, 'invoice.paid', '{}');
	    END IF;
	EXCEPTION WHEN OTHERS THEN
	    RAISE WARNING 'mes_step: % %', SQLSTATE, SQLERRM;
	END $$;
});

# the MES at work: each transaction is one API call on a random order
my $script = $node->basedir . '/busy.sql';
PostgreSQL::Test::Utils::append_to_file($script, q{
\set r random(1, 12)
\set o random(1, 200)
SELECT public.mes_step(:r, :o, 'op' || :client_id);
});
my ($out, $err) = ('', '');
my $load = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', '20', '-f', $script, $node->connstr('shop') ],
	'>', \$out, '2>', \$err);
ok(AlxTest::wait_until($node, 'shop', "SELECT count(*) > 300 FROM alexandrite.orders", 60),
	'the MES is writing');

# the dump's snapshot, exported by a session that also fingerprints the
# outbox as of that snapshot
my $snap = $node->background_psql('shop');
$snap->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
my $sid = $snap->query_safe('SELECT pg_export_snapshot()');
chomp $sid;
my @tables = ('alexandrite.outbox_events_0', 'alexandrite.outbox_events_1', 'alexandrite.outbox_events_2',
	'alexandrite.outbox_aggregates', 'alexandrite.order_events', 'alexandrite.orders', 'alexandrite.quotes');
my %at_dump;
for my $t (@tables)
{
	my $d = $snap->query_safe(
		"SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM $t x");
	chomp $d;
	$at_dump{$t} = $d;
}
my $dump = $node->basedir . '/busy.dump';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('shop'), '-Fc', "--snapshot=$sid", '-f', $dump ],
	'pg_dump while the MES writes');
$snap->query_safe('COMMIT');
$snap->quit;
$load->finish;
like($out, qr/number of transactions actually processed: [1-9]/, 'the load ran')
  or diag($err);
cmp_ok($node->safe_psql('shop', 'SELECT count(*) FROM alexandrite.outbox_events'), '>',
	(split /:/, $at_dump{'alexandrite.outbox_events_0'})[0], 'events kept coming after the dump');

$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), '--exit-on-error', $dump ], 'pg_restore');
for my $t (@tables)
{
	is(AlxTest::table_digest($node, 'restored', $t), $at_dump{$t}, "restored $t is the dumped one");
}
is($node->safe_psql('restored', q{
	SELECT count(*) FROM alexandrite.orders o
	 WHERE o.event_seq <> (SELECT count(DISTINCT x.aggregate_seq) FROM alexandrite.outbox_events x
	                        WHERE x.aggregate_type = 'order' AND x.aggregate_id = o.id::text)
	    OR o.event_seq <> (SELECT coalesce(max(x.aggregate_seq), 0) FROM alexandrite.outbox_events x
	                        WHERE x.aggregate_type = 'order' AND x.aggregate_id = o.id::text)}),
	'0', 'every restored order has events 1..event_seq, none twice, none missing');
is($node->safe_psql('restored', q{
	SELECT count(*) FROM alexandrite.orders o
	 WHERE (SELECT count(*) FROM alexandrite.outbox_events x
	         WHERE x.aggregate_type = 'order' AND x.aggregate_id = o.id::text AND x.event_type <> 'order.priced')
	    <> (SELECT count(*) FROM alexandrite.order_events e WHERE e.order_id = o.id)}),
	'0', 'one status event per order_events row');
is($node->safe_psql('restored', q{
	SELECT count(*) FROM (SELECT aggregate_type, aggregate_id, aggregate_seq FROM alexandrite.outbox_events
	                       GROUP BY 1, 2, 3 HAVING count(*) > 1) d}), '0', 'no (aggregate, seq) twice');

# the restored database goes on where the dump stopped
my ($oid, $seq) = split /\|/, $node->safe_psql('restored',
	"SELECT id, event_seq FROM alexandrite.orders WHERE status = 'new' ORDER BY id LIMIT 1");
$node->safe_psql('restored', "SELECT alexandrite.set_status($oid, 'cancelled', 'after-restore')");
is($node->safe_psql('restored', "SELECT aggregate_seq FROM alexandrite.outbox_events WHERE aggregate_id = '$oid' ORDER BY id DESC LIMIT 1"),
	$seq + 1, 'a change after the restore continues the order\'s sequence');
my ($iseq) = $node->safe_psql('restored', "SELECT last_seq FROM alexandrite.outbox_aggregates WHERE aggregate_id = 'inv-3'");
$node->safe_psql('restored', "SELECT alexandrite.outbox_emit('invoice', 'inv-3', 'invoice.reminded', '{}')");
is($node->safe_psql('restored', "SELECT max(aggregate_seq) FROM alexandrite.outbox_events WHERE aggregate_id = 'inv-3'"),
	$iseq + 1, 'and so do other aggregates');

$node->stop;
done_testing();
