# The index build holds no long transaction: each partition's index or key
# is built in a transaction of its own, on two sessions, and the parent's
# adopt them.  A kill -9 in the middle of the build leaves some partitions
# built; the next run builds the others only, so that every partition ends
# with exactly one index per index of the parent, all attached.  Under a
# mixed load, with pgrepart's sessions sampled from the copy to sync: none
# keeps a transaction open for more than a few seconds.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
$node->psql(fixture('chat_messages.sql'), vars => { rows => 100000 });
my $dir = tempdir(CLEANUP => 1);
my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at',
	'--jobs', '2');
my $shadow = 'chat_messages_pgrepart';
my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '2', '-R', '200', '-T', '30');

# The first run pauses after each partition's build, and is killed once some are built.
my $run;
{
	local $ENV{PGREPART_FAULT_PAUSE} = 'built';
	local $ENV{PGREPART_FAULT_PAUSE_MS} = '200';
	$run = pgrepart_background("$dir/first.log", @run);
}
# pgrepart's sessions' longest open transaction (s), sampled until $sql holds (or 120 s).
my ($longest, $samples) = (0, 0);
sub sample_until
{
	my ($sql) = @_;
	for my $i (1 .. 1200)
	{
		my ($done, $open) = split /\|/, $node->psql(qq{
			SELECT COALESCE(($sql), false), (SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)
			  FROM pg_stat_activity WHERE application_name = 'pgrepart' AND backend_type = 'client backend')});
		$longest = $open if $open > $longest;
		$samples++;
		return 1 if $done eq 't';
		select undef, undef, undef, 0.1;
	}
	return 0;
}

ok(wait_for($node, q{SELECT to_regclass('pgrepart.built') IS NOT NULL}, 60, $run), 'the first run started')
  or diag(slurp("$dir/first.log"));
ok(sample_until(q{SELECT count(*) >= 10 FROM pgrepart.built}), 'it copied and built some partitions')
  or diag(slurp("$dir/first.log"));
kill 'KILL', $run;
wait_exit($run);
my ($built, $phase) = split /\|/, $node->psql(q{SELECT (SELECT count(*) FROM pgrepart.built), phase
	FROM pgrepart.migration});
is($phase, 'copied', 'killed in the index build');
my $total = $node->psql(qq{SELECT count(*) FROM pgrepart.statement s, pg_inherits h
	WHERE s.each_head IS NOT NULL AND s.phase = 'index' AND h.inhparent = '$shadow'::regclass});
cmp_ok($built, '<', $total, "with $built of $total partition indexes built");

# The second run, sampled until it is in sync.
$run = pgrepart_background("$dir/second.log", @run);
ok(sample_until(q{SELECT phase = 'synced' FROM pgrepart.migration}), 'the second run reached sync')
  or diag(slurp("$dir/second.log"));
cmp_ok($samples, '>=', 5, 'sampled its sessions');
cmp_ok($longest, '<', 5, "from the copy to sync, no pgrepart transaction stayed open 5 s (longest: ${longest} s)");
like(slurp("$dir/second.log"), qr/building \d+ indexes or keys of partitions.*on 2 sessions/,
	'two sessions built them');

# Exactly one index of each partition for each of the parent's, all attached and valid.
is($node->psql(qq{SELECT count(*) FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indrelid
	WHERE h.inhparent = '$shadow'::regclass
	  AND NOT EXISTS (SELECT FROM pg_inherits x WHERE x.inhrelid = i.indexrelid)}), 0,
	'no partition has an index of its own');
my $expect = $node->psql(q{SELECT count(*) FROM pg_index WHERE indrelid = 'chat_messages'::regclass});
is($node->psql(qq{SELECT count(*) FROM pg_index WHERE indrelid = '$shadow'::regclass AND indisvalid}),
	$expect, "the shadow has the original's $expect indexes, all valid");
is($node->psql(qq{SELECT count(*) FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
	WHERE h.inhparent = '$shadow'::regclass AND (SELECT count(*) FROM pg_index WHERE indrelid = c.oid) <> $expect}),
	0, "every partition has $expect indexes");

is(wait_exit($load), 0, 'the load ran without failures') or diag(slurp("$dir/pgbench.log"));
my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn), 120, $run), "the apply reached $lsn")
  or diag(slurp("$dir/second.log"));
kill 'TERM', $run;
is(wait_exit($run), 5, 'the run stops cleanly');
unlike(slurp("$dir/second.log"), qr/error:/, 'no errors');
my ($missing, $extra) = compare_tables($node, 'chat_messages', $shadow);
is("$missing/$extra", '0/0', 'every row equal');

done_testing();
