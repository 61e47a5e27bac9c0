/* Unit tests for json.c: structure and escaping. */
#include "pgrepart/json.h"
#include "tap.h"

int
main(void)
{
	buf			b;
	json_writer w;

	buf_init(&b);
	json_init(&w, &b);
	json_begin_object(&w);
	json_kv_string(&w, "name", "a \"quoted\"\\ name\n\ttab");
	json_kv_int(&w, "n", -42);
	json_kv_bool(&w, "ok", true);
	json_kv_string(&w, "none", NULL);
	json_key(&w, "list");
	json_begin_array(&w);
	json_int(&w, 1);
	json_begin_object(&w);
	json_end_object(&w);
	json_string(&w, "\x01");
	json_end_array(&w);
	json_kv_double(&w, "x", 1.5);
	json_end_object(&w);
	is_str(b.data,
		   "{\"name\":\"a \\\"quoted\\\"\\\\ name\\n\\ttab\",\"n\":-42,\"ok\":true,"
		   "\"none\":null,\"list\":[1,{},\"\\u0001\"],\"x\":1.5}",
		   "object with nested values and escapes");
	buf_reset(&b);
	json_init(&w, &b);
	json_begin_array(&w);
	json_string(&w, "ünï");
	json_end_array(&w);
	is_str(b.data, "[\"ünï\"]", "UTF-8 passes through");
	buf_free(&b);
	return tap_done();
}
