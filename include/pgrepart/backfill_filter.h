/*
 * backfill_filter.h: the visibility rule applied to the change stream after
 * a chunked backfill.
 *
 * A change to a key in chunk k's range is skipped when its transaction is
 * visible in chunk k's snapshot (the chunk already holds its effect) and
 * applied otherwise.  The chunks that see a transaction are a suffix, so
 * the key is compared with one chunk's upper key: on the client for
 * integers, dates, timestamps and uuids, by the source for other types.  An update that moves a row from one chunk's range to
 * another's is decided at both ends: when only the old end holds it the row
 * is inserted anew, when only the new end holds it the old row is deleted.
 * A TRUNCATE is skipped when every chunk saw it and applied when none did.
 *
 * After a copy in physical order the chunks are ranges of heap pages, not
 * of keys, and no key is compared: a change of a transaction every chunk
 * sees is skipped, one none sees is applied, and for one some see, the
 * row was removed from the shadow (reconcile.h) and is rebuilt from its
 * key's first such change: an insert is applied, a delete skipped, an
 * update inserts the new version (unchanged TOASTed values from the
 * source, as below); every later change is applied as it is.
 *
 * A row inserted anew needs its unchanged TOASTed values from the source;
 * when the source no longer has the row, a later change in the stream
 * deletes it or moves it to another key, and the key becomes a ghost until
 * then: its updates are skipped, its delete ends the ghost, and its move
 * ends the ghost and inserts the row under the new key.  Ghosts outlive the
 * chunks' filter and restarts (they are recorded in the apply's
 * transaction: backfill_filter_ghost_change).
 * docs/design.md, "Backfill without a long-held snapshot", argues why this
 * leaves every row as the source has it.
 */
#ifndef PGREPART_BACKFILL_FILTER_H
#define PGREPART_BACKFILL_FILTER_H

#include <stdbool.h>

#include "pgrepart/catalog.h"
#include "pgrepart/db.h"
#include "pgrepart/lsn.h"
#include "pgrepart/pgout.h"
#include "pgrepart/state.h"

typedef struct backfill_filter backfill_filter;

/*
 * The filter for migration m (t: its source table), from its recorded
 * chunks; NULL after logging.  source is kept to fetch unchanged TOASTed
 * values a re-inserted row needs.  With no chunks it lets everything by.
 */
backfill_filter *backfill_filter_create(db *source, const state_migration *m,
										const catalog_table *t);
void		backfill_filter_free(backfill_filter *f);

typedef enum filter_action
{
	FILTER_APPLY,				/* apply the message as it is */
	FILTER_SKIP,				/* the shadow already holds its effect */
	FILTER_REWRITTEN,			/* apply *out instead */
	FILTER_FAILED				/* logged */
} filter_action;

/*
 * Decide one message (every message goes through, in order: Begin carries
 * the transaction id the rule needs).  *out stays valid until the next call.
 */
filter_action backfill_filter_message(backfill_filter *f, const pgout_message *in,
									  pgout_message *out);

/*
 * The lookahead, for a key the client cannot order: before a batch of
 * messages is decided, each is shown to backfill_filter_look, in the same
 * order, then backfill_filter_look_resolve asks the source, in one query,
 * where every key those messages will need placed lies; deciding them then
 * asks nothing more.  The answers serve until the next look.  Without it
 * (the live stream) each such key is a query of its own.  Both are no-ops
 * where the client orders the key.  Resolve is false after logging.
 */
bool		backfill_filter_look(backfill_filter *f, const uint8_t *data, size_t len);
bool		backfill_filter_look_resolve(backfill_filter *f);

/*
 * After each message: the next ghost change it made, for the caller to
 * record (state_ghost_sql) in the apply's open transaction; false when
 * there is none left.  *key is valid until the next message.
 */
bool		backfill_filter_ghost_change(backfill_filter *f, state_ghost_change *change,
										 const buf **key);

/* Which chunks' snapshots see a transaction: all, some (but not all), or none. */
typedef enum filter_seen_by
{
	FILTER_SEEN_BY_ALL,
	FILTER_SEEN_BY_SOME,
	FILTER_SEEN_BY_NONE
} filter_seen_by;

filter_seen_by backfill_filter_seen_by(const backfill_filter *f, uint32_t xid, lsn_t final_lsn);

/* The largest chunk's WAL position: no chunk sees a transaction committed after it. */
lsn_t		backfill_filter_retire_lsn(const backfill_filter *f);

/*
 * Whether the shadow is consistent once every transaction that committed
 * before position has been applied: no chunk's snapshot sees beyond it.
 */
bool		backfill_filter_settled(const backfill_filter *f, lsn_t position);

#endif
