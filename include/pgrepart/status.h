/*
 * status.h: pgrepart status, what the migrations in a database are doing:
 * phase, the slot's retained WAL and lag, the apply's durable progress.
 * Reads only.
 */
#ifndef PGREPART_STATUS_H
#define PGREPART_STATUS_H

#include <stdbool.h>
#include <stdio.h>

#include "pgrepart/db.h"

/*
 * Report the migrations (of schema.table only, when table is not NULL) as
 * text or JSON.  *found tells whether there were any.  False after logging.
 */
bool		status_report(db *d, const char *schema, const char *table, bool json,
						  FILE *out, bool *found);

#endif
