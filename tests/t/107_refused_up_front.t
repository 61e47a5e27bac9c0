# What cannot be migrated is refused before anything is created, with the
# reason: by plan (exit 4, each blocking check) and by run alike (exit 4,
# each blocking check named on standard error, nothing left behind); a bad
# --interval is a usage error (exit 2); a column added during the copy is
# named as added by every run that meets it.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(q{CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, note text);
	INSERT INTO events SELECT g, now() - g * interval '1 day', 'n' FROM generate_series(1, 1000) g;
	CREATE ROLE nobody_much LOGIN});
my $nothing_made = q{SELECT (to_regnamespace('pgrepart') IS NULL) || ',' ||
	(SELECT count(*) FROM pg_publication) || ',' || (SELECT count(*) FROM pg_replication_slots) || ',' ||
	(SELECT count(*) FROM pg_class WHERE relname LIKE '%pgrepart%')};

# A role with none of the privileges: plan and run give the same blocking
# checks, and run creates nothing (not even its state schema).
my $weak = $node->connstr(user => 'nobody_much');
my ($rc, $out, $err) = pgrepart('plan', '-d', $weak, '-t', 'events', '-k', 'at');
is($rc, 4, 'plan by a role without privileges: exit 4');
my @plan_blocks = sort $out =~ /^\s+block\s+(\S+)/mg;
cmp_ok(scalar @plan_blocks, '>=', 5, 'plan lists its blocking checks') or diag($out);
($rc, $out, $err) = pgrepart('run', '-d', $weak, '-t', 'events', '-k', 'at');
is($rc, 4, 'run by the same role: exit 4, not a failure half-way') or diag($err);
my @run_blocks = sort $err =~ /error: block (\S+):/g;
is_deeply(\@run_blocks, \@plan_blocks, 'run names the same blocking checks as plan') or diag($err);
like($err, qr/cannot be migrated: \d+ checks block it/, 'after a line that counts them');
unlike($err, qr/WARNING|permission denied/, 'no server warning, no permission error');
is($node->psql($nothing_made), 'true,0,0,0', 'nothing was created');

# A column binary COPY cannot carry: blocked up front, by name.
$node->psql(q{CREATE TABLE grants (id bigint PRIMARY KEY, at timestamptz NOT NULL, perms aclitem[]);
	INSERT INTO grants SELECT g, now() - g * interval '1 day', '{postgres=r/postgres}'
	FROM generate_series(1, 100) g});
($rc, $out, $err) = pgrepart('plan', '-d', $node->connstr, '-t', 'grants', '-k', 'at');
is($rc, 4, 'an aclitem[] column: plan blocks');
like($out, qr/block\s+column_type\s+column "perms" has type aclitem\[\], which has no binary send or receive/,
	'naming the column and its type') or diag($out);
($rc, $out, $err) = pgrepart('run', '-d', $node->connstr, '-t', 'grants', '-k', 'at');
is($rc, 4, 'and run refuses it before the copy') or diag($err);
is($node->psql($nothing_made), 'true,0,0,0', 'nothing was created');

# REPLICA IDENTITY FULL without a key: blocked for the real reason.
$node->psql(q{CREATE TABLE keyless (id bigint NOT NULL, at timestamptz NOT NULL);
	ALTER TABLE keyless REPLICA IDENTITY FULL; INSERT INTO keyless VALUES (1, now())});
($rc, $out, $err) = pgrepart('plan', '-d', $node->connstr, '-t', 'keyless', '-k', 'at');
is($rc, 4, 'FULL identity without a key: plan blocks');
like($out, qr/block\s+primary_key\s+table has no primary key: pgrepart copies the table in key ranges/,
	'saying pgrepart needs a key') or diag($out);
unlike($out, qr/would make UPDATE and DELETE on it fail/, 'not that publishing it would break writes');

# The plan says how the copy will read: in chunks under short snapshots for
# any key with a btree order, text under a collation as much as bigint.
$node->psql(q{CREATE TABLE texts (id text COLLATE "en-x-icu" PRIMARY KEY, at timestamptz NOT NULL);
	INSERT INTO texts VALUES ('msg_01', now())});
($rc, $out, $err) = pgrepart('plan', '-d', $node->connstr, '-t', 'events', '-k', 'at');
like($out, qr/pass\s+copy\s+copy order: physical: the copy reads ranges of heap pages, each page once, each range under its own short snapshot/,
	'a bigint key: copied in ranges of pages') or diag($out);
($rc, $out, $err) = pgrepart('plan', '-d', $node->connstr, '-t', 'texts', '-k', 'at');
like($out, qr/pass\s+copy\s+copy order: physical: the copy reads ranges of heap pages, each page once, each range under its own short snapshot/,
	'a text key too') or diag($out);

# A bad --interval is a usage error, for plan and run.
for my $interval ('banana', '-1 day', '1 month 2 days')
{
	($rc, $out, $err) = pgrepart('plan', '-d', $node->connstr, '-t', 'events', '-k', 'at', '--interval', $interval);
	is($rc, 2, "plan --interval '$interval': usage error") or diag($err);
	($rc, $out, $err) = pgrepart('run', '-d', $node->connstr, '-t', 'events', '-k', 'at', '--interval', $interval);
	is($rc, 2, "run --interval '$interval': usage error") or diag($err);
	like($err, qr/hint: /, 'with a hint');
}
is($node->psql($nothing_made), 'true,0,0,0', 'nothing was created');

# wal_level=replica: blocked, and nothing is left behind, no stray warning.
my $replica = Pgrepart::Cluster->new(wal_level => 'replica');
$replica->psql(q{CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL);
	INSERT INTO events SELECT g, now() - g * interval '1 day' FROM generate_series(1, 10) g});
($rc, $out, $err) = pgrepart('run', '-d', $replica->connstr, '-t', 'events', '-k', 'at');
is($rc, 4, 'wal_level=replica: run blocks');
like($err, qr/error: block wal_level:/, 'on wal_level');
unlike($err, qr/WARNING/, 'without a stray server warning') or diag($err);
is($replica->psql(q{SELECT to_regnamespace('pgrepart') IS NULL}), 't', 'and leaves no pgrepart schema');
$replica->stop;

# A column added while the copy runs (or, on a slow machine, soon after): the
# run stops naming it as added, and so does the next run of the same command.
{
	local $ENV{PGREPART_FAULT_PAUSE} = 'copy';
	local $ENV{PGREPART_FAULT_PAUSE_MS} = '2000';
	my $run = pgrepart_background("$dir/added1.log", 'run', '--cutover', 'manual', '-d', $node->connstr,
		'-t', 'events', '-k', 'at', '--chunk-rows', '500');
	ok(wait_for_text("$dir/added1.log", qr/pausing at fault point copy/, 60, $run), 'the copy is under way')
	  or diag(slurp("$dir/added1.log"));
	$node->psql(q{UPDATE events SET note = 'before' WHERE id = 2;
		ALTER TABLE events ADD COLUMN extra int; UPDATE events SET extra = 1 WHERE id = 1});
	is(wait_exit($run), 1, 'the run stops');
	like(slurp("$dir/added1.log"), qr/column "extra" was added/, 'naming the column as added')
	  or diag(slurp("$dir/added1.log"));
}
($rc, $out, $err) = pgrepart('run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'events', '-k', 'at',
	'--chunk-rows', '500');
is($rc, 1, 'the same command again stops too');
like($err, qr/column "extra" was added/, 'and names the column as added again, not as dropped') or diag($err);

done_testing();
