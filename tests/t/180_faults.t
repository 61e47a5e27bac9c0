# The short fault-injection run inside make check: seven trials at the
# riskiest moments (make check-faults runs every fault at every phase).
# After each, running the same command again must finish the migration
# with the ledger intact and nothing left behind.  In the swap back of a
# revert, the sessions terminated include the waiting `pgrepart revert`'s,
# which must connect again and report the revert the run completes.  The check
# before the swap, cut off by a terminated replication connection, could
# not compare: that is no difference (exit 3), and the run compares again.
use strict;
use warnings;
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Faults qw(trial summary);

my $node = Pgrepart::Cluster->new(settings => { max_replication_slots => 20, max_wal_senders => 20 });
my %results;
for my $pair ([ 'kill9', 'rename' ], [ 'restart_immediate', 'copy' ], [ 'kill9', 'reconcile' ],
	[ 'terminate_source', 'lock' ],
	[ 'sigint', 'catchup' ], [ 'terminate_replication', 'verify' ], [ 'terminate_source', 'revert' ])
{
	my ($fault, $point) = @$pair;
	my $r = trial($node, $fault, $point);
	push @{ $results{$fault}{$point} }, $r;
	ok($r->{ok}, "$fault at $point: finished after $r->{runs} run(s), first exit $r->{first_exit}")
	  or diag($r->{why});
	isnt($r->{first_exit}, 3, "$fault at $point: not reported as a difference") if $point eq 'verify';
}
diag("\n" . summary(\%results));

done_testing();
