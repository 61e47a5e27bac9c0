/* lsn.c: WAL positions; see lsn.h. */
#include <inttypes.h>
#include <stdio.h>

#include "pgrepart/lsn.h"

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
