# The copy in physical order (the default) reads each heap page about once,
# whatever the key: the heap pages it touches, counted by the server, stay
# close to the table's page count for a uuid key and for a bigint key, where
# the key's order touches the heap about once per row for the uuid.  Then,
# under a mixed load (inserts, updates, key changes, deletes, rollbacks) on
# keys of three kinds (text under an ICU collation, numeric, text and
# bigint), with a VACUUM FULL that rewrites one table in the middle of its
# copy, every row compares equal, and plan says which order the copy takes.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new(settings => { logical_decoding_work_mem => "'64kB'" });
my $dir = tempdir(CLEANUP => 1);
$node->psql(fixture('chat_messages.sql'), vars => { rows => 30000 });
$node->psql(q{
CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, body text);
INSERT INTO events SELECT g, '2026-01-01'::timestamptz + g * interval '1 minute', repeat('e', 100)
FROM generate_series(1, 60000) g;
CREATE INDEX ON events (created_at);
ALTER TABLE chat_messages SET (autovacuum_enabled = off);
ALTER TABLE events SET (autovacuum_enabled = off);
VACUUM ANALYZE chat_messages, events;
});

my ($rc, $out) = pgrepart('plan', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at');
like($out, qr/copy order: physical: the copy reads ranges of heap pages, each page once, each range under its own short snapshot \(the key \(id\): its correlation with the heap is -?0\.\d+\)/,
	'plan: the copy takes the physical order and gives the key\'s correlation') or diag($out);
($rc, $out) = pgrepart('plan', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at',
	'--copy-order', 'key');
like($out, qr/warn\s+copy\s+copy order: key: .* so it may read a heap page once per row, at random/,
	'plan: the key order of a uuid is a warning') or diag($out);

# Heap page accesses of one run, no load, counted once at least $least
# times the table's pages have arrived (a backend sends its counts as it
# ends).  Both tables have an index on the partition column, so the plan's
# range reads no heap pages to speak of: what is counted is the copy.
sub copy_pages
{
	my ($table, $least, @options) = @_;
	my $log = "$dir/$table-pages.log";
	my $label = join ' ', $table, @options;
	my $pages = $node->psql("SELECT pg_relation_size('$table') / 8192");
	$node->psql("SELECT pg_stat_reset_single_table_counters('$table'::regclass)");
	my $run = pgrepart_background($log, 'run', '--cutover', 'manual', '-d', $node->connstr,
		'-t', $table, '-k', 'created_at', '--chunk-rows', '2000', @options);
	ok(wait_for($node, qq{SELECT phase = 'synced' FROM pgrepart.migration WHERE source_table = '$table'},
			120, $run), "$label: copied and synced") or diag(slurp($log));
	kill 'TERM', $run;
	is(wait_exit($run), 5, "$label: the run stops cleanly");
	my $accesses = heap_accesses($node, $table, $pages * $least);
	my ($missing, $extra) = compare_tables($node, $table, "${table}_pgrepart");
	is("$missing/$extra", '0/0', "$label: every row equal");
	my ($aborted) = pgrepart('abort', '-d', $node->connstr, '-t', $table);
	is($aborted, 0, "$label: aborted");
	return ($accesses, $pages);
}

my ($uuid, $uuid_pages) = copy_pages('chat_messages', 0.9);
cmp_ok($uuid, '<=', 1.2 * $uuid_pages + 20,
	"uuid key, physical order: $uuid heap page accesses for a table of $uuid_pages pages");
my ($bigint, $bigint_pages) = copy_pages('events', 0.9);
cmp_ok($bigint, '<=', 1.2 * $bigint_pages + 20,
	"bigint key, physical order: $bigint heap page accesses for a table of $bigint_pages pages");
my ($keyed) = copy_pages('chat_messages', 3, '--copy-order', 'key');
cmp_ok($keyed, '>', 3 * $uuid_pages,
	"uuid key, key order: $keyed heap page accesses for the same $uuid_pages pages");

# Under load, keys of three kinds, one table rewritten during its copy.
$node->psql(fixture('key_types.sql'));
my @tables = qw(by_text by_numeric by_pair);
my %run;
for my $t (@tables)
{
	$run{$t} = pgrepart_background("$dir/$t.log", 'run', '--cutover', 'manual', '-d', $node->connstr,
		'-t', $t, '-k', 'created_at', '--chunk-rows', '400', '--rate', '4000', '--report', "$dir/$t.json");
}
ok(wait_for($node, q{SELECT count(DISTINCT migration_id) = 3 FROM pgrepart.chunk}, 60),
	'the three copies started') or diag(join '', map { slurp("$dir/$_.log") } @tables);
my $load = pgbench_background($node, "$dir/pgbench.log", 'keys.pgbench', '-c', '3', '-R', '300', '-T', '8');
# Half-way through by_numeric's copy its rows move to a new file.
ok(wait_for($node, q{SELECT count(*) >= 10 FROM pgrepart.chunk c JOIN pgrepart.migration m
	ON m.id = c.migration_id WHERE m.source_table = 'by_numeric'}, 60), 'by_numeric: ten chunks copied');
$node->psql('VACUUM FULL by_numeric');
is(wait_exit($load), 0, 'the load ran without failures') or diag(slurp("$dir/pgbench.log"));

my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
for my $t (@tables)
{
	ok(wait_for($node, applied_up_to($lsn, $t), 180, $run{$t}), "$t: the apply reached $lsn")
	  or diag(slurp("$dir/$t.log"));
	kill 'TERM', $run{$t};
	is(wait_exit($run{$t}), 5, "$t: the run stops cleanly");
	my $log = slurp("$dir/$t.log");
	like($log, qr/copying "public.$t" in chunks of heap pages/, "$t: copied in physical order");
	unlike($log, qr/error:/, "$t: no errors") or diag($log);
	my ($missing, $extra) = compare_tables($node, $t, "${t}_pgrepart");
	is("$missing/$extra", '0/0', "$t: every row equal");
}
my $report = slurp("$dir/by_pair.json");
like($report, qr/"copy_order":\s*"physical"/, 'the report gives the copy order');
my ($reconciled) = $report =~ /"reconciled_changes":\s*(\d+)/;
cmp_ok($reconciled // 0, '>', 0, "the report counts the changes reconciled ($reconciled)");
like(slurp("$dir/by_numeric.log"), qr/"public.by_numeric" was rewritten \(VACUUM FULL, CLUSTER or the like\) during the copy: starting the copy again/,
	'by_numeric: the rewrite started the copy again');

done_testing();
