/* preflight.c: what the server and the role must allow; see preflight.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libpqtypes.h>

#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/partition.h"
#include "pgrepart/preflight.h"

/* Slots and senders a run uses: the main stream and the verification's temporary one. */
#define PREFLIGHT_SLOTS_NEEDED 2

static const char settings_query[] =
	"SELECT pg_catalog.current_setting('wal_level'), "
	"  pg_catalog.current_setting('max_replication_slots')::pg_catalog.int4, "
	"  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots)::pg_catalog.int4, "
	"  pg_catalog.current_setting('max_wal_senders')::pg_catalog.int4, "
	"  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity "
	"   WHERE backend_type = 'walsender')::pg_catalog.int4, "
	"  r.rolsuper, r.rolreplication, "
	"  pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'), "
	"  pg_catalog.has_schema_privilege(%text, 'CREATE'), "
	"  pg_catalog.has_function_privilege('pg_catalog.pg_replication_origin_create(pg_catalog.text)', 'EXECUTE'), "
	"  pg_catalog.pg_is_in_recovery(), "
	"  r.rolname::pg_catalog.text, pg_catalog.current_database()::pg_catalog.text "
	"FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER";

static void
preflight_version(db *d, plan *p)
{
	int			major = d->server_version / 10000;

	if (d->server_version >= 150000)
		plan_add_finding(p, FINDING_PASS, "server_version", NULL,
						 "server is PostgreSQL %d", major);
	else if (d->server_version >= 140000)
		plan_add_finding(p, FINDING_WARN, "server_version",
						 "PostgreSQL 15 or later is what pgrepart is tested against.",
						 "server is PostgreSQL %d", major);
	else
		plan_add_finding(p, FINDING_BLOCK, "server_version",
						 "Upgrade to PostgreSQL 15 or later.",
						 "server is PostgreSQL %d: binary pgoutput streaming needs 14 or later",
						 major);
}

static void
preflight_capacity(plan *p, const char *what, const char *setting, int max, int used)
{
	int			free_count = max - used;

	if (free_count >= PREFLIGHT_SLOTS_NEEDED)
		plan_add_finding(p, FINDING_PASS, setting, NULL, "%d of %d %s free", free_count, max,
						 what);
	else
		plan_add_finding(p, free_count >= 1 ? FINDING_WARN : FINDING_BLOCK, setting,
						 "Raise the setting (needs a restart) or free some.",
						 "%d of %d %s free: a run needs %d (%d for the stream, %d to verify "
						 "at a consistent point)", free_count, max, what,
						 PREFLIGHT_SLOTS_NEEDED, 1, 1);
}

static bool
preflight_settings(db *d, plan *p)
{
	const catalog_table *t = p->table;
	PGresult   *res;
	PGint4		max_slots, used_slots, max_senders, used_senders;
	PGbool		super, replication, create_db, create_schema, origin, recovery;
	const char *wal_level;
	bool		ok = false;

	res = db_execf(d, "read the server's settings", settings_query, t->schema);
	if (res == NULL)
		return false;
	if (!db_getf(res, 0, "%int4 %int4 %int4 %int4 %bool %bool %bool %bool %bool %bool",
				 1, &max_slots, 2, &used_slots, 3, &max_senders, 4, &used_senders,
				 5, &super, 6, &replication, 7, &create_db, 8, &create_schema,
				 9, &origin, 10, &recovery))
		goto cleanup;
	wal_level = PQgetvalue(res, 0, 0);

	if (recovery)
		plan_add_finding(p, FINDING_BLOCK, "primary",
						 "Run pgrepart against the primary.",
						 "server is a standby: the migration writes to the database");
	if (strcmp(wal_level, "logical") == 0)
		plan_add_finding(p, FINDING_PASS, "wal_level", NULL, "wal_level is logical");
	else
		plan_add_finding(p, FINDING_BLOCK, "wal_level",
						 "Set wal_level = logical in postgresql.conf and restart the server.",
						 "wal_level is %s: changes can only be streamed with wal_level = logical",
						 wal_level);
	preflight_capacity(p, "replication slots", "max_replication_slots", max_slots, used_slots);
	preflight_capacity(p, "WAL senders", "max_wal_senders", max_senders, used_senders);

	if (super)
		plan_add_finding(p, FINDING_PASS, "replication_role", NULL,
						 "role \"%s\" is a superuser", PQgetvalue(res, 0, 11));
	else if (replication)
		plan_add_finding(p, FINDING_PASS, "replication_role", NULL,
						 "role \"%s\" has REPLICATION", PQgetvalue(res, 0, 11));
	else
		plan_add_finding(p, FINDING_BLOCK, "replication_role",
						 "ALTER ROLE ... REPLICATION (as a superuser), or run as a role that has it.",
						 "role \"%s\" has neither REPLICATION nor superuser, so it cannot create a "
						 "replication slot", PQgetvalue(res, 0, 11));
	if (!super && !origin)
		plan_add_finding(p, FINDING_BLOCK, "replication_origin",
						 "GRANT EXECUTE ON the pg_replication_origin_* functions to the role "
						 "(see docs/operations.md).",
						 "role \"%s\" cannot use replication origins, which make the apply "
						 "exactly-once", PQgetvalue(res, 0, 11));
	if (t->owned_by_current_user)
		plan_add_finding(p, FINDING_PASS, "table_owner", NULL,
						 "role \"%s\" owns the table (or is a member of its owner)",
						 PQgetvalue(res, 0, 11));
	else
		plan_add_finding(p, FINDING_BLOCK, "table_owner",
						 "Run as the owner, or GRANT the owner role to this one.",
						 "role \"%s\" does not own the table (owner \"%s\"): publishing and "
						 "renaming it need ownership", PQgetvalue(res, 0, 11), t->owner);
	if (!create_db)
		plan_add_finding(p, FINDING_BLOCK, "create_privilege",
						 "GRANT CREATE ON DATABASE ... TO the role.",
						 "role \"%s\" cannot create in database \"%s\" (the publication and "
						 "the pgrepart schema need it)", PQgetvalue(res, 0, 11),
						 PQgetvalue(res, 0, 12));
	if (!create_schema)
		plan_add_finding(p, FINDING_BLOCK, "create_privilege",
						 "GRANT CREATE ON SCHEMA ... TO the role.",
						 "role \"%s\" cannot create tables in schema \"%s\"",
						 PQgetvalue(res, 0, 11), t->schema);
	ok = true;

cleanup:
	PQclear(res);
	return ok;
}

/*
 * Open a replication=database connection the way the stream will, and
 * identify the system: this finds pg_hba.conf rules, missing REPLICATION and
 * exhausted senders before a run does.
 */
static void
preflight_replication_connection(const char *conninfo, plan *p)
{
	const char *keys[] = {"dbname", "replication", "fallback_application_name", NULL};
	const char *values[] = {conninfo, "database", "pgrepart", NULL};
	PGconn	   *conn = PQconnectdbParams(keys, values, 1);
	PGresult   *res = NULL;

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
	{
		const char *msg = conn ? PQerrorMessage(conn) : "out of memory";
		const char *newline = strchr(msg, '\n');

		plan_add_finding(p, FINDING_BLOCK, "replication_connection",
						 "Allow the role a replication connection to this database in "
						 "pg_hba.conf, and check REPLICATION and max_wal_senders.",
						 "could not open a replication connection: %.*s",
						 newline ? (int) (newline - msg) : (int) strlen(msg), msg);
		goto cleanup;
	}
	res = PQexec(conn, "IDENTIFY_SYSTEM");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		plan_add_finding(p, FINDING_BLOCK, "replication_connection", NULL,
						 "replication connection refused IDENTIFY_SYSTEM: %s",
						 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
	else
		plan_add_finding(p, FINDING_PASS, "replication_connection", NULL,
						 "a replication connection works");

cleanup:
	PQclear(res);
	PQfinish(conn);
}

/*
 * Schema pgrepart, when some role has created it already: a run changes its
 * tables (ALTER TABLE ... ADD COLUMN IF NOT EXISTS checks ownership before it
 * looks), so the role must act as their owner, by being it or a member.
 */
static bool
preflight_state_schema(db *d, plan *p)
{
	PGresult   *res = db_execf(d, "look at schema pgrepart",
							   "SELECT pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text, "
							   "  pg_catalog.pg_has_role(c.relowner, 'USAGE') "
							   "  AND pg_catalog.pg_has_role(n.nspowner, 'USAGE') "
							   "FROM pg_catalog.pg_namespace n "
							   "LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid "
							   "  AND c.relname = 'migration' "
							   "WHERE n.nspname = 'pgrepart'");
	PGbool		usable = 1;

	if (res == NULL)
		return false;
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) && db_getf(res, 0, "%bool", 1, &usable) &&
		!usable)
		plan_add_finding(p, FINDING_BLOCK, "state_schema",
						 "Roles that migrate tables of one database share its pgrepart schema "
						 "through one owner role: GRANT that role to this one, or run as it "
						 "(docs/operations.md, \"Several roles\").",
						 "schema pgrepart, where migrations keep their state, belongs to role "
						 "\"%s\", and role \"%s\" cannot act as its owner",
						 PQgetvalue(res, 0, 0), PQuser(d->conn));
	PQclear(res);
	return true;
}

static int
preflight_compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static void
preflight_check_name(plan *p, char **existing, int n, const char *name, const char *what)
{
	if (bsearch(&name, existing, (size_t) n, sizeof(char *), preflight_compare_names) == NULL)
		return;
	plan_add_finding(p, FINDING_BLOCK, "name_clash",
					 "Rename or drop the existing relation, or remove a leftover of an "
					 "earlier run with \"pgrepart abort\".",
					 "%s \"%s\" already exists in schema \"%s\"", what, name, p->table->schema);
}

/* The shadow, its partitions and its indexes must not take a name already in use. */
static bool
preflight_names(db *d, plan *p)
{
	const catalog_table *t = p->table;
	PGresult   *res;
	char	  **existing;
	int			n;
	int			before = p->nfindings;

	res = db_execf(d, "read the relation names in the table's schema",
				   "SELECT c.relname::pg_catalog.text FROM pg_catalog.pg_class c "
				   "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
				   "WHERE n.nspname = %text", t->schema);
	if (res == NULL)
		return false;
	n = PQntuples(res);
	existing = xcalloc((size_t) n + 1, sizeof(char *));
	for (int i = 0; i < n; i++)
		existing[i] = PQgetvalue(res, i, 0);
	qsort(existing, (size_t) n, sizeof(char *), preflight_compare_names);

	preflight_check_name(p, existing, n, p->shadow_name, "shadow table");
	for (int i = 0; i < p->partitions.count; i++)
		preflight_check_name(p, existing, n, p->partitions.items[i].name, "partition");
	for (int i = 0; i < t->nindexes; i++)
	{
		char		name[IDENT_MAX_BYTES + 1];

		ident_with_suffix(name, t->indexes[i].name, PLAN_SHADOW_SUFFIX, d->encoding);
		preflight_check_name(p, existing, n, name, "shadow index");
	}
	if (p->nfindings == before)
		plan_add_finding(p, FINDING_PASS, "name_clash", NULL,
						 "the shadow's %d partition and index names are free",
						 p->partitions.count + t->nindexes + 1);
	free(existing);
	PQclear(res);
	return true;
}

static void
preflight_space(plan *p)
{
	const catalog_table *t = p->table;
	double		mb = (double) t->total_bytes / (1024.0 * 1024.0);

	plan_add_finding(p, FINDING_PASS, "disk_space",
					 "Check the free space there before the run; pgrepart cannot see the disk.",
					 "the shadow needs about %.0f MB in tablespace \"%s\" (the table with its "
					 "TOAST and indexes), plus WAL for the copy", mb,
					 t->tablespace ? t->tablespace : "pg_default");
	if (t->estimated_rows < 0)
		plan_add_finding(p, FINDING_WARN, "statistics", "Run ANALYZE on the table.",
						 "the table has never been analysed: row estimates are unknown");
}

static void
preflight_range(plan *p)
{
	const partition_set *set = &p->partitions;

	if (set->count > 0 && set->max_value != NULL && !set->min_max_indexed)
		plan_add_finding(p, FINDING_WARN, "partition_column_index",
						 "An index on the partition column also serves partition pruning "
						 "(the seed keeps one).",
						 "no index leads with \"%s\": reading its min and max scanned the "
						 "whole table", p->partition_column);
}

static bool
preflight_check(db *d, const char *conninfo, plan *p)
{
	preflight_version(d, p);
	if (!preflight_settings(d, p))
		return false;
	preflight_replication_connection(conninfo, p);
	if (!preflight_state_schema(d, p) || !preflight_names(d, p))
		return false;
	preflight_space(p);
	preflight_range(p);
	return true;
}

/* ---- the plan ---- */


/*
 * How the key's first column follows the heap, from pg_stats: what plan
 * says of the copy's order (NAN when the table has not been analysed, or
 * the role may not see its statistics).
 */
static bool
preflight_key_correlation(db *d, plan *p)
{
	const catalog_table *t = p->table;
	PGresult   *res;
	PGfloat4	correlation;

	if (t->nkey_columns == 0)
		return true;
	res = db_execf(d, "read the key's correlation",
				   "SELECT s.correlation FROM pg_catalog.pg_stats s WHERE s.schemaname = %text "
				   "  AND s.tablename = %text AND s.attname = %text AND NOT s.inherited",
				   t->schema, t->name, t->key_columns[0]);
	if (res == NULL)
		return false;
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) &&
		db_getf(res, 0, "%float4", 0, &correlation))
		p->key_correlation = correlation;
	PQclear(res);
	return true;
}

plan *
preflight_plan(db *d, const char *conninfo, const char *schema, const char *table,
			   const plan_options *o, bool *bad_interval)
{
	plan	   *p = xcalloc(1, sizeof(plan));
	const catalog_column *col;

	*bad_interval = false;
	p->partition_column = xstrdup(o->partition_column);
	p->interval = xstrdup(o->interval);
	p->premake = o->premake;
	p->rate = o->rate;
	p->copy_order = o->copy_order;
	p->key_correlation = NAN;
	if (!catalog_read(d, schema, table, &p->table) ||
		!preflight_key_correlation(d, p))
		goto fail;
	if (p->table->relkind != 'r' && p->table->relkind != 'p')
	{
		log_error("\"%s.%s\" is not a table", p->table->schema, p->table->name);
		log_hint("pgrepart partitions ordinary tables; views, materialized views, foreign "
				 "tables and sequences cannot be migrated.");
		goto fail;
	}
	col = catalog_find_column(p->table, o->partition_column);
	if (col == NULL)
	{
		log_error("column \"%s\" does not exist in table \"%s.%s\"", o->partition_column,
				  p->table->schema, p->table->name);
		log_hint("Give the partition column with -k/--partition-key; unquoted names are "
				 "folded to lower case.");
		goto fail;
	}
	/* Without SELECT the range is unknown; say so as a finding, not a failure. */
	if (!p->table->readable)
		plan_add_finding(p, FINDING_BLOCK, "table_privilege",
						 "GRANT SELECT on the table to the role, or run as its owner.",
						 "the role cannot read the table, so it cannot copy it (partitions "
						 "were not computed)");
	else if (p->table->row_security_applies)
	{
		buf			names;

		buf_init(&names);
		plan_name_list(&names, &p->table->policies);
		plan_add_finding(p, FINDING_BLOCK, "row_security",
						 p->table->owned_by_current_user ?
						 "Run as a role with BYPASSRLS, or ALTER TABLE ... NO FORCE ROW LEVEL "
						 "SECURITY during the migration and FORCE it again after the swap." :
						 "Run as a role with BYPASSRLS (or a superuser).",
						 "row-level security applies to role \"%s\" on the table (%s%s): every "
						 "read of it would be filtered, so pgrepart refuses to copy or compare it "
						 "(partitions were not computed)", PQuser(d->conn),
						 p->table->force_row_security && p->table->owned_by_current_user ?
						 "FORCE ROW LEVEL SECURITY, policies: " : "policies: ",
						 names.len > 0 ? names.data : "none, so it sees no rows at all");
		buf_free(&names);
	}
	else if (partition_type_supported(col) &&
			 !partition_compute(d, p->table, col, o->interval, o->premake,
								o->default_partition, &p->partitions))
	{
		*bad_interval = p->partitions.bad_interval;
		goto fail;
	}
	plan_derive(p, d->encoding);
	if (!preflight_check(d, conninfo, p))
		goto fail;
	return p;

fail:
	plan_free(p);
	return NULL;
}
