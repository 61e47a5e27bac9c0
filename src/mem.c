/* mem.c: allocation that never returns NULL; see mem.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgrepart/mem.h"

static void
mem_out_of_memory(void)
{
	fputs("pgrepart: error: out of memory\n", stderr);
	exit(1);
}

void *
xmalloc(size_t size)
{
	void	   *p = malloc(size ? size : 1);

	if (p == NULL)
		mem_out_of_memory();
	return p;
}

void *
xcalloc(size_t count, size_t size)
{
	void	   *p = calloc(count ? count : 1, size ? size : 1);

	if (p == NULL)
		mem_out_of_memory();
	return p;
}

void *
xrealloc(void *ptr, size_t size)
{
	void	   *p = realloc(ptr, size ? size : 1);

	if (p == NULL)
		mem_out_of_memory();
	return p;
}

char *
xstrdup(const char *s)
{
	char	   *p = strdup(s);

	if (p == NULL)
		mem_out_of_memory();
	return p;
}

char *
xstrdup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}
