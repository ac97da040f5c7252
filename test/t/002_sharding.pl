# Sharding over postgres_fdw (doc/scaling.md): two shard clusters, each a
# full leadmgmt database holding the leads with shard_of(id, 2) = its number,
# and a coordinator that sees their activity through shard_table().  The
# coordinator also holds every lead itself, as the single node to compare
# with.  Per-lead window_funnel, funnel_step_times, decayed_sum and
# attribution must be aggregated on the shards (the aggregate is in the
# Remote SQL of EXPLAIN VERBOSE) and give the single node's answers; the
# documented non-pushdown cases (now(), no lead_id in GROUP BY, partitionwise
# aggregation off) must show as such.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

sub new_node
{
	my ($name) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(extra => [ '--encoding=UTF8', '--locale=C.UTF-8' ]);
	$node->append_conf('postgresql.conf', slurp_file($ENV{LEADMGMT_STAGE_CONF}))
	  if $ENV{LEADMGMT_STAGE_CONF};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION leadmgmt');
	return $node;
}

my $coord = new_node('coordinator');
my @shards = (new_node('shard0'), new_node('shard1'));

# The same leads and activity everywhere, from a formula (no random()), each
# shard keeping only its own leads.  Activity goes through the normal path:
# scoring fills points on every node with the same rules.
my $leads = 300;
my $data = sub {
	my ($where) = @_;
	return qq{
SET TimeZone = 'UTC';
INSERT INTO leadmgmt.lead (id, created_at, source)
SELECT g, timestamptz '2025-12-01' + g * interval '1 hour', (ARRAY['web_form', 'seminar', 'exhibition'])[1 + g % 3]
  FROM generate_series(1, $leads) g WHERE ${\ ($where =~ s/ID/g/gr)};
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, campaign, detail)
SELECT l, (ARRAY['page_view', 'download', 'visit', 'email_open', 'seminar_attend'])[1 + (abs(hashint8(e)) % 5)::int],
       timestamptz '2026-01-01' + (abs(hashint8(e + 7)) % (60 * 24 * 60)) * interval '1 minute',
       CASE WHEN e % 3 <> 0 THEN 'c' || abs(hashint8(e + 11)) % 4 END,
       CASE WHEN e % 2 = 0 THEN '/pricing' ELSE 'whitepaper-' || e % 5 END
  FROM generate_series(1, $leads) l, generate_series(1, 1 + l % 17) i, LATERAL (SELECT l * 100 + i AS e) x
 WHERE ${\ ($where =~ s/ID/l/gr)};
SELECT count(*) FROM leadmgmt.activity;};
};
my $total = $coord->safe_psql('postgres', $data->('true'));
my @counts = map { $shards[$_]->safe_psql('postgres', $data->("leadmgmt.shard_of(ID, 2) = $_")) } (0, 1);
@counts = map { (split /\n/)[-1] } @counts;
$total = (split /\n/, $total)[-1];
cmp_ok($counts[0], '>', 0, "shard 0 holds $counts[0] activities");
cmp_ok($counts[1], '>', 0, "shard 1 holds $counts[1] activities");
is($counts[0] + $counts[1], $total, 'the shards hold every activity of the single node once');

# the coordinator: servers with extensions 'leadmgmt', one table over both
my $servers = '';
foreach my $i (0, 1)
{
	my $s = $shards[$i];
	$servers .= sprintf(q{
CREATE SERVER shard%d FOREIGN DATA WRAPPER postgres_fdw
	OPTIONS (host '%s', port '%d', dbname 'postgres', extensions 'leadmgmt', async_capable 'true');
CREATE USER MAPPING FOR CURRENT_USER SERVER shard%d;}, $i, $s->host, $s->port, $i);
}
$coord->safe_psql('postgres', "CREATE EXTENSION postgres_fdw; $servers");

# a server that does not ship leadmgmt functions is refused
$coord->safe_psql('postgres', q{CREATE SERVER plain FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'postgres')});
my ($ret, $stdout, $stderr) = $coord->psql('postgres',
	q{SELECT leadmgmt.shard_table('public.x', ARRAY['shard0', 'plain'])});
like($stderr, qr/foreign server "plain" does not ship leadmgmt functions/,
	'shard_table refuses a server without extensions leadmgmt');

is($coord->safe_psql('postgres', q{
	SELECT leadmgmt.shard_table('public.lead_activity', ARRAY['shard0', 'shard1']);
	SELECT string_agg(c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid) || ' ' || s.srvname, E'\n' ORDER BY c.relname)
	  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	  JOIN pg_foreign_table f ON f.ftrelid = c.oid JOIN pg_foreign_server s ON s.oid = f.ftserver
	 WHERE i.inhparent = 'public.lead_activity'::regclass}),
	"lead_activity\n"
	  . "lead_activity_0 FOR VALUES WITH (modulus 2, remainder 0) shard0\n"
	  . "lead_activity_1 FOR VALUES WITH (modulus 2, remainder 1) shard1",
	'shard_table: one foreign partition per server, remainder = position');

# routing: the rows of partition r are the leads with shard_of(lead_id, 2) = r,
# as PostgreSQL's own hash partitioning says (satisfies_hash_partition)
is($coord->safe_psql('postgres', q{
	SELECT count(*), count(*) FILTER (WHERE leadmgmt.shard_of(lead_id, 2) <> r),
	       count(*) FILTER (WHERE NOT satisfies_hash_partition('public.lead_activity'::regclass, 2, r, lead_id))
	  FROM (SELECT lead_id, substr(tableoid::regclass::text, length('lead_activity_') + 1)::int AS r
	          FROM public.lead_activity) t}),
	"$total|0|0", 'every shard holds exactly its leads, as hash partitioning routes them');

# The queries, each on the sharded table and on the single node's own table.
my %query = (
	window_funnel => q{SELECT lead_id, leadmgmt.window_funnel('7 days', occurred_at, kind = 'page_view', kind = 'download', kind = 'visit') AS v
	                     FROM TBL GROUP BY lead_id},
	funnel_step_times => q{SELECT lead_id, leadmgmt.funnel_step_times('7 days', occurred_at, kind = 'page_view', kind = 'download') AS v
	                     FROM TBL GROUP BY lead_id},
	decayed_sum => q{SELECT lead_id, leadmgmt.decayed_sum(points, occurred_at, '30 days', '2026-03-01 00:00+00') AS v
	                     FROM TBL GROUP BY lead_id},
	attribution => q{SELECT lead_id, leadmgmt.attribution('u_shaped', campaign, occurred_at) AS v
	                     FROM TBL WHERE campaign IS NOT NULL GROUP BY lead_id},
	attribution_per_source => q{SELECT lead_id, kind, leadmgmt.attribution('time_decay:7 days', campaign, occurred_at) AS v
	                     FROM TBL WHERE campaign IS NOT NULL GROUP BY lead_id, kind},
);
my $settings = 'SET enable_partitionwise_aggregate = on; SET TimeZone = \'UTC\';';
foreach my $name (sort keys %query)
{
	(my $sharded = $query{$name}) =~ s/TBL/public.lead_activity/;
	(my $single = $query{$name}) =~ s/TBL/leadmgmt.activity/;
	my $plan = $coord->safe_psql('postgres', "$settings EXPLAIN (VERBOSE, COSTS OFF) $sharded");
	my @remote = ($plan =~ /Remote SQL: (.*)/g);
	is(scalar(@remote), 2, "$name: one remote query per shard");
	(my $agg = $name) =~ s/_per_source$//;
	is(scalar(grep { /leadmgmt\.$agg\(.*GROUP BY/ } @remote), 2, "$name: aggregated on the shards")
	  or diag($plan);
	unlike($plan, qr/^\s*(->\s*)?(Finalize |Partial )?(Hash|Group)?Aggregate/m,
		"$name: no aggregation on the coordinator") or diag($plan);

	# same rows (decayed_sum: same value to 1e-12 relative, the summing order
	# of one lead's rows may differ)
	my $cmp = $name eq 'decayed_sum'
	  ? qq{SELECT count(*), count(*) FILTER (WHERE s.v IS NULL OR o.v IS NULL OR abs(s.v - o.v) > 1e-12 * greatest(1, abs(o.v)))
	         FROM ($sharded) s FULL JOIN ($single) o USING (lead_id)}
	  : qq{SELECT (SELECT count(*) FROM ($single) o),
	              (SELECT count(*) FROM (($sharded) EXCEPT ($single)) d) + (SELECT count(*) FROM (($single) EXCEPT ($sharded)) d)};
	my ($rows, $differ) = split /\|/, $coord->safe_psql('postgres', "$settings $cmp");
	cmp_ok($rows, '>=', $name =~ /^attribution/ ? 200 : $leads - 5, "$name: $rows result rows");
	is($differ, 0, "$name: the sharded answer is the single node's");
}

# the compared answers are not trivial
is($coord->safe_psql('postgres',
	"SELECT count(*) FILTER (WHERE v >= 2) > 30 AND count(*) FILTER (WHERE v = 0) > 0 FROM ("
	  . ($query{window_funnel} =~ s/TBL/public.lead_activity/r) . ") q"), 't',
	'window_funnel: many leads reach step 2, some none');

# what is not pushed down, as doc/scaling.md says
my %local = (
	'a text constant as the only collatable input (the funnel mode)' => q{SELECT lead_id, leadmgmt.window_funnel('14 days', 'strict_order', occurred_at, kind = 'email_open', kind = 'page_view') FROM public.lead_activity GROUP BY lead_id},
	'now() as an argument' => q{SELECT lead_id, leadmgmt.decayed_sum(points, occurred_at, '30 days', now()) FROM public.lead_activity GROUP BY lead_id},
	'GROUP BY without lead_id' => q{SELECT kind, leadmgmt.decayed_sum(points, occurred_at, '30 days', '2026-03-01 00:00+00') FROM public.lead_activity GROUP BY kind},
);
foreach my $case (sort keys %local)
{
	my $plan = $coord->safe_psql('postgres', "$settings EXPLAIN (VERBOSE, COSTS OFF) $local{$case}");
	unlike($plan, qr/Remote SQL: .*leadmgmt\.(window_funnel|decayed_sum)/, "$case: not shipped") or diag($plan);
}
my $plan = $coord->safe_psql('postgres',
	"SET enable_partitionwise_aggregate = off; EXPLAIN (VERBOSE, COSTS OFF) $query{decayed_sum}" =~ s/TBL/public.lead_activity/r);
unlike($plan, qr/Remote SQL: .*leadmgmt\.decayed_sum/, 'enable_partitionwise_aggregate off: not shipped');

# the scoring and stage machine run on the shards: a lead's score there is
# the single node's
is($coord->safe_psql('postgres', q{
	SELECT string_agg(id || ':' || round(score::numeric, 9), ',' ORDER BY id) FROM leadmgmt.lead WHERE id IN (1, 2, 3, 4)}),
	join(',', map {
		my $id = $_;
		$shards[ $coord->safe_psql('postgres', "SELECT leadmgmt.shard_of($id, 2)") ]
		  ->safe_psql('postgres', "SELECT id || ':' || round(score::numeric, 9) FROM leadmgmt.lead WHERE id = $id")
	} (1, 2, 3, 4)),
	'scores on the shards are the single node\'s');

$_->stop foreach ($coord, @shards);
done_testing();
