/* Unit tests for buf.c: growth, hex and integers without printf. */
#include <stdint.h>
#include <stdlib.h>

#include "pgrepart/buf.h"
#include "tap.h"

static void
check_int64(int64_t x, const char *want)
{
	buf			b;

	buf_init(&b);
	buf_append(&b, "[");
	buf_append_int64(&b, x);
	buf_append(&b, "]");
	is_str(b.data, want, want);
	buf_free(&b);
}

int
main(void)
{
	buf			b;
	unsigned char bytes[256];
	char		want[513];
	static const char digits[] = "0123456789abcdef";

	check_int64(0, "[0]");
	check_int64(7, "[7]");
	check_int64(-42, "[-42]");
	check_int64(INT64_MAX, "[9223372036854775807]");
	check_int64(INT64_MIN, "[-9223372036854775808]");

	/* Every byte value, through several doublings of the buffer. */
	for (int i = 0; i < 256; i++)
	{
		bytes[i] = (unsigned char) i;
		want[2 * i] = digits[i >> 4];
		want[2 * i + 1] = digits[i & 0xf];
	}
	want[512] = '\0';
	buf_init(&b);
	buf_append_hex(&b, bytes, sizeof(bytes));
	is_str(b.data, want, "hex of every byte value");
	is_int(b.len, 512, "hex length");
	buf_reset(&b);
	buf_append_hex(&b, bytes, 0);
	is_str(b.data, "", "hex of nothing");
	buf_free(&b);
	return tap_done();
}
