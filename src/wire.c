/* wire.c: big-endian reading and writing; see wire.h. */
#include <stdio.h>
#include <string.h>

#include "pgrepart/wire.h"

void
wire_reader_init(wire_reader *r, const void *data, size_t len)
{
	r->data = data;
	r->len = len;
	r->pos = 0;
	r->failed = false;
	r->error_pos = 0;
	r->error[0] = '\0';
}

void
wire_fail(wire_reader *r, const char *what)
{
	if (r->failed)
		return;
	r->failed = true;
	r->error_pos = r->pos;
	snprintf(r->error, sizeof(r->error), "%s", what);
}

size_t
wire_remaining(const wire_reader *r)
{
	return r->failed ? 0 : r->len - r->pos;
}

/* The next n bytes, or NULL (and failed) when fewer remain. */
static const uint8_t *
wire_take(wire_reader *r, size_t n, const char *what)
{
	const uint8_t *p;

	if (r->failed)
		return NULL;
	if (n > r->len - r->pos)
	{
		char		msg[96];

		snprintf(msg, sizeof(msg), "%s: needs %zu bytes, %zu left", what, n, r->len - r->pos);
		wire_fail(r, msg);
		return NULL;
	}
	p = r->data + r->pos;
	r->pos += n;
	return p;
}

uint8_t
wire_u8(wire_reader *r)
{
	const uint8_t *p = wire_take(r, 1, "Int8");

	return p ? p[0] : 0;
}

uint16_t
wire_u16(wire_reader *r)
{
	const uint8_t *p = wire_take(r, 2, "Int16");

	return p ? (uint16_t) ((p[0] << 8) | p[1]) : 0;
}

uint32_t
wire_u32(wire_reader *r)
{
	const uint8_t *p = wire_take(r, 4, "Int32");

	return p ? ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3] : 0;
}

uint64_t
wire_u64(wire_reader *r)
{
	const uint8_t *p = wire_take(r, 8, "Int64");
	uint64_t	v = 0;

	if (p == NULL)
		return 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

const char *
wire_cstring(wire_reader *r)
{
	const uint8_t *start;
	const uint8_t *nul;

	if (r->failed)
		return NULL;
	start = r->data + r->pos;
	nul = memchr(start, '\0', r->len - r->pos);
	if (nul == NULL)
	{
		wire_fail(r, "string: no terminating NUL before the end");
		return NULL;
	}
	r->pos += (size_t) (nul - start) + 1;
	return (const char *) start;
}

const uint8_t *
wire_bytes(wire_reader *r, size_t n)
{
	return wire_take(r, n, "bytes");
}

void
wire_put_u8(buf *b, uint8_t v)
{
	buf_append_len(b, &v, 1);
}

void
wire_put_u16(buf *b, uint16_t v)
{
	uint8_t		p[2] = {(uint8_t) (v >> 8), (uint8_t) v};

	buf_append_len(b, p, 2);
}

void
wire_put_u32(buf *b, uint32_t v)
{
	uint8_t		p[4] = {(uint8_t) (v >> 24), (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v};

	buf_append_len(b, p, 4);
}

void
wire_put_u64(buf *b, uint64_t v)
{
	uint8_t		p[8];

	for (int i = 7; i >= 0; i--)
	{
		p[i] = (uint8_t) v;
		v >>= 8;
	}
	buf_append_len(b, p, 8);
}

void
wire_put_array_header(buf *b, uint32_t element, bool nulls, int n)
{
	wire_put_u32(b, 1);			/* dimensions */
	wire_put_u32(b, nulls);
	wire_put_u32(b, element);
	wire_put_u32(b, (uint32_t) n);
	wire_put_u32(b, 1);			/* lower bound */
}
