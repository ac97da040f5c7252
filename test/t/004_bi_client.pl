# A BI client through PgJDBC (Debian's libpostgresql-jdbc-java), as
# Metabase, Superset or Tableau connect: a login role of the reader level of
# grant_access() points the driver at schema leadmgmt_bi and syncs it
# (test/t/jdbc/BiClient.java): every relation listed has REMARKS and answers
# SELECT *, every column has REMARKS, no column is Types.OTHER without a
# numeric <column>_days companion, and every view of leadmgmt answers.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Copy qw(copy);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $jar = '/usr/share/java/postgresql.jar';
# bootstrap (scripts/bootstrap.sh) installs both: fail, do not skip
ok(-f $jar, "PgJDBC at $jar") or BAIL_OUT('libpostgresql-jdbc-java missing: run scripts/bootstrap.sh as root');
ok(system('javac -version >/dev/null 2>&1') == 0, 'javac available')
  or BAIL_OUT('default-jdk-headless missing: run scripts/bootstrap.sh as root');

my $node = PostgreSQL::Test::Cluster->new('bi');
$node->init(extra => [ '--encoding=UTF8', '--locale=C.UTF-8' ]);
$node->append_conf('postgresql.conf', slurp_file($ENV{LEADMGMT_STAGE_CONF}))
  if $ENV{LEADMGMT_STAGE_CONF};
# PgJDBC speaks TCP only; initdb's pg_hba.conf trusts 127.0.0.1 in tests
$node->append_conf('postgresql.conf', "listen_addresses = '127.0.0.1'\n");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION leadmgmt;
CREATE ROLE lm_admin NOLOGIN;
CREATE ROLE lm_marketing NOLOGIN;
CREATE ROLE lm_sales NOLOGIN;
CREATE ROLE lm_reader NOLOGIN;
SELECT leadmgmt.grant_access('lm_admin', 'lm_marketing', 'lm_sales', 'lm_reader');
CREATE ROLE bi_tool LOGIN IN ROLE lm_reader;
-- a small year: leads from four sources walking the waterfall
INSERT INTO leadmgmt.lead (email, name, source, owner, created_at)
SELECT 'p' || g || '@example.com', 'P' || g,
       (ARRAY['web_form', 'exhibition', 'seminar', 'purchased_list'])[1 + g % 4],
       'rep' || g % 3, now() - interval '300 days' + g * interval '1 day'
  FROM generate_series(1, 200) g;
SELECT count(leadmgmt.set_stage(id, 'mql', at => created_at + interval '3 days')) FROM leadmgmt.lead WHERE id % 2 = 0;
SELECT count(leadmgmt.set_stage(id, 'sal', at => created_at + interval '5 days 4 hours')) FROM leadmgmt.lead WHERE id % 4 = 0;
SELECT count(leadmgmt.set_stage(id, 'sql', at => created_at + interval '9 days')) FROM leadmgmt.lead WHERE id % 8 = 0;
SELECT count(leadmgmt.set_stage(id, 'won', at => created_at + interval '20 days')) FROM leadmgmt.lead WHERE id % 16 = 0;
SELECT count(leadmgmt.track(id, 'seminar_attend', at => created_at + interval '1 day', campaign => 'spring')) FROM leadmgmt.lead;
SELECT count(leadmgmt.track(id, 'visit', at => now() - interval '2 days')) FROM leadmgmt.lead WHERE id % 5 = 0;
SELECT leadmgmt.snapshot_funnel();
});

my $dir = PostgreSQL::Test::Utils::tempdir;
copy(dirname(__FILE__) . '/jdbc/BiClient.java', "$dir/BiClient.java") or die "copy: $!";
my ($out, $err);
IPC::Run::run([ 'javac', '-nowarn', '-d', $dir, "$dir/BiClient.java" ], '>', \$out, '2>', \$err);
is($?, 0, 'BiClient compiles') or diag $err;

my $url = 'jdbc:postgresql://127.0.0.1:' . $node->port . '/postgres?user=bi_tool';
IPC::Run::run([ 'java', '-cp', "$jar:$dir", 'BiClient', $url, 'leadmgmt_bi', 'leadmgmt' ],
	'>', \$out, '2>', \$err);
my $status = $?;
my @lines = grep { /^(not )?ok - / } split /\n/, $out;
ok(scalar(@lines) >= 8, 'BiClient ran its checks (' . scalar(@lines) . ')') or diag "$out\n$err";
for my $line (@lines)
{
	my ($fail, $what) = $line =~ /^(not )?ok - (.*)$/;
	ok(!$fail, "jdbc: $what");
}
is($status, 0, 'BiClient exit status') or diag $err;

# the same client pointed at schema leadmgmt shows why leadmgmt_bi exists:
# the reader cannot sample every table there
IPC::Run::run([ 'java', '-cp', "$jar:$dir", 'BiClient', $url, 'leadmgmt' ], '>', \$out, '2>', \$err);
like($out, qr/^not ok - SELECT \* answers on all \d+ relations of leadmgmt .*permission denied/m,
	'in schema leadmgmt a sync as the reader fails on tables (the reason for leadmgmt_bi)');

$node->stop;
done_testing();
