# pgrepart partitions: future partitions for a range-partitioned table,
# idempotent, with the width pgrepart recorded or one given.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my @conn = ('-d', $node->connstr);
$node->psql(q{
	CREATE TABLE events (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at);
	CREATE TABLE events_2020_q1 PARTITION OF events FOR VALUES FROM ('2020-01-01') TO ('2020-04-01');
	CREATE TABLE counters (n bigint NOT NULL) PARTITION BY RANGE (n);
	CREATE TABLE counters_0 PARTITION OF counters FOR VALUES FROM (0) TO (1000);
	INSERT INTO counters SELECT g FROM generate_series(1, 999) g;
	CREATE TABLE plain (a int);
});
my $count = sub { $node->psql(qq{SELECT count(*) FROM pg_inherits WHERE inhparent = '$_[0]'::regclass}) };

# Killed between two of the partitions it creates: all or none, so a later
# run never finds a gap the range checks (lowest to highest bound) miss.
{
	my $dir = tempdir(CLEANUP => 1);
	local $ENV{PGREPART_FAULT_PAUSE} = 'partition';
	local $ENV{PGREPART_FAULT_PAUSE_MS} = '30000';
	my $pid = pgrepart_background("$dir/run.log", 'partitions', @conn, '-t', 'events',
		'--interval', '3 months', '--ahead', '2');
	ok(wait_for_text("$dir/run.log", qr/pausing at fault point partition/, 60),
		'paused after creating the first partition') or diag(slurp("$dir/run.log"));
	kill 'KILL', $pid;
	wait_exit($pid);
	is($count->('events'), 1, 'killed there: none of the new partitions is left');
}

my ($rc, $out, $err) = pgrepart('partitions', @conn, '-t', 'events');
is($rc, 1, 'without a known width: exit 1');
like($err, qr/hint: Give it with --interval/, 'and says to give --interval');

($rc, $out, $err) = pgrepart('partitions', @conn, '-t', 'events', '--interval', '3 months', '--ahead', '2');
is($rc, 0, 'partitions up to two quarters ahead') or diag($err);
my $n = $count->('events');
cmp_ok($n, '>', 20, "the quarters up to now and two ahead exist ($n)");
is($node->psql(q{SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass
	AND inhrelid::regclass::text ~ '^events_\d{4}_q[1-4]$'}), $n, 'named like the plan names them');
ok($node->psql(q{INSERT INTO events VALUES (1, now() + interval '5 months') RETURNING 1}) eq '1',
	'a row five months ahead has a partition');

($rc, $out, $err) = pgrepart('partitions', @conn, '-t', 'events', '--interval', '3 months', '--ahead', '2');
is($rc, 0, 'a second run exits 0');
is($count->('events'), $n, 'and creates nothing: idempotent');
like($err, qr/no partition needed/, 'and says so');

($rc, $out, $err) = pgrepart('partitions', @conn, '-t', 'counters', '--interval', '1000', '--ahead', '3');
is($rc, 0, 'integer ranges: exit 0') or diag($err);
is($count->('counters'), 4, 'three widths beyond the largest value');

($rc, $out, $err) = pgrepart('partitions', @conn, '-t', 'plain', '--interval', '1 day');
is($rc, 1, 'a table that is not range-partitioned: exit 1');
like($err, qr/is not range-partitioned/, 'and says so');

done_testing();
