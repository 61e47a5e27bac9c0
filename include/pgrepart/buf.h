/*
 * buf.h: a growable, always NUL-terminated byte buffer.
 *
 * A buf owns its data; buf_free releases it (and accepts a buf that was only
 * initialised).  buf_steal hands the data to the caller, who frees it.
 */
#ifndef PGREPART_BUF_H
#define PGREPART_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} buf;

void		buf_init(buf *b);
void		buf_free(buf *b);
void		buf_reset(buf *b);
void		buf_append(buf *b, const char *s);
void		buf_append_len(buf *b, const void *data, size_t len);
void		buf_append_char(buf *b, char c);
void		buf_append_hex(buf *b, const void *data, size_t len);
void		buf_append_int64(buf *b, int64_t x);
void		buf_appendf(buf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
void		buf_vappendf(buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
char	   *buf_steal(buf *b);

#endif
