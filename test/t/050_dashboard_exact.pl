# "Exact dashboards" (CONTRACT.md section 3) from outside: the three contract
# views against a GROUP BY over alexandrite.orders in the same snapshot,
#   - while writers change orders through the API and by hand (due times
#     straddling now and now + 24 h, so time-relative classes move), the fold
#     worker folds every 100 ms, a client folds by hand, and readers compare
#     at READ COMMITTED, REPEATABLE READ, SERIALIZABLE and SERIALIZABLE READ
#     ONLY DEFERRABLE, each recording any mismatch it sees;
#   - after an immediate stop in the middle of a fold (a fold that has done its
#     work and not committed when the server stops) with synchronous and
#     asynchronous writers running;
#   - after an immediate stop while the fold worker folds under load.
# Written against the contract only (the views, refresh_dashboards(),
# dashboard_lag, reconcile_dashboards()), not against how they are built.
use strict;
use warnings FATAL => 'all';

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use AlxTest;

my $node = AlxTest::new_node('dashexact', conf => join("\n",
		'alexandrite.fold_interval = 100ms',
		'restart_after_crash = on',
		'max_connections = 60'));
$node->start;
AlxTest::install($node, 'postgres');

$node->safe_psql('postgres', q{
	INSERT INTO alexandrite.operators (id, name, capacity)
	SELECT 'dop' || i, 'Dashboard operator ' || i, 1000 FROM generate_series(1, 6) i;
	SELECT count(alexandrite.create_order('DX-' || g, (ARRAY['shop', 'b2b_api', 'crm'])[1 + g % 3], 'c', NULL, NULL))
	  FROM generate_series(1, 400) g;
	-- due times from 30 h ago to 30 h ahead: every class of dashboard_sla
	UPDATE alexandrite.orders SET sla_due_at = now() + ((hashint4(id::int) % 3600) * interval '30 seconds');

	-- the contract's figures, straight from the base table, each compared
	-- in one statement (one snapshot) with its view; zero rows of a view
	-- count as absent
	CREATE FUNCTION public.dash_ok_status() RETURNS boolean LANGUAGE sql STABLE AS $$
	  SELECT NOT EXISTS (
	    (SELECT status::text, channel, orders FROM alexandrite.dashboard_status_counts WHERE orders <> 0
	     EXCEPT ALL
	     SELECT status::text, channel, count(*) FROM alexandrite.orders GROUP BY 1, 2)
	    UNION ALL
	    (SELECT status::text, channel, count(*) FROM alexandrite.orders GROUP BY 1, 2
	     EXCEPT ALL
	     SELECT status::text, channel, orders FROM alexandrite.dashboard_status_counts WHERE orders <> 0)) $$;
	CREATE FUNCTION public.dash_ok_load() RETURNS boolean LANGUAGE sql STABLE AS $$
	  WITH v AS (SELECT operator_id, open_orders, overdue_orders FROM alexandrite.dashboard_operator_load
	              WHERE open_orders <> 0 OR overdue_orders <> 0),
	       b AS (SELECT operator_id, count(*) AS open_orders, count(*) FILTER (WHERE sla_due_at < now()) AS overdue_orders
	               FROM alexandrite.orders
	              WHERE operator_id IS NOT NULL AND status NOT IN ('shipped', 'cancelled')
	              GROUP BY operator_id)
	  SELECT NOT EXISTS ((SELECT * FROM v EXCEPT ALL SELECT * FROM b) UNION ALL (SELECT * FROM b EXCEPT ALL SELECT * FROM v)) $$;
	CREATE FUNCTION public.dash_ok_sla() RETURNS boolean LANGUAGE sql STABLE AS $$
	  WITH v AS (SELECT channel, open_orders, at_risk_orders, breached_orders FROM alexandrite.dashboard_sla
	              WHERE open_orders <> 0 OR at_risk_orders <> 0 OR breached_orders <> 0),
	       b AS (SELECT channel, count(*) AS open_orders,
	                    count(*) FILTER (WHERE sla_due_at >= now() AND sla_due_at < now() + interval '24 hours') AS at_risk_orders,
	                    count(*) FILTER (WHERE sla_due_at < now()) AS breached_orders
	               FROM alexandrite.orders WHERE status NOT IN ('shipped', 'cancelled')
	              GROUP BY channel)
	  SELECT NOT EXISTS ((SELECT * FROM v EXCEPT ALL SELECT * FROM b) UNION ALL (SELECT * FROM b EXCEPT ALL SELECT * FROM v)) $$;
	CREATE FUNCTION public.dash_ok() RETURNS int LANGUAGE sql STABLE AS $$
	  SELECT (public.dash_ok_status() AND public.dash_ok_load() AND public.dash_ok_sla())::int $$;

	CREATE TABLE public.dash_mismatch (at timestamptz DEFAULT clock_timestamp(), reader text,
	                                   status_ok boolean, load_ok boolean, sla_ok boolean);
	CREATE TABLE public.dash_reads (reader text);

	-- one random change of an order, in its own transaction: a transition
	-- through the API (status, assignment, release, cancel), a new order, or
	-- a change of due times by hand (one or several rows per statement)
	CREATE FUNCTION public.dash_write() RETURNS void LANGUAGE plpgsql AS $$
	DECLARE o alexandrite.orders; r float8 := random(); nxt alexandrite.order_status;
	BEGIN
	  IF r < 0.15 THEN
	    PERFORM alexandrite.create_order('DX-N-' || txid_current(), (ARRAY['shop', 'b2b_api', 'crm'])[1 + (random() * 2)::int],
	                                     'c', NULL, NULL);
	    RETURN;
	  ELSIF r < 0.25 THEN
	    UPDATE alexandrite.orders SET sla_due_at = now() + (random() * 60 - 30) * interval '1 hour'
	     WHERE id IN (SELECT id FROM alexandrite.orders WHERE status < 'shipped'
	                   ORDER BY random() LIMIT 1 + (random() * 4)::int FOR NO KEY UPDATE SKIP LOCKED);
	    RETURN;
	  END IF;
	  SELECT * INTO o FROM alexandrite.orders
	   WHERE id >= (SELECT max(id) FROM alexandrite.orders) * random() AND status < 'shipped'
	   ORDER BY id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED;
	  IF NOT FOUND THEN RETURN; END IF;
	  SELECT t.to_status INTO nxt FROM alexandrite.status_transitions t
	   WHERE t.from_status = o.status ORDER BY random() LIMIT 1;
	  IF nxt = 'assigned' THEN
	    PERFORM alexandrite.assign_order(o.id, 'dop' || (1 + (random() * 5)::int));
	  ELSIF o.status = 'assigned' AND nxt IN ('new', 'priced') THEN
	    PERFORM alexandrite.release_order(o.id);
	  ELSE
	    PERFORM alexandrite.set_status(o.id, nxt);
	  END IF;
	END $$;
});
ok($node->safe_psql('postgres', 'SELECT public.dash_ok()') eq '1', 'the dashboards are exact at the start');

my %reader = (
	rc   => 'BEGIN ISOLATION LEVEL READ COMMITTED',
	rr   => 'BEGIN ISOLATION LEVEL REPEATABLE READ',
	ser  => 'BEGIN ISOLATION LEVEL SERIALIZABLE',
	serd => 'BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE');
my %files = ('dash_writer' => "SELECT public.dash_write();\n", 'dash_fold' => "SELECT alexandrite.refresh_dashboards();\n");
for my $k (sort keys %reader)
{
	# each reader compares twice in its transaction (its snapshot may be
	# the one it started with, or new per statement), and records a
	# mismatch outside it
	$files{"dash_read_$k"} = qq{$reader{$k};
SELECT public.dash_ok() AS ok1 \\gset
SELECT public.dash_ok() AS ok2 \\gset
COMMIT;
INSERT INTO public.dash_reads VALUES ('$k');
\\if :ok1 + :ok2 < 2
INSERT INTO public.dash_mismatch (reader, status_ok, load_ok, sla_ok)
VALUES ('$k', public.dash_ok_status(), public.dash_ok_load(), public.dash_ok_sla());
\\endif
};
}

# --- concurrent writers, folds and readers --------------------------------------
my @weights = ('dash_writer@12', 'dash_fold@1', map { "dash_read_$_\@2" } sort keys %reader);
my %f = map { my ($n) = /^([^@]+)/; ($_ => $files{$n}) } @weights;
$node->pgbench('--no-vacuum --client=8 --jobs=8 --transactions=400 --max-tries=20',
	0, [ qr{processed: 3200/3200}, qr{number of failed transactions: 0 } ], [qr{^$}],
	'writers, folds and readers at four isolation levels: no transaction failed', \%f);
my %reads = map { split /\|/ } split /\n/, $node->safe_psql('postgres', 'SELECT reader, count(*) FROM public.dash_reads GROUP BY 1');
cmp_ok($reads{$_} // 0, '>', 20, "reader $_ compared " . ($reads{$_} // 0) . ' times') for sort keys %reader;
cmp_ok($node->safe_psql('postgres', q{SELECT folds FROM alexandrite.dashboard_lag WHERE dashboard = 'status_counts'}),
	'>', 10, 'the worker and the clients folded meanwhile');
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.dash_mismatch'), '0',
	'no reader at any isolation level ever saw a view differ from the GROUP BY')
  or diag($node->safe_psql('postgres', 'SELECT reader, status_ok, load_ok, sla_ok FROM public.dash_mismatch LIMIT 10'));
is($node->safe_psql('postgres', 'SELECT public.dash_ok()'), '1', 'exact at rest');
is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.reconcile_dashboards() WHERE NOT ok'), '0',
	'reconcile_dashboards() agrees');

# writers in the background (synchronous and asynchronous commits) until killed
sub writers
{
	my @h;
	for my $async (0, 1)
	{
		my $script = "$PostgreSQL::Test::Utils::tmp_check/dash_writer_loop.sql";
		PostgreSQL::Test::Utils::append_to_file($script, "SELECT public.dash_write();\n") unless -f $script;
		local $ENV{PGOPTIONS} = $async ? '-c synchronous_commit=off' : '';
		push @h, IPC::Run::start(
			[ 'pgbench', '--no-vacuum', '--client=3', '--jobs=3', '--time=600', '-f', $script,
			  '-h', $node->host, '-p', $node->port, 'postgres' ],
			'>', '/dev/null', '2>', '/dev/null');
	}
	return @h;
}

sub check_after_crash
{
	my ($label) = @_;
	is($node->safe_psql('postgres', 'SELECT public.dash_ok_status()::int'), '1', "$label: dashboard_status_counts equals the GROUP BY");
	is($node->safe_psql('postgres', 'SELECT public.dash_ok_load()::int'), '1', "$label: dashboard_operator_load equals the GROUP BY");
	is($node->safe_psql('postgres', 'SELECT public.dash_ok_sla()::int'), '1', "$label: dashboard_sla equals the GROUP BY");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.reconcile_dashboards() WHERE NOT ok'), '0',
		"$label: reconcile_dashboards() agrees");
	$node->safe_psql('postgres', 'SELECT alexandrite.refresh_dashboards()');
	is($node->safe_psql('postgres', 'SELECT public.dash_ok()'), '1', "$label: and after a fold");
	return;
}

sub writes_so_far
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.order_events');
}

# --- immediate stop in the middle of a fold ---------------------------------------
# The fold runs in a transaction of ours: once refresh_dashboards() has
# returned, the fold has done all its work and is not committed; the server
# stops right then, writers running.
my @w = writers();
my $e0 = writes_so_far();
ok(AlxTest::wait_until($node, 'postgres', "SELECT count(*) > $e0 + 200 FROM alexandrite.order_events", 120),
	'the background writers write');
my $fold = $node->background_psql('postgres', on_error_stop => 0);
my $fold_pid = $fold->query_safe('SELECT pg_backend_pid()');
# a fold skips (returns 0) while the worker's fold runs: try again until
# ours is the one that folds (writers keep changes pending), with a deadline
my ($folded, $fold_deadline) = (0, time + 60);
while (time < $fold_deadline)
{
	$fold->query_safe('BEGIN');
	$folded = $fold->query_safe('SELECT alexandrite.refresh_dashboards()');
	last if $folded > 0;
	$fold->query_safe('ROLLBACK');
	usleep(20_000);
}
cmp_ok($folded, '>', 0, "a fold folded $folded changes and has not committed");
is($node->safe_psql('postgres', "SELECT state FROM pg_stat_activity WHERE pid = $fold_pid"), 'idle in transaction',
	'the fold\'s transaction is open when the server stops');
$node->stop('immediate');
$_->kill_kill for @w;
eval { $fold->quit; };
$node->start;
check_after_crash('immediate stop in the middle of a fold');

# --- immediate stop while the fold worker folds under load ----------------------------
# The worker's folds take milliseconds; poll its activity and stop the server
# the moment one is seen running (noted, not asserted: the explicit fold above
# is the deterministic case).
@w = writers();
$e0 = writes_so_far();
ok(AlxTest::wait_until($node, 'postgres', "SELECT count(*) > $e0 + 200 FROM alexandrite.order_events", 120),
	'the background writers write again');
my $probe = $node->background_psql('postgres');
my ($hit, $deadline) = (0, time + 30);
while (!$hit && time < $deadline)
{
	$hit = $probe->query_safe(q{SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'alexandrite dashboard fold' AND state = 'active' AND query LIKE '%folding%'});
}
note($hit ? 'the server stops while the worker folds' : 'no worker fold caught in 30 s; the server stops under load anyway');
$node->stop('immediate');
$_->kill_kill for @w;
eval { $probe->quit; };
$node->start;
check_after_crash('immediate stop under load, fold worker running');

$node->stop;
done_testing();
