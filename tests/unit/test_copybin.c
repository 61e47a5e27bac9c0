/* Unit tests for the binary COPY codec and the key-hash set. */
#include <stdlib.h>
#include <string.h>

#include "pgrepart/copybin.h"
#include "pgrepart/keyset.h"
#include "tap.h"

static void
test_round_trip(void)
{
	buf			b;
	wire_reader r;
	const uint8_t *data[4];
	uint32_t	lens[4];
	const uint8_t int8_42[8] = {0, 0, 0, 0, 0, 0, 0, 42};

	buf_init(&b);
	copybin_put_header(&b);
	copybin_put_row_start(&b, 3);
	copybin_put_field(&b, int8_42, 8);
	copybin_put_field(&b, NULL, 0);
	copybin_put_field(&b, "text", 4);
	copybin_put_row_start(&b, 1);
	copybin_put_field(&b, "", 0);
	copybin_put_trailer(&b);
	ok(b.len == 19 + (2 + 12 + 4 + 8) + (2 + 4) + 2, "header, two rows and trailer have the sizes the format gives");
	ok(memcmp(b.data, "PGCOPY\n\377\r\n\0", 11) == 0, "signature");

	wire_reader_init(&r, b.data, b.len);
	ok(copybin_read_header(&r), "header reads back");
	is_int(copybin_read_row(&r, 4, data, lens), 3, "first row has 3 fields");
	ok(lens[0] == 8 && memcmp(data[0], int8_42, 8) == 0, "binary field intact");
	ok(data[1] == NULL, "NULL field");
	ok(lens[2] == 4 && memcmp(data[2], "text", 4) == 0, "text field intact");
	is_int(copybin_read_row(&r, 4, data, lens), 1, "second row");
	ok(lens[0] == 0 && data[0] != NULL, "an empty value is not NULL");
	is_int(copybin_read_row(&r, 4, data, lens), 0, "trailer ends the data");

	wire_reader_init(&r, b.data, b.len);
	copybin_read_header(&r);
	is_int(copybin_read_row(&r, 2, data, lens), -1, "more fields than expected is an error");

	/* Every truncation of the stream fails cleanly. */
	{
		int			all = 1;

		for (size_t cut = 0; cut < b.len - 2; cut++)
		{
			uint8_t    *part = malloc(cut ? cut : 1);
			int			n = 1;

			memcpy(part, b.data, cut);
			wire_reader_init(&r, part, cut);
			if (copybin_read_header(&r))
				while ((n = copybin_read_row(&r, 4, data, lens)) > 0)
					;
			if (n == 0)
				all = 0;		/* reached a trailer it does not have */
			free(part);
		}
		ok(all, "no truncation reads as complete");
	}
	b.data[3] = 'X';
	wire_reader_init(&r, b.data, b.len);
	ok(!copybin_read_header(&r) && strstr(r.error, "signature") != NULL, "a bad signature is named");
	buf_free(&b);
}

static void
test_keyset(void)
{
	keyset		k = {0};
	int			all = 1;

	ok(!keyset_contains(&k, keyset_hash("a", 1)), "empty set holds nothing");
	for (int i = 0; i < 5000; i++)
		keyset_add(&k, keyset_hash(&i, sizeof(i)));
	for (int i = 0; i < 5000; i++)
		if (!keyset_contains(&k, keyset_hash(&i, sizeof(i))))
			all = 0;
	ok(all, "5000 keys added are all found, across growth");
	is_int(k.count, 5000, "count");
	keyset_add(&k, keyset_hash(&all, sizeof(int)));
	keyset_clear(&k);
	ok(k.count == 0 && !keyset_contains(&k, keyset_hash("a", 1)), "clear empties the set");
	keyset_free(&k);
	keyset_free(&k);
	ok(k.slots == NULL, "free twice is fine");
}

int
main(void)
{
	test_round_trip();
	test_keyset();
	return tap_done();
}
