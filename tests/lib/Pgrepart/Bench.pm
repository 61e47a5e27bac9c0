# Pgrepart::Bench: what the benchmarks read from pgbench's transaction logs.
package Pgrepart::Bench;

use strict;
use warnings;
use Exporter 'import';
use POSIX ();
use Pgrepart::Test;

our @EXPORT = qw(logged_transactions worst_latency load_errors load_until load_stop);

# The transactions pgbench logged under $prefix.*, each as [latency in
# us (with -R, from the scheduled start), schedule lag in us, end in epoch
# seconds]; "skipped" and "failed" lines are left out.
sub logged_transactions
{
	my ($prefix) = @_;
	my @transactions;
	for my $file (glob "$prefix.*")
	{
		open my $fh, '<', $file or die $!;
		while (<$fh>)
		{
			my (undef, undef, $us, undef, $sec, $usec, $lag) = split;
			next unless defined $usec && $us =~ /^\d+$/;
			push @transactions, [ $us, $lag // 0, $sec + $usec / 1e6 ];
		}
	}
	return @transactions;
}

# The longest latency (ms; with -R, from the scheduled start) of the
# transactions pgbench logged that ended within [from, to] (epoch seconds);
# with $exec, the longest time from the actual start (the schedule lag
# taken off): what a lock makes a transaction wait, apart from how far a
# load that outruns the machine has fallen behind.
sub worst_latency
{
	my ($prefix, $from, $to, $exec) = @_;
	my $worst = 0;
	for (logged_transactions($prefix))
	{
		my ($us, $lag, $end) = @$_;
		$us -= $lag if $exec;
		$worst = $us / 1000 if (!defined $from || ($end >= $from && $end <= $to)) && $us / 1000 > $worst;
	}
	return $worst;
}

# The loads' stop files: a bench that dies stops its loads too.
my @stops;
END { for (@stops) { open my $fh, '>', $_; close $fh if $fh } }

# The load: pgbench running $script (from tests/fixtures) on 2 clients at
# $rate transactions/s, in runs of five seconds, each with its transaction
# log whole ($dir/$name.<run>.*), until load_stop; returns the pid of the
# loop.
sub load_until
{
	my ($node, $dir, $name, $script, $rate) = @_;
	my $stop = "$dir/$name.stop";
	push @stops, $stop;
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		for (my $i = 0; !-e $stop; $i++)
		{
			wait_exit(pgbench_background($node, "$dir/$name.log", $script, '-c', '2', '-R', $rate,
				'-T', 5, '-l', "--log-prefix=$dir/$name.$i"));
		}
		POSIX::_exit(0);
	}
	return $pid;
}

# Stop the load load_until started, once its current run ends.
sub load_stop
{
	my ($dir, $name, $pid) = @_;
	open my $fh, '>', "$dir/$name.stop" or die $!;
	close $fh;
	waitpid $pid, 0;
}

# A load's errors: clients aborted, transactions failed, logged as failed.
sub load_errors
{
	my ($log, $prefix) = @_;
	my $out = slurp($log);
	my $errors = () = $out =~ /client \d+ aborted/g;
	my ($failed) = $out =~ /number of failed transactions: (\d+)/;
	return $errors + ($failed // 0);
}

1;
