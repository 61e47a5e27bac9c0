/*
 * catalog.h: what the server's catalogs say about one table.
 *
 * catalog_read fills a catalog_table from the source database; everything in
 * it is owned by the table and released by catalog_table_free.  Names are
 * stored unquoted, as the catalogs hold them; definitions (constraints,
 * indexes, triggers, ...) are the server's own pg_get_*def text, read under
 * an empty search_path so every name in them is schema-qualified.
 *
 * Reading changes nothing and takes only AccessShareLock-free catalog reads
 * (plus min/max of the partition column, done by the plan module).
 */
#ifndef PGREPART_CATALOG_H
#define PGREPART_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "pgrepart/buf.h"

#include "pgrepart/db.h"

/* Built-in type OIDs pgrepart reasons about (pg_type.dat). */
#define CATALOG_INT2OID        21
#define CATALOG_INT4OID        23
#define CATALOG_INT8OID        20
#define CATALOG_DATEOID        1082
#define CATALOG_TIMESTAMPOID   1114
#define CATALOG_TIMESTAMPTZOID 1184
#define CATALOG_INT4ARRAYOID   1007
#define CATALOG_PG_LSNOID      3220
#define CATALOG_PG_LSNARRAYOID 3221

typedef struct catalog_column
{
	int			attnum;
	char	   *name;
	char	   *type;			/* format_type(): with typmod, qualified */
	Oid			base_type;		/* the type, or a domain's base type */
	char	   *collation_schema;	/* NULL when the type's default collation */
	char	   *collation;
	char	   *default_expr;	/* default or generation expression, or NULL */
	bool		not_null;
	char		identity;		/* 'a' always, 'd' by default, '\0' none */
	char		generated;		/* 's' stored, '\0' none */
	bool		btree_orderable;	/* has a default btree opclass: range-partitionable */
	bool		binary_io;		/* its type has binary send and receive (binary COPY) */
	char	   *comment;
} catalog_column;

typedef struct catalog_constraint
{
	Oid			oid;
	char	   *name;
	char		type;			/* p primary, u unique, c check, x exclusion, f foreign key */
	char	   *definition;		/* pg_get_constraintdef() */
	char	  **columns;		/* conkey, in order */
	int			ncolumns;
} catalog_constraint;

typedef struct catalog_index
{
	Oid			oid;
	char	   *name;
	char	   *definition;		/* pg_get_indexdef() */
	char	   *method_and_columns; /* the definition after "... USING ": "btree (a) WHERE ..." */
	bool		unique;
	bool		primary;
	bool		valid;
	bool		backs_constraint;	/* created by a PRIMARY KEY/UNIQUE/EXCLUDE constraint */
	bool		has_expressions;
	bool		partial;
	char	  **columns;		/* key columns; NULL entries for expressions */
	int			ncolumns;
} catalog_index;

/* Anything else that points at the table: triggers, rules, policies, views ... */
typedef struct catalog_object
{
	char	   *schema;			/* NULL when it lives in the table itself */
	char	   *name;
	char	   *detail;			/* definition, or what it is attached to */
} catalog_object;

typedef struct catalog_object_list
{
	catalog_object *items;
	int			count;
} catalog_object_list;

typedef struct catalog_table
{
	Oid			oid;
	char	   *schema;
	char	   *name;
	char		relkind;		/* 'r' table, 'p' partitioned, ... */
	char		persistence;	/* 'p' permanent, 'u' unlogged, 't' temporary */
	bool		is_partition;
	bool		has_parent;		/* inherits from another table */
	bool		has_children;	/* other tables inherit from it */
	char		replica_identity;	/* 'd' default, 'f' full, 'i' index, 'n' nothing */
	bool		row_security;
	bool		force_row_security;
	bool		row_security_applies;	/* policies would filter current_user's reads */
	char	   *owner;
	bool		owned_by_current_user;	/* current_user is (a member of) the owner */
	bool		readable;		/* current_user may SELECT from it */
	char	   *tablespace;		/* NULL for the database default */
	char	   *comment;
	char	   *acl;			/* relacl as text, NULL for default privileges */
	double		estimated_rows; /* reltuples; -1 when never analysed */
	int64_t		heap_bytes;
	int64_t		total_bytes;	/* heap + TOAST + indexes */
	int64_t		index_bytes;

	catalog_column *columns;
	int			ncolumns;
	catalog_constraint *constraints;
	int			nconstraints;
	catalog_index *indexes;
	int			nindexes;

	/* Key the stream identifies rows by: the primary key, else the replica identity index. */
	char	  **key_columns;
	int			nkey_columns;

	catalog_object_list incoming_fkeys; /* schema.name = referencing table, detail = constraint */
	catalog_object_list triggers;
	catalog_object_list rules;
	catalog_object_list policies;
	catalog_object_list views;	/* views and materialized views that depend on it */
	catalog_object_list sequences;	/* owned sequences; detail = column */
	catalog_object_list publications;
	catalog_object_list reloptions; /* storage parameters: name, detail = value */
} catalog_table;

/*
 * Find the table schema.name (schema NULL: the first match on the role's
 * search_path, as SQL would).  Returns false after logging when it does not
 * exist or the catalogs cannot be read.
 */
bool		catalog_read(db *d, const char *schema, const char *name, catalog_table **out);
void		catalog_table_free(catalog_table *t);

const catalog_column *catalog_find_column(const catalog_table *t, const char *name);

/* " COLLATE schema.name" when the column has a collation of its own, else nothing. */
void		catalog_append_collate(buf *out, const catalog_column *c);

/* Whether name is among n column names (an index's may hold NULL for an expression). */
bool		catalog_has_column(char *const *columns, int n, const char *name);

/*
 * Whether a type is one of the integers, date, timestamp or timestamptz:
 * whole numbers underneath (int2/int4/int8, days, microseconds), which both
 * range partitioning and the backfill's key order handle.
 */
bool		catalog_integer_like(Oid type);
/* Whether type is smallint, integer or bigint. */
bool		catalog_integer_type(Oid type);
const catalog_constraint *catalog_primary_key(const catalog_table *t);

/*
 * The columns a publication carries for the relation qrel (quoted,
 * qualified): not dropped, not generated, in column order.  *names (each
 * and the array) and *types are the caller's to free.  False after logging.
 */
bool		catalog_published_columns(db *d, const char *qrel, char ***names, Oid **types,
									  int *count);

/*
 * The array type of each of n types (0 where a type has none), into
 * *arrays, and whether the server may compress its values (a variable-length
 * type stored compressed by default), into *compressible; both the caller's
 * to free.  False after logging.
 */
bool		catalog_array_types(db *d, const Oid *types, int n, Oid **arrays, bool **compressible);

#endif
