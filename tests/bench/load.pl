#!/usr/bin/env perl
# bench load: what the copy and the index build take from the application.
# The seed's table under the mixed load at a fixed rate (BENCH_RATE
# transactions/s on 2 clients, default 200): first the load alone (the
# baseline), then pgrepart copying and indexing with no load limit, then
# again with --max-load (BENCH_MAX_LOAD, default 1: wait while more than one
# other session is active, which is the load falling behind), chunks of
# 5,000 rows (a tenth of a second or less) and one index build at a time.  The load's latency counts from each transaction's
# scheduled start, so falling behind the schedule shows.  Prints each run's
# copy-and-index time and the load's worst latency meanwhile, and
#   bench load: worst_latency_ms=<with the limit> unlimited_worst_latency_ms=<without> baseline_worst_latency_ms=<load alone> copy_s=<with> unlimited_copy_s=<without>
# BENCH_ROWS (default 1000000) changes the size, BENCH_LIMITS (options of
# pgrepart run) the limits.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Pgrepart::Bench;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $rows = $ENV{BENCH_ROWS} // 1000000;
my $rate = $ENV{BENCH_RATE} // 200;
my $max_load = $ENV{BENCH_MAX_LOAD} // 1;
my $dir = tempdir(CLEANUP => 1);
my $node = Pgrepart::Cluster->new(settings => { max_wal_size => "'4GB'" });
$node->psql(fixture('chat_messages.sql'), vars => { rows => $rows });
$node->psql('VACUUM ANALYZE chat_messages');
my $conn = $node->connstr;

# The load while pgrepart copies and indexes with @limits: (seconds from the
# copy's start to the indexes built, the load's worst latency in ms meanwhile).
sub migrate
{
	my ($name, @limits) = @_;
	my $load = load_until($node, $dir, $name, 'mixed.pgbench', $rate);
	my $run = pgrepart_background("$dir/$name-run.log", 'run', '--cutover', 'manual', '-d', $conn,
		'-t', 'chat_messages', '-k', 'created_at', '--max-replica-lag', '0', @limits);
	wait_for($node, q{SELECT to_regclass('pgrepart.migration') IS NOT NULL}, 600, $run)
	  or die "the run did not start:\n" . slurp("$dir/$name-run.log");
	wait_for($node, q{SELECT phase <> 'prepared' FROM pgrepart.migration}, 600, $run)
	  or die "the copy did not start:\n" . slurp("$dir/$name-run.log");
	my $from = time;
	wait_for($node, q{SELECT phase NOT IN ('prepared', 'copying') FROM pgrepart.migration}, 3600, $run)
	  or die "the copy did not end:\n" . slurp("$dir/$name-run.log");
	my $copied = time;
	wait_for($node, q{SELECT phase NOT IN ('prepared', 'copying', 'copied') FROM pgrepart.migration}, 3600, $run)
	  or die "the indexes were not built:\n" . slurp("$dir/$name-run.log");
	my $to = time;
	kill 'TERM', $run;
	wait_exit($run);
	load_stop($dir, $name, $load);
	my ($rc, $out, $err) = pgrepart('abort', '-d', $conn, '-t', 'chat_messages');
	die "abort failed: $err" if $rc != 0;
	my $worst = worst_latency("$dir/$name", $from, $to);
	printf "%-9s copy %.1f s and indexes %.1f s; the load's worst latency %.0f ms (copy %.0f ms, "
	  . "indexes %.0f ms)\n", $name, $copied - $from, $to - $copied, $worst,
	  worst_latency("$dir/$name", $from, $copied), worst_latency("$dir/$name", $copied, $to);
	return ($to - $from, $worst);
}

my $alone = load_until($node, $dir, 'baseline', 'mixed.pgbench', $rate);
sleep 9;
load_stop($dir, 'baseline', $alone);
my $baseline = worst_latency("$dir/baseline");
my ($free_s, $free_worst) = migrate('unlimited');
my @limits = $ENV{BENCH_LIMITS} ? split(' ', $ENV{BENCH_LIMITS})
  : ('--max-load', $max_load, '--chunk-rows', 5000, '--jobs', 1);
my ($held_s, $held_worst) = migrate('limited', @limits);
print "limits: @limits\n";
my $errors = 0;
$errors += load_errors($_) for glob "$dir/*.log";
printf "rows: %d; load: %d transactions/s of the mixed load on 2 clients; load errors %d\n", $rows, $rate,
	$errors;
printf "bench load: worst_latency_ms=%.0f unlimited_worst_latency_ms=%.0f baseline_worst_latency_ms=%.0f "
  . "copy_s=%.1f unlimited_copy_s=%.1f\n", $held_worst, $free_worst, $baseline, $held_s, $free_s;
