# The replication origin and the slot stay held by the server processes of
# a run that was just killed until those processes notice and exit.  A run
# started in that moment waits for them quietly instead of reporting a
# competitor; one that is really there (here a session that keeps holding
# the origin) is reported after the wait, with its PID.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(q{CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, body text);
	INSERT INTO events SELECT g, now() - g * interval '1 minute', 'e' || g FROM generate_series(1, 1000) g;});
my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'events', '-k', 'at');
ready_to_catch_up($node, "$dir/first.log", @run);
my ($origin, $slot, $publication) = split /\|/,
  $node->psql(q{SELECT origin_name, slot_name, publication_name FROM pgrepart.migration});

# Hold the origin (or the slot) with a session of its own; returns its pid
# once the server shows it held.
sub hold_origin
{
	my ($seconds) = @_;
	my $pid = client_background("$dir/holder.log", 'psql', '-X', '-d', $node->connstr(), '-c',
		"SELECT pg_replication_origin_session_setup('$origin')", '-c', "SELECT pg_sleep($seconds)");
	wait_for($node, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'}, 30, $pid)
	  or BAIL_OUT('the origin holder did not start: ' . slurp("$dir/holder.log"));
	return $pid;
}

sub end_holder
{
	my ($where) = @_;
	$node->psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE $where");
}

# A holder ($by, pid $holder, found by $where) that goes away while the run
# waits for the $held: the run waits (its log matches $waiting), takes it
# once the holder is gone, catches up, stops cleanly, and reports no error.
sub released_while_waiting
{
	my ($held, $by, $holder, $waiting, $where) = @_;
	my $log = "$dir/$held.log";
	my $lsn = $node->psql(q{INSERT INTO events SELECT max(id) + 1, now(), 'held' FROM events
		RETURNING pg_current_wal_lsn()});
	my $run = pgrepart_background($log, @run);
	ok(wait_for_text($log, $waiting, 30, $run), "the run waits for the $held held by another $by")
	  or diag(slurp($log));
	end_holder($where);
	wait_exit($holder);
	ok(wait_for($node, applied_up_to($lsn), 60, $run), "and takes it once that $by is gone")
	  or diag(slurp($log));
	kill 'TERM', $run;
	is(wait_exit($run), 5, 'then stops cleanly');
	unlike(slurp($log), qr/error:/, 'no error was reported');
}
my $origin_holder = q{wait_event = 'PgSleep'};
released_while_waiting('origin', 'session', hold_origin(60), qr/waiting up to 5 s for it to be released/,
	$origin_holder);

# Hold the slot with pg_recvlogical's walsender; returns its pid once held.
sub hold_slot
{
	my $pid = client_background("$dir/recvlogical.log", 'pg_recvlogical', '-d', $node->connstr(), '-S',
		$slot, '--start', '--no-loop', '-o', 'proto_version=1', '-o', "publication_names=$publication",
		'-f', '/dev/null');
	wait_for($node, qq{SELECT active FROM pg_replication_slots WHERE slot_name = '$slot'}, 30, $pid)
	  or BAIL_OUT('pg_recvlogical did not take the slot: ' . slurp("$dir/recvlogical.log"));
	return $pid;
}
my $slot_holder = qq{pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot')};
released_while_waiting('slot', 'walsender', hold_slot(),
	qr/replication slot "\Q$slot\E" is active for PID \d+; waiting/, $slot_holder);

# A holder that stays: reported after the wait, with the holder's PID.
my $holder = hold_origin(60);
my $run = pgrepart_background("$dir/competitor.log", @run);
ok(wait_for_text("$dir/competitor.log", qr/hint: Another pgrepart process may be applying this migration/, 30,
	$run), 'a holder that stays is reported') or diag(slurp("$dir/competitor.log"));
like(slurp("$dir/competitor.log"),
	qr/error: could not take the replication origin on the target database: replication origin with ID \d+ is already active for PID \d+ \(SQLSTATE 55006\)/,
	'the error names the PID that holds the origin');
kill 'TERM', $run;
wait_exit($run);
end_holder($origin_holder);
wait_exit($holder);

# abort right after a run ended: its walsender and backend may still hold
# slot and origin for a moment, which abort waits out.
my @holders = (hold_origin(60), hold_slot());
my $abort = pgrepart_background("$dir/abort.log", 'abort', '-d', $node->connstr, '-t', 'events');
select(undef, undef, undef, 1.0);
end_holder($slot_holder);
end_holder($origin_holder);
wait_exit($_) for @holders;
is(wait_exit($abort), 0, 'abort waits for the sessions that held slot and origin, then removes them')
  or diag(slurp("$dir/abort.log"));
unlike(slurp("$dir/abort.log"), qr/error:/, 'abort reported no error');
is($node->psql(qq{SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot')
	+ (SELECT count(*) FROM pg_replication_origin WHERE roname = '$origin')}), 0, 'slot and origin are gone');

done_testing();
