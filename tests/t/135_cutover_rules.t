# Rules come through the swap and behave as before on the new table: a
# conditional DO INSTEAD NOTHING that protects rows from DELETE, a DO
# INSTEAD soft delete whose action updates the table itself, DO ALSO audit
# rules on INSERT and UPDATE, and a disabled rule that stays disabled.
# Checked by what the statements do after the swap, not by the catalog
# alone, while a load writes to the table during the run.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(q{
	CREATE TABLE notes (id bigint PRIMARY KEY, at timestamptz NOT NULL, protected boolean NOT NULL,
	    deleted boolean NOT NULL DEFAULT false, body text);
	INSERT INTO notes SELECT g, timestamptz '2025-01-01' + g * interval '1 hour', g % 2 = 0, false, 'b' || g
	FROM generate_series(1, 3000) g;
	CREATE TABLE audit (kind text, id bigint);
	CREATE RULE keep_protected AS ON DELETE TO notes WHERE old.protected DO INSTEAD NOTHING;
	CREATE RULE soft_delete AS ON DELETE TO notes WHERE NOT old.protected
	    DO INSTEAD UPDATE notes SET deleted = true WHERE id = old.id;
	CREATE RULE audit_insert AS ON INSERT TO notes DO ALSO INSERT INTO audit VALUES ('insert', new.id);
	CREATE RULE audit_update AS ON UPDATE TO notes DO ALSO INSERT INTO audit VALUES ('update', new.id);
	CREATE RULE never AS ON INSERT TO notes DO ALSO INSERT INTO audit VALUES ('never', new.id);
	ALTER TABLE notes DISABLE RULE never;
});

my ($rc, $out, $err) = pgrepart('plan', '-d', $node->connstr, '-t', 'notes', '-k', 'at', '--interval', '1 month');
like($out, qr/5 rule\(s\) will be re-created on the new table at cutover/, 'plan counts the rules');

# Writes during the run, through the rules: inserts (audited), updates,
# deletes of protected and unprotected rows.
my $writes = join '', map {
	my $base = 100000 + 100 * $_;
	"INSERT INTO notes SELECT $base + g, now(), g % 2 = 0, false, 'live' FROM generate_series(1, 50) g;\n"
	  . "UPDATE notes SET body = 'changed $_' WHERE id BETWEEN $_ * 10 AND $_ * 10 + 9;\n"
	  . "DELETE FROM notes WHERE id BETWEEN 200 + $_ * 10 AND 209 + $_ * 10;\n"
	  . "SELECT pg_sleep(0.3);\n"
} 1 .. 20;
my $load = client_background("$dir/load.log", 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr,
	'-c', $writes);
my $run = pgrepart_background("$dir/run.log", 'run', '-d', $node->connstr, '-t', 'notes', '-k', 'at',
	'--interval', '1 month');
is(wait_exit($run), 0, 'the run migrates and swaps') or diag(slurp("$dir/run.log"));
is(wait_exit($load), 0, 'the writes went on across the swap') or diag(slurp("$dir/load.log"));
# Whether each write fell before or after the swap, its effect is in the new table.
is($node->psql(q{SELECT count(*) FROM notes WHERE id > 100000}), 1000, 'every row inserted during the run');
is($node->psql(q{SELECT count(*) FROM notes WHERE id BETWEEN 10 AND 209 AND body LIKE 'changed %'}), 200,
	'every update');
is($node->psql(q{SELECT count(*) FILTER (WHERE NOT deleted) || '/' || count(*) FILTER (WHERE deleted)
	FROM notes WHERE id BETWEEN 210 AND 409}), '100/100', 'every delete, through the rules');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'notes'::regclass}), 'p', 'notes is partitioned');
is($node->psql(q{SELECT string_agg(rulename || ':' || ev_enabled::text, ' ' ORDER BY rulename) FROM pg_rewrite
	WHERE ev_class = 'notes'::regclass}), 'audit_insert:O audit_update:O keep_protected:O never:D soft_delete:O',
	'the new table has every rule, the disabled one disabled');

# What the rules do after the swap.
$node->psql(q{TRUNCATE audit});
$node->psql(q{DELETE FROM notes WHERE id BETWEEN 1001 AND 1100});
is($node->psql(q{SELECT count(*) FILTER (WHERE NOT deleted) || '/' || count(*) FILTER (WHERE deleted)
	FROM notes WHERE id BETWEEN 1001 AND 1100}), '50/50',
	'DELETE: protected rows stay, the others are soft-deleted (INSTEAD, conditional, acting on the new table)');
is($node->psql(q{SELECT count(*) FROM notes_old WHERE id BETWEEN 1001 AND 1100 AND deleted}), 0,
	'the soft delete did not touch the old table');
$node->psql(q{INSERT INTO notes VALUES (900001, now(), false, false, 'after')});
$node->psql(q{UPDATE notes SET body = 'again' WHERE id = 900001});
is($node->psql(q{SELECT string_agg(kind, ',' ORDER BY kind) FROM audit WHERE id = 900001}), 'insert,update',
	'INSERT and UPDATE are audited (ALSO), the disabled rule does nothing');
is($node->psql(q{SELECT count(*) FROM audit WHERE kind = 'update' AND id BETWEEN 1001 AND 1100}), 50,
	'the soft delete is audited as an update, as before');

done_testing();
