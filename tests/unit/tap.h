/*
 * tap.h: a minimal Test Anything Protocol emitter for the C unit tests, so
 * prove runs them beside the integration tests and sums them up.
 */
#ifndef PGREPART_TAP_H
#define PGREPART_TAP_H

#include <stdio.h>
#include <string.h>

static int	tap_count = 0;
static int	tap_failed = 0;

static inline int
tap_ok(int pass, const char *file, int line, const char *name)
{
	tap_count++;
	printf("%sok %d - %s\n", pass ? "" : "not ", tap_count, name);
	if (!pass)
	{
		tap_failed++;
		printf("#   failed at %s line %d\n", file, line);
	}
	return pass;
}

static inline int
tap_is_str(const char *got, const char *want, const char *file, int line, const char *name)
{
	int			pass = (got == NULL && want == NULL) ||
		(got != NULL && want != NULL && strcmp(got, want) == 0);

	tap_ok(pass, file, line, name);
	if (!pass)
		printf("#          got: %s\n#     expected: %s\n", got ? got : "(null)",
			   want ? want : "(null)");
	return pass;
}

static inline int
tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed == 0 ? 0 : 1;
}

#define ok(cond, name) tap_ok((cond) ? 1 : 0, __FILE__, __LINE__, (name))
#define is_str(got, want, name) tap_is_str((got), (want), __FILE__, __LINE__, (name))
#define is_int(got, want, name) \
	do { \
		long long tap_g_ = (long long) (got), tap_w_ = (long long) (want); \
		if (!tap_ok(tap_g_ == tap_w_, __FILE__, __LINE__, (name))) \
			printf("#          got: %lld\n#     expected: %lld\n", tap_g_, tap_w_); \
	} while (0)

#endif
