/* db.c: one PostgreSQL connection; see db.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpqtypes.h>

#include "pgrepart/db.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/sqlstate.h"

/* Whether a conninfo is a URI rather than keyword = value pairs. */
static bool
db_is_uri(const char *s)
{
	return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

/*
 * Log libpq's connection error: its first line as the primary message, the
 * rest (libpq's "Is the server running ..." lines) as detail.  A conninfo
 * libpq cannot parse is quoted back in its message, password and all
 * ("invalid percent-encoded token"): then the message is the one the same
 * conninfo gives with its password masked, which says the same of any other
 * part, or a message of pgrepart's when the password itself was the fault.
 */
void
db_log_connect_error(const char *label, const char *conninfo, const char *message)
{
	char	   *masked = NULL;
	char	   *parse_error = NULL;
	PQconninfoOption *options = NULL;
	const char *newline;
	int			first_len;

	/* A bare database name is no connection string to libpq either. */
	if (conninfo != NULL && (strchr(conninfo, '=') != NULL || db_is_uri(conninfo)) &&
		(options = PQconninfoParse(conninfo, &parse_error)) == NULL)
	{
		PQfreemem(parse_error);
		parse_error = NULL;
		masked = xstrdup(conninfo);
		db_mask_password(masked);
		options = PQconninfoParse(masked, &parse_error);
		message = options == NULL && parse_error != NULL ? parse_error :
			"the password in the connection string is not valid (a URI needs %XX escapes "
			"for special characters)\n";
	}
	newline = strchr(message, '\n');
	first_len = newline ? (int) (newline - message) : (int) strlen(message);
	log_error("could not connect to the %s database: %.*s", label, first_len, message);
	if (newline != NULL && newline[1] != '\0')
	{
		const char *rest = newline + 1;

		while (*rest == '\t' || *rest == ' ')
			rest++;
		log_detail("%s", rest);
	}
	log_hint("Check -d/--dbname (a conninfo string or URI) and the PG* environment "
			 "variables (PGHOST, PGPORT, PGUSER, PGDATABASE).");
	PQconninfoFree(options);
	PQfreemem(parse_error);
	free(masked);
}

void
db_log_error(PGconn *conn, const char *label, const char *what, const PGresult *res,
			 char *sqlstate)
{
	const char *primary = NULL;
	const char *state = NULL;
	const char *detail = NULL;
	const char *hint = NULL;

	if (res != NULL)
	{
		primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
		hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	}
	if (primary == NULL)
	{
		/* No server message: the connection broke, or libpqtypes refused. */
		primary = PQstatus(conn) == CONNECTION_BAD ? PQerrorMessage(conn) : PQgeterror();
		if (primary == NULL || primary[0] == '\0')
			primary = PQerrorMessage(conn);
		if (state == NULL && PQstatus(conn) == CONNECTION_BAD)
			state = ERRCODE_CONNECTION_FAILURE;
	}
	snprintf(sqlstate, 6, "%s", state ? state : ERRCODE_INTERNAL_ERROR);
	log_error("could not %s on the %s database: %s (SQLSTATE %s)", what, label, primary, sqlstate);
	if (detail != NULL)
		log_detail("%s", detail);
	if (hint != NULL)
		log_hint("%s", hint);
	/* The server's hint, if any, says what ran out; this says what it means for the run. */
	if (strcmp(sqlstate, ERRCODE_DISK_FULL) == 0)
		log_hint("The server's disk is full. What pgrepart wrote so far is kept and the table is "
				 "untouched: free space (or remove the migration with pgrepart abort), then run "
				 "the same command again.");
	else if (SQLSTATE_IN_CLASS(sqlstate, SQLSTATE_CLASS_RESOURCES))
		log_hint("The server ran out of a resource; the table is untouched. Fix it, then run the "
				 "same command again.");
}

static void
db_log_result_error(db *d, const char *what, const PGresult *res)
{
	db_log_error(d->conn, d->label, what, res, d->sqlstate);
}

/*
 * Keywords that need quoting, once per process: the server's own list, so
 * quoting matches the server it talks to.  A run opens several connections
 * to one server; the list is read again only from a server of another
 * version.
 */
static bool
db_load_keywords(db *d)
{
	static int	loaded_version = 0;
	PGresult   *res;
	const char **words;
	int			n;

	if (d->server_version == loaded_version && ident_keywords_loaded())
		return true;
	res = db_execf(d, "read the keyword list",
				   "SELECT word FROM pg_catalog.pg_get_keywords() WHERE catcode <> 'U'");
	if (res == NULL)
		return false;
	n = PQntuples(res);
	words = xcalloc((size_t) n + 1, sizeof(char *));
	for (int i = 0; i < n; i++)
		words[i] = PQgetvalue(res, i, 0);
	ident_set_keywords(words, n);
	loaded_version = d->server_version;
	free(words);
	PQclear(res);
	return true;
}

bool
db_connect(db *d, const char *conninfo, const char *label)
{
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *values[] = {conninfo, "pgrepart", NULL};
	PGresult   *res = NULL;
	bool		ok = false;

	memset(d, 0, sizeof(*d));
	d->label = label;
	d->conn = PQconnectdbParams(keys, values, 1);
	if (d->conn == NULL || PQstatus(d->conn) != CONNECTION_OK)
	{
		db_log_connect_error(label, conninfo, d->conn ? PQerrorMessage(d->conn) : "out of memory");
		strcpy(d->sqlstate, ERRCODE_CANNOT_CONNECT);
		goto cleanup;
	}
	if (!PQinitTypes(d->conn))
	{
		log_error("could not initialise libpqtypes on the %s connection: %s",
				  label, PQgeterror());
		goto cleanup;
	}
	d->server_version = PQserverVersion(d->conn);
	d->encoding = PQclientEncoding(d->conn);

	/*
	 * Keep what the role would search, then search nothing implicitly.  Dates
	 * print as ISO so the literals pgrepart writes into DDL read the same
	 * under any DateStyle.  Timeouts set for the role or the database would
	 * cancel a copy or an index build halfway, or end the apply's open
	 * batch while the stream is quiet; pgrepart bounds its own waits (the
	 * cutover's lock_timeout), as pg_dump does.  Row security off: a read a
	 * policy would filter fails instead of hiding rows, so a copy or a
	 * comparison can never see less than the whole table.  Transactions
	 * are read committed unless they say otherwise (the copy's and the
	 * comparisons' do), which is what pgrepart's are written for, whatever
	 * default the database sets: a transaction that waits on its other
	 * sessions, as the cutover's does while the apply drains, must see
	 * their commits.
	 */
	res = db_execf(d, "prepare the session",
				   "SELECT pg_catalog.current_schemas(false)::pg_catalog.text, "
				   "pg_catalog.set_config('search_path', '', false), "
				   "pg_catalog.set_config('datestyle', 'ISO, YMD', false), "
				   "pg_catalog.set_config('intervalstyle', 'postgres', false), "
				   "pg_catalog.set_config('statement_timeout', '0', false), "
				   "pg_catalog.set_config('lock_timeout', '0', false), "
				   "pg_catalog.set_config('idle_in_transaction_session_timeout', '0', false), "
				   "pg_catalog.set_config('row_security', 'off', false), "
				   "pg_catalog.set_config('default_transaction_isolation', 'read committed', false)");
	if (res == NULL)
		goto cleanup;
	d->search_path = xstrdup(PQgetvalue(res, 0, 0));
	log_debug("connected to the %s database \"%s\" as \"%s\" (PostgreSQL %d.%d)", label,
			  PQdb(d->conn), PQuser(d->conn), d->server_version / 10000,
			  d->server_version % 10000);
	if (!db_load_keywords(d))
		goto cleanup;
	ok = true;

cleanup:
	PQclear(res);
	if (!ok)
	{
		PQfinish(d->conn);
		d->conn = NULL;
	}
	return ok;
}

void
db_close(db *d)
{
	if (d == NULL)
		return;
	if (d->conn != NULL)
	{
		PQclearTypes(d->conn);
		PQfinish(d->conn);
	}
	d->conn = NULL;
	free(d->search_path);
	d->search_path = NULL;
}

PGresult *
db_execf(db *d, const char *what, const char *spec,...)
{
	va_list		ap;
	int			sent;
	PGresult   *res = NULL;
	PGresult   *next;

	/*
	 * Send with libpqtypes but collect with libpq: PQexecf would replace a
	 * server error with a bare message, losing its SQLSTATE, detail and hint.
	 */
	va_start(ap, spec);
	sent = PQsendvf(d->conn, spec, ap);
	va_end(ap);
	if (!sent)
	{
		db_log_result_error(d, what, NULL);
		return NULL;
	}
	/* Keep the first failed result, else the last one. */
	while ((next = PQgetResult(d->conn)) != NULL)
	{
		if (res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR)
			PQclear(next);
		else
		{
			PQclear(res);
			res = next;
		}
	}
	if (res != NULL && (PQresultStatus(res) == PGRES_COMMAND_OK ||
						PQresultStatus(res) == PGRES_TUPLES_OK))
	{
		d->sqlstate[0] = '\0';
		return res;
	}
	db_log_result_error(d, what, res);
	PQclear(res);
	return NULL;
}

bool
db_exec(db *d, const char *what, const char *sql)
{
	PGresult   *res = PQexec(d->conn, sql);
	ExecStatusType status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	bool		ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;

	if (ok)
		d->sqlstate[0] = '\0';
	else
		db_log_result_error(d, what, res);
	PQclear(res);
	return ok;
}

void
db_rollback(db *d, const char *what)
{
	if (PQtransactionStatus(d->conn) != PQTRANS_IDLE)
		db_exec(d, what, "ROLLBACK");
}

/* How often a held origin or slot is tried again: its holder is on its way out. */
#define IN_USE_RETRY_MS 20

PGresult *
db_exec_when_free(PGconn *conn, const char *label, const char *what, const char *sql,
				  int nparams, const char *const *values, ExecStatusType expect, char *sqlstate)
{
	bool		told = false;
	PGresult   *res;

	for (int waited = 0;; waited += IN_USE_RETRY_MS)
	{
		const char *state;

		res = nparams == 0 ? PQexec(conn, sql) :
			PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (state == NULL || strcmp(state, ERRCODE_OBJECT_IN_USE) != 0 || waited >= DB_IN_USE_WAIT_MS)
			break;
		/* Said once, and only for a wait someone might notice. */
		if (!told && waited >= 1000)
		{
			log_info("%s; waiting up to %d s for it to be released",
					 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY), DB_IN_USE_WAIT_MS / 1000);
			told = true;
		}
		PQclear(res);
		usleep(IN_USE_RETRY_MS * 1000);
	}
	if (PQresultStatus(res) == expect)
	{
		sqlstate[0] = '\0';
		return res;
	}
	db_log_error(conn, label, what, res, sqlstate);
	PQclear(res);
	return NULL;
}

bool
db_getf(const PGresult *res, int row, const char *spec,...)
{
	va_list		ap;
	int			ok;

	va_start(ap, spec);
	ok = PQgetvf(res, row, spec, ap);
	va_end(ap);
	if (!ok)
		log_error("could not read a result row (\"%s\"): %s", spec, PQgeterror());
	return ok != 0;
}

bool
db_lost_connection(const db *d)
{
	return SQLSTATE_IN_CLASS(d->sqlstate, SQLSTATE_CLASS_CONNECTION) ||
		(d->conn != NULL && PQstatus(d->conn) == CONNECTION_BAD);
}

static void
db_mask_span(char *from, const char *to)
{
	for (; from < to; from++)
		*from = 'x';
}

/* The password of a URI: in the authority's user:password@, or a query parameter. */
static void
db_mask_uri(char *s)
{
	char	   *authority = strstr(s, "://") + 3;
	size_t		authority_len = strcspn(authority, "/?");
	char	   *at = NULL;
	char	   *query = strchr(authority, '?');

	for (size_t i = 0; i < authority_len; i++)
		if (authority[i] == '@')
			at = authority + i;
	if (at != NULL)
	{
		char	   *colon = memchr(authority, ':', (size_t) (at - authority));

		if (colon != NULL)
			db_mask_span(colon + 1, at);
	}
	for (char *p = query; p != NULL; p = strchr(p + 1, '&'))
	{
		char	   *param = p + 1;

		if (strncmp(param, "password=", 9) == 0)
			db_mask_span(param + 9, param + strcspn(param, "&"));
	}
}

void
db_mask_password(char *s)
{
	char	   *p = s;

	if (db_is_uri(s))
	{
		db_mask_uri(s);
		return;
	}
	/* keyword = value pairs; a value is bare or in single quotes with backslash escapes */
	while (*p != '\0')
	{
		const char *keyword;
		size_t		keyword_len;
		char	   *value;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		keyword = p;
		while (*p != '\0' && *p != '=' && *p != ' ' && *p != '\t' && *p != '\n')
			p++;
		keyword_len = (size_t) (p - keyword);
		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (*p != '=')
			return;				/* not a conninfo string: libpq will say so */
		p++;
		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		value = p;
		if (*p == '\'')
		{
			for (p++; *p != '\0' && *p != '\''; p++)
				if (*p == '\\' && p[1] != '\0')
					p++;
			if (keyword_len == 8 && strncmp(keyword, "password", 8) == 0)
				db_mask_span(value + 1, p);
			if (*p == '\'')
				p++;
		}
		else
		{
			while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\n')
				p++;
			if (keyword_len == 8 && strncmp(keyword, "password", 8) == 0)
				db_mask_span(value, p);
		}
	}
}

bool
db_exec_bool(db *d, const char *what, const char *sql, bool *value)
{
	PGresult   *res = db_execf(d, what, sql);
	PGbool		v = 0;
	bool		ok = res != NULL && db_getf(res, 0, "%bool", 0, &v);

	PQclear(res);
	*value = ok && v;
	return ok;
}
