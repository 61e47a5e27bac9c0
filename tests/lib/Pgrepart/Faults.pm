# Pgrepart::Faults: one fault injected into a `pgrepart run` under a write
# load, then the run finished by running it again, then the result judged.
#
# A trial gets its own database in a shared cluster: the chat_messages
# table, a ledger that every write of the load records in the same
# transaction (tests/fixtures/ledger.pgbench), pgbench writing.  pgrepart
# runs with PGREPART_FAULT_PAUSE=<point>, so it stops for a moment at that
# point (see include/pgrepart/fault.h) and the fault lands there.  After the
# fault, `pgrepart run` is run again until it finishes.  The trial passes
# when the table is partitioned, matches the ledger exactly (every
# acknowledged write, nothing else) and nothing of pgrepart's is left: no
# slot, publication, origin, spool or chunk row.
#
# The point "revert" is the swap back, holding the new table's lock before
# its commit: the run migrates with --revert-window, `pgrepart revert` asks
# for the swap back once the run follows the reverse stream, and the fault
# lands on the run.  The command (or, when it fails, the same command run
# again) must swap back: the table is the original again, matches the
# ledger, and nothing of pgrepart's is left, the reverse stream and the
# migration's row included.
package Pgrepart::Faults;

use strict;
use warnings;
use Exporter 'import';
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep);
use Pgrepart::Cluster;
use Pgrepart::Test;

our @EXPORT_OK = qw(@FAULTS @POINTS trial summary);

our @FAULTS = qw(kill9 sigint sigterm restart_fast restart_immediate terminate_source
  terminate_replication timeouts);
our @POINTS = qw(prepared copy reconcile index catchup verify lock rename cleanup revert);

my $trials = 0;

# Wait for a child at most $seconds; its exit code, or undef if still running.
sub _wait_child
{
	my ($pid, $seconds) = @_;
	my $deadline = time + $seconds;
	while (time < $deadline)
	{
		return $? & 127 ? 128 + ($? & 127) : $? >> 8 if waitpid($pid, POSIX::WNOHANG()) == $pid;
		sleep 0.1;
	}
	return undef;
}

sub _load
{
	my ($db, $dir) = @_;
	return pgbench_background($db, "$dir/pgbench.log", 'ledger.pgbench', '-c', '2', '-R', '100',
		'-T', '600');
}

sub _inject
{
	my ($node, $db, $dbname, $fault, $pid) = @_;
	my $mine = qq{FROM pg_stat_activity WHERE application_name = 'pgrepart' AND datname = '$dbname'};
	if ($fault eq 'kill9') { kill 'KILL', $pid }
	elsif ($fault eq 'sigint') { kill 'INT', $pid }
	elsif ($fault eq 'sigterm') { kill 'TERM', $pid }
	elsif ($fault eq 'restart_fast') { $node->restart('fast') }
	elsif ($fault eq 'restart_immediate') { $node->restart('immediate') }
	elsif ($fault eq 'terminate_source')
	{
		$node->psql(qq{SELECT count(pg_terminate_backend(pid)) $mine AND backend_type = 'client backend'});
	}
	elsif ($fault eq 'terminate_replication')
	{
		$node->psql(qq{SELECT count(pg_terminate_backend(pid)) $mine AND backend_type = 'walsender'});
	}
	elsif ($fault eq 'timeouts')
	{
		# Timeouts a DBA set for the database, which every new session of
		# pgrepart's then gets: its sessions are cut so they reconnect.
		$node->psql(qq{ALTER DATABASE "$dbname" SET statement_timeout = '20ms';
			ALTER DATABASE "$dbname" SET lock_timeout = '10ms';
			ALTER DATABASE "$dbname" SET idle_in_transaction_session_timeout = '200ms';
			SELECT count(pg_terminate_backend(pid)) $mine});
	}
	else { die "unknown fault $fault" }
}

# Whether the pgrepart command $pid finishes (exit 0) within 180 s; one
# that hangs is killed.
sub _finished
{
	my ($pid) = @_;
	my $rc = _wait_child($pid, 180);
	if (!defined $rc)
	{
		kill 'KILL', $pid;
		waitpid $pid, 0;
		return 0;
	}
	return $rc eq '0';
}

# trial($node, $fault, $point) -> { ok => 0|1, first_exit => N, runs => N, why => text }
sub trial
{
	my ($node, $fault, $point) = @_;
	my $dbname = sprintf 'fault_%d_%d', $$, ++$trials;
	my $dir = tempdir(CLEANUP => 1);
	my %r = (ok => 0, runs => 1, first_exit => 'running', why => '');

	$node->psql(qq{CREATE DATABASE "$dbname"});
	my $db = Pgrepart::Cluster->existing($node->connstr(dbname => $dbname));
	$db->psql(fixture('chat_messages.sql'), vars => { rows => 3000 });
	$db->psql(q{CREATE TABLE ledger (id uuid PRIMARY KEY, h text NOT NULL);
		INSERT INTO ledger SELECT id, md5(content) FROM chat_messages});
	my $reverting = $point eq 'revert';
	my @table = ('-d', $db->connstr, '-t', 'chat_messages');
	my @run = ('run', @table, '-k', 'created_at', '--chunk-rows', '1000',
		$reverting ? ('--revert-window', '1h') : ());
	# What finishes the job after the fault: the run, or the revert it was in.
	my @finish = $reverting ? ('revert', @table) : @run;
	my $load = _load($db, $dir);

	my ($pid, $asked);
	{
		local $ENV{PGREPART_FAULT_PAUSE} = $point;
		local $ENV{PGREPART_FAULT_PAUSE_MS} = 2000;
		$pid = pgrepart_background("$dir/run1.log", @run);
	}
	if ($reverting)
	{
		if (!wait_for_text("$dir/run1.log", qr/reverse stream: applying the changes/, 180, $pid))
		{
			$r{why} = "never followed the reverse stream:\n" . slurp("$dir/run1.log");
			kill 'KILL', $pid;
			waitpid $pid, 0;
			goto finish;
		}
		$asked = pgrepart_background("$dir/run2.log", @finish);
	}
	if (!wait_for_text("$dir/run1.log", qr/pausing at fault point \Q$point\E/, 120, $pid))
	{
		$r{why} = "never reached $point:\n" . slurp("$dir/run1.log");
		kill 'KILL', $pid;
		waitpid $pid, 0;
		goto finish;
	}
	sleep rand 0.5;
	_inject($node, $db, $dbname, $fault, $pid);
	if ($fault =~ /^restart/)
	{
		# The load's connections were cut too: start it again.
		waitpid $load, 0;
		$load = _load($db, $dir);
	}
	my $exit = _wait_child($pid, 120);
	if (!defined $exit)
	{
		kill 'KILL', $pid;
		waitpid $pid, 0;
		$exit = 'hung';
	}
	$r{first_exit} = $exit;
	if ($fault =~ /^sig/ && $exit ne '0' && ($exit ne '5' ||
		slurp("$dir/run1.log") !~ /stopped; run the same command again to resume/))
	{
		$r{why} = "$fault: exit $exit, not a clean stop saying how to resume:\n" . slurp("$dir/run1.log");
		goto finish;
	}
	# Run again until it finishes; a revert is finished by the command that
	# asked for it, which takes over from a run that no longer follows.
	my $done = $exit eq '0';
	if ($reverting)
	{
		$r{runs}++;
		$done = _finished($asked);
	}
	while (!$done && $r{runs} < ($reverting ? 5 : 4))
	{
		$r{runs}++;
		$done = _finished(pgrepart_background("$dir/run$r{runs}.log", @finish));
	}
	if (!$done)
	{
		$r{why} = "no run finished:\n" . join '', map { "--- run $_\n" . slurp("$dir/run$_.log") } 1 .. $r{runs};
		goto finish;
	}

	kill 'INT', $load;
	waitpid $load, 0;
	$load = undef;
	# The checks below are no pgrepart session: they run without imposed timeouts.
	$node->psql(qq{ALTER DATABASE "$dbname" RESET ALL});
	my $kind = $db->psql(q{SELECT relkind FROM pg_class WHERE oid = 'public.chat_messages'::regclass});
	my $diff = ledger_differences($db);
	my $after_revert = $reverting ? 'true' : 'false';
	my $left = $db->psql(qq{SELECT concat_ws(' ',
		(SELECT 'slot ' || string_agg(slot_name, ',') FROM pg_replication_slots
		  WHERE database = current_database()),
		(SELECT 'publication ' || string_agg(pubname, ',') FROM pg_publication),
		(SELECT 'origin ' || string_agg(roname, ',') FROM pg_replication_origin
		  WHERE roname LIKE 'pgrepart\_' || (SELECT oid FROM pg_database
		    WHERE datname = current_database()) || '\_%'),
		(SELECT 'spool rows ' || count(*) FROM pgrepart.spool HAVING count(*) > 0),
		(SELECT 'chunk rows ' || count(*) FROM pgrepart.chunk HAVING count(*) > 0),
		(SELECT 'migration rows ' || count(*) FROM pgrepart.migration
		  WHERE $after_revert HAVING count(*) > 0))});
	if ($kind ne ($reverting ? 'r' : 'p'))
	{
		$r{why} = "chat_messages is " . ($reverting ? 'not the original again' : 'not partitioned')
		  . " (relkind $kind)";
	}
	elsif ($diff != 0) { $r{why} = "$diff rows differ from the ledger" }
	elsif ($left ne '') { $r{why} = "left behind: $left" }
	else { $r{ok} = 1 }

  finish:
	if (defined $asked && waitpid($asked, POSIX::WNOHANG()) == 0)
	{
		kill 'KILL', $asked;
		waitpid $asked, 0;
	}
	if (defined $load)
	{
		kill 'INT', $load;
		waitpid $load, 0;
	}
	if (!$r{ok} && $ENV{FAULT_KEEP})
	{
		print STDERR "# kept database $dbname\n";
		return \%r;
	}
	# A failed trial's slot would keep the database from being dropped.
	$node->psql(qq{SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots
		WHERE database = '$dbname' AND NOT active});
	$node->psql(qq{DROP DATABASE "$dbname" WITH (FORCE)});
	return \%r;
}

# The table of results: fault x point, runs, outcomes.
sub summary
{
	my ($results) = @_;
	my $out = sprintf "%-22s %-9s %4s %4s %5s  %s\n", 'fault', 'phase', 'runs', 'ok', 'fail',
	  'first exit codes (then resumed)';
	for my $fault (@FAULTS)
	{
		for my $point (@POINTS)
		{
			my $list = $results->{$fault}{$point} or next;
			my $ok = grep { $_->{ok} } @$list;
			my %exits;
			$exits{ $_->{first_exit} }++ for @$list;
			$out .= sprintf "%-22s %-9s %4d %4d %5d  %s\n", $fault, $point, scalar @$list, $ok,
			  @$list - $ok, join ' ', map { "$_ x$exits{$_}" } sort keys %exits;
		}
	}
	return $out;
}

1;
