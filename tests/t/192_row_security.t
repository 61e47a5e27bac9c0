# Row-level security never hides rows from pgrepart.  A policy that filters
# the role's reads would make the copy, the live check and verify see the
# same subset on both sides and call an empty table equal.  Every pgrepart
# session runs with row_security off, so such a read fails instead; plan
# blocks and names the policies.  Tried as the owner under FORCE ROW LEVEL
# SECURITY, as a role that only reads the table, and with BYPASSRLS, which
# migrates every row and carries FORCE and the policies over.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(migrating_role('owner_r') . q{
	CREATE ROLE reader LOGIN;
	CREATE TABLE docs (id bigint PRIMARY KEY, tenant text NOT NULL, at timestamptz NOT NULL, body text);
	INSERT INTO docs SELECT g, 't' || g % 4, timestamptz '2025-01-01' + g * interval '1 hour', 'b' || g
	FROM generate_series(1, 4000) g;
	CREATE TABLE docs_copy AS SELECT * FROM docs;
	ALTER TABLE docs_copy ADD PRIMARY KEY (id);
	ALTER TABLE docs OWNER TO owner_r;
	ALTER TABLE docs_copy OWNER TO owner_r;
	GRANT SELECT ON docs, docs_copy TO reader;
	ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
	ALTER TABLE docs FORCE ROW LEVEL SECURITY;
	CREATE POLICY by_tenant ON docs USING (tenant = current_setting('app.tenant', true));
	ANALYZE docs;
});
my $owner = $node->connstr(user => 'owner_r');
my $reader = $node->connstr(user => 'reader');
my @target = ('-t', 'docs', '-k', 'at', '--interval', '1 month');

# The owner, under FORCE: the policy applies to it.
my ($rc, $out, $err) = pgrepart('plan', '-d', $owner, @target);
is($rc, 4, 'owner under FORCE: plan blocks') or diag("$out$err");
like($out, qr/row-level security applies to role "owner_r" on the table \(FORCE ROW LEVEL SECURITY, policies: by_tenant\)/,
	'and names FORCE and the policy');
like($out, qr/BYPASSRLS/, 'and says what to do');
($rc, $out, $err) = pgrepart('run', '-d', $owner, @target);
is($rc, 4, 'owner under FORCE: run refuses') or diag("$out$err");
is($node->psql(q{SELECT relkind || count(*) FROM docs, pg_class c WHERE c.oid = 'docs'::regclass GROUP BY relkind}),
	'r4000', 'the table is untouched');
($rc, $out, $err) = pgrepart('verify', '-d', $owner, '--source', 'docs_copy', '--target', 'docs');
is($rc, 1, 'owner under FORCE: verify fails instead of comparing a filtered table') or diag("$out$err");
like($err, qr/row-level security/, 'naming row-level security');
unlike("$out$err", qr/equal/, 'never "equal"');

# A role that may only read: the policy applies to it without FORCE too.
$node->psql(q{ALTER TABLE docs NO FORCE ROW LEVEL SECURITY});
($rc, $out, $err) = pgrepart('plan', '-d', $reader, @target);
is($rc, 4, 'reader: plan blocks') or diag("$out$err");
like($out, qr/row-level security applies to role "reader" on the table \(policies: by_tenant\)/,
	'for row security too, not only ownership');
($rc, $out, $err) = pgrepart('verify', '-d', $reader, '--source', 'docs', '--target', 'docs_copy');
is($rc, 1, 'reader: verify fails') or diag("$out$err");
like($err, qr/row-level security/, 'naming row-level security');

# BYPASSRLS: every row is copied, and FORCE and the policy come through.
$node->psql(q{ALTER TABLE docs FORCE ROW LEVEL SECURITY; ALTER ROLE owner_r BYPASSRLS});
($rc, $out, $err) = pgrepart('plan', '-d', $owner, @target);
is($rc, 0, 'BYPASSRLS: plan passes') or diag("$out$err");
unlike($out, qr/row-level security applies/, 'with no row-security block');
($rc, $out, $err) = pgrepart('run', '-d', $owner, @target);
is($rc, 0, 'BYPASSRLS: the run migrates and swaps') or diag("$out$err");
is($node->psql(q{SELECT relkind || count(*) FROM docs, pg_class c WHERE c.oid = 'docs'::regclass GROUP BY relkind}),
	'p4000', 'every row is in the partitioned table');
is($node->psql(q{SELECT relrowsecurity::text || relforcerowsecurity::text || (SELECT string_agg(polname, ',')
	FROM pg_policy WHERE polrelid = c.oid) FROM pg_class c WHERE c.oid = 'docs'::regclass}), 'truetrueby_tenant',
	'the new table has row security, FORCE and the policy');
is($node->psql(q{SET ROLE reader; SET app.tenant = 't1'; SELECT count(*) FROM docs}), 1000,
	'and the policy filters the reader as before');
($rc, $out, $err) = pgrepart('verify', '-d', $owner, '--source', 'docs_old', '--target', 'docs');
is($rc, 0, 'BYPASSRLS: verify compares every row') or diag("$out$err");

done_testing();
