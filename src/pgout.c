/*
 * pgout.c: the pgoutput decoder; see pgout.h.
 *
 * One reader per message type, over a wire_reader whose error is sticky:
 * each reader takes its fields and the caller checks once.  Array sizes
 * read from the wire are bounded by the bytes left before anything is
 * allocated, so a hostile length cannot make the decoder allocate much.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgrepart/mem.h"
#include "pgrepart/pgout.h"
#include "pgrepart/wire.h"

void
pgout_decoder_init(pgout_decoder *dec)
{
	memset(dec, 0, sizeof(*dec));
}

void
pgout_decoder_free(pgout_decoder *dec)
{
	if (dec == NULL)
		return;
	free(dec->values[0]);
	free(dec->values[1]);
	free(dec->columns);
	free(dec->relids);
	memset(dec, 0, sizeof(*dec));
}

const char *
pgout_kind_name(pgout_kind kind)
{
	switch (kind)
	{
		case PGOUT_BEGIN:
			return "Begin";
		case PGOUT_COMMIT:
			return "Commit";
		case PGOUT_ORIGIN:
			return "Origin";
		case PGOUT_RELATION:
			return "Relation";
		case PGOUT_TYPE:
			return "Type";
		case PGOUT_INSERT:
			return "Insert";
		case PGOUT_UPDATE:
			return "Update";
		case PGOUT_DELETE:
			return "Delete";
		case PGOUT_TRUNCATE:
			return "Truncate";
		case PGOUT_MESSAGE:
			return "Message";
	}
	return "unknown";
}

/* Grow a scratch array to hold n items of size each. */
static void
pgout_reserve(void **array, int *cap, int n, size_t size)
{
	if (n <= *cap)
		return;
	*array = xrealloc(*array, size * (size_t) n);
	*cap = n;
}

/*
 * A count read from the wire, checked against the bytes left: each item
 * takes at least min_size bytes, so a count larger than that is malformed.
 */
static int
pgout_count(wire_reader *r, uint32_t count, size_t min_size, const char *what)
{
	if (r->failed)
		return 0;
	if ((uint64_t) count * min_size > wire_remaining(r))
	{
		char		msg[96];

		snprintf(msg, sizeof(msg), "%s count %u exceeds the message", what, count);
		wire_fail(r, msg);
		return 0;
	}
	return (int) count;
}

static void
pgout_read_tuple(pgout_decoder *dec, wire_reader *r, int slot, pgout_tuple *t)
{
	int			ncols = pgout_count(r, wire_u16(r), 1, "column");

	pgout_reserve((void **) &dec->values[slot], &dec->values_cap[slot], ncols,
				  sizeof(pgout_value));
	t->ncols = ncols;
	t->values = dec->values[slot];
	for (int i = 0; i < ncols && !r->failed; i++)
	{
		pgout_value *v = &t->values[i];

		v->kind = (char) wire_u8(r);
		v->len = 0;
		v->data = NULL;
		switch (v->kind)
		{
			case 'n':
			case 'u':
				break;
			case 't':
			case 'b':
				v->len = wire_u32(r);
				if (v->len > INT32_MAX)
				{
					wire_fail(r, "negative value length");
					break;
				}
				v->data = wire_bytes(r, v->len);
				break;
			default:
				if (!r->failed)
				{
					char		msg[64];

					r->pos--;
					snprintf(msg, sizeof(msg), "unknown tuple value marker 0x%02x",
							 (unsigned) (uint8_t) v->kind);
					wire_fail(r, msg);
				}
		}
	}
}

/* The 'N' before a new tuple, or a 'K'/'O' before an old one. */
static char
pgout_read_marker(wire_reader *r, const char *allowed)
{
	char		c = (char) wire_u8(r);

	if (!r->failed && strchr(allowed, c) == NULL)
	{
		char		msg[64];

		r->pos--;
		snprintf(msg, sizeof(msg), "unexpected tuple marker 0x%02x", (unsigned) (uint8_t) c);
		wire_fail(r, msg);
	}
	return c;
}

static void
pgout_read_relation(pgout_decoder *dec, wire_reader *r, pgout_message *m)
{
	m->relation.relid = wire_u32(r);
	m->relation.nspname = wire_cstring(r);
	m->relation.relname = wire_cstring(r);
	m->relation.replident = (char) wire_u8(r);
	/* flags + name NUL + oid + typmod: at least 10 bytes per column */
	m->relation.ncols = pgout_count(r, wire_u16(r), 10, "column");
	pgout_reserve((void **) &dec->columns, &dec->columns_cap, m->relation.ncols,
				  sizeof(pgout_column));
	m->relation.columns = dec->columns;
	for (int i = 0; i < m->relation.ncols && !r->failed; i++)
	{
		pgout_column *c = &m->relation.columns[i];

		c->is_key = (wire_u8(r) & 1) != 0;
		c->name = wire_cstring(r);
		c->type_oid = wire_u32(r);
		c->typmod = (int32_t) wire_u32(r);
	}
}

static void
pgout_read_update(pgout_decoder *dec, wire_reader *r, pgout_message *m)
{
	char		marker;

	m->update.relid = wire_u32(r);
	m->update.oldkind = '\0';
	m->update.oldtuple.ncols = 0;
	m->update.oldtuple.values = NULL;
	marker = pgout_read_marker(r, "KON");
	if (marker == 'K' || marker == 'O')
	{
		m->update.oldkind = marker;
		pgout_read_tuple(dec, r, 0, &m->update.oldtuple);
		pgout_read_marker(r, "N");
	}
	pgout_read_tuple(dec, r, 1, &m->update.newtuple);
}

static void
pgout_read_truncate(pgout_decoder *dec, wire_reader *r, pgout_message *m)
{
	m->truncate.nrels = pgout_count(r, wire_u32(r), 4, "relation");
	m->truncate.options = wire_u8(r);
	pgout_reserve((void **) &dec->relids, &dec->relids_cap, m->truncate.nrels, sizeof(uint32_t));
	m->truncate.relids = dec->relids;
	for (int i = 0; i < m->truncate.nrels && !r->failed; i++)
		m->truncate.relids[i] = wire_u32(r);
}

bool
pgout_decode(pgout_decoder *dec, const uint8_t *data, size_t len, pgout_message *m)
{
	wire_reader r;
	uint8_t		tag;

	wire_reader_init(&r, data, len);
	memset(m, 0, sizeof(*m));
	dec->error[0] = '\0';
	tag = wire_u8(&r);
	m->kind = (pgout_kind) tag;
	switch (tag)
	{
		case PGOUT_BEGIN:
			m->begin.final_lsn = wire_u64(&r);
			m->begin.commit_time = (int64_t) wire_u64(&r);
			m->begin.xid = wire_u32(&r);
			break;
		case PGOUT_COMMIT:
			m->commit.flags = wire_u8(&r);
			m->commit.commit_lsn = wire_u64(&r);
			m->commit.end_lsn = wire_u64(&r);
			m->commit.commit_time = (int64_t) wire_u64(&r);
			break;
		case PGOUT_ORIGIN:
			m->origin.lsn = wire_u64(&r);
			m->origin.name = wire_cstring(&r);
			break;
		case PGOUT_RELATION:
			pgout_read_relation(dec, &r, m);
			break;
		case PGOUT_TYPE:
			m->type.oid = wire_u32(&r);
			m->type.nspname = wire_cstring(&r);
			m->type.typname = wire_cstring(&r);
			break;
		case PGOUT_INSERT:
			m->insert.relid = wire_u32(&r);
			pgout_read_marker(&r, "N");
			pgout_read_tuple(dec, &r, 1, &m->insert.newtuple);
			break;
		case PGOUT_UPDATE:
			pgout_read_update(dec, &r, m);
			break;
		case PGOUT_DELETE:
			m->delete.relid = wire_u32(&r);
			m->delete.oldkind = pgout_read_marker(&r, "KO");
			pgout_read_tuple(dec, &r, 0, &m->delete.oldtuple);
			break;
		case PGOUT_TRUNCATE:
			pgout_read_truncate(dec, &r, m);
			break;
		case PGOUT_MESSAGE:
			m->message.flags = wire_u8(&r);
			m->message.lsn = wire_u64(&r);
			m->message.prefix = wire_cstring(&r);
			m->message.len = wire_u32(&r);
			if (m->message.len > INT32_MAX)
				wire_fail(&r, "negative message length");
			m->message.content = wire_bytes(&r, m->message.len);
			break;
		default:
			if (!r.failed)
			{
				r.pos = 0;
				wire_fail(&r, "unknown message type");
			}
	}
	if (!r.failed && wire_remaining(&r) != 0)
	{
		char		msg[64];

		snprintf(msg, sizeof(msg), "%zu bytes after the end of the message", wire_remaining(&r));
		wire_fail(&r, msg);
	}
	if (r.failed)
	{
		if (tag >= 0x20 && tag < 0x7f)
			snprintf(dec->error, sizeof(dec->error), "malformed pgoutput message '%c' (%zu bytes): "
					 "%s at offset %zu", tag, len, r.error, r.error_pos);
		else
			snprintf(dec->error, sizeof(dec->error), "malformed pgoutput message 0x%02x (%zu bytes): "
					 "%s at offset %zu", tag, len, r.error, r.error_pos);
		return false;
	}
	return true;
}

pgout_relation *
pgout_relation_copy(const pgout_message *msg)
{
	pgout_relation *rel = xcalloc(1, sizeof(pgout_relation));

	rel->relid = msg->relation.relid;
	rel->nspname = xstrdup(msg->relation.nspname);
	rel->relname = xstrdup(msg->relation.relname);
	rel->replident = msg->relation.replident;
	rel->ncols = msg->relation.ncols;
	rel->columns = xcalloc((size_t) rel->ncols + 1, sizeof(*rel->columns));
	for (int i = 0; i < rel->ncols; i++)
	{
		rel->columns[i].is_key = msg->relation.columns[i].is_key;
		rel->columns[i].name = xstrdup(msg->relation.columns[i].name);
		rel->columns[i].type_oid = msg->relation.columns[i].type_oid;
		rel->columns[i].typmod = msg->relation.columns[i].typmod;
	}
	return rel;
}

void
pgout_relation_free(pgout_relation *rel)
{
	if (rel == NULL)
		return;
	for (int i = 0; i < rel->ncols; i++)
		free(rel->columns[i].name);
	free(rel->columns);
	free(rel->nspname);
	free(rel->relname);
	free(rel);
}
