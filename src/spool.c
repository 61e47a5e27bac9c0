/* spool.c: the change stream kept durably during the backfill; see spool.h. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/clock.h"
#include "pgrepart/copybin.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/pgout.h"
#include "pgrepart/relation.h"
#include "pgrepart/spool.h"
#include "pgrepart/stream.h"
#include "pgrepart/wire.h"

/* Spooled pieces are written at the latest when this much waits. */
#define SPOOL_FLUSH_BYTES ((size_t) 8 * 1024 * 1024)

/* A transaction is stored in pieces of about this much (a message is never split). */
#define SPOOL_PIECE_BYTES ((size_t) 4 * 1024 * 1024)


struct spool
{
	const state_migration *m;
	stream		s;
	db			d;				/* writes pgrepart.spool */
	pgout_decoder dec;
	char	  **names;			/* the shadow's columns: the source's as the migration started */
	Oid		   *types;
	int			ncolumns;
	buf			relation;		/* the latest Relation message, length-prefixed */
	buf			txn;			/* the transaction's piece being received */
	bool		in_txn;
	lsn_t		commit_lsn;		/* the transaction's, from its Begin */
	int32_t		piece;			/* the number of the piece being received */
	buf			pending;		/* binary COPY rows of pieces not yet written */
	int			npending;
	lsn_t		pending_end;	/* the end of the last whole transaction among them */
	int64_t		transactions;
	int64_t		bytes;
};

spool *
spool_open(const char *conninfo, const state_migration *m)
{
	spool	   *sp = xcalloc(1, sizeof(*sp));
	/* The shadow's columns, not the table's: a column added since must be told as added. */
	char	   *qshadow = ident_qualified(m->schema, m->shadow);
	PGresult   *res = NULL;
	lsn_t		start = m->consistent_lsn;
	bool		ok = false;

	sp->m = m;
	pgout_decoder_init(&sp->dec);
	buf_init(&sp->relation);
	buf_init(&sp->txn);
	buf_init(&sp->pending);
	if (!db_connect(&sp->d, conninfo, "source") ||
		!catalog_published_columns(&sp->d, qshadow, &sp->names, &sp->types, &sp->ncolumns))
		goto cleanup;
	/*
	 * The pieces of a transaction whose end was never spooled (the spooler
	 * stopped in its middle) come again whole from the slot.
	 */
	res = db_execf(&sp->d, "drop the spool's unfinished transaction",
				   "DELETE FROM pgrepart.spool WHERE migration_id = %int4 AND commit_lsn > "
				   "  COALESCE((SELECT max(commit_lsn) FROM pgrepart.spool "
				   "    WHERE migration_id = %int4 AND end_lsn IS NOT NULL), '0/0')", m->id, m->id);
	if (res == NULL)
		goto cleanup;
	PQclear(res);
	res = db_execf(&sp->d, "read the spool's end",
				   "SELECT max(end_lsn)::pg_catalog.text, count(end_lsn)::pg_catalog.text, "
				   "  COALESCE(sum(pg_catalog.octet_length(data)), 0)::pg_catalog.text "
				   "FROM pgrepart.spool WHERE migration_id = %int4", m->id);
	if (res == NULL)
		goto cleanup;
	if (!PQgetisnull(res, 0, 0))
	{
		lsn_t		end;

		if (lsn_parse(PQgetvalue(res, 0, 0), &end) && end > start)
			start = end;
		sp->transactions = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		sp->bytes = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	}
	ok = stream_connect(&sp->s, conninfo) &&
		stream_start(&sp->s, m->slot, m->publication, start);
	if (ok)
	{
		char		text[LSN_TEXT_SIZE];

		log_info("spooling the change stream from %s", lsn_format(start, text));
	}

cleanup:
	PQclear(res);
	free(qshadow);
	if (!ok)
	{
		spool_close(sp);
		return NULL;
	}
	return sp;
}

void
spool_close(spool *sp)
{
	if (sp == NULL)
		return;
	stream_close(&sp->s);
	db_close(&sp->d);
	pgout_decoder_free(&sp->dec);
	for (int i = 0; i < sp->ncolumns; i++)
		free(sp->names[i]);
	free(sp->names);
	free(sp->types);
	buf_free(&sp->relation);
	buf_free(&sp->txn);
	buf_free(&sp->pending);
	free(sp);
}

int64_t
spool_transactions(const spool *sp)
{
	return sp->transactions;
}

int64_t
spool_bytes(const spool *sp)
{
	return sp->bytes;
}

int64_t
spool_lag_bytes(const spool *sp)
{
	return sp->s.server_end > sp->s.flushed ? (int64_t) (sp->s.server_end - sp->s.flushed) : 0;
}

static void
spool_append_message(buf *b, const uint8_t *data, size_t len)
{
	wire_put_u32(b, (uint32_t) len);
	buf_append_len(b, data, len);
}

/* A Relation message: the columns must be the ones the copy reads. */
static bool
spool_check_relation(spool *sp, const pgout_message *msg)
{
	pgout_relation *rel = pgout_relation_copy(msg);
	bool		same = relation_matches(rel, sp->names, sp->types, sp->ncolumns);

	pgout_relation_free(rel);
	return same;
}

/* Write the spooled transactions waiting in memory, then confirm them to the slot. */
static bool
spool_flush(spool *sp)
{
	PGresult   *res;
	bool		ok;

	if (sp->npending == 0)
		return true;
	copybin_put_trailer(&sp->pending);
	res = PQexec(sp->d.conn, "COPY pgrepart.spool (migration_id, commit_lsn, piece, end_lsn, data) FROM STDIN "
				 "(FORMAT binary)");
	ok = PQresultStatus(res) == PGRES_COPY_IN;
	PQclear(res);
	ok = ok && PQputCopyData(sp->d.conn, sp->pending.data, (int) sp->pending.len) == 1 &&
		PQputCopyEnd(sp->d.conn, NULL) == 1;
	res = PQgetResult(sp->d.conn);
	ok = ok && PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		db_log_error(sp->d.conn, "source", "write the spool", res, sp->d.sqlstate);
	PQclear(res);
	while ((res = PQgetResult(sp->d.conn)) != NULL)
		PQclear(res);
	if (!ok)
		return false;
	stream_confirm(&sp->s, sp->pending_end);
	buf_reset(&sp->pending);
	sp->npending = 0;
	return true;
}

/*
 * The messages received of the transaction become its next spool row; end
 * is its end at its Commit, LSN_INVALID (stored as NULL) before.
 */
static void
spool_put_piece(spool *sp, lsn_t end)
{
	buf			field;

	if (sp->npending == 0)
		copybin_put_header(&sp->pending);
	buf_init(&field);
	copybin_put_row_start(&sp->pending, 5);
	wire_put_u32(&field, (uint32_t) sp->m->id);
	wire_put_u64(&field, sp->commit_lsn);
	wire_put_u32(&field, (uint32_t) sp->piece);
	if (end != LSN_INVALID)
		wire_put_u64(&field, end);
	copybin_put_field(&sp->pending, field.data, 4);
	copybin_put_field(&sp->pending, field.data + 4, 8);
	copybin_put_field(&sp->pending, field.data + 12, 4);
	copybin_put_field(&sp->pending, end != LSN_INVALID ? field.data + 16 : NULL, 8);
	copybin_put_field(&sp->pending, sp->txn.data, (uint32_t) sp->txn.len);
	buf_free(&field);
	sp->npending++;
	sp->bytes += (int64_t) sp->txn.len;
	sp->piece++;
	buf_reset(&sp->txn);
	if (end != LSN_INVALID)
	{
		sp->pending_end = end;
		sp->transactions++;
		sp->in_txn = false;
	}
}

bool
spool_pump(spool *sp, int budget_ms, bool wait, bool *truncated)
{
	int64_t		deadline = clock_monotonic_us() + (int64_t) budget_ms * 1000;

	for (;;)
	{
		const uint8_t *data;
		size_t		len;
		lsn_t		lsn;
		pgout_message msg;
		int64_t		left = (deadline - clock_monotonic_us()) / 1000;
		stream_result r;

		/* Before receiving: a message received is a message to keep. */
		if (left <= 0)
			break;
		r = stream_receive(&sp->s, wait ? (int) left : 0, false, &data, &len, &lsn);
		if (r == STREAM_ENDED || r == STREAM_FAILED)
			return false;
		if (r == STREAM_TIMEOUT)
			break;
		if (!pgout_decode(&sp->dec, data, len, &msg))
		{
			char		text[LSN_TEXT_SIZE];

			log_error("%s at %s", sp->dec.error, lsn_format(lsn, text));
			return false;
		}
		switch (msg.kind)
		{
			case PGOUT_RELATION:
				if (!spool_check_relation(sp, &msg))
					return false;
				buf_reset(&sp->relation);
				spool_append_message(&sp->relation, data, len);
				if (sp->in_txn)
					spool_append_message(&sp->txn, data, len);
				continue;
			case PGOUT_BEGIN:
				/* Each row decodes on its own: the latest relation follows its Begin. */
				buf_reset(&sp->txn);
				spool_append_message(&sp->txn, data, len);
				buf_append_len(&sp->txn, sp->relation.data, sp->relation.len);
				sp->in_txn = true;
				sp->commit_lsn = msg.begin.final_lsn;
				sp->piece = 0;
				continue;
			case PGOUT_TRUNCATE:
				*truncated = true;
				break;
			default:
				break;
		}
		spool_append_message(&sp->txn, data, len);
		/* A large transaction is stored as it arrives, never held whole. */
		if (msg.kind == PGOUT_COMMIT)
			spool_put_piece(sp, msg.commit.end_lsn);
		else if (sp->txn.len >= SPOOL_PIECE_BYTES)
			spool_put_piece(sp, LSN_INVALID);
		if (sp->pending.len >= SPOOL_FLUSH_BYTES && !spool_flush(sp))
			return false;
	}
	if (!spool_flush(sp))
		return false;
	/* Nothing received is unspooled: idle WAL may be confirmed too. */
	if (!sp->in_txn && sp->s.received <= sp->s.flushed)
		stream_confirm(&sp->s, sp->s.server_end);
	return true;
}

lsn_t
spool_upto(const spool *sp)
{
	/* What is confirmed to the slot: spool_pump confirms exactly that. */
	return sp->s.flushed;
}

/*
 * Where the replay begins and ends: the commit position of the first
 * transaction ending after `after`, and of the last whole one.  False after
 * logging; *first is LSN_INVALID when nothing is to be replayed.
 */
static bool
spool_replay_range(db *d, const state_migration *m, lsn_t after, lsn_t *first, lsn_t *last)
{
	char		text[LSN_TEXT_SIZE];
	PGresult   *res = db_execf(d, "read the spool's range",
							   "SELECT (min(commit_lsn) FILTER (WHERE end_lsn > %text::pg_catalog.pg_lsn))"
							   "::pg_catalog.text, "
							   "  (max(commit_lsn) FILTER (WHERE end_lsn IS NOT NULL))::pg_catalog.text "
							   "FROM pgrepart.spool WHERE migration_id = %int4",
							   lsn_format(after, text), m->id);
	bool		ok = res != NULL;

	*first = *last = LSN_INVALID;
	if (ok && !PQgetisnull(res, 0, 0))
		ok = lsn_parse(PQgetvalue(res, 0, 0), first) && lsn_parse(PQgetvalue(res, 0, 1), last);
	PQclear(res);
	return ok;
}

/* Each message of a read's pieces to look, then looked once. */
static bool
spool_look(const PGresult *res, const spool_reader *reader)
{
	for (int i = 0; i < PQntuples(res); i++)
	{
		wire_reader r;

		wire_reader_init(&r, PQgetvalue(res, i, 3), (size_t) PQgetlength(res, i, 3));
		while (!r.failed && wire_remaining(&r) > 0)
		{
			uint32_t	len = wire_u32(&r);
			const uint8_t *data = wire_bytes(&r, len);

			if (data != NULL && !reader->look(reader->arg, data, len))
				return false;
		}
	}
	return reader->looked(reader->arg);
}

bool
spool_replay(db *d, const state_migration *m, lsn_t after, const spool_reader *reader, lsn_t *end)
{
	char		text[LSN_TEXT_SIZE], id[16], from[LSN_TEXT_SIZE], upto[LSN_TEXT_SIZE], piece[16];
	lsn_t		first, last;

	*end = after;
	if (!spool_replay_range(d, m, after, &first, &last))
		return false;
	if (first == LSN_INVALID)
		return true;
	snprintf(id, sizeof(id), "%d", m->id);
	lsn_format(first, from);
	lsn_format(last, upto);
	snprintf(piece, sizeof(piece), "-1");
	/*
	 * Pieces in order after the last one read, up to the last whole
	 * transaction (a piece beyond it belongs to one the spooler never
	 * finished).  At most 500 pieces a read, and no more once those before
	 * hold 8 MB: a read holds at most that and one piece.
	 */
	for (;;)
	{
		const char *params[4] = {id, from, piece, upto};
		PGresult   *res = PQexecParams(d->conn,
									   "SELECT commit_lsn, piece, end_lsn, data FROM ("
									   "  SELECT commit_lsn, piece, end_lsn, data, "
									   "    pg_catalog.sum(pg_catalog.octet_length(data)) OVER "
									   "    (ORDER BY commit_lsn, piece ROWS UNBOUNDED PRECEDING) "
									   "    - pg_catalog.octet_length(data) AS before "
									   "  FROM pgrepart.spool WHERE migration_id = $1::pg_catalog.int4 "
									   "  AND (commit_lsn, piece) > ($2::pg_catalog.pg_lsn, $3::pg_catalog.int4) "
									   "  AND commit_lsn <= $4::pg_catalog.pg_lsn "
									   "  ORDER BY commit_lsn, piece LIMIT 500) s "
									   "WHERE before < 8388608 ORDER BY commit_lsn, piece",
									   4, NULL, params, NULL, NULL, 1);
		int			n;

		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			db_log_error(d->conn, "source", "read the spool", res, d->sqlstate);
			PQclear(res);
			return false;
		}
		n = PQntuples(res);
		if (reader->look != NULL && !spool_look(res, reader))
		{
			PQclear(res);
			return false;
		}
		for (int i = 0; i < n; i++)
		{
			wire_reader cr, pr, r;
			lsn_t		commit;
			uint32_t	number;

			wire_reader_init(&cr, PQgetvalue(res, i, 0), (size_t) PQgetlength(res, i, 0));
			commit = wire_u64(&cr);
			wire_reader_init(&pr, PQgetvalue(res, i, 1), (size_t) PQgetlength(res, i, 1));
			number = wire_u32(&pr);
			wire_reader_init(&r, PQgetvalue(res, i, 3), (size_t) PQgetlength(res, i, 3));
			while (!r.failed && wire_remaining(&r) > 0)
			{
				uint32_t	len = wire_u32(&r);
				const uint8_t *data = wire_bytes(&r, len);

				if (data != NULL && !reader->fn(reader->arg, data, len, commit))
				{
					PQclear(res);
					return false;
				}
			}
			if (cr.failed || pr.failed || r.failed)
			{
				log_error("spooled transaction committed at %s is malformed: %s",
						  lsn_format(commit, text), r.failed ? r.error : "bad position");
				PQclear(res);
				return false;
			}
			if (!PQgetisnull(res, i, 2))
			{
				wire_reader er;

				wire_reader_init(&er, PQgetvalue(res, i, 2), (size_t) PQgetlength(res, i, 2));
				*end = wire_u64(&er);
			}
			lsn_format(commit, from);
			snprintf(piece, sizeof(piece), "%" PRIu32, number);
		}
		PQclear(res);
		/* A read cut short by its bytes is no end: only an empty one is. */
		if (n == 0)
			return true;
	}
}

/* The pieces of every transaction ending at or before upto. */
bool
spool_trim(db *d, const state_migration *m, lsn_t upto)
{
	char		text[LSN_TEXT_SIZE];
	PGresult   *res = db_execf(d, "trim the spool",
							   "DELETE FROM pgrepart.spool WHERE migration_id = %int4 AND commit_lsn <= "
							   "  (SELECT max(commit_lsn) FROM pgrepart.spool WHERE migration_id = %int4 "
							   "    AND end_lsn <= %text::pg_catalog.pg_lsn)", m->id, m->id,
							   lsn_format(upto, text));

	PQclear(res);
	return res != NULL;
}
