# Every write the original takes is taken after the swap.  By default the
# shadow has a DEFAULT partition: rows far outside the partitions (±infinity,
# a year 1900, 2300 or 9999, a row moved decades back), written before or
# during the run, land there instead of stopping the run or making it
# create partitions (a run of empty ones between, for those already there),
# and an UPDATE that moves a row out of every range works after the swap as
# it did before.  status counts the DEFAULT partition's rows; pgrepart
# partitions refuses a range the DEFAULT partition has rows of, creating
# nothing.  Without a DEFAULT partition plan warns (and blocks on infinity),
# a streamed infinity stops the run naming its key and WAL position, and a
# resumed run refuses options that would plan otherwise.
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
	CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, v text);
	INSERT INTO events SELECT g, timestamptz '2025-01-01' + g * interval '1 hour', 'v' || g
	FROM generate_series(1, 3000) g;
	INSERT INTO events VALUES (-1, 'infinity', 'far'), (-2, '-infinity', 'far'), (-10, '1900-06-01', 'far'),
		(-11, '2300-06-01', 'far');
	CREATE INDEX ON events (at);
	ANALYZE events;
});
my @target = ('-t', 'events', '-k', 'at', '--interval', '1 month');

my ($rc, $out, $err) = pgrepart('plan', '-d', $node->connstr, @target);
is($rc, 0, 'infinity in the table: plan passes with the default DEFAULT partition') or diag("$out$err");
like($out, qr/pass\s+default_partition\s+a DEFAULT partition takes rows outside every range \(the table holds infinity\).*the rows of 2 range\(s\) far from the rest go there too/,
	'and says the DEFAULT partition takes them, and the rows far from the rest');
my ($planned) = $out =~ /partitions\s+(\d+):/;
cmp_ok($planned // 9999, '<', 40, "the far rows get no run of empty partitions ($planned planned)");
($rc, $out, $err) = pgrepart('plan', '-d', $node->connstr, @target, '--no-default-partition');
is($rc, 4, 'with --no-default-partition plan blocks on infinity');
like($out, qr/block\s+default_partition\s+the table holds infinity in "at"/, 'naming the column');

# During the run: far rows, an infinity, and a row moved decades back.
my $run = pgrepart_background("$dir/run.log", 'run', '-d', $node->connstr, @target, '--cutover', 'manual');
ok(wait_for($node, q{SELECT phase = 'synced' FROM pgrepart.migration}, 120, $run), 'in sync')
  or diag(slurp("$dir/run.log"));
my $before = $node->psql(q{SELECT count(*) FROM pg_inherits WHERE inhparent = 'events_pgrepart'::regclass});
$node->psql(q{INSERT INTO events VALUES (-3, '9999-01-01', 'far'), (-4, 'infinity', 'far'), (-5, '1900-01-01', 'far');
	UPDATE events SET at = at - interval '60 years' WHERE id = 10});
my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
ok(wait_for($node, applied_up_to($lsn), 60, $run), 'far rows streamed without stopping the run')
  or diag(slurp("$dir/run.log"));
is($node->psql(q{SELECT count(*) FROM pg_inherits WHERE inhparent = 'events_pgrepart'::regclass}), $before,
	'and without creating partitions for them');
is($node->psql(q{SELECT count(*) FROM events_default}), 8, 'they are in the DEFAULT partition, with those there before');
($rc, $out, $err) = pgrepart('status', '-d', $node->connstr, '--json');
is((eval { decode_json($out) } // {})->{migrations}[0]{default_partition_rows}, 8,
	'status counts the rows in the DEFAULT partition');

# A resumed run refuses options that would plan otherwise, by name.
kill 'TERM', $run;
is(wait_exit($run), 5, 'stopped');
($rc, $out, $err) = pgrepart('run', '-d', $node->connstr, '-t', 'events', '-k', 'at', '--interval', '10 years');
is($rc, 1, 'a different --interval on resume is refused');
like($err, qr/--interval '10 years' differs from the migration's, which is '1 month'/, 'naming the option');
($rc, $out, $err) = pgrepart('run', '-d', $node->connstr, @target, '--no-default-partition');
is($rc, 1, '--no-default-partition on resume is refused');
like($err, qr/--no-default-partition differs from the migration's, which has a DEFAULT partition/, 'naming it');

($rc, $out, $err) = pgrepart('run', '-d', $node->connstr, @target, '--premake', '7');
is($rc, 1, 'a different --premake on resume is refused');
like($err, qr/--premake 7 differs from the migration's, which is 4/, 'naming it');
($rc, $out, $err) = pgrepart('run', '-d', $node->connstr, @target, '--premake', '4');
is($rc, 0, 'the same command resumes and swaps') or diag($err);
my ($missing, $extra) = compare_tables($node, 'events_old', 'events');
is("$missing/$extra", '0/0', 'every row is in the new table');

# After the swap, what the original took the new table takes.
my ($urc, undef, $uerr) = $node->psql(q{UPDATE events SET at = at - interval '200 days' WHERE id = 20;
	INSERT INTO events VALUES (-6, '3000-01-01', 'later'), (-7, 'infinity', 'later')}, allow_fail => 1);
is($urc, 0, 'a row moved before every partition and far inserts work after the swap') or diag($uerr);

# pgrepart partitions refuses a range the DEFAULT partition holds rows of.
$node->psql(q{INSERT INTO events VALUES (-8, date_trunc('month', now()) + interval '30 months', 'soon')});
my $parts = $node->psql(q{SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass});
($rc, $out, $err) = pgrepart('partitions', '-d', $node->connstr, '-t', 'events', '--ahead', '40');
is($rc, 1, 'partitions refuses a range with rows in the DEFAULT partition');
like($err, qr/cannot be created: the DEFAULT partition holds rows of that range/, 'and says why');
is($node->psql(q{SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass}), $parts,
	'nothing was created');

# Without a DEFAULT partition: plan warns, and a streamed infinity stops the run with its key and position.
$node->psql(q{CREATE TABLE plain (id bigint PRIMARY KEY, at timestamptz NOT NULL);
	INSERT INTO plain SELECT g, timestamptz '2025-01-01' + g * interval '1 hour' FROM generate_series(1, 500) g});
my @plain = ('-t', 'plain', '-k', 'at', '--interval', '1 month', '--no-default-partition');
($rc, $out, $err) = pgrepart('plan', '-d', $node->connstr, @plain);
like($out, qr/warn\s+default_partition\s+without a DEFAULT partition, a write whose "at" falls before/,
	'without a DEFAULT partition plan says which writes will fail after the swap');
$run = pgrepart_background("$dir/plain.log", 'run', '-d', $node->connstr, @plain, '--cutover', 'manual');
ok(wait_for($node, q{SELECT count(*) = 1 FROM pgrepart.migration WHERE source_table = 'plain' AND phase = 'synced'},
	120, $run), 'plain: in sync') or diag(slurp("$dir/plain.log"));
$node->psql(q{INSERT INTO plain VALUES (9001, 'infinity')});
is(wait_exit($run), 1, 'a streamed infinity stops the run');
like(slurp("$dir/plain.log"), qr/error: the insert of the row with key \(id\)=\(9001\) at [0-9A-F]+\/[0-9A-F]+ in "public.plain" sets "at" to infinity/,
	'naming the key, the WAL position and the column');

done_testing();
