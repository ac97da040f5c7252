# The upgrade harness: every released version of leadmgmt, installed from its
# frozen script (sql/released/) and brought to the current version with
# ALTER EXTENSION leadmgmt UPDATE, must be indistinguishable from a fresh
# install of the current version:
#
#   - the same objects, compared through pg_dump --binary-upgrade
#     --schema-only (the one pg_dump mode that prints extension members one
#     by one: definitions, column order, defaults, constraints, indexes,
#     triggers, policies, comments, grants), with OIDs and LSNs masked and the
#     extension's dump configuration compared as a sorted list;
#   - the same built-in rows in every extension table.
#
# An update must also keep users' data: a populated database is updated and
# its leads, history, scores and stage machine checked afterwards.
#
# The comparison is itself tested first: a fresh install with one small
# mutation of each kind must compare different, so a blind comparison cannot
# pass.
use strict;
use warnings;
use File::Temp qw(tempdir);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init(extra => [ '--encoding=UTF8', '--locale=C.UTF-8' ]);
$node->append_conf('postgresql.conf', slurp_file($ENV{LEADMGMT_STAGE_CONF}))
  if $ENV{LEADMGMT_STAGE_CONF};
$node->start;

# pg_available_extensions does not see Debian's extension_destdir (where the
# tests find the staged build before 18), so the current version is what CREATE
# EXTENSION installs and the released ones are the other versions that
# pg_extension_update_paths knows.
$node->safe_psql('postgres', 'CREATE DATABASE probe');
$node->safe_psql('probe', 'CREATE EXTENSION leadmgmt');
my $current = $node->safe_psql('probe',
	q{SELECT extversion FROM pg_extension WHERE extname = 'leadmgmt'});
my @released = split /\n/, $node->safe_psql('probe', qq{
	SELECT DISTINCT source FROM pg_extension_update_paths('leadmgmt')
	 WHERE source <> '$current' ORDER BY 1});
note "current version $current; released versions to update from: @released";
ok(scalar(@released) > 0, 'at least one released version to update from');

my $tmp = tempdir(CLEANUP => 1);

# The schema of a database, as text, with what legitimately differs between
# two databases (OIDs, LSNs, frozen xids, sequence positions, psql's
# \restrict keys) masked.
sub schema_fingerprint
{
	my ($db) = @_;
	my ($out, $err);
	IPC::Run::run([ 'pg_dump', '--binary-upgrade', '--schema-only', '--no-owner', '-d', $node->connstr($db) ],
		'>', \$out, '2>', \$err)
	  or die "pg_dump $db failed: $err";
	my @lines;
	for (split /\n/, $out)
	{
		next if /^\\(un)?restrict /;
		next if /binary_upgrade_set_next_/;
		next if /binary_upgrade_set_missing_value/;
		next if /^SET relfrozenxid = /;
		next if /^SELECT pg_catalog\.setval\(/;    # sequence positions are data
		next if /^WHERE oid = '\d+';$/;
		# the dump configuration as OIDs in creation order; compared below
		# as a sorted list of table names instead
		s/(binary_upgrade_create_empty_extension\('leadmgmt', 'leadmgmt', false, '[^']*'), .*\);$/$1, ...);/;
		push @lines, $_;
	}
	push @lines, '-- extconfig', split /\n/, $node->safe_psql($db, q{
		SELECT c.oid::regclass::text || ' ' || coalesce(nullif(cond, ''), '(all rows)')
		  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, cond)
		  JOIN pg_class c ON c.oid = u.c
		 WHERE e.extname = 'leadmgmt' ORDER BY 1});
	return join("\n", @lines) . "\n";
}

# Every row of every table that belongs to the extension, in a stable order.
sub table_rows
{
	my ($db) = @_;
	my @tables = split /\n/, $node->safe_psql($db, q{
		SELECT c.oid::regclass::text
		  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
		 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
		   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'leadmgmt')
		   AND d.deptype = 'e' AND c.relkind = 'r'
		 ORDER BY 1});
	my $text = '';
	for my $t (@tables)
	{
		$text .= "-- $t\n" . $node->safe_psql($db,
			"SELECT t::text FROM $t AS t ORDER BY 1") . "\n";
	}
	return $text;
}

# is_same(a, b, name): equal texts, or a diff of them as the diagnostic.
sub is_same
{
	my ($a, $b, $name) = @_;
	my $ok = ok($a eq $b, $name);
	if (!$ok)
	{
		my ($fa, $fb) = ("$tmp/a", "$tmp/b");
		PostgreSQL::Test::Utils::append_to_file($fa, $a);
		PostgreSQL::Test::Utils::append_to_file($fb, $b);
		my $diff = `diff -u $fa $fb | head -80`;
		diag $diff;
		unlink $fa, $fb;
	}
	return $ok;
}

sub fresh_database
{
	my ($db) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION leadmgmt');
}

fresh_database('fresh');
my $fresh_schema = schema_fingerprint('fresh');
my $fresh_rows = table_rows('fresh');
like($fresh_schema, qr/CREATE TABLE leadmgmt\.lead /, 'the schema fingerprint shows extension members');
like($fresh_rows, qr/inquiry/, 'the row fingerprint shows built-in rows');

# The comparison must see each kind of drift an upgrade script can leave.
my %mutations = (
	'a changed comment' => q{COMMENT ON TABLE leadmgmt.lead IS 'changed'},
	'a changed function body' => q{
		CREATE OR REPLACE FUNCTION leadmgmt.get_setting(key text) RETURNS text
		LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
		AS $$ BEGIN RETURN 'x'; END $$},
	'a column moved to the end' => q{
		ALTER TABLE leadmgmt.lead_import DROP COLUMN detail;
		ALTER TABLE leadmgmt.lead_import ADD COLUMN detail text},
	'a missing index' => q{DROP INDEX leadmgmt.activity_lead_time_idx},
	'a changed grant' => q{GRANT SELECT ON leadmgmt.setting TO PUBLIC},
	'a changed built-in row' => q{
		SET session_replication_role = replica;
		UPDATE leadmgmt.stage SET description = 'changed' WHERE name = 'inquiry'},
);
my $n = 0;
for my $what (sort keys %mutations)
{
	my $db = 'mutant' . $n++;
	fresh_database($db);
	my ($ret, $out, $err) = $node->psql($db, $mutations{$what});
	is($ret, 0, "mutation applies: $what") or diag $err;
	ok(schema_fingerprint($db) ne $fresh_schema || table_rows($db) ne $fresh_rows,
		"the comparison sees $what");
}

# Data that every released version can hold, written through its own API.
my $populate = q{
	INSERT INTO leadmgmt.lead (email, name, company, source, stage, created_at, attributes)
	SELECT 'u' || g || '@example.jp', '顧客 ' || g, '株式会社アップグレード' || g, 'web_form', 'inquiry',
	       timestamptz '2025-01-01 09:00+09' + g * interval '1 day', jsonb_build_object('employees', g * 20)
	  FROM generate_series(1, 30) AS g;
	SELECT count(leadmgmt.track(l.id, 'page_view', timestamptz '2025-03-01 09:00+09' + k * interval '1 hour', '/pricing'))
	  FROM leadmgmt.lead AS l, generate_series(1, (l.id % 5)::int) AS k;
	SELECT count(leadmgmt.set_stage(id, 'mql', 'qualified', timestamptz '2025-04-01 09:00+09'))
	  FROM leadmgmt.lead WHERE id % 3 = 0 AND stage = 'inquiry';
	SELECT count(leadmgmt.set_stage(id, 'sal', 'accepted', timestamptz '2025-04-02 09:00+09'))
	  FROM leadmgmt.lead WHERE id % 6 = 0 AND stage = 'mql';
};
my $user_data = q{
	SELECT (SELECT string_agg(concat_ws(' ', id, email, stage, score, merged_into), ',' ORDER BY id) FROM leadmgmt.lead)
	    || ' | ' || (SELECT string_agg(concat_ws(' ', lead_id, from_stage, to_stage, reason, changed_at), ',' ORDER BY id)
	                   FROM leadmgmt.stage_history)
	    || ' | ' || (SELECT count(*) FROM leadmgmt.activity)
	    || ' | ' || (SELECT string_agg(leadmgmt.score(id, timestamptz '2025-05-01')::text, ',' ORDER BY id)
	                   FROM leadmgmt.lead)};

for my $v (@released)
{
	my $paths = $node->safe_psql('postgres', qq{
		SELECT count(*) FROM pg_extension_update_paths('leadmgmt')
		 WHERE source = '$v' AND target = '$current' AND path IS NOT NULL});
	is($paths, 1, "an update path from $v to $current exists");

	# a bare install of $v, updated, against a fresh install
	(my $tag = $v) =~ s/\./_/g;
	$node->safe_psql('postgres', "CREATE DATABASE bare_$tag");
	$node->safe_psql("bare_$tag", "CREATE EXTENSION leadmgmt VERSION '$v'");
	$node->safe_psql("bare_$tag", 'ALTER EXTENSION leadmgmt UPDATE');
	is($node->safe_psql("bare_$tag", q{SELECT extversion FROM pg_extension WHERE extname = 'leadmgmt'}),
		$current, "$v updates to $current");
	is_same(schema_fingerprint("bare_$tag"), $fresh_schema, "$v updated: same objects as a fresh $current");
	is_same(table_rows("bare_$tag"), $fresh_rows, "$v updated: same built-in rows as a fresh $current");

	# a populated install of $v keeps its users' data through the update
	$node->safe_psql('postgres', "CREATE DATABASE data_$tag");
	$node->safe_psql("data_$tag", "CREATE EXTENSION leadmgmt VERSION '$v'");
	$node->safe_psql("data_$tag", $populate);
	# roles registered with grant_access() before the update
	$node->safe_psql("data_$tag", join('', map { "CREATE ROLE lm_up_${_}_$tag NOLOGIN;" } qw(admin marketing sales reader))
		. "SELECT leadmgmt.grant_access('lm_up_admin_$tag', 'lm_up_marketing_$tag', 'lm_up_sales_$tag', 'lm_up_reader_$tag');");
	my $before = $node->safe_psql("data_$tag", $user_data);
	$node->safe_psql("data_$tag", 'ALTER EXTENSION leadmgmt UPDATE');
	# the documented step after an update: grant the registered roles again
	$node->safe_psql("data_$tag",
		"SELECT leadmgmt.grant_access('lm_up_admin_$tag', 'lm_up_marketing_$tag', 'lm_up_sales_$tag', 'lm_up_reader_$tag')");
	is($node->safe_psql("data_$tag", $user_data), $before, "$v updated: leads, history, activity and scores kept");
	# against a fresh install granted to the same roles: the update must
	# leave them exactly the privileges grant_access() gives in $current
	fresh_database("granted_$tag");
	$node->safe_psql("granted_$tag",
		"SELECT leadmgmt.grant_access('lm_up_admin_$tag', 'lm_up_marketing_$tag', 'lm_up_sales_$tag', 'lm_up_reader_$tag')");
	is_same(schema_fingerprint("data_$tag"), schema_fingerprint("granted_$tag"),
		"$v updated with data and roles: same objects and grants as a fresh $current");
	is($node->safe_psql("data_$tag", 'SELECT leadmgmt.rescore()'), '0',
		"$v updated: rescore() changes no score");
	is($node->safe_psql("data_$tag", q{
		SELECT count(leadmgmt.set_stage(id, 'sql', 'after update')) FROM leadmgmt.lead WHERE stage = 'sal'}),
		'5', "$v updated: the stage machine still moves leads");
	is($node->safe_psql("data_$tag", 'SELECT leadmgmt.fill_history_facts()'), '0',
		"$v updated: the history facts filled by the update and written after it are right");
	is($node->safe_psql("data_$tag", "SET ROLE lm_up_reader_$tag; SELECT sum(leads_entered) FROM leadmgmt.funnel"),
		$node->safe_psql("data_$tag", 'SELECT count(*) FROM leadmgmt.stage_history WHERE from_stage IS DISTINCT FROM to_stage AND entry_number = 1'),
		"$v updated: the reader role registered before the update reads the funnel");
	my ($ret, $out, $err) = $node->psql("data_$tag",
		qq{\\set VERBOSITY verbose\n}
		  . q{SELECT leadmgmt.set_stage(id, 'won', 'skip') FROM leadmgmt.lead WHERE stage = 'inquiry' LIMIT 1});
	like($err, qr/ERROR:  LM001: lead \d+ cannot move from stage "inquiry" to stage "won"/, "$v updated: illegal moves are still refused");
}

$node->stop;
done_testing();
