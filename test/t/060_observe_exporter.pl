# docs/prometheus-postgres-exporter.yml, for real: Debian's
# prometheus-postgres-exporter runs against a test cluster as a role that may
# only EXECUTE alexandrite.metric_samples() (no pg_monitor, no SELECT on any
# table), we scrape its HTTP endpoint, and its alexandrite_* series are
# exactly those of alexandrite.metrics(): the same names, labels and values,
# none missing, none more, no NaN.
use strict;
use warnings FATAL => 'all';

use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $exporter = '/usr/bin/prometheus-postgres-exporter';
# never a skip: a missing exporter is an install bug (scripts/install-deps
# installs prometheus-postgres-exporter)
if (!-x $exporter)
{
	fail("$exporter is installed");
	done_testing();
	exit 1;
}

# no fold worker: the dashboard figures must not move between the scrape
# and the metrics() they are compared with (the test folds once, below)
my $node = AlxTest::new_node('exporter', conf => 'alexandrite.fold_interval = 0');
$node->start;
AlxTest::install($node, 'postgres');
$node->safe_psql('postgres', q{
	-- the narrowest grants the exporter and a scrape of metrics() need
	CREATE ROLE alx_monitor LOGIN;
	GRANT USAGE ON SCHEMA alexandrite TO alx_monitor;
	GRANT EXECUTE ON FUNCTION alexandrite.metric_samples(text[]), alexandrite.metrics() TO alx_monitor;
	INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op1', 'Ana', 3), ('op "2"', 'Ben', 2);
	SELECT alexandrite.create_order('X-' || i, (ARRAY['shop','b2b_api','crm'])[1 + i % 3], 'c' || i, NULL, NULL)
	  FROM generate_series(1, 12) i;
	SELECT alexandrite.set_status(id, 'priced') FROM alexandrite.orders WHERE id % 2 = 0;
	UPDATE alexandrite.orders SET operator_id = 'op1' WHERE id IN (2, 4);
	SELECT alexandrite.set_status(id, 'assigned') FROM alexandrite.orders WHERE id IN (2, 4);
	UPDATE alexandrite.orders SET sla_due_at = now() - interval '1 day' WHERE id = 4;
	UPDATE alexandrite.orders SET status_changed_at = now() - interval '3 days' WHERE id = 5;
	INSERT INTO alexandrite.meshes (id, sha256, filename, format, triangles, vertices, volume_mm3, area_mm2,
	                                size_x_mm, size_y_mm, size_z_mm, shells, watertight,
	                                boundary_edges, nonmanifold_edges, degenerate_triangles, analysis_ms)
	VALUES (1, sha256('x'), 'x.stl', 'stl', 12, 8, 1000, 600, 10, 10, 10, 1, true, 0, 0, 0, 42);
	SELECT alexandrite.create_order('XQ', 'shop', 'cq', 1, 'ag925');
	SELECT total FROM alexandrite.price_order((SELECT id FROM alexandrite.orders WHERE external_ref = 'XQ'));
});
$node->safe_psql('postgres', 'SELECT alexandrite.refresh_dashboards()');

my $queries = "$AlxTest::TOP/docs/prometheus-postgres-exporter.yml";
ok(-f $queries, 'the queries file is shipped in docs/');

# the exporter on a free loopback port, connected as the monitoring role
my $port = AlxTest::low_free_port();
my $dsn  = sprintf('host=%s port=%d user=alx_monitor dbname=postgres sslmode=disable', $node->host, $node->port);
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[ $exporter, "--extend.query-path=$queries", '--disable-default-metrics', '--disable-settings-metrics',
	  "--web.listen-address=127.0.0.1:$port" ],
	'>', \$out, '2>', \$err,
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn });

my $http = HTTP::Tiny->new(timeout => 10);
my $body = '';
for (my $i = 0; $i < 300; $i++)
{
	my $res = $http->get("http://127.0.0.1:$port/metrics");
	if ($res->{success} && $res->{content} =~ /^alexandrite_orders_in_status\{/m)
	{
		$body = $res->{content};
		last;
	}
	select(undef, undef, undef, 0.1);
}
isnt($body, '', 'the exporter answers on its HTTP endpoint with alexandrite series')
  or diag("exporter stderr:\n$err");

# samples as name => {labels => value}, without the exporter's server label
sub parse
{
	my ($text) = @_;
	my %s;
	for my $line (split /\n/, $text)
	{
		next if $line =~ /^#/ || $line eq '';
		my ($name, $labels, $value) = $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
		  or next;
		my @pairs = grep { !/^server=/ } ($labels // '') =~ /([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")/g;
		$s{$name}{ join(',', sort @pairs) } = $value;
	}
	return \%s;
}

my $got  = parse($body);
my $want_text = $node->safe_psql('postgres', 'SELECT alexandrite.metrics()', extra_params => [ '-U', 'alx_monitor' ]);
my $want = parse($want_text);

# figures that move with the clock are compared for presence only
my $clock = qr/^alexandrite_(metrics_collector_duration_seconds|orders_max_time_in_status_seconds|\w+_age_seconds)$/;
my ($missing, $differ, $seen) = (0, 0, 0);
for my $name (sort keys %$want)
{
	for my $labels (sort keys %{ $want->{$name} })
	{
		$seen++;
		my $g = $got->{$name}{$labels};
		if (!defined $g)
		{
			$missing++;
			diag("missing from the exporter: $name\{$labels\}");
		}
		elsif ($name !~ $clock && $g != $want->{$name}{$labels})
		{
			$differ++;
			diag("$name\{$labels\}: exporter $g, metrics() $want->{$name}{$labels}");
		}
	}
}
my ($extra, $nan) = (0, 0);
for my $name (sort grep { /^alexandrite_/ } keys %$got)
{
	for my $labels (sort keys %{ $got->{$name} })
	{
		if (!exists $want->{$name}{$labels})
		{
			$extra++;
			diag("exported but not in metrics(): $name\{$labels\} $got->{$name}{$labels}");
		}
		if ($got->{$name}{$labels} =~ /nan/i)
		{
			$nan++;
			diag("NaN from the exporter: $name\{$labels\}");
		}
	}
}
cmp_ok($seen, '>', 40, "metrics() has many series ($seen)");
is($missing, 0, 'every series of metrics() is exported under the same name and labels');
is($extra, 0, 'the exporter has no alexandrite series that metrics() has not');
is($nan, 0, 'no exported series is NaN');
is($differ,  0, 'with the same values');
unlike($want_text, qr/ NaN$/m, 'metrics() has no NaN either');

# against the base table, read by the superuser
for my $row (split /\n/, $node->safe_psql('postgres',
		q{SELECT status, channel, count(*) FROM alexandrite.orders GROUP BY 1, 2}))
{
	my ($status, $channel, $n) = split /\|/, $row;
	is($got->{alexandrite_orders_in_status}{qq{channel="$channel",status="$status"}}, $n,
		"orders in status $status on channel $channel: $n");
}
is($got->{alexandrite_operator_open_orders}{'operator="op1"'},    2, 'open orders of op1');
is($got->{alexandrite_operator_overdue_orders}{'operator="op1"'}, 1, 'overdue orders of op1');
is($got->{alexandrite_stuck_orders}{'status="new"'},              1, 'one stuck order');
is($got->{alexandrite_mesh_analysis_duration_seconds_bucket}{'le="0.05"'}, 1, 'the mesh histogram: one analysis within 50 ms');
is($got->{alexandrite_mesh_analysis_duration_seconds_count}{''}, 1, 'the mesh histogram count');
is($got->{alexandrite_quotes_total}{'currency="EUR",needs_review="false"'}, 1, 'one quote given');
is($got->{alexandrite_outbox_pending_messages}{''} + $got->{alexandrite_outbox_published_total}{''},
	$node->safe_psql('postgres', 'SELECT count(*) FROM alexandrite.outbox'), 'outbox: pending + published = emitted');
ok(exists $got->{alexandrite_operator_open_orders}{'operator="op \"2\""'}, 'label values are escaped');
ok(!grep({ $_ != 1 } values %{ $got->{alexandrite_metrics_collector_success} }), 'every collector answered');
like($body, qr/^pg_exporter_last_scrape_error(?:\{[^}]*\})? 0$/m, 'the exporter saw no query error');

# every series an alert rule of docs/alerts.yml uses is exported
my $rules = "$AlxTest::TOP/docs/alerts.yml";
my $exprs = `python3 -c 'import sys, yaml; [print(r["alert"] + "\t" + " ".join(r["expr"].split())) for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"]]' $rules`;
is($?, 0, 'docs/alerts.yml is valid YAML with groups of rules');
my @alerts = split /\n/, $exprs;
cmp_ok(scalar(@alerts), '>=', 10, 'alert rules: ' . scalar(@alerts));
for my $alert (@alerts)
{
	my ($name, $expr) = split /\t/, $alert, 2;
	my @series = $expr =~ /\b(alexandrite_[a-z0-9_]+)/g;
	my @unknown = grep { !exists $got->{$_} } @series;
	ok(@series && !@unknown, "$name uses exported series (@series)")
	  or diag("not exported: @unknown");
}

# the monitoring role reads figures, not orders
my ($rc, $stdout, $stderr) = $node->psql('postgres', 'SELECT count(*) FROM alexandrite.orders',
	extra_params => [ '-U', 'alx_monitor' ]);
like($stderr, qr/permission denied/, 'the monitoring role cannot read orders');

$h->kill_kill;
$node->stop;
done_testing();
