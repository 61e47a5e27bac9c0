# Where the apply sends each change: to the leaf partition that holds the
# row when it can tell, through the partitioned shadow otherwise.  Under the
# mixed load (partition-column changes move rows between leaves and into the
# DEFAULT partition, key changes, deletes by key alone), with a partition
# created behind the apply's back mid-stream, every row must end equal.
# Twice: with updates and deletes in batches through the parent, and with
# each one alone through its leaf (the path of values that arrive as text).
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

for my $mode ('batches', 'single')
{
	local $ENV{PGREPART_TEST_OFF} = $mode eq 'single' ? 'apply-batches' : '';
	my $node = Pgrepart::Cluster->new;
	$node->psql(fixture('chat_messages.sql'), vars => { rows => 8000 });
	my $dir = tempdir(CLEANUP => 1);

	# Few premade partitions and a DEFAULT one: rows moved 200 days back land
	# in DEFAULT, and updates of those rows go through the parent.
	my $run = pgrepart_background("$dir/run.log", 'run', '--cutover', 'manual', '-d', $node->connstr,
		'-t', 'chat_messages', '-k', 'created_at', '--interval', '1 month', '--premake', '1',
		'--default-partition', '--batch-transactions', '20', '--json');
	ok(wait_for($node, q{SELECT count(*) = 1 FROM pgrepart.migration WHERE phase IN ('streaming', 'synced')},
		120, $run), "$mode: the run reached streaming") or diag(slurp("$dir/run.log"));
	my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '2', '-T', '8');
	sleep 3;
	# A leaf the apply has not seen, for rows far in the future: inserts and
	# updates into it go through the parent until the apply learns of it.
	$node->psql(q{CREATE TABLE chat_messages_future PARTITION OF chat_messages_pgrepart
		FOR VALUES FROM ('2100-01-01') TO ('2101-01-01')});
	$node->psql(q{UPDATE chat_messages SET created_at = timestamp '2100-06-01' + tokens_used * interval '1 minute'
		WHERE tokens_used BETWEEN 1 AND 20});
	is(wait_exit($load), 0, "$mode: pgbench ran the mixed load") or diag(slurp("$dir/pgbench.log"));
	$node->psql(q{UPDATE chat_messages SET tokens_used = coalesce(tokens_used, 0) + 1000
		WHERE created_at >= '2100-01-01'});
	$node->psql(q{DELETE FROM chat_messages WHERE created_at >= '2100-01-01' AND tokens_used % 2 = 0});

	my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
	ok(wait_for($node, applied_up_to($lsn), 120, $run), "$mode: the apply reached $lsn")
	  or diag(slurp("$dir/run.log"));
	kill 'TERM', $run;
	is(wait_exit($run), 5, "$mode: SIGTERM stops the run cleanly");
	unlike(slurp("$dir/run.log"), qr/error:/, "$mode: no errors") or diag(slurp("$dir/run.log"));
	my ($batches) = slurp("$dir/run.log") =~ /.*"batch_statements":(\d+)/s;
	ok(defined $batches && ($mode eq 'single' ? $batches == 0 : $batches > 0),
		"$mode: batch statements as expected (" . ($batches // 'none') . ')');

	my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
	is("$missing/$extra", '0/0', "$mode: every row equal");
	ok($node->psql(q{SELECT count(*) FROM chat_messages_pgrepart m JOIN pg_class c ON c.oid = m.tableoid
		WHERE pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'}) > 0, "$mode: rows live in the DEFAULT partition");
	is($node->psql(q{SELECT count(*) FROM chat_messages_future}),
		$node->psql(q{SELECT count(*) FROM chat_messages WHERE created_at >= '2100-01-01'}),
		"$mode: the rows moved into the late leaf are there");
}

done_testing();
