# pgrepart plan reads what points at the table (triggers, rules, policies,
# views, owned sequences, publications, grants, comments) and reports what
# the cutover will carry over.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use Pgrepart::Cluster;
use Pgrepart::Test;

my $node = Pgrepart::Cluster->new;
$node->psql(q{
	CREATE ROLE reader;
	CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),
		body text);
	COMMENT ON TABLE events IS 'all events';
	GRANT SELECT ON events TO reader;
	CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
		$$BEGIN NEW.body := coalesce(NEW.body, ''); RETURN NEW; END$$;
	CREATE TRIGGER events_touch BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION touch();
	CREATE RULE events_no_delete AS ON DELETE TO events WHERE OLD.id < 0 DO INSTEAD NOTHING;
	ALTER TABLE events ENABLE ROW LEVEL SECURITY;
	CREATE POLICY events_mine ON events FOR SELECT USING (body IS NOT NULL);
	CREATE VIEW recent_events AS SELECT * FROM events WHERE at > now() - interval '1 day';
	CREATE MATERIALIZED VIEW event_counts AS SELECT count(*) FROM events;
	CREATE PUBLICATION events_pub FOR TABLE events;
	CREATE PUBLICATION everything FOR ALL TABLES;
	INSERT INTO events (at, body) SELECT now() - g * interval '1 hour', 'b' FROM generate_series(1, 50) g;
	ANALYZE events;
});

my $snapshot_sql = q{SELECT (SELECT count(*) FROM pg_class) || ',' || (SELECT count(*) FROM pg_trigger)
	|| ',' || (SELECT count(*) FROM pg_publication_rel)};
my $before = $node->psql($snapshot_sql);
my ($rc, $out, $err) = pgrepart('plan', '-d', $node->connstr, '-t', 'events', '-k', 'at',
	'--interval', '1 week', '--json');
is($rc, 0, 'plan exits 0 (dependents are warnings, not blockers)') or diag($err);
is($node->psql($snapshot_sql), $before, 'plan changed nothing');
my $plan = decode_json($out);
my $t = $plan->{table};

is_deeply([ map { $_->{name} } @{ $t->{triggers} } ], ['events_touch'], 'trigger read');
like($t->{triggers}[0]{detail}, qr/EXECUTE FUNCTION public\.touch\(\)/, 'with its definition');
is_deeply([ map { $_->{name} } @{ $t->{rules} } ], ['events_no_delete'], 'rule read');
is_deeply([ map { $_->{name} } @{ $t->{policies} } ], ['events_mine'], 'policy read');
like($t->{policies}[0]{detail}, qr/^FOR SELECT USING \(\(body IS NOT NULL\)\)$/, 'with its expression');
is_deeply([ map { "$_->{schema}.$_->{name}:$_->{detail}" } @{ $t->{views} } ],
	[ 'public.event_counts:materialized view', 'public.recent_events:view' ], 'dependent views read');
is_deeply([ map { "$_->{name}:$_->{detail}" } @{ $t->{sequences} } ], ['events_id_seq:id'],
	'owned sequence read with its column');
is_deeply([ map { "$_->{name}:$_->{detail}" } @{ $t->{publications} } ],
	[ 'events_pub:FOR TABLE', 'everything:FOR ALL TABLES' ], 'publications read');
like($t->{acl}, qr/reader=r\/postgres/, 'grants read');
is($t->{comment}, 'all events', 'comment read');

my %by_check;
push @{ $by_check{ $_->{check} } }, $_ for @{ $plan->{findings} };
is($by_check{triggers}[0]{level}, 'warn', 'triggers are carried over: a warning');
is($by_check{rules}[0]{level}, 'warn', 'rules: a warning');
is($by_check{policies}[0]{level}, 'warn', 'policies: a warning');
like($by_check{views}[0]{message}, qr/2 dependent view\(s\).*public\.event_counts, public\.recent_events/,
	'views listed by name');
is($by_check{sequences}[0]{level}, 'pass', 'owned sequences continue');
is(join(',', map { $_->{level} } sort { $a->{message} cmp $b->{message} } @{ $by_check{publications} }), 'warn,warn',
	'a FOR ALL TABLES publication is a warning, and so is one without publish_via_partition_root');
like(join("\n", map { $_->{message} } @{ $by_check{publications} }),
	qr/"events_pub" will publish the new table after the swap, but its changes under each partition's name/,
	'which says what its subscribers will see');
is($plan->{partitioning}{partitions}[0]{name} =~ /^events_\d{4}_\d{2}_\d{2}$/ ? 1 : 0, 1,
	'weekly partitions named by their first day');
is($node->psql(q{SELECT extract(isodow FROM } . "'$plan->{partitioning}{partitions}[0]{from}'::timestamptz)"),
	1, 'weekly partitions start on Monday');

done_testing();
