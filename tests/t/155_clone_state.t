# A copy of the database never acts on the original's migration.  Slot and
# origin names are the server's, not a database's, so a copy made while a
# migration runs (CREATE DATABASE ... TEMPLATE on the same server, pg_dump
# into another server, pg_basebackup) carries state that names the
# original's.  In each copy: status says where the state came from, run
# --rehearse and cutover refuse it, abort removes the copy's own objects and
# nothing of the original's, and a fresh rehearsal leaves nothing behind.
# Meanwhile the original migration streams on and swaps with every row.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(fixture('chat_messages.sql'), vars => { rows => 3000 });
my @target = ('-t', 'chat_messages', '-k', 'created_at');
my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, @target);
my $streaming = q{SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name LIKE 'pgrepart%' AND active};
my $held = q{SELECT (SELECT count(*) FROM pg_replication_slots WHERE database = 'postgres') || ',' ||
	(SELECT count(*) FROM pg_replication_origin)};

# A template copy needs the original database idle: stop, copy, resume.
my $run = pgrepart_background("$dir/run.log", @run);
ok(wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 120, $run), 'the migration is synced')
  or diag(slurp("$dir/run.log"));
kill 'TERM', $run;
is(wait_exit($run), 5, 'stopped to copy the database');
$node->psql('CREATE DATABASE staging TEMPLATE postgres');
$run = pgrepart_background("$dir/run2.log", @run);
ok(wait_for($node, $streaming, 60, $run), 'the original migration streams again') or diag(slurp("$dir/run2.log"));

my $staging = $node->connstr(dbname => 'staging');
my ($rc, $out, $err) = pgrepart('status', '-d', $staging);
like($out, qr/copied from\s+database "postgres" of this server/, 'template copy: status says where the state came from')
  or diag("$out$err");
like($out, qr/slot pgrepart_\d+_1 of database "postgres" \(not this one's\): streaming/,
	'and lists the original\'s slot as the other database\'s');
($rc, $out, $err) = pgrepart('run', '--rehearse', '-d', $staging, @target);
is($rc, 1, 'template copy: run --rehearse refuses the copied state');
like($err, qr/copied from database "postgres" of this server.*\n.*hint: .*pgrepart abort/,
	'naming the original database and what to do');
($rc, $out, $err) = pgrepart('cutover', '-d', $staging, '-t', 'chat_messages');
is($rc, 1, 'template copy: cutover refuses it too');
($rc, $out, $err) = pgrepart('abort', '-d', $staging, '-t', 'chat_messages');
is($rc, 0, 'template copy: abort removes the copy') or diag($err);
like($err, qr/its slot and origin, which are that database's, are left alone/, 'and says what it leaves');
is($node->psql($held), '1,1', "the original's slot and origin are still there");
is($node->psql(q{SELECT count(*) FROM pg_publication}, dbname => 'staging'), 0, "the copy's publication is gone");
ok(wait_for($node, $streaming, 30, $run), 'the original run still streams') or diag(slurp("$dir/run2.log"));

($rc, $out, $err) = pgrepart('run', '--rehearse', '-d', $staging, @target);
is($rc, 0, 'template copy: a fresh rehearsal runs') or diag($err);
is($node->psql(q{SELECT count(*) FROM pg_replication_slots WHERE database = 'staging'}), 0,
	'and leaves no slot on the server');
is($node->psql(q{SELECT to_regnamespace('pgrepart') IS NULL}, dbname => 'staging'), 't', 'nor its state');
is($node->psql($held), '1,1', "the original's slot and origin untouched");

# pg_dump into another server.
my $other = Pgrepart::Cluster->new;
my $bindir = Pgrepart::Cluster::bindir();
($rc, $out, $err) = Pgrepart::Cluster::run_capture(['sh', '-c', "\"$bindir/pg_dump\" -d '" . $node->connstr
	  . "' | \"$bindir/psql\" -X -q -v ON_ERROR_STOP=1 -d '" . $other->connstr . "'"]);
is($rc, 0, 'pg_dump copied the database to another server') or diag($err);
($rc, $out, $err) = pgrepart('status', '-d', $other->connstr);
like($out, qr/copied from\s+another server \(system identifier \d+\)/, 'dump: status says another server');
($rc, $out, $err) = pgrepart('run', '--rehearse', '-d', $other->connstr, @target);
is($rc, 1, 'dump: run refuses the copied state');
like($err, qr/copied from another server/, 'and says so');
($rc, $out, $err) = pgrepart('abort', '-d', $other->connstr, '-t', 'chat_messages');
is($rc, 0, 'dump: abort removes the copy') or diag($err);
$other->stop;

# pg_basebackup: the same server identity and databases, no slots.
my $clone = Pgrepart::Cluster->new(basebackup_of => $node);
($rc, $out, $err) = pgrepart('status', '-d', $clone->connstr);
like($out, qr/slot\s+pgrepart_\d+_1 MISSING: not on this server/, 'physical copy: status shows the slot missing')
  or diag("$out$err");
($rc, $out, $err) = pgrepart('run', '--rehearse', '-d', $clone->connstr, @target);
is($rc, 1, 'physical copy: run refuses');
like($err, qr/its replication slot "pgrepart_\d+_1" is not on this server.*\n.*hint: A physical copy/,
	'and says why, and what to do');
($rc, $out, $err) = pgrepart('abort', '-d', $clone->connstr, '-t', 'chat_messages');
is($rc, 0, 'physical copy: abort removes the copy') or diag($err);
$clone->stop;

# The original swaps with every row, writes made meanwhile included.
$node->psql(q{UPDATE chat_messages SET tokens_used = -7 WHERE id IN (SELECT id FROM chat_messages LIMIT 50)});
($rc, $out, $err) = pgrepart('cutover', '-d', $node->connstr, '-t', 'chat_messages');
is($rc, 0, 'the original migration cuts over') or diag($err);
is(wait_exit($run), 0, 'and its run ends') or diag(slurp("$dir/run2.log"));
my ($missing, $extra) = compare_tables($node, 'chat_messages_old', 'chat_messages');
is("$missing/$extra", '0/0', 'every row is in the new table');

done_testing();
