# Upgrading a live 1.0 database: orders written by 1.0, then ALTER EXTENSION
# UPDATE; the figures of metrics() come from dashboards created by the update,
# so they must start from the existing orders, exactly.
use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use AlxTest;

my $node = AlxTest::new_node('upgrade');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION alexandrite VERSION '1.0';
	INSERT INTO alexandrite.operators (id, name, capacity) VALUES ('op1', 'Ana', 5);
	SELECT alexandrite.create_order('U-' || i, (ARRAY['shop', 'b2b_api', 'crm'])[1 + i % 3], 'c' || i, NULL, NULL)
	  FROM generate_series(1, 40) i;
	SELECT alexandrite.set_status(id, 'priced') FROM alexandrite.orders WHERE id % 3 = 0;
	UPDATE alexandrite.orders SET operator_id = 'op1' WHERE id IN (3, 6, 9);
	SELECT alexandrite.set_status(id, 'assigned') FROM alexandrite.orders WHERE id IN (3, 6, 9);
	SELECT alexandrite.set_status(id, 'cancelled') FROM alexandrite.orders WHERE id % 7 = 0;
	UPDATE alexandrite.orders SET status_changed_at = now() - interval '3 days' WHERE id % 4 = 0;
	UPDATE alexandrite.orders SET sla_due_at = now() - interval '1 hour' WHERE id % 5 = 0;
});
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'alexandrite'}), '1.0',
	'1.0 installed');
$node->safe_psql('postgres', 'ALTER EXTENSION alexandrite UPDATE');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'alexandrite'}), '1.2',
	'updated to 1.2');

my $m = $node->safe_psql('postgres', 'SELECT alexandrite.metrics()');
unlike($m, qr/^alexandrite_metrics_collector_success\{[^}]*\} 0$/m, 'every collector answers after the update');

# each figure against a count of the orders written by 1.0
my %want;
for (split /\n/, $node->safe_psql('postgres', q{
	SELECT format('alexandrite_orders_in_status{channel="%s",status="%s"} %s', channel, status, count(*))
	  FROM alexandrite.orders GROUP BY channel, status
	UNION ALL
	SELECT format('alexandrite_stuck_orders{status="%s"} %s', status, count(*))
	  FROM alexandrite.orders WHERE alexandrite.is_open(status) AND status_changed_at < now() - interval '24 hours'
	 GROUP BY status
	UNION ALL
	SELECT format('alexandrite_sla_breached_orders{channel="%s"} %s', channel, count(*))
	  FROM alexandrite.orders WHERE alexandrite.is_open(status) AND sla_due_at < now() GROUP BY channel
	UNION ALL
	SELECT format('alexandrite_operator_open_orders{operator="%s"} %s', operator_id, count(*))
	  FROM alexandrite.orders WHERE alexandrite.is_open(status) AND operator_id IS NOT NULL GROUP BY operator_id}))
{
	$want{$_} = 1;
}
cmp_ok(scalar(keys %want), '>=', 10, 'figures to compare: ' . scalar(keys %want));
for my $line (sort keys %want)
{
	like($m, qr/^\Q$line\E$/m, "after the update: $line");
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM alexandrite.reconcile_dashboards() WHERE NOT ok}), '0',
	'every dashboard created by the update agrees with its base table');
is($node->safe_psql('postgres', q{SELECT count(*) FROM alexandrite.order_timeline(3) WHERE kind = 'status'}), '3',
	'the timeline of an order written by 1.0');

$node->stop;
done_testing();
