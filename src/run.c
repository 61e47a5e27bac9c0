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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpqtypes.h>

#include "pgrepart/apply.h"
#include "pgrepart/catalog.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/partition.h"
#include "pgrepart/pgout.h"
#include "pgrepart/run.h"
#include "pgrepart/state.h"
#include "pgrepart/stream.h"

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
		!state_run_statements(d, *m, PLAN_PHASE_TABLE) ||
		!state_run_statements(d, *m, PLAN_PHASE_PARTITION) ||
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

/* Partitions for the column's current min and max, in the caller's snapshot. */
static bool
run_cover_range(db *d, const state_migration *m)
{
	char	   *qshadow = ident_qualified(m->schema, m->shadow);
	buf			sql;
	PGresult   *res = NULL;
	Oid			type;
	bool		ok = false;

	buf_init(&sql);
	buf_append(&sql, "SELECT pg_catalog.min(");
	ident_quote(&sql, m->partition_column);
	buf_append(&sql, ")::pg_catalog.text, pg_catalog.max(");
	ident_quote(&sql, m->partition_column);
	buf_append(&sql, ")::pg_catalog.text, (SELECT a.atttypid FROM pg_catalog.pg_attribute a "
			   "WHERE a.attrelid = %text::pg_catalog.regclass AND a.attname = %text) FROM ");
	ident_quote_qualified(&sql, m->schema, m->table);
	res = db_execf(d, "read the partition column's range", sql.data, qshadow, m->partition_column);
	if (res == NULL || !db_getf(res, 0, "%oid", 2, &type))
		goto cleanup;
	for (int i = 0; i < 2; i++)
	{
		partition_set created;

		if (PQgetisnull(res, 0, i))
			continue;
		if (!partition_extend(d, m->schema, m->table, qshadow, type, m->interval, NULL,
							  PQgetvalue(res, 0, i), &created))
			goto cleanup;
		for (int j = 0; j < created.count; j++)
			log_info("created partition \"%s.%s\" for rows beyond the planned partitions",
					 m->schema, created.items[j].name);
		partition_set_free(&created);
	}
	ok = true;

cleanup:
	PQclear(res);
	buf_free(&sql);
	free(qshadow);
	return ok;
}

static bool
run_slot_exists(db *d, const char *slot, bool *exists)
{
	PGresult   *res = db_execf(d, "look up the replication slot",
							   "SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %text",
							   slot);

	if (res == NULL)
		return false;
	*exists = PQntuples(res) > 0;
	PQclear(res);
	return true;
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
	bool		exists = false;
	bool		ok = false;
	buf			sql, columns;
	char		lsn[LSN_TEXT_SIZE];

	buf_init(&sql);
	buf_init(&columns);
	memset(&s, 0, sizeof(s));
	if (!run_slot_exists(d, m->slot, &exists) || !stream_connect(&s, conninfo))
		goto cleanup;
	if (exists)
	{
		log_info("dropping replication slot \"%s\" left by an interrupted copy", m->slot);
		if (!stream_drop_slot(&s, m->slot))
			goto cleanup;
	}
	log_info("creating replication slot \"%s\" (waits for transactions in progress)", m->slot);
	if (!stream_create_slot(&s, m->slot, true, 0, &consistent, &snapshot))
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
	if (!run_cover_range(d, m))
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

/*
 * Keys and indexes, after the copy.  Foreign keys wait for the cutover: a
 * cascade on a referenced table would delete shadow rows before the stream
 * brings the same deletes.
 */
static bool
run_build_indexes(db *d, state_migration *m)
{
	log_info("building the shadow's keys and indexes");
	if (!db_exec(d, "start the index build", "BEGIN") ||
		!db_exec(d, "raise maintenance_work_mem", "SET LOCAL maintenance_work_mem = '512MB'") ||
		!state_run_statements(d, m, PLAN_PHASE_INDEX) ||
		!state_run_statements(d, m, PLAN_PHASE_COMMENT) ||
		!state_set_phase(d, m, STATE_INDEXED, LSN_INVALID) ||
		!db_exec(d, "commit the index build", "COMMIT"))
	{
		db_exec(d, "roll back the index build", "ROLLBACK");
		return false;
	}
	return true;
}

/* One streaming session: connect, apply until stopped or the connection fails. */
typedef enum session_end
{
	SESSION_STOPPED,
	SESSION_LOST,				/* a connection broke: reconnect */
	SESSION_FAILED
} session_end;

static void
run_log_progress(const stream *s, const apply *a, int64_t started_us, int64_t base_changes)
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
}

static session_end
run_stream_session(const char *conninfo, const state_migration *m, const run_options *ro)
{
	db			target = {0};
	stream		s;
	apply	   *a = NULL;
	pgout_decoder dec;
	apply_options ao = {0};
	session_end end = SESSION_FAILED;
	int64_t		started = lsn_monotonic_us();
	int64_t		next_progress = started + (int64_t) ro->progress_seconds * 1000000;
	lsn_t		start;

	memset(&s, 0, sizeof(s));
	pgout_decoder_init(&dec);
	ao.schema = m->schema;
	ao.table = m->table;
	ao.shadow = m->shadow;
	ao.partition_column = m->partition_column;
	ao.interval = m->interval;
	ao.origin = m->origin;
	ao.batch_transactions = ro->batch_transactions;
	ao.copy_threshold = ro->copy_threshold;

	if (!db_connect(&target, conninfo, "target"))
	{
		end = db_lost_connection(&target) ? SESSION_LOST : SESSION_FAILED;
		goto cleanup;
	}
	a = apply_create(&target, &ao);
	if (a == NULL)
	{
		/* 55006: the origin or slot is still held by a session that is going away. */
		end = db_lost_connection(&target) || strcmp(target.sqlstate, "55006") == 0 ?
			SESSION_LOST : SESSION_FAILED;
		goto cleanup;
	}
	start = apply_committed(a) > m->consistent_lsn ? apply_committed(a) : m->consistent_lsn;
	if (!stream_connect(&s, conninfo) || !stream_start(&s, m->slot, m->publication, start))
	{
		end = strncmp(s.sqlstate, "08", 2) == 0 || strcmp(s.sqlstate, "55006") == 0 ?
			SESSION_LOST : SESSION_FAILED;
		goto cleanup;
	}
	{
		char		text[LSN_TEXT_SIZE];

		log_info("streaming changes from %s", lsn_format(start, text));
	}

	for (;;)
	{
		const uint8_t *data;
		size_t		len;
		lsn_t		lsn;
		pgout_message msg;
		stream_result r;

		if (run_stop_requested(ro))
		{
			if (!apply_commit(a))
				goto cleanup;
			stream_confirm(&s, apply_committed(a));
			stream_send_status(&s, false);
			end = SESSION_STOPPED;
			goto cleanup;
		}
		if (lsn_monotonic_us() >= next_progress)
		{
			run_log_progress(&s, a, started, 0);
			next_progress = lsn_monotonic_us() + (int64_t) ro->progress_seconds * 1000000;
		}
		r = stream_receive(&s, apply_idle(a) ? 1000 : 50, &data, &len, &lsn);
		switch (r)
		{
			case STREAM_DATA:
				if (!pgout_decode(&dec, data, len, &msg))
				{
					char		text[LSN_TEXT_SIZE];

					log_error("%s at %s", dec.error, lsn_format(lsn, text));
					goto cleanup;
				}
				if (!apply_message(a, &msg, lsn))
				{
					end = db_lost_connection(&target) ? SESSION_LOST : SESSION_FAILED;
					goto cleanup;
				}
				stream_confirm(&s, apply_committed(a));
				break;
			case STREAM_TIMEOUT:
				/* The stream is quiet: make what arrived durable. */
				if (!apply_commit(a))
				{
					end = db_lost_connection(&target) ? SESSION_LOST : SESSION_FAILED;
					goto cleanup;
				}
				stream_confirm(&s, apply_committed(a));
				/* Nothing received is unapplied: idle WAL may be confirmed too. */
				if (apply_idle(a) && s.received <= apply_committed(a))
					stream_confirm(&s, s.server_end);
				break;
			case STREAM_ENDED:
			case STREAM_FAILED:
				end = SESSION_LOST;
				goto cleanup;
		}
	}

cleanup:
	if (a != NULL)
		run_log_progress(&s, a, started, 0);
	apply_destroy(a);
	pgout_decoder_free(&dec);
	stream_close(&s);
	db_close(&target);
	return end;
}

/* Stream until stopped, reconnecting after lost connections with a growing pause. */
static run_result
run_stream(const char *conninfo, const state_migration *m, const run_options *ro)
{
	int			failures = 0;
	unsigned int pause = 1;

	for (;;)
	{
		session_end end = run_stream_session(conninfo, m, ro);

		if (end == SESSION_STOPPED)
		{
			log_info("stopped; run the same command again to resume");
			return RUN_STOPPED;
		}
		if (end == SESSION_FAILED || ++failures > ro->max_reconnects)
			return RUN_FAILED;
		if (run_stop_requested(ro))
			return RUN_STOPPED;
		log_info("reconnecting in %u s (attempt %d of %d)", pause, failures, ro->max_reconnects);
		sleep(pause);
		pause = pause < 16 ? pause * 2 : 30;
	}
}

run_result
run_migration(const char *conninfo, const char *schema, const char *table,
			  const plan_options *po, const run_options *ro)
{
	db			d = {0};
	catalog_table *t = NULL;
	state_migration *m = NULL;
	run_result	result = RUN_FAILED;

	if (!db_connect(&d, conninfo, "source") || !catalog_read(&d, schema, table, &t) ||
		!state_ensure(&d) || !state_find(&d, t->schema, t->name, &m))
		goto cleanup;
	if (m == NULL)
	{
		result = run_prepare(&d, conninfo, t->schema, t->name, po, &m);
		if (result != RUN_DONE)
			goto cleanup;
		result = RUN_FAILED;
	}
	else
		log_info("resuming the migration of \"%s.%s\" from phase %s", m->schema, m->table,
				 m->phase);

	if (strcmp(m->phase, STATE_PREPARED) == 0 && !run_copy(&d, conninfo, m))
		goto cleanup;
	if (run_stop_requested(ro))
	{
		result = RUN_STOPPED;
		goto cleanup;
	}
	if (strcmp(m->phase, STATE_COPIED) == 0 && !run_build_indexes(&d, m))
		goto cleanup;
	if (strcmp(m->phase, STATE_INDEXED) == 0 &&
		!state_set_phase(&d, m, STATE_STREAMING, LSN_INVALID))
		goto cleanup;
	/* The source connection is not needed while streaming. */
	db_close(&d);
	result = run_stream(conninfo, m, ro);

cleanup:
	state_migration_free(m);
	catalog_table_free(t);
	db_close(&d);
	return result;
}
