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
$node->psql(qq{
	CREATE ROLE migrator LOGIN REPLICATION PASSWORD '$secret';
	ALTER TABLE chat_messages OWNER TO migrator;
	GRANT CREATE ON DATABASE postgres TO migrator;
	GRANT CREATE ON SCHEMA public TO migrator;
	GRANT REFERENCES ON users, tasks TO migrator;
	GRANT EXECUTE ON FUNCTION
	    pg_catalog.pg_replication_origin_create(text),
	    pg_catalog.pg_replication_origin_drop(text),
	    pg_catalog.pg_replication_origin_session_setup(text),
	    pg_catalog.pg_replication_origin_progress(text, boolean),
	    pg_catalog.pg_replication_origin_xact_setup(pg_catalog.pg_lsn, timestamptz)
	  TO migrator;
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
