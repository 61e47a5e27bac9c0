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
# plan and run each parse their own options: one of the other's is named as such.
($rc, $out, $err) = pgrepart('plan', '-t', 't', '-k', 'c', '--chunk-rows', '5');
is($rc, 2, 'plan --chunk-rows is a usage error');
like($err, qr/plan takes no --chunk-rows; it is an option of run/, 'which says run takes it') or diag($err);
($rc, $out, $err) = pgrepart('run', '-t', 't', '-k', 'c', '--sql');
is($rc, 2, 'run --sql is a usage error');
like($err, qr/run takes no --sql; it is an option of plan/, 'which says plan takes it') or diag($err);

# Hostile input: each refused with the value named, a hint, and the usage exit code.
for my $case (
	[ [ 'run', '-t', 't', '-k', 'c', '--lock-timeout', '0' ], qr/invalid --lock-timeout "0": give milliseconds from 1 to 60000/ ],
	[ [ 'run', '-t', 't', '-k', 'c', '--rate', '-5' ], qr/invalid --rate "-5"/ ],
	[ [ 'run', '-t', 't', '-k', 'c', '--batch-transactions', '0' ], qr/invalid --batch-transactions "0"/ ],
	[ [ 'run', '-t', 't', '-k', 'c', '--chunk-rows', '99999999999' ], qr/invalid --chunk-rows "99999999999"/ ],
	[ [ 'run', '-t', 't', '-k', 'c', '--cutover', 'sometimes' ], qr/invalid --cutover "sometimes"/ ],
	[ [ 'verify', '--source', 'a', '--target', 'b', '--max-differences', '99999999999' ], qr/invalid --max-differences/ ],
	[ [ 'plan', '-t', "a\nb", '-k', 'c' ], qr/unexpected character a newline after name/ ],
	[ [ 'plan', '-t', 'a; DROP TABLE b', '-k', 'c' ], qr/unexpected character ';' after name/ ],
	[ [ 'plan', '-t', "a\\b", '-k', 'c' ], qr/unexpected character '\\' after name/ ])
{
	my ($args, $want) = @$case;
	($rc, $out, $err) = pgrepart(@$args);
	is($rc, 2, "@$args: usage error");
	like($err, $want, 'names the value') or diag($err);
	like($err, qr/hint: /, 'with a hint');
}

# A conninfo libpq cannot parse: a clear error and a hint, exit 1.
($rc, $out, $err) = pgrepart('status', '-d', "host='unterminated");
is($rc, 1, 'a malformed conninfo fails');
like($err, qr/unterminated quoted string in connection info string\n.*hint: Check -d/, 'libpq says why, with a hint');
($rc, $out, $err) = pgrepart('status', '-d', 'nosuchoption=1');
like($err, qr/invalid connection option "nosuchoption"/, 'an unknown conninfo keyword is named');

done_testing();
