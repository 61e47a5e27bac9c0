# Foreign keys without a write stall and without a gap.  The swap gives
# every partition the table's keys NOT VALID, so they check every row
# written from its commit on; a busy referenced table makes an attempt give
# up within the lock timeout and try again instead of queueing writers;
# afterwards each partition's key is validated while writers go on, and the
# table's key adopts them.  A key that was NOT VALID on the original stays
# NOT VALID on each partition, checking new rows.
use strict;
use warnings;
use File::Temp qw(tempdir);
use POSIX ();
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(fixture('chat_messages.sql'), vars => { rows => 3000 });
my @run = ('run', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at', '--cutover', 'manual',
	'--lock-timeout', '100', '--cutover-retries', '200');

# The run pauses after the swap, before the keys are validated.
my $run = do
{
	local $ENV{PGREPART_FAULT_PAUSE} = 'cleanup';
	local $ENV{PGREPART_FAULT_PAUSE_MS} = '4000';
	pgrepart_background("$dir/run.log", @run);
};
ok(wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 120, $run), 'in sync')
  or diag(slurp("$dir/run.log"));

# users is written to the whole time; a session holds it for 10 s from
# before the cutover is asked for, longer than the comparison before the
# first attempt takes on a busy machine.
my $holder = hold_lock($node, 'users', 'ROW EXCLUSIVE', 10);
ok(wait_for($node, q{SELECT count(*) = 1 FROM pg_locks WHERE relation = 'users'::regclass
	AND mode = 'RowExclusiveLock' AND granted}, 30), 'users is held');
$node->psql(q{UPDATE pgrepart.migration SET cutover_requested_at = now()});
my ($writes, $refused) = (0, 0);
my $violation;
while (waitpid($run, POSIX::WNOHANG()) == 0)
{
	my ($rc, undef, $err) = $node->psql(q{SET lock_timeout = '3s';
		UPDATE users SET email = email WHERE id = (SELECT id FROM users LIMIT 1)}, allow_fail => 1);
	$writes++;
	$refused++, diag($err) if $rc != 0;
	# Once swapped, a row the key rejects is refused at once, before any validation.
	if (!defined $violation && $node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}) eq 'p')
	{
		my (undef, undef, $verr) = $node->psql(q{INSERT INTO chat_messages (user_id, task_id, session_id,
			message_id, role, content, id, created_at, updated_at)
			SELECT gen_random_uuid(), NULL, session_id, 'orphan', role, 'x', gen_random_uuid(), created_at,
			  updated_at FROM chat_messages LIMIT 1}, allow_fail => 1);
		$violation = $verr;
	}
	select undef, undef, undef, 0.05;
}
my $rc = $? >> 8;
waitpid $holder, 0;
is($rc, 0, 'the run swapped and finished') or diag(slurp("$dir/run.log"));
my $log = slurp("$dir/run.log");
like($log, qr/could not lock a table the statement needs in time: ALTER TABLE .* ADD CONSTRAINT .* FOREIGN KEY/,
	'the attempt gave up on busy users instead of queueing');
is($refused, 0, "writers to users never queued behind an attempt ($writes writes)");
like($violation // '', qr/violates foreign key constraint/, 'a row the key rejects was refused right after the swap');
like($log, qr/validating \d+ foreign key\(s\) of the partitions, writers going on/,
	'the keys were validated after the swap');
is($node->psql(q{SELECT count(*) FROM pg_constraint WHERE conrelid = 'chat_messages'::regclass AND contype = 'f'
	AND convalidated}), 2, 'the new table has both keys, validated');
is($node->psql(q{SELECT count(*) FROM pg_constraint k JOIN pg_inherits h ON h.inhrelid = k.conrelid
	WHERE h.inhparent = 'chat_messages'::regclass AND k.contype = 'f'
	AND (NOT k.convalidated OR k.conparentid = 0)}), 0, "every partition's key is validated and the table's own");

# Partitions made later carry the keys.
my ($prc, undef, $perr) = pgrepart('partitions', '-d', $node->connstr, '-t', 'chat_messages', '--ahead', '12');
is($prc, 0, 'pgrepart partitions adds partitions') or diag($perr);
is($node->psql(q{SELECT count(*) FROM pg_inherits h WHERE h.inhparent = 'chat_messages'::regclass
	AND (SELECT count(*) FROM pg_constraint k WHERE k.conrelid = h.inhrelid AND k.contype = 'f' AND k.convalidated) <> 2}),
	0, 'and every partition, the new ones included, has both keys');

# A key that was NOT VALID on the original (a row violates it).
$node->psql(q{
	CREATE TABLE notes (id bigint PRIMARY KEY, at timestamptz NOT NULL, user_id uuid);
	INSERT INTO notes SELECT g, now() - g * interval '1 day', (SELECT id FROM users LIMIT 1)
	FROM generate_series(1, 200) g;
	INSERT INTO notes VALUES (999, now(), gen_random_uuid());
	ALTER TABLE notes ADD CONSTRAINT notes_user FOREIGN KEY (user_id) REFERENCES users NOT VALID;
});
my ($nrc, $nout, $nerr) = pgrepart('run', '-d', $node->connstr, '-t', 'notes', '-k', 'at', '--interval', '1 month');
is($nrc, 0, 'a NOT VALID key: the run swaps') or diag($nerr);
like($nerr, qr/warning: a foreign key was NOT VALID on the original/, 'and warns about the key');
is($node->psql(q{SELECT count(*) FILTER (WHERE NOT k.convalidated) || '/' || count(*) FROM pg_constraint k
	JOIN pg_inherits h ON h.inhrelid = k.conrelid WHERE h.inhparent = 'notes'::regclass AND k.contype = 'f'}),
	$node->psql(q{SELECT count(*) || '/' || count(*) FROM pg_inherits WHERE inhparent = 'notes'::regclass}),
	'each partition has it NOT VALID');
my ($irc) = $node->psql(q{INSERT INTO notes VALUES (1000, now(), gen_random_uuid())}, allow_fail => 1);
isnt($irc, 0, 'and it refuses a new row that violates it');

done_testing();
