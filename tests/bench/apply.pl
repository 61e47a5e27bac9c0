#!/usr/bin/env perl
# bench apply: the same recorded change stream (single-row transactions of
# the mixed load) caught up by PostgreSQL's native logical replication into a
# plain copy of the table on a second cluster, and by pgrepart into the
# partitioned shadow, in one run.
#
# Both slots are created before the load, with no writes in between, so both
# consumers start from the same table state and read the same transactions.
# Prints per-side catch-up rates, the CPU time of each side's processes,
# three bounds (the walsender's CPU time, which every change passes through;
# the server decoding the stream with nothing applying it; the server doing
# the stream's row work in bulk), and the summary line
#   bench apply: pgrepart=<changes/s> native=<changes/s> ratio=<pgrepart/native>
use strict;
use warnings;
use File::Temp qw(tempdir);
use Time::HiRes qw(time);
use Pgrepart::Cluster;
use Pgrepart::Test;

my $transactions = $ENV{BENCH_TRANSACTIONS} // 50000;
my $rows = $ENV{BENCH_ROWS} // 100000;
my $dir = tempdir(CLEANUP => 1);

# Quiet servers: no autovacuum, and a checkpoint before each timed catch-up,
# so neither side pays for work the other does not.
my $source = Pgrepart::Cluster->new(settings => { autovacuum => 'off' });
my $native = Pgrepart::Cluster->new(settings => { autovacuum => 'off' });
$source->psql(fixture('chat_messages.sql'), vars => { rows => $rows });

# pgrepart: prepare, copy and index, then stop before any load, so what is
# timed below is the catch-up alone.
my @run = ('run', '--cutover', 'manual', '-d', $source->connstr, '-t', 'chat_messages', '-k', 'created_at');
ready_to_catch_up($source, "$dir/prepare.log", @run);

# Native: the same schema and rows on the second cluster, a publication and a
# slot on the source, the subscription created disabled on that slot.
my (undef, $schema) = Pgrepart::Cluster::run_capture([ Pgrepart::Cluster::bindir() . '/pg_dump',
	'-s', '-t', 'chat_messages', '-t', 'users', '-t', 'tasks', '-d', $source->connstr ]);
$native->psql("CREATE TYPE messagerole AS ENUM ('user', 'assistant', 'system', 'tool');\n$schema");
for my $t (qw(users tasks chat_messages))
{
	my (undef, $data) = Pgrepart::Cluster::run_capture([ Pgrepart::Cluster::bindir() . '/psql', '-X',
		'-d', $source->connstr, '-c', "COPY $t TO STDOUT" ]);
	$native->psql("COPY $t FROM STDIN;\n$data\\.\n");
}
$source->psql(q{CREATE PUBLICATION native_pub FOR TABLE chat_messages;
	SELECT pg_create_logical_replication_slot('native_slot', 'pgoutput');
	SELECT pg_create_logical_replication_slot('decode_slot', 'pgoutput')});
my $conn = $source->connstr;
$native->psql(qq{CREATE SUBSCRIPTION native_sub CONNECTION '$conn' PUBLICATION native_pub
	WITH (create_slot = false, slot_name = 'native_slot', copy_data = false, enabled = false)});

# The recorded stream: single-row transactions of the mixed load.
my $load = pgbench_background($source, "$dir/pgbench.log", 'mixed.pgbench', '-c', '1',
	'-t', $transactions);
wait_exit($load) == 0 or die "pgbench failed:\n" . slurp("$dir/pgbench.log");
# Each side is timed until its target has committed the stream's last
# transaction, as its replication origin records.  Not until the slot is
# confirmed: native's apply worker confirms only what its asynchronous
# commits have put on disk, and at its own pace, some tenths of a second
# after applying it.
my $end = last_commit_end($source, 'decode_slot', 'native_pub');

# For scale: the server decoding the same stream with nothing applying it,
# which bounds what any consumer can reach.
my $start = time;
$source->psql(q{SELECT count(*) FROM pg_logical_slot_get_binary_changes('decode_slot', NULL, NULL,
	'proto_version', '1', 'publication_names', 'native_pub', 'binary', 'true')});
my $decode_secs = time - $start;

# The row operations done on the shadow's partitions so far: the difference
# across the catch-up is the row work the stream asked of pgrepart.
my $ops_sql = q{SELECT coalesce(sum(n_tup_ins), 0) || ' ' || coalesce(sum(n_tup_upd), 0) || ' ' ||
	coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables s JOIN pg_inherits i ON i.inhrelid = s.relid
	WHERE i.inhparent = 'chat_messages_pgrepart'::regclass};
my @ops_before = split ' ', $source->psql($ops_sql);

# pgrepart catches up.
$_->psql('CHECKPOINT') for $source, $native;
$start = time;
my $pid = pgrepart_background("$dir/pgrepart.log", @run);
wait_on_server($source, origin_reached($end), 1800, $pid)
  or die "pgrepart did not catch up:\n" . slurp("$dir/pgrepart.log");
my $pgrepart_secs = time - $start;
# The CPU each process spent: on a machine with few cores the sum, not one
# process, is what the catch-up waits for.
my @pgrepart_cpu = pgrepart_cpu($source, $pid);
my $rss = 0;
if (open my $st, '<', "/proc/$pid/status")
{
	while (<$st>) { $rss = $1 if /^VmHWM:\s+(\d+) kB/ }
}
kill 'TERM', $pid;
wait_exit($pid);
# The changes in the stream, as pgrepart counted them applying it.
my ($changes) = slurp("$dir/pgrepart.log") =~ /applied (\d+) changes[^\n]*\n[^\n]*stopped/;
$changes or die "no change count in the log:\n" . slurp("$dir/pgrepart.log");

# Native catches up.
$_->psql('CHECKPOINT') for $source, $native;
$start = time;
$native->psql('ALTER SUBSCRIPTION native_sub ENABLE');
wait_on_server($native, qq{SELECT s.remote_lsn >= '$end' FROM pg_replication_origin_status s
	JOIN pg_subscription u ON s.external_id = 'pg_' || u.oid WHERE u.subname = 'native_sub'}, 1800)
  or die "native replication did not catch up:\n" . $native->server_log;
my $native_secs = time - $start;
my @native_cpu = (server_cpu($source, "backend_type = 'walsender' AND application_name = 'native_sub'"),
	server_cpu($native, "backend_type = 'logical replication worker'"));

# The floor: as many row inserts, updates and deletes as the catch-up did,
# done on the shadow inside the server and rolled back: the inserts by one
# binary COPY of rows like the load's new messages, the updates and deletes
# by one set-based statement each, with the keys at hand and the cheapest
# kind of update (no indexed column, no TOASTed value); no decoding, no
# network; the shadow vacuumed first, so the catch-up's dead rows are gone
# and its pages have room.  An apply through SQL can hardly go faster: this
# is the work it cannot leave out, in the conditions most in its favour.
my @ops_after = split ' ', $source->psql($ops_sql);
my ($ins, $upd, $del) = map { $ops_after[$_] - $ops_before[$_] } 0 .. 2;
my @floor = split /\|/, $source->psql(qq{VACUUM chat_messages_pgrepart;
	CHECKPOINT;
	CREATE TABLE floor_keys AS
		SELECT id, created_at, row_number() OVER () AS n FROM
			(SELECT id, created_at FROM chat_messages_pgrepart ORDER BY md5(id::text) LIMIT $upd + $del) k;
	ANALYZE floor_keys;
	COPY (SELECT (SELECT id FROM users ORDER BY id LIMIT 1), NULL::uuid, gen_random_uuid(),
			gen_random_uuid()::text, 'user'::messagerole, repeat('new message ', 1 + g % 10), NULL::json,
			false, g % 100, 'gpt-4o'::varchar, gen_random_uuid(), now()::timestamp, now()::timestamp,
			NULL::timestamp
		FROM generate_series(1, $ins) g) TO '$source->{data}/floor.copy' (FORMAT binary);
	BEGIN;
	SELECT clock_timestamp() AS t0 \\gset
	COPY chat_messages_pgrepart FROM '$source->{data}/floor.copy' (FORMAT binary);
	SELECT clock_timestamp() AS t1 \\gset
	UPDATE chat_messages_pgrepart t
		SET tokens_used = coalesce(t.tokens_used, 0) + 1, updated_at = t.updated_at + interval '1 second'
		FROM floor_keys k WHERE k.n <= $upd AND t.id = k.id AND t.created_at = k.created_at;
	SELECT clock_timestamp() AS t2 \\gset
	DELETE FROM chat_messages_pgrepart t
		USING floor_keys k WHERE k.n > $upd AND t.id = k.id AND t.created_at = k.created_at;
	SELECT clock_timestamp() AS t3 \\gset
	ROLLBACK;
	DROP TABLE floor_keys;
	SELECT extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz) || '|' ||
		extract(epoch FROM :'t2'::timestamptz - :'t1'::timestamptz) || '|' ||
		extract(epoch FROM :'t3'::timestamptz - :'t2'::timestamptz)});
my $floor_secs = $floor[0] + $floor[1] + $floor[2];

my ($missing, $extra) = compare_tables($source, 'chat_messages', 'chat_messages_pgrepart');
my $p = $changes / $pgrepart_secs;
my $n = $changes / $native_secs;
printf "changes in the stream: %d (%d transactions)\n", $changes, $transactions;
printf "pgrepart: %.1f s, %.0f changes/s, peak RSS %d kB, shadow differs by %s/%s rows\n",
	$pgrepart_secs, $p, $rss, $missing, $extra;
printf "native:   %.1f s, %.0f changes/s\n", $native_secs, $n;
printf "CPU seconds: pgrepart's walsender %.2f, its sessions %.2f, pgrepart %.2f; "
  . "native's walsender %.2f, its apply worker %.2f\n", @pgrepart_cpu, @native_cpu;
# Every change passes through the one walsender: its CPU time bounds the catch-up.
printf "the walsender alone: %.0f changes/s at most = %.2f x native\n", $changes / $pgrepart_cpu[0],
  $native_secs / $pgrepart_cpu[0]
  if $pgrepart_cpu[0] > 0;
printf "decoding alone (no apply): %.2f s, %.0f changes/s\n", $decode_secs, $changes / $decode_secs;
printf "row work alone (%d inserts by COPY in %.2f s, %d updates in %.2f s, %d deletes in %.2f s): "
  . "%.0f changes/s = %.2f x native\n", $ins, $floor[0], $upd, $floor[1], $del, $floor[2], $changes / $floor_secs,
  $changes / $floor_secs / $n;
printf "bench apply: pgrepart=%.0f native=%.0f ratio=%.2f\n", $p, $n, $p / $n;
