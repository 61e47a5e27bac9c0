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

#include "pgrepart/backfill.h"
#include "pgrepart/build.h"
#include "pgrepart/catalog.h"
#include "pgrepart/cutover.h"
#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/plan.h"
#include "pgrepart/plan_report.h"
#include "pgrepart/preflight.h"
#include "pgrepart/report.h"
#include "pgrepart/revert.h"
#include "pgrepart/run.h"
#include "pgrepart/session.h"
#include "pgrepart/spool.h"
#include "pgrepart/state.h"
#include "pgrepart/throttle.h"

bool
run_stop_requested(const run_options *ro)
{
	return ro->stop != NULL && *ro->stop;
}

/* Plan, record the migration, create the publication and the shadow: one transaction. */
static run_result
run_prepare(db *d, const char *conninfo, const char *schema, const char *table,
			const plan_options *po, state_migration **m)
{
	bool		bad_interval;
	plan	   *p = preflight_plan(d, conninfo, schema, table, po, &bad_interval);
	run_result	result = RUN_FAILED;
	buf			sql;

	buf_init(&sql);
	if (p == NULL)
	{
		result = bad_interval ? RUN_USAGE : RUN_FAILED;
		goto cleanup;
	}
	if (plan_count_findings(p, FINDING_BLOCK) > 0)
	{
		plan_log_blocks(p);
		result = RUN_BLOCKED;
		goto cleanup;
	}
	if (!db_exec(d, "start the preparation", "BEGIN") || !state_ensure(d) ||
		!state_create(d, p, m))
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
		/* Nothing of it stays: the state's schema, if this made it, goes too. */
		db_rollback(d, "roll back the preparation");
		state_migration_free(*m);
		*m = NULL;
	}
	buf_free(&sql);
	plan_free(p);
	return result;
}

/* While indexes build, the spooler keeps reading the stream; the throttle decides each partition's start. */
typedef struct run_pump
{
	spool	   *sp;
	throttle   *th;
	bool		truncated;
} run_pump;

static bool
run_pump_spool(void *arg)
{
	run_pump   *p = arg;

	return spool_pump(p->sp, 50, false, &p->truncated) && !p->truncated;
}

static bool
run_may_build(void *arg, bool *start)
{
	run_pump   *p = arg;

	*start = true;
	return p->th == NULL || throttle_check(p->th, start);
}

/*
 * The key and the other indexes, after the copy: each partition's in
 * transactions of their own (build.h), then the parent's, which adopt
 * them, with the phase's mark.  Unique constraints wait for consistency
 * (session_build_unique); foreign keys wait for the cutover: a cascade on a
 * referenced table would delete shadow rows before the stream brings the
 * same deletes.  *truncated when the spooler saw a TRUNCATE.
 */
static bool
run_build_indexes(db *d, const char *conninfo, state_migration *m, spool *sp,
				  const run_options *ro, throttle *th, bool *truncated)
{
	run_pump	pump = {sp, th, false};
	build_options bo = {ro->jobs, sp ? run_pump_spool : NULL, run_may_build, &pump, ro->stop, false};

	log_info("building the shadow's keys and indexes");
	fault_point("index");
	if (!throttle_load_limited(th, &bo.no_workers))
		return false;
	if (bo.no_workers)
		log_info("a load limit is in force: the index builds leave the server's parallel workers "
				 "to the application");
	if (!build_partitions(d, conninfo, m, PLAN_PHASE_INDEX, &bo) ||
		!db_exec(d, "start the index build", "BEGIN") ||
		!db_exec(d, "raise maintenance_work_mem", "SET LOCAL maintenance_work_mem = '512MB'") ||
		!state_run_statements(d, m, PLAN_PHASE_INDEX, sp ? run_pump_spool : NULL, &pump) ||
		!state_set_phase(d, m, STATE_INDEXED, LSN_INVALID) ||
		!db_exec(d, "commit the index build", "COMMIT"))
	{
		db_rollback(d, "roll back the index build");
		*truncated = pump.truncated;
		return false;
	}
	return true;
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
	r->env.wal_estimate_bytes = plan_estimate_wal(t);
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

	if (m->phase == STATE_DONE)
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
	else if ((po->given & PLAN_GIVEN_COPY_ORDER) && (po->copy_order == PLAN_COPY_PHYSICAL) != m->physical)
		log_error("--copy-order %s differs from the migration's, which copies in %s order",
				  plan_copy_order_name(po->copy_order),
				  plan_copy_order_name(m->physical ? PLAN_COPY_PHYSICAL : PLAN_COPY_KEY));
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
	throttle   *th = NULL;
	bool		chunked;
	run_result	result = RUN_FAILED;

	if (!db_connect(&d, conninfo, "source") || !catalog_read(&d, schema, table, &t) ||
		!state_upgrade(&d) || !state_find(&d, t->schema, t->name, &m) ||
		(m != NULL && !state_check_home(&d, m)) || !run_read_environment(&d, t, ro->report) ||
		(ro->cutover.revert_window_s > 0 && (m == NULL || m->phase != STATE_DONE) &&
		 !revert_check(&d, t, m != NULL ? m->partition_column : po->partition_column)))
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
				 state_phase_name(m->phase));
	if (!throttle_set_limits(&d, m, &ro->limits) ||
		(th = throttle_create(&d, m, ro->report, ro->stop)) == NULL)
		goto cleanup;
	chunked = backfill_supported(t);

	for (;;)
	{
		bool		truncated = false;

		if (m->phase == STATE_PREPARED || m->phase == STATE_COPYING)
		{
			if (m->phase == STATE_PREPARED)
				fault_point("prepared");
			report_phase_begin(ro->report, REPORT_COPY);
			if (chunked)
			{
				backfill_options bo = {ro->chunk_rows, ro->rate, ro->progress_seconds,
								   ro->terminal, ro->json, ro->stop, th,
								   &ro->report->rows_copied, &ro->report->bytes_copied,
								   &ro->report->copy_seconds, &ro->report->reconciled_changes,
								   &ro->report->reconciled_rows};

				ro->report->copy_order =
					plan_copy_order_name(m->physical ? PLAN_COPY_PHYSICAL : PLAN_COPY_KEY);

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
				/* No order to page the key by: one copy under the slot's exported snapshot. */
				log_info("the key has no btree order or no binary form; copying under one snapshot");
				if (!backfill_copy_snapshot(&d, conninfo, m))
					goto cleanup;
			}
		}
		if (run_stop_requested(ro))
		{
			result = RUN_STOPPED;
			goto cleanup;
		}
		if (m->phase != STATE_COPIED)
			break;
		if (chunked && sp == NULL && (sp = spool_open(conninfo, m)) == NULL)
			goto cleanup;
		report_phase_begin(ro->report, REPORT_INDEX);
		if (run_build_indexes(&d, conninfo, m, sp, ro, th, &truncated))
			break;
		if (run_stop_requested(ro))
		{
			log_info("stopped; run the same command again to resume");
			result = RUN_STOPPED;
			goto cleanup;
		}
		if (!truncated || !backfill_reset(&d, m, "was truncated during the copy"))
			goto cleanup;
	}
	/* From here the spool is only read back, and only a pause holds the run back. */
	spool_close(sp);
	sp = NULL;
	throttle_free(th);
	th = NULL;
	if (m->phase == STATE_INDEXED &&
		!state_set_phase(&d, m, STATE_STREAMING, LSN_INVALID))
		goto cleanup;
	if (m->phase != STATE_DONE)
	{
		/* The source connection is not needed while streaming. */
		db_close(&d);
		report_phase_begin(ro->report, REPORT_CATCH_UP);
		result = session_stream(conninfo, t, m, ro);
		if (result != RUN_DONE)
			goto cleanup;
		if (ro->cutover.rehearse)
		{
			if (ro->cutover.revert_window_s > 0 && !revert_rehearse(conninfo, m))
				result = RUN_FAILED;
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
	if (!cutover_finish(conninfo, &d, m, &ro->cutover))
		goto cleanup;
	result = RUN_DONE;
	ro->report->outcome = "swapped";
	/* With --revert-window the run keeps the old table in step until the window ends. */
	switch (revert_follow(conninfo, m, &ro->cutover, ro->stop, ro->progress_seconds))
	{
		case REVERT_NONE:
		case REVERT_FINISHED:
			break;
		case REVERT_REVERTED:
			ro->report->outcome = "reverted";
			break;
		case REVERT_STOPPED:
			result = RUN_STOPPED;
			break;
		case REVERT_FAILED:
			result = RUN_FAILED;
			break;
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
	throttle_free(th);
	state_migration_free(m);
	catalog_table_free(t);
	db_close(&d);
	return result;
}
