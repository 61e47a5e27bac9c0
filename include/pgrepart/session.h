/*
 * session.h: the streaming phase of a run.
 *
 * After the copy and the index build, the run streams: the spool's
 * transactions are replayed, then the slot's changes applied as they come,
 * the unique constraints built once the shadow is consistent, and the
 * cutover made when it is due (at once when synced, or on "pgrepart
 * cutover" with --cutover=manual).  A broken connection starts a new
 * session from the origin's durable progress, up to --max-reconnects times
 * in a row.
 */
#ifndef PGREPART_SESSION_H
#define PGREPART_SESSION_H

#include "pgrepart/catalog.h"
#include "pgrepart/run.h"
#include "pgrepart/state.h"

/* Stream the migration m of t until it is swapped, stopped, different, or failed (logged). */
run_result	session_stream(const char *conninfo, const catalog_table *t, state_migration *m,
						   const run_options *ro);

#endif
