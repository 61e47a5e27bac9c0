/*
 * build.h: the shadow's indexes and keys, one partition at a time.
 *
 * One CREATE INDEX on a partitioned table builds every partition's index
 * in one transaction, which holds its snapshot, and so vacuum's horizon,
 * for as long as the whole build takes: the very thing the chunked copy
 * avoids.  Instead each partition's index is built in a transaction of its
 * own, recorded in pgrepart.built in the same transaction, on up to jobs
 * sessions at once; the statement on the parent, run afterwards by the
 * caller, then only adopts them (PostgreSQL attaches a partition's
 * matching index instead of building another).  docs/design.md, "Indexes
 * without a long transaction".
 */
#ifndef PGREPART_BUILD_H
#define PGREPART_BUILD_H

#include <signal.h>
#include <stdbool.h>

#include "pgrepart/db.h"
#include "pgrepart/plan.h"
#include "pgrepart/state.h"

/* The most sessions a build opens by default (--jobs can ask for more). */
#define BUILD_MAX_DEFAULT_JOBS 4

typedef struct build_options
{
	int			jobs;			/* sessions building at once; 0: build_default_jobs */
	/* Called about every 100 ms while partitions build; false stops the build. */
	bool		(*tick) (void *arg);

	/*
	 * Whether another partition may start now (*start); false on a failure
	 * or a stop, which ends the build.  NULL: always.
	 */
	bool		(*may_start) (void *arg, bool *start);
	void	   *arg;
	volatile sig_atomic_t *stop;	/* set by a signal handler: stop the build */
	bool		no_workers;		/* no parallel workers, even for one session */
} build_options;

/*
 * Build, on each partition of m's shadow, phase's indexes and keys that are
 * not recorded as built there yet, each in a transaction of its own on one
 * of o->jobs sessions of their own.  Partitions go largest first, so that
 * the sessions finish together.  On failure or a stop the builds under way
 * roll back (their sessions close) and what committed stays recorded, for
 * the next run to skip.
 */
bool		build_partitions(db *d, const char *conninfo, const state_migration *m,
							 plan_phase phase, const build_options *o);

/*
 * The sessions a build uses when --jobs is not given: the server's
 * max_parallel_maintenance_workers (what its operator lets one index build
 * use), at least 1 and at most BUILD_MAX_DEFAULT_JOBS.
 */
bool		build_default_jobs(db *d, int *jobs);

#endif
