# pgrepart run, start to swap, on tables whose names need quoting, under a
# live load: mixed case, spaces, quotes and non-ASCII in the schema, table and
# column names (an identity key, a timestamptz partition column named
# "Created At", a generated column, a partial unique index), and a table whose
# name would inject SQL if it were ever spliced unquoted, and reserved words
# for the table, key and partition column; a composite key with a date
# partition column.  Every row ends equal.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
$node->psql(fixture('awkward_names.sql'));
my $dir = tempdir(CLEANUP => 1);

my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, '-t', '"Ops Data"."Event Log"',
	'-k', '"Created At"', '--interval', '1 month', '--batch-transactions', '20');
my $load = pgbench_background($node, "$dir/pgbench.log", 'awkward.pgbench', '-c', '2', '-T', '6');
my $run = pgrepart_background("$dir/run.log", @run);
ok(wait_for($node, q{SELECT count(*) = 1 FROM pgrepart.migration WHERE phase IN ('streaming', 'synced')},
	120, $run), 'the run reached streaming under the load') or diag(slurp("$dir/run.log"));
is(wait_exit($load), 0, 'pgbench ran the load') or diag(slurp("$dir/pgbench.log"));
my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn), 120, $run), "the apply reached $lsn") or diag(slurp("$dir/run.log"));
my ($missing, $extra) = compare_tables($node, '"Ops Data"."Event Log"', '"Ops Data"."Event Log_pgrepart"');
is("$missing/$extra", '0/0', 'every row of the shadow equals the source\'s');
ok($node->psql(q{SELECT count(*) FROM pg_inherits WHERE inhparent = '"Ops Data"."Event Log_pgrepart"'::regclass}) > 3,
	'rows moved back in time got partitions of their own');

my ($rc, $out, $err) = pgrepart('cutover', '-d', $node->connstr, '-t', '"Ops Data"."Event Log"');
is($rc, 0, 'cutover swaps') or diag($err);
is(wait_exit($run), 0, 'the run exits 0 after the swap') or diag(slurp("$dir/run.log"));
unlike(slurp("$dir/run.log"), qr/error:/, 'no errors');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = '"Ops Data"."Event Log"'::regclass}), 'p',
	'"Ops Data"."Event Log" is now the partitioned table');
is($node->psql(q{SELECT count(*) FROM "Ops Data"."Event Log" WHERE doubled <> "Id" * 2}), 0,
	'the generated column holds what it computes');
# The shadow's identity took the source's values by default; from the swap
# on it generates always again, continuing from the old sequence.
is($node->psql(q{SELECT attidentity FROM pg_attribute
	WHERE attrelid = '"Ops Data"."Event Log"'::regclass AND attname = 'Id'}), 'a', 'the key is GENERATED ALWAYS again');
my ($irc, undef, $ierr) = $node->psql(q{INSERT INTO "Ops Data"."Event Log" ("Id", "Created At") VALUES (1, now())},
	allow_fail => 1);
like($ierr, qr/cannot insert a non-DEFAULT value into column "Id"/, 'and refuses a value as the source did');
ok($node->psql(q{INSERT INTO "Ops Data"."Event Log" ("Created At") VALUES (now()) RETURNING "Id"})
	> $node->psql(q{SELECT max("Id") FROM "Ops Data"."Event Log_old"}), 'a new row takes a key past every old one');

# The name that would inject: run to the swap, the victim table survives.
my $nasty = '"x""; DROP TABLE victim; --"';
$node->psql(qq{INSERT INTO $nasty SELECT g, timestamp '2026-03-01' + g * interval '1 day' FROM generate_series(100, 140) g});
$run = pgrepart_background("$dir/nasty.log", 'run', '-d', $node->connstr, '-t', $nasty, '-k', 'ts',
	'--interval', '1 month');
ok(wait_for($node, q{SELECT count(*) = 1 FROM pgrepart.migration WHERE phase IN ('streaming', 'synced')
	AND source_table LIKE 'x%'}, 120, $run), 'the run on the injecting name streams') or diag(slurp("$dir/nasty.log"));
$node->psql(qq{UPDATE $nasty SET ts = ts - interval '90 days' WHERE id % 3 = 0;
	DELETE FROM $nasty WHERE id % 5 = 0;
	INSERT INTO $nasty VALUES (1000, '2026-06-01')});
is(wait_exit($run), 0, 'it migrates and swaps') or diag(slurp("$dir/nasty.log"));
is($node->psql(q{SELECT count(*) FROM pg_class WHERE relname = 'victim'}), 1, 'the victim table is still there');
is($node->psql(qq{SELECT relkind FROM pg_class WHERE oid = '$nasty'::regclass}), 'p', 'and the table is partitioned');
# 50 + 41 rows, 10 + 9 deleted, one inserted.
is($node->psql(qq{SELECT count(*) FROM $nasty}), 73, 'with every row the changes left');
($missing, $extra) = compare_tables($node, $nasty, '"x""; DROP TABLE victim; --_old"');
is("$missing/$extra", '0/0', 'equal to the table it replaced');

# Reserved words: a table "order" with a text key and an integer partition
# column "user"; updates move rows between partitions and past the last one.
$run = pgrepart_background("$dir/order.log", 'run', '-d', $node->connstr, '-t', 'public."order"',
	'-k', '"user"', '--interval', '1000');
ok(wait_for($node, q{SELECT count(*) = 1 FROM pgrepart.migration WHERE phase IN ('streaming', 'synced')
	AND source_table = 'order'}, 120, $run), 'the run on "order" streams') or diag(slurp("$dir/order.log"));
$node->psql(q{UPDATE "order" SET "user" = "user" + 2500 WHERE code LIKE 'c1%';
	DELETE FROM "order" WHERE code LIKE 'c2%';
	UPDATE "order" SET code = code || 'x', note = 'k' WHERE code LIKE 'c3%'});
is(wait_exit($run), 0, 'it migrates and swaps') or diag(slurp("$dir/order.log"));
($missing, $extra) = compare_tables($node, 'public."order"', 'public.order_old');
is("$missing/$extra", '0/0', '"order" equals the table it replaced');

# A composite key and a date partition column: rows move across months, and
# past both ends of the partitions (new partitions for a date, mid-stream).
$run = pgrepart_background("$dir/ledger.log", 'run', '-d', $node->connstr, '-t', 'app.ledger',
	'-k', 'booked_on', '--interval', '1 month', '--no-default-partition');
ok(wait_for($node, q{SELECT count(*) = 1 FROM pgrepart.migration WHERE phase IN ('streaming', 'synced')
	AND source_table = 'ledger'}, 120, $run), 'the run on app.ledger streams') or diag(slurp("$dir/ledger.log"));
$node->psql(q{UPDATE app.ledger SET booked_on = booked_on + 40, amount = amount + 1 WHERE seq % 4 = 0;
	UPDATE app.ledger SET booked_on = date '2023-02-01' + seq::int WHERE seq % 10 = 1;
	UPDATE app.ledger SET seq = seq + 10000 WHERE seq % 10 = 2;
	DELETE FROM app.ledger WHERE seq % 10 = 3;
	INSERT INTO app.ledger VALUES (1, 50000, date '2027-12-31', 9.99)});
is(wait_exit($run), 0, 'it migrates and swaps') or diag(slurp("$dir/ledger.log"));
like(slurp("$dir/ledger.log"), qr/created partition "app\.ledger_2027_12" for a row beyond/,
	'a partition was made for a date past the last one');
($missing, $extra) = compare_tables($node, 'app.ledger', 'app.ledger_old');
is("$missing/$extra", '0/0', 'app.ledger equals the table it replaced');

done_testing();
