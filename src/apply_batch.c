/*
 * apply_batch.c: changes that wait, and go together.
 *
 * Inserts wait in a run, sent by binary COPY, by arrays, or one by one;
 * updates and deletes wait in batches, each sent as one statement over
 * arrays whose guard names the first row that touched the wrong number of
 * rows.  A change to a pending row folds into it where that is safe.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/apply_internal.h"
#include "pgrepart/copybin.h"
#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/wire.h"

/* Release what a batch's rows and index hold (not the batch itself). */
void
apply_batch_release(batch *b)
{
	buf_free(&b->rows);
	free(b->slot_hash);
	free(b->slot_row);
}

void
apply_batch_free(batch *b)
{
	if (b == NULL)
		return;
	apply_batch_release(b);
	free(b);
}

/* The keys of what is pending: the insert run's, or the batches'. */
static keyset *
apply_keys_of(apply *a, const batch *b)
{
	return b->kind == CHANGE_INSERT ? &a->run_keys : &a->batch_keys;
}

/* Forget a batch's rows once sent (or handed to an expectation). */
static void
apply_batch_reset(batch *b)
{
	buf_init(&b->rows);
	b->nrows = 0;
	b->nlive = 0;
	b->slot_hash = NULL;
	b->slot_row = NULL;
	b->nslots = 0;
	b->nused = 0;
}

/* The slot of hash h: its own, or the empty one where it would go. */
static int
apply_batch_slot(const batch *b, uint64_t h)
{
	int			i = (int) (h & (uint64_t) (b->nslots - 1));

	while (b->slot_row[i] != SIZE_MAX || b->slot_hash[i] != 0)
	{
		if (b->slot_hash[i] == h)
			return i;
		i = (i + 1) & (b->nslots - 1);
	}
	return i;
}

/* Note that the live row under new key hash h is at offset row (SIZE_MAX: none now). */
static void
apply_batch_index(batch *b, uint64_t h, size_t row)
{
	int			i;

	h = h ? h : 1;				/* 0 marks a never-used slot */
	if (2 * (b->nused + 1) > b->nslots)
	{
		uint64_t   *hashes = b->slot_hash;
		size_t	   *rows = b->slot_row;
		int			n = b->nslots;

		b->nslots = n ? 2 * n : 64;
		b->slot_hash = xcalloc((size_t) b->nslots, sizeof(uint64_t));
		b->slot_row = xmalloc(sizeof(size_t) * (size_t) b->nslots);
		for (int j = 0; j < b->nslots; j++)
			b->slot_row[j] = SIZE_MAX;
		b->nused = 0;
		for (int j = 0; j < n; j++)
			if (rows[j] != SIZE_MAX)
			{
				i = apply_batch_slot(b, hashes[j]);
				b->slot_hash[i] = hashes[j];
				b->slot_row[i] = rows[j];
				b->nused++;
			}
		free(hashes);
		free(rows);
	}
	i = apply_batch_slot(b, h);
	if (b->slot_hash[i] == 0)
		b->nused++;
	b->slot_hash[i] = h;
	b->slot_row[i] = row;
}

/* The offset of the live row whose new key hashes to h, or SIZE_MAX. */
static size_t
apply_batch_find(const batch *b, uint64_t h)
{
	h = h ? h : 1;
	return b->nslots == 0 ? SIZE_MAX : b->slot_row[apply_batch_slot(b, h)];
}

/*
 * Values per row: for inserts, the row; for updates, the new row, then the
 * old key, then the partition value to look in; for deletes, the old key,
 * then (by_part) the old partition value.
 */
static int
apply_batch_width(const apply *a, change_kind kind, bool by_part)
{
	if (kind == CHANGE_INSERT)
		return a->rel->ncols;
	return kind == CHANGE_UPDATE ? a->rel->ncols + a->nkey + 1 : a->nkey + (by_part ? 1 : 0);
}

/* The relation column that value j of a batch row belongs to. */
static int
apply_batch_column(const apply *a, change_kind kind, int j)
{
	int			first_key = kind == CHANGE_UPDATE ? a->rel->ncols : 0;

	if (kind == CHANGE_INSERT || j < first_key)
		return j;
	if (j < first_key + a->nkey)
		return a->key[j - first_key];
	return a->part;
}

/* Whether the values can travel in arrays: binary send format or NULL only. */
bool
apply_batchable(const apply *a, const pgout_value *const *vals, int n)
{
	if (!a->can_batch)
		return false;
	for (int i = 0; i < n; i++)
		if (vals[i]->kind == 't')
			return false;
	return true;
}

/* One batch row, as apply_batch_next reads it. */
static void
apply_batch_put(buf *out, const batch_row *row, const pgout_value *const *vals, int n)
{
	wire_put_u8(out, 0);
	wire_put_u64(out, row->lsn);
	wire_put_u64(out, row->hash[0]);
	wire_put_u64(out, row->hash[1]);
	wire_put_u8(out, row->exact);
	wire_put_u32(out, (uint32_t) strlen(row->key) + 1);
	buf_append_len(out, row->key, strlen(row->key) + 1);
	wire_put_u32(out, (uint32_t) strlen(row->newkey) + 1);
	buf_append_len(out, row->newkey, strlen(row->newkey) + 1);
	for (int i = 0; i < n; i++)
	{
		wire_put_u8(out, (uint8_t) vals[i]->kind);
		if (vals[i]->kind == 'b')
		{
			wire_put_u32(out, vals[i]->len);
			buf_append_len(out, vals[i]->data, vals[i]->len);
		}
	}
}

/* Account for the row just written at offset at. */
static void
apply_batch_added(apply *a, batch *b, const batch_row *row, int n, size_t at)
{
	b->nvalues = n;
	b->nrows++;
	b->nlive++;
	if (b->kind != CHANGE_DELETE)
		apply_batch_index(b, row->hash[1], at);
	keyset_add(apply_keys_of(a, b), row->hash[0]);
	keyset_add(apply_keys_of(a, b), row->hash[1]);
}

void
apply_batch_add(apply *a, batch *b, const batch_row *row, const pgout_value *const *vals, int n)
{
	size_t		at = b->rows.len;

	apply_batch_put(&b->rows, row, vals, n);
	apply_batch_added(a, b, row, n, at);
}

static void
apply_batch_next(wire_reader *r, batch_row *row, pgout_value *vals, int nvalues)
{
	uint32_t	keylen;

	row->dead = wire_u8(r) != 0;
	row->lsn = wire_u64(r);
	row->hash[0] = wire_u64(r);
	row->hash[1] = wire_u64(r);
	row->exact = wire_u8(r) != 0;
	keylen = wire_u32(r);
	row->key = (const char *) wire_bytes(r, keylen);
	keylen = wire_u32(r);
	row->newkey = (const char *) wire_bytes(r, keylen);
	for (int i = 0; i < nvalues; i++)
	{
		vals[i].kind = (char) wire_u8(r);
		vals[i].len = vals[i].kind == 'b' ? wire_u32(r) : 0;
		vals[i].data = vals[i].kind == 'b' ? wire_bytes(r, vals[i].len) : NULL;
	}
}

/* ---- the insert run ---- */

/* Send the pending inserts one by one, each through its leaf's prepared INSERT. */
static bool
apply_run_as_inserts(apply *a)
{
	const batch *b = &a->inserts;
	pgout_value *vals = xcalloc((size_t) b->nvalues + 1, sizeof(pgout_value));
	wire_reader r;
	batch_row	row;
	bool		ok = true;

	apply_reserve_params(a, a->rel->ncols);
	wire_reader_init(&r, b->rows.data, b->rows.len);
	for (int i = 0; ok && i < b->nrows; i++)
	{
		char		name[32];

		apply_batch_next(&r, &row, vals, b->nvalues);
		if (row.dead)
			continue;
		ok = apply_claim_key(a, row.key, NULL) &&
			apply_statement(a, CHANGE_INSERT, apply_target_of(a, &vals[a->part]), false, NULL, name);
		if (!ok)
			break;
		for (int c = 0; c < a->rel->ncols; c++)
			apply_set_param(a, c, &vals[c]);
		ok = apply_sent(a, PQsendQueryPrepared(a->db->conn, name, a->rel->ncols, a->values,
											   a->lengths, a->formats, 0),
						EXPECT_INSERT, "insert", row.lsn, xstrdup(row.key));
	}
	free(vals);
	return ok;
}

/* Send the pending inserts as one binary COPY. */
static bool
apply_run_as_copy(apply *a)
{
	PGconn	   *conn = a->db->conn;
	const batch *b = &a->inserts;
	pgout_value *vals;
	buf			data;
	wire_reader r;
	batch_row	row;
	PGresult   *res;
	bool		ok;

	/* Built before the pipeline drains, while the server still works through it. */
	vals = xcalloc((size_t) b->nvalues + 1, sizeof(pgout_value));
	buf_init(&data);
	copybin_put_header(&data);
	wire_reader_init(&r, b->rows.data, b->rows.len);
	for (int i = 0; i < b->nrows; i++)
	{
		apply_batch_next(&r, &row, vals, b->nvalues);
		if (row.dead)
			continue;
		copybin_put_row_start(&data, a->rel->ncols);
		for (int c = 0; c < a->rel->ncols; c++)
			copybin_put_field(&data, vals[c].kind == 'n' ? NULL : vals[c].data, vals[c].len);
	}
	copybin_put_trailer(&data);
	free(vals);
	if (!apply_leave_pipeline(a))
	{
		buf_free(&data);
		return false;
	}

	buf_reset(&a->sql);
	buf_appendf(&a->sql, "COPY %s ", a->qshadow);
	apply_column_list(a, &a->sql);
	buf_append(&a->sql, " FROM STDIN (FORMAT binary)");
	res = PQexec(conn, a->sql.data);
	ok = PQresultStatus(res) == PGRES_COPY_IN;
	PQclear(res);
	if (ok)
		ok = PQputCopyData(conn, data.data, (int) data.len) == 1 && PQputCopyEnd(conn, NULL) == 1;
	res = PQgetResult(conn);
	if (!ok || PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		db_log_error(conn, a->db->label, "copy a run of inserts into the shadow", res,
					 a->db->sqlstate);
		apply_hint_gap(a, res);
		ok = false;
	}
	PQclear(res);
	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
	buf_free(&data);
	a->stats.copied_rows += ok ? b->nlive : 0;
	return apply_enter_pipeline(a) && ok;
}

/*
 * Send the insert run.  A long one goes as one binary COPY, which writes
 * rows a page at a time but must leave the pipeline, and so first waits for
 * every result queued before it.  A shorter one goes as one INSERT over
 * arrays, in the pipeline, so the server works through it while the stream
 * is read on.  Without arrays, a short run goes one INSERT per row, as does
 * a run with a value that arrives as text.
 */
static bool
apply_flush_run(apply *a)
{
	int			n = a->inserts.nlive;
	bool		has_text = a->run_has_text;
	bool		ok = true;

	a->run_has_text = false;
	if (n > 0 && !has_text && a->can_batch && n < a->o.copy_threshold)
		return apply_flush_batch(a, &a->inserts);
	if (n > 0)
		ok = !has_text && n >= COPY_MIN_ROWS ? apply_run_as_copy(a) : apply_run_as_inserts(a);
	apply_batch_release(&a->inserts);
	apply_batch_reset(&a->inserts);
	return ok;
}


/*
 * A one-dimensional array in binary send format whose element i is
 * vals[i * stride]; unchanged-TOAST markers go as NULL (a keep flag says
 * to leave the column alone).
 */
static void
apply_put_array(buf *out, Oid element, const pgout_value *vals, int n, int stride)
{
	bool		nulls = false;

	for (int i = 0; i < n; i++)
		nulls = nulls || vals[(size_t) i * stride].kind != 'b';
	wire_put_array_header(out, element, nulls, n);
	for (int i = 0; i < n; i++)
	{
		const pgout_value *v = &vals[(size_t) i * stride];

		if (v->kind != 'b')
		{
			wire_put_u32(out, UINT32_MAX);	/* -1: NULL */
			continue;
		}
		wire_put_u32(out, v->len);
		buf_append_len(out, v->data, v->len);
	}
}

/*
 * An update batch's SET list: the new row, or the shadow's own value where
 * keep says.  A compressible column also keeps the shadow's value where the
 * new one is the same, byte for byte: under the default replica identity an
 * update sends every value not stored out of line in full, and writing it
 * again would compress it again, the largest single cost of an update that
 * leaves a long text alone.  The shadow's value is its own compressed
 * datum, which the server stores as it is.
 */
static void
apply_batch_set_list(const apply *a, const char *keep, buf *b)
{
	for (int i = 0; i < a->rel->ncols; i++)
	{
		const char *name = a->rel->columns[i].name;

		if (i > 0)
			buf_append(b, ", ");
		ident_quote(b, name);
		if (keep[i] != '1' && !a->compressible[i])
		{
			buf_appendf(b, " = v.c%d", i + 1);
			continue;
		}
		buf_append(b, " = CASE WHEN ");
		if (keep[i] == '1')
			buf_appendf(b, "v.k%d%s", i + 1, a->compressible[i] ? " OR " : "");
		if (a->compressible[i])
		{
			/* Images, not =: equal by an operator need not mean the same bytes. */
			buf_append(b, "pg_catalog.record_image_eq(ROW(t.");
			ident_quote(b, name);
			buf_appendf(b, "), ROW(v.c%d))", i + 1);
		}
		buf_append(b, " THEN t.");
		ident_quote(b, name);
		buf_appendf(b, " ELSE v.c%d END", i + 1);
	}
}

/*
 * "t.k1 = v.cN AND ..." for the key, and with_part the partition column;
 * the shadow and the rows under other names where the statement needs them.
 */
static void
apply_batch_match_as(const apply *a, const char *shadow, const char *rows, int first_key,
					 bool with_part, buf *b)
{
	for (int i = 0; i < a->nkey; i++)
	{
		buf_appendf(b, "%s%s.", i > 0 ? " AND " : "", shadow);
		ident_quote(b, a->rel->columns[a->key[i]].name);
		buf_appendf(b, " = %s.c%d", rows, first_key + i + 1);
	}
	if (with_part)
	{
		buf_appendf(b, " AND %s.", shadow);
		ident_quote(b, a->o.partition_column);
		buf_appendf(b, " = %s.c%d", rows, first_key + a->nkey + 1);
	}
}

static void
apply_batch_match(const apply *a, int first_key, bool with_part, buf *b)
{
	apply_batch_match_as(a, "t", "v", first_key, with_part, b);
}

/*
 * "(SELECT s.part ... LIMIT 1) AS p": the partition value of the row with
 * the key at first_key in rows v, looked up from the newest partition down.
 * The key's index holds the partition column after it, and without a
 * DEFAULT partition the leaves are read in bound order, so the look stops at
 * the first that holds the key.  The partition column is never NULL (it is
 * in the shadow's primary key), so a NULL p means no row.
 */
static void
apply_batch_part_of(const apply *a, int first_key, buf *b)
{
	buf_append(b, "(SELECT s.");
	ident_quote(b, a->o.partition_column);
	buf_appendf(b, " FROM %s AS s WHERE ", a->qshadow);
	apply_batch_match_as(a, "s", "v", first_key, false, b);
	buf_append(b, " ORDER BY s.");
	ident_quote(b, a->o.partition_column);
	buf_append(b, " DESC LIMIT 1) AS p");
}

/* " AND t.part = rows.p": the row in the partition apply_batch_part_of found. */
static void
apply_batch_in_part(const apply *a, const char *rows, buf *b)
{
	buf_append(b, " AND t.");
	ident_quote(b, a->o.partition_column);
	buf_appendf(b, " = %s.p", rows);
}

/*
 * A batch's rows as a relation v(c1, ..., k1, ..., ord): one array per
 * value, then for updates one boolean array per column that some row leaves
 * unchanged.  Returns the number of parameters; types receives their types.
 */
static int
apply_batch_rows_from(const apply *a, change_kind k, bool by_part, const char *keep, buf *b, Oid *types)
{
	int			nvalues = apply_batch_width(a, k, by_part);
	int			n = 0;

	buf_append(b, "ROWS FROM (");
	for (int j = 0; j < nvalues; j++)
	{
		types[n] = a->array_types[apply_batch_column(a, k, j)];
		buf_appendf(b, "%spg_catalog.unnest($%d)", j > 0 ? ", " : "", ++n);
	}
	for (int i = 0; k == CHANGE_UPDATE && i < a->rel->ncols; i++)
		if (keep[i] == '1')
		{
			types[n] = BOOLARRAYOID;
			buf_appendf(b, ", pg_catalog.unnest($%d)", ++n);
		}
	buf_append(b, ") WITH ORDINALITY AS v(");
	for (int j = 0; j < nvalues; j++)
		buf_appendf(b, "c%d, ", j + 1);
	for (int i = 0; k == CHANGE_UPDATE && i < a->rel->ncols; i++)
		if (keep[i] == '1')
			buf_appendf(b, "k%d, ", i + 1);
	buf_append(b, "ord)");
	return n;
}

/*
 * The end of an update or delete batch, whose CTE r holds the ordinals of
 * the rows it touched: return them, and fail the statement if they do not
 * number the rows given.  The client names the change from the ordinals, but
 * only the server can stop the COMMIT that may already follow in the
 * pipeline (see apply_end_target): an error aborts the target transaction,
 * and the origin's progress with it, so the run stops before the change and
 * stops there again when it resumes.  Every statement matches at most one
 * row per ordinal (the key and one partition value: the shadow's primary
 * key), so counting the ordinals is enough, and the row to name is looked
 * for only when the count is short.  SQL has no RAISE: a failing cast
 * carries the message, which apply_guard_failed reads.
 */
#define BATCH_GUARD_TEXT "pgrepart: batch row "

void
apply_batch_guard(const apply *a, buf *b)
{
	buf_append(b, "SELECT r.ord FROM r");
	/* A missing row is no failure there: apply_check_batch counts it. */
	if (a->o.tolerate_missing)
		return;
	buf_append(b, " UNION ALL "
			   "SELECT pg_catalog.int8('" BATCH_GUARD_TEXT "' || "
			   "(SELECT g.g || ' touched ' || pg_catalog.count(x.ord) || ' rows' "
			   " FROM pg_catalog.generate_series(1, pg_catalog.cardinality($1)) AS g(g) "
			   " LEFT JOIN r AS x ON x.ord = g.g GROUP BY g.g HAVING pg_catalog.count(x.ord) <> 1 "
			   " ORDER BY g.g LIMIT 1)) "
			   "FROM (SELECT pg_catalog.count(*) AS n FROM r) AS c "
			   "WHERE c.n <> pg_catalog.cardinality($1)");
}

/*
 * The statement of a batch (of inserts, updates or deletes) over the arrays of
 * apply_batch_rows_from; where a keep flag is true the shadow keeps its
 * value, TOAST pointer and all.  ROWS FROM keeps the arrays' order, and the
 * plan visits the rows in that order (a nested loop over them, forced in
 * apply_create), which keeps the source order of the updates.  RETURNING
 * says which rows were found.
 *
 * Updates that looked in the new row's partition without knowing the old
 * one (by_part false) look again by key alone, in the same statement, for
 * the rows the first look did not find: the row changed partitions.
 * Returns the number of parameters; types receives their types.
 */
int
apply_batch_sql(const apply *a, change_kind kind, bool by_part, const char *keep, buf *b, Oid *types)
{
	int			n;

	if (kind == CHANGE_INSERT)
	{
		buf_appendf(b, "INSERT INTO %s ", a->qshadow);
		apply_column_list(a, b);
		buf_append(b, " OVERRIDING SYSTEM VALUE SELECT ");
		for (int i = 0; i < a->rel->ncols; i++)
			buf_appendf(b, "%sv.c%d", i ? ", " : "", i + 1);
		buf_append(b, " FROM ");
		return apply_batch_rows_from(a, CHANGE_INSERT, false, keep, b, types);
	}
	if (kind == CHANGE_DELETE && by_part)
	{
		buf_appendf(b, "WITH r AS (DELETE FROM %s AS t USING ", a->qshadow);
		n = apply_batch_rows_from(a, CHANGE_DELETE, true, keep, b, types);
		buf_append(b, " WHERE ");
		apply_batch_match(a, 0, true, b);
		buf_append(b, " RETURNING v.ord) ");
		apply_batch_guard(a, b);
		return n;
	}
	if (kind == CHANGE_DELETE)
	{
		/*
		 * By the key alone: first the row's partition value, newest
		 * partition first (recent rows are the ones usually deleted), then
		 * the row in that partition alone.  A DELETE joined on the key alone
		 * would look in every partition for every row.
		 */
		buf_append(b, "WITH f AS MATERIALIZED (SELECT v.*, ");
		apply_batch_part_of(a, 0, b);
		buf_append(b, " FROM ");
		n = apply_batch_rows_from(a, CHANGE_DELETE, false, keep, b, types);
		buf_appendf(b, "), r AS (DELETE FROM %s AS t USING f WHERE ", a->qshadow);
		apply_batch_match_as(a, "t", "f", 0, false, b);
		apply_batch_in_part(a, "f", b);
		buf_append(b, " RETURNING f.ord) ");
		apply_batch_guard(a, b);
		return n;
	}
	if (by_part)
	{
		buf_appendf(b, "WITH r AS (UPDATE %s AS t SET ", a->qshadow);
		apply_batch_set_list(a, keep, b);
		buf_append(b, " FROM ");
		n = apply_batch_rows_from(a, CHANGE_UPDATE, true, keep, b, types);
		buf_append(b, " WHERE ");
		apply_batch_match(a, a->rel->ncols, true, b);
		buf_append(b, " RETURNING v.ord) ");
		apply_batch_guard(a, b);
		return n;
	}
	buf_append(b, "WITH v AS MATERIALIZED (SELECT * FROM ");
	n = apply_batch_rows_from(a, CHANGE_UPDATE, true, keep, b, types);
	buf_appendf(b, "), found AS (UPDATE %s AS t SET ", a->qshadow);
	apply_batch_set_list(a, keep, b);
	buf_append(b, " FROM v WHERE ");
	apply_batch_match(a, a->rel->ncols, true, b);
	/*
	 * The rows not found there changed partitions: their old partition value
	 * looked up by key, from the newest partition down, as for deletes by
	 * key alone, then the row updated in that partition alone.  The lookup
	 * sees the shadow as the statement started, which found has not changed
	 * for these rows.
	 */
	buf_append(b, " RETURNING v.ord), f AS MATERIALIZED (SELECT v.*, ");
	apply_batch_part_of(a, a->rel->ncols, b);
	buf_append(b, " FROM v WHERE v.ord NOT IN (SELECT found.ord FROM found)), ");
	buf_appendf(b, "moved AS (UPDATE %s AS t SET ", a->qshadow);
	apply_batch_set_list(a, keep, b);
	buf_append(b, " FROM f AS v WHERE ");
	apply_batch_match(a, a->rel->ncols, false, b);
	apply_batch_in_part(a, "v", b);
	buf_append(b, " RETURNING v.ord), r AS (SELECT ord FROM found UNION ALL SELECT ord FROM moved) ");
	apply_batch_guard(a, b);
	return n;
}

/*
 * The pending insert or update in b whose new key is key (hash h), read into
 * row and old (its values); false if there is none.
 */
static bool
apply_pending_row(apply *a, const batch *b, const char *key, uint64_t h, size_t *at,
				  batch_row *row, pgout_value *old)
{
	wire_reader r;

	if (b->nlive == 0 || !keyset_contains(apply_keys_of(a, b), h) || (*at = apply_batch_find(b, h)) == SIZE_MAX)
		return false;
	wire_reader_init(&r, b->rows.data + *at, b->rows.len - *at);
	apply_batch_next(&r, row, old, b->nvalues);
	return strcmp(row->newkey, key) == 0;
}

/* The pending update at offset at is folded away. */
static void
apply_batch_kill(batch *b, size_t at, uint64_t h)
{
	b->rows.data[at] = 1;
	b->nlive--;
	apply_batch_index(b, h, SIZE_MAX);
}

/*
 * Fold an update into the pending update or insert of the same row: the row
 * is written once, with the later values (the earlier ones where the later
 * change left a TOASTed value unchanged).  Whether it folded.
 *
 * Into a pending update, the later change moves to the earlier one's place
 * among the updates, so only when it cannot take or free a value that
 * another pending change waits for: every column of a unique index that
 * does not hold the whole key keeps the value the pending change gives it.
 * The key may change: its new value was claimed, so no pending change
 * touches it, and the old one has been this row's since the pending
 * change.  The partition column may change unless such an index holds it:
 * the shadow's unique indexes are the source's with it added, so their
 * values stay the row's own.
 *
 * Into a pending insert, always, even when the key or the partition column
 * changes: the run is written after every other pending change, so its rows
 * go in beside rows that already hold the values the source gives them at
 * that point, and hold those values themselves; no unique index of the
 * source can object to that state.  The row then goes in under its new key.
 * The caller has claimed the new key, so what waits under it went first.
 * hash: the keyset hashes of key and newkey.
 */
bool
apply_fold_update(apply *a, const char *key, const char *newkey, const uint64_t hash[2],
				  const pgout_tuple *newt)
{
	batch	   *b = &a->updates;
	int			nv;
	pgout_value *old;
	batch_row	row;
	size_t		at;
	bool		ok = false;

	old = xcalloc((size_t) a->rel->ncols + a->nkey + 2, sizeof(pgout_value));
	if (a->can_fold)
		ok = apply_pending_row(a, b, key, hash[0], &at, &row, old);
	if (!ok)
	{
		b = &a->inserts;
		ok = apply_pending_row(a, b, key, hash[0], &at, &row, old);
	}
	nv = b->nvalues;
	for (int c = 0; ok && c < a->rel->ncols; c++)
	{
		const pgout_value *v = &newt->values[c];

		if (v->kind == 't')
			ok = false;
		else if (b->kind == CHANGE_UPDATE && a->guarded[c] && v->kind != 'u')
			ok = v->kind == old[c].kind && v->len == old[c].len &&
				(v->kind != 'b' || memcmp(v->data, old[c].data, v->len) == 0);
	}
	if (ok)
	{
		/* Built aside: the values point into the batch, which grows. */
		const pgout_value **vals = xcalloc((size_t) nv + 1, sizeof(pgout_value *));
		uint64_t	was = row.hash[1];
		buf			scratch;

		/* Found under its new key from now on; an insert goes in under it. */
		row.newkey = newkey;
		row.hash[1] = hash[1];
		if (b->kind == CHANGE_INSERT)
		{
			row.key = newkey;
			row.hash[0] = row.hash[1];
		}
		for (int c = 0; c < nv; c++)
			vals[c] = c < a->rel->ncols && newt->values[c].kind != 'u' ? &newt->values[c] : &old[c];
		buf_init(&scratch);
		apply_batch_put(&scratch, &row, vals, nv);
		apply_batch_kill(b, at, was);
		at = b->rows.len;
		buf_append_len(&b->rows, scratch.data, scratch.len);
		apply_batch_added(a, b, &row, nv, at);
		buf_free(&scratch);
		free(vals);
		a->stats.folded++;
	}
	free(old);
	return ok;
}

/*
 * Fold a delete into the pending update or insert of the same row.  An
 * insert and its delete both go; an update is dropped and the row deleted
 * where the update would have looked for it.  Always allowed: deleting
 * earlier only frees unique values, and the inserted row never existed for
 * anyone else.
 */
bool
apply_fold_delete(apply *a, const char *key, uint64_t h)
{
	batch	   *u = &a->updates;
	pgout_value *old;
	const pgout_value **vals;
	batch_row	row;
	batch	   *d;
	size_t		at;
	int			n = 0;

	old = xcalloc((size_t) a->rel->ncols + a->nkey + 2, sizeof(pgout_value));
	if (apply_pending_row(a, &a->inserts, key, h, &at, &row, old))
	{
		apply_batch_kill(&a->inserts, at, row.hash[1]);
		free(old);
		a->stats.folded++;
		return true;
	}
	if (!apply_pending_row(a, u, key, h, &at, &row, old))
	{
		free(old);
		return false;
	}
	vals = xcalloc((size_t) a->nkey + 1, sizeof(pgout_value *));
	for (int k = 0; k < a->nkey; k++)
		vals[n++] = &old[a->rel->ncols + k];
	if (row.exact)
		vals[n++] = &old[a->rel->ncols + a->nkey];
	d = row.exact ? &a->deletes_by_part : &a->deletes_by_key;
	row.newkey = row.key;
	apply_batch_add(a, d, &row, vals, n);
	apply_batch_kill(u, at, row.hash[1]);
	free(vals);
	free(old);
	a->stats.folded++;
	return true;
}

/* What a batch of kind holds, for messages. */
static const char *
apply_change_name(change_kind kind, bool plural)
{
	static const char *const names[][2] = {
		[CHANGE_INSERT] = {"insert", "inserts"},
		[CHANGE_UPDATE] = {"update", "updates"},
		[CHANGE_DELETE] = {"delete", "deletes"},
	};

	return names[kind][plural];
}

/*
 * The columns an update batch keeps (keep[c] '1'): those for which a row
 * carries an unchanged-TOAST marker.  NULL for other batches.
 */
static char *
apply_batch_keep(const apply *a, const batch *b, const pgout_value *vals, int nrows, int *nkeep)
{
	int			nv = b->nvalues;
	char	   *keep;

	*nkeep = 0;
	if (b->kind != CHANGE_UPDATE)
		return NULL;
	keep = xmalloc((size_t) a->rel->ncols + 1);
	for (int c = 0; c < a->rel->ncols; c++)
	{
		keep[c] = '0';
		for (int i = 0; i < nrows && keep[c] == '0'; i++)
			if (vals[(size_t) i * nv + c].kind == 'u')
				keep[c] = '1';
		*nkeep += keep[c] == '1';
	}
	keep[a->rel->ncols] = '\0';
	return keep;
}

/*
 * The batch statement's parameters in a->values: one array per value, then
 * the keep flags of each kept column, all in arrays (which must outlive the
 * send).  Returns how many.
 */
static int
apply_batch_params(apply *a, const batch *b, const pgout_value *vals, int nrows,
				   const char *keep, int nkeep, buf *arrays)
{
	int			nv = b->nvalues;
	size_t	   *offsets = xcalloc((size_t) nv + (size_t) nkeep + 1, sizeof(size_t));
	int			nparams = 0;

	for (int j = 0; j < nv; j++)
	{
		offsets[nparams++] = arrays->len;
		apply_put_array(arrays, a->rel->columns[apply_batch_column(a, b->kind, j)].type_oid,
						&vals[j], nrows, nv);
	}
	for (int c = 0; keep != NULL && c < a->rel->ncols; c++)
	{
		if (keep[c] != '1')
			continue;
		offsets[nparams++] = arrays->len;
		wire_put_array_header(arrays, BOOLOID, false, nrows);
		for (int i = 0; i < nrows; i++)
		{
			wire_put_u32(arrays, 1);
			wire_put_u8(arrays, vals[(size_t) i * nv + c].kind == 'u');
		}
	}
	offsets[nparams] = arrays->len;
	apply_reserve_params(a, nparams);
	for (int j = 0; j < nparams; j++)
	{
		a->values[j] = arrays->data + offsets[j];
		a->lengths[j] = (int) (offsets[j + 1] - offsets[j]);
		a->formats[j] = 1;
	}
	free(offsets);
	return nparams;
}

/* Send a batch as one statement; the expectation takes its rows. */
bool
apply_flush_batch(apply *a, batch *b)
{
	int			nrows = 0;
	int			nv = b->nvalues;
	pgout_value *vals;
	char	   *keep;
	int			nkeep;
	int			nparams;
	buf			arrays;
	char		name[32];
	wire_reader r;
	batch_row	row;
	lsn_t		first = LSN_INVALID;
	batch	   *sent;
	bool		ok;

	if (b->nlive == 0)
	{
		/* Every row folded away: nothing to send. */
		apply_batch_release(b);
		apply_batch_reset(b);
		return true;
	}
	/* One spare row: dead rows are read into the slot after the live ones. */
	vals = xcalloc(((size_t) b->nlive + 1) * nv, sizeof(pgout_value));
	wire_reader_init(&r, b->rows.data, b->rows.len);
	for (int i = 0; i < b->nrows; i++)
	{
		apply_batch_next(&r, &row, &vals[(size_t) nrows * nv], nv);
		if (row.dead)
			continue;
		first = nrows == 0 ? row.lsn : first;
		nrows++;
	}
	keep = apply_batch_keep(a, b, vals, nrows, &nkeep);
	ok = apply_statement(a, b->kind, TARGET_BATCH, b->by_part, keep, name);
	buf_init(&arrays);
	nparams = apply_batch_params(a, b, vals, nrows, keep, nkeep, &arrays);

	sent = xmalloc(sizeof(batch));
	*sent = *b;
	apply_batch_reset(b);
	if (ok && !PQsendQueryPrepared(a->db->conn, name, nparams, a->values, a->lengths,
								   a->formats, 0))
	{
		db_log_error(a->db->conn, a->db->label, "queue a batch for the shadow", NULL,
					 a->db->sqlstate);
		ok = false;
	}
	buf_free(&arrays);
	free(keep);
	free(vals);
	if (!ok)
	{
		apply_batch_free(sent);
		return false;
	}
	apply_expect(a, EXPECT_BATCH, apply_change_name(sent->kind, true), first, NULL, NULL);
	a->expect[a->nexpect - 1].batch = sent;
	a->held_bytes += sent->rows.len;
	a->stats.batches++;
	/* On its way now, so the server works on it while the next one is built. */
	if (PQflush(a->db->conn) < 0)
	{
		db_log_error(a->db->conn, a->db->label, "send a batch to the shadow", NULL,
					 a->db->sqlstate);
		return false;
	}
	if (a->held_bytes >= HELD_MAX_BYTES)
		fault_point("held");	/* in the middle of a large transaction */
	return (a->nexpect < a->o.pipeline_depth && a->held_bytes < HELD_MAX_BYTES) || apply_sync(a);
}

/* Deletes before updates: deleting earlier only frees unique values. */
bool
apply_flush_batches(apply *a)
{
	keyset_clear(&a->batch_keys);
	return apply_flush_batch(a, &a->deletes_by_part) && apply_flush_batch(a, &a->deletes_by_key) &&
		apply_flush_batch(a, &a->updates);
}

/* Send everything that waits, in the order that keeps unique indexes satisfied. */
bool
apply_flush_pending(apply *a)
{
	keyset_clear(&a->run_keys);
	return apply_flush_batches(a) && apply_flush_run(a);
}

/* A batch is full: send the batches (not the inserts, which may wait longer). */
bool
apply_batch_room(apply *a, const batch *b)
{
	if (b->nrows < BATCH_MAX_ROWS && b->rows.len < BATCH_MAX_BYTES)
		return true;
	return apply_flush_batches(a);
}

/* Repeat an update by key alone after the sync; takes key and r. */
void
apply_queue_retry(apply *a, char *key, lsn_t lsn, retry *r)
{
	expectation e = {EXPECT_ONE_ROW, "update", lsn, key, r, NULL, a->last_final};

	a->retries = xrealloc(a->retries, sizeof(expectation) * (size_t) (a->nretries + 1));
	a->retries[a->nretries++] = e;
}

/*
 * Name the change of a batch's live row ord (ordinals count the rows sent,
 * not the ones folded away), which touched rows rows instead of one.
 */
static void
apply_report_batch_row(apply *a, const batch *b, long ord, long rows, bool *logged)
{
	pgout_value *vals = xcalloc((size_t) b->nvalues + 1, sizeof(pgout_value));
	wire_reader r;
	batch_row	row;

	wire_reader_init(&r, b->rows.data, b->rows.len);
	for (int i = 0, live = 0; i < b->nrows; i++)
	{
		apply_batch_next(&r, &row, vals, b->nvalues);
		if (!row.dead && ++live == ord)
		{
			apply_report_miss(a, apply_change_name(b->kind, false), row.key, row.lsn, rows, logged);
			break;
		}
	}
	free(vals);
}

/*
 * Check a batch's result: every row found exactly once.  An INSERT puts in
 * every row or fails.
 */
bool
apply_check_batch(apply *a, const batch *b, PGresult *res, bool *logged)
{
	int			n = PQntuples(res);
	int		   *hits;
	bool		ok = true;

	if (b->kind == CHANGE_INSERT)
		return true;
	hits = xcalloc((size_t) b->nlive + 1, sizeof(int));

	/* Ordinals count the live rows, the ones sent. */
	for (int i = 0; i < n; i++)
	{
		long		ord = atol(PQgetvalue(res, i, 0));

		if (ord >= 1 && ord <= b->nlive)
			hits[ord - 1]++;
	}
	for (int i = 0; ok && i < b->nlive; i++)
		if (hits[i] == 0 && a->o.tolerate_missing)
			a->stats.missed++;
		else if (hits[i] != 1)
		{
			apply_report_batch_row(a, b, i + 1, hits[i], logged);
			ok = false;
		}
	free(hits);
	return ok;
}

/*
 * A batch whose guard (apply_batch_guard) failed: name the change of the
 * row it reports, as apply_check_batch would have.  False for any other
 * failure.
 */
bool
apply_guard_failed(apply *a, const expectation *e, const PGresult *res, bool *logged)
{
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *at = msg != NULL ? strstr(msg, BATCH_GUARD_TEXT) : NULL;
	long		ord, rows;

	if (e->kind != EXPECT_BATCH || at == NULL ||
		sscanf(at + strlen(BATCH_GUARD_TEXT), "%ld touched %ld rows", &ord, &rows) != 2)
		return false;
	apply_report_batch_row(a, e->batch, ord, rows, logged);
	return *logged;
}

