/*
 * plan.h: what a migration of one table will do, and whether it can.
 *
 * A plan holds the source table's catalog, the shadow table's DDL (split by
 * phase, so the backfill can create the bare table first and the keys and
 * indexes after the copy), the partitions, and every preflight finding.
 * Building a plan reads the catalogs and the partition column's min/max and
 * changes nothing.
 *
 * The shadow follows the user's rules (docs/plan.md): same columns; PARTITION
 * BY RANGE on the partition column; the primary key and every unique
 * constraint or index widened with that column; other indexes, checks and
 * outgoing foreign keys recreated.  Shadow-only names (the table, its keys
 * and indexes) end in PLAN_SHADOW_SUFFIX until the cutover renames them;
 * partitions carry their final names from the start.
 */
#ifndef PGREPART_PLAN_H
#define PGREPART_PLAN_H

#include <stdbool.h>
#include <stdio.h>

#include "pgrepart/catalog.h"
#include "pgrepart/db.h"
#include "pgrepart/partition.h"

#define PLAN_SHADOW_SUFFIX "_pgrepart"

typedef enum finding_level
{
	FINDING_PASS,
	FINDING_WARN,
	FINDING_BLOCK
} finding_level;

typedef struct plan_finding
{
	finding_level level;
	char	   *check;			/* short stable id, e.g. "wal_level" */
	char	   *message;		/* one line: what was found */
	char	   *hint;			/* what to do, or NULL */
} plan_finding;

typedef enum plan_phase
{
	PLAN_PHASE_TABLE,			/* the partitioned table, before the copy */
	PLAN_PHASE_PARTITION,		/* its partitions, before the copy */
	PLAN_PHASE_INDEX,			/* primary key and other indexes, after the copy */
	PLAN_PHASE_UNIQUE,			/* unique constraints and indexes, once the shadow is consistent */
	PLAN_PHASE_FOREIGN_KEY,		/* outgoing foreign keys, after the indexes */
	PLAN_PHASE_COMMENT
} plan_phase;

typedef struct plan_statement
{
	plan_phase	phase;
	char	   *sql;			/* one statement, ending in ';' */

	/*
	 * An index or key the run builds one partition at a time: each
	 * partition's statement is each_head, the partition's qualified name,
	 * each_tail; sql, run last on the parent, adopts what they built.  NULL
	 * for other statements.
	 */
	char	   *each_head;
	char	   *each_tail;
} plan_statement;

/* Which plan_options the user gave, not defaulted: a resumed run checks them. */
#define PLAN_GIVEN_INTERVAL 0x1
#define PLAN_GIVEN_PREMAKE  0x2
#define PLAN_GIVEN_DEFAULT  0x4
#define PLAN_GIVEN_COPY_ORDER 0x8

/*
 * The order the chunked copy reads the table in (docs/design.md, "The copy
 * in physical order"): ranges of heap pages, each page read once whatever
 * the key, or ranges of the key, the index's order.
 */
typedef enum plan_copy_order
{
	PLAN_COPY_PHYSICAL,
	PLAN_COPY_KEY
} plan_copy_order;

const char *plan_copy_order_name(plan_copy_order order);

typedef struct plan_options
{
	const char *partition_column;
	const char *interval;		/* default "3 months" */
	int			premake;		/* future partitions beyond now; default 4 */
	bool		default_partition;	/* default true: --no-default-partition */
	int			rate;			/* rows per second the copy will take, for the estimate; 0 none */
	plan_copy_order copy_order; /* default physical */
	unsigned	given;			/* PLAN_GIVEN_* */
} plan_options;

typedef struct plan
{
	catalog_table *table;
	char	   *partition_column;
	char	   *interval;
	int			premake;		/* as planned, recorded with the migration */
	int			rate;			/* plan_options' */
	plan_copy_order copy_order; /* as planned, recorded with the migration */
	double		key_correlation;	/* pg_stats' for the key's first column; NAN unknown */
	char	   *shadow_name;
	partition_set partitions;
	plan_finding *findings;
	int			nfindings;
	plan_statement *statements;
	int			nstatements;
} plan;

void		plan_free(plan *p);

/*
 * What a run writes into the source's WAL besides the spool, estimated from
 * the table's size: the copy about 1.2 times the heap and TOAST (record
 * headers, the spool's and chunks' rows), the index build the indexes'
 * size (each built index is logged whole).  docs/operations.md, "What
 * each phase costs the source".
 */
int64_t		plan_estimate_wal(const catalog_table *t);

/*
 * The pure part of preflight_plan, for tests: given p->table, p->partition_column,
 * p->partitions and the encoding for name truncation, set p->shadow_name, the
 * statements, and the findings the table's own structure gives.
 */
void		plan_derive(plan *p, int encoding);

void		plan_add_finding(plan *p, finding_level level, const char *check,
							 const char *hint, const char *fmt,...)
			__attribute__((format(printf, 5, 6)));
int			plan_count_findings(const plan *p, finding_level level);
const char *plan_finding_level_name(finding_level level);
/* "table", "partition", "index", "unique", "foreign_key", "comment": as stored in state. */
const char *plan_phase_name(plan_phase phase);

/* "a, b, c": the names of list, quoted where they need it. */
void		plan_name_list(buf *out, const catalog_object_list *list);

/*
 * Insert ", column" at the end of the first parenthesised column list of a
 * key definition ("UNIQUE (a) INCLUDE (b)" -> "UNIQUE (a, column) INCLUDE
 * (b)"), respecting quoted names.  False when there is no such list.
 */
bool		plan_widen_key(const char *definition, const char *quoted_column, buf *out);

#endif
