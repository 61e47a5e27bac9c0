#!/usr/bin/env perl
# bench throttle: the copy against a physical standby whose replay is
# slower than the copy writes WAL, with --max-replica-lag=2s and without
# (--max-replica-lag=0), one after the other on the same data.  The standby's
# replay is slowed by stopping its startup process (the one that replays)
# most of the time: SIGSTOP for 95 ms, SIGCONT for 5 ms, over and over, as a
# standby on slow disks or a busy host replays.  The lag is measured as
# pgrepart measures it, from here: the age of the first WAL position noted
# (every 0.2 s) that the standby has not replayed, from the copy's start
# until the standby has replayed all the copy and the index build wrote.
# Prints each copy's duration and worst lag, and
#   bench throttle: max_replica_lag_s=<worst lag, throttled> unthrottled_max_replica_lag_s=<worst lag, unthrottled> copy_slowdown=<throttled copy time / unthrottled>
# BENCH_ROWS (default 1000000) changes the size.
use strict;
use warnings;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep);
use Pgrepart::Cluster;
use Pgrepart::Test;

my $rows = $ENV{BENCH_ROWS} // 1000000;
my $dir = tempdir(CLEANUP => 1);
my $node = Pgrepart::Cluster->new(settings => { max_wal_size => "'4GB'" });
$node->psql(fixture('chat_messages.sql'), vars => { rows => $rows });
my $standby = Pgrepart::Cluster->new(basebackup_of => $node, standby => 1);
wait_for($node, q{SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming'}, 60)
  or die 'the standby does not stream';
my $conn = $node->connstr;
my $startup = $standby->psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'});
die 'no startup process on the standby' unless $startup;

# The slower: a child that lets the startup process run a twentieth of the time.
my $slower = fork // die "fork: $!";
if ($slower == 0)
{
	$SIG{TERM} = sub { kill 'CONT', $startup; POSIX::_exit(0) };
	# Until told, or until the bench is gone.
	while (getppid() != 1)
	{
		kill 'STOP', $startup;
		sleep 0.095;
		kill 'CONT', $startup;
		sleep 0.005;
	}
	POSIX::_exit(0);
}

# One copy with the given limit: its duration (s) and the standby's worst lag (s) while it ran.
sub copy_with
{
	my ($limit) = @_;
	my $pid = pgrepart_background("$dir/run-$limit.log", 'run', '--cutover', 'manual', '-d', $conn,
		'-t', 'chat_messages', '-k', 'created_at', '--max-replica-lag', $limit,
		'--report', "$dir/report-$limit.json");
	wait_for($node, q{SELECT to_regclass('pgrepart.migration') IS NOT NULL}, 600, $pid)
	  or die "the run did not start:\n" . slurp("$dir/run-$limit.log");
	my (@noted, $started, $copied, $built_at);
	my ($worst, $worst_phase) = (0, '');
	for (;;)
	{
		my ($phase, $wal, $replay) = split /\|/, $node->psql(q{
			SELECT (SELECT phase FROM pgrepart.migration),
			  pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'),
			  (SELECT pg_wal_lsn_diff(replay_lsn, '0/0') FROM pg_stat_replication
			    WHERE application_name = 'standby')});
		my $now = time;
		$phase //= '';
		$started //= $now if $phase eq 'copying';
		# Copied and indexed: from here until the standby has replayed it all.
		$built_at //= $wal if $started && $phase !~ /^(copying|copied)$/;
		last if defined $built_at && ($replay // 0) >= $built_at;
		push @noted, [ $now, $wal ];
		my ($first) = grep { $_->[1] > ($replay // 0) } @noted;
		my $lag = $first ? $now - $first->[0] : 0;
		($worst, $worst_phase) = ($lag, $phase) if $started && $lag > $worst;
		die "the run ended:\n" . slurp("$dir/run-$limit.log") if waitpid($pid, POSIX::WNOHANG) == $pid;
		sleep 0.2;
	}
	kill 'TERM', $pid;
	wait_exit($pid);
	# The copy's own time, from the report: the phase above is seen at the polls' pace.
	($copied) = slurp("$dir/report-$limit.json") =~ /"copy":([\d.]+)/;
	my ($rc, $out, $err) = pgrepart('abort', '-d', $conn, '-t', 'chat_messages');
	die "abort failed: $err" if $rc != 0;
	printf "--max-replica-lag=%s: copy %.1f s, standby's worst lag %.1f s (in phase %s)\n", $limit,
		$copied, $worst, $worst_phase;
	return ($copied, $worst);
}

my ($free_s, $free_lag) = copy_with('0');
my ($held_s, $held_lag) = copy_with('2s');
kill 'TERM', $slower;
waitpid $slower, 0;
printf "rows: %d; the standby replays a twentieth of the time\n", $rows;
printf "bench throttle: max_replica_lag_s=%.1f unthrottled_max_replica_lag_s=%.1f copy_slowdown=%.2f\n",
	$held_lag, $free_lag, $free_s > 0 ? $held_s / $free_s : 0;
