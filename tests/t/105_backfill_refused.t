# A chunk the shadow refuses with SQLSTATE 23514 is taken again once the
# partitions cover the source's range: rows that moved beyond the planned
# partitions get theirs, and the copy goes on.  A refusal that is not about
# the range (here a CHECK constraint on the shadow that every row breaks)
# stops the run with the server's error after a few new snapshots, instead
# of taking the chunk again forever; the source is untouched.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
my $dir = tempdir(CLEANUP => 1);
$node->psql(fixture('chat_messages.sql'), vars => { rows => 2000 });
# Without a DEFAULT partition, so that rows beyond the planned ones get partitions.
my @run = ('run', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at', '--no-default-partition');

# Stopped once prepared: the shadow and its partitions exist, nothing is copied.
{
	local $ENV{PGREPART_FAULT_PAUSE} = 'prepared';
	local $ENV{PGREPART_FAULT_PAUSE_MS} = '30000';
	my $pid = pgrepart_background("$dir/prepare.log", @run);
	ok(wait_for_text("$dir/prepare.log", qr/pausing at fault point prepared/, 60, $pid), 'prepared')
	  or diag(slurp("$dir/prepare.log"));
	kill 'KILL', $pid;
	wait_exit($pid);
}

# Rows far below the planned partitions: the copy adds partitions for them.
$node->psql(q{UPDATE chat_messages SET created_at = created_at - interval '3 years'
	WHERE tokens_used % 100 = 7});
my $moved = $node->psql(q{SELECT count(*) || ' ' || sum(hashtext(t::text)) FROM chat_messages t});
$node->psql(q{ALTER TABLE chat_messages_pgrepart ADD CONSTRAINT never CHECK (tokens_used < -1)});

my ($rc, $out, $err) = pgrepart(@run);
is($rc, 1, 'a refusal that new partitions do not cure: exit 1');
like($err, qr/created partition .* for rows beyond the planned partitions/,
	'the rows beyond the partitions got theirs first');
like($err, qr/error: could not load a chunk on the target database: .*violates check constraint "never"/,
	"it names the server's error");
is($node->psql(q{SELECT count(*) FROM pgrepart.chunk}), 0, 'no chunk was recorded');
is($node->psql(q{SELECT count(*) || ' ' || sum(hashtext(t::text)) FROM chat_messages t}), $moved,
	'the source is untouched');

$node->psql(q{ALTER TABLE chat_messages_pgrepart DROP CONSTRAINT never});
($rc, $out, $err) = pgrepart(@run, '--rehearse', '--keep');
is($rc, 0, 'without the constraint, the same command copies, catches up and rehearses the swap')
  or diag($err);
my ($missing, $extra) = compare_tables($node, 'chat_messages', 'chat_messages_pgrepart');
is($missing + $extra, 0, 'and the shadow equals the source, the moved rows in their partitions');

done_testing();
