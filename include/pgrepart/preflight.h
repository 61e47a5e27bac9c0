/*
 * preflight.h: what the server and the role must allow before a run.
 *
 * Each check adds a pass, warn or block finding to the plan: server version,
 * wal_level, free replication slots and WAL senders, a replication
 * connection, REPLICATION or superuser, replication origins, ownership of the
 * table, CREATE on its schema and database, partition name clashes.  Checks
 * read settings and catalogs only; the replication connection is opened and
 * closed without creating anything.  preflight_plan reads the table and
 * the server and makes the plan: the only part of planning that does I/O
 * (plan.c derives the statements and the table's own findings, pure).
 */
#ifndef PGREPART_PREFLIGHT_H
#define PGREPART_PREFLIGHT_H

#include <stdbool.h>

#include "pgrepart/db.h"
#include "pgrepart/plan.h"

/*
 * Read the table and the server, and plan.  conninfo is what d was opened
 * with (the preflight tries a replication connection with it).  Returns NULL
 * after logging when the plan cannot even be made (no such table, bad
 * interval, lost connection), with *bad_interval set when --interval was the
 * reason (a usage error); a plan with blocking findings is returned.
 */
plan	   *preflight_plan(db *d, const char *conninfo, const char *schema, const char *table,
						   const plan_options *o, bool *bad_interval);

#endif
