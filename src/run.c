/*
 * run.c: pgrepart run, the migration driver; see run.h.
 *
 * Each phase ends by committing its state row in the same transaction as
 * its work where it can (the copy, the index build), so a crash leaves
 * either the phase done and recorded or neither.  The slot is the one
 * exception: it is created outside any transaction, so a crash between its
 * creation and the copy's commit leaves a slot the next run drops and
 * creates again.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpqtypes.h>

#include "pgrepart/apply.h"
#include "pgrepart/backfill.h"
#include "pgrepart/backfill_filter.h"
#include "pgrepart/catalog.h"
#include "pgrepart/ident.h"
#include "pgrepart/json.h"
#include "pgrepart/fault.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/partition.h"
#include "pgrepart/pgout.h"
#include "pgrepart/run.h"
#include "pgrepart/spool.h"
#include "pgrepart/state.h"
#include "pgrepart/stream.h"
#include "pgrepart/verify.h"

static bool
run_stop_requested(const run_options *ro)
{
	return ro->stop != NULL && *ro->stop;
}

/* Plan, record the migration, create the publication and the shadow: one transaction. */
static run_result
run_prepare(db *d, const char *conninfo, const char *schema, const char *table,
			const plan_options *po, state_migration **m)
{
	plan	   *p = plan_build(d, conninfo, schema, table, po);
	run_result	result = RUN_FAILED;
	buf			sql;

	buf_init(&sql);
	if (p == NULL)
		goto cleanup;
	if (plan_count_findings(p, FINDING_BLOCK) > 0)
	{
		plan_log_blocked(p);
		result = RUN_BLOCKED;
		goto cleanup;
	}
	if (!db_exec(d, "start the preparation", "BEGIN") || !state_create(d, p, m))
		goto cleanup;
	buf_append(&sql, "CREATE PUBLICATION ");
	ident_quote(&sql, (*m)->publication);
	buf_append(&sql, " FOR TABLE ");
	ident_quote_qualified(&sql, p->table->schema, p->table->name);
	if (!db_exec(d, "create the publication", sql.data) ||
		!state_run_statements(d, *m, PLAN_PHASE_TABLE, NULL, NULL) ||
		!state_run_statements(d, *m, PLAN_PHASE_PARTITION, NULL, NULL) ||
		!state_set_phase(d, *m, STATE_PREPARED, LSN_INVALID) ||
		!db_exec(d, "commit the preparation", "COMMIT"))
		goto cleanup;
	log_info("prepared the migration of \"%s.%s\": shadow \"%s\", %d partitions",
			 p->table->schema, p->table->name, p->shadow_name, p->partitions.count);
	result = RUN_DONE;

cleanup:
	if (result != RUN_DONE)
	{
		db_exec(d, "roll back the preparation", "ROLLBACK");
		state_migration_free(*m);
		*m = NULL;
	}
	buf_free(&sql);
	plan_free(p);
	return result;
}

/* "a, b, c": the shadow's columns the copy fills (not generated ones). */
static bool
run_copy_columns(db *d, const state_migration *m, buf *out)
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
static bool
run_copy(db *d, const char *conninfo, state_migration *m)
{
	stream		s;
	lsn_t		consistent = LSN_INVALID;
	char	   *snapshot = NULL;
	bool		ok = false;
	buf			sql, columns;
	char		lsn[LSN_TEXT_SIZE];

	buf_init(&sql);
	buf_init(&columns);
	memset(&s, 0, sizeof(s));
	if (!stream_connect(&s, conninfo) ||
		!stream_create_fresh_slot(&s, d, m->slot, true, &consistent, &snapshot))
		goto cleanup;
	if (!run_copy_columns(d, m, &columns))
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

/* While indexes build, the spooler keeps reading the stream. */
typedef struct run_pump
{
	spool	   *sp;
	bool		truncated;
} run_pump;

static bool
run_pump_spool(void *arg)
{
	run_pump   *p = arg;

	return spool_pump(p->sp, 50, &p->truncated) && !p->truncated;
}

/*
 * The key and the other indexes, after the copy.  Unique constraints wait
 * for consistency (run_build_unique); foreign keys wait for the cutover: a
 * cascade on a referenced table would delete shadow rows before the stream
 * brings the same deletes.  *truncated when the spooler saw a TRUNCATE.
 */
static bool
run_build_indexes(db *d, state_migration *m, spool *sp, bool *truncated)
{
	run_pump	pump = {sp, false};

	log_info("building the shadow's keys and indexes");
	fault_point("index");
	if (!db_exec(d, "start the index build", "BEGIN") ||
		!db_exec(d, "raise maintenance_work_mem", "SET LOCAL maintenance_work_mem = '512MB'") ||
		!state_run_statements(d, m, PLAN_PHASE_INDEX, sp ? run_pump_spool : NULL, &pump) ||
		!state_set_phase(d, m, STATE_INDEXED, LSN_INVALID) ||
		!db_exec(d, "commit the index build", "COMMIT"))
	{
		db_exec(d, "roll back the index build", "ROLLBACK");
		*truncated = pump.truncated;
		return false;
	}
	return true;
}

/* One streaming session: connect, apply until stopped or the connection fails. */
typedef enum session_end
{
	SESSION_SWAPPED,			/* the cutover is done */
	SESSION_REHEARSED,			/* the cutover was rehearsed and rolled back */
	SESSION_DIFFERENT,			/* the check before the swap found a difference */
	SESSION_STOPPED,
	SESSION_LOST,				/* a connection broke: reconnect */
	SESSION_IN_ORDER,			/* start again from the origin, in source order up to a point */
	SESSION_FAILED
} session_end;

static void
run_log_progress(const stream *s, const apply *a, int64_t started_us, int64_t base_changes,
				 bool json)
{
	const apply_stats *st = apply_get_stats(a);
	int64_t		changes = st->inserts + st->updates + st->deletes;
	double		secs = (double) (lsn_monotonic_us() - started_us) / 1e6;
	lsn_t		done = apply_committed(a);
	char		lsn[LSN_TEXT_SIZE];

	/*
	 * Behind: the WAL the server has sent beyond what is durable here, and
	 * how old the last durable source commit is while anything is left.
	 */
	uint64_t	bytes = s->server_end > s->flushed ? s->server_end - s->flushed : 0;
	double		seconds = bytes > 0 && st->last_commit_time > 0 ?
		(double) (lsn_now_pg_time() - st->last_commit_time) / 1e6 : 0.0;

	log_info("applied %" PRId64 " changes in %" PRId64 " transactions (%.0f changes/s), "
			 "at %s, %" PRIu64 " bytes and %.1f s behind", changes, st->transactions,
			 secs > 0 ? (double) (changes - base_changes) / secs : 0.0, lsn_format(done, lsn),
			 bytes, seconds < 0 ? 0.0 : seconds);
	if (json)
	{
		json_writer w;
		buf			out;

		buf_init(&out);
		json_init(&w, &out);
		json_begin_object(&w);
		json_kv_string(&w, "event", "apply_progress");
		json_kv_int(&w, "changes", changes);
		json_kv_int(&w, "transactions", st->transactions);
		json_kv_double(&w, "changes_per_second",
					   secs > 0 ? (double) (changes - base_changes) / secs : 0.0);
		json_kv_string(&w, "applied_lsn", lsn);
		json_kv_int(&w, "behind_bytes", (int64_t) bytes);
		json_kv_double(&w, "behind_seconds", seconds < 0 ? 0.0 : seconds);
		json_kv_int(&w, "batch_statements", st->batches);
		json_kv_int(&w, "folded", st->folded);
		json_kv_int(&w, "copied_rows", st->copied_rows);
		json_end_object(&w);
		printf("%s\n", out.data);
		fflush(stdout);
		buf_free(&out);
	}
}

/*
 * Unique constraints other than the key wait until the shadow is
 * consistent: while chunks copied at different moments are reconciled, a
 * row whose key changed can briefly be there twice.  Comments come last, as
 * some are on those constraints.
 */
static bool
run_build_unique(db *control, state_migration *m, apply *a, stream *s)
{
	if (!apply_commit(a))
		return false;
	stream_confirm(s, apply_committed(a));
	log_info("the shadow is consistent: building its unique constraints");
	if (!db_exec(control, "start building the unique constraints", "BEGIN") ||
		!db_exec(control, "raise maintenance_work_mem", "SET LOCAL maintenance_work_mem = '512MB'") ||
		!state_run_statements(control, m, PLAN_PHASE_UNIQUE, NULL, NULL) ||
		!state_run_statements(control, m, PLAN_PHASE_COMMENT, NULL, NULL) ||
		!state_set_phase(control, m, STATE_SYNCED, LSN_INVALID) ||
		!db_exec(control, "commit the unique constraints", "COMMIT"))
	{
		db_exec(control, "roll back the unique constraints", "ROLLBACK");
		return false;
	}
	return true;
}

/*
 * A live verification under way in a streaming session (docs/design.md,
 * "Verify"): a temporary slot's exported snapshot fixes a consistent point
 * P; the apply goes on up to P exactly, then stops while the shadow is
 * compared with the source read under that snapshot.
 */
typedef struct run_check
{
	int64_t		request;		/* pgrepart.verification id; 0 when none */
	stream		slot;			/* the temporary slot's connection: keeps the snapshot */
	char	   *snapshot;
	lsn_t		point;			/* P: the slot's consistent point */
	int64_t		next_poll_us;
} run_check;

#define RUN_CHECK_POLL_US 2000000
/* The main stream is not read while the slot is created: stay well inside wal_sender_timeout. */
#define RUN_CHECK_SLOT_TIMEOUT_MS 10000

static void
run_check_close(run_check *c)
{
	stream_close(&c->slot);
	free(c->snapshot);
	c->snapshot = NULL;
	c->request = 0;
	c->point = LSN_INVALID;
}

/*
 * Look for a verification request every few seconds; for one, commit what
 * is applied (the slot's creation waits for open transactions, ours too)
 * and create the temporary slot.  False only when the control connection
 * fails.
 */
static bool
run_check_poll(run_check *c, db *control, const char *conninfo, const state_migration *m,
			   apply *a, stream *s, int64_t now)
{
	char		name[IDENT_MAX_BYTES + 1];
	int64_t		request;

	if (c->request != 0 || now < c->next_poll_us)
		return true;
	/*
	 * Only between source transactions, with nothing uncommitted: creating
	 * the slot waits for every open transaction, the apply's own included.
	 */
	if (!apply_commit(a))
		return true;			/* the session's next step reports the failure */
	if (!apply_idle(a))
		return true;
	c->next_poll_us = lsn_monotonic_us() + RUN_CHECK_POLL_US;
	if (!state_pending_verification(control, m, &request))
		return false;
	if (request == 0)
		return true;
	stream_confirm(s, apply_committed(a));
	snprintf(name, sizeof(name), "%s_verify", m->slot);
	memset(&c->slot, 0, sizeof(c->slot));
	if (!stream_connect(&c->slot, conninfo) ||
		!stream_create_slot(&c->slot, name, true, true, RUN_CHECK_SLOT_TIMEOUT_MS, &c->point,
							&c->snapshot))
	{
		bool		busy = strcmp(c->slot.sqlstate, "55P03") == 0;

		run_check_close(c);
		if (busy)
		{
			log_info("live verification waits for transactions in progress; trying again");
			return true;
		}
		return state_finish_verification(control, request, LSN_INVALID, VERIFY_OUTCOME_FAILED,
										 "could not create the temporary replication slot that "
										 "fixes the consistent point; the run's log says why",
										 NULL);
	}
	c->request = request;
	{
		char		text[LSN_TEXT_SIZE];

		log_info("live verification: applying up to the consistent point %s",
				 lsn_format(c->point, text));
	}
	return true;
}

/* While the comparison runs, keep the main stream's walsender from timing out. */
static void
run_check_tick(void *arg)
{
	stream_send_status(arg, false);
}

/* The apply stands exactly at P: compare, record the result, resume. */
static bool
run_check_compare(run_check *c, db *control, const char *conninfo, const state_migration *m,
				  apply *a, stream *s)
{
	verify_options vo = {0};
	char	   *text = NULL, *json = NULL;
	size_t		text_len = 0, json_len = 0;
	FILE	   *text_out = open_memstream(&text, &text_len);
	FILE	   *json_out = open_memstream(&json, &json_len);
	verify_outcome outcome = VERIFY_OUTCOME_FAILED;
	char		lsn[LSN_TEXT_SIZE];
	bool		ok;

	if (text_out == NULL || json_out == NULL)
	{
		log_error("could not allocate the verification report");
		exit(1);
	}
	lsn_format(c->point, lsn);
	if (apply_commit(a))
	{
		stream_confirm(s, apply_committed(a));
		vo.source_conninfo = conninfo;
		vo.source_schema = m->schema;
		vo.source_table = m->table;
		vo.target_schema = m->schema;
		vo.target_table = m->shadow;
		vo.chunk_rows = 1000;
		vo.max_differences = 20;
		vo.source_snapshot = c->snapshot;
		vo.json_out = json_out;
		vo.tick = run_check_tick;
		vo.tick_arg = s;
		log_info("live verification: comparing the shadow with the source at %s", lsn);
		fault_point("verify");
		switch (verify_tables(&vo, text_out))
		{
			case VERIFY_EQUAL:
				outcome = VERIFY_OUTCOME_EQUAL;
				break;
			case VERIFY_DIFFERENT:
				outcome = VERIFY_OUTCOME_DIFFERENT;
				break;
			case VERIFY_FAILED:
				fputs("the comparison failed; the run's log says why\n", text_out);
				break;
		}
	}
	fclose(text_out);
	fclose(json_out);
	if (outcome == VERIFY_OUTCOME_EQUAL)
		log_info("live verification at %s: the shadow equals the source", lsn);
	else if (outcome == VERIFY_OUTCOME_DIFFERENT)
	{
		log_error("live verification at %s: the shadow differs from the source", lsn);
		log_detail("%s", text);
	}
	ok = state_finish_verification(control, c->request, c->point, outcome, text,
								   json_len > 0 ? json : NULL);
	free(text);
	free(json);
	run_check_close(c);
	return ok;
}

/* One streaming session's parts. */
typedef struct run_session
{
	const char *conninfo;
	const catalog_table *t;
	state_migration *m;
	db			target;
	db			control;		/* the source: requests, unique constraints, fetches */
	run_check	check;
	stream		s;
	apply	   *a;
	backfill_filter *filter;
	pgout_decoder dec;
	report	   *report;
	int64_t		verification;	/* the check requested before the swap, 0 none yet */
	bool		verified;		/* ... and found the shadow equal */
	session_end end;			/* how it ends, when a step fails */
	bool		ghost_added;	/* in the source transaction being applied */
} run_session;

static session_end
run_lost_or_failed(const db *d)
{
	return db_lost_connection(d) ? SESSION_LOST : SESSION_FAILED;
}

/*
 * The ghosts the filter began or ended with the message just applied,
 * recorded in the same shadow transaction, so that after a restart they
 * are what the origin's progress says.
 */
static bool
run_record_ghosts(run_session *rs)
{
	state_ghost_change change;
	const buf  *key;
	char		id[16];

	snprintf(id, sizeof(id), "%d", rs->m->id);
	while (backfill_filter_ghost_change(rs->filter, &change, &key))
	{
		const char *values[2] = {id, key->data};
		int			lengths[2] = {0, (int) key->len};
		int			formats[2] = {0, 1};

		if (!apply_queue(rs->a, state_ghost_sql(change), change == STATE_GHOST_CLEAR ? 1 : 2,
						 values, lengths, formats, "record a row gone from the source"))
			return false;
		rs->ghost_added = rs->ghost_added || change == STATE_GHOST_ADD;
	}
	return true;
}

/*
 * One pgoutput message, from the spool or the live stream, at lsn: decide
 * it by the backfill's rule and apply it.  False with rs->end set.
 */
static bool
run_handle_message(run_session *rs, const uint8_t *data, size_t len, lsn_t lsn)
{
	pgout_message msg, rewritten;
	bool		applied = false;

	if (!pgout_decode(&rs->dec, data, len, &msg))
	{
		char		text[LSN_TEXT_SIZE];

		log_error("%s at %s", rs->dec.error, lsn_format(lsn, text));
		rs->end = SESSION_FAILED;
		return false;
	}
	/* Every transaction before this one is applied: the shadow may be consistent. */
	if (msg.kind == PGOUT_BEGIN && strcmp(rs->m->phase, STATE_STREAMING) == 0 &&
		backfill_filter_settled(rs->filter, msg.begin.final_lsn) &&
		!run_build_unique(&rs->control, rs->m, rs->a, &rs->s))
	{
		rs->end = SESSION_FAILED;
		return false;
	}
	/* The first transaction at or after P: P is reached, compare first. */
	if (rs->check.request != 0 && msg.kind == PGOUT_BEGIN &&
		msg.begin.final_lsn >= rs->check.point &&
		!run_check_compare(&rs->check, &rs->control, rs->conninfo, rs->m, rs->a, &rs->s))
	{
		rs->end = run_lost_or_failed(&rs->control);
		return false;
	}
	switch (backfill_filter_message(rs->filter, &msg, &rewritten))
	{
		case FILTER_APPLY:
			applied = apply_message(rs->a, &msg, lsn);
			break;
		case FILTER_REWRITTEN:
			applied = apply_message(rs->a, &rewritten, lsn);
			break;
		case FILTER_SKIP:
			applied = true;
			break;
		case FILTER_FAILED:
			rs->end = run_lost_or_failed(&rs->control);
			return false;
	}
	if (!applied || !run_record_ghosts(rs))
	{
		rs->end = run_lost_or_failed(&rs->target);
		return false;
	}
	/* A new ghost is made durable at once: rare, and a point the tests can stop at. */
	if (msg.kind == PGOUT_COMMIT && rs->ghost_added)
	{
		rs->ghost_added = false;
		if (!apply_commit(rs->a))
		{
			rs->end = run_lost_or_failed(&rs->target);
			return false;
		}
		fault_point("ghost");
	}
	stream_confirm(&rs->s, apply_committed(rs->a));
	return true;
}

static bool
run_replay_message(void *arg, const uint8_t *data, size_t len, lsn_t lsn)
{
	return run_handle_message(arg, data, len, lsn);
}

/* The stream is quiet: make what arrived durable, and see whether P or consistency is reached. */
static bool
run_handle_quiet(run_session *rs)
{
	report_peak(&rs->report->peak_lag_bytes,
				rs->s.server_end > rs->s.flushed ? (int64_t) (rs->s.server_end - rs->s.flushed) : 0);
	if (!apply_commit(rs->a))
	{
		rs->end = run_lost_or_failed(&rs->target);
		return false;
	}
	stream_confirm(&rs->s, apply_committed(rs->a));
	/*
	 * Messages are applied as they arrive, so when the apply is idle nothing
	 * received is unapplied: idle WAL may be confirmed too.
	 */
	if (apply_idle(rs->a))
		stream_confirm(&rs->s, rs->s.server_end);
	if (apply_idle(rs->a) && strcmp(rs->m->phase, STATE_STREAMING) == 0 &&
		backfill_filter_settled(rs->filter, rs->s.server_end) &&
		!run_build_unique(&rs->control, rs->m, rs->a, &rs->s))
	{
		rs->end = SESSION_FAILED;
		return false;
	}
	/* Every transaction before P is applied once the server has sent past P. */
	if (rs->check.request != 0 && apply_idle(rs->a) && rs->s.server_end >= rs->check.point &&
		!run_check_compare(&rs->check, &rs->control, rs->conninfo, rs->m, rs->a, &rs->s))
	{
		rs->end = run_lost_or_failed(&rs->control);
		return false;
	}
	return true;
}

/*
 * Apply what the spool holds beyond the origin's progress, then drop it;
 * *start moves to where the spool ends.
 */
static bool
run_replay_spool(run_session *rs, lsn_t *start)
{
	lsn_t		end = *start;

	if (!spool_replay(&rs->control, rs->m, *start, run_replay_message, rs, &end))
	{
		if (rs->end == SESSION_FAILED)
			rs->end = run_lost_or_failed(&rs->control);
		return false;
	}
	if (end > *start)
	{
		char		text[LSN_TEXT_SIZE];

		if (!apply_commit(rs->a))
		{
			rs->end = run_lost_or_failed(&rs->target);
			return false;
		}
		log_info("applied the spool up to %s", lsn_format(end, text));
		*start = end;
	}
	if (!spool_trim(&rs->control, rs->m, apply_committed(rs->a) > end ? apply_committed(rs->a) : end))
	{
		rs->end = run_lost_or_failed(&rs->control);
		return false;
	}
	return true;
}

/* The WAL the slot holds back, for the report's peak. */
static void
run_sample_retained(run_session *rs)
{
	PGresult   *res = db_execf(&rs->control, "read the slot's retained WAL",
							   "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), "
							   "  restart_lsn)::pg_catalog.int8 FROM pg_catalog.pg_replication_slots "
							   "WHERE slot_name = %text", rs->m->slot);
	PGint8		bytes = 0;

	if (res != NULL && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) &&
		db_getf(res, 0, "%int8", 0, &bytes))
		report_peak(&rs->report->peak_retained_bytes, bytes);
	PQclear(res);
}

/*
 * Holding the lock: apply the stream up to l, asking the server for its
 * position every few milliseconds, until deadline_us.  True once every
 * transaction before l is committed in the shadow.
 */
static bool
run_catch_up(run_session *rs, lsn_t l, int64_t deadline_us, bool *reached)
{
	*reached = false;
	while (lsn_monotonic_us() < deadline_us)
	{
		const uint8_t *data;
		size_t		len;
		lsn_t		lsn;

		if (rs->s.server_end >= l)
		{
			/* Everything before l has arrived: commit it now rather than after a quiet spell. */
			if (!apply_commit(rs->a))
			{
				rs->end = run_lost_or_failed(&rs->target);
				return false;
			}
			stream_confirm(&rs->s, apply_committed(rs->a));
			if (apply_idle(rs->a))
			{
				*reached = true;
				return true;
			}
		}
		/* A status update that asks for a reply brings the server's position at once. */
		if (!stream_send_status(&rs->s, true))
		{
			rs->end = SESSION_LOST;
			return false;
		}
		switch (stream_receive(&rs->s, 5, false, &data, &len, &lsn))
		{
			case STREAM_DATA:
				if (!run_handle_message(rs, data, len, lsn))
					return false;
				break;
			case STREAM_TIMEOUT:
			case STREAM_CAUGHT_UP:
				if (!apply_commit(rs->a))
				{
					rs->end = run_lost_or_failed(&rs->target);
					return false;
				}
				stream_confirm(&rs->s, apply_committed(rs->a));
				break;
			case STREAM_ENDED:
			case STREAM_FAILED:
				rs->end = SESSION_LOST;
				return false;
		}
	}
	return true;
}

/* The server's current WAL write position. */
static bool
run_current_lsn(db *aux, lsn_t *lsn)
{
	PGresult   *res = db_execf(aux, "read the WAL position",
							   "SELECT pg_catalog.pg_current_wal_lsn()::pg_catalog.text");
	bool		ok = res != NULL && lsn_parse(PQgetvalue(res, 0, 0), lsn);

	PQclear(res);
	return ok;
}

/*
 * Force the WAL up to the cutover's marker to disk, where the walsender
 * reads it: a transaction that wrote WAL flushes it at commit (one that only
 * took an xid would leave it to the WAL writer, up to wal_writer_delay later).
 * Only with synchronous_commit on, whatever the server's default: off would
 * leave the flush to the WAL writer too, and the lock held that much longer
 * (rehearsals under a server-wide off held it 208 to 225 ms, 16 to 35 ms
 * with this).
 * "local": a synchronous standby's acknowledgement is not waited for.
 */
static bool
run_flush_wal(db *aux)
{
	return db_exec(aux, "flush the WAL",
				   "BEGIN; SET LOCAL synchronous_commit = local; "
				   "SELECT pg_catalog.pg_logical_emit_message(true, 'pgrepart', 'flush'); COMMIT");
}

/* Between attempts: back off with jitter, applying the stream meanwhile. */
static bool
run_back_off(run_session *rs, int attempt)
{
	bool		reached;

	return run_catch_up(rs, (lsn_t) -1, lsn_monotonic_us() + 50000 + rand() % 200000 * attempt / 4,
						&reached);
}

/*
 * Sessions that may read the new table through a snapshot older than the
 * swap (operations.md, "Snapshots older than the swap"): named in the log
 * and the report.
 */
static void
run_report_old_snapshots(db *aux, const char *swapped_at, report *r)
{
	char	  **names = NULL;
	int			count = 0;

	if (!cutover_old_snapshots(aux, swapped_at, &count, &names))
		return;
	if (count > 0)
	{
		log_warning("%d session(s) hold a snapshot older than the swap: a REPEATABLE READ or "
					"SERIALIZABLE one reading the table sees the new table without the rows it "
					"received since that snapshot", count);
		log_hint("See operations.md, \"Snapshots older than the swap\"; --wait-for-snapshots "
				 "makes each attempt wait for them first.");
	}
	for (int i = 0; i < count; i++)
	{
		log_warning("  %s", names[i]);
		report_old_snapshot_add(r, names[i]);
	}
	free(names);
}

/*
 * The swap, tried until it fits in the bounds: lock (never queued), catch
 * up to the lock's WAL position, rename and carry over, commit.  Between
 * attempts the stream is applied as usual.
 */
static bool
run_cutover(run_session *rs, const run_options *ro, bool *swapped)
{
	const cutover_options *o = &ro->cutover;
	db			aux = {0};
	char	   *qshadow = ident_qualified(rs->m->schema, rs->m->shadow);
	buf			sql;
	bool		ok = false;

	*swapped = false;
	buf_init(&sql);
	report_phase_begin(ro->report, REPORT_CUTOVER);
	buf_appendf(&sql, "ANALYZE %s", qshadow);
	run_sample_retained(rs);
	log_info("cutover: analysing the shadow, then taking the lock (at most %d ms, held at most "
			 "%d ms, %d attempts)", o->lock_timeout_ms, o->max_lock_hold_ms, o->retries);
	if (!db_connect(&aux, rs->conninfo, "source") || !db_exec(&aux, "analyse the shadow", sql.data))
		goto cleanup;
	for (int attempt = 1; attempt <= o->retries; attempt++)
	{
		lsn_t		l;
		bool		busy = false, reached = false, clear = true;
		char		swapped_at[CUTOVER_CLOCK_SIZE];
		int64_t		locked_at, asked_at;
		lsn_t		now;
		char		text[LSN_TEXT_SIZE];

		if (run_stop_requested(ro))
		{
			ok = true;
			goto cleanup;
		}
		/*
		 * Catch up to the server's current position first, so the lock is
		 * held only for what commits in the moment between.
		 */
		if (!run_current_lsn(&aux, &now) ||
			!run_catch_up(rs, now, lsn_monotonic_us() + 2000000, &reached))
			goto cleanup;
		if (o->snapshot_wait_ms > 0 && !cutover_wait_snapshots(&aux, o, &clear))
			goto cleanup;
		asked_at = lsn_monotonic_us();
		if (!clear)
		{
			/* Sessions with older snapshots stayed: as a busy table, try again. */
			report_lock_attempt_add(ro->report, 0, 0, "old snapshots");
			if (!run_back_off(rs, attempt))
				goto cleanup;
			continue;
		}
		if (!cutover_lock(&rs->control, rs->m, o, &l, &busy))
		{
			report_lock_attempt_add(ro->report, (double) (lsn_monotonic_us() - asked_at) / 1000.0, 0,
									busy ? "busy" : "failed");
			if (!busy)
				goto cleanup;
			if (!run_back_off(rs, attempt))
				goto cleanup;
			continue;
		}
		locked_at = lsn_monotonic_us();
		log_debug("cutover: locked");
		fault_point("lock");
		if (!run_flush_wal(&aux) ||
			!run_catch_up(rs, l, locked_at + (int64_t) o->max_lock_hold_ms * 1000, &reached))
		{
			cutover_release(&rs->control);
			goto cleanup;
		}
		if (!reached)
		{
			cutover_release(&rs->control);
			report_lock_attempt_add(ro->report, (double) (locked_at - asked_at) / 1000.0,
									(double) (lsn_monotonic_us() - locked_at) / 1000.0, "too slow");
			log_info("cutover attempt %d: catching up to %s would hold the lock over %d ms; "
					 "released, trying again", attempt, lsn_format(l, text), o->max_lock_hold_ms);
			continue;
		}
		log_debug("cutover: caught up %.1f ms after the lock", (double) (lsn_monotonic_us() - locked_at) / 1000.0);
		if (!apply_commit(rs->a) || !cutover_swap(&rs->control, rs->m, o, &busy, swapped_at))
		{
			cutover_release(&rs->control);
			if (!busy)
				goto cleanup;
			/* A table a foreign key references was busy: as a busy table, try again. */
			report_lock_attempt_add(ro->report, (double) (locked_at - asked_at) / 1000.0,
									(double) (lsn_monotonic_us() - locked_at) / 1000.0, "busy");
			log_info("cutover attempt %d: released, trying again", attempt);
			if (!run_back_off(rs, attempt))
				goto cleanup;
			continue;
		}
		report_lock_attempt_add(ro->report, (double) (locked_at - asked_at) / 1000.0,
								(double) (lsn_monotonic_us() - locked_at) / 1000.0,
								o->rehearse ? "rehearsed" : "swapped");
		log_info("cutover %s at %s: the lock was held %.0f ms (attempt %d)",
				 o->rehearse ? "rehearsed" : "done", lsn_format(l, text),
				 (double) (lsn_monotonic_us() - locked_at) / 1000.0, attempt);
		run_report_old_snapshots(&aux, swapped_at, ro->report);
		*swapped = true;
		ok = true;
		goto cleanup;
	}
	log_error("could not cut over \"%s.%s\" in %d attempts", rs->m->schema, rs->m->table,
			  o->retries);
	log_hint("Sessions kept the table locked (see above); run again, or raise --lock-timeout "
			 "or --cutover-retries.");

cleanup:
	db_close(&aux);
	buf_free(&sql);
	free(qshadow);
	return ok;
}

/* Whether it is time to swap: synced, close to the server, and asked to (or automatic). */
static bool
run_cutover_due(run_session *rs, const run_options *ro, bool *due)
{
	bool		requested = true;

	*due = false;
	if (strcmp(rs->m->phase, STATE_SYNCED) != 0 || !apply_idle(rs->a) ||
		rs->s.server_end > rs->s.flushed + (lsn_t) ro->cutover.max_lag_bytes)
		return true;
	if (ro->cutover_manual && !state_cutover_requested(&rs->control, rs->m, &requested))
		return false;
	/* The operator's wait is not the catch-up's: the report times it apart. */
	if (!requested)
	{
		if (ro->report->current == REPORT_CATCH_UP)
			report_phase_begin(ro->report, REPORT_WAIT);
		return true;
	}
	if (ro->report->current != REPORT_CUTOVER)
		report_phase_begin(ro->report, REPORT_CUTOVER);
	/*
	 * First compare shadow and table at a consistent point (the run serves
	 * the request itself, see run_check_poll); a difference stops the run
	 * before the swap.
	 */
	if (ro->skip_verify)
		ro->report->verification = "skipped";
	if (!ro->skip_verify && !rs->verified)
	{
		state_verification v;

		if (rs->verification == 0)
		{
			log_info("cutover: comparing the shadow with the table first");
			return state_request_verification(&rs->control, rs->m, &rs->verification);
		}
		if (!state_read_verification(&rs->control, rs->verification, &v))
			return false;
		if (v.finished)
			ro->report->verification = v.outcome == VERIFY_OUTCOME_EQUAL ? "equal" :
				v.outcome == VERIFY_OUTCOME_DIFFERENT ? "different" : "failed";
		if (v.finished && v.outcome == VERIFY_OUTCOME_EQUAL)
			rs->verified = true;
		else if (v.finished)
		{
			log_error("the shadow differs from \"%s.%s\": not swapping", rs->m->schema,
					  rs->m->table);
			if (v.text != NULL)
				log_detail("%s", v.text);
			log_hint("The original table is untouched. Inspect the differences, then abort "
					 "the migration or run it again with --no-verify.");
			rs->end = SESSION_DIFFERENT;
			state_verification_free(&v);
			return false;
		}
		state_verification_free(&v);
		if (!rs->verified)
			return true;
	}
	*due = true;
	return true;
}

/*
 * The columns of the source's unique indexes, which the apply must see
 * unchanged before it folds an update into a pending update of the same
 * row; no such folding at all past a unique index on an expression or with
 * a predicate.  An index that holds every key column is left out: only the
 * row with that key can hold or want one of its values, and the apply
 * tracks keys.  The array is the caller's to free; the names are t's.
 */
static void
run_unique_columns(const catalog_table *t, apply_options *ao)
{
	char	  **columns = NULL;
	int			n = 0;

	ao->fold = true;
	for (int i = 0; i < t->nindexes; i++)
	{
		const catalog_index *ix = &t->indexes[i];
		int			held = 0;

		if (!ix->unique)
			continue;
		if (ix->has_expressions || ix->partial)
			ao->fold = false;
		for (int k = 0; k < t->nkey_columns; k++)
			held += catalog_has_column(ix->columns, ix->ncolumns, t->key_columns[k]);
		if (t->nkey_columns > 0 && held == t->nkey_columns)
			continue;
		for (int j = 0; j < ix->ncolumns; j++)
			if (ix->columns[j] != NULL)
				ARRAY_PUSH(columns, n, ix->columns[j]);
	}
	ao->unique_columns = columns;
	ao->nunique_columns = n;
}

/*
 * When the server says it has sent everything, commit at once if the open
 * target transaction holds at least this many source transactions.
 */
#define CAUGHT_UP_COMMIT 100
/* Fewer commit after this long without a message (and at the tick, once a second). */
#define QUIET_MS 50

/*
 * in_order: source transactions committed up to it go one change per
 * statement; raised when the session ends with SESSION_IN_ORDER.
 */
static session_end
run_stream_session(const char *conninfo, const catalog_table *t, state_migration *m,
				   const run_options *ro, lsn_t *in_order)
{
	run_session rs;
	apply_options ao = {0};
	int64_t		started = lsn_monotonic_us();
	int64_t		next_progress = started + (int64_t) ro->progress_seconds * 1000000;
	int64_t		next_tick = 0;
	/* The tests turn the tick off to see the quiet spell alone make a trickle durable. */
	int64_t		tick_us = fault_off("tick") ? INT64_MAX / 2 : 1000000;
	/* When the last message arrived: QUIET_MS without one makes what arrived durable. */
	int64_t		last_message = started;
	lsn_t		start;

	memset(&rs, 0, sizeof(rs));
	rs.conninfo = conninfo;
	rs.report = ro->report;
	rs.t = t;
	rs.m = m;
	rs.end = SESSION_FAILED;
	pgout_decoder_init(&rs.dec);
	ao.schema = m->schema;
	ao.table = m->table;
	ao.shadow = m->shadow;
	ao.partition_column = m->partition_column;
	ao.interval = m->interval;
	ao.origin = m->origin;
	ao.batch_transactions = ro->batch_transactions;
	ao.copy_threshold = ro->copy_threshold;
	ao.key_columns = t->key_columns;
	ao.nkey_columns = t->nkey_columns;
	ao.in_order_until = *in_order;
	run_unique_columns(t, &ao);

	if (!db_connect(&rs.target, conninfo, "target") || !db_connect(&rs.control, conninfo, "source"))
	{
		rs.end = db_lost_connection(&rs.target) || db_lost_connection(&rs.control) ?
			SESSION_LOST : SESSION_FAILED;
		goto cleanup;
	}
	rs.a = apply_create(&rs.target, &ao);
	if (rs.a == NULL)
	{
		/* 55006: the origin or slot is still held by a session that is going away. */
		rs.end = db_lost_connection(&rs.target) || strcmp(rs.target.sqlstate, "55006") == 0 ?
			SESSION_LOST : SESSION_FAILED;
		goto cleanup;
	}
	rs.filter = backfill_filter_create(&rs.control, m, t);
	if (rs.filter == NULL)
	{
		rs.end = run_lost_or_failed(&rs.control);
		goto cleanup;
	}
	start = apply_committed(rs.a) > m->consistent_lsn ? apply_committed(rs.a) : m->consistent_lsn;
	if (!run_replay_spool(&rs, &start))
		goto cleanup;
	if (!stream_connect(&rs.s, conninfo) || !stream_start(&rs.s, m->slot, m->publication, start))
	{
		rs.end = strncmp(rs.s.sqlstate, "08", 2) == 0 || strcmp(rs.s.sqlstate, "55006") == 0 ?
			SESSION_LOST : SESSION_FAILED;
		goto cleanup;
	}
	{
		char		text[LSN_TEXT_SIZE];

		log_info("streaming changes from %s", lsn_format(start, text));
	}
	fault_point("catchup");

	for (;;)
	{
		const uint8_t *data;
		size_t		len;
		lsn_t		lsn;
		bool		due = false, swapped = false;
		/* Read once a message: the timers below are a second or longer. */
		int64_t		now = lsn_monotonic_us();
		int64_t		quiet_left;
		int			timeout_ms;

		if (run_stop_requested(ro))
		{
			if (!apply_commit(rs.a))
				goto cleanup;
			stream_confirm(&rs.s, apply_committed(rs.a));
			stream_send_status(&rs.s, false);
			rs.end = SESSION_STOPPED;
			goto cleanup;
		}
		if (now >= next_progress)
		{
			run_sample_retained(&rs);
			run_log_progress(&rs.s, rs.a, started, 0, ro->json);
			next_progress = lsn_monotonic_us() + (int64_t) ro->progress_seconds * 1000000;
		}
		if (!run_check_poll(&rs.check, &rs.control, conninfo, m, rs.a, &rs.s, now))
		{
			rs.end = run_lost_or_failed(&rs.control);
			goto cleanup;
		}
		/*
		 * A keepalive ends the wait early, and must not put the quiet spell
		 * off: the spell counts from the last message.
		 */
		quiet_left = last_message + (int64_t) QUIET_MS * 1000 - now;
		timeout_ms = apply_idle(rs.a) ? 1000 : quiet_left > 0 ? (int) (quiet_left / 1000) : 0;
		switch (stream_receive(&rs.s, timeout_ms, true, &data, &len, &lsn))
		{
			case STREAM_DATA:
				last_message = now;
				if (!run_handle_message(&rs, data, len, lsn))
					goto cleanup;
				break;
			case STREAM_TIMEOUT:
				/* Quiet: the next tick is now. */
				next_tick = 0;
				break;
			case STREAM_CAUGHT_UP:

				/*
				 * The end of a backlog: what it left uncommitted commits now,
				 * not after a quiet spell.  A trickle still waits for one, so
				 * that it does not commit transaction by transaction; on a
				 * busy server keepalives may come faster than the spell, so
				 * one that comes after it ends it too.
				 */
				if (apply_open_transactions(rs.a) >= CAUGHT_UP_COMMIT)
				{
					log_debug("the server has sent all it has: committing the %d source transactions "
							  "received since the last commit", apply_open_transactions(rs.a));
					next_tick = 0;
				}
				else if (quiet_left <= 0)
					next_tick = 0;
				break;
			case STREAM_ENDED:
			case STREAM_FAILED:
				rs.end = SESSION_LOST;
				goto cleanup;
		}

		/*
		 * At least once a second, busy or not: make what arrived durable,
		 * and see whether the shadow is consistent, a check is due or the
		 * swap is.  Only between source transactions: inside one nothing
		 * can commit, and under a steady load a tick that fell there would
		 * put the swap and the checks off to a later, luckier second.
		 */
		if (apply_in_source_txn(rs.a) || lsn_monotonic_us() < next_tick)
			continue;
		next_tick = lsn_monotonic_us() + tick_us;
		if (!run_handle_quiet(&rs))
			goto cleanup;
		if (!run_cutover_due(&rs, ro, &due))
		{
			if (rs.end != SESSION_DIFFERENT)
				rs.end = run_lost_or_failed(&rs.control);
			goto cleanup;
		}
		if (due)
		{
			if (!run_cutover(&rs, ro, &swapped))
			{
				if (rs.end == SESSION_FAILED)
					rs.end = run_lost_or_failed(&rs.control);
				goto cleanup;
			}
			if (swapped)
			{
				rs.end = ro->cutover.rehearse ? SESSION_REHEARSED : SESSION_SWAPPED;
				goto cleanup;
			}
		}
	}

cleanup:
	if (rs.a != NULL && rs.end == SESSION_FAILED && apply_replay_until(rs.a) > *in_order)
	{
		*in_order = apply_replay_until(rs.a);
		rs.end = SESSION_IN_ORDER;
	}
	if (rs.a != NULL)
	{
		const apply_stats *st = apply_get_stats(rs.a);

		run_log_progress(&rs.s, rs.a, started, 0, ro->json);
		ro->report->changes_applied += st->durable_changes;
	}
	apply_destroy(rs.a);
	free((void *) ao.unique_columns);
	backfill_filter_free(rs.filter);
	pgout_decoder_free(&rs.dec);
	run_check_close(&rs.check);
	stream_close(&rs.s);
	db_close(&rs.control);
	db_close(&rs.target);
	return rs.end;
}

/* Stream until stopped, reconnecting after lost connections with a growing pause. */
static run_result
run_stream(const char *conninfo, const catalog_table *t, state_migration *m,
		   const run_options *ro)
{
	int			failures = 0;
	unsigned int pause = 1;
	lsn_t		in_order = LSN_INVALID;

	for (;;)
	{
		session_end end = run_stream_session(conninfo, t, m, ro, &in_order);

		if (end == SESSION_SWAPPED || end == SESSION_REHEARSED)
			return RUN_DONE;
		if (end == SESSION_DIFFERENT)
			return RUN_DIFFERENT;
		if (end == SESSION_STOPPED)
		{
			log_info("stopped; run the same command again to resume");
			return RUN_STOPPED;
		}
		/* Nothing is wrong yet: again at once. */
		if (end == SESSION_IN_ORDER)
			continue;
		if (end == SESSION_FAILED || ++failures > ro->max_reconnects)
			return RUN_FAILED;
		if (run_stop_requested(ro))
			return RUN_STOPPED;
		log_info("reconnecting in %u s (attempt %d of %d)", pause, failures, ro->max_reconnects);
		sleep(pause);
		pause = pause < 16 ? pause * 2 : 30;
	}
}

/* What the report records of the server and the table, for comparing a rehearsal with production. */
static bool
run_read_environment(db *d, const catalog_table *t, report *r)
{
	buf			names;
	PGresult   *res;

	buf_init(&names);
	buf_append(&names, "{");
	for (int i = 0; i < REPORT_NSETTINGS; i++)
		buf_appendf(&names, "%s%s", i > 0 ? "," : "", report_setting_names[i]);
	buf_append(&names, "}");
	res = db_execf(d, "read the server's settings for the report",
				   "SELECT pg_catalog.current_setting(u.n), pg_catalog.current_setting('server_version'), "
				   "  pg_catalog.pg_current_wal_lsn()::pg_catalog.text "
				   "FROM pg_catalog.unnest(%text::pg_catalog.text[]) WITH ORDINALITY u(n, i) ORDER BY u.i",
				   names.data);
	buf_free(&names);
	if (res == NULL)
		return false;
	report_free_environment(r);
	r->env.server_version = xstrdup(PQgetvalue(res, 0, 1));
	r->env.wal_start = xstrdup(PQgetvalue(res, 0, 2));
	for (int i = 0; i < REPORT_NSETTINGS && i < PQntuples(res); i++)
		r->env.settings[i] = xstrdup(PQgetvalue(res, i, 0));
	r->env.table_rows = t->estimated_rows;
	r->env.table_bytes = t->heap_bytes;
	r->env.table_total_bytes = t->total_bytes;
	PQclear(res);
	return true;
}

/* The WAL the server wrote while the run went (its own writes and everyone else's). */
static void
run_measure_wal(const char *conninfo, report *r)
{
	db			d = {0};
	PGresult   *res;
	PGint8		bytes;

	if (r->env.wal_start == NULL || !db_connect(&d, conninfo, "source"))
		return;
	res = db_execf(&d, "measure the WAL written",
				   "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), "
				   "  %text::pg_catalog.pg_lsn)::pg_catalog.int8", r->env.wal_start);
	if (res != NULL && db_getf(res, 0, "%int8", 0, &bytes))
		r->env.wal_bytes = bytes;
	PQclear(res);
	db_close(&d);
}

/*
 * A resumed run builds what the first one planned: options that would
 * plan otherwise are refused, by name, rather than ignored.
 */
static bool
run_check_resumed_options(db *d, const state_migration *m, const plan_options *po)
{
	char	   *qshadow = ident_qualified(m->schema, m->shadow);
	PGresult   *res;
	PGbool		same_interval = 1, has_default = 0;
	PGint4		premake = -1;
	bool		ok = false;

	if (strcmp(m->phase, STATE_DONE) == 0)
	{
		free(qshadow);
		return true;
	}
	res = db_execf(d, "compare the options with the migration's",
				   "SELECT %text::pg_catalog.interval = %text::pg_catalog.interval, "
				   "  COALESCE((SELECT p.partdefid <> 0 FROM pg_catalog.pg_partitioned_table p "
				   "            WHERE p.partrelid = pg_catalog.to_regclass(%text)), false), "
				   "  COALESCE((SELECT premake FROM pgrepart.migration WHERE id = %int4), -1)",
				   po->interval, m->interval, qshadow, m->id);
	free(qshadow);
	if (res == NULL ||
		!db_getf(res, 0, "%bool %bool %int4", 0, &same_interval, 1, &has_default, 2, &premake))
		goto cleanup;
	if (strcmp(po->partition_column, m->partition_column) != 0)
		log_error("-k/--partition-key \"%s\" differs from the migration's, which partitions by "
				  "\"%s\"", po->partition_column, m->partition_column);
	else if ((po->given & PLAN_GIVEN_INTERVAL) && !same_interval)
		log_error("--interval '%s' differs from the migration's, which is '%s'", po->interval,
				  m->interval);
	else if ((po->given & PLAN_GIVEN_DEFAULT) && po->default_partition != (bool) has_default)
		log_error("%s differs from the migration's, which %s a DEFAULT partition",
				  po->default_partition ? "--default-partition" : "--no-default-partition",
				  has_default ? "has" : "has no");
	else if ((po->given & PLAN_GIVEN_PREMAKE) && premake >= 0 && po->premake != premake)
		log_error("--premake %d differs from the migration's, which is %d (pgrepart partitions "
				  "--ahead adds partitions)", po->premake, premake);
	else
	{
		/* A migration recorded before the premade count was. */
		if ((po->given & PLAN_GIVEN_PREMAKE) && premake < 0)
			log_warning("--premake shapes the partitions a migration starts with; this one has "
						"started, so it changes nothing (pgrepart partitions --ahead adds more)");
		ok = true;
	}
	if (!ok && res != NULL)
		log_hint("A migration keeps the partitioning it started with. Run the same command "
				 "without the option to resume, or abort the migration (pgrepart abort) and "
				 "run again to change it.");

cleanup:
	PQclear(res);
	return ok;
}

/* What a rehearsal run with --keep leaves, and how to be rid of it. */
static void
run_log_kept(const state_migration *m)
{
	log_info("rehearsal done: the table is as it was; kept in sync for the next run (--keep): "
			 "replication slot \"%s\", which holds WAL until a run consumes it, publication "
			 "\"%s\", replication origin \"%s\", shadow \"%s.%s\" and the state in schema "
			 "pgrepart", m->slot, m->publication, m->origin, m->schema, m->shadow);
	log_hint("The same pgrepart run resumes it; \"pgrepart abort -t %s.%s\" removes all of it.",
			 m->schema, m->table);
}

run_result
run_migration(const char *conninfo, const char *schema, const char *table,
			  const plan_options *po, const run_options *ro)
{
	db			d = {0};
	catalog_table *t = NULL;
	state_migration *m = NULL;
	spool	   *sp = NULL;
	bool		chunked;
	run_result	result = RUN_FAILED;

	if (!db_connect(&d, conninfo, "source") || !catalog_read(&d, schema, table, &t) ||
		!state_ensure(&d) || !state_find(&d, t->schema, t->name, &m) ||
		(m != NULL && !state_check_home(&d, m)) || !run_read_environment(&d, t, ro->report))
		goto cleanup;
	ro->report->schema = t->schema;
	ro->report->table = t->name;
	ro->report->rehearsal = ro->cutover.rehearse;
	if (m == NULL)
	{
		report_phase_begin(ro->report, REPORT_PREPARE);
		result = run_prepare(&d, conninfo, t->schema, t->name, po, &m);
		if (result != RUN_DONE)
			goto cleanup;
		result = RUN_FAILED;
	}
	else if (!run_check_resumed_options(&d, m, po))
		goto cleanup;
	else
		log_info("resuming the migration of \"%s.%s\" from phase %s", m->schema, m->table,
				 m->phase);
	chunked = backfill_supported(t);

	for (;;)
	{
		bool		truncated = false;

		if (strcmp(m->phase, STATE_PREPARED) == 0 || strcmp(m->phase, STATE_COPYING) == 0)
		{
			if (strcmp(m->phase, STATE_PREPARED) == 0)
				fault_point("prepared");
			report_phase_begin(ro->report, REPORT_COPY);
			if (chunked)
			{
				backfill_options bo = {ro->chunk_rows, ro->rate, ro->progress_seconds,
								   ro->terminal, ro->json, ro->stop,
								   &ro->report->rows_copied, &ro->report->bytes_copied,
								   &ro->report->copy_seconds};

				switch (backfill_copy(&d, conninfo, t, m, &bo, &sp))
				{
					case BACKFILL_DONE:
						break;
					case BACKFILL_STOPPED:
						log_info("stopped; run the same command again to resume");
						result = RUN_STOPPED;
						goto cleanup;
					case BACKFILL_FAILED:
						goto cleanup;
				}
			}
			else
			{
				/* The client cannot order this key: one copy under the slot's exported snapshot. */
				log_info("the key's type cannot be ordered here; copying under one snapshot");
				if (!run_copy(&d, conninfo, m))
					goto cleanup;
			}
		}
		if (run_stop_requested(ro))
		{
			result = RUN_STOPPED;
			goto cleanup;
		}
		if (strcmp(m->phase, STATE_COPIED) != 0)
			break;
		if (chunked && sp == NULL && (sp = spool_open(conninfo, m, t)) == NULL)
			goto cleanup;
		report_phase_begin(ro->report, REPORT_INDEX);
		if (run_build_indexes(&d, m, sp, &truncated))
			break;
		if (!truncated || !backfill_reset(&d, m))
			goto cleanup;
	}
	/* From here the spool is only read back. */
	spool_close(sp);
	sp = NULL;
	if (strcmp(m->phase, STATE_INDEXED) == 0 &&
		!state_set_phase(&d, m, STATE_STREAMING, LSN_INVALID))
		goto cleanup;
	if (strcmp(m->phase, STATE_DONE) != 0)
	{
		/* The source connection is not needed while streaming. */
		db_close(&d);
		report_phase_begin(ro->report, REPORT_CATCH_UP);
		result = run_stream(conninfo, t, m, ro);
		if (result != RUN_DONE)
			goto cleanup;
		if (ro->cutover.rehearse)
		{
			ro->report->outcome = "rehearsed";
			if (ro->cutover.keep)
				run_log_kept(m);
			else
			{
				/* Nothing of the rehearsal's may stay to hold WAL on a server that may be production's. */
				log_info("rehearsal done: the table is as it was; removing what the run made");
				if (cutover_abort(conninfo, m->schema, m->table) != 0)
					result = RUN_FAILED;
			}
			goto cleanup;
		}
		result = RUN_FAILED;
		if (!db_connect(&d, conninfo, "source"))
			goto cleanup;
	}
	if (cutover_finish(conninfo, &d, m, &ro->cutover))
	{
		result = RUN_DONE;
		ro->report->outcome = "swapped";
	}

cleanup:
	report_phase_end(ro->report);
	if (result != RUN_FAILED && result != RUN_BLOCKED)
		run_measure_wal(conninfo, ro->report);
	if (ro->report->copy_seconds == 0)
		ro->report->copy_seconds = ro->report->phase_seconds[REPORT_COPY];
	if (result == RUN_STOPPED)
		ro->report->outcome = "stopped";
	else if (result == RUN_DIFFERENT)
		ro->report->outcome = "different";
	if (ro->report_path != NULL && !report_write_json(ro->report, ro->report_path) &&
		result == RUN_DONE)
		result = RUN_FAILED;
	if (result == RUN_DONE && ro->report->nattempts > 0)
		report_print(ro->report, stdout);
	spool_close(sp);
	state_migration_free(m);
	catalog_table_free(t);
	db_close(&d);
	return result;
}
