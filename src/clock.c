/* clock.c: the wall clock in PostgreSQL's epoch, and a monotonic one; see clock.h. */
#include <time.h>

#include "pgrepart/clock.h"

/* Seconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define PG_EPOCH_OFFSET_SECS INT64_C(946684800)

int64_t
clock_pg_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t) ts.tv_sec - PG_EPOCH_OFFSET_SECS) * 1000000 + ts.tv_nsec / 1000;
}

int64_t
clock_monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
