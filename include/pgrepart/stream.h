/*
 * stream.h: the logical replication connection, shaped like PostgreSQL's
 * receivelog.c: connect, create the slot, start pgoutput, then a loop of
 * small steps (wait, receive, keepalive, data, status) over one struct.
 *
 * Positions are tracked apart: received (write) is the last WAL position
 * whose data arrived, flushed is what the caller confirmed durable on its
 * side (committed in the shadow), and only flushed is ever reported as
 * flush or apply, so the slot never moves past what pgrepart holds.  The
 * caller restarts from its own durable position, never from the slot's
 * confirmed_flush_lsn.
 */
#ifndef PGREPART_STREAM_H
#define PGREPART_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "pgrepart/db.h"
#include "pgrepart/lsn.h"

typedef struct stream
{
	PGconn	   *conn;
	char		sqlstate[6];	/* of the last failure; "08006" when the connection broke */
	lsn_t		received;		/* write: start of the last XLogData received */
	lsn_t		flushed;		/* flush and apply: confirmed by the caller */
	lsn_t		reported;		/* flushed as of the last status update */
	lsn_t		server_end;		/* the server's WAL end, from XLogData and keepalives */
	int64_t		server_time;	/* the server's clock in its last message */
	int64_t		next_status_us; /* monotonic time the next status update is due */
	int			status_interval_ms;
	char	   *copybuf;		/* the last CopyData, freed on the next receive */
} stream;

typedef enum stream_result
{
	STREAM_DATA,				/* *data holds one pgoutput message */
	STREAM_TIMEOUT,				/* nothing arrived in time */
	STREAM_CAUGHT_UP,			/* with wake_on_keepalive: the server has sent all it has */
	STREAM_ENDED,				/* the server ended the stream */
	STREAM_FAILED				/* logged; s->sqlstate says why */
} stream_result;

/* Open a replication=database connection; logs and returns false on failure. */
bool		stream_connect(stream *s, const char *conninfo);
void		stream_close(stream *s);

/*
 * Create a logical slot for pgoutput; a temporary one goes away with the
 * connection (or its first error).  With export, *snapshot gets the
 * exported snapshot's name (valid until the next command on this
 * connection); otherwise pass NULL.  lock_timeout_ms bounds the wait for
 * transactions in progress (0: wait as long as it takes).
 */
bool		stream_create_slot(stream *s, const char *slot, bool temporary, bool export,
							   int lock_timeout_ms, lsn_t *consistent_point, char **snapshot);
bool		stream_drop_slot(stream *s, const char *slot);
/*
 * Create the migration's slot, dropping one an interrupted start left
 * (looked up through the source connection d).
 */
bool		stream_create_fresh_slot(stream *s, db *d, const char *slot, bool export,
									 lsn_t *consistent_point, char **snapshot);

/*
 * START_REPLICATION from start with proto_version 1, binary values.  A slot
 * still held by another walsender is tried again for DB_IN_USE_WAIT_MS.
 */
bool		stream_start(stream *s, const char *slot, const char *publication, lsn_t start);

/*
 * Wait up to timeout_ms for the next pgoutput message, answering keepalives
 * and sending status updates on the way.  On STREAM_DATA, *data and *len
 * hold the message (valid until the next call) and *lsn its WAL position.
 * With wake_on_keepalive, a keepalive that asks for no reply ends the wait
 * with STREAM_CAUGHT_UP: the walsender sends one when it has decoded all
 * the WAL there is and waits for more, so it marks the end of a backlog at
 * once, where a timeout would wait out a quiet spell.
 */
stream_result stream_receive(stream *s, int timeout_ms, bool wake_on_keepalive,
							 const uint8_t **data, size_t *len, lsn_t *lsn);

/* Record that everything up to lsn is durable; reported with the next status. */
void		stream_confirm(stream *s, lsn_t lsn);
/* Send a status update now (write, flush, apply); false after logging. */
bool		stream_send_status(stream *s, bool reply_requested);

#endif
