/* checksum.c: row-level comparison of two row streams; see checksum.h. */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "pgrepart/buf.h"
#include "pgrepart/checksum.h"
#include "pgrepart/mem.h"

/* Seeds that keep a NULL, an empty value and a value apart. */
#define CHECKSUM_SEED_VALUE 0x7067726570617274ULL
#define CHECKSUM_NULL_HASH  0x9e3779b97f4a7c15ULL

typedef struct checksum_row
{
	size_t		key_offset;		/* into keys: nkeys NUL-terminated texts */
	size_t		key_len;
	uint64_t	key_hash;
	uint64_t	row_hash;
	bool		seen;
} checksum_row;

struct checksum_rowset
{
	int			nkeys;
	int			ncolumns;
	checksum_report report;
	void	   *arg;

	checksum_row *rows;
	int			count;
	int			cap;
	uint64_t   *column_hashes;	/* count * ncolumns */
	buf			keys;			/* every row's key texts */

	int		   *slots;			/* open addressing: row index + 1, 0 free */
	int			nslots;			/* a power of two */

	/* Scratch for the row being matched. */
	buf			key;
	uint64_t   *hashes;
	int		   *differing;
	const char **key_fields;
};

checksum_rowset *
checksum_rowset_create(int nkeys, int ncolumns, checksum_report report, void *arg)
{
	checksum_rowset *s = xcalloc(1, sizeof(*s));

	s->nkeys = nkeys;
	s->ncolumns = ncolumns;
	s->report = report;
	s->arg = arg;
	buf_init(&s->keys);
	buf_init(&s->key);
	s->hashes = xcalloc((size_t) ncolumns + 1, sizeof(uint64_t));
	s->differing = xcalloc((size_t) ncolumns + 1, sizeof(int));
	s->key_fields = xcalloc((size_t) nkeys + 1, sizeof(char *));
	return s;
}

void
checksum_rowset_free(checksum_rowset *s)
{
	if (s == NULL)
		return;
	free(s->rows);
	free(s->column_hashes);
	free(s->slots);
	free(s->hashes);
	free(s->differing);
	free(s->key_fields);
	buf_free(&s->keys);
	buf_free(&s->key);
	free(s);
}

void
checksum_rowset_reset(checksum_rowset *s)
{
	s->count = 0;
	buf_reset(&s->keys);
	if (s->nslots > 0)
		memset(s->slots, 0, sizeof(int) * (size_t) s->nslots);
}

int
checksum_rowset_count(const checksum_rowset *s)
{
	return s->count;
}

/*
 * Hash the row's columns into s->hashes and its key texts into s->key;
 * returns the row's hash.  False for a malformed row.
 */
static bool
checksum_hash_row(checksum_rowset *s, int nfields, const uint8_t *const *fields,
				  const uint32_t *lens, uint64_t *row_hash)
{
	if (nfields != s->nkeys + s->ncolumns)
		return false;
	buf_reset(&s->key);
	for (int i = 0; i < s->nkeys; i++)
	{
		/* Keys are NOT NULL and text has no NUL bytes: NUL separates them. */
		if (fields[i] == NULL || memchr(fields[i], '\0', lens[i]) != NULL)
			return false;
		buf_append_len(&s->key, fields[i], lens[i]);
		buf_append_len(&s->key, "", 1);
	}
	for (int i = 0; i < s->ncolumns; i++)
	{
		const uint8_t *f = fields[s->nkeys + i];

		s->hashes[i] = f == NULL ? CHECKSUM_NULL_HASH :
			XXH64(f, lens[s->nkeys + i], CHECKSUM_SEED_VALUE);
	}
	*row_hash = XXH64(s->hashes, sizeof(uint64_t) * (size_t) s->ncolumns, 0);
	return true;
}

/* Point key_fields at the NUL-separated texts in key. */
static void
checksum_split_key(checksum_rowset *s, const char *key)
{
	for (int i = 0; i < s->nkeys; i++)
	{
		s->key_fields[i] = key;
		key += strlen(key) + 1;
	}
}

static void
checksum_emit(checksum_rowset *s, checksum_kind kind, const char *key, int ncolumns)
{
	checksum_difference d = {kind, s->nkeys, s->key_fields, ncolumns, s->differing};

	checksum_split_key(s, key);
	s->report(s->arg, &d);
}

/* The row with the key in s->key, or -1; *slot is where it is or would go. */
static int
checksum_lookup(const checksum_rowset *s, uint64_t key_hash, int *slot)
{
	int			mask = s->nslots - 1;

	for (int i = (int) (key_hash & (uint64_t) mask);; i = (i + 1) & mask)
	{
		const checksum_row *r;

		if (s->slots[i] == 0)
		{
			*slot = i;
			return -1;
		}
		r = &s->rows[s->slots[i] - 1];
		if (r->key_hash == key_hash && r->key_len == s->key.len &&
			memcmp(s->keys.data + r->key_offset, s->key.data, s->key.len) == 0)
		{
			*slot = i;
			return s->slots[i] - 1;
		}
	}
}

static void
checksum_grow(checksum_rowset *s)
{
	if (s->count == s->cap)
	{
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->rows = xrealloc(s->rows, sizeof(checksum_row) * (size_t) s->cap);
		s->column_hashes = xrealloc(s->column_hashes,
									sizeof(uint64_t) * (size_t) s->cap * (size_t) (s->ncolumns + 1));
	}
	/* Rehash at half full, so probes stay short. */
	if ((s->count + 1) * 2 > s->nslots)
	{
		int			nslots = s->nslots ? s->nslots * 2 : 2048;

		free(s->slots);
		s->slots = xcalloc((size_t) nslots, sizeof(int));
		s->nslots = nslots;
		for (int i = 0; i < s->count; i++)
		{
			int			j = (int) (s->rows[i].key_hash & (uint64_t) (nslots - 1));

			while (s->slots[j] != 0)
				j = (j + 1) & (nslots - 1);
			s->slots[j] = i + 1;
		}
	}
}

bool
checksum_rowset_add_source(checksum_rowset *s, int nfields, const uint8_t *const *fields,
						   const uint32_t *lens)
{
	uint64_t	row_hash, key_hash;
	checksum_row *r;
	int			slot;

	if (!checksum_hash_row(s, nfields, fields, lens, &row_hash))
		return false;
	checksum_grow(s);
	key_hash = XXH3_64bits(s->key.data, s->key.len);
	if (checksum_lookup(s, key_hash, &slot) >= 0)
	{
		checksum_emit(s, CHECKSUM_DUPLICATE_SOURCE, s->key.data, 0);
		return true;
	}
	r = &s->rows[s->count];
	r->key_offset = s->keys.len;
	r->key_len = s->key.len;
	r->key_hash = key_hash;
	r->row_hash = row_hash;
	r->seen = false;
	buf_append_len(&s->keys, s->key.data, s->key.len);
	memcpy(s->column_hashes + (size_t) s->count * (size_t) s->ncolumns, s->hashes,
		   sizeof(uint64_t) * (size_t) s->ncolumns);
	s->slots[slot] = ++s->count;
	return true;
}

bool
checksum_rowset_match_target(checksum_rowset *s, int nfields, const uint8_t *const *fields,
							 const uint32_t *lens)
{
	uint64_t	row_hash;
	checksum_row *r;
	int			slot, i;

	if (!checksum_hash_row(s, nfields, fields, lens, &row_hash))
		return false;
	if (s->nslots == 0 ||
		(i = checksum_lookup(s, XXH3_64bits(s->key.data, s->key.len), &slot)) < 0)
	{
		checksum_emit(s, CHECKSUM_EXTRA, s->key.data, 0);
		return true;
	}
	r = &s->rows[i];
	if (r->seen)
		checksum_emit(s, CHECKSUM_DUPLICATE_TARGET, s->key.data, 0);
	else if (r->row_hash != row_hash)
	{
		const uint64_t *source = s->column_hashes + (size_t) i * (size_t) s->ncolumns;
		int			n = 0;

		for (int c = 0; c < s->ncolumns; c++)
			if (source[c] != s->hashes[c])
				s->differing[n++] = c;
		checksum_emit(s, CHECKSUM_DIFFERENT, s->key.data, n);
	}
	r->seen = true;
	return true;
}

void
checksum_rowset_finish(checksum_rowset *s)
{
	for (int i = 0; i < s->count; i++)
		if (!s->rows[i].seen)
			checksum_emit(s, CHECKSUM_MISSING, s->keys.data + s->rows[i].key_offset, 0);
}
