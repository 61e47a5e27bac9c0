/* reconcile.c: the keys a copy in physical order cannot vouch for; see reconcile.h. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "pgrepart/backfill_filter.h"
#include "pgrepart/copybin.h"
#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/pgout.h"
#include "pgrepart/reconcile.h"
#include "pgrepart/wire.h"

/* Rows per COPY into the table: each its own short transaction. */
#define RECONCILE_COPY_ROWS 100000

/* The scan of the spool: each change of a transaction some chunks see, as a row of the table. */
typedef struct reconcile_scan
{
	backfill_filter *filter;	/* which chunks see a transaction */
	lsn_t		retire;			/* no chunk sees a transaction committed after it */
	const catalog_table *t;
	db			target;			/* loads the table */
	const char *copy_sql;
	bool		copying;
	pgout_decoder dec;
	int		   *key_pos;		/* each key column's place in the relation */
	bool		some;			/* the transaction being read is seen by some chunks */
	lsn_t		commit;
	int32_t		ord;			/* the next change's number in it */
	buf			rows;
	int64_t		nrows;			/* in the COPY open */
	int64_t		keys;			/* in all */
	bool		past;			/* reached a transaction after retire: done */
} reconcile_scan;

void
reconcile_table(buf *out, const state_migration *m)
{
	char		name[32];

	snprintf(name, sizeof(name), "reconcile_%d", m->id);
	ident_quote_qualified(out, "pgrepart", name);
}

void
reconcile_key_list(buf *out, const catalog_table *t, const char *prefix)
{
	for (int k = 0; k < t->nkey_columns; k++)
	{
		buf_appendf(out, "%s%s", k > 0 ? ", " : "", prefix);
		ident_quote(out, t->key_columns[k]);
	}
}

static bool
reconcile_copy_flush(reconcile_scan *sc, bool end)
{
	PGresult   *res;

	if (sc->rows.len > 0 &&
		PQputCopyData(sc->target.conn, sc->rows.data, (int) sc->rows.len) != 1)
	{
		db_log_error(sc->target.conn, "target", "record the keys to reconcile", NULL,
					 sc->target.sqlstate);
		return false;
	}
	buf_reset(&sc->rows);
	if (!end)
		return true;
	sc->copying = false;
	sc->nrows = 0;
	if (PQputCopyEnd(sc->target.conn, NULL) != 1)
	{
		db_log_error(sc->target.conn, "target", "record the keys to reconcile", NULL,
					 sc->target.sqlstate);
		return false;
	}
	res = PQgetResult(sc->target.conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		db_log_error(sc->target.conn, "target", "record the keys to reconcile", res,
					 sc->target.sqlstate);
		PQclear(res);
		return false;
	}
	PQclear(res);
	while ((res = PQgetResult(sc->target.conn)) != NULL)
		PQclear(res);
	return true;
}

/* One row: the key of tuple tu, the transaction's commit position, the change's number. */
static bool
reconcile_add(reconcile_scan *sc, const pgout_tuple *tu)
{
	for (int k = 0; k < sc->t->nkey_columns; k++)
	{
		int			pos = sc->key_pos[k];

		if (pos < 0 || pos >= tu->ncols || tu->values[pos].kind != 'b')
		{
			log_error("a spooled change carries no binary value of key column \"%s\"",
					  sc->t->key_columns[k]);
			return false;
		}
	}
	if (!sc->copying)
	{
		PGresult   *res = PQexec(sc->target.conn, sc->copy_sql);

		if (PQresultStatus(res) != PGRES_COPY_IN)
		{
			db_log_error(sc->target.conn, "target", "record the keys to reconcile", res,
						 sc->target.sqlstate);
			PQclear(res);
			return false;
		}
		PQclear(res);
		copybin_put_header(&sc->rows);
		sc->copying = true;
	}
	copybin_put_row_start(&sc->rows, sc->t->nkey_columns + 2);
	for (int k = 0; k < sc->t->nkey_columns; k++)
	{
		const pgout_value *v = &tu->values[sc->key_pos[k]];

		copybin_put_field(&sc->rows, v->data, v->len);
	}
	wire_put_u32(&sc->rows, 8);
	wire_put_u64(&sc->rows, sc->commit);
	wire_put_u32(&sc->rows, 4);
	wire_put_u32(&sc->rows, (uint32_t) sc->ord);
	sc->nrows++;
	sc->keys++;
	if (sc->nrows >= RECONCILE_COPY_ROWS)
	{
		copybin_put_trailer(&sc->rows);
		return reconcile_copy_flush(sc, true);
	}
	return sc->rows.len < 1048576 || reconcile_copy_flush(sc, false);
}

static bool
reconcile_message(void *arg, const uint8_t *data, size_t len, lsn_t lsn)
{
	reconcile_scan *sc = arg;
	pgout_message msg;

	(void) lsn;
	if (!pgout_decode(&sc->dec, data, len, &msg))
	{
		log_error("%s in the spool", sc->dec.error);
		return false;
	}
	switch (msg.kind)
	{
		case PGOUT_RELATION:
			for (int k = 0; k < sc->t->nkey_columns; k++)
			{
				sc->key_pos[k] = -1;
				for (int i = 0; i < msg.relation.ncols; i++)
					if (strcmp(msg.relation.columns[i].name, sc->t->key_columns[k]) == 0)
						sc->key_pos[k] = i;
			}
			return true;
		case PGOUT_BEGIN:
			if (msg.begin.final_lsn > sc->retire)
			{
				sc->past = true;
				return false;
			}
			sc->some = backfill_filter_seen_by(sc->filter, msg.begin.xid, msg.begin.final_lsn) ==
				FILTER_SEEN_BY_SOME;
			sc->commit = msg.begin.final_lsn;
			sc->ord = 0;
			return true;
		case PGOUT_INSERT:
			/* The chunks that see it may hold the row already. */
			if (sc->some && !reconcile_add(sc, &msg.insert.newtuple))
				return false;
			sc->ord++;
			return true;
		case PGOUT_UPDATE:
			/* The key the row had, and the one it has (the same unless the key changed). */
			if (sc->some &&
				((msg.update.oldkind != '\0' && !reconcile_add(sc, &msg.update.oldtuple)) ||
				 !reconcile_add(sc, &msg.update.newtuple)))
				return false;
			sc->ord++;
			return true;
		case PGOUT_DELETE:
			if (sc->some && !reconcile_add(sc, &msg.delete.oldtuple))
				return false;
			sc->ord++;
			return true;
		default:
			return true;
	}
}

/* Delete the recorded keys from each of the shadow's partitions, a transaction each. */
static bool
reconcile_purge(db *d, const catalog_table *t, const state_migration *m,
				const volatile sig_atomic_t *stop, bool *stopped, int64_t *deleted)
{
	char	   *qshadow = ident_qualified(m->schema, m->shadow);
	PGresult   *res = db_execf(d, "list the shadow's partitions",
							   "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text "
							   "FROM pg_catalog.pg_inherits h "
							   "JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid "
							   "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
							   "WHERE h.inhparent = %text::pg_catalog.regclass ORDER BY 1, 2",
							   qshadow);
	bool		ok = res != NULL;
	buf			sql;

	free(qshadow);
	buf_init(&sql);
	for (int i = 0; ok && i < PQntuples(res); i++)
	{
		PGresult   *del;

		if (stop != NULL && *stop)
		{
			*stopped = true;
			ok = false;
			break;
		}
		buf_reset(&sql);
		buf_append(&sql, "DELETE FROM ONLY ");
		ident_quote_qualified(&sql, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
		buf_append(&sql, " p USING ");
		reconcile_table(&sql, m);
		buf_append(&sql, " r WHERE ");
		for (int k = 0; k < t->nkey_columns; k++)
		{
			buf_append(&sql, k > 0 ? " AND p." : "p.");
			ident_quote(&sql, t->key_columns[k]);
			buf_append(&sql, " = r.");
			ident_quote(&sql, t->key_columns[k]);
		}
		del = PQexec(d->conn, sql.data);
		if (PQresultStatus(del) != PGRES_COMMAND_OK)
		{
			db_log_error(d->conn, "target", "delete the keys to reconcile from the shadow", del,
						 d->sqlstate);
			ok = false;
		}
		else
			*deleted += atol(PQcmdTuples(del));
		PQclear(del);
		if (ok && i == 0)
			fault_point("reconcile");	/* a partition purged, the rest not */
	}
	PQclear(res);
	buf_free(&sql);
	return ok;
}

bool
reconcile_prepare(db *d, const char *conninfo, const catalog_table *t, const state_migration *m,
				  spool *sp, const volatile sig_atomic_t *stop, bool *stopped, bool *truncated,
				  int64_t *changes, int64_t *rows)
{
	reconcile_scan sc;
	spool_reader reader = {reconcile_message, NULL, NULL, &sc};
	bool		ok = false;
	int64_t		deleted = 0;
	lsn_t		end;
	buf			sql, copy;
	char		text[LSN_TEXT_SIZE];

	*stopped = *truncated = false;
	*changes = *rows = 0;
	memset(&sc, 0, sizeof(sc));
	sc.t = t;
	pgout_decoder_init(&sc.dec);
	buf_init(&sc.rows);
	buf_init(&sql);
	buf_init(&copy);
	sc.key_pos = xcalloc((size_t) t->nkey_columns, sizeof(int));
	for (int k = 0; k < t->nkey_columns; k++)
		sc.key_pos[k] = -1;
	if ((sc.filter = backfill_filter_create(d, m, t)) == NULL)
		goto cleanup;
	sc.retire = backfill_filter_retire_lsn(sc.filter);

	/* Every transaction some chunks see committed before the last chunk's position. */
	while (spool_upto(sp) <= sc.retire)
	{
		if (stop != NULL && *stop)
		{
			*stopped = true;
			goto cleanup;
		}
		if (!spool_pump(sp, 100, true, truncated))
			goto cleanup;
		/* Some chunks may have seen it: the caller starts the copy over. */
		if (*truncated)
		{
			ok = true;
			goto cleanup;
		}
	}

	reconcile_table(&sql, m);
	buf_append(&copy, "COPY ");
	buf_append(&copy, sql.data);
	buf_append(&copy, " FROM STDIN (FORMAT binary)");
	sc.copy_sql = copy.data;
	buf_reset(&sql);
	buf_append(&sql, "SET client_min_messages = warning; DROP TABLE IF EXISTS ");
	reconcile_table(&sql, m);
	buf_append(&sql, "; CREATE TABLE ");
	reconcile_table(&sql, m);
	buf_append(&sql, " AS SELECT ");
	reconcile_key_list(&sql, t, "");
	buf_append(&sql, " FROM ONLY ");
	ident_quote_qualified(&sql, m->schema, m->table);
	buf_append(&sql, " WITH NO DATA; ALTER TABLE ");
	reconcile_table(&sql, m);
	buf_append(&sql, " ADD COLUMN commit_lsn pg_catalog.pg_lsn NOT NULL, "
			   "ADD COLUMN ord pg_catalog.int4 NOT NULL");
	if (!db_connect(&sc.target, conninfo, "target") ||
		!db_exec(&sc.target, "create the table of keys to reconcile", sql.data))
		goto cleanup;
	if (!spool_replay(d, m, LSN_INVALID, &reader, &end) && !sc.past)
		goto cleanup;
	if (sc.copying)
	{
		copybin_put_trailer(&sc.rows);
		if (!reconcile_copy_flush(&sc, true))
			goto cleanup;
	}
	buf_reset(&sql);
	buf_append(&sql, "CREATE INDEX ON ");
	reconcile_table(&sql, m);
	buf_append(&sql, " (");
	reconcile_key_list(&sql, t, "");
	buf_append(&sql, ", commit_lsn, ord); ANALYZE ");
	reconcile_table(&sql, m);
	if (!db_exec(&sc.target, "index the keys to reconcile", sql.data) ||
		!reconcile_purge(&sc.target, t, m, stop, stopped, &deleted))
		goto cleanup;
	log_info("%" PRId64 " change(s) of transactions that only some chunks saw (up to %s) are "
			 "reconciled by the apply: %" PRId64 " copied row(s) of their keys removed from "
			 "the shadow", sc.keys, lsn_format(sc.retire, text), deleted);
	*changes = sc.keys;
	*rows = deleted;
	ok = true;

cleanup:
	backfill_filter_free(sc.filter);
	pgout_decoder_free(&sc.dec);
	free(sc.key_pos);
	buf_free(&sc.rows);
	buf_free(&sql);
	buf_free(&copy);
	db_close(&sc.target);
	return ok;
}

bool
reconcile_drop(db *d, const state_migration *m)
{
	buf			sql;
	bool		ok;

	buf_init(&sql);
	buf_append(&sql, "SET LOCAL client_min_messages = warning; DROP TABLE IF EXISTS ");
	reconcile_table(&sql, m);
	ok = db_exec(d, "drop the table of keys to reconcile", sql.data);
	buf_free(&sql);
	return ok;
}
