/* lsn.c: WAL positions and clocks; see lsn.h. */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "pgrepart/lsn.h"

/* Seconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define PG_EPOCH_OFFSET_SECS INT64_C(946684800)

bool
lsn_parse(const char *text, lsn_t *out)
{
	unsigned int hi, lo;
	int			consumed = 0;

	if (text == NULL || sscanf(text, "%X/%X%n", &hi, &lo, &consumed) != 2 ||
		text[consumed] != '\0')
		return false;
	*out = ((lsn_t) hi << 32) | lo;
	return true;
}

char *
lsn_format(lsn_t lsn, char *out)
{
	snprintf(out, LSN_TEXT_SIZE, "%X/%X", (unsigned int) (lsn >> 32), (unsigned int) lsn);
	return out;
}

int64_t
lsn_now_pg_time(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t) ts.tv_sec - PG_EPOCH_OFFSET_SECS) * 1000000 + ts.tv_nsec / 1000;
}

int64_t
lsn_monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
