/* Unit tests for the backfill's visibility rule: snapshots, xids, key order. */
#include <stdlib.h>
#include <string.h>

#include "pgrepart/catalog.h"
#include "pgrepart/visibility.h"
#include "tap.h"

#define UUIDOID 2950

static void
be(uint8_t *out, int64_t v, int len)
{
	for (int i = len - 1; i >= 0; i--, v >>= 8)
		out[i] = (uint8_t) (v & 0xff);
}

static void
test_snapshot(void)
{
	visibility_snapshot s;

	ok(visibility_parse_snapshot("100:110:", &s) && s.xmin == 100 && s.xmax == 110 && s.nxip == 0,
	   "a snapshot with nothing in progress");
	ok(visibility_visible(&s, 99) && visibility_visible(&s, 109), "below xmax: visible");
	ok(!visibility_visible(&s, 110) && !visibility_visible(&s, 200), "xmax and above: not visible");
	visibility_snapshot_free(&s);

	ok(visibility_parse_snapshot("100:110:100,104,109", &s) && s.nxip == 3, "three in progress");
	ok(!visibility_visible(&s, 100) && !visibility_visible(&s, 104) && !visibility_visible(&s, 109),
	   "in progress: not visible");
	ok(visibility_visible(&s, 101) && visibility_visible(&s, 108), "between them: visible");
	visibility_snapshot_free(&s);

	ok(!visibility_parse_snapshot("", &s), "empty refused");
	ok(!visibility_parse_snapshot("110:100:", &s), "xmin above xmax refused");
	ok(!visibility_parse_snapshot("100:110:120", &s), "xip beyond xmax refused");
	ok(!visibility_parse_snapshot("100:110:105,104", &s), "unsorted xip refused");
	ok(!visibility_parse_snapshot("100:110:1a", &s), "garbage refused");
	ok(!visibility_parse_snapshot("-1:110:", &s), "negative refused");
}

static void
test_widen(void)
{
	const uint64_t epoch = UINT64_C(1) << 32;
	visibility_snapshot s;

	is_int(visibility_widen_xid(1000, 2000), 1000, "epoch 0, below");
	is_int(visibility_widen_xid(3000, 2000), 3000, "epoch 0, a little above");
	ok(visibility_widen_xid(5, 3 * epoch + 10) == 3 * epoch + 5, "epoch 3");
	ok(visibility_widen_xid(0xFFFFFFF0u, 3 * epoch + 10) == 2 * epoch + 0xFFFFFFF0u,
	   "just before a wraparound: the previous epoch");
	ok(visibility_widen_xid(20, 3 * epoch - 16) == 3 * epoch + 20,
	   "just after a wraparound: the next epoch");
	ok(visibility_widen_xid(0xFFFFFFF0u, 10) == 0xFFFFFFF0u, "no epoch below 0");

	/* A snapshot taken across a wraparound. */
	ok(visibility_parse_snapshot("12884901880:12884901900:12884901890", &s), "snapshot at epoch 3");
	ok(visibility_visible(&s, (uint32_t) (12884901879 & 0xffffffff)), "before xmin: visible");
	ok(!visibility_visible(&s, (uint32_t) (12884901890 & 0xffffffff)), "in progress: not visible");
	ok(!visibility_visible(&s, (uint32_t) (12884901900 & 0xffffffff)), "xmax: not visible");
	visibility_snapshot_free(&s);
}

static void
test_order(void)
{
	static const int64_t ints[] = {INT64_MIN, -4294967297, -65536, -1, 0, 1, 255, 256, 65536, INT64_MAX};
	static const Oid types[] = {CATALOG_INT2OID, CATALOG_INT4OID, CATALOG_INT8OID, CATALOG_DATEOID,
	CATALOG_TIMESTAMPOID, CATALOG_TIMESTAMPTZOID};
	static const int lens[] = {2, 4, 8, 4, 8, 8};
	bool		all = true;

	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
	{
		ok(visibility_orderable_type(types[t]), "integer-like types are orderable");
		for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
			for (size_t j = 0; j < sizeof(ints) / sizeof(ints[0]); j++)
			{
				int64_t		x = ints[i], y = ints[j];
				uint8_t		a[8], b[8];
				int			c;

				/* Values that fit the width: truncate the way the type would hold them. */
				if (lens[t] < 8)
				{
					int64_t		max = (INT64_C(1) << (lens[t] * 8 - 1)) - 1;

					if (x > max || x < -max - 1 || y > max || y < -max - 1)
						continue;
				}
				be(a, x, lens[t]);
				be(b, y, lens[t]);
				c = visibility_compare(types[t], a, (uint32_t) lens[t], b, (uint32_t) lens[t]);
				if ((c > 0) != (x > y) || (c < 0) != (x < y))
					all = false;
			}
	}
	ok(all, "signed big-endian values order as the numbers they hold");

	{
		uint8_t		u1[16] = {0x00, 0xff}, u2[16] = {0x01}, u3[16] = {0x80};

		ok(visibility_orderable_type(UUIDOID), "uuid is orderable");
		ok(visibility_compare(UUIDOID, u1, 16, u2, 16) < 0, "uuid: first byte decides");
		ok(visibility_compare(UUIDOID, u3, 16, u2, 16) > 0, "uuid: bytes are unsigned");
		ok(visibility_compare(UUIDOID, u1, 16, u1, 16) == 0, "uuid: equal");
	}
	ok(!visibility_orderable_type(25), "text is not (its order is the collation's)");
	ok(!visibility_orderable_type(1700), "numeric is not");

	{
		/* (tenant int4, id int8): the first column decides, then the second. */
		Oid			kt[2] = {CATALOG_INT4OID, CATALOG_INT8OID};
		uint8_t		t1[4], t2[4], i1[8], i2[8];
		const uint8_t *a[2] = {t1, i2}, *b[2] = {t2, i1};
		uint32_t	al[2] = {4, 8}, bl[2] = {4, 8};

		be(t1, 1, 4);
		be(t2, 2, 4);
		be(i1, 1, 8);
		be(i2, 9, 8);
		ok(visibility_compare_key(2, kt, a, al, b, bl) < 0, "composite: (1, 9) < (2, 1)");
		b[0] = t1;
		ok(visibility_compare_key(2, kt, a, al, b, bl) > 0, "composite: (1, 9) > (1, 1)");
		b[1] = i2;
		ok(visibility_compare_key(2, kt, a, al, b, bl) == 0, "composite: equal");
	}
}

int
main(void)
{
	test_snapshot();
	test_widen();
	test_order();
	return tap_done();
}
