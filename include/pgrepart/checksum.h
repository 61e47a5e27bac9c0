/*
 * checksum.h: row-level comparison of two ordered row streams, the pure part
 * of verification.
 *
 * Whole chunks are compared by an XXH3-128 digest of their binary COPY bytes
 * (the verify module hashes those as they arrive).  When two chunks differ,
 * the rows of a small key range are compared here: each row arrives as
 * binary COPY fields, the key columns first (as text, so they can be shown)
 * and then the compared columns.  Every column is hashed with XXH64 (NULL
 * and the empty value hash differently), and the row's hash is the hash of
 * its column hashes.  Source rows go into a table keyed by the key text;
 * target rows are looked up in it as they stream past, so only the source
 * side is held in memory.
 *
 * Differences are handed to a callback as they are found; the key fields
 * and column list passed to it stay valid only during the call.
 */
#ifndef PGREPART_CHECKSUM_H
#define PGREPART_CHECKSUM_H

#include <stdbool.h>
#include <stdint.h>

typedef enum checksum_kind
{
	CHECKSUM_MISSING,			/* in the source, not in the target */
	CHECKSUM_EXTRA,				/* in the target, not in the source */
	CHECKSUM_DIFFERENT,			/* in both, with different values */
	CHECKSUM_DUPLICATE_SOURCE,	/* the key occurs twice in the source */
	CHECKSUM_DUPLICATE_TARGET	/* ... in the target */
} checksum_kind;

typedef struct checksum_difference
{
	checksum_kind kind;
	int			nkeys;
	const char *const *key;		/* nkeys NUL-terminated texts */
	int			ncolumns;		/* CHECKSUM_DIFFERENT: the columns that differ */
	const int  *columns;		/* indexes into the compared columns */
} checksum_difference;

typedef void (*checksum_report) (void *arg, const checksum_difference *d);

typedef struct checksum_rowset checksum_rowset;

/* A row set for rows of nkeys key texts followed by ncolumns values. */
checksum_rowset *checksum_rowset_create(int nkeys, int ncolumns, checksum_report report,
										void *arg);
void		checksum_rowset_free(checksum_rowset *s);
/* Forget the rows, keeping the memory, for the next key range. */
void		checksum_rowset_reset(checksum_rowset *s);
int			checksum_rowset_count(const checksum_rowset *s);

/*
 * Add a source row, or match a target row against the source rows.  fields
 * and lens as copybin_read_row returns them (a NULL field is SQL NULL); a
 * row with the wrong field count or a NULL key is a caller's bug and is
 * refused with false.
 */
bool		checksum_rowset_add_source(checksum_rowset *s, int nfields, const uint8_t *const *fields,
									   const uint32_t *lens);
bool		checksum_rowset_match_target(checksum_rowset *s, int nfields,
										 const uint8_t *const *fields, const uint32_t *lens);
/* Report every source row no target row matched. */
void		checksum_rowset_finish(checksum_rowset *s);

#endif
