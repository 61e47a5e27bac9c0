/*
 * reconcile.h: the keys a copy in physical order cannot vouch for
 * (docs/design.md, "The copy in physical order").
 *
 * Chunks of heap pages do not partition the keys: a row updated during the
 * copy has versions on pages of different chunks, so the shadow can hold
 * it twice, or not at all.  Only rows changed by a transaction some chunks'
 * snapshots see and others do not are affected, and every such transaction
 * committed before the last chunk's WAL position, so it is in the spool by
 * the end of the copy.  reconcile_prepare records the key of each of their
 * changes, in table pgrepart.reconcile_<migration id> (the key's columns in
 * their own types, the transaction's commit position, the change's number
 * in it), and deletes those keys from the shadow, one partition per
 * transaction.  The apply then rebuilds each such row from its first
 * change of that kind (backfill_filter.h), and the table tells the filter
 * which change is the first.  The table goes when the shadow is
 * consistent, or with the migration.
 */
#ifndef PGREPART_RECONCILE_H
#define PGREPART_RECONCILE_H

#include <signal.h>
#include <stdbool.h>

#include "pgrepart/buf.h"
#include "pgrepart/catalog.h"
#include "pgrepart/db.h"
#include "pgrepart/spool.h"
#include "pgrepart/state.h"

/* "pgrepart.reconcile_<id>", quoted. */
void		reconcile_table(buf *out, const state_migration *m);
/* The key's columns, quoted, each after prefix ("r." or ""), comma-separated: the table's columns. */
void		reconcile_key_list(buf *out, const catalog_table *t, const char *prefix);

/*
 * After the last chunk: spool the stream up to the chunks' last WAL
 * position, record the keys, delete them from the shadow.  d is a source
 * connection.  Running it again before the apply has started (a run
 * stopped in the middle) does the same again.  True with *truncated set,
 * doing nothing, when the stream brings a TRUNCATE of the table first (the
 * caller starts the copy over); false after logging, or when stop was set
 * (*stopped).  *changes and *rows count the changes recorded and the
 * shadow's rows deleted.
 */
bool		reconcile_prepare(db *d, const char *conninfo, const catalog_table *t,
							  const state_migration *m, spool *sp,
							  const volatile sig_atomic_t *stop, bool *stopped, bool *truncated,
							  int64_t *changes, int64_t *rows);

/* Drop the table, in d's open transaction (not outside one), if it is there. */
bool		reconcile_drop(db *d, const state_migration *m);

#endif
