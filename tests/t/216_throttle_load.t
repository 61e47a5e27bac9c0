# The copy gives way to the source's load, to the operator's own test and
# to the operator, under a mixed load: more active sessions than --max-load
# hold it, --throttle-query returning true holds it, pgrepart pause holds
# it (each time within a chunk, with no transaction left open), and each
# time it goes on; more active sessions than --critical-load stop the run
# (exit 5), which resumes.  While streaming, pgrepart pause stops the
# apply: the origin's progress stands still under the load, and after
# pgrepart resume the shadow catches up with every row equal.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
$node->psql(fixture('chat_messages.sql'), vars => { rows => 60000 });
my $dir = tempdir(CLEANUP => 1);
my @table = ('-d', $node->connstr, '-t', 'chat_messages');
# 60,000 rows at 3,000 a second in chunks of 600: twenty seconds of copying.
my @run = ('run', @table, '-k', 'created_at', '--cutover', 'manual', '--rate', '3000',
	'--chunk-rows', '600', '--max-load', '3', '--critical-load', '8',
	'--throttle-query', q{SELECT EXISTS (SELECT FROM pg_class WHERE relname = 'hold_copy')});
my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '2', '-R', '100', '-T', '60');
my $run = pgrepart_background("$dir/run.log", @run);

# n sessions that stay active; sleepers_end() ends them.
my @sleepers;
sub sleepers
{
	my ($n) = @_;
	push @sleepers, client_background("$dir/sleep.log", 'psql', '-X', '-c', 'SELECT pg_sleep(120)',
		$node->connstr) for 1 .. $n;
	ok(wait_for($node, qq{SELECT count(*) >= $n FROM pg_stat_activity
		WHERE query = 'SELECT pg_sleep(120)' AND state = 'active'}, 30), "$n sessions are active");
}
sub sleepers_end
{
	$node->psql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE query = 'SELECT pg_sleep(120)' AND pid <> pg_backend_pid()});
	wait_exit($_) for @sleepers;
	@sleepers = ();
}

# Held: the reason recorded, no transaction open, the copy stopped within a chunk.
sub held
{
	my ($reason, $what) = @_;
	ok(wait_for($node, qq{SELECT throttle_reason LIKE '$reason' FROM pgrepart.migration}, 60, $run),
		"$what holds the copy") or diag(slurp("$dir/run.log"));
	my $chunks = $node->psql('SELECT count(*) FROM pgrepart.chunk');
	is(open_transactions($node, 8), 0, "$what: no pgrepart transaction stays open");
	my $now = $node->psql('SELECT count(*) FROM pgrepart.chunk');
	cmp_ok($now, '<=', $chunks + 1, "$what: the copy stopped within a chunk");
	return $now;
}
sub goes_on
{
	my ($chunks, $what) = @_;
	ok(wait_for($node, qq{SELECT count(*) > $chunks + 1 AND bool_and(m.throttle_reason IS NULL)
		FROM pgrepart.chunk, pgrepart.migration m}, 60, $run), "$what: the copy goes on")
	  or diag(slurp("$dir/run.log"));
}

ok(wait_for($node, q{SELECT count(*) >= 3 FROM pgrepart.chunk}, 60, $run), 'the copy started')
  or diag(slurp("$dir/run.log"));

sleepers(5);
my $chunks = held('load: % active sessions, more than 3', 'more active sessions than --max-load');
sleepers_end();
goes_on($chunks, 'the load gone');

$node->psql('CREATE TABLE hold_copy ()');
$chunks = held('throttle query returned true', 'the throttle query');
$node->psql('DROP TABLE hold_copy');
goes_on($chunks, 'the query false');

my ($rc, $out) = pgrepart('pause', @table);
is($rc, 0, 'pgrepart pause');
$chunks = held('paused%', 'a pause');
($rc, $out) = pgrepart('status', @table);
like($out, qr/paused\s+since .* \(pgrepart resume goes on\)/, 'status shows the pause');
($rc) = pgrepart('resume', @table);
is($rc, 0, 'pgrepart resume');
goes_on($chunks, 'resumed');

sleepers(9);
is(wait_exit($run), 5, 'more active sessions than --critical-load stop the run (exit 5)');
sleepers_end();
like(slurp("$dir/run.log"), qr/critical load: \d+ active sessions, more than --critical-load 8/,
	'and it says why');
$run = pgrepart_background("$dir/second.log", @run);
ok(wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 120, $run),
	'the next run resumes and reaches sync') or diag(slurp("$dir/second.log"));
like(slurp("$dir/run.log") . slurp("$dir/second.log"),
	qr/a load limit is in force: the index builds leave the server's parallel workers to the application/,
	'under a load limit the index builds use no parallel workers');

# A pause while streaming: nothing is applied while the load goes on.
($rc) = pgrepart('pause', @table);
ok(wait_for_text("$dir/second.log", qr/paused \(pgrepart resume goes on\): not applying/, 30),
	'the apply pauses') or diag(slurp("$dir/second.log"));
my $progress = q{SELECT pg_replication_origin_progress(origin_name, false) FROM pgrepart.migration};
my $before = $node->psql($progress);
select undef, undef, undef, 2;
is($node->psql($progress), $before, 'the origin stands still while paused');
($rc) = pgrepart('resume', @table);

is(wait_exit($load), 0, 'the load ran without failures') or diag(slurp("$dir/pgbench.log"));
my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn), 120, $run), "resumed, the apply reached $lsn")
  or diag(slurp("$dir/second.log"));
kill 'TERM', $run;
is(wait_exit($run), 5, 'the run stops cleanly');
unlike(slurp("$dir/second.log"), qr/error:/, 'the second run reported no error');
my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
is("$missing/$extra", '0/0', 'every row equal');

done_testing();
