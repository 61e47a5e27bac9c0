# The copy gives way to a physical standby.  A streaming standby made with
# pg_basebackup has its replay paused (pg_wal_replay_pause): the copy stops
# within a chunk, holds no transaction open while it waits, and status and
# the report say why; replay resumes and the copy goes on.  Then the standby
# goes away: the copy waits for it (a standby gone is a finding, not a
# pass) until pgrepart resume accepts the standbys connected now.  Under a
# mixed load throughout, the migration reaches sync with every row equal.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
$node->psql(fixture('chat_messages.sql'), vars => { rows => 60000 });
my $standby = Pgrepart::Cluster->new(basebackup_of => $node, standby => 1);
ok(wait_for($node, q{SELECT count(*) = 1 FROM pg_stat_replication
	WHERE application_name = 'standby' AND state = 'streaming'}, 60), 'the standby streams');

my $dir = tempdir(CLEANUP => 1);
my @table = ('-d', $node->connstr, '-t', 'chat_messages');
my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '2', '-R', '100', '-T', '40');

# 60,000 rows at 3,000 a second: twenty seconds of copying, in chunks of 600.
$standby->psql('SELECT pg_wal_replay_pause()');
my $run = pgrepart_background("$dir/run.log", 'run', @table, '-k', 'created_at', '--cutover', 'manual',
	'--max-replica-lag', '2s', '--rate', '3000', '--chunk-rows', '600', '--report', "$dir/report.json");
ok(wait_for($node, q{SELECT throttle_reason LIKE 'replica lag: standby standby (127.0.0.1) is %behind (% to replay at its pace)'
	FROM pgrepart.migration}, 60, $run), 'the copy is throttled by the paused standby')
  or diag(slurp("$dir/run.log"));
my $chunks = $node->psql('SELECT count(*) FROM pgrepart.chunk');
is(open_transactions($node, 10), 0, 'while throttled, no pgrepart session keeps a transaction open');
cmp_ok($node->psql('SELECT count(*) FROM pgrepart.chunk'), '<=', $chunks + 1,
	"the copy stopped within a chunk (chunk $chunks)");
my ($rc, $status) = pgrepart('status', @table);
like($status, qr/throttled\s+replica lag: standby standby \(127\.0\.0\.1\) is [\d.]+ s, [\d.]+ MB behind/,
	'status says which standby holds the copy back') or diag($status);
($rc, $status) = pgrepart('status', @table, '--json');
like($status, qr/"throttled":true,"throttled_by":"replica lag: standby/, 'and so does its JSON');

$standby->psql('SELECT pg_wal_replay_resume()');
ok(wait_for($node, qq{SELECT count(*) > $chunks + 1 FROM pgrepart.chunk}, 60, $run),
	'replay resumed: the copy goes on') or diag(slurp("$dir/run.log"));

# A standby gone holds the copy until it is back or the operator accepts it.
$standby->halt;
ok(wait_for($node, q{SELECT throttle_reason = 'replica lag: standby standby (127.0.0.1) disconnected'
	FROM pgrepart.migration}, 60, $run), 'the standby gone throttles the copy')
  or diag(slurp("$dir/run.log"));
$chunks = $node->psql('SELECT count(*) FROM pgrepart.chunk');
($rc) = pgrepart('resume', @table);
is($rc, 0, 'pgrepart resume accepts the standbys connected now');
ok(wait_for($node, q{SELECT phase IN ('streaming', 'synced') FROM pgrepart.migration}, 120, $run),
	'and the migration goes on to stream') or diag(slurp("$dir/run.log"));

is(wait_exit($load), 0, 'the load ran without failures') or diag(slurp("$dir/pgbench.log"));
my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn), 120, $run), "the apply reached $lsn") or diag(slurp("$dir/run.log"));
kill 'TERM', $run;
is(wait_exit($run), 5, 'the run stops cleanly');
my $log = slurp("$dir/run.log");
unlike($log, qr/error:/, 'no errors');
like($log, qr/throttled: replica lag/, 'the log says when the copy was throttled');
my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
is("$missing/$extra", '0/0', 'every row equal');
my ($lagged) = slurp("$dir/report.json") =~ /"replica_lag":([\d.]+)/;
cmp_ok($lagged // 0, '>', 0, "the report counts the time throttled by replica lag (${\ ($lagged // 0)} s)");

done_testing();
