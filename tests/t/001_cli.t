# The command line without a server: help, version, usage errors, exit codes.
use strict;
use warnings;
use Test::More;
use Pgrepart::Test;

my ($rc, $out, $err) = pgrepart('--version');
is($rc, 0, '--version exits 0');
like($out, qr/^pgrepart \d+\.\d+\.\d+$/m, '--version prints the version');

($rc, $out, $err) = pgrepart('--help');
is($rc, 0, '--help exits 0');
for my $cmd (qw(plan run status cutover verify abort partitions))
{
	like($out, qr/^  \Q$cmd\E\s/m, "--help lists $cmd");
	my ($crc, $cout) = pgrepart($cmd, '--help');
	is($crc, 0, "$cmd --help exits 0");
	like($cout, qr/^Usage: pgrepart \Q$cmd\E/m, "$cmd --help shows its usage");
}
like($out, qr/3 verification found a\s+difference/, '--help documents the exit codes');


($rc, $out, $err) = pgrepart();
is($rc, 2, 'no command is a usage error');
($rc, $out, $err) = pgrepart('frobnicate');
is($rc, 2, 'an unknown command is a usage error');
like($err, qr/unknown command "frobnicate"/, 'and names it');

($rc, $out, $err) = pgrepart('plan', '-k', 'created_at');
is($rc, 2, 'plan without -t is a usage error');
like($err, qr/no table given/, 'and says which option is missing');
($rc, $out, $err) = pgrepart('plan', '-t', 'x');
is($rc, 2, 'plan without -k is a usage error');
($rc, $out, $err) = pgrepart('plan', '-t', 'bad name', '-k', 'c');
is($rc, 2, 'an unquoted name with a space is a usage error');
like($err, qr/invalid table name "bad name".*\n.*hint: /, 'with a hint');
($rc, $out, $err) = pgrepart('plan', '-t', 'a.b.c', '-k', 'c');
is($rc, 2, 'a three-part name is a usage error');
($rc, $out, $err) = pgrepart('plan', '-t', 't', '-k', 'c', '--premake', 'lots');
is($rc, 2, 'a non-numeric --premake is a usage error');
like($err, qr/invalid --premake "lots"/, 'and names the value');
($rc, $out, $err) = pgrepart('plan', '-t', 't', '-k', 'c', '--premake', '-1');
is($rc, 2, 'a negative --premake is a usage error');
($rc, $out, $err) = pgrepart('plan', '-t', 't', '-k', 'c', '--sql', '--json');
is($rc, 2, '--sql with --json is a usage error');
($rc, $out, $err) = pgrepart('plan', '-t', 't', '-k', 'c', '--no-such-option');
is($rc, 2, 'an unknown option is a usage error');

done_testing();
