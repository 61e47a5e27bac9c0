#!/usr/bin/env perl
# bench copy_order: on the seed's table (random uuid key), in one run,
#   seq_copy  one COPY of the whole table, in binary, to /dev/null;
#   pipe      one COPY of the whole table piped into the unindexed shadow (what
#             the copy does, in one piece: the floor for a copy that writes);
#   write     the same rows loaded into the unindexed shadow from a file, with
#             nothing reading the table: the writing's own share of the pipe;
#   pipe2     two such pipes at once, each over half of the table's pages:
#             whether splitting the copy across sessions gains on these cores;
#   physical  pgrepart's copy phase in physical order (the default);
#   key       the same in key order (--copy-order key), the baseline it replaces.
# Heap page accesses are the server's (pg_statio_user_tables, hits and reads)
# over the run; its plan finds the partition column's range through the
# column's index, a few pages.  With BENCH_MEMORY_MB
# (as root, on a machine with the cgroup v1 memory controller), the server
# runs in a memory cgroup of that size with 16 MB of shared buffers, and the
# kernel's page cache is dropped after the load and before each copy: the
# table no longer fits in memory.  Prints the line
#   bench copy_order: pages_per_table_page=<physical accesses / table pages>
#     copy_s=<s> seq_copy_s=<s> ratio=<copy_s / seq_copy_s>
#     pipe_copy_s=<s> pipe_ratio=<copy_s / pipe_copy_s>
#     write_copy_s=<s> write_ratio=<write_copy_s / seq_copy_s> pipe2_copy_s=<s>
#     key_pages_per_table_page=<...> key_copy_s=<s>
use strict;
use warnings;
use File::Temp qw(tempdir);
use JSON::PP;
use Time::HiRes qw(time sleep);
use Pgrepart::Cluster;
use Pgrepart::Test;

my $rows = $ENV{BENCH_ROWS} // 1000000;
my $memory_mb = $ENV{BENCH_MEMORY_MB};
my $dir = tempdir(CLEANUP => 1);
my $node = Pgrepart::Cluster->new(settings => { max_wal_size => "'4GB'",
	$memory_mb ? (shared_buffers => "'16MB'") : () });
$node->psql(fixture('chat_messages.sql'), vars => { rows => $rows });
$node->psql('ALTER TABLE chat_messages SET (autovacuum_enabled = off)');
$node->psql('VACUUM ANALYZE chat_messages');
my $pages = $node->psql(q{SELECT pg_relation_size('chat_messages') / 8192});
my $conn = $node->connstr;

# The server and every backend it starts from now on, in a memory cgroup.
my $cgroup;
if ($memory_mb)
{
	$cgroup = "/sys/fs/cgroup/memory/pgrepart_bench_$$";
	mkdir $cgroup or die "cannot create $cgroup: $!";
	open my $pidfile, '<', "$node->{data}/postmaster.pid" or die "no postmaster.pid: $!";
	my $postmaster = <$pidfile>;
	chomp $postmaster;
	for ([ 'memory.limit_in_bytes', $memory_mb * 1048576 ], [ 'cgroup.procs', $postmaster ])
	{
		open my $fh, '>', "$cgroup/$_->[0]" or die "cannot write $cgroup/$_->[0]: $!";
		print $fh "$_->[1]\n";
		close $fh or die "cannot write $cgroup/$_->[0]: $!";
	}
}
END
{
	if ($cgroup)
	{
		$node->stop if $node;
		rmdir $cgroup;
	}
}

# Outside the cgroup the table's pages stay cached from the load.
sub drop_caches
{
	return unless $memory_mb;
	system('sync');
	open my $fh, '>', '/proc/sys/vm/drop_caches' or die "cannot drop the page cache: $!";
	print $fh "1\n";
	close $fh;
}

sub reset_counters
{
	$node->psql(q{SELECT pg_stat_reset_single_table_counters('chat_messages'::regclass)});
}

# One sequential COPY, as fast as the table reads.
my $psql = Pgrepart::Cluster::bindir() . '/psql';
$node->psql('CHECKPOINT');
drop_caches();
my $start = time;
system('sh', '-c', "$psql -X -q -d '$conn' -c 'COPY chat_messages TO STDOUT (FORMAT binary)' > /dev/null") == 0
  or die 'the COPY failed';
my $seq = time - $start;

# The same COPY piped into the shadow as plan makes it, without its indexes.
my ($prc, $ddl, $perr) = pgrepart('plan', '-d', $conn, '-t', 'chat_messages', '-k', 'created_at', '--sql');
$prc == 0 or die "plan failed: $perr";
$ddl =~ s/^(ALTER TABLE .* ADD CONSTRAINT|CREATE (UNIQUE )?INDEX).*$//mg;
$node->psql($ddl);
$node->psql('CHECKPOINT');
drop_caches();

# A shell pipe of the rows COPY $select reads into the shadow, as a command.
sub pipe_into_shadow
{
	my ($select) = @_;
	return "$psql -X -q -d '$conn' -c 'COPY $select TO STDOUT (FORMAT binary)' | "
	  . "$psql -X -q -d '$conn' -c 'COPY chat_messages_pgrepart FROM STDIN (FORMAT binary)'";
}

# $command's time in seconds, from a checkpoint and cold caches; it must
# have loaded every row, and the shadow is emptied after it.
sub timed_into_shadow
{
	my ($what, $command) = @_;
	$node->psql('CHECKPOINT');
	drop_caches();
	my $from = time;
	system('sh', '-c', $command) == 0 or die "$what failed";
	my $took = time - $from;
	my $loaded = $node->psql('SELECT count(*) FROM chat_messages_pgrepart');
	$loaded == $rows or die "$what loaded $loaded rows of $rows";
	$node->psql('TRUNCATE chat_messages_pgrepart');
	return $took;
}

my $pipe = timed_into_shadow('the COPY pipe', pipe_into_shadow('chat_messages'));
system('sh', '-c', "$psql -X -q -d '$conn' -c \"\\copy chat_messages TO '$dir/rows.bin' (FORMAT binary)\"") == 0
  or die 'the COPY to a file failed';
my $write = timed_into_shadow('the COPY from a file',
	"$psql -X -q -d '$conn' -c \"\\copy chat_messages_pgrepart FROM '$dir/rows.bin' (FORMAT binary)\"");
unlink "$dir/rows.bin";
my $half = int($pages / 2);
my $pipe2 = timed_into_shadow('the two COPY pipes',
	'(' . pipe_into_shadow("(SELECT * FROM chat_messages WHERE ctid < \$\$($half,0)\$\$)") . ') & a=$!; ('
	. pipe_into_shadow("(SELECT * FROM chat_messages WHERE ctid >= \$\$($half,0)\$\$)") . ') & b=$!; '
	. 'wait $a && wait $b');
$node->psql('DROP TABLE chat_messages_pgrepart CASCADE');

# pgrepart's copy phase, from its report; the run stops once the shadow is complete.
sub pgrepart_copy
{
	my (@options) = @_;
	reset_counters();
	$node->psql('CHECKPOINT');
	drop_caches();
	my $pid = pgrepart_background("$dir/run.log", 'run', '--cutover', 'manual', '--report',
		"$dir/report.json", '-d', $conn, '-t', 'chat_messages', '-k', 'created_at', @options);
	wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 3600, $pid)
	  or die "pgrepart stopped:\n" . slurp("$dir/run.log");
	kill 'TERM', $pid;
	wait_exit($pid);
	my $report = decode_json(slurp("$dir/report.json"));
	my $accesses = heap_accesses($node, 'chat_messages', $pages * 0.9);
	my ($aborted) = pgrepart('abort', '-d', $conn, '-t', 'chat_messages');
	$aborted == 0 or die 'abort failed';
	return ($accesses / $pages, $report->{phases}{copy});
}

my ($physical_pages, $physical_s) = pgrepart_copy();
my ($key_pages, $key_s) = pgrepart_copy('--copy-order', 'key');

printf "rows: %d; table %d pages%s; seq COPY %.1f s; COPY pipe %.1f s; COPY from a file %.1f s; "
	. "two COPY pipes %.1f s; physical copy %.1f s, key copy %.1f s\n", $rows, $pages,
	$memory_mb ? ", server in $memory_mb MB" : '', $seq, $pipe, $write, $pipe2, $physical_s, $key_s;
printf "bench copy_order: pages_per_table_page=%.2f copy_s=%.1f seq_copy_s=%.1f ratio=%.2f "
	. "pipe_copy_s=%.1f pipe_ratio=%.2f write_copy_s=%.1f write_ratio=%.2f pipe2_copy_s=%.1f "
	. "key_pages_per_table_page=%.2f key_copy_s=%.1f\n",
	$physical_pages, $physical_s, $seq, $physical_s / $seq, $pipe, $physical_s / $pipe, $write,
	$write / $seq, $pipe2, $key_pages, $key_s;
