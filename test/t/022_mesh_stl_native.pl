# 022_mesh_stl_native: binary STL read natively gives exactly what assimp
# gives.
#
# The helper reads binary STL itself (src/mesh/stlbin.c) and everything else
# with assimp; --stl-via-assimp sends binary STL through assimp as before.
# For every fixture shape (closed, open, several shells, voids, flipped
# faces, degenerate and non-manifold triangles, far from the origin, tiny,
# huge), in several units, in grid and shuffled triangle order, with a
# header that starts with "solid", with -0 and +0 coordinates to weld, with
# a denormal coordinate not to weld, and for the hostile STL cases, both
# paths must print the very same JSON line, byte for byte (every count,
# every double to the last bit, the same error message).  Then through
# SQL: mesh_analyze() of the same bytes gives what the CLI printed.
use strict;
use warnings FATAL => 'all';

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../perl';

use AlxTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $gen = "$AlxTest::TOP/test/gen/genmesh.py";
my $meshd = "$AlxTest::TOP/src/mesh/alexandrite-meshd";
my $dir = PostgreSQL::Test::Utils::tempdir();

sub gen
{
	my ($out, @args) = @_;
	system('python3', $gen, @args, '--out', $out) == 0 or die "genmesh @args failed";
	return $out;
}

sub cli
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $meshd, @args ], '>', \$out, '2>', \$err);
	$out =~ s/^\{"file":"[^"]*",//;
	return $out;
}

# The backend's way: the bytes on a pipe, their exact size announced with
# --max-bytes, read whole before the lockdown.  Returns the JSON line (file name stripped) or, for a
# refusal, "error:MESSAGE" (stdin mode reports on stderr) and the exit code.
sub piped
{
	my ($path, $max, @args) = @_;
	my ($out, $err) = ('', '');
	my $in = slurp_file($path);    # a scalar: IPC::Run feeds it on a pipe
	IPC::Run::run([ $meshd, '--stdin', '--json', "--max-bytes=$max", @args ],
		'<', \$in, '>', \$out, '2>', \$err);
	my $rc = $? >> 8;
	$out =~ s/^\{"file":"[^"]*",//;
	chomp $err;
	return ($rc == 0 ? $out : "error:$err", $rc);
}

my @files;
foreach my $shape (qw(cube ring torus open twoshells overlap void nested inverted
	flipped degenerate nonmanifold bigcube tinycube far))
{
	push @files, [ gen("$dir/$shape.stl", $shape, 'stl'), 'mm' ];
}
push @files, [ gen("$dir/ring_in.stl", 'ring', 'stl'), 'in' ];
push @files, [ gen("$dir/torus_cm.stl", 'torus', 'stl'), 'cm' ];
push @files, [ gen("$dir/big_grid.stl", 'torus:300:100', 'stl'), 'mm' ];
push @files, [ gen("$dir/big_shuffled.stl", 'torus:300:100', 'stl', '--shuffle'), 'mm' ];

# a binary STL whose header starts with "solid" (size decides: binary)
{
	my $data = slurp_file("$dir/ring.stl");
	substr($data, 0, 10) = 'solid ring';
	open(my $fh, '>:raw', "$dir/solid_header.stl") or die;
	print $fh $data;
	close $fh;
	push @files, [ "$dir/solid_header.stl", 'mm' ];
}

# -0 and +0 in the same corner must weld: the same triangle twice, the
# second time with its corner at (-0, -0, -0) and wound the other way, is a
# closed two-sided sheet of 3 vertices (4 vertices and holes if not welded)
{
	my $hdr = 'negative zero' . (' ' x 67) . pack('V', 2);
	my $t1 = pack('f<12v', 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0);
	my $t2 = pack('f<12v', 0, 0, 0, -0.0, -0.0, -0.0, 0, 1, 0, 1, 0, 0, 0);
	open(my $fh, '>:raw', "$dir/negzero.stl") or die;
	print $fh $hdr . $t1 . $t2;
	close $fh;
	push @files, [ "$dir/negzero.stl", 'mm' ];
}

# a denormal float coordinate is a position of its own: a corner at
# (1.4e-45 * 16, 0, 0) next to one at (0, 0, 0) gives 4 vertices either way
# (the wall thickness's denormals-are-zero mode once leaked into the helper's
# main thread: assimp's path then welded it onto the origin, the native
# path kept 2 vertices at the same place; a fuzz finding, replayed as
# test/fuzz/corpus/decode/finding.denormal_weld.stlpair)
{
	my $d = unpack('f<', pack('V', 16));
	my $hdr = 'denormal' . (' ' x 72) . pack('V', 2);
	my $t1 = pack('f<12v', 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0);
	my $t2 = pack('f<12v', 0, 0, 0, $d, 0, 0, 0, 1, 0, 1, 0, 0, 0);
	open(my $fh, '>:raw', "$dir/denormal.stl") or die;
	print $fh $hdr . $t1 . $t2;
	close $fh;
	push @files, [ "$dir/denormal.stl", 'mm' ];
}

# the hostile binary STL cases: the same refusal either way
my $hostile = "$dir/hostile";
system('python3', $gen, '--hostile', $hostile) == 0 or die;
push @files, map { [ "$hostile/$_", 'mm' ] }
  qw(nan.stl stl_nan_normals.stl stl_count_max.stl truncated.stl trailing.stl lying_count.stl
  header_only.stl zeros.stl empty.stl);

my %cli;
foreach my $f (@files)
{
	my ($path, $unit) = @$f;
	my $name = (split m{/}, $path)[-1] . " ($unit)";
	my $native = cli("--unit=$unit", '--format=stl', $path);
	my $assimp = cli("--unit=$unit", '--format=stl', '--stl-via-assimp', $path);
	isnt($native, '', "$name: the native path printed a line");
	is($native, $assimp, "$name: native and assimp paths agree byte for byte");
	my ($piped) = piped($path, -s $path || 0, "--unit=$unit", '--format=stl');
	my $want = $native =~ /"error":"(.*)"\}$/ ? "error:$1" : $native;
	is($piped, $want, "$name: read from a pipe, the same result");
	$cli{$path} = $native if $unit eq 'mm';
}
like($cli{"$dir/negzero.stl"}, qr/"triangles":2,"vertices":3,.*"boundary_edges":0,/, '-0 and +0 weld into one vertex');
like($cli{"$dir/denormal.stl"}, qr/"triangles":2,"vertices":4,.*"boundary_edges":4,/, 'a denormal coordinate does not weld onto 0');
like($cli{"$dir/solid_header.stl"}, qr/"format":"stl-binary"/, 'a "solid" header of the right size is binary');
like($cli{"$hostile/nan.stl"}, qr/"error":"mesh has a NaN or infinite vertex coordinate"/, 'NaN refused');

# a pipe that ends early, or goes on past the announced size: refused
# (bad file 3, too large 4)
{
	my $path = "$dir/big_grid.stl";
	my $size = -s $path;
	my $data = slurp_file($path);
	open(my $fh, '>:raw', "$dir/cut.stl") or die;
	print $fh substr($data, 0, $size - 1_000_025);
	close $fh;
	open($fh, '>:raw', "$dir/long.stl") or die;
	print $fh $data . 'more';
	close $fh;
	my ($cut, $cut_rc) = piped("$dir/cut.stl", $size, '--format=stl');
	is("$cut_rc $cut", sprintf('3 error:binary STL size %d does not match its triangle count 60000 (expected %d bytes)',
			$size - 1_000_025, $size),
		'a pipe that ends before the announced size: the size does not match the count');
	my ($long, $long_rc) = piped("$dir/long.stl", $size, '--format=stl');
	is("$long_rc $long", "4 error:input is larger than $size bytes",
		'a pipe with more than the announced size: too large');
	my ($whole) = piped($path, $size + 1, '--format=stl');
	is($whole, $cli{$path}, 'a size that is not announced exactly: read whole, the same result');
}

# ---- through SQL: the same numbers ----
my $node = AlxTest::new_node('mesh_stl_native');
$node->start;
AlxTest::install($node, 'postgres');
foreach my $shape (qw(ring flipped big_shuffled))
{
	my $path = "$dir/$shape.stl";
	my $sql = $node->safe_psql('postgres',
		"SELECT (s).triangles || ' ' || (s).vertices || ' ' || (s).volume_mm3::numeric || ' ' || (s).area_mm2::numeric || ' ' || (s).faces_reoriented "
		  . "FROM (SELECT alexandrite.mesh_analyze(pg_read_binary_file('$path'), 'stl') AS s) a");
	my ($t, $v, $vol, $area, $re) = $cli{$path} =~
	  /"triangles":(\d+),"vertices":(\d+),"volume_mm3":([^,]+),"area_mm2":([^,]+),.*"faces_reoriented":(\d+)/;
	my $want = join(' ', $t, $v, sprintf('%.15g', $vol), sprintf('%.15g', $area), $re);
	my @got = split ' ', $sql;
	$got[2] = sprintf('%.15g', $got[2]);
	$got[3] = sprintf('%.15g', $got[3]);
	is("@got", $want, "$shape: mesh_analyze() gives what the CLI printed");
}

# ---- a 1.1 schema served by this library (a package upgrade before ALTER
# EXTENSION UPDATE): ingest and analyze work, the rows say analyzer 1 (no
# wall measured), and after the update the same bytes are measured again
# under the same id ----
{
	my $ring = "$dir/ring.stl";
	$node->safe_psql('postgres', 'CREATE DATABASE v11');
	$node->safe_psql('v11', "CREATE EXTENSION alexandrite VERSION '1.1'");
	my $id = $node->safe_psql('v11', "SELECT alexandrite.mesh_ingest(pg_read_binary_file('$ring'), 'ring.stl')");
	like($id, qr/^\d+$/, '1.1 schema: mesh_ingest stores the mesh');
	is($node->safe_psql('v11', "SELECT analyzer_version FROM alexandrite.meshes WHERE id = $id"), '1',
		'1.1 schema: stored as analyzer 1 (no wall thickness)');
	is($node->safe_psql('v11', "SELECT (alexandrite.mesh_analyze(pg_read_binary_file('$ring'), 'stl')).watertight"), 't',
		'1.1 schema: mesh_analyze returns 1.1\'s mesh_stats');
	$node->safe_psql('v11', "ALTER EXTENSION alexandrite UPDATE TO '1.2'");
	is($node->safe_psql('v11', "SELECT alexandrite.mesh_ingest(pg_read_binary_file('$ring'), 'ring.stl')"), $id,
		'after the update: the same bytes keep their id');
	is($node->safe_psql('v11', "SELECT analyzer_version > 1 AND min_wall_mm > 0 FROM alexandrite.meshes WHERE id = $id"), 't',
		'and are measured again, wall thickness included');
}
$node->stop;
done_testing();
