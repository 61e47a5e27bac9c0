# Snapshots older than the swap.  A REPEATABLE READ transaction that took
# its snapshot before the swap and first reads the table after it sees the
# new table as of that snapshot: rows the shadow received after the
# snapshot are missing, though the source had them before it.  PostgreSQL
# documents the same for CLUSTER and TRUNCATE.  The run names such
# sessions in its log and report; --wait-for-snapshots makes each attempt
# wait for them, so the reader sees the original, whole.
use strict;
use warnings;
use File::Temp qw(tempdir);
use JSON::PP qw(decode_json);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(q{
	CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL);
	INSERT INTO events SELECT g, timestamptz '2025-01-01' + g * interval '1 hour' FROM generate_series(1, 2000) g;
	CREATE TABLE marker (x int); INSERT INTO marker VALUES (1);
});
open my $fh, '>', "$dir/reader.sql" or die $!;
# The snapshot is taken by the first query; the advisory lock holds the
# reader until the test lets it go; then it reads events.
print $fh "BEGIN ISOLATION LEVEL REPEATABLE READ;\nSELECT 'marker', count(*) FROM marker;\n"
  . "SELECT pg_advisory_lock(42);\nSELECT 'events', count(*) FROM events;\nCOMMIT;\n";
close $fh;

# Stops the run, writes 100 rows it has not applied, starts the reader (its
# snapshot sees them) held by the advisory lock, resumes the run.
sub scenario
{
	my ($name, @extra) = @_;
	my @run = ('run', '-d', $node->connstr, '-t', 'events', '-k', 'at', '--interval', '1 month',
		'--cutover', 'manual', '--cutover-retries', '200', '--report', "$dir/$name.json", @extra);
	my $run = pgrepart_background("$dir/$name-1.log", @run);
	ok(wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 120, $run), "$name: in sync")
	  or diag(slurp("$dir/$name-1.log"));
	kill 'TERM', $run;
	wait_exit($run);
	my $base = $node->psql('SELECT max(id) FROM events');
	$node->psql("INSERT INTO events SELECT $base + g, now() FROM generate_series(1, 100) g");
	my $total = $node->psql('SELECT count(*) FROM events');
	my $holder = do
	{
		local $ENV{PGAPPNAME} = 'holder';
		client_background("$dir/$name-hold.log", 'psql', '-X', '-d', $node->connstr, '-c',
			'SELECT pg_advisory_lock(42), pg_sleep(300)');
	};
	ok(wait_for($node, q{SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND granted}, 30),
		"$name: the lock is held");
	my $reader = do
	{
		local $ENV{PGAPPNAME} = 'rr_reader';
		client_background("$dir/$name-reader.log", 'psql', '-X', '-A', '-t', '-d', $node->connstr, '-f',
			"$dir/reader.sql");
	};
	ok(wait_for($node, q{SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted}, 30),
		"$name: the reader has its snapshot and waits");
	$run = pgrepart_background("$dir/$name-2.log", @run);
	return ($run, $holder, $reader, $total);
}

sub release
{
	my ($holder, $reader) = @_;
	$node->psql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder'});
	wait_exit($holder);
	wait_exit($reader);
}

# Without the option: the swap goes ahead, and the reader misses the rows.
{
	my ($run, $holder, $reader, $total) = scenario('plain');
	$node->psql(q{UPDATE pgrepart.migration SET cutover_requested_at = now()});
	is(wait_exit($run), 0, 'plain: the run swaps') or diag(slurp("$dir/plain-2.log"));
	release($holder, $reader);
	my ($seen) = slurp("$dir/plain-reader.log") =~ /^events\|(\d+)/m;
	is($seen, $total - 100, 'plain: the old snapshot reads the new table without the rows applied after it');
	like(slurp("$dir/plain-2.log"), qr/warning: \d+ session\(s\) hold a snapshot older than the swap.*\n(.*\n)*.*warning:   pid \d+ \(role postgres, rr_reader\)/,
		'plain: the log names the reader');
	my $report = eval { decode_json(slurp("$dir/plain.json")) } // {};
	like(join(' ', @{ $report->{old_snapshots} // [] }), qr/rr_reader/, 'plain: and so does the report');
}

# With --wait-for-snapshots the attempts wait; released, the reader sees the whole original.
$node->psql(q{DROP TABLE events_old CASCADE; DROP SCHEMA pgrepart CASCADE;
	CREATE TABLE events_plain AS SELECT * FROM events; DROP TABLE events;
	CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL);
	INSERT INTO events SELECT * FROM events_plain});
{
	my ($run, $holder, $reader, $total) = scenario('wait', '--wait-for-snapshots', '500');
	$node->psql(q{UPDATE pgrepart.migration SET cutover_requested_at = now()});
	ok(wait_for_text("$dir/wait-2.log", qr/still hold a snapshot older than the attempt/, 60, $run),
		'wait: the attempt waits for the reader') or diag(slurp("$dir/wait-2.log"));
	is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'events'::regclass}), 'r', 'wait: and does not swap');
	release($holder, $reader);
	is(wait_exit($run), 0, 'wait: once the reader is done, the run swaps') or diag(slurp("$dir/wait-2.log"));
	my ($seen) = slurp("$dir/wait-reader.log") =~ /^events\|(\d+)/m;
	is($seen, $total, 'wait: the reader saw every row');
}

done_testing();
