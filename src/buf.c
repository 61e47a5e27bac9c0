/* buf.c: a growable, NUL-terminated byte buffer; see buf.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgrepart/buf.h"
#include "pgrepart/mem.h"

void
buf_init(buf *b)
{
	b->cap = 64;
	b->len = 0;
	b->data = xmalloc(b->cap);
	b->data[0] = '\0';
}

void
buf_free(buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
buf_reset(buf *b)
{
	b->len = 0;
	b->data[0] = '\0';
}

static void
buf_reserve(buf *b, size_t extra)
{
	size_t		need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	while (b->cap < need)
		b->cap *= 2;
	b->data = xrealloc(b->data, b->cap);
}

void
buf_append_len(buf *b, const void *data, size_t len)
{
	buf_reserve(b, len);
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void
buf_append(buf *b, const char *s)
{
	buf_append_len(b, s, strlen(s));
}

void
buf_append_char(buf *b, char c)
{
	buf_append_len(b, &c, 1);
}

/* Lower-case hex of len bytes: no printf for every byte of a key or a bytea. */
void
buf_append_hex(buf *b, const void *data, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = data;
	char	   *out;

	buf_reserve(b, len * 2);
	out = b->data + b->len;
	for (size_t i = 0; i < len; i++)
	{
		*out++ = digits[p[i] >> 4];
		*out++ = digits[p[i] & 0xf];
	}
	b->len += len * 2;
	b->data[b->len] = '\0';
}

void
buf_append_int64(buf *b, int64_t x)
{
	char		tmp[24];
	char	   *p = tmp + sizeof(tmp);
	/* Negated as unsigned, so INT64_MIN does not overflow. */
	uint64_t	u = x < 0 ? -(uint64_t) x : (uint64_t) x;

	do
		*--p = (char) ('0' + u % 10);
	while ((u /= 10) != 0);
	if (x < 0)
		*--p = '-';
	buf_append_len(b, p, (size_t) (tmp + sizeof(tmp) - p));
}

void
buf_vappendf(buf *b, const char *fmt, va_list ap)
{
	va_list		copy;
	int			n;

	va_copy(copy, ap);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, copy);
	va_end(copy);
	if (n < 0)
		return;
	if ((size_t) n >= b->cap - b->len)
	{
		buf_reserve(b, (size_t) n);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	}
	b->len += (size_t) n;
}

void
buf_appendf(buf *b, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	buf_vappendf(b, fmt, ap);
	va_end(ap);
}

char *
buf_steal(buf *b)
{
	char	   *data = b->data;

	b->data = NULL;
	b->len = b->cap = 0;
	return data;
}
