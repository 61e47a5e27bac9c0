# A trickle of changes becomes durable after a short quiet spell, also while
# the server is busy with other tables.  Then the walsender sends a keepalive
# each time it has decoded all the WAL there is (the other tables' WAL has
# nothing for the stream), and a keepalive ends pgrepart's wait early: it
# must not put the quiet spell off.  The once-a-second tick, which would
# hide that, is turned off here (PGREPART_TEST_OFF=tick), so each update
# becomes durable through the quiet spell or not at all: the test asserts
# that it does, not how fast.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(q{CREATE TABLE events (id bigint PRIMARY KEY, at timestamp NOT NULL, note text);
	INSERT INTO events SELECT g, timestamp '2026-01-01' + g * interval '1 hour', 'n'
		FROM generate_series(1, 2000) g;
	CREATE TABLE other (id bigserial PRIMARY KEY, v text)});
my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'events', '-k', 'at');
my $run = do
{
	local $ENV{PGREPART_TEST_OFF} = 'tick';
	pgrepart_background("$dir/run.log", @run);
};
ok(wait_for($node, q{SELECT count(*) = 1 FROM pgrepart.migration WHERE phase IN ('streaming', 'synced')},
	120, $run), 'the run reached streaming') or diag(slurp("$dir/run.log"));

# Another table written 500 times a second.
my $busy = pgbench_background($node, "$dir/other.log", 'other_writes.pgbench', '-T', '60', '-R', '500');
select(undef, undef, undef, 1);

for my $i (1 .. 5)
{
	my $lsn = $node->psql("UPDATE events SET note = 'trickle $i' WHERE id = $i; SELECT pg_current_wal_lsn()");
	ok(wait_on_server($node, applied_up_to($lsn), 60, $run), "update $i became durable without the tick")
	  or diag(slurp("$dir/run.log"));
	select(undef, undef, undef, 0.2);
}

kill 'TERM', $busy;
wait_exit($busy);
kill 'TERM', $run;
is(wait_exit($run), 5, 'stopped');
my ($missing, $extra) = compare_tables($node, 'events', 'events_pgrepart');
is("$missing/$extra", '0/0', 'every row equal');

done_testing();
