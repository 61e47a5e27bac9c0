/*
 * backfill.c: copy a live table in key-range chunks, each under its own
 * snapshot; see backfill.h.
 *
 * A chunk's key bound cannot be a parameter of COPY, so the source session
 * holds it as transaction-local settings (pgrepart.lo_N), set from binary
 * parameters of the key's own types, and the COPY's WHERE clause reads them
 * back with current_setting(): a stable expression the planner still uses as
 * an index condition.  No value is ever written into the SQL text.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpqtypes.h>

#include "pgrepart/backfill.h"
#include "pgrepart/clock.h"
#include "pgrepart/copybin.h"
#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/json.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/partition.h"
#include "pgrepart/reconcile.h"
#include "pgrepart/sqlstate.h"
#include "pgrepart/stream.h"
#include "pgrepart/wire.h"

#define BACKFILL_FIRST_ROWS 10000
#define BACKFILL_MIN_ROWS 1000
#define BACKFILL_MAX_ROWS 1000000
#define BACKFILL_TARGET_US 1000000
/*
 * After the throttle held the copy back, chunks aim at half the time, down
 * to this: what a chunk writes is what the source's standbys must replay
 * before the next check can see them catch up.  Unthrottled chunks grow
 * back by a tenth each.
 */
#define BACKFILL_THROTTLED_US 100000
/* Longest the spooler reads between two chunks. */
#define BACKFILL_PUMP_MS 300
/*
 * A chunk refused for a row no partition takes is taken again once the
 * partitions cover the source's range.  If that created none, the row was
 * gone by then (a new snapshot will not see it); a refusal that persists
 * across this many new snapshots is not about the range, and stops the run.
 */
#define BACKFILL_MAX_REFUSALS 3

/* The copy's fixed parts, worked out once. */
typedef struct backfill
{
	const backfill_options *o;
	state_migration *m;
	db		   *source;
	db			target;
	int			nkeys;
	Oid		   *key_types;		/* base types, for binary parameters */
	const catalog_column **key_columns;	/* for their types and collations */
	char	  **key_names;
	int		   *key_at;			/* each key column's position in the copied columns */
	int			ncolumns;
	buf			columns;		/* "a, b, c" */
	buf			lo;				/* the last chunk's hi_key: where the next begins */
	bool		has_lo;

	/*
	 * In physical order (docs/design.md, "The copy in physical order"): the
	 * table, quoted, the next chunk's first page, the table's file the chunks read (0 before
	 * the first), and the rows a page held so far, which turn a chunk's rows
	 * into pages, at most half or double the last chunk's: a stretch of dead
	 * or emptied pages must not make the next chunk the rest of the table.
	 */
	char	   *qtable;
	uint32_t	lo_page;
	uint32_t	filenode;
	double		rows_per_page;
	int64_t		chunk_pages;	/* the last chunk's, 0 before the first this run */
	bool		copied;			/* every page is copied: only the reconciliation is left */
	int			ord;			/* the next chunk's number */
	int64_t		rows;			/* copied so far */
	int64_t		bytes;			/* ... and their COPY bytes, this run */
	int64_t		chunk_rows;		/* the next chunk's size */
	int64_t		decoding_bytes; /* the source's logical_decoding_work_mem; 0 unknown */
	int64_t		target_us;		/* what a chunk should take: shorter after a throttle */
	double		estimated_rows; /* the table's reltuples, for the ETA */
	int			refusals;		/* refusals in a row that created no partition */

	/* Progress: a line on a terminal, a log line or a JSON event otherwise. */
	int64_t		started_us;
	int64_t		base_rows;
	int64_t		next_line_us;
	int64_t		next_log_us;
	bool		line_shown;
} backfill;

bool
backfill_supported(const catalog_table *t)
{
	for (int i = 0; i < t->nkey_columns; i++)
	{
		const catalog_column *c = catalog_find_column(t, t->key_columns[i]);

		if (c == NULL || !c->btree_orderable || !c->binary_io)
			return false;
	}
	return t->nkey_columns > 0;
}

void
backfill_encode_key(buf *out, int nkeys, const uint8_t *const *values, const uint32_t *lens)
{
	for (int i = 0; i < nkeys; i++)
	{
		wire_put_u32(out, lens[i]);
		buf_append_len(out, values[i], lens[i]);
	}
}

bool
backfill_decode_key(const uint8_t *key, size_t len, int nkeys, const uint8_t **values,
					uint32_t *lens)
{
	wire_reader r;

	wire_reader_init(&r, key, len);
	for (int i = 0; i < nkeys; i++)
	{
		lens[i] = wire_u32(&r);
		values[i] = wire_bytes(&r, lens[i]);
	}
	return !r.failed && wire_remaining(&r) == 0;
}

/*
 * A chunk's upper page in physical order, as its hi_key: one value, in
 * backfill_encode_key's form, of 4 bytes.
 */
static void
backfill_encode_page(buf *out, uint32_t page)
{
	wire_put_u32(out, 4);
	wire_put_u32(out, page);
}

static bool
backfill_page_of(const uint8_t *key, size_t len, uint32_t *page)
{
	wire_reader r;

	if (key == NULL)
		return false;
	wire_reader_init(&r, key, len);
	if (wire_u32(&r) != 4)
		return false;
	*page = wire_u32(&r);
	return !r.failed && wire_remaining(&r) == 0;
}

/* ---- set-up ---- */

static bool
backfill_init(backfill *b, db *d, const char *conninfo, const catalog_table *t,
			  state_migration *m, const backfill_options *o)
{
	char	   *qshadow = ident_qualified(m->schema, m->shadow);
	char	  **names = NULL;
	Oid		   *types = NULL;
	PGresult   *res = NULL;
	PGint8		decoding_bytes = 0;
	bool		ok = false;

	memset(b, 0, sizeof(*b));
	b->o = o;
	b->m = m;
	b->source = d;
	buf_init(&b->columns);
	buf_init(&b->lo);
	b->chunk_rows = o->chunk_rows > 0 ? o->chunk_rows : BACKFILL_FIRST_ROWS;
	b->qtable = ident_qualified(m->schema, m->table);
	b->target_us = BACKFILL_TARGET_US;
	b->estimated_rows = t->estimated_rows;
	b->nkeys = t->nkey_columns;
	b->key_types = xcalloc((size_t) b->nkeys, sizeof(Oid));
	b->key_columns = xcalloc((size_t) b->nkeys, sizeof(catalog_column *));
	b->key_names = t->key_columns;
	b->key_at = xcalloc((size_t) b->nkeys, sizeof(int));
	if (!catalog_published_columns(d, qshadow, &names, &types, &b->ncolumns))
		goto cleanup;
	for (int k = 0; k < b->nkeys; k++)
	{
		const catalog_column *c = catalog_find_column(t, t->key_columns[k]);

		b->key_types[k] = c->base_type;
		b->key_columns[k] = c;
		b->key_at[k] = -1;
	}
	for (int i = 0; i < b->ncolumns; i++)
	{
		if (i > 0)
			buf_append(&b->columns, ", ");
		ident_quote(&b->columns, names[i]);
		for (int k = 0; k < b->nkeys; k++)
			if (strcmp(names[i], t->key_columns[k]) == 0)
				b->key_at[k] = i;
	}
	for (int k = 0; k < b->nkeys; k++)
		if (b->key_at[k] < 0)
		{
			log_error("key column \"%s\" is not among the shadow's columns", t->key_columns[k]);
			goto cleanup;
		}
	if (!db_connect(&b->target, conninfo, "target"))
		goto cleanup;
	res = db_execf(d, "read logical_decoding_work_mem",
				   "SELECT pg_catalog.pg_size_bytes(pg_catalog.current_setting("
				   "'logical_decoding_work_mem'))");
	ok = res != NULL && db_getf(res, 0, "%int8", 0, &decoding_bytes);
	b->decoding_bytes = decoding_bytes;

cleanup:
	PQclear(res);
	for (int i = 0; names != NULL && i < b->ncolumns; i++)
		free(names[i]);
	free(names);
	free(types);
	free(qshadow);
	return ok;
}

static void
backfill_free(backfill *b)
{
	free(b->key_types);
	free(b->key_columns);
	free(b->key_at);
	buf_free(&b->columns);
	buf_free(&b->lo);
	free(b->qtable);
	db_close(&b->target);
}

/* Continue after the last recorded chunk. */
static bool
backfill_resume(backfill *b)
{
	state_chunk *chunks;
	int			n;

	if (!state_read_chunks(b->source, b->m, &chunks, &n))
		return false;
	for (int i = 0; i < n; i++)
		b->rows += chunks[i].rows;
	b->ord = n;
	if (n > 0)
		b->filenode = chunks[0].filenode;
	/* In physical order the open-ended chunk is recorded before the keys are reconciled. */
	b->copied = n > 0 && b->m->physical && chunks[n - 1].hi_key == NULL;
	if (n > 0 && b->m->physical && !b->copied &&
		!backfill_page_of(chunks[n - 1].hi_key, chunks[n - 1].hi_key_len, &b->lo_page))
	{
		log_error("chunk %d's upper page is malformed", n - 1);
		state_chunks_free(chunks, n);
		return false;
	}
	if (n > 0 && chunks[n - 1].hi_key != NULL)
	{
		buf_append_len(&b->lo, chunks[n - 1].hi_key, chunks[n - 1].hi_key_len);
		b->has_lo = true;
		log_info("resuming the copy after chunk %d (%" PRId64 " rows copied)", n - 1, b->rows);
	}
	else if (b->copied)
		log_info("every page is copied (%" PRId64 " rows): reconciling the keys changed meanwhile",
				 b->rows);
	state_chunks_free(chunks, n);
	return true;
}

/*
 * Connect for replication and create the migration's slot; with snapshot,
 * export the slot's snapshot into *snapshot (valid while s stays open).
 */
static bool
backfill_open_slot(stream *s, db *d, const char *conninfo, const state_migration *m,
				   lsn_t *consistent, char **snapshot)
{
	memset(s, 0, sizeof(*s));
	return stream_connect(s, conninfo) &&
		stream_create_fresh_slot(s, d, m->slot, snapshot != NULL, consistent, snapshot);
}

/*
 * Create the slot, then read the next xid: every transaction that committed
 * before the slot's consistent point has an xid below it.  Recorded with
 * the phase, so a crash before this commit leaves a slot the next run drops.
 */
static bool
backfill_create_slot(db *d, const char *conninfo, state_migration *m)
{
	stream		s;
	lsn_t		consistent = LSN_INVALID;
	PGresult   *res = NULL;
	bool		ok = false;

	if (!backfill_open_slot(&s, d, conninfo, m, &consistent, NULL))
		goto cleanup;
	res = db_execf(d, "read the next transaction id",
				   "SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::pg_catalog.text");
	if (res == NULL)
		goto cleanup;
	ok = db_exec(d, "start recording the slot", "BEGIN") &&
		state_set_next_xid(d, m, strtoull(PQgetvalue(res, 0, 0), NULL, 10)) &&
		state_set_phase(d, m, STATE_COPYING, consistent) &&
		db_exec(d, "record the slot", "COMMIT");
	if (!ok)
		db_exec(d, "roll back", "ROLLBACK");

cleanup:
	PQclear(res);
	stream_close(&s);
	return ok;
}

/* ---- one chunk ---- */

/*
 * Every transaction that committed before the slot's consistent point must
 * be visible to every chunk (later ones are in the stream).  A transaction
 * leaves the snapshot's in-progress list only after its commit record, so
 * the first snapshot is used only when no xid below the slot's next xid in
 * that list has already committed; later snapshots are taken after it.
 */
static bool
backfill_first_snapshot_ok(backfill *b, const char *snapshot, bool *usable)
{
	char		next[24];
	PGresult   *res;

	snprintf(next, sizeof(next), "%" PRIu64, b->m->next_xid);
	res = db_execf(b->source, "check the first chunk's snapshot",
				   "SELECT pg_catalog.string_agg(x::pg_catalog.text, ', ') "
				   "FROM pg_catalog.pg_snapshot_xip(%text::pg_catalog.pg_snapshot) x "
				   "WHERE x < %text::pg_catalog.xid8 AND pg_catalog.pg_xact_status(x) = 'committed'",
				   snapshot, next);
	if (res == NULL)
		return false;
	*usable = PQgetisnull(res, 0, 0);
	if (!*usable)
		log_info("the first chunk waits for transaction(s) %s, committed before the slot's "
				 "consistent point, to leave the snapshot", PQgetvalue(res, 0, 0));
	PQclear(res);
	return true;
}

/* Hold the chunk's lower bound in transaction-local settings for the COPY. */
static bool
backfill_set_bound(backfill *b)
{
	const uint8_t **values = xcalloc((size_t) b->nkeys, sizeof(uint8_t *));
	uint32_t   *lens = xcalloc((size_t) b->nkeys, sizeof(uint32_t));
	const char **params = xcalloc((size_t) b->nkeys, sizeof(char *));
	int		   *plens = xcalloc((size_t) b->nkeys, sizeof(int));
	int		   *formats = xcalloc((size_t) b->nkeys, sizeof(int));
	PGresult   *res = NULL;
	bool		ok = false;
	buf			sql;

	buf_init(&sql);
	if (!backfill_decode_key((const uint8_t *) b->lo.data, b->lo.len, b->nkeys, values, lens))
	{
		log_error("the recorded chunk key is malformed");
		goto cleanup;
	}
	buf_append(&sql, "SELECT true");
	for (int i = 0; i < b->nkeys; i++)
	{
		params[i] = (const char *) values[i];
		plens[i] = (int) lens[i];
		formats[i] = 1;
		buf_appendf(&sql, ", pg_catalog.set_config('pgrepart.lo_%d', $%d::pg_catalog.text, true)",
					i + 1, i + 1);
	}
	res = PQexecParams(b->source->conn, sql.data, b->nkeys, b->key_types, params, plens, formats, 0);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!ok)
		db_log_error(b->source->conn, "source", "set the chunk's key bound", res,
					 b->source->sqlstate);

cleanup:
	PQclear(res);
	buf_free(&sql);
	free(values);
	free(lens);
	free(params);
	free(plens);
	free(formats);
	return ok;
}

/*
 * In physical order: the chunk's pages, from lo_page, about chunk_rows
 * rows' worth, open-ended when they reach the table's end as it is now (a
 * row the snapshot sees is on a page that was there when it was taken);
 * held in transaction-local settings for the COPY, like a key's bound.
 */
static bool
backfill_set_pages(backfill *b, uint32_t *hi_page, bool *open_ended)
{
	PGresult   *res;
	PGint8		nblocks = 0;
	PGfloat8	per_page = 0;
	int64_t		pages;
	char		lo[32], hi[32];
	bool		ok;

	res = db_execf(b->source, "measure the table",
				   "SELECT (pg_catalog.pg_relation_size(c.oid) / "
				   "    pg_catalog.current_setting('block_size')::pg_catalog.int8)::pg_catalog.int8, "
				   "  (CASE WHEN c.relpages > 0 AND c.reltuples > 0 "
				   "        THEN c.reltuples / c.relpages ELSE 0 END)::pg_catalog.float8 "
				   "FROM pg_catalog.pg_class c WHERE c.oid = %text::pg_catalog.regclass", b->qtable);
	if (res == NULL || !db_getf(res, 0, "%int8 %float8", 0, &nblocks, 1, &per_page))
	{
		PQclear(res);
		return false;
	}
	PQclear(res);
	if (b->rows_per_page <= 0)
		b->rows_per_page = per_page > 0 ? per_page : 50;
	pages = (int64_t) ((double) b->chunk_rows / b->rows_per_page) + 1;
	if (b->chunk_pages > 0)
		pages = pages > 2 * b->chunk_pages ? 2 * b->chunk_pages :
			pages < b->chunk_pages / 2 ? b->chunk_pages / 2 : pages;
	pages = pages < 1 ? 1 : pages;
	*open_ended = (int64_t) b->lo_page + pages >= nblocks;
	*hi_page = *open_ended ? 0 : (uint32_t) (b->lo_page + pages);
	snprintf(lo, sizeof(lo), "(%" PRIu32 ",0)", b->lo_page);
	snprintf(hi, sizeof(hi), "(%" PRIu32 ",0)", *hi_page);
	res = db_execf(b->source, "set the chunk's pages",
				   "SELECT pg_catalog.set_config('pgrepart.lo', %text, true), "
				   "  pg_catalog.set_config('pgrepart.hi', %text, true)", lo, hi);
	ok = res != NULL;
	PQclear(res);
	return ok;
}

/*
 * In physical order, after the chunk's COPY (whose lock keeps the table's
 * file as it is until the chunk ends): whether it read the file the chunks
 * before it read.  VACUUM FULL, CLUSTER and the like write every row anew
 * at other places, so the pages copied before no longer say which rows the
 * rest hold.
 */
static bool
backfill_same_file(backfill *b, uint32_t *filenode, bool *same)
{
	PGresult   *res = db_execf(b->source, "read the table's file",
							   "SELECT pg_catalog.pg_relation_filenode(%text::pg_catalog.regclass)"
							   "::pg_catalog.int8", b->qtable);
	PGint8		node = 0;

	if (res == NULL || !db_getf(res, 0, "%int8", 0, &node))
	{
		PQclear(res);
		return false;
	}
	PQclear(res);
	*filenode = (uint32_t) node;
	*same = b->filenode == 0 || b->filenode == *filenode;
	return true;
}

static void
backfill_copy_sql(const backfill *b, bool open_ended, buf *sql)
{
	if (b->m->physical)
	{
		/* A TID range scan: the pages from lo up to hi, or to the end. */
		buf_appendf(sql, "COPY (SELECT %s FROM ONLY %s WHERE ctid >= "
					"pg_catalog.current_setting('pgrepart.lo')::pg_catalog.tid", b->columns.data,
					b->qtable);
		if (!open_ended)
			buf_append(sql, " AND ctid < pg_catalog.current_setting('pgrepart.hi')::pg_catalog.tid");
		buf_append(sql, ") TO STDOUT (FORMAT binary)");
		return;
	}
	buf_appendf(sql, "COPY (SELECT %s FROM ", b->columns.data);
	ident_quote_qualified(sql, b->m->schema, b->m->table);
	if (b->has_lo)
	{
		buf_append(sql, " WHERE (");
		for (int i = 0; i < b->nkeys; i++)
		{
			if (i > 0)
				buf_append(sql, ", ");
			ident_quote(sql, b->key_names[i]);
		}
		/* In the column's collation, as ORDER BY sorts. */
		buf_append(sql, ") > (");
		for (int i = 0; i < b->nkeys; i++)
		{
			buf_appendf(sql, "%spg_catalog.current_setting('pgrepart.lo_%d')::%s",
						i > 0 ? ", " : "", i + 1, b->key_columns[i]->type);
			catalog_append_collate(sql, b->key_columns[i]);
		}
		buf_append(sql, ")");
	}
	buf_append(sql, " ORDER BY ");
	for (int i = 0; i < b->nkeys; i++)
	{
		if (i > 0)
			buf_append(sql, ", ");
		ident_quote(sql, b->key_names[i]);
	}
	buf_appendf(sql, " LIMIT %" PRId64 ") TO STDOUT (FORMAT binary)", b->chunk_rows);
}

/* The key of the last row a chunk copied (its CopyData message), as a hi_key. */
static bool
backfill_last_key(const backfill *b, const char *row, int len, bool with_header, buf *out)
{
	const uint8_t **fields = xcalloc((size_t) b->ncolumns, sizeof(uint8_t *));
	uint32_t   *lens = xcalloc((size_t) b->ncolumns, sizeof(uint32_t));
	const uint8_t **values = xcalloc((size_t) b->nkeys, sizeof(uint8_t *));
	uint32_t   *vlens = xcalloc((size_t) b->nkeys, sizeof(uint32_t));
	wire_reader r;
	bool		ok;

	wire_reader_init(&r, row, (size_t) len);
	if (with_header)
		copybin_read_header(&r);
	ok = copybin_read_row(&r, b->ncolumns, fields, lens) == b->ncolumns;
	for (int k = 0; ok && k < b->nkeys; k++)
	{
		values[k] = fields[b->key_at[k]];
		vlens[k] = lens[b->key_at[k]];
		ok = values[k] != NULL;
	}
	if (ok)
		backfill_encode_key(out, b->nkeys, values, vlens);
	else
		log_error("could not read the key of a chunk's last row");
	free(fields);
	free(lens);
	free(values);
	free(vlens);
	return ok;
}

/* Drain whatever results are left on a connection. */
static void
backfill_drain(db *d)
{
	PGresult   *res;

	while ((res = PQgetResult(d->conn)) != NULL)
	{
		if (PQresultStatus(res) == PGRES_COPY_OUT)
		{
			char	   *data;

			while (PQgetCopyData(d->conn, &data, 0) > 0)
				PQfreemem(data);
		}
		PQclear(res);
	}
}

typedef enum chunk_outcome
{
	CHUNK_DONE,
	CHUNK_RETRY,				/* try again: a snapshot to retake, or partitions added */
	CHUNK_FAILED
} chunk_outcome;

/*
 * Stream the source's COPY into the shadow's, unchanged.  *no_partition
 * when the target refused a row no partition takes (SQLSTATE 23514).
 */
static bool
backfill_pipe(backfill *b, bool open_ended, int64_t *rows, buf *last_key, bool *no_partition)
{
	char	   *last = NULL;
	int			last_len = 0;
	bool		last_first = false;
	bool		first = true;
	bool		ok = false;
	PGresult   *res;
	char	   *data;
	int			n;
	buf			sql;

	*rows = 0;
	*no_partition = false;
	buf_init(&sql);
	backfill_copy_sql(b, open_ended, &sql);
	res = PQexec(b->source->conn, sql.data);
	if (PQresultStatus(res) != PGRES_COPY_OUT)
	{
		db_log_error(b->source->conn, "source", "read a chunk", res, b->source->sqlstate);
		goto cleanup;
	}
	PQclear(res);
	buf_reset(&sql);
	buf_append(&sql, "COPY ");
	ident_quote_qualified(&sql, b->m->schema, b->m->shadow);
	buf_appendf(&sql, " (%s) FROM STDIN (FORMAT binary)", b->columns.data);
	res = PQexec(b->target.conn, sql.data);
	if (PQresultStatus(res) != PGRES_COPY_IN)
	{
		db_log_error(b->target.conn, "target", "load a chunk", res, b->target.sqlstate);
		goto cleanup;
	}
	PQclear(res);
	res = NULL;

	/*
	 * One CopyData message per row; the header rides with the first and the
	 * trailer comes alone.  The last row's message is kept for its key.
	 */
	while ((n = PQgetCopyData(b->source->conn, &data, 0)) > 0)
	{
		bool		trailer = !first && n == 2 && (uint8_t) data[0] == 0xff &&
			(uint8_t) data[1] == 0xff;

		b->bytes += n;
		if (PQputCopyData(b->target.conn, data, n) != 1)
		{
			PQfreemem(data);
			db_log_error(b->target.conn, "target", "load a chunk", NULL, b->target.sqlstate);
			goto cleanup;
		}
		if (trailer || (first && n <= 21))
		{
			first = false;
			PQfreemem(data);
			continue;
		}
		(*rows)++;
		if (last != NULL)
			PQfreemem(last);
		last = data;
		last_len = n;
		last_first = first;
		first = false;
	}
	res = PQgetResult(b->source->conn);
	if (n != -1 || PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		db_log_error(b->source->conn, "source", "read a chunk", res, b->source->sqlstate);
		PQputCopyEnd(b->target.conn, "the source's COPY failed");
		goto cleanup;
	}
	PQclear(res);
	res = NULL;
	if (PQputCopyEnd(b->target.conn, NULL) != 1)
	{
		db_log_error(b->target.conn, "target", "load a chunk", NULL, b->target.sqlstate);
		goto cleanup;
	}
	res = PQgetResult(b->target.conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		if (state != NULL && strcmp(state, ERRCODE_CHECK_VIOLATION) == 0 && b->refusals < BACKFILL_MAX_REFUSALS)
			*no_partition = true;
		else
			db_log_error(b->target.conn, "target", "load a chunk", res, b->target.sqlstate);
		goto cleanup;
	}
	ok = b->m->physical || *rows < b->chunk_rows ||
		backfill_last_key(b, last, last_len, last_first, last_key);

cleanup:
	PQclear(res);
	backfill_drain(b->source);
	backfill_drain(&b->target);
	if (last != NULL)
		PQfreemem(last);
	buf_free(&sql);
	return ok;
}

static bool backfill_restart(backfill *b, const char *why);

/* Copy one chunk in a source snapshot of its own, recorded with its rows. */
static chunk_outcome
backfill_chunk(backfill *b, bool *last)
{
	state_chunk c = {0};
	PGresult   *res = NULL;
	chunk_outcome outcome = CHUNK_FAILED;
	bool		usable = true, no_partition = false, open_ended = false, same_file = true;
	uint32_t	hi_page = 0;
	int64_t		started = clock_monotonic_us();
	int64_t		bytes_before = b->bytes;
	buf			hi;

	buf_init(&hi);
	if (!db_exec(b->source, "start a chunk",
				 "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
		goto cleanup;
	/* The snapshot is taken by this statement; the WAL position is read after it. */
	res = db_execf(b->source, "take the chunk's snapshot",
				   "SELECT pg_catalog.pg_current_snapshot()::pg_catalog.text, "
				   "  pg_catalog.pg_current_wal_insert_lsn()::pg_catalog.text");
	if (res == NULL)
		goto rollback;
	c.snapshot = xstrdup(PQgetvalue(res, 0, 0));
	lsn_parse(PQgetvalue(res, 0, 1), &c.lsn);
	if (b->ord == 0 && !backfill_first_snapshot_ok(b, c.snapshot, &usable))
		goto rollback;
	if (!usable)
	{
		outcome = CHUNK_RETRY;
		usleep(100000);
		goto rollback;
	}
	if ((b->m->physical && !backfill_set_pages(b, &hi_page, &open_ended)) ||
		(!b->m->physical && b->has_lo && !backfill_set_bound(b)) ||
		!db_exec(&b->target, "start loading a chunk", "BEGIN"))
		goto rollback;
	if (!backfill_pipe(b, open_ended, &c.rows, &hi, &no_partition))
	{
		if (no_partition)
		{
			int			created = 0;

			/* A row beyond the partitions: add them (the shadow is ours) and take the chunk again. */
			db_exec(&b->target, "roll back the chunk", "ROLLBACK");
			if (partition_cover_range(&b->target, b->m->schema, b->m->table, b->m->shadow,
									  b->m->partition_column, b->m->interval, &created))
				outcome = CHUNK_RETRY;
			b->refusals = created > 0 ? 0 : b->refusals + 1;
		}
		goto rollback;
	}
	if (b->m->physical)
	{
		if (!backfill_same_file(b, &c.filenode, &same_file))
			goto rollback;
		if (!same_file)
			goto rollback;
		*last = open_ended;
		buf_reset(&hi);
		if (!open_ended)
			backfill_encode_page(&hi, hi_page);
	}
	else
		*last = c.rows < b->chunk_rows;
	c.ord = b->ord;
	c.hi_key = *last ? NULL : (uint8_t *) hi.data;
	c.hi_key_len = *last ? 0 : hi.len;
	/* In physical order the keys are reconciled before the copy is done (backfill_copy). */
	if (!state_add_chunk(&b->target, b->m, &c) ||
		(*last && !b->m->physical && !state_set_phase(&b->target, b->m, STATE_COPIED, LSN_INVALID)) ||
		!db_exec(&b->target, "commit the chunk", "COMMIT"))
		goto rollback;
	db_exec(b->source, "end the chunk's snapshot", "COMMIT");
	fault_point("copy");
	b->ord++;
	b->rows += c.rows;
	buf_reset(&b->lo);
	buf_append_len(&b->lo, hi.data, hi.len);
	b->has_lo = true;
	if (b->m->physical)
	{
		if (!open_ended && hi_page > b->lo_page)
		{
			b->chunk_pages = hi_page - b->lo_page;
			if (c.rows > 0)
				b->rows_per_page = (double) c.rows / (double) b->chunk_pages;
		}
		b->lo_page = hi_page;
		b->filenode = c.filenode;
	}
	if (b->o->chunk_rows == 0)
	{
		/* Aim at about a second a chunk, changing by at most half or double. */
		int64_t		took = clock_monotonic_us() - started;
		int64_t		next = took > 0 ? b->chunk_rows * b->target_us / took : b->chunk_rows * 2;

		next = next > b->chunk_rows * 2 ? b->chunk_rows * 2 : next;
		next = next < b->chunk_rows / 2 ? b->chunk_rows / 2 : next;
		/*
		 * And at half the walsender's logical_decoding_work_mem: it decodes
		 * the chunk's inserts into the shadow too, and spills to disk a
		 * transaction bigger than that (810 MB written and read back for
		 * nothing on the seed's 1,000,000 rows in one-second chunks).  A
		 * decoded row takes its bytes and about 160 more (the change and
		 * tuple headers).
		 */
		if (c.rows > 0 && b->bytes > bytes_before && b->decoding_bytes > 0)
		{
			int64_t		per_row = (b->bytes - bytes_before) / c.rows + 160;

			next = next > b->decoding_bytes / 2 / per_row ? b->decoding_bytes / 2 / per_row : next;
		}
		b->chunk_rows = next < BACKFILL_MIN_ROWS ? BACKFILL_MIN_ROWS :
			next > BACKFILL_MAX_ROWS ? BACKFILL_MAX_ROWS : next;
	}
	b->refusals = 0;
	outcome = CHUNK_DONE;
	goto cleanup;

rollback:
	db_rollback(&b->target, "roll back the chunk");
	db_exec(b->source, "end the chunk's snapshot", "ROLLBACK");
	if (!same_file)
		outcome = backfill_restart(b, "was rewritten (VACUUM FULL, CLUSTER or the like) during "
								   "the copy") ? CHUNK_RETRY : CHUNK_FAILED;
cleanup:
	PQclear(res);
	free(c.snapshot);
	buf_free(&hi);
	return outcome;
}

bool
backfill_reset(db *d, state_migration *m, const char *why)
{
	PGresult   *res;
	bool		ok;
	buf			sql;

	log_info("\"%s.%s\" %s: starting the copy again", m->schema, m->table, why);
	res = db_execf(d, "read the next transaction id",
				   "SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::pg_catalog.text");
	if (res == NULL)
		return false;
	buf_init(&sql);
	buf_append(&sql, "TRUNCATE ");
	ident_quote_qualified(&sql, m->schema, m->shadow);
	ok = db_exec(d, "start the restart", "BEGIN") &&
		db_exec(d, "empty the shadow", sql.data) &&
		state_set_next_xid(d, m, strtoull(PQgetvalue(res, 0, 0), NULL, 10)) &&
		state_drop_chunks(d, m) &&
		state_set_phase(d, m, STATE_COPYING, LSN_INVALID) &&
		db_exec(d, "commit the restart", "COMMIT");
	if (!ok)
		db_exec(d, "roll back the restart", "ROLLBACK");
	PQclear(res);
	buf_free(&sql);
	return ok;
}

static bool
backfill_restart(backfill *b, const char *why)
{
	b->ord = 0;
	b->rows = 0;
	b->has_lo = false;
	b->lo_page = 0;
	b->filenode = 0;
	buf_reset(&b->lo);
	return backfill_reset(&b->target, b->m, why);
}

/*
 * Rows, MB/s, ETA, chunk size, spool and its lag: redrawn on a terminal
 * twice a second; otherwise logged (and a JSON event on stdout with --json)
 * every progress_seconds.
 */
static void
backfill_progress(backfill *b, const spool *sp, bool final)
{
	int64_t		now = clock_monotonic_us();
	double		secs = (double) (now - b->started_us) / 1e6;
	double		rate = secs > 0 ? (double) (b->rows - b->base_rows) / secs : 0.0;
	double		mbs = secs > 0 ? (double) b->bytes / 1e6 / secs : 0.0;
	double		left = b->estimated_rows > b->rows && rate > 0 ?
		(b->estimated_rows - (double) b->rows) / rate : 0.0;

	const char *why = throttle_why(b->o->throttle);

	if (b->o->terminal && (final || now >= b->next_line_us))
	{
		fprintf(stderr, "\rcopy: %" PRId64 " rows", b->rows);
		if (why != NULL && !final)
			fprintf(stderr, ", throttled: %s", why);
		if (b->estimated_rows > 0)
			fprintf(stderr, " (~%.0f%%)", b->rows < b->estimated_rows ?
					100.0 * (double) b->rows / b->estimated_rows : 100.0);
		fprintf(stderr, ", %.1f MB/s, ETA %.0f s, chunk %" PRId64 " rows, spool %" PRId64
				" txns %.1f MB, spool lag %.1f MB   %s", mbs, final ? 0.0 : left, b->chunk_rows,
				spool_transactions(sp), (double) spool_bytes(sp) / 1e6,
				(double) spool_lag_bytes(sp) / 1e6, final ? "\n" : "");
		b->next_line_us = now + 500000;
		b->line_shown = !final;
	}
	if (!final && now < b->next_log_us)
		return;
	b->next_log_us = now + (int64_t) b->o->progress_seconds * 1000000;
	if (!b->o->terminal)
		log_info("copied %" PRId64 " rows in %d chunks (%.0f rows/s, %.1f MB/s, chunk size %"
				 PRId64 "), spool %" PRId64 " transactions%s%s", b->rows, b->ord, rate, mbs,
				 b->chunk_rows, spool_transactions(sp), why != NULL && !final ? "; throttled: " : "",
				 why != NULL && !final ? why : "");
	if (b->o->json)
	{
		json_writer w;
		buf			out;

		buf_init(&out);
		json_init(&w, &out);
		json_begin_object(&w);
		json_kv_string(&w, "event", final ? "copied" : "copy_progress");
		json_kv_int(&w, "rows", b->rows);
		json_kv_int(&w, "chunks", b->ord);
		json_kv_double(&w, "rows_per_second", rate);
		json_kv_double(&w, "mb_per_second", mbs);
		json_kv_double(&w, "eta_seconds", final ? 0.0 : left);
		json_kv_int(&w, "chunk_rows", b->chunk_rows);
		json_kv_int(&w, "spool_transactions", spool_transactions(sp));
		json_kv_int(&w, "spool_bytes", spool_bytes(sp));
		json_kv_int(&w, "spool_lag_bytes", spool_lag_bytes(sp));
		json_kv_string(&w, "throttled", final ? NULL : why);
		json_end_object(&w);
		printf("%s\n", out.data);
		fflush(stdout);
		buf_free(&out);
	}
}

/* While the copy waits, the spooler reads the stream, a tenth of a second at a time. */
typedef struct backfill_idle
{
	spool	   *sp;
	const backfill_options *o;
	bool		truncated;
} backfill_idle;

static bool
backfill_pump_for(void *arg, int ms)
{
	backfill_idle *idle = arg;
	int64_t		until = clock_monotonic_us() + (int64_t) ms * 1000;
	int64_t		left;

	while ((left = until - clock_monotonic_us()) > 1000 && !(idle->o->stop != NULL && *idle->o->stop))
		if (!spool_pump(idle->sp, left > 100000 ? 100 : (int) (left / 1000), true, &idle->truncated))
			return false;
	return true;
}

backfill_result
backfill_copy(db *d, const char *conninfo, const catalog_table *t, state_migration *m,
			  const backfill_options *o, spool **sp)
{
	backfill	b;
	backfill_result result = BACKFILL_FAILED;
	int64_t		chunk_started, chunk_rows_before;
	int			rate = 0;
	bool		last = false;
	bool		truncated = false;
	bool		stopped = false;
	int64_t		reconciled_changes = 0, reconciled_rows = 0;

	if (m->phase == STATE_PREPARED && !backfill_create_slot(d, conninfo, m))
		return BACKFILL_FAILED;
	if (*sp == NULL && (*sp = spool_open(conninfo, m)) == NULL)
		return BACKFILL_FAILED;
	if (!backfill_init(&b, d, conninfo, t, m, o) || !backfill_resume(&b))
		goto cleanup;
	/* Rows may lie beyond the planned partitions by now. */
	if (!partition_cover_range(&b.target, m->schema, m->table, m->shadow, m->partition_column,
							   m->interval, NULL))
		goto cleanup;
	if (o->rate >= 0 && !state_set_rate(d, m, o->rate))
		goto cleanup;
	b.started_us = clock_monotonic_us();
	b.base_rows = b.rows;
	b.next_log_us = b.started_us + (int64_t) o->progress_seconds * 1000000;
	log_info("copying \"%s.%s\" in chunks %s, each under its own snapshot", m->schema, m->table,
			 m->physical ? "of heap pages" : "of the key");
	last = b.copied;
	/* In physical order, a TRUNCATE seen as the keys are reconciled starts the copy over too. */
	for (;;)
	{
		while (!last)
		{
			chunk_outcome outcome;

			if (o->stop != NULL && *o->stop)
			{
				result = BACKFILL_STOPPED;
				goto cleanup;
			}
			/* Between chunks the stream goes to the spool, so the slot holds little WAL. */
			if (!spool_pump(*sp, BACKFILL_PUMP_MS, false, &truncated))
				goto cleanup;
			/* The source's health first: a wait holds no snapshot (throttle.h). */
			if (o->throttle != NULL)
			{
				backfill_idle idle = {*sp, o, false};
				bool		waited;

				if (!throttle_wait(o->throttle, backfill_pump_for, &idle, &waited))
					goto cleanup;
				truncated = truncated || idle.truncated;
				b.target_us = waited ? b.target_us / 2 : b.target_us + b.target_us / 10;
				b.target_us = b.target_us < BACKFILL_THROTTLED_US ? BACKFILL_THROTTLED_US :
					b.target_us > BACKFILL_TARGET_US ? BACKFILL_TARGET_US : b.target_us;
				if (o->stop != NULL && *o->stop)
					continue;
			}
			if (truncated && !backfill_restart(&b, "was truncated during the copy"))
				goto cleanup;
			truncated = false;
			chunk_started = clock_monotonic_us();
			chunk_rows_before = b.rows;
			if (!state_read_rate(d, m, &rate))
				goto cleanup;
			/* Under a cap, an adapting chunk is never bigger than a second's worth. */
			if (o->chunk_rows == 0 && rate > 0 && b.chunk_rows > rate)
				b.chunk_rows = rate > BACKFILL_MIN_ROWS ? rate : BACKFILL_MIN_ROWS;
			outcome = backfill_chunk(&b, &last);
			if (outcome == CHUNK_FAILED)
				goto cleanup;
			/*
			 * The time the cap leaves between chunks goes to the spool, a tenth
			 * of a second at a time so that a stop is not kept waiting.
			 */
			if (rate > 0 && !last)
			{
				int64_t		due = chunk_started + (b.rows - chunk_rows_before) * 1000000 / rate;
				backfill_idle idle = {*sp, o, false};

				if (due > clock_monotonic_us() &&
					!backfill_pump_for(&idle, (int) ((due - clock_monotonic_us()) / 1000)))
					goto cleanup;
				truncated = idle.truncated;
			}
			backfill_progress(&b, *sp, last);
		}
		if (!m->physical)
			break;
		if (!reconcile_prepare(&b.target, conninfo, t, m, *sp, o->stop, &stopped, &truncated,
							   &reconciled_changes, &reconciled_rows))
		{
			result = stopped ? BACKFILL_STOPPED : BACKFILL_FAILED;
			goto cleanup;
		}
		if (!truncated)
			break;
		if (!backfill_restart(&b, "was truncated during the copy"))
			goto cleanup;
		truncated = false;
		last = false;
	}
	if (m->physical && !state_set_phase(d, m, STATE_COPIED, LSN_INVALID))
		goto cleanup;
	if (o->reconciled_changes != NULL)
		*o->reconciled_changes += reconciled_changes;
	if (o->reconciled_rows != NULL)
		*o->reconciled_rows += reconciled_rows;
	result = BACKFILL_DONE;

cleanup:
	if (o->rows_copied != NULL)
		*o->rows_copied += b.rows - b.base_rows;
	if (o->bytes_copied != NULL)
		*o->bytes_copied += b.bytes;
	if (o->copy_seconds != NULL && b.started_us > 0)
		*o->copy_seconds += (double) (clock_monotonic_us() - b.started_us) / 1e6;
	if (b.line_shown)
		fputc('\n', stderr);
	backfill_free(&b);
	return result;
}

/* ---- the copy under one snapshot ---- */

/* "a, b, c": the shadow's columns the copy fills (not generated ones). */
static bool
backfill_snapshot_columns(db *d, const state_migration *m, buf *out)
{
	char	   *qshadow = ident_qualified(m->schema, m->shadow);
	char	  **names = NULL;
	Oid		   *types = NULL;
	int			n = 0;
	bool		ok = catalog_published_columns(d, qshadow, &names, &types, &n);

	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			buf_append(out, ", ");
		ident_quote(out, names[i]);
		free(names[i]);
	}
	free(names);
	free(types);
	free(qshadow);
	return ok;
}

/*
 * Create the slot and copy every row under its exported snapshot, so the
 * copy holds exactly the transactions committed before the slot's
 * consistent point and the stream exactly those after it.
 */
bool
backfill_copy_snapshot(db *d, const char *conninfo, state_migration *m)
{
	stream		s;
	lsn_t		consistent = LSN_INVALID;
	char	   *snapshot = NULL;
	bool		ok = false;
	buf			sql, columns;
	char		lsn[LSN_TEXT_SIZE];

	buf_init(&sql);
	buf_init(&columns);
	if (!backfill_open_slot(&s, d, conninfo, m, &consistent, &snapshot) ||
		!backfill_snapshot_columns(d, m, &columns))
		goto cleanup;

	buf_append(&sql, "SET TRANSACTION SNAPSHOT ");
	ident_literal(&sql, snapshot);
	if (!db_exec(d, "start the copy", "BEGIN ISOLATION LEVEL REPEATABLE READ") ||
		!db_exec(d, "take the slot's snapshot", sql.data))
		goto rollback;
	buf_reset(&sql);
	buf_append(&sql, "TRUNCATE ");
	ident_quote_qualified(&sql, m->schema, m->shadow);
	if (!db_exec(d, "empty the shadow", sql.data))
		goto rollback;
	/*
	 * Rows may have moved beyond the planned partitions since the plan read
	 * the column's range: cover the range as this snapshot sees it.
	 */
	if (!partition_cover_range(d, m->schema, m->table, m->shadow, m->partition_column,
							   m->interval, NULL))
		goto rollback;
	buf_reset(&sql);
	buf_append(&sql, "INSERT INTO ");
	ident_quote_qualified(&sql, m->schema, m->shadow);
	buf_appendf(&sql, " (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM ", columns.data, columns.data);
	ident_quote_qualified(&sql, m->schema, m->table);
	log_info("copying \"%s.%s\" at %s", m->schema, m->table, lsn_format(consistent, lsn));
	if (!db_exec(d, "copy the rows into the shadow", sql.data) ||
		!state_set_phase(d, m, STATE_COPIED, consistent) ||
		!db_exec(d, "commit the copy", "COMMIT"))
		goto rollback;
	ok = true;
	goto cleanup;

rollback:
	db_exec(d, "roll back the copy", "ROLLBACK");
cleanup:
	free(snapshot);
	stream_close(&s);
	buf_free(&sql);
	buf_free(&columns);
	return ok;
}
