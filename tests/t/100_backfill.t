# The chunked backfill under an adversarial load: while the rows are copied
# in small chunks, each under its own snapshot, clients insert, update
# (TOASTed content unchanged and changed), change keys and partition values,
# delete, re-insert, roll back, hold a transaction open across several
# chunks, and commit one transaction touching both copied and uncopied key
# ranges.  After the apply, at a known WAL position, every row is equal.
# Repeated with different seeds.  No pgrepart session holds a snapshot
# for more than a small part of the copy meanwhile.
use strict;
use warnings;
use File::Temp qw(tempdir);
use POSIX ();
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my @seeds = split /,/, ($ENV{PGREPART_SEEDS} // '11,22,33');

for my $seed (@seeds)
{
	my $node = Pgrepart::Cluster->new(settings => { logical_decoding_work_mem => "'64kB'" });
	my $dir = tempdir(CLEANUP => 1);
	$node->psql(fixture('chat_messages.sql'), vars => { rows => 20000 });
	# Out-of-line content, so updates that leave it alone send it as 'unchanged'.
	$node->psql(q{
		UPDATE chat_messages SET content = (SELECT string_agg(md5(random()::text || i), '')
		  FROM generate_series(1, 300) i) WHERE tokens_used % 10 = 3});

	# 20,000 rows in chunks of 400 at 5,000 rows/s: about 50 chunks over 4 s.
	my $run = pgrepart_background("$dir/run.log", 'run', '--cutover', 'manual', '-d', $node->connstr, '-t',
		'chat_messages', '-k', 'created_at', '--chunk-rows', '400', '--rate', '5000');
	ok(wait_for($node, q{SELECT count(*) > 0 FROM pgrepart.chunk}, 30, $run),
		"seed $seed: the copy started") or diag(slurp("$dir/run.log"));

	my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '3',
		'-T', '6', "--random-seed=$seed");

	# A transaction held open across several chunks, writing at both ends of the key range.
	my $long = fork // die;
	if ($long == 0)
	{
		$node->psql(q{
			BEGIN;
			UPDATE chat_messages SET tokens_used = -1
			 WHERE id = (SELECT id FROM chat_messages ORDER BY id LIMIT 1);
			SELECT pg_sleep(2);
			UPDATE chat_messages SET tokens_used = -2
			 WHERE id = (SELECT id FROM chat_messages ORDER BY id DESC LIMIT 1);
			DELETE FROM chat_messages WHERE id = (SELECT id FROM chat_messages ORDER BY id OFFSET 5000 LIMIT 1);
			COMMIT;}, allow_fail => 1);
		# Not exit: the parent's cluster must outlive this child.
		POSIX::_exit(0);
	}
	# Meanwhile sample pgrepart's sessions: none may hold a snapshot for long.
	my $oldest = 0;
	my $samples = 0;
	my $retained = 0;
	my ($first, $last);
	my $wal_start = $node->psql('SELECT pg_current_wal_lsn()');
	# One query per sample: a psql start costs a tenth of a second on a busy machine.
	while (kill(0, $run))
	{
		my ($copying, $now, $age, $held) = split /\|/, $node->psql(q{
			SELECT phase IN ('prepared', 'copying'), extract(epoch FROM clock_timestamp()),
			  (SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0) FROM pg_stat_activity
			    WHERE application_name = 'pgrepart' AND backend_xmin IS NOT NULL
			      AND backend_type = 'client backend'),
			  (SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), 0)
			    FROM pg_replication_slots WHERE slot_name LIKE 'pgrepart%')
			FROM pgrepart.migration});
		last if ($copying // '') ne 't';
		$first //= $now;
		$last = $now;
		$oldest = $age if $age > $oldest;
		$retained = $held if $held > $retained;
		$samples++;
		select undef, undef, undef, 0.1;
	}
	waitpid $long, 0;
	my $written = $node->psql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal_start')");
	# A spool that confirmed nothing would leave the slot holding all the WAL
	# written since its creation, more than $written; one that keeps up holds
	# what it has not stored yet, a part that grows when the machine is busy.
	cmp_ok($retained, '<', $written * 0.75,
		"seed $seed: the spool keeps the slot's unconfirmed WAL a part of what was written ($retained of $written bytes)");
	cmp_ok($samples, '>=', 3, "seed $seed: sampled the sessions during the copy");
	# One snapshot for the whole copy would be as old as the copy; a busy
	# machine makes chunks and copy slower alike.
	my $copy = ($last // 0) - ($first // 0);
	cmp_ok($oldest, '<', $copy / 2,
		sprintf("seed $seed: no pgrepart snapshot lasted half the copy (oldest %.2f s of %.2f s)", $oldest, $copy));
	is(wait_exit($load), 0, "seed $seed: pgbench ran without failures")
	  or diag(slurp("$dir/pgbench.log"));
	cmp_ok($node->psql(q{SELECT count(*) FROM pgrepart.chunk}), '>', 20, "seed $seed: many chunks");

	my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
	ok(wait_for($node, applied_up_to($lsn), 120, $run), "seed $seed: the apply reached $lsn")
	  or diag(slurp("$dir/run.log"));
	# Once the stream has passed every chunk's snapshot (with or without more
	# writes: a quiet stream counts), the run builds the unique constraints.
	ok(wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 120, $run),
		"seed $seed: the unique constraints are built") or diag(slurp("$dir/run.log"));
	kill 'TERM', $run;
	is(wait_exit($run), 5, "seed $seed: the run stops cleanly");
	my $log = slurp("$dir/run.log");
	unlike($log, qr/error:/, "seed $seed: no errors") or diag($log);
	my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
	is("$missing/$extra", '0/0', "seed $seed: every row equal");
	$node->stop;
}

done_testing();
