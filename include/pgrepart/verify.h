/*
 * verify.h: compare two tables by checksums and name the rows that differ.
 *
 * Both tables are read at once, on two connections, each sequentially in
 * whatever order its rows lie: COPY (SELECT <columns matched by name>, <key
 * as text>) TO STDOUT (FORMAT binary).  Every row goes into the bucket its
 * key hashes to (about chunk_rows source rows a bucket), which adds the
 * row's XXH3-128 hash into a 128-bit sum and counts it; a row has the same
 * bucket on both sides, so a row missing, extra or different changes that
 * bucket's sum or count.  The buckets that differ are read again, in passes
 * of bounded memory, and their rows compared one by one (checksum.h) to
 * name the keys missing, extra or different, and for a different row its
 * columns.  docs/design.md, "Verification", argues why this finds every
 * difference.
 *
 * Columns are matched by name, so column order and physical layout do not
 * matter; a column only one table has, or whose types differ, is reported
 * as a difference and left out of the row comparison.
 */
#ifndef PGREPART_VERIFY_H
#define PGREPART_VERIFY_H

#include <stdbool.h>
#include <stdio.h>

typedef struct verify_options
{
	const char *source_conninfo;
	const char *target_conninfo;	/* NULL: the source's database */
	const char *source_schema;	/* NULL: found on the search path */
	const char *source_table;
	const char *target_schema;
	const char *target_table;
	char	  **key;			/* NULL: the source's primary key */
	int			nkey;
	const char *where;			/* SQL condition for both tables, or NULL */
	int			chunk_rows;
	int			max_differences;	/* rows listed in the report */
	bool		json;
	bool		progress;		/* a progress line on stderr */

	/* For a live verification inside a run: */
	const char *source_snapshot;	/* read the source under this exported snapshot */
	FILE	   *json_out;		/* also print the JSON report here */
	void		(*tick) (void *arg);	/* called about once a second while reading */
	void	   *tick_arg;
} verify_options;

typedef enum verify_result
{
	VERIFY_EQUAL,
	VERIFY_DIFFERENT,
	VERIFY_FAILED				/* logged */
} verify_result;

/*
 * Compare and print the report to out (text, or JSON with o->json; and JSON
 * to o->json_out as well when set).
 */
verify_result verify_tables(const verify_options *o, FILE *out);

#endif
