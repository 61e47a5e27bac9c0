# kill -9 of pgrepart run at random moments, over and over, under a write
# load: every restart resumes (whatever the phase it was killed in), the
# replication origin's progress never moves back, no transaction is applied
# twice (a second insert of a key would stop the apply), and at the end
# source and shadow are equal.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $kills = $ENV{PGREPART_CRASH_KILLS} // 20;
my $node = Pgrepart::Cluster->new(settings => { logical_decoding_work_mem => "'64kB'" });
$node->psql(fixture('chat_messages.sql'), vars => { rows => 40000 });
my $dir = tempdir(CLEANUP => 1);
my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at',
	'--batch-transactions', '20');

my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '2', '-R', '300',
	'-T', int(2 + $kills * 1.2));
srand($ENV{PGREPART_SEED} // time);
my $previous = '0/0';
my $monotonic = 1;
my @progress;
my %phases;
for my $i (1 .. $kills)
{
	my $run = pgrepart_background("$dir/run.log", @run);
	# The first kills land early, in planning, copy and index build.
	select(undef, undef, undef, $i <= 6 ? 0.02 + rand(0.5) : 0.2 + rand(1.6));
	kill 'KILL', $run;
	wait_exit($run);
	# Before the first run records its state there is no progress to read.
	my (undef, $now) = $node->psql(q{SELECT coalesce((SELECT pg_replication_origin_progress(roname, true)
		FROM pg_replication_origin o JOIN pgrepart.migration m ON m.origin_name = o.roname), '0/0')},
		allow_fail => 1);
	chomp $now if defined $now;
	$now = '0/0' unless defined $now && $now =~ m{^[0-9A-F]+/[0-9A-F]+$};
	$monotonic = 0 if $node->psql("SELECT '$now'::pg_lsn < '$previous'::pg_lsn") eq 't';
	my (undef, $state) = $node->psql(q{SELECT phase FROM pgrepart.migration}, allow_fail => 1);
	my ($phase) = ($state // '') =~ /(\w+)/;
	push @progress, $now;
	$phases{ $phase // 'none' }++;
	$previous = $now;
}
ok($monotonic, "origin progress never moved back over $kills kills: @progress");
like($node->psql(q{SELECT phase FROM pgrepart.migration}), qr/^(streaming|synced)$/,
	'the runs got through copy and index build to streaming');
note('phase after each kill: ' . join(', ', map { "$_ x$phases{$_}" } sort keys %phases));
is(wait_exit($load), 0, 'the load ran without failures') or diag(slurp("$dir/pgbench.log"));

my $lsn = $node->psql('SELECT pg_current_wal_lsn()');
my $run = pgrepart_background("$dir/final.log", @run);
ok(wait_for($node, applied_up_to($lsn), 180, $run), 'a last run catches up')
  or diag(slurp("$dir/final.log"));
kill 'TERM', $run;
is(wait_exit($run), 5, 'and stops cleanly');
my $log = slurp("$dir/run.log") . slurp("$dir/final.log");
unlike($log, qr/error:/, 'no run reported an error (a change applied twice would)')
  or diag(join "\n", grep { /error|detail/ } split /\n/, $log);

my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
is($missing, 0, 'no source row is missing from the shadow');
is($extra, 0, 'the shadow holds no other row');

done_testing();
