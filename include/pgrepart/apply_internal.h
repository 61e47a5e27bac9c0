/*
 * apply_internal.h: what the apply's modules share; private to src/apply*.c.
 *
 * One struct apply holds an apply's whole state.  Its modules each own a
 * part of the work, as PostgreSQL's worker_internal.h splits the logical
 * replication worker:
 *   apply.c           dispatch, the per-change handlers, commit and origin
 *   apply_pipeline.c  the libpq pipeline: expectations, syncs, results, retries
 *   apply_batch.c     pending changes: the insert run (COPY or INSERTs), the
 *                     batches of updates and deletes, folding, flushes
 *   apply_route.c     where a row goes: leaves and bounds, on-demand
 *                     partitions, the prepared-statement cache
 */
#ifndef PGREPART_APPLY_INTERNAL_H
#define PGREPART_APPLY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "pgrepart/apply.h"
#include "pgrepart/buf.h"
#include "pgrepart/keyset.h"

/* What a change does to a row; a batch and a prepared statement hold one kind. */
typedef enum change_kind
{
	CHANGE_INSERT,
	CHANGE_UPDATE,
	CHANGE_DELETE
} change_kind;

/* What a queued statement must do. */
typedef enum expect_kind
{
	EXPECT_OK,					/* BEGIN, COMMIT, PREPARE, TRUNCATE ... */
	EXPECT_INSERT,				/* INSERT: its row, or an error; it cannot miss */
	EXPECT_ONE_ROW,				/* UPDATE, DELETE: exactly one row, or a miss */
	EXPECT_BATCH				/* a batch: every row, by the ordinals it returns */
} expect_kind;

/*
 * An UPDATE that looked in one partition (the new row's) and must look in
 * every partition if it found nothing there: the partition column changed.
 * Its SET list mask and parameters (SET values, then the key), kept until
 * the sync tells.
 */
typedef struct retry
{
	char	   *mask;
	int			nparams;
	char	  **values;
	int		   *lengths;
	int		   *formats;
} retry;

/*
 * Updates or deletes sent as one statement over arrays, one element per
 * change, kept until the sync tells which rows they found.  Each row is a
 * dead flag (folded into a later row), the change's LSN, the hashes of its
 * old and new key, whether its partition value is the old row's ("exact"),
 * the old and new key as text, then its values: kind, length, bytes.
 */
typedef struct batch
{
	change_kind kind;			/* inserts: the run */
	bool		by_part;		/* deletes: also match the partition column; updates: exact */
	buf			rows;
	int			nrows;			/* dead ones too */
	int			nlive;
	int			nvalues;		/* per row */

	/* Inserts and updates: the offset of the live row under each new key's hash (open addressing). */
	uint64_t   *slot_hash;
	size_t	   *slot_row;		/* SIZE_MAX: empty, or a row that died */
	int			nslots;
	int			nused;
} batch;

typedef struct expectation
{
	expect_kind kind;
	const char *what;			/* "insert", "update", ... */
	lsn_t		lsn;
	char	   *key;			/* the row's key as text, for messages */
	retry	   *retry;			/* what to do when it finds no row, or NULL */
	batch	   *batch;			/* EXPECT_BATCH: the rows it sent */
	lsn_t		final;			/* commit LSN of the source transaction open when it went */
} expectation;

/* A read of results that may stop halfway and go on later (apply_take_results). */
typedef struct read_state
{
	int			next;			/* expectations checked */
	bool		seen;			/* next's result is read, its closing NULL not yet */
	bool		failed;			/* a result was not as expected */
	bool		logged;			/* a miss was logged (apply_check_result) */
} read_state;

/*
 * One of the shadow's leaf partitions and its range as int64.  Statements go
 * to the leaf itself where the row's partition is known: on a partitioned
 * table every execution of a generic plan sets up run-time pruning over all
 * partitions, which costs more than the change itself.
 */
typedef struct leaf
{
	int64_t		lower, upper;	/* [lower, upper); MINVALUE/MAXVALUE as the int64 limits */
	int			id;				/* stable across re-reads: prepared statements use it */
	char	   *qname;
} leaf;

#define TARGET_PARENT (-1)		/* the partitioned shadow itself, not a leaf */
#define TARGET_BATCH (-2)		/* the parent, by a batch over arrays (apply_batch_sql) */

/* A prepared statement: an INSERT, UPDATE or DELETE on one target. */
typedef struct statement
{
	change_kind kind;
	int			target;			/* a leaf's id, TARGET_PARENT or TARGET_BATCH */
	bool		by_part;		/* the parent only: also matches the partition column */
	char	   *mask;			/* updates: per column '1' in the SET list, '0' not */
	char		name[32];
} prepared;

struct apply
{
	db		   *db;
	apply_options o;
	char	   *qshadow;

	/* The shadow's non-generated columns: what the stream must carry. */
	char	  **columns;
	Oid		   *types;
	Oid		   *array_types;	/* each column's array type, for batches; 0 if none */
	bool	   *compressible;	/* whether the server may compress a column's values */
	int			ncolumns;
	bool		can_batch;		/* every column has an array type */
	bool		plain;			/* the target is not partitioned (apply_options.partition_column) */
	bool		has_default_partition;
	bool		have_bounds;	/* partition range known as int64 */
	int64_t		lower, upper;	/* [lower, upper) covered by partitions */
	leaf	   *leaves;			/* sorted by lower */
	Oid			partition_type;
	int			nleaves;
	int			npartitions;	/* the shadow's partitions of any kind, as last read */
	int			next_leaf_id;
	int			txns_in_batch;	/* source transactions in the open target transaction */

	/* The source relation, from the stream's Relation message. */
	pgout_relation *rel;
	int		   *key;			/* column indexes of the key */
	char	   *key_prefix;		/* "(id)=(": how every key description starts */
	bool	   *guarded;		/* per column: in apply_options.unique_columns */
	int			nkey;
	int			part;			/* column index of the partition column */
	bool		identity_has_part;	/* the old key carries the partition value */
	bool		can_fold;		/* see apply_fold_update */
	bool		in_source_txn;
	bool		skipping;		/* the source transaction carries an origin (skip_origins) */
	bool		in_target_txn;
	bool		run_has_text;	/* a pending insert carries a value as text: no COPY */
	lsn_t		last_final;		/* commit LSN of the latest source transaction begun */
	lsn_t		replay_until;	/* see apply_replay_until */

	/*
	 * A target COMMIT sent, with a sync after it, whose results are not read
	 * yet: its statements are the first inflight_count expectations.  At
	 * most one: the next COMMIT is sent only once this one is known to have
	 * succeeded, so a failed batch can never be covered by a later origin
	 * advance.
	 */
	bool		inflight;
	read_state	reading;		/* how far apply_take_results has read */
	int			inflight_count;
	lsn_t		inflight_lsn;
	int64_t		inflight_time;
	int64_t		inflight_changes;	/* stats' inserts + updates + deletes at its send */

	lsn_t		pending_lsn;	/* end LSN of the last source commit not yet durable */
	int64_t		pending_time;
	lsn_t		committed;		/* durable: the origin's progress */

	expectation *expect;		/* queued since the last sync */
	int			nexpect;
	size_t		held_bytes;		/* the rows of the batches among them */
	int			expect_cap;
	expectation *retries;		/* updates to repeat by key alone after the sync */
	int			nretries;

	/*
	 * The keys of the single UPDATEs since the last sync that may be
	 * repeated by key alone at the sync.  A change of one of them syncs
	 * first, so the repeat commutes with everything queued after it.
	 */
	keyset		segment;

	/*
	 * Single UPDATEs and DELETEs queued since the last sync: whether each
	 * found its row only the client can tell, so they are checked before a
	 * COMMIT is sent.
	 */
	int			unchecked_singles;
	/* The keys of the pending inserts, and of the batches: a change to one sends them first. */
	keyset		run_keys;
	keyset		batch_keys;

	/*
	 * Updates and deletes wait in batches while other changes arrive.  They
	 * go in this order: deletes, then updates, then inserts (the run).  Only
	 * changes of different keys wait together, and for those the order
	 * matters only to a unique index other than the key: deleting earlier
	 * only frees values, and inserting later only takes them later (see
	 * apply_message); updates keep their order among themselves, because the
	 * batch statement visits its rows in array order.
	 */
	batch		updates;
	batch		deletes_by_part;	/* the partition value is known */
	batch		deletes_by_key;		/* the key alone: newest partition first */

	batch		inserts;		/* the run: pending inserts, in source order */
	prepared   *statements;
	int			nstatements;

	/* Scratch for statement parameters. */
	int			params_cap;
	const char **values;
	int		   *lengths;
	int		   *formats;
	buf			sql;
	apply_stats stats;
	apply_failure failure;		/* why the last failure happened */
};

/* ---- pending changes: the insert run and the batches of updates and deletes ---- */

/* A batch of updates or deletes goes at this many rows; the insert run waits longer. */
#define BATCH_MAX_ROWS 1000
#define RUN_MAX_ROWS 10000
/* A run shorter than this goes one INSERT per row when it cannot go in arrays. */
#define COPY_MIN_ROWS 16
#define BATCH_MAX_BYTES ((size_t) 4 * 1024 * 1024)
/*
 * Batches sent and not yet answered keep their rows (to name a row that
 * missed): past this many bytes of them the pipeline syncs, so one large
 * source transaction cannot hold its every change in memory.
 */
#define HELD_MAX_BYTES ((size_t) 16 * 1024 * 1024)
#define BOOLOID 16
#define BOOLARRAYOID 1000

typedef struct batch_row
{
	bool		dead;
	lsn_t		lsn;
	uint64_t	hash[2];		/* the old key's and the new key's */
	bool		exact;
	const char *key;			/* old */
	const char *newkey;
} batch_row;

/* apply.c: values and keys, and the end of a target transaction */
char *apply_describe_key(const apply *a, const pgout_tuple *t);
bool apply_partition_value(const apply *a, const pgout_value *v, int64_t *out);
void apply_reserve_params(apply *a, int n);
void apply_set_param(apply *a, int i, const pgout_value *v);
bool apply_end_target(apply *a, bool wait);

/* apply_pipeline.c: expectations, syncs, results, retries */
void apply_expect(apply *a, expect_kind kind, const char *what, lsn_t lsn, char *key, retry *r);
void apply_free_expectations(apply *a, int n);
void apply_retry_free(retry *r);
retry *apply_retry_create(apply *a, const char *mask, int nparams);
bool apply_sent_retry(apply *a, int sent, expect_kind kind, const char *what, lsn_t lsn, char *key,
				 retry *r);
bool apply_sent(apply *a, int sent, expect_kind kind, const char *what, lsn_t lsn, char *key);
bool apply_claim_key(apply *a, const char *key, uint64_t *hash);
bool apply_send_plain(apply *a, const char *sql, const char *what);
void apply_report_miss(apply *a, const char *what, const char *key, lsn_t at, long rows, bool *logged);
bool apply_in_order(const apply *a);
void apply_hint_gap(const apply *a, const PGresult *res);
int64_t apply_changes_sent(const apply *a);
void apply_durable(apply *a, lsn_t lsn, int64_t commit_time, int64_t changes);
bool apply_take_inflight(apply *a, bool block, bool *ok);
bool apply_collect(apply *a);
bool apply_sync(apply *a);
bool apply_leave_pipeline(apply *a);
bool apply_enter_pipeline(apply *a);
bool apply_begin_target(apply *a);

/* apply_route.c: leaves, bounds, on-demand partitions, prepared statements */
void apply_free_leaves(leaf *leaves, int n);
bool apply_read_bounds(apply *a);
int apply_target_of(const apply *a, const pgout_value *v);
bool apply_check_partition(apply *a, const pgout_tuple *t, const char *what, lsn_t lsn);
void apply_column_list(const apply *a, buf *b);
bool apply_statement(apply *a, change_kind kind, int target, bool by_part, const char *mask, char *name);

/* apply_batch.c: the insert run, batches, folding, flushes */
void apply_batch_release(batch *b);
void apply_batch_free(batch *b);
bool apply_batchable(const apply *a, const pgout_value *const *vals, int n);
void apply_batch_add(apply *a, batch *b, const batch_row *row, const pgout_value *const *vals, int n);
void apply_batch_guard(const apply *a, buf *b);
int apply_batch_sql(const apply *a, change_kind kind, bool by_part, const char *keep, buf *b, Oid *types);
bool apply_fold_update(apply *a, const char *key, const char *newkey, const uint64_t hash[2],
				  const pgout_tuple *newt);
bool apply_fold_delete(apply *a, const char *key, uint64_t h);
bool apply_flush_batch(apply *a, batch *b);
bool apply_flush_batches(apply *a);
bool apply_flush_pending(apply *a);
bool apply_batch_room(apply *a, const batch *b);
void apply_queue_retry(apply *a, char *key, lsn_t lsn, retry *r);
bool apply_check_batch(apply *a, const batch *b, PGresult *res, bool *logged);
bool apply_guard_failed(apply *a, const expectation *e, const PGresult *res, bool *logged);

#endif
