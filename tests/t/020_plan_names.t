# pgrepart plan on tables whose names need quoting, with composite and
# non-uuid keys: the DDL runs, the keys are widened, and every row routes.
use strict;
use warnings;
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
$node->psql(fixture('awkward_names.sql'));
my @conn = ('-d', $node->connstr);

# Key columns of a relation's primary key, comma-separated.
sub pk_columns
{
	my ($rel) = @_;
	return $node->psql(qq{SELECT string_agg(a.attname, ',' ORDER BY k.ord)
		FROM pg_constraint c, unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
		JOIN pg_attribute a ON a.attnum = k.attnum
		WHERE c.conrelid = '$rel'::regclass AND a.attrelid = c.conrelid AND c.contype = 'p'});
}

# Plan, run the DDL, and check every source row routes to a partition.
# $columns lists the insertable columns (generated ones left out).
sub plan_and_apply
{
	my (%t) = @_;
	my ($rc, $out, $err) = pgrepart('plan', @conn, '-t', $t{table}, '-k', $t{key},
		@{ $t{options} // [] }, '--sql');
	is($rc, 0, "plan $t{table} exits 0") or diag($err);
	my ($prc, undef, $perr) = $node->psql($out, allow_fail => 1);
	is($prc, 0, "its DDL runs") or diag("$perr\n$out");
	my $rows = $node->psql("SELECT count(*) FROM $t{sql_source}");
	my ($irc, $count, $ierr) = $node->psql(qq{BEGIN;
		INSERT INTO $t{sql_shadow} ($t{columns}) OVERRIDING SYSTEM VALUE
		SELECT $t{columns} FROM $t{sql_source};
		SELECT count(*) FROM $t{sql_shadow}; ROLLBACK;}, allow_fail => 1);
	chomp $count if defined $count;
	is($count, $rows, "all $rows rows of $t{table} route to a partition") or diag($ierr);
	return $out;
}

my $ddl = plan_and_apply(
	table => '"Ops Data"."Event Log"',
	key => '"Created At"',
	options => [ '--interval', '1 month' ],
	sql_source => '"Ops Data"."Event Log"',
	sql_shadow => '"Ops Data"."Event Log_pgrepart"',
	columns => q{"Id", "Created At", "select", "naïve ""quoted"" col", payload});
is(pk_columns('"Ops Data"."Event Log_pgrepart"'), 'Id,Created At', 'mixed-case key widened');
is($node->psql(q{SELECT pg_get_indexdef(indexrelid) FROM pg_index
	WHERE indrelid = '"Ops Data"."Event Log_pgrepart"'::regclass AND indisunique AND NOT indisprimary}),
	q{CREATE UNIQUE INDEX "Event Log naïve_pgrepart" ON ONLY "Ops Data"."Event Log_pgrepart" USING btree ("naïve ""quoted"" col", "Created At") WHERE ("select" IS NOT NULL)},
	'partial unique index widened, predicate kept');
like($node->psql(q{SELECT pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
	WHERE indrelid = '"Ops Data"."Event Log_pgrepart"'::regclass AND c.relname LIKE 'lower%'}),
	qr/USING btree \(lower\("select"\) DESC NULLS LAST\)/, 'expression index recreated');
is($node->psql(q{SELECT obj_description('"Ops Data"."Event Log_pgrepart"'::regclass, 'pg_class') || '|' ||
	col_description('"Ops Data"."Event Log_pgrepart"'::regclass, 3)}), q{it's the log|back\slash},
	'comments carried over');
is($node->psql(q{SELECT count(*) FROM pg_constraint
	WHERE conrelid = '"Ops Data"."Event Log_pgrepart"'::regclass AND conname = 'Positive Id'}), 1,
	'check constraint kept its name');
is($node->psql(q{SELECT attgenerated::text || attidentity::text FROM pg_attribute
	WHERE attrelid = '"Ops Data"."Event Log_pgrepart"'::regclass AND attname IN ('doubled', 'Id')
	ORDER BY attname}), "d\ns", 'identity (by default until the swap) and generated columns kept');
is($node->psql(q{SELECT collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
	WHERE attrelid = '"Ops Data"."Event Log_pgrepart"'::regclass AND attname = 'select'}), 'C',
	'column collation kept');
is($node->psql(q{SELECT DISTINCT array_to_string(c.reloptions, ',') FROM pg_inherits i
	JOIN pg_class c ON c.oid = i.inhrelid
	WHERE i.inhparent = '"Ops Data"."Event Log_pgrepart"'::regclass}), 'fillfactor=80',
	'storage parameters on every partition');
like($ddl, qr/"Ops Data"\."Event Log_2025_03" PARTITION OF/, 'partitions named after the table');

plan_and_apply(
	table => 'app.ledger', key => 'booked_on', options => [ '--interval', '1 month', '--premake', '0' ],
	sql_source => 'app.ledger', sql_shadow => 'app.ledger_pgrepart',
	columns => 'tenant_id, seq, booked_on, amount');
is(pk_columns('app.ledger_pgrepart'), 'tenant_id,seq,booked_on', 'composite key widened');
is($node->psql(q{SELECT min(relname) FROM pg_class WHERE relname LIKE 'ledger\_2%'}), 'ledger_2024_11',
	'monthly partitions of a date column');

plan_and_apply(
	table => '"order"', key => '"user"', options => [ '--interval', '1000' ],
	sql_source => 'public."order"', sql_shadow => 'public.order_pgrepart',
	columns => 'code, "user", note');
is(pk_columns('public.order_pgrepart'), 'code,user', 'text key widened with an integer column');
is($node->psql(q{SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
	WHERE relname ~ '^order_[mp][0-9]+$'}),
	'order_m1000,order_p0,order_p1000,order_p10000,order_p2000,order_p3000,order_p4000,order_p5000,order_p6000,order_p7000,order_p8000,order_p9000',
	'integer partitions from the lowest value, four steps past the highest');

plan_and_apply(
	table => 'überLOG', key => 'AT', options => [ '--interval', '1 day' ],
	sql_source => 'überlog', sql_shadow => 'überlog_pgrepart', columns => 'id, at');
is(pk_columns('überlog_pgrepart'), 'id,at', 'non-ASCII name, unquoted ASCII letters folded');

plan_and_apply(
	table => '"x""; DROP TABLE victim; --"', key => 'ts', options => [],
	sql_source => '"x""; DROP TABLE victim; --"', sql_shadow => '"x""; DROP TABLE victim; --_pgrepart"',
	columns => 'id, ts');
is($node->psql(q{SELECT count(*) FROM pg_class WHERE relname = 'victim'}), 1,
	'a name holding SQL stays a name');

done_testing();
