/*
 * throttle.h: the source's health decides when the copy and the index build
 * go on.
 *
 * Before every chunk and before each partition's index build, the run asks
 * (the server, at most four times a second) whether it may go: not while the migration is paused (pgrepart pause),
 * while a physical standby's replay lags more than the limit or a standby
 * it has seen is gone, while more sessions than --max-load are active, or
 * while --throttle-query returns true.  More active sessions than
 * --critical-load stop the run as a signal would (exit 5, resumable).
 * While throttled the run holds no snapshot and the spooler keeps reading
 * the stream.  The limits live in pgrepart.migration, read at every check,
 * so an UPDATE changes them for a running copy; the reason, since when, and
 * the time throttled in total are written there for pgrepart status.
 * docs/operations.md, "The source's health".
 */
#ifndef PGREPART_THROTTLE_H
#define PGREPART_THROTTLE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "pgrepart/db.h"
#include "pgrepart/report.h"
#include "pgrepart/state.h"

/* A standby lag limit unless the migration was given another. */
#define THROTTLE_DEFAULT_LAG_MS 30000

/* The limits a run was given; a negative number (NULL query) keeps the recorded one, 0 is none. */
typedef struct throttle_limits
{
	int			max_lag_ms;
	int64_t		max_lag_bytes;
	int			max_load;		/* active sessions */
	int			critical_load;	/* active sessions */
	const char *query;			/* "" removes it */
} throttle_limits;

#define THROTTLE_LIMITS_KEEP {-1, -1, -1, -1, NULL}

typedef struct throttle throttle;

/*
 * Record the limits given (see throttle_limits).  A standby or load limit
 * the role cannot see (it needs pg_read_all_stats, which pg_monitor has) is
 * an error: the limit would never hold.
 */
bool		throttle_set_limits(db *d, const state_migration *m, const throttle_limits *l);

/*
 * A throttle for m, checking on d (which must have no transaction open at
 * a check).  r receives the seconds throttled per reason; *stop is set on
 * critical load.  Owned by the caller: throttle_free.
 */
throttle   *throttle_create(db *d, const state_migration *m, report *r,
							volatile sig_atomic_t *stop);
void		throttle_free(throttle *t);

/*
 * Whether work may start now (*go), from a check at most a quarter of a
 * second old.
 * False on a failure.  On critical load *go is false and the run's stop
 * flag is set.
 */
bool		throttle_check(throttle *t, bool *go);

/*
 * Check, and while throttled check again every quarter of a second, calling
 * idle(arg, ms) for the time between (false from it ends the wait with a
 * failure).  Returns when work may go on or a stop is requested; *waited
 * when it was held back.
 */
bool		throttle_wait(throttle *t, bool (*idle) (void *arg, int ms), void *arg,
						  bool *waited);

/*
 * Whether the migration has a load limit in force (--max-load,
 * --critical-load or --throttle-query), read now: the run was asked to give
 * way to the application, and the index build then leaves the server's
 * parallel workers to it.  False after logging.
 */
bool		throttle_load_limited(throttle *t, bool *limited);

/* "replica lag 12 s", "load 45 active sessions", ... while throttled; NULL when not. */
const char *throttle_why(const throttle *t);

/*
 * pgrepart pause / resume: record it in the migration's state, where the
 * run finds it at its next check, and say what it costs.  A resume also
 * takes the standbys connected now as the ones to watch.
 */
bool		throttle_pause(const char *conninfo, const char *schema, const char *table,
						   bool pause);

#endif
