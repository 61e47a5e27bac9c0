#!/usr/bin/env perl
# bench backfill: on the seed's table, in one run,
#   seed      the seed's own step: INSERT INTO part SELECT * FROM old, into the
#             partitioned table with every index and constraint in place;
#   copy_pipe COPY ... TO STDOUT (FORMAT binary) | COPY ... FROM STDIN (FORMAT
#             binary) into the same indexed partitioned table;
#   pgrepart  pgrepart run until the shadow is complete: the chunked copy, the
#             index build, and the unique constraints once consistent.
# Prints peak RSS and the line
#   bench backfill: pgrepart=<s> seed=<s> copy_pipe=<s> ratio=<pgrepart/seed>
use strict;
use warnings;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time);
use Pgrepart::Cluster;
use Pgrepart::Test;

my $rows = $ENV{BENCH_ROWS} // 1000000;
my $dir = tempdir(CLEANUP => 1);
my $node = Pgrepart::Cluster->new(settings => { max_wal_size => "'4GB'", shared_buffers => "'512MB'" });
$node->psql(fixture('chat_messages.sql'), vars => { rows => $rows });
$node->psql('VACUUM ANALYZE chat_messages');
my ($rc, $ddl, $err) = pgrepart('plan', '-d', $node->connstr, '-t', 'chat_messages', '-k',
	'created_at', '--sql');
$rc == 0 or die "plan failed: $err";
my $drop = 'DROP TABLE chat_messages_pgrepart CASCADE; CHECKPOINT';

# The seed's step.
$node->psql($ddl);
$node->psql('CHECKPOINT');
my $start = time;
$node->psql('INSERT INTO chat_messages_pgrepart SELECT * FROM chat_messages');
my $seed = time - $start;
$node->psql($drop);

# A binary COPY pipe into the indexed table.
$node->psql($ddl);
$node->psql('CHECKPOINT');
my $psql = Pgrepart::Cluster::bindir() . '/psql';
my $conn = $node->connstr;
$start = time;
system('sh', '-c', "$psql -X -q -d '$conn' -c 'COPY chat_messages TO STDOUT (FORMAT binary)' | "
	. "$psql -X -q -d '$conn' -c 'COPY chat_messages_pgrepart FROM STDIN (FORMAT binary)'") == 0
  or die 'the COPY pipe failed';
my $pipe = time - $start;
$node->psql($drop);

# pgrepart, from nothing to a complete shadow.
$start = time;
my $pid = pgrepart_background("$dir/run.log", 'run', '--cutover', 'manual', '-d', $conn, '-t', 'chat_messages', '-k',
	'created_at');
my $rss = 0;
my $done = 0;
while (!$done)
{
	if (open my $st, '<', "/proc/$pid/status")
	{
		while (<$st>) { $rss = $1 if /^VmHWM:\s+(\d+) kB/ && $1 > $rss }
	}
	my (undef, $phase) = $node->psql(q{SELECT phase FROM pgrepart.migration}, allow_fail => 1);
	$done = 1 if ($phase // '') =~ /synced/;
	die "pgrepart stopped:\n" . slurp("$dir/run.log") if waitpid($pid, POSIX::WNOHANG()) == $pid;
	select undef, undef, undef, 0.05 unless $done;
}
my $pgrepart = time - $start;
kill 'TERM', $pid;
wait_exit($pid);
my $log = slurp("$dir/run.log");
my ($copy_rate) = $log =~ /copied \d+ rows in \d+ chunks \((\d+) rows\/s/;

printf "rows: %d; pgrepart peak RSS %d kB; copy %s rows/s\n", $rows, $rss, $copy_rate // '?';
printf "seed's INSERT ... SELECT %.1f s; COPY pipe %.1f s; pgrepart %.1f s\n", $seed, $pipe, $pgrepart;
printf "bench backfill: pgrepart=%.1f seed=%.1f copy_pipe=%.1f ratio=%.2f\n", $pgrepart, $seed,
	$pipe, $pgrepart / $seed;
