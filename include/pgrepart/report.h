/*
 * report.h: what a run did, for --report (JSON) and the summary on stdout:
 * each phase's duration, rows and MB copied, changes applied, peak lag and
 * peak WAL retained by the slot, every lock attempt with its wait and hold
 * times, and the verification's result.  Both a rehearsal and a real run
 * write it, so a staging rehearsal tells what production will see.
 */
#ifndef PGREPART_REPORT_H
#define PGREPART_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum report_phase
{
	REPORT_PREPARE,
	REPORT_COPY,
	REPORT_INDEX,
	REPORT_CATCH_UP,			/* streaming until the cutover begins */
	REPORT_CUTOVER,
	REPORT_NPHASES
} report_phase;

typedef struct report_lock_attempt
{
	double		wait_ms;		/* until the lock was granted or given up */
	double		hold_ms;		/* 0 when not granted */
	const char *outcome;		/* "busy", "too slow", "swapped", "rehearsed", "failed" */
} report_lock_attempt;

typedef struct report
{
	const char *schema;
	const char *table;
	bool		rehearsal;
	const char *outcome;		/* "swapped", "rehearsed", "stopped", "failed", ... */
	double		phase_seconds[REPORT_NPHASES];
	int64_t		phase_started_us;
	report_phase current;
	bool		in_phase;
	int64_t		rows_copied;
	int64_t		bytes_copied;
	double		copy_seconds;
	int64_t		changes_applied;
	int64_t		peak_lag_bytes;
	int64_t		peak_retained_bytes;
	report_lock_attempt *attempts;
	int			nattempts;
	const char *verification;	/* "equal", "different", "skipped", or NULL: not run */
} report;

void		report_init(report *r, const char *schema, const char *table);
void		report_free(report *r);
/* Close the phase under way (if any) and start timing phase. */
void		report_phase_begin(report *r, report_phase phase);
void		report_phase_end(report *r);
void		report_lock_attempt_add(report *r, double wait_ms, double hold_ms, const char *outcome);
void		report_peak(int64_t *peak, int64_t value);

/* The JSON report to path; false after logging. */
bool		report_write_json(const report *r, const char *path);
/* The summary for people. */
void		report_print(const report *r, FILE *out);

#endif
