/*
 * cutover.c: the swap under a short, bounded lock; see cutover.h.
 *
 * Everything the swap changes is read from the catalogs inside the locked
 * transaction, before the renames: view definitions print the table's name
 * as it is then, so re-creating them after the renames points them at the
 * new table.  Every statement runs in the one transaction; any failure rolls
 * the whole attempt back and the original table is as it was.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpqtypes.h>

#include "pgrepart/catalog.h"
#include "pgrepart/clock.h"
#include "pgrepart/cutover.h"
#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/partition.h"
#include "pgrepart/plan.h"
#include "pgrepart/reconcile.h"
#include "pgrepart/revert.h"
#include "pgrepart/sqlstate.h"
#include "pgrepart/stream.h"

/* The name the table gets after the swap, into out (IDENT_MAX_BYTES + 1). */
static void
cutover_old_name(const state_migration *m, const cutover_options *o, int encoding, char *out)
{
	if (o->old_name != NULL)
		snprintf(out, IDENT_MAX_BYTES + 1, "%s", o->old_name);
	else
		ident_with_suffix(out, m->table, "_old", encoding);
}

/* Who holds locks on the table that an EXCLUSIVE lock waits for. */
static void
cutover_log_holders(db *d, const char *qtable)
{
	PGresult   *res = db_execf(d, "look up who holds the table's locks",
							   "SELECT a.pid::pg_catalog.text, l.mode, COALESCE(pg_catalog.left(a.query, 80), ''), "
							   "  COALESCE(pg_catalog.round(EXTRACT(epoch FROM pg_catalog.now() - a.xact_start)::pg_catalog.numeric, 1), 0)::pg_catalog.text "
							   "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
							   "WHERE l.relation = %text::pg_catalog.regclass AND l.granted "
							   "  AND l.mode NOT IN ('AccessShareLock') AND a.pid <> pg_catalog.pg_backend_pid() "
							   "ORDER BY a.xact_start LIMIT 5", qtable);

	for (int i = 0; res != NULL && i < PQntuples(res); i++)
		log_info("  held by pid %s (%s, transaction open %s s): %s", PQgetvalue(res, i, 0),
				 PQgetvalue(res, i, 1), PQgetvalue(res, i, 3), PQgetvalue(res, i, 2));
	PQclear(res);
}

/*
 * Cancel an autovacuum that holds a lock the swap needs: on the table, on a
 * partition of the shadow, or on a table its foreign keys reference (the
 * swap adds them to each partition).  The server cancels one for any lock
 * that has waited deadlock_timeout behind it, but the cutover never waits
 * that long, and an autovacuum of a large table can outlast every attempt.
 * One that runs to prevent wraparound is left alone, as the server leaves
 * it.  Cancelling an autovacuum takes a superuser on PostgreSQL 15 to 17
 * and pg_signal_autovacuum_worker from 18; without that, say so once and
 * let the attempts go on.
 */
static void
cutover_cancel_autovacuum(db *d, const state_migration *m, const char *qtable)
{
	static bool warned;
	char	   *qshadow = ident_qualified(m->schema, m->shadow);
	const char *values[2] = {qtable, qshadow};
	PGresult   *res;

	res = PQexecParams(d->conn,
					   /* Materialized: nothing else is ever cancelled. */
					   "WITH r AS (SELECT $1::pg_catalog.regclass::pg_catalog.oid AS rel "
					   "  UNION SELECT h.inhrelid FROM pg_catalog.pg_inherits h "
					   "    WHERE h.inhparent IN ($1::pg_catalog.regclass, pg_catalog.to_regclass($2)) "
					   "  UNION SELECT k.confrelid FROM pg_catalog.pg_constraint k "
					   "    WHERE k.conrelid = $1::pg_catalog.regclass AND k.contype = 'f'), "
					   "v AS MATERIALIZED ("
					   "  SELECT DISTINCT a.pid FROM pg_catalog.pg_locks l "
					   "  JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
					   "  WHERE l.relation IN (SELECT rel FROM r) AND l.granted "
					   "    AND a.backend_type = 'autovacuum worker' "
					   "    AND a.query NOT LIKE '%(to prevent wraparound)') "
					   "SELECT pid::pg_catalog.text FROM v WHERE pg_catalog.pg_cancel_backend(pid)",
					   2, NULL, values, NULL, NULL, 0);
	free(qshadow);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
	{
		for (int i = 0; i < PQntuples(res); i++)
			log_info("  cancelled the autovacuum in pid %s: it would hold its lock for its whole run",
					 PQgetvalue(res, i, 0));
	}
	else if (!warned)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		warned = true;
		if (state != NULL && strcmp(state, ERRCODE_INSUFFICIENT_PRIVILEGE) == 0)
		{
			log_warning("an autovacuum holds a lock on \"%s.%s\", and this role may not cancel it",
						m->schema, m->table);
			log_hint("Attempts go on; it may outlast them. Cancel it with SELECT pg_cancel_backend(PID), "
					 "or run pgrepart as a role that may (a superuser; from PostgreSQL 18 also "
					 "pg_signal_autovacuum_worker).");
		}
		else
			db_log_error(d->conn, d->label, "cancel the table's autovacuum", res, d->sqlstate);
	}
	PQclear(res);
}

bool
cutover_lock(db *d, const state_migration *m, const cutover_options *o, lsn_t *l, bool *busy)
{
	char	   *qtable = ident_qualified(m->schema, m->table);
	PGresult   *res = NULL;
	bool		ok = false;
	buf			sql;

	*busy = false;
	buf_init(&sql);
	buf_appendf(&sql, "SET LOCAL lock_timeout = '%dms'", o->lock_timeout_ms);
	if (!db_exec(d, "start the cutover", "BEGIN") || !db_exec(d, "set the lock timeout", sql.data))
		goto cleanup;
	buf_reset(&sql);
	buf_appendf(&sql, "LOCK TABLE %s IN EXCLUSIVE MODE", qtable);
	res = PQexec(d->conn, sql.data);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		if (state != NULL && strcmp(state, ERRCODE_LOCK_NOT_AVAILABLE) == 0)
		{
			*busy = true;
			db_exec(d, "give up the lock", "ROLLBACK");
			log_info("could not lock \"%s.%s\" within %d ms; writers and readers go on",
					 m->schema, m->table, o->lock_timeout_ms);
			cutover_log_holders(d, qtable);
			cutover_cancel_autovacuum(d, m, qtable);
		}
		else
			db_log_error(d->conn, d->label, "lock the table", res, d->sqlstate);
		goto cleanup;
	}
	PQclear(res);

	/*
	 * Every write to the table committed before the lock precedes this
	 * message in the WAL; none can follow it until the swap commits.
	 */
	res = db_execf(d, "mark the cutover's position",
				   "SELECT pg_catalog.pg_logical_emit_message(false, 'pgrepart', 'cutover')::pg_catalog.text");
	ok = res != NULL && lsn_parse(PQgetvalue(res, 0, 0), l);

cleanup:
	if (!ok && !*busy)
		db_rollback(d, "give up the lock");
	PQclear(res);
	buf_free(&sql);
	free(qtable);
	return ok;
}

bool
cutover_current_lsn(db *d, lsn_t *lsn)
{
	PGresult   *res = db_execf(d, "read the WAL position",
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
bool
cutover_flush_wal(db *aux)
{
	return db_exec(aux, "flush the WAL",
				   "BEGIN; SET LOCAL synchronous_commit = local; "
				   "SELECT pg_catalog.pg_logical_emit_message(true, 'pgrepart', 'flush'); COMMIT");
}

void
cutover_release(db *d)
{
	db_rollback(d, "give up the lock");
}

/* Run each row's first column as a statement. */
static bool
cutover_run_all(db *d, const char *what, PGresult *res)
{
	for (int i = 0; res != NULL && i < PQntuples(res); i++)
	{
		log_debug("%s", PQgetvalue(res, i, 0));
		if (!db_exec(d, what, PQgetvalue(res, i, 0)))
			return false;
	}
	return res != NULL;
}

/*
 * The statements that carry a table's dependents over, generated by the
 * server from its catalogs while the names are still the old ones: t.oid
 * is the table's, t.dest the table's that takes its name (see
 * cutover_read_dependents for the parameters).
 */
static const char cutover_dependents_sql[] =
	"WITH t AS (SELECT %text::pg_catalog.regclass::pg_catalog.oid AS oid, "
	"  %text::pg_catalog.regclass::pg_catalog.oid AS dest) "
	/* Grants, one per grantee and privilege. */
	"SELECT pg_catalog.format('GRANT %s ON %s TO %s%s', a.privilege_type, %text, "
	"  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END, "
	"  CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), 1 "
	"FROM t, pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a "
	"LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee "
	"WHERE c.oid = t.oid AND a.grantee <> c.relowner "
	"UNION ALL "
	/* Owner. */
	"SELECT pg_catalog.format('ALTER TABLE %s OWNER TO %I', %text, r.rolname), 0 "
	"FROM t, pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner WHERE c.oid = t.oid "
	"UNION ALL "
	/* Triggers, with their enabled state. */
	"SELECT pg_catalog.pg_get_triggerdef(g.oid), 2 FROM t, pg_catalog.pg_trigger g "
	"WHERE g.tgrelid = t.oid AND NOT g.tgisinternal "
	"  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger e WHERE e.tgrelid = t.dest AND e.tgname = g.tgname) "
	"UNION ALL "
	"SELECT pg_catalog.format('ALTER TABLE %s %s TRIGGER %I', %text, "
	"  CASE g.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'A' THEN 'ENABLE ALWAYS' ELSE 'ENABLE REPLICA' END, "
	"  g.tgname), 3 FROM t, pg_catalog.pg_trigger g "
	"WHERE g.tgrelid = t.oid AND NOT g.tgisinternal AND g.tgenabled <> 'O' "
	"UNION ALL "
	/* Row-level security and its policies. */
	"SELECT pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', %text), 4 "
	"FROM t, pg_catalog.pg_class c WHERE c.oid = t.oid AND c.relrowsecurity "
	"UNION ALL "
	"SELECT pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', %text), 4 "
	"FROM t, pg_catalog.pg_class c WHERE c.oid = t.oid AND c.relforcerowsecurity "
	"UNION ALL "
	"SELECT pg_catalog.format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', p.polname, %text, "
	"  CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END, "
	"  CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' "
	"    WHEN 'd' THEN 'DELETE' ELSE 'ALL' END, "
	"  (SELECT pg_catalog.string_agg(CASE WHEN x = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END, ', ') "
	"   FROM pg_catalog.unnest(p.polroles) x LEFT JOIN pg_catalog.pg_roles r ON r.oid = x), "
	"  ' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')', "
	"  ' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')'), 5 "
	"FROM t, pg_catalog.pg_policy p WHERE p.polrelid = t.oid "
	"  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy e WHERE e.polrelid = t.dest AND e.polname = p.polname) "
	"UNION ALL "
	/* Replica identity FULL; an index identity follows the renames, below. */
	"SELECT pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY FULL', %text), 6 "
	"FROM t, pg_catalog.pg_class c WHERE c.oid = t.oid AND c.relreplident = 'f' "
	"UNION ALL "
	/* Publications other than the migration's own. */
	"SELECT pg_catalog.format('ALTER PUBLICATION %I ADD TABLE %s', p.pubname, %text), 7 "
	"FROM t, pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid "
	"WHERE pr.prrelid = t.oid AND p.pubname <> %text "
	"UNION ALL "
	"SELECT pg_catalog.format('ALTER PUBLICATION %I DROP TABLE %s', p.pubname, %text), 8 "
	"FROM t, pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid "
	"WHERE pr.prrelid = t.oid AND p.pubname <> %text "
	"UNION ALL "
	/* Sequences the old columns own move to the new columns. */
	"SELECT pg_catalog.format('ALTER SEQUENCE %s OWNED BY %s.%I', d.objid::pg_catalog.regclass, %text, a.attname), 9 "
	"FROM t, pg_catalog.pg_depend d JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
	"WHERE d.refobjid = t.oid AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass "
	"  AND d.deptype = 'a' AND a.attidentity = '' "
	"  AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = d.objid) = 'S' "
	"UNION ALL "
	/* Identity columns continue from the old sequence's position. */
	"SELECT pg_catalog.format('SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence(%L, %L), %s, true)', "
	"  %text, a.attname, v.last), 10 "
	"FROM t, pg_catalog.pg_attribute a, LATERAL (SELECT pg_catalog.pg_sequence_last_value("
	"  pg_catalog.pg_get_serial_sequence(%text, a.attname)::pg_catalog.regclass) AS last) v "
	"WHERE a.attrelid = t.oid AND a.attidentity <> '' AND v.last IS NOT NULL "
	"UNION ALL "
	/* Identity columns the shadow generated by default, so the apply could set them. */
	"SELECT pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET GENERATED ALWAYS', %text, a.attname), 11 "
	"FROM t, pg_catalog.pg_attribute a "
	"WHERE a.attrelid = t.oid AND a.attidentity = 'a' AND NOT a.attisdropped "
	"UNION ALL "
	/*
	 * Rules, printed while the table has its name: a rule whose action
	 * names the table (a soft delete's UPDATE) acts on the new one, as the
	 * application's statements will.  Then their enabled state.
	 */
	"SELECT pg_catalog.pg_get_ruledef(r.oid), 12 FROM t, pg_catalog.pg_rewrite r "
	"WHERE r.ev_class = t.oid AND r.rulename <> '_RETURN' "
	"  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite e WHERE e.ev_class = t.dest AND e.rulename = r.rulename) "
	"UNION ALL "
	"SELECT pg_catalog.format('ALTER TABLE %s %s RULE %I', %text, "
	"  CASE r.ev_enabled WHEN 'D' THEN 'DISABLE' WHEN 'A' THEN 'ENABLE ALWAYS' ELSE 'ENABLE REPLICA' END, "
	"  r.rulename), 13 FROM t, pg_catalog.pg_rewrite r "
	"WHERE r.ev_class = t.oid AND r.rulename <> '_RETURN' AND r.ev_enabled <> 'O' "
	"UNION ALL "
	/*
	 * A replica identity index: the new table's index of that name (the
	 * shadow's, renamed above), widened by the partition column.  The
	 * partitions follow it (partition_sync_identity).
	 */
	"SELECT pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %I', %text, i.relname), 6 "
	"FROM t, pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
	"WHERE x.indrelid = t.oid AND x.indisreplident "
	"ORDER BY 2";

bool
cutover_read_dependents(db *d, const char *qtable, const char *qdest, const char *qafter,
						const char *publication, PGresult **deps, PGresult **views)
{
	/* Before the renames qtable is the table, after them the one that took its name. */
	*deps = db_execf(d, "read the table's dependents", cutover_dependents_sql, qtable, qdest,
					 qtable, qtable, qtable, qtable, qtable, qtable, qtable, qtable,
					 publication, qafter, publication, qtable, qtable, qtable, qtable, qtable,
					 qtable);
	*views = db_execf(d, "read the views on the table",
					  "SELECT DISTINCT pg_catalog.format('CREATE OR REPLACE VIEW %s AS %s', "
					  "  c.oid::pg_catalog.regclass, pg_catalog.pg_get_viewdef(c.oid)) "
					  "FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid "
					  "JOIN pg_catalog.pg_class c ON c.oid = r.ev_class "
					  "WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
					  "  AND d.refobjid = %text::pg_catalog.regclass AND c.relkind = 'v' "
					  "  AND c.oid <> d.refobjid", qtable);
	return *deps != NULL && *views != NULL;
}

bool
cutover_carry_dependents(db *d, PGresult *deps, PGresult *views)
{
	return cutover_run_all(d, "re-create a view on the table", views) &&
		cutover_run_all(d, "carry a dependent over", deps);
}

/*
 * The old table's foreign keys (named "<key>_old" since the swap) for each
 * partition of the new table that lacks them, NOT VALID: a partition's
 * key enforces every new row at once and checks none of the old, so it
 * costs milliseconds where a key on the partitioned table would scan every
 * row under a lock that stops writers (and PostgreSQL 15 cannot add one
 * NOT VALID).  cutover_attach_keys validates them and adds the table's.
 */
static const char cutover_partition_keys_sql[] =
	"SELECT pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s NOT VALID', c.oid::pg_catalog.regclass, "
	"  pg_catalog.regexp_replace(k.conname, '_old$', ''), "
	"  pg_catalog.regexp_replace(pg_catalog.pg_get_constraintdef(k.oid), ' NOT VALID$', '')) "
	"FROM pg_catalog.pg_constraint k, pg_catalog.pg_inherits h "
	"JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid "
	"WHERE k.conrelid = %text::pg_catalog.regclass AND k.contype = 'f' "
	"  AND h.inhparent = %text::pg_catalog.regclass "
	"  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint n WHERE n.conrelid = c.oid "
	"    AND n.contype = 'f' AND n.conname = pg_catalog.regexp_replace(k.conname, '_old$', '')) "
	"ORDER BY 1";

/*
 * Run sql; a lock not granted within the transaction's lock_timeout sets
 * *busy, without an error logged: the caller tries again.
 */
static bool
cutover_exec_or_busy(db *d, const char *what, const char *sql, bool *busy)
{
	PGresult   *res = PQexec(d->conn, sql);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	*busy = !ok && state != NULL && strcmp(state, ERRCODE_LOCK_NOT_AVAILABLE) == 0;
	if (*busy)
		log_info("could not lock a table the statement needs in time: %s", sql);
	else if (!ok)
		db_log_error(d->conn, d->label, what, res, d->sqlstate);
	PQclear(res);
	return ok;
}

/* The old table's keys on each partition of the new one, NOT VALID; in the caller's transaction. */
static bool
cutover_partition_keys(db *d, const char *qtable, const char *qold, bool *busy)
{
	PGresult   *res = db_execf(d, "read the foreign keys", cutover_partition_keys_sql, qold, qtable);
	bool		ok = res != NULL;

	*busy = false;
	for (int i = 0; ok && i < PQntuples(res); i++)
	{
		log_debug("%s", PQgetvalue(res, i, 0));
		ok = cutover_exec_or_busy(d, "add a foreign key to a partition", PQgetvalue(res, i, 0), busy);
	}
	PQclear(res);
	return ok;
}

/* The server's clock now, as text, into out (CUTOVER_CLOCK_SIZE bytes). */
static bool
cutover_read_clock(db *d, char *out)
{
	PGresult   *res = db_execf(d, "read the server's clock",
							   "SELECT pg_catalog.clock_timestamp()::pg_catalog.text");

	if (res == NULL)
		return false;
	snprintf(out, CUTOVER_CLOCK_SIZE, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return true;
}

/*
 * Other client sessions holding a snapshot taken at or before a moment:
 * their transaction began then and still holds an xmin.  pgrepart's own
 * sessions share its application_name.  Without pg_read_all_stats, other
 * roles' sessions show no xact_start and are not seen.
 */
static const char cutover_old_snapshots_sql[] =
	"SELECT pg_catalog.format('pid %s (role %s, %s), transaction open %s s: %s', a.pid, a.usename, "
	"  COALESCE(NULLIF(a.application_name, ''), 'no application_name'), "
	"  pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - a.xact_start)::pg_catalog.numeric, 1), "
	"  pg_catalog.left(a.query, 80)) "
	"FROM pg_catalog.pg_stat_activity a "
	"WHERE a.backend_type = 'client backend' AND a.backend_xmin IS NOT NULL "
	"  AND a.pid <> pg_catalog.pg_backend_pid() "
	"  AND a.application_name IS DISTINCT FROM pg_catalog.current_setting('application_name') "
	"  AND a.xact_start <= %text::pg_catalog.timestamptz "
	"ORDER BY a.xact_start";

bool
cutover_old_snapshots(db *d, const char *swapped_at, int *count, char ***names)
{
	PGresult   *res = db_execf(d, "look for snapshots older than the swap", cutover_old_snapshots_sql,
							   swapped_at);

	*count = 0;
	if (res == NULL)
		return false;
	for (int i = 0; i < PQntuples(res); i++)
	{
		if (names != NULL)
			ARRAY_PUSH(*names, *count, xstrdup(PQgetvalue(res, i, 0)));
		else
			(*count)++;
	}
	PQclear(res);
	return true;
}

bool
cutover_wait_snapshots(db *d, const cutover_options *o, bool *clear)
{
	char		since[CUTOVER_CLOCK_SIZE];
	int64_t		until = clock_monotonic_us() + (int64_t) o->snapshot_wait_ms * 1000;
	char	  **names = NULL;
	int			count = 0;

	*clear = false;
	if (!cutover_read_clock(d, since))
		return false;
	for (;;)
	{
		if (!cutover_old_snapshots(d, since, &count, NULL))
			return false;
		if (count == 0)
		{
			*clear = true;
			return true;
		}
		if (clock_monotonic_us() >= until)
			break;
		usleep(50 * 1000);
	}
	if (!cutover_old_snapshots(d, since, &count, &names))
		return false;
	log_info("%d session(s) still hold a snapshot older than the attempt after %d ms; not locking:",
			 count, o->snapshot_wait_ms);
	for (int i = 0; i < count; i++)
	{
		log_info("  %s", names[i]);
		free(names[i]);
	}
	free(names);
	return true;
}

bool
cutover_swap(db *d, state_migration *m, const cutover_options *o, bool *busy, char *swapped_at)
{
	char		old[IDENT_MAX_BYTES + 1];
	char	   *qtable = ident_qualified(m->schema, m->table);
	char	   *qshadow = ident_qualified(m->schema, m->shadow);
	char	   *qold;
	PGresult   *deps = NULL, *views = NULL, *names = NULL;
	bool		ok = false;
	buf			sql;

	*busy = false;
	buf_init(&sql);
	cutover_old_name(m, o, d->encoding, old);
	qold = ident_qualified(m->schema, old);

	/* What points at the table, read while its names are the old ones. */
	cutover_read_dependents(d, qtable, qshadow, qold, m->publication, &deps, &views);
	/*
	 * Index and constraint names: the old table's get the old name's
	 * suffix, the shadow's lose theirs (their statements run after the
	 * tables' renames, so the shadow goes by the table's name there).
	 */
	names = db_execf(d, "read the table's index names",
					 "SELECT CASE WHEN k.conname IS NOT NULL "
					 "  THEN pg_catalog.format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', %text, k.conname, k.conname || '_old') "
					 "  ELSE pg_catalog.format('ALTER INDEX %I.%I RENAME TO %I', %text, i.relname, i.relname || '_old') END, "
					 "  CASE WHEN k.conname IS NOT NULL "
					 "  THEN pg_catalog.format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', %text, k.conname || %text, k.conname) "
					 "  ELSE pg_catalog.format('ALTER INDEX %I.%I RENAME TO %I', %text, i.relname || %text, i.relname) END, "
					 "  CASE WHEN k.conname IS NOT NULL "
					 "  THEN EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k2 WHERE k2.conrelid = %text::pg_catalog.regclass "
					 "               AND k2.conname = k.conname || %text) "
					 "  ELSE pg_catalog.to_regclass(pg_catalog.quote_ident(%text) || '.' || pg_catalog.quote_ident(i.relname || %text)) IS NOT NULL END::pg_catalog.text "
					 "FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
					 "LEFT JOIN pg_catalog.pg_constraint k ON k.conindid = x.indexrelid AND k.conrelid = x.indrelid "
					 "WHERE x.indrelid = %text::pg_catalog.regclass "
					 "UNION ALL "
					 "SELECT pg_catalog.format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', %text, k.conname, k.conname || '_old'), "
					 "  NULL, 'false' FROM pg_catalog.pg_constraint k "
					 "WHERE k.conrelid = %text::pg_catalog.regclass AND k.contype IN ('f', 'c')",
					 qtable, m->schema, qtable, PLAN_SHADOW_SUFFIX, m->schema, PLAN_SHADOW_SUFFIX,
					 qshadow, PLAN_SHADOW_SUFFIX, m->schema, PLAN_SHADOW_SUFFIX, qtable,
					 qtable, qtable);
	if (deps == NULL || views == NULL || names == NULL)
		goto cleanup;

	for (int i = 0; i < PQntuples(names); i++)
		if (!db_exec(d, "rename the old table's indexes", PQgetvalue(names, i, 0)))
			goto cleanup;
	buf_appendf(&sql, "ALTER TABLE %s RENAME TO ", qtable);
	ident_quote(&sql, old);
	if (!db_exec(d, "rename the table", sql.data))
		goto cleanup;
	buf_reset(&sql);
	buf_appendf(&sql, "ALTER TABLE %s RENAME TO ", qshadow);
	ident_quote(&sql, m->table);
	if (!db_exec(d, "rename the shadow", sql.data))
		goto cleanup;
	for (int i = 0; i < PQntuples(names); i++)
		if (!PQgetisnull(names, i, 1) && PQgetvalue(names, i, 2)[0] == 't' &&
			!db_exec(d, "rename the new table's indexes", PQgetvalue(names, i, 1)))
			goto cleanup;
	if (!cutover_carry_dependents(d, deps, views) || !partition_sync_identity(d, qtable) ||
		!cutover_partition_keys(d, qtable, qold, busy) ||
		!cutover_read_clock(d, swapped_at))
		goto cleanup;
	if (o->rehearse && o->revert_window_s > 0)
	{
		/* The way back, rehearsed on the swapped catalogs before both roll back. */
		if (!revert_swap_back(d, m, old, NULL, busy))
			goto cleanup;
		log_info("rehearsal: the swap back ran too");
	}
	if (o->rehearse)
	{
		log_info("rehearsal: the swap ran; rolling it back");
		db_exec(d, "roll back the rehearsal", "ROLLBACK");
		ok = true;
		goto cleanup;
	}
	fault_point("rename");
	/* The phase commits with the swap: a crash after it knows the swap happened. */
	ok = state_set_phase(d, m, STATE_DONE, LSN_INVALID) &&
		revert_record_swap(d, m, old, o->revert_window_s) &&
		db_exec(d, "commit the swap", "COMMIT");

cleanup:
	if (!ok)
		cutover_release(d);
	if (*busy)
		cutover_cancel_autovacuum(d, m, qtable);
	PQclear(deps);
	PQclear(views);
	PQclear(names);
	buf_free(&sql);
	free(qtable);
	free(qshadow);
	free(qold);
	return ok;
}

bool
cutover_drop_objects(const char *conninfo, db *d, const char *slot, const char *publication,
					 const char *origin)
{
	stream		s;
	PGresult   *res = NULL;
	bool		exists = false, active = false;
	bool		ok = false;
	buf			sql;

	memset(&s, 0, sizeof(s));
	buf_init(&sql);
	if (slot != NULL &&
		(!state_named_slot_active(d, slot, &exists, &active) ||
		 (exists && (!stream_connect(&s, conninfo) || !stream_drop_slot(&s, slot)))))
		goto cleanup;
	buf_append(&sql, "DROP PUBLICATION IF EXISTS ");
	ident_quote(&sql, publication);
	if (!db_exec(d, "drop the publication", sql.data))
		goto cleanup;
	if (origin == NULL)
	{
		ok = true;
		goto cleanup;
	}
	/* As the slot's: the backend of a run that just ended may hold it a moment longer. */
	res = db_exec_when_free(d->conn, d->label, "drop the replication origin",
							"SELECT pg_catalog.pg_replication_origin_drop(roname) "
							"FROM pg_catalog.pg_replication_origin WHERE roname = $1",
							1, &origin, PGRES_TUPLES_OK, d->sqlstate);
	ok = res != NULL;

cleanup:
	PQclear(res);
	stream_close(&s);
	buf_free(&sql);
	return ok;
}

/*
 * Drop the migration's slot (if any), publication and replication origin;
 * of a migration copied from elsewhere only the publication, a copy of this
 * database's own: the slot and origin with its names are the original's.
 */
static bool
cutover_drop_replication(const char *conninfo, db *d, const state_migration *m)
{
	bool		here = m->home == STATE_HOME_HERE;

	return cutover_drop_objects(conninfo, d, here ? m->slot : NULL, m->publication,
								here ? m->origin : NULL);
}

/*
 * step in its own transaction under the cutover's lock timeout, tried again
 * while a lock it needs is busy: it must never make writers queue behind
 * it for longer than the timeout.
 */
typedef bool (*cutover_step) (db *d, const void *arg, bool *busy);

static bool
cutover_bounded(db *d, const state_migration *m, const cutover_options *o, const char *what,
				cutover_step step, const void *arg)
{
	char	   *qtable = ident_qualified(m->schema, m->table);
	bool		ok = false;
	char		timeout[64];

	snprintf(timeout, sizeof(timeout), "SET LOCAL lock_timeout = '%dms'", o->lock_timeout_ms);
	for (int attempt = 1; attempt <= o->retries; attempt++)
	{
		bool		busy = false;

		if (!db_exec(d, "start a bounded statement", "BEGIN") ||
			!db_exec(d, "set the lock timeout", timeout))
			goto cleanup;
		if (step(d, arg, &busy))
		{
			ok = db_exec(d, "commit", "COMMIT");
			goto cleanup;
		}
		db_exec(d, "roll back", "ROLLBACK");
		if (!busy)
			goto cleanup;
		cutover_cancel_autovacuum(d, m, qtable);
		usleep((useconds_t) (50000 + rand() % 200000));
	}
	log_error("could not %s in %d attempts of %d ms", what, o->retries, o->lock_timeout_ms);
	log_hint("Sessions kept a table it needs locked; run the same pgrepart run command again to "
			 "finish, or raise --lock-timeout or --cutover-retries.");

cleanup:
	free(qtable);
	return ok;
}

/* A cutover_step: one statement, arg. */
static bool
cutover_step_statement(db *d, const void *arg, bool *busy)
{
	return cutover_exec_or_busy(d, "add a foreign key to the new table", arg, busy);
}

/* A cutover_step: the partitions' keys; arg is {qtable, qold}. */
static bool
cutover_step_partition_keys(db *d, const void *arg, bool *busy)
{
	const char *const *names = arg;

	return cutover_partition_keys(d, names[0], names[1], busy);
}

/*
 * The old table's foreign keys on the new one, without a write stall: each
 * partition has them NOT VALID since the swap (a partition created since
 * gets them now); validating a partition's takes SHARE UPDATE EXCLUSIVE,
 * so writers go on; then the table's key, with the same definition, adopts
 * the validated ones without a scan, in milliseconds, under the bounded
 * lock.  A key that was NOT VALID on the original stays NOT VALID on each
 * partition (PostgreSQL 15 cannot add a NOT VALID key to a partitioned
 * table), still enforced for new rows.
 */
static bool
cutover_attach_keys(db *d, const state_migration *m, const char *qtable, const char *qold,
					const cutover_options *o)
{
	const char *names[2] = {qtable, qold};
	PGresult   *res = NULL;
	bool		ok = false;

	/* Partitions created since the swap get the keys too. */
	if (!cutover_bounded(d, m, o, "add the foreign keys to new partitions",
						 cutover_step_partition_keys, names))
		return false;
	res = db_execf(d, "read the partitions' keys to validate",
				   "SELECT pg_catalog.format('ALTER TABLE %s VALIDATE CONSTRAINT %I', c.oid::pg_catalog.regclass, n.conname) "
				   "FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid "
				   "JOIN pg_catalog.pg_constraint n ON n.conrelid = c.oid AND n.contype = 'f' AND NOT n.convalidated "
				   "JOIN pg_catalog.pg_constraint k ON k.conrelid = %text::pg_catalog.regclass AND k.contype = 'f' "
				   "  AND k.convalidated AND pg_catalog.regexp_replace(k.conname, '_old$', '') = n.conname "
				   "WHERE h.inhparent = %text::pg_catalog.regclass ORDER BY 1", qold, qtable);
	if (res != NULL && PQntuples(res) > 0)
		log_info("validating %d foreign key(s) of the partitions, writers going on", PQntuples(res));
	for (int i = 0; res != NULL && i < PQntuples(res); i++)
	{
		log_debug("%s", PQgetvalue(res, i, 0));
		if (!db_exec(d, "validate a partition's foreign key", PQgetvalue(res, i, 0)))
		{
			log_hint("The partition's key stays NOT VALID and checks every new row. Correct or "
					 "remove the row named above, then run the same pgrepart run command again "
					 "to finish.");
			goto cleanup;
		}
	}
	PQclear(res);
	res = db_execf(d, "read the foreign keys",
				   "SELECT pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s', %text, "
				   "  pg_catalog.regexp_replace(k.conname, '_old$', ''), pg_catalog.pg_get_constraintdef(k.oid)), "
				   "  k.convalidated "
				   "FROM pg_catalog.pg_constraint k WHERE k.conrelid = %text::pg_catalog.regclass "
				   "  AND k.contype = 'f' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint n "
				   "    WHERE n.conrelid = %text::pg_catalog.regclass AND n.contype = 'f' "
				   "      AND n.conname = pg_catalog.regexp_replace(k.conname, '_old$', '')) "
				   "ORDER BY 1", qtable, qold, qtable);
	for (int i = 0; res != NULL && i < PQntuples(res); i++)
	{
		PGbool		validated = 0;

		if (!db_getf(res, i, "%bool", 1, &validated))
			goto cleanup;
		if (!validated)
		{
			log_warning("a foreign key was NOT VALID on the original, so each partition has it NOT "
						"VALID, checking new rows, and the table does not: %s", PQgetvalue(res, i, 0));
			log_hint("Once the rows comply, VALIDATE CONSTRAINT on each partition, then add the key "
					 "to the table with the same definition (it adopts the partitions' at once).");
			continue;
		}
		log_info("adding a foreign key, adopting the partitions': %s", PQgetvalue(res, i, 0));
		if (!cutover_bounded(d, m, o, "add a foreign key to the new table", cutover_step_statement,
							 PQgetvalue(res, i, 0)))
			goto cleanup;
	}
	ok = res != NULL;

cleanup:
	PQclear(res);
	return ok;
}

bool
cutover_finish(const char *conninfo, db *d, const state_migration *m, const cutover_options *o)
{
	char		old[IDENT_MAX_BYTES + 1];
	char	   *qtable = ident_qualified(m->schema, m->table);
	char	   *qold;
	PGresult   *res = NULL;
	bool		ok = false;

	cutover_old_name(m, o, d->encoding, old);
	qold = ident_qualified(m->schema, old);
	fault_point("cleanup");

	if (!cutover_attach_keys(d, m, qtable, qold, o))
		goto cleanup;
	/*
	 * The copy's chunk records have served their purpose; the migration row
	 * and its verifications stay, as the record of what was done.
	 */
	if (!cutover_drop_replication(conninfo, d, m) || !state_drop_chunks(d, m))
		goto cleanup;
	log_info("\"%s.%s\" is partitioned; the original table is \"%s.%s\"; the slot, publication "
			 "and origin are dropped", m->schema, m->table, m->schema, old);
	ok = true;

cleanup:
	PQclear(res);
	free(qtable);
	free(qold);
	return ok;
}

bool
cutover_request(const char *conninfo, const char *schema, const char *table)
{
	db			d = {0};
	catalog_table *t = NULL;
	state_migration *m = NULL;
	int64_t		away_since = 0;
	bool		ok = false;

	if (!state_open(&d, conninfo, schema, table, &t, &m) || (m != NULL && !state_check_home(&d, m)))
		goto cleanup;
	if (m != NULL && m->phase == STATE_DONE)
	{
		log_info("\"%s.%s\" is already cut over", t->schema, t->name);
		ok = true;
		goto cleanup;
	}
	if (m == NULL || (m->phase != STATE_STREAMING && m->phase != STATE_SYNCED))
	{
		log_error("table \"%s.%s\" has no migration streaming changes", t->schema, t->name);
		log_hint("Start one with \"pgrepart run --cutover=manual\"; this command asks it to swap.");
		goto cleanup;
	}
	if (!state_request_cutover(&d, m))
		goto cleanup;
	log_info("asked the run to cut over \"%s.%s\" once it is in sync; waiting", t->schema, t->name);
	for (;;)
	{
		state_migration *now = NULL;
		bool		gone;

		usleep(200000);
		if (!state_find(&d, m->schema, m->table, &now))
			goto cleanup;
		if (now == NULL || now->phase == STATE_DONE)
		{
			state_migration_free(now);
			break;
		}
		state_migration_free(now);
		if (!state_run_gone(&d, m, &away_since, &gone))
			goto cleanup;
		if (gone)
		{
			log_error("no run streamed the migration of \"%s.%s\" for 60 s", m->schema, m->table);
			log_hint("The request stands: the next \"pgrepart run\" cuts over when in sync.");
			goto cleanup;
		}
	}
	log_info("\"%s.%s\" is cut over", m->schema, m->table);
	ok = true;

cleanup:
	state_migration_free(m);
	catalog_table_free(t);
	db_close(&d);
	return ok;
}

/*
 * The last migration gone, schema pgrepart goes too, tables and all; a
 * schema holding anything else, or one this role may not drop (another
 * role's), stays as it is.  In the caller's transaction, under the lock
 * that state_ensure takes, so no run records a migration meanwhile.
 */
static bool
cutover_drop_empty_state(db *d)
{
	PGresult   *res = db_execf(d, "look for other migrations",
							   "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgrepart.state_ensure')), "
							   "  NOT EXISTS (SELECT 1 FROM pgrepart.migration), "
							   "  (SELECT n.nspowner = r.oid FROM pg_catalog.pg_namespace n, pg_catalog.pg_roles r "
							   "   WHERE n.nspname = 'pgrepart' AND r.rolname = CURRENT_USER)");
	PGbool		none = 0, owner = 0;
	bool		drop;

	if (res == NULL)
		return false;
	if (!db_getf(res, 0, "%bool %bool", 1, &none, 2, &owner))
	{
		PQclear(res);
		return false;
	}
	PQclear(res);
	drop = none && owner;
	if (!drop)
		return true;
	if (!db_exec(d, "keep the state's place", "SAVEPOINT empty_state"))
		return false;
	/* Not db_exec: a failure here is an answer, not an error to log. */
	res = PQexec(d->conn, "DROP TABLE pgrepart.built, pgrepart.ghost, pgrepart.spool, pgrepart.chunk, "
				 "pgrepart.verification, pgrepart.statement, pgrepart.migration; "
				 "DROP SCHEMA pgrepart");
	drop = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	if (drop)
		log_debug("removed schema pgrepart: no migration uses it");
	else if (!db_exec(d, "keep schema pgrepart", "ROLLBACK TO SAVEPOINT empty_state"))
		return false;
	return true;
}

int
cutover_abort(const char *conninfo, const char *schema, const char *table)
{
	db			d = {0};
	catalog_table *t = NULL;
	state_migration *m = NULL;
	PGresult   *res = NULL;
	buf			sql;
	bool		exists = false, active = false;
	int			rc = -1;

	buf_init(&sql);
	if (!state_open(&d, conninfo, schema, table, &t, &m))
		goto cleanup;
	if (m == NULL)
	{
		log_error("table \"%s.%s\" has no migration to abort", t->schema, t->name);
		rc = 6;
		goto cleanup;
	}
	if (m->phase == STATE_DONE)
	{
		log_error("the migration of \"%s.%s\" is done: the table is already swapped",
				  t->schema, t->name);
		log_hint("The original table is kept under its old name (\"%s_old\" unless --old-name "
				 "said otherwise); drop it once you no longer need it, or swap back by renaming.",
				 m->table);
		goto cleanup;
	}
	if (m->home == STATE_HOME_CLUSTER)
		log_info("the migration of \"%s.%s\" was copied from another server: its slot and "
				 "origin are left alone", t->schema, t->name);
	else if (m->home == STATE_HOME_DATABASE)
		log_info("the migration of \"%s.%s\" was copied from database \"%s\": its slot and "
				 "origin, which are that database's, are left alone", t->schema, t->name,
				 m->home_database ? m->home_database : "(dropped)");
	else if (!state_slot_active(&d, m, &exists, &active))
		goto cleanup;
	/* The walsender of a run stopped or killed a moment ago may not have gone yet. */
	for (int waited = 0; active && waited < DB_IN_USE_WAIT_MS; waited += 50)
	{
		usleep(50 * 1000);
		if (!state_slot_active(&d, m, &exists, &active))
			goto cleanup;
	}
	if (active)
	{
		log_error("a pgrepart run is streaming the migration of \"%s.%s\"", t->schema, t->name);
		log_hint("Stop it first (Ctrl-C or SIGTERM), then abort.");
		goto cleanup;
	}
	/* A reverse stream prepared for a swap that never came goes too. */
	if (!cutover_drop_replication(conninfo, &d, m) ||
		(m->home == STATE_HOME_HERE && !revert_drop(conninfo, &d, m)))
		goto cleanup;
	buf_append(&sql, "DROP TABLE IF EXISTS ");
	ident_quote_qualified(&sql, m->schema, m->shadow);
	if (!db_exec(&d, "start the abort", "BEGIN") ||
		!db_exec(&d, "drop the shadow", sql.data) || !reconcile_drop(&d, m))
		goto rollback;
	res = db_execf(&d, "forget the migration", "DELETE FROM pgrepart.migration WHERE id = %int4",
				   m->id);
	if (res == NULL || !cutover_drop_empty_state(&d) || !db_exec(&d, "commit the abort", "COMMIT"))
		goto rollback;
	log_info("aborted the migration of \"%s.%s\": %s, shadow and state removed; the table is "
			 "untouched", t->schema, t->name,
			 m->home == STATE_HOME_HERE ? "slot, publication, origin" : "publication");
	rc = 0;
	goto cleanup;

rollback:
	db_exec(&d, "roll back the abort", "ROLLBACK");
cleanup:
	PQclear(res);
	buf_free(&sql);
	state_migration_free(m);
	catalog_table_free(t);
	db_close(&d);
	return rc < 0 ? 1 : rc;
}
