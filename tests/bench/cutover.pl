#!/usr/bin/env perl
# bench cutover: the mixed load at a fixed rate (pgbench -R) through a real
# pgrepart run, swap included.  Prints the swap's lock-hold time and the
# longest pgbench transaction latency in the second around the swap, against
# the same load's longest latency without a migration, as
#   bench cutover: lock_hold_ms=<v> worst_latency_ms=<v> baseline_worst_latency_ms=<v>
use strict;
use warnings;
use File::Temp qw(tempdir);
use Pgrepart::Cluster;
use Pgrepart::Test;

my $rows = $ENV{BENCH_ROWS} // 200000;
my $rate = $ENV{BENCH_RATE} // 200;
my $dir = tempdir(CLEANUP => 1);
my $node = Pgrepart::Cluster->new;
$node->psql(fixture('chat_messages.sql'), vars => { rows => $rows });

# The longest latency (ms; with -R, from the scheduled start) of the
# transactions pgbench logged that ended within [from, to] (epoch seconds).
sub worst_latency
{
	my ($prefix, $from, $to) = @_;
	my $worst = 0;
	for my $file (glob "$prefix*")
	{
		open my $fh, '<', $file or die $!;
		while (<$fh>)
		{
			my (undef, undef, $us, undef, $sec, $usec) = split;
			next unless defined $usec && $us =~ /^\d+$/;	# "skipped" lines
			my $end = $sec + $usec / 1e6;
			$worst = $us / 1000 if (!defined $from || ($end >= $from && $end <= $to)) && $us / 1000 > $worst;
		}
	}
	return $worst;
}

# The baseline: the same load, no migration.
my $load = pgbench_background($node, "$dir/base.log", 'mixed.pgbench', '-c', '2', '-R', $rate,
	'-T', '10', '-l', "--log-prefix=$dir/base");
wait_exit($load) == 0 or die "pgbench failed:\n" . slurp("$dir/base.log");
my $baseline = worst_latency("$dir/base");

# The migration under the same load.
$load = pgbench_background($node, "$dir/load.log", 'mixed.pgbench', '-c', '2', '-R', $rate,
	'-T', '40', '-l', "--log-prefix=$dir/run");
my $run = pgrepart_background("$dir/run.log", 'run', '-d', $node->connstr, '-t', 'chat_messages',
	'-k', 'created_at');
wait_exit($run) == 0 or die "pgrepart failed:\n" . slurp("$dir/run.log");
my $swapped_at = $node->psql(q{SELECT extract(epoch FROM updated_at) FROM pgrepart.migration});
wait_exit($load) == 0 or die "pgbench failed:\n" . slurp("$dir/load.log");
my ($hold) = slurp("$dir/run.log") =~ /the lock was held (\d+) ms/;
my $worst = worst_latency("$dir/run", $swapped_at - 0.5, $swapped_at + 1.5);

printf "rows: %d; load: %d transactions/s of the mixed load on 2 clients\n", $rows, $rate;
printf "bench cutover: lock_hold_ms=%d worst_latency_ms=%.1f baseline_worst_latency_ms=%.1f\n",
	$hold, $worst, $baseline;
