# pgrepart plan on tables and servers it must refuse: each gives a clear
# one-line error with a hint and a non-zero exit, and names the object.
use strict;
use warnings;
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
$node->psql(q{
	CREATE TABLE parent (id bigint PRIMARY KEY, created_at timestamp NOT NULL);
	CREATE TABLE child (id int PRIMARY KEY,
		parent_id bigint CONSTRAINT child_parent_fk REFERENCES parent (id));
	CREATE TABLE nokey (a int, created_at timestamp NOT NULL);
	CREATE TABLE nullable (id int PRIMARY KEY, created_at timestamp);
	CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY, created_at timestamp NOT NULL);
	CREATE TABLE already (id int, created_at timestamp NOT NULL, PRIMARY KEY (id, created_at))
		PARTITION BY RANGE (created_at);
	CREATE TABLE textpart (id int PRIMARY KEY, region text NOT NULL);
	CREATE TABLE exprunique (id int PRIMARY KEY, email text, created_at timestamp NOT NULL);
	CREATE UNIQUE INDEX exprunique_email ON exprunique (lower(email));
	CREATE TABLE excl (id int PRIMARY KEY, r int4range, created_at timestamp NOT NULL,
		CONSTRAINT excl_no_overlap EXCLUDE USING gist (r WITH &&));
	CREATE TABLE nothing_ident (id int PRIMARY KEY, created_at timestamp NOT NULL);
	ALTER TABLE nothing_ident REPLICA IDENTITY NOTHING;
	CREATE TABLE base (id int PRIMARY KEY, created_at timestamp NOT NULL);
	CREATE TABLE derived () INHERITS (base);
	CREATE TABLE days (id int PRIMARY KEY, d date NOT NULL);
	INSERT INTO days SELECT g, date '2000-01-01' + g * 100 FROM generate_series(1, 100) g;
	CREATE VIEW a_view AS SELECT * FROM parent;
	CREATE ROLE app LOGIN;
	CREATE TABLE app_owned (id int PRIMARY KEY, created_at timestamp NOT NULL);
	ALTER TABLE app_owned OWNER TO app;
});

# plan(args...) with the error shape every refusal must have (an --interval the
# column cannot take is a usage error, exit 2).
sub refused
{
	my ($name, $want_rc, $pattern, @args) = @_;
	my ($rc, $out, $err) = pgrepart('plan', @args);
	is($rc, $want_rc, "$name: exit $want_rc");
	like($err, qr/^pgrepart: error: [^\n]*$pattern/m, "$name: one-line error says so");
	like($err, qr/^pgrepart: hint: \S/m, "$name: with a hint");
	return ($out, $err);
}

my @conn = ('-d', $node->connstr);
my ($out, $err) = refused('incoming foreign key', 4, qr/foreign key on public\.child references/,
	@conn, '-t', 'parent', '-k', 'created_at');
like($out, qr/block\s+incoming_foreign_key\s+foreign key on public\.child references this table: child_parent_fk: FOREIGN KEY \(parent_id\) REFERENCES public\.parent\(id\)/,
	'the finding names the referencing table and constraint');

refused('no primary key', 4, qr/no primary key/, @conn, '-t', 'nokey', '-k', 'created_at');
refused('nullable partition column', 4, qr/partition column "created_at" is nullable/,
	@conn, '-t', 'nullable', '-k', 'created_at');
refused('unlogged', 4, qr/unlogged/, @conn, '-t', 'scratch', '-k', 'created_at');
refused('already partitioned', 4, qr/already partitioned/, @conn, '-t', 'already', '-k', 'created_at');
refused('inheritance', 4, qr/inheritance/, @conn, '-t', 'base', '-k', 'created_at');
refused('text partition column', 4, qr/type text, which cannot be split/,
	@conn, '-t', 'textpart', '-k', 'region');
refused('expression unique index', 4, qr/unique index "exprunique_email" uses expressions/,
	@conn, '-t', 'exprunique', '-k', 'created_at');
refused('exclusion constraint', 4, qr/exclusion constraint "excl_no_overlap"/,
	@conn, '-t', 'excl', '-k', 'created_at');
refused('replica identity nothing', 4, qr/replica identity is NOTHING/,
	@conn, '-t', 'nothing_ident', '-k', 'created_at');

refused('missing table', 1, qr/table "nope" does not exist/, @conn, '-t', 'nope', '-k', 'created_at');
refused('missing table in a schema', 1, qr/table "public.nope" does not exist/,
	@conn, '-t', 'public.nope', '-k', 'created_at');
refused('wrong case without quotes', 1, qr/table "parent" does not exist|does not exist/,
	@conn, '-t', '"Parent"', '-k', 'created_at');
refused('missing column', 1, qr/column "made_at" does not exist in table "public.parent"/,
	@conn, '-t', 'parent', '-k', 'made_at');
refused('a view', 1, qr/"public.a_view" is not a table/, @conn, '-t', 'a_view', '-k', 'id');
refused('misspelt interval', 2, qr/invalid input syntax for type interval: "3 monts"/,
	@conn, '-t', 'days', '-k', 'd', '--interval', '3 monts');
refused('mixed interval', 2, qr/not a mix/, @conn, '-t', 'days', '-k', 'd', '--interval', '1 month 2 days');
refused('sub-day interval on a date', 2, qr/column "d" is a date/,
	@conn, '-t', 'days', '-k', 'd', '--interval', '6 hours');
refused('too many partitions', 1, qr/more than 10000 partitions/,
	@conn, '-t', 'days', '-k', 'd', '--interval', '1 day', '--premake', '1000');

refused('closed port', 1, qr/could not connect to the source database/,
	'-d', 'host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=5', '-t', 'parent', '-k', 'created_at');
refused('malformed conninfo', 1, qr/could not connect to the source database: .*missing "="/,
	'-d', 'host=127.0.0.1 port', '-t', 'parent', '-k', 'created_at');
refused('unknown database', 1, qr/database "nosuchdb" does not exist/,
	'-d', $node->connstr(dbname => 'nosuchdb'), '-t', 'parent', '-k', 'created_at');

# A role with neither REPLICATION nor superuser, on its own table.
($out, $err) = refused('role without REPLICATION', 4, qr/role "app" has neither REPLICATION nor superuser/,
	'-d', $node->connstr(user => 'app'), '-t', 'app_owned', '-k', 'created_at');
like($out, qr/block\s+replication_connection\s+could not open a replication connection/,
	'the replication connection is refused too');
unlike($out, qr/block\s+table_owner/, 'but it owns the table');
($out, $err) = refused('role that cannot read the table', 4, qr/the role cannot read the table/,
	'-d', $node->connstr(user => 'app'), '-t', 'parent', '-k', 'created_at');
like($out, qr/block\s+table_owner\s+role "app" does not own the table \(owner "postgres"\)/,
	'ownership is a finding of its own');

# A server without logical decoding.
my $replica_level = Pgrepart::Cluster->new(wal_level => 'replica');
$replica_level->psql(q{CREATE TABLE t (id int PRIMARY KEY, created_at timestamp NOT NULL)});
refused('wal_level=replica', 4, qr/wal_level is replica/,
	'-d', $replica_level->connstr, '-t', 't', '-k', 'created_at');

done_testing();
