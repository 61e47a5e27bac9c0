/*
 * livecheck.c: a live verification, both ends; see livecheck.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgrepart/apply.h"
#include "pgrepart/catalog.h"
#include "pgrepart/clock.h"
#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/livecheck.h"
#include "pgrepart/log.h"
#include "pgrepart/sqlstate.h"
#include "pgrepart/state.h"
#include "pgrepart/stream.h"
#include "pgrepart/verify.h"

/* ---- the run's side: reach the consistent point, compare, answer ---- */

#define LIVECHECK_POLL_US 2000000
/* The main stream is not read while the slot is created: stay well inside wal_sender_timeout. */
#define LIVECHECK_SLOT_TIMEOUT_MS 10000

void
livecheck_close(livecheck *c)
{
	stream_close(&c->slot);
	free(c->snapshot);
	c->snapshot = NULL;
	c->request = 0;
	c->point = LSN_INVALID;
}

/*
 * Look for a verification request every few seconds; for one, commit what
 * is applied (the slot's creation waits for open transactions, ours too)
 * and create the temporary slot.  False only when the control connection
 * fails.
 */
bool
livecheck_poll(livecheck *c, db *control, const char *conninfo, const state_migration *m,
			   apply *a, stream *s, int64_t now)
{
	char		name[IDENT_MAX_BYTES + 1];
	int64_t		request;

	if (c->request != 0 || now < c->next_poll_us)
		return true;
	/*
	 * Only between source transactions, with nothing uncommitted: creating
	 * the slot waits for every open transaction, the apply's own included.
	 */
	if (!apply_commit(a))
		return true;			/* the session's next step reports the failure */
	if (!apply_idle(a))
		return true;
	c->next_poll_us = clock_monotonic_us() + LIVECHECK_POLL_US;
	if (!state_pending_verification(control, m, &request))
		return false;
	if (request == 0)
		return true;
	stream_confirm(s, apply_committed(a));
	snprintf(name, sizeof(name), "%s_verify", m->slot);
	memset(&c->slot, 0, sizeof(c->slot));
	if (!stream_connect(&c->slot, conninfo) ||
		!stream_create_slot(&c->slot, name, true, true, LIVECHECK_SLOT_TIMEOUT_MS, &c->point,
							&c->snapshot))
	{
		bool		busy = strcmp(c->slot.sqlstate, ERRCODE_LOCK_NOT_AVAILABLE) == 0;

		livecheck_close(c);
		if (busy)
		{
			log_info("live verification waits for transactions in progress; trying again");
			return true;
		}
		return state_finish_verification(control, request, LSN_INVALID, VERIFY_OUTCOME_FAILED,
										 "could not create the temporary replication slot that "
										 "fixes the consistent point; the run's log says why",
										 NULL);
	}
	c->request = request;
	{
		char		text[LSN_TEXT_SIZE];

		log_info("live verification: applying up to the consistent point %s",
				 lsn_format(c->point, text));
	}
	return true;
}

/* While the comparison runs, keep the main stream's walsender from timing out. */
static void
livecheck_tick(void *arg)
{
	stream_send_status(arg, false);
}

/* Compare at c->point, the apply standing there, writing the report to the two streams. */
static verify_outcome
livecheck_run(const livecheck *c, const char *conninfo, const state_migration *m, apply *a, stream *s,
			  const char *lsn, FILE *text_out, FILE *json_out)
{
	verify_options vo = {0};

	if (!apply_commit(a))
		return VERIFY_OUTCOME_FAILED;
	stream_confirm(s, apply_committed(a));
	vo.source_conninfo = conninfo;
	vo.source_schema = m->schema;
	vo.source_table = m->table;
	vo.target_schema = m->schema;
	vo.target_table = m->shadow;
	vo.chunk_rows = 1000;
	vo.max_differences = 20;
	vo.source_snapshot = c->snapshot;
	vo.json_out = json_out;
	vo.tick = livecheck_tick;
	vo.tick_arg = s;
	log_info("live verification: comparing the shadow with the source at %s", lsn);
	fault_point("verify");
	switch (verify_tables(&vo, text_out))
	{
		case VERIFY_EQUAL:
			return VERIFY_OUTCOME_EQUAL;
		case VERIFY_DIFFERENT:
			return VERIFY_OUTCOME_DIFFERENT;
		case VERIFY_FAILED:
			break;
	}
	fputs("the comparison failed; the run's log says why\n", text_out);
	return VERIFY_OUTCOME_FAILED;
}

/* The apply stands exactly at P: compare, record the result, resume. */
bool
livecheck_compare(livecheck *c, db *control, const char *conninfo, const state_migration *m,
				  apply *a, stream *s)
{
	char	   *text = NULL, *json = NULL;
	size_t		text_len = 0, json_len = 0;
	FILE	   *text_out = open_memstream(&text, &text_len);
	FILE	   *json_out = open_memstream(&json, &json_len);
	bool		allocated = text_out != NULL && json_out != NULL;
	verify_outcome outcome = VERIFY_OUTCOME_FAILED;
	char		lsn[LSN_TEXT_SIZE];
	bool		ok;

	lsn_format(c->point, lsn);
	if (allocated)
		outcome = livecheck_run(c, conninfo, m, a, s, lsn, text_out, json_out);
	else
		log_error("could not allocate the verification report: %m");
	if (text_out != NULL)
		fclose(text_out);
	if (json_out != NULL)
		fclose(json_out);
	if (outcome == VERIFY_OUTCOME_EQUAL)
		log_info("live verification at %s: the shadow equals the source", lsn);
	else if (outcome == VERIFY_OUTCOME_DIFFERENT)
	{
		log_error("live verification at %s: the shadow differs from the source", lsn);
		log_detail("%s", text);
	}
	ok = allocated ?
		state_finish_verification(control, c->request, c->point, outcome, text,
								  json_len > 0 ? json : NULL) :
		state_finish_verification(control, c->request, LSN_INVALID, VERIFY_OUTCOME_FAILED,
								  "the run could not allocate the report", NULL);
	free(text);
	free(json);
	livecheck_close(c);
	return ok;
}

/* ---- the client: ask the run, wait for its answer ---- */

verify_result
livecheck_request(const char *conninfo, const char *schema, const char *table, bool json,
					FILE *out)
{
	db			d = {0};
	catalog_table *t = NULL;
	state_migration *m = NULL;
	state_verification sv = {0};
	verify_result result = VERIFY_FAILED;
	int64_t		request = 0;
	int64_t		away_since = 0;
	bool		active = false, gone = false;

	if (!state_open(&d, conninfo, schema, table, &t, &m))
		goto cleanup;
	if (m == NULL || (m->phase != STATE_STREAMING &&
					  m->phase != STATE_SYNCED))
	{
		log_error("table \"%s.%s\" has no migration streaming changes", t->schema, t->name);
		log_hint("A live verification compares the shadow of a running migration; compare "
				 "any two tables with --source and --target.");
		goto cleanup;
	}
	if (!state_check_home(&d, m) || !state_slot_active(&d, m, NULL, &active))
		goto cleanup;
	if (!active)
	{
		log_error("no pgrepart run is streaming the migration of \"%s.%s\"", t->schema, t->name);
		log_hint("Start (or resume) it with \"pgrepart run\"; the run compares at a consistent "
				 "point while it streams.");
		goto cleanup;
	}
	if (!state_request_verification(&d, m, &request))
		goto cleanup;
	log_info("waiting for the run to reach a consistent point and compare");
	for (;;)
	{
		usleep(200000);
		if (!state_read_verification(&d, request, &sv))
			goto cleanup;
		if (sv.finished)
			break;
		state_verification_free(&sv);
		if (!state_run_gone(&d, m, &away_since, &gone))
			goto cleanup;
		if (gone)
		{
			log_error("the run streaming \"%s.%s\" stopped before it verified", t->schema,
					  t->name);
			state_finish_verification(&d, request, LSN_INVALID, VERIFY_OUTCOME_FAILED,
									  "given up: no run streamed the migration for 60 s", NULL);
			goto cleanup;
		}
	}
	if (json && sv.json != NULL)
		fputs(sv.json, out);
	else if (sv.text != NULL)
	{
		if (sv.at != LSN_INVALID)
		{
			char		lsn[LSN_TEXT_SIZE];

			fprintf(out, "at the consistent point %s:\n", lsn_format(sv.at, lsn));
		}
		fputs(sv.text, out);
	}
	switch (sv.outcome)
	{
		case VERIFY_OUTCOME_EQUAL:
			result = VERIFY_EQUAL;
			break;
		case VERIFY_OUTCOME_DIFFERENT:
			result = VERIFY_DIFFERENT;
			break;
		case VERIFY_OUTCOME_FAILED:
			log_error("the live verification could not compare the tables");
			if (sv.text != NULL)
				log_detail("%s", sv.text);
			break;
	}

cleanup:
	state_verification_free(&sv);
	state_migration_free(m);
	catalog_table_free(t);
	db_close(&d);
	return result;
}
