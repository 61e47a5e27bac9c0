# Source transactions many times larger than pgrepart's memory bound
# (docs/design.md, "Memory, whatever the transaction's size"): one commits
# during the copy (it is spooled in pieces, and the run applying it from the
# spool is killed with -9 in its middle), one of the same size rolls back,
# and one commits while the run streams.  Every row is compared, and
# pgrepart's peak resident memory stays under the bound in every run while
# each transaction is more than four times its size.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $bound_mb = 64;
my $rows = $ENV{PGREPART_LARGE_ROWS} // 30000;
my $dir = tempdir(CLEANUP => 1);
# The server spills the transactions it decodes to disk, as it would in production.
my $node = Pgrepart::Cluster->new(settings => { logical_decoding_work_mem => "'64kB'",
	max_wal_size => "'4GB'" });
# The first rows hold 8 kB of random text each (one random string, rotated):
# stored out of line and uncompressed, sent whole by every update.  Many small rows follow, for the
# copy to be slowed down on once it has copied the large ones.
$node->psql(<<"SQL");
CREATE TABLE wide (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, payload text NOT NULL);
WITH r AS (SELECT string_agg(md5(random()::text || i), '') AS t FROM generate_series(1, 256) i)
INSERT INTO wide SELECT g, '2026-01-01'::timestamptz + g * interval '1 minute',
	substr(r.t || r.t, 1 + (g * 37) % 8192, 8192)
FROM generate_series(1, $rows) g, r;
INSERT INTO wide SELECT g, '2026-01-01'::timestamptz + g * interval '1 minute', 'small'
FROM generate_series($rows + 1, $rows + 100000) g;
ANALYZE wide;
SQL
# Every large row's payload rotated by one character: a new value, as large.
my $rotate = qq{UPDATE wide SET payload = substr(payload, 2) || substr(payload, 1, 1) WHERE id <= $rows};
my $conn = $node->connstr;
my @run = ('run', '--cutover', 'manual', '-d', $conn, '-t', 'wide', '-k', 'created_at',
	'--chunk-rows', '200');

# The WAL a statement wrote, in MB.
sub wal_mb
{
	my ($sql) = @_;
	my $before = $node->psql('SELECT pg_current_wal_lsn()');
	$node->psql($sql);
	return $node->psql("SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$before') / 1048576)");
}

# The run's peak resident memory so far is under the bound.  Not under the
# sanitizers (make check-asan), whose shadow memory and quarantine count too.
sub under_bound
{
	my ($pid, $what) = @_;
	my $mb = peak_rss_mb($pid);
  SKIP:
	{
		skip 'memory is not measured under the sanitizers', 1 if $ENV{PGREPART_SANITIZED};
		cmp_ok($mb, '<', $bound_mb, "$what took pgrepart to $mb MB");
	}
}

# During the copy, once it has copied the large rows (so that the apply
# applies every change to them) and is held to 50 rows a second: one
# transaction commits and is spooled, one as large rolls back.  Until then
# it copies at most 6,000 rows a second, so the small rows still take more
# than 16 s however fast the machine: the copy cannot end before it is held.
my $run = pgrepart_background("$dir/copy.log", @run, '--rate', '6000');
ok(wait_for($node, qq{SELECT count(*) >= $rows FROM wide_pgrepart}, 300, $run), 'the copy started')
  or diag(slurp("$dir/copy.log"));
$node->psql('UPDATE pgrepart.migration SET max_rows_per_second = 50');
my $copy_mb = wal_mb($rotate);
my $rollback_mb = wal_mb("BEGIN; $rotate; ROLLBACK");
cmp_ok($copy_mb, '>=', 4 * $bound_mb, "the transaction during the copy: $copy_mb MB, over four times the bound");
cmp_ok($rollback_mb, '>=', 4 * $bound_mb, "the one rolled back: $rollback_mb MB");
my $pieces = q{SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM pgrepart.spool
	GROUP BY commit_lsn HAVING count(end_lsn) = 1) t};
# The spooler confirms to the slot what it has stored, and WAL with nothing for it.
my $marker = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, qq{SELECT confirmed_flush_lsn >= '$marker' FROM pg_replication_slots
	WHERE slot_name LIKE 'pgrepart%'}, 300, $run), 'the spooler read past both')
  or diag(slurp("$dir/copy.log"));
is($node->psql(q{SELECT count(end_lsn) FROM pgrepart.spool}), 1, 'one transaction is spooled');
cmp_ok($node->psql($pieces), '>=', 10, 'in pieces');
cmp_ok($node->psql(q{SELECT max(octet_length(data)) FROM pgrepart.spool}), '<=', 5 * 1048576,
	'none of them larger than 5 MB');
under_bound($run, 'spooling it');
kill 'TERM', $run;
is(wait_exit($run), 5, 'the run stops cleanly');
$node->psql('UPDATE pgrepart.migration SET max_rows_per_second = 0');

# The copy goes on at full speed; the run stops in the middle of applying
# the large transaction from the spool, where it syncs what it has sent of it.
{
	local $ENV{PGREPART_FAULT_PAUSE} = 'held';
	local $ENV{PGREPART_FAULT_PAUSE_MS} = '120000';
	$run = pgrepart_background("$dir/replay.log", @run);
	ok(wait_for_text("$dir/replay.log", qr/pausing at fault point held/, 300, $run),
		'the run applies the spooled transaction') or diag(slurp("$dir/replay.log"));
	cmp_ok($node->psql(q{SELECT count(*) FROM pgrepart.spool WHERE end_lsn IS NOT NULL}), '>', 0,
		'the spool still holds it');
	kill 'KILL', $run;
	wait_exit($run);
}

# Resumed: the transaction is applied once, from the origin's progress.
$run = pgrepart_background("$dir/resume.log", @run);
my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn), 600, $run), 'the resumed run applied the spool')
  or diag(slurp("$dir/resume.log"));
is($node->psql('SELECT count(*) FROM pgrepart.spool'), 0, 'and emptied it');

# While streaming.
my $stream_mb = wal_mb($rotate);
cmp_ok($stream_mb, '>=', 4 * $bound_mb, "the transaction while streaming: $stream_mb MB");
$lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn), 600, $run), 'the run applied it')
  or diag(slurp("$dir/resume.log"));
under_bound($run, 'applying both');
kill 'TERM', $run;
is(wait_exit($run), 5, 'the run stops cleanly');
unlike(slurp("$dir/copy.log") . slurp("$dir/resume.log"), qr/error:/, 'no run reported an error');

my $differ = $node->psql(q{SELECT count(*) FROM (
	(SELECT md5(x::text) FROM wide x EXCEPT ALL SELECT md5(y::text) FROM wide_pgrepart y)
	UNION ALL
	(SELECT md5(y::text) FROM wide_pgrepart y EXCEPT ALL SELECT md5(x::text) FROM wide x)) d});
is($differ, 0, 'every row equal');
is($node->psql('SELECT count(*) FROM wide_pgrepart'), $rows + 100000, 'all rows there');

done_testing();
