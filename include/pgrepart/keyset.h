/*
 * keyset.h: a set of 64-bit key hashes (open addressing), for "has this key
 * been touched since ...".  Hashes only: a collision makes a key look
 * present, so callers use it where a false "present" costs time, never
 * correctness.
 */
#ifndef PGREPART_KEYSET_H
#define PGREPART_KEYSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct keyset
{
	uint64_t   *slots;			/* 0 marks a free slot */
	int			cap;			/* a power of two, or 0 before the first add */
	int			count;
} keyset;

/* The hash of a key's bytes; never 0. */
uint64_t	keyset_hash(const void *key, size_t len);
bool		keyset_contains(const keyset *k, uint64_t h);
void		keyset_add(keyset *k, uint64_t h);
/* Empty the set, keeping its memory. */
void		keyset_clear(keyset *k);
void		keyset_free(keyset *k);

#endif
