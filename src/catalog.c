/*
 * catalog.c: what the server's catalogs say about one table; see catalog.h.
 *
 * Every query spells pg_catalog. and runs under the empty search_path db.c
 * sets, so pg_get_*def() output is schema-qualified and nothing a user
 * created can stand in for a catalog object.  Values are $n parameters.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/buf.h"
#include "pgrepart/catalog.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"

/* A text field as a new string, or NULL for SQL NULL. */
static char *
catalog_text(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

static void
catalog_object_list_push(catalog_object_list *list, char *schema, char *name, char *detail)
{
	catalog_object item = {schema, name, detail};

	ARRAY_PUSH(list->items, list->count, item);
}

/* Rows of (schema, name, detail) into list. */
static void
catalog_read_objects(const PGresult *res, catalog_object_list *list)
{
	for (int i = 0; i < PQntuples(res); i++)
		catalog_object_list_push(list, catalog_text(res, i, 0), catalog_text(res, i, 1),
								 catalog_text(res, i, 2));
}

static const char table_query[] =
	"SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence, c.relispartition, "
	"  EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid), "
	"  EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid), "
	"  c.relreplident, c.relrowsecurity, c.relforcerowsecurity, "
	"  pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text, "
	"  pg_catalog.pg_has_role(c.relowner, 'USAGE'), "
	"  pg_catalog.has_table_privilege(c.oid, 'SELECT'), "
	"  ts.spcname::pg_catalog.text, "
	"  pg_catalog.obj_description(c.oid, 'pg_class'), "
	"  c.relacl::pg_catalog.text, "
	"  c.reltuples::pg_catalog.float8, "
	"  CASE WHEN c.relkind IN ('r', 'm', 'p') THEN pg_catalog.pg_relation_size(c.oid) ELSE 0 END, "
	"  CASE WHEN c.relkind IN ('r', 'm', 'p') THEN pg_catalog.pg_total_relation_size(c.oid) ELSE 0 END, "
	/* True also with row_security off, where such a read fails instead. */
	"  pg_catalog.row_security_active(c.oid), "
	"  CASE WHEN c.relkind IN ('r', 'm', 'p') THEN pg_catalog.pg_indexes_size(c.oid) ELSE 0 END "
	"FROM pg_catalog.pg_class c "
	"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	"LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace "
	"WHERE c.relname = %text "
	/* $2: the schema, or the role's search path when none was given */
	"  AND (CASE WHEN %bool THEN n.nspname::pg_catalog.text = %text "
	"       ELSE n.nspname::pg_catalog.text = ANY (%text::pg_catalog.text[]) END) "
	"ORDER BY pg_catalog.array_position(%text::pg_catalog.text[], n.nspname::pg_catalog.text) "
	"LIMIT 1";

static bool
catalog_read_table(db *d, const char *schema, const char *name, catalog_table *t, bool *found)
{
	PGresult   *res;
	PGchar		relkind, persistence, replident;
	PGbool		is_partition, has_parent, has_children, rls, force_rls, is_owner, readable,
				rls_applies;
	PGfloat8	reltuples;
	PGint8		heap_bytes, total_bytes, index_bytes;
	bool		ok = false;

	res = db_execf(d, "look up the table", table_query, name, schema != NULL,
				   schema ? schema : "", d->search_path, d->search_path);
	if (res == NULL)
		return false;
	*found = PQntuples(res) == 1;
	if (!*found)
	{
		ok = true;
		goto cleanup;
	}
	if (!db_getf(res, 0, "%oid %char %char %bool %bool %bool %char %bool %bool %bool "
				 "%bool %float8 %int8 %int8 %bool %int8",
				 0, &t->oid, 3, &relkind, 4, &persistence, 5, &is_partition,
				 6, &has_parent, 7, &has_children, 8, &replident, 9, &rls,
				 10, &force_rls, 12, &is_owner, 13, &readable, 17, &reltuples,
				 18, &heap_bytes, 19, &total_bytes, 20, &rls_applies, 21, &index_bytes))
		goto cleanup;
	t->schema = catalog_text(res, 0, 1);
	t->name = catalog_text(res, 0, 2);
	t->relkind = relkind;
	t->persistence = persistence;
	t->is_partition = is_partition;
	t->has_parent = has_parent;
	t->has_children = has_children;
	t->replica_identity = replident;
	t->row_security = rls;
	t->force_row_security = force_rls;
	t->row_security_applies = rls_applies;
	t->owner = catalog_text(res, 0, 11);
	t->owned_by_current_user = is_owner;
	t->readable = readable;
	t->tablespace = catalog_text(res, 0, 14);
	t->comment = catalog_text(res, 0, 15);
	t->acl = catalog_text(res, 0, 16);
	t->estimated_rows = reltuples;
	t->heap_bytes = heap_bytes;
	t->total_bytes = total_bytes;
	t->index_bytes = index_bytes;
	ok = true;

cleanup:
	PQclear(res);
	return ok;
}

static const char columns_query[] =
	"SELECT a.attnum::pg_catalog.int4, a.attname::pg_catalog.text, "
	"  pg_catalog.format_type(a.atttypid, a.atttypmod), "
	"  CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END, "
	"  CASE WHEN a.attcollation <> ty.typcollation THEN cn.nspname::pg_catalog.text END, "
	"  CASE WHEN a.attcollation <> ty.typcollation THEN co.collname::pg_catalog.text END, "
	"  pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), "
	"  a.attnotnull, a.attidentity, a.attgenerated, "
	"  EXISTS (SELECT 1 FROM pg_catalog.pg_opclass oc "
	"          JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname = 'btree' "
	"          WHERE oc.opcdefault AND (oc.opcintype = a.atttypid "
	"            OR oc.opcintype = ty.typbasetype "
	"            OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast ca WHERE ca.castmethod = 'b' "
	"                       AND ca.castsource = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END "
	"                       AND ca.casttarget = oc.opcintype))), "
	"  pg_catalog.col_description(a.attrelid, a.attnum), "
	/* Binary COPY needs send and receive functions, of an array's elements too. */
	"  (SELECT bt.typsend <> 0 AND bt.typreceive <> 0 AND (bt.typcategory <> 'A' OR EXISTS "
	"     (SELECT 1 FROM pg_catalog.pg_type et WHERE et.oid = bt.typelem "
	"      AND et.typsend <> 0 AND et.typreceive <> 0)) "
	"   FROM pg_catalog.pg_type bt "
	"   WHERE bt.oid = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END) "
	"FROM pg_catalog.pg_attribute a "
	"JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid "
	"LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation "
	"LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace "
	"LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum "
	"WHERE a.attrelid = %oid AND a.attnum > 0 AND NOT a.attisdropped "
	"ORDER BY a.attnum";

static bool
catalog_read_columns(db *d, catalog_table *t)
{
	PGresult   *res = db_execf(d, "read the table's columns", columns_query, t->oid);
	int			n;
	bool		ok = false;

	if (res == NULL)
		return false;
	n = PQntuples(res);
	t->columns = xcalloc((size_t) n, sizeof(catalog_column));
	for (int i = 0; i < n; i++)
	{
		catalog_column *c = &t->columns[i];
		PGint4		attnum;
		Oid			base_type;
		PGbool		not_null, orderable, binary = 1;
		PGchar		identity, generated;

		if (!db_getf(res, i, "%int4 %oid %bool %char %char %bool",
					 0, &attnum, 3, &base_type, 7, &not_null, 8, &identity,
					 9, &generated, 10, &orderable) ||
			(!PQgetisnull(res, i, 12) && !db_getf(res, i, "%bool", 12, &binary)))
			goto cleanup;
		t->ncolumns++;
		c->attnum = attnum;
		c->name = catalog_text(res, i, 1);
		c->type = catalog_text(res, i, 2);
		c->base_type = base_type;
		c->collation_schema = catalog_text(res, i, 4);
		c->collation = catalog_text(res, i, 5);
		c->default_expr = catalog_text(res, i, 6);
		c->not_null = not_null;
		c->identity = identity;
		c->generated = generated;
		c->btree_orderable = orderable;
		c->comment = catalog_text(res, i, 11);
		c->binary_io = binary;
	}
	ok = true;

cleanup:
	PQclear(res);
	return ok;
}

/*
 * The names in rows (oid, name) of cols whose oid matches, in row order:
 * the key columns of one constraint or index.
 */
static bool
catalog_columns_of(const PGresult *cols, Oid oid, char ***out, int *n)
{
	for (int j = 0; j < PQntuples(cols); j++)
	{
		Oid			col_oid;

		if (!db_getf(cols, j, "%oid", 0, &col_oid))
			return false;
		if (col_oid == oid)
			ARRAY_PUSH(*out, *n, catalog_text(cols, j, 1));
	}
	return true;
}

/* Key columns of every constraint, in key order. */
static const char constraint_columns_query[] =
	"SELECT co.oid, a.attname::pg_catalog.text "
	"FROM pg_catalog.pg_constraint co, "
	"  pg_catalog.unnest(co.conkey) WITH ORDINALITY AS k(attnum, ord) "
	"JOIN pg_catalog.pg_attribute a ON a.attnum = k.attnum "
	"WHERE co.conrelid = %oid AND a.attrelid = co.conrelid "
	"ORDER BY co.oid, k.ord";

static const char constraints_query[] =
	"SELECT co.oid, co.conname::pg_catalog.text, co.contype, "
	"  pg_catalog.pg_get_constraintdef(co.oid) "
	"FROM pg_catalog.pg_constraint co "
	"WHERE co.conrelid = %oid AND co.contype IN ('p', 'u', 'c', 'x', 'f') "
	"ORDER BY co.contype = 'p' DESC, co.conname";

static bool
catalog_read_constraints(db *d, catalog_table *t)
{
	PGresult   *res = NULL;
	PGresult   *cols = NULL;
	bool		ok = false;

	res = db_execf(d, "read the table's constraints", constraints_query, t->oid);
	if (res == NULL)
		goto cleanup;
	cols = db_execf(d, "read the table's constraint columns", constraint_columns_query, t->oid);
	if (cols == NULL)
		goto cleanup;
	t->constraints = xcalloc((size_t) PQntuples(res), sizeof(catalog_constraint));
	for (int i = 0; i < PQntuples(res); i++)
	{
		catalog_constraint *c = &t->constraints[i];
		Oid			oid;
		PGchar		type;

		if (!db_getf(res, i, "%oid %char", 0, &oid, 2, &type))
			goto cleanup;
		t->nconstraints++;
		c->oid = oid;
		c->name = catalog_text(res, i, 1);
		c->type = type;
		c->definition = catalog_text(res, i, 3);
		if (!catalog_columns_of(cols, oid, &c->columns, &c->ncolumns))
			goto cleanup;
	}
	ok = true;

cleanup:
	PQclear(res);
	PQclear(cols);
	return ok;
}

/*
 * The part of pg_get_indexdef() after "CREATE [UNIQUE] INDEX name ON
 * schema.table USING ", checked against the prefix the server would print
 * (quote_ident quotes exactly as pg_get_indexdef does), so a new shadow index
 * can reuse the method, columns, opclasses, INCLUDE, WITH and WHERE parts
 * verbatim.  NULL if the server printed something else.
 */
static const char indexes_query[] =
	"SELECT ic.oid, ic.relname::pg_catalog.text, i.indisunique, i.indisprimary, i.indisvalid, "
	"  i.indexprs IS NOT NULL, i.indpred IS NOT NULL, "
	"  EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co "
	"          WHERE co.conindid = i.indexrelid AND co.conrelid = i.indrelid "
	"            AND co.contype IN ('p', 'u', 'x')), "
	"  def, "
	"  CASE WHEN pg_catalog.left(def, pg_catalog.length(prefix)) = prefix "
	"       THEN pg_catalog.substr(def, pg_catalog.length(prefix) + 1) END "
	"FROM pg_catalog.pg_index i "
	"JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid "
	"JOIN pg_catalog.pg_class c ON c.oid = i.indrelid "
	"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace, "
	"  LATERAL (SELECT pg_catalog.pg_get_indexdef(i.indexrelid) AS def, "
	"     'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' "
	"       || pg_catalog.quote_ident(ic.relname) || ' ON ' "
	"       || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) "
	"       || ' USING ' AS prefix) AS d "
	"WHERE i.indrelid = %oid "
	"ORDER BY i.indisprimary DESC, ic.relname";

static const char index_columns_query[] =
	"SELECT i.indexrelid, a.attname::pg_catalog.text "
	"FROM pg_catalog.pg_index i, "
	"  pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord) "
	"LEFT JOIN pg_catalog.pg_attribute a ON a.attnum = k.attnum AND k.attnum > 0 "
	"WHERE i.indrelid = %oid AND (a.attrelid = i.indrelid OR a.attrelid IS NULL) "
	"  AND k.ord <= i.indnkeyatts "
	"ORDER BY i.indexrelid, k.ord";

static bool
catalog_read_indexes(db *d, catalog_table *t)
{
	PGresult   *res = NULL;
	PGresult   *cols = NULL;
	bool		ok = false;

	res = db_execf(d, "read the table's indexes", indexes_query, t->oid);
	if (res == NULL)
		goto cleanup;
	cols = db_execf(d, "read the table's index columns", index_columns_query, t->oid);
	if (cols == NULL)
		goto cleanup;
	t->indexes = xcalloc((size_t) PQntuples(res), sizeof(catalog_index));
	for (int i = 0; i < PQntuples(res); i++)
	{
		catalog_index *x = &t->indexes[i];
		Oid			oid;
		PGbool		unique, primary, valid, exprs, partial, backs;

		if (!db_getf(res, i, "%oid %bool %bool %bool %bool %bool %bool",
					 0, &oid, 2, &unique, 3, &primary, 4, &valid, 5, &exprs,
					 6, &partial, 7, &backs))
			goto cleanup;
		t->nindexes++;
		x->oid = oid;
		x->name = catalog_text(res, i, 1);
		x->unique = unique;
		x->primary = primary;
		x->valid = valid;
		x->has_expressions = exprs;
		x->partial = partial;
		x->backs_constraint = backs;
		x->definition = catalog_text(res, i, 8);
		x->method_and_columns = catalog_text(res, i, 9);
		if (!catalog_columns_of(cols, oid, &x->columns, &x->ncolumns))
			goto cleanup;
	}
	ok = true;

cleanup:
	PQclear(res);
	PQclear(cols);
	return ok;
}

/* The queries below all return (schema, name, detail) rows for one list. */
typedef struct catalog_list_query
{
	const char *what;
	size_t		offset;			/* of the catalog_object_list in catalog_table */
	const char *sql;			/* takes the table's oid as %oid */
} catalog_list_query;

static const catalog_list_query list_queries[] = {
	{"read foreign keys that reference the table",
		offsetof(catalog_table, incoming_fkeys),
		"SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, "
		"  co.conname::pg_catalog.text || ': ' || pg_catalog.pg_get_constraintdef(co.oid) "
		"FROM pg_catalog.pg_constraint co "
		"JOIN pg_catalog.pg_class c ON c.oid = co.conrelid "
		"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
		"WHERE co.contype = 'f' AND co.confrelid = %oid AND co.conparentid = 0 "
		"ORDER BY 1, 2, co.conname"},
	{"read the table's triggers", offsetof(catalog_table, triggers),
		"SELECT NULL::pg_catalog.text, t.tgname::pg_catalog.text, pg_catalog.pg_get_triggerdef(t.oid) "
		"FROM pg_catalog.pg_trigger t WHERE t.tgrelid = %oid AND NOT t.tgisinternal "
		"ORDER BY t.tgname"},
	{"read the table's rules", offsetof(catalog_table, rules),
		"SELECT NULL::pg_catalog.text, r.rulename::pg_catalog.text, pg_catalog.pg_get_ruledef(r.oid) "
		"FROM pg_catalog.pg_rewrite r WHERE r.ev_class = %oid AND r.rulename <> '_RETURN' "
		"ORDER BY r.rulename"},
	{"read the table's row-level security policies", offsetof(catalog_table, policies),
		"SELECT NULL::pg_catalog.text, p.polname::pg_catalog.text, "
		"  'FOR ' || CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' "
		"      WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END "
		"    || COALESCE(' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')', '') "
		"    || COALESCE(' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')', '') "
		"FROM pg_catalog.pg_policy p WHERE p.polrelid = %oid ORDER BY p.polname"},
	{"read views that depend on the table", offsetof(catalog_table, views),
		"SELECT DISTINCT n.nspname::pg_catalog.text, v.relname::pg_catalog.text, "
		"  CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END "
		"FROM pg_catalog.pg_depend dep "
		"JOIN pg_catalog.pg_rewrite r ON r.oid = dep.objid "
		"JOIN pg_catalog.pg_class v ON v.oid = r.ev_class "
		"JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace "
		"WHERE dep.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
		"  AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass "
		"  AND dep.refobjid = %oid AND v.oid <> dep.refobjid "
		"ORDER BY 1, 2"},
	{"read the table's owned sequences", offsetof(catalog_table, sequences),
		"SELECT n.nspname::pg_catalog.text, s.relname::pg_catalog.text, a.attname::pg_catalog.text "
		"FROM pg_catalog.pg_depend dep "
		"JOIN pg_catalog.pg_class s ON s.oid = dep.objid AND s.relkind = 'S' "
		"JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace "
		"JOIN pg_catalog.pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid "
		"WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass "
		"  AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass "
		"  AND dep.refobjid = %oid AND dep.deptype IN ('a', 'i') "
		"ORDER BY 1, 2"},
	{"read the publications the table belongs to", offsetof(catalog_table, publications),
		"SELECT NULL::pg_catalog.text, p.pubname::pg_catalog.text, "
		"  CASE WHEN p.puballtables THEN 'FOR ALL TABLES' ELSE 'FOR TABLE' END "
		"  || CASE WHEN p.pubviaroot THEN ' VIA ROOT' ELSE '' END "
		"FROM pg_catalog.pg_publication p "
		"WHERE p.puballtables OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel pr "
		"  WHERE pr.prpubid = p.oid AND pr.prrelid = %oid) "
		"ORDER BY 2"},
	{"read the table's storage parameters", offsetof(catalog_table, reloptions),
		"SELECT NULL::pg_catalog.text, o.option_name, o.option_value "
		"FROM pg_catalog.pg_class c, pg_catalog.pg_options_to_table(c.reloptions) o "
		"WHERE c.oid = %oid"},
};

static bool
catalog_read_lists(db *d, catalog_table *t)
{
	for (size_t i = 0; i < sizeof(list_queries) / sizeof(list_queries[0]); i++)
	{
		const catalog_list_query *q = &list_queries[i];
		PGresult   *res = db_execf(d, q->what, q->sql, t->oid);

		if (res == NULL)
			return false;
		catalog_read_objects(res, (catalog_object_list *) ((char *) t + q->offset));
		PQclear(res);
	}
	return true;
}

/* The stream's row key: the primary key, else a replica identity index. */
static void
catalog_choose_key(catalog_table *t)
{
	char	  **cols = NULL;
	int			n = 0;
	const catalog_constraint *pk = catalog_primary_key(t);

	if (pk != NULL)
	{
		cols = pk->columns;
		n = pk->ncolumns;
	}
	else if (t->replica_identity == 'i')
	{
		for (int i = 0; i < t->nindexes; i++)
		{
			/* pg_index.indisreplident is not read; the only unique index used is fine. */
			if (t->indexes[i].unique && !t->indexes[i].has_expressions && !t->indexes[i].partial)
			{
				cols = t->indexes[i].columns;
				n = t->indexes[i].ncolumns;
				break;
			}
		}
	}
	t->key_columns = xcalloc((size_t) n + 1, sizeof(char *));
	for (int i = 0; i < n; i++)
		t->key_columns[i] = xstrdup(cols[i]);
	t->nkey_columns = n;
}

bool
catalog_read(db *d, const char *schema, const char *name, catalog_table **out)
{
	catalog_table *t = xcalloc(1, sizeof(catalog_table));
	bool		found = false;

	*out = NULL;
	if (!catalog_read_table(d, schema, name, t, &found))
		goto fail;
	if (!found)
	{
		if (schema != NULL)
			log_error("table \"%s.%s\" does not exist", schema, name);
		else
			log_error("table \"%s\" does not exist", name);
		log_hint("Check the name: unquoted names are folded to lower case, so quote mixed "
				 "case and special characters (-t '\"Schema\".\"Table\"'); an unqualified "
				 "name is looked up on the role's search_path (%s).", d->search_path);
		goto fail;
	}
	if (!catalog_read_columns(d, t) || !catalog_read_constraints(d, t) ||
		!catalog_read_indexes(d, t) || !catalog_read_lists(d, t))
		goto fail;
	catalog_choose_key(t);
	*out = t;
	return true;

fail:
	catalog_table_free(t);
	return false;
}

static void
catalog_object_list_free(catalog_object_list *list)
{
	for (int i = 0; i < list->count; i++)
	{
		free(list->items[i].schema);
		free(list->items[i].name);
		free(list->items[i].detail);
	}
	free(list->items);
}

static void
catalog_strings_free(char **strings, int n)
{
	for (int i = 0; i < n; i++)
		free(strings[i]);
	free(strings);
}

void
catalog_table_free(catalog_table *t)
{
	if (t == NULL)
		return;
	free(t->schema);
	free(t->name);
	free(t->owner);
	free(t->tablespace);
	free(t->comment);
	free(t->acl);
	for (int i = 0; i < t->ncolumns; i++)
	{
		catalog_column *c = &t->columns[i];

		free(c->name);
		free(c->type);
		free(c->collation_schema);
		free(c->collation);
		free(c->default_expr);
		free(c->comment);
	}
	free(t->columns);
	for (int i = 0; i < t->nconstraints; i++)
	{
		free(t->constraints[i].name);
		free(t->constraints[i].definition);
		catalog_strings_free(t->constraints[i].columns, t->constraints[i].ncolumns);
	}
	free(t->constraints);
	for (int i = 0; i < t->nindexes; i++)
	{
		free(t->indexes[i].name);
		free(t->indexes[i].definition);
		free(t->indexes[i].method_and_columns);
		catalog_strings_free(t->indexes[i].columns, t->indexes[i].ncolumns);
	}
	free(t->indexes);
	catalog_strings_free(t->key_columns, t->nkey_columns);
	catalog_object_list_free(&t->incoming_fkeys);
	catalog_object_list_free(&t->triggers);
	catalog_object_list_free(&t->rules);
	catalog_object_list_free(&t->policies);
	catalog_object_list_free(&t->views);
	catalog_object_list_free(&t->sequences);
	catalog_object_list_free(&t->publications);
	catalog_object_list_free(&t->reloptions);
	free(t);
}

bool
catalog_integer_type(Oid type)
{
	return type == CATALOG_INT2OID || type == CATALOG_INT4OID || type == CATALOG_INT8OID;
}

bool
catalog_integer_like(Oid type)
{
	switch (type)
	{
		case CATALOG_INT2OID:
		case CATALOG_INT4OID:
		case CATALOG_INT8OID:
		case CATALOG_DATEOID:
		case CATALOG_TIMESTAMPOID:
		case CATALOG_TIMESTAMPTZOID:
			return true;
		default:
			return false;
	}
}

void
catalog_append_collate(buf *out, const catalog_column *c)
{
	if (c->collation == NULL)
		return;
	buf_append(out, " COLLATE ");
	ident_quote_qualified(out, c->collation_schema, c->collation);
}

const catalog_column *
catalog_find_column(const catalog_table *t, const char *name)
{
	for (int i = 0; i < t->ncolumns; i++)
		if (strcmp(t->columns[i].name, name) == 0)
			return &t->columns[i];
	return NULL;
}

bool
catalog_has_column(char *const *columns, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (columns[i] != NULL && strcmp(columns[i], name) == 0)
			return true;
	return false;
}

const catalog_constraint *
catalog_primary_key(const catalog_table *t)
{
	for (int i = 0; i < t->nconstraints; i++)
		if (t->constraints[i].type == 'p')
			return &t->constraints[i];
	return NULL;
}

bool
catalog_published_columns(db *d, const char *qrel, char ***names, Oid **types, int *count)
{
	PGresult   *res;
	int			n;

	res = db_execf(d, "read the published columns",
				   "SELECT a.attname::pg_catalog.text, a.atttypid "
				   "FROM pg_catalog.pg_attribute a "
				   "WHERE a.attrelid = %text::pg_catalog.regclass AND a.attnum > 0 "
				   "  AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum", qrel);
	if (res == NULL)
		return false;
	n = PQntuples(res);
	*names = xcalloc((size_t) n + 1, sizeof(char *));
	*types = xcalloc((size_t) n + 1, sizeof(Oid));
	*count = 0;
	for (int i = 0; i < n; i++)
	{
		if (!db_getf(res, i, "%oid", 1, &(*types)[i]))
		{
			PQclear(res);
			return false;
		}
		(*names)[i] = xstrdup(PQgetvalue(res, i, 0));
		(*count)++;
	}
	PQclear(res);
	return true;
}

bool
catalog_array_types(db *d, const Oid *types, int n, Oid **arrays, bool **compressible)
{
	PGresult   *res;
	buf			list;
	bool		ok = true;

	buf_init(&list);
	buf_append_char(&list, '{');
	for (int i = 0; i < n; i++)
		buf_appendf(&list, "%s%u", i ? "," : "", types[i]);
	buf_append_char(&list, '}');
	res = db_execf(d, "read the columns' array types",
				   "SELECT coalesce(t.typarray, 0), "
				   "  coalesce(t.typlen = -1 AND t.typstorage IN ('x', 'm'), false) "
				   "FROM pg_catalog.unnest(%text::pg_catalog.oid[]) "
				   "  WITH ORDINALITY AS u(type, n) "
				   "LEFT JOIN pg_catalog.pg_type t ON t.oid = u.type ORDER BY u.n", list.data);
	buf_free(&list);
	if (res == NULL)
		return false;
	*arrays = xcalloc((size_t) n + 1, sizeof(Oid));
	*compressible = xcalloc((size_t) n + 1, sizeof(bool));
	for (int i = 0; i < n && i < PQntuples(res) && ok; i++)
	{
		PGbool		c = 0;

		ok = db_getf(res, i, "%oid", 0, &(*arrays)[i]) && db_getf(res, i, "%bool", 1, &c);
		(*compressible)[i] = c != 0;
	}
	PQclear(res);
	return ok;
}
