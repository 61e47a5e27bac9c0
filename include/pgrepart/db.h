/*
 * db.h: one PostgreSQL connection, with failures logged once and their
 * SQLSTATE kept.
 *
 * Connections take a libpq conninfo string or URI (or nothing, for the PG*
 * environment variables, ~/.pgpass and service files, which libpq handles).
 * Right after connecting, search_path is set to '' so that every name in
 * pgrepart's SQL is schema-qualified and user objects cannot shadow
 * pg_catalog; the schemas the role would have searched are kept to resolve an
 * unqualified table name the way the user meant it.
 *
 * Queries go through libpqtypes (PQexecf: values as typed $n parameters,
 * results read with PQgetf).  On failure, db_* functions log one message
 * naming what was being done, with the server's primary message, SQLSTATE,
 * detail and hint, and return NULL/false; d->sqlstate tells callers a lost
 * connection (class 08) from a lock timeout (55P03) from anything else.
 */
#ifndef PGREPART_DB_H
#define PGREPART_DB_H

#include <stdbool.h>

#include <libpq-fe.h>

typedef struct db
{
	PGconn	   *conn;
	const char *label;			/* "source", "target": used in messages */
	char		sqlstate[6];	/* SQLSTATE of the last failure, "" if none */
	int			server_version; /* PQserverVersion, e.g. 150018 */
	int			encoding;		/* client encoding id, for name truncation */
	char	   *search_path;	/* current_schemas(false) as a text[] literal */
} db;

/* Connect; on failure logs and returns false with d->conn == NULL. */
bool		db_connect(db *d, const char *conninfo, const char *label);
/* Close; accepts a db that never connected. */
void		db_close(db *d);

/*
 * Run a libpqtypes command spec (e.g. "SELECT ... WHERE oid = %oid") with its
 * arguments.  Returns the result (caller PQclears) when it succeeded, or NULL
 * after logging "could not <what>: ...".
 */
PGresult   *db_execf(db *d, const char *what, const char *spec,...);

/* Run plain SQL without parameters; false after logging. */
bool		db_exec(db *d, const char *what, const char *sql);

/*
 * Run a query without parameters (a libpqtypes spec: no '%') that returns
 * one boolean into *value; false after logging.
 */
bool		db_exec_bool(db *d, const char *what, const char *sql, bool *value);

/*
 * Roll back the transaction open on d, if one is (after a failure that may
 * have come before BEGIN, or ended it); what names it in a failure's message.
 */
void		db_rollback(db *d, const char *what);

/*
 * Read row's fields with a libpqtypes spec ("%text %int4 ...").  False after
 * logging (a type mismatch between query and code is a bug).
 */
bool		db_getf(const PGresult *res, int row, const char *spec,...);

/*
 * The logging behind the functions above, for connections that are not a
 * db (the replication stream): "could not <what> on the <label> database:
 * <primary> (SQLSTATE x)" with detail and hint; sqlstate (6 bytes) receives
 * the code.  res may be NULL when the connection itself failed.
 */
void		db_log_error(PGconn *conn, const char *label, const char *what,
						 const PGresult *res, char *sqlstate);
void		db_log_connect_error(const char *label, const char *conninfo, const char *message);

/*
 * Run sql (with nparams text parameters; 0 for a replication connection,
 * which speaks only the simple protocol) again while it fails with SQLSTATE
 * 55006, for up to DB_IN_USE_WAIT_MS.  A replication origin or slot stays
 * held by the server process of a client that was just killed until that
 * process notices and exits, a few milliseconds as a rule: taking it at once
 * after a crash would report a competitor that is not there.  A live
 * competitor still holds it at the end.  Returns the result when its status
 * is expect, else NULL after logging as db_log_error does (label, what and
 * sqlstate as there).
 */
#define DB_IN_USE_WAIT_MS 5000
PGresult   *db_exec_when_free(PGconn *conn, const char *label, const char *what,
							  const char *sql, int nparams, const char *const *values,
							  ExecStatusType expect, char *sqlstate);

/*
 * Whether the last failure was a lost or refused connection (class 08), or
 * the server ended the session (a FATAL such as pg_terminate_backend's
 * 57P01 arrives as a result with its own SQLSTATE; the connection is then
 * bad all the same).
 */
bool		db_lost_connection(const db *d);

/*
 * Overwrite, in place and keeping its length, the password a conninfo
 * string ("password=...") or URI ("postgresql://user:secret@host",
 * "?password=...") carries: the command line pgrepart was started with is
 * what ps shows.
 */
void		db_mask_password(char *conninfo);

#endif
