# kill -9 of pgrepart run at random moments of a slow chunked backfill under
# a write load: during the copy (with the spooler reading between chunks),
# the index build, the spool's replay and the live apply.  Every restart
# resumes where the last one stopped, and at the end every row is equal.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $kills = $ENV{PGREPART_CRASH_KILLS} // 12;
my $node = Pgrepart::Cluster->new(settings => { logical_decoding_work_mem => "'64kB'" });
$node->psql(fixture('chat_messages.sql'), vars => { rows => 30000 });
my $dir = tempdir(CLEANUP => 1);
# 30,000 rows at 6,000 rows/s in chunks of 600: about five seconds of copying.
my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at',
	'--chunk-rows', '600', '--rate', '6000', '--batch-transactions', '20');

my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '2', '-R', '400',
	'-T', int(4 + $kills * 1.0));
srand($ENV{PGREPART_SEED} // time);
my %phases;
my @chunks;
for my $i (1 .. $kills)
{
	my $run = pgrepart_background("$dir/run.log", @run);
	select(undef, undef, undef, 0.3 + rand(1.2));
	kill 'KILL', $run;
	wait_exit($run);
	my (undef, $state) = $node->psql(q{SELECT phase || ' ' || (SELECT count(*) FROM pgrepart.chunk)
		FROM pgrepart.migration}, allow_fail => 1);
	my ($phase, $n) = ($state // '') =~ /(\w+) (\d+)/;
	$phases{ $phase // 'none' }++;
	push @chunks, $n // 0;
}
note('phase after each kill: ' . join(', ', map { "$_ x$phases{$_}" } sort keys %phases));
note("chunks after each kill: @chunks");
ok($phases{copying}, 'some kills landed during the copy');
my $monotonic = 1;
for my $i (1 .. $#chunks)
{
	$monotonic = 0 if $chunks[$i] < $chunks[$i - 1] && $chunks[$i] != 0;
}
ok($monotonic, 'each restart continued the copy after the chunks already recorded');
is(wait_exit($load), 0, 'the load ran without failures') or diag(slurp("$dir/pgbench.log"));

my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
my $run = pgrepart_background("$dir/final.log", @run);
ok(wait_for($node, applied_up_to($lsn), 180, $run), 'a last run catches up')
  or diag(slurp("$dir/final.log"));
kill 'TERM', $run;
is(wait_exit($run), 5, 'and stops cleanly');
my $log = slurp("$dir/run.log") . slurp("$dir/final.log");
unlike($log, qr/error:/, 'no run reported an error')
  or diag(join "\n", grep { /error|detail/ } split /\n/, $log);
like($log, qr/resuming the copy after chunk/, 'a run resumed the copy');

my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
is("$missing/$extra", '0/0', 'every row equal after the kills');
is($node->psql(q{SELECT count(*) FROM pgrepart.spool}), 0, 'the spool was applied and emptied');

done_testing();
