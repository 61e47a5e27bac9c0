/*
 * Unit tests for the pgoutput decoder, on a stream captured from
 * PostgreSQL 15 (tests/fixtures/pgoutput/stream.hex, made by
 * tests/tools/capture-pgoutput.pl): every message type and tuple kind, every
 * truncation of every message, trailing bytes, bad markers and hostile
 * lengths, and a deterministic mutation run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgrepart/mem.h"
#include "pgrepart/pgout.h"
#include "tap.h"

#define MAX_MESSAGES 64

typedef struct fixture
{
	char		kind;
	uint8_t    *data;
	size_t		len;
} fixture;

static fixture messages[MAX_MESSAGES];
static int	nmessages;

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void
load_fixture(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		line[65536];

	if (f == NULL)
	{
		printf("Bail out! cannot open %s\n", path);
		exit(1);
	}
	while (fgets(line, sizeof(line), f) && nmessages < MAX_MESSAGES)
	{
		size_t		hexlen;
		fixture    *m;

		if (strlen(line) < 3 || line[1] != ' ')
			continue;
		m = &messages[nmessages++];
		m->kind = line[0];
		hexlen = strcspn(line + 2, "\r\n");
		m->len = hexlen / 2;
		m->data = xmalloc(m->len + 1);
		for (size_t i = 0; i < m->len; i++)
			m->data[i] = (uint8_t) (hexval(line[2 + 2 * i]) * 16 + hexval(line[3 + 2 * i]));
	}
	fclose(f);
}

static uint64_t
be(const pgout_value *v)
{
	uint64_t	x = 0;

	for (uint32_t i = 0; i < v->len; i++)
		x = (x << 8) | v->data[i];
	return x;
}

static int
value_is(const pgout_value *v, const char *text)
{
	return v->kind == 'b' && v->len == strlen(text) && memcmp(v->data, text, v->len) == 0;
}

/* The n-th fixture message of a kind (0-based). */
static const fixture *
nth(char kind, int n)
{
	for (int i = 0; i < nmessages; i++)
		if (messages[i].kind == kind && n-- == 0)
			return &messages[i];
	return NULL;
}

static void
decode(pgout_decoder *dec, const fixture *f, pgout_message *m)
{
	if (f == NULL || !pgout_decode(dec, f->data, f->len, m))
	{
		printf("Bail out! fixture message does not decode: %s\n", dec->error);
		exit(1);
	}
}

static void
test_captured(pgout_decoder *dec)
{
	pgout_message m;
	int			all = 1;

	ok(nmessages == 40, "fixture holds the captured stream");
	for (int i = 0; i < nmessages; i++)
	{
		if (!pgout_decode(dec, messages[i].data, messages[i].len, &m) ||
			(char) m.kind != messages[i].kind)
		{
			printf("# message %d (%c): %s\n", i, messages[i].kind, dec->error);
			all = 0;
		}
	}
	ok(all, "every captured message decodes to its kind");

	decode(dec, nth('B', 0), &m);
	ok(m.begin.final_lsn != 0 && m.begin.xid != 0 && m.begin.commit_time > 0, "Begin fields");
	decode(dec, nth('C', 0), &m);
	ok(m.commit.flags == 0 && m.commit.end_lsn > m.commit.commit_lsn, "Commit fields");

	decode(dec, nth('R', 0), &m);
	is_str(m.relation.nspname, "public", "Relation namespace");
	is_str(m.relation.relname, "t", "Relation name");
	ok(m.relation.replident == 'd', "Relation replica identity default");
	is_int(m.relation.ncols, 6, "Relation column count");
	ok(m.relation.columns[0].is_key && strcmp(m.relation.columns[0].name, "id") == 0 &&
	   m.relation.columns[0].type_oid == 20 && m.relation.columns[0].typmod == -1,
	   "key column id bigint");
	ok(!m.relation.columns[2].is_key && strcmp(m.relation.columns[2].name, "body") == 0,
	   "non-key column body");

	decode(dec, nth('Y', 0), &m);
	ok(strcmp(m.type.typname, "mood") == 0 && strcmp(m.type.nspname, "public") == 0,
	   "Type message for the enum");

	decode(dec, nth('I', 0), &m);
	is_int(m.insert.newtuple.ncols, 6, "Insert carries every column");
	ok(m.insert.newtuple.values[0].kind == 'b' && be(&m.insert.newtuple.values[0]) == 1,
	   "Insert id in binary");
	ok(m.insert.newtuple.values[2].kind == 'b' && m.insert.newtuple.values[2].len == 10000,
	   "Insert carries the whole TOASTed value");
	ok(value_is(&m.insert.newtuple.values[3], "happy"), "enum in its send format");
	ok(m.insert.newtuple.values[4].kind == 'n', "NULL as 'n'");

	decode(dec, nth('U', 0), &m);
	ok(m.update.oldkind == '\0', "Update without a key change has no old tuple");
	ok(m.update.newtuple.values[2].kind == 'u', "unchanged TOASTed column as 'u'");
	ok(value_is(&m.update.newtuple.values[4], "edited"), "changed column as 'b'");

	decode(dec, nth('U', 1), &m);
	ok(m.update.oldkind == 'K', "Update of the key has a 'K' tuple");
	ok(m.update.oldtuple.ncols == 6 && be(&m.update.oldtuple.values[0]) == 1 &&
	   m.update.oldtuple.values[1].kind == 'n', "'K' holds the old key, other columns 'n'");
	ok(be(&m.update.newtuple.values[0]) == 2, "new tuple holds the new key");

	decode(dec, nth('U', 2), &m);
	ok(m.update.oldkind == 'O' && value_is(&m.update.oldtuple.values[1], "a") &&
	   value_is(&m.update.newtuple.values[1], "b"), "REPLICA IDENTITY FULL: an 'O' tuple");

	decode(dec, nth('D', 0), &m);
	ok(m.delete.oldkind == 'O' && value_is(&m.delete.oldtuple.values[1], "b"), "Delete with 'O'");
	decode(dec, nth('D', 1), &m);
	ok(m.delete.oldkind == 'K' && be(&m.delete.oldtuple.values[0]) == 2, "Delete with 'K'");

	decode(dec, nth('M', 0), &m);
	ok(m.message.flags == 1 && strcmp(m.message.prefix, "pgrepart") == 0 &&
	   m.message.len == 16 && memcmp(m.message.content, "in a transaction", 16) == 0,
	   "transactional logical message");
	decode(dec, nth('M', 1), &m);
	ok(m.message.flags == 0 && m.message.len == 2 && m.message.content[1] == 0xff,
	   "non-transactional logical message with binary content");

	decode(dec, nth('T', 0), &m);
	ok(m.truncate.nrels == 2 && m.truncate.options == PGOUT_TRUNCATE_RESTART_IDENTITY,
	   "Truncate of two relations with RESTART IDENTITY");

	decode(dec, nth('O', 0), &m);
	ok(m.origin.lsn == 0x12345678 && strcmp(m.origin.name, "elsewhere") == 0, "Origin message");
}

static void
test_malformed(pgout_decoder *dec)
{
	pgout_message m;
	int			all_truncations_fail = 1;
	int			all_trailing_fail = 1;
	const fixture *ins = nth('I', 0);
	uint8_t    *copy;

	for (int i = 0; i < nmessages; i++)
	{
		uint8_t    *longer = xmalloc(messages[i].len + 1);

		for (size_t cut = 0; cut < messages[i].len; cut++)
		{
			/* A copy of exactly cut bytes, so ASan sees any overread. */
			uint8_t    *part = xmalloc(cut ? cut : 1);

			memcpy(part, messages[i].data, cut);
			if (pgout_decode(dec, part, cut, &m))
			{
				printf("# message %d cut to %zu bytes decoded\n", i, cut);
				all_truncations_fail = 0;
			}
			free(part);
		}
		memcpy(longer, messages[i].data, messages[i].len);
		longer[messages[i].len] = 0;
		if (pgout_decode(dec, longer, messages[i].len + 1, &m))
			all_trailing_fail = 0;
		free(longer);
	}
	ok(all_truncations_fail, "every truncation of every message is an error");
	ok(all_trailing_fail, "a trailing byte is an error");

	ok(!pgout_decode(dec, (const uint8_t *) "Z", 1, &m) &&
	   strstr(dec->error, "unknown message type at offset 0") != NULL, "unknown type named");
	ok(!pgout_decode(dec, (const uint8_t *) "", 0, &m), "empty input is an error");

	copy = xmalloc(ins->len);
	memcpy(copy, ins->data, ins->len);
	copy[5] = 'X';				/* the 'N' marker */
	ok(!pgout_decode(dec, copy, ins->len, &m) &&
	   strstr(dec->error, "unexpected tuple marker 0x58 at offset 5") != NULL,
	   "a bad tuple marker is named with its offset");
	memcpy(copy, ins->data, ins->len);
	copy[8] = 'q';				/* first value's kind */
	ok(!pgout_decode(dec, copy, ins->len, &m) &&
	   strstr(dec->error, "unknown tuple value marker") != NULL, "a bad value kind");
	memcpy(copy, ins->data, ins->len);
	copy[6] = 0xff;				/* ncols = 0xff06 */
	ok(!pgout_decode(dec, copy, ins->len, &m) && strstr(dec->error, "exceeds") != NULL,
	   "a column count beyond the message is refused before allocating");
	memcpy(copy, ins->data, ins->len);
	copy[9] = 0x80;				/* first value's length: negative */
	ok(!pgout_decode(dec, copy, ins->len, &m), "a negative value length");
	free(copy);
}

/* xorshift: deterministic mutations, so a failure is reproducible. */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t
next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void
test_mutations(pgout_decoder *dec)
{
	pgout_message m;
	int			decoded = 0;
	int			rounds = 200000;

	for (int i = 0; i < rounds; i++)
	{
		const fixture *f = &messages[next_random() % (uint64_t) nmessages];
		size_t		len = f->len;
		uint8_t    *copy = xmalloc(len ? len : 1);
		int			flips = 1 + (int) (next_random() % 4);

		memcpy(copy, f->data, len);
		for (int j = 0; j < flips && len > 0; j++)
			copy[next_random() % len] = (uint8_t) next_random();
		if (next_random() % 4 == 0 && len > 0)
			len = next_random() % len;
		if (pgout_decode(dec, copy, len, &m))
			decoded++;
		free(copy);
	}
	ok(1, "200000 mutated messages decoded or refused without a crash");
	printf("# %d of %d mutations still decoded\n", decoded, rounds);
}

int
main(void)
{
	const char *dir = getenv("PGREPART_FIXTURES");
	char		path[1024];
	pgout_decoder dec;

	snprintf(path, sizeof(path), "%s/pgoutput/stream.hex", dir ? dir : "tests/fixtures");
	load_fixture(path);
	pgout_decoder_init(&dec);
	test_captured(&dec);
	test_malformed(&dec);
	test_mutations(&dec);
	pgout_decoder_free(&dec);
	for (int i = 0; i < nmessages; i++)
		free(messages[i].data);
	return tap_done();
}
