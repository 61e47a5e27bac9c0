/* build.c: the shadow's indexes and keys, one partition at a time; see build.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include <libpqtypes.h>

#include "pgrepart/buf.h"
#include "pgrepart/build.h"
#include "pgrepart/clock.h"
#include "pgrepart/fault.h"
#include "pgrepart/ident.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"

/* One partition's index or key: what to run and what to record. */
typedef struct build_item
{
	int			ord;			/* the statement's, in pgrepart.statement */
	char	   *partition;		/* the partition's name */
	char	   *sql;			/* the statement on that partition */
} build_item;

/* Where a session is in its item's transaction. */
typedef enum build_step
{
	STEP_IDLE,
	STEP_BUILD,					/* BEGIN and the statement sent */
	STEP_RECORD,				/* the row of pgrepart.built sent */
	STEP_COMMIT
} build_step;

typedef struct build_job
{
	db			d;
	build_step	step;
	int			item;			/* the item under way, when not idle */
	int64_t		started_us;
} build_job;

typedef struct build
{
	const state_migration *m;
	build_item *items;
	int			nitems;
	int			next;			/* the next item to start */
	build_job  *jobs;
	int			njobs;
} build;

bool
build_default_jobs(db *d, int *jobs)
{
	PGresult   *res = db_execf(d, "read max_parallel_maintenance_workers",
							   "SELECT pg_catalog.current_setting('max_parallel_maintenance_workers')"
							   "::pg_catalog.int4");
	PGint4		workers = 0;
	bool		ok = res != NULL && db_getf(res, 0, "%int4", 0, &workers);

	PQclear(res);
	*jobs = workers < 1 ? 1 : workers > BUILD_MAX_DEFAULT_JOBS ? BUILD_MAX_DEFAULT_JOBS : workers;
	return ok;
}

/* The partitions still to build each statement on, largest first. */
static bool
build_read_items(build *b, db *d, plan_phase phase)
{
	char	   *qshadow = ident_qualified(b->m->schema, b->m->shadow);
	PGresult   *res;
	buf			sql;

	res = db_execf(d, "list the partitions to index",
				   "SELECT s.ord, s.each_head, s.each_tail, n.nspname::pg_catalog.text, "
				   "  c.relname::pg_catalog.text "
				   "FROM pgrepart.statement s, pg_catalog.pg_inherits h "
				   "JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid "
				   "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
				   "WHERE s.migration_id = %int4 AND s.phase = %text AND s.each_head IS NOT NULL "
				   "  AND h.inhparent = %text::pg_catalog.regclass AND c.relkind = 'r' "
				   "  AND NOT EXISTS (SELECT FROM pgrepart.built b WHERE b.migration_id = s.migration_id "
				   "    AND b.ord = s.ord AND b.partition_name = c.relname) "
				   "ORDER BY pg_catalog.pg_relation_size(c.oid) DESC, s.ord, c.relname",
				   b->m->id, plan_phase_name(phase), qshadow);
	free(qshadow);
	if (res == NULL)
		return false;
	b->nitems = PQntuples(res);
	b->items = xcalloc((size_t) b->nitems + 1, sizeof(build_item));
	buf_init(&sql);
	for (int i = 0; i < b->nitems; i++)
	{
		build_item *it = &b->items[i];
		PGint4		ord;

		if (!db_getf(res, i, "%int4", 0, &ord))
		{
			b->nitems = i;
			break;
		}
		it->ord = ord;
		it->partition = xstrdup(PQgetvalue(res, i, 4));
		buf_append(&sql, PQgetvalue(res, i, 1));
		ident_quote_qualified(&sql, PQgetvalue(res, i, 3), it->partition);
		buf_append(&sql, PQgetvalue(res, i, 2));
		it->sql = buf_steal(&sql);
		buf_init(&sql);
	}
	buf_free(&sql);
	PQclear(res);
	return true;
}

/* A session of the build's own, each index build given the server's memory for one. */
static bool
build_connect(build_job *j, const char *conninfo, int njobs, bool no_workers)
{
	if (!db_connect(&j->d, conninfo, "source") ||
		!db_exec(&j->d, "raise maintenance_work_mem", "SET maintenance_work_mem = '512MB'"))
		return false;
	/*
	 * Several sessions are the parallelism: no workers on top of each.  Under
	 * a load limit none at all: each worker takes a core from the application.
	 */
	return (njobs == 1 && !no_workers) ||
		db_exec(&j->d, "leave parallel workers to the other sessions",
				"SET max_parallel_maintenance_workers = 0");
}

static bool
build_send(build *b, build_job *j)
{
	const build_item *it = &b->items[j->item];
	char		ord[12], id[12];
	const char *values[3] = {id, ord, it->partition};
	int			sent;
	buf			sql;

	buf_init(&sql);
	switch (j->step)
	{
		case STEP_BUILD:
			buf_appendf(&sql, "BEGIN; %s", it->sql);
			sent = PQsendQuery(j->d.conn, sql.data);
			break;
		case STEP_RECORD:
			snprintf(id, sizeof(id), "%d", b->m->id);
			snprintf(ord, sizeof(ord), "%d", it->ord);
			sent = PQsendQueryParams(j->d.conn,
									 "INSERT INTO pgrepart.built (migration_id, ord, partition_name) "
									 "VALUES ($1::pg_catalog.int4, $2::pg_catalog.int4, $3::pg_catalog.name)",
									 3, NULL, values, NULL, NULL, 0);
			break;
		default:
			sent = PQsendQuery(j->d.conn, "COMMIT");
			break;
	}
	buf_free(&sql);
	if (!sent)
		db_log_error(j->d.conn, j->d.label, "send the index build", NULL, j->d.sqlstate);
	return sent;
}

/*
 * Collect the step's results when they are all in; false when one failed.
 * *done when the step is over.
 */
static bool
build_collect(build *b, build_job *j, bool *done)
{
	bool		ok = true;

	*done = false;
	if (!PQconsumeInput(j->d.conn))
	{
		db_log_error(j->d.conn, j->d.label, "build an index", NULL, j->d.sqlstate);
		return false;
	}
	while (!PQisBusy(j->d.conn))
	{
		PGresult   *res = PQgetResult(j->d.conn);

		if (res == NULL)
		{
			*done = true;
			break;
		}
		if (PQresultStatus(res) != PGRES_COMMAND_OK && ok)
		{
			char		what[160];

			snprintf(what, sizeof(what), "build an index on partition \"%s\"",
					 b->items[j->item].partition);
			db_log_error(j->d.conn, j->d.label, what, res, j->d.sqlstate);
			log_detail("The statement was: %s", b->items[j->item].sql);
			ok = false;
		}
		PQclear(res);
	}
	return ok;
}

/* Start the next item on an idle session, when the throttle allows. */
static bool
build_start(build *b, build_job *j, const build_options *o)
{
	bool		start = true;

	if (o->may_start != NULL && !o->may_start(o->arg, &start))
		return false;
	if (!start)
		return true;
	j->item = b->next++;
	j->step = STEP_BUILD;
	j->started_us = clock_monotonic_us();
	log_debug("%s", b->items[j->item].sql);
	return build_send(b, j);
}

/* The step's results are in: on to the next step, or the item is done. */
static bool
build_advance(build *b, build_job *j)
{
	if (j->step == STEP_COMMIT)
	{
		log_debug("indexed partition \"%s\" in %.1f s", b->items[j->item].partition,
				  (double) (clock_monotonic_us() - j->started_us) / 1e6);
		j->step = STEP_IDLE;
		fault_point("built");
		return true;
	}
	j->step = j->step == STEP_BUILD ? STEP_RECORD : STEP_COMMIT;
	return build_send(b, j);
}

/* Wait up to 100 ms for a busy session to answer. */
static void
build_wait(build *b)
{
	fd_set		readable;
	struct timeval tv = {0, 100000};
	int			maxfd = -1;

	FD_ZERO(&readable);
	for (int i = 0; i < b->njobs; i++)
	{
		int			fd;

		if (b->jobs[i].step == STEP_IDLE || (fd = PQsocket(b->jobs[i].d.conn)) < 0)
			continue;
		FD_SET(fd, &readable);
		if (fd > maxfd)
			maxfd = fd;
	}
	if (select(maxfd + 1, &readable, NULL, NULL, &tv) < 0 && errno != EINTR)
		log_debug("select: %s", strerror(errno));
}

static bool
build_busy(const build *b)
{
	for (int i = 0; i < b->njobs; i++)
		if (b->jobs[i].step != STEP_IDLE)
			return true;
	return false;
}

bool
build_partitions(db *d, const char *conninfo, const state_migration *m, plan_phase phase,
				 const build_options *o)
{
	build		b = {m, NULL, 0, 0, NULL, 0};
	int64_t		started_us = clock_monotonic_us();
	bool		ok = false;

	b.njobs = o->jobs;
	if (!build_read_items(&b, d, phase) || (b.njobs == 0 && !build_default_jobs(d, &b.njobs)))
		goto cleanup;
	if (b.njobs > b.nitems)
		b.njobs = b.nitems;
	b.jobs = xcalloc((size_t) b.njobs + 1, sizeof(build_job));
	if (b.nitems > 0)
		log_info("building %d indexes or keys of partitions, each in a transaction of its own, "
				 "on %d session%s", b.nitems, b.njobs, b.njobs == 1 ? "" : "s");
	for (int i = 0; i < b.njobs; i++)
		if (!build_connect(&b.jobs[i], conninfo, b.njobs, o->no_workers))
			goto cleanup;
	while (b.next < b.nitems || build_busy(&b))
	{
		if (o->stop != NULL && *o->stop)
			goto cleanup;
		for (int i = 0; i < b.njobs && b.next < b.nitems; i++)
			if (b.jobs[i].step == STEP_IDLE && !build_start(&b, &b.jobs[i], o))
				goto cleanup;
		build_wait(&b);
		for (int i = 0; i < b.njobs; i++)
		{
			build_job  *j = &b.jobs[i];
			bool		done;

			if (j->step == STEP_IDLE)
				continue;
			if (!build_collect(&b, j, &done) || (done && !build_advance(&b, j)))
				goto cleanup;
		}
		if (o->tick != NULL && !o->tick(o->arg))
			goto cleanup;
	}
	ok = true;
	if (b.nitems > 0)
		log_info("built them in %.1f s", (double) (clock_monotonic_us() - started_us) / 1e6);

cleanup:
	/* A build under way rolls back as its session closes. */
	for (int i = 0; i < b.njobs; i++)
		db_close(&b.jobs[i].d);
	free(b.jobs);
	for (int i = 0; i < b.nitems; i++)
	{
		free(b.items[i].partition);
		free(b.items[i].sql);
	}
	free(b.items);
	return ok;
}
