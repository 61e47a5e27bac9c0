/* throttle.c: the source's health decides when the copy goes on; see throttle.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/catalog.h"
#include "pgrepart/clock.h"
#include "pgrepart/log.h"
#include "pgrepart/lsn.h"
#include "pgrepart/mem.h"
#include "pgrepart/throttle.h"

/*
 * How often a check asks the server, at most: each check notes the server's
 * WAL position, the standbys' lag is measured against those notes, and the
 * copy sees a standby fall behind at most this late.
 */
#define THROTTLE_CHECK_US 250000

/* The WAL positions of the last checks, about ten minutes of them. */
#define THROTTLE_SAMPLES 2400

typedef struct throttle_sample
{
	int64_t		us;
	lsn_t		lsn;
} throttle_sample;

/* A standby seen, and how fast it replays. */
typedef struct throttle_standby
{
	char	   *name;			/* "application_name (address)" */
	int64_t		us;				/* when replay was last read */
	lsn_t		replay;
	double		bytes_per_us;	/* replay's pace, smoothed; 0 not known yet */
} throttle_standby;

struct throttle
{
	db		   *d;
	const state_migration *m;
	report	   *r;
	volatile sig_atomic_t *stop;
	int64_t		checked_us;		/* the last check, 0 none yet */
	bool		go;				/* what it decided */
	bool		throttled;
	report_throttle reason;		/* while throttled */
	char		why[256];
	int64_t		since_us;		/* throttled by reason since */
	int64_t		recorded_us;	/* why was last written to the migration's row */
	throttle_sample samples[THROTTLE_SAMPLES];
	int			nsamples;
	int			next_sample;
	throttle_standby *seen;		/* standbys seen since accepted_at */
	int			nseen;
	char	   *accepted_at;	/* standbys_accepted_at as last read */
	bool		warned_invisible;
	bool		load_limited;	/* a load limit or throttle query, as last read */
};

/* What one check reads of the migration and the server. */
typedef struct throttle_reading
{
	int			max_lag_ms;
	int64_t		max_lag_bytes;
	int			max_load;
	int			critical_load;
	char	   *query;			/* NULL: none */
	bool		paused;
	char	   *accepted_at;
	lsn_t		wal;			/* the server's WAL position */
	int			active;			/* other active sessions */
} throttle_reading;

/* Whether the role sees other sessions' figures: pg_read_all_stats (pg_monitor has it). */
static bool
throttle_sees_stats(db *d, bool *sees)
{
	return db_exec_bool(d, "check for pg_read_all_stats",
						"SELECT pg_catalog.pg_has_role(CURRENT_USER, 'pg_read_all_stats', 'USAGE')", sees);
}

bool
throttle_set_limits(db *d, const state_migration *m, const throttle_limits *l)
{
	PGresult   *res;
	bool		sees = true;

	if ((l->max_lag_ms > 0 || l->max_lag_bytes > 0 || l->max_load > 0 || l->critical_load > 0) &&
		!throttle_sees_stats(d, &sees))
		return false;
	if (!sees)
	{
		log_error("cannot watch the source's standbys or load: role lacks pg_read_all_stats");
		log_detail("Without it pg_stat_replication and pg_stat_activity hide other sessions' "
				   "figures, and the limits would never hold the copy back.");
		log_hint("GRANT pg_monitor TO the migrating role, or leave out --max-replica-lag, "
				 "--max-load and --critical-load.");
		return false;
	}
	/* A negative value (a NULL query) keeps what is recorded; 0 ("") is no limit. */
	res = db_execf(d, "record the copy's limits",
				   "UPDATE pgrepart.migration SET "
				   "  max_replica_lag_ms = CASE WHEN %int4 < 0 THEN max_replica_lag_ms ELSE %int4 END, "
				   "  max_replica_lag_bytes = CASE WHEN %int8 < 0 THEN max_replica_lag_bytes ELSE %int8 END, "
				   "  max_load = CASE WHEN %int4 < 0 THEN max_load ELSE %int4 END, "
				   "  critical_load = CASE WHEN %int4 < 0 THEN critical_load ELSE %int4 END, "
				   "  throttle_query = CASE WHEN %text IS NULL THEN throttle_query ELSE NULLIF(%text, '') END "
				   "WHERE id = %int4",
				   l->max_lag_ms, l->max_lag_ms, (PGint8) l->max_lag_bytes, (PGint8) l->max_lag_bytes,
				   l->max_load, l->max_load, l->critical_load, l->critical_load, l->query, l->query,
				   m->id);
	PQclear(res);
	return res != NULL;
}

throttle *
throttle_create(db *d, const state_migration *m, report *r, volatile sig_atomic_t *stop)
{
	throttle   *t = xcalloc(1, sizeof(throttle));
	PGresult   *res;

	t->d = d;
	t->m = m;
	t->r = r;
	t->stop = stop;
	/* A run killed while throttled left its reason: it no longer holds. */
	res = db_execf(d, "clear the last run's throttle",
				   "UPDATE pgrepart.migration SET throttle_reason = NULL, throttled_since = NULL "
				   "WHERE id = %int4 AND throttled_since IS NOT NULL", m->id);
	if (res == NULL)
	{
		throttle_free(t);
		return NULL;
	}
	PQclear(res);
	return t;
}

static void
throttle_forget_standbys(throttle *t)
{
	for (int i = 0; i < t->nseen; i++)
		free(t->seen[i].name);
	free(t->seen);
	t->seen = NULL;
	t->nseen = 0;
}

void
throttle_free(throttle *t)
{
	if (t == NULL)
		return;
	/* Stopped while throttled: the time counts; the row is cleared by the next run. */
	if (t->throttled && t->r != NULL)
		t->r->throttled_seconds[t->reason] += (double) (clock_monotonic_us() - t->since_us) / 1e6;
	throttle_forget_standbys(t);
	free(t->accepted_at);
	free(t);
}

static bool
throttle_read(throttle *t, throttle_reading *rd)
{
	PGresult   *res;
	PGint4		lag_ms, load, critical, active;
	PGint8		lag_bytes;
	PGbool		paused;
	bool		ok;

	memset(rd, 0, sizeof(*rd));
	res = db_execf(t->d, "read the copy's limits",
				   "SELECT COALESCE(m.max_replica_lag_ms, 0), COALESCE(m.max_replica_lag_bytes, 0), "
				   "  COALESCE(m.max_load, 0), COALESCE(m.critical_load, 0), m.paused_at IS NOT NULL, "
				   "  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a "
				   "    WHERE a.state = 'active' AND a.backend_type = 'client backend' "
				   "      AND a.pid <> pg_catalog.pg_backend_pid() "
				   "      AND a.application_name IS DISTINCT FROM 'pgrepart')::pg_catalog.int4, "
				   "  m.throttle_query, COALESCE(m.standbys_accepted_at::pg_catalog.text, ''), "
				   "  pg_catalog.pg_current_wal_lsn()::pg_catalog.text "
				   "FROM pgrepart.migration m WHERE m.id = %int4", t->m->id);
	ok = res != NULL && state_row_present(res, t->m) &&
		db_getf(res, 0, "%int4 %int8 %int4 %int4 %bool %int4", 0, &lag_ms, 1, &lag_bytes, 2, &load,
				3, &critical, 4, &paused, 5, &active) &&
		lsn_parse(PQgetvalue(res, 0, 8), &rd->wal);
	if (ok)
	{
		rd->max_lag_ms = lag_ms;
		rd->max_lag_bytes = lag_bytes;
		rd->max_load = load;
		rd->critical_load = critical;
		rd->paused = paused;
		rd->active = active;
		rd->query = PQgetisnull(res, 0, 6) ? NULL : xstrdup(PQgetvalue(res, 0, 6));
		rd->accepted_at = xstrdup(PQgetvalue(res, 0, 7));
	}
	PQclear(res);
	return ok;
}

/*
 * How long the WAL at replay has been written, from the checks' samples: the
 * first sample beyond it was taken that long ago at least.  The server's
 * replay_lag keeps its last value while replay stands still; this grows.
 */
static double
throttle_sampled_lag_ms(const throttle *t, lsn_t replay, int64_t now_us)
{
	int64_t		oldest = 0;

	for (int i = 0; i < t->nsamples; i++)
	{
		const throttle_sample *s = &t->samples[i];

		if (s->lsn > replay && (oldest == 0 || s->us < oldest))
			oldest = s->us;
	}
	return oldest == 0 ? 0.0 : (double) (now_us - oldest) / 1000.0;
}

static throttle_standby *
throttle_find_standby(throttle *t, const char *name)
{
	for (int i = 0; i < t->nseen; i++)
		if (strcmp(t->seen[i].name, name) == 0)
			return &t->seen[i];
	return NULL;
}

/*
 * How long standby sb takes to replay what it has not: the WAL behind it at
 * the pace it has replayed lately (smoothed over the checks).  Against a
 * standby that replays slower than the copy writes, the age of its oldest
 * unreplayed WAL alone would stop the copy only once a backlog of several
 * times the limit was written.
 */
static double
throttle_replay_ms(throttle_standby *sb, lsn_t replay, int64_t behind, int64_t now_us)
{
	if (sb->us > 0 && now_us - sb->us >= THROTTLE_CHECK_US && replay >= sb->replay)
	{
		double		pace = (double) (replay - sb->replay) / (double) (now_us - sb->us);

		sb->bytes_per_us = sb->bytes_per_us > 0 ? 0.7 * sb->bytes_per_us + 0.3 * pace : pace;
	}
	if (sb->us == 0 || now_us - sb->us >= THROTTLE_CHECK_US)
	{
		sb->us = now_us;
		sb->replay = replay;
	}
	return sb->bytes_per_us > 0 ? (double) behind / sb->bytes_per_us / 1000.0 : 0.0;
}

/*
 * The physical standbys (senders connected to no database, so not a logical
 * one such as pgrepart's own, nor a base backup's): the worst lag over the
 * limit, or one seen replaying before and gone, throttles.  *why is set
 * when so.
 */
static bool
throttle_standbys(throttle *t, const throttle_reading *rd, int64_t now_us, char *why, size_t whysize)
{
	PGresult   *res;
	char	  **present;
	int			n;

	res = db_execf(t->d, "read the standbys' positions",
				   "SELECT COALESCE(r.application_name, '') || ' (' || "
				   "    COALESCE(pg_catalog.host(r.client_addr), 'local') || ')', "
				   "  r.state IS NULL, COALESCE(r.replay_lsn::pg_catalog.text, ''), "
				   "  COALESCE(EXTRACT(epoch FROM r.replay_lag) * 1000, 0)::pg_catalog.float8 "
				   "FROM pg_catalog.pg_stat_replication r "
				   /* A logical sender is connected to a database, a physical one is not. */
				   "JOIN pg_catalog.pg_stat_activity a ON a.pid = r.pid AND a.datid IS NULL "
				   "WHERE r.state IS DISTINCT FROM 'backup' "
				   "ORDER BY 1");
	if (res == NULL)
		return false;
	/* Standbys accepted anew (pgrepart resume): those connected now are the ones to watch. */
	if (t->accepted_at == NULL || strcmp(t->accepted_at, rd->accepted_at) != 0)
	{
		throttle_forget_standbys(t);
		free(t->accepted_at);
		t->accepted_at = xstrdup(rd->accepted_at);
	}
	n = PQntuples(res);
	present = xcalloc((size_t) n + 1, sizeof(char *));
	for (int i = 0; i < n; i++)
	{
		const char *name = PQgetvalue(res, i, 0);
		lsn_t		replay;
		PGfloat8	server_ms = 0;
		double		lag_ms, replay_ms;
		int64_t		lag_bytes;
		throttle_standby *sb;

		present[i] = PQgetvalue(res, i, 0);
		if (strcmp(PQgetvalue(res, i, 1), "t") == 0)
		{
			if (!t->warned_invisible)
				log_warning("cannot see the standbys' positions: role lacks pg_read_all_stats; "
							"their lag does not hold the copy back");
			t->warned_invisible = true;
			continue;
		}
		/*
		 * A standby that has not reported a position yet has nothing to
		 * measure, nor a physical sender that only archives (pg_receivewal
		 * replays nothing): only a standby that replays is watched, and
		 * missed when it goes.
		 */
		if (!lsn_parse(PQgetvalue(res, i, 2), &replay) ||
			!db_getf(res, i, "%float8", 3, &server_ms))
			continue;
		if ((sb = throttle_find_standby(t, name)) == NULL)
		{
			throttle_standby fresh = {xstrdup(name), 0, 0, 0.0};

			ARRAY_PUSH(t->seen, t->nseen, fresh);
			sb = &t->seen[t->nseen - 1];
		}
		lag_bytes = rd->wal > replay ? (int64_t) (rd->wal - replay) : 0;
		lag_ms = throttle_sampled_lag_ms(t, replay, now_us);
		if (server_ms > lag_ms)
			lag_ms = server_ms;
		replay_ms = throttle_replay_ms(sb, replay, lag_bytes, now_us);
		if (why[0] == '\0' &&
			((rd->max_lag_ms > 0 && (lag_ms > rd->max_lag_ms || replay_ms > rd->max_lag_ms)) ||
			 (rd->max_lag_bytes > 0 && lag_bytes > rd->max_lag_bytes)))
			snprintf(why, whysize, "replica lag: standby %s is %.1f s, %.1f MB behind "
					 "(%.1f s to replay at its pace)", name, lag_ms / 1000.0,
					 (double) lag_bytes / 1048576.0, replay_ms / 1000.0);
	}
	for (int i = 0; i < t->nseen && why[0] == '\0'; i++)
	{
		bool		found = false;

		for (int j = 0; j < n && !found; j++)
			found = strcmp(t->seen[i].name, present[j]) == 0;
		if (!found)
			snprintf(why, whysize, "replica lag: standby %s disconnected", t->seen[i].name);
	}
	free(present);
	PQclear(res);
	return true;
}

/* The operator's own test: true holds the copy back, and so does a failure. */
static void
throttle_query(throttle *t, const char *query, char *why, size_t whysize)
{
	PGresult   *res = PQexec(t->d->conn, query);

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) < 1)
	{
		const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		snprintf(why, whysize, "throttle query failed: %s",
				 message != NULL ? message : PQresultStatus(res) == PGRES_TUPLES_OK ?
				 "it returned no column" : "it returned no rows");
	}
	else if (PQntuples(res) > 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		snprintf(why, whysize, "throttle query returned true");
	PQclear(res);
}

/* Record a change of state: the report's seconds, the migration's row, a log line. */
static bool
throttle_record(throttle *t, bool throttled, report_throttle reason, const char *why, int64_t now_us)
{
	double		elapsed = t->throttled ? (double) (now_us - t->since_us) / 1e6 : 0.0;
	bool		changed = throttled != t->throttled || (throttled && reason != t->reason);
	PGresult   *res;

	if (t->throttled && changed)
	{
		if (t->r != NULL)
			t->r->throttled_seconds[t->reason] += elapsed;
		if (!throttled)
			log_info("no longer throttled, after %.1f s", elapsed);
	}
	/* The figures of a reason that holds go to the row once a second. */
	if (throttled && (changed || (strcmp(why, t->why) != 0 && now_us - t->recorded_us >= 1000000)))
	{
		t->recorded_us = now_us;
		if (changed)
		{
			log_info("throttled: %s", why);
			t->since_us = now_us;
		}
		res = db_execf(t->d, "record the throttle",
					   "UPDATE pgrepart.migration SET throttle_reason = %text, "
					   "  throttled_seconds = throttled_seconds + CASE WHEN %bool THEN "
					   "    EXTRACT(epoch FROM pg_catalog.now() - throttled_since) ELSE 0 END, "
					   "  throttled_since = CASE WHEN %bool THEN pg_catalog.now() "
					   "    ELSE throttled_since END "
					   "WHERE id = %int4", why, (PGbool) (t->throttled && changed), (PGbool) changed,
					   t->m->id);
	}
	else if (!throttled && t->throttled)
		res = db_execf(t->d, "record the throttle's end",
					   "UPDATE pgrepart.migration SET throttle_reason = NULL, throttled_since = NULL, "
					   "  throttled_seconds = throttled_seconds + "
					   "    EXTRACT(epoch FROM pg_catalog.now() - throttled_since) "
					   "WHERE id = %int4", t->m->id);
	else
		return true;
	PQclear(res);
	t->throttled = throttled;
	t->reason = reason;
	snprintf(t->why, sizeof(t->why), "%s", throttled ? why : "");
	return res != NULL;
}

static bool
throttle_check_now(throttle *t)
{
	throttle_reading rd;
	int64_t		now_us = clock_monotonic_us();
	char		why[256] = "";
	report_throttle reason = REPORT_THROTTLE_PAUSED;
	bool		ok = false;

	if (!throttle_read(t, &rd))
		goto cleanup;
	t->load_limited = rd.max_load > 0 || rd.critical_load > 0 || rd.query != NULL;
	t->samples[t->next_sample] = (throttle_sample) {now_us, rd.wal};
	t->next_sample = (t->next_sample + 1) % THROTTLE_SAMPLES;
	if (t->nsamples < THROTTLE_SAMPLES)
		t->nsamples++;
	if (rd.critical_load > 0 && rd.active > rd.critical_load)
	{
		log_error("the source is under critical load: %d active sessions, more than "
				  "--critical-load %d; stopping", rd.active, rd.critical_load);
		log_hint("Run the same command again to resume once the load has passed.");
		*t->stop = 1;
		t->go = false;
		ok = true;
		goto cleanup;
	}
	if (rd.paused)
		snprintf(why, sizeof(why), "paused (pgrepart resume goes on)");
	if (why[0] == '\0' && (rd.max_lag_ms > 0 || rd.max_lag_bytes > 0))
	{
		reason = REPORT_THROTTLE_REPLICA_LAG;
		if (!throttle_standbys(t, &rd, now_us, why, sizeof(why)))
			goto cleanup;
	}
	if (why[0] == '\0' && rd.max_load > 0 && rd.active > rd.max_load)
	{
		reason = REPORT_THROTTLE_LOAD;
		snprintf(why, sizeof(why), "load: %d active sessions, more than %d", rd.active,
				 rd.max_load);
	}
	if (why[0] == '\0' && rd.query != NULL)
	{
		reason = REPORT_THROTTLE_QUERY;
		throttle_query(t, rd.query, why, sizeof(why));
	}
	if (!throttle_record(t, why[0] != '\0', reason, why, now_us))
		goto cleanup;
	t->go = why[0] == '\0';
	ok = true;

cleanup:
	t->checked_us = now_us;
	free(rd.query);
	free(rd.accepted_at);
	return ok;
}

bool
throttle_check(throttle *t, bool *go)
{
	if ((t->checked_us == 0 || clock_monotonic_us() - t->checked_us >= THROTTLE_CHECK_US) &&
		!throttle_check_now(t))
		return false;
	*go = t->go && !*t->stop;
	return true;
}

bool
throttle_load_limited(throttle *t, bool *limited)
{
	if (!throttle_check_now(t))
		return false;
	*limited = t->load_limited;
	return true;
}

bool
throttle_wait(throttle *t, bool (*idle) (void *arg, int ms), void *arg, bool *waited)
{
	*waited = false;
	for (;;)
	{
		bool		go;
		int64_t		left;

		if (!throttle_check(t, &go))
			return false;
		if (go || *t->stop)
			return true;
		*waited = true;
		left = t->checked_us + THROTTLE_CHECK_US - clock_monotonic_us();
		if (left > 0 && !idle(arg, (int) (left / 1000) + 1))
			return false;
	}
}

const char *
throttle_why(const throttle *t)
{
	return t != NULL && t->throttled ? t->why : NULL;
}

bool
throttle_pause(const char *conninfo, const char *schema, const char *table, bool pause)
{
	db			d = {0};
	catalog_table *t = NULL;
	state_migration *m = NULL;
	bool		slot_exists;
	int64_t		retained;
	bool		ok = false;

	if (!state_open(&d, conninfo, schema, table, &t, &m) || (m != NULL && !state_check_home(&d, m)))
		goto cleanup;
	if (m == NULL || m->phase == STATE_DONE)
	{
		log_error("table \"%s.%s\" has no migration under way", t->schema, t->name);
		log_hint("\"pgrepart status\" lists the migrations of the database.");
		goto cleanup;
	}
	if (!state_set_paused(&d, m, pause))
		goto cleanup;
	if (!pause)
	{
		log_info("resumed the migration of \"%s.%s\"; the standbys connected now are those "
				 "its copy watches", m->schema, m->table);
		ok = true;
		goto cleanup;
	}
	if (!state_slot_retained(&d, m, &slot_exists, &retained))
		goto cleanup;
	log_info("paused the migration of \"%s.%s\": its copy and index build wait, holding no "
			 "snapshot, while the spooler reads on; a streaming run stops applying", m->schema,
			 m->table);
	if (slot_exists)
		log_info("its slot \"%s\" retains %.1f MB of WAL now; while the apply is paused it "
				 "retains all the server writes", m->slot, (double) retained / 1048576.0);
	log_hint("\"pgrepart resume -t %s.%s\" goes on.", m->schema, m->table);
	ok = true;

cleanup:
	state_migration_free(m);
	catalog_table_free(t);
	db_close(&d);
	return ok;
}
