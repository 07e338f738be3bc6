# Immediate stops at the dashboards' inner seams (the contract-level crash
# test is 050):
#   - a fold stopped half-way through its dashboards: it has moved the deltas
#     of the first ones into their summaries and waits, in the same
#     transaction, on a lock held on a delta row of the last one; the server
#     stops with writers running.  After recovery the moved deltas are back
#     in the delta tables (the fold is one transaction) and every view is
#     exact, before and after the next fold;
#   - writers whose deltas are written (prepared transactions) or only pending
#     (an open transaction) when the server stops: the prepared ones count
#     once committed, not before; the open one never.
use strict;
use warnings FATAL => 'all';

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use AlxTest;

my $node = AlxTest::new_node('dashcrash', conf => join("\n",
		'alexandrite.fold_interval = 0', 'restart_after_crash = on', 'max_prepared_transactions = 10'));
$node->start;
AlxTest::install($node, 'postgres');

$node->safe_psql('postgres', q{
	CREATE TABLE public.items (id bigserial PRIMARY KEY, bin int NOT NULL, w numeric);
	INSERT INTO public.items (bin, w) SELECT g % 7, g FROM generate_series(1, 500) g;
	-- declared last: its delta table is the last one a fold reaches
	SELECT alexandrite.create_dashboard('zz_items', 'public.items', ARRAY['bin'], sums => ARRAY['w']);
	SELECT count(alexandrite.create_order('CR-' || g, (ARRAY['shop', 'b2b_api', 'crm'])[1 + g % 3], 'c', NULL, NULL))
	  FROM generate_series(1, 100) g;
	UPDATE alexandrite.orders SET sla_due_at = now() + ((id % 48) - 24) * interval '1 hour';
	CREATE FUNCTION public.same(v text, b text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
	DECLARE r boolean;
	BEGIN
	  EXECUTE format('SELECT NOT EXISTS ((SELECT * FROM (%s) v EXCEPT ALL SELECT * FROM (%s) b) '
	                 'UNION ALL (SELECT * FROM (%s) b EXCEPT ALL SELECT * FROM (%s) v))', v, b, b, v) INTO r;
	  RETURN r;
	END $$;
	CREATE FUNCTION public.ok() RETURNS int LANGUAGE sql STABLE AS $$
	  SELECT (public.same('SELECT bin, count, sum_w FROM alexandrite.dashboard_zz_items',
	                      'SELECT bin, count(*), COALESCE(sum(w), 0) FROM public.items GROUP BY 1')
	      AND public.same('SELECT status, channel, orders FROM alexandrite.dashboard_status_counts',
	                      'SELECT status, channel, count(*) FROM alexandrite.orders GROUP BY 1, 2')
	      AND public.same('SELECT channel, open_orders, at_risk_orders, breached_orders FROM alexandrite.dashboard_sla',
	                      'SELECT channel, count(*), count(*) FILTER (WHERE sla_due_at >= now() AND sla_due_at < now() + interval ''24 hours''),
	                              count(*) FILTER (WHERE sla_due_at < now()) FROM alexandrite.orders
	                        WHERE alexandrite.is_open(status) GROUP BY 1'))::int $$;
	CREATE FUNCTION public.write() RETURNS void LANGUAGE plpgsql AS $$
	DECLARE o bigint;
	BEGIN
	  IF random() < 0.5 THEN
	    INSERT INTO public.items (bin, w) VALUES (floor(random() * 9)::int, round((random() * 10)::numeric, 1));
	    UPDATE public.items SET w = w + 1, bin = (bin + 1) % 9 WHERE id = (random() * 500)::int;
	  ELSE
	    SELECT id INTO o FROM alexandrite.orders WHERE status < 'shipped' AND id >= (random() * 100)::int
	     ORDER BY id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED;
	    IF FOUND THEN
	      UPDATE alexandrite.orders SET sla_due_at = now() + (random() * 48 - 24) * interval '1 hour' WHERE id = o;
	    ELSE
	      PERFORM alexandrite.create_order('CR-N-' || txid_current(), 'shop', 'c', NULL, NULL);
	    END IF;
	  END IF;
	END $$;
});
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'exact at the start');

sub writers
{
	my $script = "$PostgreSQL::Test::Utils::tmp_check/dash_crash_writer.sql";
	PostgreSQL::Test::Utils::append_to_file($script, "SELECT public.write();\n") unless -f $script;
	return IPC::Run::start(
		[ 'pgbench', '--no-vacuum', '--client=4', '--jobs=4', '--time=600', '-f', $script,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', '/dev/null', '2>', '/dev/null');
}

sub pending
{
	my ($name) = @_;
	return $node->safe_psql('postgres', "SELECT pending_changes FROM alexandrite.dashboard_lag WHERE dashboard = '$name'");
}

# --- a fold stopped half-way ---------------------------------------------------------
my $w = writers();
ok(AlxTest::wait_until($node, 'postgres', q{SELECT pending_changes > 50 FROM alexandrite.dashboard_lag WHERE dashboard = 'status_counts'}, 120),
	'writers leave changes to fold');
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN');
$holder->query_safe('SELECT 1 FROM alexandrite.dashboard_zz_items_delta LIMIT 1 FOR UPDATE');
# what the fold is about to move: every delta of status_counts committed now
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.dashboard_status_counts_delta');
my $oldest = $node->safe_psql('postgres', 'SELECT min(logged_at) FROM alexandrite.dashboard_status_counts_delta');
my $fold = $node->background_psql('postgres', on_error_stop => 0);
my $fold_pid = $fold->query_safe('SELECT pg_backend_pid()');
$fold->query_until(qr/started/, q{\echo started
SELECT alexandrite.refresh_dashboards();
});
ok(AlxTest::wait_until($node, 'postgres',
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $fold_pid", 60),
	'the fold waits on the last dashboard, the others folded in its transaction');
is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.dashboard_status_counts_delta')
	  + 0 >= $before ? 1 : 0, 1, 'which readers do not see before it commits');
$node->stop('immediate');
$w->kill_kill;
eval { $fold->quit; };
eval { $holder->quit; };
$node->start;
is($node->safe_psql('postgres', 'SELECT min(logged_at) FROM alexandrite.dashboard_status_counts_delta'), $oldest,
	'after the stop the deltas the fold had moved are back (the oldest is still there)');
cmp_ok(pending('status_counts'), '>=', $before, "$before or more are pending");
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'every view is exact after recovery');
cmp_ok($node->safe_psql('postgres', 'SELECT alexandrite.refresh_dashboards()'), '>=', $before, 'the next fold folds them');
is(pending('status_counts'), '0', 'and nothing is left pending');
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'exact after the fold');
is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.reconcile_dashboards() WHERE NOT ok'), '0',
	'reconcile_dashboards() agrees');

# --- prepared and open writers across a stop ---------------------------------------------
$node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO public.items (bin, w) SELECT 100, 1 FROM generate_series(1, 10);
	PREPARE TRANSACTION 'dash_commit';
	BEGIN;
	INSERT INTO public.items (bin, w) SELECT 101, 1 FROM generate_series(1, 10);
	PREPARE TRANSACTION 'dash_rollback';
});
my $open = $node->background_psql('postgres', on_error_stop => 0);
$open->query_safe('BEGIN');
$open->query_safe('INSERT INTO public.items (bin, w) SELECT 102, 1 FROM generate_series(1, 10)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM alexandrite.dashboard_zz_items WHERE bin >= 100}), '0',
	'prepared and open writes are not counted yet');
$node->stop('immediate');
eval { $open->quit; };
$node->start;
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'exact after the stop, prepared transactions pending');
$node->safe_psql('postgres', q{COMMIT PREPARED 'dash_commit'});
$node->safe_psql('postgres', q{ROLLBACK PREPARED 'dash_rollback'});
is($node->safe_psql('postgres', q{SELECT string_agg(bin || ':' || count, ',' ORDER BY bin) FROM alexandrite.dashboard_zz_items WHERE bin >= 100}),
	'100:10', 'the committed prepared transaction counts, the rolled back one and the open one do not');
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'exact');
$node->safe_psql('postgres', 'SELECT alexandrite.refresh_dashboards()');
is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.reconcile_dashboards() WHERE NOT ok'), '0',
	'reconcile_dashboards() agrees after the fold');

$node->stop;
done_testing();
