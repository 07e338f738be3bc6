#!/usr/bin/perl
# docblocks.pl: the code blocks of a Markdown document that tests run as
# written.  A block is marked by an HTML comment on the line right before
# its opening fence:
#
#   <!-- docblock: privileges-grants -->
#   ```sql
#   GRANT ...
#   ```
#
# The comment is invisible in rendered Markdown; the name is unique in the
# file.  One source: the document is what CI runs, not a copy of it.
#
#   test/docblocks.pl FILE NAME     print the block NAME (exit 1 if missing)
#   test/docblocks.pl --list FILE   print "NAME LANGUAGE LINE" for each block
#
# From Perl (the TAP tests):  require "$TOP/test/docblocks.pl";
#   my $sql = DocBlocks::block("$TOP/docs/operations.md", 'privileges-grants');
#   my @all = DocBlocks::blocks($file);   # [ name, language, line, text ]
package DocBlocks;

use strict;
use warnings FATAL => 'all';

# Every marked block of a file, in order: [ name, language, line, text ].
# Dies on a marker without a fence right after it, an unclosed fence, or a
# name used twice.
sub blocks
{
	my ($file) = @_;
	open my $fh, '<', $file or die "could not open \"$file\": $!\n";
	my @lines = <$fh>;
	close $fh;
	my (@out, %seen);
	for (my $i = 0; $i < @lines; $i++)
	{
		next unless $lines[$i] =~ /^<!--\s*docblock:\s*([A-Za-z0-9_.-]+)\s*-->\s*$/;
		my $name = $1;
		die "$file:" . ($i + 1) . ": docblock \"$name\" is marked twice\n" if $seen{$name}++;
		my $j = $i + 1;
		die "$file:" . ($i + 1) . ": docblock \"$name\" is not followed by a fenced block\n"
		  unless $j < @lines && $lines[$j] =~ /^(```+|~~~+)\s*([A-Za-z0-9_+-]*)\s*$/;
		my ($fence, $lang) = ($1, $2);
		my $text = '';
		for ($j++; $j < @lines && $lines[$j] !~ /^\Q$fence\E\s*$/; $j++)
		{
			$text .= $lines[$j];
		}
		die "$file:" . ($i + 2) . ": docblock \"$name\" is not closed\n" if $j >= @lines;
		push @out, [ $name, $lang, $i + 2, $text ];
		$i = $j;
	}
	return @out;
}

# The text of one block; dies when the file has no block of that name.
sub block
{
	my ($file, $name) = @_;
	for my $b (blocks($file))
	{
		return $b->[3] if $b->[0] eq $name;
	}
	die "$file: no docblock \"$name\"\n";
}

sub main
{
	my @args = @_;
	if (@args == 2 && $args[0] eq '--list')
	{
		printf "%s %s %d\n", $_->[0], $_->[1] || '-', $_->[2] for blocks($args[1]);
		return 0;
	}
	if (@args == 2)
	{
		my $text = eval { block(@args) };
		if (!defined $text)
		{
			print STDERR $@;
			return 1;
		}
		print $text;
		return 0;
	}
	print STDERR "usage: test/docblocks.pl FILE NAME | --list FILE\n";
	return 2;
}

exit(main(@ARGV)) unless caller;

1;
