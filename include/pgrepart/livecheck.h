/*
 * livecheck.h: a live verification of a running migration, both ends of
 * the pgrepart.verification exchange (docs/design.md, "Verify").
 *
 * "pgrepart verify -t TABLE" writes a request row and waits; the run that
 * streams the migration polls for requests, creates a temporary slot whose
 * exported snapshot fixes a consistent point P, applies up to P exactly,
 * compares the shadow with the source read under that snapshot while the
 * main stream waits, and writes the outcome into the request's row.
 */
#ifndef PGREPART_LIVECHECK_H
#define PGREPART_LIVECHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "pgrepart/apply.h"
#include "pgrepart/db.h"
#include "pgrepart/state.h"
#include "pgrepart/stream.h"
#include "pgrepart/verify.h"

/*
 * A live verification under way in a streaming session: a temporary slot's exported snapshot fixes a consistent point
 * P; the apply goes on up to P exactly, then stops while the shadow is
 * compared with the source read under that snapshot.
 */
typedef struct livecheck
{
	int64_t		request;		/* pgrepart.verification id; 0 when none */
	stream		slot;			/* the temporary slot's connection: keeps the snapshot */
	char	   *snapshot;
	lsn_t		point;			/* P: the slot's consistent point */
	int64_t		next_poll_us;
} livecheck;

/*
 * Look for a verification request every few seconds; for one, commit what
 * is applied (the slot's creation waits for open transactions, ours too)
 * and create the temporary slot.  False only when the control connection
 * fails.
 */
bool		livecheck_poll(livecheck *c, db *control, const char *conninfo, const state_migration *m,
						   apply *a, stream *s, int64_t now);

/* The apply stands exactly at c->point: compare, record the outcome, resume. */
bool		livecheck_compare(livecheck *c, db *control, const char *conninfo,
							  const state_migration *m, apply *a, stream *s);

/* Drop the temporary slot and forget the request. */
void		livecheck_close(livecheck *c);

/*
 * The client's side: ask the run streaming the migration of schema.table
 * (schema NULL: the search path) to compare at a consistent point, wait for
 * it, and print its report (JSON when json) to out.  Fails when no run is
 * streaming.
 */
verify_result livecheck_request(const char *conninfo, const char *schema, const char *table,
								bool json, FILE *out);

#endif
