/* report.c: what a run did; see report.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "pgrepart/buf.h"
#include "pgrepart/clock.h"
#include "pgrepart/json.h"
#include "pgrepart/log.h"
#include "pgrepart/lsn.h"
#include "pgrepart/mem.h"
#include "pgrepart/report.h"

static const char *const report_phase_name[REPORT_NPHASES] = {
	"prepare", "copy", "index", "catch_up", "waiting", "cutover"
};

const char *const report_throttle_names[REPORT_NTHROTTLES] = {
	"paused", "replica_lag", "load", "query"
};

const char *const report_setting_names[REPORT_NSETTINGS] = {
	"synchronous_commit", "wal_writer_delay", "max_wal_size", "shared_buffers",
	"maintenance_work_mem", "max_parallel_maintenance_workers"
};

void
report_init(report *r, const char *schema, const char *table)
{
	memset(r, 0, sizeof(*r));
	r->schema = schema;
	r->table = table;
	r->outcome = "failed";
	r->env.table_rows = -1;
	r->env.wal_bytes = -1;
}

void
report_free_environment(report *r)
{
	free(r->env.server_version);
	free(r->env.wal_start);
	for (int i = 0; i < REPORT_NSETTINGS; i++)
		free(r->env.settings[i]);
	memset(&r->env, 0, sizeof(r->env));
	r->env.table_rows = -1;
	r->env.wal_bytes = -1;
}

void
report_free(report *r)
{
	free(r->attempts);
	r->attempts = NULL;
	r->nattempts = 0;
	for (int i = 0; i < r->nold_snapshots; i++)
		free(r->old_snapshots[i]);
	free(r->old_snapshots);
	r->old_snapshots = NULL;
	r->nold_snapshots = 0;
	report_free_environment(r);
}

void
report_phase_end(report *r)
{
	if (r->in_phase)
		r->phase_seconds[r->current] += (double) (clock_monotonic_us() - r->phase_started_us) / 1e6;
	r->in_phase = false;
}

void
report_phase_begin(report *r, report_phase phase)
{
	report_phase_end(r);
	r->current = phase;
	r->phase_started_us = clock_monotonic_us();
	r->in_phase = true;
}

void
report_lock_attempt_add(report *r, double wait_ms, double hold_ms, const char *outcome)
{
	report_lock_attempt a = {wait_ms, hold_ms, outcome};

	ARRAY_PUSH(r->attempts, r->nattempts, a);
}

void
report_old_snapshot_add(report *r, char *name)
{
	ARRAY_PUSH(r->old_snapshots, r->nold_snapshots, name);
}

void
report_peak(int64_t *peak, int64_t value)
{
	if (value > *peak)
		*peak = value;
}

bool
report_write_json(const report *r, const char *path)
{
	json_writer w;
	buf			out;
	FILE	   *f;
	bool		ok;

	buf_init(&out);
	json_init(&w, &out);
	json_begin_object(&w);
	json_kv_string(&w, "schema", r->schema);
	json_kv_string(&w, "table", r->table);
	json_kv_bool(&w, "rehearsal", r->rehearsal);
	json_kv_string(&w, "outcome", r->outcome);
	json_key(&w, "phases");
	json_begin_object(&w);
	for (int i = 0; i < REPORT_NPHASES; i++)
		json_kv_double(&w, report_phase_name[i], r->phase_seconds[i]);
	json_end_object(&w);
	json_kv_int(&w, "rows_copied", r->rows_copied);
	json_kv_string(&w, "copy_order", r->copy_order);
	json_kv_int(&w, "reconciled_changes", r->reconciled_changes);
	json_kv_int(&w, "reconciled_rows_removed", r->reconciled_rows);
	json_kv_double(&w, "mb_copied", (double) r->bytes_copied / 1e6);
	json_kv_double(&w, "rows_per_second", r->copy_seconds > 0 ? (double) r->rows_copied / r->copy_seconds : 0.0);
	json_kv_int(&w, "changes_applied", r->changes_applied);
	json_kv_int(&w, "peak_lag_bytes", r->peak_lag_bytes);
	json_kv_int(&w, "peak_wal_retained_bytes", r->peak_retained_bytes);
	json_key(&w, "throttled_seconds");
	json_begin_object(&w);
	for (int i = 0; i < REPORT_NTHROTTLES; i++)
		json_kv_double(&w, report_throttle_names[i], r->throttled_seconds[i]);
	json_end_object(&w);
	json_key(&w, "lock_attempts");
	json_begin_array(&w);
	for (int i = 0; i < r->nattempts; i++)
	{
		json_begin_object(&w);
		json_kv_double(&w, "wait_ms", r->attempts[i].wait_ms);
		json_kv_double(&w, "hold_ms", r->attempts[i].hold_ms);
		json_kv_string(&w, "outcome", r->attempts[i].outcome);
		json_end_object(&w);
	}
	json_end_array(&w);
	json_kv_string(&w, "verification", r->verification);
	json_kv_strings(&w, "old_snapshots", r->old_snapshots, r->nold_snapshots);
	json_key(&w, "environment");
	json_begin_object(&w);
	json_kv_string(&w, "server_version", r->env.server_version);
	json_kv_double(&w, "table_rows_estimate", r->env.table_rows);
	json_kv_int(&w, "table_bytes", r->env.table_bytes);
	json_kv_int(&w, "table_total_bytes", r->env.table_total_bytes);
	if (r->env.wal_bytes >= 0)
		json_kv_int(&w, "wal_generated_bytes", r->env.wal_bytes);
	json_kv_int(&w, "wal_estimate_bytes", r->env.wal_estimate_bytes);
	json_key(&w, "settings");
	json_begin_object(&w);
	for (int i = 0; i < REPORT_NSETTINGS; i++)
		json_kv_string(&w, report_setting_names[i], r->env.settings[i]);
	json_end_object(&w);
	json_end_object(&w);
	json_end_object(&w);
	f = fopen(path, "w");
	ok = f != NULL && fprintf(f, "%s\n", out.data) > 0;
	if (f != NULL && fclose(f) != 0)
		ok = false;
	if (!ok)
		log_error("could not write the report \"%s\": %s", path, strerror(errno));
	buf_free(&out);
	return ok;
}

void
report_print(const report *r, FILE *out)
{
	double		worst_hold = 0;

	for (int i = 0; i < r->nattempts; i++)
		if (r->attempts[i].hold_ms > worst_hold)
			worst_hold = r->attempts[i].hold_ms;
	fprintf(out, "%s of \"%s.%s\": %s\n", r->rehearsal ? "rehearsal" : "migration", r->schema,
			r->table, r->outcome);
	fprintf(out, "  phases (s):   ");
	for (int i = 0; i < REPORT_NPHASES; i++)
		fprintf(out, "%s%s %.1f", i > 0 ? ", " : "", report_phase_name[i], r->phase_seconds[i]);
	fprintf(out, "\n  copied:       %" PRId64 " rows, %.1f MB, %.0f rows/s\n", r->rows_copied,
			(double) r->bytes_copied / 1e6,
			r->copy_seconds > 0 ? (double) r->rows_copied / r->copy_seconds : 0.0);
	if (r->copy_order != NULL && strcmp(r->copy_order, "physical") == 0)
		fprintf(out, "  reconciled:   %" PRId64 " changes of transactions only some chunks saw; "
				"%" PRId64 " copied rows of their keys rebuilt from the stream\n",
				r->reconciled_changes, r->reconciled_rows);
	fprintf(out, "  applied:      %" PRId64 " changes; peak lag %.1f MB; peak WAL retained %.1f MB\n",
			r->changes_applied, (double) r->peak_lag_bytes / 1048576.0,
			(double) r->peak_retained_bytes / 1048576.0);
	fprintf(out, "  throttled (s):");
	for (int i = 0; i < REPORT_NTHROTTLES; i++)
		fprintf(out, "%s %s %.1f", i > 0 ? "," : "", report_throttle_names[i], r->throttled_seconds[i]);
	fputc('\n', out);
	fprintf(out, "  lock:         %d attempts, longest hold %.0f ms\n", r->nattempts, worst_hold);
	for (int i = 0; i < r->nattempts; i++)
		fprintf(out, "    attempt %d: waited %.0f ms, held %.0f ms, %s\n", i + 1,
				r->attempts[i].wait_ms, r->attempts[i].hold_ms, r->attempts[i].outcome);
	fprintf(out, "  verification: %s\n", r->verification ? r->verification : "not run");
	for (int i = 0; i < r->nold_snapshots; i++)
		fprintf(out, "  older snapshot at the swap: %s\n", r->old_snapshots[i]);
	if (r->env.server_version == NULL)
		return;
	fprintf(out, "  server:       PostgreSQL %s; table %.1f MB (%.1f MB with TOAST and indexes)",
			r->env.server_version, (double) r->env.table_bytes / 1048576.0,
			(double) r->env.table_total_bytes / 1048576.0);
	if (r->env.wal_bytes >= 0)
		fprintf(out, "; WAL generated %.1f MB (plan's estimate %.1f MB and the spool)",
				(double) r->env.wal_bytes / 1048576.0, (double) r->env.wal_estimate_bytes / 1048576.0);
	fputs("\n  settings:    ", out);
	for (int i = 0; i < REPORT_NSETTINGS; i++)
		fprintf(out, "%s %s=%s", i > 0 ? "," : "", report_setting_names[i],
				r->env.settings[i] ? r->env.settings[i] : "?");
	fputc('\n', out);
}
