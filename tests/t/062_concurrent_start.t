# Runs that start at the same moment on a database pgrepart has never seen
# each create or find its state schema: IF NOT EXISTS alone would let all but
# one fail with a unique violation on the catalogs.  It happens for real when
# a run is started while the backend of one just killed is still creating
# the schema (test 060 hit it).
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
my @tables = map { "events_$_" } 1 .. 4;
$node->psql(join '', map { "CREATE TABLE $_ (id bigint PRIMARY KEY, at timestamptz NOT NULL);
	INSERT INTO $_ SELECT g, now() - g * interval '1 hour' FROM generate_series(1, 100) g;\n" } @tables);

local $ENV{PGREPART_FAULT_PAUSE} = 'prepared';
local $ENV{PGREPART_FAULT_PAUSE_MS} = '30000';
my %pids = map { $_ => pgrepart_background("$dir/$_.log", 'run', '-d', $node->connstr, '-t', $_, '-k', 'at') }
  @tables;
for my $t (@tables)
{
	ok(wait_for_text("$dir/$t.log", qr/pausing at fault point prepared/, 60, $pids{$t}),
		"$t: prepared alongside the others") or diag(slurp("$dir/$t.log"));
	kill 'KILL', $pids{$t};
	wait_exit($pids{$t});
	unlike(slurp("$dir/$t.log"), qr/error:/, "$t: no error");
}
is($node->psql(q{SELECT count(*) FROM pgrepart.migration WHERE phase = 'prepared'}), 4,
	'four migrations recorded');

done_testing();
