/*
 * spool.h: the change stream kept durably while the backfill copies.
 *
 * The shadow has no indexes during the copy, so changes cannot be applied
 * yet; the slot must not hold WAL for hours either.  The spooler reads the
 * stream between chunks (and while indexes build) and stores each source
 * transaction as it arrives, in rows of pgrepart.spool of about 4 MB (its
 * pieces, keyed by the transaction's commit position and a number): its raw
 * pgoutput messages, each as a 4-byte length and the bytes, the first piece
 * with the latest Relation message after the Begin so that a replay can
 * start at any transaction.  The last piece carries the transaction's end.
 * It confirms to the slot only the whole transactions the spool has
 * committed, so the source keeps only the spooler's small lag of WAL, and
 * no transaction is held in memory whole.  A table in the source database
 * keeps pgrepart itself stateless: a run on another machine resumes from it.
 *
 * It notices, as they arrive, a column change (the run stops with an error)
 * and a TRUNCATE (reported to the caller, which restarts the copy).
 */
#ifndef PGREPART_SPOOL_H
#define PGREPART_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgrepart/catalog.h"
#include "pgrepart/db.h"
#include "pgrepart/lsn.h"
#include "pgrepart/state.h"

typedef struct spool spool;

/*
 * Start the stream where the spool's last whole transaction ends (or at the
 * slot's consistent point), after deleting the pieces of one not finished.
 */
spool	   *spool_open(const char *conninfo, const state_migration *m);
void		spool_close(spool *sp);

/*
 * Receive and store what the stream has, for at most budget_ms; with wait,
 * wait for more until budget_ms has passed.  False after logging (a lost
 * connection, a column change).  *truncated is set when a TRUNCATE of the
 * table was spooled.
 */
bool		spool_pump(spool *sp, int budget_ms, bool wait, bool *truncated);

/* Transactions and bytes spooled, for progress. */
int64_t		spool_transactions(const spool *sp);
int64_t		spool_bytes(const spool *sp);
/*
 * Every transaction that committed before this position is in the spool:
 * the end of the last one stored, or, with nothing received left to store,
 * the position the server has decoded up to.
 */
lsn_t		spool_upto(const spool *sp);
/* WAL the server has sent beyond what the spool holds. */
int64_t		spool_lag_bytes(const spool *sp);

typedef struct spool_reader
{
	/* Each message in turn (data valid during the call; lsn: its transaction's commit). */
	bool		(*fn) (void *arg, const uint8_t *data, size_t len, lsn_t lsn);
	/* Optional: each message of a read before fn sees them, then looked once. */
	bool		(*look) (void *arg, const uint8_t *data, size_t len);
	bool		(*looked) (void *arg);
	void	   *arg;
} spool_reader;

/*
 * Hand every spooled message of the whole transactions ending after
 * `after`, in commit order, to the reader, reading a few MB at a time.
 * Stops when a callback returns false.  *end gets the end of the last
 * transaction handed over whole.
 */
bool		spool_replay(db *d, const state_migration *m, lsn_t after, const spool_reader *reader,
						 lsn_t *end);

/* Drop the pieces of the spooled transactions ending at or before upto. */
bool		spool_trim(db *d, const state_migration *m, lsn_t upto);

#endif
