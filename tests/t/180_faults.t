# The short fault-injection run inside make check: four faults at four
# phases, the riskiest moments (make check-faults runs every fault at every
# phase).  After each, running the same command again must finish the
# migration with the ledger intact and nothing left behind.
use strict;
use warnings;
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Faults qw(trial summary);

my $node = Pgrepart::Cluster->new(settings => { max_replication_slots => 20, max_wal_senders => 20 });
my %results;
for my $pair ([ 'kill9', 'rename' ], [ 'restart_immediate', 'copy' ], [ 'terminate_source', 'lock' ],
	[ 'sigint', 'catchup' ])
{
	my ($fault, $point) = @$pair;
	my $r = trial($node, $fault, $point);
	push @{ $results{$fault}{$point} }, $r;
	ok($r->{ok}, "$fault at $point: finished after $r->{runs} run(s), first exit $r->{first_exit}")
	  or diag($r->{why});
}
diag("\n" . summary(\%results));

done_testing();
