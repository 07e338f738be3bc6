# Dashboards declared by a DBA stay exact under everything that writes their
# tables at once, read at every isolation level (the internals the contract
# test 050 does not reach):
#   - a partitioned base table written through the parent, straight into
#     partitions (no statement trigger fires there), across partitions,
#     inside subtransactions that roll back, with updates that touch no
#     counted column;
#   - a user dashboard over alexandrite.orders (sums, a filter) written
#     through the API and by hand;
#   - a table truncated over and over in REPEATABLE READ while others insert
#     into it (deltas committed after the truncating snapshot);
#   - rebuild_dashboard() and the fold worker (every 50 ms) and clients that
#     fold, all the while;
#   - then a reconcile left open: the worker folds the other dashboards and
#     that one once it commits;
# and readers at READ COMMITTED, REPEATABLE READ and SERIALIZABLE compare each
# view with the GROUP BY of its table in one snapshot, twice per transaction.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $node = AlxTest::new_node('dashconc', conf => join("\n",
		'alexandrite.fold_interval = 50ms', 'max_connections = 60', 'deadlock_timeout = 100ms'));
$node->start;
AlxTest::install($node, 'postgres');

$node->safe_psql('postgres', q{
	CREATE TABLE public.jobs (id bigint, region text NOT NULL, kind text, qty numeric, due timestamptz,
	                          open boolean NOT NULL DEFAULT true, note text) PARTITION BY LIST (region);
	CREATE TABLE public.jobs_eu PARTITION OF public.jobs FOR VALUES IN ('eu');
	CREATE TABLE public.jobs_us (note text, open boolean NOT NULL DEFAULT true, due timestamptz, qty numeric,
	                             kind text, region text NOT NULL, id bigint);
	ALTER TABLE public.jobs ATTACH PARTITION public.jobs_us FOR VALUES IN ('us');
	CREATE TABLE public.jobs_asia PARTITION OF public.jobs FOR VALUES IN ('asia');
	CREATE INDEX ON public.jobs (due) WHERE open;
	CREATE SEQUENCE public.jobs_seq;
	INSERT INTO public.jobs (id, region, kind, qty, due)
	SELECT nextval('public.jobs_seq'), (ARRAY['eu', 'us', 'asia'])[1 + g % 3], 'k' || (g % 5), g % 17,
	       now() + ((g % 121) - 60) * interval '1 minute'
	  FROM generate_series(1, 600) g;
	CREATE TABLE public.scratch (id serial, g int, v numeric);

	INSERT INTO alexandrite.operators (id, name, capacity)
	SELECT 'cop' || i, 'Operator ' || i, 100000 FROM generate_series(1, 4) i;
	SELECT count(alexandrite.create_order('CC-' || g, (ARRAY['shop', 'b2b_api', 'crm'])[1 + g % 3], 'c', NULL, NULL))
	  FROM generate_series(1, 200) g;

	SELECT alexandrite.create_dashboard('jobs_due', 'public.jobs', ARRAY['region', 'kind'],
	         sums => ARRAY['qty'], filter => 'open', due => 'due',
	         horizons => ARRAY['0'::interval, '30 minutes'::interval], horizon_names => ARRAY['overdue', 'soon']);
	SELECT alexandrite.create_dashboard('jobs_kind', 'public.jobs', ARRAY['upper(kind)'], key_names => ARRAY['kind'],
	         sums => ARRAY['qty * 2', 'id'], sum_names => ARRAY['double_qty', 'ids']);
	SELECT alexandrite.create_dashboard('orders_value', 'alexandrite.orders', ARRAY['channel', 'operator_id'],
	         sums => ARRAY['price'], filter => 'alexandrite.is_open(status) AND price IS NOT NULL');
	SELECT alexandrite.create_dashboard('scratch_g', 'public.scratch', ARRAY['g'], sums => ARRAY['v']);

	-- each view against the GROUP BY of its table, in one statement
	CREATE FUNCTION public.same(v text, b text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
	DECLARE r boolean;
	BEGIN
	  EXECUTE format('SELECT NOT EXISTS ((SELECT * FROM (%s) v EXCEPT ALL SELECT * FROM (%s) b) '
	                 'UNION ALL (SELECT * FROM (%s) b EXCEPT ALL SELECT * FROM (%s) v))', v, b, b, v) INTO r;
	  RETURN r;
	END $$;
	CREATE FUNCTION public.ok_all(OUT jobs_due boolean, OUT jobs_kind boolean, OUT orders_value boolean, OUT scratch boolean)
	LANGUAGE sql STABLE AS $$
	  SELECT public.same('SELECT region, kind, count, sum_qty, overdue, soon FROM alexandrite.dashboard_jobs_due',
	           'SELECT region, kind, count(*), COALESCE(sum(qty), 0), count(*) FILTER (WHERE due < now()),
	                   count(*) FILTER (WHERE due < now() + interval ''30 minutes'') FROM public.jobs WHERE open GROUP BY 1, 2'),
	         public.same('SELECT kind, count, double_qty, ids FROM alexandrite.dashboard_jobs_kind',
	           'SELECT upper(kind), count(*), COALESCE(sum(qty * 2), 0), COALESCE(sum(id), 0) FROM public.jobs GROUP BY 1'),
	         public.same('SELECT channel, operator_id, count, sum_price FROM alexandrite.dashboard_orders_value',
	           'SELECT channel, operator_id, count(*), sum(price) FROM alexandrite.orders
	             WHERE alexandrite.is_open(status) AND price IS NOT NULL GROUP BY 1, 2'),
	         public.same('SELECT g, count, sum_v FROM alexandrite.dashboard_scratch_g',
	           'SELECT g, count(*), COALESCE(sum(v), 0) FROM public.scratch GROUP BY 1')
	$$;
	CREATE FUNCTION public.ok() RETURNS int LANGUAGE sql STABLE AS $$
	  SELECT (o.jobs_due AND o.jobs_kind AND o.orders_value AND o.scratch)::int FROM public.ok_all() o $$;
	CREATE TABLE public.mismatch (at timestamptz DEFAULT clock_timestamp(), reader text, detail text);
	CREATE TABLE public.reads (reader text);

	-- one random write of the jobs, in its own transaction
	CREATE FUNCTION public.jobs_write() RETURNS void LANGUAGE plpgsql AS $$
	DECLARE r float8 := random(); v_id bigint; reg text := (ARRAY['eu', 'us', 'asia'])[1 + floor(random() * 3)::int];
	BEGIN
	  SELECT id INTO v_id FROM public.jobs WHERE id >= (random() * (SELECT last_value FROM public.jobs_seq))::bigint ORDER BY id LIMIT 1;
	  IF r < 0.15 OR v_id IS NULL THEN
	    INSERT INTO public.jobs (id, region, kind, qty, due)
	    SELECT nextval('public.jobs_seq'), reg, 'k' || floor(random() * 5), round((random() * 20)::numeric, 2),
	           now() + (random() * 120 - 60) * interval '1 minute' FROM generate_series(1, 1 + floor(random() * 3)::int);
	  ELSIF r < 0.25 THEN
	    -- straight into a partition, with its own column order
	    INSERT INTO public.jobs_us (id, region, kind, qty, due)
	    VALUES (nextval('public.jobs_seq'), 'us', 'k' || floor(random() * 5), 1, now() + interval '10 minutes');
	  ELSIF r < 0.40 THEN
	    UPDATE public.jobs SET qty = qty + 1, due = now() + (random() * 120 - 60) * interval '1 minute' WHERE id = v_id;
	  ELSIF r < 0.50 THEN
	    UPDATE public.jobs SET region = reg WHERE id = v_id;                -- may move across partitions
	  ELSIF r < 0.58 THEN
	    UPDATE public.jobs SET open = NOT open WHERE id = v_id;
	  ELSIF r < 0.65 THEN
	    UPDATE public.jobs_eu SET kind = 'k' || floor(random() * 5) WHERE id % 13 = v_id % 13;   -- many rows, one partition
	  ELSIF r < 0.72 THEN
	    DELETE FROM public.jobs WHERE id = v_id;
	  ELSIF r < 0.80 THEN
	    UPDATE public.jobs SET note = 'seen ' || now() WHERE id = v_id;      -- counts nothing
	  ELSE
	    BEGIN
	      INSERT INTO public.jobs (id, region, kind, qty) VALUES (nextval('public.jobs_seq'), reg, 'rb', 99);
	      UPDATE public.jobs SET qty = qty + 100 WHERE id = v_id;
	      DELETE FROM public.jobs_asia WHERE id % 7 = v_id % 7;
	      RAISE EXCEPTION 'roll back';
	    EXCEPTION WHEN raise_exception THEN NULL;
	    END;
	  END IF;
	END $$;

	-- one random write of an order: through the API or by hand
	CREATE FUNCTION public.orders_write() RETURNS void LANGUAGE plpgsql AS $$
	DECLARE o alexandrite.orders; r float8 := random(); nxt alexandrite.order_status;
	BEGIN
	  IF r < 0.2 THEN
	    PERFORM alexandrite.create_order('CC-N-' || txid_current(), (ARRAY['shop', 'b2b_api', 'crm'])[1 + floor(random() * 3)::int],
	                                     'c', NULL, NULL);
	    RETURN;
	  END IF;
	  SELECT * INTO o FROM alexandrite.orders WHERE id >= (SELECT max(id) FROM alexandrite.orders) * random()
	     AND status < 'shipped' ORDER BY id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED;
	  IF NOT FOUND THEN RETURN; END IF;
	  IF r < 0.5 THEN
	    UPDATE alexandrite.orders SET price = round((random() * 500)::numeric, 2) WHERE id = o.id;
	    RETURN;
	  END IF;
	  SELECT t.to_status INTO nxt FROM alexandrite.status_transitions t WHERE t.from_status = o.status ORDER BY random() LIMIT 1;
	  IF nxt = 'assigned' THEN
	    UPDATE alexandrite.orders SET operator_id = 'cop' || (1 + floor(random() * 4)::int) WHERE id = o.id;
	  END IF;
	  PERFORM alexandrite.set_status(o.id, nxt);
	END $$;
});
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'the dashboards are exact at the start');

my %reader = (
	rc  => 'BEGIN ISOLATION LEVEL READ COMMITTED',
	rr  => 'BEGIN ISOLATION LEVEL REPEATABLE READ',
	ser => 'BEGIN ISOLATION LEVEL SERIALIZABLE');
my %files = (
	'jobs@10'   => "SELECT public.jobs_write();\n",
	'orders@4'  => "SELECT public.orders_write();\n",
	'scratch@4' => "INSERT INTO public.scratch (g, v) SELECT floor(random() * 4)::int, random() FROM generate_series(1, 3);\n",
	'truncate@1' => "BEGIN ISOLATION LEVEL REPEATABLE READ;\nSELECT count(*) FROM public.scratch;\n"
	  . "SELECT pg_sleep(0.01);\nTRUNCATE public.scratch;\nCOMMIT;\n",
	'fold@1'    => "SELECT alexandrite.refresh_dashboards();\n",
	'rebuild@1' => "SELECT alexandrite.rebuild_dashboard('jobs_kind');\n");
for my $k (sort keys %reader)
{
	$files{"read_$k\@3"} = qq{$reader{$k};
SELECT public.ok() AS ok1 \\gset
SELECT public.ok() AS ok2 \\gset
COMMIT;
INSERT INTO public.reads VALUES ('$k');
\\if :ok1 + :ok2 < 2
INSERT INTO public.mismatch (reader, detail) SELECT '$k', row(o.*)::text FROM public.ok_all() o;
\\endif
};
}
$node->pgbench('--no-vacuum --client=8 --jobs=8 --transactions=300 --max-tries=50',
	0, [ qr{processed: 2400/2400}, qr{number of failed transactions: 0 } ], [qr{^$}],
	'writers, truncates, rebuilds, folds and readers at three isolation levels: no transaction failed', \%files);

my %reads = map { split /\|/ } split /\n/, $node->safe_psql('postgres', 'SELECT reader, count(*) FROM public.reads GROUP BY 1');
cmp_ok($reads{$_} // 0, '>', 10, "reader $_ compared " . ($reads{$_} // 0) . ' times') for sort keys %reader;
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.mismatch'), '0',
	'no reader at any isolation level saw a view differ from the GROUP BY of its table')
  or diag($node->safe_psql('postgres', 'SELECT reader, detail FROM public.mismatch LIMIT 10'));
cmp_ok($node->safe_psql('postgres', q{SELECT sum(folds) FROM alexandrite.dashboard_lag
                                       WHERE dashboard IN ('jobs_due', 'jobs_kind', 'orders_value', 'scratch_g')}),
	'>', 10, 'the worker and the clients folded meanwhile');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM alexandrite.dashboard_state s JOIN alexandrite.dashboards d
                                       ON d.id = s.dashboard_id WHERE d.name = 'scratch_g' AND s.last_truncate_at IS NOT NULL}),
	'==', 1, 'the scratch table was truncated meanwhile');
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'exact at rest');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT sum(pending_changes) = 0 FROM alexandrite.dashboard_lag', 60),
	'the worker folds everything pending');
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'exact after the fold');
is($node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.reconcile_dashboards() WHERE NOT ok'), '0',
	'reconcile_dashboards() agrees for every dashboard');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.jobs_us WHERE region <> 'us'}), '0', 'the partitions hold their rows');

# A reconcile left open holds its dashboard's state row.  The worker waits
# at most 200 ms for it each round, leaves that dashboard for later and folds
# the others; once the reconcile commits, it folds that one too.  (Before,
# the worker waited on the row holding the fold lock: nothing folded.)
my $h = $node->background_psql('postgres', on_error_stop => 0);
$h->query_safe('BEGIN');
$h->query_safe(q{SELECT ok FROM alexandrite.reconcile_dashboards('jobs_kind')});
$node->safe_psql('postgres', q{INSERT INTO public.jobs (id, region, kind, qty, due)
                               VALUES (-1, 'us', 'held', 1, now() + interval '1 hour')});
ok(AlxTest::wait_until($node, 'postgres',
		q{SELECT pending_changes = 0 FROM alexandrite.dashboard_lag WHERE dashboard = 'jobs_due'}, 30),
	'reconcile left open: the worker folds the other dashboards of the table');
is($node->safe_psql('postgres', q{SELECT pending_changes > 0 FROM alexandrite.dashboard_lag WHERE dashboard = 'jobs_kind'}),
	't', 'reconcile left open: the held dashboard\'s changes wait');
$h->query_safe('COMMIT');
$h->quit;
ok(AlxTest::wait_until($node, 'postgres',
		q{SELECT pending_changes = 0 FROM alexandrite.dashboard_lag WHERE dashboard = 'jobs_kind'}, 30),
	'reconcile committed: the worker folds the held dashboard');
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'exact after it');

# One session captures for 270 dashboards it creates and drops, one
# transaction each: more than the 256 targets a backend keeps
# (src/dashboard/pending.c), so at the end of a transaction it forgets them
# all (a DEBUG1 line says so); its next writes look the live dashboards'
# targets up again and stay exact.
$node->safe_psql('postgres', q{
	CREATE PROCEDURE public.churn(n int) LANGUAGE plpgsql AS $$
	BEGIN
	  FOR i IN 1 .. n LOOP
	    PERFORM alexandrite.create_dashboard('churn_' || i, 'public.scratch', ARRAY['g'], sums => ARRAY['v']);
	    INSERT INTO public.scratch (g, v) VALUES (i % 7, i);
	    PERFORM alexandrite.drop_dashboard('churn_' || i);
	    COMMIT;
	  END LOOP;
	END $$});
my $churn = $node->background_psql('postgres', on_error_stop => 1);
# (with DEBUG1 and LOG sent to the client, stderr is not empty: query, not query_safe)
$churn->{stderr} = '';
$churn->query(q{SET client_min_messages = debug1; CALL public.churn(270); RESET client_min_messages});
my $said = $churn->{stderr};
$churn->{stderr} = '';
like($said, qr/alexandrite: forgetting 2[5-9]\d dashboard capture targets/,
	'a session past 256 capture targets forgets them at the end of a transaction');
unlike($said, qr/ERROR/, 'and the churn met no error');
$churn->query_safe(q{INSERT INTO public.scratch (g, v) SELECT g % 5, g FROM generate_series(1, 50) g;
	UPDATE public.scratch SET v = v + 1 WHERE g = 3; DELETE FROM public.scratch WHERE g = 4});
$churn->quit;
is($node->safe_psql('postgres', q{SELECT count(*) FROM alexandrite.dashboards WHERE name LIKE 'churn\_%'}), '0',
	'270 dashboards created and dropped in one session');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT sum(pending_changes) = 0 FROM alexandrite.dashboard_lag', 60),
	'the worker folds everything pending after the churn');
is($node->safe_psql('postgres', 'SELECT public.ok()'), '1', 'exact after a session forgot its targets');

$node->stop;
done_testing();
