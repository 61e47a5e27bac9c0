# pgrepart run under a live mixed load: the shadow is copied under the
# slot's exported snapshot, then the stream is applied while pgbench
# inserts, updates (TOASTed content unchanged and changed, the key, the
# partition column), deletes, re-inserts and rolls back; a transaction big
# enough to spill to disk follows.  At a known WAL position every row of the
# source and the shadow must be equal.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use JSON::PP ();
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new(settings => { logical_decoding_work_mem => "'64kB'" });
$node->psql(fixture('chat_messages.sql'), vars => { rows => 20000 });
# Rows whose content is stored out of line, so updates leave it 'unchanged'.
$node->psql(q{
	INSERT INTO chat_messages (user_id, session_id, message_id, role, content, id, created_at, updated_at)
	SELECT (SELECT id FROM users ORDER BY id LIMIT 1), gen_random_uuid(), gen_random_uuid()::text,
	       'assistant', (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 400) i),
	       gen_random_uuid(), timestamp '2025-06-01' + g * interval '1 hour', now()
	FROM generate_series(1, 300) g});
ok($node->psql(q{SELECT count(*) FROM chat_messages WHERE pg_column_size(content) > 4000}) > 250,
	'rows with out-of-line content exist');

my $dir = tempdir(CLEANUP => 1);
my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '4', '-j', '2', '-T', '12');
my $run = pgrepart_background("$dir/run.log", 'run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'chat_messages',
	'-k', 'created_at', '--batch-transactions', '50');
is(wait_exit($load), 0, 'pgbench ran the mixed load without failures')
  or diag(slurp("$dir/pgbench.log"));
like(slurp("$dir/pgbench.log"), qr/number of failed transactions: 0/, 'no failed transactions');

# A transaction large enough to spill to disk in the decoder, and one that
# touches many rows in one go.
$node->psql(q{
	BEGIN;
	INSERT INTO chat_messages (user_id, session_id, message_id, role, content, id, created_at, updated_at)
	SELECT (SELECT id FROM users ORDER BY id LIMIT 1), gen_random_uuid(), gen_random_uuid()::text,
	       'system', repeat('spill ', 50), gen_random_uuid(), now(), now()
	FROM generate_series(1, 5000);
	UPDATE chat_messages SET parse_degraded = NOT coalesce(parse_degraded, false) WHERE role = 'system';
	DELETE FROM chat_messages WHERE tokens_used BETWEEN 100 AND 140;
	COMMIT;
});

my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn), 180, $run), "the apply reached $lsn")
  or diag(slurp("$dir/run.log") . $node->psql(q{SELECT * FROM pg_replication_slots})
	. "\n" . $node->psql(q{SELECT pid, state, wait_event_type, wait_event, backend_type, left(query, 80)
		FROM pg_stat_activity WHERE pid <> pg_backend_pid()}));
kill 'TERM', $run;
is(wait_exit($run), 5, 'SIGTERM stops the run cleanly (exit 5)');
my $log = slurp("$dir/run.log");
like($log, qr/stopped; run the same command again to resume/, 'and it says how to resume');
unlike($log, qr/error:/, 'no errors') or diag($log);

# status, for people and for machines.
my ($src, $sout, $serr) = pgrepart('status', '-d', $node->connstr);
is($src, 0, 'status exits 0') or diag($serr);
like($sout, qr/migration 1: public\.chat_messages -> public\.chat_messages_pgrepart\n  phase\s+synced/,
	'status shows the migration and its phase');
like($sout, qr/slot\s+pgrepart_\d+_1, idle: no run is consuming it, retains [\d.]+ MB of WAL/,
	'status says the stopped run leaves the slot idle, and what it retains');
($src, $sout) = pgrepart('status', '-d', $node->connstr, '-t', 'chat_messages', '--json');
my $st = JSON::PP::decode_json($sout);
is($st->{migrations}[0]{phase}, 'synced', 'status --json gives the phase');
ok($st->{migrations}[0]{slot_exists} && defined $st->{migrations}[0]{applied_lsn},
	'and the slot and the applied position');
($src) = pgrepart('status', '-d', $node->connstr, '-t', 'other_table');
is($src, 6, 'status of a table with no migration exits 6');

my $rows = $node->psql('SELECT count(*) FROM chat_messages');
is($node->psql('SELECT count(*) FROM chat_messages_pgrepart'), $rows, "same row count ($rows)");
my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
is($missing, 0, 'no source row is missing from the shadow');
is($extra, 0, 'the shadow holds no other row');
ok($node->psql(q{SELECT count(*) FROM chat_messages_pgrepart WHERE content LIKE '%(edited)'}) > 0,
	'the load edited rows, and the edits arrived');

# The origin advanced with the rows: its progress is durable and where the stream restarts.
my ($applied) = $log =~ /applied (\d+) changes/;
ok($applied > 1000, "the stream applied $applied changes");

# Resume: the same command continues from the origin's progress.
$node->psql(q{UPDATE chat_messages SET model_name = 'resumed' WHERE tokens_used < 10});
$lsn = $node->psql('SELECT pg_current_wal_lsn()');
$run = pgrepart_background("$dir/run2.log", 'run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'chat_messages',
	'-k', 'created_at');
ok(wait_for($node, applied_up_to($lsn), 60, $run), 'a second run resumes and catches up')
  or diag(slurp("$dir/run2.log"));
kill 'TERM', $run;
is(wait_exit($run), 5, 'and stops cleanly');
like(slurp("$dir/run2.log"), qr/resuming the migration of "public.chat_messages" from phase synced/,
	'it resumed from the streaming phase');
unlike(slurp("$dir/run2.log"), qr/NOTICE/, 'without the server\'s notices about its state tables');
($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
is("$missing/$extra", '0/0', 'still equal after the resumed run');

done_testing();
