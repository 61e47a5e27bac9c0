/* ident.c: SQL names and literals; see ident.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "pgrepart/ident.h"
#include "pgrepart/mem.h"

/* Sorted copy of the server's keywords that need quoting; NULL = not loaded. */
static char **keywords = NULL;
static int	nkeywords = 0;

static int
ident_compare_keyword(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

void
ident_set_keywords(const char *const *words, int count)
{
	ident_free_keywords();
	keywords = xcalloc((size_t) count + 1, sizeof(char *));
	for (int i = 0; i < count; i++)
		keywords[i] = xstrdup(words[i]);
	nkeywords = count;
	qsort(keywords, (size_t) nkeywords, sizeof(char *), ident_compare_keyword);
}

bool
ident_keywords_loaded(void)
{
	return keywords != NULL;
}

void
ident_free_keywords(void)
{
	for (int i = 0; i < nkeywords; i++)
		free(keywords[i]);
	free(keywords);
	keywords = NULL;
	nkeywords = 0;
}

/*
 * Whether name must be quoted to mean itself, as quote_ident decides: not a
 * lower-case identifier, or a keyword (every name, before the keywords are
 * loaded: quoting is always correct).
 */
static bool
ident_needs_quotes(const char *name)
{
	if (keywords == NULL)
		return true;
	if (!((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
		return true;
	for (const char *p = name; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return true;
	}
	return bsearch(&name, keywords, (size_t) nkeywords, sizeof(char *),
				   ident_compare_keyword) != NULL;
}

void
ident_quote(buf *out, const char *name)
{
	if (!ident_needs_quotes(name))
	{
		buf_append(out, name);
		return;
	}
	buf_append_char(out, '"');
	for (const char *p = name; *p; p++)
	{
		if (*p == '"')
			buf_append_char(out, '"');
		buf_append_char(out, *p);
	}
	buf_append_char(out, '"');
}

void
ident_quote_qualified(buf *out, const char *schema, const char *name)
{
	if (schema != NULL)
	{
		ident_quote(out, schema);
		buf_append_char(out, '.');
	}
	ident_quote(out, name);
}

char *
ident_quoted(const char *name)
{
	buf			b;

	buf_init(&b);
	ident_quote(&b, name);
	return buf_steal(&b);
}

char *
ident_qualified(const char *schema, const char *name)
{
	buf			b;

	buf_init(&b);
	ident_quote_qualified(&b, schema, name);
	return buf_steal(&b);
}

void
ident_literal(buf *out, const char *value)
{
	bool		backslash = strchr(value, '\\') != NULL;

	/*
	 * With standard_conforming_strings on (the default) a backslash is
	 * literal in '...', but E'...' with doubled backslashes reads the same
	 * under either setting, as PQescapeLiteral does.
	 */
	if (backslash)
		buf_append_char(out, 'E');
	buf_append_char(out, '\'');
	for (const char *p = value; *p; p++)
	{
		if (*p == '\'' || *p == '\\')
			buf_append_char(out, *p);
		buf_append_char(out, *p);
	}
	buf_append_char(out, '\'');
}

/*
 * Parse one name part at *pp into out; advance *pp past it.  Bare parts may
 * hold what the server's lexer accepts in an identifier: letters, digits,
 * underscores, dollar signs and any non-ASCII byte, not starting with a digit
 * or dollar.
 */

/* A character for an error message: itself in quotes, or an escape when unprintable. */
static const char *
ident_show_char(char c, char *out, size_t len)
{
	unsigned char u = (unsigned char) c;

	if (c == '\n')
		snprintf(out, len, "a newline");
	else if (c == '\t')
		snprintf(out, len, "a tab");
	else if (u < 0x20 || u == 0x7f)
		snprintf(out, len, "byte 0x%02x", u);
	else
		snprintf(out, len, "'%c'", c);
	return out;
}

static bool
ident_parse_part(const char **pp, buf *out, char *errbuf, size_t errlen)
{
	const char *p = *pp;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '"')
	{
		p++;
		for (;;)
		{
			if (*p == '\0')
			{
				snprintf(errbuf, errlen, "unterminated quoted name");
				return false;
			}
			if (*p == '"')
			{
				if (p[1] != '"')
					break;
				p++;
			}
			buf_append_char(out, *p);
			p++;
		}
		p++;
		if (out->len == 0)
		{
			snprintf(errbuf, errlen, "zero-length quoted name");
			return false;
		}
	}
	else
	{
		const char *start = p;

		while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			   (*p >= '0' && *p <= '9') || *p == '_' || *p == '$' ||
			   (unsigned char) *p >= 0x80)
		{
			char		c = *p;

			if (c >= 'A' && c <= 'Z')
				c = (char) (c - 'A' + 'a');
			buf_append_char(out, c);
			p++;
		}
		if (p == start)
		{
			if (*p == '\0' || *p == '.')
				snprintf(errbuf, errlen, "empty name");
			else
			{
				char		shown[16];

				snprintf(errbuf, errlen, "unexpected character %s in name; "
						 "double-quote names that hold it", ident_show_char(*p, shown, sizeof(shown)));
			}
			return false;
		}
		if ((*start >= '0' && *start <= '9') || *start == '$')
		{
			snprintf(errbuf, errlen, "a name cannot start with '%c' unless double-quoted",
					 *start);
			return false;
		}
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (out->len > IDENT_MAX_BYTES)
	{
		snprintf(errbuf, errlen, "name is longer than %d bytes", IDENT_MAX_BYTES);
		return false;
	}
	*pp = p;
	return true;
}

bool
ident_parse_qualified(const char *input, char **schema, char **name,
					  char *errbuf, size_t errlen)
{
	buf			parts[2];
	int			nparts = 0;
	const char *p = input;
	bool		ok = false;

	*schema = *name = NULL;
	for (;;)
	{
		if (nparts == 2)
		{
			snprintf(errbuf, errlen, "too many dots: give schema.table at most");
			goto cleanup;
		}
		buf_init(&parts[nparts++]);
		if (!ident_parse_part(&p, &parts[nparts - 1], errbuf, errlen))
			goto cleanup;
		if (*p == '\0')
			break;
		if (*p != '.')
		{
			char		shown[16];

			snprintf(errbuf, errlen, "unexpected character %s after name; "
					 "double-quote names that hold it", ident_show_char(*p, shown, sizeof(shown)));
			goto cleanup;
		}
		p++;
	}
	if (nparts == 2)
	{
		*schema = buf_steal(&parts[0]);
		*name = buf_steal(&parts[1]);
	}
	else
		*name = buf_steal(&parts[0]);
	ok = true;

cleanup:
	for (int i = 0; i < nparts; i++)
		buf_free(&parts[i]);
	return ok;
}

bool
ident_parse_list(const char *input, char ***names, int *count, char *errbuf, size_t errlen)
{
	const char *p = input;

	*names = NULL;
	*count = 0;
	for (;;)
	{
		buf			part;

		buf_init(&part);
		if (!ident_parse_part(&p, &part, errbuf, errlen))
		{
			buf_free(&part);
			goto fail;
		}
		ARRAY_PUSH(*names, *count, buf_steal(&part));
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			return true;
		if (*p != ',')
		{
			char		shown[16];

			snprintf(errbuf, errlen, "unexpected character %s after name; "
					 "double-quote names that hold it", ident_show_char(*p, shown, sizeof(shown)));
			goto fail;
		}
		p++;
	}

fail:
	for (int i = 0; i < *count; i++)
		free((*names)[i]);
	free(*names);
	*names = NULL;
	*count = 0;
	return false;
}

bool
ident_with_suffix(char *out, const char *base, const char *suffix, int encoding)
{
	size_t		slen = strlen(suffix);
	size_t		room = IDENT_MAX_BYTES > slen ? IDENT_MAX_BYTES - slen : 0;
	size_t		used = 0;
	bool		whole = true;

	while (base[used] != '\0')
	{
		int			clen = PQmblen(base + used, encoding);

		if (clen < 1)
			clen = 1;
		if (used + (size_t) clen > room)
		{
			whole = false;
			break;
		}
		used += (size_t) clen;
	}
	memcpy(out, base, used);
	memcpy(out + used, suffix, slen > IDENT_MAX_BYTES ? IDENT_MAX_BYTES : slen);
	out[used + (slen > IDENT_MAX_BYTES ? IDENT_MAX_BYTES : slen)] = '\0';
	return whole;
}
