#!/usr/bin/env perl
# bench verify: pgrepart verify between the seed's table and a partitioned
# copy of it, against a server-side whole-table hash of both tables the way
# pgcopydb's "compare data" does it (count(1) and sum(hashtext(row::text))),
# run on both tables at once, in one run.  Prints
#   bench verify: pgrepart=<s> server_hash=<s> ratio=<pgrepart/server_hash>
use strict;
use warnings;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time);
use Pgrepart::Cluster;
use Pgrepart::Test;

my $rows = $ENV{BENCH_ROWS} // 1000000;
my $node = Pgrepart::Cluster->new;
$node->psql(fixture('chat_messages.sql'), vars => { rows => $rows });
my ($rc, $ddl, $err) = pgrepart('plan', '-d', $node->connstr, '-t', 'chat_messages', '-k',
	'created_at', '--sql');
$rc == 0 or die "plan failed: $err";
$node->psql($ddl);
$node->psql('INSERT INTO chat_messages_pgrepart SELECT * FROM chat_messages');
$node->psql('VACUUM ANALYZE chat_messages');
$node->psql('VACUUM ANALYZE chat_messages_pgrepart');
# Warm both tables into the cache the same way for either side.
$node->psql($_) for ('SELECT count(*) FROM chat_messages', 'SELECT count(*) FROM chat_messages_pgrepart');

# The server-side pair, both tables at once.
my $psql = Pgrepart::Cluster::bindir() . '/psql';
my $start = time;
my @pids;
for my $t (qw(chat_messages chat_messages_pgrepart))
{
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		Pgrepart::Cluster::child_exec($psql, '-X', '-q', '-A', '-t', '-o', '/dev/null', '-d',
			$node->connstr, '-c', "SELECT count(1), sum(hashtext(t::text)) FROM $t t");
	}
	push @pids, $pid;
}
wait_exit($_) == 0 or die 'server-side hash failed' for @pids;
my $server = time - $start;

$start = time;
my $dir = tempdir(CLEANUP => 1);
my $pid = pgrepart_background("$dir/verify.log", 'verify', '-d', $node->connstr, '--source',
	'chat_messages', '--target', 'chat_messages_pgrepart', '--json');
my $rss = 0;
# Sample the peak RSS while it runs (VmHWM is gone once the process is reaped).
while (kill 0, $pid)
{
	if (open my $st, '<', "/proc/$pid/status")
	{
		while (<$st>) { $rss = $1 if /^VmHWM:\s+(\d+) kB/ }
	}
	last if waitpid($pid, POSIX::WNOHANG()) == $pid;
	select undef, undef, undef, 0.05;
}
my $pgrepart = time - $start;
my $report = slurp("$dir/verify.log");
$report =~ /"equal":true/ or die "verify did not find the tables equal:\n$report";
my ($mb) = $report =~ /"bytes":(\d+)/;

printf "rows: %d per table; pgrepart read %.0f MB, peak RSS %d kB\n", $rows, $mb / 1e6, $rss;
printf "pgrepart verify: %.2f s; server-side hash of both tables at once: %.2f s\n",
	$pgrepart, $server;
printf "bench verify: pgrepart=%.2f server_hash=%.2f ratio=%.2f\n", $pgrepart, $server,
	$pgrepart / $server;
