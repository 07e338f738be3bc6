# Escalation attempts against the documented roles (docs/operations.md,
# "Privileges", run as written).  Everything is enumerated from the
# catalogs, so a new function, table or column is probed without editing
# this file:
#  - as each role, every column of every relation of the extension: written
#    with SQL payloads where the role may write it, refused (42501) where it
#    may not; likewise INSERT, DELETE, TRUNCATE and every sequence;
#  - as each role, every function it may execute, with hostile arguments
#    (quotes, semicolons, $$, huge strings, NULLs, extreme numbers, wrong
#    types); every function it may not execute is refused;
#  - the 1.1 exploits (fold_sql, a hostile collector, a registry naming
#    another table), and objects of the attacker's own (an "=" operator, a
#    now()) first in its search_path, to be picked up by code running as
#    someone else;
#  - then the workers (relay, fold) run and the metrics are scraped.
# Afterwards: no role gained an attribute or a membership, no object changed
# owner or privileges, nothing of the attacker's ran as another role, the
# server never restarted and no worker died, the workers ran as
# alexandrite_worker, no probe met an internal error or a hang.  Last, the
# worker role itself: empty makes the workers wait (one LOG), a superuser
# named there runs them with a WARNING.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use AlxTest;
use AlxBroker;

require "$AlxTest::TOP/test/docblocks.pl";
my $doc = "$AlxTest::TOP/docs/operations.md";
my @roles = qw(mes alexandrite_monitor alice alexandrite_worker);

my $mq = AlxBroker->new;
$mq->start;
$mq->declare('t065', '#');
$mq->consume('t065');

my $node = AlxTest::new_node('probes', worker_role => 0, conf => join("\n",
		"alexandrite.worker_role = ''",
		"alexandrite.amqp_url = '" . $mq->url . "'"));
$node->start;
AlxTest::install($node, 'postgres');
$node->safe_psql('postgres', DocBlocks::block($doc, 'privileges-roles'));
$node->safe_psql('postgres', DocBlocks::block($doc, 'privileges-grants'));
ok(AlxTest::wait_until($node, 'postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold') AND usename = 'alexandrite_worker'}, 60),
	'the workers run as alexandrite_worker');

# some data, written by the DBA, for the probes to work on
my @v = ([ 0, 0, 0 ], [ 10, 0, 0 ], [ 0, 10, 0 ], [ 0, 0, 10 ]);
my $stl = pack('a80 V', 'tetrahedron', 4);
$stl .= pack('f<12 v', 0, 0, 0, map({ @{ $v[$_] } } @$_), 0) for ([ 0, 2, 1 ], [ 0, 1, 3 ], [ 0, 3, 2 ], [ 1, 2, 3 ]);
my $stl_hex = unpack('H*', $stl);
$node->safe_psql('postgres', qq{
	INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op1', 'Ana', 5), ('op2', 'Bo', 2);
	SELECT alexandrite.mesh_ingest('\\x$stl_hex', 'tet.stl', 'mm');
	SELECT alexandrite.create_order('SEED-' || i, (ARRAY['shop', 'b2b_api', 'crm'])[1 + i % 3], 'c' || i,
	                                CASE WHEN i % 2 = 0 THEN 1 END, 'ag925') FROM generate_series(1, 12) i;
	SELECT alexandrite.price_order(o.id) FROM alexandrite.orders o WHERE o.mesh_id IS NOT NULL;
	SELECT alexandrite.assign_next('op1');
});

# The attacker's own objects: a schema mes may create in, functions and
# operators that try to escalate and record who ran them.
$node->safe_psql('postgres', q{
	CREATE SCHEMA probe AUTHORIZATION mes;
	GRANT USAGE ON SCHEMA probe TO PUBLIC;
});
my ($rc, $out, $err) = $node->psql('postgres', q{
	CREATE TABLE probe.hits (who text, what text, at timestamptz DEFAULT clock_timestamp());
	GRANT INSERT, SELECT ON probe.hits TO PUBLIC;
	CREATE FUNCTION probe.escalate(what text) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
	  INSERT INTO probe.hits (who, what) VALUES (current_user, what);
	  BEGIN EXECUTE 'ALTER ROLE mes SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
	  BEGIN EXECUTE 'GRANT alexandrite_admin TO mes'; EXCEPTION WHEN OTHERS THEN NULL; END;
	  BEGIN EXECUTE 'ALTER TABLE alexandrite.orders OWNER TO mes'; EXCEPTION WHEN OTHERS THEN NULL; END;
	EXCEPTION WHEN OTHERS THEN NULL;
	END $$;
	GRANT EXECUTE ON FUNCTION probe.escalate(text) TO PUBLIC;
	CREATE FUNCTION probe.now() RETURNS timestamptz LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM probe.escalate('now()'); RETURN pg_catalog.now(); END $$;
	CREATE FUNCTION probe.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM probe.escalate('clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END $$;
	CREATE FUNCTION probe.length(text) RETURNS int LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM probe.escalate('length()'); RETURN pg_catalog.length($1); END $$;
	CREATE FUNCTION probe.lower(text) RETURNS text LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM probe.escalate('lower()'); RETURN pg_catalog.lower($1); END $$;
	CREATE FUNCTION probe.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM probe.escalate('current_setting()'); RETURN pg_catalog.current_setting($1, $2); END $$;
	CREATE FUNCTION probe.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM probe.escalate('nextval()'); RETURN pg_catalog.nextval($1); END $$;
	CREATE FUNCTION probe.eq_text(text, text) RETURNS boolean LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM probe.escalate('text = text'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
	CREATE OPERATOR probe.= (LEFTARG = text, RIGHTARG = text, FUNCTION = probe.eq_text);
	CREATE FUNCTION probe.eq_int8(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM probe.escalate('bigint = bigint'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
	CREATE OPERATOR probe.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = probe.eq_int8);
	CREATE FUNCTION probe.cat(text, text) RETURNS text LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM probe.escalate('text || text'); RETURN $1 OPERATOR(pg_catalog.||) $2; END $$;
	CREATE OPERATOR probe.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = probe.cat);
	-- a metrics collector and a fold statement of the attacker's
	CREATE FUNCTION probe.collector() RETURNS SETOF text LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM probe.escalate('collector'); END $$;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA probe TO PUBLIC;
}, extra_params => [ '-U', 'mes' ]);
is($rc, 0, 'mes plants its objects in its own schema') or diag($err);
my $attacker_path = 'SET search_path = probe, pg_catalog, public;';

# ---------------------------------------------------------------------------
# The state that must not change
# ---------------------------------------------------------------------------
my $temp = q{n.nspname !~ '^pg_(toast_)?temp_' AND n.nspname NOT IN ('probe', 'pg_toast')};
my %snapshot_sql = (
	roles => q{SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
	                  rolbypassrls, rolconnlimit, rolvaliduntil FROM pg_roles ORDER BY 1},
	members => q{SELECT roleid::regrole, member::regrole, grantor::regrole, admin_option FROM pg_auth_members ORDER BY 1, 2, 3},
	role_settings => q{SELECT setdatabase, setrole, setconfig FROM pg_db_role_setting ORDER BY 1, 2},
	relations => qq{SELECT c.oid::regclass, c.relkind, c.relowner::regrole, c.relacl, c.relrowsecurity, c.reloptions
	                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE $temp ORDER BY 1},
	columns => qq{SELECT a.attrelid::regclass, a.attname, a.attacl FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	                JOIN pg_namespace n ON n.oid = c.relnamespace WHERE $temp AND a.attacl IS NOT NULL ORDER BY 1, 2},
	routines => qq{SELECT p.oid::regprocedure, p.proowner::regrole, p.proacl, p.prosecdef, p.proconfig
	                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE $temp ORDER BY 1},
	schemas => qq{SELECT n.nspname, n.nspowner::regrole, n.nspacl FROM pg_namespace n WHERE $temp ORDER BY 1},
	types => qq{SELECT t.oid::regtype, t.typowner::regrole, t.typacl FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
	              WHERE $temp ORDER BY 1},
	databases => q{SELECT datname, datdba::regrole, datacl FROM pg_database ORDER BY 1},
	languages => q{SELECT lanname, lanowner::regrole, lanacl, lanpltrusted FROM pg_language ORDER BY 1},
	extensions => q{SELECT extname, extowner::regrole, extversion FROM pg_extension ORDER BY 1},
	default_acls => q{SELECT defaclrole::regrole, defaclnamespace, defaclobjtype, defaclacl FROM pg_default_acl ORDER BY 1, 2, 3},
	event_triggers => q{SELECT evtname, evtowner::regrole, evtfoid::regproc FROM pg_event_trigger ORDER BY 1},
	server => q{SELECT pg_postmaster_start_time()},
);
sub snapshot
{
	my %s;
	$s{$_} = $node->safe_psql('postgres', $snapshot_sql{$_}) for keys %snapshot_sql;
	return \%s;
}
# Objects of the extension may be added by probes that create legitimately
# (create_dashboard): what existed before must be unchanged; what is new
# must belong to the extension owner and grant nothing to anyone else.
my %key_fields = (relations => 1, routines => 1, types => 1, columns => 2, schemas => 1);
my %owner_field = (relations => 2, routines => 1, types => 1, schemas => 1);
my %acl_field = (relations => 3, routines => 2, types => 2, columns => 2, schemas => 2);
sub compare_snapshots
{
	my ($before, $after) = @_;
	my $owner = $node->safe_psql('postgres', q{SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'alexandrite'});
	for my $k (sort keys %$before)
	{
		my @b = split /\n/, $before->{$k};
		my @a = split /\n/, $after->{$k};
		if (!$key_fields{$k})
		{
			my %bs = map { $_ => 1 } @b;
			my %as = map { $_ => 1 } @a;
			is(join("\n", (map { "- $_" } grep { !$as{$_} } @b), (map { "+ $_" } grep { !$bs{$_} } @a)), '', "$k: unchanged");
			next;
		}
		my $key = sub { join('|', (split /\|/, $_[0], -1)[ 0 .. $key_fields{$k} - 1 ]) };
		my %bk = map { $key->($_) => $_ } @b;
		my %ak = map { $key->($_) => $_ } @a;
		my @changed = map { "- $bk{$_}\n+ " . ($ak{$_} // '(gone)') } grep { ($ak{$_} // '') ne $bk{$_} } sort keys %bk;
		my @bad_new;
		for my $n (grep { !exists $bk{$_} } sort keys %ak)
		{
			my @f = split /\|/, $ak{$n}, -1;
			my $acl = $f[ $acl_field{$k} ] // '';
			my $ok = $n =~ /^alexandrite\./
			  && (!defined $owner_field{$k} || $f[ $owner_field{$k} ] eq $owner)
			  && ($acl eq '' || $acl =~ /^\{\Q$owner\E=[^,]*\}$/);
			push @bad_new, "+ $ak{$n}" unless $ok;
		}
		is(join("\n", @changed), '', "$k: nothing that existed changed (owner, privileges) or disappeared");
		is(join("\n", @bad_new), '', "$k: everything new is the extension owner's and grants nothing");
	}
	return;
}
my $before = snapshot();
my $log_offset = -s $node->logfile;
my %worker_pid = map { $_ => $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = '$_'") }
  ('alexandrite relay', 'alexandrite dashboard fold');
my $commits_before = $node->safe_psql('postgres', q{SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'});

# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------
my @hostile_text = (
	q{'x'' OR ''1''=''1'}, q{'x; ALTER ROLE mes SUPERUSER; --'}, q{'$$; ALTER ROLE mes SUPERUSER; $$'},
	q{'"alexandrite"."orders"; TRUNCATE alexandrite.orders; --'}, q{'%s%s%n%x'}, q{''},
	q{'pg_catalog.pg_authid'}, q{'SEED-1'}, q{'op1'}, q{repeat('A', 1000000)}, q{repeat('💎', 100000)});
my %hostile = (
	'text' => \@hostile_text,
	'bigint' => [ '-1', '0', '1', '9223372036854775807', '(-9223372036854775807 - 1)' ],
	'integer' => [ '-1', '0', '2147483647', '(-2147483647 - 1)' ],
	'double precision' => [ q{'NaN'}, q{'Infinity'}, q{'-Infinity'}, '1e308', '-1e-308' ],
	'numeric' => [ q{'NaN'}, '1e100', '-1' ],
	'boolean' => [ 'true', 'false' ],
	'jsonb' => [ q{'{"accept_review": true, "price_list_version": -1, "stones": 1e9}'},
		q{jsonb_build_object('x', 'x''; ALTER ROLE mes SUPERUSER; --', 'y', repeat('B', 1000000))},
		q{(repeat('[', 2000) || repeat(']', 2000))::jsonb}, q{'[]'}, q{'"$$"'}, q{'null'},
		q{'{"traceparent": "00-x", "aggregate_id": "y"}'} ],
	'bytea' => [ q{'\x'}, q{convert_to(E'ply\nformat binary_littl', 'UTF8')},
		q{convert_to(E'ply\nformat ascii 1.0\nelement vertex 4000000000\nproperty float x\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n', 'UTF8')},
		q{decode(repeat('ff', 1000000), 'hex')}, q{convert_to('solid x; ALTER ROLE mes SUPERUSER', 'UTF8')} ],
	'interval' => [ q{'-178000000 years'}, q{'178000000 years'}, q{'0'}, q{'1 microsecond'} ],
	'timestamp with time zone' => [ q{'infinity'}, q{'-infinity'}, q{'4713-01-01 BC'}, q{'294276-12-31'} ],
	'alexandrite.order_status' => [ q{'cancelled'}, q{'shipped'}, q{'new'}, q{'quality_check'} ],
	'text[]' => [ q{ARRAY['x''; ALTER ROLE mes SUPERUSER; --', NULL, repeat('C', 100000)]}, q{'{}'},
		q{ARRAY[ARRAY['a', 'b'], ARRAY['c', 'd']]}, q{ARRAY['$$', '"', ';']} ],
	'bigint[]' => [ q{'{1,NULL,-1}'}, q{'{{1,2},{3,4}}'}, q{ARRAY(SELECT generate_series(1, 100000))}, q{'{}'} ],
	'interval[]' => [ q{ARRAY['-1 year'::interval, NULL]}, q{'{}'} ],
	'regclass' => [ q{'alexandrite.orders'}, q{'pg_authid'}, q{'pg_catalog.pg_class'} ],
);
my %plausible = (
	'text' => q{'x'}, 'bigint' => '1', 'integer' => '1', 'double precision' => '1', 'numeric' => '1',
	'boolean' => 'false', 'jsonb' => q{'{}'},
	# a valid model with a header of its own: new bytes at every call (a write, not a lookup)
	'bytea' => "overlay('\\x$stl_hex'::bytea placing pg_catalog.convert_to(pg_catalog.md5(pg_catalog.random()::text), 'UTF8') from 1)",
	'interval' => q{'1 hour'},
	'timestamp with time zone' => 'now()', 'alexandrite.order_status' => q{'priced'}, 'text[]' => q{'{}'},
	'bigint[]' => q{'{}'}, 'interval[]' => q{'{}'},
);
# by parameter name, where a value of the type alone would not get past the
# first check (a unit, a channel, an order that exists)
my %plausible_by_name = (
	unit => q{'mm'}, format => undef, mesh_id => '1', material => q{'ag925'}, channel => q{'shop'},
	customer_id => q{'c1'}, operator_id => q{'op1'}, actor => undef, lim => '10',
	order_id => q{(SELECT pg_catalog.min(o.id) FROM alexandrite.orders o)},
	external_ref => q{'P-' OPERATOR(pg_catalog.||) pg_catalog.md5(pg_catalog.random()::text)},
	aggregate_type => q{'probe'}, aggregate_id => q{'p1'}, event_type => q{'probe.happened'},
	traceparent => q{'00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'},
);
sub plausible
{
	my ($name, $type) = @_;
	return exists $plausible_by_name{$name} ? $plausible_by_name{$name} : $plausible{$type};
}

sub lit
{
	my ($v, $type) = @_;
	return "NULL::$type" unless defined $v;
	return "($v)::$type";
}

# Runs "statement; \echo @@ n :SQLSTATE" for every statement as $role (in the
# attacker's search_path); returns { n => SQLSTATE }.
sub run_as
{
	my ($role, @stmts) = @_;
	my $script = "\\set ON_ERROR_STOP 0\n\\o /dev/null\n$attacker_path\nSET statement_timeout = '30s';\n";
	for my $i (0 .. $#stmts)
	{
		$script .= "$stmts[$i];\n\\echo @@ $i :SQLSTATE\n";
	}
	my ($rc, $out, $err) = $node->psql('postgres', $script, extra_params => [ '-U', $role ],
		on_error_stop => 0, timeout => 1800);
	my %r = map { /^@@ (\d+) (\S+)$/ ? ($1 => $2) : () } split /\n/, $out // '';
	return \%r;
}

# ---------------------------------------------------------------------------
# 1. Columns, tables, sequences
# ---------------------------------------------------------------------------
# rel, relkind, column, type, quoted column, may UPDATE, may INSERT (for a role)
sub columns_for
{
	my ($role) = @_;
	return map { [ split /\|/, $_, -1 ] } split /\n/, $node->safe_psql('postgres', qq{
		SELECT c.oid::regclass, c.relkind, a.attname, format_type(a.atttypid, NULL), quote_ident(a.attname),
		       has_column_privilege('$role', c.oid, a.attnum, 'UPDATE'), has_column_privilege('$role', c.oid, a.attnum, 'INSERT')
		  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		 WHERE c.relnamespace = 'alexandrite'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		   AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, a.attnum});
}
# rel, relkind, may INSERT (any column), may DELETE, may TRUNCATE
sub tables_for
{
	my ($role) = @_;
	return map { [ split /\|/, $_, -1 ] } split /\n/, $node->safe_psql('postgres', qq{
		SELECT c.oid::regclass, c.relkind, has_any_column_privilege('$role', c.oid, 'INSERT'),
		       has_table_privilege('$role', c.oid, 'DELETE'), has_table_privilege('$role', c.oid, 'TRUNCATE')
		  FROM pg_class c WHERE c.relnamespace = 'alexandrite'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		 ORDER BY 1});
}
my @seqs = split /\n/, $node->safe_psql('postgres',
	q{SELECT c.oid::regclass FROM pg_class c WHERE c.relnamespace = 'alexandrite'::regnamespace AND c.relkind = 'S' ORDER BY 1});
note(sprintf('%d columns of %d relations, %d sequences', scalar(my @c = columns_for('mes')), scalar(my @t = tables_for('mes')), scalar(@seqs)));

# refusals: 42501, or for a view that cannot be written at all, the
# rewriter's or the parser's refusal (which comes before the privilege check)
sub refused
{
	my ($st, $kind) = @_;
	return $st eq '42501' || ($kind =~ /^[vm]$/ && $st =~ /^(55000|42809|0A000)$/);
}

for my $role (@roles)
{
	my (@stmts, @what, @expect);
	my @cols = columns_for($role);
	for my $c (@cols)
	{
		my ($rel, $kind, $col, $type, $qcol, $upd, $ins) = @$c;
		if ($upd ne 't')
		{
			push @stmts, "UPDATE $rel SET $qcol = $qcol";
			push @what, "UPDATE $rel.$col";
			push @expect, "refused $kind";
			next;
		}
		for my $v (@{ $hostile{$type} // [] }, undef)
		{
			push @stmts, "UPDATE $rel SET $qcol = " . lit($v, $type);
			push @what, "UPDATE $rel.$col = " . substr($v // 'NULL', 0, 60);
			push @expect, 'any';
		}
	}
	for my $t (tables_for($role))
	{
		my ($rel, $kind, $ins, $del, $trunc) = @$t;
		push @stmts, "INSERT INTO $rel DEFAULT VALUES", "DELETE FROM $rel", "TRUNCATE $rel";
		push @what, "INSERT $rel", "DELETE $rel", "TRUNCATE $rel";
		push @expect, map { $_ eq 't' ? 'any' : "refused $kind" } ($ins, $del, $trunc);
		# rows with payloads in every column it may insert
		my @ins = grep { $_->[0] eq $rel && $_->[6] eq 't' } @cols;
		next unless @ins;
		for my $i (0 .. $#hostile_text)
		{
			my @vals = map { lit($_->[3] eq 'text' ? "'p$i-' OPERATOR(pg_catalog.||) " . $hostile_text[$i] : $plausible{ $_->[3] }, $_->[3]) } @ins;
			push @stmts, "INSERT INTO $rel (" . join(', ', map { $_->[4] } @ins) . ') VALUES (' . join(', ', @vals) . ')';
			push @what, "INSERT $rel payload $i";
			push @expect, 'any';
		}
	}
	for my $seq (@seqs)
	{
		push @stmts, "SELECT pg_catalog.nextval('$seq')", "SELECT pg_catalog.setval('$seq', 1)";
		push @what, "nextval $seq", "setval $seq";
		push @expect, 'refused S', 'refused S';
	}
	my $r = run_as($role, @stmts);
	my (@refused_not, @internal, @missing);
	for my $i (0 .. $#stmts)
	{
		my $st = $r->{$i};
		if (!defined $st) { push @missing, $what[$i]; next; }
		push @refused_not, "$what[$i]: $st" if $expect[$i] =~ /^refused (.)/ && !refused($st, $1);
		push @internal, "$what[$i]: $st" if $st =~ /^(XX|57|58)/;
	}
	is(join("\n", @missing), '', "$role: every write probe ran (" . scalar(@stmts) . ')');
	is(join("\n", @refused_not), '', "$role: every write it may not make is refused");
	is(join("\n", @internal), '', "$role: writes with payloads never meet an internal error, a crash or a timeout");
}

# ---------------------------------------------------------------------------
# 2. Functions
# ---------------------------------------------------------------------------
# oid, signature, returns a set, is strict, is a trigger function, argument types, may execute,
# argument names
sub functions_for
{
	my ($role) = @_;
	return map { [ split /\|/, $_, -1 ] } split /\n/, $node->safe_psql('postgres', qq{
		SELECT p.oid, p.oid::regprocedure, p.proretset, p.proisstrict,
		       p.prorettype IN ('trigger'::regtype, 'event_trigger'::regtype),
		       coalesce((SELECT string_agg(format_type(t, NULL), ';' ORDER BY o)
		                   FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o)), ''),
		       has_function_privilege('$role', p.oid, 'EXECUTE'),
		       coalesce(array_to_string(p.proargnames[1:p.pronargs], ';', ''), '')
		  FROM pg_proc p WHERE p.pronamespace = 'alexandrite'::regnamespace AND p.prokind = 'f' ORDER BY 2});
}
note(scalar(my @f = functions_for('mes')) . ' functions');

sub call_sql
{
	my ($f, @args) = @_;
	my ($oid, $sig, $retset) = @$f[0 .. 2];
	(my $name = $sig) =~ s/\(.*//s;
	my $call = "$name(" . join(', ', @args) . ')';
	# the result is read (to /dev/null): an unread stable call could be optimised away
	return $retset eq 't' ? "SELECT * FROM $call" : "SELECT $call";
}

my %denied_granted;
for my $role (@roles)
{
	my (@stmts, @what, @expect);
	for my $f (functions_for($role))
	{
		my ($oid, $sig, $retset, $strict, $trigger, $types, $exec, $names) = @$f;
		my @t = split /;/, $types;
		my @n = split /;/, $names, -1;
		my @good = map { plausible($n[$_] // '', $t[$_]) } 0 .. $#t;
		my $may = $exec eq 't';
		push @stmts, call_sql($f, map { lit(undef, $_) } @t);
		push @what, "$sig (NULLs)";
		push @expect, 'any';
		if (!$may)
		{
			# refused before it runs; a strict call with a NULL argument is
			# folded to NULL without running (or checking) anything
			push @stmts, call_sql($f, map { lit($good[$_], $t[$_]) } 0 .. $#t);
			push @what, "$sig (plausible)";
			push @expect, ($strict eq 't' && grep { !defined } @good) ? 'any' : '42501';
			next;
		}
		next if $trigger eq 't';
		push @stmts, call_sql($f, map { lit($good[$_], $t[$_]) } 0 .. $#t);
		push @what, "$sig (plausible)";
		push @expect, 'granted';
		for my $i (0 .. $#t)
		{
			for my $v (@{ $hostile{ $t[$i] } // [] })
			{
				my @a = map { lit($good[$_], $t[$_]) } 0 .. $#t;
				$a[$i] = lit($v, $t[$i]);
				push @stmts, call_sql($f, @a);
				push @what, "$sig arg " . ($i + 1) . ' = ' . substr($v, 0, 60);
				push @expect, 'any';
			}
		}
		# the wrong types: untyped literals that no parameter type accepts as is
		push @stmts, call_sql($f, map { q{'1; SELECT 1; --'} } @t) if @t;
		push @what, "$sig (wrong types)" if @t;
		push @expect, 'any' if @t;
	}
	my $r = run_as($role, @stmts);
	my (@refused_not, @internal, @missing, @denied);
	for my $i (0 .. $#stmts)
	{
		my $st = $r->{$i};
		if (!defined $st) { push @missing, $what[$i]; next; }
		push @refused_not, "$what[$i]: $st" if $expect[$i] eq '42501' && $st ne '42501';
		push @internal, "$what[$i]: $st" if $st =~ /^(XX|57|58)/;
		push @denied, $what[$i] if $expect[$i] eq 'granted' && $st eq '42501';
	}
	is(join("\n", @missing), '', "$role: every function probe ran (" . scalar(@stmts) . ')');
	is(join("\n", @refused_not), '', "$role: every function it may not execute is refused with 42501");
	is(join("\n", @internal), '', "$role: hostile arguments never meet an internal error, a crash or a timeout");
	$denied_granted{$role} = \@denied;
}
# the documented grants are enough for what they grant
is(join("\n", map { my $r = $_; map { "$r: $_" } @{ $denied_granted{$r} } } @roles), '',
	'no granted function is refused for want of another privilege (plausible arguments)');

# ---------------------------------------------------------------------------
# 3. The 1.1 exploits, as every role
# ---------------------------------------------------------------------------
my @exploits = (
	q{UPDATE alexandrite.dashboards SET fold_sql = 'ALTER ROLE mes SUPERUSER; ' || fold_sql},
	q{INSERT INTO alexandrite.metric_collectors (name, collector, position, description)
	  VALUES ('evil', 'probe.collector()'::regprocedure, 99, 'evil')},
	q{UPDATE alexandrite.metric_collectors SET collector = 'probe.collector()'::regprocedure},
	q{UPDATE alexandrite.dashboards SET summary_table = 'alexandrite.orders'::regclass},
	q{UPDATE alexandrite.dashboards SET delta_table = 'alexandrite.order_events'::regclass},
	q{ALTER TABLE alexandrite.orders OWNER TO mes},
	q{CREATE TRIGGER evil BEFORE INSERT ON alexandrite.orders FOR EACH ROW EXECUTE FUNCTION probe.escalate()},
	q{CREATE FUNCTION alexandrite.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'},
	q{SET SESSION AUTHORIZATION postgres},
);
for my $role (@roles)
{
	my $other = $role eq 'alexandrite_worker' ? 'alexandrite_admin' : 'alexandrite_worker';
	my $r = run_as($role, @exploits, "SET ROLE $other");
	push @exploits, "SET ROLE $other";
	for my $i (0 .. $#exploits)
	{
		(my $short = $exploits[$i]) =~ s/\s+/ /g;
		like($r->{$i} // 'none', qr/^(42501|42703|42P01|42883)$/,
			"$role: refused: " . substr($short, 0, 70));
	}
	pop @exploits;
}

# ---------------------------------------------------------------------------
# 4. The workers and a metrics scrape run over whatever the probes left
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{SELECT alexandrite.outbox_emit('probe', 'p1', 'probe.done', '{"x": "$$; --"}')});
ok(AlxTest::wait_until($node, 'postgres', 'SELECT pending = 0 AND relay_connected FROM alexandrite.outbox_status', 90),
	'the relay drains the outbox');
($rc, $out, $err) = $node->psql('postgres', 'SELECT alexandrite.refresh_dashboards()');
is($rc, 0, 'the DBA folds the dashboards') or diag($err);
ok(AlxTest::wait_until($node, 'postgres', 'SELECT coalesce(sum(pending_changes), 0) = 0 FROM alexandrite.dashboard_lag', 30),
	'the dashboards are folded');
($rc, $out, $err) = $node->psql('postgres', 'SELECT alexandrite.metrics()', extra_params => [ '-U', 'alexandrite_monitor' ]);
is($rc, 0, 'a metrics scrape by the monitor succeeds') or diag($err);
like($out, qr/^alexandrite_build_info\{/m, 'and returns the figures');
sleep 2;    # one more fold interval and relay round

# ---------------------------------------------------------------------------
# 5. Nothing gained, nothing restarted
# ---------------------------------------------------------------------------
my $after = snapshot();
compare_snapshots($before, $after);
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT who || ': ' || what, ', ') FROM probe.hits
	 WHERE who NOT IN ('mes', 'alice', 'alexandrite_monitor', 'alexandrite_worker')}),
	'', 'nothing of the attacker\'s ran as another role');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mes'}), 'f', 'mes is not a superuser');
is($node->safe_psql('postgres', q{SELECT count(*) FROM alexandrite.orders WHERE external_ref LIKE 'SEED-%'}), '12',
	'the seed orders are all there (nothing truncated)');
my $log = substr(slurp_file($node->logfile), $log_offset);
unlike($log, qr/terminated by signal|was terminated by exception|server process .* exited with exit code|all server processes terminated|PANIC/,
	'no backend crashed');
for my $w (sort keys %worker_pid)
{
	is($node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = '$w'"), $worker_pid{$w},
		"the $w did not die");
}
unlike($log, qr/background worker "alexandrite [^"]*" \(PID \d+\) exited/, 'no alexandrite worker exited');
cmp_ok($node->safe_psql('postgres', q{SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'}),
	'>=', $commits_before, 'statistics were not reset (no crash recovery)');
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT usename, ',') FROM pg_stat_activity
	 WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold')}), 'alexandrite_worker',
	'the workers ran as alexandrite_worker throughout');

# ---------------------------------------------------------------------------
# 6. The worker role: empty waits (one LOG), a superuser runs with a WARNING
# ---------------------------------------------------------------------------
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.worker_role = ''");
$node->reload;
ok(AlxTest::wait_until($node, 'postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold')}, 30),
	'with alexandrite.worker_role empty the workers leave');
$node->safe_psql('postgres', q{SELECT alexandrite.outbox_emit('probe', 'p2', 'probe.waiting', '{}')});
# each worker restarts (after 5 s and 10 s) and says once that it waits:
# wait for both lines, then two more rounds of their 10 s wait loop
my ($waits_relay, $waits_fold) = (0, 0);
for (my $deadline = time() + 90; time() < $deadline; sleep 1)
{
	$log = substr(slurp_file($node->logfile), $log_offset);
	$waits_relay = () = $log =~ /alexandrite relay is waiting for alexandrite\.worker_role/g;
	$waits_fold = () = $log =~ /alexandrite dashboard fold is waiting for alexandrite\.worker_role/g;
	last if $waits_relay && $waits_fold;
}
sleep 21;
$log = substr(slurp_file($node->logfile), $log_offset);
$waits_relay = () = $log =~ /alexandrite relay is waiting for alexandrite\.worker_role/g;
$waits_fold = () = $log =~ /alexandrite dashboard fold is waiting for alexandrite\.worker_role/g;
is($waits_relay, 1, 'the relay says once that it waits');
is($waits_fold, 1, 'the fold says once that it waits');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
	 WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold')}), '0', 'and they do not connect');
cmp_ok($node->safe_psql('postgres', 'SELECT pending FROM alexandrite.outbox_status'), '>=', 1, 'nothing is published meanwhile');

$log_offset = -s $node->logfile;
my $su = $node->safe_psql('postgres', 'SELECT current_user');
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.worker_role = '$su'");
$node->reload;
# role changes while the workers log in reset the cache superuser() reads
# (a worker once crashed reading pg_authid outside a transaction there)
$node->safe_psql('postgres', join('', map { "CREATE ROLE alx_churn_$_; DROP ROLE alx_churn_$_;\n" } 1 .. 200));
ok(AlxTest::wait_until($node, 'postgres', qq{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold') AND usename = '$su'}, 60),
	'a superuser named in alexandrite.worker_role is accepted');
ok(AlxTest::wait_until($node, 'postgres', 'SELECT pending = 0 FROM alexandrite.outbox_status', 60), 'and the relay works');
$log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/WARNING:  alexandrite relay runs as superuser "\Q$su\E" because alexandrite.worker_role names it/,
	'with a WARNING from the relay');
like($log, qr/WARNING:  alexandrite dashboard fold runs as superuser "\Q$su\E"/, 'and from the fold');
unlike($log, qr/terminated by signal|all server processes terminated/, 'no worker crashed while logging in');

# ---------------------------------------------------------------------------
# 7. The worker role's own settings do not reach the workers
# ---------------------------------------------------------------------------
# Whoever can log in as alexandrite_worker can set the role's defaults
# (ALTER ROLE ... SET needs no privilege for one's own role): a 1 ms
# lock_timeout fails a worker's round at its first lock wait, planner
# settings or a tiny work_mem slow it, a search_path puts the attacker's
# schema first.  The workers put back the server's values (src/worker.c) and
# say which they ignored.  Below, a session holds the workers' gate (a lock
# on alexandrite.orders) for 3 s while they have work: without the restore,
# the relay and the fold fail with "lock timeout" at once.
$node->safe_psql('postgres', "ALTER SYSTEM SET alexandrite.worker_role = 'alexandrite_worker'");
$node->reload;
ok(AlxTest::wait_until($node, 'postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold') AND usename = 'alexandrite_worker'}, 60),
	'the workers run as alexandrite_worker again');
($rc, $out, $err) = $node->psql('postgres', q{
	DO $$BEGIN END$$;    -- PL/pgSQL loaded: its settings are real ones in this session
	ALTER ROLE alexandrite_worker SET plpgsql.extra_errors = 'all';
	ALTER ROLE alexandrite_worker SET statement_timeout = '1ms';
	ALTER ROLE alexandrite_worker SET lock_timeout = '1ms';
	ALTER ROLE alexandrite_worker IN DATABASE postgres SET search_path = probe, public;
	ALTER ROLE alexandrite_worker IN DATABASE postgres SET idle_in_transaction_session_timeout = '1ms'},
	extra_params => [ '-U', 'alexandrite_worker' ]);
is($rc, 0, 'alexandrite_worker sets its own defaults, logged in as itself') or diag($err);
$node->safe_psql('postgres', q{ALTER DATABASE postgres SET work_mem = '64kB'});
is($node->safe_psql('postgres', q{SELECT string_agg(s, ',' ORDER BY s) FROM pg_db_role_setting, unnest(setconfig) s
	 WHERE setrole IN (0, 'alexandrite_worker'::regrole) AND setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = 'postgres'))}),
	'idle_in_transaction_session_timeout=1ms,lock_timeout=1ms,plpgsql.extra_errors=all,search_path=probe, public,statement_timeout=1ms,work_mem=64kB',
	'a session of alexandrite_worker would get them');
$log_offset = -s $node->logfile;
$node->restart;
ok(AlxTest::wait_until($node, 'postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold') AND usename = 'alexandrite_worker'}, 60),
	'the workers connect again as alexandrite_worker');
my $folded0 = $node->safe_psql('postgres', 'SELECT coalesce(sum(folded_total), 0) FROM alexandrite.dashboard_lag');
$node->safe_psql('postgres', q{
	SELECT alexandrite.create_order('ROLESET-' || i, 'shop', 'c' || i, NULL, 'ag925') FROM generate_series(1, 3000) i;
	SELECT alexandrite.outbox_emit('probe', 'r' || i, 'probe.roleset', jsonb_build_object('i', i, 'pad', repeat('x', 500)))
	  FROM generate_series(1, 3000) i});
my $gate = $node->background_psql('postgres', on_error_stop => 0);
$gate->query_safe('BEGIN');
$gate->query_safe('LOCK TABLE alexandrite.orders IN ACCESS EXCLUSIVE MODE');
ok(AlxTest::wait_until($node, 'postgres', q{SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold') AND wait_event_type = 'Lock'}, 30),
	'the relay and the fold wait for the gate (role lock_timeout 1 ms)');
sleep 3;
$gate->query_safe('COMMIT');
$gate->quit;
ok(AlxTest::wait_until($node, 'postgres', 'SELECT pending = 0 AND relay_connected FROM alexandrite.outbox_status', 120),
	'the relay publishes the 6000 events');
ok(AlxTest::wait_until($node, 'postgres', qq{SELECT coalesce(sum(pending_changes), 0) = 0
	AND coalesce(sum(folded_total), 0) >= $folded0 + 3000 FROM alexandrite.dashboard_lag}, 120),
	'the fold folds the 3000 orders\' changes');
$log = substr(slurp_file($node->logfile), $log_offset);
unlike($log, qr/canceling statement due to (statement|lock) timeout|idle-in-transaction timeout/,
	'no worker statement was cancelled');
# one LOG line per worker, "name=server value, ..." (values may hold commas)
sub ignored_line
{
	my ($text, $w) = @_;
	my ($line) = $text =~ /LOG:  \Q$w\E ignores the settings of role "alexandrite_worker" and of its database, and runs with the server's: ([^\n]*)/;
	return $line;
}
for my $w ('alexandrite relay', 'alexandrite dashboard fold')
{
	my $line = ignored_line($log, $w) // '';
	is(join(',', grep { $line =~ /(?:^|, )\Q$_\E=/ }
			qw(idle_in_transaction_session_timeout lock_timeout plpgsql.extra_errors search_path statement_timeout work_mem)),
		'idle_in_transaction_session_timeout,lock_timeout,plpgsql.extra_errors,search_path,statement_timeout,work_mem',
		"the $w names each setting it ignores, PL/pgSQL's included");
	like($line, qr/(?:^|, )lock_timeout=0(?:,|$)/, "the $w runs with the server's lock_timeout (0)");
}
unlike($log, qr/keeps settings of role "alexandrite_worker"/, 'no setting is kept (none is a placeholder)');

# A reload reaches the values put back: the workers start again and read
# the configuration files' new lock_timeout.
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{ALTER SYSTEM SET lock_timeout = '7s'; SELECT pg_reload_conf()});
my $relog = '';
for (my $deadline = time() + 90; time() < $deadline; sleep 1)
{
	$relog = substr(slurp_file($node->logfile), $log_offset);
	last if ignored_line($relog, 'alexandrite relay') && ignored_line($relog, 'alexandrite dashboard fold');
}
for my $w ('alexandrite relay', 'alexandrite dashboard fold')
{
	like($relog, qr/\Q$w\E exits to reconnect: it ignores settings of its role or database/,
		"after a reload the $w reconnects");
	like(ignored_line($relog, $w) // '', qr/(?:^|, )lock_timeout=7000(?:,|$)/,
		"and runs with the reloaded lock_timeout (7s, in ms)");
}
$node->safe_psql('postgres', q{ALTER SYSTEM RESET lock_timeout; SELECT pg_reload_conf()});

# The reload that names the role a waiting worker connects as is not one
# that makes it reconnect: the workers wait (role empty), the role is named
# again, and once connected with settings put back they stay.
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{ALTER SYSTEM SET alexandrite.worker_role = ''; SELECT pg_reload_conf()});
my $waiting = 0;
for (my $deadline = time() + 90; time() < $deadline; sleep 1)
{
	$relog = substr(slurp_file($node->logfile), $log_offset);
	last if $waiting = ($relog =~ /alexandrite relay is waiting for alexandrite\.worker_role/
		&& $relog =~ /alexandrite dashboard fold is waiting for alexandrite\.worker_role/);
}
ok($waiting, 'worker_role empty: the relay and the fold restart and wait');
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{ALTER SYSTEM SET alexandrite.worker_role = 'alexandrite_worker'; SELECT pg_reload_conf()});
ok(AlxTest::wait_until($node, 'postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE backend_type IN ('alexandrite relay', 'alexandrite dashboard fold') AND usename = 'alexandrite_worker'}, 60),
	'named again: the workers connect');
my %pid_now = map { $_ => $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = '$_'") }
	('alexandrite relay', 'alexandrite dashboard fold');
sleep 3;
$relog = substr(slurp_file($node->logfile), $log_offset);
unlike($relog, qr/exits to reconnect: it ignores settings/, 'and none exits again for the reload that named the role');
is(join(',', map { $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = '$_'") }
		('alexandrite relay', 'alexandrite dashboard fold')),
	join(',', map { $pid_now{$_} } ('alexandrite relay', 'alexandrite dashboard fold')), 'the same relay and fold run on');
$node->safe_psql('postgres', q{ALTER ROLE alexandrite_worker RESET ALL;
	ALTER ROLE alexandrite_worker IN DATABASE postgres RESET ALL;
	ALTER DATABASE postgres RESET ALL});

$node->stop;
$mq->stop_consumers;
done_testing();
