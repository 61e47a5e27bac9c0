/*
 * relation.h: a stream's relation against the table it was read for.
 *
 * The decoder's side of a schema change: both the spool and the apply hold
 * the shadow's columns and must stop when the source's Relation message
 * says the table changed under them.
 */
#ifndef PGREPART_RELATION_H
#define PGREPART_RELATION_H

#include <stdbool.h>

#include <postgres_ext.h>

#include "pgrepart/pgout.h"

/*
 * Whether a Relation message carries exactly these columns (names and type
 * OIDs, in order); if not, logs which column was added, dropped, renamed or
 * retyped, with what to do.
 */
bool		relation_matches(const pgout_relation *rel, char *const *names, const Oid *types,
							 int ncolumns);

#endif
