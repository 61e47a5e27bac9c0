# Where the apply sends each change: to the leaf partition that holds the
# row when it can tell, through the partitioned shadow otherwise.  Under the
# mixed load (partition-column changes move rows between leaves and into the
# DEFAULT partition, key changes, deletes by key alone), with a partition
# created behind the apply's back mid-stream, every row must end equal.
# With updates and deletes in batches through the parent, with each one
# alone through its leaf (the path of values that arrive as text), and in
# batches without a DEFAULT partition: then the apply creates the partitions
# rows moved back in time need, and must notice the one made behind its back
# instead of creating partitions up to it.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

for my $mode ('batches', 'single', 'no default')
{
	local $ENV{PGREPART_TEST_OFF} = $mode eq 'single' ? 'apply-batches' : '';
	my $default = $mode ne 'no default';
	my $node = Pgrepart::Cluster->new;
	$node->psql(fixture('chat_messages.sql'), vars => { rows => 8000 });
	my $dir = tempdir(CLEANUP => 1);

	# Few premade partitions and a DEFAULT one: rows moved 200 days back land
	# in DEFAULT, and updates of those rows go through the parent.
	my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at',
		'--interval', '1 month', '--premake', '1', $default ? () : '--no-default-partition',
		'--batch-transactions', '20', '--json');
	my $run = pgrepart_background("$dir/run.log", @run);
	ok(wait_for($node, q{SELECT count(*) = 1 FROM pgrepart.migration WHERE phase IN ('streaming', 'synced')},
		120, $run), "$mode: the run reached streaming") or diag(slurp("$dir/run.log"));
	my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '2', '-T', '8');
	sleep 3;
	# A leaf the apply has not seen, for the next ten years from the last
	# partition (no gap, so the apply can do without a DEFAULT partition):
	# inserts and updates into it go through the parent until the apply
	# learns of it.
	my $late = $node->psql(q{SELECT max(substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''')::timestamp)
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'chat_messages_pgrepart'::regclass});
	$node->psql(qq{CREATE TABLE chat_messages_future PARTITION OF chat_messages_pgrepart
		FOR VALUES FROM ('$late') TO ('$late'::timestamp + interval '10 years')});
	$node->psql(qq{UPDATE chat_messages SET created_at = '$late'::timestamp + interval '5 years' + tokens_used * interval '1 minute'
		WHERE tokens_used BETWEEN 1 AND 20});
	is(wait_exit($load), 0, "$mode: pgbench ran the mixed load") or diag(slurp("$dir/pgbench.log"));
	$node->psql(qq{UPDATE chat_messages SET tokens_used = coalesce(tokens_used, 0) + 1000
		WHERE created_at >= '$late'});
	$node->psql(qq{DELETE FROM chat_messages WHERE created_at >= '$late' AND tokens_used % 2 = 0});

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
	if ($default)
	{
		ok($node->psql(q{SELECT count(*) FROM chat_messages_pgrepart m JOIN pg_class c ON c.oid = m.tableoid
			WHERE pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'}) > 0, "$mode: rows live in the DEFAULT partition");
	}
	else
	{
		my @created = slurp("$dir/run.log") =~ /created partition "[^"]+" for a row beyond the existing partitions/g;
		ok(@created > 0, "$mode: the apply created partitions for rows moved back in time ("
		  . scalar(@created) . ')') or diag(slurp("$dir/run.log"));
		is($node->psql(qq{SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = 'chat_messages_pgrepart'::regclass
			AND substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([^'']+)''')::timestamp >= '$late'}),
			1, "$mode: and none where the partition made behind its back is");
	}
	is($node->psql(q{SELECT count(*) FROM chat_messages_future}),
		$node->psql(qq{SELECT count(*) FROM chat_messages WHERE created_at >= '$late'}),
		"$mode: the rows moved into the late leaf are there");
	next if $default;

	# A gap: another partition behind the apply's back, ten years above the
	# last, and a row moved between the two.  The apply stops on it, says
	# what to do, and goes on once the gap is filled.
	$node->psql(qq{CREATE TABLE chat_messages_far PARTITION OF chat_messages_pgrepart
		FOR VALUES FROM ('$late'::timestamp + interval '20 years') TO ('$late'::timestamp + interval '21 years')});
	$node->psql(qq{UPDATE chat_messages SET created_at = '$late'::timestamp + interval '15 years'
		WHERE id = (SELECT id FROM chat_messages ORDER BY id LIMIT 1)});
	my ($rc, undef, $err) = pgrepart(@run);
	is($rc, 1, "$mode: a row in a gap between partitions stops the run");
	like($err, qr/no partition of relation .* found for row.*hint: No partition takes the row.*gap/s,
		"$mode: the error says the partitions have a gap") or diag($err);
	$node->psql(qq{CREATE TABLE chat_messages_gap PARTITION OF chat_messages_pgrepart
		FOR VALUES FROM ('$late'::timestamp + interval '10 years') TO ('$late'::timestamp + interval '20 years')});
	$lsn = $node->psql('SELECT pg_current_wal_lsn()');
	$run = pgrepart_background("$dir/again.log", @run);
	ok(wait_for($node, applied_up_to($lsn), 120, $run), "$mode: with the gap filled, the apply goes on")
	  or diag(slurp("$dir/again.log"));
	kill 'TERM', $run;
	is(wait_exit($run), 5, "$mode: SIGTERM stops the run cleanly");
	($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
	is("$missing/$extra", '0/0', "$mode: every row equal");
}

done_testing();
