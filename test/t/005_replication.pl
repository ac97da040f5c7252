# Logical replication of leadmgmt (doc/integration.md): a publisher cluster
# publishes lead, stage_history, activity, opportunity and the change feed;
# a second cluster with the extension installed subscribes through CREATE
# SUBSCRIPTION.  Every published table must have a replica identity that
# carries UPDATE and DELETE (its primary key), and after inserts, stage
# moves, a merge, a forget, CRM deals and the change feed's own
# bookkeeping the subscriber must hold exactly the publisher's rows.  The
# subscriber's apply worker runs in replica mode, so the extension's
# triggers there stay quiet: no second history row, score or change.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

sub new_node
{
	my ($name, $conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical', extra => [ '--encoding=UTF8', '--locale=C.UTF-8' ]);
	$node->append_conf('postgresql.conf', slurp_file($ENV{LEADMGMT_STAGE_CONF}))
	  if $ENV{LEADMGMT_STAGE_CONF};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION leadmgmt');
	return $node;
}

my $pub = new_node('publisher');
my $sub = new_node('subscriber');
my @tables = qw(lead stage_history activity opportunity change);
my $list = join(', ', map { "leadmgmt.$_" } @tables);

# replica identities: the primary key of each published table
is($pub->safe_psql('postgres', qq{
	SELECT string_agg(c.relname || ' ' || c.relreplident::text || ' ' ||
	                  (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), ', '
	                  ORDER BY c.relname)
	  FROM pg_class c
	 WHERE c.oid IN (${\ join(', ', map { "'leadmgmt.$_'::regclass" } @tables)})}),
	'activity d 1, change d 1, lead d 1, opportunity d 1, stage_history d 1',
	'every published table replicates by its primary key (replica identity default)');

# some rows before the subscription: the initial copy carries them
$pub->safe_psql('postgres', q{
SET TimeZone = 'UTC';
INSERT INTO leadmgmt.change_consumer (name) VALUES ('crm');
INSERT INTO leadmgmt.lead (id, email, name, company, created_at)
SELECT g, 'p' || g || '@example.jp', 'Person ' || g, 'Company ' || g % 7, '2026-01-01'
  FROM generate_series(1, 50) g;
SELECT count(leadmgmt.track(g, 'page_view', '2026-01-02', campaign => 'ads')) FROM generate_series(1, 50) g;
CREATE PUBLICATION leadmgmt_pub FOR TABLE leadmgmt.lead, leadmgmt.stage_history, leadmgmt.activity,
	leadmgmt.opportunity, leadmgmt.change;
});
my $connstr = $pub->connstr('postgres');
$connstr =~ s/'/''/g;
$sub->safe_psql('postgres',
	"CREATE SUBSCRIPTION leadmgmt_sub CONNECTION '$connstr' PUBLICATION leadmgmt_pub");
$sub->wait_for_subscription_sync($pub, 'leadmgmt_sub');

# the same set of rows, compared as text per table
sub rows
{
	my ($node, $table) = @_;
	return $node->safe_psql('postgres', qq{
		SET TimeZone = 'UTC';
		SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')
		  FROM leadmgmt.$table t});
}
sub same
{
	my ($what) = @_;
	$pub->wait_for_catchup('leadmgmt_sub');
	foreach my $t (@tables)
	{
		my $p = rows($pub, $t);
		is(rows($sub, $t), $p, "$what: $t the same on the subscriber ($p)");
	}
}
same('initial copy');

# inserts and stage moves (the MQL hand-off among them), activity
$pub->safe_psql('postgres', q{
SET TimeZone = 'UTC';
INSERT INTO leadmgmt.lead (id, email, created_at)
SELECT g, 'n' || g || '@example.jp', '2026-01-01' FROM generate_series(51, 60) g;
SELECT count(leadmgmt.track(g, 'download', '2026-01-03', campaign => 'seminar')) FROM generate_series(1, 60) g;
SELECT count(leadmgmt.set_stage(g, 'mql', 'score', '2026-01-04')) FROM generate_series(1, 20) g;
SELECT count(leadmgmt.set_stage(g, 'sal', NULL, '2026-01-05')) FROM generate_series(1, 10) g;
});
same('inserts and stage moves');

# a merge moves activity and deals, a forget erases personal data
$pub->safe_psql('postgres', q{
SET TimeZone = 'UTC';
SELECT lead FROM leadmgmt.record_opportunity('D-1', lead_id => 2, amount => 1000, currency => 'JPY', created_at => '2026-01-06');
SELECT leadmgmt.merge_leads(1, 2);
SELECT leadmgmt.forget_lead(3);
SELECT lead FROM leadmgmt.record_opportunity('D-1', status => 'won', closed_at => '2026-01-07');
});
same('a merge, a forget and CRM deals');
is($sub->safe_psql('postgres', q{
	SELECT (SELECT merged_into FROM leadmgmt.lead WHERE id = 2) || ' ' ||
	       (SELECT count(*) FROM leadmgmt.activity WHERE lead_id = 2) || ' ' ||
	       (SELECT coalesce(email, 'erased') FROM leadmgmt.lead WHERE id = 3) || ' ' ||
	       (SELECT lead_id || ' ' || status FROM leadmgmt.opportunity WHERE crm_id = 'D-1')}),
	'1 0 erased 1 won', 'the subscriber sees the merge, the forget and the deal');

# the feed's own bookkeeping replicates too: positions given by a reader,
# and the purge of acknowledged changes
my $total = $pub->safe_psql('postgres', q{SELECT count(*) FROM leadmgmt.change});
my $read = $pub->safe_psql('postgres', q{SELECT count(*) FROM leadmgmt.read_changes('crm', 100000)});
is($read, $total, "the connector read every change on the publisher ($total)");
$pub->safe_psql('postgres', q{
	SELECT leadmgmt.ack_changes('crm', (SELECT read_position FROM leadmgmt.change_consumer WHERE name = 'crm'))});
same('after the connector read and acknowledged the feed');
is($sub->safe_psql('postgres', q{SELECT count(*) FROM leadmgmt.change}), '0',
	'acknowledged changes are purged on the subscriber as well');

# nothing fired on the subscriber: its own history and feed came from the publisher only
is($sub->safe_psql('postgres', q{
	SELECT count(*) FROM leadmgmt.stage_history h
	 WHERE NOT EXISTS (SELECT 1 FROM leadmgmt.lead l WHERE l.id = h.lead_id)}),
	'0', 'no orphan history on the subscriber');

$sub->safe_psql('postgres', 'DROP SUBSCRIPTION leadmgmt_sub');
$sub->stop;
$pub->stop;
done_testing();
