# A row moved to a new key during the copy, out of a chunk copied after the
# move into one copied before it, is inserted anew with its unchanged
# TOASTed values read from the source.  When the source no longer has the
# row by then, its key is a ghost until a later change deletes the row or
# moves it on: the updates in between are skipped, and the run neither stops
# nor leaves a row behind.  The ghost is recorded with the apply's progress,
# so a run killed while one is open resumes with it.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $dir = tempdir(CLEANUP => 1);
my $node = Pgrepart::Cluster->new;
$node->psql(fixture('chat_messages.sql'), vars => { rows => 20000 });
# Four rows with out-of-line content, at the top of the key order: the copy
# reaches them last.
$node->psql(q{
	INSERT INTO chat_messages (user_id, session_id, message_id, role, content, id, created_at, updated_at)
	SELECT (SELECT id FROM users ORDER BY id LIMIT 1), gen_random_uuid(), gen_random_uuid()::text,
	       'assistant', (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 400) i),
	       ('ffffffff-0000-0000-0000-00000000000' || g)::uuid, timestamp '2025-06-01', now()
	FROM generate_series(1, 4) g});
ok($node->psql(q{SELECT count(*) FROM chat_messages WHERE id >= 'ffffffff-0000-0000-0000-000000000000'
	AND pg_column_size(content) > 4000}) == 4, 'four rows with out-of-line content');

my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at',
	'--batch-transactions', '1');
{
	local $ENV{PGREPART_FAULT_PAUSE} = 'ghost';
	local $ENV{PGREPART_FAULT_PAUSE_MS} = '60000';
	my $pid = pgrepart_background("$dir/first.log", @run, '--chunk-rows', '500', '--rate', '4000');
	ok(wait_for($node, q{SELECT count(*) >= 5 FROM pgrepart.chunk}, 30, $pid), 'the copy is under way');

	# Each row moves to a key the copy has passed (00000000-...), where the
	# chunk holding it did not see the move; then, still during the copy:
	$node->psql(q{
		-- a: updated, then deleted.
		UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000a1'
		WHERE id = 'ffffffff-0000-0000-0000-000000000001';
		UPDATE chat_messages SET tokens_used = 1 WHERE id = '00000000-0000-0000-0000-0000000000a1';
		DELETE FROM chat_messages WHERE id = '00000000-0000-0000-0000-0000000000a1';
		-- b: updated, then moved on to another passed key, where it stays.
		UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000b1'
		WHERE id = 'ffffffff-0000-0000-0000-000000000002';
		UPDATE chat_messages SET tokens_used = 2 WHERE id = '00000000-0000-0000-0000-0000000000b1';
		UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000b2'
		WHERE id = '00000000-0000-0000-0000-0000000000b1';
		-- c: moved on to another passed key, then deleted there.
		UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000c1'
		WHERE id = 'ffffffff-0000-0000-0000-000000000003';
		UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000c2'
		WHERE id = '00000000-0000-0000-0000-0000000000c1';
		DELETE FROM chat_messages WHERE id = '00000000-0000-0000-0000-0000000000c2';
		-- d: moved on to a key the copy has yet to reach, which copies it.
		UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000d1'
		WHERE id = 'ffffffff-0000-0000-0000-000000000004';
		UPDATE chat_messages SET id = 'fffffffe-0000-0000-0000-0000000000d2'
		WHERE id = '00000000-0000-0000-0000-0000000000d1';
	});

	# The first ghost is committed with the apply's progress; kill the run there.
	ok(wait_for_text("$dir/first.log", qr/pausing at fault point ghost/, 120, $pid),
		'the apply met a row gone from the source') or diag(slurp("$dir/first.log"));
	is($node->psql('SELECT count(*) FROM pgrepart.ghost'), 1, 'its key is recorded');
	kill 'KILL', $pid;
	wait_exit($pid);
}
my ($first_xid) = slurp("$dir/first.log") =~ /a row that transaction (\d+) moved to a new key is gone/;
ok($first_xid, 'the log names the transaction that moved it');

my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
my $pid = pgrepart_background("$dir/second.log", @run);
ok(wait_for($node, applied_up_to($lsn), 120, $pid), 'a second run catches up')
  or diag(slurp("$dir/second.log"));
kill 'TERM', $pid;
is(wait_exit($pid), 5, 'and stops cleanly');
my $log = slurp("$dir/second.log");
unlike($log, qr/error:/, 'no errors') or diag($log);
unlike($log, qr/transaction $first_xid moved/, 'the second run went on from the recorded ghost');
like($log, qr/gone from the source again/, 'and met the others');
is($node->psql('SELECT count(*) FROM pgrepart.ghost'), 0, 'every ghost ended');

my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
is("$missing/$extra", '0/0', 'every row equal');
is($node->psql(q{SELECT string_agg(id::text, ' ' ORDER BY id) FROM chat_messages_pgrepart
	WHERE id::text LIKE '00000000-%' OR id::text LIKE 'ffffff%'}),
	'00000000-0000-0000-0000-0000000000b2 fffffffe-0000-0000-0000-0000000000d2',
	'the moved rows that stay are there, under their last keys');

done_testing();
