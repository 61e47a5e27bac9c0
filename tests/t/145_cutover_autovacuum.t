# An autovacuum of the table holds a lock the cutover needs, and a slow one
# (a large table, or a throttled vacuum) outlasts every attempt.  The server
# cancels an autovacuum only for a lock that has waited deadlock_timeout
# behind it, which the cutover's short attempts never do; pgrepart cancels
# it itself, says so, and swaps.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

# Autovacuum that wakes every second and then crawls: a sleep after every page.
my $node = Pgrepart::Cluster->new(settings => { autovacuum_naptime => '1s',
	autovacuum_vacuum_cost_delay => '100ms', autovacuum_vacuum_cost_limit => 1 });
my $dir = tempdir(CLEANUP => 1);
$node->psql(fixture('chat_messages.sql'), vars => { rows => 10000 });

my $run = pgrepart_background("$dir/run.log", 'run', '-d', $node->connstr, '-t', 'chat_messages',
	'-k', 'created_at', '--cutover', 'manual', '--lock-timeout', '100', '--cutover-retries', '10');
ok(wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 120, $run), 'in sync')
  or diag(slurp("$dir/run.log"));

# Dead rows enough for an autovacuum of the table, and wait until one runs.
$node->psql(q{UPDATE chat_messages SET tokens_used = coalesce(tokens_used, 0) + 1 WHERE random() < 0.5});
ok(wait_for($node, q{SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'
	AND query LIKE 'autovacuum: VACUUM%chat_messages%'}, 120, $run), 'an autovacuum of the table runs')
  or diag(slurp("$dir/run.log"));

$node->psql(q{UPDATE pgrepart.migration SET cutover_requested_at = now()});
is(wait_exit($run), 0, 'the run cut over') or diag(slurp("$dir/run.log"));
my $log = slurp("$dir/run.log");
like($log, qr/held by pid \d+ \(ShareUpdateExclusiveLock[^\n]*autovacuum: VACUUM/,
	'it said the autovacuum held the lock');
like($log, qr/cancelled the autovacuum in pid \d+/, 'and cancelled it');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}), 'p',
	'the swap happened');
my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_old');
is("$missing/$extra", '0/0', 'and the new table holds every row of the old');

done_testing();
