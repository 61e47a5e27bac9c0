/* state.c: a migration's durable state; see state.h. */
#include <errno.h>
#include <stdio.h>
#include <sys/select.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/clock.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/state.h"

/*
 * The state's tables, and the columns later versions added.  IF NOT EXISTS
 * does not make concurrent creations safe: a second session blocks on the
 * first's catalog rows and then fails with a unique violation.  That happens
 * when a run starts while the backend of one just killed is still finishing
 * these statements, so the sessions queue on a transaction-scoped advisory
 * lock first.  Each resumed run finds everything there, and the server's
 * "already exists, skipping" notices would only be noise on the operator's
 * terminal.
 */
static const char tables_sql[] =
	"CREATE TABLE IF NOT EXISTS pgrepart.migration ("
	"  id serial PRIMARY KEY,"
	"  source_schema name NOT NULL,"
	"  source_table name NOT NULL,"
	"  shadow_table name NOT NULL,"
	"  partition_column name NOT NULL,"
	"  partition_interval text NOT NULL,"
	"  slot_name name,"
	"  publication_name name,"
	"  origin_name text,"
	"  phase text NOT NULL,"
	"  consistent_lsn pg_catalog.pg_lsn,"
	"  started_at timestamptz NOT NULL DEFAULT pg_catalog.now(),"
	"  updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),"
	"  UNIQUE (source_schema, source_table)); "
	"CREATE TABLE IF NOT EXISTS pgrepart.statement ("
	"  migration_id int NOT NULL REFERENCES pgrepart.migration ON DELETE CASCADE,"
	"  ord int NOT NULL,"
	"  phase text NOT NULL,"
	"  sql text NOT NULL,"
	"  PRIMARY KEY (migration_id, ord)); "
	"CREATE TABLE IF NOT EXISTS pgrepart.verification ("
	"  id bigserial PRIMARY KEY,"
	"  migration_id int NOT NULL REFERENCES pgrepart.migration ON DELETE CASCADE,"
	"  requested_at timestamptz NOT NULL DEFAULT pg_catalog.now(),"
	"  finished_at timestamptz,"
	"  consistent_lsn pg_catalog.pg_lsn,"
	"  equal boolean,"
	"  report_text text,"
	"  report_json text); "
	"CREATE TABLE IF NOT EXISTS pgrepart.chunk ("
	"  migration_id int NOT NULL REFERENCES pgrepart.migration ON DELETE CASCADE,"
	"  ord int NOT NULL,"
	"  hi_key bytea,"
	"  snapshot pg_catalog.pg_snapshot NOT NULL,"
	"  lsn pg_catalog.pg_lsn NOT NULL,"
	"  rows bigint NOT NULL,"
	"  copied_at timestamptz NOT NULL DEFAULT pg_catalog.now(),"
	"  PRIMARY KEY (migration_id, ord)); "
	"CREATE TABLE IF NOT EXISTS pgrepart.spool ("
	"  migration_id int NOT NULL REFERENCES pgrepart.migration ON DELETE CASCADE,"
	"  commit_lsn pg_catalog.pg_lsn NOT NULL,"
	"  piece int NOT NULL,"
	"  end_lsn pg_catalog.pg_lsn,"
	"  data bytea NOT NULL,"
	"  PRIMARY KEY (migration_id, commit_lsn, piece)); "
	"CREATE TABLE IF NOT EXISTS pgrepart.ghost ("
	"  migration_id int NOT NULL REFERENCES pgrepart.migration ON DELETE CASCADE,"
	"  key bytea NOT NULL,"
	"  PRIMARY KEY (migration_id, key)); "
	"ALTER TABLE pgrepart.migration ADD COLUMN IF NOT EXISTS next_xid pg_catalog.xid8; "
	"ALTER TABLE pgrepart.migration ADD COLUMN IF NOT EXISTS max_rows_per_second int; "
	"ALTER TABLE pgrepart.migration ADD COLUMN IF NOT EXISTS cutover_requested_at timestamptz; "
	/* Where the row was written; older rows are told by their slot's name alone. */
	"ALTER TABLE pgrepart.migration ADD COLUMN IF NOT EXISTS system_identifier text; "
	"ALTER TABLE pgrepart.migration ADD COLUMN IF NOT EXISTS database_oid oid; "
	"ALTER TABLE pgrepart.migration ADD COLUMN IF NOT EXISTS premake int; "
	/* The source's health (throttle.h): limits, a pause, and what held the run back. */
	"ALTER TABLE pgrepart.migration "
	"  ADD COLUMN IF NOT EXISTS max_replica_lag_ms int DEFAULT 30000, "
	"  ADD COLUMN IF NOT EXISTS max_replica_lag_bytes bigint, "
	"  ADD COLUMN IF NOT EXISTS max_load int, "
	"  ADD COLUMN IF NOT EXISTS critical_load int, "
	"  ADD COLUMN IF NOT EXISTS throttle_query text, "
	"  ADD COLUMN IF NOT EXISTS paused_at timestamptz, "
	"  ADD COLUMN IF NOT EXISTS standbys_accepted_at timestamptz, "
	"  ADD COLUMN IF NOT EXISTS throttle_reason text, "
	"  ADD COLUMN IF NOT EXISTS throttled_since timestamptz, "
	"  ADD COLUMN IF NOT EXISTS throttled_seconds float8 NOT NULL DEFAULT 0; "
	/*
	 * The copy's order (plan.h), fixed when the migration starts; NULL for
	 * one recorded before there was a choice, which copied by key.  A chunk
	 * in physical order records the table's file it read (backfill.c).
	 */
	"ALTER TABLE pgrepart.migration ADD COLUMN IF NOT EXISTS copy_order text; "
	"ALTER TABLE pgrepart.chunk ADD COLUMN IF NOT EXISTS filenode oid; "
	"ALTER TABLE pgrepart.statement ADD COLUMN IF NOT EXISTS each_head text, "
	"  ADD COLUMN IF NOT EXISTS each_tail text; "
	/*
	 * The way back after the swap (revert.h): the old table's name, the
	 * window's end, the requests (a revert's with the partitioned table's
	 * name afterwards), and how the reverse stream ended.
	 */
	"ALTER TABLE pgrepart.migration "
	"  ADD COLUMN IF NOT EXISTS old_table name, "
	"  ADD COLUMN IF NOT EXISTS revert_until timestamptz, "
	"  ADD COLUMN IF NOT EXISTS revert_requested_at timestamptz, "
	"  ADD COLUMN IF NOT EXISTS finish_requested_at timestamptz, "
	"  ADD COLUMN IF NOT EXISTS reverse_ended_at timestamptz, "
	"  ADD COLUMN IF NOT EXISTS reverse_end text, "
	"  ADD COLUMN IF NOT EXISTS partitioned_name name; "
	/* An index or key built on one partition, committed with it (build.c). */
	"CREATE TABLE IF NOT EXISTS pgrepart.built ("
	"  migration_id int NOT NULL REFERENCES pgrepart.migration ON DELETE CASCADE,"
	"  ord int NOT NULL,"
	"  partition_name name NOT NULL,"
	"  PRIMARY KEY (migration_id, ord, partition_name)); "
	/*
	 * A spool of one row per transaction, keyed by its end, becomes one of
	 * pieces keyed by the commit record's position.  Such a row is a whole
	 * transaction: its one piece goes just before its end, after its commit
	 * record's start and before the next transaction's.
	 */
	"DO $$BEGIN "
	"  IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attname = 'commit_lsn' "
	"      AND attrelid = 'pgrepart.spool'::pg_catalog.regclass) THEN "
	"    ALTER TABLE pgrepart.spool DROP CONSTRAINT spool_pkey, "
	"      ADD COLUMN commit_lsn pg_catalog.pg_lsn, ADD COLUMN piece int NOT NULL DEFAULT 0; "
	"    ALTER TABLE pgrepart.spool ALTER COLUMN end_lsn DROP NOT NULL; "
	"    UPDATE pgrepart.spool SET commit_lsn = end_lsn - 1; "
	"    ALTER TABLE pgrepart.spool ALTER COLUMN commit_lsn SET NOT NULL, "
	"      ALTER COLUMN piece DROP DEFAULT, ADD PRIMARY KEY (migration_id, commit_lsn, piece); "
	"  END IF; "
	"END$$";

bool
state_ensure(db *d)
{
	bool		exists = false;

	/*
	 * CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
	 * schema is there: create it only when it is missing.
	 */
	if (!db_exec(d, "lock the pgrepart schema",
				 "SELECT pg_catalog.set_config('client_min_messages', 'warning', true), "
				 "  pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgrepart.state_ensure'))"))
		return false;
	/* A statement of its own: one that waited for the lock must see what its holder made. */
	return db_exec_bool(d, "look for the pgrepart schema",
						"SELECT pg_catalog.to_regnamespace('pgrepart') IS NOT NULL", &exists) &&
		(exists || db_exec(d, "create the pgrepart schema", "CREATE SCHEMA pgrepart")) &&
		db_exec(d, "create the pgrepart tables", tables_sql);
}

/* Whether pgrepart has recorded a migration in this database ever (its table exists). */
static bool
state_present(db *d, bool *present)
{
	return db_exec_bool(d, "look for the pgrepart schema",
						"SELECT pg_catalog.to_regclass('pgrepart.migration') IS NOT NULL", present);
}

bool
state_upgrade(db *d)
{
	bool		present;
	bool		ok;

	if (!state_present(d, &present))
		return false;
	if (!present)
		return true;
	if (!db_exec(d, "start upgrading the pgrepart tables", "BEGIN"))
		return false;
	ok = state_ensure(d);
	return db_exec(d, ok ? "commit the pgrepart tables" : "roll back the pgrepart tables",
				   ok ? "COMMIT" : "ROLLBACK") && ok;
}

static const char select_sql[] =
	"SELECT id, source_schema::pg_catalog.text, source_table::pg_catalog.text, "
	"  shadow_table::pg_catalog.text, partition_column::pg_catalog.text, partition_interval, "
	"  slot_name::pg_catalog.text, publication_name::pg_catalog.text, origin_name, phase, "
	"  consistent_lsn::pg_catalog.text, next_xid::pg_catalog.text, "
	STATE_HOME_COLUMNS ", m.copy_order = 'physical' "
	"FROM pgrepart.migration m ";

static const char *const state_phase_names[] = {
	[STATE_NEW] = "new",
	[STATE_PREPARED] = "prepared",
	[STATE_COPYING] = "copying",
	[STATE_COPIED] = "copied",
	[STATE_INDEXED] = "indexed",
	[STATE_STREAMING] = "streaming",
	[STATE_SYNCED] = "synced",
	[STATE_DONE] = "done",
};

const char *
state_phase_name(state_phase phase)
{
	return state_phase_names[phase];
}

/* A stored phase's name back to the enum; false for a name this version does not know. */
static bool
state_phase_parse(const char *name, state_phase *out)
{
	for (size_t i = 0; i < sizeof(state_phase_names) / sizeof(state_phase_names[0]); i++)
		if (strcmp(state_phase_names[i], name) == 0)
		{
			*out = (state_phase) i;
			return true;
		}
	return false;
}

static state_migration *
state_from_row(const PGresult *res)
{
	state_migration *m = xcalloc(1, sizeof(state_migration));
	PGint4		id, home = 0;
	PGbool		physical = 0;

	if (!db_getf(res, 0, "%int4", 0, &id))
	{
		free(m);
		return NULL;
	}
	m->id = id;
	m->schema = xstrdup(PQgetvalue(res, 0, 1));
	m->table = xstrdup(PQgetvalue(res, 0, 2));
	m->shadow = xstrdup(PQgetvalue(res, 0, 3));
	m->partition_column = xstrdup(PQgetvalue(res, 0, 4));
	m->interval = xstrdup(PQgetvalue(res, 0, 5));
	m->slot = xstrdup(PQgetvalue(res, 0, 6));
	m->publication = xstrdup(PQgetvalue(res, 0, 7));
	m->origin = xstrdup(PQgetvalue(res, 0, 8));
	if (!state_phase_parse(PQgetvalue(res, 0, 9), &m->phase))
	{
		log_error("the migration of \"%s.%s\" is in phase \"%s\", which this version of "
				  "pgrepart does not know", m->schema, m->table, PQgetvalue(res, 0, 9));
		log_hint("Run the pgrepart that started the migration.");
		state_migration_free(m);
		return NULL;
	}
	if (!PQgetisnull(res, 0, 10))
		lsn_parse(PQgetvalue(res, 0, 10), &m->consistent_lsn);
	if (!PQgetisnull(res, 0, 11))
		m->next_xid = strtoull(PQgetvalue(res, 0, 11), NULL, 10);
	m->home = db_getf(res, 0, "%int4", 12, &home) ? (state_home) home : STATE_HOME_HERE;
	if (!PQgetisnull(res, 0, 13))
		m->home_database = xstrdup(PQgetvalue(res, 0, 13));
	if (!PQgetisnull(res, 0, 14))
		m->home_system = xstrdup(PQgetvalue(res, 0, 14));
	m->physical = !PQgetisnull(res, 0, 15) && db_getf(res, 0, "%bool", 15, &physical) && physical;
	return m;
}

bool
state_find(db *d, const char *schema, const char *table, state_migration **out)
{
	PGresult   *res;
	buf			sql;
	bool		present;
	bool		ok;

	*out = NULL;
	if (!state_present(d, &present))
		return false;
	if (!present)
		return true;
	buf_init(&sql);
	buf_append(&sql, select_sql);
	buf_append(&sql, "WHERE source_schema = %text AND source_table = %text");
	res = db_execf(d, "read the migration's state", sql.data, schema, table);
	buf_free(&sql);
	if (res == NULL)
		return false;
	if (PQntuples(res) == 1)
		*out = state_from_row(res);
	ok = PQntuples(res) == 0 || *out != NULL;
	PQclear(res);
	return ok;
}

bool
state_create(db *d, const plan *p, state_migration **out)
{
	PGresult   *res;
	buf			sql;
	bool		ok = false;

	*out = NULL;
	/* Slot and origin names are cluster-wide: they carry the database's OID. */
	buf_init(&sql);
	buf_append(&sql,
			   "WITH n AS (SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence("
			   "    'pgrepart.migration', 'id'))::pg_catalog.int4 AS id, d.oid AS dboid "
			   "  FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()) "
			   "INSERT INTO pgrepart.migration (id, source_schema, source_table, shadow_table, "
			   "  partition_column, partition_interval, slot_name, publication_name, origin_name, phase, "
			   "  system_identifier, database_oid, copy_order) "
			   "SELECT n.id, %text, %text, %text, %text, %text, "
			   "  'pgrepart_' || n.dboid || '_' || n.id, 'pgrepart_' || n.dboid || '_' || n.id, "
			   "  'pgrepart_' || n.dboid || '_' || n.id, %text, "
			   "  (SELECT c.system_identifier::pg_catalog.text FROM pg_catalog.pg_control_system() c), "
			   "  n.dboid, %text FROM n "
			   "RETURNING id, source_schema::pg_catalog.text, source_table::pg_catalog.text, "
			   "  shadow_table::pg_catalog.text, partition_column::pg_catalog.text, "
			   "  partition_interval, slot_name::pg_catalog.text, "
			   "  publication_name::pg_catalog.text, origin_name, phase, NULL::pg_catalog.text, "
			   "  NULL::pg_catalog.text, 0, NULL::pg_catalog.text, system_identifier, "
			   "  copy_order = 'physical'");
	res = db_execf(d, "record the migration", sql.data, p->table->schema, p->table->name,
				   p->shadow_name, p->partition_column, p->interval, state_phase_name(STATE_NEW),
				   plan_copy_order_name(p->copy_order));
	if (res == NULL)
		goto cleanup;
	*out = state_from_row(res);
	PQclear(res);
	if (*out == NULL)
		goto cleanup;
	/* What a resumed run compares its --premake with. */
	res = db_execf(d, "record the premade partitions", "UPDATE pgrepart.migration SET premake = %int4 "
				   "WHERE id = %int4", p->premake, (*out)->id);
	if (res == NULL)
		goto cleanup;
	PQclear(res);
	for (int i = 0; i < p->nstatements; i++)
	{
		res = db_execf(d, "record the shadow's DDL",
					   "INSERT INTO pgrepart.statement (migration_id, ord, phase, sql, each_head, each_tail) "
					   "VALUES (%int4, %int4, %text, %text, %text, %text)",
					   (*out)->id, i, plan_phase_name(p->statements[i].phase), p->statements[i].sql,
					   p->statements[i].each_head, p->statements[i].each_tail);
		if (res == NULL)
			goto cleanup;
		PQclear(res);
	}
	ok = true;

cleanup:
	buf_free(&sql);
	if (!ok)
	{
		state_migration_free(*out);
		*out = NULL;
	}
	return ok;
}

bool
state_set_phase(db *d, state_migration *m, state_phase phase, lsn_t lsn)
{
	char		text[LSN_TEXT_SIZE];
	PGresult   *res;

	res = db_execf(d, "record the migration's phase",
				   "UPDATE pgrepart.migration SET phase = %text, updated_at = pg_catalog.now(), "
				   "  consistent_lsn = COALESCE(%text::pg_catalog.pg_lsn, consistent_lsn) "
				   "WHERE id = %int4",
				   state_phase_name(phase), lsn == LSN_INVALID ? NULL : lsn_format(lsn, text), m->id);
	if (res == NULL)
		return false;
	PQclear(res);
	m->phase = phase;
	if (lsn != LSN_INVALID)
		m->consistent_lsn = lsn;
	return true;
}

/* Run one statement; tick is called about every 100 ms while it runs. */
static bool
state_run_one(db *d, const char *sql, bool (*tick) (void *arg), void *arg)
{
	PGresult   *res;
	bool		ok = true;
	bool		ticked = true;

	if (tick == NULL)
		return db_exec(d, "build the shadow table", sql);
	if (!PQsendQuery(d->conn, sql))
	{
		db_log_error(d->conn, d->label, "build the shadow table", NULL, d->sqlstate);
		return false;
	}
	while (PQisBusy(d->conn))
	{
		fd_set		readable;
		struct timeval tv = {0, 100000};
		int			fd = PQsocket(d->conn);

		FD_ZERO(&readable);
		FD_SET(fd, &readable);
		if (select(fd + 1, &readable, NULL, NULL, &tv) < 0 && errno != EINTR)
			break;
		if (!PQconsumeInput(d->conn))
			break;
		/* A failing tick is reported once the statement is done. */
		if (ticked)
			ticked = tick(arg);
	}
	while ((res = PQgetResult(d->conn)) != NULL)
	{
		if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			if (ok)
				db_log_error(d->conn, d->label, "build the shadow table", res, d->sqlstate);
			ok = false;
		}
		PQclear(res);
	}
	if (PQstatus(d->conn) == CONNECTION_BAD && ok)
	{
		db_log_error(d->conn, d->label, "build the shadow table", NULL, d->sqlstate);
		ok = false;
	}
	return ok && ticked;
}

bool
state_run_statements(db *d, const state_migration *m, plan_phase phase,
					 bool (*tick) (void *arg), void *arg)
{
	PGresult   *res;
	bool		ok = true;

	res = db_execf(d, "read the shadow's DDL",
				   "SELECT sql FROM pgrepart.statement WHERE migration_id = %int4 AND phase = %text "
				   "ORDER BY ord", m->id, plan_phase_name(phase));
	if (res == NULL)
		return false;
	for (int i = 0; i < PQntuples(res) && ok; i++)
	{
		log_debug("%s", PQgetvalue(res, i, 0));
		ok = state_run_one(d, PQgetvalue(res, i, 0), tick, arg);
	}
	PQclear(res);
	return ok;
}

bool
state_open(db *d, const char *conninfo, const char *schema, const char *table,
		   catalog_table **t, state_migration **m)
{
	*t = NULL;
	*m = NULL;
	return db_connect(d, conninfo, "source") && catalog_read(d, schema, table, t) &&
		state_upgrade(d) && state_find(d, (*t)->schema, (*t)->name, m);
}

bool
state_slot_active(db *d, const state_migration *m, bool *exists, bool *active)
{
	return state_named_slot_active(d, m->slot, exists, active);
}

bool
state_named_slot_active(db *d, const char *slot, bool *exists, bool *active)
{
	PGresult   *res = db_execf(d, "look up the replication slot",
							   "SELECT active FROM pg_catalog.pg_replication_slots "
							   "WHERE slot_name = %text AND database = pg_catalog.current_database()",
							   slot);
	PGbool		value = 0;
	bool		ok = res != NULL;

	if (ok && PQntuples(res) == 1)
		ok = db_getf(res, 0, "%bool", 0, &value);
	if (exists != NULL)
		*exists = ok && PQntuples(res) == 1;
	*active = value;
	PQclear(res);
	return ok;
}

bool
state_slot_retained(db *d, const state_migration *m, bool *exists, int64_t *bytes)
{
	PGresult   *res = db_execf(d, "read the slot's retained WAL",
							   "SELECT COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), "
							   "  restart_lsn), 0)::pg_catalog.int8 FROM pg_catalog.pg_replication_slots "
							   "WHERE slot_name = %text", m->slot);
	PGint8		value = 0;
	bool		ok = res != NULL;

	*exists = ok && PQntuples(res) == 1;
	if (*exists)
		ok = db_getf(res, 0, "%int8", 0, &value);
	*bytes = value;
	PQclear(res);
	return ok;
}

bool
state_check_home(db *d, const state_migration *m)
{
	bool		exists = false, active;

	if (m->home == STATE_HOME_DATABASE)
	{
		if (m->home_database != NULL)
			log_error("the migration of \"%s.%s\" recorded here was copied from database \"%s\" "
					  "of this server: its slot and origin belong to that database",
					  m->schema, m->table, m->home_database);
		else
			log_error("the migration of \"%s.%s\" recorded here was copied from another "
					  "database, which no longer exists", m->schema, m->table);
	}
	else if (m->home == STATE_HOME_CLUSTER)
		log_error("the migration of \"%s.%s\" recorded here was copied from another server "
				  "(system identifier %s): its slot and origin are not this server's",
				  m->schema, m->table, m->home_system);
	if (m->home != STATE_HOME_HERE)
	{
		log_hint("pgrepart leaves them alone. \"pgrepart abort -t %s.%s\" here removes the "
				 "copy's shadow, publication and state from this database and nothing else; "
				 "then run again for a migration of this database's own.", m->schema, m->table);
		return false;
	}
	if (m->phase == STATE_PREPARED || m->phase == STATE_DONE)
		return true;
	if (!state_slot_active(d, m, &exists, &active))
		return false;
	if (exists)
		return true;
	log_error("the migration of \"%s.%s\" is %s, but its replication slot \"%s\" is not on "
			  "this server", m->schema, m->table, state_phase_name(m->phase), m->slot);
	log_hint("A physical copy (pg_basebackup, a promoted standby) has the migration's rows but "
			 "not its slot, which stays on the original. Here, \"pgrepart abort -t %s.%s\" "
			 "removes the copy's migration (and nothing of the original's); then run again.",
			 m->schema, m->table);
	return false;
}

bool
state_run_gone(db *d, const state_migration *m, int64_t *away_since, bool *gone)
{
	bool		active;

	*gone = false;
	if (!state_slot_active(d, m, NULL, &active))
		return false;
	if (active)
		*away_since = 0;
	else if (*away_since == 0)
		*away_since = clock_monotonic_us();
	else if (clock_monotonic_us() - *away_since > STATE_RUN_AWAY_US)
		*gone = true;
	return true;
}

bool
state_set_next_xid(db *d, state_migration *m, uint64_t next_xid)
{
	char		text[24];
	PGresult   *res;

	snprintf(text, sizeof(text), "%llu", (unsigned long long) next_xid);
	res = db_execf(d, "record the next transaction id",
				   "UPDATE pgrepart.migration SET next_xid = %text::pg_catalog.xid8 WHERE id = %int4",
				   text, m->id);
	PQclear(res);
	if (res != NULL)
		m->next_xid = next_xid;
	return res != NULL;
}

bool
state_set_rate(db *d, const state_migration *m, int rows_per_second)
{
	PGresult   *res = db_execf(d, "record the copy's rate",
							   "UPDATE pgrepart.migration SET max_rows_per_second = "
							   "  NULLIF(%int4, 0) WHERE id = %int4", rows_per_second, m->id);

	PQclear(res);
	return res != NULL;
}

/*
 * Whether a read of the migration's own row found it; if not, someone
 * removed the migration (pgrepart abort, or by hand) under the run: say so.
 */
bool
state_row_present(const PGresult *res, const state_migration *m)
{
	if (PQntuples(res) == 1)
		return true;
	log_error("the migration of \"%s.%s\" (id %d) is no longer recorded: its row in "
			  "pgrepart.migration was removed while the run went on", m->schema, m->table, m->id);
	log_hint("Another pgrepart (abort) or a person removed it; the run stops. Check with "
			 "\"pgrepart status\", then plan and run again if the migration is still wanted.");
	return false;
}

bool
state_read_rate(db *d, const state_migration *m, int *rows_per_second)
{
	PGresult   *res = db_execf(d, "read the copy's rate",
							   "SELECT COALESCE(max_rows_per_second, 0) FROM pgrepart.migration "
							   "WHERE id = %int4", m->id);
	PGint4		rate = 0;
	bool		ok = res != NULL && state_row_present(res, m) && db_getf(res, 0, "%int4", 0, &rate);

	*rows_per_second = rate;
	PQclear(res);
	return ok;
}

bool
state_request_cutover(db *d, const state_migration *m)
{
	PGresult   *res = db_execf(d, "request the cutover",
							   "UPDATE pgrepart.migration SET cutover_requested_at = pg_catalog.now() "
							   "WHERE id = %int4", m->id);

	PQclear(res);
	return res != NULL;
}

bool
state_cutover_requested(db *d, const state_migration *m, bool *requested)
{
	PGresult   *res = db_execf(d, "look for a cutover request",
							   "SELECT cutover_requested_at IS NOT NULL FROM pgrepart.migration "
							   "WHERE id = %int4", m->id);
	PGbool		value = 0;
	bool		ok = res != NULL && state_row_present(res, m) && db_getf(res, 0, "%bool", 0, &value);

	*requested = value;
	PQclear(res);
	return ok;
}

bool
state_set_paused(db *d, const state_migration *m, bool paused)
{
	/* A resume also takes the standbys connected now as those to watch (throttle.c). */
	PGresult   *res = db_execf(d, paused ? "pause the migration" : "resume the migration",
							   "UPDATE pgrepart.migration SET "
							   "  paused_at = CASE WHEN %bool THEN COALESCE(paused_at, pg_catalog.now()) END, "
							   "  standbys_accepted_at = CASE WHEN %bool THEN standbys_accepted_at "
							   "    ELSE pg_catalog.now() END "
							   "WHERE id = %int4", (PGbool) paused, (PGbool) paused, m->id);

	PQclear(res);
	return res != NULL;
}

bool
state_paused(db *d, const state_migration *m, bool *paused)
{
	PGresult   *res = db_execf(d, "look for a pause",
							   "SELECT paused_at IS NOT NULL FROM pgrepart.migration WHERE id = %int4",
							   m->id);
	PGbool		value = 0;
	bool		ok = res != NULL && state_row_present(res, m) && db_getf(res, 0, "%bool", 0, &value);

	*paused = value;
	PQclear(res);
	return ok;
}

bool
state_add_chunk(db *d, const state_migration *m, const state_chunk *c)
{
	char		lsn[LSN_TEXT_SIZE];
	PGbytea		hi = {(int) c->hi_key_len, (char *) c->hi_key};
	PGresult   *res;

	res = db_execf(d, "record the chunk",
				   "INSERT INTO pgrepart.chunk (migration_id, ord, hi_key, snapshot, lsn, rows, filenode) "
				   "VALUES (%int4, %int4, %bytea, %text::pg_catalog.pg_snapshot, "
				   "  %text::pg_catalog.pg_lsn, %int8, NULLIF(%int8, 0))",
				   m->id, c->ord, c->hi_key ? &hi : NULL, c->snapshot, lsn_format(c->lsn, lsn),
				   (PGint8) c->rows, (PGint8) c->filenode);
	PQclear(res);
	return res != NULL;
}

bool
state_read_chunks(db *d, const state_migration *m, state_chunk **chunks, int *count)
{
	PGresult   *res = db_execf(d, "read the copied chunks",
							   "SELECT ord, hi_key, snapshot::pg_catalog.text, lsn::pg_catalog.text, rows, "
							   "  COALESCE(filenode, 0)::pg_catalog.int8 "
							   "FROM pgrepart.chunk WHERE migration_id = %int4 ORDER BY ord", m->id);
	int			n;

	*chunks = NULL;
	*count = 0;
	if (res == NULL)
		return false;
	n = PQntuples(res);
	*chunks = xcalloc((size_t) n + 1, sizeof(state_chunk));
	for (int i = 0; i < n; i++)
	{
		state_chunk *c = &(*chunks)[i];
		PGint4		ord;
		PGint8		rows, filenode;
		PGbytea		hi;

		if (!db_getf(res, i, "%int4 %int8 %int8", 0, &ord, 4, &rows, 5, &filenode))
		{
			state_chunks_free(*chunks, i);
			*chunks = NULL;
			PQclear(res);
			return false;
		}
		c->ord = ord;
		c->rows = rows;
		c->filenode = (uint32_t) filenode;
		if (!PQgetisnull(res, i, 1) && db_getf(res, i, "%bytea", 1, &hi))
		{
			c->hi_key = xmalloc((size_t) hi.len + 1);
			memcpy(c->hi_key, hi.data, (size_t) hi.len);
			c->hi_key_len = (size_t) hi.len;
		}
		c->snapshot = xstrdup(PQgetvalue(res, i, 2));
		lsn_parse(PQgetvalue(res, i, 3), &c->lsn);
	}
	*count = n;
	PQclear(res);
	return true;
}

bool
state_drop_chunks(db *d, const state_migration *m)
{
	PGresult   *res = db_execf(d, "forget the chunks",
							   "DELETE FROM pgrepart.chunk WHERE migration_id = %int4", m->id);

	PQclear(res);
	return res != NULL;
}

void
state_chunks_free(state_chunk *chunks, int count)
{
	for (int i = 0; chunks != NULL && i < count; i++)
	{
		free(chunks[i].hi_key);
		free(chunks[i].snapshot);
	}
	free(chunks);
}

bool
state_read_ghosts(db *d, const state_migration *m, buf **keys, int *count)
{
	PGresult   *res = db_execf(d, "read the keys of rows gone from the source",
							   "SELECT key FROM pgrepart.ghost WHERE migration_id = %int4", m->id);
	int			n;

	*keys = NULL;
	*count = 0;
	if (res == NULL)
		return false;
	n = PQntuples(res);
	*keys = xcalloc((size_t) n + 1, sizeof(buf));
	for (int i = 0; i < n; i++)
	{
		PGbytea		key;

		buf_init(&(*keys)[i]);
		if (!db_getf(res, i, "%bytea", 0, &key))
		{
			for (int j = 0; j <= i; j++)
				buf_free(&(*keys)[j]);
			free(*keys);
			*keys = NULL;
			PQclear(res);
			return false;
		}
		buf_append_len(&(*keys)[i], key.data, (size_t) key.len);
	}
	*count = n;
	PQclear(res);
	return true;
}

const char *
state_ghost_sql(state_ghost_change change)
{
	switch (change)
	{
		case STATE_GHOST_ADD:
			return "INSERT INTO pgrepart.ghost (migration_id, key) "
				"VALUES ($1::pg_catalog.int4, $2::pg_catalog.bytea) ON CONFLICT DO NOTHING";
		case STATE_GHOST_REMOVE:
			return "DELETE FROM pgrepart.ghost "
				"WHERE migration_id = $1::pg_catalog.int4 AND key = $2::pg_catalog.bytea";
		case STATE_GHOST_CLEAR:
			break;
	}
	return "DELETE FROM pgrepart.ghost WHERE migration_id = $1::pg_catalog.int4";
}

bool
state_request_verification(db *d, const state_migration *m, int64_t *id)
{
	PGresult   *res = db_execf(d, "request a live verification",
							   "INSERT INTO pgrepart.verification (migration_id) VALUES (%int4) "
							   "RETURNING id", m->id);
	PGint8		value;
	bool		ok;

	if (res == NULL)
		return false;
	ok = db_getf(res, 0, "%int8", 0, &value);
	*id = value;
	PQclear(res);
	return ok;
}

bool
state_pending_verification(db *d, const state_migration *m, int64_t *id)
{
	PGresult   *res = db_execf(d, "look for verification requests",
							   "SELECT id FROM pgrepart.verification WHERE migration_id = %int4 "
							   "AND finished_at IS NULL ORDER BY id LIMIT 1", m->id);
	PGint8		value = 0;
	bool		ok = true;

	if (res == NULL)
		return false;
	if (PQntuples(res) == 1)
		ok = db_getf(res, 0, "%int8", 0, &value);
	*id = value;
	PQclear(res);
	return ok;
}

bool
state_finish_verification(db *d, int64_t id, lsn_t at, verify_outcome outcome,
						  const char *text, const char *json)
{
	char		lsn[LSN_TEXT_SIZE];
	PGresult   *res;

	res = db_execf(d, "record the verification's result",
				   "UPDATE pgrepart.verification SET finished_at = pg_catalog.now(), "
				   "  consistent_lsn = %text::pg_catalog.pg_lsn, "
				   "  equal = CASE %int4 WHEN 0 THEN true WHEN 1 THEN false END, "
				   "  report_text = %text, report_json = %text WHERE id = %int8",
				   at == LSN_INVALID ? NULL : lsn_format(at, lsn), (int) outcome, text, json, id);
	PQclear(res);
	return res != NULL;
}

bool
state_read_verification(db *d, int64_t id, state_verification *out)
{
	PGresult   *res = db_execf(d, "read the verification's result",
							   "SELECT finished_at IS NOT NULL, equal, consistent_lsn::pg_catalog.text, "
							   "  report_text, report_json FROM pgrepart.verification "
							   "WHERE id = %int8", id);
	PGbool		finished = 0, equal = 0;

	memset(out, 0, sizeof(*out));
	if (res == NULL || PQntuples(res) != 1 || !db_getf(res, 0, "%bool", 0, &finished))
	{
		PQclear(res);
		return false;
	}
	out->finished = finished;
	if (PQgetisnull(res, 0, 1))
		out->outcome = VERIFY_OUTCOME_FAILED;
	else
	{
		db_getf(res, 0, "%bool", 1, &equal);
		out->outcome = equal ? VERIFY_OUTCOME_EQUAL : VERIFY_OUTCOME_DIFFERENT;
	}
	if (!PQgetisnull(res, 0, 2))
		lsn_parse(PQgetvalue(res, 0, 2), &out->at);
	out->text = PQgetisnull(res, 0, 3) ? NULL : xstrdup(PQgetvalue(res, 0, 3));
	out->json = PQgetisnull(res, 0, 4) ? NULL : xstrdup(PQgetvalue(res, 0, 4));
	PQclear(res);
	return true;
}

void
state_verification_free(state_verification *v)
{
	free(v->text);
	free(v->json);
	v->text = v->json = NULL;
}

void
state_migration_free(state_migration *m)
{
	if (m == NULL)
		return;
	free(m->schema);
	free(m->table);
	free(m->shadow);
	free(m->partition_column);
	free(m->interval);
	free(m->slot);
	free(m->publication);
	free(m->origin);
	free(m->home_database);
	free(m->home_system);
	free(m);
}
