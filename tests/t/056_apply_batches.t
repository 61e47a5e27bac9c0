# Batches and folding: updates and deletes go to the shadow many at a time,
# and a change of a row whose earlier change is still pending is merged into
# it when no unique index can tell.  A backlog built while pgrepart is
# stopped arrives as one burst, so the changes below share batches: one row
# updated again and again (its TOASTed content mostly unchanged), two rows
# swapping a unique value through a third, updates followed by deletes, key
# and partition-column changes followed by more changes (updated rows
# changing key over and over, swapping keys, taking a deleted row's key,
# moving partitions), inserts updated
# and deleted before they reach the shadow (their key, partition column and
# unique values changing too), a row moving partitions and giving up a
# unique value another row takes, delete and re-insert, a rollback, and
# plenty of single-row changes around them.  Once with the
# default replica identity (the old partition value unknown) and once with
# REPLICA IDENTITY FULL (known); every row must end equal, and the run
# reports the same changes applied either way (a batch that went back to
# source order is not counted twice).
use strict;
use warnings;
use File::Temp qw(tempdir);
use JSON::PP qw(decode_json);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $burst = <<'SQL';
SELECT id AS hot FROM chat_messages WHERE length(content) > 3000 ORDER BY id LIMIT 1 \gset
SELECT id AS a, message_id AS am FROM chat_messages ORDER BY id OFFSET 10 LIMIT 1 \gset
SELECT id AS b, message_id AS bm FROM chat_messages ORDER BY id OFFSET 11 LIMIT 1 \gset
SELECT id AS c FROM chat_messages ORDER BY id OFFSET 12 LIMIT 1 \gset
SELECT id AS d FROM chat_messages ORDER BY id OFFSET 13 LIMIT 1 \gset
SELECT id AS e FROM chat_messages ORDER BY id OFFSET 14 LIMIT 1 \gset
SELECT id AS h FROM chat_messages ORDER BY id OFFSET 15 LIMIT 1 \gset
-- One row, again and again.
UPDATE chat_messages SET tokens_used = 1 WHERE id = :'hot';
UPDATE chat_messages SET tokens_used = 2, updated_at = updated_at + interval '1 s' WHERE id = :'hot';
UPDATE chat_messages SET content = content || ' edited' WHERE id = :'hot';
UPDATE chat_messages SET tokens_used = NULL WHERE id = :'hot';
UPDATE chat_messages SET tokens_used = 4 WHERE id = :'hot';
-- Long contents stored compressed: one left alone by its update, one
-- changed by a single character in the middle (the same length, so only the
-- bytes tell), one changed and changed back.
SELECT id AS big1 FROM chat_messages WHERE length(content) > 3000 ORDER BY id OFFSET 1 LIMIT 1 \gset
SELECT id AS big2 FROM chat_messages WHERE length(content) > 3000 ORDER BY id OFFSET 2 LIMIT 1 \gset
SELECT id AS big3 FROM chat_messages WHERE length(content) > 3000 ORDER BY id OFFSET 3 LIMIT 1 \gset
UPDATE chat_messages SET tokens_used = 21 WHERE id = :'big1';
UPDATE chat_messages SET content = overlay(content placing 'Z' from 1000 for 1) WHERE id = :'big2';
UPDATE chat_messages SET content = content || '!' WHERE id = :'big3';
UPDATE chat_messages SET content = left(content, -1), tokens_used = 22 WHERE id = :'big3';
-- a and b share a created_at, so (message_id, created_at) is the same for
-- both once a takes b's message_id: folding a's last change into its first
-- would take the value before b gives it up.
UPDATE chat_messages SET message_id = 'swap-tmp' WHERE id = :'a';
UPDATE chat_messages SET message_id = :'am' WHERE id = :'b';
UPDATE chat_messages SET message_id = :'bm' WHERE id = :'a';
UPDATE chat_messages SET tokens_used = 7 WHERE id = :'a';
-- a moves to another partition and gives up its message_id, which b takes:
-- under the default replica identity the shadow finds a's row only by a
-- second look, and b must still not take the value before a frees it.
UPDATE chat_messages SET created_at = created_at - interval '500 days', message_id = 'moved-away'
WHERE id = :'a';
UPDATE chat_messages SET message_id = :'bm' WHERE id = :'b';
-- Updated, then deleted.
UPDATE chat_messages SET tokens_used = 9 WHERE id = :'c';
DELETE FROM chat_messages WHERE id = :'c';
-- The key changes, then the row under its new key changes and goes.
UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000d1' WHERE id = :'d';
UPDATE chat_messages SET tokens_used = 11 WHERE id = '00000000-0000-0000-0000-0000000000d1';
DELETE FROM chat_messages WHERE id = '00000000-0000-0000-0000-0000000000d1';
-- The row moves partitions, then changes again.
UPDATE chat_messages SET created_at = created_at - interval '300 days' WHERE id = :'e';
UPDATE chat_messages SET tokens_used = 12 WHERE id = :'e';
UPDATE chat_messages SET tokens_used = 13 WHERE id = :'e';
-- Updated, then its key changes twice and its partition column once: one
-- update takes the row from its first key to its last.
SELECT id AS m1 FROM chat_messages ORDER BY id OFFSET 18 LIMIT 1 \gset
SELECT id AS m2 FROM chat_messages ORDER BY id OFFSET 19 LIMIT 1 \gset
SELECT id AS m3 FROM chat_messages ORDER BY id OFFSET 20 LIMIT 1 \gset
SELECT id AS m4 FROM chat_messages ORDER BY id OFFSET 21 LIMIT 1 \gset
SELECT id AS m5 FROM chat_messages ORDER BY id OFFSET 22 LIMIT 1 \gset
UPDATE chat_messages SET tokens_used = 31 WHERE id = :'m1';
UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000e1' WHERE id = :'m1';
UPDATE chat_messages SET created_at = created_at - interval '450 days'
WHERE id = '00000000-0000-0000-0000-0000000000e1';
UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000e2', tokens_used = 32
WHERE id = '00000000-0000-0000-0000-0000000000e1';
-- Two updated rows swap their keys through a third value; an updated row
-- takes the key of a row deleted just before; an updated row's key changes
-- and changes back.
UPDATE chat_messages SET tokens_used = 33 WHERE id = :'m2';
UPDATE chat_messages SET tokens_used = 34 WHERE id = :'m3';
UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000e3' WHERE id = :'m2';
UPDATE chat_messages SET id = :'m2' WHERE id = :'m3';
UPDATE chat_messages SET id = :'m3' WHERE id = '00000000-0000-0000-0000-0000000000e3';
UPDATE chat_messages SET tokens_used = 35 WHERE id = :'m4';
DELETE FROM chat_messages WHERE id = :'m5';
UPDATE chat_messages SET id = :'m5' WHERE id = :'m4';
UPDATE chat_messages SET tokens_used = 36 WHERE id = :'m5';
UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000e4' WHERE id = :'m5';
UPDATE chat_messages SET id = :'m5', tokens_used = 37 WHERE id = '00000000-0000-0000-0000-0000000000e4';
-- Inserted, then changed or deleted before it reaches the shadow.
INSERT INTO chat_messages SELECT user_id, task_id, session_id, 'burst-f', role, content, actions,
    parse_degraded, tokens_used, model_name, '00000000-0000-0000-0000-0000000000f1', created_at,
    updated_at, deleted_at FROM chat_messages WHERE id = :'hot';
UPDATE chat_messages SET tokens_used = 14 WHERE id = '00000000-0000-0000-0000-0000000000f1';
UPDATE chat_messages SET content = 'short now' WHERE id = '00000000-0000-0000-0000-0000000000f1';
INSERT INTO chat_messages SELECT user_id, task_id, session_id, 'burst-g', role, content, actions,
    parse_degraded, tokens_used, model_name, '00000000-0000-0000-0000-0000000000f2', created_at,
    updated_at, deleted_at FROM chat_messages WHERE id = :'h';
DELETE FROM chat_messages WHERE id = '00000000-0000-0000-0000-0000000000f2';
-- Inserted, then its key and its partition column change before it reaches
-- the shadow.
INSERT INTO chat_messages SELECT user_id, task_id, session_id, 'burst-k', role, content, actions,
    parse_degraded, tokens_used, model_name, '00000000-0000-0000-0000-0000000000f3', created_at,
    updated_at, deleted_at FROM chat_messages WHERE id = :'hot';
UPDATE chat_messages SET id = '00000000-0000-0000-0000-0000000000f4'
WHERE id = '00000000-0000-0000-0000-0000000000f3';
UPDATE chat_messages SET created_at = created_at - interval '400 days', tokens_used = 16
WHERE id = '00000000-0000-0000-0000-0000000000f4';
-- Two inserted rows with one created_at swap their message_id through a
-- third value, and a third inserted row takes the key of a deleted row and
-- then the message_id a row already in the shadow gives up.
INSERT INTO chat_messages SELECT user_id, task_id, session_id, 'burst-p', role, 'p', actions,
    parse_degraded, tokens_used, model_name, '00000000-0000-0000-0000-0000000000f5', created_at,
    updated_at, deleted_at FROM chat_messages WHERE id = :'b';
INSERT INTO chat_messages SELECT user_id, task_id, session_id, 'burst-q', role, 'q', actions,
    parse_degraded, tokens_used, model_name, '00000000-0000-0000-0000-0000000000f6', created_at,
    updated_at, deleted_at FROM chat_messages WHERE id = :'b';
UPDATE chat_messages SET message_id = 'swap-tmp-2' WHERE id = '00000000-0000-0000-0000-0000000000f5';
UPDATE chat_messages SET message_id = 'burst-p' WHERE id = '00000000-0000-0000-0000-0000000000f6';
UPDATE chat_messages SET message_id = 'burst-q' WHERE id = '00000000-0000-0000-0000-0000000000f5';
SELECT id AS g, message_id AS gm FROM chat_messages ORDER BY id OFFSET 16 LIMIT 1 \gset
SELECT id AS k, message_id AS km FROM chat_messages ORDER BY id OFFSET 17 LIMIT 1 \gset
DELETE FROM chat_messages WHERE id = :'k';
INSERT INTO chat_messages SELECT user_id, task_id, session_id, 'burst-r', role, 'r', actions,
    parse_degraded, tokens_used, model_name, '00000000-0000-0000-0000-0000000000f7', created_at,
    updated_at, deleted_at FROM chat_messages WHERE id = :'g';
UPDATE chat_messages SET id = :'k' WHERE id = '00000000-0000-0000-0000-0000000000f7';
UPDATE chat_messages SET message_id = 'given-up' WHERE id = :'g';
UPDATE chat_messages SET message_id = :'gm' WHERE id = :'k';
-- Deleted and inserted again, then updated.
WITH gone AS (DELETE FROM chat_messages WHERE id = :'h' RETURNING *)
INSERT INTO chat_messages SELECT * FROM gone;
UPDATE chat_messages SET tokens_used = 15 WHERE id = :'h';
BEGIN;
UPDATE chat_messages SET tokens_used = -1 WHERE id = :'hot';
DELETE FROM chat_messages WHERE id = :'a';
ROLLBACK;
UPDATE chat_messages SET tokens_used = 5 WHERE id = :'hot';
-- Breadth: one transaction of many changes, and many transactions of one.
UPDATE chat_messages SET tokens_used = coalesce(tokens_used, 0) + 100
WHERE id IN (SELECT id FROM chat_messages ORDER BY id OFFSET 100 LIMIT 300);
-- (hot, which the 40 updates below change, is kept out of the deletes:
-- an update that finds no row leaves no transaction in the stream.)
DELETE FROM chat_messages
WHERE id IN (SELECT id FROM chat_messages WHERE id <> :'hot' ORDER BY id OFFSET 500 LIMIT 100);
SELECT format('UPDATE chat_messages SET tokens_used = %s WHERE id = %L', n, id)
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM chat_messages ORDER BY id OFFSET 700 LIMIT 150) s
\gexec
SELECT format('DELETE FROM chat_messages WHERE id = %L', id)
FROM (SELECT id FROM chat_messages WHERE id <> :'hot' ORDER BY id OFFSET 900 LIMIT 50) s
\gexec
SELECT format('UPDATE chat_messages SET tokens_used = coalesce(tokens_used, 0) + %s WHERE id = %L', n, :'hot')
FROM generate_series(1, 40) n
\gexec
-- A run long enough for COPY.
INSERT INTO chat_messages SELECT user_id, task_id, session_id, 'bulk-' || n, role, 'bulk', actions,
    parse_degraded, n, model_name, gen_random_uuid(), created_at, updated_at, deleted_at
FROM chat_messages, generate_series(1, 10500) n WHERE id = :'b';
SQL

my %applied;
for my $identity ('DEFAULT', 'FULL')
{
	my $node = Pgrepart::Cluster->new;
	$node->psql(fixture('chat_messages.sql'), vars => { rows => 3000 });
	$node->psql("ALTER TABLE chat_messages REPLICA IDENTITY $identity");
	$node->psql(q{UPDATE chat_messages SET created_at = (SELECT created_at FROM chat_messages ORDER BY id
		OFFSET 10 LIMIT 1) WHERE id = (SELECT id FROM chat_messages ORDER BY id OFFSET 11 LIMIT 1)});
	my $dir = tempdir(CLEANUP => 1);
	my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'chat_messages', '-k',
		'created_at', '--batch-transactions', '2000', '--json', '-v');

	# Synced: the shadow has its unique constraint on (message_id, created_at).
	my $pid = pgrepart_background("$dir/prepare.log", @run);
	ok(wait_for($node, q{SELECT count(*) = 1 FROM pgrepart.migration WHERE phase = 'synced'}, 120, $pid),
		"$identity: the run reached synced") or diag(slurp("$dir/prepare.log"));
	kill 'TERM', $pid;
	is(wait_exit($pid), 5, "$identity: stopped");
	ok($node->psql(q{SELECT count(*) FROM pg_index WHERE indrelid = 'chat_messages_pgrepart'::regclass
		AND indisunique AND NOT indisprimary}) > 0, "$identity: the shadow has a unique index besides the key");

	$node->psql($burst);
	my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
	$pid = pgrepart_background("$dir/run.log", @run, '--report', "$dir/report.json");
	ok(wait_for($node, applied_up_to($lsn), 120, $pid), "$identity: the apply reached $lsn")
	  or diag(slurp("$dir/run.log"));
	kill 'TERM', $pid;
	is(wait_exit($pid), 5, "$identity: stopped again");
	my $log = slurp("$dir/run.log");
	unlike($log, qr/error:/, "$identity: no errors") or diag($log);
	# Under the default identity a's move is found by the batch's second
	# look, after b took the value a gives up: the apply goes back and
	# applies that stretch in source order.
	my $in_order = qr/ran into unique constraint .* again, one change per statement/;
	if ($identity eq 'DEFAULT')
	{
		like($log, $in_order, "$identity: the unique violation sent the apply back, in source order");
	}
	else
	{
		unlike($log, $in_order, "$identity: every batch kept source order");
	}

	my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
	is("$missing/$extra", '0/0', "$identity: every row equal");
	my ($batches) = $log =~ /.*"batch_statements":(\d+)/s;
	my ($folded) = $log =~ /.*"folded":(\d+)/s;
	ok(($batches // 0) > 0, "$identity: updates and deletes went in batches (" . ($batches // 'none') . ')');
	ok(($folded // 0) > 0, "$identity: changes of one row were folded (" . ($folded // 'none') . ')');
	my ($copied) = $log =~ /.*"copied_rows":(\d+)/s;
	ok(($copied // 0) >= 10000, "$identity: the long run of inserts went by COPY (" . ($copied // 'none') . ')');
	$applied{$identity} = (eval { decode_json(slurp("$dir/report.json")) } // {})->{changes_applied};
}
cmp_ok($applied{FULL} // 0, '>=', 10500, "the report counts the changes applied ($applied{FULL})");
is($applied{DEFAULT}, $applied{FULL}, 'the same under the default identity, which applied a stretch twice');

done_testing();
