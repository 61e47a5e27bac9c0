/*
 * plan.c: what a migration of one table will do; see plan.h.
 *
 * Pure: catalog in, DDL and findings out, so the DDL rules are unit-tested
 * without a server.  preflight_plan (preflight.c) reads the catalog and adds
 * what only the server knows: the column's range, the settings, the
 * privileges.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "pgrepart/backfill.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/plan.h"

static const char *const level_names[] = {
	[FINDING_PASS] = "pass",
	[FINDING_WARN] = "warn",
	[FINDING_BLOCK] = "block",
};

const char *
plan_finding_level_name(finding_level level)
{
	return level_names[level];
}

static const char *const phase_names[] = {
	[PLAN_PHASE_TABLE] = "table",
	[PLAN_PHASE_PARTITION] = "partition",
	[PLAN_PHASE_INDEX] = "index",
	[PLAN_PHASE_UNIQUE] = "unique",
	[PLAN_PHASE_FOREIGN_KEY] = "foreign_key",
	[PLAN_PHASE_COMMENT] = "comment",
};

const char *
plan_phase_name(plan_phase phase)
{
	return phase_names[phase];
}

void
plan_add_finding(plan *p, finding_level level, const char *check, const char *hint,
				 const char *fmt,...)
{
	plan_finding f;
	buf			message;
	va_list		ap;

	buf_init(&message);
	va_start(ap, fmt);
	buf_vappendf(&message, fmt, ap);
	va_end(ap);
	f.level = level;
	f.check = xstrdup(check);
	f.message = buf_steal(&message);
	f.hint = xstrdup_or_null(hint);
	ARRAY_PUSH(p->findings, p->nfindings, f);
}

int
plan_count_findings(const plan *p, finding_level level)
{
	int			n = 0;

	for (int i = 0; i < p->nfindings; i++)
		if (p->findings[i].level == level)
			n++;
	return n;
}

static void
plan_add_statement(plan *p, plan_phase phase, buf *sql)
{
	plan_statement s = {phase, buf_steal(sql), NULL, NULL};

	ARRAY_PUSH(p->statements, p->nstatements, s);
	buf_init(sql);
}

/*
 * An index or key: sql on the parent, which adopts what "<each_head>
 * <partition><each_tail>" built on each partition (PostgreSQL names those
 * as it would have).
 */
static void
plan_add_index(plan *p, plan_phase phase, buf *sql, const char *each_head, const char *each_tail)
{
	plan_statement s = {phase, buf_steal(sql), xstrdup(each_head), xstrdup(each_tail)};

	ARRAY_PUSH(p->statements, p->nstatements, s);
	buf_init(sql);
}

int64_t
plan_estimate_wal(const catalog_table *t)
{
	int64_t		rows_bytes = t->total_bytes - t->index_bytes;

	return rows_bytes + rows_bytes / 5 + t->index_bytes;
}

bool
plan_widen_key(const char *definition, const char *quoted_column, buf *out)
{
	const char *open = NULL;
	int			depth = 0;
	bool		quoted = false;

	for (const char *c = definition; *c; c++)
	{
		if (quoted)
		{
			if (*c == '"')
				quoted = false;	/* a doubled "" reopens at the next char */
			continue;
		}
		if (*c == '"')
			quoted = true;
		else if (*c == '(')
		{
			if (depth++ == 0 && open == NULL)
				open = c;
		}
		else if (*c == ')' && depth > 0 && --depth == 0 && open != NULL)
		{
			buf_append_len(out, definition, (size_t) (c - definition));
			buf_append(out, ", ");
			buf_append(out, quoted_column);
			buf_append(out, c);
			return true;
		}
	}
	return false;
}

/* "(a, b)" for messages, from unquoted names. */
static void
plan_column_list(buf *out, char *const *columns, int n, const char *extra)
{
	buf_append_char(out, '(');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			buf_append(out, ", ");
		if (columns[i] == NULL)
			buf_append(out, "<expression>");
		else
			ident_quote(out, columns[i]);
	}
	if (extra != NULL)
	{
		buf_append(out, ", ");
		ident_quote(out, extra);
	}
	buf_append_char(out, ')');
}

/* "a, b, c": the names of list, quoted where they need it. */
void
plan_name_list(buf *out, const catalog_object_list *list)
{
	for (int i = 0; i < list->count; i++)
	{
		if (i > 0)
			buf_append(out, ", ");
		ident_quote_qualified(out, list->items[i].schema, list->items[i].name);
	}
}

/*
 * With the default replica identity the stream's old key lacks the
 * partition column, so deletes look in every partition of the shadow.  An
 * identity index on key + partition column makes every lookup exact; it can
 * be built without blocking writes.
 */
static void
plan_check_identity(plan *p, int encoding)
{
	const catalog_table *t = p->table;
	char		name[IDENT_MAX_BYTES + 1];
	buf			hint, cols;

	ident_with_suffix(name, t->name, "_pgrepart_identity", encoding);
	buf_init(&hint);
	buf_init(&cols);
	plan_column_list(&cols, t->key_columns, t->nkey_columns, p->partition_column);
	buf_append(&hint, "For faster deletes, first: CREATE UNIQUE INDEX CONCURRENTLY ");
	ident_quote(&hint, name);
	buf_append(&hint, " ON ");
	ident_quote_qualified(&hint, t->schema, t->name);
	buf_appendf(&hint, " %s; ALTER TABLE ", cols.data);
	ident_quote_qualified(&hint, t->schema, t->name);
	buf_append(&hint, " REPLICA IDENTITY USING INDEX ");
	ident_quote(&hint, name);
	buf_append_char(&hint, ';');
	plan_add_finding(p, FINDING_WARN, "replica_identity", hint.data,
					 "the replica identity (the primary key) lacks \"%s\": deletes streamed "
					 "into the shadow must look in every partition", p->partition_column);
	buf_free(&hint);
	buf_free(&cols);
}

/* Findings the table's kind, key and partition column give. */
/*
 * Columns binary COPY cannot carry: a type without binary send or receive
 * (aclitem, or an array of it) would fail the copy halfway.
 */
static void
plan_check_binary(plan *p)
{
	const catalog_table *t = p->table;

	for (int i = 0; i < t->ncolumns; i++)
		if (!t->columns[i].binary_io && !t->columns[i].generated)
			plan_add_finding(p, FINDING_BLOCK, "column_type",
							 "Change the column to a type with a binary form (aclitem[] as "
							 "text[], say) before migrating.",
							 "column \"%s\" has type %s, which has no binary send or receive "
							 "function: the copy reads and writes binary COPY, so it cannot "
							 "carry the column", t->columns[i].name, t->columns[i].type);
}

const char *
plan_copy_order_name(plan_copy_order order)
{
	return order == PLAN_COPY_KEY ? "key" : "physical";
}

/* "the key's correlation with the heap is 0.999", or why it is not known. */
static void
plan_correlation_text(buf *out, const plan *p)
{
	if (isnan(p->key_correlation))
		buf_append(out, "its correlation with the heap is unknown until the table is analysed");
	else
		buf_appendf(out, "its correlation with the heap is %.3f", p->key_correlation);
}

/*
 * How the copy will read the table: in ranges of heap pages or of the key,
 * each under its own short snapshot, where the key has an order and a
 * binary form; otherwise under the slot's one snapshot, held for the whole
 * copy.
 */
static void
plan_check_copy(plan *p)
{
	const catalog_table *t = p->table;
	buf			b, c;

	if (t->nkey_columns == 0)
		return;
	buf_init(&b);
	buf_init(&c);
	plan_column_list(&b, t->key_columns, t->nkey_columns, NULL);
	plan_correlation_text(&c, p);
	if (!backfill_supported(t))
		plan_add_finding(p, FINDING_WARN, "copy",
						 "Run it when the database can spare vacuum for the copy's length, or "
						 "give the table a key of types with a btree order and a binary form.",
						 "the key %s has a type with no btree order or no binary form, so it "
						 "cannot be paged by: the copy runs under one snapshot held for its "
						 "whole length, which holds back vacuum's horizon database-wide",
						 b.data);
	else if (p->copy_order == PLAN_COPY_PHYSICAL)
		plan_add_finding(p, FINDING_PASS, "copy",
						 NULL, "copy order: physical: the copy reads ranges of heap pages, each "
						 "page once, each range under its own short snapshot (the key %s: %s)",
						 b.data, c.data);
	else if (isnan(p->key_correlation) || fabs(p->key_correlation) < 0.9)
		plan_add_finding(p, FINDING_WARN, "copy",
						 "Leave out --copy-order key: the physical order reads each page once.",
						 "copy order: key: the copy reads key ranges of %s in the key's order, "
						 "each under its own short snapshot, and %s, so it may read a heap page "
						 "once per row, at random", b.data, c.data);
	else
		plan_add_finding(p, FINDING_PASS, "copy", NULL,
						 "copy order: key: the copy reads key ranges of %s in the key's order, "
						 "each under its own short snapshot (%s)", b.data, c.data);
	buf_free(&b);
	buf_free(&c);
}

static void
plan_check_table(plan *p, int encoding)
{
	const catalog_table *t = p->table;
	const catalog_column *col = catalog_find_column(t, p->partition_column);
	buf			b;

	buf_init(&b);
	if (t->relkind == 'p')
		plan_add_finding(p, FINDING_BLOCK, "table_kind",
						 "Use \"pgrepart partitions\" to add partitions to it.",
						 "table is already partitioned");
	if (t->is_partition)
		plan_add_finding(p, FINDING_BLOCK, "table_kind", "Migrate the partitioned parent instead.",
						 "table is a partition of another table");
	else if (t->has_parent || t->has_children)
		plan_add_finding(p, FINDING_BLOCK, "table_kind",
						 "Detach the inheritance (ALTER TABLE ... NO INHERIT) first.",
						 "table takes part in table inheritance, which cannot be carried "
						 "over to a partitioned table");
	if (t->persistence == 't')
		plan_add_finding(p, FINDING_BLOCK, "table_kind", NULL,
						 "table is temporary and only visible to its own session");
	else if (t->persistence == 'u')
		plan_add_finding(p, FINDING_BLOCK, "table_kind",
						 "Make it logged first (ALTER TABLE ... SET LOGGED).",
						 "table is unlogged: its changes are not written to WAL, so they "
						 "cannot be streamed");

	if (t->nkey_columns == 0)
		plan_add_finding(p, FINDING_BLOCK, "primary_key",
						 "Add a primary key, or a unique index on NOT NULL columns with "
						 "REPLICA IDENTITY USING INDEX.",
						 t->replica_identity == 'f' ?
						 "table has no primary key: pgrepart copies the table in key ranges "
						 "and applies each change to the one row its key names; REPLICA "
						 "IDENTITY FULL streams whole rows, but rows that are equal in every "
						 "column cannot be told apart" :
						 "table has no primary key: changes cannot be matched to rows, and "
						 "publishing it would make UPDATE and DELETE on it fail");
	else
	{
		plan_column_list(&b, t->key_columns, t->nkey_columns, NULL);
		plan_add_finding(p, catalog_primary_key(t) ? FINDING_PASS : FINDING_WARN,
						 "primary_key", NULL, "rows are identified by %s%s", b.data,
						 catalog_primary_key(t) ? " (the primary key)" :
						 " (the replica identity index; there is no primary key)");
		buf_reset(&b);
	}
	if (t->replica_identity == 'n')
		plan_add_finding(p, FINDING_BLOCK, "replica_identity",
						 "ALTER TABLE ... REPLICA IDENTITY DEFAULT.",
						 "replica identity is NOTHING: once published, UPDATE and DELETE "
						 "on the table would fail");
	else if (t->replica_identity == 'f')
		plan_add_finding(p, FINDING_PASS, "replica_identity", NULL,
						 "replica identity is FULL, and stays FULL on the new table and each "
						 "partition: updates log the whole old row (more WAL)");
	else if (t->replica_identity == 'd' && catalog_primary_key(t) != NULL &&
			 !catalog_has_column(t->key_columns, t->nkey_columns, p->partition_column))
		plan_check_identity(p, encoding);

	plan_check_binary(p);
	if (col == NULL)
		plan_add_finding(p, FINDING_BLOCK, "partition_column", NULL,
						 "column \"%s\" does not exist", p->partition_column);
	else
	{
		if (!col->not_null)
			plan_add_finding(p, FINDING_BLOCK, "partition_column",
							 "Check there are none (SELECT count(*) ... WHERE col IS NULL), then "
							 "ALTER TABLE ... ALTER COLUMN ... SET NOT NULL (a NOT VALID CHECK "
							 "constraint validated first avoids a long lock).",
							 "partition column \"%s\" is nullable: a NULL cannot be routed to a "
							 "range partition or be part of the primary key", col->name);
		if (col->generated)
			plan_add_finding(p, FINDING_BLOCK, "partition_column", NULL,
							 "partition column \"%s\" is a generated column, which PostgreSQL "
							 "cannot partition by", col->name);
		if (!partition_type_supported(col))
			plan_add_finding(p, FINDING_BLOCK, "partition_column",
							 "Partition by a date, timestamp, timestamptz or integer column.",
							 "partition column \"%s\" has type %s, which cannot be split at an "
							 "interval", col->name, col->type);
		else if (col->not_null && !col->generated)
			plan_add_finding(p, FINDING_PASS, "partition_column", NULL,
							 "partition column \"%s\" is %s NOT NULL", col->name, col->type);
	}
	buf_free(&b);
}

/* Findings for what points at the table and must be carried over at cutover. */
static void
plan_check_dependents(plan *p)
{
	const catalog_table *t = p->table;
	buf			b;

	buf_init(&b);
	for (int i = 0; i < t->incoming_fkeys.count; i++)
	{
		const catalog_object *fk = &t->incoming_fkeys.items[i];

		buf_reset(&b);
		ident_quote_qualified(&b, fk->schema, fk->name);
		plan_add_finding(p, FINDING_BLOCK, "incoming_foreign_key",
						 "A foreign key cannot reference a partitioned table by a key that "
						 "lacks the partition column: drop it, or widen it to include the "
						 "partition column, before the run.",
						 "foreign key on %s references this table: %s", b.data, fk->detail);
	}
	if (t->incoming_fkeys.count == 0)
		plan_add_finding(p, FINDING_PASS, "incoming_foreign_key", NULL,
						 "no foreign keys reference the table");

	struct
	{
		const catalog_object_list *list;
		const char *check;
		const char *what;
	}			carried[] = {
		{&t->triggers, "triggers", "trigger(s)"},
		{&t->rules, "rules", "rule(s)"},
		{&t->policies, "policies", "row-level security policy(ies)"},
		{&t->views, "views", "dependent view(s)"},
	};

	for (size_t i = 0; i < sizeof(carried) / sizeof(carried[0]); i++)
	{
		if (carried[i].list->count == 0)
			continue;
		buf_reset(&b);
		plan_name_list(&b, carried[i].list);
		plan_add_finding(p, FINDING_WARN, carried[i].check,
						 "They fire or apply on the source until the swap; check them against "
						 "the new table after it.",
						 "%d %s will be re-created on the new table at cutover: %s",
						 carried[i].list->count, carried[i].what, b.data);
	}
	if (t->sequences.count > 0)
	{
		buf_reset(&b);
		plan_name_list(&b, &t->sequences);
		plan_add_finding(p, FINDING_PASS, "sequences", NULL,
						 "%d owned sequence(s) continue from their current value after the "
						 "swap: %s", t->sequences.count, b.data);
	}
	for (int i = 0; i < t->publications.count; i++)
	{
		const catalog_object *pub = &t->publications.items[i];
		bool		via_root = strstr(pub->detail, " VIA ROOT") != NULL;

		if (strncmp(pub->detail, "FOR ALL TABLES", 14) == 0)
			plan_add_finding(p, FINDING_WARN, "publications",
							 "Make sure its subscribers can take the shadow's tables, or "
							 "exclude them.",
							 "publication \"%s\" publishes all tables: the shadow and its "
							 "partitions are published as soon as they exist", pub->name);
		else if (via_root)
			plan_add_finding(p, FINDING_PASS, "publications", NULL,
							 "publication \"%s\" will publish the new table after the swap, "
							 "under its own name (publish_via_partition_root)", pub->name);
		else
			plan_add_finding(p, FINDING_WARN, "publications",
							 "For subscribers that know the table by its name: ALTER PUBLICATION "
							 "... SET (publish_via_partition_root = true) before the swap.",
							 "publication \"%s\" will publish the new table after the swap, but "
							 "its changes under each partition's name (publish_via_partition_root "
							 "is off): a subscriber without tables of those names stops with an "
							 "error", pub->name);
	}
	if (t->replica_identity == 'i')
	{
		plan_add_finding(p, FINDING_PASS, "replica_identity", NULL,
						 "the replica identity index becomes the new table's and each "
						 "partition's (widened by \"%s\")", p->partition_column);
	}
	buf_free(&b);
}

/* Column definitions and CHECK constraints of the partitioned table. */
static void
plan_ddl_table(plan *p, const char *qshadow, buf *sql)
{
	const catalog_table *t = p->table;
	bool		first = true;

	buf_appendf(sql, "CREATE TABLE %s (", qshadow);
	for (int i = 0; i < t->ncolumns; i++)
	{
		const catalog_column *c = &t->columns[i];

		buf_append(sql, first ? "\n    " : ",\n    ");
		first = false;
		ident_quote(sql, c->name);
		buf_appendf(sql, " %s", c->type);
		catalog_append_collate(sql, c);
		if (c->generated == 's')
			buf_appendf(sql, " GENERATED ALWAYS AS (%s) STORED", c->default_expr);
		else if (c->identity == 'a')
		{
			/*
			 * The apply sets the column to the source's values, in UPDATEs
			 * too, which ALWAYS refuses; the swap makes it ALWAYS again.
			 */
			buf_append(sql, " GENERATED BY DEFAULT AS IDENTITY /* ALWAYS from the swap on */");
		}
		else if (c->identity == 'd')
			buf_append(sql, " GENERATED BY DEFAULT AS IDENTITY");
		else if (c->default_expr != NULL)
			buf_appendf(sql, " DEFAULT %s", c->default_expr);
		if (c->not_null)
			buf_append(sql, " NOT NULL");
	}
	for (int i = 0; i < t->nconstraints; i++)
	{
		const catalog_constraint *k = &t->constraints[i];

		if (k->type != 'c')
			continue;
		buf_append(sql, first ? "\n    " : ",\n    ");
		first = false;
		buf_append(sql, "CONSTRAINT ");
		ident_quote(sql, k->name);
		buf_appendf(sql, " %s", k->definition);
	}
	buf_append(sql, "\n) PARTITION BY RANGE (");
	ident_quote(sql, p->partition_column);
	buf_append_char(sql, ')');
	if (t->tablespace != NULL)
	{
		buf_append(sql, " TABLESPACE ");
		ident_quote(sql, t->tablespace);
	}
	buf_append_char(sql, ';');
	plan_add_statement(p, PLAN_PHASE_TABLE, sql);
}

static void
plan_ddl_partitions(plan *p, const char *qshadow, buf *sql)
{
	const catalog_table *t = p->table;

	for (int i = 0; i < p->partitions.count; i++)
	{
		const partition_bound *b = &p->partitions.items[i];

		buf_append(sql, "CREATE TABLE ");
		ident_quote_qualified(sql, t->schema, b->name);
		buf_appendf(sql, " PARTITION OF %s ", qshadow);
		if (b->is_default)
			buf_append(sql, "DEFAULT");
		else
		{
			buf_append(sql, "FOR VALUES FROM (");
			ident_literal(sql, b->from);
			buf_append(sql, ") TO (");
			ident_literal(sql, b->to);
			buf_append_char(sql, ')');
		}
		/* Storage parameters live on each partition: a partitioned table takes none. */
		for (int j = 0; j < t->reloptions.count; j++)
		{
			const catalog_object *o = &t->reloptions.items[j];
			char	   *dot = strchr(o->name, '.');

			buf_append(sql, j == 0 ? " WITH (" : ", ");
			if (dot != NULL)
			{
				buf_append_len(sql, o->name, (size_t) (dot - o->name));
				buf_append_char(sql, '.');
				ident_quote(sql, dot + 1);
			}
			else
				ident_quote(sql, o->name);
			buf_append(sql, " = ");
			ident_literal(sql, o->detail);
			if (j == t->reloptions.count - 1)
				buf_append_char(sql, ')');
		}
		buf_append_char(sql, ';');
		plan_add_statement(p, PLAN_PHASE_PARTITION, sql);
	}
}

/* A shadow-only name: the original's plus PLAN_SHADOW_SUFFIX, within NAMEDATALEN. */
static char *
plan_shadow_object_name(const char *name, int encoding)
{
	char		out[IDENT_MAX_BYTES + 1];

	ident_with_suffix(out, name, PLAN_SHADOW_SUFFIX, encoding);
	return ident_quoted(out);
}

static void
plan_warn_widened(plan *p, const char *what, const char *name, char *const *columns, int n)
{
	buf			before, after;

	buf_init(&before);
	buf_init(&after);
	plan_column_list(&before, columns, n, NULL);
	plan_column_list(&after, columns, n, p->partition_column);
	plan_add_finding(p, FINDING_WARN, "unique_widened",
					 "PostgreSQL requires unique keys of a partitioned table to include the "
					 "partition column; keep the values unique in the application (UUIDs or "
					 "a sequence do), or check for duplicates periodically.",
					 "%s \"%s\" %s becomes %s: the database will no longer reject two rows "
					 "with the same %s and a different \"%s\"",
					 what, name, before.data, after.data, before.data, p->partition_column);
	buf_free(&before);
	buf_free(&after);
}

static void
plan_ddl_keys(plan *p, const char *qshadow, int encoding, buf *sql)
{
	const catalog_table *t = p->table;
	char	   *qcol = ident_quoted(p->partition_column);
	buf			definition, each;

	buf_init(&definition);
	buf_init(&each);
	for (int i = 0; i < t->nconstraints; i++)
	{
		const catalog_constraint *k = &t->constraints[i];
		char	   *qname;

		if (k->type == 'x')
		{
			plan_add_finding(p, FINDING_BLOCK, "exclusion_constraint",
							 "Drop it, or enforce it per partition after the run.",
							 "exclusion constraint \"%s\" cannot be created on a partitioned "
							 "table", k->name);
			continue;
		}
		if (k->type != 'p' && k->type != 'u')
			continue;
		buf_reset(&definition);
		if (catalog_has_column(k->columns, k->ncolumns, p->partition_column))
			buf_append(&definition, k->definition);
		else
		{
			if (!plan_widen_key(k->definition, qcol, &definition))
				buf_append(&definition, k->definition);
			plan_warn_widened(p, k->type == 'p' ? "primary key" : "unique constraint",
							  k->name, k->columns, k->ncolumns);
		}
		qname = plan_shadow_object_name(k->name, encoding);
		buf_appendf(sql, "ALTER TABLE %s ADD CONSTRAINT %s %s;", qshadow, qname, definition.data);
		/* Each partition's constraint PostgreSQL names, as it does when it recurses. */
		buf_reset(&each);
		buf_appendf(&each, " ADD %s", definition.data);
		plan_add_index(p, k->type == 'p' ? PLAN_PHASE_INDEX : PLAN_PHASE_UNIQUE, sql,
					   "ALTER TABLE ", each.data);
		free(qname);
	}
	buf_free(&definition);
	buf_free(&each);
	free(qcol);
}

static void
plan_ddl_indexes(plan *p, const char *qshadow, int encoding, buf *sql)
{
	const catalog_table *t = p->table;
	char	   *qcol = ident_quoted(p->partition_column);
	buf			each;

	buf_init(&each);
	for (int i = 0; i < t->nindexes; i++)
	{
		const catalog_index *x = &t->indexes[i];
		char	   *qname;

		if (x->backs_constraint)
			continue;
		if (!x->valid)
		{
			plan_add_finding(p, FINDING_WARN, "invalid_index",
							 "It is left over from a failed CREATE INDEX CONCURRENTLY; drop it "
							 "or REINDEX it.",
							 "index \"%s\" is invalid and will not be recreated", x->name);
			continue;
		}
		if (x->method_and_columns == NULL)
		{
			plan_add_finding(p, FINDING_BLOCK, "index", NULL,
							 "could not take apart the definition of index \"%s\": %s",
							 x->name, x->definition);
			continue;
		}
		if (x->unique && x->has_expressions)
		{
			plan_add_finding(p, FINDING_BLOCK, "unique_index",
							 "Replace it with a unique index on plain columns.",
							 "unique index \"%s\" uses expressions, which a partitioned table "
							 "cannot enforce", x->name);
			continue;
		}
		buf_reset(&each);
		buf_append(&each, " USING ");
		if (x->unique && !catalog_has_column(x->columns, x->ncolumns, p->partition_column))
		{
			if (!plan_widen_key(x->method_and_columns, qcol, &each))
				buf_append(&each, x->method_and_columns);
			plan_warn_widened(p, "unique index", x->name, x->columns, x->ncolumns);
		}
		else
			buf_append(&each, x->method_and_columns);
		qname = plan_shadow_object_name(x->name, encoding);
		buf_appendf(sql, "CREATE %sINDEX %s ON %s%s;", x->unique ? "UNIQUE " : "", qname,
					qshadow, each.data);
		plan_add_index(p, x->unique ? PLAN_PHASE_UNIQUE : PLAN_PHASE_INDEX, sql,
					   x->unique ? "CREATE UNIQUE INDEX ON " : "CREATE INDEX ON ", each.data);
		free(qname);
	}
	buf_free(&each);
	free(qcol);
}

static void
plan_ddl_foreign_keys(plan *p, const char *qshadow, buf *sql)
{
	const catalog_table *t = p->table;

	for (int i = 0; i < t->nconstraints; i++)
	{
		const catalog_constraint *k = &t->constraints[i];

		if (k->type != 'f')
			continue;
		/* Constraint names are per table, so the original names can stay. */
		buf_appendf(sql, "ALTER TABLE %s ADD CONSTRAINT ", qshadow);
		ident_quote(sql, k->name);
		buf_appendf(sql, " %s;", k->definition);
		plan_add_statement(p, PLAN_PHASE_FOREIGN_KEY, sql);
	}
}

static void
plan_ddl_comments(plan *p, const char *qshadow, buf *sql)
{
	const catalog_table *t = p->table;

	if (t->comment != NULL)
	{
		buf_appendf(sql, "COMMENT ON TABLE %s IS ", qshadow);
		ident_literal(sql, t->comment);
		buf_append_char(sql, ';');
		plan_add_statement(p, PLAN_PHASE_COMMENT, sql);
	}
	for (int i = 0; i < t->ncolumns; i++)
	{
		const catalog_column *c = &t->columns[i];

		if (c->comment == NULL)
			continue;
		buf_appendf(sql, "COMMENT ON COLUMN %s.", qshadow);
		ident_quote(sql, c->name);
		buf_append(sql, " IS ");
		ident_literal(sql, c->comment);
		buf_append_char(sql, ';');
		plan_add_statement(p, PLAN_PHASE_COMMENT, sql);
	}
}

/*
 * Whether every value the table takes today has a partition after the
 * swap: the DEFAULT partition (the default) takes what no range does, the
 * infinities included; without it such writes fail.
 */
static void
plan_check_default(plan *p)
{
	const partition_set *s = &p->partitions;
	const partition_bound *first = NULL, *last = NULL;
	bool		with_default = false;

	for (int i = 0; i < s->count; i++)
	{
		if (s->items[i].is_default)
			with_default = true;
		else
		{
			first = first ? first : &s->items[i];
			last = &s->items[i];
		}
	}
	if (first == NULL && !with_default)
		return;
	if (with_default && s->far_ranges > 0)
		plan_add_finding(p, FINDING_PASS, "default_partition", NULL,
						 "a DEFAULT partition takes rows outside every range%s, so every \"%s\" "
						 "the table takes today is taken after the swap; the rows of %d range(s) "
						 "far from the rest go there too, instead of partitions of their own and "
						 "empty ones between (the partitions span %s .. %s)",
						 s->has_infinite ? " (the table holds infinity)" : "", p->partition_column,
						 s->far_ranges, s->min_value ? s->min_value : "?",
						 s->max_value ? s->max_value : "?");
	else if (with_default)
		plan_add_finding(p, FINDING_PASS, "default_partition", NULL,
						 "a DEFAULT partition takes rows outside every range%s, so every \"%s\" "
						 "the table takes today is taken after the swap",
						 s->has_infinite ? " (the table holds infinity)" : "", p->partition_column);
	else if (s->has_infinite)
		plan_add_finding(p, FINDING_BLOCK, "default_partition",
						 "Run without --no-default-partition.",
						 "the table holds infinity in \"%s\", which only a DEFAULT partition can "
						 "hold", p->partition_column);
	else
		plan_add_finding(p, FINDING_WARN, "default_partition",
						 "Run without --no-default-partition, or add future partitions ahead of "
						 "time (pgrepart partitions --ahead) and keep writes inside them.",
						 "without a DEFAULT partition, a write whose \"%s\" falls before %s or "
						 "from %s on fails after the swap (no partition of relation found for "
						 "row), where the table takes it today", p->partition_column,
						 first ? first->from : "?", last ? last->to : "?");
}

void
plan_derive(plan *p, int encoding)
{
	char		shadow[IDENT_MAX_BYTES + 1];
	char	   *qshadow;
	buf			sql;

	ident_with_suffix(shadow, p->table->name, PLAN_SHADOW_SUFFIX, encoding);
	p->shadow_name = xstrdup(shadow);
	qshadow = ident_qualified(p->table->schema, p->shadow_name);
	plan_check_table(p, encoding);
	plan_check_copy(p);
	plan_check_dependents(p);
	plan_check_default(p);

	buf_init(&sql);
	plan_ddl_table(p, qshadow, &sql);
	plan_ddl_partitions(p, qshadow, &sql);
	plan_ddl_keys(p, qshadow, encoding, &sql);
	plan_ddl_indexes(p, qshadow, encoding, &sql);
	plan_ddl_foreign_keys(p, qshadow, &sql);
	plan_ddl_comments(p, qshadow, &sql);
	buf_free(&sql);
	free(qshadow);
}
void
plan_free(plan *p)
{
	if (p == NULL)
		return;
	catalog_table_free(p->table);
	free(p->partition_column);
	free(p->interval);
	free(p->shadow_name);
	partition_set_free(&p->partitions);
	for (int i = 0; i < p->nfindings; i++)
	{
		free(p->findings[i].check);
		free(p->findings[i].message);
		free(p->findings[i].hint);
	}
	free(p->findings);
	for (int i = 0; i < p->nstatements; i++)
	{
		free(p->statements[i].sql);
		free(p->statements[i].each_head);
		free(p->statements[i].each_tail);
	}
	free(p->statements);
	free(p);
}
