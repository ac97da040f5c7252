#!/usr/bin/perl
# META.json against the PGXN meta spec 1.0.0 (https://pgxn.org/meta/spec.txt),
# and against the tree: its version is EXTVERSION (Makefile) and the control
# file's default_version, and the files it names exist.
#   perl scripts/metacheck.pl [DIR]      (DIR: an unpacked distribution; .)
# Prints one line per problem; exits non-zero on any.
use strict;
use warnings;
use JSON::PP;

my $dir = shift // '.';
my @err;
sub bad { push @err, join('', @_) }

open my $fh, '<:raw', "$dir/META.json" or die "META.json: $!\n";
my $meta = eval { JSON::PP->new->utf8->decode(do { local $/; <$fh> }) };
die "META.json is not JSON: $@" unless $meta;

my $term   = qr/^[^\/\\\s[:cntrl:]]{2,}$/;
my $semver = qr/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+)?$/;
sub is_str { defined $_[0] && !ref $_[0] && length $_[0] }
sub version_range
{
	my ($v) = @_;
	return 1 if defined $v && !ref $v && $v eq '0';
	return 0 unless is_str($v);
	for my $part (split /\s*,\s*/, $v)
	{
		my ($op, $ver) = $part =~ /^(==|!=|>=|<=|>|<)?\s*(.+)$/ or return 0;
		return 0 unless $ver =~ $semver || $ver eq '0';
	}
	return 1;
}

my %known = map { $_ => 1 } qw(name version abstract maintainer license provides
  meta-spec description generated_by tags no_index prereqs release_status resources);
for my $k (sort keys %$meta)
{
	bad("unknown top-level key \"$k\" (custom keys start with x_)")
	  unless $known{$k} || $k =~ /^[xX]_/;
}
for my $k (qw(name version abstract maintainer license provides meta-spec))
{
	bad("required key \"$k\" missing") unless exists $meta->{$k};
}
bad("name is not a term") unless is_str($meta->{name}) && $meta->{name} =~ $term;
bad("version is not a semantic version") unless is_str($meta->{version}) && $meta->{version} =~ $semver;
bad("abstract is empty") unless is_str($meta->{abstract});
my $m = $meta->{maintainer};
bad("maintainer must be a string or a list of strings")
  unless is_str($m) || (ref $m eq 'ARRAY' && @$m && !grep { !is_str($_) } @$m);
my $l = $meta->{license};
bad("license must be a string, a list or an object")
  unless is_str($l) || ref $l eq 'ARRAY' || ref $l eq 'HASH';
my $ms = $meta->{'meta-spec'};
bad("meta-spec version must be 1.0.0")
  unless ref $ms eq 'HASH' && ($ms->{version} // '') eq '1.0.0';

my $p = $meta->{provides};
if (ref $p ne 'HASH' || !%$p)
{
	bad("provides must name at least one extension");
}
else
{
	for my $ext (sort keys %$p)
	{
		my $e = $p->{$ext};
		bad("provides: \"$ext\" is not a term") unless $ext =~ $term;
		bad("provides.$ext must be an object with file and version"), next
		  unless ref $e eq 'HASH' && is_str($e->{file}) && is_str($e->{version});
		bad("provides.$ext.version is not a semantic version") unless $e->{version} =~ $semver;
		bad("provides.$ext.file $e->{file} does not exist") unless -f "$dir/$e->{file}";
		bad("provides.$ext.docfile $e->{docfile} does not exist")
		  if defined $e->{docfile} && !-f "$dir/$e->{docfile}";
		for my $k (sort keys %$e)
		{
			bad("provides.$ext: unknown key \"$k\"")
			  unless $k =~ /^(file|version|abstract|docfile)$/ || $k =~ /^[xX]_/;
		}
	}
}

if (exists $meta->{prereqs})
{
	my $pr = $meta->{prereqs};
	bad("prereqs must be an object") unless ref $pr eq 'HASH';
	for my $phase (sort keys %{ ref $pr eq 'HASH' ? $pr : {} })
	{
		bad("prereqs: unknown phase \"$phase\"")
		  unless $phase =~ /^(configure|build|test|runtime|develop)$/ || $phase =~ /^[xX]_/;
		for my $rel (sort keys %{ $pr->{$phase} })
		{
			bad("prereqs.$phase: unknown relationship \"$rel\"")
			  unless $rel =~ /^(requires|recommends|suggests|conflicts)$/ || $rel =~ /^[xX]_/;
			for my $name (sort keys %{ $pr->{$phase}{$rel} })
			{
				bad("prereqs.$phase.$rel: \"$name\" is not a term") unless $name =~ $term;
				bad("prereqs.$phase.$rel.$name: not a version range")
				  unless version_range($pr->{$phase}{$rel}{$name});
			}
		}
	}
}
if (exists $meta->{resources})
{
	my $r = $meta->{resources};
	for my $k (sort keys %$r)
	{
		bad("resources: unknown key \"$k\"") unless $k =~ /^(homepage|bugtracker|repository)$/ || $k =~ /^[xX]_/;
	}
	bad("resources.homepage is not a URI") if exists $r->{homepage} && ($r->{homepage} // '') !~ m{^[a-z][a-z0-9+.-]*:};
	if (my $b = $r->{bugtracker})
	{
		bad("resources.bugtracker needs web or mailto") unless ref $b eq 'HASH' && (is_str($b->{web}) || is_str($b->{mailto}));
	}
	if (my $g = $r->{repository})
	{
		bad("resources.repository needs url or web") unless ref $g eq 'HASH' && (is_str($g->{url}) || is_str($g->{web}));
		bad("resources.repository.type must be lower case") if ref $g eq 'HASH' && defined $g->{type} && $g->{type} =~ /[A-Z]/;
	}
}
bad("release_status must be stable, testing or unstable")
  if exists $meta->{release_status} && ($meta->{release_status} // '') !~ /^(stable|testing|unstable)$/;
if (exists $meta->{tags})
{
	bad("tags must be a list of non-empty strings up to 255 characters")
	  unless ref $meta->{tags} eq 'ARRAY' && !grep { !is_str($_) || length($_) > 255 } @{ $meta->{tags} };
}

# the tree agrees
if (open my $mk, '<', "$dir/Makefile")
{
	my ($ev) = map { /^EXTVERSION\s*=\s*(\S+)/ ? $1 : () } <$mk>;
	bad("version $meta->{version} is not the Makefile's EXTVERSION ", $ev // '(none)')
	  unless defined $ev && $ev eq ($meta->{version} // '');
}
for my $ext (sort keys %{ ref $p eq 'HASH' ? $p : {} })
{
	open my $cf, '<', "$dir/$ext.control" or next;
	my ($dv) = map { /^default_version\s*=\s*'([^']*)'/ ? $1 : () } <$cf>;
	bad("$ext.control default_version ", $dv // '(none)', " is not provides.$ext.version $p->{$ext}{version}")
	  unless defined $dv && $dv eq $p->{$ext}{version};
}

print "META.json: $_\n" for @err;
print "META.json: valid (PGXN meta spec 1.0.0), version $meta->{version}\n" unless @err;
exit(@err ? 1 : 0);
