/*
 * apply.c: source changes applied to the shadow, exactly once; see apply.h.
 *
 * Dispatch of the stream's messages, the handlers of each change (insert,
 * update, delete, truncate, relation), the end of a target transaction with
 * the origin's progress, and set-up.  The pipeline, the batches and the
 * routing of rows to partitions live beside it (apply_internal.h).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/apply_internal.h"
#include "pgrepart/catalog.h"
#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/partition.h"
#include "pgrepart/relation.h"
#include "pgrepart/wire.h"

/* ---- values and keys ---- */

/* Render a value for a message: integers and uuids readably, the rest raw or hex. */
static void
apply_format_value(buf *out, Oid type, const pgout_value *v)
{
	if (v->kind == 'n')
	{
		buf_append(out, "NULL");
		return;
	}
	if (v->kind == 'u')
	{
		buf_append(out, "(unchanged TOAST)");
		return;
	}
	if (v->kind == 't' || type == 25 || type == 1043 || type == 1042 || type == 19)
	{
		buf_append_len(out, v->data, v->len);
		return;
	}
	if ((type == CATALOG_INT2OID && v->len == 2) || (type == CATALOG_INT4OID && v->len == 4) ||
		(type == CATALOG_INT8OID && v->len == 8))
	{
		uint64_t	x = 0;
		int			bits = (int) v->len * 8;

		for (uint32_t i = 0; i < v->len; i++)
			x = (x << 8) | v->data[i];
		if (bits < 64 && (x >> (bits - 1)) & 1)
			x |= ~(uint64_t) 0 << bits;
		buf_append_int64(out, (int64_t) x);
		return;
	}
	if (type == 2950 && v->len == 16)
	{
		/* 8-4-4-4-12 */
		buf_append_hex(out, v->data, 4);
		for (int i = 4; i < 10; i += 2)
		{
			buf_append_char(out, '-');
			buf_append_hex(out, v->data + i, 2);
		}
		buf_append_char(out, '-');
		buf_append_hex(out, v->data + 10, 6);
		return;
	}
	buf_append(out, "\\x");
	buf_append_hex(out, v->data, v->len);
}

/*
 * "(id)=(42)" from the key columns of a tuple.  Every change is described
 * (the description is also the key the batches track), so the "(id)=("
 * part is built once, with the key.
 */
char *
apply_describe_key(const apply *a, const pgout_tuple *t)
{
	buf			b;

	buf_init(&b);
	buf_append(&b, a->key_prefix);
	for (int i = 0; i < a->nkey && a->key[i] < t->ncols; i++)
	{
		if (i > 0)
			buf_append(&b, ", ");
		apply_format_value(&b, a->rel->columns[a->key[i]].type_oid, &t->values[a->key[i]]);
	}
	buf_append_char(&b, ')');
	return buf_steal(&b);
}

/* A partition column value as int64, comparable to the partition bounds. */
bool
apply_partition_value(const apply *a, const pgout_value *v, int64_t *out)
{
	uint64_t	x = 0;

	if (v->kind != 'b' || !a->have_bounds || v->len == 0 || v->len > 8)
		return false;
	for (uint32_t i = 0; i < v->len; i++)
		x = (x << 8) | v->data[i];
	if (v->len < 8 && (x >> (v->len * 8 - 1)) & 1)
		x |= ~(uint64_t) 0 << (v->len * 8);
	*out = (int64_t) x;
	return true;
}

void
apply_reserve_params(apply *a, int n)
{
	if (n <= a->params_cap)
		return;
	a->values = xrealloc(a->values, sizeof(char *) * (size_t) n);
	a->lengths = xrealloc(a->lengths, sizeof(int) * (size_t) n);
	a->formats = xrealloc(a->formats, sizeof(int) * (size_t) n);
	a->params_cap = n;
}

/* Set parameter i from a value: NULL, text, or binary send format. */
void
apply_set_param(apply *a, int i, const pgout_value *v)
{
	if (v->kind == 'n')
	{
		a->values[i] = NULL;
		a->lengths[i] = 0;
		a->formats[i] = 0;
		return;
	}
	/* Text values are not NUL-terminated; libpq takes text with a length too. */
	a->values[i] = (const char *) v->data;
	a->lengths[i] = (int) v->len;
	a->formats[i] = v->kind == 'b' ? 1 : 0;
}

static bool
apply_insert(apply *a, const pgout_tuple *t, lsn_t lsn)
{
	const pgout_value **vals;
	batch_row	row;
	uint64_t	h;
	char	   *key;

	if (t->ncols != a->rel->ncols)
	{
		log_error("insert at %s carries %d columns, the relation has %d", LSN_TEXT(lsn), t->ncols,
				  a->rel->ncols);
		return false;
	}
	if (!apply_check_partition(a, t, "insert", lsn))
		return false;
	vals = xcalloc((size_t) t->ncols + 1, sizeof(pgout_value *));
	for (int i = 0; i < t->ncols; i++)
	{
		if (t->values[i].kind == 'u')
		{
			free(vals);
			log_error("insert at %s has an unchanged-TOAST marker, which only updates carry",
					  LSN_TEXT(lsn));
			return false;
		}
		a->run_has_text = a->run_has_text || t->values[i].kind == 't';
		vals[i] = &t->values[i];
	}
	key = apply_describe_key(a, t);
	h = keyset_hash(key, strlen(key));
	row = (batch_row) {false, lsn, {h, h}, true, key, key};
	apply_batch_add(a, &a->inserts, &row, vals, t->ncols);
	free(key);
	free(vals);
	a->stats.inserts++;
	return true;
}
/* ---- updates and deletes ---- */

/*
 * A single UPDATE's parameters: the new values mask keeps, then the old
 * key (room for one more, the partition value).  How many were set.
 */
static int
apply_update_params(apply *a, const pgout_tuple *oldt, const pgout_tuple *newt, const char *mask)
{
	int			p = 0;

	apply_reserve_params(a, a->rel->ncols + a->nkey + 1);
	for (int i = 0; i < newt->ncols; i++)
		if (mask[i] == '1')
			apply_set_param(a, p++, &newt->values[i]);
	for (int i = 0; i < a->nkey; i++)
		apply_set_param(a, p++, &oldt->values[a->key[i]]);
	return p;
}

/*
 * One UPDATE through the parent by key alone, where the row is not known:
 * every partition is looked in.  Takes key and mask.
 */
static bool
apply_update_by_key(apply *a, const pgout_tuple *oldt, const pgout_tuple *newt, char *mask,
					char *key, lsn_t lsn)
{
	char		name[32];
	bool		ok = false;

	if (apply_statement(a, CHANGE_UPDATE, TARGET_PARENT, false, mask, name))
	{
		int			p = apply_update_params(a, oldt, newt, mask);

		ok = apply_sent(a, PQsendQueryPrepared(a->db->conn, name, p, a->values, a->lengths,
											   a->formats, 0),
						EXPECT_ONE_ROW, "update", lsn, key);
		key = NULL;
	}
	free(key);
	free(mask);
	return ok;
}

/*
 * An update that waits in the update batch, when its values can go in
 * arrays; *batched says whether it went there.
 */
static bool
apply_update_batched(apply *a, const pgout_tuple *oldt, const pgout_tuple *newt,
					 const pgout_value *part, bool exact, const batch_row *row, bool *batched)
{
	const pgout_value **vals;
	int			nvals = 0;
	bool		ok = true;

	/*
	 * In a batch: the new row, the old key, and where to look (the old
	 * partition value, or without it the new one, and then the key alone).
	 */
	vals = xcalloc((size_t) a->rel->ncols + a->nkey + 1, sizeof(pgout_value *));
	for (int i = 0; i < a->rel->ncols; i++)
		vals[nvals++] = &newt->values[i];
	for (int i = 0; i < a->nkey; i++)
		vals[nvals++] = &oldt->values[a->key[i]];
	vals[nvals++] = part;
	*batched = apply_batchable(a, vals, nvals);
	if (*batched)
	{
		/* A batch either knows every row's partition or looks further for each. */
		ok = a->updates.nrows == 0 || a->updates.by_part == exact || apply_flush_batches(a);
		if (ok)
		{
			a->updates.by_part = exact;
			apply_batch_add(a, &a->updates, row, vals, nvals);
			ok = apply_batch_room(a, &a->updates);
		}
	}
	free(vals);
	return ok;
}

/*
 * An update sent alone, in source order.  Where the row is: in the new
 * row's leaf when it stays there (the old partition value is known and in
 * the same leaf), or, without the old value, probably there; otherwise found
 * through the parent by key and old partition value, which also moves it.
 * A guess that finds nothing is repeated through the parent by key alone
 * after the sync; in order, the key alone is the only look.  Takes key.
 */
static bool
apply_update_alone(apply *a, const pgout_tuple *oldt, const pgout_tuple *newt,
				   const pgout_value *part, bool exact, const uint64_t hash[2], lsn_t lsn,
				   char *key)
{
	char	   *mask = NULL;
	char		name[32];
	int			target;
	retry	   *r = NULL;
	bool		ok = false;

	if (!apply_flush_pending(a))
		goto cleanup;
	mask = xmalloc((size_t) a->rel->ncols + 1);
	for (int i = 0; i < newt->ncols; i++)
		mask[i] = newt->values[i].kind == 'u' ? '0' : '1';
	mask[newt->ncols] = '\0';
	if (!exact && apply_in_order(a))
	{
		ok = apply_update_by_key(a, oldt, newt, mask, key, lsn);
		key = mask = NULL;		/* taken */
		goto cleanup;
	}
	target = apply_target_of(a, &newt->values[a->part]);
	if (exact && target != TARGET_PARENT && apply_target_of(a, part) != target)
		target = TARGET_PARENT;
	if (apply_statement(a, CHANGE_UPDATE, target, target == TARGET_PARENT, mask, name))
	{
		int			p = apply_update_params(a, oldt, newt, mask);

		/* Without the old partition value, the key-only UPDATE is the fallback. */
		if (!exact)
		{
			r = apply_retry_create(a, mask, p);
			keyset_add(&a->segment, hash[0]);
			keyset_add(&a->segment, hash[1]);
		}
		if (target == TARGET_PARENT)
			apply_set_param(a, p++, part);
		ok = apply_sent_retry(a, PQsendQueryPrepared(a->db->conn, name, p, a->values, a->lengths,
													 a->formats, 0),
							  EXPECT_ONE_ROW, "update", lsn, key, r);
		key = NULL;
	}

cleanup:
	free(key);
	free(mask);
	return ok;
}

/* Whether an update carries every column, and the old key whole. */
static bool
apply_update_complete(const apply *a, const pgout_tuple *oldt, const pgout_tuple *newt, lsn_t lsn)
{
	if (newt->ncols != a->rel->ncols || oldt->ncols != a->rel->ncols)
	{
		log_error("update at %s does not carry the relation's %d columns", LSN_TEXT(lsn),
				  a->rel->ncols);
		return false;
	}
	for (int i = 0; i < a->nkey; i++)
	{
		if (oldt->values[a->key[i]].kind == 'u' || oldt->values[a->key[i]].kind == 'n')
		{
			log_error("update at %s does not carry the old value of key column \"%s\"",
					  LSN_TEXT(lsn), a->rel->columns[a->key[i]].name);
			return false;
		}
	}
	return true;
}

static bool
apply_update(apply *a, const pgout_message *m, lsn_t lsn)
{
	const pgout_tuple *newt = &m->update.newtuple;
	const pgout_tuple *oldt = m->update.oldkind ? &m->update.oldtuple : newt;
	/* The old partition value is known when the old tuple carries it. */
	bool		exact = m->update.oldkind == 'O' || a->identity_has_part;
	const pgout_value *part = m->update.oldkind && exact ? &oldt->values[a->part] :
		&newt->values[a->part];
	char	   *key;
	char	   *newkey;
	uint64_t	hash[2];
	bool		batched = false;
	bool		ok = false;

	if (!apply_update_complete(a, oldt, newt, lsn) || !apply_check_partition(a, newt, "update", lsn))
		return false;

	key = apply_describe_key(a, oldt);
	newkey = m->update.oldkind == 'K' || m->update.oldkind == 'O' ?
		apply_describe_key(a, newt) : xstrdup(key);
	a->stats.updates++;

	/*
	 * Both the old and the new key are touched (they differ when the key
	 * changed).  The new key first: what waits under it goes before the row
	 * takes it, even when the row is a pending insert the update folds into.
	 */
	hash[0] = keyset_hash(key, strlen(key));
	hash[1] = hash[0];
	if (strcmp(newkey, key) != 0 && !apply_claim_key(a, newkey, &hash[1]))
		goto cleanup;
	if (apply_fold_update(a, key, newkey, hash, newt))
	{
		ok = true;
		goto cleanup;
	}
	if (!apply_claim_key(a, key, NULL))
		goto cleanup;
	{
		batch_row	row = {false, lsn, {hash[0], hash[1]}, exact, key, newkey};

		ok = apply_update_batched(a, oldt, newt, part, exact, &row, &batched);
	}
	if (ok && !batched)
	{
		ok = apply_update_alone(a, oldt, newt, part, exact, hash, lsn, key);
		key = NULL;				/* taken */
	}

cleanup:
	free(key);
	free(newkey);
	return ok;
}

static bool
apply_delete(apply *a, const pgout_message *m, lsn_t lsn)
{
	const pgout_tuple *oldt = &m->delete.oldtuple;
	bool		with_part = m->delete.oldkind == 'O' || a->identity_has_part;
	int			target = with_part ? apply_target_of(a, &oldt->values[a->part]) : TARGET_PARENT;
	bool		by_part = with_part && target == TARGET_PARENT;
	const pgout_value **vals;
	int			nvals = 0;
	char		name[32];
	char	   *key;
	uint64_t	hash[2];
	int			p = 0;

	if (oldt->ncols != a->rel->ncols)
	{
		log_error("delete at %s does not carry the relation's %d columns", LSN_TEXT(lsn),
				  a->rel->ncols);
		return false;
	}
	key = apply_describe_key(a, oldt);
	a->stats.deletes++;
	if (apply_fold_delete(a, key, keyset_hash(key, strlen(key))))
	{
		free(key);
		return true;
	}
	if (!apply_claim_key(a, key, &hash[0]))
	{
		free(key);
		return false;
	}
	hash[1] = hash[0];
	vals = xcalloc((size_t) a->nkey + 1, sizeof(pgout_value *));
	for (int i = 0; i < a->nkey; i++)
		vals[nvals++] = &oldt->values[a->key[i]];
	if (with_part)
		vals[nvals++] = &oldt->values[a->part];
	if (apply_batchable(a, vals, nvals))
	{
		batch	   *b = with_part ? &a->deletes_by_part : &a->deletes_by_key;
		batch_row	row = {false, lsn, {hash[0], hash[1]}, true, key, key};

		apply_batch_add(a, b, &row, vals, nvals);
		free(vals);
		free(key);
		return apply_batch_room(a, b);
	}
	free(vals);

	if (!apply_flush_pending(a) || !apply_statement(a, CHANGE_DELETE, target, by_part, NULL, name))
	{
		free(key);
		return false;
	}
	apply_reserve_params(a, a->nkey + 1);
	for (int i = 0; i < a->nkey; i++)
		apply_set_param(a, p++, &oldt->values[a->key[i]]);
	if (by_part)
		apply_set_param(a, p++, &oldt->values[a->part]);
	return apply_sent(a, PQsendQueryPrepared(a->db->conn, name, p, a->values, a->lengths,
											 a->formats, 0),
					  EXPECT_ONE_ROW, "delete", lsn, key);
}

/* The stream's relation must carry exactly the shadow's columns. */
static bool
apply_check_relation(apply *a, const pgout_relation *rel)
{
	if (relation_matches(rel, a->columns, a->types, a->ncolumns))
		return true;
	a->failure = APPLY_FAILURE_SCHEMA;
	return false;
}

static bool
apply_relation(apply *a, const pgout_message *m)
{
	pgout_relation *rel = pgout_relation_copy(m);
	buf			prefix;

	if (!apply_check_relation(a, rel))
	{
		pgout_relation_free(rel);
		return false;
	}
	if (a->rel != NULL)
	{
		/* Same columns as before (checked above): prepared statements stay valid. */
		pgout_relation_free(a->rel);
		a->rel = rel;
		return true;
	}
	a->rel = rel;
	a->nkey = 0;
	a->part = -1;
	a->key = xcalloc((size_t) rel->ncols + 1, sizeof(int));
	for (int i = 0; i < rel->ncols; i++)
	{
		bool		in_key = a->o.nkey_columns == 0 && rel->columns[i].is_key;

		for (int j = 0; j < a->o.nkey_columns; j++)
			in_key = in_key || strcmp(rel->columns[i].name, a->o.key_columns[j]) == 0;
		if (in_key)
			a->key[a->nkey++] = i;
		if (strcmp(rel->columns[i].name, a->o.partition_column) == 0)
			a->part = i;
	}
	if (a->nkey == 0 || a->part < 0)
	{
		log_error("the stream for \"%s.%s\" carries %s", rel->nspname, rel->relname,
				  a->nkey == 0 ? "no replica identity columns" : "no partition column");
		return false;
	}
	a->identity_has_part = a->plain || rel->columns[a->part].is_key;
	buf_init(&prefix);
	buf_append_char(&prefix, '(');
	for (int i = 0; i < a->nkey; i++)
	{
		if (i > 0)
			buf_append(&prefix, ", ");
		ident_quote(&prefix, rel->columns[a->key[i]].name);
	}
	buf_append(&prefix, ")=(");
	a->key_prefix = buf_steal(&prefix);
	a->guarded = xcalloc((size_t) rel->ncols + 1, sizeof(bool));
	for (int i = 0; i < rel->ncols; i++)
	{
		for (int j = 0; j < a->o.nunique_columns; j++)
			if (strcmp(rel->columns[i].name, a->o.unique_columns[j]) == 0)
				a->guarded[i] = true;
	}
	a->can_fold = a->o.fold;
	return true;
}

/* ---- transactions ---- */

/*
 * Send what is pending, the origin's advance and COMMIT.  wait: read every
 * result now; otherwise leave the COMMIT in flight (see inflight) and go
 * on, so the server works through it while the next batch is built.
 */
bool
apply_end_target(apply *a, bool wait)
{
	/*
	 * Never commit part of a source transaction: the origin would say it is
	 * done and a restart would skip the rest.  It commits at its end.
	 */
	if (a->in_source_txn)
		return true;
	if (!a->in_target_txn)
		return !wait || apply_collect(a);
	if (!apply_collect(a) || !apply_flush_pending(a))
		return false;
	/*
	 * The COMMIT goes out behind statements whose results are still to come,
	 * and carries the origin's progress past them: a change that found no
	 * row must stop it, which only the server can do in time.  A batch fails
	 * itself (apply_batch_guard), and the failure aborts the transaction; a
	 * single UPDATE or DELETE cannot, so its result is read first.  A single
	 * UPDATE that may have to be repeated is repeated before the COMMIT too.
	 */
	if ((a->segment.count > 0 || a->unchecked_singles > 0) && !apply_sync(a))
		return false;
	if (a->pending_lsn > a->committed)
	{
		char		lsn[LSN_TEXT_SIZE];
		char		time[32];
		const char *values[2] = {lsn, time};

		lsn_format(a->pending_lsn, lsn);
		snprintf(time, sizeof(time), "%" PRId64, a->pending_time);
		if (!apply_sent(a, PQsendQueryParams(a->db->conn,
											 "SELECT pg_catalog.pg_replication_origin_xact_setup("
											 "$1::pg_catalog.pg_lsn, pg_catalog.to_timestamp("
											 "$2::pg_catalog.float8 / 1000000 + 946684800))",
											 2, NULL, values, NULL, NULL, 0),
						EXPECT_OK, "origin progress", a->pending_lsn, NULL))
			return false;
	}
	if (!apply_send_plain(a, "COMMIT", "commit of a batch"))
		return false;
	a->in_target_txn = false;
	a->txns_in_batch = 0;
	/* Read already when apply_send_plain had to sync; else read now when waiting. */
	if (a->nexpect == 0 || wait)
	{
		if (!apply_sync(a))
			return false;
		apply_durable(a, a->pending_lsn, a->pending_time, apply_changes_sent(a));
		return true;
	}
	if (!PQpipelineSync(a->db->conn))
	{
		db_log_error(a->db->conn, a->db->label, "send to the shadow", NULL, a->db->sqlstate);
		return false;
	}
	a->inflight = true;
	a->inflight_count = a->nexpect;
	a->inflight_lsn = a->pending_lsn;
	a->inflight_time = a->pending_time;
	a->inflight_changes = apply_changes_sent(a);
	return true;
}

/* A target transaction holds at most this many times --batch-transactions. */
#define BATCH_GROWTH 4
/* Past --batch-transactions, the COMMIT in flight is looked at every this many. */
#define BATCH_POLL 16

/*
 * A source transaction ended: end the target transaction once it holds
 * --batch-transactions of them, and the previous COMMIT is done.  While the
 * shadow still works on that one, read on (up to BATCH_GROWTH times as many):
 * waiting for it would leave the stream unread, and the walsender stalls
 * with it; the next batch grows instead, and more of its changes fold.  The
 * results are looked at every BATCH_POLL transactions, which costs a
 * system call.
 */
static bool
apply_batch_done(apply *a)
{
	int			over = ++a->txns_in_batch - a->o.batch_transactions;
	bool		ok;

	if (over < 0)
		return true;
	if (over < a->o.batch_transactions * (BATCH_GROWTH - 1))
	{
		if (over % BATCH_POLL != 0 || !apply_take_inflight(a, false, &ok))
			return true;
		if (!ok)
			return false;
	}
	return apply_end_target(a, false);
}

bool
apply_commit(apply *a)
{
	return apply_end_target(a, true);
}

bool
apply_message(apply *a, const pgout_message *m, lsn_t lsn)
{
	if (m->kind != PGOUT_RELATION && m->kind != PGOUT_BEGIN && m->kind != PGOUT_COMMIT &&
		m->kind != PGOUT_TYPE && m->kind != PGOUT_ORIGIN && m->kind != PGOUT_MESSAGE &&
		a->rel == NULL)
	{
		log_error("a %s message at %s came before any Relation message",
				  pgout_kind_name(m->kind), LSN_TEXT(lsn));
		return false;
	}
	/*
	 * Inserts wait in a run while updates and deletes of other keys go
	 * ahead: moving an insert later cannot break a unique key (the value it
	 * takes was free at its place in source order, and nothing before it can
	 * take the value meanwhile without touching its key, which sends the run
	 * first).  A truncate or a new relation sends them first.
	 */
	if (a->skipping && (m->kind == PGOUT_INSERT || m->kind == PGOUT_UPDATE ||
						m->kind == PGOUT_DELETE || m->kind == PGOUT_TRUNCATE))
	{
		a->stats.skipped++;
		return true;
	}
	if ((m->kind == PGOUT_TRUNCATE || m->kind == PGOUT_RELATION) && !apply_flush_pending(a))
		return false;

	switch (m->kind)
	{
		case PGOUT_BEGIN:
			a->in_source_txn = true;
			a->skipping = false;
			a->last_final = m->begin.final_lsn;
			return apply_begin_target(a);
		case PGOUT_COMMIT:
			a->in_source_txn = false;
			a->pending_lsn = m->commit.end_lsn;
			a->pending_time = m->commit.commit_time;
			a->stats.transactions++;
			return apply_batch_done(a);
		case PGOUT_RELATION:
			return apply_relation(a, m);
		case PGOUT_INSERT:
			if (!apply_insert(a, &m->insert.newtuple, lsn))
				return false;
			return (a->inserts.nlive < RUN_MAX_ROWS && a->inserts.rows.len < BATCH_MAX_BYTES &&
					!apply_in_order(a)) || apply_flush_pending(a);
		case PGOUT_UPDATE:
			return apply_update(a, m, lsn) && (!apply_in_order(a) || apply_flush_pending(a));
		case PGOUT_DELETE:
			return apply_delete(a, m, lsn) && (!apply_in_order(a) || apply_flush_pending(a));
		case PGOUT_TRUNCATE:
			buf_reset(&a->sql);
			buf_appendf(&a->sql, "TRUNCATE %s", a->qshadow);
			a->stats.truncates++;
			return apply_send_plain(a, a->sql.data, "truncate");
		case PGOUT_ORIGIN:
			/* It comes right after the BEGIN, before any change. */
			a->skipping = a->o.skip_origins && a->in_source_txn;
			return true;
		case PGOUT_TYPE:
		case PGOUT_MESSAGE:
			/* Types travel in binary. */
			return true;
	}
	return true;
}

bool
apply_idle(const apply *a)
{
	return !a->in_source_txn && !a->in_target_txn && !a->inflight;
}

bool
apply_in_source_txn(const apply *a)
{
	return a->in_source_txn;
}

int
apply_open_transactions(const apply *a)
{
	return a->txns_in_batch;
}

lsn_t
apply_replay_until(const apply *a)
{
	return a->replay_until;
}

lsn_t
apply_committed(const apply *a)
{
	return a->committed;
}

apply_failure
apply_get_failure(const apply *a)
{
	return a->failure;
}

const apply_stats *
apply_get_stats(const apply *a)
{
	return &a->stats;
}

/* ---- set-up ---- */

/* The shadow's columns the stream carries (generated ones are not published). */
static bool
apply_read_columns(apply *a)
{
	if (!catalog_published_columns(a->db, a->qshadow, &a->columns, &a->types, &a->ncolumns) ||
		!catalog_array_types(a->db, a->types, a->ncolumns, &a->array_types, &a->compressible))
		return false;
	a->can_batch = !fault_off("apply-batches");
	for (int i = 0; i < a->ncolumns; i++)
		a->can_batch = a->can_batch && a->array_types[i] != 0;
	for (int i = 0; i < a->ncolumns; i++)
		if (strcmp(a->columns[i], a->o.partition_column) == 0)
			a->partition_type = a->types[i];
	return true;
}

static bool
apply_take_origin(apply *a, lsn_t *progress)
{
	PGresult   *res;
	bool		created;
	bool		ok = false;

	/*
	 * WHERE NOT EXISTS alone lets two runs that start at once both create
	 * it, and the second fail with a unique violation: they queue on an
	 * advisory lock first, in one transaction with the creation.
	 */
	if (!db_exec(a->db, "create the replication origin",
				 "BEGIN; SELECT pg_catalog.pg_advisory_xact_lock("
				 "pg_catalog.hashtext('pgrepart.origin_create'))"))
		return false;
	res = db_execf(a->db, "create the replication origin",
				   "SELECT pg_catalog.pg_replication_origin_create(%text) "
				   "WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_origin "
				   "                  WHERE roname = %text)", a->o.origin, a->o.origin);
	created = res != NULL;
	PQclear(res);
	if (!db_exec(a->db, "create the replication origin", created ? "COMMIT" : "ROLLBACK") ||
		!created)
		return false;
	/*
	 * Only one session can hold an origin: a second applier stops here, once
	 * the session of a run that was just killed has had time to go.
	 */
	res = db_exec_when_free(a->db->conn, a->db->label, "take the replication origin",
							"SELECT pg_catalog.pg_replication_origin_session_setup($1), "
							"  pg_catalog.pg_replication_origin_progress($1, true)::pg_catalog.text",
							1, &a->o.origin, PGRES_TUPLES_OK, a->db->sqlstate);
	if (res == NULL)
	{
		log_hint("Another pgrepart process may be applying this migration.");
		return false;
	}
	*progress = LSN_INVALID;
	if (!PQgetisnull(res, 0, 1) && !lsn_parse(PQgetvalue(res, 0, 1), progress))
		log_error("could not read the origin's progress \"%s\"", PQgetvalue(res, 0, 1));
	else
		ok = true;
	PQclear(res);
	return ok;
}

apply *
apply_create(db *target, const apply_options *o)
{
	apply	   *a = xcalloc(1, sizeof(apply));

	a->db = target;
	a->o = *o;
	/*
	 * A plain target: its first key column stands in for the partition
	 * column.  Every old key then carries the row's "partition value"
	 * (identity_has_part), so each row is looked for exactly, by its key
	 * (the redundant column adds nothing to the match), and there are no
	 * leaves: every statement goes to the table itself.
	 */
	a->plain = o->partition_column == NULL;
	if (a->plain && o->nkey_columns == 0)
	{
		log_error("a plain target needs its key columns named");
		free(a);
		return NULL;
	}
	if (a->plain)
		a->o.partition_column = o->key_columns[0];
	if (a->o.batch_transactions <= 0)
		a->o.batch_transactions = 2000;
	if (a->o.pipeline_depth <= 0)
		a->o.pipeline_depth = 1000;
	if (a->o.copy_threshold <= 0)
		a->o.copy_threshold = RUN_MAX_ROWS;
	a->qshadow = ident_qualified(o->schema, o->shadow);
	buf_init(&a->sql);
	a->inserts.kind = CHANGE_INSERT;
	a->updates.kind = CHANGE_UPDATE;
	a->deletes_by_part.kind = CHANGE_DELETE;
	a->deletes_by_part.by_part = true;
	a->deletes_by_key.kind = CHANGE_DELETE;
	buf_init(&a->inserts.rows);
	buf_init(&a->updates.rows);
	buf_init(&a->deletes_by_part.rows);
	buf_init(&a->deletes_by_key.rows);
	/*
	 * The same few statements run millions of times: plan them once.  For a
	 * partitioned table the planner otherwise keeps choosing a custom plan
	 * (pruned at plan time) and plans every execution; a generic plan prunes
	 * at executor start-up instead.  A batch of updates must visit its rows
	 * in array order (see apply_batch_sql): with hash and merge joins off the
	 * planner can only loop over the arrays and look each row up, and each
	 * look finds one row by key, which an index scan does for less than a
	 * bitmap scan (about a quarter of a delete batch's time).  This session
	 * runs nothing but the apply.
	 */
	if (!db_exec(a->db, "set up the apply session",
				 "SET plan_cache_mode = force_generic_plan; SET enable_hashjoin = off; "
				 "SET enable_mergejoin = off; SET enable_bitmapscan = off") ||
		(a->o.replica_role &&
		 !db_exec(a->db, "apply as a replica", "SET session_replication_role = replica")) ||
		!apply_read_columns(a) || !apply_read_bounds(a) || !apply_take_origin(a, &a->committed))
		goto fail;
	a->pending_lsn = a->committed;
	if (!apply_enter_pipeline(a))
		goto fail;
	return a;

fail:
	apply_destroy(a);
	return NULL;
}

void
apply_destroy(apply *a)
{
	if (a == NULL)
		return;
	apply_free_expectations(a, a->nexpect);
	free(a->expect);
	for (int i = 0; i < a->nretries; i++)
	{
		free(a->retries[i].key);
		apply_retry_free(a->retries[i].retry);
	}
	free(a->retries);
	keyset_free(&a->segment);
	keyset_free(&a->run_keys);
	keyset_free(&a->batch_keys);
	apply_batch_release(&a->inserts);
	apply_batch_release(&a->updates);
	apply_batch_release(&a->deletes_by_part);
	apply_batch_release(&a->deletes_by_key);
	free(a->array_types);
	free(a->compressible);
	for (int i = 0; i < a->ncolumns; i++)
		free(a->columns[i]);
	free(a->columns);
	free(a->types);
	for (int i = 0; i < a->nstatements; i++)
		free(a->statements[i].mask);
	free(a->statements);
	apply_free_leaves(a->leaves, a->nleaves);
	pgout_relation_free(a->rel);
	free(a->key);
	free(a->key_prefix);
	free(a->guarded);
	free(a->values);
	free(a->lengths);
	free(a->formats);
	free(a->qshadow);
	buf_free(&a->sql);
	free(a);
}

