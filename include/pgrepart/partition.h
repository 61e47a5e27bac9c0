/*
 * partition.h: range partitions for a column at an interval, and their names.
 *
 * Names follow the user's convention (seed note): the final table's name and
 * the start of the range, "chat_messages_2024_q1" for quarters,
 * "_2024_01" for months, "_2024" for years, "_2024_01_15" for days and weeks,
 * "_2024_01_15_0600" below a day, "_p1000000" for integer ranges ("_m" for
 * negative starts), "_default" for the DEFAULT partition.
 *
 * Time bounds are aligned with date_trunc on the interval's unit (a
 * timestamptz column in the session's TimeZone) and computed by the server,
 * so calendar arithmetic is PostgreSQL's own.
 */
#ifndef PGREPART_PARTITION_H
#define PGREPART_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgrepart/buf.h"
#include "pgrepart/catalog.h"
#include "pgrepart/db.h"

/*
 * SQL for a CTE "b" with one row per partition of the partitioned table
 * given as a %text parameter: m[1] and m[2] hold a range partition's FROM
 * and TO bounds as text (m is NULL otherwise), d is true for the DEFAULT
 * partition.  Written for buf_appendf formats: its % is doubled.
 */
#define PARTITION_BOUNDS_CTE \
	"b AS (SELECT pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid), " \
	"    '^FOR VALUES FROM \\(''?([^'']*)''?\\) TO \\(''?([^'']*)''?\\)$') AS m, " \
	"    pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS d, c.oid AS leaf " \
	"  FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid " \
	"  WHERE i.inhparent = %%text::pg_catalog.regclass)"

/* More partitions than this is a mistake in the interval, not a plan. */
#define PARTITION_MAX_COUNT 10000

typedef enum partition_kind
{
	PARTITION_YEAR,
	PARTITION_QUARTER,
	PARTITION_MONTH,
	PARTITION_DAY,				/* whole days, weeks included */
	PARTITION_TIME,				/* below a day */
	PARTITION_INTEGER
} partition_kind;

typedef struct partition_scheme
{
	partition_kind kind;
	const char *trunc_unit;		/* date_trunc unit that aligns the first bound */
	int64_t		step;			/* PARTITION_INTEGER only */
} partition_scheme;

/* Where a time partition starts, as the server printed its fields. */
typedef struct partition_start
{
	int			year, month, day, hour, minute, quarter;
	int64_t		integer;		/* PARTITION_INTEGER only */
} partition_start;

typedef struct partition_bound
{
	char	   *name;
	char	   *from;			/* the column type's text form; NULL for DEFAULT */
	char	   *to;
	bool		is_default;
	int64_t		binary_from;	/* from partition_extend_to_value: */
	int64_t		binary_to;		/* the bounds' binary forms, as that value's */
} partition_bound;

typedef struct partition_set
{
	partition_scheme scheme;
	partition_bound *items;
	int			count;
	char	   *min_value;		/* current min/max of the column; NULL when empty */
	char	   *max_value;
	bool		min_max_indexed;	/* an index leads with the column */
	bool		has_infinite;	/* the column holds -infinity or infinity */
	int			far_ranges;		/* ranges holding rows far from the rest, left to DEFAULT */
	bool		bad_interval;	/* partition_compute failed on the interval itself (logged) */
} partition_set;

/*
 * Decide the scheme from an interval's months, days and microseconds (for
 * time columns) or from an integer step.  False with errbuf set when the
 * interval mixes units or is not positive.
 */
bool		partition_scheme_for_interval(partition_scheme *s, int months, int days,
										  int64_t micros, char *errbuf, size_t errlen);
/* The name suffix for a partition starting at start, e.g. "_2024_q1". */
void		partition_suffix(buf *out, const partition_scheme *s, const partition_start *start);

/*
 * Read the column's min and max from the table and compute partitions that
 * cover them, up to the one holding now() (or the max, if later), plus
 * premake more, plus DEFAULT when asked.  Logs and returns false on failure.
 */
bool		partition_compute(db *d, const catalog_table *t, const catalog_column *column,
							  const char *interval, int premake, bool with_default,
							  partition_set *out);
void		partition_set_free(partition_set *set);

/* A partitioned table to extend, and how its new partitions are made. */
typedef struct partition_target
{
	const char *schema;
	const char *table_name;		/* new partitions are named after it */
	const char *qparent;		/* the partitioned table, quoted and qualified */
	const char *column;			/* the partition column */
	Oid			type;			/* its type */
	const char *interval;		/* how wide a new partition is */
} partition_target;

/*
 * Create the partitions of t->qparent that reach a partition column value
 * beyond the range the existing range partitions cover: each as wide as
 * t->interval, next to the last one, named after t->table_name.  Nothing is
 * created when the value is covered.  *created lists what was created.  Logs
 * and returns false on failure; a DEFAULT partition holding rows of a range
 * to create fails the call with nothing created.
 *
 * The value as text, of the column's type; the covered range is read from
 * the catalog.
 */
bool		partition_extend_to_text(db *d, const partition_target *t, const char *value,
									 partition_set *created);

/*
 * The same for a value in its binary form as int64 (microseconds since
 * 2000-01-01 for timestamps, days for dates, the number for integers), with
 * the covered range [covered[0], covered[1]) as the caller knows it (which
 * spares reading every partition's bounds; the caller also knows there is
 * no DEFAULT partition).  created's bounds carry binary_from and binary_to.
 */
bool		partition_extend_to_value(db *d, const partition_target *t, int64_t value,
									  const int64_t covered[2], partition_set *created);

/*
 * Give every partition of qparent (quoted, qualified) the parent's replica
 * identity where it differs: FULL, NOTHING, or the partition's index that is
 * attached to the parent's identity index.  partition_extend does it for the
 * partitions it creates; the cutover for all.
 */
bool		partition_sync_identity(db *d, const char *qparent);

/*
 * SQL for the binary form, as an int8, of value (SQL of the partition
 * column's type type): what partition_extend takes as a binary value.
 * False for a type that has none.
 */
bool		partition_binary_expression(Oid type, const char *value, buf *out);

/* Whether the column's base type can be partitioned by an interval. */
bool		partition_type_supported(const catalog_column *column);

/*
 * Create the shadow's partitions (and log them) for schema.table's current
 * min and max of column, in the caller's snapshot: rows may have gone
 * beyond the planned partitions since the plan read the range.
 * *ncreated (when given) says how many were created.
 */
bool		partition_cover_range(db *d, const char *schema, const char *table, const char *shadow,
								  const char *column, const char *interval, int *ncreated);

/*
 * "pgrepart partitions": create the partitions of a range-partitioned table
 * (schema NULL: the search path) up to ahead widths beyond now (times) or
 * beyond its largest value (integers).  The width is interval, else the one
 * pgrepart recorded for the table.  Idempotent.  *ncreated says how many.
 */
bool		partition_ahead(db *d, const char *schema, const char *table, const char *interval,
							int ahead, int *ncreated);

#endif
