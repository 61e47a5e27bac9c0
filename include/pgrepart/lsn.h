/* lsn.h: WAL positions (XLogRecPtr), read and written as "X/Y". */
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
/* "X/Y" for a message: a buffer that lives until the end of the enclosing block. */
#define LSN_TEXT(lsn) lsn_format((lsn), (char[LSN_TEXT_SIZE]) {0})

#endif
