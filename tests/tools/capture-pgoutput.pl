#!/usr/bin/env perl
# Capture a pgoutput stream holding every message type and tuple kind
# PostgreSQL sends on pgrepart's stream (proto_version 1, binary 'true',
# messages 'true'), one message per line as "<Kind> <hex>", for the decoder's
# unit tests.  Usage: perl -I tests/lib tests/tools/capture-pgoutput.pl > FILE
use strict;
use warnings;
use Pgrepart::Cluster;

my $node = Pgrepart::Cluster->new;
$node->psql(q{
	CREATE TYPE mood AS ENUM ('sad', 'happy');
	CREATE TABLE t (id bigint PRIMARY KEY, created_at timestamp NOT NULL, body text,
		m mood, note text, n numeric);
	ALTER TABLE t ALTER COLUMN body SET STORAGE EXTERNAL;
	CREATE TABLE full_ident (id int PRIMARY KEY, v text);
	ALTER TABLE full_ident REPLICA IDENTITY FULL;
	CREATE PUBLICATION pub FOR TABLE t, full_ident;
	SELECT pg_create_logical_replication_slot('cap', 'pgoutput');
});
$node->psql(q{
	-- Relation, Type, Insert with binary, null and a large TOASTed value
	INSERT INTO t VALUES (1, '2024-01-01 10:00', repeat('x', 10000), 'happy', NULL, 1.5);
	-- Update without a key change: unchanged TOAST shows as 'u'
	UPDATE t SET note = 'edited' WHERE id = 1;
	-- Update of the key: a 'K' tuple
	UPDATE t SET id = 2 WHERE id = 1;
	-- Replica identity full: 'O' tuples
	INSERT INTO full_ident VALUES (1, 'a');
	UPDATE full_ident SET v = 'b' WHERE id = 1;
	DELETE FROM full_ident WHERE id = 1;
	-- Delete with a 'K' tuple
	DELETE FROM t WHERE id = 2;
	-- Logical messages, transactional and not
	SELECT pg_logical_emit_message(true, 'pgrepart', 'in a transaction');
	SELECT pg_logical_emit_message(false, 'pgrepart', '\x00ff'::bytea);
	TRUNCATE t, full_ident RESTART IDENTITY;
	-- A change from a session with a replication origin: an Origin message
	SELECT pg_replication_origin_create('elsewhere');
});
$node->psql(q{
	SELECT pg_replication_origin_session_setup('elsewhere');
	BEGIN;
	SELECT pg_replication_origin_xact_setup('0/12345678', now());
	INSERT INTO t VALUES (3, '2024-02-01', 'short', NULL, 'o', NULL);
	COMMIT;
});
print $node->psql(q{
	SELECT chr(get_byte(data, 0)) || ' ' || encode(data, 'hex')
	FROM pg_logical_slot_peek_binary_changes('cap', NULL, NULL, 'proto_version', '1',
		'publication_names', 'pub', 'binary', 'true', 'messages', 'true')}), "\n";
