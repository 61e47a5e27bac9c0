#!/usr/bin/env perl
# make demo: the main job on a built-in default.  A throwaway PostgreSQL
# cluster, the chat_messages table (ROWS rows, default 1,000,000) under a
# live mixed write load, partitioned online by pgrepart run: chunked copy,
# stream, verification at a consistent point, swap under a short lock.  The
# cluster is removed at the end.
#
# With DEMO_CONNINFO set (the docker demo), the same runs against that
# server's database instead, which must have wal_level=logical and no
# chat_messages table yet; what it creates stays there.
use strict;
use warnings;
use File::Temp qw(tempdir);
use POSIX ();
use Pgrepart::Cluster;
use Pgrepart::Test;

my $rows = $ENV{ROWS} // 1000000;
my $dir = tempdir(CLEANUP => 1);
$| = 1;

my $node;
if ($ENV{DEMO_CONNINFO})
{
	print "== using the server at DEMO_CONNINFO\n";
	$node = Pgrepart::Cluster->existing($ENV{DEMO_CONNINFO});
}
else
{
	print "== starting a throwaway PostgreSQL cluster (wal_level=logical)\n";
	$node = Pgrepart::Cluster->new;
}
my $conn = $node->connstr;
print "   ", $conn =~ s/password=\S+/password=.../r, "\n== loading $rows rows into chat_messages\n";
$node->psql(fixture('chat_messages.sql'), vars => { rows => $rows });

print "== pgrepart plan -t chat_messages -k created_at\n";
my ($rc, $out, $err) = pgrepart('plan', '-d', $conn, '-t', 'chat_messages', '-k', 'created_at');
print $out;

print "== a live write load: inserts, updates, key and partition changes, deletes, rollbacks\n";
my $load = pgbench_background($node, "$dir/pgbench.log", 'mixed.pgbench', '-c', '2', '-R', '200',
	'-T', '3600');

print "== pgrepart run -t chat_messages -k created_at --report report.json\n";
my $run = pgrepart_background("$dir/run.log", 'run', '-d', $conn, '-t', 'chat_messages', '-k',
	'created_at', '--report', "$dir/report.json");
my $shown = 0;
while (1)
{
	my $log = slurp("$dir/run.log");
	print substr($log, $shown);
	$shown = length $log;
	last if waitpid($run, POSIX::WNOHANG()) == $run;
	select undef, undef, undef, 0.3;
}
my $status = $? >> 8;
print substr(slurp("$dir/run.log"), $shown);
kill 'INT', $load;
wait_exit($load);
die "pgrepart run failed (exit $status)\n" if $status != 0;

print "== the result\n";
print $node->psql(q{SELECT 'chat_messages: ' || CASE c.relkind WHEN 'p' THEN 'partitioned, '
	|| (SELECT count(*) FROM pg_inherits WHERE inhparent = c.oid) || ' partitions, '
	ELSE 'plain, ' END || (SELECT count(*) FROM chat_messages) || ' rows'
	FROM pg_class c WHERE c.oid = 'chat_messages'::regclass}), "\n";
print $node->psql(q{SELECT 'chat_messages_old: kept, ' || count(*) || ' rows (no writes since the swap)'
	FROM chat_messages_old}), "\n";
print "== partitions and their rows\n";
print $node->psql(q{SELECT rpad(c.relname, 28) || (SELECT count(*) FROM chat_messages m
	WHERE m.tableoid = c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	WHERE i.inhparent = 'chat_messages'::regclass ORDER BY c.relname}), "\n";
print "== the report (report.json)\n", slurp("$dir/report.json");
print $ENV{DEMO_CONNINFO} ? "== done; the tables stay in that database\n"
	: "== done; the cluster is removed\n";
