/*
 * clock.h: time as pgrepart measures it.
 *
 * Commit times in the stream and in the server's functions count
 * microseconds from PostgreSQL's epoch (2000-01-01 00:00 UTC); intervals
 * (progress, lock holds, timeouts) use a monotonic clock that a change of
 * the wall clock cannot move.
 */
#ifndef PGREPART_CLOCK_H
#define PGREPART_CLOCK_H

#include <stdint.h>

/* Microseconds since 2000-01-01 00:00 UTC, PostgreSQL's timestamp epoch. */
int64_t		clock_pg_now(void);
/* Microseconds of a monotonic clock, for intervals. */
int64_t		clock_monotonic_us(void);

#endif
