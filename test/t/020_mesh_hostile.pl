# 020_mesh_hostile: a generated hostile corpus through mesh_analyze.
#
# Every hostile file must end in an ERROR with SQLSTATE 22P04, 22023 or
# 54000 (or, for files that merely name server files, in the plain stats of
# their geometry), without the postmaster restarting, without any backend
# crashing, and without a byte of a server file showing up in a result or a
# message.  Then: alexandrite.mesh_timeout, statement_timeout and a query
# cancel each stop a busy helper, and the backend is left with no child
# process and no extra file descriptor.  Finally the helper's CLI mode.
use strict;
use warnings FATAL => 'all';

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../perl';

use AlxTest;
use IPC::Run;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $gen = "$AlxTest::TOP/test/gen/genmesh.py";

my $node = AlxTest::new_node('mesh_hostile');
# a marker that only exists inside the cluster's postgresql.conf
my $marker = 'alx-secret-marker-5f3c1e77';
$node->append_conf('postgresql.conf', "# $marker\n");
$node->start;
AlxTest::install($node, 'postgres');

my $datadir = $node->data_dir;
my $bindir = $node->config_data('--bindir');
my $corpus = PostgreSQL::Test::Utils::tempdir();
system('python3', $gen, '--hostile', $corpus, '--datadir', $datadir) == 0
  or BAIL_OUT('could not generate the hostile corpus');

my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# files that only *name* server files: they parse, without those files
my %parses = map { $_ => 1 }
  qw(mtllib_passwd.obj mtllib_conf.obj mtllib_relative.obj xxe.3mf);
# too slow to run under the default limits here; used for the timeouts below
my %skip = ('star_polygon.obj' => 1);
my %hints = (stl => 'stl', obj => 'obj', ply => 'ply', gltf => 'gltf',
	glb => 'glb', '3mf' => '3mf');

sub slurp_b64
{
	my ($path) = @_;
	open(my $fh, '<:raw', $path) or die "could not open $path: $!";
	local $/;
	my $data = <$fh>;
	close $fh;
	return encode_base64($data // '', '');
}

sub analyze
{
	my ($b64, $hint, %extra) = @_;
	my $h = defined $hint ? "'$hint'" : 'NULL';
	my $pre = $extra{pre} // '';
	return $node->psql('postgres',
		"\\set VERBOSITY verbose\n$pre\nSELECT (s).triangles || '|' || (s).volume_mm3 "
		  . "FROM (SELECT alexandrite.mesh_analyze(decode('$b64', 'base64'), $h) AS s) a");
}

opendir(my $dh, $corpus) or die;
my @files = sort grep { !/^\./ } readdir($dh);
closedir $dh;
cmp_ok(scalar(@files), '>=', 40, 'the hostile corpus has at least 40 files');

my $leaks = 0;
foreach my $f (@files)
{
	next if $skip{$f};
	my $b64 = slurp_b64("$corpus/$f");
	my ($ext) = $f =~ /\.([^.]+)$/;
	my @try = (undef);
	push @try, $hints{$ext} if defined $ext && $hints{$ext};
	foreach my $hint (@try)
	{
		my $label = "$f with hint " . ($hint // 'NULL');
		my ($ret, $out, $err) = analyze($b64, $hint);
		if ($parses{$f})
		{
			is($ret, 0, "$label parses");
			is($out, '12|1000', "$label gives the cube's own stats");
		}
		else
		{
			isnt($ret, 0, "$label fails");
			like($err, qr/ERROR:\s+(22P04|22023|54000):/,
				"$label fails with 22P04, 22023 or 54000")
			  or diag($err);
		}
		if ("$out$err" =~ /root:x:0:0|$marker|shared_preload_libraries|cron\.database_name/)
		{
			$leaks++;
			diag("server file content in the result of $label: $out $err");
		}
	}
}
is($leaks, 0, 'no server file content in any result or message');

# The uri cases must fail because the file was refused, not because it was
# read and misparsed: the detail names the refused reference.
{
	my ($ret, $out, $err) = analyze(slurp_b64("$corpus/uri_passwd.gltf"), 'gltf');
	like($err, qr/could not open referenced file "\/etc\/passwd"/,
		'a glTF buffer uri naming /etc/passwd is refused by the confined I/O');
}

# ---- timeouts and cancel: the helper is killed, reaped, fds closed ----
my $star = slurp_b64("$corpus/star_polygon.obj");
my $probe = q{SELECT 'fds=' || (SELECT count(*) FROM pg_ls_dir('/proc/self/fd'))
  || ' children=[' || btrim(pg_read_file('/proc/self/task/' || pg_backend_pid() || '/children')) || ']';};

sub busy_case
{
	my ($name, $pre, $errpat) = @_;
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\n$probe\n$pre\n"
		  . "SELECT alexandrite.mesh_analyze(decode('$star', 'base64'), 'obj');\n$probe",
		on_error_stop => 0);
	my $elapsed = time - $t0;
	like($err, $errpat, "$name: the analysis is stopped with the right error")
	  or diag($err);
	my @probes = $out =~ /fds=(\d+) children=\[([^\]]*)\]/g;
	is(scalar(@probes), 4, "$name: both probes ran in the same session");
	is($probes[1], '', "$name: no child before");
	is($probes[3], '', "$name: no child (and so no zombie) after");
	is($probes[2], $probes[0], "$name: no descriptor leaked");
	cmp_ok($elapsed, '<', 10, "$name: stopped promptly");
}

busy_case('alexandrite.mesh_timeout', 'SET alexandrite.mesh_timeout = 500;',
	qr/ERROR:\s+57014: mesh analysis timed out after 500 ms/);
busy_case('statement_timeout', 'SET statement_timeout = 500;',
	qr/ERROR:\s+57014: canceling statement due to statement timeout/);

# query cancel from another session
{
	my ($stdout, $stderr) = ('', '');
	my $sql = "\\set VERBOSITY verbose\nSET alexandrite.mesh_max_concurrent = 1;\nSELECT 'pid=' || pg_backend_pid();\n"
	  . "SELECT alexandrite.mesh_analyze(decode('$star', 'base64'), 'obj');\n$probe\n";
	my $h = IPC::Run::start(
		[ "$bindir/psql", '-XAtq', '-d', $node->connstr('postgres') ],
		'<', \$sql, '>', \$stdout, '2>', \$stderr);
	my $pid;
	for (my $i = 0; $i < 200 && !$pid; $i++)
	{
		$h->pump_nb;
		my $active = $node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE query LIKE '%mesh_analyze(decode(%' AND state = 'active' AND pid <> pg_backend_pid()");
		$pid = $active if $active =~ /^\d+$/;
		select(undef, undef, undef, 0.1) unless $pid;
	}
	ok($pid, 'the busy analysis is running');
	# let the helper get going, then cancel
	select(undef, undef, undef, 0.3);
	my $children = $node->safe_psql('postgres',
		"SELECT btrim(pg_read_file('/proc/$pid/task/$pid/children'))");
	like($children, qr/^\d+$/, 'the backend has one helper child while it runs');
	# the only slot is taken: another analysis waits, then gives up
	my $cube_b64 = encode_base64("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", '');
	my ($sret, $sout, $serr) = analyze($cube_b64, 'obj',
		pre => 'SET alexandrite.mesh_max_concurrent = 1; SET alexandrite.mesh_timeout = 300;');
	like($serr, qr/ERROR:\s+57014: no mesh analysis slot became free within 300 ms/,
		'alexandrite.mesh_max_concurrent = 1 makes a second analysis wait and give up');
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	$h->finish;
	like($stderr, qr/ERROR:\s+57014: canceling statement due to user request/,
		'a query cancel stops the analysis');
	like($stdout, qr/children=\[\]/, 'no helper child left after the cancel');
	ok(!kill(0, $children), 'the helper process is gone') if $children =~ /^\d+$/;
	my ($fret, $fout, $ferr) = analyze($cube_b64, 'obj',
		pre => 'SET alexandrite.mesh_max_concurrent = 1; SET alexandrite.mesh_timeout = 2000;');
	is($fout, '1|0', 'the cancelled analysis gave its slot back');
}

# ---- the cluster survived all of it ----
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'the postmaster never restarted');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|exited with exit code|terminating any other active server processes|all server processes terminated/,
	'no backend crashed');

# ---- the CLI mode: one JSON line per file ----
my $cube = "$corpus/cli_cube.stl";
system('python3', $gen, 'cube', 'stl', '--out', $cube) == 0 or die;
my ($cli_out, $cli_err) = ('', '');
IPC::Run::run([ "$bindir/alexandrite-meshd", $cube, "$corpus/nan.stl", "$corpus/uri_passwd.gltf" ],
	'>', \$cli_out, '2>', \$cli_err);
my @lines = split /\n/, $cli_out;
is(scalar(@lines), 3, 'the CLI prints one line per file');
like($lines[0], qr/"format":"stl-binary".*"triangles":12,"vertices":8,"volume_mm3":1000,"area_mm2":600/,
	'the CLI reports the cube');
like($lines[1], qr/"error":"mesh has a NaN or infinite vertex coordinate"/, 'the CLI reports an error per file');
like($lines[2], qr/"error":".*could not open referenced file/, 'the CLI refuses referenced files too');

$node->stop;
done_testing();
