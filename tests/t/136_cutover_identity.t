# Replica identity and publications come through the swap: a table with a
# primary key (default identity), one with no primary key and a unique
# index as REPLICA IDENTITY USING INDEX, and one with REPLICA IDENTITY
# FULL, all in an application's publication with a subscriber on another
# server.  After the swap the new table and every partition have the
# identity (else UPDATE and DELETE on a published partition fail), writes
# made during and after the run reach the subscriber, and its copy equals
# the new table row for row.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $pub = Pgrepart::Cluster->new;
my $sub = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
my %ddl = (
	t_pk => 'id bigint PRIMARY KEY, at timestamptz NOT NULL, v text',
	t_ui => 'id bigint NOT NULL, at timestamptz NOT NULL, v text',
	t_full => 'id bigint PRIMARY KEY, at timestamptz NOT NULL, v text',
);
my @tables = sort keys %ddl;
for my $t (@tables)
{
	$pub->psql("CREATE TABLE $t ($ddl{$t});
		INSERT INTO $t SELECT g, timestamptz '2025-01-01' + g * interval '1 hour', 'v' || g
		FROM generate_series(1, 3000) g;");
	$sub->psql("CREATE TABLE $t ($ddl{$t})");
}
$pub->psql(q{CREATE UNIQUE INDEX t_ui_id ON t_ui (id);
	ALTER TABLE t_ui REPLICA IDENTITY USING INDEX t_ui_id;
	ALTER TABLE t_full REPLICA IDENTITY FULL;
	CREATE PUBLICATION app_pub FOR TABLE t_pk, t_ui, t_full WITH (publish_via_partition_root = true)});
$sub->psql(q{CREATE UNIQUE INDEX t_ui_id ON t_ui (id); ALTER TABLE t_ui REPLICA IDENTITY USING INDEX t_ui_id});
$sub->psql('CREATE SUBSCRIPTION app_sub CONNECTION \'' . $pub->connstr . '\' PUBLICATION app_pub');
ok(wait_for($sub, q{SELECT count(*) = 3 FROM pg_subscription_rel WHERE srsubstate = 'r'}, 60),
	'the subscriber has copied the tables');

my ($rc, $out, $err) = pgrepart('plan', '-d', $pub->connstr, '-t', 't_ui', '-k', 'at', '--interval', '1 month');
like($out, qr/pass\s+replica_identity\s+the replica identity index becomes the new table's and each partition's/,
	'plan: the identity index is carried');
like($out, qr/pass\s+publications\s+publication "app_pub" will publish the new table after the swap, under its own name/,
	'plan: the publication keeps publishing under the table\'s name');

# Writes to all three during the migrations.
my $writes = join '', map {
	my $i = $_;
	join('', map { "UPDATE $_ SET v = 'during $i' WHERE id = $i; DELETE FROM $_ WHERE id = 1000 + $i; "
		  . "INSERT INTO $_ VALUES (5000 + $i, now(), 'new $i');\n" } @tables)
	  . "SELECT pg_sleep(0.2);\n"
} 1 .. 30;
my $load = client_background("$dir/load.log", 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $pub->connstr,
	'-c', $writes);
for my $t (@tables)
{
	($rc, $out, $err) = pgrepart('run', '-d', $pub->connstr, '-t', $t, '-k', 'at', '--interval', '1 month');
	is($rc, 0, "$t: migrated and swapped") or diag($err);
}
is(wait_exit($load), 0, 'the writes went on across the swaps') or diag(slurp("$dir/load.log"));

my $identity = q{SELECT string_agg(DISTINCT c.relreplident::text || coalesce((SELECT ':' || i.relname FROM pg_index x
	JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid AND x.indisreplident), ''), ',')
	FROM pg_class c WHERE c.oid = '%1$s'::regclass OR c.oid IN (SELECT inhrelid FROM pg_inherits
	WHERE inhparent = '%1$s'::regclass)};
is($pub->psql(sprintf($identity, 't_pk')), 'd', 't_pk: the new table and every partition keep the default identity');
is($pub->psql(sprintf(q{SELECT count(*) FILTER (WHERE c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index x
	WHERE x.indrelid = c.oid AND x.indisreplident)) || '/' || count(*) FROM pg_class c
	WHERE c.oid = '%1$s'::regclass OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = '%1$s'::regclass)},
	't_ui')), $pub->psql(q{SELECT (count(*) + 1) || '/' || (count(*) + 1) FROM pg_inherits WHERE inhparent = 't_ui'::regclass}),
	't_ui: the new table and every partition have an index as replica identity');
is($pub->psql(q{SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
	WHERE x.indrelid = 't_ui'::regclass AND x.indisreplident}), 't_ui_id', "t_ui: the new table's has the old one's name");
is($pub->psql(sprintf($identity, 't_full')), 'f', 't_full: the new table and every partition are FULL');

# Partitions made later carry the identity too.
for my $t ('t_ui', 't_full')
{
	my $before = $pub->psql("SELECT count(*) FROM pg_inherits WHERE inhparent = '$t'::regclass");
	($rc, $out, $err) = pgrepart('partitions', '-d', $pub->connstr, '-t', $t, '--ahead', '30');
	is($rc, 0, "$t: pgrepart partitions adds partitions") or diag($err);
	cmp_ok($pub->psql("SELECT count(*) FROM pg_inherits WHERE inhparent = '$t'::regclass"), '>', $before,
		"$t: new partitions exist");
}
like($pub->psql(sprintf($identity, 't_full')), qr/^f$/, 't_full: the new partitions are FULL');
is($pub->psql(q{SELECT count(*) FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
	WHERE h.inhparent = 't_ui'::regclass AND NOT EXISTS (SELECT 1 FROM pg_index x
	WHERE x.indrelid = c.oid AND x.indisreplident)}), 0, "t_ui: the new partitions have the identity index");

# After the swap: updates and deletes work on every kind, and reach the subscriber.
for my $t (@tables)
{
	my ($urc, undef, $uerr) = $pub->psql("UPDATE $t SET v = 'after' WHERE id BETWEEN 100 AND 150;
		DELETE FROM $t WHERE id BETWEEN 200 AND 250; UPDATE $t SET at = at + interval '2 months' WHERE id = 300;",
		allow_fail => 1);
	is($urc, 0, "$t: UPDATE and DELETE work after the swap") or diag($uerr);
}
my $lsn = $pub->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($pub, "SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = 'app_sub'", 60),
	'the subscriber caught up');
for my $t (@tables)
{
	my $digest = "SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY id)) FROM $t t";
	is($sub->psql($digest), $pub->psql($digest), "$t: the subscriber's copy equals the new table row for row");
}

done_testing();
