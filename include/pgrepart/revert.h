/*
 * revert.h: the way back after the swap.
 *
 * With run --revert-window, the run publishes the shadow (with
 * publish_via_partition_root, so that changes arrive under the parent's
 * name, partitions made later included) and creates a second slot on that
 * publication, both before the cutover's lock.  After the swap a follower
 * applies every change committed to the new table to the old one, through
 * the apply on a plain target, as a replica (the old table's triggers and
 * foreign key checks stay quiet), and skips the transactions that carry a
 * replication origin: pgrepart's forward apply wrote those to the shadow
 * before the swap.  docs/design.md, "Revert", argues the start.
 *
 * The follower runs until the window ends or "pgrepart finish" (the reverse
 * slot, publication and origin are dropped; the old table stays as it is,
 * for the operator to drop), or "pgrepart revert": the new table locked
 * under the cutover's bounds, the stream applied up to a mark written under
 * the lock, the names swapped back and the dependents carried back, in one
 * transaction.  The partitioned table stays as <table>_partitioned.
 */
#ifndef PGREPART_REVERT_H
#define PGREPART_REVERT_H

#include <signal.h>
#include <stdbool.h>

#include "pgrepart/catalog.h"
#include "pgrepart/cutover.h"
#include "pgrepart/db.h"
#include "pgrepart/state.h"

/* The reverse stream's slot, publication and origin: the migration's names with this suffix. */
#define REVERT_SUFFIX "_rev"
/* The partitioned table's name after a revert: the table's with this suffix. */
#define REVERT_PARTITIONED_SUFFIX "_partitioned"

/*
 * Before a run with a window: whether t has a key the reverse stream can
 * find the old table's rows by, and whether this role may keep a reverse stream,
 * that is apply as a replica (session_replication_role, a superuser's or,
 * from PostgreSQL 15, granted by GRANT SET ON PARAMETER); logs why not,
 * with the grant to give.  Warns of each unique index of t that lacks the
 * partition column: its widened copy on the new table may take a row the
 * original refuses, which stops the reverse stream.
 */
bool		revert_check(db *d, const catalog_table *t, const char *partition_column);

/*
 * Before the cutover's lock: the reverse publication and slot, where
 * missing.  Creating a slot waits for the transactions in progress; at most
 * lock_timeout_ms (REVERT_SLOT_WAIT_MS: nothing is locked meanwhile), then
 * *busy and the caller tries again later.
 */
#define REVERT_SLOT_WAIT_MS 10000
bool		revert_prepare(const char *conninfo, db *d, const state_migration *m,
						   int lock_timeout_ms, bool *busy);

/*
 * In the swap's transaction: the old table's name and, with window_s > 0,
 * the end of the window (the server's clock plus window_s).
 */
bool		revert_record_swap(db *d, const state_migration *m, const char *old_name, int window_s);

/*
 * In the transaction holding the lock on the new table: the swap back's
 * renames (the new table's indexes and keys take REVERT_PARTITIONED_SUFFIX,
 * the old table's lose "_old", the tables change names: the new one to
 * partitioned_name, NULL for <table>_partitioned) and the dependents
 * carried back; no commit.  A rehearsal runs it after the swap, before
 * rolling both back.  *busy when a lock it needs was not granted in time.
 */
bool		revert_swap_back(db *d, const state_migration *m, const char *old_table,
							 const char *partitioned_name, bool *busy);

/* How a follower ended. */
typedef enum revert_end
{
	REVERT_NONE,				/* the migration keeps no reverse stream */
	REVERT_FINISHED,			/* the window ended or finish was asked: dropped */
	REVERT_REVERTED,			/* swapped back */
	REVERT_STOPPED,				/* stop was set: run again to go on */
	REVERT_FAILED				/* logged */
} revert_end;

/*
 * Follow m's reverse stream until its window ends, "finish" or "revert" is
 * asked, or *stop is set, and act on it.  The run calls it after the swap;
 * "pgrepart revert" and "finish" call it when no run follows.
 */
revert_end	revert_follow(const char *conninfo, const state_migration *m, const cutover_options *o,
						  volatile sig_atomic_t *stop, int progress_seconds);

/*
 * "pgrepart revert" (revert true; partitioned_name, or NULL, the partitioned
 * table's name afterwards) and "pgrepart finish": record the request,
 * then wait for the run following the stream to act on it, or follow it
 * here when none does.  Returns an exit status: 0 done, 1 failed or
 * refused, 5 stopped, 6 no migration.
 */
int			revert_command(const char *conninfo, const char *schema, const char *table,
						   const cutover_options *o, const char *partitioned_name,
						   volatile sig_atomic_t *stop, bool revert);

/*
 * A rehearsal's reverse stream, after its swap rolled back: follow the
 * reverse slot up to the server's position now, with the shadow as the
 * target.  Only pgrepart's own transactions can be there, and each must be
 * skipped; false, logged, when the stream could not be followed or carried
 * anything else.  What it made goes with the rehearsal's clean-up.
 */
bool		revert_rehearse(const char *conninfo, const state_migration *m);

/* Drop the reverse slot, publication and origin, where they exist. */
bool		revert_drop(const char *conninfo, db *d, const state_migration *m);

#endif
