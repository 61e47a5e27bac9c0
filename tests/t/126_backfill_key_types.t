# In key order (--copy-order key), keys the client cannot order are copied
# in chunks under short snapshots too, and the stream's keys are placed among the chunks in the server's
# order: a text key under an ICU collation (mixed case, where that order is
# not the bytes'), a numeric key and a (text, bigint) key, each migrated
# while a mixed load inserts, updates, changes keys, deletes and rolls back
# on all three.  Every row is compared, and while the copies run no
# pgrepart session's snapshot is older than a small part of the
# transactions the copies span.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new(settings => { logical_decoding_work_mem => "'64kB'" });
my $dir = tempdir(CLEANUP => 1);
$node->psql(fixture('key_types.sql'));
my @tables = qw(by_text by_numeric by_pair);

my ($rc, $out) = pgrepart('plan', '-d', $node->connstr, '-t', 'by_text', '-k', 'created_at',
	'--copy-order', 'key');
like($out, qr/copy\s+copy order: key: the copy reads key ranges of \(id\) in the key's order, each under its own short snapshot/,
	'plan: a text key is copied in key ranges') or diag($out);

# 20,000 rows a table in chunks of 400 at 4,000 rows/s: about five seconds each, at once.
my %run;
for my $t (@tables)
{
	$run{$t} = pgrepart_background("$dir/$t.log", 'run', '--cutover', 'manual', '-d', $node->connstr,
		'-t', $t, '-k', 'created_at', '--chunk-rows', '400', '--rate', '4000', '--copy-order', 'key');
}
ok(wait_for($node, q{SELECT count(DISTINCT migration_id) = 3 FROM pgrepart.chunk}, 60),
	'the three copies started') or diag(join '', map { slurp("$dir/$_.log") } @tables);
my $load = pgbench_background($node, "$dir/pgbench.log", 'keys.pgbench', '-c', '3', '-R', '300', '-T', '8');

# Sample pgrepart's sessions while any table is still copying.
my $xid_now = q{pg_snapshot_xmax(pg_current_snapshot())::text::bigint};
my $first_xid = $node->psql("SELECT $xid_now");
my ($oldest, $samples, $last_xid, $copied) = (0, 0, $first_xid, 0);
# At most two minutes: a copy held back for good must fail the test, not hang it.
for (1 .. 1200)
{
	my ($copying, $xid, $age) = split /\|/, $node->psql(qq{
		SELECT count(*) FILTER (WHERE phase IN ('prepared', 'copying')), $xid_now,
		  (SELECT coalesce(max(age(backend_xmin)), 0) FROM pg_stat_activity
		    WHERE application_name = 'pgrepart' AND backend_type = 'client backend')
		FROM pgrepart.migration});
	if ($copying == 0)
	{
		$copied = 1;
		last;
	}
	$last_xid = $xid;
	$oldest = $age if $age > $oldest;
	$samples++;
	select undef, undef, undef, 0.1;
}
my $span = $last_xid - $first_xid;
ok($copied, 'the copies ended') or diag(join '', map { slurp("$dir/$_.log") } @tables);
cmp_ok($samples, '>=', 3, 'sampled the sessions during the copies');
cmp_ok($oldest, '<', $span / 2,
	"no pgrepart snapshot was older than half the transactions the copies spanned ($oldest of $span)");
is(wait_exit($load), 0, 'the load ran without failures') or diag(slurp("$dir/pgbench.log"));

my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
for my $t (@tables)
{
	ok(wait_for($node, applied_up_to($lsn, $t), 180, $run{$t}), "$t: the apply reached $lsn")
	  or diag(slurp("$dir/$t.log"));
	kill 'TERM', $run{$t};
	is(wait_exit($run{$t}), 5, "$t: the run stops cleanly");
	my $log = slurp("$dir/$t.log");
	like($log, qr/copying "public.$t" in chunks of the key, each under its own snapshot/, "$t: copied in chunks");
	unlike($log, qr/error:/, "$t: no errors") or diag($log);
	cmp_ok($node->psql(qq{SELECT count(*) FROM pgrepart.chunk c JOIN pgrepart.migration m
		ON m.id = c.migration_id WHERE m.source_table = '$t'}), '>', 20, "$t: many chunks");
	my ($missing, $extra) = compare_tables($node, $t, "${t}_pgrepart");
	is("$missing/$extra", '0/0', "$t: every row equal");
}

done_testing();
