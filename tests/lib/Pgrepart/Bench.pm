# Pgrepart::Bench: what the benchmarks read from pgbench's transaction logs.
package Pgrepart::Bench;

use strict;
use warnings;
use Exporter 'import';
use Pgrepart::Test;

our @EXPORT = qw(worst_latency load_errors);

# The longest latency (ms; with -R, from the scheduled start) of the
# transactions pgbench logged that ended within [from, to] (epoch seconds);
# with $exec, the longest time from the actual start (the schedule lag
# taken off): what a lock makes a transaction wait, apart from how far a
# load that outruns the machine has fallen behind.
sub worst_latency
{
	my ($prefix, $from, $to, $exec) = @_;
	my $worst = 0;
	for my $file (glob "$prefix.*")
	{
		open my $fh, '<', $file or die $!;
		while (<$fh>)
		{
			my (undef, undef, $us, undef, $sec, $usec, $lag) = split;
			next unless defined $usec && $us =~ /^\d+$/;	# "skipped" and "failed" lines
			$us -= $lag // 0 if $exec;
			my $end = $sec + $usec / 1e6;
			$worst = $us / 1000 if (!defined $from || ($end >= $from && $end <= $to)) && $us / 1000 > $worst;
		}
	}
	return $worst;
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
