#!/usr/bin/env perl
# bench memory: pgrepart's peak RSS against the size of one large source
# transaction (every row of the seed's table updated BENCH_PASSES times in
# one transaction), in the two phases that meet it:
#   copy       the transaction commits while the copy runs (held to 100 rows a
#              second until then), so it is spooled, then replayed;
#   streaming  the transaction commits while the run streams, in sync.
# The size of the transaction's changes is the WAL it wrote.  Prints each
# phase's figures and the line (the larger peak of the two)
#   bench memory: txn_mb=<WAL of the transaction> peak_rss_mb=<peak> ratio=<peak/txn>
use strict;
use warnings;
use File::Temp qw(tempdir);
use POSIX ();
use Pgrepart::Cluster;
use Pgrepart::Test;

my $rows = $ENV{BENCH_ROWS} // 200000;
my $passes = $ENV{BENCH_PASSES} // 3;
my $dir = tempdir(CLEANUP => 1);
my $node = Pgrepart::Cluster->new(settings => { max_wal_size => "'4GB'" });
$node->psql(fixture('chat_messages.sql'), vars => { rows => $rows });
my $conn = $node->connstr;
my $update = 'BEGIN; ' . join('', map { "UPDATE chat_messages SET content = content || ' ($_)', "
	  . "tokens_used = coalesce(tokens_used, 0) + 1; " } 1 .. $passes) . 'COMMIT';

# Run the update (then the statement $then, if any), wait until pgrepart has
# the state wait_sql says, and return the transaction's WAL in MB and the
# run's peak RSS in MB.
sub measure
{
	my ($name, $pid, $wait_sql, $then) = @_;
	my $before = $node->psql('SELECT pg_current_wal_lsn()');
	$node->psql($update);
	my $after = $node->psql('SELECT pg_current_wal_lsn()');
	$node->psql($then) if $then;
	my $mb = $node->psql("SELECT pg_wal_lsn_diff('$after', '$before') / 1048576");
	wait_for($node, $wait_sql =~ s/:after/$after/r, 1800, $pid)
	  or die "$name: pgrepart did not get there:\n" . slurp("$dir/$name.log");
	my $rss = peak_rss_mb($pid);
	printf "%-9s transaction %.0f MB of WAL, pgrepart peak RSS %.0f MB\n", $name, $mb, $rss;
	return ($mb, $rss);
}

my $applied = q{SELECT confirmed_flush_lsn >= ':after' FROM pg_replication_slots
	WHERE slot_name LIKE 'pgrepart%' AND NOT temporary};

# During the copy: spooled, then replayed once the indexes are built.
my %phase;
{
	# Slowed to a crawl until the transaction has committed (and is spooled),
	# then let go, through the rate a running copy reads from its state.
	my $pid = pgrepart_background("$dir/copy.log", 'run', '--cutover', 'manual', '-d', $conn, '-t',
		'chat_messages', '-k', 'created_at', '--chunk-rows', '1000', '--rate', '100');
	wait_for($node, q{SELECT count(*) > 0 FROM pgrepart.chunk}, 600, $pid) or die slurp("$dir/copy.log");
	$phase{copy} = [ measure('copy', $pid, qq{SELECT phase = 'synced' AND ($applied) FROM pgrepart.migration},
		q{UPDATE pgrepart.migration SET max_rows_per_second = 0}) ];
	kill 'TERM', $pid;
	wait_exit($pid);
	my ($rc, $out, $err) = pgrepart('abort', '-d', $conn, '-t', 'chat_messages');
	$rc == 0 or die "abort failed: $err";
}

# While streaming, in sync.
{
	my $pid = pgrepart_background("$dir/streaming.log", 'run', '--cutover', 'manual', '-d', $conn, '-t',
		'chat_messages', '-k', 'created_at');
	wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 1800, $pid)
	  or die slurp("$dir/streaming.log");
	$phase{streaming} = [ measure('streaming', $pid, $applied) ];
	kill 'TERM', $pid;
	wait_exit($pid);
}

my ($worst) = sort { $phase{$b}[1] <=> $phase{$a}[1] } keys %phase;
my ($mb, $rss) = @{ $phase{$worst} };
printf "bench memory: txn_mb=%.0f peak_rss_mb=%.0f ratio=%.2f\n", $mb, $rss, $rss / $mb;
