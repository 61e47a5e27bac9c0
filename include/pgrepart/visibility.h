/*
 * visibility.h: the backfill's visibility rule, as pure functions.
 *
 * The backfill copies each key range (a chunk) under its own snapshot; a
 * streamed change to a key is skipped when its transaction is visible in the
 * snapshot of the chunk that key falls in (the chunk already holds it), and
 * applied otherwise.  docs/design.md, "Backfill without a long-held
 * snapshot", argues why.  This module answers the two questions the rule
 * asks: which chunk holds a key (keys compared on the client, in the
 * server's order, from their binary form) and whether a transaction is
 * visible in a snapshot (32-bit xids from the stream widened to full xids).
 */
#ifndef PGREPART_VISIBILITY_H
#define PGREPART_VISIBILITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* A snapshot as pg_current_snapshot() gives it: full (epoch-qualified) xids. */
typedef struct visibility_snapshot
{
	uint64_t	xmin;
	uint64_t	xmax;
	uint64_t   *xip;			/* in progress, ascending; owned */
	int			nxip;
} visibility_snapshot;

/*
 * Parse pg_current_snapshot()'s text form "xmin:xmax:xip,xip,...".  False
 * (and *s untouched) on anything else.
 */
bool		visibility_parse_snapshot(const char *text, visibility_snapshot *s);
void		visibility_snapshot_free(visibility_snapshot *s);

/*
 * The full xid of a 32-bit xid seen in the stream, taking the epoch from a
 * full xid known to be near it (a snapshot's xmax): the stream only carries
 * transactions within 2^31 of any live snapshot.
 */
uint64_t	visibility_widen_xid(uint32_t xid, uint64_t near);

/* Whether a committed transaction's effects are visible in the snapshot. */
bool		visibility_visible(const visibility_snapshot *s, uint32_t xid);

/* Whether the client can order values of this type (OID) from their binary form. */
bool		visibility_orderable_type(Oid type);

/*
 * Compare two binary values of an orderable type the way the server's
 * default btree operator class orders them: <0, 0 or >0.
 */
int			visibility_compare(Oid type, const uint8_t *a, uint32_t alen,
							   const uint8_t *b, uint32_t blen);

/* A composite key: nkeys binary values of the given types, compared in order. */
int			visibility_compare_key(int nkeys, const Oid *types,
								   const uint8_t *const *a, const uint32_t *alens,
								   const uint8_t *const *b, const uint32_t *blens);

#endif
