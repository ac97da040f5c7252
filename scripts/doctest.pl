#!/usr/bin/perl
# Run the examples of doc/*.md and compare what psql prints with the page,
# so the documentation cannot drift from what the extension does.
#
# In a page, every ```sql block is run in order, in one session that starts
# from a freshly created extension with TimeZone Asia/Tokyo and ISO dates.
# The ```text blocks that follow sql blocks, concatenated, must equal psql's
# output (results and errors, no echo; setup statements print nothing in
# quiet mode).  Pages without ```sql blocks are skipped, and so are pages
# that say `<!-- doctest: skip ... -->` (their worked example needs data that
# a regress test builds, which then prints the same output).
#
# Usage: scripts/doctest.pl OUTDIR [doc/page.md ...]
#   writes OUTDIR/<page>.sql and OUTDIR/<page>.expected for each page
use strict;
use warnings;

my $outdir = shift or die "usage: $0 OUTDIR [pages]\n";
my @pages = @ARGV ? @ARGV : sort glob('doc/*.md');
my $header = <<'SQL';
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET TimeZone = 'Asia/Tokyo';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\set SHOW_CONTEXT never
SQL

mkdir $outdir unless -d $outdir;
foreach my $path (@pages)
{
	(my $page = $path) =~ s{.*/}{};
	$page =~ s/\.md$//;
	open(my $in, '<:raw', $path) or die "$path: $!";
	my @lines = <$in>;
	close($in);

	my ($sql, $expected, $blocks) = ($header, '', 0);
	my $in_block = '';
	foreach my $line (@lines)
	{
		if ($in_block)
		{
			if ($line =~ /^```\s*$/)
			{
				$in_block = '';
				next;
			}
			$sql .= $line if $in_block eq 'sql';
			$expected .= $line if $in_block eq 'text';
			next;
		}
		if ($line =~ /^```(sql|text)\s*$/)
		{
			$in_block = $1;
			$blocks++ if $1 eq 'sql';
		}
		elsif ($line =~ /^```/)
		{
			$in_block = 'other';
		}
	}
	next unless $blocks;
	next if grep { /<!-- doctest: skip/ } @lines;
	open(my $o1, '>:raw', "$outdir/$page.sql") or die $!;
	print $o1 $sql;
	close($o1);
	open(my $o2, '>:raw', "$outdir/$page.expected") or die $!;
	print $o2 $expected;
	close($o2);
}
