# ALTER EXTENSION UPDATE from 1.1 with orders and dashboards a DBA declared:
# every dashboard is rebuilt from its declaration with the figures exact
# (also mesh_analysis_time, which 1.1 did not maintain for mesh_ingest), the
# DBA's objects are taken over by the extension owner, the definition views,
# statement triggers and fold_sql are gone, a reader needs SELECT on the view
# only, writes after the update are counted, and a dump of the updated
# database restores with its dashboards exact.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $node = AlxTest::new_node('dashupgrade', conf => 'alexandrite.fold_interval = 0');
$node->start;
my $tetra = "solid t\n" . join('', map { "facet normal 0 0 0\nouter loop\n$_\nendloop\nendfacet\n" }
	("vertex 0 0 0\nvertex 0 1 0\nvertex 1 0 0", "vertex 0 0 0\nvertex 1 0 0\nvertex 0 0 1",
	 "vertex 0 0 0\nvertex 0 0 1\nvertex 0 1 0", "vertex 1 0 0\nvertex 0 1 0\nvertex 0 0 1")) . "endsolid t\n";

# --- a 1.1 database ---------------------------------------------------------------------
$node->safe_psql('postgres', qq{
	CREATE EXTENSION alexandrite VERSION '1.1';
	INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op1', 'Ana', 50), ('op2', 'Ben', 50);
	SELECT count(alexandrite.create_order('UP-' || g, (ARRAY['shop', 'b2b_api', 'crm'])[1 + g % 3], 'c' || g, NULL, NULL))
	  FROM generate_series(1, 60) g;
	SELECT count(alexandrite.set_status(id, 'priced')) FROM alexandrite.orders WHERE id % 2 = 0;
	UPDATE alexandrite.orders SET operator_id = 'op' || (1 + id % 2), price = id * 1.5 WHERE id % 4 = 0;
	SELECT count(alexandrite.set_status(id, 'assigned')) FROM alexandrite.orders WHERE id % 4 = 0;
	UPDATE alexandrite.orders SET sla_due_at = now() + ((id % 50) - 25) * interval '1 hour';
	SELECT alexandrite.mesh_ingest(convert_to(\$m\$$tetra\$m\$, 'UTF8'), 'tetra.stl');

	-- a DBA with the 1.1 rights to declare dashboards over a table of theirs
	CREATE ROLE dba LOGIN;
	CREATE ROLE viewer LOGIN;
	GRANT USAGE, CREATE ON SCHEMA alexandrite TO dba;
	GRANT ALL ON ALL TABLES IN SCHEMA alexandrite TO dba;
	GRANT ALL ON ALL SEQUENCES IN SCHEMA alexandrite TO dba;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA alexandrite TO dba;
	GRANT CREATE ON SCHEMA public TO dba;
	SET ROLE dba;
	CREATE TABLE public.tickets (id serial PRIMARY KEY, queue text NOT NULL, due timestamptz,
	                             open boolean NOT NULL DEFAULT true, hours numeric);
	INSERT INTO public.tickets (queue, due, hours)
	SELECT (ARRAY['casting', 'polishing', 'setting'])[1 + g % 3], now() + (g - 20) * interval '7 minutes', g % 5
	  FROM generate_series(1, 40) g;
	SELECT alexandrite.create_dashboard('ticket_due', 'public.tickets', ARRAY['queue'], filter => 'open',
	         sums => ARRAY['hours'], due => 'due', horizons => ARRAY['0'::interval, '30 minutes'::interval],
	         horizon_names => ARRAY['overdue', 'soon']);
	RESET ROLE;
	SELECT alexandrite.create_dashboard('orders_value', 'alexandrite.orders', ARRAY['channel', 'operator_id'],
	         sums => ARRAY['price'], filter => 'price IS NOT NULL');
	-- changes on both sides of a fold: summaries and deltas both hold figures
	UPDATE public.tickets SET open = false WHERE id % 6 = 0;
	UPDATE alexandrite.orders SET price = price + 1 WHERE id % 8 = 0;
	SELECT alexandrite.refresh_dashboards();
	INSERT INTO public.tickets (queue, due, hours) VALUES ('casting', now() + interval '5 minutes', 2);
	SELECT count(alexandrite.set_status(id, 'cancelled')) FROM alexandrite.orders WHERE id % 10 = 1;
	-- a reader with the 1.1 grants (the view and its tables)
	GRANT USAGE ON SCHEMA alexandrite TO viewer;
	GRANT SELECT ON alexandrite.dashboard_ticket_due, alexandrite.dashboard_ticket_due_summary,
	                alexandrite.dashboard_ticket_due_delta, alexandrite.dashboard_ticket_due_def,
	                alexandrite.dashboard_state, public.tickets TO viewer;
});
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'alexandrite'}), '1.1', '1.1 installed');
is($node->safe_psql('postgres', q{SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'dashboard_ticket_due_summary'}),
	'dba', 'in 1.1 the DBA owns the objects of the dashboard it declared');
is($node->safe_psql('postgres', q{SELECT string_agg(dashboard, ',') FROM alexandrite.reconcile_dashboards() WHERE NOT ok}),
	'mesh_analysis_time', '1.1 misses the mesh that mesh_ingest stored');

# --- the update --------------------------------------------------------------------------
$node->safe_psql('postgres', 'ALTER EXTENSION alexandrite UPDATE');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'alexandrite'}), '1.2', 'updated to 1.2');

my $same = q{
	CREATE FUNCTION public.same(v text, b text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
	DECLARE r boolean;
	BEGIN
	  EXECUTE format('SELECT NOT EXISTS ((SELECT * FROM (%s) v EXCEPT ALL SELECT * FROM (%s) b) '
	                 'UNION ALL (SELECT * FROM (%s) b EXCEPT ALL SELECT * FROM (%s) v))', v, b, b, v) INTO r;
	  RETURN r;
	END $$;
	CREATE FUNCTION public.ok() RETURNS int LANGUAGE sql STABLE AS $$
	  SELECT (public.same('SELECT queue, count, sum_hours, overdue, soon FROM alexandrite.dashboard_ticket_due',
	                      'SELECT queue, count(*), COALESCE(sum(hours), 0), count(*) FILTER (WHERE due < now()),
	                              count(*) FILTER (WHERE due < now() + interval ''30 minutes'') FROM public.tickets WHERE open GROUP BY 1')
	      AND public.same('SELECT channel, operator_id, count, sum_price FROM alexandrite.dashboard_orders_value',
	                      'SELECT channel, operator_id, count(*), sum(price) FROM alexandrite.orders WHERE price IS NOT NULL GROUP BY 1, 2')
	      AND public.same('SELECT status, channel, orders FROM alexandrite.dashboard_status_counts',
	                      'SELECT status, channel, count(*) FROM alexandrite.orders GROUP BY 1, 2'))::int $$;
};
$node->safe_psql('postgres', $same);
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'the DBA\'s dashboards and the contract ones are exact after the update');
is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.reconcile_dashboards() WHERE NOT ok'), '0',
	'every dashboard agrees with its base table, mesh_analysis_time too');
is($node->safe_psql('postgres', q{SELECT count(*) FROM alexandrite.dashboards}), '8', 'all eight dashboards are kept');

# what 1.1 generated is gone; what is left belongs to the extension owner
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_attribute WHERE attrelid = 'alexandrite.dashboards'::regclass
                                   AND attname IN ('fold_sql', 'def_view', 'summary_table', 'delta_table', 'read_view')
                                   AND NOT attisdropped}), '0', 'the registry holds no SQL and no object to act on');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname LIKE 'dashboard\_%\_def'}), '0',
	'the definition views are gone');
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT tgname, ',' ORDER BY tgname) FROM pg_trigger
                                   WHERE tgrelid IN ('public.tickets'::regclass, 'alexandrite.orders'::regclass)
                                     AND tgname LIKE 'alx_dashboard%'}),
	'alx_dashboard_capture,alx_dashboard_flush,alx_dashboard_truncate', 'the row capture replaced the statement triggers');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class c, pg_namespace n
                                   WHERE c.relnamespace = n.oid AND n.nspname = 'alexandrite'
                                     AND c.relname LIKE 'dashboard\_%' AND c.relkind IN ('r', 'v')
                                     AND c.relowner <> n.nspowner}), '0',
	'every dashboard table and view belongs to the extension owner, the DBA\'s included');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
                                   WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
                                     AND c.relname LIKE 'dashboard\_ticket\_due%'}), '0',
	'the DBA\'s dashboard is still not part of the extension (pg_dump keeps it)');

# a reader needs the view only now
$node->safe_psql('postgres', q{REVOKE SELECT ON alexandrite.dashboard_ticket_due_summary, alexandrite.dashboard_ticket_due_delta,
                                       alexandrite.dashboard_state, public.tickets FROM viewer});
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT sum(count) FROM alexandrite.dashboard_ticket_due',
	extra_params => [ '-U', 'viewer' ]);
is($err, '', 'a reader with SELECT on the view alone reads it');
is($out, $node->safe_psql('postgres', 'SELECT count(*) FROM public.tickets WHERE open'), 'and sees every open ticket');

# writes after the update, by the DBA and through the API
$node->safe_psql('postgres', q{
	SET ROLE dba;
	INSERT INTO public.tickets (queue, due, hours) SELECT 'setting', now() + g * interval '3 minutes', 1 FROM generate_series(1, 15) g;
	UPDATE public.tickets SET queue = 'casting' WHERE id % 5 = 0;
	DELETE FROM public.tickets WHERE id % 7 = 0;
	RESET ROLE;
	SELECT count(alexandrite.set_status(id, 'in_production')) FROM alexandrite.orders WHERE status = 'assigned' AND id % 8 = 0;
	UPDATE alexandrite.orders SET price = 10 WHERE price IS NULL AND id % 3 = 0;
	SELECT alexandrite.mesh_ingest(convert_to(replace(} . qq{\$m\$$tetra\$m\$} . q{, '1 0 0', '2 0 0'), 'UTF8'), 'tetra2.stl');
});
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'writes after the update are counted');
$node->safe_psql('postgres', 'SELECT alexandrite.refresh_dashboards()');
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'and folded');
is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.reconcile_dashboards() WHERE NOT ok'), '0', 'reconcile agrees');

# --- a dump of the updated database ---------------------------------------------------------
my $dump = "$PostgreSQL::Test::Utils::tmp_check/dash_upgrade.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump of the updated database');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
is($node->safe_psql('restored', q{SELECT string_agg(name, ',' ORDER BY id) FROM alexandrite.dashboards WHERE NOT builtin}),
	'ticket_due,orders_value', 'the DBA\'s dashboards are restored');
is($node->safe_psql('restored', q{SELECT string_agg(dashboard, ',' ORDER BY dashboard) FROM alexandrite.dashboard_lag WHERE rebuild_needed}),
	'orders_value,ticket_due', 'their state is not dumped: until a fold looks at them they are flagged for rebuild');
$node->safe_psql('restored', 'SELECT alexandrite.refresh_dashboards()');
is($node->safe_psql('restored', 'SELECT public.ok()'), '1', 'after the first fold the restored dashboards are exact');
is($node->safe_psql('restored', 'SELECT count(*) FROM alexandrite.reconcile_dashboards() WHERE NOT ok'), '0',
	'and agree with their tables');
is($node->safe_psql('restored', 'SELECT count(*) FROM alexandrite.dashboard_lag WHERE rebuild_needed'), '0',
	'nothing is left to rebuild');

# the DBA's dashboard can be dropped; its triggers go with it
$node->safe_psql('postgres', q{SELECT alexandrite.drop_dashboard('ticket_due')});
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.tickets'::regclass AND NOT tgisinternal}),
	'0', 'drop_dashboard() removes the capture triggers of the table\'s last dashboard');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname LIKE 'dashboard\_ticket\_due%'}), '0',
	'and its objects');

$node->stop;
done_testing();
