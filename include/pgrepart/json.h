/*
 * json.h: a small streaming JSON writer for --json output.
 *
 * Calls must nest correctly (begin/end pairs, a key before each value inside
 * an object); the writer inserts commas and escapes strings per RFC 8259.
 * Strings are passed through as UTF-8.
 */
#ifndef PGREPART_JSON_H
#define PGREPART_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include "pgrepart/buf.h"

#define JSON_MAX_DEPTH 32

typedef struct json_writer
{
	buf		   *out;
	int			depth;
	bool		has_items[JSON_MAX_DEPTH];
	bool		after_key;
} json_writer;

void		json_init(json_writer *w, buf *out);
void		json_begin_object(json_writer *w);
void		json_end_object(json_writer *w);
void		json_begin_array(json_writer *w);
void		json_end_array(json_writer *w);
void		json_key(json_writer *w, const char *key);
void		json_string(json_writer *w, const char *value);	/* NULL writes null */
void		json_int(json_writer *w, int64_t value);

/* key + value in one call, for the common case inside objects. */
void		json_kv_string(json_writer *w, const char *key, const char *value);
void		json_kv_int(json_writer *w, const char *key, int64_t value);
void		json_kv_double(json_writer *w, const char *key, double value);
void		json_kv_bool(json_writer *w, const char *key, bool value);
void		json_kv_strings(json_writer *w, const char *key, char *const *values, int n);

#endif
