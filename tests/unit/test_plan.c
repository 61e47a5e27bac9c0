/*
 * Unit tests for the pure parts of planning: key widening, partition names
 * and schemes, and the shadow DDL derived from a hand-built catalog of the
 * seed's table.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "pgrepart/ident.h"
#include "pgrepart/mem.h"
#include "pgrepart/plan.h"
#include "tap.h"

static const char *const keywords[] = {"select", "user", "order"};

static void
check_widen(const char *def, const char *col, const char *want)
{
	buf			out;
	bool		widened;

	buf_init(&out);
	widened = plan_widen_key(def, col, &out);
	if (want == NULL)
		ok(!widened, def);
	else
		is_str(widened ? out.data : NULL, want, def);
	buf_free(&out);
}

static void
check_suffix(partition_kind kind, partition_start start, const char *want)
{
	partition_scheme s = {kind, NULL, 0};
	buf			out;

	buf_init(&out);
	partition_suffix(&out, &s, &start);
	is_str(out.data, want, want);
	buf_free(&out);
}

static void
check_scheme(int months, int days, long long micros, int want_ok, partition_kind kind,
			 const char *unit, const char *label)
{
	partition_scheme s;
	char		err[200] = "";
	bool		got = partition_scheme_for_interval(&s, months, days, micros, err, sizeof(err));

	if (!want_ok)
	{
		ok(!got && err[0] != '\0', label);
		return;
	}
	ok(got && s.kind == kind && strcmp(s.trunc_unit, unit) == 0, label);
}

static char **
strings(int n, ...)
{
	va_list		ap;
	char	  **out = xcalloc((size_t) n + 1, sizeof(char *));

	va_start(ap, n);
	for (int i = 0; i < n; i++)
		out[i] = xstrdup_or_null(va_arg(ap, const char *));
	va_end(ap);
	return out;
}

static void
add_column(catalog_table *t, const char *name, const char *type, Oid base, bool not_null)
{
	catalog_column c = {0};

	c.attnum = t->ncolumns + 1;
	c.name = xstrdup(name);
	c.type = xstrdup(type);
	c.base_type = base;
	c.not_null = not_null;
	c.btree_orderable = true;
	c.binary_io = true;
	ARRAY_PUSH(t->columns, t->ncolumns, c);
}

static void
add_constraint(catalog_table *t, const char *name, char type, const char *def, int ncols,
			   char **cols)
{
	catalog_constraint k = {0};

	k.name = xstrdup(name);
	k.type = type;
	k.definition = xstrdup(def);
	k.columns = cols;
	k.ncolumns = ncols;
	ARRAY_PUSH(t->constraints, t->nconstraints, k);
}

static void
add_index(catalog_table *t, const char *name, const char *tail, bool unique, bool backs,
		  bool exprs, int ncols, char **cols)
{
	catalog_index x = {0};

	x.name = xstrdup(name);
	x.definition = xstrdup(tail);
	x.method_and_columns = xstrdup(tail);
	x.unique = unique;
	x.valid = true;
	x.backs_constraint = backs;
	x.has_expressions = exprs;
	x.columns = cols;
	x.ncolumns = ncols;
	ARRAY_PUSH(t->indexes, t->nindexes, x);
}

/* The seed's chat_messages, trimmed to what the rules act on. */
static plan *
seed_plan(void)
{
	plan	   *p = xcalloc(1, sizeof(plan));
	catalog_table *t = xcalloc(1, sizeof(catalog_table));
	partition_bound b;

	t->schema = xstrdup("public");
	t->name = xstrdup("chat_messages");
	t->relkind = 'r';
	t->persistence = 'p';
	t->replica_identity = 'd';
	add_column(t, "id", "uuid", 2950, true);
	add_column(t, "message_id", "character varying(36)", 1043, false);
	add_column(t, "created_at", "timestamp without time zone", CATALOG_TIMESTAMPOID, true);
	add_column(t, "user", "uuid", 2950, true);
	add_constraint(t, "chat_messages_pkey", 'p', "PRIMARY KEY (id)", 1, strings(1, "id"));
	add_constraint(t, "chat_messages_message_id_key", 'u', "UNIQUE (message_id)", 1,
				   strings(1, "message_id"));
	add_constraint(t, "chat_messages_user_fkey", 'f',
				   "FOREIGN KEY (\"user\") REFERENCES public.users(id)", 1, strings(1, "user"));
	add_index(t, "chat_messages_pkey", "btree (id)", true, true, false, 1, strings(1, "id"));
	add_index(t, "chat_messages_message_id_key", "btree (message_id)", true, true, false, 1,
			  strings(1, "message_id"));
	add_index(t, "idx_chat_created_at", "btree (created_at)", false, false, false, 1,
			  strings(1, "created_at"));
	add_index(t, "chat_lower_message", "btree (lower((message_id)::text))", true, false, true,
			  1, strings(1, NULL));
	t->key_columns = strings(1, "id");
	t->nkey_columns = 1;
	p->table = t;
	p->partition_column = xstrdup("created_at");
	p->interval = xstrdup("3 months");
	b.name = xstrdup("chat_messages_2024_q1");
	b.from = xstrdup("2024-01-01 00:00:00");
	b.to = xstrdup("2024-04-01 00:00:00");
	b.is_default = false;
	ARRAY_PUSH(p->partitions.items, p->partitions.count, b);
	return p;
}

static int
count_check(const plan *p, finding_level level, const char *check)
{
	int			n = 0;

	for (int i = 0; i < p->nfindings; i++)
		if (p->findings[i].level == level && strcmp(p->findings[i].check, check) == 0)
			n++;
	return n;
}

static void
test_seed_plan(void)
{
	plan	   *p = seed_plan();
	int			utf8 = pg_char_to_encoding("UTF8");

	plan_derive(p, utf8);
	is_str(p->shadow_name, "chat_messages_pgrepart", "shadow name");
	is_int(p->nstatements, 6, "table, partition, 2 keys, 1 index, 1 foreign key");
	is_str(p->statements[0].sql,
		   "CREATE TABLE public.chat_messages_pgrepart (\n"
		   "    id uuid NOT NULL,\n"
		   "    message_id character varying(36),\n"
		   "    created_at timestamp without time zone NOT NULL,\n"
		   "    \"user\" uuid NOT NULL\n"
		   ") PARTITION BY RANGE (created_at);", "partitioned table");
	is_str(p->statements[1].sql,
		   "CREATE TABLE public.chat_messages_2024_q1 PARTITION OF public.chat_messages_pgrepart "
		   "FOR VALUES FROM ('2024-01-01 00:00:00') TO ('2024-04-01 00:00:00');", "partition");
	is_str(p->statements[2].sql,
		   "ALTER TABLE public.chat_messages_pgrepart ADD CONSTRAINT chat_messages_pkey_pgrepart "
		   "PRIMARY KEY (id, created_at);", "primary key widened");
	is_str(p->statements[3].sql,
		   "ALTER TABLE public.chat_messages_pgrepart ADD CONSTRAINT "
		   "chat_messages_message_id_key_pgrepart UNIQUE (message_id, created_at);",
		   "unique constraint widened");
	is_str(p->statements[4].sql,
		   "CREATE INDEX idx_chat_created_at_pgrepart ON public.chat_messages_pgrepart "
		   "USING btree (created_at);", "plain index recreated");
	is_str(p->statements[5].sql,
		   "ALTER TABLE public.chat_messages_pgrepart ADD CONSTRAINT chat_messages_user_fkey "
		   "FOREIGN KEY (\"user\") REFERENCES public.users(id);", "foreign key kept");
	is_int(p->statements[0].phase, PLAN_PHASE_TABLE, "table phase");
	is_int(p->statements[4].phase, PLAN_PHASE_INDEX, "indexes after the copy");
	is_int(p->statements[5].phase, PLAN_PHASE_FOREIGN_KEY, "foreign keys last");
	is_int(count_check(p, FINDING_WARN, "unique_widened"), 2, "two widened keys warned");
	is_int(count_check(p, FINDING_BLOCK, "unique_index"), 1, "expression unique index blocks");
	is_int(count_check(p, FINDING_PASS, "incoming_foreign_key"), 1, "no incoming keys");
	plan_free(p);

	p = seed_plan();
	free(p->partition_column);
	p->partition_column = xstrdup("message_id");
	plan_derive(p, utf8);
	is_int(count_check(p, FINDING_BLOCK, "partition_column"), 2,
		   "nullable varchar partition column: two blocks");
	plan_free(p);
}

int
main(void)
{
	ident_set_keywords(keywords, 3);

	check_widen("PRIMARY KEY (id)", "created_at", "PRIMARY KEY (id, created_at)");
	check_widen("UNIQUE NULLS NOT DISTINCT (a, b) INCLUDE (c)", "created_at",
				"UNIQUE NULLS NOT DISTINCT (a, b, created_at) INCLUDE (c)");
	check_widen("btree (\"a)b\", lower(x)) WHERE (y > 0)", "\"T s\"",
				"btree (\"a)b\", lower(x), \"T s\") WHERE (y > 0)");
	check_widen("btree (\"a\"\"(b\") WITH (fillfactor='70')", "k",
				"btree (\"a\"\"(b\", k) WITH (fillfactor='70')");
	check_widen("UNIQUE (a) DEFERRABLE INITIALLY DEFERRED", "k",
				"UNIQUE (a, k) DEFERRABLE INITIALLY DEFERRED");
	check_widen("no list here", "k", NULL);
	check_widen("unbalanced (a", "k", NULL);

	check_suffix(PARTITION_YEAR, (partition_start) {.year = 2024}, "_2024");
	check_suffix(PARTITION_QUARTER, (partition_start) {.year = 2024, .quarter = 1}, "_2024_q1");
	check_suffix(PARTITION_MONTH, (partition_start) {.year = 2024, .month = 2}, "_2024_02");
	check_suffix(PARTITION_DAY, (partition_start) {.year = 2024, .month = 2, .day = 29},
				 "_2024_02_29");
	check_suffix(PARTITION_TIME, (partition_start) {.year = 2024, .month = 1, .day = 5,
		.hour = 6, .minute = 30}, "_2024_01_05_0630");
	check_suffix(PARTITION_INTEGER, (partition_start) {.integer = 1000000}, "_p1000000");
	check_suffix(PARTITION_INTEGER, (partition_start) {.integer = -1000}, "_m1000");
	check_suffix(PARTITION_INTEGER, (partition_start) {.integer = INT64_MIN},
				 "_m9223372036854775808");

	check_scheme(3, 0, 0, 1, PARTITION_QUARTER, "quarter", "3 months: quarters");
	check_scheme(12, 0, 0, 1, PARTITION_YEAR, "year", "1 year");
	check_scheme(24, 0, 0, 1, PARTITION_YEAR, "year", "2 years");
	check_scheme(1, 0, 0, 1, PARTITION_MONTH, "month", "1 month");
	check_scheme(6, 0, 0, 1, PARTITION_MONTH, "quarter", "6 months align to quarters");
	check_scheme(0, 7, 0, 1, PARTITION_DAY, "week", "1 week aligns to weeks");
	check_scheme(0, 1, 0, 1, PARTITION_DAY, "day", "1 day");
	check_scheme(0, 0, 3600000000LL, 1, PARTITION_TIME, "hour", "1 hour");
	check_scheme(0, 0, 900000000LL, 1, PARTITION_TIME, "minute", "15 minutes");
	check_scheme(1, 2, 0, 0, 0, NULL, "month and days mixed: refused");
	check_scheme(0, 0, 0, 0, 0, NULL, "zero: refused");
	check_scheme(-1, 0, 0, 0, 0, NULL, "negative: refused");

	test_seed_plan();
	ident_free_keywords();
	return tap_done();
}
