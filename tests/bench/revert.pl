#!/usr/bin/env perl
# bench revert: what keeping the original in step costs the application, and
# what swapping back does to it.  The seed's table under the mixed load
# (BENCH_RATE transactions/s on 2 clients, default 200, as in the cutover
# bench): first the load alone (the baseline), then pgrepart migrating with
# --revert-window while the load goes on.  After the swap, a probe writes a
# marked row to the new table every 200 ms and times until the old table
# has it (the reverse stream's lag, end to end); then "pgrepart revert"
# swaps back under the load.  Prints
#   bench revert: lock_hold_ms=<the revert's lock> worst_latency_ms=<the load's worst while the revert ran>
#     baseline_worst_latency_ms=<the load alone> reverse_lag_ms=<p99 of the probe>
# BENCH_ROWS (default 200000) changes the size, BENCH_PROBE_S (default 20)
# how long the probe runs.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Pgrepart::Bench;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $rows = $ENV{BENCH_ROWS} // 200000;
my $rate = $ENV{BENCH_RATE} // 200;
my $probe_s = $ENV{BENCH_PROBE_S} // 20;
my $dir = tempdir(CLEANUP => 1);
my $node = Pgrepart::Cluster->new(settings => { max_wal_size => "'4GB'" });
$node->psql(fixture('chat_messages.sql'), vars => { rows => $rows });
$node->psql('VACUUM ANALYZE chat_messages');
my $conn = $node->connstr;

my $alone = load_until($node, $dir, 'baseline', 'mixed.pgbench', $rate);
sleep 9;
load_stop($dir, 'baseline', $alone);
my $baseline = worst_latency("$dir/baseline");

my $load = load_until($node, $dir, 'window', 'mixed.pgbench', $rate);
my $run = pgrepart_background("$dir/run.log", 'run', '-d', $conn, '-t', 'chat_messages', '-k', 'created_at',
	'--revert-window', '1h', '--max-replica-lag', '0');
wait_for_text("$dir/run.log", qr/reverse stream: applying the changes/, 3600, $run)
  or die "the run did not swap:\n" . slurp("$dir/run.log");

# The load on the new table in the window, before anything else happens:
# what the partitioned table itself costs this load.
my $quiet_from = time;
sleep 5;
my $quiet_to = time;

# The probe: a marked row into the new table, then the old table polled for it.
my @lags;
my $until = time + $probe_s;
for (my $i = 0; time < $until; $i++)
{
	my $id = sprintf '00000000-0000-4000-8000-%012d', $i;
	$node->psql(qq{INSERT INTO chat_messages (user_id, session_id, message_id, role, content, id, created_at,
		updated_at) SELECT (SELECT id FROM users ORDER BY id LIMIT 1), gen_random_uuid(), 'probe $i', 'user', 'probe',
		'$id', now()::timestamp, now()::timestamp});
	my $at = time;
	my $seen;
	while (time - $at < 60)
	{
		$seen = time, last if $node->psql(qq{SELECT count(*) FROM chat_messages_old WHERE id = '$id'}) == 1;
		sleep 0.005;
	}
	die "the probe row never reached the old table:\n" . slurp("$dir/run.log") unless defined $seen;
	push @lags, ($seen - $at) * 1000;
	sleep 0.2;
}
@lags = sort { $a <=> $b } @lags;
my $p99 = $lags[int(0.99 * $#lags)];

my $from = time;
my ($rc, $out, $err) = pgrepart('revert', '-d', $conn, '-t', 'chat_messages', '-v');
die "revert failed:\n$err" if $rc != 0;
my $to = time;
wait_exit($run);
sleep 2;
load_stop($dir, 'window', $load);
my ($held) = slurp("$dir/run.log") =~ /the lock was held (\d+) ms/;
die "no lock hold in the run's log:\n" . slurp("$dir/run.log") unless defined $held;
my $worst = worst_latency("$dir/window", $from - 1, $to + 1);
my $window_worst = worst_latency("$dir/window", $quiet_from, $quiet_to);
my $worst_exec = worst_latency("$dir/window", $from - 1, $to + 1, 1);
# The slowest transactions around the revert, with when they ended, for a
# worst latency that needs explaining.
if ($ENV{BENCH_VERBOSE})
{
	my @slow = map { [ $_->[0] / 1000, $_->[1] / 1000, $_->[2] - $from ] }
	  grep { $_->[2] >= $from - 1 && $_->[2] <= $to + 1 } logged_transactions("$dir/window");
	@slow = (sort { $b->[0] <=> $a->[0] } @slow)[0 .. 9];
	printf "slow: %.0f ms (schedule lag %.0f ms), ended %+.2f s from the request\n", @$_ for grep { defined } @slow;
	print $err;
}
my $errors = 0;
$errors += load_errors($_) for glob "$dir/*.log";
printf "rows: %d; load: %d transactions/s of the mixed load on 2 clients; load errors %d; %d probes, "
  . "reverse lag median %.0f ms, worst %.0f ms; the revert took %.1f s; the load's worst from each "
  . "transaction's actual start meanwhile %.0f ms; the load's worst on the new table in the window, "
  . "before the probe and the revert: %.0f ms\n", $rows, $rate, $errors,
  scalar @lags, $lags[int($#lags / 2)], $lags[-1], $to - $from, $worst_exec, $window_worst;
printf "bench revert: lock_hold_ms=%d worst_latency_ms=%.0f baseline_worst_latency_ms=%.0f reverse_lag_ms=%.0f\n",
  $held, $worst, $baseline, $p99;
