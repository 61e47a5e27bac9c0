/*
 * apply_route.c: where the apply sends a row.
 *
 * The shadow's leaf partitions and their bounds (re-read when partitions
 * come and go), a partition made on demand for a row beyond them, and the
 * cache of prepared statements, one per kind of change and target.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/apply_internal.h"
#include "pgrepart/catalog.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/partition.h"

static int
apply_leaf_order(const void *x, const void *y)
{
	const leaf *l = x;
	const leaf *r = y;

	return l->lower < r->lower ? -1 : l->lower > r->lower;
}

void
apply_free_leaves(leaf *leaves, int n)
{
	for (int i = 0; i < n; i++)
		free(leaves[i].qname);
	free(leaves);
}

/*
 * The shadow's partitions: each leaf's range as int64, the covered range
 * [lower, upper) and whether there is a DEFAULT partition.  A leaf seen
 * before keeps its id, so its prepared statements stay valid.
 */
bool
apply_read_bounds(apply *a)
{
	const char *cast;
	buf			as_int;
	PGresult   *res;
	buf			sql;
	leaf	   *leaves = NULL;
	int			nleaves = 0;
	bool		ok = false;

	if (a->plain)
		return true;
	switch (a->partition_type)
	{
		case CATALOG_TIMESTAMPOID:
			cast = "pg_catalog.timestamp";
			break;
		case CATALOG_TIMESTAMPTZOID:
			cast = "pg_catalog.timestamptz";
			break;
		case CATALOG_DATEOID:
			cast = "pg_catalog.date";
			break;
		case CATALOG_INT2OID:
		case CATALOG_INT4OID:
		case CATALOG_INT8OID:
			cast = "pg_catalog.int8";
			break;
		default:
			return true;
	}
	buf_init(&as_int);
	partition_binary_expression(a->partition_type, "v", &as_int);
	buf_init(&sql);
	buf_appendf(&sql,
				"WITH " PARTITION_BOUNDS_CTE " "
				"SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, "
				"  c.relkind = 'r' AND NOT b.d, b.d, "
				"  (SELECT %1$s FROM (SELECT NULLIF(b.m[1], 'MINVALUE')::%2$s AS v) x), "
				"  (SELECT %1$s FROM (SELECT NULLIF(b.m[2], 'MAXVALUE')::%2$s AS v) y), "
				"  b.m IS NOT NULL "
				"FROM b JOIN pg_catalog.pg_class c ON c.oid = b.leaf "
				"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
				as_int.data, cast);
	res = db_execf(a->db, "read the shadow's partition bounds", sql.data, a->qshadow);
	if (res == NULL)
		goto cleanup;
	a->has_default_partition = false;
	a->have_bounds = false;
	for (int i = 0; i < PQntuples(res); i++)
	{
		PGtext		nspname, relname;
		PGbool		is_leaf, is_default, is_range;
		PGint8		lower = INT64_MIN, upper = INT64_MAX;
		leaf		l = {0};

		if (!db_getf(res, i, "%text %text %bool %bool %bool", 0, &nspname, 1, &relname, 2, &is_leaf,
					 3, &is_default, 6, &is_range) ||
			(!PQgetisnull(res, i, 4) && !db_getf(res, i, "%int8", 4, &lower)) ||
			(!PQgetisnull(res, i, 5) && !db_getf(res, i, "%int8", 5, &upper)))
		{
			PQclear(res);
			goto cleanup;
		}
		if (is_default)
		{
			a->has_default_partition = true;
			continue;
		}
		if (!is_range)
			continue;
		a->lower = a->have_bounds && a->lower < lower ? a->lower : lower;
		a->upper = a->have_bounds && a->upper > upper ? a->upper : upper;
		a->have_bounds = true;
		/* A sub-partitioned partition is no leaf: its rows go through the parent. */
		if (!is_leaf)
			continue;
		l.lower = lower;
		l.upper = upper;
		l.qname = ident_qualified(nspname, relname);
		l.id = -1;
		for (int j = 0; j < a->nleaves && l.id < 0; j++)
			if (strcmp(a->leaves[j].qname, l.qname) == 0)
				l.id = a->leaves[j].id;
		if (l.id < 0)
			l.id = a->next_leaf_id++;
		ARRAY_PUSH(leaves, nleaves, l);
	}
	a->npartitions = PQntuples(res);
	PQclear(res);
	if (nleaves > 0)
		qsort(leaves, (size_t) nleaves, sizeof(leaf), apply_leaf_order);
	apply_free_leaves(a->leaves, a->nleaves);
	a->leaves = leaves;
	a->nleaves = nleaves;
	leaves = NULL;
	nleaves = 0;
	ok = true;

cleanup:
	apply_free_leaves(leaves, nleaves);
	buf_free(&sql);
	buf_free(&as_int);
	return ok;
}

/*
 * Whether the shadow still has as many partitions as this apply knows of.
 * Someone adding or dropping one of the shadow's partitions while it runs
 * is rare, and counting them is far cheaper than reading every partition's
 * bounds again (which takes the server milliseconds per call, mostly in
 * parsing the bounds' text).
 */
static bool
apply_partitions_unchanged(apply *a, bool *unchanged)
{
	PGresult   *res;
	PGint8		n = 0;
	bool		ok;

	res = db_execf(a->db, "count the shadow's partitions",
				   "SELECT pg_catalog.count(*) FROM pg_catalog.pg_inherits "
				   "WHERE inhparent = %text::pg_catalog.regclass", a->qshadow);
	ok = res != NULL && db_getf(res, 0, "%int8", 0, &n);
	*unchanged = n == a->npartitions;
	PQclear(res);
	return ok;
}

/* Partitions this apply has just created: their bounds are known already. */
static void
apply_add_leaves(apply *a, const partition_set *set)
{
	for (int i = 0; i < set->count; i++)
	{
		const partition_bound *p = &set->items[i];
		leaf		l = {.lower = p->binary_from, .upper = p->binary_to, .id = a->next_leaf_id++,
		.qname = ident_qualified(a->o.schema, p->name)};

		ARRAY_PUSH(a->leaves, a->nleaves, l);
		a->lower = l.lower < a->lower ? l.lower : a->lower;
		a->upper = l.upper > a->upper ? l.upper : a->upper;
		a->npartitions++;
	}
	qsort(a->leaves, (size_t) a->nleaves, sizeof(leaf), apply_leaf_order);
}

/* The leaf that holds a partition value, or NULL (no bounds, DEFAULT, a gap). */
static const leaf *
apply_leaf_for(const apply *a, const pgout_value *v)
{
	int64_t		x;
	int			lo = 0, hi = a->nleaves - 1;

	if (!apply_partition_value(a, v, &x))
		return NULL;
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		const leaf *l = &a->leaves[mid];

		if (x < l->lower)
			hi = mid - 1;
		else if (x >= l->upper)
			lo = mid + 1;
		else
			return l;
	}
	return NULL;
}

int
apply_target_of(const apply *a, const pgout_value *v)
{
	const leaf *l = apply_leaf_for(a, v);

	return l ? l->id : TARGET_PARENT;
}

/*
 * Create the partitions that reach a value beyond the covered range, next to
 * the existing ones and as wide as --interval.  Runs outside the pipeline,
 * in the open target transaction, so they commit with the row that needs them.
 */
static bool
apply_cover(apply *a, int64_t value)
{
	partition_set set;
	bool		unchanged = false;
	bool		ok;

	if (!apply_leave_pipeline(a))
		return false;
	/* Someone else's new partition may cover the value, or hold the range. */
	ok = apply_partitions_unchanged(a, &unchanged) && (unchanged || apply_read_bounds(a));
	if (ok && a->have_bounds && !a->has_default_partition && (value < a->lower || value >= a->upper))
	{
		int64_t		covered[2] = {a->lower, a->upper};

		partition_target target = {a->o.schema, a->o.table, a->qshadow, a->o.partition_column,
			a->partition_type, a->o.interval};

		ok = partition_extend_to_value(a->db, &target, value, covered, &set);
		if (ok)
		{
			for (int i = 0; i < set.count; i++)
				log_info("created partition \"%s.%s\" for a row beyond the existing partitions",
						 a->o.schema, set.items[i].name);
			a->stats.partitions_created += set.count;
			apply_add_leaves(a, &set);
			partition_set_free(&set);
		}
	}
	return apply_enter_pipeline(a) && ok;
}

/* Whether a binary partition value is -infinity or infinity (dates hold them in 32 bits). */
static bool
apply_value_infinite(const apply *a, int64_t v)
{
	if (a->partition_type == CATALOG_DATEOID)
		return v == INT32_MIN || v == INT32_MAX;
	return !catalog_integer_type(a->partition_type) && (v == INT64_MIN || v == INT64_MAX);
}

/*
 * Make sure a new row's partition value has a partition: with a DEFAULT
 * partition it always has; else one is created next to the others.  A
 * failure names the row and its place in the stream.
 */
bool
apply_check_partition(apply *a, const pgout_tuple *t, const char *what, lsn_t lsn)
{
	int64_t		v;
	bool		infinite;
	char		at[LSN_TEXT_SIZE];
	char	   *key;

	if (a->plain || a->has_default_partition || a->part >= t->ncols ||
		!apply_partition_value(a, &t->values[a->part], &v))
		return true;
	if (v >= a->lower && v < a->upper)
		return true;
	infinite = apply_value_infinite(a, v);
	if (!infinite && apply_cover(a, v))
		return true;
	key = apply_describe_key(a, t);
	if (infinite)
		log_error("the %s of the row with key %s at %s in \"%s.%s\" sets \"%s\" to %sinfinity, "
				  "which no partition can hold", what, key, lsn_format(lsn, at), a->o.schema,
				  a->o.table, a->o.partition_column, v < 0 ? "-" : "");
	else
		log_error("the %s of the row with key %s at %s in \"%s.%s\" has no partition for its "
				  "\"%s\"", what, key, lsn_format(lsn, at), a->o.schema, a->o.table,
				  a->o.partition_column);
	log_hint("The migration was planned with --no-default-partition. Abort it (pgrepart abort) "
			 "and run it again with a DEFAULT partition, which takes such rows.");
	free(key);
	return false;
}

/* ---- statements ---- */

void
apply_column_list(const apply *a, buf *b)
{
	buf_append_char(b, '(');
	for (int i = 0; i < a->rel->ncols; i++)
	{
		if (i > 0)
			buf_append(b, ", ");
		ident_quote(b, a->rel->columns[i].name);
	}
	buf_append_char(b, ')');
}

/* "k1 = $n AND k2 = $n+1" for the key columns, numbering from first. */
static void
apply_key_condition(apply *a, buf *b, int first)
{
	for (int i = 0; i < a->nkey; i++)
	{
		if (i > 0)
			buf_append(b, " AND ");
		ident_quote(b, a->rel->columns[a->key[i]].name);
		buf_appendf(b, " = $%d", first + i);
	}
}

/*
 * The name of the prepared statement of a kind (an insert, an update with a
 * SET list mask, a delete) on a target (a leaf's id or the parent), prepared
 * on first use.  Parameters: the inserted row, or the SET values, then the
 * key, then (by_part, the parent only) the partition value.  Batches (target
 * TARGET_BATCH; updates with the keep mask) are built by apply_batch_sql.
 */
bool
apply_statement(apply *a, change_kind kind, int target, bool by_part, const char *mask, char *name)
{
	buf		   *b = &a->sql;
	const char *qtarget = a->qshadow;
	prepared	s = {kind, target, by_part, NULL, ""};
	int			nparams = 0;
	Oid		   *types = NULL;
	bool		ok;

	for (int i = 0; i < a->nstatements; i++)
	{
		const prepared *t = &a->statements[i];

		if (t->kind == kind && t->target == target && t->by_part == by_part &&
			(mask == NULL || strcmp(t->mask, mask) == 0))
		{
			memcpy(name, t->name, sizeof(t->name));
			return true;
		}
	}
	for (int i = 0; i < a->nleaves; i++)
		if (a->leaves[i].id == target)
			qtarget = a->leaves[i].qname;

	buf_reset(b);
	if (target == TARGET_BATCH)
	{
		types = xcalloc((size_t) 2 * a->rel->ncols + a->nkey + 2, sizeof(Oid));
		nparams = apply_batch_sql(a, kind, by_part, mask, b, types);
	}
	else if (kind == CHANGE_INSERT)
	{
		buf_appendf(b, "INSERT INTO %s ", qtarget);
		apply_column_list(a, b);
		buf_append(b, " OVERRIDING SYSTEM VALUE VALUES (");
		for (int i = 0; i < a->rel->ncols; i++)
			buf_appendf(b, "%s$%d", i ? ", " : "", ++nparams);
		buf_append_char(b, ')');
	}
	else
	{
		if (kind == CHANGE_UPDATE)
		{
			buf_appendf(b, "UPDATE %s SET ", qtarget);
			for (int i = 0; i < a->rel->ncols; i++)
			{
				if (mask[i] != '1')
					continue;
				if (nparams > 0)
					buf_append(b, ", ");
				ident_quote(b, a->rel->columns[i].name);
				buf_appendf(b, " = $%d", ++nparams);
			}
		}
		else
			buf_appendf(b, "DELETE FROM %s", qtarget);
		buf_append(b, " WHERE ");
		apply_key_condition(a, b, nparams + 1);
		nparams += a->nkey;
		if (by_part)
		{
			buf_append(b, " AND ");
			ident_quote(b, a->o.partition_column);
			buf_appendf(b, " = $%d", ++nparams);
		}
	}
	s.mask = mask ? xstrdup(mask) : NULL;
	snprintf(s.name, sizeof(s.name), "pgrepart_%c%d", (target == TARGET_BATCH ? "IUD" : "iud")[kind],
			 a->nstatements);
	ARRAY_PUSH(a->statements, a->nstatements, s);
	memcpy(name, s.name, sizeof(s.name));
	ok = apply_sent(a, PQsendPrepare(a->db->conn, s.name, b->data, nparams, types), EXPECT_OK,
					"prepared statement", a->pending_lsn, NULL);
	free(types);
	return ok;
}

