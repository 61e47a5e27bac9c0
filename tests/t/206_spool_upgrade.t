# A migration started by a version that kept a spooled transaction in one
# row (keyed by its end) resumes with this one: the spool is converted in
# place, replayed once, and every row is equal.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
$node->psql(fixture('chat_messages.sql'), vars => { rows => 20000 });
my $dir = tempdir(CLEANUP => 1);
my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at',
	'--chunk-rows', '500');

# A slow copy under load spools many small transactions.
my $run = pgrepart_background("$dir/spool.log", @run, '--rate', '2000');
my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '2', '-R', '200', '-T', '4');
is(wait_exit($load), 0, 'the load ran') or diag(slurp("$dir/pgbench.log"));
ok(wait_for($node, q{SELECT count(end_lsn) > 100 FROM pgrepart.spool}, 120, $run), 'the spool holds transactions')
  or diag(slurp("$dir/spool.log"));
kill 'TERM', $run;
is(wait_exit($run), 5, 'the run stops cleanly');

# The older shape: one row per transaction, keyed by its end.
$node->psql(q{DELETE FROM pgrepart.spool WHERE commit_lsn NOT IN
	(SELECT commit_lsn FROM pgrepart.spool WHERE end_lsn IS NOT NULL)});
is($node->psql(q{SELECT count(*) FROM pgrepart.spool WHERE piece > 0}), 0, 'each transaction in one row');
my $spooled = $node->psql(q{SELECT count(*) FROM pgrepart.spool});
$node->psql(q{ALTER TABLE pgrepart.spool DROP CONSTRAINT spool_pkey, DROP COLUMN commit_lsn,
	DROP COLUMN piece, ALTER COLUMN end_lsn SET NOT NULL, ADD PRIMARY KEY (migration_id, end_lsn)});

my ($rc, $out, $err) = pgrepart('status', '-d', $node->connstr, '-t', 'chat_messages');
is($rc, 0, 'status reads the older state') or diag($err);
{
	# Held at its first chunk: the spool is converted by then.
	local $ENV{PGREPART_FAULT_PAUSE} = 'copy';
	local $ENV{PGREPART_FAULT_PAUSE_MS} = '60000';
	$run = pgrepart_background("$dir/convert.log", @run);
	ok(wait_for_text("$dir/convert.log", qr/pausing at fault point copy/, 120, $run), 'a run starts')
	  or diag(slurp("$dir/convert.log"));
	is($node->psql(q{SELECT count(*) FROM pgrepart.spool WHERE commit_lsn < end_lsn AND piece = 0}),
		$spooled, 'the spool is converted, every transaction kept');
	kill 'TERM', $run;
	is(wait_exit($run), 5, 'and stops cleanly');
}

my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
$run = pgrepart_background("$dir/resume.log", @run, '--rate', '0');
ok(wait_for($node, applied_up_to($lsn), 180, $run), 'the resumed run applied the spool')
  or diag(slurp("$dir/resume.log"));
kill 'TERM', $run;
is(wait_exit($run), 5, 'and stops cleanly');
unlike(slurp("$dir/resume.log"), qr/error:/, 'without an error');
my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
is("$missing/$extra", '0/0', 'every row equal');

done_testing();
