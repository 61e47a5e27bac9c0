/*
 * apply_pipeline.c: the apply's statements in libpq's pipeline mode.
 *
 * Everything sent to the target goes through the pipeline: BEGIN, the
 * changes, the origin's xact setup and COMMIT are queued, with a sync every
 * pipeline_depth statements, and each queued statement has an expectation
 * (how many rows it must touch, and which key and LSN to name if it does
 * not).  COPY cannot run in a pipeline, so a run of inserts long enough for
 * COPY drains the pipeline, leaves pipeline mode for the COPY and enters it
 * again, all inside the same target transaction.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/apply_internal.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/sqlstate.h"

void
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


/* Drop the first n expectations and what they hold. */
void
apply_free_expectations(apply *a, int n)
{
	for (int i = 0; i < n; i++)
	{
		free(a->expect[i].key);
		apply_retry_free(a->expect[i].retry);
		if (a->expect[i].batch != NULL)
			a->held_bytes -= a->expect[i].batch->rows.len;
		apply_batch_free(a->expect[i].batch);
	}
	if (a->nexpect > n)
		memmove(a->expect, a->expect + n, sizeof(expectation) * (size_t) (a->nexpect - n));
	a->nexpect -= n;
}

void
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
retry *
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

bool
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

bool
apply_sent(apply *a, int sent, expect_kind kind, const char *what, lsn_t lsn, char *key)
{
	return apply_sent_retry(a, sent, kind, what, lsn, key, NULL);
}


/*
 * Note that the next statement touches key.  If a pending insert holds it,
 * everything pending goes first; if only a batch does, the batches go; if a
 * single UPDATE that may be repeated holds it, sync first.  Hashes only: a
 * collision costs a flush or a sync, never a wrong order.
 */
bool
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
bool
apply_send_plain(apply *a, const char *sql, const char *what)
{
	return apply_queue(a, sql, 0, NULL, NULL, NULL, what);
}

/* A change that should have hit one row hit another number: stop, naming it. */
void
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
	a->failure = APPLY_FAILURE_MISS;
	*logged = true;
}


/* The source transaction being applied goes one change per statement (apply_replay_until). */
bool
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

	if (state == NULL || strcmp(state, ERRCODE_UNIQUE_VIOLATION) != 0 || e->final <= a->o.in_order_until)
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
void
apply_hint_gap(const apply *a, const PGresult *res)
{
	if (strcmp(a->db->sqlstate, ERRCODE_CHECK_VIOLATION) == 0 && !a->has_default_partition &&
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
	if (rows == 0 && a->o.tolerate_missing)
	{
		a->stats.missed++;
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
int64_t
apply_changes_sent(const apply *a)
{
	return a->stats.inserts + a->stats.updates + a->stats.deletes;
}

/*
 * A target transaction committed: the origin's progress is lsn, and changes
 * row changes (a count as apply_changes_sent gives it) are durable.
 */
void
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
bool
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
bool
apply_collect(apply *a)
{
	bool		ok;

	apply_take_inflight(a, true, &ok);
	return ok;
}

bool
apply_settle(apply *a)
{
	return apply_collect(a);
}

static bool apply_run_retries(apply *a, bool ok);

/* Sync the pipeline and check every result queued since the last sync. */
bool
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

			ok = apply_statement(a, CHANGE_UPDATE, TARGET_PARENT, false, r->mask, name) &&
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
bool
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

bool
apply_enter_pipeline(apply *a)
{
	if (!PQenterPipelineMode(a->db->conn))
	{
		db_log_error(a->db->conn, a->db->label, "enter pipeline mode", NULL, a->db->sqlstate);
		return false;
	}
	return true;
}

bool
apply_begin_target(apply *a)
{
	if (a->in_target_txn)
		return true;
	a->in_target_txn = true;
	return apply_send_plain(a, "BEGIN", "start of a batch");
}

