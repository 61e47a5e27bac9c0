# A full disk under the shadow: the table sits in a tablespace on a small
# tmpfs (so the shadow, created beside it, fills it).  The run must stop with
# a clear error and a hint, the table untouched; once space is freed, the
# same command finishes the migration with every row.  Needs root to mount.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

plan skip_all => 'mounting a tmpfs needs root' if $> != 0;
my $mnt = tempdir('pgrepart_tmpfs_XXXXXX', TMPDIR => 1, CLEANUP => 0);
chmod 0755, $mnt;
system('mount', '-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', $mnt) == 0
  or plan skip_all => 'cannot mount a tmpfs here';

my $node;
END
{
	# The server first: its tablespace lives on the mount.
	$node->stop if $node;
	system('umount', $mnt);
	rmdir $mnt;
}

$node = Pgrepart::Cluster->new;
my $user = Pgrepart::Cluster::os_user();
mkdir "$mnt/pg";
if ($user)
{
	my (undef, undef, $uid, $gid) = getpwnam($user);
	chown $uid, $gid, "$mnt/pg";
}
$node->psql(fixture('chat_messages.sql'), vars => { rows => 30000 });
$node->psql(qq{CREATE TABLESPACE small LOCATION '$mnt/pg';
	ALTER TABLE chat_messages SET TABLESPACE small});
my $size = $node->psql(q{SELECT pg_relation_size('chat_messages') + pg_relation_size(reltoastrelid)
	FROM pg_class WHERE oid = 'chat_messages'::regclass});
my $before = $node->psql(q{SELECT count(*) || ':' || sum(hashtext(c::text)) FROM chat_messages c});

# Leave room for about half a copy of the table.
my $free = `df -B1 --output=avail $mnt | tail -1` + 0;
my $fill = $free - int($size / 2);
ok($fill > 0, "the table is $size bytes; filling all but half of that ($fill bytes)");
system('dd', 'if=/dev/zero', "of=$mnt/filler", 'bs=1M', 'count=' . int($fill / 1048576), 'status=none') == 0
  or BAIL_OUT('could not fill the tmpfs');

my @run = ('run', '-d', $node->connstr, '-t', 'chat_messages', '-k', 'created_at');
my ($rc, $out, $err) = pgrepart(@run);
is($rc, 1, 'the run fails when the disk fills');
like($err, qr/No space left on device|could not extend/, 'the error says the disk is full') or diag($err);
like($err, qr/hint: The server's disk is full\. What pgrepart wrote so far is kept and the table is untouched/,
	'with what to do');
is($node->psql(q{SELECT count(*) || ':' || sum(hashtext(c::text)) FROM chat_messages c}), $before,
	'the table is untouched');
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}), 'r',
	'and still the plain table');

unlink "$mnt/filler";
($rc, $out, $err) = pgrepart(@run);
is($rc, 0, 'with space freed, the same command finishes') or diag($err);
is($node->psql(q{SELECT relkind FROM pg_class WHERE oid = 'chat_messages'::regclass}), 'p',
	'the table is partitioned');
is($node->psql(q{SELECT count(*) || ':' || sum(hashtext(c::text)) FROM chat_messages c}), $before,
	'with every row');

done_testing();
