# Pgrepart::Cluster: a throwaway PostgreSQL cluster for one test file.
#
# new() runs initdb into a fresh temporary directory, configures
# wal_level=logical (or what the test asks), enough slots and senders, a free
# port on 127.0.0.1 and trust authentication, and starts the server.  The
# server always runs as an unprivileged user: when the tests run as root it
# is started through runuser as PGREPART_TEST_OS_USER (default "postgres",
# else "nobody").  Every cluster is stopped and its directory removed when
# the test ends, fails, dies or is interrupted (INT, TERM, HUP).
package Pgrepart::Cluster;

use strict;
use warnings;
use Carp;
use File::Path qw(rmtree);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();

my @live;

# In a forked child: report and leave at once.  die would run the parent's
# destructors here, which stop its clusters and remove its files.
sub child_exit
{
	my ($why) = @_;
	print STDERR "$why\n";
	POSIX::_exit(127);
}

# In a forked child: run $cmd (a list), or report why not and leave.
sub child_exec
{
	my @cmd = @_;
	{
		no warnings 'exec';
		exec @cmd;
	}
	child_exit("exec $cmd[0]: $!");
}

sub bindir
{
	return $ENV{PG_BINDIR} if $ENV{PG_BINDIR};
	my $dir = `pg_config --bindir`;
	chomp $dir;
	return $dir;
}

sub os_user
{
	return undef if $> != 0;
	return $ENV{PGREPART_TEST_OS_USER} if $ENV{PGREPART_TEST_OS_USER};
	return (getpwnam('postgres') ? 'postgres' : 'nobody');
}

# Run a server-side command as the unprivileged user; die with its output on failure.
sub _run_as
{
	my ($self, @cmd) = @_;
	my @full = $self->{os_user} ? ('runuser', '-u', $self->{os_user}, '--', @cmd) : @cmd;
	my $out = `@{[ join ' ', map { _shell_quote($_) } @full ]} 2>&1`;
	croak "command failed: @cmd\n$out" if $? != 0;
	return $out;
}

sub _shell_quote
{
	my ($s) = @_;
	$s =~ s/'/'\\''/g;
	return "'$s'";
}

sub _free_port
{
	my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
		Proto => 'tcp', Listen => 1, ReuseAddr => 1)
	  or croak "could not find a free port: $!";
	my $port = $sock->sockport;
	close $sock;
	return $port;
}

# new(wal_level => 'logical', settings => { name => value }, basebackup_of => $cluster,
#     standby => 1): with standby, the copy is a streaming physical standby
#     of basebackup_of (named by its application_name "standby").
sub new
{
	my ($class, %opts) = @_;
	my $self = bless {
		bindir => bindir(),
		os_user => os_user(),
		wal_level => $opts{wal_level} // 'logical',
		settings => $opts{settings} // {},
	}, $class;

	$self->{base} = tempdir('pgrepart_test_XXXXXX', TMPDIR => 1, CLEANUP => 0);
	chmod 0755, $self->{base};
	if ($self->{os_user})
	{
		my (undef, undef, $uid, $gid) = getpwnam($self->{os_user});
		chown $uid, $gid, $self->{base};
	}
	$self->{data} = "$self->{base}/data";
	push @live, $self;
	if (my $primary = $opts{basebackup_of})
	{
		# A physical copy, as an operator clones staging: it starts as a
		# server of its own (no standby.signal), with the primary's system
		# identifier and databases but none of its replication slots.
		$self->{wal_level} = $primary->{wal_level};
		$self->_run_as("$self->{bindir}/pg_basebackup", '-D', $self->{data}, '-h', '127.0.0.1',
			'-p', $primary->port, '-U', 'postgres', '-X', 'stream', '-c', 'fast', '--no-sync');
		if ($opts{standby})
		{
			$self->{settings}{primary_conninfo} = "'host=127.0.0.1 port=" . $primary->port
			  . " user=postgres application_name=standby'";
			$self->_run_as('touch', "$self->{data}/standby.signal");
		}
	}
	else
	{
		$self->_run_as("$self->{bindir}/initdb", '-D', $self->{data}, '-U', 'postgres',
			'-A', 'trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync');
	}

	for my $attempt (1 .. 5)
	{
		$self->{port} = _free_port();
		$self->_write_conf;
		my $ok = eval {
			$self->_run_as("$self->{bindir}/pg_ctl", '-D', $self->{data}, '-l',
				"$self->{base}/server.log", '-w', '-t', '60', 'start');
			1;
		};
		return $self if $ok;
		croak "could not start PostgreSQL: $@" if $attempt == 5;
	}
}

# existing(conninfo): a server someone else runs (the docker demo's), used
# through the same methods; it is never stopped or removed.
sub existing
{
	my ($class, $conninfo) = @_;
	return bless { bindir => bindir(), conninfo => $conninfo, stopped => 1 }, $class;
}

sub _write_conf
{
	my ($self) = @_;
	my %conf = (
		listen_addresses => "'127.0.0.1'",
		port => $self->{port},
		unix_socket_directories => "'$self->{base}'",
		wal_level => $self->{wal_level},
		max_replication_slots => 10,
		max_wal_senders => 10,
		fsync => 'off',
		full_page_writes => 'off',
		shared_buffers => "'128MB'",
		log_min_messages => 'warning',
		%{ $self->{settings} },
	);
	my $file = "$self->{data}/postgresql.auto.conf";
	open my $fh, '>', $file or croak "could not write $file: $!";
	print $fh "$_ = $conf{$_}\n" for sort keys %conf;
	close $fh;
	if ($self->{os_user})
	{
		my (undef, undef, $uid, $gid) = getpwnam($self->{os_user});
		chown $uid, $gid, $file;
	}
}

sub port { $_[0]->{port} }

# A conninfo string for the given user and database (defaults: postgres, postgres).
sub connstr
{
	my ($self, %o) = @_;
	if (defined $self->{conninfo})
	{
		# In a conninfo string the last setting of a keyword wins.
		return join ' ', $self->{conninfo}, map { "$_=$o{$_}" } grep { defined $o{$_} } qw(user dbname);
	}
	my $user = $o{user} // 'postgres';
	my $db = $o{dbname} // 'postgres';
	return "host=127.0.0.1 port=$self->{port} user=$user dbname=$db";
}

# Run SQL with psql (psql variables in vars => {}); returns its unaligned,
# tuples-only output.  Dies on error unless allow_fail is set, in which case
# it returns (exit code, stdout, stderr).
sub psql
{
	my ($self, $sql, %o) = @_;
	my @cmd = ("$self->{bindir}/psql", '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
		'-d', $self->connstr(%o));
	push @cmd, map { ('-v', "$_=$o{vars}{$_}") } sort keys %{ $o{vars} // {} };
	my ($rc, $out, $err) = Pgrepart::Cluster::run_capture(\@cmd, $sql);
	return ($rc, $out, $err) if $o{allow_fail};
	croak "psql failed ($rc): $err\nSQL: $sql" if $rc != 0;
	chomp $out;
	return $out;
}

# Run a command with optional stdin text; returns (exit code, stdout, stderr).
sub run_capture
{
	my ($cmd, $stdin) = @_;
	my $dir = tempdir('pgrepart_run_XXXXXX', TMPDIR => 1, CLEANUP => 1);
	open my $in, '>', "$dir/in" or croak $!;
	print $in ($stdin // '');
	close $in;
	my $pid = fork // croak "fork: $!";
	if ($pid == 0)
	{
		open STDIN, '<', "$dir/in" or child_exit("$dir/in: $!");
		open STDOUT, '>', "$dir/out" or child_exit("$dir/out: $!");
		open STDERR, '>', "$dir/err" or child_exit("$dir/err: $!");
		child_exec(@$cmd);
	}
	waitpid $pid, 0;
	my $rc = $? & 127 ? 128 + ($? & 127) : $? >> 8;
	local $/;
	open my $o, '<', "$dir/out" or croak $!;
	my $out = <$o>;
	open my $e, '<', "$dir/err" or croak $!;
	my $err = <$e>;
	return ($rc, $out, $err);
}

# restart('fast' | 'immediate'): every session is cut, the server comes back
# (after crash recovery, for immediate) on the same port.
sub restart
{
	my ($self, $mode) = @_;
	$self->_run_as("$self->{bindir}/pg_ctl", '-D', $self->{data}, '-l', "$self->{base}/server.log",
		'-m', $mode, '-w', '-t', '120', 'restart');
}

# snapshot($name) keeps a copy of the data directory, taken with the server
# stopped cleanly; restore($name) puts it back and starts the server on it,
# so that several runs can start from the very same state.
sub snapshot
{
	my ($self, $name) = @_;
	$self->_run_as("$self->{bindir}/pg_ctl", '-D', $self->{data}, '-m', 'fast', '-w', 'stop');
	system('cp', '-a', $self->{data}, "$self->{base}/$name") == 0 or croak "could not copy the data directory";
	$self->_run_as("$self->{bindir}/pg_ctl", '-D', $self->{data}, '-l', "$self->{base}/server.log", '-w', 'start');
}

sub restore
{
	my ($self, $name) = @_;
	$self->_run_as("$self->{bindir}/pg_ctl", '-D', $self->{data}, '-m', 'fast', '-w', 'stop');
	rmtree($self->{data});
	system('cp', '-a', "$self->{base}/$name", $self->{data}) == 0 or croak "could not copy the data directory";
	$self->_run_as("$self->{bindir}/pg_ctl", '-D', $self->{data}, '-l', "$self->{base}/server.log", '-w', 'start');
}

# Stop the server and keep its files (start brings it back).
sub halt
{
	my ($self) = @_;
	$self->_run_as("$self->{bindir}/pg_ctl", '-D', $self->{data}, '-m', 'fast', '-w', 'stop');
}

sub start
{
	my ($self) = @_;
	$self->_run_as("$self->{bindir}/pg_ctl", '-D', $self->{data}, '-l', "$self->{base}/server.log",
		'-w', 'start');
}

sub stop
{
	my ($self) = @_;
	return if $self->{stopped}++;
	if (-f "$self->{data}/postmaster.pid")
	{
		eval { $self->_run_as("$self->{bindir}/pg_ctl", '-D', $self->{data}, '-m',
			'immediate', '-w', 'stop') };
	}
	if ($ENV{PGREPART_KEEP_CLUSTER})
	{
		print STDERR "# kept cluster files in $self->{base}\n";
		return;
	}
	rmtree($self->{base});
}

sub server_log
{
	my ($self) = @_;
	open my $fh, '<', "$self->{base}/server.log" or return '';
	local $/;
	return <$fh>;
}

sub _stop_all { $_->stop for @live; @live = () }

END
{
	my $status = $?;
	_stop_all();
	$? = $status;
}

my %signo = (HUP => 1, INT => 2, TERM => 15);
for my $sig (keys %signo)
{
	$SIG{$sig} = sub { _stop_all(); exit 128 + $signo{$sig} };
}

1;
