# 021_mesh_sandbox: the helper's sandbox, tested by breaking out of it.
#
# meshd-sandbox-test is alexandrite-meshd plus --try-syscall=NAME: it runs
# the helper's own code up to and including the lockdown, then makes one
# forbidden system call.  Each must kill the process with SIGSYS before the
# call returns (a returned call exits 99 and says so); the files the calls
# name must be untouched afterwards.  Controls: no probe gives the very
# record the installed helper gives, abort() still dies by SIGABRT, and a
# busy loop dies by SIGXCPU at the CPU budget of a small file (1 s) while
# /proc shows the limits, no_new_privs and the seccomp filter.  Finally the
# same deaths through SQL (meshd_path pointing at a wrapper): each is an
# ERROR with its own documented SQLSTATE, never taken for a bad file.
use strict;
use warnings FATAL => 'all';

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../perl';

use AlxTest;
use Config;
use IPC::Run;
use Time::HiRes qw(time sleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $probe_bin = "$AlxTest::TOP/src/mesh/meshd-sandbox-test";
ok(-x $probe_bin, 'the sandbox test program is built') or BAIL_OUT("no $probe_bin");

my %signo;
@signo{ split ' ', $Config{sig_name} } = split ' ', $Config{sig_num};

my $dir = PostgreSQL::Test::Utils::tempdir();
my $cube = "$dir/cube.stl";
system('python3', "$AlxTest::TOP/test/gen/genmesh.py", 'cube', 'stl', '--out', $cube) == 0
  or BAIL_OUT('could not generate the cube');
my $cube_bytes = slurp_file($cube);

# a file the probes try to open, unlink and rename
my $victim = "$dir/victim.txt";
append_to_file($victim, "must survive\n");

sub run_probe
{
	my ($probe, %opt) = @_;
	my ($out, $err) = ('', '');
	# two threads even on one CPU: the pool's worker is probed too
	my @cmd = ($opt{bin} // $probe_bin, '--stdin', '--format=stl', '--threads=2',
		'--max-bytes=' . length($cube_bytes));
	push @cmd, "--try-syscall=$probe" if defined $probe;
	my $t0 = time;
	IPC::Run::run(\@cmd, '<', \$cube_bytes, '>', \$out, '2>', \$err);
	my $status = $?;
	return ($status, $out, $err, time - $t0);
}

# ---- every forbidden call kills the process with SIGSYS ----
my @forbidden = (
	'fork', 'fork_in_worker', 'thread', 'execve', "open:$victim", 'socket', "unlink:$victim",
	"rename:$victim", 'kill', 'io_uring_setup', 'x32', 'ptrace', 'mmap_exec',
	'mprotect_exec', 'setrlimit', 'write_fd', 'read_stdin', 'read_fd');
foreach my $p (@forbidden)
{
	my ($name) = $p =~ /^([^:]+)/;
	my ($status, $out, $err) = run_probe($p);
	like($err, qr/sandbox probe: trying \Q$name\E/, "$name: the probe ran after the lockdown");
	unlike($err, qr/returned/, "$name: the call never returned");
	is($status & 127, $signo{SYS}, "$name: the helper was killed by SIGSYS")
	  or diag("status $status, stderr: $err");
	is($out, '', "$name: no record was written");
}
ok(-f $victim && slurp_file($victim) eq "must survive\n", 'the file the probes named is untouched');
ok(!-e "$victim.renamed", 'and was not renamed');

# ---- controls ----
{
	my ($status, $out, $err) = run_probe('none');
	is($status, 0, 'no probe: the analysis succeeds under the sandbox') or diag($err);
	is(length($out), 296, 'no probe: one record');
	my ($rstatus, $rout) = run_probe(undef, bin => "$AlxTest::TOP/src/mesh/alexandrite-meshd");
	is($rstatus, 0, 'the helper itself succeeds');
	is($out, $rout, 'the test program gives the very record of the helper (same code path)');
	# --stdin --json prints through stdio under the filter (stdio's first
	# write would fstat() stdout: SIGSYS until the helper set its own buffer)
	my ($jout, $jerr) = ('', '');
	IPC::Run::run([ "$AlxTest::TOP/src/mesh/alexandrite-meshd", '--stdin', '--json', '--format=stl' ],
		'<', \$cube_bytes, '>', \$jout, '2>', \$jerr);
	is($?, 0, '--stdin --json exits cleanly under the sandbox') or diag($jerr);
	like($jout, qr/\A\{"file":"-",[^\n]*"volume_mm3":1000[,.][^\n]*\}\n\z/, '--stdin --json prints one JSON line with the volume');
}
{
	my ($status, $out, $err) = run_probe('abort');
	is($status & 127, $signo{ABRT}, 'abort() still dies by SIGABRT, not SIGSYS') or diag($err);
	# faultguard.c: a fault that is not a stack overflow is still a crash ...
	($status, $out, $err) = run_probe('segv');
	is($status & 127, $signo{SEGV}, 'a write to an unmapped address still dies by SIGSEGV')
	  or diag("status $status, stderr: $err");
	unlike($err, qr/nests too deeply|out of memory/, 'segv: not taken for a stack overflow');
	# ... and a stack overflow of the main thread while assimp parses is a
	# clean refusal
	($status, $out, $err) = run_probe('recurse');
	is($status, 3 << 8, 'unbounded recursion while parsing: the helper exits with code 3 (invalid file), no signal')
	  or diag("status $status, stderr: $err");
	like($err, qr/nests too deeply or in a cycle: the parser ran out of stack/, 'recurse: and says why');
	is($out, '', 'recurse: no record was written');
	# ... but in our own code it is a crash
	($status, $out, $err) = run_probe('recurse_outside');
	is($status & 127, $signo{SEGV}, 'unbounded recursion outside the parser: a crash (SIGSEGV)')
	  or diag("status $status, stderr: $err");
	# assimp's failed check: a refusal with the expression while it parses,
	# a crash (SIGABRT) anywhere else
	($status, $out, $err) = run_probe('assert');
	is($status, 3 << 8, 'a failed ai_assert() while parsing: exit code 3') or diag("status $status, stderr: $err");
	like($err, qr/^assimp found the file inconsistent: probe "quoted" != nullptr \(\.\/code\/Probe\.cpp:42\)$/m,
		'assert: the expression, file and line on one line of stderr');
	($status, $out, $err) = run_probe('assert_outside');
	is($status & 127, $signo{ABRT}, 'a failed ai_assert() outside the parse: SIGABRT') or diag("status $status, stderr: $err");
	like($err, qr/^assimp found the file inconsistent: probe != nullptr/m,
		'assert_outside: the failed check is still printed before the abort');
	# a check that fails after an allocation failed is the memory limit's doing
	($status, $out, $err) = run_probe('assert_after_oom');
	is($status, 4 << 8, 'a failed ai_assert() after a failed allocation: exit code 4 (too large)')
	  or diag("status $status, stderr: $err");
	like($err, qr/^out of memory under the helper's memory limit/m, 'assert_after_oom: and says so');
}

# a busy loop: limits and filter visible in /proc, then SIGXCPU at ~1 s of CPU
{
	my ($out, $err) = ('', '');
	my $t0 = time;
	my $h = IPC::Run::start(
		[ $probe_bin, '--stdin', '--max-bytes=' . length($cube_bytes), '--try-syscall=spin' ],
		'<', $cube, '>', \$out, '2>', \$err);
	my $pid = $h->{KIDS}[0]{PID};
	my ($limits, $pstatus) = ('', '');
	for (my $i = 0; $i < 100 && $err !~ /trying spin/; $i++)
	{
		$h->pump_nb;
		sleep(0.02);
	}
	like($err, qr/trying spin/, 'spin: the probe is running');
	$limits = eval { slurp_file("/proc/$pid/limits") } // '';
	$pstatus = eval { slurp_file("/proc/$pid/status") } // '';
	$h->finish;
	my $elapsed = time - $t0;
	like($limits, qr/^Max cpu time\s+1\s+2\s+seconds/m, 'spin: RLIMIT_CPU is the 1 s budget of a small file');
	like($limits, qr/^Max processes\s+0\s+0\s/m, 'spin: RLIMIT_NPROC is 0');
	like($limits, qr/^Max file size\s+0\s+0\s/m, 'spin: RLIMIT_FSIZE is 0');
	like($limits, qr/^Max core file size\s+0\s+0\s/m, 'spin: RLIMIT_CORE is 0');
	like($limits, qr/^Max open files\s+16\s+16\s/m, 'spin: RLIMIT_NOFILE is 16');
	like($limits, qr/^Max address space\s+\d+\s+\d+\s+bytes/m, 'spin: RLIMIT_AS is set');
	like($pstatus, qr/^NoNewPrivs:\s+1$/m, 'spin: no_new_privs is set');
	like($pstatus, qr/^Seccomp:\s+2$/m, 'spin: a seccomp filter is installed');
	is($? & 127, $signo{XCPU}, 'spin: the CPU budget stops the busy loop with SIGXCPU');
	cmp_ok($elapsed, '<', 10, 'spin: within seconds');
}

# ---- the same deaths through SQL: each its own SQLSTATE ----
my $node = AlxTest::new_node('mesh_sandbox');
$node->start;
AlxTest::install($node, 'postgres');
my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

sub wrapper
{
	my ($probe) = @_;
	my $w = "$dir/meshd-$probe";
	open(my $fh, '>', $w) or die "could not write $w: $!";
	print $fh "#!/bin/sh\nexec '$probe_bin' --try-syscall=$probe \"\$\@\"\n";
	close $fh;
	chmod 0755, $w;
	return $w;
}

sub via_sql
{
	my ($probe) = @_;
	my $w = wrapper($probe);
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSET alexandrite.meshd_path = '$w';\n"
		  . "SELECT (alexandrite.mesh_analyze(pg_read_binary_file('$cube'), 'stl')).triangles;");
	return ($ret, $out, $err, time - $t0);
}

{
	my ($ret, $out, $err) = via_sql('none');
	is($out, '12', 'through SQL: the sandboxed analysis succeeds') or diag($err);
	($ret, $out, $err) = via_sql('fork');
	like($err, qr/ERROR:\s+XX000: mesh helper was stopped by its sandbox/,
		'through SQL: a forbidden call is XX000 "stopped by its sandbox"');
	like($err, qr/signal 31|Bad system call/, 'through SQL: the detail names SIGSYS');
	($ret, $out, $err) = via_sql('socket');
	like($err, qr/ERROR:\s+XX000: mesh helper was stopped by its sandbox/, 'through SQL: socket too');
	($ret, $out, $err) = via_sql('abort');
	like($err, qr/ERROR:\s+XX000: mesh helper crashed/, 'through SQL: a crash is XX000 "crashed", not 22P04');
	($ret, $out, $err) = via_sql('segv');
	like($err, qr/ERROR:\s+XX000: mesh helper crashed/, 'through SQL: a segfault is XX000 "crashed"');
	like($err, qr/signal 11|Segmentation fault/, 'through SQL: the detail names SIGSEGV');
	($ret, $out, $err) = via_sql('recurse');
	like($err, qr/ERROR:\s+22P04: invalid mesh file/, 'through SQL: a stack overflow is 22P04');
	my $elapsed;
	($ret, $out, $err, $elapsed) = via_sql('spin');
	like($err, qr/ERROR:\s+54000: mesh analysis exceeded its CPU budget of 1 s/,
		'through SQL: a small file that keeps the helper busy hits its 1 s CPU budget (54000)');
	cmp_ok($elapsed, '<', 8, 'through SQL: and is stopped within seconds, not at mesh_timeout');
}

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'the postmaster never restarted');
$node->stop;
done_testing();
