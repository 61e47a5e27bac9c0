# pgrepart verify --live: while a run streams under the mixed load, the run
# applies up to a consistent point, compares the shadow with the source read
# under that point's snapshot, and resumes.  Equal under load; a corrupted
# shadow row is caught and named.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use JSON::PP;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
$node->psql(fixture('chat_messages.sql'), vars => { rows => 20000 });
my @conn = ('-d', $node->connstr);
my $dir = tempdir(CLEANUP => 1);

my ($rc, $out, $err) = pgrepart('verify', @conn, '--live', '-t', 'chat_messages');
is($rc, 1, 'no migration: exit 1');
like($err, qr/has no migration streaming/, 'no migration: says so');

my $run = pgrepart_background("$dir/run.log", 'run', '--cutover', 'manual', @conn, '-t', 'chat_messages', '-k', 'created_at');
ok(wait_for($node, q{SELECT count(*) = 1 FROM pg_replication_slots WHERE active}, 120, $run),
	'the run streams') or diag(slurp("$dir/run.log"));

my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '2', '-T', '15');
ok(wait_for($node, q{SELECT count(*) > 200 FROM chat_messages_pgrepart
	WHERE created_at > now() - interval '1 hour'}, 60, $run), 'the load is being applied');

# Under load, twice: each at its own consistent point.
for my $i (1, 2)
{
	($rc, $out, $err) = pgrepart('verify', @conn, '--live', '-t', 'chat_messages', '--json');
	is($rc, 0, "live verification $i under load: equal") or diag($err . $out . slurp("$dir/run.log"));
	my $r = eval { decode_json($out) } // {};
	ok($r->{equal}, "live verification $i: the report says equal");
	cmp_ok($r->{source_rows}, '>', 20000, "live verification $i: rows the load inserted are compared");
	is($r->{source_rows}, $r->{target_rows}, "live verification $i: as many rows on both sides");
}
is(wait_exit($load), 0, 'pgbench ran without failures') or diag(slurp("$dir/pgbench.log"));

# A corrupted shadow row is caught and named; the run goes on.  The load's
# last changes are applied first, so the row is there to corrupt.
my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn), 60, $run), 'the load is applied') or diag(slurp("$dir/run.log"));
my $victim = $node->psql(q{SELECT id FROM chat_messages ORDER BY id LIMIT 1 OFFSET 77});
is($node->psql(qq{WITH c AS (UPDATE chat_messages_pgrepart SET model_name = 'corrupted' WHERE id = '$victim'
	RETURNING 1) SELECT count(*) FROM c}), 1, 'one shadow row corrupted');
($rc, $out, $err) = pgrepart('verify', @conn, '--live', '-t', 'chat_messages');
is($rc, 3, 'a corrupted shadow row: exit 3') or diag($err . $out);
like($out, qr/^at the consistent point [0-9A-F]+\/[0-9A-F]+:/m, 'the report gives the consistent point');
like($out, qr/different\s+id=\Q$victim\E: columns model_name/, 'the row and its column are named');
ok(kill(0, $run), 'the run goes on after the difference');

# The verification history is kept.
is($node->psql(q{SELECT string_agg(coalesce(equal::text, 'failed'), ',' ORDER BY id)
	FROM pgrepart.verification}), 'true,true,false', 'three verifications recorded');

# status shows the last verification and the stream's lag.
($rc, $out, $err) = pgrepart('status', @conn, '-t', 'chat_messages', '--json');
my $st = (eval { decode_json($out) } // {})->{migrations}[0] // {};
like($st->{last_verification} // '', qr{^different at [0-9A-F]+/[0-9A-F]+, \d{4}-}, 'status: the last verification');
cmp_ok($st->{lag_seconds} // -1, '>=', 0, 'status: the lag in seconds');
($rc, $out, $err) = pgrepart('status', @conn, '-t', 'chat_messages');
like($out, qr/^  verified       different at /m, 'status text: the last verification');
like($out, qr/^  lag            [\d.]+ s/m, 'status text: the lag');

kill 'TERM', $run;
is(wait_exit($run), 5, 'the run stops cleanly');
my $log = slurp("$dir/run.log");
like($log, qr/live verification at \S+: the shadow differs/, 'the run logs the difference');

($rc, $out, $err) = pgrepart('verify', @conn, '--live', '-t', 'chat_messages');
is($rc, 1, 'no run streaming: exit 1');
like($err, qr/no pgrepart run is streaming/, 'no run streaming: says so');
like($err, qr/hint: Start \(or resume\)/, 'and what to do');

($rc, $out, $err) = pgrepart('verify', @conn, '--live', '-t', 'chat_messages', '--source', 'x');
is($rc, 2, '--live with --source is a usage error');

done_testing();
