# A change that should hit a row of the shadow and finds none stops the run
# with the row's key and the change's position, and a second run stops the
# same way instead of skipping it.  The shadow is made to drift by deleting
# a row from it behind pgrepart's back; the key is (bigint, uuid), so the
# message shows both kinds of value.  The change comes between two others,
# close enough to share its shadow transaction, whose COMMIT is already on
# its way when the miss is found: the transaction must not commit, or the
# origin's progress would pass the change and the second run would not see
# it.  For an update and a delete applied in batches (the delete by the key
# alone, its partition looked up first), and for a delete applied alone.
use strict;
use warnings;
use File::Temp qw(tempdir);
use Test::More;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $uuid = '0a1b2c3d-4e5f-6789-abcd-ef0123456789';

for my $case ([ 'update', 'batches' ], [ 'delete', 'batches' ], [ 'delete', 'alone' ])
{
	my ($mode, $how) = @$case;
	local $ENV{PGREPART_TEST_OFF} = $how eq 'alone' ? 'apply-batches' : '';
	my $node = Pgrepart::Cluster->new;
	my $dir = tempdir(CLEANUP => 1);
	$node->psql(qq{CREATE TABLE events (tenant bigint, id uuid, at timestamp NOT NULL, note text,
			PRIMARY KEY (tenant, id));
		INSERT INTO events SELECT g % 5, gen_random_uuid(), timestamp '2026-01-01' + g * interval '1 hour', 'n'
			FROM generate_series(1, 2000) g;
		INSERT INTO events VALUES (-7, '$uuid', '2026-02-01', 'drifts')});
	my @run = ('run', '--cutover', 'manual', '-d', $node->connstr, '-t', 'events', '-k', 'at');
	my $run = pgrepart_background("$dir/run.log", @run);
	ok(wait_for($node, q{SELECT count(*) = 1 FROM pgrepart.migration WHERE phase IN ('streaming', 'synced')},
		120, $run), "$mode ($how): the run reached streaming") or diag(slurp("$dir/run.log"));

	$node->psql(qq{DELETE FROM events_pgrepart WHERE id = '$uuid'});
	my $before = $node->psql('SELECT pg_current_wal_lsn()');
	# Three transactions from one session, back to back.
	$node->psql(qq{UPDATE events SET note = 'ok' WHERE tenant = 1;\n}
		. ($mode eq 'update' ? qq{UPDATE events SET note = 'lost' WHERE id = '$uuid';\n}
			: qq{DELETE FROM events WHERE id = '$uuid';\n})
		. qq{UPDATE events SET note = 'after' WHERE tenant = 2;\n});
	my $after = $node->psql('SELECT pg_current_wal_lsn()');

	is(wait_exit($run), 1, "$mode ($how): the run stops with an error (exit 1)");
	my $log = slurp("$dir/run.log");
	my ($at) = $log =~ /error: the $mode of the row with key \(tenant, id\)=\(-7, $uuid\) at ([0-9A-F]+\/[0-9A-F]+) in "public\.events" found 0 rows in the shadow, not one/;
	ok(defined $at, "$mode ($how): the error names the key and the position") or diag($log);
	ok(defined $at && $node->psql(qq{SELECT '$at'::pg_lsn > '$before' AND '$at'::pg_lsn <= '$after'}) eq 't',
		"$mode ($how): the position is the change's");
	like($log, qr/hint: Abort this migration/, "$mode ($how): the hint says what to do");
	ok(defined $at && $node->psql(qq{SELECT coalesce(pg_replication_origin_progress(origin_name, true), '0/0') < '$at'
		FROM pgrepart.migration}) eq 't', "$mode ($how): the origin's progress stands before the change");
	is($node->psql(q{SELECT count(*) FROM events_pgrepart WHERE note = 'after'}), 0,
		"$mode ($how): nothing after the change reached the shadow");

	my ($rc) = pgrepart(@run);
	is($rc, 1, "$mode ($how): run again, it stops on the same change");
	is($node->psql(q{SELECT count(*) FROM events WHERE tenant = -7}), $mode eq 'update' ? 1 : 0,
		"$mode ($how): the source table is as the load left it");
}

done_testing();
