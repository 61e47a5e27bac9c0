/*
 * verify.c: compare two tables by checksums; see verify.h.
 *
 * Key bounds cannot be parameters of a COPY statement, so each connection
 * holds the current bounds as session settings (pgrepart.lo_N, pgrepart.hi_N)
 * set from binary parameters, and the COPY's WHERE clause reads them back
 * with current_setting(): a stable expression, which the planner can still
 * use as an index condition.  No value is ever written into the SQL text.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <xxhash.h>

#include "pgrepart/buf.h"
#include "pgrepart/catalog.h"
#include "pgrepart/checksum.h"
#include "pgrepart/copybin.h"
#include "pgrepart/db.h"
#include "pgrepart/ident.h"
#include "pgrepart/json.h"
#include "pgrepart/log.h"
#include "pgrepart/lsn.h"
#include "pgrepart/mem.h"
#include "pgrepart/verify.h"
#include "pgrepart/wire.h"

/* Ranges with at most this many source rows are compared row by row. */
#define VERIFY_LEAF_ROWS 2048
/* Objects are user-defined from here on (FirstNormalObjectId). */
#define VERIFY_FIRST_USER_OID 16384

enum
{
	SOURCE = 0,
	TARGET = 1
};

/* A column compared: the source's name and type (the target's match). */
typedef struct verify_column
{
	const char *name;
	const char *type;			/* format_type(), for casts */
	Oid			base_type;
	bool		as_text;		/* compare its text form (see verify_match_columns) */
} verify_column;

/* One end of a key range: the key's values in binary, or unset (unbounded). */
typedef struct verify_bound
{
	bool		set;
	char	  **values;
	int		   *lens;
} verify_bound;

typedef struct verify_range
{
	verify_bound lo;			/* exclusive */
	verify_bound hi;			/* inclusive */
	int64_t		source_rows;	/* rows the source has in it, as last counted */
} verify_range;

/* What the COPY in flight on a connection does with its rows. */
typedef enum verify_mode
{
	MODE_HASH,					/* hash the bytes; keep the last row */
	MODE_ADD_SOURCE,			/* row by row into the row set */
	MODE_MATCH_TARGET
} verify_mode;

typedef struct verify_side
{
	db			d;
	catalog_table *t;
	char	   *qname;			/* quoted, qualified */

	/* The COPY in flight. */
	bool		active;
	bool		first;			/* the next message starts with the header */
	verify_mode mode;
	XXH3_state_t *hash;
	int64_t		rows;
	char	   *last;			/* the last row's message (PQgetCopyData's), or NULL */
	int			last_len;
	bool		last_is_first;
} verify_side;

typedef struct verify_listed
{
	checksum_kind kind;
	char	  **key;
	char	  **columns;
	int			ncolumns;
} verify_listed;

typedef struct verify_run
{
	const verify_options *o;
	verify_side side[2];
	verify_column *keys;
	int			nkeys;
	verify_column *cols;
	int			ncols;
	char	  **schema_diffs;
	int			nschema_diffs;
	checksum_rowset *rowset;
	bool		row_error;		/* a row the row set refused */

	int64_t		rows[2];
	int64_t		bytes;
	int64_t		chunks;
	int64_t		mismatched_chunks;
	int64_t		counts[CHECKSUM_DUPLICATE_TARGET + 1];
	verify_listed *listed;
	int			nlisted;
	int64_t		started_us;
	int64_t		next_progress_us;
	bool		progress_shown;
} verify_run;

static const char *const verify_side_label[] = {"source", "target"};

static const char *const verify_kind_name[] = {
	"missing", "extra", "different", "duplicate_in_source", "duplicate_in_target"
};

/* ---- key bounds ---- */

static void
verify_bound_clear(verify_bound *b, int nkeys)
{
	if (b->values != NULL)
		for (int i = 0; i < nkeys; i++)
			free(b->values[i]);
	free(b->values);
	free(b->lens);
	memset(b, 0, sizeof(*b));
}

/* Set b from binary key values (copied). */
static void
verify_bound_set(verify_bound *b, int nkeys, const uint8_t *const *values, const uint32_t *lens)
{
	verify_bound_clear(b, nkeys);
	b->set = true;
	b->values = xcalloc((size_t) nkeys, sizeof(char *));
	b->lens = xcalloc((size_t) nkeys, sizeof(int));
	for (int i = 0; i < nkeys; i++)
	{
		b->values[i] = xmalloc(lens[i] + 1);
		memcpy(b->values[i], values[i], lens[i]);
		b->lens[i] = (int) lens[i];
	}
}

static void
verify_bound_copy(verify_bound *dst, const verify_bound *src, int nkeys)
{
	verify_bound_clear(dst, nkeys);
	if (src->set)
		verify_bound_set(dst, nkeys, (const uint8_t *const *) src->values,
						 (const uint32_t *) src->lens);
}

static void
verify_range_clear(verify_range *r, int nkeys)
{
	verify_bound_clear(&r->lo, nkeys);
	verify_bound_clear(&r->hi, nkeys);
}

/* ---- SQL ---- */

/* "(k1, k2)" */
static void
verify_append_keys(const verify_run *v, buf *sql)
{
	buf_append_char(sql, '(');
	for (int i = 0; i < v->nkeys; i++)
	{
		if (i > 0)
			buf_append(sql, ", ");
		ident_quote(sql, v->keys[i].name);
	}
	buf_append_char(sql, ')');
}

/* "(current_setting('pgrepart.lo_1')::t1, ...)" */
static void
verify_append_setting(const verify_run *v, buf *sql, const char *which)
{
	buf_append_char(sql, '(');
	for (int i = 0; i < v->nkeys; i++)
		buf_appendf(sql, "%spg_catalog.current_setting('pgrepart.%s_%d')::%s", i > 0 ? ", " : "",
					which, i + 1, v->keys[i].type);
	buf_append_char(sql, ')');
}

/* " FROM t WHERE <range> ORDER BY <keys>" */
static void
verify_append_from(const verify_run *v, int side, const verify_range *r, buf *sql)
{
	buf_appendf(sql, " FROM %s WHERE true", v->side[side].qname);
	if (r->lo.set)
	{
		buf_append(sql, " AND ");
		verify_append_keys(v, sql);
		buf_append(sql, " > ");
		verify_append_setting(v, sql, "lo");
	}
	if (r->hi.set)
	{
		buf_append(sql, " AND ");
		verify_append_keys(v, sql);
		buf_append(sql, " <= ");
		verify_append_setting(v, sql, "hi");
	}
	if (v->o->where != NULL)
		buf_appendf(sql, " AND (%s)", v->o->where);
	buf_append(sql, " ORDER BY ");
	for (int i = 0; i < v->nkeys; i++)
	{
		if (i > 0)
			buf_append(sql, ", ");
		ident_quote(sql, v->keys[i].name);
	}
}

/*
 * The COPY of a range: keys then compared columns; for a row-by-row
 * comparison the keys as text, so they can be shown.
 */
static void
verify_copy_sql(const verify_run *v, int side, const verify_range *r, bool keys_as_text,
				int64_t limit, buf *sql)
{
	buf_append(sql, "COPY (SELECT ");
	for (int i = 0; i < v->nkeys; i++)
	{
		if (i > 0)
			buf_append(sql, ", ");
		ident_quote(sql, v->keys[i].name);
		if (keys_as_text)
			buf_append(sql, "::pg_catalog.text");
	}
	for (int i = 0; i < v->ncols; i++)
	{
		buf_append(sql, ", ");
		ident_quote(sql, v->cols[i].name);
		if (v->cols[i].as_text)
			buf_append(sql, "::pg_catalog.text");
	}
	verify_append_from(v, side, r, sql);
	if (limit > 0)
		buf_appendf(sql, " LIMIT %" PRId64, limit);
	buf_append(sql, ") TO STDOUT (FORMAT binary)");
}

/* Hold r's bounds in the connection's session settings for the next statement. */
static bool
verify_set_bounds(verify_run *v, int side, const verify_range *r)
{
	const verify_bound *ends[2] = {&r->lo, &r->hi};
	const char *names[2] = {"lo", "hi"};
	int			n = 0;
	Oid		   *types = xcalloc((size_t) v->nkeys * 2, sizeof(Oid));
	const char **values = xcalloc((size_t) v->nkeys * 2, sizeof(char *));
	int		   *lens = xcalloc((size_t) v->nkeys * 2, sizeof(int));
	int		   *formats = xcalloc((size_t) v->nkeys * 2, sizeof(int));
	PGresult   *res = NULL;
	bool		ok = true;
	buf			sql;

	buf_init(&sql);
	buf_append(&sql, "SELECT true");
	for (int e = 0; e < 2; e++)
	{
		if (!ends[e]->set)
			continue;
		for (int i = 0; i < v->nkeys; i++)
		{
			types[n] = v->keys[i].base_type;
			values[n] = ends[e]->values[i];
			lens[n] = ends[e]->lens[i];
			formats[n] = 1;
			n++;
			buf_appendf(&sql, ", pg_catalog.set_config('pgrepart.%s_%d', $%d::pg_catalog.text, false)",
						names[e], i + 1, n);
		}
	}
	if (n > 0)
	{
		res = PQexecParams(v->side[side].d.conn, sql.data, n, types, values, lens, formats, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			db_log_error(v->side[side].d.conn, verify_side_label[side], "set the key range", res,
						 v->side[side].d.sqlstate);
			ok = false;
		}
	}
	PQclear(res);
	buf_free(&sql);
	free(types);
	free(values);
	free(lens);
	free(formats);
	return ok;
}

/* ---- COPY streams ---- */

static bool
verify_copy_begin(verify_run *v, int side, const verify_range *r, verify_mode mode, int64_t limit)
{
	verify_side *s = &v->side[side];
	PGresult   *res;
	buf			sql;
	bool		ok = false;

	buf_init(&sql);
	verify_copy_sql(v, side, r, mode != MODE_HASH, limit, &sql);
	log_debug("%s: %s", verify_side_label[side], sql.data);
	if (!verify_set_bounds(v, side, r))
		goto cleanup;
	if (!PQsendQuery(s->d.conn, sql.data))
	{
		db_log_error(s->d.conn, verify_side_label[side], "read the table", NULL, s->d.sqlstate);
		goto cleanup;
	}
	res = PQgetResult(s->d.conn);
	if (PQresultStatus(res) != PGRES_COPY_OUT)
	{
		db_log_error(s->d.conn, verify_side_label[side], "read the table", res, s->d.sqlstate);
		PQclear(res);
		while ((res = PQgetResult(s->d.conn)) != NULL)
			PQclear(res);
		goto cleanup;
	}
	PQclear(res);
	s->active = true;
	s->first = true;
	s->mode = mode;
	s->rows = 0;
	XXH3_128bits_reset(s->hash);
	ok = true;

cleanup:
	buf_free(&sql);
	return ok;
}

static void
verify_report_difference(void *arg, const checksum_difference *d)
{
	verify_run *v = arg;
	verify_listed *l;

	v->counts[d->kind]++;
	if (v->nlisted >= v->o->max_differences)
		return;
	v->listed = xrealloc(v->listed, sizeof(verify_listed) * (size_t) (v->nlisted + 1));
	l = &v->listed[v->nlisted++];
	l->kind = d->kind;
	l->key = xcalloc((size_t) d->nkeys, sizeof(char *));
	for (int i = 0; i < d->nkeys; i++)
		l->key[i] = xstrdup(d->key[i]);
	l->ncolumns = d->ncolumns;
	l->columns = xcalloc((size_t) d->ncolumns + 1, sizeof(char *));
	for (int i = 0; i < d->ncolumns; i++)
		l->columns[i] = xstrdup(v->cols[d->columns[i]].name);
}

/* Parse a message's rows into the row set (row-by-row modes). */
static bool
verify_parse_rows(verify_run *v, int side, const char *data, int len)
{
	verify_side *s = &v->side[side];
	int			max = v->nkeys + v->ncols;
	const uint8_t **fields = xcalloc((size_t) max, sizeof(uint8_t *));
	uint32_t   *lens = xcalloc((size_t) max, sizeof(uint32_t));
	wire_reader r;
	bool		ok = true;

	wire_reader_init(&r, data, (size_t) len);
	if (s->first)
		copybin_read_header(&r);
	while (ok && !r.failed && wire_remaining(&r) > 0)
	{
		int			n = copybin_read_row(&r, max, fields, lens);

		if (n <= 0)
			break;
		s->rows++;
		ok = s->mode == MODE_ADD_SOURCE ?
			checksum_rowset_add_source(v->rowset, n, fields, lens) :
			checksum_rowset_match_target(v->rowset, n, fields, lens);
	}
	if (r.failed || !ok)
	{
		log_error("could not read a row from the %s table at offset %zu: %s",
				  verify_side_label[side], r.failed ? r.error_pos : r.pos,
				  r.failed ? r.error : "unexpected field count or NULL key");
		ok = false;
	}
	free(fields);
	free(lens);
	return ok;
}

/* One COPY message: hash it, and count or parse its row. */
static bool
verify_copy_message(verify_run *v, int side, char *data, int len)
{
	verify_side *s = &v->side[side];
	/* The trailer comes alone, after the last row (the header rides with the first). */
	bool		trailer = !s->first && len == 2 && (uint8_t) data[0] == 0xff &&
		(uint8_t) data[1] == 0xff;

	XXH3_128bits_update(s->hash, data, (size_t) len);
	v->bytes += len;
	if (s->mode != MODE_HASH)
	{
		bool		ok = verify_parse_rows(v, side, data, len);

		s->first = false;
		PQfreemem(data);
		return ok;
	}
	if (trailer || (s->first && len <= 21))
	{
		/* The trailer, or a header and trailer with no row between. */
		s->first = false;
		PQfreemem(data);
		return true;
	}
	s->rows++;
	if (s->last != NULL)
		PQfreemem(s->last);
	s->last = data;
	s->last_len = len;
	s->last_is_first = s->first;
	s->first = false;
	return true;
}

/* Read what has arrived; *blocked when the rest has not. */
static bool
verify_copy_consume(verify_run *v, int side, bool *blocked)
{
	verify_side *s = &v->side[side];

	*blocked = false;
	for (;;)
	{
		char	   *data = NULL;
		int			n = PQgetCopyData(s->d.conn, &data, 1);
		PGresult   *res;
		bool		ok;

		if (n > 0)
		{
			if (!verify_copy_message(v, side, data, n))
				return false;
			continue;
		}
		if (n == 0)
		{
			*blocked = true;
			return true;
		}
		res = PQgetResult(s->d.conn);
		ok = n == -1 && PQresultStatus(res) == PGRES_COMMAND_OK;
		if (!ok)
			db_log_error(s->d.conn, verify_side_label[side], "read the table", res, s->d.sqlstate);
		PQclear(res);
		while ((res = PQgetResult(s->d.conn)) != NULL)
			PQclear(res);
		s->active = false;
		return ok;
	}
}

static void verify_show_progress(verify_run *v, bool final);

/* Drive the COPYs in flight on both connections until both end. */
static bool
verify_copy_wait(verify_run *v)
{
	for (;;)
	{
		fd_set		readable;
		int			maxfd = -1;

		FD_ZERO(&readable);
		for (int i = 0; i < 2; i++)
		{
			bool		blocked;

			if (!v->side[i].active)
				continue;
			if (!verify_copy_consume(v, i, &blocked))
				return false;
			if (blocked)
			{
				int			fd = PQsocket(v->side[i].d.conn);

				FD_SET(fd, &readable);
				if (fd > maxfd)
					maxfd = fd;
			}
		}
		verify_show_progress(v, false);
		if (maxfd < 0)
			return true;
		if (select(maxfd + 1, &readable, NULL, NULL, NULL) < 0 && errno != EINTR)
		{
			log_error("could not wait for the tables' rows: %s", strerror(errno));
			return false;
		}
		for (int i = 0; i < 2; i++)
		{
			if (v->side[i].active && FD_ISSET(PQsocket(v->side[i].d.conn), &readable) &&
				!PQconsumeInput(v->side[i].d.conn))
			{
				db_log_error(v->side[i].d.conn, verify_side_label[i], "read the table", NULL,
							 v->side[i].d.sqlstate);
				return false;
			}
		}
	}
}

/* The key values of the last row the source's chunk read, into b. */
static bool
verify_last_key(verify_run *v, verify_bound *b)
{
	verify_side *s = &v->side[SOURCE];
	int			max = v->nkeys + v->ncols;
	const uint8_t **fields = xcalloc((size_t) max, sizeof(uint8_t *));
	uint32_t   *lens = xcalloc((size_t) max, sizeof(uint32_t));
	wire_reader r;
	bool		ok;

	wire_reader_init(&r, s->last, (size_t) s->last_len);
	if (s->last_is_first)
		copybin_read_header(&r);
	ok = copybin_read_row(&r, max, fields, lens) == max;
	for (int i = 0; ok && i < v->nkeys; i++)
		ok = fields[i] != NULL;
	if (ok)
		verify_bound_set(b, v->nkeys, fields, lens);
	else
		log_error("could not read the key of the source's last row: %s",
				  r.failed ? r.error : "unexpected field count or NULL key");
	free(fields);
	free(lens);
	return ok;
}

/* Hash range r on both sides at once; *equal when the digests match. */
static bool
verify_hash_range(verify_run *v, verify_range *r, bool *equal)
{
	XXH128_hash_t digest[2];

	if (!verify_copy_begin(v, SOURCE, r, MODE_HASH, 0) ||
		!verify_copy_begin(v, TARGET, r, MODE_HASH, 0) ||
		!verify_copy_wait(v))
		return false;
	for (int i = 0; i < 2; i++)
		digest[i] = XXH3_128bits_digest(v->side[i].hash);
	r->source_rows = v->side[SOURCE].rows;
	*equal = XXH128_isEqual(digest[0], digest[1]);
	return true;
}

/* The source key at offset n within r, into b; *found false past the end. */
static bool
verify_key_at(verify_run *v, const verify_range *r, int64_t n, verify_bound *b, bool *found)
{
	verify_side *s = &v->side[SOURCE];
	PGresult   *res = NULL;
	buf			sql;
	bool		ok = false;

	buf_init(&sql);
	buf_append(&sql, "SELECT ");
	for (int i = 0; i < v->nkeys; i++)
	{
		if (i > 0)
			buf_append(&sql, ", ");
		ident_quote(&sql, v->keys[i].name);
	}
	verify_append_from(v, SOURCE, r, &sql);
	buf_appendf(&sql, " OFFSET %" PRId64 " LIMIT 1", n);
	if (!verify_set_bounds(v, SOURCE, r))
		goto cleanup;
	res = PQexecParams(s->d.conn, sql.data, 0, NULL, NULL, NULL, NULL, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		db_log_error(s->d.conn, "source", "split a key range", res, s->d.sqlstate);
		goto cleanup;
	}
	*found = PQntuples(res) == 1;
	if (*found)
	{
		const uint8_t **values = xcalloc((size_t) v->nkeys, sizeof(uint8_t *));
		uint32_t   *lens = xcalloc((size_t) v->nkeys, sizeof(uint32_t));

		for (int i = 0; i < v->nkeys; i++)
		{
			values[i] = (const uint8_t *) PQgetvalue(res, 0, i);
			lens[i] = (uint32_t) PQgetlength(res, 0, i);
		}
		verify_bound_set(b, v->nkeys, values, lens);
		free(values);
		free(lens);
	}
	ok = true;

cleanup:
	PQclear(res);
	buf_free(&sql);
	return ok;
}

/* Compare the rows of r one by one: the source's into memory, the target's past them. */
static bool
verify_compare_rows(verify_run *v, const verify_range *r)
{
	checksum_rowset_reset(v->rowset);
	if (!verify_copy_begin(v, SOURCE, r, MODE_ADD_SOURCE, 0) || !verify_copy_wait(v) ||
		!verify_copy_begin(v, TARGET, r, MODE_MATCH_TARGET, 0) || !verify_copy_wait(v))
		return false;
	checksum_rowset_finish(v->rowset);
	return true;
}

/*
 * Find the rows that differ in a range whose digests differ: halve it on the
 * source's median key while it holds many rows, following only the halves
 * whose digests differ, so memory stays bounded by VERIFY_LEAF_ROWS.
 */
static bool
verify_narrow(verify_run *v, const verify_range *r)
{
	verify_range half[2];
	int64_t		m = r->source_rows / 2;
	bool		found = false;
	bool		ok = false;

	if (r->source_rows <= VERIFY_LEAF_ROWS)
		return verify_compare_rows(v, r);
	memset(half, 0, sizeof(half));
	if (!verify_key_at(v, r, m - 1, &half[0].hi, &found))
		return false;
	if (!found)
		return verify_compare_rows(v, r);	/* the source changed under us */
	verify_bound_copy(&half[0].lo, &r->lo, v->nkeys);
	verify_bound_copy(&half[1].lo, &half[0].hi, v->nkeys);
	verify_bound_copy(&half[1].hi, &r->hi, v->nkeys);
	for (int i = 0; i < 2; i++)
	{
		bool		equal;

		if (!verify_hash_range(v, &half[i], &equal) || (!equal && !verify_narrow(v, &half[i])))
			goto cleanup;
	}
	ok = true;

cleanup:
	verify_range_clear(&half[0], v->nkeys);
	verify_range_clear(&half[1], v->nkeys);
	return ok;
}

/* ---- the pass over both tables ---- */

static void
verify_show_progress(verify_run *v, bool final)
{
	int64_t		now = lsn_monotonic_us();
	double		secs = (double) (now - v->started_us) / 1e6;
	double		estimate = v->side[SOURCE].t->estimated_rows;
	int64_t		rows = v->rows[SOURCE] + v->side[SOURCE].rows;

	if (!v->o->progress || (!final && now < v->next_progress_us))
		return;
	v->next_progress_us = now + 500000;
	fprintf(stderr, "\rverifying: %" PRId64 " rows", rows);
	if (estimate > 0)
		fprintf(stderr, " (%.0f%%)", rows < estimate ? 100.0 * (double) rows / estimate : 100.0);
	fprintf(stderr, ", %.1f MB/s, %" PRId64 " chunks differ   %s",
			secs > 0 ? (double) v->bytes / 1e6 / secs : 0.0, v->mismatched_chunks,
			final ? "\n" : "");
	v->progress_shown = true;
}

/*
 * Pass over both tables in chunks.  The source reads chunk k+1 while the
 * target reads chunk k: the target's chunk needs the key range the source's
 * chunk ended at.  Ranges whose digests differ are narrowed afterwards.
 */
static bool
verify_pass(verify_run *v)
{
	verify_range *mismatched = NULL;
	int			nmismatched = 0;
	verify_range next = {0}, cur = {0};
	XXH128_hash_t source_digest;
	bool		ok = false;

	if (!verify_copy_begin(v, SOURCE, &next, MODE_HASH, v->o->chunk_rows) || !verify_copy_wait(v))
		goto cleanup;
	for (;;)
	{
		bool		last = v->side[SOURCE].rows < v->o->chunk_rows;
		XXH128_hash_t target_digest;

		/* cur: the range the source just read, open-ended after the last chunk. */
		verify_range_clear(&cur, v->nkeys);
		verify_bound_copy(&cur.lo, &next.lo, v->nkeys);
		if (!last && !verify_last_key(v, &cur.hi))
			goto cleanup;
		cur.source_rows = v->side[SOURCE].rows;
		source_digest = XXH3_128bits_digest(v->side[SOURCE].hash);
		v->rows[SOURCE] += cur.source_rows;
		v->chunks++;

		if (!verify_copy_begin(v, TARGET, &cur, MODE_HASH, 0))
			goto cleanup;
		if (!last)
		{
			verify_bound_copy(&next.lo, &cur.hi, v->nkeys);
			if (!verify_copy_begin(v, SOURCE, &next, MODE_HASH, v->o->chunk_rows))
				goto cleanup;
		}
		/* The source's row count is added when its chunk is taken up above. */
		if (!verify_copy_wait(v))
			goto cleanup;
		v->rows[TARGET] += v->side[TARGET].rows;
		target_digest = XXH3_128bits_digest(v->side[TARGET].hash);
		if (!XXH128_isEqual(source_digest, target_digest))
		{
			verify_range *m;

			mismatched = xrealloc(mismatched, sizeof(verify_range) * (size_t) (nmismatched + 1));
			m = &mismatched[nmismatched++];
			memset(m, 0, sizeof(*m));
			verify_bound_copy(&m->lo, &cur.lo, v->nkeys);
			verify_bound_copy(&m->hi, &cur.hi, v->nkeys);
			m->source_rows = cur.source_rows;
			v->mismatched_chunks++;
		}
		if (last)
			break;
	}
	verify_show_progress(v, true);
	for (int i = 0; i < nmismatched; i++)
		if (!verify_narrow(v, &mismatched[i]))
			goto cleanup;
	ok = true;

cleanup:
	for (int i = 0; i < nmismatched; i++)
		verify_range_clear(&mismatched[i], v->nkeys);
	free(mismatched);
	verify_range_clear(&cur, v->nkeys);
	verify_range_clear(&next, v->nkeys);
	return ok;
}

/* ---- columns ---- */

static void
verify_schema_difference(verify_run *v, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
verify_schema_difference(verify_run *v, const char *fmt,...)
{
	buf			b;
	va_list		ap;

	buf_init(&b);
	va_start(ap, fmt);
	buf_vappendf(&b, fmt, ap);
	va_end(ap);
	ARRAY_PUSH(v->schema_diffs, v->nschema_diffs, buf_steal(&b));
}

static bool
verify_same_collation(const catalog_column *a, const catalog_column *b)
{
	if ((a->collation == NULL) != (b->collation == NULL))
		return false;
	return a->collation == NULL ||
		(strcmp(a->collation, b->collation) == 0 &&
		 strcmp(a->collation_schema, b->collation_schema) == 0);
}

/* The key: --key, or the source's primary key; NOT NULL and alike on both sides. */
static bool
verify_match_keys(verify_run *v)
{
	const catalog_table *src = v->side[SOURCE].t;
	const catalog_table *dst = v->side[TARGET].t;
	char	  **names = v->o->key ? v->o->key : src->key_columns;
	int			n = v->o->key ? v->o->nkey : src->nkey_columns;

	if (n == 0)
	{
		log_error("table \"%s.%s\" has no primary key to compare rows by", src->schema, src->name);
		log_hint("Name the columns that identify a row with --key.");
		return false;
	}
	v->keys = xcalloc((size_t) n, sizeof(verify_column));
	v->nkeys = n;
	for (int i = 0; i < n; i++)
	{
		const catalog_column *a = catalog_find_column(src, names[i]);
		const catalog_column *b = catalog_find_column(dst, names[i]);

		if (a == NULL || b == NULL)
		{
			log_error("key column \"%s\" does not exist in table \"%s.%s\"", names[i],
					  a == NULL ? src->schema : dst->schema, a == NULL ? src->name : dst->name);
			return false;
		}
		if (!a->not_null || !b->not_null)
		{
			log_error("key column \"%s\" of table \"%s.%s\" is nullable", names[i],
					  !a->not_null ? src->schema : dst->schema,
					  !a->not_null ? src->name : dst->name);
			log_hint("Rows with a NULL key cannot be compared by key; choose NOT NULL columns "
					 "with --key.");
			return false;
		}
		if (strcmp(a->type, b->type) != 0 || !verify_same_collation(a, b))
		{
			log_error("key column \"%s\" has type %s in the source and %s in the target",
					  names[i], a->type, b->type);
			log_hint("Both tables must order their keys alike; the key's type and collation "
					 "must match.");
			return false;
		}
		v->keys[i].name = a->name;
		v->keys[i].type = a->type;
		v->keys[i].base_type = a->base_type;
	}
	return true;
}

static bool
verify_is_key(const verify_run *v, const char *name)
{
	for (int i = 0; i < v->nkeys; i++)
		if (strcmp(v->keys[i].name, name) == 0)
			return true;
	return false;
}

/*
 * The columns to compare: every source column the target has with the same
 * type.  Between two databases, user-defined types are compared by their
 * text: their binary form embeds type OIDs, which differ between databases.
 */
static void
verify_match_columns(verify_run *v)
{
	const catalog_table *src = v->side[SOURCE].t;
	const catalog_table *dst = v->side[TARGET].t;

	v->cols = xcalloc((size_t) src->ncolumns + 1, sizeof(verify_column));
	for (int i = 0; i < src->ncolumns; i++)
	{
		const catalog_column *a = &src->columns[i];
		const catalog_column *b = catalog_find_column(dst, a->name);
		verify_column *c;

		if (verify_is_key(v, a->name))
			continue;
		if (b == NULL)
		{
			verify_schema_difference(v, "column \"%s\" is only in the source", a->name);
			continue;
		}
		if (strcmp(a->type, b->type) != 0)
		{
			verify_schema_difference(v, "column \"%s\" has type %s in the source and %s in "
									 "the target; not compared", a->name, a->type, b->type);
			continue;
		}
		c = &v->cols[v->ncols++];
		c->name = a->name;
		c->type = a->type;
		c->base_type = a->base_type;
		c->as_text = v->o->target_conninfo != NULL && a->base_type >= VERIFY_FIRST_USER_OID;
	}
	for (int i = 0; i < dst->ncolumns; i++)
		if (catalog_find_column(src, dst->columns[i].name) == NULL)
			verify_schema_difference(v, "column \"%s\" is only in the target",
									 dst->columns[i].name);
}

/* ---- the report ---- */

static int64_t
verify_count_differences(const verify_run *v)
{
	int64_t		n = v->nschema_diffs;

	for (int k = 0; k <= CHECKSUM_DUPLICATE_TARGET; k++)
		n += v->counts[k];
	/* Digests that differed though no row did: the tables changed while being read. */
	if (n == 0 && v->mismatched_chunks > 0)
		n = v->mismatched_chunks;
	return n;
}

static void
verify_print_json(const verify_run *v, double secs, FILE *out)
{
	json_writer w;
	buf			b;

	buf_init(&b);
	json_init(&w, &b);
	json_begin_object(&w);
	json_kv_bool(&w, "equal", verify_count_differences(v) == 0);
	json_kv_string(&w, "source", v->side[SOURCE].qname);
	json_kv_string(&w, "target", v->side[TARGET].qname);
	json_key(&w, "key");
	json_begin_array(&w);
	for (int i = 0; i < v->nkeys; i++)
		json_string(&w, v->keys[i].name);
	json_end_array(&w);
	json_kv_int(&w, "columns_compared", v->ncols);
	json_kv_int(&w, "source_rows", v->rows[SOURCE]);
	json_kv_int(&w, "target_rows", v->rows[TARGET]);
	json_kv_int(&w, "chunks", v->chunks);
	json_kv_int(&w, "chunks_different", v->mismatched_chunks);
	json_kv_int(&w, "bytes", v->bytes);
	json_kv_double(&w, "seconds", secs);
	json_kv_double(&w, "mb_per_second", secs > 0 ? (double) v->bytes / 1e6 / secs : 0.0);
	json_key(&w, "schema_differences");
	json_begin_array(&w);
	for (int i = 0; i < v->nschema_diffs; i++)
		json_string(&w, v->schema_diffs[i]);
	json_end_array(&w);
	json_key(&w, "row_differences");
	json_begin_object(&w);
	for (int k = 0; k <= CHECKSUM_DUPLICATE_TARGET; k++)
		json_kv_int(&w, verify_kind_name[k], v->counts[k]);
	json_end_object(&w);
	json_key(&w, "rows");
	json_begin_array(&w);
	for (int i = 0; i < v->nlisted; i++)
	{
		const verify_listed *l = &v->listed[i];

		json_begin_object(&w);
		json_kv_string(&w, "difference", verify_kind_name[l->kind]);
		json_key(&w, "key");
		json_begin_object(&w);
		for (int k = 0; k < v->nkeys; k++)
			json_kv_string(&w, v->keys[k].name, l->key[k]);
		json_end_object(&w);
		if (l->kind == CHECKSUM_DIFFERENT)
		{
			json_key(&w, "columns");
			json_begin_array(&w);
			for (int c = 0; c < l->ncolumns; c++)
				json_string(&w, l->columns[c]);
			json_end_array(&w);
		}
		json_end_object(&w);
	}
	json_end_array(&w);
	json_end_object(&w);
	fprintf(out, "%s\n", b.data);
	buf_free(&b);
}

static void
verify_print_text(const verify_run *v, double secs, FILE *out)
{
	int64_t		differences = verify_count_differences(v);
	int64_t		rows_differing = 0;

	fprintf(out, "%s and %s: %s\n", v->side[SOURCE].qname, v->side[TARGET].qname,
			differences == 0 ? "equal" : "DIFFERENT");
	fprintf(out, "  rows: %" PRId64 " in the source, %" PRId64 " in the target; "
			"%d columns compared by key (", v->rows[SOURCE], v->rows[TARGET], v->ncols);
	for (int i = 0; i < v->nkeys; i++)
		fprintf(out, "%s%s", i > 0 ? ", " : "", v->keys[i].name);
	fprintf(out, ")\n  read %.1f MB in %.1f s (%.1f MB/s), %" PRId64 " chunks, %" PRId64
			" differed\n", (double) v->bytes / 1e6, secs,
			secs > 0 ? (double) v->bytes / 1e6 / secs : 0.0, v->chunks, v->mismatched_chunks);
	for (int i = 0; i < v->nschema_diffs; i++)
		fprintf(out, "  %s\n", v->schema_diffs[i]);
	for (int k = 0; k <= CHECKSUM_DUPLICATE_TARGET; k++)
	{
		if (v->counts[k] > 0)
			fprintf(out, "  %s: %" PRId64 "\n", verify_kind_name[k], v->counts[k]);
		rows_differing += v->counts[k];
	}
	if (rows_differing == 0 && v->mismatched_chunks > 0)
		fprintf(out, "  %" PRId64 " chunks differed but their rows compared equal on a second "
				"read: the tables changed during verification\n", v->mismatched_chunks);
	for (int i = 0; i < v->nlisted; i++)
	{
		const verify_listed *l = &v->listed[i];

		fprintf(out, "  %-20s ", verify_kind_name[l->kind]);
		for (int k = 0; k < v->nkeys; k++)
			fprintf(out, "%s%s=%s", k > 0 ? ", " : "", v->keys[k].name, l->key[k]);
		for (int c = 0; c < l->ncolumns; c++)
			fprintf(out, "%s%s", c == 0 ? ": columns " : ", ", l->columns[c]);
		fputc('\n', out);
	}
	if (rows_differing > v->nlisted)
		fprintf(out, "  (%" PRId64 " more rows differ; --max-differences lists more)\n",
				rows_differing - v->nlisted);
}

/* ---- the command ---- */

static bool
verify_open_side(verify_run *v, int side, const char *conninfo, const char *schema,
				 const char *table)
{
	verify_side *s = &v->side[side];

	s->hash = XXH3_createState();
	if (!db_connect(&s->d, conninfo, verify_side_label[side]) ||
		!catalog_read(&s->d, schema, table, &s->t))
		return false;
	s->qname = ident_qualified(s->t->schema, s->t->name);
	return true;
}

static void
verify_close_side(verify_side *s)
{
	if (s->last != NULL)
		PQfreemem(s->last);
	XXH3_freeState(s->hash);
	catalog_table_free(s->t);
	free(s->qname);
	db_close(&s->d);
}

verify_result
verify_tables(const verify_options *o, FILE *out)
{
	verify_run	v;
	verify_result result = VERIFY_FAILED;

	memset(&v, 0, sizeof(v));
	v.o = o;
	v.started_us = lsn_monotonic_us();
	if (!verify_open_side(&v, SOURCE, o->source_conninfo, o->source_schema, o->source_table) ||
		!verify_open_side(&v, TARGET, o->target_conninfo ? o->target_conninfo : o->source_conninfo,
						  o->target_schema, o->target_table) ||
		!verify_match_keys(&v))
		goto cleanup;
	verify_match_columns(&v);
	v.rowset = checksum_rowset_create(v.nkeys, v.ncols, verify_report_difference, &v);
	if (!verify_pass(&v))
		goto cleanup;
	{
		double		secs = (double) (lsn_monotonic_us() - v.started_us) / 1e6;

		if (o->json)
			verify_print_json(&v, secs, out);
		else
			verify_print_text(&v, secs, out);
	}
	result = verify_count_differences(&v) == 0 ? VERIFY_EQUAL : VERIFY_DIFFERENT;

cleanup:
	if (v.progress_shown && result == VERIFY_FAILED)
		fputc('\n', stderr);
	for (int i = 0; i < 2; i++)
		verify_close_side(&v.side[i]);
	for (int i = 0; i < v.nlisted; i++)
	{
		for (int k = 0; k < v.nkeys; k++)
			free(v.listed[i].key[k]);
		free(v.listed[i].key);
		for (int c = 0; c < v.listed[i].ncolumns; c++)
			free(v.listed[i].columns[c]);
		free(v.listed[i].columns);
	}
	free(v.listed);
	for (int i = 0; i < v.nschema_diffs; i++)
		free(v.schema_diffs[i]);
	free(v.schema_diffs);
	checksum_rowset_free(v.rowset);
	free(v.keys);
	free(v.cols);
	return result;
}
