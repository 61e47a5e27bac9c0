/*
 * preflight.h: what the server and the role must allow before a run.
 *
 * Each check adds a pass, warn or block finding to the plan: server version,
 * wal_level, free replication slots and WAL senders, a replication
 * connection, REPLICATION or superuser, replication origins, ownership of the
 * table, CREATE on its schema and database, partition name clashes.  Checks
 * read settings and catalogs only; the replication connection is opened and
 * closed without creating anything.
 */
#ifndef PGREPART_PREFLIGHT_H
#define PGREPART_PREFLIGHT_H

#include <stdbool.h>

#include "pgrepart/db.h"
#include "pgrepart/plan.h"

/* Add the server's findings to p; false after logging if they could not be read. */
bool		preflight_check(db *d, const char *conninfo, plan *p);

#endif
