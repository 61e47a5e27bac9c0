# Revert under kill -9, ledgered: the run following the reverse stream is
# killed during the window and started again, then killed again in the
# swap back, before its commit; "pgrepart revert", which asked for it, takes
# over the stream itself and swaps back.  The load writes the whole time;
# at the end the table matches the ledger exactly and nothing of pgrepart's
# is left.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Time::HiRes qw(sleep);
use Pgrepart::Bench;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(fixture('chat_messages.sql'), vars => { rows => 3000 });
$node->psql(q{CREATE TABLE ledger (id uuid PRIMARY KEY, h text NOT NULL);
	INSERT INTO ledger SELECT id, md5(content) FROM chat_messages});
my $conn = $node->connstr;
my @run = ('run', '-d', $conn, '-t', 'chat_messages', '-k', 'created_at', '--chunk-rows', '1000',
	'--revert-window', '1h');

my $load = pgbench_background($node, "$dir/load.log", 'ledger.pgbench', '-c', '2', '-R', '100', '-T', '600');
my $run = pgrepart_background("$dir/run1.log", @run);
ok(wait_for_text("$dir/run1.log", qr/reverse stream: applying the changes/, 180, $run), 'swapped, following')
  or diag(slurp("$dir/run1.log"));
sleep 2;
kill 'KILL', $run;
wait_exit($run);
sleep 2;
my ($rc, $out, $err) = pgrepart('status', '-d', $conn, '-t', 'chat_messages');
like($err, qr/reverse slot retains [\d.]+ MB of WAL and no run is following it/,
	'status warns of the reverse slot no run follows');

# Started again, the run goes on from the reverse origin's progress; this
# time it stops in the swap back, holding the lock, before the commit.
$run = do
{
	local $ENV{PGREPART_FAULT_PAUSE} = 'revert';
	local $ENV{PGREPART_FAULT_PAUSE_MS} = '60000';
	pgrepart_background("$dir/run2.log", @run);
};
ok(wait_for_text("$dir/run2.log", qr/reverse stream: applying the changes/, 60, $run), 'the run follows again')
  or diag(slurp("$dir/run2.log"));
sleep 2;
my $revert = pgrepart_background("$dir/revert.log", 'revert', '-d', $conn, '-t', 'chat_messages');
ok(wait_for_text("$dir/run2.log", qr/pausing at fault point revert/, 60, $run), 'the run is in the swap back')
  or diag(slurp("$dir/run2.log"));
kill 'KILL', $run;
wait_exit($run);
is(wait_exit($revert), 0, 'pgrepart revert took over and swapped back') or diag(slurp("$dir/revert.log"));
like(slurp("$dir/revert.log"), qr/reverted at/, 'this time in the command');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}), 'r',
	'chat_messages is the original again');

sleep 2;
kill 'TERM', $load;
wait_exit($load);
is(load_errors("$dir/load.log"), 0, 'the load saw no errors');
is(ledger_differences($node), 0, 'every acknowledged write is in the table, and nothing else');
is($node->psql(q{SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication)
	+ (SELECT count(*) FROM pg_replication_origin) + (SELECT count(*) FROM pgrepart.migration)}), 0,
	'no slot, publication, origin or migration is left');

done_testing();
