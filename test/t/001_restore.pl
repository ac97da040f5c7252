# The backup/restore procedure of doc/operations.md on a populated database:
# pg_dump -Fc, then pre-data, data-only with triggers disabled, post-data.
# Every user row must come back exactly (no re-scoring, no duplicate
# history), sequences must continue, and a naive restore must fail loudly.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init(extra => [ '--encoding=UTF8', '--locale=C.UTF-8' ]);
$node->append_conf('postgresql.conf', slurp_file($ENV{LEADMGMT_STAGE_CONF}))
  if $ENV{LEADMGMT_STAGE_CONF};
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
CREATE EXTENSION leadmgmt;
SELECT leadmgmt.set_setting('mql_threshold', '75');
SELECT leadmgmt.set_setting('reporting_timezone', 'Asia/Tokyo');
INSERT INTO leadmgmt.stage (name, rank, category, next_stage, description)
VALUES ('nurture_webinar', 8, 'nurture', 'mql', 'webinar nurture track');
INSERT INTO leadmgmt.stage_transition (from_stage, to_stage)
VALUES ('recycled', 'nurture_webinar'), ('nurture_webinar', 'mql');
INSERT INTO leadmgmt.activity_kind (name, description) VALUES ('webinar_attend', 'attended a webinar');

-- one lead per reachable stage, replayed with back-dated moves
CREATE TEMP TABLE paths (n int, path text[]);
INSERT INTO paths VALUES
 (1, '{inquiry}'), (2, '{inquiry,mql}'), (3, '{inquiry,mql,sal}'), (4, '{sgl}'),
 (5, '{inquiry,mql,sal,sql}'), (6, '{sgl,sql,won}'), (7, '{inquiry,mql,sal,sql,lost}'),
 (8, '{inquiry,mql,recycled}'), (9, '{inquiry,disqualified}'),
 (10, '{inquiry,mql,recycled,nurture_webinar}'), (11, '{sgl,sql,won,mql}');
DO $$
DECLARE p record; id bigint; i int;
BEGIN
	FOR p IN SELECT * FROM paths ORDER BY n LOOP
		INSERT INTO leadmgmt.lead (email, name, company, source, origin, stage, created_at, amount, currency, attributes)
		VALUES ('lead' || p.n || '@example.jp', 'リード ' || p.n, '株式会社テスト' || p.n, 'web_form', 'inbound',
		        p.path[1], timestamptz '2025-01-01 09:00+09' + p.n * interval '1 day', p.n * 1000, 'JPY',
		        jsonb_build_object('employees', p.n * 10))
		RETURNING lead.id INTO id;
		FOR i IN 2 .. cardinality(p.path) LOOP
			PERFORM leadmgmt.set_stage(id, p.path[i], 'step ' || i,
			                           timestamptz '2025-02-01 09:00+09' + p.n * interval '1 day' + i * interval '3 days');
		END LOOP;
		PERFORM leadmgmt.track(id, 'page_view', timestamptz '2025-01-15 12:00+09' + p.n * interval '1 hour', '/pricing', NULL, 30 + p.n);
		PERFORM leadmgmt.track(id, 'webinar_attend', timestamptz '2025-01-20 12:00+09', 'Product tour');
	END LOOP;
END $$;
-- scoring state, a user scoring rule and fit rule, external ids
INSERT INTO leadmgmt.scoring_rule (name, kind, points, half_life, max_times)
VALUES ('webinar', 'webinar_attend', 12, '45 days', 2);
INSERT INTO leadmgmt.fit_rule (name, attribute, op, min_value, points)
VALUES ('big', 'employees', 'between', 50, 30);
UPDATE leadmgmt.lead SET attributes = attributes || '{"industry": "it"}';
SELECT leadmgmt.track(id, 'webinar_attend', timestamptz '2025-03-01 12:00+09', 'Spring webinar')
  FROM leadmgmt.lead ORDER BY id;
-- scores consistent with the rules (the webinar rule came after some visits)
SELECT leadmgmt.rescore();
-- a restore must carry points as they are, not score them again
UPDATE leadmgmt.activity SET points = id * 1.5;
-- a nurture track holding half its leads out
INSERT INTO leadmgmt.nurture_track (name, holdout_pct) VALUES ('restored', 50);
INSERT INTO leadmgmt.nurture_step VALUES ('restored', 1, 'email', 'hello', '1 day');
SELECT leadmgmt.nurture_enroll('2025-06-01 09:00+09');
});

my $count_sql = q{
SELECT (SELECT count(*) FROM leadmgmt.lead) || '/' ||
       (SELECT count(*) FROM leadmgmt.stage_history) || '/' ||
       (SELECT count(*) FROM leadmgmt.activity)};
is($node->safe_psql('src', $count_sql), '11/32/33', 'source populated: leads/history/activity');

# One fingerprint per table, of every column of every row: every table the
# extension marks for pg_dump, so a table added later is covered too.
my @tables = split /\n/, $node->safe_psql('src', q{
	SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS x(relid)
	  JOIN pg_class c ON c.oid = x.relid
	 WHERE e.extname = 'leadmgmt' AND c.relkind = 'r' ORDER BY 1});
cmp_ok(scalar(@tables), '>=', 10, 'the extension marks its tables for pg_dump');
sub fingerprint
{
	my ($db, $table) = @_;
	return $node->safe_psql($db,
		"SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
		  . "FROM leadmgmt.$table t");
}

my $dump = $node->basedir . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ], 'pg_dump -Fc');

# The documented procedure.
$node->safe_psql('postgres', 'CREATE DATABASE dst');
my $dst = $node->connstr('dst');
$node->command_ok([ 'pg_restore', '--exit-on-error', '--section=pre-data', '-d', $dst, $dump ], 'restore pre-data');
$node->command_ok([ 'pg_restore', '--exit-on-error', '--data-only', '--disable-triggers', '-d', $dst, $dump ],
	'restore data with triggers disabled');
$node->command_ok([ 'pg_restore', '--exit-on-error', '--section=post-data', '-d', $dst, $dump ], 'restore post-data');

foreach my $table (@tables)
{
	is(fingerprint('dst', $table), fingerprint('src', $table), "leadmgmt.$table restored exactly");
}

# The funnel views answer from summaries (funnel_*_count) that the dump
# carries: after the restore they answer as in the source, and the summaries
# are what a rebuild from the restored history gives.  Without them (history
# loaded some other way) the views are wrong until rebuild_funnel_summary().
my $views_sql = q{
	SELECT string_agg(x::text, E'\n' ORDER BY x::text) FROM (
		SELECT 'f', stage, position::text, leads_entered, leads_current, conversion_to_next, median_time_in_stage::text FROM leadmgmt.funnel
		UNION ALL SELECT 's', source, stage, NULL, leads_entered, conversion_from_first, NULL FROM leadmgmt.funnel_by_source
		UNION ALL SELECT 'c', cohort_month::text, stage, NULL, leads_entered, conversion_from_first, NULL FROM leadmgmt.funnel_cohort
		UNION ALL SELECT 'v', from_stage, to_stage, NULL, transitions, NULL, avg_time::text || median_time::text || p90_time::text FROM leadmgmt.stage_velocity) x};
my $summary_sql = q{
	SELECT string_agg(k, E'\n' ORDER BY k) FROM (
		SELECT format('e %s %s %s %s %s', zone, source, cohort_month, stage, sum(leads)) AS k
		  FROM leadmgmt.funnel_entry_count GROUP BY zone, source, cohort_month, stage HAVING sum(leads) <> 0
		UNION ALL SELECT format('l %s %s %s %s', zone, source, cohort_month, sum(leads))
		  FROM leadmgmt.funnel_lead_count GROUP BY zone, source, cohort_month HAVING sum(leads) <> 0
		UNION ALL SELECT format('p %s %s %s', stage, later_stage, sum(leads))
		  FROM leadmgmt.funnel_pair_count GROUP BY stage, later_stage HAVING sum(leads) <> 0
		UNION ALL SELECT format('d %s %s %s %s', from_stage, to_stage, took::text, sum(moves))
		  FROM leadmgmt.funnel_duration_count GROUP BY from_stage, to_stage, took::text HAVING sum(moves) <> 0) s};
my $src_views = $node->safe_psql('src', $views_sql);
is($node->safe_psql('dst', $views_sql), $src_views, 'funnel views answer after the restore as in the source');
my $restored_summary = $node->safe_psql('dst', $summary_sql);
cmp_ok(length($restored_summary), '>', 100, 'the funnel summaries came with the dump');
$node->safe_psql('dst', q{SELECT leadmgmt.rebuild_funnel_summary()});
is($node->safe_psql('dst', $summary_sql), $restored_summary,
	'rebuild_funnel_summary() from the restored history gives the restored summaries');
$node->safe_psql('dst', q{
	DELETE FROM leadmgmt.funnel_lead_count; DELETE FROM leadmgmt.funnel_entry_count; DELETE FROM leadmgmt.funnel_pair_count;
	DELETE FROM leadmgmt.funnel_duration_count;});
isnt($node->safe_psql('dst', $views_sql), $src_views, 'without summaries the funnel views are wrong');
$node->safe_psql('dst', q{SELECT leadmgmt.rebuild_funnel_summary()});
is($node->safe_psql('dst', $views_sql), $src_views, 'after rebuild_funnel_summary() they answer as in the source');

# The nurture holdout depends on lead ids and track names only: enrolling
# the restored leads again holds out exactly the same ones.
my $holdout_sql = q{SELECT count(*) || ':' || string_agg(lead_id::text, ',' ORDER BY lead_id)
	FROM leadmgmt.nurture_enrollment WHERE status = 'holdout'};
my $holdout_src = $node->safe_psql('src', $holdout_sql);
like($holdout_src, qr/^[1-8]:/, "the source holds some leads out of the nurture track ($holdout_src)");
$node->safe_psql('dst', q{
	DELETE FROM leadmgmt.nurture_enrollment;
	SELECT leadmgmt.nurture_enroll('2025-06-01 09:00+09');
});
is($node->safe_psql('dst', $holdout_sql), $holdout_src, 'after restore, re-enrolment holds out the same leads');

# Sequences continue where the source stopped, and the machinery works.
is($node->safe_psql('dst', q{SELECT count(*) FROM leadmgmt.score_state}), '11',
	'score state restored for every scored lead');
is($node->safe_psql('dst', q{SELECT leadmgmt.rescore()}), '0',
	'restored scores agree with a full recompute from the rules');
my $next_src = $node->safe_psql('src',
	q{SELECT (SELECT last_value FROM leadmgmt.lead_id_seq) || '/' || (SELECT last_value FROM leadmgmt.stage_history_id_seq) || '/' || (SELECT last_value FROM leadmgmt.activity_id_seq)});
my $next_dst = $node->safe_psql('dst',
	q{SELECT (SELECT last_value FROM leadmgmt.lead_id_seq) || '/' || (SELECT last_value FROM leadmgmt.stage_history_id_seq) || '/' || (SELECT last_value FROM leadmgmt.activity_id_seq)});
is($next_dst, $next_src, 'sequence positions restored');
is($node->safe_psql('dst', q{
	INSERT INTO leadmgmt.lead (email) VALUES ('new@example.jp') RETURNING id;
}), '12', 'a new lead continues the numbering');
is($node->safe_psql('dst', q{
	SELECT (leadmgmt.set_stage(12, 'mql')).stage;
	SELECT leadmgmt.track(12, 'webinar_attend') > 33;
	SELECT (leadmgmt.set_stage(10, 'mql', 'restored user transition')).stage;
}), "mql\nt\nmql", 'stage machine, user transitions and user kinds work after the restore');
is($node->safe_psql('dst', q{SELECT count(*) FROM leadmgmt.stage_history}), '35',
	'history grew by exactly the three new rows');
my $kept_summary = $node->safe_psql('dst', $summary_sql);
$node->safe_psql('dst', q{SELECT leadmgmt.rebuild_funnel_summary()});
is($node->safe_psql('dst', $summary_sql), $kept_summary,
	'the summaries kept up with the new moves (a rebuild changes nothing)');

# Restoring the data a second time over the restored database (the history
# keeps its unique key (lead_id, to_stage, changed_at) for this) fails
# loudly and doubles nothing.
{
	my $history_before = $node->safe_psql('dst', q{SELECT count(*) FROM leadmgmt.stage_history});
	my ($out, $err);
	my $again = IPC::Run::run([ 'pg_restore', '--data-only', '--disable-triggers', '-d', $dst, $dump ],
		'>', \$out, '2>', \$err);
	ok(!$again, 'a second data-only restore exits with an error');
	like($err, qr/duplicate key value violates unique constraint "stage_history_/,
		'the second restore names the history\'s unique key');
	is($node->safe_psql('dst', q{SELECT count(*) FROM leadmgmt.stage_history}), $history_before,
		'the second restore did not double the history');
}

# A naive restore (everything in one go, triggers on) must fail loudly and
# never double the history.
$node->safe_psql('postgres', 'CREATE DATABASE naive');
my ($stdout, $stderr);
my $ok = IPC::Run::run([ 'pg_restore', '-d', $node->connstr('naive'), $dump ],
	'>', \$stdout, '2>', \$stderr);
ok(!$ok, 'naive pg_restore exits with an error');
like($stderr, qr/cannot start in stage|duplicate key value|append-only/,
	'naive restore names the conflict');
my $naive_history = $node->safe_psql('naive',
	q{SELECT count(*) FROM leadmgmt.stage_history});
cmp_ok($naive_history, '<=', 32, 'naive restore did not duplicate history');

$node->stop;
done_testing();
