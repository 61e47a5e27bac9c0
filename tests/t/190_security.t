# Security: a migration run end to end by a role with exactly the privileges
# docs/operations.md lists; a password given in the conninfo never shows in
# ps, the logs, the report or pgrepart's tables; a table and column named to
# inject SQL are migrated as names, never run as SQL.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
my $secret = 'Tr0ub4dor-and-3';
$node->psql(fixture('chat_messages.sql'), vars => { rows => 3000 });

# The role and the privileges of docs/operations.md, nothing more.
$node->psql(migrating_role('migrator', $secret) . q{
	ALTER TABLE chat_messages OWNER TO migrator;
	GRANT REFERENCES ON users, tasks TO migrator;
});
is($node->psql(q{SELECT rolsuper OR rolcreatedb OR rolcreaterole FROM pg_roles WHERE rolname = 'migrator'}),
	'f', 'migrator is no superuser and cannot create databases or roles');

my $conn = $node->connstr(user => 'migrator') . " password=$secret";
my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '2', '-R', '100', '-T', '600');
my $pid = pgrepart_background("$dir/run.log", 'run', '-d', $conn, '-t', 'chat_messages', '-k', 'created_at',
	'--report', "$dir/report.json");
wait_for($node, q{SELECT count(*) > 0 FROM pg_stat_activity WHERE usename = 'migrator'}, 60, $pid);
my ($rc_status, $status_out, $status_err);
my $cmdline = do { local $/; open my $fh, '<', "/proc/$pid/cmdline"; <$fh> // '' };
$cmdline =~ s/\0/ /g;
like($cmdline, qr/password=x+/, 'ps shows the password overwritten') or diag($cmdline);
unlike($cmdline, qr/\Q$secret\E/, 'and not the password');
is(wait_exit($pid), 0, 'the migration ran to the end as migrator') or diag(slurp("$dir/run.log"));
kill 'INT', $load;
wait_exit($load);
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}), 'p',
	'chat_messages is partitioned');
is($node->psql(q{SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'chat_messages'::regclass}),
	'migrator', 'the new table belongs to migrator, as the old one did');

($rc_status, $status_out, $status_err) = pgrepart('status', '-d', $conn);
is($rc_status, 0, 'status works for migrator') or diag($status_err);

# The password is nowhere pgrepart writes.
my $everything = slurp("$dir/run.log") . slurp("$dir/report.json")
  . $node->psql(q{SELECT string_agg(t::text, ' ') FROM pgrepart.migration t})
  . $node->psql(q{SELECT coalesce(string_agg(t::text, ' '), '') FROM pgrepart.verification t})
  . $status_out . $status_err;
unlike($everything, qr/\Q$secret\E/, 'no password in the log, the report or the state tables');
like(slurp("$dir/run.log"), qr/cutover done/, 'the log is the real one');

# A second role finds schema pgrepart made by migrator: plan blocks until
# it may act as the schema's owner, as run needs.
$node->psql(migrating_role('migrator2') . q{
	CREATE TABLE second (id bigint PRIMARY KEY, at timestamptz NOT NULL);
	INSERT INTO second SELECT g, now() - g * interval '1 day' FROM generate_series(1, 100) g;
	ALTER TABLE second OWNER TO migrator2;
});
my $conn2 = $node->connstr(user => 'migrator2');
my ($rc2, $out2, $err2) = pgrepart('plan', '-d', $conn2, '-t', 'second', '-k', 'at');
is($rc2, 4, 'a second role: plan blocks') or diag("$out2$err2");
like($out2, qr/block\s+state_schema\s+schema pgrepart, where migrations keep their state, belongs to role "migrator"/,
	'on the pgrepart schema another role owns');
$node->psql('GRANT migrator TO migrator2');
($rc2, $out2, $err2) = pgrepart('run', '-d', $conn2, '-t', 'second', '-k', 'at');
is($rc2, 0, 'as a member of its owner, the second role migrates its table') or diag("$out2$err2");

# Every spelling of a conninfo option is masked in ps: an abbreviation
# (--db=), a bundle of short options (-vd CONNINFO, -vdCONNINFO) and
# verify's --target-dbname (as --target-db=).  A lock holds each command
# still while its command line is read.
$node->psql(q{CREATE TABLE hold_me (id bigint PRIMARY KEY, at timestamptz NOT NULL);
	INSERT INTO hold_me VALUES (1, now()); ALTER TABLE hold_me OWNER TO migrator});
my $holder = client_background("$dir/hold.log", 'psql', '-X', '-d', $node->connstr, '-c',
	'BEGIN; LOCK TABLE hold_me IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;');
ok(wait_for($node, q{SELECT count(*) = 1 FROM pg_locks WHERE relation = 'hold_me'::regclass AND granted}, 30),
	'hold_me is locked');
my %spellings = (
	'--db=' => ['plan', "--db=$conn", '-t', 'hold_me', '-k', 'at'],
	'-vd CONNINFO' => ['plan', '-vd', $conn, '-t', 'hold_me', '-k', 'at'],
	'-vdCONNINFO' => ['plan', "-vd$conn", '-t', 'hold_me', '-k', 'at'],
	'--target-db=' => ['verify', '-d', $node->connstr, "--target-db=$conn", '--source', 'hold_me', '--target',
		'hold_me'],
);
my %pids = map { $_ => pgrepart_background("$dir/spelling.log", @{ $spellings{$_} }) } sort keys %spellings;
ok(wait_for($node, q{SELECT count(*) >= 4 FROM pg_locks WHERE relation = 'hold_me'::regclass AND NOT granted}, 60),
	'each command waits on the lock');
for my $spelling (sort keys %pids)
{
	my $line = do { local $/; open my $fh, '<', "/proc/$pids{$spelling}/cmdline"; <$fh> // '' };
	$line =~ s/\0/ /g;
	ok($line =~ /password=x+/ && $line !~ /\Q$secret\E/, "$spelling: ps shows no password") or diag($line);
}
kill 'TERM', $holder;
$node->psql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%'
	AND pid <> pg_backend_pid()});
wait_exit($_) for values %pids;
wait_exit($holder);

# A connection string libpq cannot parse is not quoted back when the fault
# is in the password.
($rc_status, $status_out, $status_err) = pgrepart('status', '-d', "postgresql://migrator:${secret}%ZZ\@127.0.0.1:1/db");
isnt($rc_status, 0, 'a bad percent-escape in the password fails');
unlike("$status_out$status_err", qr/\Q$secret\E/, 'and the message does not repeat the password')
  or diag($status_err);
like($status_err, qr/the password in the connection string is not valid/, 'it says what is wrong');

# Names built to inject SQL: a table and a partition column that close the
# identifier and the statement.
$node->psql(q{
	CREATE TABLE victim (x int);
	CREATE TABLE "evil""; DROP TABLE victim; --" (
	    id bigint PRIMARY KEY,
	    "at'); DROP TABLE victim; --" timestamptz NOT NULL,
	    "v\" text);
	INSERT INTO "evil""; DROP TABLE victim; --"
	SELECT g, timestamptz '2025-01-01' + g * interval '1 day', 'r' || g FROM generate_series(1, 400) g;
});
my ($rc, $out, $err) = pgrepart('run', '-d', $node->connstr, '-t', q{"evil""; DROP TABLE victim; --"},
	'-k', q{"at'); DROP TABLE victim; --"}, '--interval', '1 month');
is($rc, 0, 'the table named to inject SQL is migrated') or diag($err);
is($node->psql(q{SELECT count(*) FROM victim}), 0, 'victim is still there');
is($node->psql(q{SELECT relkind::text || count(*) FROM "evil""; DROP TABLE victim; --" x, pg_class c
	WHERE c.oid = '"evil""; DROP TABLE victim; --"'::regclass GROUP BY relkind}), 'p400',
	'and it is partitioned, with every row');

done_testing();
