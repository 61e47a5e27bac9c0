# Timeouts a DBA set for the database apply to every session pgrepart opens,
# its replication connections included, and so does a default isolation
# level.  With statement, lock and idle-in-transaction timeouts far below
# what a run's steps take, transactions serializable by default, and the
# run held 400 ms between exporting the live verification's snapshot and
# importing it (longer than the idle timeout), the run still finishes in
# one go: the table is partitioned and verified equal.
use strict;
use warnings;
use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(fixture('chat_messages.sql'), vars => { rows => 3000 });
$node->psql(q{ALTER DATABASE postgres SET statement_timeout = '50ms';
	ALTER DATABASE postgres SET lock_timeout = '20ms';
	ALTER DATABASE postgres SET idle_in_transaction_session_timeout = '100ms';
	ALTER DATABASE postgres SET default_transaction_isolation = 'serializable'});

my $run = do
{
	local $ENV{PGREPART_FAULT_PAUSE} = 'verify';
	local $ENV{PGREPART_FAULT_PAUSE_MS} = '400';
	pgrepart_background("$dir/run.log", 'run', '-d', $node->connstr, '-t', 'chat_messages', '-k',
		'created_at', '--chunk-rows', '1000', '--report', "$dir/report.json");
};
is(wait_exit($run), 0, 'the run finished in one go under the database\'s timeouts')
  or diag(slurp("$dir/run.log"));
# The checks below are no pgrepart session: they run without the timeouts,
# which a busy machine could make a catalog read outlast.
$node->psql(q{SET statement_timeout = 0; ALTER DATABASE postgres RESET ALL});
my $log = slurp("$dir/run.log");
like($log, qr/pausing at fault point verify/, 'the snapshot was imported after the idle timeout');
unlike($log, qr/invalid snapshot identifier/, 'the exported snapshot outlived the idle timeout');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}), 'p',
	'chat_messages is partitioned');
my $report = decode_json(slurp("$dir/report.json"));
is($report->{verification}, 'equal', 'the run verified the shadow equal before the swap');

done_testing();
