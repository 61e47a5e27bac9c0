/*
 * sqlstate.h: the SQLSTATEs pgrepart acts on, named once.
 *
 * Names follow PostgreSQL's errcodes.txt (ERRCODE_*); the values are the
 * five-character codes libpq reports in PG_DIAG_SQLSTATE.  The ones marked
 * "client" are what pgrepart records for a failure libpq saw without a
 * server error: a connection that could not be made or broke, a stream it
 * could not read.
 */
#ifndef PGREPART_SQLSTATE_H
#define PGREPART_SQLSTATE_H

#define SQLSTATE_CLASS_CONNECTION	"08"	/* every connection exception */
#define SQLSTATE_CLASS_DATA			"22"	/* data exception: a value the server would not take */
#define SQLSTATE_CLASS_RESOURCES	"53"	/* insufficient resources */

#define ERRCODE_CONNECTION_FAILURE		"08006"	/* client: the connection broke */
#define ERRCODE_CANNOT_CONNECT			"08001"	/* client: no connection was made */
#define ERRCODE_PROTOCOL_VIOLATION		"08P01"	/* client: the stream made no sense */
#define ERRCODE_UNIQUE_VIOLATION		"23505"
#define ERRCODE_CHECK_VIOLATION			"23514"	/* also: no partition of relation found for row */
#define ERRCODE_INSUFFICIENT_PRIVILEGE	"42501"
#define ERRCODE_DISK_FULL				"53100"
#define ERRCODE_OBJECT_IN_USE			"55006"	/* a slot or origin held by another session */
#define ERRCODE_LOCK_NOT_AVAILABLE		"55P03"
#define ERRCODE_SYSTEM_ERROR			"58000"	/* client: a local failure (select, memory) */
#define ERRCODE_INTERNAL_ERROR			"XX000"	/* client: an error without a SQLSTATE */

/* Whether sqlstate (five characters) is of class (two). */
#define SQLSTATE_IN_CLASS(sqlstate, class) ((sqlstate)[0] == (class)[0] && (sqlstate)[1] == (class)[1])

#endif
