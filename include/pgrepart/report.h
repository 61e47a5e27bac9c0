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
	REPORT_CATCH_UP,			/* streaming until first in sync */
	REPORT_WAIT,				/* in sync, waiting for "pgrepart cutover" (manual) */
	REPORT_CUTOVER,				/* from the decision to swap: verification, attempts */
	REPORT_NPHASES
} report_phase;

typedef struct report_lock_attempt
{
	double		wait_ms;		/* until the lock was granted or given up */
	double		hold_ms;		/* 0 when not granted */
	const char *outcome;		/* "busy", "too slow", "swapped", "rehearsed", "failed" */
} report_lock_attempt;

/*
 * What the outcome depends on besides the table, for comparing a staging
 * rehearsal with production: the server's version and the settings that
 * change a run's times, the table's size, and the WAL the run generated.
 */
/* Why the copy or the index build waited (throttle.h). */
typedef enum report_throttle
{
	REPORT_THROTTLE_PAUSED,		/* pgrepart pause */
	REPORT_THROTTLE_REPLICA_LAG,	/* a standby behind the limit, or gone */
	REPORT_THROTTLE_LOAD,		/* more active sessions than --max-load */
	REPORT_THROTTLE_QUERY,		/* --throttle-query returned true, or failed */
	REPORT_NTHROTTLES
} report_throttle;

extern const char *const report_throttle_names[REPORT_NTHROTTLES];

#define REPORT_NSETTINGS 6
extern const char *const report_setting_names[REPORT_NSETTINGS];

typedef struct report_environment
{
	char	   *server_version; /* owned; NULL: not read */
	char	   *settings[REPORT_NSETTINGS]; /* owned, in report_setting_names' order */
	double		table_rows;		/* the planner's estimate; -1 unknown */
	int64_t		table_bytes;	/* heap */
	int64_t		table_total_bytes;	/* with TOAST and indexes */
	char	   *wal_start;		/* owned: the server's WAL position as the run began */
	int64_t		wal_bytes;		/* generated on the server during the run; -1 unknown */
	int64_t		wal_estimate_bytes; /* what plan estimated the run writes (plan_estimate_wal) */
} report_environment;

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
	const char *copy_order;		/* "physical" or "key"; NULL: the copy did not run */
	int64_t		reconciled_changes; /* physical order: changes of transactions some chunks saw */
	int64_t		reconciled_rows;	/* ... and the copied rows of their keys removed */
	int64_t		changes_applied;
	int64_t		peak_lag_bytes;
	int64_t		peak_retained_bytes;
	double		throttled_seconds[REPORT_NTHROTTLES];
	report_lock_attempt *attempts;
	int			nattempts;
	const char *verification;	/* "equal", "different", "skipped", or NULL: not run */
	char	  **old_snapshots;	/* owned: sessions with a snapshot older than the swap */
	int			nold_snapshots;
	report_environment env;
} report;

void		report_init(report *r, const char *schema, const char *table);
void		report_free(report *r);
void		report_free_environment(report *r);
/* Close the phase under way (if any) and start timing phase. */
void		report_phase_begin(report *r, report_phase phase);
void		report_phase_end(report *r);
void		report_lock_attempt_add(report *r, double wait_ms, double hold_ms, const char *outcome);
void		report_peak(int64_t *peak, int64_t value);
/* Take name (owned from now on) as a session with a snapshot older than the swap. */
void		report_old_snapshot_add(report *r, char *name);

/* The JSON report to path; false after logging. */
bool		report_write_json(const report *r, const char *path);
/* The summary for people. */
void		report_print(const report *r, FILE *out);

#endif
