# Each command's --help, docs/commands.md and the man page name the same
# options: what --help offers is documented, and what the docs describe
# exists.
use strict;
use warnings;
use File::Basename qw(dirname);
use Test::More;
use Pgrepart::Test;

my $root = dirname(dirname(dirname(__FILE__)));
my $commands = slurp("$root/docs/commands.md");
my $man = slurp("$root/docs/pgrepart.1") =~ s/\\-/-/gr;
my ($common) = $commands =~ /\n## Options every database command takes\n(.*?)\n## /s;

sub long_options
{
	my ($text) = @_;
	my %seen;
	$seen{$1} = 1 while $text =~ /(?<![\w-])--([a-z][a-z-]+)/g;
	return \%seen;
}

my ($rc, $out) = pgrepart('--help');
is($rc, 0, 'pgrepart --help exits 0');
my @names = $out =~ /^  ([a-z]+)\s{2,}/mg;
ok(@names >= 7, 'the command list names the commands: ' . join(' ', @names));
for my $cmd (@names)
{
	like($commands, qr/\n## \Q$cmd\E\n/, "commands.md has a section for $cmd");
	like($man, qr/\.B pgrepart \Q$cmd\E\b/, "the man page has $cmd");
	my ($section) = $commands =~ /\n## \Q$cmd\E\n(.*?)(?:\n## |\z)/s;
	$section //= '';
	my ($hrc, $help) = pgrepart($cmd, '--help');
	is($hrc, 0, "$cmd --help exits 0");
	my $offered = long_options($help);
	my $documented = long_options($section . $common);
	my @undocumented = grep { !$documented->{$_} } sort keys %$offered;
	is("@undocumented", '', "every option of $cmd --help is in commands.md");
	my @unmanned = grep { $man !~ /--\Q$_\E\b/ } sort keys %$offered;
	is("@unmanned", '', "and in the man page");
	my $described = long_options($section);
	my @missing = grep { !$offered->{$_} } sort keys %$described;
	is("@missing", '', "every option commands.md gives $cmd exists");
}

done_testing();
