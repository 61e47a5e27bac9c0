/* Unit tests for the row-level comparison behind verify. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgrepart/checksum.h"
#include "pgrepart/ident.h"
#include "tap.h"

/* What the callback saw, as "kind:key[:columns]" lines. */
static char seen[8192];

static void
record(void *arg, const checksum_difference *d)
{
	static const char *const kinds[] = {"missing", "extra", "different", "dup_source", "dup_target"};
	size_t		len = strlen(seen);

	(void) arg;
	len += (size_t) snprintf(seen + len, sizeof(seen) - len, "%s:", kinds[d->kind]);
	for (int i = 0; i < d->nkeys; i++)
		len += (size_t) snprintf(seen + len, sizeof(seen) - len, "%s%s", i ? "/" : "", d->key[i]);
	for (int i = 0; i < d->ncolumns; i++)
		len += (size_t) snprintf(seen + len, sizeof(seen) - len, "%s%d", i ? "," : ":", d->columns[i]);
	snprintf(seen + len, sizeof(seen) - len, " ");
}

/* A row of key text then values; "\\N" stands for NULL. */
static int
row(const char **values, int n, const uint8_t **fields, uint32_t *lens)
{
	for (int i = 0; i < n; i++)
	{
		fields[i] = strcmp(values[i], "\\N") == 0 ? NULL : (const uint8_t *) values[i];
		lens[i] = fields[i] ? (uint32_t) strlen(values[i]) : 0;
	}
	return n;
}

static void
add(checksum_rowset *s, bool source, const char *k, const char *a, const char *b)
{
	const char *values[3] = {k, a, b};
	const uint8_t *fields[3];
	uint32_t	lens[3];
	int			n = row(values, 3, fields, lens);

	if (source)
		checksum_rowset_add_source(s, n, fields, lens);
	else
		checksum_rowset_match_target(s, n, fields, lens);
}

static void
test_differences(void)
{
	checksum_rowset *s = checksum_rowset_create(1, 2, record, NULL);

	seen[0] = '\0';
	add(s, true, "1", "a", "b");
	add(s, true, "2", "a", "b");
	add(s, true, "3", "", "b");
	add(s, true, "4", "a", "b");
	add(s, false, "1", "a", "b");
	add(s, false, "3", "\\N", "b");
	add(s, false, "4", "b", "a");
	add(s, false, "5", "a", "b");
	checksum_rowset_finish(s);
	is_str(seen, "different:3:0 different:4:0,1 extra:5 missing:2 ",
		   "NULL is not empty; both changed columns named; extra and missing found");

	seen[0] = '\0';
	checksum_rowset_reset(s);
	add(s, true, "1", "a", "b");
	add(s, false, "1", "a", "b");
	checksum_rowset_finish(s);
	is_str(seen, "", "after a reset only the new rows count");

	seen[0] = '\0';
	checksum_rowset_reset(s);
	add(s, true, "1", "a", "b");
	add(s, true, "1", "a", "c");
	add(s, false, "1", "a", "b");
	add(s, false, "1", "a", "b");
	checksum_rowset_finish(s);
	is_str(seen, "dup_source:1 dup_target:1 ", "duplicate keys on either side are reported");

	/* Values that swap between columns must not cancel out. */
	seen[0] = '\0';
	checksum_rowset_reset(s);
	add(s, true, "9", "ab", "");
	add(s, false, "9", "a", "b");
	checksum_rowset_finish(s);
	is_str(seen, "different:9:0,1 ", "bytes moved between columns differ");
	checksum_rowset_free(s);
	checksum_rowset_free(NULL);
}

static void
test_composite_and_growth(void)
{
	checksum_rowset *s = checksum_rowset_create(2, 1, record, NULL);
	const uint8_t *fields[3];
	uint32_t	lens[3];
	char		k1[16], k2[16];
	int			n;

	seen[0] = '\0';
	for (int i = 0; i < 50000; i++)
	{
		const char *values[3] = {k1, k2, "v"};

		snprintf(k1, sizeof(k1), "%d", i / 10);
		snprintf(k2, sizeof(k2), "%d", i % 10);
		n = row(values, 3, fields, lens);
		checksum_rowset_add_source(s, n, fields, lens);
	}
	is_int(checksum_rowset_count(s), 50000, "50,000 composite keys held");
	for (int i = 0; i < 50000; i++)
	{
		const char *values[3] = {k1, k2, i == 4242 ? "w" : "v"};

		if (i == 777)
			continue;
		snprintf(k1, sizeof(k1), "%d", i / 10);
		snprintf(k2, sizeof(k2), "%d", i % 10);
		n = row(values, 3, fields, lens);
		checksum_rowset_match_target(s, n, fields, lens);
	}
	checksum_rowset_finish(s);
	is_str(seen, "different:424/2:0 missing:77/7 ", "composite keys: one change and one gap found");

	{
		/* "1","23" and "12","3" are different keys. */
		const char *a[3] = {"1", "23", "v"};
		const char *b[3] = {"12", "3", "v"};

		seen[0] = '\0';
		checksum_rowset_reset(s);
		n = row(a, 3, fields, lens);
		checksum_rowset_add_source(s, n, fields, lens);
		n = row(b, 3, fields, lens);
		checksum_rowset_match_target(s, n, fields, lens);
		checksum_rowset_finish(s);
		is_str(seen, "extra:12/3 missing:1/23 ", "key fields are kept apart");
	}
	{
		const char *nullkey[3] = {"\\N", "1", "v"};

		n = row(nullkey, 3, fields, lens);
		ok(!checksum_rowset_add_source(s, n, fields, lens), "a NULL key is refused");
		ok(!checksum_rowset_add_source(s, 2, fields, lens), "a wrong field count is refused");
	}
	checksum_rowset_free(s);
}

static void
test_parse_list(void)
{
	char	  **names;
	int			n;
	char		err[128];

	ok(ident_parse_list("id, \"Created At\",Tenant", &names, &n, err, sizeof(err)) && n == 3,
	   "a list of three names");
	is_str(names[1], "Created At", "quoted name kept");
	is_str(names[2], "tenant", "bare name folded");
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	ok(!ident_parse_list("id,", &names, &n, err, sizeof(err)) && names == NULL, "trailing comma refused");
	ok(!ident_parse_list("a b", &names, &n, err, sizeof(err)), "missing comma refused");
}

int
main(void)
{
	test_differences();
	test_composite_and_growth();
	test_parse_list();
	return tap_done();
}
