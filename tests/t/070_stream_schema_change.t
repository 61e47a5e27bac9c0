# A column added, dropped or retyped on the source while the stream is
# applied stops the run with a clear error, before anything of it is applied;
# a TRUNCATE of the source empties the shadow.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);

sub migrate
{
	my ($table) = @_;
	$node->psql(qq{CREATE TABLE $table (id int PRIMARY KEY, at timestamp NOT NULL, note text);
		INSERT INTO $table SELECT g, timestamp '2025-01-01' + g * interval '1 day', 'n'
		FROM generate_series(1, 100) g});
	my $pid = pgrepart_background("$dir/$table.log", 'run', '--cutover', 'manual', '-d', $node->connstr, '-t', $table,
		'-k', 'at', '--interval', '1 month');
	# Past the copy: the change below must reach the stream, not the copy.
	wait_for($node, qq{SELECT count(*) = 1 FROM pg_replication_slots s
		JOIN pgrepart.migration m ON m.slot_name = s.slot_name
		WHERE m.source_table = '$table' AND s.active AND m.phase IN ('streaming', 'synced')}, 60, $pid)
	  or diag(slurp("$dir/$table.log"));
	return $pid;
}

my %changes = (
	added => 'ALTER TABLE added ADD COLUMN extra int; UPDATE added SET extra = 1 WHERE id = 1',
	dropped => 'ALTER TABLE dropped DROP COLUMN note; UPDATE dropped SET at = at WHERE id = 1',
	retyped => 'ALTER TABLE retyped ALTER COLUMN note TYPE varchar(20); UPDATE retyped SET note = $$x$$ WHERE id = 1',
);
for my $table (sort keys %changes)
{
	my $pid = migrate($table);
	$node->psql($changes{$table});
	is(wait_exit($pid), 1, "column $table: the run stops with an error");
	my $log = slurp("$dir/$table.log");
	like($log, qr/error: table "public.$table" changed during the migration: column "\w+" was \S*$table/,
		"column $table: the error names the table, the column and the change");
	like($log, qr/hint: Abort the migration/, "column $table: with a hint");
	is($node->psql(qq{SELECT count(*) FROM ${table}_pgrepart WHERE id = 1 AND note = 'n'}), 1,
		"column $table: nothing of the change reached the shadow");
}

my ($rc, $out);
my $pid = migrate('emptied');
$node->psql(q{TRUNCATE emptied; INSERT INTO emptied VALUES (7, '2025-02-02', 'after')});
my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn, 'emptied'), 60, $pid),
	'the truncate and the insert after it are applied') or diag(slurp("$dir/emptied.log"));
is($node->psql(q{SELECT string_agg(id || ':' || note, ',') FROM emptied_pgrepart}), '7:after',
	'TRUNCATE emptied the shadow');

# The replication connection dropped from the server's side: the run
# reconnects and carries on from the origin's progress.
$node->psql(q{SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active});
$node->psql(q{INSERT INTO emptied VALUES (8, '2025-03-03', 'reconnected')});
$lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn, 'emptied'), 60, $pid),
	'after the walsender is terminated, the run reconnects and applies');
like(slurp("$dir/emptied.log"), qr/reconnecting in \d+ s/, 'and says it reconnected');
kill 'TERM', $pid;
is(wait_exit($pid), 5, 'then stops cleanly');
is($node->psql(q{SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM emptied_pgrepart}),
	'7:after,8:reconnected', 'nothing lost or doubled across the reconnection');

# The replica identity plan suggests: an index on key + partition column, so
# the old key carries the partition value and every lookup is exact.
$node->psql(q{CREATE TABLE exact (id int PRIMARY KEY, at timestamp NOT NULL, note text);
	INSERT INTO exact SELECT g, timestamp '2025-01-01' + g * interval '1 day', 'n'
	FROM generate_series(1, 100) g});
($rc, $out) = pgrepart('plan', '-d', $node->connstr, '-t', 'exact', '-k', 'at');
my ($hint) = $out =~ /warn\s+replica_identity\s+the replica identity \(the primary key\) lacks "at".*\n\s+hint: For faster deletes, first: (.*)\n/;
ok($hint, 'plan suggests an identity index with the partition column') or diag($out);
$node->psql($hint =~ s/CONCURRENTLY //r);
$pid = pgrepart_background("$dir/exact.log", 'run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'exact', '-k', 'at',
	'--interval', '1 month');
wait_for($node, q{SELECT count(*) = 1 FROM pg_replication_slots s JOIN pgrepart.migration m
	ON m.slot_name = s.slot_name WHERE m.source_table = 'exact' AND s.active}, 60, $pid);
$node->psql(q{UPDATE exact SET at = at - interval '3 months' WHERE id % 10 = 0;
	UPDATE exact SET note = 'x' WHERE id % 7 = 0;
	UPDATE exact SET id = id + 1000 WHERE id % 9 = 0;
	DELETE FROM exact WHERE id % 5 = 1});
$lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn, 'exact'), 60, $pid),
	'with the identity index, updates (partition column and key too) and deletes apply')
  or diag(slurp("$dir/exact.log"));
kill 'TERM', $pid;
wait_exit($pid);
my ($missing, $extra) = compare_tables($node, 'exact', 'exact_pgrepart');
is("$missing/$extra", '0/0', 'and the tables are equal');

done_testing();
