/*
 * revert.c: the reverse stream after the swap, and the swap back; see
 * revert.h.
 *
 * The follower is the forward stream's loop in small: receive, apply,
 * commit and confirm at least once a second, check the migration's row for
 * requests once a second.  Its apply targets the old table: a plain table,
 * rows found by key alone, as a replica, changes of transactions with an
 * origin skipped, and a change that finds no row counted rather than fatal
 * (a cascade of the old table's own foreign keys took the row first; the
 * same delete follows in the stream).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpqtypes.h>

#include "pgrepart/apply.h"
#include "pgrepart/clock.h"
#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/pgout.h"
#include "pgrepart/revert.h"
#include "pgrepart/sqlstate.h"
#include "pgrepart/stream.h"

/* The reverse stream's names. */
typedef struct revert_names
{
	char		slot[IDENT_MAX_BYTES + 1];
	char		publication[IDENT_MAX_BYTES + 1];
	char		origin[IDENT_MAX_BYTES + 1];
} revert_names;

static bool revert_check_privileges(db *d);

static void
revert_names_of(const state_migration *m, revert_names *n)
{
	snprintf(n->slot, sizeof(n->slot), "%s" REVERT_SUFFIX, m->slot);
	snprintf(n->publication, sizeof(n->publication), "%s" REVERT_SUFFIX, m->publication);
	snprintf(n->origin, sizeof(n->origin), "%s" REVERT_SUFFIX, m->origin);
}

bool
revert_check(db *d, const catalog_table *t, const char *partition_column)
{
	if (t->nkey_columns == 0)
	{
		log_error("--revert-window: \"%s.%s\" has no primary key or replica identity index, by "
				  "which the old table's rows could be found after the swap", t->schema, t->name);
		log_hint("Give the table a primary key first, or run without --revert-window.");
		return false;
	}
	for (int i = 0; partition_column != NULL && i < t->nindexes; i++)
	{
		const catalog_index *ix = &t->indexes[i];

		if (!ix->unique || catalog_has_column(ix->columns, ix->ncolumns, partition_column))
			continue;
		log_warning("with --revert-window: the new table's version of unique index \"%s\" holds "
					"\"%s\" too, so it may take a row the original's refuses; the original then "
					"cannot follow, and the reverse stream stops", ix->name, partition_column);
	}
	return revert_check_privileges(d);
}

static bool
revert_check_privileges(db *d)
{
	PGresult   *res = PQexec(d->conn, "BEGIN; SET LOCAL session_replication_role = replica");
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	PQclear(res);
	if (!db_exec(d, "end the privilege check", "ROLLBACK"))
		return false;
	if (!ok)
	{
		log_error("--revert-window applies the new table's changes to the old one as a replica, "
				  "and this role may not set session_replication_role");
		log_hint("Run as a superuser, or GRANT SET ON PARAMETER session_replication_role TO the "
				 "role (PostgreSQL 15 and later); or run without --revert-window.");
	}
	return ok;
}

bool
revert_prepare(const char *conninfo, db *d, const state_migration *m, int lock_timeout_ms,
			   bool *busy)
{
	revert_names n = {0};
	PGresult   *res;
	PGbool		have_publication = 0;
	bool		have_slot = false, active = false;
	stream		s;
	lsn_t		consistent;
	bool		ok = false;

	*busy = false;
	revert_names_of(m, &n);
	res = db_execf(d, "look for the reverse publication",
				   "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %text)",
				   n.publication);
	if (res == NULL || !db_getf(res, 0, "%bool", 0, &have_publication) ||
		!state_named_slot_active(d, n.slot, &have_slot, &active))
	{
		PQclear(res);
		return false;
	}
	PQclear(res);
	if (!have_publication)
	{
		buf			sql;

		/*
		 * Through the root: the old table is one table, and partitions made
		 * after the swap are published as the parent's without a change here.
		 */
		buf_init(&sql);
		buf_append(&sql, "CREATE PUBLICATION ");
		ident_quote(&sql, n.publication);
		buf_append(&sql, " FOR TABLE ");
		ident_quote_qualified(&sql, m->schema, m->shadow);
		buf_append(&sql, " WITH (publish_via_partition_root = true)");
		ok = db_exec(d, "publish the shadow for the reverse stream", sql.data);
		buf_free(&sql);
		if (!ok)
			return false;
	}
	if (have_slot)
		return true;
	memset(&s, 0, sizeof(s));
	ok = stream_connect(&s, conninfo) &&
		stream_create_slot(&s, n.slot, false, false, lock_timeout_ms, &consistent, NULL);
	*busy = !ok && strcmp(s.sqlstate, ERRCODE_LOCK_NOT_AVAILABLE) == 0;
	if (ok)
	{
		char		text[LSN_TEXT_SIZE];

		log_info("reverse stream: slot \"%s\" created at %s, before the swap", n.slot,
				 lsn_format(consistent, text));
	}
	else if (*busy)
		log_info("creating the reverse slot waited %d ms for transactions in progress; trying "
				 "again", lock_timeout_ms);
	stream_close(&s);
	return ok;
}

bool
revert_record_swap(db *d, const state_migration *m, const char *old_name, int window_s)
{
	PGresult   *res = db_execf(d, "record the swap",
							   "UPDATE pgrepart.migration SET old_table = %text, "
							   "  revert_until = CASE WHEN %int4 > 0 THEN pg_catalog.now() + "
							   "    pg_catalog.make_interval(secs => %int4) END "
							   "WHERE id = %int4", old_name, window_s, window_s, m->id);

	PQclear(res);
	return res != NULL;
}

bool
revert_drop(const char *conninfo, db *d, const state_migration *m)
{
	revert_names n = {0};

	revert_names_of(m, &n);
	return cutover_drop_objects(conninfo, d, n.slot, n.publication, n.origin);
}

/* ---- the follower ---- */

typedef struct follower
{
	const char *conninfo;
	const state_migration *m;
	const cutover_options *o;
	revert_names n;
	char	   *old_table;
	db			control;		/* requests, the lock of a revert */
	db			aux;			/* WAL positions while control holds the lock */
	db			target;			/* the apply's */
	stream		s;
	apply	   *a;
	pgout_decoder dec;
	catalog_table *t;			/* the old table */
	apply_options ao;
	bool		by_command;		/* "revert" or "finish" follows: it ends with its request */
} follower;

/* pgrepart.migration.reverse_end of a stream that ended in a revert. */
#define FOLLOWER_REVERTED "reverted"

/* The migration's row as the follower reads it each second. */
typedef struct follower_state
{
	bool		gone;			/* the row is gone: a revert finished */
	bool		following;		/* a window was given and the stream has not ended */
	bool		window_over;
	bool		revert;
	bool		finish;
	char	   *ended;			/* how the stream ended, when it has */
	bool		reverted;		/* ... by a revert, whose clean-up may be left to do */
	char	   *partitioned;	/* the revert's name for the partitioned table, or NULL */
} follower_state;

static bool
follower_read_state(db *d, const state_migration *m, follower_state *st, char **old_table)
{
	PGresult   *res = db_execf(d, "read the reverse stream's state",
							   "SELECT revert_until IS NOT NULL AND reverse_ended_at IS NULL, "
							   "  COALESCE(pg_catalog.now() >= revert_until, false), "
							   "  revert_requested_at IS NOT NULL, finish_requested_at IS NOT NULL, "
							   "  reverse_end, old_table::pg_catalog.text, partitioned_name::pg_catalog.text "
							   "FROM pgrepart.migration WHERE id = %int4", m->id);
	PGbool		following = 0, over = 0, revert = 0, finish = 0;

	memset(st, 0, sizeof(*st));
	if (res != NULL && PQntuples(res) == 0)
	{
		st->gone = true;
		PQclear(res);
		return true;
	}
	if (res == NULL ||
		!db_getf(res, 0, "%bool %bool %bool %bool", 0, &following, 1, &over, 2, &revert,
				 3, &finish))
	{
		PQclear(res);
		return false;
	}
	st->following = following;
	st->window_over = over;
	st->revert = revert;
	st->finish = finish;
	st->ended = PQgetisnull(res, 0, 4) ? NULL : xstrdup(PQgetvalue(res, 0, 4));
	st->reverted = st->ended != NULL && strcmp(st->ended, FOLLOWER_REVERTED) == 0;
	st->partitioned = PQgetisnull(res, 0, 6) ? NULL : xstrdup(PQgetvalue(res, 0, 6));
	if (old_table != NULL && !PQgetisnull(res, 0, 5))
	{
		free(*old_table);
		*old_table = xstrdup(PQgetvalue(res, 0, 5));
	}
	PQclear(res);
	return true;
}

/* Record how the stream ended; the follower then drops what it used. */
static bool
follower_record_end(db *d, const state_migration *m, const char *how)
{
	PGresult   *res = db_execf(d, "record the reverse stream's end",
							   "UPDATE pgrepart.migration SET reverse_ended_at = pg_catalog.now(), "
							   "  reverse_end = %text WHERE id = %int4", how, m->id);

	PQclear(res);
	return res != NULL;
}

/* A revert that gave up: its request is withdrawn. */
static bool
follower_withdraw(db *d, const state_migration *m)
{
	PGresult   *res = db_execf(d, "withdraw the revert request",
							   "UPDATE pgrepart.migration SET revert_requested_at = NULL WHERE id = %int4",
							   m->id);

	PQclear(res);
	return res != NULL;
}

static bool
follower_handle(follower *f, const uint8_t *data, size_t len, lsn_t lsn)
{
	pgout_message msg;

	if (!pgout_decode(&f->dec, data, len, &msg))
	{
		log_error("could not decode a reverse stream message at %s: %s", LSN_TEXT(lsn),
				  f->dec.error);
		return false;
	}
	return apply_message(f->a, &msg, lsn);
}

/* Make what arrived durable, between source transactions, and tell the server. */
static bool
follower_commit(follower *f)
{
	if (apply_in_source_txn(f->a))
		return true;
	if (!apply_commit(f->a))
		return false;
	stream_confirm(&f->s, apply_committed(f->a));
	return true;
}

static void
follower_log_progress(const follower *f)
{
	const apply_stats *st = apply_get_stats(f->a);
	uint64_t	behind = f->s.server_end > f->s.flushed ? f->s.server_end - f->s.flushed : 0;
	char		lsn[LSN_TEXT_SIZE];

	log_info("reverse stream: %" PRId64 " changes applied to \"%s.%s\" (%" PRId64 " found no row, "
			 "%" PRId64 " of pgrepart's own skipped), at %s, %" PRIu64 " bytes behind",
			 st->inserts + st->updates + st->deletes, f->m->schema, f->old_table,
			 st->missed, st->skipped, lsn_format(apply_committed(f->a), lsn), behind);
}

/* One step: wait up to timeout_ms for a message and apply it. */
static bool
follower_step(follower *f, int timeout_ms, bool *lost)
{
	const uint8_t *data;
	size_t		len;
	lsn_t		lsn;

	*lost = false;
	switch (stream_receive(&f->s, timeout_ms, true, &data, &len, &lsn))
	{
		case STREAM_DATA:
			return follower_handle(f, data, len, lsn);
		case STREAM_TIMEOUT:
		case STREAM_CAUGHT_UP:
			return follower_commit(f);
		case STREAM_ENDED:
		case STREAM_FAILED:
			*lost = true;
			return false;
	}
	return true;
}

/*
 * Apply everything the server wrote before l, or give up at deadline_us;
 * *reached says which.  As the cutover's catch-up: a status update that
 * asks for a reply brings the server's position at once.
 */
static bool
follower_catch_up(follower *f, lsn_t l, int64_t deadline_us, bool *reached)
{
	*reached = false;
	while (clock_monotonic_us() < deadline_us)
	{
		bool		lost;

		if (f->s.server_end >= l)
		{
			if (!follower_commit(f))
				return false;
			if (apply_idle(f->a))
			{
				*reached = true;
				return true;
			}
		}
		if (!stream_send_status(&f->s, true) || !follower_step(f, 5, &lost))
			return false;
	}
	return true;
}

/*
 * The renames of the swap back, in the locked transaction: the new table's
 * indexes and key constraints take REVERT_PARTITIONED_SUFFIX (freeing the
 * table's names), the old table's lose the "_old" the swap gave them, then
 * the tables change names.
 */
static bool
revert_rename(db *d, const char *schema, const char *qtable, const char *qold, const char *table,
			  const char *partitioned)
{
	PGresult   *res = db_execf(d, "read the index names",
							   "SELECT pg_catalog.format(CASE WHEN k.conname IS NOT NULL "
							   "    THEN 'ALTER TABLE %1$s RENAME CONSTRAINT %2$I TO %3$I' "
							   "    ELSE 'ALTER INDEX %4$I.%2$I RENAME TO %3$I' END, "
							   "  %text, COALESCE(k.conname, i.relname), "
							   "  COALESCE(k.conname, i.relname) || %text, %text), 0 "
							   "FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
							   "LEFT JOIN pg_catalog.pg_constraint k ON k.conindid = x.indexrelid "
							   "  AND k.conrelid = x.indrelid "
							   "WHERE x.indrelid = %text::pg_catalog.regclass "
							   "UNION ALL "
							   "SELECT pg_catalog.format(CASE WHEN k.conname IS NOT NULL "
							   "    THEN 'ALTER TABLE %1$s RENAME CONSTRAINT %2$I TO %3$I' "
							   "    ELSE 'ALTER INDEX %4$I.%2$I RENAME TO %3$I' END, "
							   "  %text, COALESCE(k.conname, i.relname), "
							   "  pg_catalog.regexp_replace(COALESCE(k.conname, i.relname), '_old$', ''), %text), 1 "
							   "FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
							   "LEFT JOIN pg_catalog.pg_constraint k ON k.conindid = x.indexrelid "
							   "  AND k.conrelid = x.indrelid "
							   "WHERE x.indrelid = %text::pg_catalog.regclass "
							   "  AND COALESCE(k.conname, i.relname) ~ '_old$' "
							   "UNION ALL "
							   "SELECT pg_catalog.format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', %text, "
							   "  k.conname, pg_catalog.regexp_replace(k.conname, '_old$', '')), 2 "
							   "FROM pg_catalog.pg_constraint k WHERE k.conrelid = %text::pg_catalog.regclass "
							   "  AND k.contype IN ('f', 'c') AND k.conname ~ '_old$' "
							   "ORDER BY 2",
							   qtable, REVERT_PARTITIONED_SUFFIX, schema, qtable,
							   qold, schema, qold, qold, qold);
	buf			sql;
	bool		ok = res != NULL;

	for (int i = 0; ok && i < PQntuples(res); i++)
	{
		log_debug("%s", PQgetvalue(res, i, 0));
		ok = db_exec(d, "rename an index or constraint", PQgetvalue(res, i, 0));
	}
	PQclear(res);
	buf_init(&sql);
	buf_appendf(&sql, "ALTER TABLE %s RENAME TO ", qtable);
	ident_quote(&sql, partitioned);
	ok = ok && db_exec(d, "rename the partitioned table", sql.data);
	buf_reset(&sql);
	buf_appendf(&sql, "ALTER TABLE %s RENAME TO ", qold);
	ident_quote(&sql, table);
	ok = ok && db_exec(d, "rename the old table back", sql.data);
	buf_free(&sql);
	return ok;
}

/* The partitioned table's name after the swap back: the one asked for, else <table>_partitioned. */
static void
revert_partitioned_name(char *out, const state_migration *m, const char *partitioned_name, int encoding)
{
	if (partitioned_name != NULL)
		snprintf(out, IDENT_MAX_BYTES + 1, "%s", partitioned_name);
	else
		ident_with_suffix(out, m->table, REVERT_PARTITIONED_SUFFIX, encoding);
}

bool
revert_swap_back(db *d, const state_migration *m, const char *old_table, const char *partitioned_name,
				 bool *busy)
{
	char		partitioned[IDENT_MAX_BYTES + 1];
	char	   *qtable = ident_qualified(m->schema, m->table);
	char	   *qold = ident_qualified(m->schema, old_table);
	char	   *qpartitioned;
	revert_names n = {0};
	PGresult   *deps = NULL, *views = NULL;
	bool		ok;

	revert_names_of(m, &n);
	revert_partitioned_name(partitioned, m, partitioned_name, d->encoding);
	qpartitioned = ident_qualified(m->schema, partitioned);
	ok = cutover_read_dependents(d, qtable, qold, qpartitioned, n.publication, &deps, &views) &&
		revert_rename(d, m->schema, qtable, qold, m->table, partitioned) &&
		cutover_carry_dependents(d, deps, views);
	*busy = !ok && strcmp(d->sqlstate, ERRCODE_LOCK_NOT_AVAILABLE) == 0;
	PQclear(deps);
	PQclear(views);
	free(qtable);
	free(qold);
	free(qpartitioned);
	return ok;
}

/*
 * Holding the lock on the new table, with the old one caught up to the
 * mark: swap back, record the end, commit.
 */
static bool
revert_swap(follower *f, const char *partitioned, bool *busy)
{
	db		   *d = &f->control;

	if (!revert_swap_back(d, f->m, f->old_table, partitioned, busy) || !follower_record_end(d, f->m, FOLLOWER_REVERTED))
		return false;
	fault_point("revert");
	return db_exec(d, "commit the swap back", "COMMIT");
}

/* Between attempts: back off with jitter, applying the stream meanwhile. */
static bool
follower_back_off(follower *f, int attempt)
{
	int64_t		until = clock_monotonic_us() + 50000 + (int64_t) (rand() % (100000 * (attempt < 5 ? attempt : 5)));

	while (clock_monotonic_us() < until)
	{
		bool		lost;

		if (!follower_step(f, 10, &lost))
			return false;
	}
	return true;
}

/*
 * "pgrepart revert": the swap back, under the cutover's bounds.  *gave_up
 * when every attempt found the table busy: the stream goes on.
 */
static revert_end
follower_revert(follower *f, const char *partitioned, volatile sig_atomic_t *stop, bool *gave_up)
{
	const cutover_options *o = f->o;

	log_info("revert: taking the lock on \"%s.%s\" (at most %d ms, held at most %d ms, %d "
			 "attempts)", f->m->schema, f->m->table, o->lock_timeout_ms, o->max_lock_hold_ms,
			 o->retries);
	for (int attempt = 1; attempt <= o->retries; attempt++)
	{
		lsn_t		l, now;
		bool		busy = false, reached = false;
		int64_t		locked_at;
		char		text[LSN_TEXT_SIZE];
		char		name[IDENT_MAX_BYTES + 1];

		if (*stop)
			return REVERT_STOPPED;
		/* Caught up first, so that the lock is held only for the moment between. */
		if (!cutover_current_lsn(&f->aux, &now) ||
			!follower_catch_up(f, now, clock_monotonic_us() + 2000000, &reached))
			return REVERT_FAILED;
		if (!cutover_lock(&f->control, f->m, o, &l, &busy))
		{
			if (!busy || !follower_back_off(f, attempt))
				return REVERT_FAILED;
			continue;
		}
		locked_at = clock_monotonic_us();
		if (!cutover_flush_wal(&f->aux) ||
			!follower_catch_up(f, l, locked_at + (int64_t) o->max_lock_hold_ms * 1000, &reached))
		{
			cutover_release(&f->control);
			return REVERT_FAILED;
		}
		if (!reached)
		{
			cutover_release(&f->control);
			log_info("revert attempt %d: catching up to %s would hold the lock over %d ms; "
					 "released, trying again", attempt, lsn_format(l, text), o->max_lock_hold_ms);
			continue;
		}
		if (!revert_swap(f, partitioned, &busy))
		{
			cutover_release(&f->control);
			if (!busy || !follower_back_off(f, attempt))
				return REVERT_FAILED;
			log_info("revert attempt %d: a table the swap back needs was busy; released, trying "
					 "again", attempt);
			continue;
		}
		revert_partitioned_name(name, f->m, partitioned, f->control.encoding);
		log_info("reverted at %s: \"%s.%s\" is the original table again, the partitioned one is "
				 "\"%s\"; the lock was held %.0f ms (attempt %d)", lsn_format(l, text),
				 f->m->schema, f->m->table, name,
				 (double) (clock_monotonic_us() - locked_at) / 1000.0, attempt);
		return REVERT_REVERTED;
	}
	log_error("could not revert \"%s.%s\" in %d attempts", f->m->schema, f->m->table, o->retries);
	log_hint("Sessions kept the table locked; the old table is still kept in step. Run pgrepart "
			 "revert again, or raise --lock-timeout or --cutover-retries.");
	*gave_up = true;
	return REVERT_FAILED;
}

static bool
follower_open(follower *f)
{
	pgout_decoder_init(&f->dec);
	if (!db_connect(&f->control, f->conninfo, "source") ||
		!db_connect(&f->aux, f->conninfo, "source") ||
		!db_connect(&f->target, f->conninfo, "target") ||
		!catalog_read(&f->control, f->m->schema, f->old_table, &f->t))
		return false;
	f->ao.schema = f->m->schema;
	f->ao.table = f->old_table;
	f->ao.shadow = f->old_table;
	f->ao.partition_column = NULL;
	f->ao.origin = f->n.origin;
	f->ao.key_columns = f->t->key_columns;
	f->ao.nkey_columns = f->t->nkey_columns;
	f->ao.tolerate_missing = true;
	f->ao.replica_role = true;
	f->ao.skip_origins = true;
	/* Updates are not folded: the old table's unique indexes are not looked at here. */
	f->ao.fold = false;
	if (f->t->nkey_columns == 0)
	{
		log_error("\"%s.%s\" has no key to find rows by", f->m->schema, f->old_table);
		return false;
	}
	f->a = apply_create(&f->target, &f->ao);
	return f->a != NULL && stream_connect(&f->s, f->conninfo) &&
		stream_start(&f->s, f->n.slot, f->n.publication, apply_committed(f->a));
}

static void
follower_close(follower *f)
{
	apply_destroy(f->a);
	f->a = NULL;
	stream_close(&f->s);
	memset(&f->s, 0, sizeof(f->s));
	pgout_decoder_free(&f->dec);
	catalog_table_free(f->t);
	f->t = NULL;
	db_close(&f->target);
	db_close(&f->aux);
	db_close(&f->control);
}

/*
 * The stream ended for good: record how (a revert did in its transaction),
 * then drop what it used; a revert's migration is then forgotten, its
 * record gone with the table it described.  Each step is idempotent, and a
 * crash between them leaves what the next follower finishes.
 */
static revert_end
follower_end(follower *f, const char *how, revert_end end)
{
	db			d = {0};
	PGresult   *res = NULL;
	bool		ok;

	/*
	 * Recorded while this follower still holds the slot: a command waiting
	 * for it then finds the end, never a slot free to follow.
	 */
	ok = db_connect(&d, f->conninfo, "source") && (how == NULL || follower_record_end(&d, f->m, how));
	follower_close(f);
	ok = ok && revert_drop(f->conninfo, &d, f->m);
	if (ok && end == REVERT_REVERTED)
	{
		res = db_execf(&d, "forget the reverted migration",
					   "DELETE FROM pgrepart.migration WHERE id = %int4", f->m->id);
		ok = res != NULL;
	}
	PQclear(res);
	db_close(&d);
	return ok ? end : REVERT_FAILED;
}

/*
 * Whether to open the stream again after a failure, rather than give up: a
 * unique violation that applying out of source order may have caused (the
 * transactions up to it go again one change per statement, as the forward
 * stream's do), or a connection lost.
 */
static bool
follower_again(follower *f, bool lost)
{
	if (f->a != NULL && apply_replay_until(f->a) != LSN_INVALID)
	{
		f->ao.in_order_until = apply_replay_until(f->a);
		return true;
	}
	return lost || SQLSTATE_IN_CLASS(f->s.sqlstate, SQLSTATE_CLASS_CONNECTION) ||
		db_lost_connection(&f->target) || db_lost_connection(&f->control) ||
		db_lost_connection(&f->aux);
}

/*
 * Follow the opened stream until it ends for good (*end) or must be opened
 * again (*again).
 */
static void
follower_run(follower *f, volatile sig_atomic_t *stop, int progress_seconds, revert_end *end,
			 bool *again)
{
	const state_migration *m = f->m;
	follower_state st = {0};
	int64_t		next_check = 0;
	int64_t		next_progress = clock_monotonic_us() + (int64_t) progress_seconds * 1000000;
	char		text[LSN_TEXT_SIZE];

	*end = REVERT_FAILED;
	*again = false;
	log_info("reverse stream: applying the changes of \"%s.%s\" to \"%s.%s\" from %s", m->schema,
			 m->table, m->schema, f->old_table, lsn_format(apply_committed(f->a), text));
	for (;;)
	{
		int64_t		now = clock_monotonic_us();
		bool		lost = false;

		if (*stop)
		{
			if (follower_commit(f) && stream_send_status(&f->s, false))
				*end = REVERT_STOPPED;
			break;
		}
		if (now >= next_check && !apply_in_source_txn(f->a))
		{
			free(st.ended);
			free(st.partitioned);
			st.ended = NULL;
			st.partitioned = NULL;
			if (!follower_commit(f) || !follower_read_state(&f->control, m, &st, NULL))
			{
				*again = follower_again(f, false);
				break;
			}
			if (st.gone)
			{
				log_error("the migration of \"%s.%s\" was removed under the reverse stream",
						  m->schema, m->table);
				break;
			}
			if (st.revert)
			{
				bool		gave_up = false;

				*end = follower_revert(f, st.partitioned, stop, &gave_up);
				if (*end == REVERT_REVERTED)
					*end = follower_end(f, NULL, REVERT_REVERTED);
				else if (gave_up && follower_withdraw(&f->control, m) && !f->by_command)
				{
					/* The request is withdrawn, which tells the command; the window goes on. */
					next_check = clock_monotonic_us() + 1000000;
					continue;
				}
				else if (*end == REVERT_FAILED)
					*again = follower_again(f, false);
				break;
			}
			if (st.finish || st.window_over || !st.following)
			{
				log_info("reverse stream: %s; dropping its slot, publication and origin; \"%s.%s\" "
						 "stays as it is", st.finish ? "finish was asked" : "the window is over",
						 m->schema, f->old_table);
				*end = follower_end(f, "finished", REVERT_FINISHED);
				break;
			}
			next_check = now + 1000000;
		}
		if (now >= next_progress)
		{
			follower_log_progress(f);
			next_progress = now + (int64_t) progress_seconds * 1000000;
		}
		if (!follower_step(f, apply_idle(f->a) ? 1000 : 50, &lost))
		{
			if (!lost && apply_get_failure(f->a) == APPLY_FAILURE_SCHEMA)
			{
				log_error("the columns of \"%s.%s\" changed after the swap: the old table cannot "
						  "follow it, and a revert is no longer possible", m->schema, m->table);
				*end = follower_end(f, "the new table's columns changed after the swap", REVERT_FAILED);
			}
			else
				*again = follower_again(f, lost);
			if (!*again && strcmp(f->target.sqlstate, ERRCODE_UNIQUE_VIOLATION) == 0)
				log_hint("The new table's unique keys hold the partition column, so it took a row the "
						 "original's narrower key refuses: the original cannot follow, and a revert would "
						 "lose rows. The reverse slot keeps its WAL until pgrepart finish ends the window.");
			break;
		}
	}
	free(st.ended);
	free(st.partitioned);
}

/* A command takes over a reverse stream no run has followed for this long. */
#define REVERT_AWAY_US INT64_C(3000000)

/* Opening the stream again after a lost connection: this many times in a row at most. */
#define FOLLOWER_MAX_REOPENS 10

/* The run's follower, or (by_command) one that ends with its request. */
static revert_end
follower_follow(const char *conninfo, const state_migration *m, const cutover_options *o,
				volatile sig_atomic_t *stop, int progress_seconds, bool by_command)
{
	follower	f;
	follower_state st = {0};
	revert_end	end = REVERT_FAILED;

	memset(&f, 0, sizeof(f));
	f.by_command = by_command;
	f.conninfo = conninfo;
	f.m = m;
	f.o = o;
	revert_names_of(m, &f.n);
	if (!db_connect(&f.control, conninfo, "source") ||
		!follower_read_state(&f.control, m, &st, &f.old_table))
		goto cleanup;
	if (st.gone)
	{
		end = REVERT_REVERTED;
		goto cleanup;
	}
	if (!st.following)
	{
		/* An end recorded before a crash: what it used may still be there. */
		if (st.ended == NULL)
			end = REVERT_NONE;
		else
			end = follower_end(&f, NULL, st.reverted ? REVERT_REVERTED : REVERT_FINISHED);
		goto cleanup;
	}
	db_close(&f.control);
	for (int reopens = 0;; reopens++)
	{
		bool		again = false;
		lsn_t		in_order = f.ao.in_order_until;

		if (follower_open(&f))
			follower_run(&f, stop, progress_seconds, &end, &again);
		else
			again = follower_again(&f, false);
		follower_close(&f);
		/* A replay in order is progress; only lost connections count against the limit. */
		if (f.ao.in_order_until != in_order)
			reopens = 0;
		if (!again || *stop || reopens >= FOLLOWER_MAX_REOPENS)
			break;
		log_info("reverse stream: opening it again (%d)", reopens + 1);
		sleep(1);
	}

cleanup:
	free(st.ended);
	free(st.partitioned);
	follower_close(&f);
	free(f.old_table);
	return end;
}

bool
revert_rehearse(const char *conninfo, const state_migration *m)
{
	follower	f;
	lsn_t		now;
	bool		reached = false;
	bool		ok = false;

	memset(&f, 0, sizeof(f));
	f.conninfo = conninfo;
	f.m = m;
	revert_names_of(m, &f.n);
	f.old_table = xstrdup(m->shadow);
	if (follower_open(&f) && cutover_current_lsn(&f.aux, &now) &&
		follower_catch_up(&f, now, clock_monotonic_us() + 30000000, &reached))
	{
		const apply_stats *st = apply_get_stats(f.a);
		/* Skipped changes are counted apart, not among these. */
		int64_t		applied = st->inserts + st->updates + st->deletes + st->truncates;
		char		text[LSN_TEXT_SIZE];

		ok = reached && applied == 0;
		if (!reached)
			log_error("rehearsal: the reverse stream did not reach %s in 30 s", lsn_format(now, text));
		else if (applied > 0)
			log_error("rehearsal: the reverse stream carried %" PRId64 " changes that were not "
					  "pgrepart's own", applied);
		else
			log_info("rehearsal: the reverse stream followed to %s: %" PRId64 " changes of "
					 "pgrepart's own skipped, none applied", lsn_format(now, text), st->skipped);
	}
	follower_close(&f);
	free(f.old_table);
	return ok;
}

revert_end
revert_follow(const char *conninfo, const state_migration *m, const cutover_options *o,
			  volatile sig_atomic_t *stop, int progress_seconds)
{
	return follower_follow(conninfo, m, o, stop, progress_seconds, false);
}

/*
 * The command waits for the run through a connection of its own; a server
 * restart or a terminated session must not turn a revert that the run
 * completes into a failed command.  Reconnecting is tried this many
 * times, a second apart.
 */
#define COMMAND_RECONNECTS 60

/* After the command's connection broke: connect again, or say why not. */
static bool
command_reconnect(db *d, const char *conninfo, const volatile sig_atomic_t *stop)
{
	log_info("the connection was lost: connecting again to go on waiting");
	for (int attempt = 0; attempt < COMMAND_RECONNECTS && !*stop; attempt++)
	{
		db_close(d);
		sleep(1);
		if (db_connect(d, conninfo, "source"))
			return true;
	}
	return false;
}

int
revert_command(const char *conninfo, const char *schema, const char *table,
			   const cutover_options *o, const char *partitioned_name, volatile sig_atomic_t *stop,
			   bool revert)
{
	db			d = {0};
	catalog_table *t = NULL;
	state_migration *m = NULL;
	follower_state st = {0};
	revert_names n = {0};
	int			rc = 1;

	if (!state_open(&d, conninfo, schema, table, &t, &m))
		goto cleanup;
	if (m == NULL || m->phase != STATE_DONE)
	{
		log_error("\"%s.%s\" has no swapped migration to %s", t->schema, t->name,
				  revert ? "revert" : "finish");
		rc = 6;
		goto cleanup;
	}
	if (!follower_read_state(&d, m, &st, NULL))
		goto cleanup;
	if (!st.gone && !st.following && !st.reverted)
	{
		if (st.ended != NULL)
			log_error("the reverse stream of \"%s.%s\" has ended (%s): %s", t->schema, t->name,
					  st.ended, revert ? "there is no way back" : "nothing to finish");
		else
			log_error("the migration of \"%s.%s\" keeps no reverse stream (run without "
					  "--revert-window)", t->schema, t->name);
		goto cleanup;
	}
	revert_names_of(m, &n);
	{
		PGresult   *res = revert ?
			db_execf(&d, "record the request",
					 "UPDATE pgrepart.migration SET revert_requested_at = pg_catalog.now(), "
					 "  partitioned_name = %text WHERE id = %int4", partitioned_name, m->id) :
			db_execf(&d, "record the request",
					 "UPDATE pgrepart.migration SET finish_requested_at = pg_catalog.now() "
					 "WHERE id = %int4", m->id);

		PQclear(res);
		if (res == NULL)
			goto cleanup;
	}
	log_info("asked for the %s of \"%s.%s\"", revert ? "revert" : "finish", t->schema, t->name);
	for (int64_t idle_since = 0;;)
	{
		bool		active = false;

		free(st.ended);
		free(st.partitioned);
		if (!follower_read_state(&d, m, &st, NULL))
		{
			if (db_lost_connection(&d) && command_reconnect(&d, conninfo, stop))
				continue;
			goto cleanup;
		}
		if (st.gone || (!st.following && !st.reverted))
		{
			rc = 0;
			break;
		}
		if (revert && !st.revert && st.following)
		{
			log_error("the run following the reverse stream could not revert \"%s.%s\" (see its "
					  "log); the old table is still kept in step", t->schema, t->name);
			break;
		}
		if (!state_named_slot_active(&d, n.slot, NULL, &active))
		{
			if (db_lost_connection(&d) && command_reconnect(&d, conninfo, stop))
				continue;
			goto cleanup;
		}
		/*
		 * No run has followed the stream for a while (a run opening it
		 * again is away for a second): this command follows it.
		 */
		if (active)
			idle_since = 0;
		else if (idle_since == 0)
			idle_since = clock_monotonic_us();
		if (!active && clock_monotonic_us() - idle_since >= REVERT_AWAY_US)
		{
			switch (follower_follow(conninfo, m, o, stop, 10, true))
			{
				case REVERT_REVERTED:
				case REVERT_FINISHED:
				case REVERT_NONE:
					rc = 0;
					break;
				case REVERT_STOPPED:
					rc = 5;
					break;
				case REVERT_FAILED:
					rc = 1;
					break;
			}
			break;
		}
		if (*stop)
		{
			rc = 5;
			break;
		}
		usleep(200000);
	}
	if (rc == 0 && revert)
		log_info("\"%s.%s\" is reverted", t->schema, t->name);

cleanup:
	free(st.ended);
	free(st.partitioned);
	state_migration_free(m);
	catalog_table_free(t);
	db_close(&d);
	return rc;
}
