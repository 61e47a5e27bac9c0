# pgrepart abort: removes a migration's slot, publication, origin, shadow and
# state, and never touches the table; refused while a run streams it.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(fixture('chat_messages.sql'), vars => { rows => 5000 });
my @conn = ('-d', $node->connstr);
my $before = $node->psql(q{SELECT count(*) || ':' || sum(hashtext(c::text)) FROM chat_messages c});

my ($rc, $out, $err) = pgrepart('abort', @conn, '-t', 'chat_messages');
is($rc, 6, 'no migration: exit 6');

my $run = pgrepart_background("$dir/run.log", 'run', '--cutover', 'manual', @conn, '-t',
	'chat_messages', '-k', 'created_at');
ok(wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 60, $run), 'in sync');
($rc, $out, $err) = pgrepart('abort', @conn, '-t', 'chat_messages');
is($rc, 1, 'refused while a run streams');
like($err, qr/a pgrepart run is streaming.*\n.*hint: Stop it first/, 'and says to stop it first');
kill 'TERM', $run;
is(wait_exit($run), 5, 'the run stops');

($rc, $out, $err) = pgrepart('abort', @conn, '-t', 'chat_messages');
is($rc, 0, 'abort exits 0') or diag($err);
is($node->psql(q{SELECT (SELECT count(*) FROM pg_replication_slots) || ',' ||
	(SELECT count(*) FROM pg_publication) || ',' || (SELECT count(*) FROM pg_replication_origin) || ',' ||
	(SELECT count(*) FROM pgrepart.migration) || ',' ||
	(to_regclass('chat_messages_pgrepart') IS NULL)}), '0,0,0,0,true',
	'slot, publication, origin, state and shadow are gone');
is($node->psql(q{SELECT count(*) || ':' || sum(hashtext(c::text)) FROM chat_messages c}), $before,
	'the table is untouched');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}), 'r',
	'and still the plain table');

# A new migration can start afresh afterwards.
$run = pgrepart_background("$dir/run2.log", 'run', '--cutover', 'manual', @conn, '-t',
	'chat_messages', '-k', 'created_at');
ok(wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 60, $run), 'a new run syncs again')
  or diag(slurp("$dir/run2.log"));
kill 'TERM', $run;
wait_exit($run);

done_testing();
