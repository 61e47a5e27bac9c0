/*
 * apply.c: source changes applied to the shadow, exactly once; see apply.h.
 *
 * Everything sent to the target goes through libpq's pipeline mode: BEGIN,
 * the changes, the origin's xact setup and COMMIT are queued, with a sync
 * every pipeline_depth statements, and each queued statement has an
 * expectation (how many rows it must touch, and which key and LSN to name if
 * it does not).  COPY cannot run in a pipeline, so a run of inserts long
 * enough for COPY drains the pipeline, leaves pipeline mode for the COPY and
 * enters it again, all inside the same target transaction.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/apply.h"
#include "pgrepart/buf.h"
#include "pgrepart/catalog.h"
#include "pgrepart/copybin.h"
#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/keyset.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/partition.h"
#include "pgrepart/wire.h"

/* What a queued statement must do. */
typedef enum expect_kind
{
	EXPECT_OK,					/* BEGIN, COMMIT, PREPARE, TRUNCATE ... */
	EXPECT_INSERT,				/* INSERT: its row, or an error; it cannot miss */
	EXPECT_ONE_ROW,				/* UPDATE, DELETE: exactly one row, or a miss */
	EXPECT_BATCH				/* a batch: every row, by the ordinals it returns */
} expect_kind;

/*
 * An UPDATE that looked in one partition (the new row's) and must look in
 * every partition if it found nothing there: the partition column changed.
 * Its SET list mask and parameters (SET values, then the key), kept until
 * the sync tells.
 */
typedef struct retry
{
	char	   *mask;
	int			nparams;
	char	  **values;
	int		   *lengths;
	int		   *formats;
} retry;

/*
 * Updates or deletes sent as one statement over arrays, one element per
 * change, kept until the sync tells which rows they found.  Each row is a
 * dead flag (folded into a later row), the change's LSN, the hashes of its
 * old and new key, whether its partition value is the old row's ("exact"),
 * the old and new key as text, then its values: kind, length, bytes.
 */
typedef struct batch
{
	char		kind;			/* 'i' (the insert run), 'u' or 'd' */
	bool		by_part;		/* deletes: also match the partition column; updates: exact */
	buf			rows;
	int			nrows;			/* dead ones too */
	int			nlive;
	int			nvalues;		/* per row */

	/* Inserts and updates: the offset of the live row under each new key's hash (open addressing). */
	uint64_t   *slot_hash;
	size_t	   *slot_row;		/* SIZE_MAX: empty, or a row that died */
	int			nslots;
	int			nused;
} batch;

typedef struct expectation
{
	expect_kind kind;
	const char *what;			/* "insert", "update", ... */
	lsn_t		lsn;
	char	   *key;			/* the row's key as text, for messages */
	retry	   *retry;			/* what to do when it finds no row, or NULL */
	batch	   *batch;			/* EXPECT_BATCH: the rows it sent */
	lsn_t		final;			/* commit LSN of the source transaction open when it went */
} expectation;

/* A read of results that may stop halfway and go on later (apply_take_results). */
typedef struct read_state
{
	int			next;			/* expectations checked */
	bool		seen;			/* next's result is read, its closing NULL not yet */
	bool		failed;			/* a result was not as expected */
	bool		logged;			/* a miss was logged (apply_check_result) */
} read_state;

/*
 * One of the shadow's leaf partitions and its range as int64.  Statements go
 * to the leaf itself where the row's partition is known: on a partitioned
 * table every execution of a generic plan sets up run-time pruning over all
 * partitions, which costs more than the change itself.
 */
typedef struct leaf
{
	int64_t		lower, upper;	/* [lower, upper); MINVALUE/MAXVALUE as the int64 limits */
	int			id;				/* stable across re-reads: prepared statements use it */
	char	   *qname;
} leaf;

#define TARGET_PARENT (-1)		/* the partitioned shadow itself, not a leaf */

/* A prepared statement: an INSERT, UPDATE or DELETE on one target. */
typedef struct statement
{
	char		kind;			/* 'i', 'u' or 'd' */
	int			target;			/* a leaf's id, or TARGET_PARENT */
	bool		by_part;		/* the parent only: also matches the partition column */
	char	   *mask;			/* updates: per column '1' in the SET list, '0' not */
	char		name[32];
} prepared;

struct apply
{
	db		   *db;
	apply_options o;
	char	   *qshadow;

	/* The shadow's non-generated columns: what the stream must carry. */
	char	  **columns;
	Oid		   *types;
	Oid		   *array_types;	/* each column's array type, for batches; 0 if none */
	bool	   *compressible;	/* whether the server may compress a column's values */
	int			ncolumns;
	bool		can_batch;		/* every column has an array type */
	bool		has_default_partition;
	bool		have_bounds;	/* partition range known as int64 */
	int64_t		lower, upper;	/* [lower, upper) covered by partitions */
	leaf	   *leaves;			/* sorted by lower */
	Oid			partition_type;
	int			nleaves;
	int			npartitions;	/* the shadow's partitions of any kind, as last read */
	int			next_leaf_id;
	int			txns_in_batch;	/* source transactions in the open target transaction */

	/* The source relation, from the stream's Relation message. */
	pgout_relation *rel;
	int		   *key;			/* column indexes of the key */
	char	   *key_prefix;		/* "(id)=(": how every key description starts */
	bool	   *guarded;		/* per column: in apply_options.unique_columns */
	int			nkey;
	int			part;			/* column index of the partition column */
	bool		identity_has_part;	/* the old key carries the partition value */
	bool		can_fold;		/* see apply_fold_update */
	bool		in_source_txn;
	bool		in_target_txn;
	bool		run_has_text;	/* a pending insert carries a value as text: no COPY */
	lsn_t		last_final;		/* commit LSN of the latest source transaction begun */
	lsn_t		replay_until;	/* see apply_replay_until */

	/*
	 * A target COMMIT sent, with a sync after it, whose results are not read
	 * yet: its statements are the first inflight_count expectations.  At
	 * most one: the next COMMIT is sent only once this one is known to have
	 * succeeded, so a failed batch can never be covered by a later origin
	 * advance.
	 */
	bool		inflight;
	read_state	reading;		/* how far apply_take_results has read */
	int			inflight_count;
	lsn_t		inflight_lsn;
	int64_t		inflight_time;
	int64_t		inflight_changes;	/* stats' inserts + updates + deletes at its send */

	lsn_t		pending_lsn;	/* end LSN of the last source commit not yet durable */
	int64_t		pending_time;
	lsn_t		committed;		/* durable: the origin's progress */

	expectation *expect;		/* queued since the last sync */
	int			nexpect;
	int			expect_cap;
	expectation *retries;		/* updates to repeat by key alone after the sync */
	int			nretries;

	/*
	 * The keys of the single UPDATEs since the last sync that may be
	 * repeated by key alone at the sync.  A change of one of them syncs
	 * first, so the repeat commutes with everything queued after it.
	 */
	keyset		segment;

	/*
	 * Single UPDATEs and DELETEs queued since the last sync: whether each
	 * found its row only the client can tell, so they are checked before a
	 * COMMIT is sent.
	 */
	int			unchecked_singles;
	/* The keys of the pending inserts, and of the batches: a change to one sends them first. */
	keyset		run_keys;
	keyset		batch_keys;

	/*
	 * Updates and deletes wait in batches while other changes arrive.  They
	 * go in this order: deletes, then updates, then inserts (the run).  Only
	 * changes of different keys wait together, and for those the order
	 * matters only to a unique index other than the key: deleting earlier
	 * only frees values, and inserting later only takes them later (see
	 * apply_message); updates keep their order among themselves, because the
	 * batch statement visits its rows in array order.
	 */
	batch		updates;
	batch		deletes_by_part;	/* the partition value is known */
	batch		deletes_by_key;		/* the key alone: newest partition first */

	batch		inserts;		/* the run: pending inserts, in source order */
	prepared   *statements;
	int			nstatements;

	/* Scratch for statement parameters. */
	int			params_cap;
	const char **values;
	int		   *lengths;
	int		   *formats;
	buf			sql;
	apply_stats stats;
};

static bool apply_sync(apply *a);
static bool apply_run_retries(apply *a, bool ok);
static bool apply_statement(apply *a, char kind, int target, bool by_part, const char *mask,
							char *name);
static int	apply_batch_sql(const apply *a, char kind, bool by_part, const char *keep, buf *b,
							Oid *types);

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
static char *
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
static bool
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

static void
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
static void
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

/* ---- the pipeline ---- */

static void
apply_expect(apply *a, expect_kind kind, const char *what, lsn_t lsn, char *key, retry *r)
{
	expectation e = {kind, what, lsn, key, r, NULL, a->last_final};

	if (kind == EXPECT_ONE_ROW)
		a->unchecked_singles++;
	if (a->nexpect == a->expect_cap)
	{
		a->expect_cap = a->expect_cap ? a->expect_cap * 2 : 64;
		a->expect = xrealloc(a->expect, sizeof(expectation) * (size_t) a->expect_cap);
	}
	a->expect[a->nexpect++] = e;
}

static void apply_retry_free(retry *r);
static void apply_batch_free(batch *b);

/* Drop the first n expectations and what they hold. */
static void
apply_free_expectations(apply *a, int n)
{
	for (int i = 0; i < n; i++)
	{
		free(a->expect[i].key);
		apply_retry_free(a->expect[i].retry);
		apply_batch_free(a->expect[i].batch);
	}
	if (a->nexpect > n)
		memmove(a->expect, a->expect + n, sizeof(expectation) * (size_t) (a->nexpect - n));
	a->nexpect -= n;
}

static void
apply_retry_free(retry *r)
{
	if (r == NULL)
		return;
	for (int i = 0; i < r->nparams; i++)
		free(r->values[i]);
	free(r->values);
	free(r->lengths);
	free(r->formats);
	free(r->mask);
	free(r);
}

/* Keep a statement's parameters, for repeating it later. */
static retry *
apply_retry_create(apply *a, const char *mask, int nparams)
{
	retry	   *r = xcalloc(1, sizeof(retry));

	r->mask = xstrdup(mask);
	r->nparams = nparams;
	r->values = xcalloc((size_t) nparams + 1, sizeof(char *));
	r->lengths = xcalloc((size_t) nparams + 1, sizeof(int));
	r->formats = xcalloc((size_t) nparams + 1, sizeof(int));
	for (int i = 0; i < nparams; i++)
	{
		r->lengths[i] = a->lengths[i];
		r->formats[i] = a->formats[i];
		if (a->values[i] != NULL)
		{
			r->values[i] = xmalloc((size_t) a->lengths[i] + 1);
			memcpy(r->values[i], a->values[i], (size_t) a->lengths[i]);
			r->values[i][a->lengths[i]] = '\0';
		}
	}
	return r;
}

static bool
apply_sent_retry(apply *a, int sent, expect_kind kind, const char *what, lsn_t lsn, char *key,
				 retry *r)
{
	if (!sent)
	{
		db_log_error(a->db->conn, a->db->label, "queue a change for the shadow", NULL,
					 a->db->sqlstate);
		free(key);
		apply_retry_free(r);
		return false;
	}
	apply_expect(a, kind, what, lsn, key, r);
	if (a->nexpect >= a->o.pipeline_depth)
		return apply_sync(a);
	return true;
}

static bool
apply_sent(apply *a, int sent, expect_kind kind, const char *what, lsn_t lsn, char *key)
{
	return apply_sent_retry(a, sent, kind, what, lsn, key, NULL);
}

static bool apply_flush_pending(apply *a);
static bool apply_flush_batches(apply *a);
static bool apply_flush_batch(apply *a, batch *b);

/*
 * Note that the next statement touches key.  If a pending insert holds it,
 * everything pending goes first; if only a batch does, the batches go; if a
 * single UPDATE that may be repeated holds it, sync first.  Hashes only: a
 * collision costs a flush or a sync, never a wrong order.
 */
static bool
apply_claim_key(apply *a, const char *key, uint64_t *hash)
{
	uint64_t	h = keyset_hash(key, strlen(key));

	if (keyset_contains(&a->run_keys, h))
	{
		if (!apply_flush_pending(a))
			return false;
	}
	else if (keyset_contains(&a->batch_keys, h) && !apply_flush_batches(a))
		return false;
	if (keyset_contains(&a->segment, h) && !apply_sync(a))
		return false;
	if (hash)
		*hash = h;
	return true;
}

bool
apply_queue(apply *a, const char *sql, int nparams, const char *const *values, const int *lengths,
			const int *formats, const char *what)
{
	if (!a->in_target_txn)
	{
		log_error("%s: no shadow transaction is open", what);
		return false;
	}
	return apply_sent(a, PQsendQueryParams(a->db->conn, sql, nparams, NULL, values, lengths,
										   formats, 0),
					  EXPECT_OK, what, a->pending_lsn, NULL);
}

/* Queue a statement without parameters (BEGIN, COMMIT, TRUNCATE: all in the target transaction). */
static bool
apply_send_plain(apply *a, const char *sql, const char *what)
{
	return apply_queue(a, sql, 0, NULL, NULL, NULL, what);
}

/* A change that should have hit one row hit another number: stop, naming it. */
static void
apply_report_miss(apply *a, const char *what, const char *key, lsn_t at, long rows, bool *logged)
{
	char		lsn[LSN_TEXT_SIZE];

	if (*logged)
		return;
	log_error("the %s of the row with key %s at %s in \"%s.%s\" found %ld rows in the shadow, "
			  "not one", what, key, lsn_format(at, lsn), a->o.schema, a->o.table, rows);
	log_detail("A change that should hit a row of the shadow found none: the shadow no "
			   "longer matches the source, and applying more would hide it.");
	log_hint("Abort this migration (pgrepart abort) and start it again.");
	strcpy(a->db->sqlstate, "P0002");
	*logged = true;
}

static void apply_queue_retry(apply *a, char *key, lsn_t lsn, retry *r);
static bool apply_check_batch(apply *a, const batch *b, PGresult *res, bool *logged);
static bool apply_guard_failed(apply *a, const expectation *e, const PGresult *res, bool *logged);

/* The source transaction being applied goes one change per statement (apply_replay_until). */
static bool
apply_in_order(const apply *a)
{
	return a->last_final <= a->o.in_order_until;
}

/*
 * Whether a failed statement's unique violation may come from the order
 * changes were applied in rather than from the data: it was not applied in
 * source order.  Pending changes of different rows go in batches, and the
 * batches keep source order for every unique index but in one case: under
 * the default replica identity, an update batch finds the rows that moved
 * partitions by a second look, after the rest, so a value such a row gives
 * up can be taken first by a later row.  Then apply_replay_until asks for
 * the source transactions up to the statement's to go again, one change per
 * statement; nothing of the failed target transaction is durable.
 */
static bool
apply_out_of_order(apply *a, const expectation *e, const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
	char		lsn[LSN_TEXT_SIZE];

	if (state == NULL || strcmp(state, "23505") != 0 || e->final <= a->o.in_order_until)
		return false;
	a->replay_until = e->final;
	snprintf(a->db->sqlstate, sizeof(a->db->sqlstate), "%s", state);
	log_info("changes applied out of source order ran into unique constraint \"%s\": applying "
			 "the source transactions up to %s again, one change per statement",
			 constraint ? constraint : "?", lsn_format(a->replay_until, lsn));
	return true;
}

/*
 * After a failure logged from res: when no partition took a row (a CHECK
 * constraint's violation names the constraint; this does not), the value
 * lies in a gap between partitions, which the apply does not fill.
 */
static void
apply_hint_gap(const apply *a, const PGresult *res)
{
	if (strcmp(a->db->sqlstate, "23514") == 0 && !a->has_default_partition &&
		PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) == NULL)
		log_hint("No partition takes the row, though the apply creates the ones needed below the "
				 "lowest and above the highest: the shadow's partitions have a gap there. Create "
				 "the partition that holds the value, then run the same command again.");
}

/* Check one result against its expectation; logs the first failure. */
static bool
apply_check_result(apply *a, expectation *e, PGresult *res, bool *logged)
{
	ExecStatusType status = PQresultStatus(res);
	long		rows;

	if (status == PGRES_PIPELINE_ABORTED)
		return false;
	if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
	{
		if (!*logged && apply_guard_failed(a, e, res, logged))
			return false;
		if (!*logged && apply_out_of_order(a, e, res))
			*logged = true;
		if (!*logged)
		{
			char		lsn[LSN_TEXT_SIZE];
			char		what[160];

			snprintf(what, sizeof(what), "apply the %s of %s at %s", e->what,
					 e->key ? e->key : "the batch", lsn_format(e->lsn, lsn));
			db_log_error(a->db->conn, a->db->label, what, res, a->db->sqlstate);
			apply_hint_gap(a, res);
			*logged = true;
		}
		return false;
	}
	if (e->kind == EXPECT_OK)
		return true;
	if (e->kind == EXPECT_BATCH)
		return apply_check_batch(a, e->batch, res, logged);
	rows = atol(PQcmdTuples(res));
	if (rows == 1)
		return true;
	if (rows == 0 && e->retry != NULL)
	{
		/* Not in the new row's partition: repeat by key alone after the sync. */
		apply_queue_retry(a, e->key, e->lsn, e->retry);
		e->key = NULL;
		e->retry = NULL;
		return true;
	}
	apply_report_miss(a, e->what, e->key, e->lsn, rows, logged);
	return false;
}

/*
 * Read and check the results of the first n expectations, which a sync
 * already follows, and that sync; then drop those expectations.  With
 * block, wait for all of it; otherwise take only what has arrived, and
 * carry on from there at the next call (see reading).  Whether all of it is
 * read; *ok says whether every result was as expected and the connection
 * held (a broken connection ends the read).
 */
static bool
apply_take_results(apply *a, int n, bool block, bool *ok)
{
	PGconn	   *conn = a->db->conn;
	read_state *r = &a->reading;
	bool		broken = !block && !PQconsumeInput(conn);

	while (!broken)
	{
		PGresult   *res;

		if (!block && PQisBusy(conn))
			return false;
		res = PQgetResult(conn);
		if (r->next < n && r->seen)
		{
			/* Each statement's results end with a NULL. */
			if (res == NULL)
			{
				r->seen = false;
				r->next++;
			}
			PQclear(res);
		}
		else if (r->next < n)
		{
			if (res == NULL)
			{
				db_log_error(conn, a->db->label, "read results from the shadow", NULL,
							 a->db->sqlstate);
				r->failed = true;
				r->next = n;
				continue;
			}
			if (!apply_check_result(a, &a->expect[r->next], res, &r->logged))
				r->failed = true;
			PQclear(res);
			r->seen = true;
		}
		else if (res == NULL)
		{
			/* Between the statements and the sync point itself. */
			broken = PQstatus(conn) == CONNECTION_BAD;
		}
		else if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
		{
			PQclear(res);
			break;
		}
		else
			PQclear(res);
	}
	if (broken)
		db_log_error(conn, a->db->label, "read results from the shadow", NULL, a->db->sqlstate);
	apply_free_expectations(a, n);
	*ok = !r->failed && !broken;
	memset(r, 0, sizeof(*r));
	return true;
}

static bool
apply_read_results(apply *a, int n)
{
	bool		ok;

	apply_take_results(a, n, true, &ok);
	return ok;
}

/* The row changes applied so far, committed or not. */
static int64_t
apply_changes_sent(const apply *a)
{
	return a->stats.inserts + a->stats.updates + a->stats.deletes;
}

/*
 * A target transaction committed: the origin's progress is lsn, and changes
 * row changes (a count as apply_changes_sent gives it) are durable.
 */
static void
apply_durable(apply *a, lsn_t lsn, int64_t commit_time, int64_t changes)
{
	a->committed = lsn > a->committed ? lsn : a->committed;
	a->stats.last_commit_time = commit_time;
	a->stats.commits++;
	a->stats.durable_changes = changes;
}

/*
 * Read the results of the COMMIT in flight, if any; with block, wait for
 * them.  Its rows are durable once it succeeded.  Whether it is done; *ok
 * as apply_take_results gives it.
 */
static bool
apply_take_inflight(apply *a, bool block, bool *ok)
{
	*ok = true;
	if (!a->inflight)
		return true;
	if (!apply_take_results(a, a->inflight_count, block, ok))
		return false;
	a->inflight = false;
	if (*ok)
		apply_durable(a, a->inflight_lsn, a->inflight_time, a->inflight_changes);
	return true;
}

/* Wait for the COMMIT in flight, if any. */
static bool
apply_collect(apply *a)
{
	bool		ok;

	apply_take_inflight(a, true, &ok);
	return ok;
}

/* Sync the pipeline and check every result queued since the last sync. */
static bool
apply_sync(apply *a)
{
	bool		ok;

	if (!apply_collect(a))
		return false;
	if (a->nexpect == 0)
		return true;
	if (!PQpipelineSync(a->db->conn))
	{
		db_log_error(a->db->conn, a->db->label, "send to the shadow", NULL, a->db->sqlstate);
		return false;
	}
	ok = apply_read_results(a, a->nexpect);
	keyset_clear(&a->segment);
	a->unchecked_singles = 0;
	return apply_run_retries(a, ok);
}

/*
 * Repeat the updates that found no row in the new row's partition, by key
 * alone (the row moved partitions).  Every key was touched once since the
 * last sync, so these commute with what ran after them.
 */
static bool
apply_run_retries(apply *a, bool ok)
{
	int			n = a->nretries;
	expectation *retries = a->retries;

	a->retries = NULL;
	a->nretries = 0;
	for (int i = 0; i < n; i++)
	{
		retry	   *r = retries[i].retry;

		if (ok)
		{
			char		name[32];

			ok = apply_statement(a, 'u', TARGET_PARENT, false, r->mask, name) &&
				apply_sent(a, PQsendQueryPrepared(a->db->conn, name, r->nparams,
												  (const char *const *) r->values, r->lengths,
												  r->formats, 0),
						   EXPECT_ONE_ROW, "update (the row moved partitions)", retries[i].lsn,
						   retries[i].key);
		}
		else
			free(retries[i].key);
		apply_retry_free(r);
	}
	free(retries);
	return ok && (n == 0 || apply_sync(a));
}

/* Run fn outside pipeline mode (COPY, catalog queries), inside the same transaction. */
static bool
apply_leave_pipeline(apply *a)
{
	if (!apply_sync(a))
		return false;
	if (!PQexitPipelineMode(a->db->conn))
	{
		db_log_error(a->db->conn, a->db->label, "leave pipeline mode", NULL, a->db->sqlstate);
		return false;
	}
	return true;
}

static bool
apply_enter_pipeline(apply *a)
{
	if (!PQenterPipelineMode(a->db->conn))
	{
		db_log_error(a->db->conn, a->db->label, "enter pipeline mode", NULL, a->db->sqlstate);
		return false;
	}
	return true;
}

static bool
apply_begin_target(apply *a)
{
	if (a->in_target_txn)
		return true;
	a->in_target_txn = true;
	return apply_send_plain(a, "BEGIN", "start of a batch");
}

/* ---- partitions ---- */

static int
apply_leaf_order(const void *x, const void *y)
{
	const leaf *l = x;
	const leaf *r = y;

	return l->lower < r->lower ? -1 : l->lower > r->lower;
}

static void
apply_free_leaves(leaf *leaves, int n)
{
	for (int i = 0; i < n; i++)
		free(leaves[i].qname);
	free(leaves);
}

/*
 * The shadow's partitions: each leaf's range as int64, the covered range
 * [lower, upper) and whether there is a DEFAULT partition.  A leaf seen
 * before keeps its id, so its prepared statements stay valid.
 */
static bool
apply_read_bounds(apply *a)
{
	const char *cast;
	buf			as_int;
	PGresult   *res;
	buf			sql;
	leaf	   *leaves = NULL;
	int			nleaves = 0;
	bool		ok = false;

	switch (a->partition_type)
	{
		case CATALOG_TIMESTAMPOID:
			cast = "pg_catalog.timestamp";
			break;
		case CATALOG_TIMESTAMPTZOID:
			cast = "pg_catalog.timestamptz";
			break;
		case CATALOG_DATEOID:
			cast = "pg_catalog.date";
			break;
		case CATALOG_INT2OID:
		case CATALOG_INT4OID:
		case CATALOG_INT8OID:
			cast = "pg_catalog.int8";
			break;
		default:
			return true;
	}
	buf_init(&as_int);
	partition_binary_expression(a->partition_type, "v", &as_int);
	buf_init(&sql);
	buf_appendf(&sql,
				"WITH " PARTITION_BOUNDS_CTE " "
				"SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, "
				"  c.relkind = 'r' AND NOT b.d, b.d, "
				"  (SELECT %1$s FROM (SELECT NULLIF(b.m[1], 'MINVALUE')::%2$s AS v) x), "
				"  (SELECT %1$s FROM (SELECT NULLIF(b.m[2], 'MAXVALUE')::%2$s AS v) y), "
				"  b.m IS NOT NULL "
				"FROM b JOIN pg_catalog.pg_class c ON c.oid = b.leaf "
				"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
				as_int.data, cast);
	res = db_execf(a->db, "read the shadow's partition bounds", sql.data, a->qshadow);
	if (res == NULL)
		goto cleanup;
	a->has_default_partition = false;
	a->have_bounds = false;
	for (int i = 0; i < PQntuples(res); i++)
	{
		PGtext		nspname, relname;
		PGbool		is_leaf, is_default, is_range;
		PGint8		lower = INT64_MIN, upper = INT64_MAX;
		leaf		l = {0};

		if (!db_getf(res, i, "%text %text %bool %bool %bool", 0, &nspname, 1, &relname, 2, &is_leaf,
					 3, &is_default, 6, &is_range) ||
			(!PQgetisnull(res, i, 4) && !db_getf(res, i, "%int8", 4, &lower)) ||
			(!PQgetisnull(res, i, 5) && !db_getf(res, i, "%int8", 5, &upper)))
		{
			PQclear(res);
			goto cleanup;
		}
		if (is_default)
		{
			a->has_default_partition = true;
			continue;
		}
		if (!is_range)
			continue;
		a->lower = a->have_bounds && a->lower < lower ? a->lower : lower;
		a->upper = a->have_bounds && a->upper > upper ? a->upper : upper;
		a->have_bounds = true;
		/* A sub-partitioned partition is no leaf: its rows go through the parent. */
		if (!is_leaf)
			continue;
		l.lower = lower;
		l.upper = upper;
		l.qname = ident_qualified(nspname, relname);
		l.id = -1;
		for (int j = 0; j < a->nleaves && l.id < 0; j++)
			if (strcmp(a->leaves[j].qname, l.qname) == 0)
				l.id = a->leaves[j].id;
		if (l.id < 0)
			l.id = a->next_leaf_id++;
		ARRAY_PUSH(leaves, nleaves, l);
	}
	a->npartitions = PQntuples(res);
	PQclear(res);
	if (nleaves > 0)
		qsort(leaves, (size_t) nleaves, sizeof(leaf), apply_leaf_order);
	apply_free_leaves(a->leaves, a->nleaves);
	a->leaves = leaves;
	a->nleaves = nleaves;
	leaves = NULL;
	nleaves = 0;
	ok = true;

cleanup:
	apply_free_leaves(leaves, nleaves);
	buf_free(&sql);
	buf_free(&as_int);
	return ok;
}

/*
 * Whether the shadow still has as many partitions as this apply knows of.
 * Someone adding or dropping one of the shadow's partitions while it runs
 * is rare, and counting them is far cheaper than reading every partition's
 * bounds again (which takes the server milliseconds per call, mostly in
 * parsing the bounds' text).
 */
static bool
apply_partitions_unchanged(apply *a, bool *unchanged)
{
	PGresult   *res;
	PGint8		n = 0;
	bool		ok;

	res = db_execf(a->db, "count the shadow's partitions",
				   "SELECT pg_catalog.count(*) FROM pg_catalog.pg_inherits "
				   "WHERE inhparent = %text::pg_catalog.regclass", a->qshadow);
	ok = res != NULL && db_getf(res, 0, "%int8", 0, &n);
	*unchanged = n == a->npartitions;
	PQclear(res);
	return ok;
}

/* Partitions this apply has just created: their bounds are known already. */
static void
apply_add_leaves(apply *a, const partition_set *set)
{
	for (int i = 0; i < set->count; i++)
	{
		const partition_bound *p = &set->items[i];
		leaf		l = {.lower = p->binary_from, .upper = p->binary_to, .id = a->next_leaf_id++,
		.qname = ident_qualified(a->o.schema, p->name)};

		ARRAY_PUSH(a->leaves, a->nleaves, l);
		a->lower = l.lower < a->lower ? l.lower : a->lower;
		a->upper = l.upper > a->upper ? l.upper : a->upper;
		a->npartitions++;
	}
	qsort(a->leaves, (size_t) a->nleaves, sizeof(leaf), apply_leaf_order);
}

/* The leaf that holds a partition value, or NULL (no bounds, DEFAULT, a gap). */
static const leaf *
apply_leaf_for(const apply *a, const pgout_value *v)
{
	int64_t		x;
	int			lo = 0, hi = a->nleaves - 1;

	if (!apply_partition_value(a, v, &x))
		return NULL;
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		const leaf *l = &a->leaves[mid];

		if (x < l->lower)
			hi = mid - 1;
		else if (x >= l->upper)
			lo = mid + 1;
		else
			return l;
	}
	return NULL;
}

static int
apply_target_of(const apply *a, const pgout_value *v)
{
	const leaf *l = apply_leaf_for(a, v);

	return l ? l->id : TARGET_PARENT;
}

/*
 * Create the partitions that reach a value beyond the covered range, next to
 * the existing ones and as wide as --interval.  Runs outside the pipeline,
 * in the open target transaction, so they commit with the row that needs them.
 */
static bool
apply_cover(apply *a, int64_t value)
{
	partition_set set;
	bool		unchanged = false;
	bool		ok;

	if (!apply_leave_pipeline(a))
		return false;
	/* Someone else's new partition may cover the value, or hold the range. */
	ok = apply_partitions_unchanged(a, &unchanged) && (unchanged || apply_read_bounds(a));
	if (ok && a->have_bounds && !a->has_default_partition && (value < a->lower || value >= a->upper))
	{
		int64_t		covered[2] = {a->lower, a->upper};

		ok = partition_extend(a->db, a->o.schema, a->o.table, a->qshadow, a->o.partition_column,
							  a->partition_type, a->o.interval, &value, NULL, covered, &set);
		if (ok)
		{
			for (int i = 0; i < set.count; i++)
				log_info("created partition \"%s.%s\" for a row beyond the existing partitions",
						 a->o.schema, set.items[i].name);
			a->stats.partitions_created += set.count;
			apply_add_leaves(a, &set);
			partition_set_free(&set);
		}
	}
	return apply_enter_pipeline(a) && ok;
}

/* Whether a binary partition value is -infinity or infinity (dates hold them in 32 bits). */
static bool
apply_value_infinite(const apply *a, int64_t v)
{
	if (a->partition_type == CATALOG_DATEOID)
		return v == INT32_MIN || v == INT32_MAX;
	return !catalog_integer_type(a->partition_type) && (v == INT64_MIN || v == INT64_MAX);
}

/*
 * Make sure a new row's partition value has a partition: with a DEFAULT
 * partition it always has; else one is created next to the others.  A
 * failure names the row and its place in the stream.
 */
static bool
apply_check_partition(apply *a, const pgout_tuple *t, const char *what, lsn_t lsn)
{
	int64_t		v;
	bool		infinite;
	char		at[LSN_TEXT_SIZE];
	char	   *key;

	if (a->has_default_partition || a->part >= t->ncols ||
		!apply_partition_value(a, &t->values[a->part], &v))
		return true;
	if (v >= a->lower && v < a->upper)
		return true;
	infinite = apply_value_infinite(a, v);
	if (!infinite && apply_cover(a, v))
		return true;
	key = apply_describe_key(a, t);
	if (infinite)
		log_error("the %s of the row with key %s at %s in \"%s.%s\" sets \"%s\" to %sinfinity, "
				  "which no partition can hold", what, key, lsn_format(lsn, at), a->o.schema,
				  a->o.table, a->o.partition_column, v < 0 ? "-" : "");
	else
		log_error("the %s of the row with key %s at %s in \"%s.%s\" has no partition for its "
				  "\"%s\"", what, key, lsn_format(lsn, at), a->o.schema, a->o.table,
				  a->o.partition_column);
	log_hint("The migration was planned with --no-default-partition. Abort it (pgrepart abort) "
			 "and run it again with a DEFAULT partition, which takes such rows.");
	free(key);
	return false;
}

/* ---- statements ---- */

static void
apply_column_list(const apply *a, buf *b)
{
	buf_append_char(b, '(');
	for (int i = 0; i < a->rel->ncols; i++)
	{
		if (i > 0)
			buf_append(b, ", ");
		ident_quote(b, a->rel->columns[i].name);
	}
	buf_append_char(b, ')');
}

/* "k1 = $n AND k2 = $n+1" for the key columns, numbering from first. */
static void
apply_key_condition(apply *a, buf *b, int first)
{
	for (int i = 0; i < a->nkey; i++)
	{
		if (i > 0)
			buf_append(b, " AND ");
		ident_quote(b, a->rel->columns[a->key[i]].name);
		buf_appendf(b, " = $%d", first + i);
	}
}

/*
 * The name of the prepared statement of a kind ('i'nsert, 'u'pdate with a
 * SET list mask, 'd'elete) on a target (a leaf's id or the parent), prepared
 * on first use.  Parameters: the inserted row, or the SET values, then the
 * key, then (by_part, the parent only) the partition value.  Batches ('U'
 * with the keep mask, 'D') are built by apply_batch_sql.
 */
static bool
apply_statement(apply *a, char kind, int target, bool by_part, const char *mask, char *name)
{
	buf		   *b = &a->sql;
	const char *qtarget = a->qshadow;
	prepared	s = {kind, target, by_part, NULL, ""};
	int			nparams = 0;
	Oid		   *types = NULL;
	bool		ok;

	for (int i = 0; i < a->nstatements; i++)
	{
		const prepared *t = &a->statements[i];

		if (t->kind == kind && t->target == target && t->by_part == by_part &&
			(mask == NULL || strcmp(t->mask, mask) == 0))
		{
			memcpy(name, t->name, sizeof(t->name));
			return true;
		}
	}
	for (int i = 0; i < a->nleaves; i++)
		if (a->leaves[i].id == target)
			qtarget = a->leaves[i].qname;

	buf_reset(b);
	if (kind == 'I' || kind == 'U' || kind == 'D')
	{
		types = xcalloc((size_t) 2 * a->rel->ncols + a->nkey + 2, sizeof(Oid));
		nparams = apply_batch_sql(a, kind, by_part, mask, b, types);
	}
	else if (kind == 'i')
	{
		buf_appendf(b, "INSERT INTO %s ", qtarget);
		apply_column_list(a, b);
		buf_append(b, " OVERRIDING SYSTEM VALUE VALUES (");
		for (int i = 0; i < a->rel->ncols; i++)
			buf_appendf(b, "%s$%d", i ? ", " : "", ++nparams);
		buf_append_char(b, ')');
	}
	else
	{
		if (kind == 'u')
		{
			buf_appendf(b, "UPDATE %s SET ", qtarget);
			for (int i = 0; i < a->rel->ncols; i++)
			{
				if (mask[i] != '1')
					continue;
				if (nparams > 0)
					buf_append(b, ", ");
				ident_quote(b, a->rel->columns[i].name);
				buf_appendf(b, " = $%d", ++nparams);
			}
		}
		else
			buf_appendf(b, "DELETE FROM %s", qtarget);
		buf_append(b, " WHERE ");
		apply_key_condition(a, b, nparams + 1);
		nparams += a->nkey;
		if (by_part)
		{
			buf_append(b, " AND ");
			ident_quote(b, a->o.partition_column);
			buf_appendf(b, " = $%d", ++nparams);
		}
	}
	s.mask = mask ? xstrdup(mask) : NULL;
	snprintf(s.name, sizeof(s.name), "pgrepart_%c%d", kind, a->nstatements);
	ARRAY_PUSH(a->statements, a->nstatements, s);
	memcpy(name, s.name, sizeof(s.name));
	ok = apply_sent(a, PQsendPrepare(a->db->conn, s.name, b->data, nparams, types), EXPECT_OK,
					"prepared statement", a->pending_lsn, NULL);
	free(types);
	return ok;
}

/* ---- pending changes: the insert run and the batches of updates and deletes ---- */

/* A batch of updates or deletes goes at this many rows; the insert run waits longer. */
#define BATCH_MAX_ROWS 1000
#define RUN_MAX_ROWS 10000
/* A run shorter than this goes one INSERT per row when it cannot go in arrays. */
#define COPY_MIN_ROWS 16
#define BATCH_MAX_BYTES ((size_t) 8 * 1024 * 1024)
#define BOOLOID 16
#define BOOLARRAYOID 1000

typedef struct batch_row
{
	bool		dead;
	lsn_t		lsn;
	uint64_t	hash[2];		/* the old key's and the new key's */
	bool		exact;
	const char *key;			/* old */
	const char *newkey;
} batch_row;

/* Release what a batch's rows and index hold (not the batch itself). */
static void
apply_batch_release(batch *b)
{
	buf_free(&b->rows);
	free(b->slot_hash);
	free(b->slot_row);
}

static void
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
	return b->kind == 'i' ? &a->run_keys : &a->batch_keys;
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
apply_batch_width(const apply *a, char kind, bool by_part)
{
	if (kind == 'i')
		return a->rel->ncols;
	return kind == 'u' ? a->rel->ncols + a->nkey + 1 : a->nkey + (by_part ? 1 : 0);
}

/* The relation column that value j of a batch row belongs to. */
static int
apply_batch_column(const apply *a, char kind, int j)
{
	int			first_key = kind == 'u' ? a->rel->ncols : 0;

	if (kind == 'i' || j < first_key)
		return j;
	if (j < first_key + a->nkey)
		return a->key[j - first_key];
	return a->part;
}

/* Whether the values can travel in arrays: binary send format or NULL only. */
static bool
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
	if (b->kind != 'd')
		apply_batch_index(b, row->hash[1], at);
	keyset_add(apply_keys_of(a, b), row->hash[0]);
	keyset_add(apply_keys_of(a, b), row->hash[1]);
}

static void
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

/* ---- inserts ---- */

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
			apply_statement(a, 'i', apply_target_of(a, &vals[a->part]), false, NULL, name);
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

static bool
apply_insert(apply *a, const pgout_tuple *t, lsn_t lsn)
{
	const pgout_value **vals;
	batch_row	row;
	uint64_t	h;
	char	   *key;

	if (t->ncols != a->rel->ncols)
	{
		log_error("insert at %" PRIX64 " carries %d columns, the relation has %d", lsn, t->ncols,
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
			log_error("insert at %" PRIX64 " has an unchanged-TOAST marker, which only updates carry",
					  lsn);
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
	wire_put_u32(out, 1);		/* dimensions */
	wire_put_u32(out, nulls);
	wire_put_u32(out, element);
	wire_put_u32(out, (uint32_t) n);
	wire_put_u32(out, 1);		/* lower bound */
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
apply_batch_rows_from(const apply *a, char k, bool by_part, const char *keep, buf *b, Oid *types)
{
	int			nvalues = apply_batch_width(a, k, by_part);
	int			n = 0;

	buf_append(b, "ROWS FROM (");
	for (int j = 0; j < nvalues; j++)
	{
		types[n] = a->array_types[apply_batch_column(a, k, j)];
		buf_appendf(b, "%spg_catalog.unnest($%d)", j > 0 ? ", " : "", ++n);
	}
	for (int i = 0; k == 'u' && i < a->rel->ncols; i++)
		if (keep[i] == '1')
		{
			types[n] = BOOLARRAYOID;
			buf_appendf(b, ", pg_catalog.unnest($%d)", ++n);
		}
	buf_append(b, ") WITH ORDINALITY AS v(");
	for (int j = 0; j < nvalues; j++)
		buf_appendf(b, "c%d, ", j + 1);
	for (int i = 0; k == 'u' && i < a->rel->ncols; i++)
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

static void
apply_batch_guard(buf *b)
{
	buf_append(b, "SELECT r.ord FROM r UNION ALL "
			   "SELECT pg_catalog.int8('" BATCH_GUARD_TEXT "' || "
			   "(SELECT g.g || ' touched ' || pg_catalog.count(x.ord) || ' rows' "
			   " FROM pg_catalog.generate_series(1, pg_catalog.cardinality($1)) AS g(g) "
			   " LEFT JOIN r AS x ON x.ord = g.g GROUP BY g.g HAVING pg_catalog.count(x.ord) <> 1 "
			   " ORDER BY g.g LIMIT 1)) "
			   "FROM (SELECT pg_catalog.count(*) AS n FROM r) AS c "
			   "WHERE c.n <> pg_catalog.cardinality($1)");
}

/*
 * The statement of a batch ('I'nserts, 'U'pdates, 'D'eletes) over the arrays of
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
static int
apply_batch_sql(const apply *a, char kind, bool by_part, const char *keep, buf *b, Oid *types)
{
	int			n;

	if (kind == 'I')
	{
		buf_appendf(b, "INSERT INTO %s ", a->qshadow);
		apply_column_list(a, b);
		buf_append(b, " OVERRIDING SYSTEM VALUE SELECT ");
		for (int i = 0; i < a->rel->ncols; i++)
			buf_appendf(b, "%sv.c%d", i ? ", " : "", i + 1);
		buf_append(b, " FROM ");
		return apply_batch_rows_from(a, 'i', false, keep, b, types);
	}
	if (kind == 'D' && by_part)
	{
		buf_appendf(b, "WITH r AS (DELETE FROM %s AS t USING ", a->qshadow);
		n = apply_batch_rows_from(a, 'd', true, keep, b, types);
		buf_append(b, " WHERE ");
		apply_batch_match(a, 0, true, b);
		buf_append(b, " RETURNING v.ord) ");
		apply_batch_guard(b);
		return n;
	}
	if (kind == 'D')
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
		n = apply_batch_rows_from(a, 'd', false, keep, b, types);
		buf_appendf(b, "), r AS (DELETE FROM %s AS t USING f WHERE ", a->qshadow);
		apply_batch_match_as(a, "t", "f", 0, false, b);
		apply_batch_in_part(a, "f", b);
		buf_append(b, " RETURNING f.ord) ");
		apply_batch_guard(b);
		return n;
	}
	if (by_part)
	{
		buf_appendf(b, "WITH r AS (UPDATE %s AS t SET ", a->qshadow);
		apply_batch_set_list(a, keep, b);
		buf_append(b, " FROM ");
		n = apply_batch_rows_from(a, 'u', true, keep, b, types);
		buf_append(b, " WHERE ");
		apply_batch_match(a, a->rel->ncols, true, b);
		buf_append(b, " RETURNING v.ord) ");
		apply_batch_guard(b);
		return n;
	}
	buf_append(b, "WITH v AS MATERIALIZED (SELECT * FROM ");
	n = apply_batch_rows_from(a, 'u', true, keep, b, types);
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
	apply_batch_guard(b);
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
static bool
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
		else if (b->kind == 'u' && a->guarded[c] && v->kind != 'u')
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
		if (b->kind == 'i')
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
static bool
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
apply_change_name(char kind, bool plural)
{
	if (kind == 'i')
		return plural ? "inserts" : "insert";
	if (kind == 'u')
		return plural ? "updates" : "update";
	return plural ? "deletes" : "delete";
}

/* Send a batch as one statement; the expectation takes its rows. */
static bool
apply_flush_batch(apply *a, batch *b)
{
	int			nrows = 0;
	int			nv = b->nvalues;
	pgout_value *vals;
	char	   *keep = NULL;
	int			nkeep = 0;
	int			nparams = 0;
	size_t	   *offsets;
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
	if (b->kind == 'u')
	{
		keep = xmalloc((size_t) a->rel->ncols + 1);
		for (int c = 0; c < a->rel->ncols; c++)
		{
			keep[c] = '0';
			for (int i = 0; i < nrows && keep[c] == '0'; i++)
				if (vals[(size_t) i * nv + c].kind == 'u')
					keep[c] = '1';
			nkeep += keep[c] == '1';
		}
		keep[a->rel->ncols] = '\0';
	}
	ok = apply_statement(a, b->kind == 'u' ? 'U' : b->kind == 'i' ? 'I' : 'D', TARGET_PARENT,
						 b->by_part, keep, name);

	/* One array per value, then the keep flags, all in one buffer. */
	buf_init(&arrays);
	offsets = xcalloc((size_t) nv + (size_t) nkeep + 1, sizeof(size_t));
	for (int j = 0; j < nv; j++)
	{
		offsets[nparams++] = arrays.len;
		apply_put_array(&arrays, a->rel->columns[apply_batch_column(a, b->kind, j)].type_oid,
						&vals[j], nrows, nv);
	}
	for (int c = 0; keep != NULL && c < a->rel->ncols; c++)
	{
		if (keep[c] != '1')
			continue;
		offsets[nparams++] = arrays.len;
		wire_put_u32(&arrays, 1);
		wire_put_u32(&arrays, 0);
		wire_put_u32(&arrays, BOOLOID);
		wire_put_u32(&arrays, (uint32_t) nrows);
		wire_put_u32(&arrays, 1);
		for (int i = 0; i < nrows; i++)
		{
			wire_put_u32(&arrays, 1);
			wire_put_u8(&arrays, vals[(size_t) i * nv + c].kind == 'u');
		}
	}
	offsets[nparams] = arrays.len;
	apply_reserve_params(a, nparams);
	for (int j = 0; j < nparams; j++)
	{
		a->values[j] = arrays.data + offsets[j];
		a->lengths[j] = (int) (offsets[j + 1] - offsets[j]);
		a->formats[j] = 1;
	}

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
	free(offsets);
	free(keep);
	free(vals);
	if (!ok)
	{
		apply_batch_free(sent);
		return false;
	}
	apply_expect(a, EXPECT_BATCH, apply_change_name(sent->kind, true), first, NULL, NULL);
	a->expect[a->nexpect - 1].batch = sent;
	a->stats.batches++;
	/* On its way now, so the server works on it while the next one is built. */
	if (PQflush(a->db->conn) < 0)
	{
		db_log_error(a->db->conn, a->db->label, "send a batch to the shadow", NULL,
					 a->db->sqlstate);
		return false;
	}
	return a->nexpect < a->o.pipeline_depth || apply_sync(a);
}

/* Deletes before updates: deleting earlier only frees unique values. */
static bool
apply_flush_batches(apply *a)
{
	keyset_clear(&a->batch_keys);
	return apply_flush_batch(a, &a->deletes_by_part) && apply_flush_batch(a, &a->deletes_by_key) &&
		apply_flush_batch(a, &a->updates);
}

/* Send everything that waits, in the order that keeps unique indexes satisfied. */
static bool
apply_flush_pending(apply *a)
{
	keyset_clear(&a->run_keys);
	return apply_flush_batches(a) && apply_flush_run(a);
}

/* A batch is full: send the batches (not the inserts, which may wait longer). */
static bool
apply_batch_room(apply *a, const batch *b)
{
	if (b->nrows < BATCH_MAX_ROWS && b->rows.len < BATCH_MAX_BYTES)
		return true;
	return apply_flush_batches(a);
}

/* Repeat an update by key alone after the sync; takes key and r. */
static void
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
static bool
apply_check_batch(apply *a, const batch *b, PGresult *res, bool *logged)
{
	int			n = PQntuples(res);
	int		   *hits;
	bool		ok = true;

	if (b->kind == 'i')
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
		if (hits[i] != 1)
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
static bool
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

	if (apply_statement(a, 'u', TARGET_PARENT, false, mask, name))
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

static bool
apply_update(apply *a, const pgout_message *m, lsn_t lsn)
{
	const pgout_tuple *newt = &m->update.newtuple;
	const pgout_tuple *oldt = m->update.oldkind ? &m->update.oldtuple : newt;
	/* The old partition value is known when the old tuple carries it. */
	bool		exact = m->update.oldkind == 'O' || a->identity_has_part;
	const pgout_value *part = m->update.oldkind && exact ? &oldt->values[a->part] :
		&newt->values[a->part];
	const pgout_value **vals;
	char	   *mask;
	char		name[32];
	int			target;
	char	   *key;
	char	   *newkey;
	uint64_t	hash[2];
	retry	   *r = NULL;
	int			nvals = 0;
	bool		ok = false;

	if (newt->ncols != a->rel->ncols || oldt->ncols != a->rel->ncols)
	{
		log_error("update at %" PRIX64 " does not carry the relation's %d columns", lsn,
				  a->rel->ncols);
		return false;
	}
	for (int i = 0; i < a->nkey; i++)
	{
		if (oldt->values[a->key[i]].kind == 'u' || oldt->values[a->key[i]].kind == 'n')
		{
			log_error("update at %" PRIX64 " does not carry the old value of key column \"%s\"",
					  lsn, a->rel->columns[a->key[i]].name);
			return false;
		}
	}
	if (!apply_check_partition(a, newt, "update", lsn))
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
	{
		free(key);
		free(newkey);
		return false;
	}
	if (apply_fold_update(a, key, newkey, hash, newt))
	{
		free(key);
		free(newkey);
		return true;
	}
	if (!apply_claim_key(a, key, NULL))
	{
		free(key);
		free(newkey);
		return false;
	}

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
	if (apply_batchable(a, vals, nvals))
	{
		batch_row	row = {false, lsn, {hash[0], hash[1]}, exact, key, newkey};

		/* A batch either knows every row's partition or looks further for each. */
		if (a->updates.nrows > 0 && a->updates.by_part != exact && !apply_flush_batches(a))
		{
			free(vals);
			free(key);
			free(newkey);
			return false;
		}
		a->updates.by_part = exact;
		apply_batch_add(a, &a->updates, &row, vals, nvals);
		free(vals);
		free(key);
		free(newkey);
		return apply_batch_room(a, &a->updates);
	}
	free(vals);
	free(newkey);

	/*
	 * Alone, in source order.  Where the row is: in the new row's leaf when
	 * it stays there (the old partition value is known and in the same
	 * leaf), or, without the old value, probably there; otherwise found
	 * through the parent by key and old partition value, which also moves
	 * it.  A guess that finds nothing is repeated through the parent by key
	 * alone after the sync; in order, the key alone is the only look.
	 */
	if (!apply_flush_pending(a))
	{
		free(key);
		return false;
	}
	mask = xmalloc((size_t) a->rel->ncols + 1);
	for (int i = 0; i < newt->ncols; i++)
		mask[i] = newt->values[i].kind == 'u' ? '0' : '1';
	mask[newt->ncols] = '\0';
	if (!exact && apply_in_order(a))
		return apply_update_by_key(a, oldt, newt, mask, key, lsn);
	target = apply_target_of(a, &newt->values[a->part]);
	if (exact && target != TARGET_PARENT && apply_target_of(a, part) != target)
		target = TARGET_PARENT;
	if (apply_statement(a, 'u', target, target == TARGET_PARENT, mask, name))
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
	free(key);
	free(mask);
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
		log_error("delete at %" PRIX64 " does not carry the relation's %d columns", lsn,
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

	if (!apply_flush_pending(a) || !apply_statement(a, 'd', target, by_part, NULL, name))
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

/* ---- relations ---- */

bool
apply_relation_matches(const pgout_relation *rel, char *const *names, const Oid *types, int ncolumns)
{
	const char *problem = NULL;
	const char *column = NULL;
	int			n = rel->ncols < ncolumns ? rel->ncols : ncolumns;

	for (int i = 0; i < n && problem == NULL; i++)
	{
		if (strcmp(rel->columns[i].name, names[i]) != 0)
		{
			problem = "renamed, added or dropped";
			column = rel->columns[i].name;
		}
		else if (rel->columns[i].type_oid != types[i])
		{
			problem = "retyped";
			column = rel->columns[i].name;
		}
	}
	if (problem == NULL && rel->ncols != ncolumns)
	{
		problem = rel->ncols > ncolumns ? "added" : "dropped";
		column = rel->ncols > ncolumns ? rel->columns[n].name : names[n];
	}
	if (problem == NULL)
		return true;
	log_error("table \"%s.%s\" changed during the migration: column \"%s\" was %s",
			  rel->nspname, rel->relname, column, problem);
	log_detail("The shadow was built for the table's columns when the migration started.");
	log_hint("Abort the migration (pgrepart abort), then plan and run it again.");
	return false;
}

/* The stream's relation must carry exactly the shadow's columns. */
static bool
apply_check_relation(apply *a, const pgout_relation *rel)
{
	if (apply_relation_matches(rel, a->columns, a->types, a->ncolumns))
		return true;
	strcpy(a->db->sqlstate, "42P17");
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
	a->identity_has_part = rel->columns[a->part].is_key;
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
static bool
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
		log_error("a %s message at %" PRIX64 " came before any Relation message",
				  pgout_kind_name(m->kind), lsn);
		return false;
	}
	/*
	 * Inserts wait in a run while updates and deletes of other keys go
	 * ahead: moving an insert later cannot break a unique key (the value it
	 * takes was free at its place in source order, and nothing before it can
	 * take the value meanwhile without touching its key, which sends the run
	 * first).  A truncate or a new relation sends them first.
	 */
	if ((m->kind == PGOUT_TRUNCATE || m->kind == PGOUT_RELATION) && !apply_flush_pending(a))
		return false;

	switch (m->kind)
	{
		case PGOUT_BEGIN:
			a->in_source_txn = true;
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
		case PGOUT_TYPE:
		case PGOUT_ORIGIN:
		case PGOUT_MESSAGE:
			/* Types travel in binary; changes of any origin apply alike. */
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
	if (a->o.batch_transactions <= 0)
		a->o.batch_transactions = 2000;
	if (a->o.pipeline_depth <= 0)
		a->o.pipeline_depth = 1000;
	if (a->o.copy_threshold <= 0)
		a->o.copy_threshold = RUN_MAX_ROWS;
	a->qshadow = ident_qualified(o->schema, o->shadow);
	buf_init(&a->sql);
	a->inserts.kind = 'i';
	a->updates.kind = 'u';
	a->deletes_by_part.kind = 'd';
	a->deletes_by_part.by_part = true;
	a->deletes_by_key.kind = 'd';
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
