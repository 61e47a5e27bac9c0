/*
 * mem.h: allocation that never returns NULL.
 *
 * pgrepart cannot do anything useful once malloc fails, so these print one
 * line and exit(1), like PostgreSQL's pg_malloc.  Everything they return is
 * owned by the caller and released with free().
 */
#ifndef PGREPART_MEM_H
#define PGREPART_MEM_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
/* xstrdup, or NULL for NULL. */
char *xstrdup_or_null(const char *s);

/* Append one pointer-sized item to a growable array; *count is updated. */
#define ARRAY_PUSH(array, count, item) \
	do { \
		(array) = xrealloc((array), sizeof(*(array)) * ((count) + 1)); \
		(array)[(count)++] = (item); \
	} while (0)

#endif
