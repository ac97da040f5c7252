#!/usr/bin/perl
# Judge a sqlsmith run (scripts/fuzz.sh) from the server log and sqlsmith's
# output.  Usage: fuzzlog.pl SRCDIR SERVER_LOG SQLSMITH_STDERR
#
# The server log must be written with log_error_verbosity = verbose and a
# log_line_prefix of '%m [%p] %e ' (time, pid, SQLSTATE), so that every
# ERROR is followed by its "LOCATION:  function, file.c:line".
#
# Prints the number of queries, the errors by SQLSTATE, and every internal
# error (XX000), split into those raised in leadmgmt's C code (a file of
# SRCDIR/*.c or SRCDIR/core/*.c that defines the function named in
# LOCATION) and those raised in PostgreSQL's own code.  Exits 1 on a server
# crash or an XX000 raised in leadmgmt code, 0 otherwise.
use strict;
use warnings;
use File::Basename qw(basename);

my ($srcdir, $serverlog, $smithlog) = @ARGV;
die "usage: $0 SRCDIR SERVER_LOG SQLSMITH_STDERR\n" unless defined $smithlog;

# leadmgmt's C files: basename => text (src/X.c and src/core/X.c together:
# the server logs base names only)
my %ours;
for my $f (glob("$srcdir/*.c"), glob("$srcdir/core/*.c")) {
	open my $fh, '<', $f or die "$f: $!\n";
	local $/;
	$ours{ basename($f) } .= <$fh>;
}

my $prefix = qr/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[(\d+)\] (\w{5}) /;
my (%by_state, @entries, %current, @crashes, @restarts);
open my $log, '<', $serverlog or die "$serverlog: $!\n";
while (my $line = <$log>) {
	chomp $line;
	# a process that died (a backend's or a parallel worker's ERROR exits
	# with code 1, which is normal), or a restart of the whole server
	if ($line =~ /terminated by (signal|exception)|exited with exit code (?!1\b)|PANIC:/) {
		push @crashes, $line;
	} elsif ($line =~ /all server processes terminated|database system was interrupted/) {
		push @restarts, $line;
	}
	next unless $line =~ $prefix;
	my ($pid, $state) = ($1, $2);
	my $rest = $';
	if ($rest =~ /^(ERROR|FATAL|PANIC):  (?:\w{5}: )?(.*)/) {
		my $e = { pid => $pid, state => $state, level => $1, msg => $2 };
		push @entries, $e;
		$current{$pid} = $e;
		$by_state{$state}++ if $1 eq 'ERROR';
	} elsif ($rest =~ /^(LOCATION|CONTEXT|STATEMENT):  (.*)/ && $current{$pid}) {
		$current{$pid}{ lc $1 } //= $2;
	} elsif ($rest =~ /^(LOG|WARNING|NOTICE|DEBUG\d?|INFO):/) {
		delete $current{$pid};
	}
}
close $log;

# the number of queries sqlsmith sent, and its own count of lost connections
my ($queries, $broken) = (0, 0);
open my $smith, '<', $smithlog or die "$smithlog: $!\n";
while (my $line = <$smith>) {
	$queries = $1 if $line =~ /^queries: (\d+)/;
	$broken += () = $line =~ /C/g if $line =~ /^[.eStCx]+$/;
}
close $smith;

sub in_leadmgmt {
	my ($e) = @_;
	my ($func, $file) = ($e->{location} // '') =~ /^(\w+), ([\w.]+):\d+/;
	return defined $file && exists $ours{$file} && $ours{$file} =~ /\b\Q$func\E\s*\(/;
}

my (@ours, @theirs);
for my $e (grep { $_->{state} eq 'XX000' } @entries) {
	push @{ in_leadmgmt($e) ? \@ours : \@theirs }, $e;
}

my $errors = 0;
$errors += $_ for values %by_state;
print "# sqlsmith: $queries queries, $errors errors, $broken lost connections\n";
print "# errors by SQLSTATE: ",
	join(', ', map { "$_ $by_state{$_}" } sort { $by_state{$b} <=> $by_state{$a} || $a cmp $b } keys %by_state),
	"\n" if $errors;
my %seen;
for my $e (@ours, @theirs) {
	my $where = (grep { $_ == $e } @ours) ? 'leadmgmt' : 'PostgreSQL';
	my $key = "$where $e->{msg} " . ($e->{location} // '');
	next if $seen{$key}++;
	print "# XX000 in $where code: $e->{msg} (", $e->{location} // 'no location', ")\n";
	print "#   statement: ", substr($e->{statement}, 0, 400), "\n" if defined $e->{statement};
}
# the rest of class XX (data corrupted, index corrupted): listed, not counted
my %seen_xx;
for my $e (grep { $_->{state} =~ /^XX/ && $_->{state} ne 'XX000' } @entries) {
	my $where = in_leadmgmt($e) ? 'leadmgmt' : 'PostgreSQL';
	next if $seen_xx{"$e->{state} $e->{msg}"}++;
	print "# $e->{state} in $where code: $e->{msg} (", $e->{location} // 'no location', ")\n";
}
print "# server crash: $_\n" for @crashes, @restarts;
push @crashes, $restarts[0] if @restarts && !@crashes;
printf "# %d crashes, %d internal errors (XX000) in leadmgmt code, %d in PostgreSQL code\n",
	scalar(@crashes), scalar(@ours), scalar(@theirs);
exit((@crashes || @ours) ? 1 : 0);
