/*
 * cutover.h: the swap of a synced shadow for its table, under a short,
 * bounded lock.
 *
 * One attempt: on a source connection, BEGIN; LOCK TABLE ... IN EXCLUSIVE
 * MODE with a short lock_timeout (writers wait, readers go on; a lock that
 * is not granted at once is given up rather than left queued, where it would
 * stall every reader behind it); then a non-transactional logical message
 * marks the WAL position L every write before the lock precedes.  The caller
 * applies the stream up to L, then cutover_swap renames the table to its
 * old name and the shadow to the table's, carries over what pointed at the
 * table, and commits.  docs/design.md, "Cutover", says what is carried over
 * and why in this order.
 */
#ifndef PGREPART_CUTOVER_H
#define PGREPART_CUTOVER_H

#include <stdbool.h>

#include "pgrepart/db.h"
#include "pgrepart/lsn.h"
#include "pgrepart/state.h"

typedef struct cutover_options
{
	int			lock_timeout_ms;	/* per attempt to take the lock */
	int			max_lock_hold_ms;	/* give up the attempt when catching up takes longer */
	int			retries;		/* attempts before the run fails */
	int64_t		max_lag_bytes;	/* try only when the apply is this close */
	const char *old_name;		/* the table's name afterwards; NULL: <table>_old */
	bool		rehearse;		/* take the lock and drain, then roll back */
	bool		keep;			/* after a rehearsal keep the migration, else remove it */
	int			snapshot_wait_ms;	/* before each attempt, wait this long for older snapshots to go; 0: no */
	int			revert_window_s;	/* keep the old table in step this long after the swap (revert.h); 0: no */
} cutover_options;

/*
 * Take the lock.  True with the transaction open and *l set; false with
 * *busy when the lock was not granted in time (who held it is logged, the
 * transaction rolled back), or after logging a failure.
 */
bool		cutover_lock(db *d, const state_migration *m, const cutover_options *o, lsn_t *l,
						 bool *busy);

/*
 * Holding the lock, with the shadow caught up to L: swap the names, carry
 * the dependents over (the foreign keys as NOT VALID keys of each
 * partition, enforced from the commit on), note the server's clock in
 * swapped_at (CUTOVER_CLOCK_SIZE bytes), commit.  False after logging
 * (and rolling back), or with *busy when a table a foreign key references
 * was not locked within the lock timeout: the caller tries again.
 */
#define CUTOVER_CLOCK_SIZE 64
bool		cutover_swap(db *d, state_migration *m, const cutover_options *o, bool *busy,
						 char *swapped_at);

/*
 * Sessions still open whose snapshot may be older than swapped_at (the
 * server's clock just before the swap committed): a REPEATABLE READ or
 * SERIALIZABLE one reading the table afterwards sees the new table as of
 * that snapshot, without the rows it received since.  Each is logged;
 * *count says how many, and names (may be NULL) gets one line per session.
 */
bool		cutover_old_snapshots(db *d, const char *swapped_at, int *count, char ***names);

/*
 * --wait-for-snapshots: before an attempt, wait up to o->snapshot_wait_ms
 * for every session holding a snapshot taken before now to let go.  *clear
 * when none is left; else they are logged and the attempt should not lock.
 */
bool		cutover_wait_snapshots(db *d, const cutover_options *o, bool *clear);

/*
 * After the swap: each partition's foreign keys validated (writers go on),
 * then added to the new table, which adopts the partitions' without a scan
 * (under the lock timeout, retried), then the slot, the publication and the
 * replication origin are dropped.  Idempotent.
 */
bool		cutover_finish(const char *conninfo, db *d, const state_migration *m,
						   const cutover_options *o);

/*
 * "pgrepart cutover": ask the run streaming schema.table (in
 * --cutover=manual) to swap, and wait until it has.  False after logging.
 */
bool		cutover_request(const char *conninfo, const char *schema, const char *table);

/*
 * "pgrepart abort": drop the migration's slot, publication, origin, shadow
 * and state; never the table.  Refused while a run streams it and after the
 * swap.  Returns an exit status: 0 done, 1 refused or failed, 6 no migration.
 */
int			cutover_abort(const char *conninfo, const char *schema, const char *table);

/*
 * What points at qtable (views, grants, owner, triggers, row security,
 * replica identity, publications but pgrepart's own, owned sequences,
 * identity positions, rules), read while the names are the old ones, as
 * statements that carry it over to qdest, a table with the same columns,
 * once qdest has taken qtable's name and qtable is qafter.  Triggers,
 * policies and rules qdest already has, by name, stay as they are.  The
 * swap and the swap back (revert.h) both carry their dependents this way.
 */
bool		cutover_read_dependents(db *d, const char *qtable, const char *qdest,
									const char *qafter, const char *publication,
									PGresult **deps, PGresult **views);
/* After the renames: run what cutover_read_dependents read. */
bool		cutover_carry_dependents(db *d, PGresult *deps, PGresult *views);

/* The server's current WAL write position: what a catch-up before the lock aims at. */
bool		cutover_current_lsn(db *d, lsn_t *lsn);

/*
 * With the lock held (on another session): force the WAL up to the mark to
 * disk, where the walsender reads it.
 */
bool		cutover_flush_wal(db *aux);

/*
 * Drop a slot (if it exists), a publication and a replication origin, each
 * where given (NULL: not): the migration's after the swap or an abort, its
 * reverse stream's (revert.h).
 */
bool		cutover_drop_objects(const char *conninfo, db *d, const char *slot,
								 const char *publication, const char *origin);

/* Give up the attempt: roll back, releasing the lock. */
void		cutover_release(db *d);

#endif
