#!/usr/bin/env perl
# make check-faults: every fault at every phase of `pgrepart run` under a
# write load, FAULT_RUNS times each (default 1), each followed by running
# the same command again until it finishes; then the ledger, the table and
# what is left are checked (see tests/lib/Pgrepart/Faults.pm).  Prints the
# table fault x phase x runs x outcomes and a "N passed, N failed" line;
# exits non-zero when a trial failed.  FAULTS= and POINTS= (comma lists)
# narrow it.
use strict;
use warnings;
use Pgrepart::Cluster;
use Pgrepart::Faults qw(@FAULTS @POINTS trial summary);

$| = 1;
my $runs = $ENV{FAULT_RUNS} // 1;
my @faults = $ENV{FAULTS} ? split(/,/, $ENV{FAULTS}) : @FAULTS;
my @points = $ENV{POINTS} ? split(/,/, $ENV{POINTS}) : @POINTS;
my $node = Pgrepart::Cluster->new(settings => { max_replication_slots => 20, max_wal_senders => 20 });
my (%results, $passed, $failed);
($passed, $failed) = (0, 0);
for my $n (1 .. $runs)
{
	for my $fault (@faults)
	{
		for my $point (@points)
		{
			my $r = trial($node, $fault, $point);
			push @{ $results{$fault}{$point} }, $r;
			printf "%-22s %-9s %s (first exit %s, %d runs)\n", $fault, $point,
			  $r->{ok} ? 'ok' : 'FAILED', $r->{first_exit}, $r->{runs};
			print map { "    $_\n" } split /\n/, $r->{why} if !$r->{ok};
			$r->{ok} ? $passed++ : $failed++;
		}
	}
}
print "\n", summary(\%results), "\n";
print "$passed passed, $failed failed\n";
exit($failed ? 1 : 0);
