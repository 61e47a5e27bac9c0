# pgrepart plan on the seed's chat_messages table: the --sql output, run by
# psql, creates the shadow the user's rules ask for; asserted from the
# catalogs and by routing every existing row, not from the text.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
$node->psql(fixture('chat_messages.sql'), vars => { rows => 20000 });
my @conn = ('-d', $node->connstr);

# What plan must not change: relations, slots, publications, origins.
my $snapshot_sql = q{
	SELECT (SELECT count(*) FROM pg_class) || ',' ||
	       (SELECT count(*) FROM pg_replication_slots) || ',' ||
	       (SELECT count(*) FROM pg_publication) || ',' ||
	       (SELECT count(*) FROM pg_replication_origin)};
my $before = $node->psql($snapshot_sql);

my ($rc, $out, $err) = pgrepart('plan', @conn, '-t', 'chat_messages', '-k', 'created_at');
is($rc, 0, 'plan exits 0 for the seed table') or diag($err);
like($out, qr/^  warn\s+unique_widened\s+unique constraint "chat_messages_message_id_key" \(message_id\) becomes \(message_id, created_at\)/m,
	'the widened unique constraint is a warning saying what is weakened');
like($out, qr/^  pass\s+incoming_foreign_key/m, 'no incoming foreign keys');
like($out, qr/^  pass\s+wal_level/m, 'wal_level passes');
is($node->psql($snapshot_sql), $before, 'plan changed nothing');

($rc, $out, $err) = pgrepart('plan', @conn, '-t', 'public.chat_messages', '-k', 'created_at', '--sql');
is($rc, 0, 'plan --sql exits 0');
unlike($out, qr/^(?!--|BEGIN|COMMIT|CREATE|ALTER|COMMENT|\)|\s)/m, '--sql prints only SQL');
is($node->psql($snapshot_sql), $before, 'plan --sql changed nothing');
my ($prc, undef, $perr) = $node->psql($out, allow_fail => 1);
is($prc, 0, 'the DDL runs in psql') or diag($perr);

my $shadow = q{'public.chat_messages_pgrepart'::regclass};
is($node->psql(qq{SELECT partstrat::text || ':' || a.attname FROM pg_partitioned_table p
	JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
	WHERE p.partrelid = $shadow}), 'r:created_at', 'partitioned by range on created_at');

my $key_columns = sub {
	my ($type) = @_;
	return $node->psql(qq{SELECT string_agg(a.attname, ',' ORDER BY k.ord)
		FROM pg_constraint c, unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
		JOIN pg_attribute a ON a.attnum = k.attnum
		WHERE c.conrelid = $shadow AND a.attrelid = c.conrelid AND c.contype = '$type'
		GROUP BY c.oid});
};
is($key_columns->('p'), 'id,created_at', 'primary key (id, created_at)');
is($key_columns->('u'), 'message_id,created_at', 'unique (message_id, created_at)');

is($node->psql(qq{SELECT string_agg(pg_get_indexdef(i.indexrelid, 1, false), ',' ORDER BY 1)
	FROM pg_index i WHERE i.indrelid = $shadow AND NOT i.indisunique}),
	'created_at,session_id,user_id', 'the three indexes');

is($node->psql(qq{SELECT string_agg(confrelid::regclass::text, ',' ORDER BY 1)
	FROM pg_constraint WHERE conrelid = $shadow AND contype = 'f'}),
	'tasks,users', 'foreign keys to users and tasks');

is($node->psql(q{SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod)
		|| CASE WHEN attnotnull THEN '!' ELSE '' END, ',' ORDER BY attnum)
	FROM pg_attribute WHERE attrelid = 'public.chat_messages'::regclass AND attnum > 0}),
	$node->psql(qq{SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod)
		|| CASE WHEN attnotnull THEN '!' ELSE '' END, ',' ORDER BY attnum)
	FROM pg_attribute WHERE attrelid = $shadow AND attnum > 0}),
	'same columns, types and NOT NULLs in the same order');

is($node->psql(qq{SELECT min(c.relname) || '..' || max(c.relname) || ' ' || count(*)
	FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $shadow
	AND c.relname <> 'chat_messages_default'}),
	$node->psql(q{SELECT 'chat_messages_2024_q1..chat_messages_' ||
		to_char(date_trunc('quarter', now()) + interval '12 months', 'YYYY"_q"Q') || ' ' ||
		(SELECT count(*) FROM generate_series(timestamp '2024-01-01',
			date_trunc('quarter', greatest(now()::timestamp, max(created_at))) + interval '12 months',
			interval '3 months')) FROM chat_messages}),
	'quarterly partitions named as the seed does, from the oldest row to four quarters ahead');
is($node->psql(qq{SELECT count(*) FROM pg_partitioned_table WHERE partrelid = $shadow
	AND partdefid = 'chat_messages_default'::regclass}), 1, 'and a DEFAULT partition, by default');

# Every existing row routes to a partition: the copy would fail otherwise.
my $rows = $node->psql(q{SELECT count(*) FROM chat_messages});
is($node->psql(q{BEGIN; INSERT INTO chat_messages_pgrepart SELECT * FROM chat_messages;
	SELECT count(*) FROM chat_messages_pgrepart; ROLLBACK;}), $rows,
	"the partitions' union covers all $rows rows");

# Connections: a URI, and nothing at all (libpq's PG* environment variables).
my $uri = sprintf('postgresql://postgres@127.0.0.1:%d/postgres?application_name=plan_test', $node->port);
($rc, $out, $err) = pgrepart('plan', '-d', $uri, '-t', 'chat_messages', '-k', 'created_at', '--sql');
is($rc, 4, 'a URI connects (the shadow now exists, so the plan is blocked)');
like($err, qr/shadow table "chat_messages_pgrepart" already exists/, 'and it read the same table');
{
	local $ENV{PGHOST} = '127.0.0.1';
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGUSER} = 'postgres';
	local $ENV{PGDATABASE} = 'postgres';
	($rc, $out, $err) = pgrepart('plan', '-t', 'chat_messages', '-k', 'created_at', '-v');
	is($rc, 4, 'without -d the PG* environment variables connect');
	like($err, qr/debug: connected to .*PostgreSQL 15/, '-v shows debug messages');
	($rc, $out, $err) = pgrepart('plan', '-t', 'chat_messages', '-k', 'created_at', '-q');
	unlike($err, qr/debug:|info:|warning:/, '-q leaves errors only');
	like($err, qr/error:.*\n.*hint:/, 'an error keeps its hint');
}

# --json: one object with the same plan.
$node->psql(q{DROP TABLE chat_messages_pgrepart});
($rc, $out, $err) = pgrepart('plan', @conn, '-t', 'chat_messages', '-k', 'created_at', '--json',
	'--interval', '1 month', '--premake', '2', '--default-partition', '--rate', '1000');
is($rc, 0, 'plan --json exits 0');
my $plan = eval { decode_json($out) };
ok($plan, 'plan --json prints one JSON object') or diag($@);
is($plan->{shadow}, 'chat_messages_pgrepart', 'json names the shadow');
is_deeply($plan->{table}{key}, ['id'], 'json gives the key');
is($plan->{partitioning}{partitions}[0]{name}, 'chat_messages_2024_01', 'monthly names');
is($plan->{partitioning}{partitions}[-1]{name}, 'chat_messages_default', 'DEFAULT partition last');
ok($plan->{partitioning}{partitions}[-1]{default}, 'and marked as default');
is(scalar(grep { $_->{level} eq 'warn' && $_->{check} eq 'unique_widened' } @{ $plan->{findings} }),
	2, 'json lists both widened keys');
ok(!$plan->{blocked}, 'json says it is not blocked');
my $t = $plan->{table};
is($t->{copy_estimate_seconds}, $t->{estimated_rows} / 1000, 'the copy takes rows / --rate');
my $rows_bytes = $t->{total_bytes} - $t->{index_bytes};
is($t->{wal_estimate_bytes}, $rows_bytes + int($rows_bytes / 5) + $t->{index_bytes},
	'the WAL estimate: 1.2 times heap and TOAST, and the indexes');
my ($ddl_rc, undef, $ddl_err) = $node->psql(join("\n", map { $_->{sql} } @{ $plan->{ddl} }),
	allow_fail => 1);
is($ddl_rc, 0, 'the JSON DDL runs too') or diag($ddl_err);
is($node->psql(q{SELECT count(*) FROM pg_inherits
	WHERE inhparent = 'chat_messages_pgrepart'::regclass}),
	scalar(@{ $plan->{partitioning}{partitions} }), 'one table per listed partition');

# A second plan finds the names now taken.
($rc, $out, $err) = pgrepart('plan', @conn, '-t', 'chat_messages', '-k', 'created_at');
is($rc, 4, 'a plan whose shadow exists is blocked');
like($out, qr/block\s+name_clash\s+shadow table "chat_messages_pgrepart" already exists/,
	'the clash names the shadow');
like($err, qr/error: table "public.chat_messages" cannot be migrated: shadow table/, 'one-line error');
like($err, qr/hint: .*pgrepart abort/, 'with a hint');

done_testing();
