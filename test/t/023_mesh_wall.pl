# 023_mesh_wall: wall thickness of shapes whose walls are known by
# construction, in every format and several units.
#
# genmesh.py draws: plates of a given thickness, a hollow cube (an inner
# void) of a given wall, two bodies of different thickness, a band ring with
# one thin spot (0.6 mm over 10 degrees of a 1.5 mm band), a fine torus
# (tube 3 mm), a plate with every 7th face wound backwards, a plate wound
# inside out.  The helper must find the thinnest wall within 1 % of the
# constructed value, at the right place, with the right areas under the
# thresholds (0.3, 0.5, 0.8, 1.0 mm; a wall of exactly 0.8 mm is not under
# 0.8), the same in STL (binary and ASCII), OBJ, PLY (ASCII and binary),
# glTF, GLB and 3MF, in mm, cm and inches, with one thread or four, and with
# binary STL read natively or by assimp.
use strict;
use warnings FATAL => 'all';

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/../perl';

use AlxTest;
use IPC::Run;
use POSIX qw(atan);
use PostgreSQL::Test::Utils;
use Test::More;

my $gen = "$AlxTest::TOP/test/gen/genmesh.py";
my $meshd = "$AlxTest::TOP/src/mesh/alexandrite-meshd";
my $dir = PostgreSQL::Test::Utils::tempdir();
my $n = 0;

sub gen
{
	my ($shape, $fmt, @opt) = @_;
	my $out = sprintf('%s/m%03d.%s', $dir, $n++, $fmt =~ /^3mf/ ? '3mf' : $fmt eq 'plyb' ? 'ply' : $fmt eq 'stla' ? 'stl' : $fmt);
	system('python3', $gen, $shape, $fmt, @opt, '--out', $out) == 0 or die "genmesh $shape $fmt failed";
	return $out;
}

sub run_meshd
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $meshd, @args ], '>', \$out, '2>', \$err);
	return $out;
}

# the wall fields of one analysis
sub wall
{
	my ($line) = @_;
	my %w;
	($w{min}) = $line =~ /"min_wall_mm":([^,]+),/;
	($w{x}, $w{y}, $w{z}) = $line =~ /"wall_at_mm":\[([^,]+),([^,]+),([^\]]+)\]/;
	@w{qw(a03 a05 a08 a10)} = $line =~
	  /"wall_area_below_mm2":\{"0.3":([^,]+),"0.5":([^,]+),"0.8":([^,]+),"1.0":([^}]+)\}/;
	($w{rays}) = $line =~ /"wall_rays":(\d+)/;
	$w{line} = $line;
	return \%w;
}

sub within
{
	my ($got, $want, $rel, $name) = @_;
	my $ok = defined $got && $got ne 'null' && abs($got - $want) <= $rel * abs($want);
	ok($ok, $name) or diag("got " . ($got // 'undef') . ", want $want");
}

# ---- every format and unit: the thin-spot ring ----
my @encodings = (
	[ 'stl',  [], ['--unit=mm'] ],
	[ 'stl',  [ '--div', '25.4' ], ['--unit=in'] ],
	[ 'stl',  [ '--div', '25.4' ], [ '--unit=in', '--stl-via-assimp' ] ],
	[ 'stla', [ '--div', '10' ],   ['--unit=cm'] ],
	[ 'obj',  [ '--div', '25.4' ], ['--unit=in'] ],
	[ 'ply',  [],                  ['--unit=mm'] ],
	[ 'plyb', [ '--div', '10' ],   ['--unit=cm'] ],
	[ 'gltf', [],                  [] ],
	[ 'glb',  [],                  [] ],
	[ '3mf',  [ '--unit', 'inch' ], [] ],
	[ '3mfz', [ '--unit', 'centimeter' ], [] ],);
foreach my $e (@encodings)
{
	my ($fmt, $genopt, $meshdopt) = @$e;
	my $label = "ringthin $fmt @$genopt @$meshdopt";
	my $w = wall(run_meshd(@$meshdopt, gen('ringthin', $fmt, @$genopt)));
	within($w->{min}, 0.6, 0.01, "$label: the thin spot is 0.6 mm");
	my $angle = abs(atan2($w->{y} // 0, $w->{x} // 0)) * 180 / 3.14159265358979;
	my $radius = sqrt(($w->{x} // 0)**2 + ($w->{y} // 0)**2);
	ok($angle <= 6 && $radius >= 8.49 && $radius <= 9.11 && $w->{z} >= 0 && $w->{z} <= 4,
		"$label: it is found in the notch") or diag($w->{line});
	is($w->{a05} + 0, 0, "$label: nothing under 0.5 mm");
	ok($w->{a08} > 9 && $w->{a08} < 13, "$label: the notch's walls are under 0.8 mm")
	  or diag($w->{line});
}

# ---- shapes of known thickness ----
my @shapes = (
	# shape, thickness, [areas under 0.3, 0.5, 0.8, 1.0] or undef
	[ 'plate:0.8',  0.8, [ 0, 0, 0, 800 ] ],
	[ 'plate:0.25', 0.25, [ 800, 800, 800, 800 ] ],
	[ 'plate:2.5',  2.5, [ 0, 0, 0, 0 ] ],
	[ 'shell:0.5',  0.5, [ 0, 0, 4566, 4566 ] ],
	[ 'shell:1.2',  1.2, [ 0, 0, 0, 0 ] ],
	[ 'twoplates',  0.7, [ 0, 0, 200, 200 ] ],
	[ 'torusfine',  3.0, [ 0, 0, 0, 0 ] ],
	[ 'plateflip',  0.8, [ 0, 0, 0, 800 ] ],
	[ 'plateinv',   0.5, [ 0, 0, 800, 800 ] ],
	[ 'cube',       10,  [ 0, 0, 0, 0 ] ],
	[ 'void',       5,   [ 0, 0, 0, 0 ] ],
	[ 'ring',       1.5, [ 0, 0, 0, 0 ] ],);
foreach my $s (@shapes)
{
	my ($shape, $t, $areas) = @$s;
	foreach my $fmt (qw(stl obj glb))
	{
		my $w = wall(run_meshd(gen($shape, $fmt)));
		within($w->{min}, $t, 0.01, "$shape $fmt: thinnest wall $t mm");
		my @got = map { $_ // 'undef' } @{$w}{qw(a03 a05 a08 a10)};
		my $ok = 1;
		for my $i (0 .. 3)
		{
			$ok &&= $got[$i] ne 'undef' && abs($got[$i] - $areas->[$i]) <= 1e-3 * ($areas->[$i] + 1);
		}
		ok($ok, "$shape $fmt: areas under 0.3/0.5/0.8/1.0 mm are @$areas") or diag("got @got");
	}
}
{
	my $w = wall(run_meshd(gen('twoplates', 'stl')));
	ok($w->{x} >= 20 && $w->{x} <= 30, 'twoplates: the thin wall is on the thin body');
}

# ---- open, degenerate, no wall at all ----
{
	my $w = wall(run_meshd(gen('open', 'stl')));
	within($w->{min}, 10, 0.01, 'an open box: its side walls are 10 mm apart');
	my $sheet = "$dir/sheet.obj";
	open(my $fh, '>', $sheet) or die;
	print $fh "v 0 0 0\nv 10 0 0\nv 0 10 0\nv 10 10 0\nf 1 2 3\nf 2 4 3\n";
	close $fh;
	my $line = run_meshd($sheet);
	like($line, qr/"min_wall_mm":null,"wall_rays":2,/, 'a flat sheet has no wall to measure');
	$w = wall(run_meshd(gen('degenerate', 'stl')));
	within($w->{min}, 10, 0.01, 'degenerate faces cast no ray and are not hit');
	like(run_meshd('--no-wall', gen('cube', 'stl')), qr/"min_wall_mm":null,"wall_rays":0,/,
		'--no-wall measures nothing');
}

# ---- the result does not depend on threads or the STL reader ----
foreach my $shape (qw(ringthin torus:300:100 flipped))
{
	my $f = gen($shape, 'stl', '--shuffle');
	my $one = run_meshd('--threads=1', $f);
	my $four = run_meshd('--threads=4', $f);
	my $assimp = run_meshd('--threads=3', '--stl-via-assimp', $f);
	like($one, qr/"min_wall_mm":[0-9]/, "$shape: measured");
	is($four, $one, "$shape: four threads give the very result of one");
	is($assimp, $one, "$shape: and so does assimp's reader");
}

done_testing();
