# make demo at a small size: the README's first command must run start to
# finish, print the report and the partitions, and leave nothing running;
# and, run against a server the test keeps (DEMO_CONNINFO, the docker
# demo's way), the table it leaves must be partitioned, whole and verified.
use strict;
use warnings;
use File::Basename qw(dirname);
use IO::Socket::INET;
use JSON::PP ();
use Test::More;
use Pgrepart::Cluster;

my $root = dirname(dirname(dirname(__FILE__)));
local $ENV{ROWS} = 10000;
my ($rc, $out, $err) = Pgrepart::Cluster::run_capture([ $^X, '-I', "$root/tests/lib", "$root/tests/demo.pl" ]);
is($rc, 0, 'the demo exits 0') or diag($out . $err);
like($out, qr/== pgrepart plan .*\n.*CREATE TABLE/s, 'it shows the plan');
like($out, qr/swapped/, 'the run swapped the tables') or diag($out);
like($out, qr/chat_messages: partitioned, \d+ partitions, \d+ rows/, 'the table is partitioned');
like($out, qr/== partitions and their rows\n\S+_20\d\d_q\d\s+\d+/, 'the partitions with their rows');
like($out, qr/== the report \(report.json\)\n\{/, 'and the report');
like($out, qr/== done; the cluster is removed/, 'it ends');
my ($port) = $out =~ /port=(\d+)/;
ok($port && !IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2),
	"nothing listens on its port ($port) afterwards");

# The same demo against a server this test keeps, so the table itself can be
# read afterwards.
my $node = Pgrepart::Cluster->new;
{
	local $ENV{DEMO_CONNINFO} = $node->connstr;
	($rc, $out, $err) = Pgrepart::Cluster::run_capture([ $^X, '-I', "$root/tests/lib", "$root/tests/demo.pl" ]);
}
is($rc, 0, 'the demo against an existing server exits 0') or diag($out . $err);
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}), 'p',
	'chat_messages is partitioned');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages_old'::regclass}), 'r',
	'the original is kept as chat_messages_old');
cmp_ok($node->psql(q{SELECT count(*) FROM pg_inherits WHERE inhparent = 'chat_messages'::regclass}),
	'>=', 2, 'with partitions');
is($node->psql(q{SELECT (SELECT count(*) FROM chat_messages) = (SELECT sum(n) FROM (SELECT count(*) n
	FROM chat_messages GROUP BY tableoid) p) AND (SELECT count(*) FROM chat_messages) > 0}), 't',
	'every row lies in a partition');
is($node->psql(q{SELECT phase FROM pgrepart.migration}), 'done', 'the migration is done');
is($node->psql(q{SELECT (SELECT count(*) FROM pg_replication_slots) || ',' || (SELECT count(*) FROM pg_publication)
	|| ',' || (SELECT count(*) FROM pg_replication_origin)}), '0,0,0', 'no slot, publication or origin is left');
my ($json) = $out =~ /== the report \(report.json\)\n(\{.*\})\s*\n== done/s;
my $report = eval { JSON::PP::decode_json($json // '') };
ok($report, 'the report is JSON') or diag($out);
is($report->{verification}, 'equal', 'the run verified the shadow equal before the swap')
	or diag($json);
# The load stopped after the swap: its last writes went to the new table, and
# the old one stayed as the swap left it.  Rows the load never touched are
# the same in both.
is($node->psql(q{SELECT count(*) FROM chat_messages_old o JOIN chat_messages n USING (id)
	WHERE (o.*)::text IS DISTINCT FROM (n.*)::text AND n.updated_at = o.updated_at
	AND n.created_at = o.created_at}), '0',
	'rows unchanged since the swap are identical in the old and the new table');

done_testing();
