#!/usr/bin/perl
# Hardening check of the SQL that src/*.c and src/pg/*.c send through SPI (issue 9, item 4).
#
# Takes every C string literal, or run of adjacent literals, that starts with
# an SQL verb (SELECT, INSERT, UPDATE, DELETE, WITH, LOCK) and reports:
#   - relation names after FROM / JOIN / INTO / UPDATE / TABLE that are not
#     schema-qualified (transition tables named in a REFERENCING clause are
#     allowed: list them in @transition_tables);
#   - operators not written as OPERATOR(pg_catalog.x);
#   - function calls not schema-qualified (SQL syntax such as COALESCE,
#     EXISTS, IN, ANY, CASE is not a function call and is skipped).
# Prints one line per finding, "file:line: what: text", and exits 1 when
# there is any.  Usage: perl scripts/hardening.pl [files; default src/*.c src/pg/*.c]
use strict;
use warnings;

my @transition_tables = qw(new_activity);
my %syntax = map { $_ => 1 } qw(
	coalesce nullif greatest least exists in any all some values row array cast
	over filter within as on using and or not when then else case end from where
	select join lateral distinct by group order partition with returning set
	into limit offset union except intersect is null true false table only
	rows range between like ilike similar for update share nowait skip locked
	extract overlay position substring trim interval timestamp
);

my @files = @ARGV ? @ARGV : (sort(glob('src/*.c')), sort(glob('src/pg/*.c')));
my $findings = 0;
foreach my $file (@files)
{
	open(my $in, '<', $file) or die "$file: $!";
	local $/;
	my $src = <$in>;
	close($in);
	# drop comments, keep line numbers
	$src =~ s{/\*.*?\*/}{ my $c = $&; $c =~ tr/\n//cd; $c }gse;
	$src =~ s{//[^\n]*}{}g;
	# runs of adjacent string literals
	while ($src =~ /((?:"(?:[^"\\\n]|\\.)*"\s*)+)/g)
	{
		my ($run, $end) = ($1, pos($src));
		my $line = 1 + (substr($src, 0, $end - length($run)) =~ tr/\n//);
		my $sql = join('', $run =~ /"((?:[^"\\\n]|\\.)*)"/g);
		next unless $sql =~ /^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|LOCK)\b/;
		check($file, $line, $sql);
	}
}
print "$findings finding(s)\n";
exit($findings ? 1 : 0);

sub report
{
	my ($file, $line, $what, $text) = @_;
	print "$file:$line: $what: $text\n";
	$findings++;
}

sub check
{
	my ($file, $line, $sql) = @_;
	my $s = $sql;
	$s =~ s/\\"/"/g;
	$s =~ s/'(?:[^']|'')*'/''/g;                    # SQL literals
	$s =~ s/OPERATOR\s*\(\s*pg_catalog\.[^)]+\)/ ## /g;
	$s =~ s/::\s*[\w.]+(\[\])?/ /g;                  # casts
	$s =~ s/%\w/ X /g;                               # printf conversions
	$s =~ s/\$\d+/ P /g;                             # parameters
	$s =~ s/\bROWS\s+FROM\b/FROM/gi;                 # ROWS FROM (...)
	$s =~ s/\bAS\s+\w+\s*\([^)]*\)/ /gi;             # alias column lists
	$s =~ s/(\bSET|,)\s*\w+\s*=(?!=)/$1 /gi;          # SET col = ..., col = ...

	while ($s =~ /\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(?!ONLY\b|LATERAL\b)([A-Za-z_][\w]*)(\.)?/gi)
	{
		my ($name, $dot) = ($1, $2);
		next if $dot;
		next if grep { $_ eq $name } @transition_tables;
		next if $name =~ /^(SELECT|P|X|FROM)$/i;
		report($file, $line, "unqualified relation \"$name\"", $sql);
	}
	while ($s =~ /(?<![\w.])([A-Za-z_]\w*)\s*\(/g)
	{
		my $name = $1;
		next if $syntax{lc $name};
		report($file, $line, "unqualified function \"$name\"", $sql);
	}
	(my $ops = $s) =~ s/\bcount\s*\(\s*\*\s*\)//gi;
	$ops =~ s/SELECT\s+\*/SELECT/gi;
	$ops =~ s/\.\*//g;
	while ($ops =~ /(<>|!=|<=|>=|=|<|>|\|\||\+|(?<![\w\s(,])-|\*|\/|~~?\*?|!~)/g)
	{
		report($file, $line, "bare operator \"$1\"", $sql);
	}
}
