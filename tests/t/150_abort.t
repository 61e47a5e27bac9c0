# pgrepart abort: removes a migration's slot, publication, origin, shadow and
# state, and never touches the table; refused while a run streams it.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use JSON::PP ();
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
	(to_regnamespace('pgrepart') IS NULL) || ',' ||
	(to_regclass('chat_messages_pgrepart') IS NULL)}), '0,0,0,true,true',
	'slot, publication, origin, shadow and the state with its schema (no other migration uses it) are gone');
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

# Stopped, its slot holds WAL: status says so, on standard error, with the
# way out.
my ($src, $sout, $serr) = pgrepart('status', @conn);
like($serr, qr/warning: migration \d+'s slot "pgrepart_\d+_\d+" retains [\d.]+ MB of WAL and no run is consuming it/,
	'status warns about a stopped migration\'s slot') or diag($serr);
like($serr, qr/hint: Resume with the same pgrepart run command, or remove the migration with pgrepart abort/,
	'and says what to do');

# Replication objects that no migration records (its row deleted by hand):
# status names each, with the WAL a slot holds and how to remove it.
$node->psql(q{SELECT pg_create_logical_replication_slot('pgrepart_1_99', 'pgoutput');
	CREATE PUBLICATION pgrepart_1_99 FOR TABLE users});
($src, $sout, $serr) = pgrepart('status', @conn, '--json');
my $left = JSON::PP::decode_json($sout)->{leftovers};
is(join(' ', map { "$_->{kind}:$_->{name}" } @$left), 'publication:pgrepart_1_99 slot:pgrepart_1_99',
	'status --json lists the leftovers');
like($serr, qr/warning: replication slot "pgrepart_1_99" belongs to no unfinished migration and retains/,
	'and warns about the slot');
$node->psql(join ';', map { $_->{remove_with} } @$left);
($src, $sout, $serr) = pgrepart('status', @conn);
unlike($sout . $serr, qr/leftover|pgrepart_1_99/, 'the SQL it gives removes them');

# The migration's row removed by hand under a run waiting for its manual
# cutover: the run stops with exit 1 and says why.
$run = pgrepart_background("$dir/run3.log", 'run', '--cutover', 'manual', @conn, '-t',
	'chat_messages', '-k', 'created_at');
ok(wait_for($node, q{SELECT active FROM pg_replication_slots WHERE slot_name LIKE 'pgrepart%'}, 60, $run),
	'the run resumes streaming') or diag(slurp("$dir/run3.log"));
$node->psql(q{DELETE FROM pgrepart.migration});
is(wait_exit($run), 1, 'a run whose migration was removed fails');
like(slurp("$dir/run3.log"), qr/error: the migration of "public.chat_messages" \(id \d+\) is no longer recorded.*\n.*hint: /,
	'and says the migration is no longer recorded') or diag(slurp("$dir/run3.log"));

done_testing();
