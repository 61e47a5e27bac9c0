/* fault.c: pauses at named points for the fault-injection suite; see fault.h. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgrepart/fault.h"
#include "pgrepart/log.h"

/* Whether name, or "all", is in the comma-separated list. */
static bool
fault_listed(const char *list, const char *name)
{
	size_t		len = strlen(name);

	if (list == NULL)
		return false;
	for (const char *p = list; p != NULL; p = strchr(p, ','), p = p ? p + 1 : NULL)
	{
		if (strncmp(p, "all", 3) == 0 && (p[3] == ',' || p[3] == '\0'))
			return true;
		if (strncmp(p, name, len) == 0 && (p[len] == ',' || p[len] == '\0'))
			return true;
	}
	return false;
}

bool
fault_off(const char *name)
{
	return fault_listed(getenv("PGREPART_TEST_OFF"), name);
}

void
fault_point(const char *name)
{
	static const char *points = NULL;
	static bool read = false;
	const char *ms;
	struct timespec pause;
	long		millis;

	if (!read)
	{
		points = getenv("PGREPART_FAULT_PAUSE");
		read = true;
	}
	if (!fault_listed(points, name))
		return;
	ms = getenv("PGREPART_FAULT_PAUSE_MS");
	millis = ms ? strtol(ms, NULL, 10) : 2000;
	log_info("pausing at fault point %s for %ld ms", name, millis);
	pause.tv_sec = millis / 1000;
	pause.tv_nsec = (millis % 1000) * 1000000L;
	/* EINTR (a signal) ends the pause: the caller then sees the stop request. */
	nanosleep(&pause, NULL);
}
