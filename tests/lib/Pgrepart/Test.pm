# Pgrepart::Test: helpers for running the pgrepart binary in tests.
package Pgrepart::Test;

use strict;
use warnings;
use Exporter 'import';
use POSIX ();
use Pgrepart::Cluster;

our @EXPORT = qw(pgrepart fixture ledger_differences pgrepart_background hold_lock migrating_role wait_exit wait_for wait_on_server wait_for_text compare_tables origin_reached last_commit_end applied_up_to pgbench_background client_background slurp
	ready_to_catch_up cpu_seconds server_cpu pgrepart_cpu peak_rss_mb open_transactions heap_accesses);

# pgrepart(@args) -> (exit code, stdout, stderr).  PGREPART names the binary
# under test (the Makefile points it at ./pgrepart or the sanitizer build).
sub pgrepart
{
	my @args = @_;
	my $bin = $ENV{PGREPART} // 'pgrepart';
	return Pgrepart::Cluster::run_capture([ $bin, @args ]);
}

# The text of a file in tests/fixtures.
sub fixture
{
	my ($name) = @_;
	my $dir = __FILE__;
	$dir =~ s{lib/Pgrepart/Test\.pm$}{fixtures};
	open my $fh, '<', "$dir/$name" or die "fixture $name: $!";
	local $/;
	return <$fh>;
}

# In a forked child: append standard output and error to $log.
sub _child_log
{
	my ($log) = @_;
	open STDOUT, '>>', $log or Pgrepart::Cluster::child_exit("$log: $!");
	open STDERR, '>>', $log or Pgrepart::Cluster::child_exit("$log: $!");
}

# Start pgrepart in the background, its output appended to $log; returns its pid.
sub pgrepart_background
{
	my ($log, @args) = @_;
	my $bin = $ENV{PGREPART} // 'pgrepart';
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		_child_log($log);
		Pgrepart::Cluster::child_exec($bin, @args);
	}
	return $pid;
}

my %exited;

# The exit code in a child's wait status (128 + the signal when killed).
sub _exit_code
{
	my ($status) = @_;
	return $status & 127 ? 128 + ($status & 127) : $status >> 8;
}

# Wait for a child; returns its exit code (128 + signal when killed).
sub wait_exit
{
	my ($pid) = @_;
	return delete $exited{$pid} if exists $exited{$pid};
	waitpid $pid, 0;
	return _exit_code($?);
}

# Call $check every $interval seconds until it returns true, at most
# $seconds (120 unless given); returns whether it did.  With $pid, give up as
# soon as that child exits (wait_exit still gives its exit code).
sub _poll
{
	my ($check, $seconds, $pid, $interval) = @_;
	my $deadline = time + ($seconds // 120);
	while (time < $deadline)
	{
		return 1 if $check->();
		if (defined $pid && waitpid($pid, POSIX::WNOHANG()) == $pid)
		{
			$exited{$pid} = _exit_code($?);
			return 0;
		}
		select(undef, undef, undef, $interval);
	}
	return 0;
}

# Poll a query every $interval seconds (0.2 unless given) until it returns
# 't', at most $seconds; returns whether it did.  With $pid, give up as soon
# as that child exits.
sub wait_for
{
	my ($node, $sql, $seconds, $pid, $interval) = @_;
	return _poll(sub {
		my ($rc, $out) = $node->psql($sql, allow_fail => 1);
		return $rc == 0 && defined $out && $out =~ /^t/;
	}, $seconds, $pid, $interval // 0.2);
}

# Like wait_for, with the loop on the server: one session checks every 10 ms
# until the query returns true, where wait_for starts a psql for each check
# (a cost a benchmark would measure).  Each check commits, so the session
# holds no lock or snapshot between checks.  At most $seconds; with $pid,
# give up as soon as that child exits.
sub wait_on_server
{
	my ($node, $sql, $seconds, $pid) = @_;
	$seconds //= 120;
	my $waiter = fork // die "fork: $!";
	if ($waiter == 0)
	{
		_child_log('/dev/null');
		Pgrepart::Cluster::child_exec(Pgrepart::Cluster::bindir() . '/psql', '-X', '-q',
			'-v', 'ON_ERROR_STOP=1', '-d', $node->connstr, '-c', "SET statement_timeout = '${seconds}s'",
			'-c', "DO \$\$ BEGIN WHILE NOT coalesce(($sql), false) LOOP COMMIT; "
			  . "PERFORM pg_catalog.pg_sleep(0.01); END LOOP; END \$\$");
	}
	my $status;
	my $done = _poll(sub {
		return 0 if waitpid($waiter, POSIX::WNOHANG()) != $waiter;
		$status = $?;
		return 1;
	}, $seconds + 10, $pid, 0.005);
	if (!$done)
	{
		kill 'TERM', $waiter;
		waitpid $waiter, 0;
	}
	return $done && $status == 0;
}

# Poll a file every 50 ms until it matches $re, at most $seconds; returns
# whether it did.  With $pid, give up as soon as that child exits.
sub wait_for_text
{
	my ($file, $re, $seconds, $pid) = @_;
	return _poll(sub { slurp($file) =~ $re }, $seconds, $pid, 0.05);
}

# Rows of a in b and of b in a, compared by their text form: (missing, extra).
sub compare_tables
{
	my ($node, $a, $b) = @_;
	my $missing = $node->psql("SELECT count(*) FROM (SELECT x::text FROM $a x EXCEPT ALL SELECT y::text FROM $b y) d");
	my $extra = $node->psql("SELECT count(*) FROM (SELECT y::text FROM $b y EXCEPT ALL SELECT x::text FROM $a x) d");
	return ($missing, $extra);
}

# How many of $n samples, 0.3 s apart, found a pgrepart session with a
# transaction open for more than a second: 0 when pgrepart holds none.
sub open_transactions
{
	my ($node, $n) = @_;
	my $open = 0;
	for (1 .. $n)
	{
		$open += $node->psql(q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgrepart'
			AND backend_type = 'client backend' AND xact_start < clock_timestamp() - interval '1 second'});
		select undef, undef, undef, 0.3;
	}
	return $open;
}

# Run one of PostgreSQL's client programs (psql, pgbench, pg_recvlogical)
# in the background; returns its pid.  Its output goes to $log.
sub client_background
{
	my ($log, $program, @args) = @_;
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		_child_log($log);
		Pgrepart::Cluster::child_exec(Pgrepart::Cluster::bindir() . "/$program", @args);
	}
	return $pid;
}

# SQL creating $role with the privileges docs/operations.md lists for a run
# (ownership of the table aside), nothing more; $password optional.
sub migrating_role
{
	my ($role, $password) = @_;
	my $login = defined $password ? "LOGIN REPLICATION PASSWORD '$password'" : 'LOGIN REPLICATION';
	return qq{
	CREATE ROLE $role $login;
	GRANT CREATE ON DATABASE postgres TO $role;
	GRANT CREATE ON SCHEMA public TO $role;
	GRANT EXECUTE ON FUNCTION
	    pg_catalog.pg_replication_origin_create(text),
	    pg_catalog.pg_replication_origin_drop(text),
	    pg_catalog.pg_replication_origin_session_setup(text),
	    pg_catalog.pg_replication_origin_progress(text, boolean),
	    pg_catalog.pg_replication_origin_xact_setup(pg_catalog.pg_lsn, timestamptz)
	  TO $role;
	};
}

# A session in the background that locks $table in $mode for $seconds, then
# commits; returns its pid (waitpid it).
sub hold_lock
{
	my ($node, $table, $mode, $seconds) = @_;
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		$node->psql("BEGIN; LOCK TABLE $table IN $mode MODE; SELECT pg_sleep($seconds); COMMIT;");
		# Not exit: the parent's cluster must outlive this child.
		POSIX::_exit(0);
	}
	return $pid;
}

# Run pgbench in the background against a cluster with a script from
# tests/fixtures; returns its pid.  Its output goes to $log.
sub pgbench_background
{
	my ($node, $log, $script, @args) = @_;
	my $file = __FILE__;
	$file =~ s{lib/Pgrepart/Test\.pm$}{fixtures/$script};
	return client_background($log, 'pgbench', '-n', '-f', $file, @args, $node->connstr);
}

# The SQL for "the migration's slot has been confirmed up to lsn" (of the
# given source table, else the first migration): pgrepart confirms only what
# is committed in the shadow (or WAL with nothing for it while everything
# received is applied).
sub applied_up_to
{
	my ($lsn, $table) = @_;
	my $which = defined $table ? "WHERE m.source_table = '$table' " : '';
	# The slot's confirmed position counts only once the copy is over and the
	# spool (which the slot confirms while copying) has been applied.
	return "SELECT coalesce(s.confirmed_flush_lsn >= '$lsn', false) "
	  . "AND m.phase IN ('streaming', 'synced') "
	  . "AND NOT EXISTS (SELECT 1 FROM pgrepart.spool p WHERE p.migration_id = m.id) "
	  . "FROM pg_replication_slots s "
	  . "JOIN pgrepart.migration m ON m.slot_name = s.slot_name ${which}ORDER BY m.id LIMIT 1";
}

# Run pgrepart (@run, logging to $log) until it streams, then stop it, with
# its slot's restart point moved past the copy to a running-transactions
# record a checkpoint writes, as a long-running migration's is: a catch-up
# timed from here does not first read through all the WAL of the copy again.
sub ready_to_catch_up
{
	my ($node, $log, @run) = @_;
	my $pid = pgrepart_background($log, @run);
	wait_for($node, q{SELECT count(*) = 1 FROM pgrepart.migration WHERE phase IN ('streaming', 'synced')},
		300, $pid)
	  or die "pgrepart did not reach streaming:\n" . slurp($log);
	my $before_checkpoint = $node->psql('SELECT pg_current_wal_lsn()');
	$node->psql('CHECKPOINT');
	wait_for($node, qq{SELECT restart_lsn >= '$before_checkpoint' FROM pg_replication_slots
		WHERE slot_name LIKE 'pgrepart%'}, 120, $pid)
	  or die "pgrepart's slot did not move on:\n" . slurp($log);
	kill 'TERM', $pid;
	wait_exit($pid);
}

# The SQL for "the first migration's origin has committed a source
# transaction ending at or after lsn": the moment the shadow holds it, not
# yet on disk, and before pgrepart confirms it to the slot.
sub origin_reached
{
	my ($lsn) = @_;
	return "SELECT coalesce(pg_replication_origin_progress(origin_name, false) >= '$lsn', false) "
	  . "FROM pgrepart.migration ORDER BY id LIMIT 1";
}

# The end LSN of the last transaction a pgoutput slot holds for a
# publication, read by peeking (the slot stays where it is): the position
# an origin applying that stream reaches once it has applied all of it.
# Bytes 11 to 18 of a Commit message are the transaction's end.
sub last_commit_end
{
	my ($node, $slot, $publication) = @_;
	return $node->psql(qq{SELECT '0/0'::pg_lsn + max(('x' || encode(substr(data, 11, 8), 'hex'))::bit(64)::int8)
		FROM pg_logical_slot_peek_binary_changes('$slot', NULL, NULL,
			'proto_version', '1', 'publication_names', '$publication')
		WHERE get_byte(data, 0) = ascii('C')});
}

# CPU seconds (user and system) a process has used so far, from /proc
# (Linux only); 0 where that cannot be read.
sub cpu_seconds
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or return 0;
	my $stat = <$fh> // return 0;
	# The name in parentheses may hold spaces: count the fields after it.
	$stat =~ s/^.*\) //s;
	my @f = split ' ', $stat;
	return ($f[11] + $f[12]) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
}

# CPU seconds of the server processes pg_stat_activity lists WHERE $where.
sub server_cpu
{
	my ($node, $where) = @_;
	my $sum = 0;
	$sum += cpu_seconds($_)
	  for split ' ', $node->psql("SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE $where");
	return $sum;
}

# CPU seconds of a pgrepart run ($pid) on $node so far: its walsender, its
# other server sessions, and the process itself.
sub pgrepart_cpu
{
	my ($node, $pid) = @_;
	return (server_cpu($node, "backend_type = 'walsender'"),
		server_cpu($node, "application_name LIKE 'pgrepart%' AND backend_type <> 'walsender'"), cpu_seconds($pid));
}

# The peak resident memory of a process so far (VmHWM), in MB (Linux only;
# 0 where that cannot be read).
sub peak_rss_mb
{
	my ($pid) = @_;
	open my $st, '<', "/proc/$pid/status" or return 0;
	while (<$st>) { return $1 / 1024 if /^VmHWM:\s+(\d+) kB/ }
	return 0;
}

# The heap page accesses (hits and reads) the server counted for a table,
# once they reach at_least: a backend sends its counts when its transaction
# ends idle or when it exits, so wait for those expected, then a second more.
sub heap_accesses
{
	my ($node, $table, $at_least) = @_;
	wait_for($node, qq{SELECT heap_blks_hit + heap_blks_read >= $at_least
		FROM pg_statio_user_tables WHERE relname = '$table'}, 60);
	sleep 1;
	return $node->psql(qq{SELECT heap_blks_hit + heap_blks_read FROM pg_statio_user_tables
		WHERE relname = '$table'});
}

# Rows of chat_messages that differ from the ledger the load keeps
# (tests/fixtures/ledger.pgbench): missing, extra or with other content.
sub ledger_differences
{
	my ($node) = @_;
	return $node->psql(q{SELECT count(*) FROM (
		(SELECT id, md5(content) FROM chat_messages EXCEPT SELECT id, h FROM ledger)
		UNION ALL (SELECT id, h FROM ledger EXCEPT SELECT id, md5(content) FROM chat_messages)) d});
}

sub slurp
{
	my ($path) = @_;
	open my $fh, '<', $path or return '';
	local $/;
	return <$fh>;
}

1;
