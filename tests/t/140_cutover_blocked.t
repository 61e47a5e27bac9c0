# A session holds a lock that conflicts with the cutover's: pgrepart gives
# up each attempt after the lock timeout instead of queueing (readers are
# never stalled by it), says who holds the lock, retries, and swaps once the
# blocker is gone.  Also: --rehearse takes the lock and swaps, rolls back,
# leaves the table as it was, and writes a report.
use strict;
use warnings;
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX ();
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(fixture('chat_messages.sql'), vars => { rows => 10000 });
my @run = ('run', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at');

# Rehearsal first: everything, then roll back.
my $r = pgrepart_background("$dir/rehearse.log", @run, '--rehearse', '--report', "$dir/report.json");
is(wait_exit($r), 0, '--rehearse exits 0') or diag(slurp("$dir/rehearse.log"));
like(slurp("$dir/rehearse.log"), qr/cutover rehearsed at \S+: the lock was held \d+ ms/,
	'the rehearsal took the lock and swapped');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}), 'r',
	'the rehearsal left the original table in place');
is($node->psql(q{SELECT to_regclass('chat_messages_old') IS NULL}), 't', 'and renamed nothing');
is($node->psql(q{SELECT (SELECT count(*) FROM pg_replication_slots) || ',' || (SELECT count(*) FROM pg_publication)
	|| ',' || (SELECT count(*) FROM pg_replication_origin) || ',' || (to_regclass('chat_messages_pgrepart') IS NULL)
	|| ',' || (to_regnamespace('pgrepart') IS NULL)}), '0,0,0,true,true',
	'and left nothing behind: no slot, publication, origin, shadow or state');
like(slurp("$dir/rehearse.log"), qr/removing what the run made/, 'the rehearsal says it removes what it made');
my $report = eval { decode_json(slurp("$dir/report.json")) } // {};
ok($report->{rehearsal}, 'the report says it was a rehearsal');
cmp_ok(scalar @{ $report->{lock_attempts} // [] }, '>=', 1, 'the report lists the lock attempts');
ok(defined $report->{phases}{copy} && defined $report->{rows_copied}, 'and the phases and rows');
ok(defined $report->{phases}{waiting}, 'the wait for a manual cutover is a phase of its own');
my $env = $report->{environment} // {};
like($env->{server_version} // '', qr/^\d+/, 'the report gives the server version');
is(join(',', map { defined $env->{settings}{$_} ? 1 : 0 } qw(synchronous_commit wal_writer_delay max_wal_size
	shared_buffers maintenance_work_mem max_parallel_maintenance_workers)), '1,1,1,1,1,1',
	'and the settings that change the outcome');
cmp_ok($env->{wal_generated_bytes} // 0, '>', 0, 'and the WAL generated');
cmp_ok($env->{table_bytes} // 0, '>', 0, "and the table's size");
like(slurp("$dir/rehearse.log"), qr/^rehearsal of "public.chat_messages":/m, 'a human summary too');

# The real run, with a blocker when it tries.
my $run = pgrepart_background("$dir/run.log", @run, '--cutover', 'manual', '--lock-timeout', '100');
ok(wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 60, $run), 'in sync')
  or diag(slurp("$dir/run.log"));
my $blocker = hold_lock($node, 'chat_messages', 'ROW EXCLUSIVE', 8);
select undef, undef, undef, 0.5;
$node->psql(q{UPDATE pgrepart.migration SET cutover_requested_at = now()});
# Readers meanwhile: none may queue behind the cutover's lock attempts,
# which would keep them waiting as long as the blocker (8 s).  Each reader
# gives up after waiting 3 s for a lock; what it waits for legitimately (an
# attempt's 100 ms and the swap's hold) is far less, on any machine.
my ($reads, $refused) = (0, 0);
while (waitpid($run, POSIX::WNOHANG()) == 0)
{
	my ($rc, undef, $err) = $node->psql(q{SET lock_timeout = '3s';
		SELECT count(*) FROM chat_messages WHERE created_at > now() - interval '1 day'}, allow_fail => 1);
	$reads++;
	if ($rc != 0)
	{
		$refused++;
		diag($err);
	}
	select undef, undef, undef, 0.05;
}
my $rc = $? >> 8;
waitpid $blocker, 0;
is($rc, 0, 'the run cut over once the blocker was gone') or diag(slurp("$dir/run.log"));
my $log = slurp("$dir/run.log");
like($log, qr/could not lock "public.chat_messages" within 100 ms/, 'it gave up attempts instead of queueing');
like($log, qr/held by pid \d+ \(RowExclusiveLock/, 'and said who held the lock');
like($log, qr/cutover done at \S+: the lock was held \d+ ms \(attempt ([2-9]|\d\d+)\)/, 'a later attempt succeeded');
is($refused, 0, "readers never queued behind an attempt ($reads reads)");
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}), 'p',
	'the swap happened');

done_testing();
