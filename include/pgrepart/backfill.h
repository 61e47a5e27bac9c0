/*
 * backfill.h: copy a live table into its shadow in key-range chunks, each
 * under its own short snapshot (docs/design.md, "Backfill without a
 * long-held snapshot").
 *
 * The slot is created first (its consistent point C); chunk k then reads
 * COPY (SELECT ... WHERE key > <last key> ORDER BY key LIMIT n) TO STDOUT
 * (FORMAT binary) in a REPEATABLE READ READ ONLY transaction, and the bytes
 * go unchanged into COPY shadow FROM STDIN (FORMAT binary), in the target
 * transaction that also records the chunk: its range, its snapshot and the
 * WAL position read right after the snapshot.  A crash loses at most the
 * chunk in flight; the next run continues after the last recorded chunk.
 * The shadow has no indexes yet.  Streamed changes are later decided by the
 * chunk their key falls in (backfill_filter.h).
 */
#ifndef PGREPART_BACKFILL_H
#define PGREPART_BACKFILL_H

#include <signal.h>
#include <stdbool.h>

#include "pgrepart/catalog.h"
#include "pgrepart/db.h"
#include "pgrepart/spool.h"
#include "pgrepart/state.h"
#include "pgrepart/throttle.h"

typedef struct backfill_options
{
	int			chunk_rows;		/* rows per chunk; 0: adapt to about one second a chunk */
	int			rate;			/* rows per second at most, 0: no cap; -1: keep the recorded one */
	int			progress_seconds;
	bool		terminal;		/* redraw a progress line on stderr */
	bool		json;			/* progress events as JSON lines on stdout */
	volatile sig_atomic_t *stop;	/* set by a signal handler: stop between chunks */
	throttle   *throttle;		/* asked before every chunk; NULL: none */
	int64_t    *rows_copied;	/* out, optional: rows and COPY bytes this run copied, */
	int64_t    *bytes_copied;
	double	   *copy_seconds;	/* and the seconds it took, as the progress lines count them */
	int64_t    *reconciled_changes; /* out, optional: in physical order, reconcile_prepare's */
	int64_t    *reconciled_rows;
} backfill_options;

/*
 * Whether the table's key can be copied in chunks: every column of it has a
 * btree order and a binary form.
 */
bool		backfill_supported(const catalog_table *t);

typedef enum backfill_result
{
	BACKFILL_DONE,				/* every row copied: phase copied */
	BACKFILL_STOPPED,			/* stopped on request between chunks */
	BACKFILL_FAILED				/* logged */
} backfill_result;

/*
 * Create the slot (phase prepared) and copy the chunks (phase copying),
 * continuing after the last recorded chunk.  d is a source connection.
 * Between chunks the change stream goes into the spool, opened here into
 * *sp and left open for the index build; a TRUNCATE of the table seen there
 * starts the copy over.
 */
backfill_result backfill_copy(db *d, const char *conninfo, const catalog_table *t,
							  state_migration *m, const backfill_options *o, spool **sp);

/*
 * For a key with no order the client can page by: create the slot and copy
 * every row under its exported snapshot in one transaction (phase copied),
 * so the copy holds exactly the transactions committed before the slot's
 * consistent point and the stream exactly those after it.  The snapshot is
 * held for the whole copy.
 */
bool		backfill_copy_snapshot(db *d, const char *conninfo, state_migration *m);

/*
 * Start the copy over after a TRUNCATE of the table (or, in physical order,
 * a rewrite: why says which, for the log): the shadow emptied,
 * the chunks forgotten, the next xid read again (the first new chunk waits
 * until the TRUNCATE is visible to it), phase copying.  The spooled
 * transactions stay: every new chunk sees them, so the rule skips them.
 */
bool		backfill_reset(db *d, state_migration *m, const char *why);

/* A key's binary values in a chunk's hi_key form: per field a 4-byte length and the bytes. */
void		backfill_encode_key(buf *out, int nkeys, const uint8_t *const *values,
								const uint32_t *lens);
/* Split hi_key back into nkeys values (pointers into it); false when malformed. */
bool		backfill_decode_key(const uint8_t *key, size_t len, int nkeys, const uint8_t **values,
								uint32_t *lens);

#endif
