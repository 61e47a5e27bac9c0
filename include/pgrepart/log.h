/*
 * log.h: the one logging interface.
 *
 * Messages go to stderr as "pgrepart: <level>: <primary>", followed by
 * optional "detail:" and "hint:" lines that belong to the message logged just
 * before them (they are dropped when that message was filtered out by the
 * level).  Primaries are lowercase, one line, name objects in double quotes:
 *
 *     log_error("could not lock table \"%s\": lock timeout", name);
 *     log_hint("Another session holds a conflicting lock; retry later.");
 *
 * Fallible functions log once where the failure happens and return false;
 * callers pass the failure up without logging again.
 */
#ifndef PGREPART_LOG_H
#define PGREPART_LOG_H

#include <stdbool.h>

typedef enum log_level
{
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_OFF
} log_level;

void		log_set_level(log_level level);
log_level	log_get_level(void);

void		log_message(log_level level, const char *fmt,...) __attribute__((format(printf, 2, 3)));
/* Detail and hint lines for the message logged just before. */
void		log_detail(const char *fmt,...) __attribute__((format(printf, 1, 2)));
void		log_hint(const char *fmt,...) __attribute__((format(printf, 1, 2)));

#define log_debug(...)   log_message(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)    log_message(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warning(...) log_message(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_error(...)   log_message(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
