/* json.c: a small streaming JSON writer; see json.h. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "pgrepart/json.h"

void
json_init(json_writer *w, buf *out)
{
	w->out = out;
	w->depth = 0;
	w->has_items[0] = false;
	w->after_key = false;
}

/* Separator before a value or key at the current level. */
static void
json_separate(json_writer *w)
{
	if (w->after_key)
	{
		w->after_key = false;
		return;
	}
	if (w->has_items[w->depth])
		buf_append_char(w->out, ',');
	w->has_items[w->depth] = true;
}

static void
json_open(json_writer *w, char c)
{
	json_separate(w);
	buf_append_char(w->out, c);
	if (w->depth < JSON_MAX_DEPTH - 1)
		w->depth++;
	w->has_items[w->depth] = false;
}

static void
json_close(json_writer *w, char c)
{
	buf_append_char(w->out, c);
	if (w->depth > 0)
		w->depth--;
}

void
json_begin_object(json_writer *w)
{
	json_open(w, '{');
}

void
json_end_object(json_writer *w)
{
	json_close(w, '}');
}

void
json_begin_array(json_writer *w)
{
	json_open(w, '[');
}

void
json_end_array(json_writer *w)
{
	json_close(w, ']');
}

/* Append s as a quoted, escaped JSON string. */
static void
json_escape(buf *out, const char *s)
{
	buf_append_char(out, '"');
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		switch (*p)
		{
			case '"':
				buf_append(out, "\\\"");
				break;
			case '\\':
				buf_append(out, "\\\\");
				break;
			case '\n':
				buf_append(out, "\\n");
				break;
			case '\r':
				buf_append(out, "\\r");
				break;
			case '\t':
				buf_append(out, "\\t");
				break;
			default:
				if (*p < 0x20)
					buf_appendf(out, "\\u%04x", *p);
				else
					buf_append_char(out, (char) *p);
		}
	}
	buf_append_char(out, '"');
}

void
json_key(json_writer *w, const char *key)
{
	json_separate(w);
	json_escape(w->out, key);
	buf_append_char(w->out, ':');
	w->after_key = true;
}

void
json_string(json_writer *w, const char *value)
{
	json_separate(w);
	if (value == NULL)
		buf_append(w->out, "null");
	else
		json_escape(w->out, value);
}

void
json_int(json_writer *w, int64_t value)
{
	json_separate(w);
	buf_appendf(w->out, "%" PRId64, value);
}

static void
json_double(json_writer *w, double value)
{
	json_separate(w);
	if (isfinite(value))
		buf_appendf(w->out, "%.17g", value);
	else
		buf_append(w->out, "null");
}

static void
json_bool(json_writer *w, bool value)
{
	json_separate(w);
	buf_append(w->out, value ? "true" : "false");
}

void
json_kv_string(json_writer *w, const char *key, const char *value)
{
	json_key(w, key);
	json_string(w, value);
}

void
json_kv_int(json_writer *w, const char *key, int64_t value)
{
	json_key(w, key);
	json_int(w, value);
}

void
json_kv_double(json_writer *w, const char *key, double value)
{
	json_key(w, key);
	json_double(w, value);
}

void
json_kv_bool(json_writer *w, const char *key, bool value)
{
	json_key(w, key);
	json_bool(w, value);
}

void
json_kv_strings(json_writer *w, const char *key, char *const *values, int n)
{
	json_key(w, key);
	json_begin_array(w);
	for (int i = 0; i < n; i++)
		json_string(w, values[i]);
	json_end_array(w);
}
