# 024_mesh_jobs: the mesh job pool with real workers and the real helper.
#
#  - priority under a backlog: with the pool paused, 3 unattached jobs, then
#    30 jobs of shop orders, then one of a B2B order are queued; once the
#    pool runs, the B2B job is among the first claimed (the pool has 2
#    workers), the shop jobs follow in their orders' priority order and the
#    unattached ones come last; every order got its model and its price;
#  - a hostile file among good ones fails its job (22P04, one attempt,
#    mesh.rejected) while the good ones are done, and no worker dies;
#  - discard against claim: an uncommitted discard holding a job's row
#    makes the claim pass it over (never started, one mesh.rejected once the
#    discard commits); a job claimed first cannot be discarded (55000);
#  - orders held by other transactions: the jobs of two held orders wait in
#    the queue (their attempts given back) while a free order's job is done
#    by the same two workers; once the holder commits they attach;
#  - backpressure: beyond alexandrite.mesh_queue_max_bytes mesh_submit
#    raises 53400 (failed jobs' bytes do not count); discarding a queued job
#    makes room again;
#  - SIGKILL of a worker in the middle of a job (analysed, held before its
#    mesh is stored by a session that locks the meshes table), and of the
#    postmaster: the job is retried after the restart, done in its second
#    attempt, and its mesh stored once;
#  - while the helper runs, the worker holds no snapshot, no xid and no
#    table lock (the analysis is a transaction of its own, outside the gate);
#  - pg_dump/pg_restore of a database with queued jobs: the jobs, bytes
#    included, arrive, and the restored cluster's pool analyses them.
use strict;
use warnings FATAL => 'all';

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../perl';

use AlxTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $gen = "$AlxTest::TOP/test/gen/genmesh.py";
my $files = PostgreSQL::Test::Utils::tempdir();
my $conf = <<'EOF';
alexandrite.database = 'postgres'
alexandrite.amqp_url = ''
alexandrite.mesh_workers = 2
alexandrite.mesh_job_retry_delay = '300ms'
alexandrite.mesh_job_max_attempts = 3
alexandrite.mesh_pool_paused = on
restart_after_crash = on
EOF

my $node = AlxTest::new_node('mesh_jobs', conf => $conf);
$node->start;
AlxTest::install($node, 'postgres');
my $db = 'postgres';

sub sql { return $node->safe_psql($db, $_[0]); }

# a mesh file of the generator, as a path the server can read
sub gen
{
	my ($name, @args) = @_;
	my $path = "$files/$name";
	system('python3', $gen, @args, '--out', $path) == 0 or BAIL_OUT("could not generate $name");
	chmod 0644, $path;
	return $path;
}

sub set_paused
{
	my ($paused) = @_;
	sql("ALTER SYSTEM SET alexandrite.mesh_pool_paused = " . ($paused ? 'on' : 'off'));
	sql('SELECT pg_reload_conf()');
	return;
}

sub wait_idle
{
	my ($what, $timeout) = @_;
	ok(AlxTest::wait_until($node, $db,
			q{SELECT count(*) = 0 FROM alexandrite.mesh_jobs WHERE state IN ('queued', 'running')}, $timeout // 120),
		"every job finished: $what");
	return;
}

sub workers
{
	return sql(q{SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity
	              WHERE backend_type LIKE 'alexandrite mesh worker%'});
}

sql(q{CREATE FUNCTION public.try(q text) RETURNS text LANGUAGE plpgsql AS $$
      BEGIN EXECUTE q; RETURN 'ok'; EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$});
ok(AlxTest::wait_until($node, $db, q{SELECT count(*) = 2 FROM pg_stat_activity
                                      WHERE backend_type LIKE 'alexandrite mesh worker%'}, 60),
	'two mesh workers run (alexandrite.mesh_workers = 2)');

# --- priority under a backlog ------------------------------------------------
# 34 distinct files: the cube at 34 scales (distinct bytes, distinct meshes)
my @cubes = map { gen("cube$_.stl", 'cube', 'stl', '--scale', 1 + $_ / 10) } 1 .. 34;
sql(q{SELECT alexandrite.create_order('SHOP-' || i, 'shop', 'c' || i, NULL, 'ag925')
        FROM generate_series(1, 30) i});
sql(q{SELECT alexandrite.create_order('B2B-1', 'b2b_api', 'acme', NULL, 'au750_yellow')});
for my $i (31 .. 33)
{
	sql("SELECT alexandrite.mesh_submit(pg_read_binary_file('$cubes[$i-1]'), 'loose$i.stl')");
}
for my $i (1 .. 30)
{
	sql("SELECT alexandrite.mesh_submit(pg_read_binary_file('$cubes[$i-1]'), 'shop$i.stl', 'mm',
	        (SELECT id FROM alexandrite.orders WHERE external_ref = 'SHOP-$i'))");
}
sql("SELECT alexandrite.mesh_submit(pg_read_binary_file('$cubes[33]'), 'b2b.stl', 'mm',
        (SELECT id FROM alexandrite.orders WHERE external_ref = 'B2B-1'))");
is(sql(q{SELECT count(*) FROM alexandrite.mesh_jobs WHERE state = 'queued'}), '34',
	'34 jobs queued while the pool is paused');
is(sql(q{SELECT count(*) FROM alexandrite.meshes}), '0', 'nothing analysed while paused');
set_paused(0);
wait_idle('the backlog');
# the claim order: rank by the time each job was claimed
my $ranks = sql(q{
	SELECT string_agg(coalesce(o.external_ref, j.filename), ' ' ORDER BY j.started_at, j.id)
	  FROM alexandrite.mesh_jobs j LEFT JOIN alexandrite.orders o ON o.id = j.order_id});
my @order = split / /, $ranks;
my %rank = map { $order[$_] => $_ + 1 } 0 .. $#order;
note("claim order: $ranks");
cmp_ok($rank{'B2B-1'}, '<=', 2, 'the B2B job, submitted last, is among the first two claimed by the two workers');
cmp_ok((sort { $a <=> $b } map { $rank{"loose$_.stl"} } 31 .. 33)[0], '>', 30,
	'the unattached jobs, submitted first, come after every attached one');
my $inversions = 0;
for my $i (1 .. 29)
{
	$inversions++ if $rank{"SHOP-$i"} > $rank{ 'SHOP-' . ($i + 1) } + 1;
}
is($inversions, 0, 'shop jobs in their orders\' priority order (within the pool\'s width)');
is(sql(q{SELECT count(*) FILTER (WHERE status = 'priced' AND mesh_id IS NOT NULL AND price > 0)
           FROM alexandrite.orders}), '31', 'every order got its model and a price');
is(sql(q{SELECT count(*) FROM alexandrite.mesh_jobs WHERE state = 'done' AND data IS NULL AND attempts = 1}),
	'34', 'every job done in one attempt, its bytes dropped');
is(sql(q{SELECT count(*) FROM alexandrite.outbox WHERE aggregate_type = 'mesh' AND event_type = 'mesh.analyzed'}),
	'34', 'one mesh.analyzed per job');
is(sql(q{SELECT count(DISTINCT actor) || ' ' || min(actor) FROM alexandrite.order_events
          WHERE to_status = 'priced'}), '1 alexandrite_worker', 'priced by the workers\' role');

# --- a hostile file among good ones ------------------------------------------
my $workers_before = workers();
my $start_time = sql('SELECT pg_postmaster_start_time()');
my $good1 = gen('ring.stl', 'ring', 'stl');
my $good2 = gen('torus.obj', 'torus', 'obj');
my $bad = "$files/hostile.stl";
{
	my $b64 = `python3 $gen --hostile-case lying_count.stl`;
	require MIME::Base64;
	open my $fh, '>', $bad or die;
	binmode $fh;
	print $fh MIME::Base64::decode_base64($b64);
	close $fh;
	chmod 0644, $bad;
}
my $junk = "$files/random.bin";
{
	open my $fh, '>', $junk or die;
	binmode $fh;
	print $fh join('', map { chr(int(rand(256))) } 1 .. 5000);
	close $fh;
	chmod 0644, $junk;
}
my %job;
for ([ good1 => $good1 ], [ bad => $bad ], [ junk => $junk ], [ good2 => $good2 ])
{
	$job{ $_->[0] } = sql("SELECT alexandrite.mesh_submit(pg_read_binary_file('$_->[1]'), '$_->[0]')");
}
wait_idle('hostile among good');
is(sql("SELECT string_agg(state || ':' || coalesce(error_sqlstate, '-') || ':' || attempts, ' ' ORDER BY id)
          FROM alexandrite.mesh_jobs WHERE id IN ($job{good1}, $job{bad}, $job{junk}, $job{good2})"),
	'done:-:1 failed:22P04:1 failed:22P04:1 done:-:1', 'the hostile files fail their jobs at once, the good ones are done');
is(sql("SELECT count(*) FROM alexandrite.mesh_jobs WHERE id IN ($job{bad}, $job{junk}) AND data IS NULL"),
	'2', 'a job failed by its file drops its bytes (the same bytes would fail again)');
is(sql("SELECT string_agg(payload->>'sqlstate', ' ') FROM alexandrite.outbox
         WHERE aggregate_type = 'mesh' AND event_type = 'mesh.rejected'"), '22P04 22P04', 'mesh.rejected with the SQLSTATE');
is(workers(), $workers_before, 'the same workers still run');
is(sql('SELECT pg_postmaster_start_time()'), $start_time, 'the server did not restart');
is(sql("SELECT try('SELECT alexandrite.mesh_job_retry($job{bad})')"), '55000',
	'so it cannot be retried (55000: submit the file again)');

# --- woken at commit ------------------------------------------------------------
# An idle worker looks for work once a second; a submission sets the
# workers' latches when it commits.  Nine files at random moments: without
# the wake-up the median wait would be about 500 ms.
my @wait_ms;
my $wake = gen('wake.stl', 'cube', 'stl');
for my $i (1 .. 9)
{
	usleep(200_000 + int(rand(900_000)));
	# a new header each time: new bytes, a new analysis (not a known mesh)
	my $id = sql("SELECT alexandrite.mesh_submit(overlay(pg_read_binary_file('$wake') placing convert_to('wake $i $$', 'UTF8') from 1),
	                                             'wake$i.stl')");
	AlxTest::wait_until($node, $db, "SELECT started_at IS NOT NULL FROM alexandrite.mesh_jobs WHERE id = $id", 60)
	  or die "job $id was not claimed within 60 s";
	push @wait_ms, sql("SELECT round(extract(epoch FROM started_at - submitted_at) * 1000, 1) FROM alexandrite.mesh_jobs WHERE id = $id");
}
my @sorted = sort { $a <=> $b } @wait_ms;
cmp_ok($sorted[4], '<', 250, 'a submitted job starts at once: median wait from submission to claim under 250 ms')
  or diag("waits (ms): @wait_ms");
note("waits from submission to claim (ms): @wait_ms");

# --- discard against claim ----------------------------------------------------
# A discard that holds the job's row, not yet committed, is passed over by
# the claim (FOR UPDATE SKIP LOCKED): the job never starts and, once the
# discard commits, is failed with one mesh.rejected.  A job claimed first
# cannot be discarded (55000) and gets only its mesh.analyzed.
{
	set_paused(1);
	my $dc = gen('discard.stl', 'cube', 'stl', '--scale', '7.5');
	# new bytes for each job: a header of its own (no known mesh to reuse)
	my $bytes = sub { "overlay(pg_read_binary_file('$dc') placing convert_to('$_[0]', 'UTF8') from 1)" };
	my $x = sql("SELECT alexandrite.mesh_submit(" . $bytes->('discarded in a race') . ", 'discard-race.stl')");
	my $h = $node->background_psql($db, on_error_stop => 0);
	$h->query_safe('BEGIN');
	$h->query_safe("SELECT alexandrite.mesh_job_discard($x)");
	set_paused(0);
	my $y = sql("SELECT alexandrite.mesh_submit(" . $bytes->('submitted after') . ", 'after-discard.stl')");
	ok(AlxTest::wait_until($node, $db, "SELECT state = 'done' FROM alexandrite.mesh_jobs WHERE id = $y", 60),
		'discard vs claim: a job submitted later is done (the pool claimed past the held one)');
	is(sql("SELECT state || ':' || attempts || ':' || (started_at IS NULL) FROM alexandrite.mesh_jobs WHERE id = $x"),
		'queued:0:true', 'discard vs claim: the job the uncommitted discard holds was passed over, never started');
	$h->query_safe('COMMIT');
	$h->quit;
	is(sql("SELECT state || ':' || error_sqlstate || ':' || attempts || ':' || (data IS NULL) || ':' || (started_at IS NULL)
	          FROM alexandrite.mesh_jobs WHERE id = $x"),
		'failed:57014:0:true:true', 'discard vs claim: once the discard commits the job is failed (57014), its bytes dropped');
	is(sql("SELECT string_agg(event_type, ' ') FROM alexandrite.outbox WHERE aggregate_type = 'mesh' AND aggregate_id = '$x'"),
		'mesh.rejected', 'discard vs claim: one mesh.rejected for it, no mesh.analyzed');

	# claimed first: the job held running (its worker waits to store the mesh)
	my $hold = $node->background_psql($db, on_error_stop => 0);
	$hold->query_safe('BEGIN');
	$hold->query_safe('LOCK TABLE alexandrite.meshes IN SHARE ROW EXCLUSIVE MODE');
	my $z = sql("SELECT alexandrite.mesh_submit(" . $bytes->('claimed first') . ", 'claimed-first.stl')");
	ok(AlxTest::wait_until($node, $db, "SELECT state = 'running' FROM alexandrite.mesh_jobs WHERE id = $z", 60),
		'claim vs discard: the job is claimed');
	is(sql("SELECT try('SELECT alexandrite.mesh_job_discard($z)')"), '55000',
		'claim vs discard: a claimed job cannot be discarded (55000)');
	$hold->query_safe('COMMIT');
	$hold->quit;
	ok(AlxTest::wait_until($node, $db, "SELECT state = 'done' FROM alexandrite.mesh_jobs WHERE id = $z", 60),
		'claim vs discard: the job is done');
	is(sql("SELECT string_agg(event_type, ' ') FROM alexandrite.outbox WHERE aggregate_type = 'mesh' AND aggregate_id = '$z'"),
		'mesh.analyzed', 'claim vs discard: one mesh.analyzed for it, no mesh.rejected');
}

# --- orders held by other transactions ---------------------------------------
# A job whose order another transaction holds (an MES transaction left
# open) does not hold up the pool: its worker gives the row up after a
# second and puts the job back, its attempt given back.  With both workers'
# orders held, the job of a free order is done; once the holder commits,
# the held jobs attach their models.  (Before, both workers waited on the
# rows and the free order's job stayed queued.)
{
	set_paused(1);
	my $hf = gen('held.stl', 'cube', 'stl', '--scale', '6.5');
	my $bytes = sub { "overlay(pg_read_binary_file('$hf') placing convert_to('$_[0]', 'UTF8') from 1)" };
	my ($o1, $o2, $o3) = split /\n/,
	  sql("SELECT alexandrite.create_order('held-' || g, 'shop', 'c', NULL, NULL) FROM generate_series(1, 3) g ORDER BY 1");
	my $hold = $node->background_psql($db, on_error_stop => 0);
	$hold->query_safe('BEGIN');
	$hold->query_safe("SELECT id FROM alexandrite.orders WHERE id IN ($o1, $o2) FOR NO KEY UPDATE");
	my $j1 = sql("SELECT alexandrite.mesh_submit(" . $bytes->('held order one') . ", 'held-1.stl', 'mm', $o1)");
	my $j2 = sql("SELECT alexandrite.mesh_submit(" . $bytes->('held order two') . ", 'held-2.stl', 'mm', $o2)");
	set_paused(0);
	ok(AlxTest::wait_until($node, $db,
			"SELECT count(*) = 2 FROM alexandrite.mesh_jobs WHERE id IN ($j1, $j2) AND note LIKE 'waiting for order %'", 60),
		'held orders: both jobs found their orders held and wait');
	my $j3 = sql("SELECT alexandrite.mesh_submit(" . $bytes->('free order') . ", 'free-3.stl', 'mm', $o3)");
	ok(AlxTest::wait_until($node, $db, "SELECT state = 'done' FROM alexandrite.mesh_jobs WHERE id = $j3", 60),
		'held orders: the job of a free order is done meanwhile');
	is(sql("SELECT mesh_id IS NOT NULL FROM alexandrite.orders WHERE id = $o3"), 't',
		'held orders: the free order has its model');
	sleep(3);
	like(sql("SELECT string_agg(state || ':' || (attempts <= 1), ' ' ORDER BY id) FROM alexandrite.mesh_jobs WHERE id IN ($j1, $j2)"),
		qr/^(queued|running):true (queued|running):true$/,
		'held orders: three seconds later both still wait, neither failed, each attempt given back');
	# the wait grows with the time waited for the order (half of it, at
	# least the retry delay, at most a minute): a job that has waited an
	# hour (waiting_since moved back, and tried at once) waits a minute; the
	# other, waiting for seconds, half of that at most
	is(sql("SELECT count(*) FROM alexandrite.mesh_jobs WHERE id IN ($j1, $j2) AND waiting_since IS NOT NULL"),
		'2', 'held orders: both jobs record since when they wait');
	# (whether queued or in an attempt: a deferral re-reads the row)
	sql("UPDATE alexandrite.mesh_jobs SET waiting_since = now() - interval '1 hour', next_attempt_at = now()
	      WHERE id = $j1");
	ok(AlxTest::wait_until($node, $db,
			"SELECT next_attempt_at > clock_timestamp() + interval '40 s' FROM alexandrite.mesh_jobs WHERE id = $j1", 60),
		'held orders: a job that has waited an hour is put back for about a minute');
	is(sql("SELECT next_attempt_at <= clock_timestamp() + interval '61 s' FROM alexandrite.mesh_jobs WHERE id = $j1"),
		't', 'held orders: never more than a minute');
	is(sql("SELECT next_attempt_at <= clock_timestamp() + interval '2 s'
	               + least(interval '1 min', (clock_timestamp() - waiting_since) / 2)
	          FROM alexandrite.mesh_jobs WHERE id = $j2"),
		't', 'held orders: the other waits at most half the time it has waited');
	$hold->query_safe('COMMIT');
	$hold->quit;
	# (the jobs would wait out their backoff, up to a minute for j1: tried at once)
	sql("UPDATE alexandrite.mesh_jobs SET next_attempt_at = now() WHERE id IN ($j1, $j2) AND state = 'queued'");
	ok(AlxTest::wait_until($node, $db,
			"SELECT bool_and(state = 'done') FROM alexandrite.mesh_jobs WHERE id IN ($j1, $j2)", 60),
		'held orders: once the holder commits, their jobs are done');
	is(sql("SELECT count(*) FROM alexandrite.orders WHERE id IN ($o1, $o2) AND mesh_id IS NOT NULL"), '2',
		'held orders: and their orders have their models');
	is(sql("SELECT string_agg(event_type, ' ') FROM alexandrite.outbox
	         WHERE aggregate_type = 'mesh' AND aggregate_id IN ('$j1', '$j2')"),
		'mesh.analyzed mesh.analyzed', 'held orders: one mesh.analyzed each, no mesh.rejected');
}

# --- the latest request for an order's model wins ---------------------------
# A job stands for a model asked for when it was submitted.  Under the
# order's lock its worker gives the order the mesh only if the order still
# has the model it had then (or one an earlier job of the order gave it)
# and no later job of the order is done; it waits while a later one is
# queued or running.  Else the job is done with a note.  Before, a job
# overwrote whatever model the order had been given meanwhile, and of two
# jobs of one order the one that finished last won.  Jobs are submitted
# held (not due for an hour, in the submitting transaction: the pool's
# pause takes effect asynchronously) and released when the scenario is set.
{
	my $lf = gen('later.stl', 'cube', 'stl', '--scale', '7.5');
	my $bytes = sub { "overlay(pg_read_binary_file('$lf') placing convert_to('$_[0]', 'UTF8') from 1)" };
	# a mesh the MES already has (analysed by an unattached job)
	my $jm = sql("SELECT alexandrite.mesh_submit(" . $bytes->('known model') . ", 'known.stl')");
	ok(AlxTest::wait_until($node, $db, "SELECT state = 'done' FROM alexandrite.mesh_jobs WHERE id = $jm", 60),
		'later model: a known mesh is analysed');
	my $known = sql("SELECT mesh_id FROM alexandrite.mesh_jobs WHERE id = $jm");
	my ($ox, $oy, $oz, $ow) = split /\n/,
	  sql("SELECT alexandrite.create_order('later-' || g, 'shop', 'c', NULL, NULL) FROM generate_series(1, 4) g ORDER BY 1");
	my $changed = 'was not changed: its model was changed after this job was submitted';
	my $held = sub {
		my ($data, $name, $order) = @_;
		return sql("BEGIN; SELECT alexandrite.mesh_submit($data, '$name', 'mm', $order);
		            UPDATE alexandrite.mesh_jobs SET next_attempt_at = now() + interval '1 hour'
		             WHERE id = currval(pg_get_serial_sequence('alexandrite.mesh_jobs', 'id')); COMMIT");
	};
	my $release = sub { sql("UPDATE alexandrite.mesh_jobs SET next_attempt_at = now() WHERE id IN (" . join(',', @_) . ")"); };

	# 1. set_order_model while the job is queued
	my $ja = $held->($bytes->('queued then replaced'), 'a.stl', $ox);
	sql("SELECT alexandrite.set_order_model($ox, $known, NULL)");
	# 3. a later mesh_submit of a mesh already known: done at once
	my $jc = $held->($bytes->('submitted first'), 'c.stl', $oz);
	my $jd = sql("SELECT alexandrite.mesh_submit(" . $bytes->('known model') . ", 'd.stl', 'mm', $oz)");
	is(sql("SELECT state || ' ' || mesh_id FROM alexandrite.mesh_jobs WHERE id = $jd"), "done $known",
		'later model: a later submit of a known mesh is done at once');
	is(sql("SELECT mesh_id FROM alexandrite.orders WHERE id = $oz"), $known,
		'later model: and gives the order its mesh');
	# 4. two jobs of one order, the earlier one large (it finishes last)
	my $big = gen('later-big.stl', 'torus:400:300', 'stl');
	my $je = $held->("pg_read_binary_file('$big')", 'e.stl', $ow);
	my $jf = $held->($bytes->('submitted last'), 'f.stl', $ow);

	is(sql("SELECT count(*) FROM alexandrite.mesh_jobs WHERE id IN ($ja, $jc, $je, $jf) AND order_mesh_id IS NULL"),
		'4', 'later model: each job records the model its order had (none)');
	$release->($ja, $jc, $je, $jf);
	ok(AlxTest::wait_until($node, $db,
			"SELECT bool_and(state = 'done') FROM alexandrite.mesh_jobs WHERE id IN ($ja, $jc, $je, $jf)", 120),
		'later model: every job is analysed');

	# 2. set_order_model committed while a worker is inside its job: the
	# worker is held before it stores the mesh (a session keeps the meshes
	# table from being written), after it read the job
	my $hold = $node->background_psql($db, on_error_stop => 0);
	$hold->query_safe('BEGIN');
	$hold->query_safe('LOCK TABLE alexandrite.meshes IN SHARE ROW EXCLUSIVE MODE');
	my $jb = sql("SELECT alexandrite.mesh_submit(" . $bytes->('replaced while running') . ", 'b.stl', 'mm', $oy)");
	ok(AlxTest::wait_until($node, $db, qq{SELECT (SELECT state = 'running' FROM alexandrite.mesh_jobs WHERE id = $jb)
	                  AND (SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'alexandrite.meshes'::regclass) = 1}, 60),
		'later model: the job runs, its worker held before it stores the mesh');
	sql("SELECT alexandrite.set_order_model($oy, $known, NULL)");
	$hold->query_safe('COMMIT');
	$hold->quit;
	ok(AlxTest::wait_until($node, $db, "SELECT state = 'done' FROM alexandrite.mesh_jobs WHERE id = $jb", 60),
		'later model: the job is done');
	is(sql("SELECT string_agg(id || ':' || coalesce(note, '-'), ' | ' ORDER BY id) FROM alexandrite.mesh_jobs
	         WHERE id IN ($ja, $jb, $jc, $je, $jf)"),
		join(' | ', "$ja:order $ox $changed", "$jc:order $oz was not changed: job $jd, submitted later for the order, replaces this one",
			"$je:order $ow was not changed: job $jf, submitted later for the order, replaces this one", "$jf:-",
			"$jb:order $oy $changed"),
		'later model: the notes of the replaced jobs say why, the latest job has none');
	is(sql("SELECT string_agg(o.id || ':' || (o.mesh_id = CASE o.id WHEN $ow THEN j.mesh_id ELSE $known END), ' ' ORDER BY o.id)
	          FROM alexandrite.orders o, alexandrite.mesh_jobs j WHERE o.id IN ($ox, $oy, $oz, $ow) AND j.id = $jf"),
		"$ox:true $oy:true $oz:true $ow:true",
		'later model: each order has the model asked for last');
	is(sql("SELECT count(DISTINCT mesh_id) FROM alexandrite.mesh_jobs WHERE id IN ($ja, $jb, $jc, $je, $jf) AND mesh_id <> $known"),
		'5', 'later model: the replaced jobs still have their own meshes');
	is(sql("SELECT count(*) FROM alexandrite.mesh_jobs WHERE id IN ($ja, $jb, $jc, $je, $jf) AND order_id IS NOT NULL"),
		'5', 'later model: and keep their orders (history)');
	is(sql("SELECT string_agg(id || ':' || gave_model, ' ' ORDER BY id) FROM alexandrite.mesh_jobs WHERE id IN ($jd, $jf)"),
		"$jd:true $jf:true", 'later model: the jobs that gave their orders a model say so');

	my ($ov, $ou) = split /\n/,
	  sql("SELECT alexandrite.create_order('later-' || g, 'shop', 'c', NULL, NULL) FROM generate_series(5, 6) g ORDER BY 1");
	# 5. a later job that recorded the order's model before an earlier job
	# gave the order its own: submitted in a transaction still open while
	# the earlier job runs, it still gives the order its mesh
	my $jg = $held->($bytes->('earlier, given first'), 'g.stl', $ov);
	my $open = $node->background_psql($db, on_error_stop => 0);
	$open->query_safe('BEGIN');
	my $jh = $open->query_safe("SELECT alexandrite.mesh_submit(" . $bytes->('later, recorded before') . ", 'h.stl', 'mm', $ov)");
	$jh =~ s/\s+//g;
	$release->($jg);
	ok(AlxTest::wait_until($node, $db,
			"SELECT o.mesh_id = j.mesh_id FROM alexandrite.orders o, alexandrite.mesh_jobs j WHERE o.id = $ov AND j.id = $jg", 60),
		'later model: the earlier job gives the order its mesh while the later one is not committed');
	$open->query_safe('COMMIT');
	$open->quit;
	ok(AlxTest::wait_until($node, $db, "SELECT state = 'done' FROM alexandrite.mesh_jobs WHERE id = $jh", 60),
		'later model: the later job is done');
	is(sql("SELECT (o.mesh_id = j.mesh_id) || ' ' || coalesce(j.note, '-') || ' ' || (j.order_mesh_id IS NULL)
	          FROM alexandrite.orders o, alexandrite.mesh_jobs j WHERE o.id = $ov AND j.id = $jh"), 'true - true',
		'later model: it gives the order its mesh over the one an earlier job gave (it had recorded none)');

	# 6. while a later job of the order is queued, a job waits for it; if the
	# later one fails, the earlier one gives the order its mesh
	my $jx = $held->($bytes->('earlier, later one fails'), 'x.stl', $ou);
	my $jy = $held->($bytes->('later, to be discarded'), 'y.stl', $ou);
	$release->($jx);
	ok(AlxTest::wait_until($node, $db,
			"SELECT state = 'queued' AND note = 'waiting for job $jy, submitted later for order $ou' FROM alexandrite.mesh_jobs WHERE id = $jx", 60),
		'later model: a job waits for a later job of its order that is queued');
	is(sql("SELECT mesh_id IS NULL FROM alexandrite.orders WHERE id = $ou"), 't', 'later model: the order is left alone meanwhile');
	sql("SELECT alexandrite.mesh_job_discard($jy)");
	$release->($jx);
	ok(AlxTest::wait_until($node, $db, "SELECT state = 'done' FROM alexandrite.mesh_jobs WHERE id = $jx", 60),
		'later model: once the later job failed, the job is done');
	is(sql("SELECT (o.mesh_id = j.mesh_id) || ' ' || coalesce(j.note, '-') || ' ' || j.gave_model || ' ' || j.attempts
	          FROM alexandrite.orders o, alexandrite.mesh_jobs j WHERE o.id = $ou AND j.id = $jx"), 'true - true 1',
		'later model: and gives the order its mesh (its deferred attempts given back)');

	# 7. the mesh of a replaced job, set by the MES after a later job was
	# submitted, is the MES's choice: the later job leaves it (a replaced
	# job gave nothing: gave_model, not the mesh id, tells)
	my $ot = sql("SELECT alexandrite.create_order('later-7', 'shop', 'c', NULL, NULL)");
	my $jr = $held->($bytes->('replaced, then chosen'), 'r.stl', $ot);
	my $jk = sql("SELECT alexandrite.mesh_submit(" . $bytes->('known model') . ", 'k.stl', 'mm', $ot)");
	my $js = $held->($bytes->('submitted before the choice'), 's.stl', $ot);
	$release->($jr);
	ok(AlxTest::wait_until($node, $db, "SELECT state = 'done' FROM alexandrite.mesh_jobs WHERE id = $jr", 60),
		'later model: the replaced job is done');
	is(sql("SELECT gave_model || ' ' || note FROM alexandrite.mesh_jobs WHERE id = $jr"),
		"false order $ot was not changed: job $jk, submitted later for the order, replaces this one",
		'later model: it gave nothing');
	sql("SELECT alexandrite.set_order_model($ot, (SELECT mesh_id FROM alexandrite.mesh_jobs WHERE id = $jr), NULL)");
	$release->($js);
	ok(AlxTest::wait_until($node, $db, "SELECT state = 'done' FROM alexandrite.mesh_jobs WHERE id = $js", 60),
		'later model: the job submitted before the choice is done');
	is(sql("SELECT (o.mesh_id = r.mesh_id) || ' ' || s.note FROM alexandrite.orders o, alexandrite.mesh_jobs r, alexandrite.mesh_jobs s
	         WHERE o.id = $ot AND r.id = $jr AND s.id = $js"), "true order $ot $changed",
		'later model: it leaves the order the mesh the MES chose');
	# each job's mesh.analyzed says whether its order took the mesh
	my @ids = ($ja, $jb, $jc, $jd, $je, $jf, $jg, $jh, $jx, $jr, $jk, $js);
	is(sql("SELECT string_agg(aggregate_id || ':' || coalesce(payload->>'attached', '-'), ' ' ORDER BY aggregate_id::bigint)
	          FROM alexandrite.outbox WHERE aggregate_type = 'mesh' AND event_type = 'mesh.analyzed'
	           AND aggregate_id IN (" . join(',', map { "'$_'" } @ids) . ")"),
		join(' ', map { "$_->[0]:$_->[1]" } sort { $a->[0] <=> $b->[0] }
			[ $ja, 'false' ], [ $jb, 'false' ], [ $jc, 'false' ], [ $jd, 'true' ], [ $je, 'false' ], [ $jf, 'true' ],
			[ $jg, 'true' ], [ $jh, 'true' ], [ $jx, 'true' ], [ $jr, 'false' ], [ $jk, 'true' ], [ $js, 'false' ]),
		'later model: each mesh.analyzed says whether its order took the mesh ("attached")');
	is(sql("SELECT payload ? 'attached' FROM alexandrite.outbox WHERE aggregate_type = 'mesh'
	         AND event_type = 'mesh.analyzed' AND aggregate_id = '$jm'"), 'f',
		'later model: a job for no order has no "attached" key');
}

# --- backpressure ------------------------------------------------------------
set_paused(1);
sql(q{ALTER SYSTEM SET alexandrite.mesh_queue_max_bytes = '64kB'});
sql('SELECT pg_reload_conf()');
# the two failed jobs dropped their bytes, and a failed job's bytes would not
# count anyway (the queue's room is for the jobs still to run: failed
# uploads cannot lock others out); 20 kB files
my @fill = map { gen("fill$_.stl", 'cube', 'stl', '--scale', 10 + $_) } 1 .. 4;
my @outcomes;
for my $f (@fill)
{
	# 20 kB: a cube padded with zeros (an invalid STL; size matters here, not geometry)
	push @outcomes, sql("SELECT try(\$\$SELECT alexandrite.mesh_submit(pg_read_binary_file('$f')
	                        || decode(repeat('00', 20000), 'hex'), 'fill.stl')\$\$)");
}
is(join(' ', @outcomes), 'ok ok ok 53400',
	'beyond mesh_queue_max_bytes mesh_submit raises 53400 (the failed jobs\' bytes do not count)');
is(sql(q{SELECT count(*) FROM alexandrite.mesh_jobs WHERE state = 'queued'}), '3', 'the refused file left no job');
is(sql(q{SELECT try($$SELECT alexandrite.mesh_submit(decode(repeat('01', 10000), 'hex'), 'small.stl')$$)}), '53400',
	'the queue is full');
sql("SELECT alexandrite.mesh_job_discard(max(id)) FROM alexandrite.mesh_jobs WHERE state = 'queued'");
sql("SELECT alexandrite.mesh_job_discard($job{bad}), alexandrite.mesh_job_discard($job{junk})");
is(sql(q{SELECT try($$SELECT alexandrite.mesh_submit(decode(repeat('01', 10000), 'hex'), 'small.stl')$$)}), 'ok',
	'discarding a queued job makes room');
like(sql(q{SELECT alexandrite.metrics()}), qr/^alexandrite_mesh_jobs\{state="queued"\} 3$/m, 'metrics show the queue');
# mesh_job_retry checks the room too: a failed job that kept its bytes is not
# queued again past the limit (made failed here by hand, as in mesh_jobs.sql:
# the pool is paused).  Queued now: 2 x 20.7 kB + 10 kB of 64 kB.
my $kept = sql(q{SELECT alexandrite.mesh_submit(decode(repeat('02', 9000), 'hex'), 'later.stl')});
sql("UPDATE alexandrite.mesh_jobs SET state = 'failed', error_sqlstate = 'XX000',
        error_message = 'mesh helper crashed', finished_at = now() WHERE id = $kept");
is(sql(q{SELECT try($$SELECT alexandrite.mesh_submit(decode(repeat('03', 9000), 'hex'), 'filler.stl')$$)}), 'ok',
	'retry room: another file takes the failed job\'s room');
is(sql("SELECT try('SELECT alexandrite.mesh_job_retry($kept)')"), '53400',
	'retry room: mesh_job_retry past mesh_queue_max_bytes raises 53400');
is(sql("SELECT state || ' ' || (data IS NOT NULL) FROM alexandrite.mesh_jobs WHERE id = $kept"), 'failed true',
	'retry room: the job stays failed, with its bytes');
sql("SELECT alexandrite.mesh_job_discard(max(id)) FROM alexandrite.mesh_jobs WHERE state = 'queued'");
is(sql("SELECT try('SELECT alexandrite.mesh_job_retry($kept)')"), 'ok',
	'retry room: once a queued job is discarded, it is queued again');
is(sql("SELECT state FROM alexandrite.mesh_jobs WHERE id = $kept"), 'queued', 'retry room: and it is queued');
sql(q{ALTER SYSTEM RESET alexandrite.mesh_queue_max_bytes});
sql('SELECT pg_reload_conf()');
# and a valid model, in a unit not analysed yet
sql("SELECT alexandrite.mesh_submit(pg_read_binary_file('$good1'), 'ring-cm.stl', 'cm')");

# --- dump and restore with queued jobs ----------------------------------------
my $dump = "$files/jobs.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr($db) ], 'pg_dump with queued jobs');
my $node2 = AlxTest::new_node('mesh_jobs_restored', conf => $conf);
$node2->start;
$node2->command_ok([ 'pg_restore', '--single-transaction', '-d', $node2->connstr($db), $dump ],
	'pg_restore into a new cluster');
is($node2->safe_psql($db, q{SELECT count(*) || ' ' || sum(length(data)) FROM alexandrite.mesh_jobs WHERE state = 'queued'}),
	sql(q{SELECT count(*) || ' ' || sum(length(data)) FROM alexandrite.mesh_jobs WHERE state = 'queued'}),
	'the queued jobs and their bytes arrived');
$node2->safe_psql($db, q{ALTER SYSTEM SET alexandrite.mesh_pool_paused = off});
$node2->safe_psql($db, 'SELECT pg_reload_conf()');
ok(AlxTest::wait_until($node2, $db,
		q{SELECT count(*) = 0 FROM alexandrite.mesh_jobs WHERE state IN ('queued', 'running')}, 120),
	'the restored cluster\'s pool finishes them');
is($node2->safe_psql($db, q{SELECT string_agg(state || ':' || coalesce(error_sqlstate, '-'), ' ' ORDER BY id)
                              FROM alexandrite.mesh_jobs WHERE filename IN ('fill.stl', 'small.stl', 'ring-cm.stl')}),
	'failed:22P04 failed:22P04 failed:57014 failed:22P04 done:-',
	'each restored job ran to its outcome (zero-padded STL files are invalid; the third fill was discarded before the dump)');
is($node2->safe_psql($db, q{SELECT count(*) FROM alexandrite.meshes m JOIN alexandrite.mesh_jobs j
                              ON j.mesh_id = m.id AND j.filename = 'ring-cm.stl' AND m.unit = 'cm'}), '1',
	'the restored valid job stored its mesh');
$node2->stop;
# the same jobs here: dropped, they are not the subject of what follows
sql(q{DELETE FROM alexandrite.mesh_jobs WHERE state = 'queued'});

# --- SIGKILL of a worker, then of the postmaster, in the middle of a job -----
my $large = gen('large.stl', 'torus:500:400', 'stl');
for my $victim ('worker', 'postmaster')
{
	my $unit = $victim eq 'worker' ? 'cm' : 'in';    # another unit: another mesh
	set_paused(0);
	# The job is held inside its transaction, analysed but not yet stored,
	# by a session that keeps the meshes table from being written: the kill
	# then lands in the job for certain (the analysis alone takes ~0.2 s).
	my $hold = $node->background_psql($db, on_error_stop => 0);
	$hold->query_safe('BEGIN');
	$hold->query_safe('LOCK TABLE alexandrite.meshes IN SHARE ROW EXCLUSIVE MODE');
	my $id = sql("SELECT alexandrite.mesh_submit(pg_read_binary_file('$large'), 'large.stl', '$unit')");
	ok(AlxTest::wait_until($node, $db, "SELECT state = 'running' FROM alexandrite.mesh_jobs WHERE id = $id", 60),
		"the large job runs ($victim)");
	ok(AlxTest::wait_until($node, $db, q{SELECT count(*) = 1 FROM pg_stat_activity
	                  WHERE backend_type LIKE 'alexandrite mesh worker%' AND wait_event_type = 'Lock'}, 60),
		"its worker waits to store the mesh ($victim)");
	my $pid = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'alexandrite mesh worker%'
	                  AND state = 'active'});
	isnt($pid, '', "a worker is busy with it ($victim)");
	if ($victim eq 'worker')
	{
		my $old = workers();
		$old =~ s/ /,/g;
		kill 'KILL', $pid;
		# the postmaster restarts every process (crash recovery); then new workers run
		ok($node->poll_query_until($db, qq{SELECT count(*) = 2 FROM pg_stat_activity
		                                   WHERE backend_type LIKE 'alexandrite mesh worker%' AND pid NOT IN ($old)}),
			'the server restarted its processes');
	}
	else
	{
		my @pids = split /\n/, sql('SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()');
		$node->kill9;
		my $t0 = time;
		usleep(100_000) while grep({ kill 0, $_ } @pids) && time - $t0 < 60;
		ok(!grep({ kill 0, $_ } @pids), 'every child exited after the postmaster died');
		$node->start;
	}
	eval { $hold->quit };    # its server process was killed with the others
	wait_idle("after SIGKILL of the $victim", 180);
	is(sql("SELECT state || ':' || attempts || ':' || error_sqlstate FROM alexandrite.mesh_jobs WHERE id = $id"),
		'done:2:57P02', "the interrupted job was done in its second attempt ($victim)");
	is(sql("SELECT count(*) FROM alexandrite.meshes m, alexandrite.mesh_jobs j
	         WHERE j.id = $id AND m.sha256 = j.sha256 AND m.unit = '$unit'"), '1', "its mesh stored once ($victim)");
	is(sql("SELECT count(*) FROM alexandrite.outbox WHERE aggregate_type = 'mesh' AND aggregate_id = '$id'"), '1',
		"one event for it ($victim)");
}

# --- the helper's run holds no snapshot and no table lock -----------------------
# A job is read, analysed and stored in three transactions of its worker
# (src/mesh/jobs_run.c): while the helper runs (up to mesh_timeout), the
# worker must hold back no vacuum (no xmin, no xid) and no DROP EXTENSION
# (no lock on a table: the workers' gate is a lock on alexandrite.orders).
# A session samples pg_stat_activity and pg_locks every 2 ms while the
# worker says it is analysing, until a second after it last said so.
{
	sql(q{CREATE TABLE public.t024_watch (seen int, with_xmin int, with_locks int);
	      CREATE FUNCTION public.t024_watch(secs float8) RETURNS void LANGUAGE plpgsql AS $$
	      DECLARE
	        seen int := 0; with_xmin int := 0; with_locks int := 0; quiet int := 0;
	        t0 timestamptz := clock_timestamp(); r record; locked bool;
	      BEGIN
	        WHILE clock_timestamp() < t0 + make_interval(secs => secs) AND quiet < 500 LOOP
	          PERFORM pg_stat_clear_snapshot();
	          IF seen > 0 THEN quiet := quiet + 1; END IF;
	          SELECT a.pid, a.backend_xmin, a.backend_xid, a.query_start INTO r FROM pg_stat_activity a
	           WHERE a.backend_type LIKE 'alexandrite mesh worker%' AND a.state = 'active'
	             AND a.query = 'alexandrite: analysing a mesh job' LIMIT 1;
	          IF FOUND THEN
	            locked := EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = r.pid AND l.locktype = 'relation');
	            -- a sample counts only if the worker still analyses the same
	            -- job after both reads (its next step takes a snapshot and locks)
	            PERFORM pg_stat_clear_snapshot();
	            IF EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.pid
	                          AND a.query = 'alexandrite: analysing a mesh job' AND a.query_start = r.query_start) THEN
	              seen := seen + 1;
	              quiet := 0;
	              IF r.backend_xmin IS NOT NULL OR r.backend_xid IS NOT NULL THEN
	                with_xmin := with_xmin + 1;
	              END IF;
	              IF locked THEN
	                with_locks := with_locks + 1;
	              END IF;
	            END IF;
	          END IF;
	          PERFORM pg_sleep(0.002);
	        END LOOP;
	        INSERT INTO public.t024_watch VALUES (seen, with_xmin, with_locks);
	      END $$});
	set_paused(0);
	my $watch = $node->background_psql($db, on_error_stop => 1);
	$watch->query_until(qr/watching/, "\\echo watching\nSELECT public.t024_watch(150);\n");
	my $id = sql("SELECT alexandrite.mesh_submit(pg_read_binary_file('$large'), 'large.stl', 'mm')");
	ok(AlxTest::wait_until($node, $db, 'SELECT count(*) = 1 FROM public.t024_watch', 180),
		'the watch of the analysis ended');
	wait_idle('the watched job');
	my ($seen, $xmin, $locks) = split /\|/, sql('SELECT seen, with_xmin, with_locks FROM public.t024_watch');
	ok($seen > 0, "the worker was seen analysing the job ($seen samples)");
	is("$xmin/$locks", '0/0', 'while it analysed, it held no snapshot, no xid and no table lock');
	is(sql("SELECT state || ':' || (mesh_id IS NOT NULL) FROM alexandrite.mesh_jobs WHERE id = $id"), 'done:true',
		'and the job stored its mesh');
	$watch->quit;
}

# --- the workers' role defaults do not reach their transactions ---------------
# A DBA may give the workers' role (or the database) a default isolation level
# or a read-only default.  The workers set read committed and read-write for
# themselves (src/worker.c): before that, a read-only default failed every
# job with 25006 and a repeatable-read default could fail an attach with
# 40001.  The defaults are set on the role, the server restarted so that the
# workers connect again, and a job for an order must be done and attached
# although its order was updated (committed) after the job's transaction
# began: the worker is held before it stores the mesh (a session keeps the
# meshes table from being written) while the order's row is updated, so that
# at serializable or repeatable read its lock of the row would fail with 40001.
sql(q{ALTER ROLE alexandrite_worker SET default_transaction_read_only = on});
sql(q{ALTER ROLE alexandrite_worker SET default_transaction_isolation = 'serializable'});
$node->restart;
set_paused(0);
ok(AlxTest::wait_until($node, $db, q{SELECT count(*) = 2 FROM pg_stat_activity
                                      WHERE backend_type LIKE 'alexandrite mesh worker%'}, 60),
	'the mesh workers run again after the restart (role defaults: read only, serializable)');
is($node->safe_psql($db, q{SELECT current_setting('default_transaction_read_only') || ':' ||
                                  current_setting('default_transaction_isolation')},
		extra_params => [ '-U', 'alexandrite_worker' ]),
	'on:serializable', 'a session of the workers\' role gets the role defaults');
my $dorder = sql("SELECT alexandrite.create_order('defaults-1', 'shop', 'c', NULL, NULL)");
my $dfile = gen('defaults.stl', 'cube', 'stl', '--scale', '7.25');    # bytes no job has seen
my $dhold = $node->background_psql($db, on_error_stop => 0);
$dhold->query_safe('BEGIN');
$dhold->query_safe('LOCK TABLE alexandrite.meshes IN SHARE ROW EXCLUSIVE MODE');
my $djob = sql("SELECT alexandrite.mesh_submit(pg_read_binary_file('$dfile'), 'defaults.stl', 'cm', $dorder)");
ok(AlxTest::wait_until($node, $db, qq{SELECT (SELECT state = 'running' FROM alexandrite.mesh_jobs WHERE id = $djob)
                  AND (SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'alexandrite.meshes'::regclass) = 1}, 60),
	'role defaults: the job runs, its worker held before it stores the mesh');
sql("UPDATE alexandrite.orders SET updated_at = clock_timestamp() WHERE id = $dorder");
$dhold->query_safe('COMMIT');
$dhold->quit;
wait_idle('under the role defaults', 120);
is(sql("SELECT state || ':' || attempts || ':' || coalesce(error_sqlstate, '') || ':' || gave_model || ':' || coalesce(note, '-')
          FROM alexandrite.mesh_jobs WHERE id = $djob"),
	'done:1::true:-', 'role defaults: the job is done in one attempt and gives its order the mesh');
is(sql("SELECT o.mesh_id = j.mesh_id FROM alexandrite.orders o JOIN alexandrite.mesh_jobs j ON j.order_id = o.id
         WHERE j.id = $djob"), 't', 'role defaults: its order has its mesh');
sql(q{ALTER ROLE alexandrite_worker RESET ALL});

# --- DROP and CREATE EXTENSION during an analysis: its result is dropped --------
# The helper runs with no gate (above), so the extension can be dropped and
# created again while a job is analysed; job ids then start again, and the
# worker's last step must not store the old job's mesh in the new tables
# (src/mesh/jobs_run.c, AlxMeshJobFinish).  A session waits (1 ms polls, in
# the server) until a worker analyses a large job, takes the workers' gate
# (so the worker cannot go on to store), checks the job still runs, then
# drops and creates the extension in the same transaction.
{
	my $log_at = -s $node->logfile;
	my $rfile = gen('reinstall.stl', 'torus:700:500', 'stl');    # bytes no job has seen (a stored mesh is not analysed)
	my $s = $node->background_psql($db, on_error_stop => 1);
	$s->query_safe('BEGIN');
	$s->query_until(qr/polling/, q{\echo polling
DO $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  LOOP
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type LIKE 'alexandrite mesh worker%'
                         AND state = 'active' AND query = 'alexandrite: analysing a mesh job');
    IF clock_timestamp() > t0 + interval '120 s' THEN RAISE EXCEPTION 'no worker analysed the job'; END IF;
    PERFORM pg_sleep(0.001);
  END LOOP;
END $$;
});
	my $rid = sql("SELECT alexandrite.mesh_submit(pg_read_binary_file('$rfile'), 'reinstall.stl', 'mm')");
	$s->query_safe('LOCK TABLE alexandrite.orders IN ACCESS EXCLUSIVE MODE');
	is($s->query_safe("SELECT state FROM alexandrite.mesh_jobs WHERE id = $rid"), 'running',
		'reinstall: the gate is taken while the job is analysed');
	$s->query_safe('DROP EXTENSION alexandrite CASCADE');
	$s->query_safe('CREATE EXTENSION alexandrite');
	$s->query_safe('COMMIT');
	$s->quit;
	my $said = 0;
	for (my $deadline = time() + 120; time() < $deadline; sleep 1)
	{
		last if $said = slurp_file($node->logfile, $log_at) =~
		  /mesh job $rid: the extension was installed again during its analysis; its result is dropped/;
	}
	ok($said, 'reinstall: the worker says it drops the result');
	is(sql(q{SELECT (SELECT count(*) FROM alexandrite.meshes) || ':' || (SELECT count(*) FROM alexandrite.mesh_jobs)}),
		'0:0', 'reinstall: nothing of the old job is in the new tables');
	my $nid = sql("SELECT alexandrite.mesh_submit(pg_read_binary_file('$rfile'), 'reinstall.stl', 'mm')");
	wait_idle('after the reinstall');
	is(sql("SELECT state || ':' || attempts || ':' || (mesh_id IS NOT NULL) FROM alexandrite.mesh_jobs WHERE id = $nid"),
		'done:1:true', 'reinstall: a job of the new install is analysed and stored');
	unlike(slurp_file($node->logfile, $log_at), qr/terminated by signal|server process .* exited with exit code [^0]/,
		'reinstall: no crash');
}

$node->stop;
done_testing();
