#!/usr/bin/env perl
# bench cutover: the seed's table with its two foreign keys (users, tasks),
# the mixed load on chat_messages at a fixed rate (row moves included) and a
# write load on users, through a real pgrepart run, swap and key validation
# included (the loads start once the shadow is in sync).  Prints the swap's lock-hold time and the longest transaction
# latency of each load from the first lock attempt until the run exits,
# against the longest latency of the same loads without a migration, and
# the loads' errors (counted, never fatal to the benchmark), as
#   bench cutover: lock_hold_ms=<n> worst_latency_ms=<ms> worst_users_latency_ms=<ms> baseline_worst_latency_ms=<ms> load_errors=<n>
# BENCH_ROWS (default 1000000) and BENCH_RATE (transactions/s of each load,
# default 200) change the size.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Time::HiRes qw(time);
use Pgrepart::Cluster;
use Pgrepart::Test;
use Pgrepart::Bench;

my $rows = $ENV{BENCH_ROWS} // 1000000;
my $rate = $ENV{BENCH_RATE} // 200;
my $dir = tempdir(CLEANUP => 1);
my $node = Pgrepart::Cluster->new;
$node->psql(fixture('chat_messages.sql'), vars => { rows => $rows });
# The loaded table vacuumed first, as a production table is: else the
# autovacuum its inserts set off stalls the baseline.
$node->psql('VACUUM ANALYZE chat_messages');

# Both loads for $seconds, logging transactions under $name.
sub loads
{
	my ($name, $seconds) = @_;
	return (pgbench_background($node, "$dir/$name-chat.log", 'mixed.pgbench', '-c', '2', '-R', $rate,
			'-T', $seconds, '-l', "--log-prefix=$dir/$name-chat"),
		pgbench_background($node, "$dir/$name-users.log", 'users_writes.pgbench', '-c', '1', '-R', $rate,
			'-T', $seconds, '-l', "--log-prefix=$dir/$name-users"));
}

# The baseline: the same loads, no migration.
wait_exit($_) for loads('base', 10);
my $baseline = worst_latency("$dir/base-chat");
my $baseline_users = worst_latency("$dir/base-users");
my $errors = load_errors("$dir/base-chat.log") + load_errors("$dir/base-users.log");

# The migration: copied and in sync first, then the loads start, and five
# seconds later the cutover is asked for; the loads (30 s) outlast the swap
# and the keys' validation, and end on their own, their logs complete.
my $run = pgrepart_background("$dir/run.log", 'run', '-d', $node->connstr, '-t', 'chat_messages',
	'-k', 'created_at', '--cutover', 'manual');
wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 3600, $run)
  or die "pgrepart did not sync:\n" . slurp("$dir/run.log");
my @loads = loads('run', 30);
sleep 5;
$node->psql(q{UPDATE pgrepart.migration SET cutover_requested_at = now()});
wait_for_text("$dir/run.log", qr/cutover: analysing the shadow/, 600, $run);
my $cutover_from = time;
my $rc = wait_exit($run);
my $cutover_to = time;
wait_exit($_) for @loads;
die "pgrepart failed:\n" . slurp("$dir/run.log") if $rc != 0;
my ($hold) = slurp("$dir/run.log") =~ /the lock was held (\d+) ms/;
my $worst = worst_latency("$dir/run-chat", $cutover_from, $cutover_to);
my $worst_users = worst_latency("$dir/run-users", $cutover_from, $cutover_to);
$errors += load_errors("$dir/run-chat.log") + load_errors("$dir/run-users.log");

printf "rows: %d; loads: %d transactions/s of the mixed load on 2 clients and %d/s of writes to users; "
  . "cutover to exit %.1f s\n", $rows, $rate, $rate, $cutover_to - $cutover_from;
printf "worst latency against the baseline: chat_messages %.2fx, users %.2fx\n",
	$baseline > 0 ? $worst / $baseline : 0, $baseline_users > 0 ? $worst_users / $baseline_users : 0;
printf "worst time from a transaction's actual start (schedule lag off): chat_messages %.1f ms "
  . "(baseline %.1f), users %.1f ms (baseline %.1f)\n",
	worst_latency("$dir/run-chat", $cutover_from, $cutover_to, 1), worst_latency("$dir/base-chat", undef, undef, 1),
	worst_latency("$dir/run-users", $cutover_from, $cutover_to, 1), worst_latency("$dir/base-users", undef, undef, 1);
printf "bench cutover: lock_hold_ms=%d worst_latency_ms=%.1f worst_users_latency_ms=%.1f "
  . "baseline_worst_latency_ms=%.1f load_errors=%d\n", $hold // -1, $worst, $worst_users, $baseline, $errors;
