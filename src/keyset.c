/* keyset.c: a set of 64-bit key hashes; see keyset.h. */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "pgrepart/keyset.h"
#include "pgrepart/mem.h"

#define KEYSET_INITIAL 2048

uint64_t
keyset_hash(const void *key, size_t len)
{
	return XXH3_64bits(key, len) | 1;
}

bool
keyset_contains(const keyset *k, uint64_t h)
{
	if (k->cap == 0)
		return false;
	for (int i = (int) (h & (uint64_t) (k->cap - 1)); k->slots[i] != 0; i = (i + 1) & (k->cap - 1))
		if (k->slots[i] == h)
			return true;
	return false;
}

void
keyset_add(keyset *k, uint64_t h)
{
	int			i;

	/* Grow at half full, so probes stay short. */
	if (k->cap == 0 || k->count * 2 >= k->cap)
	{
		int			cap = k->cap ? k->cap * 2 : KEYSET_INITIAL;
		keyset		grown = {xcalloc((size_t) cap, sizeof(uint64_t)), cap, 0};

		for (int j = 0; j < k->cap; j++)
			if (k->slots[j] != 0)
				keyset_add(&grown, k->slots[j]);
		free(k->slots);
		*k = grown;
	}
	for (i = (int) (h & (uint64_t) (k->cap - 1)); k->slots[i] != 0; i = (i + 1) & (k->cap - 1))
		if (k->slots[i] == h)
			return;
	k->slots[i] = h;
	k->count++;
}

void
keyset_clear(keyset *k)
{
	if (k->cap > 0)
		memset(k->slots, 0, sizeof(uint64_t) * (size_t) k->cap);
	k->count = 0;
}

void
keyset_free(keyset *k)
{
	if (k == NULL)
		return;
	free(k->slots);
	k->slots = NULL;
	k->cap = k->count = 0;
}
