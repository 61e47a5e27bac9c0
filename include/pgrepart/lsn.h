/* lsn.h: WAL positions (XLogRecPtr) and PostgreSQL's timestamp epoch. */
#ifndef PGREPART_LSN_H
#define PGREPART_LSN_H

#include <stdbool.h>
#include <stdint.h>

typedef uint64_t lsn_t;

#define LSN_INVALID ((lsn_t) 0)
/* "X/Y" plus NUL */
#define LSN_TEXT_SIZE 20

/* Parse "16/B374D848"; false on anything else. */
bool		lsn_parse(const char *text, lsn_t *out);
/* Format into out (LSN_TEXT_SIZE bytes); returns out. */
char	   *lsn_format(lsn_t lsn, char *out);

/* Microseconds since 2000-01-01 00:00 UTC, PostgreSQL's timestamp epoch. */
int64_t		lsn_now_pg_time(void);
/* Microseconds of a monotonic clock, for intervals. */
int64_t		lsn_monotonic_us(void);

#endif
