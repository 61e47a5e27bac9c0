/*
 * apply.h: source changes applied to the partitioned shadow, exactly once.
 *
 * Changes arrive decoded, in source commit order.  Many source transactions
 * share one target transaction; statements are prepared and sent in libpq
 * pipeline mode; runs of inserts go through binary COPY built from the
 * changes' own send-format values.  Before each target commit,
 * pg_replication_origin_xact_setup records the end LSN of the last source
 * transaction it holds, so the origin's progress moves with the rows it
 * covers: after a crash the stream restarts from apply_committed() and no
 * transaction is applied twice or lost.
 *
 * Rows are found by the source key plus the partition column (one
 * partition) and, where the old partition value is not known, by the key
 * alone (a delete, and an update in a batch that missed its row: from the
 * newest partition down, until one holds it; an update sent alone that
 * missed: in every partition); an update of the partition column moves the
 * row.  Unchanged TOASTed values ('u') are left out of an UPDATE's SET list.
 * A change that should hit one row and hits none stops the apply with the
 * key and LSN.  A row whose partition value lies beyond every partition
 * gets a new partition (or goes to the DEFAULT partition when there is one).
 */
#ifndef PGREPART_APPLY_H
#define PGREPART_APPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "pgrepart/db.h"
#include "pgrepart/lsn.h"
#include "pgrepart/pgout.h"

typedef struct apply_options
{
	const char *schema;			/* of the source table, its shadow and partitions */
	const char *table;			/* the source table: partitions are named after it */
	const char *shadow;			/* the partitioned shadow table, or a plain target */

	/*
	 * NULL: the target is a plain table (the reverse stream's, revert.h):
	 * every row is found by the key alone, in the table itself, and no
	 * partition is ever made.
	 */
	const char *partition_column;
	const char *interval;		/* width of a new partition */
	const char *origin;			/* replication origin name */
	int			batch_transactions; /* source transactions per target commit */
	int			pipeline_depth; /* statements between pipeline syncs */
	int			copy_threshold; /* runs of at least this many inserts go by COPY; 0: a full run */

	/*
	 * The key rows are found by (the source's primary key, else its replica
	 * identity index).  Not the stream's identity flags: under REPLICA
	 * IDENTITY FULL those mark every column.  None: the flags.
	 */
	char	   *const *key_columns;
	int			nkey_columns;

	/*
	 * The columns of the source's unique indexes that do not hold the whole
	 * key.  An update is folded into a pending update of the same row only
	 * where these keep their values (the key may change: keys are tracked);
	 * fold false: never (a unique index on an expression or with a
	 * predicate).  Folding into a pending insert needs neither.
	 */
	char	   *const *unique_columns;
	int			nunique_columns;
	bool		fold;

	/*
	 * Source transactions committed at or before this LSN go one change per
	 * statement, in source order: a replay after apply_replay_until.
	 */
	lsn_t		in_order_until;

	/*
	 * A change that finds no row is counted (apply_stats.missed), not a
	 * failure: the reverse stream's target loses rows to the cascades of
	 * its own foreign keys before the stream brings the same deletes.
	 */
	bool		tolerate_missing;
	/*
	 * Apply as a replica (session_replication_role): the target's own
	 * triggers, foreign key checks among them, stay quiet, as on a logical
	 * replication subscriber.  The reverse stream's target keeps them.
	 */
	bool		replica_role;
	/*
	 * The changes of a source transaction that carries a replication origin
	 * are not applied; it commits as an empty one, so the origin's progress
	 * passes it.  The reverse stream's: those are pgrepart's own forward
	 * apply, which wrote them to the shadow before the swap (revert.h).
	 */
	bool		skip_origins;
} apply_options;

typedef struct apply_stats
{
	int64_t		transactions;
	int64_t		inserts;
	int64_t		updates;
	int64_t		deletes;
	int64_t		truncates;
	int64_t		copied_rows;	/* inserts that went through COPY */
	int64_t		batches;		/* statements that applied many updates or deletes */
	int64_t		folded;			/* changes merged into a pending change of the same row */
	int64_t		commits;		/* target transactions */
	int64_t		partitions_created;
	int64_t		last_commit_time;	/* source commit time of the last durable transaction */
	int64_t		durable_changes;	/* inserts, updates and deletes committed in the shadow */
	int64_t		missed;			/* tolerate_missing: updates and deletes that found no row */
	int64_t		skipped;		/* skip_origins: changes of transactions with an origin */
} apply_stats;

typedef struct apply apply;

/*
 * Prepare to apply into the shadow over target (a connection to the source
 * database): create the origin if needed and take it for this session (so
 * no second applier can run), read the shadow's columns and partition
 * bounds.  NULL after logging.
 */
apply	   *apply_create(db *target, const apply_options *o);
void		apply_destroy(apply *a);

/* The origin's durable progress: where the stream must restart. */
lsn_t		apply_committed(const apply *a);

/* Apply one decoded message received at lsn; false after logging. */
bool		apply_message(apply *a, const pgout_message *m, lsn_t lsn);

/*
 * Queue a statement of pgrepart's own state in the open target transaction,
 * so that it is durable exactly with the changes around it; false after
 * logging.  Only between a source transaction's BEGIN and its COMMIT.
 */
bool		apply_queue(apply *a, const char *sql, int nparams, const char *const *values,
						const int *lengths, const int *formats, const char *what);

/* Commit the open target transaction, if any; false after logging. */
bool		apply_commit(apply *a);

/*
 * Read the result of the COMMIT in flight, if any, so that its rows count as
 * durable; nothing is sent.  For a session ending (stopped, or its stream
 * lost) whose shadow connection still holds: the COMMIT may well have
 * succeeded, and the next session starts past it.  False when it failed.
 */
bool		apply_settle(apply *a);

/* Nothing received is unapplied: no source transaction open, nothing uncommitted. */
bool		apply_idle(const apply *a);

/* Between a source transaction's BEGIN and its COMMIT. */
bool		apply_in_source_txn(const apply *a);

/* The source transactions the open target transaction holds. */
int			apply_open_transactions(const apply *a);

/*
 * After a failure: nonzero when the failure was a unique violation that
 * applying changes out of source order may have caused (a batch's second
 * look for rows that moved partitions runs after its first).  Nothing of
 * it is durable; the caller starts again from the origin's progress with
 * in_order_until set to this LSN, and a violation then is the data's own.
 */
lsn_t		apply_replay_until(const apply *a);

const apply_stats *apply_get_stats(const apply *a);

/* Why an apply call failed (each failure is logged where it happens). */
typedef enum apply_failure
{
	APPLY_FAILURE_SERVER,		/* a statement or the connection failed: the db's sqlstate says which */
	APPLY_FAILURE_MISS,			/* a change found no row of the shadow, or more than one */
	APPLY_FAILURE_SCHEMA		/* the source table's columns changed under the migration */
} apply_failure;

apply_failure apply_get_failure(const apply *a);


#endif
