# Revert: after the swap the original is kept in step with the new table
# (--revert-window), and "pgrepart revert" swaps back with nothing lost.
# Ledgered: every write of the load records, in its own transaction, what
# the row must look like; the load runs through the migration, the window
# and the revert, and the table must match the ledger exactly at the end.
# A rehearsal with the window comes first, under the same load.
# Rows of partitions made after the swap, a partition key changed after it,
# a revert asked while the reverse stream lags,
# a user deleted with its messages through the old table's own cascade, and
# identity values after the revert are checked too.
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
	INSERT INTO ledger SELECT id, md5(content) FROM chat_messages;
	-- A user whose messages go with it, through a cascading key.
	ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_user_id_fkey,
	  ADD CONSTRAINT chat_messages_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE;
	INSERT INTO users (id, email) VALUES ('ffffffff-ffff-ffff-ffff-ffffffffffff', 'leaving@example.com');
	-- A view and a grant the swaps carry each way.
	CREATE VIEW recent_messages AS SELECT id, content FROM chat_messages;
	CREATE ROLE reader; GRANT SELECT ON chat_messages TO reader;
	-- An application's publication, and an audit trigger that must fire once per write.
	CREATE PUBLICATION app_pub FOR TABLE chat_messages;
	CREATE TABLE audit (id uuid, op text);
	CREATE FUNCTION audit_far() RETURNS trigger LANGUAGE plpgsql AS
	  $$BEGIN IF NEW.message_id = 'far' THEN INSERT INTO audit VALUES (NEW.id, TG_OP); END IF; RETURN NEW; END$$;
	CREATE TRIGGER audit_far AFTER INSERT ON chat_messages FOR EACH ROW EXECUTE FUNCTION audit_far()});
my $conn = $node->connstr;

my $load = pgbench_background($node, "$dir/load.log", 'ledger.pgbench', '-c', '2', '-R', '100', '-T', '600');
# First a rehearsal under the load: the swap and the swap back rolled back,
# the reverse stream followed (only pgrepart's own transactions in it), and
# nothing left.
my ($rrc, undef, $rerr) = pgrepart('run', '-d', $conn, '-t', 'chat_messages', '-k', 'created_at',
	'--chunk-rows', '1000', '--revert-window', '1h', '--rehearse');
is($rrc, 0, 'a rehearsal with a window, under the load') or diag($rerr);
like($rerr, qr/rehearsal: the swap back ran too.*rehearsal: the reverse stream followed to \S+: \d+ changes of pgrepart's own skipped, none applied/s,
	'it rehearsed the swap back and followed the reverse stream');
is($node->psql(q{SELECT count(*) FROM pg_replication_slots}), 0, 'the rehearsal left no slot');

my $run = pgrepart_background("$dir/run.log", 'run', '-d', $conn, '-t', 'chat_messages', '-k', 'created_at',
	'--chunk-rows', '1000', '--revert-window', '1h');
ok(wait_for($node, q{SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('chat_messages')}, 180, $run),
	'swapped under load') or diag(slurp("$dir/run.log"));
ok(wait_for_text("$dir/run.log", qr/reverse stream: applying the changes/, 60, $run), 'the reverse stream follows')
  or diag(slurp("$dir/run.log"));
is($node->psql(q{SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgrepart%_rev'}), 1,
	'the reverse slot exists');

# While the window is open: a row beyond every partition (a partition is
# made for it), a row moved to another partition, and a user deleted with
# its messages: the old table's own key cascades there, and the stream
# brings the same deletes, which find nothing.
$node->psql(q{
	INSERT INTO chat_messages (user_id, session_id, message_id, role, content, id, created_at, updated_at)
	  VALUES ((SELECT id FROM users ORDER BY id LIMIT 1), gen_random_uuid(), 'far', 'user', 'far future',
	    '00000000-0000-0000-0000-00000000f00d', now()::timestamp + interval '3 years', now()::timestamp);
	INSERT INTO ledger SELECT id, md5(content) FROM chat_messages WHERE id = '00000000-0000-0000-0000-00000000f00d'});
$node->psql(q{
	WITH m AS (UPDATE chat_messages SET created_at = created_at - interval '2 years', content = content || ' moved'
	  WHERE id = (SELECT id FROM chat_messages ORDER BY created_at DESC LIMIT 1 OFFSET 5) RETURNING id, content)
	UPDATE ledger l SET h = md5(m.content) FROM m WHERE l.id = m.id});
$node->psql(q{
	INSERT INTO chat_messages (user_id, session_id, message_id, role, content, id, created_at, updated_at)
	  SELECT 'ffffffff-ffff-ffff-ffff-ffffffffffff', gen_random_uuid(), 'bye' || g, 'user', 'bye', gen_random_uuid(),
	    now()::timestamp, now()::timestamp FROM generate_series(1, 5) g});
sleep 1;
$node->psql(q{DELETE FROM users WHERE id = 'ffffffff-ffff-ffff-ffff-ffffffffffff';
	DELETE FROM ledger l WHERE NOT EXISTS (SELECT 1 FROM chat_messages c WHERE c.id = l.id)});
ok(wait_for($node, q{SELECT count(*) = 0 FROM chat_messages_old
	WHERE user_id = 'ffffffff-ffff-ffff-ffff-ffffffffffff'}, 60), "the user's messages are gone from the old table");

# The old table follows the new one.
sleep 3;
ok(wait_for($node, q{SELECT (SELECT count(*) FROM chat_messages_old) > 3000}, 60),
	'the old table receives the new rows');

# Revert under load, asked while the reverse stream lags: a session holds
# the old table for a while, so the stream falls behind the load; the
# revert catches up before it takes the lock.
my $holder = hold_lock($node, 'chat_messages_old', 'ACCESS EXCLUSIVE', 6);
ok(wait_for($node, q{SELECT count(*) = 1 FROM pg_locks WHERE relation = 'chat_messages_old'::regclass
	AND mode = 'AccessExclusiveLock' AND granted}, 30), 'a session holds the old table');
sleep 3;
my ($rc, $out, $err) = pgrepart('revert', '-d', $conn, '-t', 'chat_messages');
waitpid $holder, 0;
is($rc, 0, 'pgrepart revert') or diag($err);
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}), 'r',
	'chat_messages is the plain table again');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = to_regclass('chat_messages_partitioned')}), 'p',
	'the partitioned table stays as chat_messages_partitioned');
is(wait_exit($run), 0, 'the run ended with the revert') or diag(slurp("$dir/run.log"));

# The load goes on against the original, then stops.
sleep 3;
kill 'TERM', $load;
wait_exit($load);
is(load_errors("$dir/load.log"), 0, 'the load saw no errors');
is(ledger_differences($node), 0, 'every acknowledged write is in the table, and nothing else');
is($node->psql(q{SELECT count(*) FROM chat_messages WHERE id = '00000000-0000-0000-0000-00000000f00d'}), 1,
	'the row of a partition made after the swap is there');
is($node->psql(q{SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgrepart%'}), 0,
	'no slot is left');
is($node->psql(q{SELECT count(*) FROM pg_publication WHERE pubname LIKE 'pgrepart%'}), 0,
	'no publication is left');
is($node->psql(q{SELECT count(*) FROM pg_replication_origin WHERE roname LIKE 'pgrepart%'}), 0,
	'no origin is left');
is($node->psql(q{SELECT pg_get_viewdef('recent_messages'::regclass) LIKE '%chat_messages.content%'
	AND (SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
	     WHERE r.ev_class = 'recent_messages'::regclass AND d.refobjid = 'chat_messages'::regclass) > 0}), 't',
	'the view reads the original again');
is($node->psql(q{SELECT has_table_privilege('reader', 'chat_messages', 'SELECT')}), 't', 'the grant is there');
is($node->psql(q{SELECT count(*) FROM pg_indexes WHERE tablename = 'chat_messages' AND indexname LIKE '%\_old'}), 0,
	'the original indexes have their names back');

is($node->psql(q{SELECT count(*) FROM audit}), 1,
	'the audit trigger fired once: the old table applied the row as a replica');
is($node->psql(q{SELECT string_agg(prrelid::regclass::text, ',') FROM pg_publication_rel r
	JOIN pg_publication p ON p.oid = r.prpubid WHERE p.pubname = 'app_pub'}), 'chat_messages',
	"the application's publication has the original again, and only it");
is($node->psql(q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'chat_messages'::regclass AND tgname = 'audit_far'}),
	1, 'the original has its trigger, once');

# A foreign key check of the original is its own again.
my (undef, undef, $ferr) = $node->psql(q{INSERT INTO chat_messages (user_id, session_id, message_id, role, content,
	id, created_at, updated_at) VALUES (gen_random_uuid(), gen_random_uuid(), 'orphan', 'user', 'x',
	gen_random_uuid(), now(), now())}, allow_fail => 1);
like($ferr, qr/violates foreign key constraint/, "the original's foreign key checks new rows");

done_testing();
