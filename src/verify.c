/*
 * verify.c: compare two tables by checksums; see verify.h.
 *
 * Why buckets of key hashes rather than ranges of keys: reading a table in
 * key order follows its index, so a table whose key is random (a uuid, as in
 * the seed's chat_messages) is read page by page at random.  Measured here on
 * 1,000,000 rows, COPY in key order took 4.3x as long as a sequential COPY.
 * A sequential read of each table, in whatever order its rows lie, with
 * every row hashed into the bucket of its key, compares the same rows at the
 * speed of the sequential read; no index and no sort is needed on either side.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/time.h>
#include <unistd.h>

#include <libpqtypes.h>
#include <xxhash.h>

#include "pgrepart/buf.h"
#include "pgrepart/catalog.h"
#include "pgrepart/checksum.h"
#include "pgrepart/clock.h"
#include "pgrepart/copybin.h"
#include "pgrepart/db.h"
#include "pgrepart/ident.h"
#include "pgrepart/json.h"
#include "pgrepart/log.h"
#include "pgrepart/lsn.h"
#include "pgrepart/mem.h"
#include "pgrepart/verify.h"
#include "pgrepart/wire.h"

/*
 * Source rows held in memory at once when comparing rows one by one; more
 * differing buckets than that take another pass each.
 */
#define VERIFY_NARROW_ROWS 1000000
/*
 * ... and at most about this much memory for them, as estimated from each
 * bucket's source rows while the buckets fill: the row set keeps per row a
 * 40-byte entry, a hash slot or two, a digest per column and the key as text
 * (about twice its binary length).
 */
#define VERIFY_NARROW_BYTES ((int64_t) 64 * 1024 * 1024)
#define VERIFY_ROW_OVERHEAD 56
/* Beyond this many passes, the remaining differing buckets are only counted. */
#define VERIFY_MAX_NARROW_PASSES 4
#define VERIFY_MIN_BUCKETS 256
#define VERIFY_MAX_BUCKETS (1 << 20)
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
	const char *type;			/* format_type() */
	Oid			base_type;
	bool		as_text;		/* compare its text form (see verify_match_columns) */
} verify_column;

/*
 * One bucket's rows on one side: the sum of their XXH3-128 digests (a sum,
 * so the order the rows arrive in does not matter) and their count.
 */
typedef struct verify_bucket
{
	uint64_t	low;
	uint64_t	high;
	int64_t		rows;
} verify_bucket;

/* What the COPY in flight on a connection does with its rows. */
typedef enum verify_mode
{
	MODE_BUCKETS,				/* add each row's digest to its key's bucket */
	MODE_ADD_SOURCE,			/* rows of differing buckets into the row set */
	MODE_MATCH_TARGET			/* ... matched against it */
} verify_mode;

typedef struct verify_side
{
	db			d;
	catalog_table *t;
	char	   *qname;			/* quoted, qualified */
	verify_bucket *buckets;

	/* The COPY in flight. */
	bool		active;
	bool		first;			/* the next message starts with the header */
	verify_mode mode;
	int64_t		rows;
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

	uint32_t	nbuckets;		/* a power of two */
	uint8_t    *narrowing;		/* per bucket: compared row by row in this pass */
	int64_t    *source_bytes;	/* per bucket: what its source rows would take in the row set */
	checksum_rowset *rowset;
	const uint8_t **fields;		/* scratch: one row's fields as read */
	uint32_t   *lens;
	const uint8_t **ordered;	/* ... reordered for the row set */
	uint32_t   *ordered_lens;

	int64_t		rows[2];
	int64_t		bytes;
	int64_t		passes;
	int64_t		buckets_different;
	int64_t		buckets_unnarrowed; /* differing buckets not compared row by row */
	int64_t		counts[CHECKSUM_DUPLICATE_TARGET + 1];
	verify_listed *listed;
	int			nlisted;
	int64_t		started_us;
	int64_t		next_progress_us;
	int64_t		next_tick_us;
	bool		progress_shown;
} verify_run;

static const char *const verify_side_label[] = {"source", "target"};

static const char *const verify_kind_name[] = {
	"missing", "extra", "different", "duplicate_in_source", "duplicate_in_target"
};

/* ---- reading both tables ---- */

/*
 * The COPY of one table: the key columns, the compared columns and, when
 * comparing rows one by one, the keys again as text so they can be shown.
 */
static void
verify_copy_sql(const verify_run *v, int side, bool keys_as_text, buf *sql)
{
	buf_append(sql, "COPY (SELECT ");
	for (int i = 0; i < v->nkeys; i++)
	{
		if (i > 0)
			buf_append(sql, ", ");
		ident_quote(sql, v->keys[i].name);
	}
	for (int i = 0; i < v->ncols; i++)
	{
		buf_append(sql, ", ");
		ident_quote(sql, v->cols[i].name);
		if (v->cols[i].as_text)
			buf_append(sql, "::pg_catalog.text");
	}
	for (int i = 0; keys_as_text && i < v->nkeys; i++)
	{
		buf_append(sql, ", ");
		ident_quote(sql, v->keys[i].name);
		buf_append(sql, "::pg_catalog.text");
	}
	buf_appendf(sql, " FROM %s", v->side[side].qname);
	if (v->o->where != NULL)
		buf_appendf(sql, " WHERE (%s)", v->o->where);
	buf_append(sql, ") TO STDOUT (FORMAT binary)");
}

static bool
verify_copy_begin(verify_run *v, int side, verify_mode mode)
{
	verify_side *s = &v->side[side];
	PGresult   *res;
	buf			sql;
	bool		ok = false;

	buf_init(&sql);
	verify_copy_sql(v, side, mode != MODE_BUCKETS, &sql);
	log_debug("%s: %s", verify_side_label[side], sql.data);
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

/* The bucket of a row: a hash of its key fields' bytes, lengths included. */
static uint32_t
verify_bucket_of(const verify_run *v, const uint8_t *const *fields, const uint32_t *lens)
{
	XXH64_hash_t h = 0;

	for (int i = 0; i < v->nkeys; i++)
		h = XXH3_64bits_withSeed(fields[i], lens[i], h ^ lens[i]);
	return (uint32_t) (h & (v->nbuckets - 1));
}

/* One row of side's COPY (fields in v->fields): into its bucket, or compared. */
static bool
verify_row(verify_run *v, int side, const uint8_t *row, size_t row_len)
{
	verify_side *s = &v->side[side];
	uint32_t	b = verify_bucket_of(v, v->fields, v->lens);
	int			n = v->nkeys + v->ncols;

	if (s->mode == MODE_BUCKETS)
	{
		XXH128_hash_t h = XXH3_128bits(row, row_len);
		verify_bucket *bucket = &s->buckets[b];

		/* A 128-bit sum: the low word's carry goes to the high word. */
		bucket->low += h.low64;
		bucket->high += h.high64 + (bucket->low < h.low64);
		bucket->rows++;
		if (side == SOURCE)
		{
			int64_t		bytes = VERIFY_ROW_OVERHEAD + 8 * (int64_t) v->ncols;

			for (int i = 0; i < v->nkeys; i++)
				bytes += 2 * (int64_t) v->lens[i] + 1;
			v->source_bytes[b] += bytes;
		}
		return true;
	}
	if (!v->narrowing[b])
		return true;
	/* The row set wants the key texts (which came last) first, then the columns. */
	for (int i = 0; i < v->nkeys; i++)
	{
		v->ordered[i] = v->fields[n + i];
		v->ordered_lens[i] = v->lens[n + i];
	}
	for (int i = 0; i < v->ncols; i++)
	{
		v->ordered[v->nkeys + i] = v->fields[v->nkeys + i];
		v->ordered_lens[v->nkeys + i] = v->lens[v->nkeys + i];
	}
	return s->mode == MODE_ADD_SOURCE ?
		checksum_rowset_add_source(v->rowset, n, v->ordered, v->ordered_lens) :
		checksum_rowset_match_target(v->rowset, n, v->ordered, v->ordered_lens);
}

/* One COPY message: the header (with the first), rows, or the trailer. */
static bool
verify_copy_message(verify_run *v, int side, const char *data, int len)
{
	verify_side *s = &v->side[side];
	int			expected = v->nkeys * (s->mode == MODE_BUCKETS ? 1 : 2) + v->ncols;
	wire_reader r;
	bool		ok = true;

	v->bytes += len;
	wire_reader_init(&r, data, (size_t) len);
	if (s->first)
		copybin_read_header(&r);
	s->first = false;
	while (ok && !r.failed && wire_remaining(&r) > 0)
	{
		size_t		start = r.pos;
		int			n = copybin_read_row(&r, expected, v->fields, v->lens);

		if (n == 0)
			break;
		if (n != expected)
		{
			if (!r.failed)
				wire_fail(&r, "unexpected field count");
			break;
		}
		for (int i = 0; i < v->nkeys; i++)
			if (v->fields[i] == NULL)
				wire_fail(&r, "NULL key");
		if (r.failed)
			break;
		s->rows++;
		ok = verify_row(v, side, r.data + start, r.pos - start);
	}
	if (r.failed || !ok)
	{
		log_error("could not read a row of the %s table at offset %zu of a COPY message: %s",
				  verify_side_label[side], r.failed ? r.error_pos : r.pos,
				  r.failed ? r.error : "malformed row");
		return false;
	}
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
			ok = verify_copy_message(v, side, data, n);
			PQfreemem(data);
			if (!ok)
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
		if (v->o->tick != NULL && clock_monotonic_us() >= v->next_tick_us)
		{
			v->o->tick(v->o->tick_arg);
			v->next_tick_us = clock_monotonic_us() + 1000000;
		}
		if (select(maxfd + 1, &readable, NULL, NULL, &(struct timeval) {1, 0}) < 0 &&
			errno != EINTR)
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

static void
verify_show_progress(verify_run *v, bool final)
{
	int64_t		now = clock_monotonic_us();
	double		secs = (double) (now - v->started_us) / 1e6;
	double		estimate = v->side[SOURCE].t->estimated_rows;
	int64_t		rows = v->side[SOURCE].rows;

	if (!v->o->progress || v->passes > 1 || (!final && now < v->next_progress_us))
		return;
	v->next_progress_us = now + 500000;
	fprintf(stderr, "\rverifying: %" PRId64 " rows", rows);
	if (estimate > 0)
		fprintf(stderr, " (%.0f%%)", rows < estimate ? 100.0 * (double) rows / estimate : 100.0);
	fprintf(stderr, ", %.1f MB/s   %s", secs > 0 ? (double) v->bytes / 1e6 / secs : 0.0,
			final ? "\n" : "");
	v->progress_shown = true;
}

/* Buckets so that each holds about chunk_rows rows of the source. */
static void
verify_size_buckets(verify_run *v)
{
	const catalog_table *t = v->side[SOURCE].t;
	double		rows = t->estimated_rows > 0 ? t->estimated_rows : (double) t->heap_bytes / 100.0;
	double		want = rows / v->o->chunk_rows;

	v->nbuckets = VERIFY_MIN_BUCKETS;
	while (v->nbuckets < VERIFY_MAX_BUCKETS && v->nbuckets < want)
		v->nbuckets *= 2;
	for (int i = 0; i < 2; i++)
		v->side[i].buckets = xcalloc(v->nbuckets, sizeof(verify_bucket));
	v->narrowing = xcalloc(v->nbuckets, 1);
	v->source_bytes = xcalloc(v->nbuckets, sizeof(int64_t));
}

/*
 * Compare the rows of the differing buckets one by one, in passes that each
 * hold at most VERIFY_NARROW_ROWS source rows and about VERIFY_NARROW_BYTES
 * of them: the source's rows of those buckets into memory, then the
 * target's matched against them.
 */
static bool
verify_narrow(verify_run *v)
{
	uint32_t	next = 0;

	while (next < v->nbuckets)
	{
		int64_t		held = 0, held_bytes = 0;
		bool		any = false;

		memset(v->narrowing, 0, v->nbuckets);
		for (; next < v->nbuckets; next++)
		{
			const verify_bucket *a = &v->side[SOURCE].buckets[next];
			const verify_bucket *b = &v->side[TARGET].buckets[next];

			if (a->low == b->low && a->high == b->high && a->rows == b->rows)
				continue;
			if (any && (held + a->rows > VERIFY_NARROW_ROWS ||
						held_bytes + v->source_bytes[next] > VERIFY_NARROW_BYTES))
				break;
			v->narrowing[next] = 1;
			held += a->rows;
			held_bytes += v->source_bytes[next];
			any = true;
		}
		if (!any)
			break;
		if (v->passes > VERIFY_MAX_NARROW_PASSES)
		{
			/* Too much differs to compare it all row by row: count what is left. */
			for (uint32_t i = 0; i < v->nbuckets; i++)
				v->buckets_unnarrowed += v->narrowing[i];
			for (; next < v->nbuckets; next++)
			{
				const verify_bucket *a = &v->side[SOURCE].buckets[next];
				const verify_bucket *b = &v->side[TARGET].buckets[next];

				v->buckets_unnarrowed += a->low != b->low || a->high != b->high ||
					a->rows != b->rows;
			}
			break;
		}
		v->passes++;
		log_info("comparing the rows of differing buckets one by one (pass %" PRId64 ")",
				 v->passes);
		checksum_rowset_reset(v->rowset);
		if (!verify_copy_begin(v, SOURCE, MODE_ADD_SOURCE) || !verify_copy_wait(v) ||
			!verify_copy_begin(v, TARGET, MODE_MATCH_TARGET) || !verify_copy_wait(v))
			return false;
		checksum_rowset_finish(v->rowset);
	}
	return true;
}

/* Read both tables at once into their buckets; then narrow the buckets that differ. */
static bool
verify_pass(verify_run *v)
{
	verify_size_buckets(v);
	v->passes = 1;
	if (!verify_copy_begin(v, SOURCE, MODE_BUCKETS) || !verify_copy_begin(v, TARGET, MODE_BUCKETS) ||
		!verify_copy_wait(v))
		return false;
	v->rows[SOURCE] = v->side[SOURCE].rows;
	v->rows[TARGET] = v->side[TARGET].rows;
	verify_show_progress(v, true);
	for (uint32_t i = 0; i < v->nbuckets; i++)
	{
		const verify_bucket *a = &v->side[SOURCE].buckets[i];
		const verify_bucket *b = &v->side[TARGET].buckets[i];

		v->buckets_different += a->low != b->low || a->high != b->high || a->rows != b->rows;
	}
	return v->buckets_different == 0 || verify_narrow(v);
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

/* A column's collation as SQL names it. */
static void
verify_collation_name(buf *out, const catalog_column *c)
{
	if (c->collation == NULL)
		buf_appendf(out, "default");
	else
		ident_quote_qualified(out, c->collation_schema, c->collation);
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
			bool		types = strcmp(a->type, b->type) != 0;
			buf			ca, cb;

			buf_init(&ca);
			buf_init(&cb);
			if (types)
			{
				buf_appendf(&ca, "%s", a->type);
				buf_appendf(&cb, "%s", b->type);
			}
			else
			{
				verify_collation_name(&ca, a);
				verify_collation_name(&cb, b);
			}
			log_error("key column \"%s\" has %s %s in the source and %s in the target",
					  names[i], types ? "type" : "collation", ca.data, cb.data);
			log_hint("Both tables must order their keys alike; the key's type and collation "
					 "must match.");
			buf_free(&ca);
			buf_free(&cb);
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
	/*
	 * Buckets not compared row by row differ for certain; buckets whose rows
	 * all compared equal on the second read mean the tables changed while
	 * being read, which is a difference too.
	 */
	if (n == 0 && v->buckets_different > 0)
		n = v->buckets_different;
	return n + v->buckets_unnarrowed;
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
	json_kv_int(&w, "buckets", v->nbuckets);
	json_kv_int(&w, "buckets_different", v->buckets_different);
	json_kv_int(&w, "buckets_not_compared_by_row", v->buckets_unnarrowed);
	json_kv_int(&w, "passes", v->passes);
	json_kv_int(&w, "bytes", v->bytes);
	json_kv_double(&w, "seconds", secs);
	json_kv_double(&w, "mb_per_second", secs > 0 ? (double) v->bytes / 1e6 / secs : 0.0);
	json_kv_strings(&w, "schema_differences", v->schema_diffs, v->nschema_diffs);
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
	fprintf(out, ")\n  read %.1f MB in %.1f s (%.1f MB/s) in %" PRId64 " passes; %" PRId64
			" of %u key buckets differed\n", (double) v->bytes / 1e6, secs,
			secs > 0 ? (double) v->bytes / 1e6 / secs : 0.0, v->passes, v->buckets_different,
			v->nbuckets);
	for (int i = 0; i < v->nschema_diffs; i++)
		fprintf(out, "  %s\n", v->schema_diffs[i]);
	for (int k = 0; k <= CHECKSUM_DUPLICATE_TARGET; k++)
	{
		if (v->counts[k] > 0)
			fprintf(out, "  %s: %" PRId64 "\n", verify_kind_name[k], v->counts[k]);
		rows_differing += v->counts[k];
	}
	if (v->buckets_unnarrowed > 0)
		fprintf(out, "  %" PRId64 " more key buckets differ and were not compared row by row "
				"(too much differs); the counts above are a lower bound\n",
				v->buckets_unnarrowed);
	else if (rows_differing == 0 && v->buckets_different > 0)
		fprintf(out, "  %" PRId64 " key buckets differed but their rows compared equal on a "
				"second read: the tables changed during verification\n", v->buckets_different);
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

	if (!db_connect(&s->d, conninfo, verify_side_label[side]))
		return false;
	if (side == SOURCE && v->o->source_snapshot != NULL)
	{
		buf			sql;
		bool		ok;

		/* The snapshot's name comes from the server; it still goes in as a literal. */
		buf_init(&sql);
		buf_append(&sql, "SET TRANSACTION SNAPSHOT ");
		ident_literal(&sql, v->o->source_snapshot);
		ok = db_exec(&s->d, "start reading at the consistent point",
					 "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") &&
			db_exec(&s->d, "take the consistent point's snapshot", sql.data);
		buf_free(&sql);
		if (!ok)
			return false;
	}
	if (!catalog_read(&s->d, schema, table, &s->t))
		return false;
	s->qname = ident_qualified(s->t->schema, s->t->name);
	return true;
}

static void
verify_close_side(verify_side *s)
{
	free(s->buckets);
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
	v.started_us = clock_monotonic_us();
	if (!verify_open_side(&v, SOURCE, o->source_conninfo, o->source_schema, o->source_table) ||
		!verify_open_side(&v, TARGET, o->target_conninfo ? o->target_conninfo : o->source_conninfo,
						  o->target_schema, o->target_table) ||
		!verify_match_keys(&v))
		goto cleanup;
	verify_match_columns(&v);
	v.rowset = checksum_rowset_create(v.nkeys, v.ncols, verify_report_difference, &v);
	v.fields = xcalloc(2 * (size_t) v.nkeys + (size_t) v.ncols, sizeof(uint8_t *));
	v.lens = xcalloc(2 * (size_t) v.nkeys + (size_t) v.ncols, sizeof(uint32_t));
	v.ordered = xcalloc((size_t) v.nkeys + (size_t) v.ncols, sizeof(uint8_t *));
	v.ordered_lens = xcalloc((size_t) v.nkeys + (size_t) v.ncols, sizeof(uint32_t));
	if (!verify_pass(&v))
		goto cleanup;
	{
		double		secs = (double) (clock_monotonic_us() - v.started_us) / 1e6;

		if (o->json)
			verify_print_json(&v, secs, out);
		else
			verify_print_text(&v, secs, out);
		if (o->json_out != NULL)
			verify_print_json(&v, secs, o->json_out);
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
	free(v.fields);
	free(v.lens);
	free(v.ordered);
	free(v.ordered_lens);
	free(v.narrowing);
	free(v.source_bytes);
	free(v.keys);
	free(v.cols);
	return result;
}
