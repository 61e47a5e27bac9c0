/* status.c: pgrepart status; see status.h. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/ident.h"
#include "pgrepart/json.h"
#include "pgrepart/log.h"
#include "pgrepart/revert.h"
#include "pgrepart/state.h"
#include "pgrepart/status.h"

/*
 * One row per migration: the slot's and origin's positions are read from
 * the server's views, so a crashed run's leftovers show as they are.
 */
static const char status_sql[] =
	"SELECT m.id, m.source_schema::pg_catalog.text, m.source_table::pg_catalog.text, "
	"  m.shadow_table::pg_catalog.text, m.phase, m.slot_name::pg_catalog.text, "
	"  s.slot_name IS NOT NULL, COALESCE(s.active, false), "
	"  COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn), 0)::pg_catalog.int8, "
	"  COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::pg_catalog.int8, "
	/* the progress function, not the status view: a migrating role may call it (operations.md) */
	"  (SELECT NULLIF(pg_catalog.pg_replication_origin_progress(o.roname, false), '0/0')::pg_catalog.text "
	"   FROM pg_catalog.pg_replication_origin o WHERE o.roname = m.origin_name), "
	"  pg_catalog.to_char(m.updated_at, 'YYYY-MM-DD HH24:MI:SS OF'), "
	"  pg_catalog.pg_current_wal_lsn()::pg_catalog.text, "
	"  COALESCE(EXTRACT(epoch FROM r.flush_lag), 0)::pg_catalog.float8, "
	"  (SELECT CASE WHEN v.finished_at IS NULL THEN 'requested' "
	"               WHEN v.equal THEN 'equal' WHEN NOT v.equal THEN 'different' "
	"               ELSE 'failed' END || COALESCE(' at ' || v.consistent_lsn::pg_catalog.text, '') "
	"          || ', ' || pg_catalog.to_char(COALESCE(v.finished_at, v.requested_at), "
	"                                         'YYYY-MM-DD HH24:MI:SS OF') "
	"   FROM pgrepart.verification v WHERE v.migration_id = m.id ORDER BY v.id DESC LIMIT 1), "
	STATE_HOME_COLUMNS ", "
	/* 18, 19: the DEFAULT partition of the shadow, or of the table once swapped */
	"  dn.nspname::pg_catalog.text, dc.relname::pg_catalog.text, "
	/*
	 * 20-27: the source's health (throttle.h), read through the row's JSON
	 * so that a state written by an older pgrepart still reads.
	 */
	"  pg_catalog.to_jsonb(m) ->> 'throttle_reason', "
	"  (COALESCE((pg_catalog.to_jsonb(m) ->> 'throttled_seconds')::pg_catalog.float8, 0) + "
	"   COALESCE(EXTRACT(epoch FROM pg_catalog.now() - "
	"     (pg_catalog.to_jsonb(m) ->> 'throttled_since')::pg_catalog.timestamptz), 0))::pg_catalog.float8, "
	"  pg_catalog.to_char((pg_catalog.to_jsonb(m) ->> 'paused_at')::pg_catalog.timestamptz, "
	"    'YYYY-MM-DD HH24:MI:SS OF'), "
	"  COALESCE((pg_catalog.to_jsonb(m) ->> 'max_replica_lag_ms')::pg_catalog.int8, 0), "
	"  COALESCE((pg_catalog.to_jsonb(m) ->> 'max_replica_lag_bytes')::pg_catalog.int8, 0), "
	"  COALESCE((pg_catalog.to_jsonb(m) ->> 'max_load')::pg_catalog.int8, 0), "
	"  COALESCE((pg_catalog.to_jsonb(m) ->> 'critical_load')::pg_catalog.int8, 0), "
	"  pg_catalog.to_jsonb(m) ->> 'throttle_query', "
	/* 28-34: the revert window (revert.h) and its reverse slot */
	"  pg_catalog.to_char((pg_catalog.to_jsonb(m) ->> 'revert_until')::pg_catalog.timestamptz, "
	"    'YYYY-MM-DD HH24:MI:SS OF'), "
	"  pg_catalog.to_jsonb(m) ->> 'reverse_end', "
	"  pg_catalog.to_jsonb(m) ->> 'old_table', "
	"  rs.slot_name IS NOT NULL, COALESCE(rs.active, false), "
	"  COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), rs.restart_lsn), 0)::pg_catalog.int8, "
	"  COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), rs.confirmed_flush_lsn), 0)::pg_catalog.int8 "
	"FROM pgrepart.migration m "
	/* A slot of this name in another database is not this migration's (a copied row). */
	"LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = m.slot_name "
	"  AND s.database = pg_catalog.current_database() "
	"LEFT JOIN pg_catalog.pg_stat_replication r ON r.pid = s.active_pid "
	"LEFT JOIN pg_catalog.pg_replication_slots rs ON rs.slot_name = m.slot_name || '" REVERT_SUFFIX "' "
	"  AND rs.database = pg_catalog.current_database() "
	"LEFT JOIN pg_catalog.pg_partitioned_table dp ON dp.partdefid <> 0 AND dp.partrelid = "
	"  pg_catalog.to_regclass(pg_catalog.quote_ident(m.source_schema) || '.' || pg_catalog.quote_ident("
	"    CASE WHEN m.phase = 'done' THEN m.source_table ELSE m.shadow_table END)) "
	"LEFT JOIN pg_catalog.pg_class dc ON dc.oid = dp.partdefid "
	"LEFT JOIN pg_catalog.pg_namespace dn ON dn.oid = dc.relnamespace "
	"WHERE %bool OR ((%bool OR m.source_schema = %text) AND m.source_table = %text) "
	"ORDER BY m.id";

/*
 * Rows in a migration's DEFAULT partition (counted up to a bound: they are
 * meant to be few), or -1 when it has none.
 */
#define STATUS_DEFAULT_COUNT_MAX 1000000

static bool
status_default_rows(db *d, const PGresult *res, int i, int64_t *rows)
{
	buf			sql;
	PGresult   *count;
	PGint8		n = 0;

	*rows = -1;
	if (PQgetisnull(res, i, 18))
		return true;
	buf_init(&sql);
	buf_append(&sql, "SELECT pg_catalog.count(*)::pg_catalog.int8 FROM (SELECT 1 FROM ");
	ident_quote_qualified(&sql, PQgetvalue(res, i, 18), PQgetvalue(res, i, 19));
	buf_appendf(&sql, " LIMIT %d) s", STATUS_DEFAULT_COUNT_MAX + 1);
	count = db_execf(d, "count the rows in the DEFAULT partition", sql.data);
	buf_free(&sql);
	if (count == NULL || !db_getf(count, 0, "%int8", 0, &n))
	{
		PQclear(count);
		return false;
	}
	PQclear(count);
	*rows = n;
	return true;
}

/* The source's health of row i (status_sql's columns 20 to 27). */
typedef struct status_health
{
	double		throttled_seconds;
	PGint8		max_lag_ms;
	PGint8		max_lag_bytes;
	PGint8		max_load;
	PGint8		critical_load;
} status_health;

static bool
status_read_health(const PGresult *res, int i, status_health *h)
{
	return db_getf(res, i, "%float8 %int8 %int8 %int8 %int8", 21, &h->throttled_seconds,
				   23, &h->max_lag_ms, 24, &h->max_lag_bytes, 25, &h->max_load, 26, &h->critical_load);
}

static void
status_text_health(const PGresult *res, int i, FILE *out, const status_health *h)
{
	if (!PQgetisnull(res, i, 22))
		fprintf(out, "  paused         since %s (pgrepart resume goes on)\n", PQgetvalue(res, i, 22));
	if (!PQgetisnull(res, i, 20))
		fprintf(out, "  throttled      %s (%.1f s in all)\n", PQgetvalue(res, i, 20),
				h->throttled_seconds);
	else if (h->throttled_seconds > 0)
		fprintf(out, "  throttled      no (%.1f s in all)\n", h->throttled_seconds);
	fprintf(out, "  limits         replica lag ");
	if (h->max_lag_ms > 0)
		fprintf(out, "%.1f s%s", (double) h->max_lag_ms / 1000.0, h->max_lag_bytes > 0 ? " or " : "");
	if (h->max_lag_bytes > 0)
		fprintf(out, "%.1f MB", (double) h->max_lag_bytes / 1048576.0);
	if (h->max_lag_ms <= 0 && h->max_lag_bytes <= 0)
		fputs("none", out);
	fputs(", load ", out);
	if (h->max_load > 0)
		fprintf(out, "%" PRId64 " active sessions", (int64_t) h->max_load);
	else
		fputs("none", out);
	fputs(", critical load ", out);
	if (h->critical_load > 0)
		fprintf(out, "%" PRId64 " active sessions", (int64_t) h->critical_load);
	else
		fputs("none", out);
	fprintf(out, ", throttle query %s\n", PQgetisnull(res, i, 27) ? "none" : PQgetvalue(res, i, 27));
}

/* The revert window (revert.h), when the run was given one. */
typedef struct status_revert
{
	bool		window;			/* the swap recorded a window */
	bool		ended;
	PGbool		slot_exists;
	PGbool		slot_active;
	PGint8		retained;
	PGint8		behind;
	bool		ready;			/* pgrepart revert would swap back now */
} status_revert;

static bool
status_read_revert(const PGresult *res, int i, status_revert *r)
{
	memset(r, 0, sizeof(*r));
	r->window = !PQgetisnull(res, i, 28);
	r->ended = !PQgetisnull(res, i, 29);
	if (!db_getf(res, i, "%bool %bool %int8 %int8", 31, &r->slot_exists, 32, &r->slot_active,
				 33, &r->retained, 34, &r->behind))
		return false;
	r->ready = r->window && !r->ended && r->slot_exists;
	return true;
}

static void
status_text_revert(const PGresult *res, int i, FILE *out, const status_revert *r)
{
	if (!r->window)
		return;
	if (r->ended)
	{
		fprintf(out, "  revert window  ended: %s\n", PQgetvalue(res, i, 29));
		return;
	}
	fprintf(out, "  revert window  until %s, keeping \"%s\" in step (pgrepart revert swaps back, "
			"pgrepart finish ends it)\n", PQgetvalue(res, i, 28), PQgetvalue(res, i, 30));
	if (r->slot_exists)
		fprintf(out, "  reverse slot   %s%s, %s, retains %.1f MB of WAL, %.1f MB behind\n",
				PQgetvalue(res, i, 5), REVERT_SUFFIX,
				r->slot_active ? "streaming" : "idle: no run is following it",
				(double) r->retained / 1048576.0, (double) r->behind / 1048576.0);
	fprintf(out, "  revert ready   %s\n", r->ready ? "yes" : "no: the reverse slot is missing");
}

static void
status_text(const PGresult *res, int i, FILE *out, int id, PGint8 retained, PGint8 behind,
			bool slot_exists, bool slot_active, double lag, state_home home, int64_t default_rows)
{
	char	   *source = ident_qualified(PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
	char	   *shadow = ident_qualified(PQgetvalue(res, i, 1), PQgetvalue(res, i, 3));

	fprintf(out, "migration %d: %s -> %s\n", id, source, shadow);
	fprintf(out, "  phase          %s (since %s)\n", PQgetvalue(res, i, 4), PQgetvalue(res, i, 11));
	if (home != STATE_HOME_HERE)
	{
		if (home == STATE_HOME_CLUSTER)
			fprintf(out, "  copied from    another server (system identifier %s)\n",
					PQgetvalue(res, i, 17));
		else
			fprintf(out, "  copied from    database \"%s\" of this server\n",
					PQgetisnull(res, i, 16) ? "(dropped)" : PQgetvalue(res, i, 16));
		fprintf(out, "  slot, origin   the original's, not this database's; pgrepart abort -t %s "
				"removes the copy\n", source);
	}
	else if (slot_exists)
		fprintf(out, "  slot           %s, %s, retains %.1f MB of WAL\n", PQgetvalue(res, i, 5),
				slot_active ? "streaming" : "idle: no run is consuming it",
				(double) retained / 1048576.0);
	else if (strcmp(PQgetvalue(res, i, 4), state_phase_name(STATE_PREPARED)) == 0)
		fprintf(out, "  slot           %s (not created yet)\n", PQgetvalue(res, i, 5));
	else
		fprintf(out, "  slot           %s MISSING: not on this server (a physical copy keeps the "
				"migration's rows but not its slot); pgrepart abort -t %s removes the copy\n",
				PQgetvalue(res, i, 5), source);
	if (slot_exists)
		fprintf(out, "  behind         %.1f MB of WAL (server at %s)\n",
				(double) behind / 1048576.0, PQgetvalue(res, i, 12));
	if (slot_active)
		fprintf(out, "  lag            %.1f s (the server's flush_lag for the stream)\n", lag);
	fprintf(out, "  applied up to  %s\n",
			PQgetisnull(res, i, 10) ? "nothing yet" : PQgetvalue(res, i, 10));
	fprintf(out, "  verified       %s\n",
			PQgetisnull(res, i, 14) ? "not yet (pgrepart verify --live)" : PQgetvalue(res, i, 14));
	if (default_rows >= 0)
		fprintf(out, "  default part.  %s: %s%" PRId64 " rows\n", PQgetvalue(res, i, 19),
				default_rows > STATUS_DEFAULT_COUNT_MAX ? "over " : "",
				default_rows > STATUS_DEFAULT_COUNT_MAX ? (int64_t) STATUS_DEFAULT_COUNT_MAX : default_rows);
	free(source);
	free(shadow);
}

/*
 * pgrepart's replication objects that no unfinished migration records: a
 * migration row removed by hand, or a finished one whose clean-up was cut
 * short.  A slot among them holds WAL until someone drops it.
 */
static PGresult *
status_leftovers(db *d, bool have_state)
{
	buf			sql;
	PGresult   *res;
	const char *unowned[3] = {"true", "true", "true"};

	if (have_state)
	{
		/* A reverse stream's (revert.h) are its migration's until the stream ends. */
		unowned[0] = "NOT EXISTS (SELECT 1 FROM pgrepart.migration m WHERE (m.slot_name = s.slot_name "
			"AND m.phase <> 'done') OR (m.slot_name || '" REVERT_SUFFIX "' = s.slot_name "
			"AND pg_catalog.to_jsonb(m) ->> 'reverse_ended_at' IS NULL))";
		unowned[1] = "NOT EXISTS (SELECT 1 FROM pgrepart.migration m WHERE (m.publication_name = p.pubname "
			"AND m.phase <> 'done') OR (m.publication_name || '" REVERT_SUFFIX "' = p.pubname "
			"AND pg_catalog.to_jsonb(m) ->> 'reverse_ended_at' IS NULL))";
		unowned[2] = "NOT EXISTS (SELECT 1 FROM pgrepart.migration m WHERE (m.origin_name = o.roname "
			"AND m.phase <> 'done') OR (m.origin_name || '" REVERT_SUFFIX "' = o.roname "
			"AND pg_catalog.to_jsonb(m) ->> 'reverse_ended_at' IS NULL))";
	}
	buf_init(&sql);
	buf_appendf(&sql,
				"SELECT 'slot', s.slot_name::pg_catalog.text, "
				"  COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn), 0)::pg_catalog.int8, "
				"  pg_catalog.format('SELECT pg_catalog.pg_drop_replication_slot(%%L)', s.slot_name) "
				"FROM pg_catalog.pg_replication_slots s "
				"WHERE s.slot_name LIKE 'pgrepart\\_%%' AND s.database = pg_catalog.current_database() "
				"  AND NOT s.temporary AND %s "
				"UNION ALL SELECT 'publication', p.pubname::pg_catalog.text, 0, "
				"  pg_catalog.format('DROP PUBLICATION %%I', p.pubname) "
				"FROM pg_catalog.pg_publication p WHERE p.pubname LIKE 'pgrepart\\_%%' AND %s "
				"UNION ALL SELECT 'origin', o.roname, 0, "
				"  pg_catalog.format('SELECT pg_catalog.pg_replication_origin_drop(%%L)', o.roname) "
				"FROM pg_catalog.pg_replication_origin o "
				"WHERE o.roname LIKE 'pgrepart\\_' || (SELECT oid FROM pg_catalog.pg_database "
				"  WHERE datname = pg_catalog.current_database()) || '\\_%%' AND %s "
				"ORDER BY 1, 2",
				unowned[0], unowned[1], unowned[2]);
	res = db_execf(d, "look for leftover replication objects", sql.data);
	buf_free(&sql);
	return res;
}

/*
 * pgrepart's slots of the other databases of the cluster: slots are
 * cluster-wide, and a migration in a copy of this database (or a rehearsal
 * in one) holds this server's WAL as much as one here.
 */
static PGresult *
status_cluster_slots(db *d)
{
	return db_execf(d, "list pgrepart's slots on the server",
					"SELECT s.slot_name::pg_catalog.text, s.database::pg_catalog.text, s.active, "
					"  COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn), 0)::pg_catalog.int8 "
					"FROM pg_catalog.pg_replication_slots s "
					"WHERE s.slot_name LIKE 'pgrepart\\_%%' AND NOT s.temporary "
					"  AND s.database IS DISTINCT FROM pg_catalog.current_database() "
					"ORDER BY 1");
}

/* Warn about every slot that holds WAL with nothing consuming it. */
static void
status_warn_leftovers(const PGresult *left)
{
	for (int i = 0; i < PQntuples(left); i++)
	{
		PGint8		retained = 0;

		db_getf(left, i, "%int8", 2, &retained);
		if (strcmp(PQgetvalue(left, i, 0), "slot") == 0)
			log_warning("replication slot \"%s\" belongs to no unfinished migration and retains "
						"%.1f MB of WAL", PQgetvalue(left, i, 1), (double) retained / 1048576.0);
		else
			log_warning("%s \"%s\" belongs to no unfinished migration", PQgetvalue(left, i, 0),
						PQgetvalue(left, i, 1));
		log_hint("Nothing of pgrepart's uses it; remove it with: %s;", PQgetvalue(left, i, 3));
	}
}

bool
status_report(db *d, const char *schema, const char *table, bool json, FILE *out, bool *found)
{
	PGresult   *res;
	buf			b;
	json_writer w;
	bool		exists;
	PGresult   *left;
	PGresult   *others;
	bool		ok = false;

	*found = false;
	if (!db_exec_bool(d, "look for pgrepart's state",
					  "SELECT pg_catalog.to_regclass('pgrepart.migration') IS NOT NULL", &exists))
		return false;
	res = exists ? db_execf(d, "read the migrations", status_sql, table == NULL, schema == NULL,
							schema ? schema : "", table ? table : "") : NULL;
	if (exists && res == NULL)
		return false;
	left = status_leftovers(d, exists);
	if (left == NULL)
	{
		PQclear(res);
		return false;
	}
	status_warn_leftovers(left);
	others = status_cluster_slots(d);
	if (others == NULL)
	{
		PQclear(res);
		PQclear(left);
		return false;
	}

	buf_init(&b);
	json_init(&w, &b);
	json_begin_object(&w);
	json_key(&w, "migrations");
	json_begin_array(&w);
	for (int i = 0; res != NULL && i < PQntuples(res); i++)
	{
		PGint4		id, home_code;
		int64_t		default_rows;
		state_home	home;
		PGbool		slot_exists, slot_active;
		PGint8		retained, behind;
		PGfloat8	lag;
		status_health health;
		status_revert rev;

		if (!db_getf(res, i, "%int4 %bool %bool %int8 %int8 %float8 %int4", 0, &id, 6, &slot_exists,
					 7, &slot_active, 8, &retained, 9, &behind, 13, &lag, 15, &home_code) ||
			!status_default_rows(d, res, i, &default_rows))
			goto cleanup;
		home = (state_home) home_code;
		*found = true;
		if (home == STATE_HOME_HERE && slot_exists && !slot_active &&
			strcmp(PQgetvalue(res, i, 4), state_phase_name(STATE_DONE)) != 0)
		{
			log_warning("migration %d's slot \"%s\" retains %.1f MB of WAL and no run is "
						"consuming it", id, PQgetvalue(res, i, 5), (double) retained / 1048576.0);
			log_hint("Resume with the same pgrepart run command, or remove the migration with "
					 "pgrepart abort -t %s.%s; the WAL is kept until one of them.",
					 PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
		}
		if (!status_read_health(res, i, &health) || !status_read_revert(res, i, &rev))
			goto cleanup;
		if (rev.ready && !rev.slot_active)
		{
			log_warning("migration %d's reverse slot retains %.1f MB of WAL and no run is following "
						"it", id, (double) rev.retained / 1048576.0);
			log_hint("Follow it with the same pgrepart run command, swap back with pgrepart revert, "
					 "or end the window with pgrepart finish -t %s.%s; the WAL is kept until then.",
					 PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
		}
		if (!json)
		{
			status_text(res, i, out, id, retained, behind, slot_exists, slot_active, lag, home,
						default_rows);
			status_text_health(res, i, out, &health);
			status_text_revert(res, i, out, &rev);
			continue;
		}
		json_begin_object(&w);
		json_kv_int(&w, "id", id);
		json_kv_string(&w, "schema", PQgetvalue(res, i, 1));
		json_kv_string(&w, "table", PQgetvalue(res, i, 2));
		json_kv_string(&w, "shadow", PQgetvalue(res, i, 3));
		json_kv_string(&w, "phase", PQgetvalue(res, i, 4));
		json_kv_string(&w, "slot", PQgetvalue(res, i, 5));
		json_kv_bool(&w, "slot_exists", slot_exists);
		json_kv_bool(&w, "slot_active", slot_active);
		json_kv_int(&w, "retained_wal_bytes", retained);
		json_kv_int(&w, "behind_bytes", behind);
		json_kv_double(&w, "lag_seconds", lag);
		json_kv_string(&w, "last_verification",
					   PQgetisnull(res, i, 14) ? NULL : PQgetvalue(res, i, 14));
		json_kv_string(&w, "applied_lsn", PQgetisnull(res, i, 10) ? NULL : PQgetvalue(res, i, 10));
		json_kv_string(&w, "updated_at", PQgetvalue(res, i, 11));
		json_kv_string(&w, "copied_from", home == STATE_HOME_CLUSTER ? "another server" :
					   home == STATE_HOME_DATABASE ? "another database" : NULL);
		if (default_rows >= 0)
			json_kv_int(&w, "default_partition_rows", default_rows);
		json_kv_string(&w, "copied_from_database", home == STATE_HOME_DATABASE &&
					   !PQgetisnull(res, i, 16) ? PQgetvalue(res, i, 16) : NULL);
		json_kv_string(&w, "paused_since", PQgetisnull(res, i, 22) ? NULL : PQgetvalue(res, i, 22));
		json_kv_bool(&w, "throttled", !PQgetisnull(res, i, 20));
		json_kv_string(&w, "throttled_by", PQgetisnull(res, i, 20) ? NULL : PQgetvalue(res, i, 20));
		json_kv_double(&w, "throttled_seconds", health.throttled_seconds);
		json_kv_int(&w, "max_replica_lag_ms", health.max_lag_ms);
		json_kv_int(&w, "max_replica_lag_bytes", health.max_lag_bytes);
		json_kv_int(&w, "max_load", health.max_load);
		json_kv_int(&w, "critical_load", health.critical_load);
		json_kv_string(&w, "throttle_query", PQgetisnull(res, i, 27) ? NULL : PQgetvalue(res, i, 27));
		json_kv_string(&w, "revert_window_until", rev.window ? PQgetvalue(res, i, 28) : NULL);
		json_kv_string(&w, "reverse_end", rev.ended ? PQgetvalue(res, i, 29) : NULL);
		json_kv_string(&w, "old_table", PQgetisnull(res, i, 30) ? NULL : PQgetvalue(res, i, 30));
		json_kv_bool(&w, "reverse_slot_active", rev.slot_active);
		json_kv_int(&w, "reverse_retained_wal_bytes", rev.retained);
		json_kv_int(&w, "reverse_behind_bytes", rev.behind);
		json_kv_bool(&w, "revert_ready", rev.ready);
		json_end_object(&w);
	}
	json_end_array(&w);
	json_key(&w, "leftovers");
	json_begin_array(&w);
	for (int i = 0; i < PQntuples(left); i++)
	{
		PGint8		retained = 0;

		db_getf(left, i, "%int8", 2, &retained);
		json_begin_object(&w);
		json_kv_string(&w, "kind", PQgetvalue(left, i, 0));
		json_kv_string(&w, "name", PQgetvalue(left, i, 1));
		json_kv_int(&w, "retained_wal_bytes", retained);
		json_kv_string(&w, "remove_with", PQgetvalue(left, i, 3));
		json_end_object(&w);
	}
	json_end_array(&w);
	json_key(&w, "other_databases_slots");
	json_begin_array(&w);
	for (int i = 0; i < PQntuples(others); i++)
	{
		PGint8		retained = 0;
		PGbool		active = 0;

		db_getf(others, i, "%bool %int8", 2, &active, 3, &retained);
		json_begin_object(&w);
		json_kv_string(&w, "slot", PQgetvalue(others, i, 0));
		json_kv_string(&w, "database", PQgetvalue(others, i, 1));
		json_kv_bool(&w, "active", active);
		json_kv_int(&w, "retained_wal_bytes", retained);
		json_end_object(&w);
	}
	json_end_array(&w);
	json_end_object(&w);
	if (json)
		fprintf(out, "%s\n", b.data);
	else if (!*found)
		fputs("no migrations in this database\n", out);
	for (int i = 0; !json && i < PQntuples(left); i++)
		fprintf(out, "leftover %s %s: remove with %s;\n", PQgetvalue(left, i, 0),
				PQgetvalue(left, i, 1), PQgetvalue(left, i, 3));
	for (int i = 0; !json && i < PQntuples(others); i++)
	{
		PGint8		retained = 0;
		PGbool		active = 0;

		db_getf(others, i, "%bool %int8", 2, &active, 3, &retained);
		fprintf(out, "slot %s of database \"%s\" (not this one's): %s, retains %.1f MB of WAL\n",
				PQgetvalue(others, i, 0), PQgetvalue(others, i, 1), active ? "streaming" : "idle",
				(double) retained / 1048576.0);
	}
	ok = true;

cleanup:
	buf_free(&b);
	PQclear(res);
	PQclear(left);
	PQclear(others);
	return ok;
}
