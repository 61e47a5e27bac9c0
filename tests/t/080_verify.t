# pgrepart verify: equal tables, every kind of difference, and the exact
# keys and columns named for each, from the JSON report.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
$node->psql(fixture('chat_messages.sql'), vars => { rows => 30000 });
my @conn = ('-d', $node->connstr);

# A plain copy, a partitioned copy (the plan's shadow) and a copy whose
# columns are in another order.
$node->psql(q{
	CREATE TABLE copy_plain (LIKE chat_messages INCLUDING ALL);
	INSERT INTO copy_plain SELECT * FROM chat_messages;
});
my ($rc, $out, $err) = pgrepart('plan', @conn, '-t', 'chat_messages', '-k', 'created_at', '--sql');
is($rc, 0, 'plan --sql') or diag($err);
$node->psql($out);
$node->psql(q{
	INSERT INTO chat_messages_pgrepart SELECT * FROM chat_messages;
	CREATE TABLE copy_reordered AS
	  SELECT created_at, id, content, user_id, task_id, session_id, message_id, role, actions,
	         parse_degraded, tokens_used, model_name, updated_at, deleted_at FROM chat_messages;
	ALTER TABLE copy_reordered ADD PRIMARY KEY (id);
});

# verify(@args) -> (exit code, decoded JSON report, stderr)
sub verify
{
	my ($rc, $out, $err) = pgrepart('verify', '--json', @_);
	my $report = eval { decode_json($out) };
	return ($rc, $report, $err);
}

sub keys_of
{
	my ($report, $kind) = @_;
	my @keys;
	for my $row (grep { $_->{difference} eq $kind } @{ $report->{rows} })
	{
		push @keys, join '/', map { $row->{key}{$_} } sort keys %{ $row->{key} };
	}
	return join ',', sort @keys;
}

for my $target (qw(copy_plain chat_messages_pgrepart copy_reordered))
{
	my ($vrc, $r, $verr) = verify(@conn, '--source', 'chat_messages', '--target', $target);
	is($vrc, 0, "equal: chat_messages and $target") or diag($verr);
	is($r->{source_rows}, 30000, "$target: every source row read");
	is($r->{target_rows}, 30000, "$target: every target row read");
	ok($r->{equal}, "$target: the report says equal");
}

# Text output says equal and exits 0.
($rc, $out, $err) = pgrepart('verify', @conn, '--source', 'chat_messages', '--target', 'copy_plain');
is($rc, 0, 'text report exits 0');
like($out, qr/equal/, 'text report says equal');

# Differences in the partitioned copy: a changed value, a missing row, an
# extra row, NULL against an empty string, a row moved to another partition.
my @ids = split /\n/, $node->psql(q{SELECT id FROM chat_messages ORDER BY id OFFSET 100 LIMIT 4});
# The row that moves: from 2025 or later back into 2024's first partition.
push @ids, $node->psql(q{SELECT id FROM chat_messages WHERE created_at >= '2025-01-01'
	AND id NOT IN (SELECT id FROM chat_messages ORDER BY id OFFSET 100 LIMIT 4) ORDER BY id LIMIT 1});
$node->psql(qq{
	UPDATE chat_messages_pgrepart SET content = content || 'x' WHERE id = '$ids[0]';
	DELETE FROM chat_messages_pgrepart WHERE id = '$ids[1]';
	INSERT INTO chat_messages_pgrepart SELECT user_id, task_id, session_id, 'extra', role, content,
	  actions, parse_degraded, tokens_used, model_name, '00000000-0000-0000-0000-000000000001',
	  created_at, updated_at, deleted_at FROM chat_messages WHERE id = '$ids[2]';
	UPDATE chat_messages SET model_name = '' WHERE id = '$ids[3]';
	UPDATE chat_messages_pgrepart SET model_name = NULL WHERE id = '$ids[3]';
	UPDATE chat_messages_pgrepart SET created_at = timestamp '2024-02-01',
	  tokens_used = coalesce(tokens_used, 0) + 1 WHERE id = '$ids[4]';
});
for my $chunk (50000, 7000)
{
	my ($vrc, $r, $verr) = verify(@conn, '--source', 'chat_messages', '--target',
		'chat_messages_pgrepart', '--chunk-rows', $chunk);
	is($vrc, 3, "differences exit 3 (chunks of $chunk)") or diag($verr);
	ok(!$r->{equal}, 'the report says different');
	is(keys_of($r, 'missing'), $ids[1], 'the missing row is named');
	is(keys_of($r, 'extra'), '00000000-0000-0000-0000-000000000001', 'the extra row is named');
	is(keys_of($r, 'different'), join(',', sort @ids[0, 3, 4]), 'the three different rows are named');
	my %cols = map { $_->{key}{id} => join(',', @{ $_->{columns} }) }
	  grep { $_->{difference} eq 'different' } @{ $r->{rows} };
	is($cols{ $ids[0] }, 'content', 'a changed value names its column');
	is($cols{ $ids[3] }, 'model_name', 'NULL is not the empty string');
	is($cols{ $ids[4] }, 'tokens_used,created_at', 'the moved row names both columns');
	is_deeply($r->{row_differences},
		{ missing => 1, extra => 1, different => 3, duplicate_in_source => 0, duplicate_in_target => 0 },
		'counts by kind');
	cmp_ok($r->{buckets_different}, '>=', 1, 'a key bucket differed');
	is($r->{passes}, 2, 'one pass to find the buckets, one to name the rows');
}

# The same in text, with a cap on the rows listed.
($rc, $out, $err) = pgrepart('verify', @conn, '--source', 'chat_messages', '--target',
	'chat_messages_pgrepart', '--max-differences', '1');
is($rc, 3, 'text report exits 3');
like($out, qr/DIFFERENT/, 'text report says different');
like($out, qr/4 more rows differ/, 'the rows not listed are counted');

# A column whose type differs is reported, not compared; one only in the target too.
$node->psql(q{
	ALTER TABLE copy_plain ALTER COLUMN tokens_used TYPE bigint;
	ALTER TABLE copy_plain ADD COLUMN note text;
});
my ($vrc, $r, $verr) = verify(@conn, '--source', 'chat_messages', '--target', 'copy_plain');
is($vrc, 3, 'a type difference exits 3') or diag($verr);
like(join("\n", @{ $r->{schema_differences} }), qr/"tokens_used" has type integer in the source and bigint/,
	'the type difference is reported');
like(join("\n", @{ $r->{schema_differences} }), qr/"note" is only in the target/,
	'the extra column is reported');
# The source's model_name '' (set above) is the one row difference left.
is(keys_of($r, 'different'), $ids[3], 'the other columns are still compared');

# Composite keys and names that need quoting, with --key and --where.
$node->psql(q{
	CREATE SCHEMA "Ops Data";
	CREATE TABLE "Ops Data"."Event Log" ("Tenant" int, "select" bigint, "Payload" text,
	  PRIMARY KEY ("Tenant", "select"));
	INSERT INTO "Ops Data"."Event Log" SELECT g % 7, g, md5(g::text) FROM generate_series(1, 20000) g;
	CREATE TABLE "Ops Data"."Event Log 2" (LIKE "Ops Data"."Event Log" INCLUDING ALL)
	  PARTITION BY LIST ("Tenant");
	DO $$ BEGIN FOR i IN 0..6 LOOP
	  EXECUTE format('CREATE TABLE "Ops Data".el_%s PARTITION OF "Ops Data"."Event Log 2" FOR VALUES IN (%s)', i, i);
	END LOOP; END $$;
	INSERT INTO "Ops Data"."Event Log 2" SELECT * FROM "Ops Data"."Event Log";
	UPDATE "Ops Data"."Event Log 2" SET "Payload" = 'changed' WHERE "select" = 777;
});
($vrc, $r, $verr) = verify(@conn, '--source', '"Ops Data"."Event Log"', '--target',
	'"Ops Data"."Event Log 2"', '--chunk-rows', '3000');
is($vrc, 3, 'composite key: the difference is found') or diag($verr);
is(keys_of($r, 'different'), '0/777', 'composite key: the row is named by both columns');
($vrc, $r, $verr) = verify(@conn, '--source', '"Ops Data"."Event Log"', '--target',
	'"Ops Data"."Event Log 2"', '--where', '"select" <> 777');
is($vrc, 0, '--where leaves the different row out') or diag($verr);
is($r->{source_rows}, 19999, '--where: one row fewer');
($vrc, $r, $verr) = verify(@conn, '--source', '"Ops Data"."Event Log"', '--target',
	'"Ops Data"."Event Log 2"', '--key', '"select"');
is($vrc, 3, '--key with a reserved word') or diag($verr);
is(keys_of($r, 'different'), '777', '--key: the row is named by the given key');

# Two databases.
$node->psql('CREATE DATABASE other');
$node->psql(q{CREATE TABLE t (id int PRIMARY KEY, v text);
	INSERT INTO t SELECT g, g::text FROM generate_series(1, 1000) g}, dbname => 'postgres');
$node->psql(q{CREATE TABLE t (v text, id int PRIMARY KEY);
	INSERT INTO t SELECT g::text, g FROM generate_series(1, 1000) g WHERE g <> 500}, dbname => 'other');
($vrc, $r, $verr) = verify('-d', $node->connstr(dbname => 'postgres'), '--target-dbname',
	$node->connstr(dbname => 'other'), '--source', 't', '--target', 't');
is($vrc, 3, 'two databases: the difference is found') or diag($verr);
is(keys_of($r, 'missing'), '500', 'two databases: the missing row is named');

# Errors: no key, a nullable --key, a missing table; each a clear message.
$node->psql('CREATE TABLE nokey (a int, b int)');
($rc, $out, $err) = pgrepart('verify', @conn, '--source', 'nokey', '--target', 'nokey');
is($rc, 1, 'no primary key: exit 1');
like($err, qr/has no primary key.*\n.*hint: .*--key/, 'no primary key: says to use --key');
($rc, $out, $err) = pgrepart('verify', @conn, '--source', 'nokey', '--target', 'nokey', '--key', 'a');
is($rc, 1, 'nullable key: exit 1');
like($err, qr/key column "a" .* is nullable/, 'nullable key: named');
$node->psql(q{CREATE TABLE ck1 (k text COLLATE "C" PRIMARY KEY); CREATE TABLE ck2 (k text PRIMARY KEY)});
($rc, $out, $err) = pgrepart('verify', @conn, '--source', 'ck1', '--target', 'ck2');
is($rc, 1, 'keys of different collations: exit 1');
like($err, qr/key column "k" has collation pg_catalog\."C" in the source and default in the target/,
	'keys of different collations: both named');
($rc, $out, $err) = pgrepart('verify', @conn, '--source', 'chat_messages', '--target', 'nope');
is($rc, 1, 'missing table: exit 1');
like($err, qr/"nope"/, 'missing table: named');
($rc, $out, $err) = pgrepart('verify', @conn, '--source', 'chat_messages');
is($rc, 2, 'no --target: usage error');
($rc, $out, $err) = pgrepart('verify', @conn, '--source', 'a', '--target', 'b', '--key', 'x,');
is($rc, 2, 'a bad --key: usage error');

done_testing();
