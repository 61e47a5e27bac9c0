# The revert window's edges.  Identity values continue across the swap back
# (new inserts after a revert do not collide with rows made in the window);
# a TRUNCATE of the new table reaches the old one; "pgrepart finish" and the
# window's end drop the reverse stream and leave the old table, after which
# a revert is refused; a column added to the new table ends the reverse
# stream, and a revert is refused with that reason; abort before the swap
# removes a prepared reverse stream too.
use strict;
use warnings;
use File::Temp qw(tempdir);
use POSIX ();
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
my $conn = $node->connstr;
for my $t (qw(t_id t_tr t_win t_col))
{
	$node->psql("CREATE TABLE $t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		at timestamptz NOT NULL, v text);
		INSERT INTO $t (at, v) SELECT timestamptz '2025-01-01' + g * interval '1 hour', 'v' || g
		FROM generate_series(1, 3000) g");
}

# Runs the migration of $t with @more options in the background and waits
# for its reverse stream: the run's pid.
sub swapped
{
	my ($t, @more) = @_;
	my $run = pgrepart_background("$dir/$t.log", 'run', '-d', $conn, '-t', $t, '-k', 'at', @more);
	ok(wait_for_text("$dir/$t.log", qr/reverse stream: applying the changes/, 120, $run),
		"$t: swapped, the reverse stream follows") or diag(slurp("$dir/$t.log"));
	return $run;
}

sub rev_objects
{
	return $node->psql(q{SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%_rev')
		+ (SELECT count(*) FROM pg_publication WHERE pubname LIKE '%_rev')
		+ (SELECT count(*) FROM pg_replication_origin WHERE roname LIKE '%_rev')});
}

# Identity: rows made in the window take values from the new table's
# sequence; after the revert the original's continues past them.
my $run = swapped('t_id', '--revert-window', '1h', '--cutover-retries', '5');
$node->psql(q{INSERT INTO t_id (at, v) SELECT now(), 'window' FROM generate_series(1, 5)});

# A revert that finds the table busy for every attempt gives up; the window
# goes on.  The session holds the table until it is let go, however long
# the attempts take on a busy machine.
my $holder = fork // die "fork: $!";
if ($holder == 0)
{
	$node->psql(q{BEGIN; LOCK TABLE t_id IN ROW EXCLUSIVE MODE; SELECT pg_sleep(600); COMMIT},
		allow_fail => 1);
	POSIX::_exit(0);
}
ok(wait_for($node, q{SELECT count(*) = 1 FROM pg_locks WHERE relation = 't_id'::regclass
	AND mode = 'RowExclusiveLock' AND granted}, 30), 't_id: a session holds the new table');
my ($rc, undef, $err) = pgrepart('revert', '-d', $conn, '-t', 't_id');
is($rc, 1, 't_id: the revert gave up on the busy table');
like($err, qr/could not revert "public.t_id".*still kept in step/, 't_id: and says the window goes on');
$node->psql(q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%'
	AND pid <> pg_backend_pid()});
waitpid $holder, 0;
$node->psql(q{INSERT INTO t_id (at, v) SELECT now(), 'window' FROM generate_series(1, 5)});
ok(wait_for($node, q{SELECT count(*) = 3010 FROM t_id_old}, 60), 't_id: the window rows reach the old table');
($rc, undef, $err) = pgrepart('revert', '-d', $conn, '-t', 't_id', '--partitioned-name', 't_id_by_month');
is($rc, 0, 't_id: reverted') or diag($err);
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = to_regclass('t_id_by_month')}), 'p',
	't_id: the partitioned table has the name given');
is(wait_exit($run), 0, 't_id: the run ended') or diag(slurp("$dir/t_id.log"));
($rc, undef, $err) = $node->psql(q{INSERT INTO t_id (at, v) SELECT now(), 'after' FROM generate_series(1, 10)},
	allow_fail => 1);
is($rc, 0, 't_id: inserts after the revert do not collide') or diag($err);
is($node->psql(q{SELECT count(*) || ' ' || count(DISTINCT id) || ' '
	|| (min(id) FILTER (WHERE v = 'after') > max(id) FILTER (WHERE v = 'window')) FROM t_id}),
	'3020 3020 true', 't_id: every row, each id once, the new ones after the window\'s');

# TRUNCATE in the window, then finish.
$run = swapped('t_tr', '--revert-window', '1h');
$node->psql(q{TRUNCATE t_tr; INSERT INTO t_tr (at, v) VALUES (now(), 'after truncate')});
ok(wait_for($node, q{SELECT count(*) = 1 FROM t_tr_old}, 60), 't_tr: the truncate and the row reach the old table');
my $out;
($rc, $out, $err) = pgrepart('status', '-d', $conn, '-t', 't_tr');
like($out, qr/revert window  until .*keeping "t_tr_old" in step/, 'status shows the window');
like($out, qr/reverse slot   pgrepart_\d+_\d+_rev, streaming, retains [\d.]+ MB of WAL/, 'and the reverse slot');
like($out, qr/revert ready   yes/, 'and that a revert is ready');
($rc, $out, $err) = pgrepart('status', '-d', $conn, '-t', 't_tr', '--json');
like($out, qr/"revert_ready":true/, 'status --json too');
unlike($err, qr/belongs to no unfinished migration/, 'the reverse stream is no leftover');
($rc, undef, $err) = pgrepart('finish', '-d', $conn, '-t', 't_tr');
is($rc, 0, 't_tr: finished') or diag($err);
is(wait_exit($run), 0, 't_tr: the run ended') or diag(slurp("$dir/t_tr.log"));
is(rev_objects(), 0, 'finish dropped the reverse slot, publication and origin');
is($node->psql(q{SELECT count(*) FROM t_tr_old}), 1, 't_tr: the old table stays');
($rc, $out, $err) = pgrepart('revert', '-d', $conn, '-t', 't_tr');
is($rc, 1, 't_tr: a revert after finish is refused');
like($err, qr/has ended \(finished\)/, 't_tr: and says why');

# The window's end.
$run = swapped('t_win', '--revert-window', '4s');
is(wait_exit($run, 60), 0, 't_win: the run ends with the window') or diag(slurp("$dir/t_win.log"));
is(rev_objects(), 0, 'the window\'s end dropped the reverse stream');
is($node->psql(q{SELECT reverse_end FROM pgrepart.migration WHERE source_table = 't_win'}), 'finished',
	't_win: recorded as finished');

# A column added to the new table: the old one cannot follow.
$run = swapped('t_col', '--revert-window', '1h');
$node->psql(q{ALTER TABLE t_col ADD COLUMN extra int; INSERT INTO t_col (at, v, extra) VALUES (now(), 'x', 1)});
is(wait_exit($run, 60), 1, 't_col: the run stops its reverse stream') or diag(slurp("$dir/t_col.log"));
like(slurp("$dir/t_col.log"), qr/columns of "public.t_col" changed after the swap/, 't_col: and says why');
is(rev_objects(), 0, 'the reverse stream is dropped, holding no WAL');
($rc, $out, $err) = pgrepart('revert', '-d', $conn, '-t', 't_col');
is($rc, 1, 't_col: a revert is refused');
like($err, qr/columns changed after the swap/, 't_col: with the reason');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 't_col'::regclass}), 'p', 't_col: the new table stays');

# A rehearsal with a window rehearses the way back too, and leaves nothing.
$node->psql(q{CREATE TABLE t_re (id bigint PRIMARY KEY, at timestamptz NOT NULL, v text);
	INSERT INTO t_re SELECT g, now() - g * interval '1 hour', 'v' FROM generate_series(1, 500) g;
	CREATE VIEW t_re_view AS SELECT id FROM t_re});
($rc, $out, $err) = pgrepart('run', '-d', $conn, '-t', 't_re', '-k', 'at', '--rehearse', '--revert-window', '1h');
is($rc, 0, 't_re: rehearsed') or diag($err);
like($err, qr/rehearsal: the swap back ran too/, 't_re: the swap back was rehearsed');
like($err, qr/rehearsal: the reverse stream followed to \S+: \d+ changes of pgrepart's own skipped, none applied/,
	't_re: and the reverse stream followed');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 't_re'::regclass}), 'r', 't_re: the table is as it was');
is(rev_objects(), 0, 't_re: no reverse stream is left');

# A composite key with a text column, under REPLICA IDENTITY FULL: updates
# (the key changed too), deletes and inserts in the window, then the revert.
$node->psql(q{CREATE TABLE t_txt (k text COLLATE "C", n bigint, at timestamptz NOT NULL, v text, PRIMARY KEY (k, n));
	ALTER TABLE t_txt REPLICA IDENTITY FULL;
	INSERT INTO t_txt SELECT 'key ' || g, g % 7, timestamptz '2025-01-01' + g * interval '1 hour', 'v'
	FROM generate_series(1, 2000) g});
$run = swapped('t_txt', '--revert-window', '1h');
$node->psql(q{UPDATE t_txt SET v = 'updated' WHERE n = 1;
	UPDATE t_txt SET k = k || ' moved', at = at + interval '1 year' WHERE n = 2;
	DELETE FROM t_txt WHERE n = 3;
	INSERT INTO t_txt SELECT 'new ' || g, g, now(), 'new' FROM generate_series(1, 50) g;
	CREATE TABLE t_txt_expected AS SELECT * FROM t_txt});
ok(wait_for($node, q{SELECT count(*) = 0 FROM ((TABLE t_txt_old EXCEPT TABLE t_txt_expected)
	UNION ALL (TABLE t_txt_expected EXCEPT TABLE t_txt_old)) d}, 60), 't_txt: the old table follows');
($rc, undef, $err) = pgrepart('revert', '-d', $conn, '-t', 't_txt');
is($rc, 0, 't_txt: reverted') or diag($err);
is(wait_exit($run), 0, 't_txt: the run ended') or diag(slurp("$dir/t_txt.log"));
is($node->psql(q{SELECT count(*) FROM ((TABLE t_txt EXCEPT TABLE t_txt_expected)
	UNION ALL (TABLE t_txt_expected EXCEPT TABLE t_txt)) d}), 0, 't_txt: every row as the new table had it');
is($node->psql(q{SELECT relreplident FROM pg_class WHERE oid = 't_txt'::regclass}), 'f',
	't_txt: the original keeps its replica identity');

# A unique key the new table widened with the partition column takes a row
# the original's refuses: the run warns of the key up front, the reverse
# stream stops with the server's message and what it means, and keeps its
# slot until finish.
$node->psql(q{CREATE TABLE t_uq (id bigint PRIMARY KEY, at timestamptz NOT NULL, code text UNIQUE);
	INSERT INTO t_uq SELECT g, timestamptz '2025-01-01' + g * interval '1 hour', 'c' || g
	FROM generate_series(1, 500) g});
$run = swapped('t_uq', '--revert-window', '1h');
like(slurp("$dir/t_uq.log"), qr/unique index "t_uq_code_key" holds "at" too/, 't_uq: the run warned of the key');
$node->psql(q{INSERT INTO t_uq VALUES (1001, now(), 'twice'), (1002, now() + interval '1 year', 'twice')});
is(wait_exit($run), 1, 't_uq: the reverse stream stops') or diag(slurp("$dir/t_uq.log"));
like(slurp("$dir/t_uq.log"), qr/duplicate key value violates unique constraint.*hint: The new table's unique keys hold the partition column/s,
	't_uq: with the server\'s message and what it means');
is($node->psql(q{SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%_rev'}), 1,
	't_uq: the reverse slot is kept');
($rc, undef, $err) = pgrepart('finish', '-d', $conn, '-t', 't_uq');
is($rc, 0, 't_uq: finish ends the window') or diag($err);
is(rev_objects(), 0, 't_uq: and drops the reverse stream');

# A table without a key to find rows by is refused a window up front.
$node->psql(q{CREATE TABLE t_nokey (at timestamptz NOT NULL, v text); ALTER TABLE t_nokey REPLICA IDENTITY FULL;
	INSERT INTO t_nokey SELECT now(), 'v' FROM generate_series(1, 10)});
($rc, $out, $err) = pgrepart('run', '-d', $conn, '-t', 't_nokey', '-k', 'at', '--revert-window', '1h');
is($rc, 1, 't_nokey: refused');
like($err, qr/has no primary key or replica identity index/, 't_nokey: naming why');
is($node->psql(q{SELECT to_regclass('pgrepart.migration') IS NULL
	OR NOT EXISTS (SELECT 1 FROM pgrepart.migration WHERE source_table = 't_nokey')}), 't',
	't_nokey: before anything was made');

# Abort before the swap removes a reverse stream prepared for it.
$node->psql(q{CREATE TABLE t_ab (id bigint PRIMARY KEY, at timestamptz NOT NULL);
	INSERT INTO t_ab SELECT g, now() FROM generate_series(1, 100) g});
$run = do
{
	local $ENV{PGREPART_FAULT_PAUSE} = 'lock';
	local $ENV{PGREPART_FAULT_PAUSE_MS} = '60000';
	pgrepart_background("$dir/t_ab.log", 'run', '-d', $conn, '-t', 't_ab', '-k', 'at', '--revert-window', '1h');
};
ok(wait_for_text("$dir/t_ab.log", qr/pausing at fault point lock/, 120, $run), 't_ab: at the lock')
  or diag(slurp("$dir/t_ab.log"));
kill 'KILL', $run;
wait_exit($run);
is(rev_objects(), 2, 't_ab: the reverse slot and publication were made before the lock');
($rc, undef, $err) = pgrepart('abort', '-d', $conn, '-t', 't_ab');
is($rc, 0, 't_ab: aborted') or diag($err);
is(rev_objects(), 0, 't_ab: and the reverse stream with it');

done_testing();
