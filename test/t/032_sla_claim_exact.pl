# The claim is exact (docs/sla.md, "The claim"): assign_next takes the pool
# order first in (sla_priority desc, id) among those no other transaction
# holds, and rebalance takes them in that order within its horizon, however
# many of the best are held by another transaction and in whichever channels
# they are.  Checked against the naive ORDER BY over the pool in the same
# transaction (same "now"), with 900 orders of three channels whose due times
# share values within and across channels, in rounds where another session
# holds a random part of the best 60 candidates, or every order of one
# channel (the merge's lead channel runs out), or all but the last few; the
# claims come from one session, whose claims start reading where its last
# one ended (the lead channel's window, src/sla/claim.c).
# Then the same with the pool index marked invalid, replaced by one of
# another collation, and with row security on orders: the claim reads the
# table with its query instead, with a WARNING, and is still exact.  And the
# operator lock, which reads operators_pkey in C, runs its statement when
# that index is marked invalid and still refuses and counts as it should.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $node = AlxTest::new_node('claim');
$node->start;
AlxTest::install($node, 'postgres');

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# due times on a 6-hour grid from 10 days late to 20 days ahead: many ties
q1(q{
	SELECT setseed(0.32);
	INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('r1', 'rebalance', 7);
	INSERT INTO alexandrite.orders (external_ref, channel, customer_id, status, created_at, sla_due_at)
	SELECT 'X-' || g, (ARRAY['shop', 'b2b_api', 'crm'])[1 + floor(random() * 3)::int], 'c',
	       (ARRAY['new', 'priced'])[1 + floor(random() * 2)::int]::alexandrite.order_status,
	       now() - interval '30 days',
	       date_trunc('hour', now()) + (floor(random() * 120) - 40) * interval '6 hours'
	  FROM generate_series(1, 900) g;
});

my $POOL = "status < 'assigned' AND operator_id IS NULL";
my $RANK = "alexandrite.sla_priority(created_at, sla_due_at, channel, now()) DESC, id";

# the best $n pool orders (due before now() + $horizon), skipping @held
sub expected
{
	my ($n, $horizon, @held) = @_;
	my $held = @held ? 'AND id <> ALL (ARRAY[' . join(',', @held) . ']::bigint[])' : '';
	my $due = $horizon ? "AND sla_due_at < now() + interval '$horizon'" : '';
	return "SELECT string_agg(id::text, ',') FROM (SELECT id FROM alexandrite.orders"
	  . " WHERE $POOL $held $due ORDER BY $RANK LIMIT $n) x";
}

# another session holds @ids (FOR UPDATE) until release()
my $bg = $node->background_psql('postgres', on_error_stop => 1);
sub hold
{
	my (@ids) = @_;
	$bg->query_safe('BEGIN');
	$bg->query_safe('SELECT count(*) FROM (SELECT 1 FROM alexandrite.orders WHERE id = ANY (ARRAY['
		  . join(',', @ids, 0) . ']::bigint[]) FOR UPDATE) x');
	return;
}
sub release { $bg->query_safe('COMMIT'); return; }

sub best_ids
{
	my ($n, $where) = @_;
	$where //= 'true';
	return split /\n/, q1("SELECT id FROM alexandrite.orders WHERE $POOL AND $where ORDER BY $RANK LIMIT $n");
}

srand(7);

# --- rebalance: the bounded claim, in rank order within the horizon ----------
{
	my @top = best_ids(40, "sla_due_at < now() + interval '2 days'");
	my @held = grep { rand() < 0.5 } @top;
	hold(@held);
	my ($want, $got) = split /\n/, q1('BEGIN;' . expected(7, '2 days', @held) . ';'
		  . "SELECT string_agg(order_id::text, ',') FROM alexandrite.rebalance(interval '2 days'); COMMIT;");
	release();
	is($got, $want, 'rebalance gives the operator the 7 best unheld pool orders due within its horizon, in rank order ('
		  . scalar(@held) . ' of the best 40 held)');
}

# --- assign_next: 60 claims under different holdings ----------------------------
q1("INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('x1', 'claims', 100000)");
my @bad;
my $claims = 0;
my $cl = $node->background_psql('postgres', on_error_stop => 1);
for my $round (1 .. 60)
{
	my @held;
	if ($round % 10 == 0)
	{
		# every pool order of one channel: the lead may run out
		my $ch = (qw(shop b2b_api crm))[ ($round / 10) % 3 ];
		@held = split /\n/, q1("SELECT id FROM alexandrite.orders WHERE $POOL AND channel = '$ch'");
	}
	elsif ($round % 10 == 5)
	{
		# all but the last 3 of the best 200
		my @top = best_ids(200);
		@held = @top[ 0 .. $#top - 3 ];
	}
	else
	{
		@held = grep { rand() < 0.6 } best_ids(60);
	}
	# now and then a new order more urgent than any: before every window
	if ($round % 7 == 3)
	{
		q1("INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at) VALUES ('U-$round', '"
			  . (qw(shop b2b_api crm))[ $round % 3 ] . "', 'c', now() - interval '15 days')");
	}
	hold(@held);
	# one claiming session throughout: its claims start where its last one was
	$cl->query_safe('BEGIN');
	my $want = $cl->query_safe(expected(1, undef, @held));
	my $got = $cl->query_safe("SELECT alexandrite.assign_next('x1')");
	$cl->query_safe('COMMIT');
	release();
	$claims++;
	push @bad, "round $round: expected $want, got $got (" . scalar(@held) . ' held)' if ($want // '') ne ($got // '');
}
is(join('; ', @bad), '', "$claims claims of assign_next each took the best unheld pool order");

# nothing held: the next ten follow the ranking
{
	my $want = join(',', best_ids(10));
	my $got = q1("SELECT string_agg(alexandrite.assign_next('x1')::text, ',') FROM generate_series(1, 10)");
	is($got, $want, 'ten claims in one statement follow the ranking');
}

# --- the statement form instead of the pool index --------------------------------
# One claim while another session holds a random part of the best 30: it
# must take the best unheld pool order, and the log must give the reason.
# A session keeps what it learnt of orders and its pool index for its life
# (src/sla/claim.c, ClaimShape): a long-lived session claims through the
# trusted index first, then $setup changes the index or the table, and its
# next claim must notice: exact, with the WARNING on its own stderr (each
# case has a session of its own: the WARNING comes once a minute per
# session).
sub cl_claim
{
	my ($session, @held) = @_;
	hold(@held);
	$session->query_safe('BEGIN');
	my $want = $session->query_safe(expected(1, undef, @held));
	# the claim may WARN: query, not query_safe
	$session->{stderr} = '';
	my $got = $session->query("SELECT alexandrite.assign_next('x1')");
	my $warned = $session->{stderr};
	$session->{stderr} = '';
	$session->query_safe('COMMIT');
	release();
	return ($want, $got, $warned);
}
sub fallback_claim
{
	my ($what, $warning, $setup, $teardown) = @_;
	my $long = $node->background_psql('postgres', on_error_stop => 1);
	my ($want, $got, $warned) = cl_claim($long);
	ok($got eq $want && $warned eq '', "$what: before, a long-lived session claims with no WARNING");
	q1($setup);
	my $log_at = -s $node->logfile;
	my @held = grep { rand() < 0.6 } best_ids(30);
	hold(@held);
	($want, $got) = split /\n/, q1('BEGIN;' . expected(1, undef, @held) . ";SELECT alexandrite.assign_next('x1'); COMMIT;");
	release();
	is($got, $want, "$what: the claim still takes the best unheld pool order");
	like(slurp_file($node->logfile, $log_at), $warning, "$what: a WARNING says why the pool index is not used");
	($want, $got, $warned) = cl_claim($long, grep { rand() < 0.6 } best_ids(30));
	is($got, $want, "$what: the long-lived session's claim is exact too");
	like($warned, $warning, "$what: and the long-lived session noticed the change (its WARNING)");
	q1($teardown);
	$long->quit;
	return;
}
my $not_pool = qr/WARNING:.*orders_pool_due_idx is missing or not the pool index/;

# an index the claim cannot trust: marked invalid
fallback_claim('the pool index marked invalid', $not_pool,
	q{UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'alexandrite.orders_pool_due_idx'::regclass},
	q{UPDATE pg_index SET indisvalid = true WHERE indexrelid = 'alexandrite.orders_pool_due_idx'::regclass});
{
	my $want2 = join(',', best_ids(3));
	is(q1("SELECT string_agg(alexandrite.assign_next('x1')::text, ',') FROM generate_series(1, 3)"), $want2,
		'with the index valid again, the claims follow the ranking');
}

# an index of another collation under the name: not trusted either
# (equality under a nondeterministic collation could match other channels)
fallback_claim('a pool index of another collation under the name', $not_pool,
	q{ALTER INDEX alexandrite.orders_pool_due_idx RENAME TO orders_pool_due_saved;
	  CREATE INDEX orders_pool_due_idx ON alexandrite.orders (channel COLLATE "C", sla_due_at, id)
	   WHERE status < 'assigned' AND operator_id IS NULL},
	q{DROP INDEX alexandrite.orders_pool_due_idx;
	  ALTER INDEX alexandrite.orders_pool_due_saved RENAME TO orders_pool_due_idx});

# row security on orders: the claim reads with the query, which applies it
fallback_claim('row security enabled on orders',
	qr/WARNING:.*alexandrite.orders has row-level security: claims read it with a query/,
	q{ALTER TABLE alexandrite.orders ENABLE ROW LEVEL SECURITY},
	q{ALTER TABLE alexandrite.orders DISABLE ROW LEVEL SECURITY});

# --- the operator lock through the primary key, and its statement fallback -------
# In the claim's own transaction, pg_stat_get_xact_numscans counts the scans
# of operators_pkey: with the index valid the lock (and the foreign-key
# check) read it; marked invalid, nothing may (the lock runs its statement,
# and the planner never uses an invalid index), and the lock still refuses
# an unknown or inactive operator and keeps capacity.  (PostgreSQL does not
# report an invalid primary key as the table's, so this tests the fallback,
# not AlxIndexTrusted.)
{
	my $scans = "SELECT pg_stat_get_xact_numscans('alexandrite.operators_pkey'::regclass)";
	q1("INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('k1', 'keyed', 1), ('k2', 'inactive', 5)");
	q1("UPDATE alexandrite.operators SET active = false WHERE id = 'k2'");
	my ($id, $n) = split /\n/, q1("BEGIN; SELECT alexandrite.assign_next('x1'); $scans; COMMIT;");
	# the counter sees the scans of the claim's transaction (the lock's, the foreign-key check's)
	ok($id =~ /^\d+$/ && $n > 0, "with operators_pkey valid, the claim's transaction counts scans of it (order $id, $n scans)");

	q1(q{UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'alexandrite.operators_pkey'::regclass});
	my $want;
	($want, $id, $n) = split /\n/, q1('BEGIN;' . expected(1) . ";SELECT alexandrite.assign_next('k1'); $scans; COMMIT;");
	is("$id/$n", "$want/0", 'with operators_pkey marked invalid, assign_next takes the best order without reading that index');
	my ($got2) = q1("SELECT coalesce(alexandrite.assign_next('k1')::text, 'none')");
	is($got2, 'none', 'and an operator at capacity gets nothing');
	my ($rc, $out, $err) = $node->psql('postgres', "SELECT alexandrite.assign_next('nobody')",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:\s+P0002/, 'an unknown operator is P0002');
	($rc, $out, $err) = $node->psql('postgres', "SELECT alexandrite.assign_next('k2')",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:\s+55000/, 'an inactive operator is 55000');
	q1(q{UPDATE pg_index SET indisvalid = true WHERE indexrelid = 'alexandrite.operators_pkey'::regclass});
}

# a claim in the same statement as a change of the best order sees the
# change: the most urgent order, priced by the call before, is still the
# best and is taken (its version before the change, updated by the claim's
# own transaction, must not be what the claim reads and skips)
q1("INSERT INTO alexandrite.orders (external_ref, channel, customer_id, sla_due_at) VALUES ('W-1', 'shop', 'c', now() - interval '60 days')");
{
	my $w = q1("SELECT id FROM alexandrite.orders WHERE external_ref = 'W-1'");
	is(q1("SELECT alexandrite.set_status($w, 'priced')::text, alexandrite.assign_next('x1') = $w"), '|t',
		'set_status then assign_next in one statement: the claim takes the order just priced, the best');
}

# several calls in one statement, with no foreign-key check between them
# (replica role): each call sees the previous one's claim and load move
q1("INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('cap2', 'two places', 2)");
is(q1("SET session_replication_role = replica;
       SELECT count(alexandrite.assign_next('cap2')) FROM generate_series(1, 5)"), '2',
	'five claims in one statement under the replica role: two, the capacity');
is(q1("SELECT count(*) || '/' || count(DISTINCT id) FROM alexandrite.orders WHERE operator_id = 'cap2'"), '2/2',
	'the operator holds two different orders');

# capacity and the pool after it all
is(q1("SELECT count(*) FROM alexandrite.orders WHERE operator_id IS NOT NULL AND status < 'assigned'"), '0',
	'no pool order has an operator');
is(q1("SELECT count(*) FROM alexandrite.orders WHERE operator_id = 'r1'"), '7', 'rebalance assigned exactly its 7 places');

$bg->quit;
$cl->quit;
$node->stop;
done_testing();
