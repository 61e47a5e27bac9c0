# The short fault-injection run inside make check: each fault once, each at
# a different phase, so every fault and every phase is hit (make
# check-faults runs every pair).  After each, running the same command again
# must finish the migration with the ledger intact and nothing left behind.
use strict;
use warnings;
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Faults qw(@FAULTS @POINTS trial summary);

my $node = Pgrepart::Cluster->new(settings => { max_replication_slots => 20, max_wal_senders => 20 });
my %results;
for my $i (0 .. $#FAULTS)
{
	my ($fault, $point) = ($FAULTS[$i], $POINTS[$i % @POINTS]);
	my $r = trial($node, $fault, $point);
	push @{ $results{$fault}{$point} }, $r;
	ok($r->{ok}, "$fault at $point: finished after $r->{runs} run(s), first exit $r->{first_exit}")
	  or diag($r->{why});
}
diag("\n" . summary(\%results));

done_testing();
