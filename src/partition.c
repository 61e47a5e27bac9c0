/* partition.c: range partitions at an interval, and their names; see partition.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/partition.h"
#include "pgrepart/sqlstate.h"

#define USECS_PER_HOUR INT64_C(3600000000)

bool
partition_type_supported(const catalog_column *column)
{
	return catalog_integer_like(column->base_type);
}

static bool
partition_is_integer(const catalog_column *column)
{
	return catalog_integer_type(column->base_type);
}

bool
partition_scheme_for_interval(partition_scheme *s, int months, int days, int64_t micros,
							  char *errbuf, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	if (months < 0 || days < 0 || micros < 0 || (months == 0 && days == 0 && micros == 0))
	{
		snprintf(errbuf, errlen, "the interval must be positive");
		return false;
	}
	if ((months != 0) + (days != 0) + (micros != 0) > 1)
	{
		snprintf(errbuf, errlen, "the interval must be whole months, whole days, "
				 "or a time below a day, not a mix");
		return false;
	}
	if (months != 0)
	{
		if (months % 12 == 0)
		{
			s->kind = PARTITION_YEAR;
			s->trunc_unit = "year";
		}
		else if (months == 3)
		{
			s->kind = PARTITION_QUARTER;
			s->trunc_unit = "quarter";
		}
		else
		{
			s->kind = PARTITION_MONTH;
			s->trunc_unit = months % 3 == 0 ? "quarter" : "month";
		}
	}
	else if (days != 0)
	{
		s->kind = PARTITION_DAY;
		s->trunc_unit = days % 7 == 0 ? "week" : "day";
	}
	else
	{
		s->kind = PARTITION_TIME;
		s->trunc_unit = micros % USECS_PER_HOUR == 0 ? "hour" : "minute";
	}
	return true;
}

void
partition_suffix(buf *out, const partition_scheme *s, const partition_start *start)
{
	switch (s->kind)
	{
		case PARTITION_YEAR:
			buf_appendf(out, "_%04d", start->year);
			break;
		case PARTITION_QUARTER:
			buf_appendf(out, "_%04d_q%d", start->year, start->quarter);
			break;
		case PARTITION_MONTH:
			buf_appendf(out, "_%04d_%02d", start->year, start->month);
			break;
		case PARTITION_DAY:
			buf_appendf(out, "_%04d_%02d_%02d", start->year, start->month, start->day);
			break;
		case PARTITION_TIME:
			buf_appendf(out, "_%04d_%02d_%02d_%02d%02d", start->year, start->month,
						start->day, start->hour, start->minute);
			break;
		case PARTITION_INTEGER:
			if (start->integer < 0)
				buf_appendf(out, "_m%" PRIu64, (uint64_t) 0 - (uint64_t) start->integer);
			else
				buf_appendf(out, "_p%" PRId64, start->integer);
			break;
	}
}

static void
partition_push(partition_set *set, const char *table_name, const char *suffix,
			   const char *from, const char *to, int encoding)
{
	char		name[IDENT_MAX_BYTES + 1];
	partition_bound b = {0};

	ident_with_suffix(name, table_name, suffix, encoding);
	b.name = xstrdup(name);
	b.from = xstrdup_or_null(from);
	b.to = xstrdup_or_null(to);
	b.is_default = from == NULL;
	ARRAY_PUSH(set->items, set->count, b);
}

/*
 * Add a partition per row of (start fields, from, to): the start fields are
 * "YYYY MM DD HH24 MI Q" for time columns and the start value for integers.
 */
static bool
partition_add_rows(partition_set *set, const catalog_table *t, const catalog_column *column,
				   const char *interval, const PGresult *res, int encoding)
{
	buf			suffix;
	bool		ok = false;

	if (PQntuples(res) > PARTITION_MAX_COUNT)
	{
		log_error("partition interval \"%s\" gives more than %d partitions for the range of "
				  "column \"%s\"", interval, PARTITION_MAX_COUNT, column->name);
		log_hint("Choose a longer --interval.");
		return false;
	}
	buf_init(&suffix);
	for (int i = 0; i < PQntuples(res); i++)
	{
		partition_start start = {0};
		const char *fields = PQgetvalue(res, i, 0);

		if (set->scheme.kind == PARTITION_INTEGER)
			start.integer = strtoll(fields, NULL, 10);
		else if (sscanf(fields, "%d %d %d %d %d %d", &start.year, &start.month, &start.day,
						&start.hour, &start.minute, &start.quarter) != 6)
		{
			log_error("could not read partition start \"%s\"", fields);
			goto cleanup;
		}
		buf_reset(&suffix);
		partition_suffix(&suffix, &set->scheme, &start);
		partition_push(set, t->name, suffix.data, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
					   encoding);
	}
	ok = true;

cleanup:
	buf_free(&suffix);
	return ok;
}

/*
 * min and max of schema.table's column as text, in the caller's snapshot;
 * NULL when the table is empty.  The strings are the caller's to free.  For
 * a time column (time) the finite ones, with *infinite (may be NULL) telling
 * whether -infinity or infinity occurs.
 */
static bool
partition_read_range(db *d, const char *schema, const char *table, const char *column,
					 bool time, char **min_value, char **max_value, bool *infinite)
{
	buf			sql, col, rel;
	PGresult   *res;
	PGbool		inf = 0;

	*min_value = *max_value = NULL;
	buf_init(&sql);
	buf_init(&col);
	buf_init(&rel);
	ident_quote(&col, column);
	ident_quote_qualified(&rel, schema, table);
	/*
	 * Time columns: the finite range, and whether infinities exist, each a
	 * probe of an index on the column when there is one.  The infinities
	 * belong to no range: a DEFAULT partition takes them.
	 */
	if (time)
		buf_appendf(&sql,
					"SELECT (SELECT pg_catalog.min(%1$s) FROM %2$s WHERE %1$s > '-infinity')::pg_catalog.text, "
					"  (SELECT pg_catalog.max(%1$s) FROM %2$s WHERE %1$s < 'infinity')::pg_catalog.text, "
					"  EXISTS (SELECT 1 FROM %2$s WHERE %1$s = 'infinity' OR %1$s = '-infinity')",
					col.data, rel.data);
	else
		buf_appendf(&sql, "SELECT pg_catalog.min(%1$s)::pg_catalog.text, "
					"pg_catalog.max(%1$s)::pg_catalog.text, false FROM %2$s", col.data, rel.data);
	res = db_execf(d, "read the partition column's range", sql.data);
	buf_free(&sql);
	buf_free(&col);
	buf_free(&rel);
	if (res == NULL || !db_getf(res, 0, "%bool", 2, &inf))
	{
		PQclear(res);
		return false;
	}
	*min_value = PQgetisnull(res, 0, 0) ? NULL : xstrdup(PQgetvalue(res, 0, 0));
	*max_value = PQgetisnull(res, 0, 1) ? NULL : xstrdup(PQgetvalue(res, 0, 1));
	if (infinite != NULL)
		*infinite = inf;
	PQclear(res);
	return true;
}

/* The server's reading of an interval: whole months, days, and microseconds. */
static bool
partition_interval_shape(db *d, const char *interval, PGint4 *months, PGint4 *days,
						 PGint8 *micros)
{
	PGresult   *res;
	bool		ok;

	res = db_execf(d, "read the partition interval",
				   "SELECT (pg_catalog.date_part('year', i) * 12 + pg_catalog.date_part('month', i))::pg_catalog.int4, "
				   "  pg_catalog.date_part('day', i)::pg_catalog.int4, "
				   "  ((pg_catalog.date_part('hour', i) * 3600 + pg_catalog.date_part('minute', i) * 60 "
				   "    + pg_catalog.date_part('second', i)) * 1000000)::pg_catalog.int8 "
				   "FROM (SELECT %text::pg_catalog.interval AS i) AS iv", interval);
	if (res == NULL)
		return false;
	ok = db_getf(res, 0, "%int4 %int4 %int8", 0, months, 1, days, 2, micros);
	PQclear(res);
	return ok;
}

/* The scheme of a time column's interval; *bad set when the interval itself is wrong. */
static bool
partition_scheme_from_server(db *d, const catalog_column *column, const char *interval,
							 partition_scheme *s, bool *bad)
{
	PGint4		months, days;
	PGint8		micros;
	char		err[256];

	*bad = true;
	if (!partition_interval_shape(d, interval, &months, &days, &micros))
	{
		/* A data exception is the server refusing the value; anything else is not its fault. */
		*bad = SQLSTATE_IN_CLASS(d->sqlstate, SQLSTATE_CLASS_DATA);
		if (*bad)
			log_hint("Give --interval as PostgreSQL writes intervals: '1 month', '3 months', "
					 "'1 year', '1 week', '1 day'.");
		return false;
	}
	if (!partition_scheme_for_interval(s, months, days, micros, err, sizeof(err)))
	{
		log_error("invalid partition interval \"%s\": %s", interval, err);
		log_hint("Use an interval such as '1 month', '3 months', '1 year', '1 week' or '1 day'.");
		return false;
	}
	if (s->kind == PARTITION_TIME && column->base_type == CATALOG_DATEOID)
	{
		log_error("invalid partition interval \"%s\": column \"%s\" is a date, so "
				  "partitions must span whole days", interval, column->name);
		log_hint("Use an interval of whole days, weeks, months or years.");
		return false;
	}
	*bad = false;
	return true;
}

/* A time column's own SQL type. */
static const char *
partition_time_type(Oid type)
{
	return type == CATALOG_DATEOID ? "pg_catalog.date" :
		type == CATALOG_TIMESTAMPOID ? "pg_catalog.timestamp" : "pg_catalog.timestamptz";
}

/* The type a time column's bounds are computed in: dates step as timestamps. */
static const char *
partition_step_type(Oid type)
{
	return type == CATALOG_TIMESTAMPTZOID ? "pg_catalog.timestamptz" : "pg_catalog.timestamp";
}

static bool
partition_compute_time(db *d, const catalog_table *t, const catalog_column *column,
					   const char *interval, int premake, partition_set *set)
{
	const char *arith = partition_step_type(column->base_type);
	const char *coltype = partition_time_type(column->base_type);
	buf			sql;
	PGresult   *res;
	bool		ok = false;

	buf_init(&sql);
	buf_appendf(&sql,
				"SELECT pg_catalog.to_char(s, 'YYYY MM DD HH24 MI Q'), "
				"  (s::%2$s)::pg_catalog.text, ((s + iv.i)::%2$s)::pg_catalog.text "
				"FROM (SELECT %%text::pg_catalog.interval AS i) AS iv, "
				"  LATERAL (SELECT pg_catalog.date_trunc(%%text, "
				"              COALESCE(%%text::%1$s, pg_catalog.now()::%1$s)) AS first, "
				"            GREATEST(COALESCE(%%text::%1$s, pg_catalog.now()::%1$s), "
				"              pg_catalog.now()::%1$s) + iv.i * %%int4 AS last) AS b, "
				"  LATERAL pg_catalog.generate_series(b.first, b.last, iv.i) AS s "
				"LIMIT %3$d",
				arith, coltype, PARTITION_MAX_COUNT + 1);
	res = db_execf(d, "compute the partition bounds", sql.data, interval, set->scheme.trunc_unit,
				   set->min_value, set->max_value, premake);
	if (res == NULL)
		goto cleanup;
	if (!partition_add_rows(set, t, column, interval, res, d->encoding))
		goto cleanup;
	ok = true;

cleanup:
	PQclear(res);
	buf_free(&sql);
	return ok;
}

/* An integer column's interval: a positive whole number of keys. */
static bool
partition_integer_step(const catalog_column *column, const char *interval, partition_scheme *s)
{
	char	   *end;
	long long	step;

	errno = 0;
	step = strtoll(interval, &end, 10);
	if (errno != 0 || end == interval || *end != '\0' || step <= 0)
	{
		log_error("invalid partition interval \"%s\": column \"%s\" is an integer, so the "
				  "interval must be a positive whole number", interval, column->name);
		log_hint("For example --interval 1000000 for a partition per million keys.");
		return false;
	}
	s->kind = PARTITION_INTEGER;
	s->step = step;
	return true;
}

static bool
partition_compute_integer(db *d, const catalog_table *t, const catalog_column *column,
						  const char *interval, int premake, partition_set *set)
{
	PGresult   *res;
	long long	step = set->scheme.step;
	bool		ok = false;

	res = db_execf(d, "compute the partition bounds",
				   "SELECT s::pg_catalog.int8::pg_catalog.text, "
				   "  s::pg_catalog.int8::pg_catalog.text, "
				   "  (s + st)::pg_catalog.int8::pg_catalog.text "
				   "FROM (SELECT %int8::pg_catalog.numeric AS st) AS p, "
				   "  LATERAL pg_catalog.generate_series("
				   "    pg_catalog.floor(COALESCE(%text::pg_catalog.numeric, 0) / p.st) * p.st, "
				   "    pg_catalog.floor(COALESCE(%text::pg_catalog.numeric, 0) / p.st) * p.st "
				   "      + p.st * %int4, p.st) AS s "
				   "LIMIT %int4",
				   (PGint8) step, set->min_value, set->max_value, premake,
				   PARTITION_MAX_COUNT + 1);
	if (res == NULL)
		return false;
	if (!partition_add_rows(set, t, column, interval, res, d->encoding))
		goto cleanup;
	ok = true;

cleanup:
	PQclear(res);
	return ok;
}

/*
 * Empty ranges in a row beyond which rows are far from the rest: a stray
 * year 1900 or 9999 among this decade's rows.
 */
#define PARTITION_FAR_GAP 24
/* Ranges holding rows that the loose index scan reads at most. */
#define PARTITION_MAX_OCCUPIED 100000

/*
 * With a DEFAULT partition to take them, rows far from the rest get no
 * partitions: the ranges of the interval that hold rows are found with one
 * probe of the column's index each (a loose index scan), split where more
 * empty ones lie between two than PARTITION_FAR_GAP and than hold rows in
 * all (a month without rows among years of daily ones splits nothing), and
 * the run holding the most of them (the later one on a tie) bounds the
 * partitions: set->min_value and max_value become its first and last rows'
 * values.  The rows of the other runs go to the DEFAULT partition
 * (set->far_ranges of them).  Time columns only.
 */
static bool
partition_main_run(db *d, const catalog_table *t, const catalog_column *column,
				   const char *interval, partition_set *set)
{
	const char *arith = partition_step_type(column->base_type);
	const char *coltype = partition_time_type(column->base_type);
	buf			sql, col, rel;
	PGresult   *res;
	int			best_from = 0, best_count = 0, run_from = 0, n;
	PGint8		previous = 0;
	bool		ok = false;

	buf_init(&sql);
	buf_init(&col);
	buf_init(&rel);
	ident_quote(&col, column->name);
	ident_quote_qualified(&rel, t->schema, t->name);
	/* o.v's range index: in whole months for month intervals, else in seconds. */
	buf_appendf(&sql,
				"WITH RECURSIVE q AS (SELECT p.i, p.first, "
				"    (EXTRACT(year FROM p.i) * 12 + EXTRACT(month FROM p.i))::pg_catalog.int8 AS im, "
				"    EXTRACT(epoch FROM p.i) AS isec "
				"  FROM (SELECT %%text::pg_catalog.interval AS i, "
				"    pg_catalog.date_trunc(%%text, %%text::%1$s) AS first) p), "
				"o(v) AS (SELECT %%text::%1$s "
				"  UNION ALL SELECT (SELECT pg_catalog.min(%3$s)::%1$s FROM %4$s "
				"    WHERE %3$s >= (q.first + q.i * (%5$s + 1))::%2$s AND %3$s < 'infinity') "
				"  FROM o, q WHERE o.v IS NOT NULL) "
				"SELECT (%5$s)::pg_catalog.int8, o.v::pg_catalog.text FROM o, q "
				"WHERE o.v IS NOT NULL LIMIT %6$d",
				arith, coltype, col.data, rel.data,
				"CASE WHEN q.im > 0 THEN pg_catalog.floor(((EXTRACT(year FROM o.v) - EXTRACT(year FROM q.first)) * 12 "
				"  + EXTRACT(month FROM o.v) - EXTRACT(month FROM q.first)) / q.im) "
				"ELSE pg_catalog.floor(EXTRACT(epoch FROM o.v - q.first) / q.isec) END",
				PARTITION_MAX_OCCUPIED + 1);
	res = db_execf(d, "find the ranges that hold rows", sql.data, interval, set->scheme.trunc_unit,
				   set->min_value, set->min_value);
	if (res == NULL)
		goto cleanup;
	n = PQntuples(res);
	ok = true;
	if (n == 0 || n > PARTITION_MAX_OCCUPIED)
		goto cleanup;
	if (!db_getf(res, 0, "%int8", 0, &previous))
		goto cleanup;
	for (int i = 1; i <= n; i++)
	{
		PGint8		k = 0;

		if (i < n && !db_getf(res, i, "%int8", 0, &k))
			goto cleanup;
		if (i == n || k - previous - 1 > (n > PARTITION_FAR_GAP ? n : PARTITION_FAR_GAP))
		{
			if (i - run_from >= best_count)
			{
				best_from = run_from;
				best_count = i - run_from;
			}
			run_from = i;
		}
		previous = k;
	}
	set->far_ranges = n - best_count;
	if (set->far_ranges > 0)
	{
		free(set->min_value);
		set->min_value = xstrdup(PQgetvalue(res, best_from, 1));
		/* The run's last row: the last before the next run's first, else the column's maximum. */
		if (best_from + best_count < n)
		{
			PGresult   *last;

			buf_reset(&sql);
			buf_appendf(&sql, "SELECT pg_catalog.max(%1$s)::%2$s::pg_catalog.text FROM %3$s "
						"WHERE %1$s < %%text::%2$s::%4$s", col.data, arith, rel.data, coltype);
			last = db_execf(d, "read the last row of the main run", sql.data,
							PQgetvalue(res, best_from + best_count, 1));
			if (last == NULL)
			{
				ok = false;
				goto cleanup;
			}
			free(set->max_value);
			set->max_value = xstrdup(PQgetvalue(last, 0, 0));
			PQclear(last);
		}
	}

cleanup:
	PQclear(res);
	buf_free(&sql);
	buf_free(&col);
	buf_free(&rel);
	return ok;
}

bool
partition_compute(db *d, const catalog_table *t, const catalog_column *column,
				  const char *interval, int premake, bool with_default, partition_set *out)
{
	bool		bad_interval = false;

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < t->nindexes; i++)
	{
		const catalog_index *x = &t->indexes[i];

		if (x->valid && !x->partial && x->ncolumns > 0 && x->columns[0] != NULL &&
			strcmp(x->columns[0], column->name) == 0)
			out->min_max_indexed = true;
	}
	if (partition_is_integer(column))
	{
		if (!partition_integer_step(column, interval, &out->scheme))
		{
			bad_interval = true;
			goto fail;
		}
		if (!partition_read_range(d, t->schema, t->name, column->name, false, &out->min_value,
								  &out->max_value, NULL) ||
			!partition_compute_integer(d, t, column, interval, premake, out))
			goto fail;
	}
	else
	{
		if (!partition_scheme_from_server(d, column, interval, &out->scheme, &bad_interval) ||
			!partition_read_range(d, t->schema, t->name, column->name, true, &out->min_value,
								  &out->max_value, &out->has_infinite) ||
			(with_default && out->min_max_indexed && out->min_value != NULL &&
			 !partition_main_run(d, t, column, interval, out)) ||
			!partition_compute_time(d, t, column, interval, premake, out))
			goto fail;
	}
	if (with_default)
		partition_push(out, t->name, "_default", NULL, NULL, d->encoding);
	return true;

fail:
	partition_set_free(out);
	out->bad_interval = bad_interval;
	return false;
}

/*
 * SQL for a partition column value of type type given as a parameter: as
 * text in the type's input format, or as an int8 holding its binary form.
 * *type_name is the type the range arithmetic uses (dates step as
 * timestamps).  The text form is returned in out.
 */
static void
partition_value_expression(Oid type, bool as_text, const char **type_name, buf *out)
{
	switch (type)
	{
		case CATALOG_TIMESTAMPOID:
			*type_name = "pg_catalog.timestamp";
			buf_append(out, as_text ? "%text::pg_catalog.timestamp" :
					   "('2000-01-01'::pg_catalog.timestamp + %int8 * '1 microsecond'::pg_catalog.interval)");
			break;
		case CATALOG_TIMESTAMPTZOID:
			*type_name = "pg_catalog.timestamptz";
			buf_append(out, as_text ? "%text::pg_catalog.timestamptz" :
					   "('2000-01-01 00:00:00+00'::pg_catalog.timestamptz + %int8 * '1 microsecond'::pg_catalog.interval)");
			break;
		case CATALOG_DATEOID:
			*type_name = "pg_catalog.timestamp";
			buf_append(out, as_text ? "%text::pg_catalog.date::pg_catalog.timestamp" :
					   "('2000-01-01'::pg_catalog.date + %int8::pg_catalog.int4)::pg_catalog.timestamp");
			break;
		default:
			*type_name = "pg_catalog.int8";
			buf_append(out, as_text ? "%text::pg_catalog.int8" : "%int8");
	}
}

bool
partition_binary_expression(Oid type, const char *value, buf *out)
{
	switch (type)
	{
		case CATALOG_TIMESTAMPOID:
		case CATALOG_TIMESTAMPTZOID:
			/* microseconds since 2000-01-01 */
			buf_appendf(out, "((pg_catalog.date_part('epoch', %s) - 946684800) * 1000000)::pg_catalog.int8",
						value);
			return true;
		case CATALOG_DATEOID:
			buf_appendf(out, "(%s - '2000-01-01'::pg_catalog.date)::pg_catalog.int8", value);
			return true;
		case CATALOG_INT2OID:
		case CATALOG_INT4OID:
		case CATALOG_INT8OID:
			buf_appendf(out, "(%s)::pg_catalog.int8", value);
			return true;
		default:
			return false;
	}
}

/*
 * ALTER TABLE parent REPLICA IDENTITY does not reach the partitions, and a
 * publication sends a partition's changes with the partition's own
 * identity: without it UPDATE and DELETE on a published partition fail, or
 * a FULL table's subscribers get no old row.  So every partition gets the
 * parent's: FULL, NOTHING, or its own index attached to the parent's.
 */
static const char partition_identity_sql[] =
	"SELECT pg_catalog.format('ALTER TABLE %s REPLICA IDENTITY %s', c.oid::pg_catalog.regclass, "
	"  CASE p.relreplident WHEN 'f' THEN 'FULL' WHEN 'n' THEN 'NOTHING' WHEN 'd' THEN 'DEFAULT' "
	"    ELSE 'USING INDEX ' || pg_catalog.quote_ident(ci.relname) END) "
	"FROM pg_catalog.pg_class p "
	"JOIN pg_catalog.pg_inherits h ON h.inhparent = p.oid "
	"JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid "
	"LEFT JOIN pg_catalog.pg_index px ON px.indrelid = p.oid AND px.indisreplident "
	"LEFT JOIN (pg_catalog.pg_inherits ih JOIN pg_catalog.pg_index cx ON cx.indexrelid = ih.inhrelid "
	"  JOIN pg_catalog.pg_class ci ON ci.oid = cx.indexrelid) "
	"  ON ih.inhparent = px.indexrelid AND cx.indrelid = c.oid "
	"WHERE p.oid = %text::pg_catalog.regclass "
	"  AND (p.relreplident <> 'i' OR ci.oid IS NOT NULL) "
	"  AND (c.relreplident <> p.relreplident OR (p.relreplident = 'i' AND NOT cx.indisreplident)) "
	"ORDER BY 1";

bool
partition_sync_identity(db *d, const char *qparent)
{
	PGresult   *res = db_execf(d, "read the partitions' replica identity", partition_identity_sql,
							   qparent);
	bool		ok = res != NULL;

	for (int i = 0; ok && i < PQntuples(res); i++)
	{
		log_debug("%s", PQgetvalue(res, i, 0));
		ok = db_exec(d, "give a partition the table's replica identity", PQgetvalue(res, i, 0));
	}
	PQclear(res);
	return ok;
}

/*
 * Run a partition's CREATE TABLE.  Rows of its range in the DEFAULT
 * partition make the server refuse it (the DEFAULT partition's constraint
 * would no longer hold): say so, and what to do.
 */
static bool
partition_create(db *d, const char *sql, const partition_bound *b)
{
	PGresult   *res = PQexec(d->conn, sql);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok && state != NULL && strcmp(state, ERRCODE_CHECK_VIOLATION) == 0)
	{
		log_error("partition \"%s\" for [%s, %s) cannot be created: the DEFAULT partition holds "
				  "rows of that range", b->name, b->from, b->to);
		log_hint("No partition was created. Move those rows out of the DEFAULT partition (for "
				 "example into a table attached as the partition afterwards), or give a range "
				 "the DEFAULT partition has no rows of.");
		snprintf(d->sqlstate, sizeof(d->sqlstate), "%s", state);
	}
	else if (!ok)
		db_log_error(d->conn, d->label, "create a partition", res, d->sqlstate);
	PQclear(res);
	return ok;
}

/*
 * The value a new partition must take: in binary form, with the range the
 * caller knows to be covered, or as text, the range read from the catalog.
 */
typedef struct partition_point
{
	bool		binary;
	int64_t		value;			/* binary */
	int64_t		covered[2];		/* binary */
	const char *text;			/* not binary */
} partition_point;

/* See partition_extend_to_text and partition_extend_to_value. */
static bool
partition_extend(db *d, const partition_target *t, const partition_point *p, partition_set *created)
{
	const char *schema = t->schema;
	const char *qparent = t->qparent;
	const char *interval = t->interval;
	Oid			type = t->type;
	const char *type_name;
	buf			value_sql;
	bool		integer = catalog_integer_type(type);
	const char *step = integer ? "%text::pg_catalog.int8" : "%text::pg_catalog.interval";
	const char *fields = integer ? "s::pg_catalog.text" : "pg_catalog.to_char(s, 'YYYY MM DD HH24 MI Q')";
	const char *out_type;
	buf			sql;
	PGresult   *res = NULL;
	bool		own_transaction = false;
	bool		ok = false;

	memset(created, 0, sizeof(*created));
	buf_init(&value_sql);
	partition_value_expression(type, !p->binary, &type_name, &value_sql);
	out_type = type == CATALOG_DATEOID ? "pg_catalog.date" : type_name;
	created->scheme.kind = integer ? PARTITION_INTEGER : PARTITION_DAY;
	/*
	 * From the existing range [lo, hi): upwards from hi while the value is
	 * not covered, or downwards from lo.  Each start is hi or lo plus k
	 * intervals, not the previous start plus one (a month after January 31
	 * twice is March 28, two months after it March 31).  Counted up by
	 * recursion, which stops at the value: a series of every possible k
	 * costs milliseconds each time.  The partition kind for names comes from
	 * the interval, like the plan's.
	 */
	buf_init(&sql);
	buf_append(&sql, "WITH RECURSIVE ");
	if (p->binary)
		buf_appendf(&sql, "r AS (SELECT %1$s AS lo, %1$s AS hi), ", value_sql.data);
	else
		buf_appendf(&sql,
					PARTITION_BOUNDS_CTE ", "
					"r AS (SELECT pg_catalog.min(m[1]::%1$s) AS lo, pg_catalog.max(m[2]::%1$s) AS hi "
					"  FROM b WHERE m IS NOT NULL), ",
					type_name);
	buf_appendf(&sql,
				"p AS (SELECT %1$s AS v, %2$s AS i), "
				"up(k) AS (SELECT 0 FROM r, p WHERE p.v >= r.hi "
				"          UNION ALL SELECT up.k + 1 FROM up, r, p "
				"          WHERE up.k < %3$d AND r.hi + p.i * (up.k + 1) <= p.v), "
				"down(k) AS (SELECT 1 FROM r, p WHERE p.v < r.lo "
				"            UNION ALL SELECT down.k + 1 FROM down, r, p "
				"            WHERE down.k < %3$d AND r.lo - p.i * down.k > p.v), "
				"s AS (SELECT r.hi + p.i * k AS s FROM up, r, p "
				"      UNION ALL SELECT r.lo - p.i * k FROM down, r, p) "
				"SELECT %4$s, s::%5$s::pg_catalog.text, (s + p.i)::%5$s::pg_catalog.text",
				value_sql.data, step, PARTITION_MAX_COUNT, fields, out_type);
	if (p->binary)
	{
		char		bound[64];

		/* The bounds as the caller holds values, to add them to what it knows. */
		for (int i = 0; i < 2; i++)
		{
			snprintf(bound, sizeof(bound), i == 0 ? "s::%s" : "(s + p.i)::%s", out_type);
			buf_append(&sql, ", ");
			if (!partition_binary_expression(type, bound, &sql))
			{
				log_error("partition column type %u has no binary form", type);
				goto cleanup;
			}
		}
	}
	buf_append(&sql, " FROM s, p ORDER BY s.s");
	if (p->binary)
		res = db_execf(d, "compute partitions for a new row", sql.data, (PGint8) p->covered[0],
					   (PGint8) p->covered[1], (PGint8) p->value, interval);
	else
		res = db_execf(d, "compute partitions for rows", sql.data, qparent, p->text, interval);
	if (res == NULL)
		goto cleanup;
	if (!integer)
	{
		/* The same naming as the plan's, from the interval's shape. */
		PGint4		months = 0, days = 0;
		PGint8		micros = 0;
		char		err[128];

		if (!partition_interval_shape(d, interval, &months, &days, &micros) ||
			!partition_scheme_for_interval(&created->scheme, months, days, micros, err, sizeof(err)))
			goto cleanup;
	}
	{
		catalog_table named = {0};
		catalog_column column = {0};

		named.name = (char *) t->table_name;
		column.name = (char *) t->column;
		if (!partition_add_rows(created, &named, &column, interval, res, d->encoding))
			goto cleanup;
	}
	for (int i = 0; p->binary && i < created->count; i++)
	{
		PGint8		from, to;

		if (!db_getf(res, i, "%int8 %int8", 3, &from, 4, &to))
			goto cleanup;
		created->items[i].binary_from = from;
		created->items[i].binary_to = to;
	}
	/*
	 * All or none: a kill between two CREATEs below the lowest partition
	 * would leave a gap, and every coverage check here reads only the lowest
	 * and highest bounds.  Inside the caller's transaction when it has one.
	 */
	own_transaction = created->count > 0 && PQtransactionStatus(d->conn) == PQTRANS_IDLE;
	if (own_transaction && !db_exec(d, "start creating partitions", "BEGIN"))
		goto cleanup;
	for (int i = 0; i < created->count; i++)
	{
		const partition_bound *b = &created->items[i];

		buf_reset(&sql);
		buf_append(&sql, "CREATE TABLE ");
		ident_quote_qualified(&sql, schema, b->name);
		buf_appendf(&sql, " PARTITION OF %s FOR VALUES FROM (", qparent);
		ident_literal(&sql, b->from);
		buf_append(&sql, ") TO (");
		ident_literal(&sql, b->to);
		buf_append_char(&sql, ')');
		if (!partition_create(d, sql.data, b))
			goto cleanup;
		fault_point("partition");
	}
	ok = (created->count == 0 || partition_sync_identity(d, qparent)) &&
		(!own_transaction || db_exec(d, "commit the new partitions", "COMMIT"));

cleanup:
	if (own_transaction && !ok)
		db_rollback(d, "roll back the new partitions");
	PQclear(res);
	buf_free(&sql);
	buf_free(&value_sql);
	if (!ok)
		partition_set_free(created);
	return ok;
}

bool
partition_extend_to_text(db *d, const partition_target *t, const char *value,
						 partition_set *created)
{
	partition_point p = {.binary = false, .text = value};

	return partition_extend(d, t, &p, created);
}

bool
partition_extend_to_value(db *d, const partition_target *t, int64_t value,
						  const int64_t covered[2], partition_set *created)
{
	partition_point p = {.binary = true, .value = value, .covered = {covered[0], covered[1]}};

	return partition_extend(d, t, &p, created);
}

void
partition_set_free(partition_set *set)
{
	if (set == NULL)
		return;
	for (int i = 0; i < set->count; i++)
	{
		free(set->items[i].name);
		free(set->items[i].from);
		free(set->items[i].to);
	}
	free(set->items);
	free(set->min_value);
	free(set->max_value);
	memset(set, 0, sizeof(*set));
}

bool
partition_cover_range(db *d, const char *schema, const char *table, const char *shadow,
					  const char *column, const char *interval, int *ncreated)
{
	char	   *qshadow = ident_qualified(schema, shadow);
	char	   *range[2] = {NULL, NULL};
	char	  **names = NULL;
	Oid		   *types = NULL;
	Oid			type = InvalidOid;
	PGresult   *res = NULL;
	int			n = 0;
	bool		ok = false;

	if (ncreated != NULL)
		*ncreated = 0;
	if (!catalog_published_columns(d, qshadow, &names, &types, &n))
		goto cleanup;
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], column) == 0)
			type = types[i];
	/* With a DEFAULT partition, rows beyond the ranges already have a home. */
	res = db_execf(d, "look for a DEFAULT partition",
				   "SELECT 1 FROM pg_catalog.pg_partitioned_table p "
				   "WHERE p.partrelid = %text::pg_catalog.regclass AND p.partdefid <> 0", qshadow);
	if (res == NULL)
		goto cleanup;
	if (PQntuples(res) > 0)
	{
		ok = true;
		goto cleanup;
	}
	if (!partition_read_range(d, schema, table, column, !catalog_integer_type(type),
							  &range[0], &range[1], NULL))
		goto cleanup;
	for (int i = 0; i < 2; i++)
	{
		partition_target target = {schema, table, qshadow, column, type, interval};
		partition_set created;

		if (range[i] == NULL)
			continue;
		if (!partition_extend_to_text(d, &target, range[i], &created))
			goto cleanup;
		for (int j = 0; j < created.count; j++)
			log_info("created partition \"%s.%s\" for rows beyond the planned partitions",
					 schema, created.items[j].name);
		if (ncreated != NULL)
			*ncreated += created.count;
		partition_set_free(&created);
	}
	ok = true;

cleanup:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(types);
	free(range[0]);
	free(range[1]);
	free(qshadow);
	PQclear(res);
	return ok;
}

bool
partition_ahead(db *d, const char *schema, const char *table, const char *interval, int ahead,
				int *ncreated)
{
	char	   *qtable = NULL;
	PGresult   *res = NULL;
	const char *width = interval;
	partition_target target;
	partition_set created = {0};
	catalog_table *t = NULL;
	Oid			type;
	bool		ok = false;
	buf			sql;

	*ncreated = 0;
	buf_init(&sql);
	res = db_execf(d, "look for pgrepart's state",
				   "SELECT (pg_catalog.to_regclass('pgrepart.migration') IS NOT NULL)::pg_catalog.text");
	if (res == NULL)
		goto cleanup;
	buf_append(&sql, "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, "
			   "  a.attname::pg_catalog.text, a.atttypid, ");
	/* The width pgrepart recorded, when it migrated the table. */
	buf_append(&sql, PQgetvalue(res, 0, 0)[0] == 't' ?
			   "(SELECT m.partition_interval FROM pgrepart.migration m "
			   " WHERE m.source_schema = n.nspname AND m.source_table = c.relname LIMIT 1) " :
			   "NULL::pg_catalog.text ");
	buf_append(&sql, "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
			   "JOIN pg_catalog.pg_partitioned_table p ON p.partrelid = c.oid "
			   "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0] "
			   "WHERE c.oid = pg_catalog.to_regclass(%text) AND p.partstrat = 'r' AND p.partnatts = 1");
	PQclear(res);
	if (!catalog_read(d, schema, table, &t))
	{
		res = NULL;
		goto cleanup;
	}
	qtable = ident_qualified(t->schema, t->name);
	res = db_execf(d, "read the table's partitioning", sql.data, qtable);
	buf_reset(&sql);
	if (res == NULL)
		goto cleanup;
	if (PQntuples(res) != 1)
	{
		log_error("table \"%s\" is not range-partitioned on one column", qtable);
		log_hint("pgrepart partitions adds future partitions to a table partitioned by RANGE on "
				 "one column, such as one pgrepart migrated.");
		goto cleanup;
	}
	if (!db_getf(res, 0, "%oid", 3, &type))
		goto cleanup;
	if (width == NULL && !PQgetisnull(res, 0, 4))
		width = PQgetvalue(res, 0, 4);
	if (width == NULL)
	{
		log_error("the partition width of \"%s\" is not known", qtable);
		log_hint("Give it with --interval, e.g. --interval='3 months'.");
		goto cleanup;
	}
	{
		char	   *qparent = ident_qualified(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
		PGresult   *v;

		/* How far ahead: from now for times, from the largest value for integers. */
		buf_append(&sql, catalog_integer_type(type) ?
				   "SELECT (COALESCE((SELECT pg_catalog.max(" : "SELECT (pg_catalog.now() + %int4 * %text::pg_catalog.interval)::");
		if (catalog_integer_type(type))
		{
			ident_quote(&sql, PQgetvalue(res, 0, 2));
			buf_appendf(&sql, ") FROM %s), 0) + %%int4 * %%text::pg_catalog.int8)::pg_catalog.text",
						qparent);
		}
		else
			buf_appendf(&sql, "%s::pg_catalog.text", partition_time_type(type));
		v = db_execf(d, "compute how far ahead to partition", sql.data, ahead, width);
		target = (partition_target) {PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), qparent,
			PQgetvalue(res, 0, 2), type, width};
		/*
		 * CREATE TABLE ... PARTITION OF locks the live parent ACCESS
		 * EXCLUSIVE: wait for it briefly, never long enough to queue the
		 * table's writers behind a long transaction.  The next run retries.
		 */
		ok = v != NULL && db_exec(d, "limit the wait for the table's lock",
								  "SET lock_timeout = '1s'") &&
			partition_extend_to_text(d, &target, PQgetvalue(v, 0, 0), &created);
		for (int i = 0; ok && i < created.count; i++)
			log_info("created partition \"%s.%s\"", PQgetvalue(res, 0, 0), created.items[i].name);
		*ncreated = ok ? created.count : 0;
		if (ok)
			partition_set_free(&created);
		PQclear(v);
		free(qparent);
	}

cleanup:
	PQclear(res);
	buf_free(&sql);
	free(qtable);
	catalog_table_free(t);
	return ok;
}
