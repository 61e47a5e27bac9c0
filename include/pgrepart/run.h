/*
 * run.h: pgrepart run, the migration driver.
 *
 * Phases (state.h): plan and record the migration, create the publication
 * and the shadow with its partitions (prepared); create the slot and copy
 * the rows under its exported snapshot (copied); build keys and indexes
 * (indexed); then apply the stream from the slot's consistent point, or
 * from the origin's progress on a resumed run (streaming), until stopped.
 * Each phase commits with its state row, so running the same command again
 * after a stop or a crash continues from the last finished phase.
 */
#ifndef PGREPART_RUN_H
#define PGREPART_RUN_H

#include <signal.h>
#include <stdbool.h>

#include "pgrepart/cutover.h"
#include "pgrepart/plan.h"
#include "pgrepart/report.h"
#include "pgrepart/throttle.h"

typedef enum run_result
{
	RUN_DONE,					/* finished */
	RUN_STOPPED,				/* stopped on request; run again to resume */
	RUN_BLOCKED,				/* the plan has blocking findings */
	RUN_DIFFERENT,				/* the check before the swap found a difference */
	RUN_USAGE,					/* --interval is not a valid width for the column; logged */
	RUN_FAILED					/* logged */
} run_result;

typedef struct run_options
{
	int			batch_transactions; /* source transactions per target commit */
	int			copy_threshold; /* runs of at least this many inserts go by COPY; 0: the apply's default */
	int			chunk_rows;		/* backfill rows per chunk; 0: adapt to about 1 s */
	int			rate;			/* backfill rows per second at most; 0 none, -1 as recorded */
	int			progress_seconds;	/* how often to log progress */
	int			jobs;			/* sessions building indexes at once (build.h) */
	throttle_limits limits;		/* the source's health (throttle.h) */
	bool		terminal;		/* a progress line on stderr */
	bool		json;			/* progress events as JSON lines on stdout */
	int			max_reconnects; /* in a row, before giving up */
	bool		cutover_manual; /* wait for "pgrepart cutover" instead of swapping when synced */
	bool		skip_verify;	/* swap without the live verification before it */
	cutover_options cutover;
	volatile sig_atomic_t *stop;	/* set by a signal handler: stop cleanly */
	const char *report_path;	/* --report: the JSON report, or NULL */
	report	   *report;			/* filled as the run goes */
} run_options;

/* Whether the operator asked the run to stop (a signal set ro->stop). */
bool		run_stop_requested(const run_options *ro);

run_result	run_migration(const char *conninfo, const char *schema, const char *table,
						  const plan_options *po, const run_options *ro);

#endif
