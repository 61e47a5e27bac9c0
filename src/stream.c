/*
 * stream.c: the logical replication connection; see stream.h.
 *
 * The receive loop is a handful of small steps over one struct, after
 * PostgreSQL's receivelog.c: wait for the socket (or the next status
 * update), read a CopyData frame, answer a keepalive that asks for a reply
 * at once, hand XLogData to the caller.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "pgrepart/buf.h"
#include "pgrepart/clock.h"
#include "pgrepart/db.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/sqlstate.h"
#include "pgrepart/stream.h"
#include "pgrepart/wire.h"

#define STREAM_LABEL "replication"

/* Run a replication command; returns its result, or NULL after logging. */
static PGresult *
stream_command(stream *s, const char *what, const char *sql, ExecStatusType expect)
{
	PGresult   *res = PQexec(s->conn, sql);

	if (res != NULL && PQresultStatus(res) == expect)
		return res;
	db_log_error(s->conn, STREAM_LABEL, what, res, s->sqlstate);
	PQclear(res);
	return NULL;
}

/*
 * A slot created with an exported snapshot keeps a transaction open in
 * this session until the snapshot is imported; an
 * idle_in_transaction_session_timeout set for the database or role would
 * end the session, and the snapshot with it, whenever the import comes
 * later than the timeout.  The normal sessions turn it off too (db.c).
 */
static bool
stream_prepare(stream *s)
{
	PGresult   *res = stream_command(s, "prepare the session",
									 "SET idle_in_transaction_session_timeout = 0", PGRES_COMMAND_OK);
	bool		ok = res != NULL;

	PQclear(res);
	if (!ok)
	{
		PQfinish(s->conn);
		s->conn = NULL;
	}
	return ok;
}

bool
stream_connect(stream *s, const char *conninfo)
{
	const char *keys[] = {"dbname", "replication", "fallback_application_name", NULL};
	const char *values[] = {conninfo, "database", "pgrepart", NULL};

	memset(s, 0, sizeof(*s));
	s->status_interval_ms = 10000;
	s->conn = PQconnectdbParams(keys, values, 1);
	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK)
	{
		db_log_connect_error(STREAM_LABEL, conninfo, s->conn ? PQerrorMessage(s->conn) : "out of memory");
		strcpy(s->sqlstate, ERRCODE_CANNOT_CONNECT);
		PQfinish(s->conn);
		s->conn = NULL;
		return false;
	}
	return stream_prepare(s);
}

void
stream_close(stream *s)
{
	if (s == NULL)
		return;
	if (s->copybuf != NULL)
		PQfreemem(s->copybuf);
	s->copybuf = NULL;
	PQfinish(s->conn);
	s->conn = NULL;
}

bool
stream_create_slot(stream *s, const char *slot, bool temporary, bool export,
				   int lock_timeout_ms, lsn_t *consistent_point, char **snapshot)
{
	buf			sql;
	PGresult   *res = NULL;
	bool		ok = false;

	buf_init(&sql);
	/*
	 * Creating a slot waits for every transaction that holds an xid;
	 * lock_timeout bounds that wait (statement_timeout does not).
	 */
	buf_appendf(&sql, "SET lock_timeout = %d", lock_timeout_ms);
	res = stream_command(s, "set lock_timeout", sql.data, PGRES_COMMAND_OK);
	if (res == NULL)
		goto cleanup;
	PQclear(res);

	buf_reset(&sql);
	buf_append(&sql, "CREATE_REPLICATION_SLOT ");
	ident_quote(&sql, slot);
	buf_appendf(&sql, "%s LOGICAL pgoutput (SNAPSHOT '%s')", temporary ? " TEMPORARY" : "",
				export ? "export" : "nothing");
	res = stream_command(s, "create the replication slot", sql.data, PGRES_TUPLES_OK);
	if (res == NULL)
		goto cleanup;
	if (PQntuples(res) != 1 || PQnfields(res) < 3 ||
		!lsn_parse(PQgetvalue(res, 0, 1), consistent_point))
	{
		log_error("unexpected answer to CREATE_REPLICATION_SLOT: %d rows, %d columns",
				  PQntuples(res), PQnfields(res));
		goto cleanup;
	}
	if (snapshot != NULL)
		*snapshot = PQgetisnull(res, 0, 2) ? NULL : xstrdup(PQgetvalue(res, 0, 2));
	ok = true;

cleanup:
	PQclear(res);
	buf_free(&sql);
	return ok;
}

bool
stream_drop_slot(stream *s, const char *slot)
{
	buf			sql;
	PGresult   *res;

	buf_init(&sql);
	buf_append(&sql, "DROP_REPLICATION_SLOT ");
	ident_quote(&sql, slot);
	buf_append(&sql, " WAIT");
	res = stream_command(s, "drop the replication slot", sql.data, PGRES_COMMAND_OK);
	buf_free(&sql);
	PQclear(res);
	return res != NULL;
}

bool
stream_create_fresh_slot(stream *s, db *d, const char *slot, bool export,
						 lsn_t *consistent_point, char **snapshot)
{
	PGresult   *res = db_execf(d, "look up the replication slot",
							   "SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %text",
							   slot);
	bool		exists;

	if (res == NULL)
		return false;
	exists = PQntuples(res) > 0;
	PQclear(res);
	if (exists)
	{
		log_info("dropping replication slot \"%s\" left by an interrupted start", slot);
		if (!stream_drop_slot(s, slot))
			return false;
	}
	log_info("creating replication slot \"%s\" (waits for transactions in progress)", slot);
	return stream_create_slot(s, slot, false, export, 0, consistent_point, snapshot);
}

bool
stream_start(stream *s, const char *slot, const char *publication, lsn_t start)
{
	buf			sql, names;
	char		lsn[LSN_TEXT_SIZE];
	PGresult   *res;

	buf_init(&sql);
	buf_init(&names);
	ident_quote(&names, publication);
	buf_append(&sql, "START_REPLICATION SLOT ");
	ident_quote(&sql, slot);
	buf_appendf(&sql, " LOGICAL %s (proto_version '1', publication_names ", lsn_format(start, lsn));
	ident_literal(&sql, names.data);
	buf_append(&sql, ", binary 'true')");
	res = db_exec_when_free(s->conn, STREAM_LABEL, "start streaming from the replication slot",
							sql.data, 0, NULL, PGRES_COPY_BOTH, s->sqlstate);
	buf_free(&sql);
	buf_free(&names);
	if (res == NULL)
		return false;
	PQclear(res);
	s->received = start;
	if (s->flushed < start)
		s->flushed = start;
	s->next_status_us = clock_monotonic_us() + (int64_t) s->status_interval_ms * 1000;
	return true;
}

void
stream_confirm(stream *s, lsn_t lsn)
{
	if (lsn > s->flushed)
		s->flushed = lsn;
}

bool
stream_send_status(stream *s, bool reply_requested)
{
	buf			msg;
	bool		ok;

	buf_init(&msg);
	wire_put_u8(&msg, 'r');
	wire_put_u64(&msg, s->received > s->flushed ? s->received : s->flushed);
	/* Only what the caller made durable moves the slot. */
	wire_put_u64(&msg, s->flushed);
	wire_put_u64(&msg, s->flushed);
	wire_put_u64(&msg, (uint64_t) clock_pg_now());
	wire_put_u8(&msg, reply_requested ? 1 : 0);
	ok = PQputCopyData(s->conn, msg.data, (int) msg.len) > 0 && PQflush(s->conn) == 0;
	buf_free(&msg);
	if (!ok)
	{
		db_log_error(s->conn, STREAM_LABEL, "send a status update", NULL, s->sqlstate);
		return false;
	}
	s->next_status_us = clock_monotonic_us() + (int64_t) s->status_interval_ms * 1000;
	s->reported = s->flushed;
	return true;
}

/* Wait for the socket until deadline_us (monotonic); false on a select error. */
static bool
stream_wait(stream *s, int64_t deadline_us)
{
	int			sock = PQsocket(s->conn);
	int64_t		wait_us = deadline_us - clock_monotonic_us();
	fd_set		readable;
	struct timeval tv;
	int			r;

	if (wait_us <= 0)
		return true;
	FD_ZERO(&readable);
	FD_SET(sock, &readable);
	tv.tv_sec = (time_t) (wait_us / 1000000);
	tv.tv_usec = (suseconds_t) (wait_us % 1000000);
	r = select(sock + 1, &readable, NULL, NULL, &tv);
	if (r < 0 && errno != EINTR)
	{
		log_error("could not wait for the replication connection: %s", strerror(errno));
		strcpy(s->sqlstate, ERRCODE_SYSTEM_ERROR);
		return false;
	}
	if (r > 0 && !PQconsumeInput(s->conn))
	{
		db_log_error(s->conn, STREAM_LABEL, "receive from the replication stream", NULL,
					 s->sqlstate);
		return false;
	}
	return true;
}

/* A keepalive: note the server's position, and reply at once if asked. */
static bool
stream_keepalive(stream *s, wire_reader *r, bool *reply_requested)
{
	lsn_t		end = wire_u64(r);
	int64_t		time = (int64_t) wire_u64(r);
	bool		reply = wire_u8(r) != 0;

	if (r->failed)
	{
		log_error("malformed keepalive message: %s at offset %zu", r->error, r->error_pos);
		strcpy(s->sqlstate, ERRCODE_PROTOCOL_VIOLATION);
		return false;
	}
	if (end > s->server_end)
		s->server_end = end;
	s->server_time = time;
	*reply_requested = reply;
	return reply ? stream_send_status(s, false) : true;
}

/* The end of the COPY: the server stopped streaming, or the connection failed. */
static stream_result
stream_end(stream *s)
{
	PGresult   *res = PQgetResult(s->conn);
	stream_result result = STREAM_ENDED;

	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		db_log_error(s->conn, STREAM_LABEL, "receive from the replication stream", res,
					 s->sqlstate);
		result = STREAM_FAILED;
	}
	PQclear(res);
	return result;
}

stream_result
stream_receive(stream *s, int timeout_ms, bool wake_on_keepalive, const uint8_t **data,
			   size_t *len, lsn_t *lsn)
{
	/* One clock read per message: the loop reads it again only after waiting. */
	int64_t		now = clock_monotonic_us();
	int64_t		deadline = now + (int64_t) timeout_ms * 1000;
	bool		polled = false;

	if (s->copybuf != NULL)
	{
		PQfreemem(s->copybuf);
		s->copybuf = NULL;
	}
	for (;;)
	{
		int			n;
		wire_reader r;

		if ((now >= s->next_status_us || s->flushed > s->reported) &&
			!stream_send_status(s, false))
			return STREAM_FAILED;
		n = PQgetCopyData(s->conn, &s->copybuf, 1);
		if (n == 0 && !polled)
		{
			/* Read what the socket holds before calling it a timeout. */
			polled = true;
			if (!PQconsumeInput(s->conn))
			{
				db_log_error(s->conn, STREAM_LABEL, "receive from the replication stream", NULL,
							 s->sqlstate);
				return STREAM_FAILED;
			}
			continue;
		}
		if (n == 0)
		{
			now = clock_monotonic_us();
			if (now >= deadline)
				return STREAM_TIMEOUT;
			if (!stream_wait(s, deadline < s->next_status_us ? deadline : s->next_status_us))
				return STREAM_FAILED;
			now = clock_monotonic_us();
			continue;
		}
		if (n == -1)
			return stream_end(s);
		if (n < 0)
		{
			db_log_error(s->conn, STREAM_LABEL, "receive from the replication stream", NULL,
						 s->sqlstate);
			return STREAM_FAILED;
		}
		wire_reader_init(&r, s->copybuf, (size_t) n);
		switch (wire_u8(&r))
		{
			case 'k':
				{
					bool		reply = false;

					if (!stream_keepalive(s, &r, &reply))
						return STREAM_FAILED;
					PQfreemem(s->copybuf);
					s->copybuf = NULL;
					if (wake_on_keepalive && !reply)
						return STREAM_CAUGHT_UP;
					continue;
				}
			case 'w':
				{
					lsn_t		start = wire_u64(&r);
					lsn_t		end = wire_u64(&r);

					s->server_time = (int64_t) wire_u64(&r);
					if (r.failed)
					{
						log_error("malformed XLogData message: %s", r.error);
						strcpy(s->sqlstate, ERRCODE_PROTOCOL_VIOLATION);
						return STREAM_FAILED;
					}
					if (start > s->received)
						s->received = start;
					if (end > s->server_end)
						s->server_end = end;
					*lsn = start;
					*data = (const uint8_t *) s->copybuf + r.pos;
					*len = wire_remaining(&r);
					return STREAM_DATA;
				}
			default:
				log_error("unexpected message type 0x%02x on the replication stream",
						  (unsigned) (uint8_t) s->copybuf[0]);
				strcpy(s->sqlstate, ERRCODE_PROTOCOL_VIOLATION);
				return STREAM_FAILED;
		}
	}
}
