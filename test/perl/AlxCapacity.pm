# AlxCapacity: "capacity is never exceeded", tried on every path at once
# under concurrent pgbench clients, with the invariant checked inside every
# transaction.  Used by test/t/030_sla_concurrency.pl (every path but
# assign_order) and test/t/031_sla_capacity_all_paths.pl (assign_order too).
#
#   AlxCapacity::setup($node, $db);          # operators cop1..cop6, orders, helpers
#   AlxCapacity::run($node, $db, assign_order => 1, clients => 8, transactions => 250);
#   AlxCapacity::assert_clean($node, $db, $label, assign_order => 1);
#
# Paths (one per pgbench transaction, chosen at random): assign_next,
# assign_order (manual assignment of the most urgent pool order), release,
# cancel, rebalance, lowering a capacity, raising it, deactivating an operator,
# reactivating it, new orders.  Each path is a function public.cap_<path> that
# acts and then, in the same transaction (a later statement: a fresh READ
# COMMITTED snapshot that sees its own changes and every committed one),
# calls public.cap_check, which records in public.cap_violations:
#   I1  an operator that received an order in this transaction is inactive or
#       holds more open orders than its capacity;
#   I2  any operator holds more open orders than it may: its capacity (0 when
#       inactive), or what it held when a lowering or a deactivation left it
#       above that (public.cap_ceiling, written by that transaction under the
#       operator's row lock and reset by rebalance): such holdings may only
#       shrink.
# Refusals are caught only for the SQLSTATEs an operator-facing call may
# raise here (55000: inactive or full operator; 53400 accepted for a full
# operator in assign_order); any other error aborts the pgbench client and
# fails the run.
package AlxCapacity;

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @PATHS = qw(assign_next assign_order release cancel rebalance lower raise deactivate activate new_orders);

sub setup
{
	my ($node, $db) = @_;
	$node->safe_psql($db, q{
	INSERT INTO alexandrite.operators (id, name, capacity)
	SELECT 'cop' || i, 'Capacity tester ' || i, (ARRAY[1, 2, 3, 5, 8, 13])[i] FROM generate_series(1, 6) i;
	SELECT count(alexandrite.create_order('CAP-' || g, (ARRAY['shop', 'b2b_api', 'crm'])[1 + g % 3], 'c', NULL, NULL))
	  FROM generate_series(1, 300) g;
	UPDATE alexandrite.orders SET sla_due_at = now() + ((hashint4(id::int) % 480) * interval '1 hour')
	 WHERE external_ref LIKE 'CAP-%';
	SELECT count(alexandrite.set_status(id, 'priced')) FROM alexandrite.orders
	 WHERE external_ref LIKE 'CAP-%' AND id % 3 = 0;

	CREATE TABLE public.cap_violations (seen_at timestamptz DEFAULT clock_timestamp(), invariant text,
	    operator_id text, held bigint, capacity int, active boolean, ceiling bigint, path text);
	CREATE TABLE public.cap_ceiling (operator_id text PRIMARY KEY, ceiling bigint NOT NULL);
	CREATE TABLE public.cap_refusals (at timestamptz DEFAULT clock_timestamp(), path text, sqlstate text, message text);
	CREATE TABLE public.cap_done (path text, moved int);

	-- open orders an operator holds (the contract: capacity = open orders)
	CREATE FUNCTION public.cap_held(op text) RETURNS bigint LANGUAGE sql STABLE AS $$
	  SELECT count(*) FROM alexandrite.orders o WHERE o.operator_id = op AND o.status < 'shipped' $$;

	-- after an administrative change of op (under its row lock): what it may
	-- hold beyond its capacity from now on, if anything
	CREATE FUNCTION public.cap_reset_ceiling(op text) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE h bigint := public.cap_held(op); allowed int;
	BEGIN
	  SELECT CASE WHEN p.active THEN p.capacity ELSE 0 END INTO allowed FROM alexandrite.operators p WHERE p.id = op;
	  IF h > allowed THEN
	    INSERT INTO public.cap_ceiling VALUES (op, h) ON CONFLICT (operator_id) DO UPDATE SET ceiling = EXCLUDED.ceiling;
	  ELSE
	    DELETE FROM public.cap_ceiling WHERE operator_id = op;
	  END IF;
	END $$;

	CREATE FUNCTION public.cap_check(path text, ops text[]) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
	  INSERT INTO public.cap_done VALUES (path, cardinality(ops));
	  -- I1
	  INSERT INTO public.cap_violations (invariant, operator_id, held, capacity, active, path)
	  SELECT 'I1: received an order while inactive or beyond capacity', p.id, public.cap_held(p.id), p.capacity, p.active, path
	    FROM alexandrite.operators p
	   WHERE p.id = ANY (ops) AND (NOT p.active OR public.cap_held(p.id) > p.capacity);
	  -- I2
	  INSERT INTO public.cap_violations (invariant, operator_id, held, capacity, active, ceiling, path)
	  SELECT 'I2: holds more than it may', p.id, h.n, p.capacity, p.active, c.ceiling, path
	    FROM alexandrite.operators p
	   CROSS JOIN LATERAL (SELECT public.cap_held(p.id) AS n) h
	    LEFT JOIN public.cap_ceiling c ON c.operator_id = p.id
	   WHERE p.id LIKE 'cop%'
	     AND h.n > greatest(CASE WHEN p.active THEN p.capacity ELSE 0 END, coalesce(c.ceiling, 0));
	END $$;

	CREATE FUNCTION public.cap_assign_next(op text) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE got text[] := '{}';
	BEGIN
	  BEGIN
	    IF alexandrite.assign_next(op) IS NOT NULL THEN got := ARRAY[op]; END IF;
	  EXCEPTION WHEN object_not_in_prerequisite_state THEN
	    INSERT INTO public.cap_refusals (path, sqlstate, message) VALUES ('assign_next', SQLSTATE, SQLERRM);
	  END;
	  PERFORM public.cap_check('assign_next', got);
	END $$;

	-- a lead assigns the most urgent pool order by hand
	CREATE FUNCTION public.cap_assign_order(op text) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE got text[] := '{}'; v bigint;
	BEGIN
	  SELECT o.id INTO v FROM alexandrite.orders o
	   WHERE o.status < 'assigned' AND o.operator_id IS NULL AND o.external_ref LIKE 'CAP-%'
	   ORDER BY o.sla_due_at, o.id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED;
	  IF v IS NOT NULL THEN
	    BEGIN
	      PERFORM alexandrite.assign_order(v, op, 'lead');
	      got := ARRAY[op];
	    EXCEPTION WHEN object_not_in_prerequisite_state OR configuration_limit_exceeded THEN
	      INSERT INTO public.cap_refusals (path, sqlstate, message) VALUES ('assign_order', SQLSTATE, SQLERRM);
	    END;
	  END IF;
	  PERFORM public.cap_check('assign_order', got);
	END $$;

	CREATE FUNCTION public.cap_release(op text) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
	  PERFORM alexandrite.release_order(x.id)
	     FROM (SELECT o.id FROM alexandrite.orders o WHERE o.operator_id = op AND o.status = 'assigned'
	            ORDER BY o.id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED) x;
	  PERFORM public.cap_check('release', '{}');
	END $$;

	CREATE FUNCTION public.cap_cancel(op text) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
	  PERFORM alexandrite.set_status(x.id, 'cancelled')
	     FROM (SELECT o.id FROM alexandrite.orders o WHERE o.operator_id = op AND o.status = 'assigned'
	            ORDER BY o.id DESC LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED) x;
	  PERFORM public.cap_check('cancel', '{}');
	END $$;

	CREATE FUNCTION public.cap_rebalance() RETURNS void LANGUAGE plpgsql AS $$
	DECLARE got text[];
	BEGIN
	  SELECT coalesce(array_agg(r.to_operator) FILTER (WHERE r.to_operator IS NOT NULL), '{}') INTO got
	    FROM alexandrite.rebalance() r;
	  -- rebalance holds every operator row: reset every ceiling
	  PERFORM public.cap_reset_ceiling(p.id) FROM alexandrite.operators p WHERE p.id LIKE 'cop%' ORDER BY p.id;
	  PERFORM public.cap_check('rebalance', got);
	END $$;

	CREATE FUNCTION public.cap_set(path text, op text, new_capacity int, new_active boolean) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
	  UPDATE alexandrite.operators p SET capacity = coalesce(new_capacity, p.capacity), active = coalesce(new_active, p.active)
	   WHERE p.id = op;
	  PERFORM public.cap_reset_ceiling(op);
	  PERFORM public.cap_check(path, '{}');
	END $$;

	CREATE FUNCTION public.cap_new_orders() RETURNS void LANGUAGE plpgsql AS $$
	DECLARE v bigint;
	BEGIN
	  FOR i IN 1 .. 3 LOOP
	    v := alexandrite.create_order('CAP-N-' || txid_current() || '-' || i, (ARRAY['shop', 'b2b_api', 'crm'])[i], 'c', NULL, NULL);
	  END LOOP;
	  PERFORM alexandrite.set_status(v, 'priced');
	  PERFORM public.cap_check('new_orders', '{}');
	END $$;
	});
	return;
}

# The pgbench script: one path per transaction.
sub script
{
	my (%opts) = @_;
	# without assign_order, its share goes to assign_next
	my $manual = $opts{assign_order} ? 'cap_assign_order' : 'cap_assign_next';
	return qq{
\\set op random(1, 6)
\\set r random(1, 100)
\\set c random(1, 13)
\\if :r <= 30
SELECT public.cap_assign_next('cop' || :op);
\\elif :r <= 45
SELECT public.$manual('cop' || :op);
\\elif :r <= 60
SELECT public.cap_release('cop' || :op);
\\elif :r <= 66
SELECT public.cap_cancel('cop' || :op);
\\elif :r <= 73
SELECT public.cap_rebalance();
\\elif :r <= 80
SELECT public.cap_set('lower', 'cop' || :op, greatest(1, (SELECT capacity FROM alexandrite.operators WHERE id = 'cop' || :op) - 1 - :c % 3), NULL);
\\elif :r <= 86
SELECT public.cap_set('raise', 'cop' || :op, least(13, (SELECT capacity FROM alexandrite.operators WHERE id = 'cop' || :op) + :c % 3 + 1), NULL);
\\elif :r <= 90
SELECT public.cap_set('deactivate', 'cop' || :op, NULL, false);
\\elif :r <= 95
SELECT public.cap_set('activate', 'cop' || :op, NULL, true);
\\else
SELECT public.cap_new_orders();
\\endif
};
}

sub run
{
	my ($node, $db, %opts) = @_;
	my $clients = $opts{clients} // 8;
	my $tx = $opts{transactions} // 250;
	my $total = $clients * $tx;
	$node->pgbench(
		"--no-vacuum --client=$clients --jobs=$clients --transactions=$tx --protocol=prepared",
		0,
		[qr{processed: $total/$total}],
		[qr{^$}],
		"$clients clients, $total transactions over every path, no client aborted",
		{ 'capacity_' . ($opts{assign_order} ? 'all' : 'auto') => script(%opts) }, $db);
	return;
}

sub assert_clean
{
	my ($node, $db, $label, %opts) = @_;
	my @paths = grep { $opts{assign_order} || $_ ne 'assign_order' } @PATHS;
	my %done = map { split /\|/ } split /\n/,
	  $node->safe_psql($db, 'SELECT path, count(*) FROM public.cap_done GROUP BY path');
	cmp_ok($done{$_} // 0, '>', 5, "$label: path $_ ran (" . ($done{$_} // 0) . ' times)') for @paths;
	my %moved = map { split /\|/ } split /\n/,
	  $node->safe_psql($db, 'SELECT path, sum(moved) FROM public.cap_done GROUP BY path');
	cmp_ok($moved{$_} // 0, '>', 0, "$label: $_ assigned orders (" . ($moved{$_} // 0) . ')')
	  for grep { /^(assign_next|assign_order|rebalance)$/ } @paths;
	my $v = $node->safe_psql($db, q{SELECT count(*) FROM public.cap_violations});
	is($v, '0', "$label: the capacity invariants held in every transaction")
	  or diag($node->safe_psql($db, q{SELECT invariant || ': ' || operator_id || ' held ' || held || ', capacity ' || capacity
	  || ', active ' || active || coalesce(', ceiling ' || ceiling, '') || ' (path ' || path || ')'
	  FROM public.cap_violations ORDER BY seen_at LIMIT 15}));
	is($node->safe_psql($db, q{SELECT coalesce(string_agg(DISTINCT path || ' ' || sqlstate, ', '), '')
	    FROM public.cap_refusals WHERE NOT (sqlstate = '55000' OR (path = 'assign_order' AND sqlstate = '53400'))}),
		'', "$label: refusals carry the documented SQLSTATEs");
	note("$label: refusals: " . $node->safe_psql($db,
		q{SELECT coalesce(string_agg(path || ' ' || sqlstate || ' x' || n, ', '), 'none')
		    FROM (SELECT path, sqlstate, count(*) n FROM public.cap_refusals GROUP BY 1, 2) x}));
	# after a last rebalance nobody holds more than capacity, and nobody
	# inactive holds an assigned order
	$node->safe_psql($db, 'SELECT public.cap_rebalance()');
	is($node->safe_psql($db, q{
		SELECT count(*) FROM alexandrite.operators p
		 WHERE p.id LIKE 'cop%' AND public.cap_held(p.id) > CASE WHEN p.active THEN p.capacity ELSE 0 END}),
		'0', "$label: after a last rebalance every operator fits its capacity and the inactive hold nothing");
	is($node->safe_psql($db, q{
		SELECT count(*) FROM alexandrite.operators op
		  LEFT JOIN alexandrite.operator_load l ON l.operator_id = op.id
		 WHERE l.open_orders IS NOT NULL
		   AND l.open_orders <> (SELECT count(*) FROM alexandrite.orders o
		                          WHERE o.operator_id = op.id AND o.status < 'shipped')}),
		'0', "$label: every known load counter equals the orders held");
	is($node->safe_psql($db, q{
		SELECT count(*) FROM alexandrite.orders
		 WHERE (status < 'assigned' AND operator_id IS NOT NULL) OR (status = 'assigned' AND operator_id IS NULL)}),
		'0', "$label: pool orders have no operator, assigned ones have one");
	return;
}

1;
