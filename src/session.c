/*
 * session.c: the streaming phase of a run; see session.h.
 *
 * A session connects (the slot's stream, a target connection for the
 * apply, a control connection for requests and fetches), replays the spool,
 * then applies the stream until the run stops, a connection breaks, the
 * cutover swaps, or the check before the swap finds a difference.  Between
 * messages it answers live verifications (livecheck.h) and decides when the
 * cutover is due.  session_stream starts sessions again after a broken
 * connection, from the origin's durable progress.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpqtypes.h>

#include "pgrepart/apply.h"
#include "pgrepart/backfill_filter.h"
#include "pgrepart/build.h"
#include "pgrepart/catalog.h"
#include "pgrepart/clock.h"
#include "pgrepart/cutover.h"
#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/json.h"
#include "pgrepart/livecheck.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/pgout.h"
#include "pgrepart/reconcile.h"
#include "pgrepart/report.h"
#include "pgrepart/revert.h"
#include "pgrepart/session.h"
#include "pgrepart/spool.h"
#include "pgrepart/sqlstate.h"
#include "pgrepart/state.h"
#include "pgrepart/stream.h"
#include "pgrepart/throttle.h"

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
session_log_progress(const stream *s, const apply *a, int64_t started_us, int64_t base_changes,
				 bool json)
{
	const apply_stats *st = apply_get_stats(a);
	int64_t		changes = st->inserts + st->updates + st->deletes;
	double		secs = (double) (clock_monotonic_us() - started_us) / 1e6;
	lsn_t		done = apply_committed(a);
	char		lsn[LSN_TEXT_SIZE];

	/*
	 * Behind: the WAL the server has sent beyond what is durable here, and
	 * how old the last durable source commit is while anything is left.
	 */
	uint64_t	bytes = s->server_end > s->flushed ? s->server_end - s->flushed : 0;
	double		seconds = bytes > 0 && st->last_commit_time > 0 ?
		(double) (clock_pg_now() - st->last_commit_time) / 1e6 : 0.0;

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
 * While the unique constraints build, the stream hears from the run every
 * 10 s, and the throttle decides each partition's start.
 */
typedef struct session_keepalive
{
	stream	   *s;
	int64_t		next_us;
	throttle   *th;
} session_keepalive;

static bool
session_may_build(void *arg, bool *start)
{
	session_keepalive *k = arg;

	*start = true;
	return k->th == NULL || throttle_check(k->th, start);
}

static bool
session_keep_stream(void *arg)
{
	session_keepalive *k = arg;

	/* While the spool replays, the stream has not started. */
	if (k->s->conn == NULL || clock_monotonic_us() < k->next_us)
		return true;
	k->next_us = clock_monotonic_us() + 10000000;
	return stream_send_status(k->s, false);
}

/*
 * Unique constraints other than the key wait until the shadow is
 * consistent: while chunks copied at different moments are reconciled, a
 * row whose key changed can briefly be there twice.  Each partition's are
 * built in transactions of their own (build.h); the parent's adopt them,
 * with the comments, some of which are on those constraints.
 */
static bool
session_build_unique(db *control, const char *conninfo, state_migration *m, apply *a,
					 stream *s, const run_options *ro)
{
	session_keepalive keep = {s, 0, NULL};
	build_options bo = {ro->jobs, session_keep_stream, session_may_build, &keep, ro->stop, false};
	bool		built;

	if (!apply_commit(a))
		return false;
	stream_confirm(s, apply_committed(a));
	log_info("the shadow is consistent: building its unique constraints");
	if ((keep.th = throttle_create(control, m, ro->report, ro->stop)) == NULL)
		return false;
	built = build_partitions(control, conninfo, m, PLAN_PHASE_UNIQUE, &bo);
	throttle_free(keep.th);
	if (!built ||
		!db_exec(control, "start building the unique constraints", "BEGIN") ||
		!db_exec(control, "raise maintenance_work_mem", "SET LOCAL maintenance_work_mem = '512MB'") ||
		!state_run_statements(control, m, PLAN_PHASE_UNIQUE, NULL, NULL) ||
		!state_run_statements(control, m, PLAN_PHASE_COMMENT, NULL, NULL) ||
		(m->physical && !reconcile_drop(control, m)) ||
		!state_set_phase(control, m, STATE_SYNCED, LSN_INVALID) ||
		!db_exec(control, "commit the unique constraints", "COMMIT"))
	{
		db_rollback(control, "roll back the unique constraints");
		return false;
	}
	return true;
}

/* One streaming session's parts. */
typedef struct session
{
	const char *conninfo;
	const catalog_table *t;
	state_migration *m;
	db			target;
	db			control;		/* the source: requests, unique constraints, fetches */
	livecheck	check;
	stream		s;
	apply	   *a;
	backfill_filter *filter;
	pgout_decoder dec;
	report	   *report;
	int64_t		verification;	/* the check requested before the swap, 0 none yet */
	bool		verified;		/* ... and found the shadow equal */
	const run_options *ro;
	session_end end;			/* how it ends, when a step fails */
	bool		ghost_added;	/* in the source transaction being applied */
} session;

static session_end
session_lost_or_failed(const db *d)
{
	return db_lost_connection(d) ? SESSION_LOST : SESSION_FAILED;
}

/* The apply failed: start again only when the shadow's connection broke. */
static session_end
session_apply_failed(const session *rs)
{
	return apply_get_failure(rs->a) == APPLY_FAILURE_SERVER ?
		session_lost_or_failed(&rs->target) : SESSION_FAILED;
}

/*
 * The ghosts the filter began or ended with the message just applied,
 * recorded in the same shadow transaction, so that after a restart they
 * are what the origin's progress says.
 */
static bool
session_record_ghosts(session *rs)
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
session_handle_message(session *rs, const uint8_t *data, size_t len, lsn_t lsn)
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
	if (msg.kind == PGOUT_BEGIN && rs->m->phase == STATE_STREAMING &&
		backfill_filter_settled(rs->filter, msg.begin.final_lsn) &&
		!session_build_unique(&rs->control, rs->conninfo, rs->m, rs->a, &rs->s, rs->ro))
	{
		/* A stop ends the build between partitions: what is built stays, the next run goes on. */
		rs->end = run_stop_requested(rs->ro) ? SESSION_STOPPED : SESSION_FAILED;
		return false;
	}
	/* The first transaction at or after P: P is reached, compare first. */
	if (rs->check.request != 0 && msg.kind == PGOUT_BEGIN &&
		msg.begin.final_lsn >= rs->check.point &&
		!livecheck_compare(&rs->check, &rs->control, rs->conninfo, rs->m, rs->a, &rs->s))
	{
		rs->end = session_lost_or_failed(&rs->control);
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
			rs->end = session_lost_or_failed(&rs->control);
			return false;
	}
	if (!applied || !session_record_ghosts(rs))
	{
		rs->end = session_apply_failed(rs);
		return false;
	}
	/* A new ghost is made durable at once: rare, and a point the tests can stop at. */
	if (msg.kind == PGOUT_COMMIT && rs->ghost_added)
	{
		rs->ghost_added = false;
		if (!apply_commit(rs->a))
		{
			rs->end = session_apply_failed(rs);
			return false;
		}
		fault_point("ghost");
	}
	stream_confirm(&rs->s, apply_committed(rs->a));
	return true;
}

static bool
session_replay_message(void *arg, const uint8_t *data, size_t len, lsn_t lsn)
{
	return session_handle_message(arg, data, len, lsn);
}

/* A read of the spool, before it is decided: the filter places its keys at once. */
static bool
session_look_message(void *arg, const uint8_t *data, size_t len)
{
	session    *rs = arg;

	return backfill_filter_look(rs->filter, data, len);
}

static bool
session_looked(void *arg)
{
	session    *rs = arg;

	if (backfill_filter_look_resolve(rs->filter))
		return true;
	rs->end = SESSION_FAILED;
	return false;
}

/* The stream is quiet: make what arrived durable, and see whether P or consistency is reached. */
static bool
session_handle_quiet(session *rs)
{
	report_peak(&rs->report->peak_lag_bytes,
				rs->s.server_end > rs->s.flushed ? (int64_t) (rs->s.server_end - rs->s.flushed) : 0);
	if (!apply_commit(rs->a))
	{
		rs->end = session_apply_failed(rs);
		return false;
	}
	stream_confirm(&rs->s, apply_committed(rs->a));
	/*
	 * Messages are applied as they arrive, so when the apply is idle nothing
	 * received is unapplied: idle WAL may be confirmed too.
	 */
	if (apply_idle(rs->a))
		stream_confirm(&rs->s, rs->s.server_end);
	if (apply_idle(rs->a) && rs->m->phase == STATE_STREAMING &&
		backfill_filter_settled(rs->filter, rs->s.server_end) &&
		!session_build_unique(&rs->control, rs->conninfo, rs->m, rs->a, &rs->s, rs->ro))
	{
		/* A stop ends the build between partitions: what is built stays, the next run goes on. */
		rs->end = run_stop_requested(rs->ro) ? SESSION_STOPPED : SESSION_FAILED;
		return false;
	}
	/* Every transaction before P is applied once the server has sent past P. */
	if (rs->check.request != 0 && apply_idle(rs->a) && rs->s.server_end >= rs->check.point &&
		!livecheck_compare(&rs->check, &rs->control, rs->conninfo, rs->m, rs->a, &rs->s))
	{
		rs->end = session_lost_or_failed(&rs->control);
		return false;
	}
	return true;
}

/*
 * Apply what the spool holds beyond the origin's progress, then drop it;
 * *start moves to where the spool ends.
 */
static bool
session_replay_spool(session *rs, lsn_t *start)
{
	lsn_t		end = *start;

	spool_reader reader = {session_replay_message, session_look_message, session_looked, rs};

	if (!spool_replay(&rs->control, rs->m, *start, &reader, &end))
	{
		if (rs->end == SESSION_FAILED)
			rs->end = session_lost_or_failed(&rs->control);
		return false;
	}
	if (end > *start)
	{
		char		text[LSN_TEXT_SIZE];

		if (!apply_commit(rs->a))
		{
			rs->end = session_apply_failed(rs);
			return false;
		}
		log_info("applied the spool up to %s", lsn_format(end, text));
		*start = end;
	}
	if (!spool_trim(&rs->control, rs->m, apply_committed(rs->a) > end ? apply_committed(rs->a) : end))
	{
		rs->end = session_lost_or_failed(&rs->control);
		return false;
	}
	return true;
}

/* The WAL the slot holds back, for the report's peak. */
static void
session_sample_retained(session *rs)
{
	bool		exists;
	int64_t		bytes;

	if (state_slot_retained(&rs->control, rs->m, &exists, &bytes) && exists)
		report_peak(&rs->report->peak_retained_bytes, bytes);
}

/*
 * pgrepart pause: what is applied commits, then the stream is not read
 * (the slot retains the WAL meanwhile, which the log says every progress
 * interval) until pgrepart resume or a stop.  The server hears from the
 * run every 10 s, so the stream is not timed out.
 */
static bool
session_pause(session *rs, const run_options *ro)
{
	session_keepalive keep = {&rs->s, 0};
	int64_t		next_log = 0;
	int64_t		paused_at = clock_monotonic_us();
	bool		paused;

	if (!state_paused(&rs->control, rs->m, &paused))
	{
		rs->end = session_lost_or_failed(&rs->control);
		return false;
	}
	if (!paused)
		return true;
	if (!apply_commit(rs->a))
	{
		rs->end = session_apply_failed(rs);
		return false;
	}
	stream_confirm(&rs->s, apply_committed(rs->a));
	while (paused && !run_stop_requested(ro))
	{
		if (clock_monotonic_us() >= next_log)
		{
			bool		exists;
			int64_t		bytes;

			if (!state_slot_retained(&rs->control, rs->m, &exists, &bytes))
			{
				rs->end = session_lost_or_failed(&rs->control);
				return false;
			}
			report_peak(&rs->report->peak_retained_bytes, bytes);
			log_info("paused (pgrepart resume goes on): not applying; the slot retains %.1f MB "
					 "of WAL", (double) bytes / 1048576.0);
			next_log = clock_monotonic_us() + (int64_t) ro->progress_seconds * 1000000;
		}
		if (!session_keep_stream(&keep))
		{
			rs->end = SESSION_LOST;
			return false;
		}
		usleep(200000);
		if (!state_paused(&rs->control, rs->m, &paused))
		{
			rs->end = session_lost_or_failed(&rs->control);
			return false;
		}
	}
	rs->report->throttled_seconds[REPORT_THROTTLE_PAUSED] +=
		(double) (clock_monotonic_us() - paused_at) / 1e6;
	if (!paused)
		log_info("resumed: applying again");
	return true;
}

/*
 * Holding the lock: apply the stream up to l, asking the server for its
 * position every few milliseconds, until deadline_us.  True once every
 * transaction before l is committed in the shadow.
 */
static bool
session_catch_up(session *rs, lsn_t l, int64_t deadline_us, bool *reached)
{
	*reached = false;
	while (clock_monotonic_us() < deadline_us)
	{
		const uint8_t *data;
		size_t		len;
		lsn_t		lsn;

		if (rs->s.server_end >= l)
		{
			/* Everything before l has arrived: commit it now rather than after a quiet spell. */
			if (!apply_commit(rs->a))
			{
				rs->end = session_apply_failed(rs);
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
				if (!session_handle_message(rs, data, len, lsn))
					return false;
				break;
			case STREAM_TIMEOUT:
			case STREAM_CAUGHT_UP:
				if (!apply_commit(rs->a))
				{
					rs->end = session_apply_failed(rs);
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

/* Between attempts: back off with jitter, applying the stream meanwhile. */
static bool
session_back_off(session *rs, int attempt)
{
	bool		reached;

	return session_catch_up(rs, (lsn_t) -1, clock_monotonic_us() + 50000 + rand() % 200000 * attempt / 4,
						&reached);
}

/*
 * Sessions that may read the new table through a snapshot older than the
 * swap (operations.md, "Snapshots older than the swap"): named in the log
 * and the report.
 */
static void
session_report_old_snapshots(db *aux, const char *swapped_at, report *r)
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
session_cutover(session *rs, const run_options *ro, bool *swapped)
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
	session_sample_retained(rs);
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
		if (!cutover_current_lsn(&aux, &now) ||
			!session_catch_up(rs, now, clock_monotonic_us() + 2000000, &reached))
			goto cleanup;
		if (o->snapshot_wait_ms > 0 && !cutover_wait_snapshots(&aux, o, &clear))
			goto cleanup;
		asked_at = clock_monotonic_us();
		if (!clear)
		{
			/* Sessions with older snapshots stayed: as a busy table, try again. */
			report_lock_attempt_add(ro->report, 0, 0, "old snapshots");
			if (!session_back_off(rs, attempt))
				goto cleanup;
			continue;
		}
		/*
		 * The reverse slot exists before the swap commits (revert.h); its
		 * creation waits for transactions in progress, the apply's own
		 * among them, which therefore commits first.
		 */
		if (o->revert_window_s > 0)
		{
			if (!apply_commit(rs->a))
			{
				rs->end = session_apply_failed(rs);
				goto cleanup;
			}
			stream_confirm(&rs->s, apply_committed(rs->a));
			if (!revert_prepare(rs->conninfo, &aux, rs->m, REVERT_SLOT_WAIT_MS, &busy))
			{
				if (!busy || !session_back_off(rs, attempt))
					goto cleanup;
				continue;
			}
		}
		if (!cutover_lock(&rs->control, rs->m, o, &l, &busy))
		{
			report_lock_attempt_add(ro->report, (double) (clock_monotonic_us() - asked_at) / 1000.0, 0,
									busy ? "busy" : "failed");
			if (!busy)
				goto cleanup;
			if (!session_back_off(rs, attempt))
				goto cleanup;
			continue;
		}
		locked_at = clock_monotonic_us();
		log_debug("cutover: locked");
		fault_point("lock");
		if (!cutover_flush_wal(&aux) ||
			!session_catch_up(rs, l, locked_at + (int64_t) o->max_lock_hold_ms * 1000, &reached))
		{
			cutover_release(&rs->control);
			goto cleanup;
		}
		if (!reached)
		{
			cutover_release(&rs->control);
			report_lock_attempt_add(ro->report, (double) (locked_at - asked_at) / 1000.0,
									(double) (clock_monotonic_us() - locked_at) / 1000.0, "too slow");
			log_info("cutover attempt %d: catching up to %s would hold the lock over %d ms; "
					 "released, trying again", attempt, lsn_format(l, text), o->max_lock_hold_ms);
			continue;
		}
		log_debug("cutover: caught up %.1f ms after the lock", (double) (clock_monotonic_us() - locked_at) / 1000.0);
		if (!apply_commit(rs->a) || !cutover_swap(&rs->control, rs->m, o, &busy, swapped_at))
		{
			cutover_release(&rs->control);
			if (!busy)
				goto cleanup;
			/* A table a foreign key references was busy: as a busy table, try again. */
			report_lock_attempt_add(ro->report, (double) (locked_at - asked_at) / 1000.0,
									(double) (clock_monotonic_us() - locked_at) / 1000.0, "busy");
			log_info("cutover attempt %d: released, trying again", attempt);
			if (!session_back_off(rs, attempt))
				goto cleanup;
			continue;
		}
		report_lock_attempt_add(ro->report, (double) (locked_at - asked_at) / 1000.0,
								(double) (clock_monotonic_us() - locked_at) / 1000.0,
								o->rehearse ? "rehearsed" : "swapped");
		log_info("cutover %s at %s: the lock was held %.0f ms (attempt %d)",
				 o->rehearse ? "rehearsed" : "done", lsn_format(l, text),
				 (double) (clock_monotonic_us() - locked_at) / 1000.0, attempt);
		session_report_old_snapshots(&aux, swapped_at, ro->report);
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
session_cutover_due(session *rs, const run_options *ro, bool *due)
{
	bool		requested = true;

	*due = false;
	if (rs->m->phase != STATE_SYNCED || !apply_idle(rs->a) ||
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
	 * the request itself, see livecheck_poll); a difference stops the run
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
		else if (v.finished && v.outcome == VERIFY_OUTCOME_FAILED)
		{
			/*
			 * No comparison is no difference: the next session asks again
			 * (a broken connection is the usual cause), and a failure that
			 * persists ends the run after --max-reconnects, with exit 1.
			 */
			log_error("the comparison before the swap could not be made: not swapping yet");
			if (v.text != NULL)
				log_detail("%s", v.text);
			log_hint("The run reconnects and compares again.");
			rs->end = SESSION_LOST;
			state_verification_free(&v);
			return false;
		}
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
session_unique_columns(const catalog_table *t, apply_options *ao)
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
session_run_one(const char *conninfo, const catalog_table *t, state_migration *m,
				   const run_options *ro, lsn_t *in_order)
{
	session rs;
	apply_options ao = {0};
	int64_t		started = clock_monotonic_us();
	int64_t		next_progress = started + (int64_t) ro->progress_seconds * 1000000;
	int64_t		next_tick = 0;
	/* The tests turn the tick off to see the quiet spell alone make a trickle durable. */
	int64_t		tick_us = fault_off("tick") ? INT64_MAX / 2 : 1000000;
	/* When the last message arrived: QUIET_MS without one makes what arrived durable. */
	int64_t		last_message = started;
	lsn_t		start;

	memset(&rs, 0, sizeof(rs));
	rs.conninfo = conninfo;
	rs.ro = ro;
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
	session_unique_columns(t, &ao);

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
		rs.end = db_lost_connection(&rs.target) || strcmp(rs.target.sqlstate, ERRCODE_OBJECT_IN_USE) == 0 ?
			SESSION_LOST : SESSION_FAILED;
		goto cleanup;
	}
	rs.filter = backfill_filter_create(&rs.control, m, t);
	if (rs.filter == NULL)
	{
		rs.end = session_lost_or_failed(&rs.control);
		goto cleanup;
	}
	start = apply_committed(rs.a) > m->consistent_lsn ? apply_committed(rs.a) : m->consistent_lsn;
	if (!session_replay_spool(&rs, &start))
		goto cleanup;
	if (!stream_connect(&rs.s, conninfo) || !stream_start(&rs.s, m->slot, m->publication, start))
	{
		rs.end = SQLSTATE_IN_CLASS(rs.s.sqlstate, SQLSTATE_CLASS_CONNECTION) || strcmp(rs.s.sqlstate, ERRCODE_OBJECT_IN_USE) == 0 ?
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
		int64_t		now = clock_monotonic_us();
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
			session_sample_retained(&rs);
			session_log_progress(&rs.s, rs.a, started, 0, ro->json);
			next_progress = clock_monotonic_us() + (int64_t) ro->progress_seconds * 1000000;
		}
		if (!livecheck_poll(&rs.check, &rs.control, conninfo, m, rs.a, &rs.s, now))
		{
			rs.end = session_lost_or_failed(&rs.control);
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
				if (!session_handle_message(&rs, data, len, lsn))
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
		if (apply_in_source_txn(rs.a) || clock_monotonic_us() < next_tick)
			continue;
		next_tick = clock_monotonic_us() + tick_us;
		if (!session_handle_quiet(&rs) || !session_pause(&rs, ro))
			goto cleanup;
		if (!session_cutover_due(&rs, ro, &due))
		{
			/* It decided how the session ends (a difference, a comparison to retry), or failed. */
			if (rs.end != SESSION_DIFFERENT && rs.end != SESSION_LOST)
				rs.end = session_lost_or_failed(&rs.control);
			goto cleanup;
		}
		if (due)
		{
			if (!session_cutover(&rs, ro, &swapped))
			{
				if (rs.end == SESSION_FAILED)
					rs.end = session_lost_or_failed(&rs.control);
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

		/* A COMMIT still in flight counts once known, or the report misses its rows. */
		if ((rs.end == SESSION_LOST || rs.end == SESSION_STOPPED) && !db_lost_connection(&rs.target))
			apply_settle(rs.a);
		session_log_progress(&rs.s, rs.a, started, 0, ro->json);
		ro->report->changes_applied += st->durable_changes;
	}
	apply_destroy(rs.a);
	free((void *) ao.unique_columns);
	backfill_filter_free(rs.filter);
	pgout_decoder_free(&rs.dec);
	livecheck_close(&rs.check);
	stream_close(&rs.s);
	db_close(&rs.control);
	db_close(&rs.target);
	return rs.end;
}

/* Stream until stopped, reconnecting after lost connections with a growing pause. */
run_result
session_stream(const char *conninfo, const catalog_table *t, state_migration *m,
		   const run_options *ro)
{
	int			failures = 0;
	unsigned int pause = 1;
	lsn_t		in_order = LSN_INVALID;

	for (;;)
	{
		session_end end = session_run_one(conninfo, t, m, ro, &in_order);

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
