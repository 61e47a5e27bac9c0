/* log.c: the one logging interface; see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgrepart/log.h"

static log_level current_level = LOG_LEVEL_INFO;

/* Whether the last primary message was printed: its detail and hint follow it. */
static bool last_printed = false;

/* Colour the label, as PostgreSQL's own tools do; decided once, on first use. */
static int	use_color = -1;

static const char *
log_color(const char *label)
{
	if (use_color < 0)
	{
		const char *no_color = getenv("NO_COLOR");
		const char *term = getenv("TERM");

		/* https://no-color.org: any non-empty NO_COLOR turns colour off. */
		use_color = isatty(STDERR_FILENO) && (no_color == NULL || no_color[0] == '\0') &&
			term != NULL && strcmp(term, "dumb") != 0;
	}
	if (!use_color)
		return NULL;
	if (strcmp(label, "error") == 0)
		return "\033[01;31m";
	if (strcmp(label, "warning") == 0)
		return "\033[01;35m";
	if (strcmp(label, "hint") == 0 || strcmp(label, "detail") == 0)
		return "\033[01;36m";
	return NULL;
}

static const char *const level_names[] = {
	[LOG_LEVEL_DEBUG] = "debug",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_WARNING] = "warning",
	[LOG_LEVEL_ERROR] = "error",
};

void
log_set_level(log_level level)
{
	current_level = level;
}

log_level
log_get_level(void)
{
	return current_level;
}

/* Print one line; a trailing newline in the text (as libpq leaves) is dropped. */
static void
log_write(const char *label, const char *fmt, va_list ap)
{
	char		line[4096];
	size_t		len;
	const char *color;

	vsnprintf(line, sizeof(line), fmt, ap);
	len = strlen(line);
	while (len > 0 && line[len - 1] == '\n')
		line[--len] = '\0';
	color = log_color(label);
	if (color)
		fprintf(stderr, "pgrepart: %s%s:\033[0m %s\n", color, label, line);
	else
		fprintf(stderr, "pgrepart: %s: %s\n", label, line);
}

void
log_message(log_level level, const char *fmt,...)
{
	va_list		ap;

	last_printed = level >= current_level;
	if (!last_printed)
		return;
	va_start(ap, fmt);
	log_write(level_names[level], fmt, ap);
	va_end(ap);
}

void
log_detail(const char *fmt,...)
{
	va_list		ap;

	if (!last_printed)
		return;
	va_start(ap, fmt);
	log_write("detail", fmt, ap);
	va_end(ap);
}

void
log_hint(const char *fmt,...)
{
	va_list		ap;

	if (!last_printed)
		return;
	va_start(ap, fmt);
	log_write("hint", fmt, ap);
	va_end(ap);
}
