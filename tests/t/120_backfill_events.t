# What the spooler notices during the chunked copy, as it happens: a
# TRUNCATE of the table starts the copy over (and the result is still
# equal); a column added to the table stops the run with a clear error.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use JSON::PP ();
use Pgrepart::Cluster;
use Pgrepart::Test;

my $dir = tempdir(CLEANUP => 1);
my @slow = ('--chunk-rows', '500', '--rate', '4000');

{
	my $node = Pgrepart::Cluster->new;
	$node->psql(fixture('chat_messages.sql'), vars => { rows => 20000 });
	my $run = pgrepart_background("$dir/truncate.log", 'run', '--cutover', 'manual', '-d', $node->connstr, '-t',
		'chat_messages', '-k', 'created_at', @slow, '--json');
	ok(wait_for($node, q{SELECT count(*) >= 5 FROM pgrepart.chunk}, 30, $run), 'the copy is under way');
	$node->psql(q{
		BEGIN;
		TRUNCATE chat_messages;
		INSERT INTO chat_messages (user_id, session_id, message_id, role, content, id, created_at, updated_at)
		SELECT (SELECT id FROM users ORDER BY id LIMIT 1), gen_random_uuid(), gen_random_uuid()::text,
		       'user', 'after the truncate ' || g, gen_random_uuid(), timestamp '2025-03-01' + g * interval '1 minute', now()
		FROM generate_series(1, 3000) g;
		COMMIT;
		UPDATE chat_messages SET content = content || ' (edited)' WHERE content LIKE '%7';
	});
	my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
	ok(wait_for($node, applied_up_to($lsn), 120, $run), 'the run catches up after the truncate')
	  or diag(slurp("$dir/truncate.log"));
	kill 'TERM', $run;
	is(wait_exit($run), 5, 'and stops cleanly');
	my $log = slurp("$dir/truncate.log");
	like($log, qr/was truncated during the copy: starting the copy again/, 'the copy started over');
	unlike($log, qr/error:/, 'no errors') or diag($log);
	my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
	is("$missing/$extra", '0/0', 'every row equal after the truncate');
	is($node->psql('SELECT count(*) FROM chat_messages_pgrepart'), 3000, 'only the rows after it');
	# --json: progress events, one JSON object a line, among the log lines.
	my @events = map { eval { JSON::PP::decode_json($_) } // () } grep { /^\{/ } split /\n/, $log;
	# The last one: the copy may have finished once before the TRUNCATE was seen.
	my ($copied) = reverse grep { $_->{event} eq 'copied' } @events;
	ok($copied, '--json: a "copied" event');
	is($copied->{rows}, 3000, '--json: with the rows copied');
	ok(defined $copied->{spool_transactions} && defined $copied->{mb_per_second}
		&& defined $copied->{chunk_rows}, '--json: spool, MB/s and chunk size');
	$node->stop;
}

{
	my $node = Pgrepart::Cluster->new;
	$node->psql(fixture('chat_messages.sql'), vars => { rows => 20000 });
	my $run = pgrepart_background("$dir/column.log", 'run', '--cutover', 'manual', '-d', $node->connstr, '-t',
		'chat_messages', '-k', 'created_at', @slow);
	ok(wait_for($node, q{SELECT count(*) >= 3 FROM pgrepart.chunk}, 30, $run), 'the copy is under way');
	$node->psql(q{
		ALTER TABLE chat_messages ADD COLUMN rating int;
		UPDATE chat_messages SET rating = 5 WHERE id = (SELECT id FROM chat_messages LIMIT 1);
	});
	my $rc = wait_exit($run);
	is($rc, 1, 'a column added during the copy stops the run (exit 1)');
	# 20,000 rows in chunks of 500 are 40 chunks: the run stopped before the last.
	my $chunks = $node->psql(q{SELECT count(*) FROM pgrepart.chunk});
	cmp_ok($chunks, '<', 40, "as it happens, not after the copy ($chunks of 40 chunks copied)");
	my $log = slurp("$dir/column.log");
	like($log, qr/error: table "public.chat_messages" changed during the migration: column "rating" was added/,
		'the error names the table and the column');
	like($log, qr/hint: .*Abort the migration/, 'and says what to do');
	$node->stop;
}

done_testing();
