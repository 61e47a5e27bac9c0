/*
 * ident.h: SQL names and literals, the one place they are quoted or parsed.
 *
 * Every identifier pgrepart puts into SQL goes through ident_quote (or
 * ident_quote_qualified); every literal it prints into DDL goes through
 * ident_literal.  Values sent to the server travel as $n parameters instead.
 *
 * Quoting follows the server's own rule (quote_ident): a name stays bare only
 * when it is lower-case letters, digits and underscores, starts with a letter
 * or underscore, and is not a keyword that needs quoting.  The keyword list
 * comes from the server (pg_get_keywords) through ident_set_keywords; until it
 * is set every name is quoted, which is always correct.  The quoting itself
 * doubles embedded double quotes, exactly as PQescapeIdentifier does; doing it
 * here keeps DDL generation testable without a connection.
 */
#ifndef PGREPART_IDENT_H
#define PGREPART_IDENT_H

#include <stdbool.h>
#include <stddef.h>

#include "pgrepart/buf.h"

/* PostgreSQL's NAMEDATALEN - 1: longer names are truncated by the server. */
#define IDENT_MAX_BYTES 63

/* Copy the keywords that need quoting; replaces any earlier list. */
void		ident_set_keywords(const char *const *words, int count);
/* Whether a keyword list is loaded. */
bool		ident_keywords_loaded(void);
void		ident_free_keywords(void);

void		ident_quote(buf *out, const char *name);
void		ident_quote_qualified(buf *out, const char *schema, const char *name);
/* The same, as new strings the caller frees. */
char	   *ident_quoted(const char *name);
char	   *ident_qualified(const char *schema, const char *name);

/* A string literal ('it''s', or E'a\\b' when it holds a backslash). */
void		ident_literal(buf *out, const char *value);

/*
 * Parse a table name as SQL writes it: "name" or "schema.name", each part
 * either double-quoted (kept as is, "" is a quote) or bare (folded to lower
 * case, as the server folds ASCII letters).  On success *schema (NULL when
 * not given) and *name are new strings the caller frees.  On failure errbuf
 * says what is wrong.
 */
bool		ident_parse_qualified(const char *input, char **schema, char **name,
								  char *errbuf, size_t errlen);

/*
 * Parse a comma-separated list of column names, each as SQL writes it.  On
 * success *names (each and the array) is the caller's to free.
 */
bool		ident_parse_list(const char *input, char ***names, int *count,
							 char *errbuf, size_t errlen);

/*
 * Build base + suffix in out (at least IDENT_MAX_BYTES + 1 bytes), cutting
 * base at a character boundary of the given libpq encoding id so the result
 * fits a PostgreSQL name.  Returns false when base had to be cut (callers
 * check the result for clashes).
 */
bool		ident_with_suffix(char *out, const char *base, const char *suffix, int encoding);

#endif
