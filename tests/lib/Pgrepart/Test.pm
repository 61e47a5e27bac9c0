# Pgrepart::Test: helpers for running the pgrepart binary in tests.
package Pgrepart::Test;

use strict;
use warnings;
use Exporter 'import';
use Pgrepart::Cluster;

our @EXPORT = qw(pgrepart fixture);

# pgrepart(@args) -> (exit code, stdout, stderr).  PGREPART names the binary
# under test (the Makefile points it at ./pgrepart or the sanitizer build).
sub pgrepart
{
	my @args = @_;
	my $bin = $ENV{PGREPART} // 'pgrepart';
	return Pgrepart::Cluster::run_capture([ $bin, @args ]);
}

# The text of a file in tests/fixtures.
sub fixture
{
	my ($name) = @_;
	my $dir = __FILE__;
	$dir =~ s{lib/Pgrepart/Test\.pm$}{fixtures};
	open my $fh, '<', "$dir/$name" or die "fixture $name: $!";
	local $/;
	return <$fh>;
}

1;
