#!/usr/bin/env perl
# Compare pgrepart binaries on the apply bench's catch-up, pair by pair.
#
# The apply bench times one catch-up per run, and on a small shared machine
# two runs of the same binary can differ by a quarter.  This records the
# bench's change stream once, keeps a copy of the data directory, and then
# lets each binary catch up the very same stream from that copy, taking
# turns, so that what differs between two runs next to each other is the
# binary.  Each run is timed until the shadow holds the stream's last
# transaction, as in the apply bench.  Per run it prints the wall time and
# the CPU time of the apply's backend, the walsender and pgrepart (from
# /proc: Linux only); per binary, the median.  A tool for deciding whether
# a change helps, not a benchmark: it prints no "bench" line.
#
#   perl -I tests/lib tests/tools/apply-ab.pl [-n TRIALS] BINARY...
#
# PG_BINDIR and PGREPART_FIXTURES as for the tests; BENCH_TRANSACTIONS and
# BENCH_ROWS as for the apply bench.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Getopt::Long;
use Time::HiRes qw(time);
use Pgrepart::Cluster;
use Pgrepart::Test;

my $trials = 4;
GetOptions('n=i' => \$trials) && @ARGV
  or die "usage: apply-ab.pl [-n TRIALS] BINARY...\n";
my @bins = @ARGV;
-x $_ or die "$_: not an executable\n" for @bins;
my $transactions = $ENV{BENCH_TRANSACTIONS} // 50000;
my $dir = tempdir(CLEANUP => 1);

# As the apply bench: the copy made, the slot moved past it, then the load.
my $source = Pgrepart::Cluster->new(settings => { autovacuum => 'off' });
$source->psql(fixture('chat_messages.sql'), vars => { rows => $ENV{BENCH_ROWS} // 100000 });
my @run = ('run', '--cutover', 'manual', '-d', $source->connstr, '-t', 'chat_messages', '-k', 'created_at');
local $ENV{PGREPART} = $bins[0];
ready_to_catch_up($source, "$dir/prepare.log", @run);
# A second slot on the same publication, for the stream's last commit.
my $publication = $source->psql('SELECT publication_name FROM pgrepart.migration');
$source->psql(q{SELECT pg_create_logical_replication_slot('end_slot', 'pgoutput')});
my $load = pgbench_background($source, "$dir/pgbench.log", 'mixed.pgbench', '-c', '1', '-t', $transactions);
wait_exit($load) == 0 or die "pgbench failed:\n" . slurp("$dir/pgbench.log");
my $end = last_commit_end($source, 'end_slot', $publication);
$source->psql(q{SELECT pg_drop_replication_slot('end_slot')});
$source->psql('CHECKPOINT');
$source->snapshot('recorded');

my %secs;
for my $t (1 .. $trials)
{
	for my $bin (@bins)
	{
		$source->restore('recorded');
		$source->psql('CHECKPOINT');
		local $ENV{PGREPART} = $bin;
		my $start = time;
		my $pid = pgrepart_background("$dir/run.log", @run);
		wait_on_server($source, origin_reached($end), 1800, $pid)
		  or die "$bin did not catch up:\n" . slurp("$dir/run.log");
		my $s = time - $start;
		my %cpu;
		@cpu{qw(walsender backends pgrepart)} = pgrepart_cpu($source, $pid);
		kill 'TERM', $pid;
		wait_exit($pid);
		printf "trial %d %s: %.3f s, CPU backends %.2f s, walsender %.2f s, pgrepart %.2f s\n",
		  $t, $bin, $s, map { $cpu{$_} // 0 } qw(backends walsender pgrepart);
		push @{ $secs{$bin} }, $s;
	}
}
for my $bin (@bins)
{
	my @s = sort { $a <=> $b } @{ $secs{$bin} };
	printf "%s: median %.3f s, min %.3f s, max %.3f s\n", $bin, $s[ int(@s / 2) ], $s[0], $s[-1];
}
