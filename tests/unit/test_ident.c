/* Unit tests for ident.c: quoting, literals, name parsing, truncation. */
#include <stdlib.h>

#include <libpq-fe.h>

#include "pgrepart/ident.h"
#include "tap.h"

static const char *const keywords[] = {"select", "user", "table", "order", "group"};

static void
check_quote(const char *name, const char *want)
{
	char	   *q = ident_quoted(name);
	char		label[200];

	snprintf(label, sizeof(label), "quote %s", want);
	is_str(q, want, label);
	free(q);
}

static void
check_parse(const char *input, const char *want_schema, const char *want_name)
{
	char	   *schema, *name;
	char		err[256] = "";
	char		label[300];
	bool		parsed = ident_parse_qualified(input, &schema, &name, err, sizeof(err));

	snprintf(label, sizeof(label), "parse [%s]", input);
	if (!ok(parsed, label))
	{
		printf("#   error: %s\n", err);
		return;
	}
	is_str(schema, want_schema, "  schema part");
	is_str(name, want_name, "  name part");
	free(schema);
	free(name);
}

static void
check_parse_error(const char *input, const char *fragment)
{
	char	   *schema, *name;
	char		err[256] = "";
	char		label[300];
	bool		parsed = ident_parse_qualified(input, &schema, &name, err, sizeof(err));

	snprintf(label, sizeof(label), "reject [%s]: %s", input, err);
	ok(!parsed && strstr(err, fragment) != NULL, label);
}

int
main(void)
{
	buf			b;
	char		out[IDENT_MAX_BYTES + 1];
	int			utf8 = pg_char_to_encoding("UTF8");

	/* Before the server's keyword list is known, everything is quoted. */
	check_quote("plain", "\"plain\"");

	ident_set_keywords(keywords, (int) (sizeof(keywords) / sizeof(keywords[0])));
	check_quote("chat_messages", "chat_messages");
	check_quote("_x1", "_x1");
	check_quote("Mixed", "\"Mixed\"");
	check_quote("with space", "\"with space\"");
	check_quote("say \"hi\"", "\"say \"\"hi\"\"\"");
	check_quote("user", "\"user\"");
	check_quote("1abc", "\"1abc\"");
	check_quote("dollar$", "\"dollar$\"");
	check_quote("ünïcode", "\"ünïcode\"");
	check_quote("semi;colon", "\"semi;colon\"");

	buf_init(&b);
	ident_quote_qualified(&b, "Ops Data", "events");
	is_str(b.data, "\"Ops Data\".events", "qualified name");
	buf_reset(&b);
	ident_quote_qualified(&b, NULL, "events");
	is_str(b.data, "events", "unqualified name");

	buf_reset(&b);
	ident_literal(&b, "it's");
	is_str(b.data, "'it''s'", "literal doubles quotes");
	buf_reset(&b);
	ident_literal(&b, "a\\b");
	is_str(b.data, "E'a\\\\b'", "literal with backslash uses E''");
	buf_reset(&b);
	ident_literal(&b, "2024-01-01 00:00:00");
	is_str(b.data, "'2024-01-01 00:00:00'", "timestamp literal");
	buf_free(&b);

	check_parse("chat_messages", NULL, "chat_messages");
	check_parse("Chat_Messages", NULL, "chat_messages");
	check_parse("public.chat_messages", "public", "chat_messages");
	check_parse("\"Ops Data\".\"Event Log\"", "Ops Data", "Event Log");
	check_parse("\"a\"\"b\".\"c.d\"", "a\"b", "c.d");
	check_parse(" app . \"T\" ", "app", "T");
	check_parse("ÜberTable", NULL, "Übertable");
	check_parse("\"select\"", NULL, "select");
	check_parse("t$1", NULL, "t$1");
	check_parse_error("", "empty name");
	check_parse_error("a.", "empty name");
	check_parse_error("a.b.c", "too many dots");
	check_parse_error("\"unterminated", "unterminated");
	check_parse_error("\"\"", "zero-length");
	check_parse_error("bad name", "after name");
	check_parse_error("t;drop", "unexpected character ';'");
	check_parse_error("1abc", "cannot start with '1'");
	check_parse_error("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
					  "longer than 63");

	ok(ident_with_suffix(out, "chat_messages", "_pgrepart", utf8), "short name fits");
	is_str(out, "chat_messages_pgrepart", "suffix appended");
	ok(!ident_with_suffix(out, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "_pgrepart",
						  utf8), "long name is cut");
	is_int(strlen(out), 63, "cut to 63 bytes");
	/* 30 two-byte characters: 60 bytes; with a 9-byte suffix only 27 fit. */
	ok(!ident_with_suffix(out, "ééééééééééééééééééééééééééééüü", "_pgrepart", utf8),
	   "multibyte name is cut");
	is_int(strlen(out), 27 * 2 + 9, "cut at a character boundary");
	is_str(out + 54, "_pgrepart", "suffix intact after multibyte cut");

	ident_free_keywords();
	return tap_done();
}
