# make demo at a small size: the README's first command must run start to
# finish, print the report and the partitions, and leave nothing running.
use strict;
use warnings;
use File::Basename qw(dirname);
use IO::Socket::INET;
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

done_testing();
