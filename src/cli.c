/*
 * cli.c: commands, options, help and exit codes.
 *
 * Each command parses its own options; connection options follow libpq (a
 * conninfo string or URI in -d, else the PG* environment variables,
 * ~/.pgpass and service files).  Options and exit codes are documented in
 * docs/commands.md, which must match the help text here.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgrepart/cli.h"
#include "pgrepart/cutover.h"
#include "pgrepart/db.h"
#include "pgrepart/ident.h"
#include "pgrepart/livecheck.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/partition.h"
#include "pgrepart/plan.h"
#include "pgrepart/plan_report.h"
#include "pgrepart/preflight.h"
#include "pgrepart/revert.h"
#include "pgrepart/run.h"
#include "pgrepart/status.h"
#include "pgrepart/verify.h"

typedef struct cli_command
{
	const char *name;
	const char *summary;
	int			(*run) (int argc, char **argv);
	const char *help;
} cli_command;

/* Options every command that talks to a database shares. */
typedef struct cli_common
{
	const char *dbname;
	const char *table;
	bool		json;
} cli_common;

#define CLI_COMMON_OPTIONS \
	"\nConnection and output:\n" \
	"  -d, --dbname=CONNINFO   conninfo string or URI; default: the PG* environment\n" \
	"                          variables, ~/.pgpass and service files (libpq)\n" \
	"  -t, --table=TABLE       the table, as SQL writes it: optionally schema-qualified,\n" \
	"                          double-quoted where needed ('\"Ops Data\".\"Event Log\"')\n" \
	"      --json              print the report as one JSON object\n" \
	"  -v, --verbose           debug messages too\n" \
	"  -q, --quiet             errors only\n" \
	"  -h, --help              show this help\n"

static const char plan_help[] =
	"Usage: pgrepart plan -d CONNINFO -t TABLE -k COLUMN [options]\n"
	"\n"
	"Print the partitioned shadow table's DDL and every preflight finding.\n"
	"Changes nothing.\n"
	"\n"
	"Options:\n"
	"  -k, --partition-key=COLUMN  partition by range on COLUMN (date, timestamp,\n"
	"                              timestamptz or integer; NOT NULL), named as SQL\n"
	"                              writes it (\"Created At\" keeps its case)\n"
	"      --interval=INTERVAL     partition width (default '3 months'); any interval\n"
	"                              of whole months, days, or below a day; a whole\n"
	"                              number for an integer column\n"
	"      --premake=N             future partitions beyond now (default 4)\n"
	"      --copy-order=ORDER      physical: copy ranges of heap pages, each page read\n"
	"                              once whatever the key (default); key: ranges of\n"
	"                              the key, in the key's index order\n"
	"      --no-default-partition  no DEFAULT partition: after the swap a row outside\n"
	"                              every partition is refused (default: one takes them)\n"
	"      --sql                   print only the DDL, runnable with psql\n"
	"      --rate=N                estimate the copy's duration at N rows per second\n"
	CLI_COMMON_OPTIONS
	"\nExit status: 0 ready, 1 error, 2 usage error, 4 a preflight check blocks.\n";

static const char run_help[] =
	"Usage: pgrepart run -d CONNINFO -t TABLE -k COLUMN [options]\n"
	"\n"
	"Migrate the table online: plan, create the publication, the partitioned\n"
	"shadow and the replication slot, copy the rows in chunks of heap pages (each\n"
	"under its own short snapshot), build the keys and indexes, apply the change\n"
	"stream into the shadow, and once it is in sync swap it in for the table under\n"
	"a short lock, then drop the slot and publication. SIGINT or SIGTERM stop\n"
	"cleanly; running the same command again resumes.\n"
	"\n"
	"Options:\n"
	"  -k, --partition-key=COLUMN  as for plan\n"
	"      --interval=INTERVAL     as for plan (default '3 months')\n"
	"      --premake=N             as for plan (default 4)\n"
	"      --copy-order=ORDER      as for plan (default physical)\n"
	"      --no-default-partition  as for plan\n"
	"      --batch-transactions=N  source transactions per shadow commit (default 2000;\n"
	"                              up to 4 times as many while the last commit runs)\n"
	"      --chunk-rows=N          rows per copied chunk (default: adapt to about 1 s)\n"
	"      --cutover=MODE          auto (default): swap as soon as the shadow is synced;\n"
	"                              manual: stay in sync until \"pgrepart cutover\"\n"
	"      --lock-timeout=MS       wait at most MS for the table's lock per attempt\n"
	"                              (default 100); never queue behind other sessions\n"
	"      --max-lock-hold=MS      give up an attempt that would hold the lock longer\n"
	"                              (default 1000)\n"
	"      --cutover-retries=N     attempts before giving up (default 30)\n"
	"      --wait-for-snapshots=MS before each attempt, wait up to MS for sessions\n"
	"                              holding a snapshot older than it (default 0: no)\n"
	"      --max-cutover-lag=BYTES try only when this close to the server (default 4194304)\n"
	"      --old-name=NAME         the original table's name after the swap\n"
	"                              (default TABLE_old)\n"
	"      --revert-window=TIME    after the swap, keep the original in step with the\n"
	"                              new table for TIME (30min, 12h, 2d; default 0: no),\n"
	"                              so that \"pgrepart revert\" can swap back\n"
	"      --rehearse              take the lock and swap, then roll back, remove what\n"
	"                              the run made and stop\n"
	"      --keep                  with --rehearse: keep the migration in sync instead\n"
	"                              (its slot holds WAL until the next run or abort)\n"
	"      --no-verify             swap without comparing shadow and table first\n"
	"      --report=FILE           write the run's report as JSON to FILE\n"
	"      --json                  progress events as JSON lines on standard output\n"
	"      --rate=N                copy at most N rows per second (0: no cap); change it\n"
	"                              while running in pgrepart.migration.max_rows_per_second\n"
	"      --max-replica-lag=LAG   wait while a physical standby replays more than LAG\n"
	"                              behind (a time: 10s; or a size: 256MB; 0: none;\n"
	"                              default 30s)\n"
	"      --max-load=N            wait while more than N other sessions are active\n"
	"      --critical-load=N       stop (exit 5, resumable) when more than N are\n"
	"      --throttle-query=SQL    wait while SQL returns true\n"
	"                              (all four: change them while running in\n"
	"                              pgrepart.migration; pgrepart pause/resume too)\n"
	"  -j, --jobs=N                build indexes on N partitions at once (default: the\n"
	"                              server's max_parallel_maintenance_workers, 1 to 4)\n"
	"\nConnection and output:\n"
	"  -d, --dbname=CONNINFO   conninfo string or URI\n"
	"  -t, --table=TABLE       the table, as SQL writes it\n"
	"  -v, --verbose           debug messages too\n"
	"  -q, --quiet             errors only\n"
	"  -h, --help              show this help\n"
	"\nExit status: 1 error, 2 usage error, 4 a preflight check blocks,\n"
	"5 stopped on request (run again to resume).\n";
static const char status_help[] =
	"Usage: pgrepart status -d CONNINFO [-t TABLE] [--json]\n"
	"\n"
	"Show the migrations in the database (or of one table): phase, the slot and\n"
	"the WAL it retains, how far the shadow is behind, and the apply's durable\n"
	"position. Reads only.\n"
	CLI_COMMON_OPTIONS
	"\nExit status: 0 shown, 1 error, 2 usage error, 6 no migration found.\n";
static const char cutover_help[] =
	"Usage: pgrepart cutover -d CONNINFO -t TABLE\n"
	"\n"
	"Ask the run migrating TABLE with --cutover=manual to swap the shadow in as soon\n"
	"as it is in sync, and wait until it has.\n"
	CLI_COMMON_OPTIONS
	"\nExit status: 0 cut over, 1 error, 2 usage error.\n";
static const char revert_help[] =
	"Usage: pgrepart revert -d CONNINFO -t TABLE [options]\n"
	"\n"
	"Swap TABLE back to the original, within the migration's --revert-window: lock\n"
	"the new table as the cutover does, apply the changes it has received up to the\n"
	"lock to the original, rename both (the partitioned table becomes\n"
	"TABLE_partitioned), carry views, grants, triggers, policies, rules,\n"
	"publications and sequence positions back, and commit. The run following the\n"
	"reverse stream does it; with none, this command does.\n"
	"\n"
	"Options:\n"
	"      --lock-timeout=MS       as for run (default 100)\n"
	"      --max-lock-hold=MS      as for run (default 1000)\n"
	"      --cutover-retries=N     as for run (default 30)\n"
	"      --partitioned-name=NAME the partitioned table's name afterwards\n"
	"                              (default TABLE_partitioned)\n"
	CLI_COMMON_OPTIONS
	"\nExit status: 0 reverted, 1 error or refused, 2 usage error, 5 stopped, 6 no\n"
	"swapped migration.\n";
static const char finish_help[] =
	"Usage: pgrepart finish -d CONNINFO -t TABLE\n"
	"\n"
	"End a migration's revert window now: stop the reverse stream and drop its slot,\n"
	"publication and origin. The original table stays under its old name, no longer\n"
	"kept in step, for you to drop.\n"
	CLI_COMMON_OPTIONS
	"\nExit status: 0 finished, 1 error or refused, 2 usage error, 6 no swapped\n"
	"migration.\n";
static const char pause_help[] =
	"Usage: pgrepart pause -d CONNINFO -t TABLE\n"
	"\n"
	"Pause the migration of TABLE: its run's copy and index build wait between\n"
	"chunks, holding no snapshot, while the spooler reads on; a streaming run stops\n"
	"applying, and its slot retains the WAL the server writes meanwhile. Says how\n"
	"much it retains now. The run stays paused, restarts included, until resumed.\n"
	CLI_COMMON_OPTIONS
	"\nExit status: 0 paused, 1 error, 2 usage error.\n";
static const char resume_help[] =
	"Usage: pgrepart resume -d CONNINFO -t TABLE\n"
	"\n"
	"Resume a paused migration; the standbys connected now become those its copy\n"
	"watches (after a standby left for good).\n"
	CLI_COMMON_OPTIONS
	"\nExit status: 0 resumed, 1 error, 2 usage error.\n";
static const char verify_help[] =
	"Usage: pgrepart verify -d CONNINFO --source A --target B [options]\n"
	"       pgrepart verify -d CONNINFO --live -t TABLE [--json]\n"
	"\n"
	"Compare two tables row by row with xxHash checksums, reading both at once in\n"
	"the order their rows lie on disk, and name the rows that are missing, extra or\n"
	"different (and, for a different row, its columns). Columns are matched by\n"
	"name; a column only one table has, or with another type, is reported and not\n"
	"compared. Reads only.\n"
	"\n"
	"With --live, the run migrating TABLE compares its shadow with the table at a\n"
	"consistent point: it applies the stream exactly up to that point, pauses,\n"
	"compares, and resumes; this command waits for the result.\n"
	"\n"
	"Options:\n"
	"      --live                  verify a running migration's shadow (with -t)\n"
	"      --source=TABLE          the reference table (on -d)\n"
	"      --target=TABLE          the table compared with it\n"
	"      --target-dbname=CONNINFO  the target's database, when not the source's\n"
	"      --key=COLUMNS           the columns that identify a row, comma-separated\n"
	"                              (default: the source's primary key); NOT NULL\n"
	"      --where=CONDITION       compare only rows matching this SQL condition (run\n"
	"                              on both tables, with your privileges)\n"
	"      --chunk-rows=N          source rows per checksum bucket (default 1000);\n"
	"                              smaller buckets name differing rows with less reading\n"
	"      --max-differences=N     rows listed in the report (default 20); all are counted\n"
	CLI_COMMON_OPTIONS
	"\nExit status: 0 equal, 1 error, 2 usage error, 3 the tables differ.\n";
static const char abort_help[] =
	"Usage: pgrepart abort -d CONNINFO -t TABLE\n"
	"\n"
	"Remove a migration: its replication slot, publication and origin, the shadow\n"
	"table and the state in schema pgrepart. Never touches the table itself.\n"
	"Refused while a run streams the migration (stop it first) and after the swap.\n"
	CLI_COMMON_OPTIONS
	"\nExit status: 0 removed, 1 error or refused, 2 usage error, 6 no migration.\n";
static const char partitions_help[] =
	"Usage: pgrepart partitions -d CONNINFO -t TABLE [--ahead N] [--interval INTERVAL]\n"
	"\n"
	"Create the future partitions of a range-partitioned table (one pgrepart\n"
	"migrated, or any other partitioned by RANGE on one column): up to N widths\n"
	"beyond now (beyond the largest value for an integer column), named like the\n"
	"ones pgrepart plans. Idempotent: run it from cron.\n"
	"\n"
	"Options:\n"
	"      --ahead=N               widths ahead (default 4)\n"
	"      --interval=INTERVAL     partition width (default: the one pgrepart recorded)\n"
	CLI_COMMON_OPTIONS
	"\nExit status: 0 done (partitions created or none needed), 1 error, 2 usage error.\n";

static int	cli_plan(int argc, char **argv);
static int	cli_run(int argc, char **argv);
static int	cli_status(int argc, char **argv);
static int	cli_verify(int argc, char **argv);
static int	cli_cutover(int argc, char **argv);
static int	cli_pause(int argc, char **argv);
static int	cli_resume(int argc, char **argv);
static int	cli_revert(int argc, char **argv);
static int	cli_finish(int argc, char **argv);
static int	cli_abort(int argc, char **argv);
static int	cli_partitions(int argc, char **argv);

static const cli_command commands[] = {
	{"plan", "print the shadow DDL and preflight findings; changes nothing", cli_plan, plan_help},
	{"run", "migrate the table online (prepare, copy, stream)", cli_run, run_help},
	{"status", "show a migration's phase, lag and readiness", cli_status, status_help},
	{"cutover", "swap in the synced shadow table", cli_cutover, cutover_help},
	{"verify", "compare two tables by xxHash checksums", cli_verify, verify_help},
	{"pause", "pause a migration's copy or apply", cli_pause, pause_help},
	{"resume", "resume a paused migration", cli_resume, resume_help},
	{"revert", "swap back to the original table within the revert window", cli_revert,
	revert_help},
	{"finish", "end the revert window: drop the reverse stream", cli_finish, finish_help},
	{"abort", "remove a migration's slot, publication, shadow and state",
	cli_abort, abort_help},
	{"partitions", "create future partitions (for cron)", cli_partitions, partitions_help},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
cli_usage(FILE *out)
{
	fputs("pgrepart turns a live PostgreSQL table into a range-partitioned one online.\n\n"
		  "Usage: pgrepart COMMAND [options]\n\nCommands:\n", out);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(out, "  %-11s %s\n", commands[i].name, commands[i].summary);
	fputs("\nOptions:\n"
		  "  -h, --help     show this help; pgrepart COMMAND --help for a command's\n"
		  "  -V, --version  show the version\n"
		  "\nExit status: 0 success, 1 failure, 2 usage error, 3 verification found a\n"
		  "difference, 4 a preflight check blocks the migration, 5 stopped on request,\n"
		  "6 no migration found.\n", out);
}

static int	cli_usage_error(const char *command, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

static int
cli_usage_error(const char *command, const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "pgrepart: error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\npgrepart: hint: Try \"pgrepart %s%s--help\".\n",
			command ? command : "", command ? " " : "");
	return EXIT_USAGE;
}

static bool
cli_parse_int(const char *s, int min, int max, int *out)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return false;
	*out = (int) v;
	return true;
}

/* A unit a number may carry: what it multiplies by, and whether it is a size. */
typedef struct cli_unit
{
	const char *name;			/* "" for none */
	int64_t		factor;
	bool		bytes;
} cli_unit;

/*
 * A whole number, then (after spaces) one of n units: *value is the number
 * times the unit's factor, *unit the unit.  False for anything else, and
 * for a value past INT64_MAX.
 */
static bool
cli_parse_quantity(const char *s, const cli_unit *units, size_t n, int64_t *value,
				   const cli_unit **unit)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || v < 0)
		return false;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < n; i++)
		if (strcmp(end, units[i].name) == 0)
		{
			if (v > INT64_MAX / units[i].factor)
				return false;
			*value = v * units[i].factor;
			*unit = &units[i];
			return true;
		}
	return false;
}

/* A duration in seconds: a whole number with s, min, h or d (none: seconds), at most a year. */
static bool
cli_parse_duration(const char *s, int *seconds)
{
	static const cli_unit units[] = {
		{"", 1, false}, {"s", 1, false}, {"min", 60, false}, {"h", 3600, false},
		{"d", 86400, false}
	};
	const cli_unit *unit;
	int64_t		v;

	if (!cli_parse_quantity(s, units, sizeof(units) / sizeof(units[0]), &v, &unit) ||
		v > INT64_C(365) * 86400)
		return false;
	*seconds = (int) v;
	return true;
}

/*
 * A standby lag limit: a time ("500ms", "10s", "2min", "1h"; a bare number
 * is milliseconds) or a size ("64kB", "64MB", "1GB"); "0" is none.
 */
static bool
cli_parse_lag(const char *s, throttle_limits *l)
{
	static const cli_unit units[] = {
		{"", 1, false}, {"ms", 1, false}, {"s", 1000, false}, {"min", 60000, false},
		{"h", 3600000, false}, {"kB", 1024, true}, {"MB", 1048576, true},
		{"GB", INT64_C(1073741824), true}
	};
	const cli_unit *unit;
	int64_t		v;

	if (!cli_parse_quantity(s, units, sizeof(units) / sizeof(units[0]), &v, &unit) ||
		(!unit->bytes && v > INT_MAX))
		return false;
	if (v == 0)
	{
		l->max_lag_ms = 0;
		l->max_lag_bytes = 0;
	}
	else if (unit->bytes)
	{
		/* A size alone limits the size alone; given both ways, both. */
		l->max_lag_bytes = v;
		if (l->max_lag_ms < 0)
			l->max_lag_ms = 0;
	}
	else
	{
		l->max_lag_ms = (int) v;
		if (l->max_lag_bytes < 0)
			l->max_lag_bytes = 0;
	}
	return true;
}

/*
 * A conninfo option's value, for use; the argument itself, which ps and
 * /proc/PID/cmdline show, gets its password overwritten.  Taken from
 * getopt's optarg, so every spelling of the option is covered: -d X, -dX,
 * -vdX, --dbname=X, --db=X.  The copies stay reachable for the process's
 * life.
 */
static const char *
cli_conninfo_arg(char *arg)
{
	static char *kept[8];
	char	   *copy = xstrdup(arg);

	db_mask_password(arg);
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		if (kept[i] == NULL)
		{
			kept[i] = copy;
			break;
		}
	return copy;
}

/* Handle a common option; false when c is not one. */
static bool
cli_common_option(int c, cli_common *common)
{
	switch (c)
	{
		case 'd':
			common->dbname = cli_conninfo_arg(optarg);
			return true;
		case 't':
			common->table = optarg;
			return true;
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			return true;
		case 'q':
			log_set_level(LOG_LEVEL_ERROR);
			return true;
		default:
			return false;
	}
}

enum
{
	OPT_JSON = 256,
	OPT_INTERVAL,
	OPT_PREMAKE,
	OPT_COPY_ORDER,
	OPT_DEFAULT_PARTITION,
	OPT_NO_DEFAULT_PARTITION,
	OPT_SQL,
	OPT_BATCH,
	OPT_SOURCE,
	OPT_TARGET,
	OPT_TARGET_DBNAME,
	OPT_KEY,
	OPT_WHERE,
	OPT_CHUNK_ROWS,
	OPT_MAX_DIFFERENCES,
	OPT_LIVE,
	OPT_RATE,
	OPT_MAX_REPLICA_LAG,
	OPT_MAX_LOAD,
	OPT_CRITICAL_LOAD,
	OPT_THROTTLE_QUERY,
	OPT_CUTOVER,
	OPT_LOCK_TIMEOUT,
	OPT_WAIT_SNAPSHOTS,
	OPT_MAX_LOCK_HOLD,
	OPT_CUTOVER_RETRIES,
	OPT_MAX_CUTOVER_LAG,
	OPT_OLD_NAME,
	OPT_REVERT_WINDOW,
	OPT_PARTITIONED_NAME,
	OPT_REHEARSE,
	OPT_KEEP,
	OPT_NO_VERIFY,
	OPT_REPORT
};

/* What plan and run both take, parsed and checked. */
typedef struct cli_plan_args
{
	cli_common	common;
	plan_options o;
	bool		sql_only;
	int			batch;
	int			chunk_rows;
	int			rate;
	int			jobs;
	throttle_limits limits;
	bool		cutover_manual;
	bool		skip_verify;
	const char *report_path;
	cutover_options cutover;
	char	   *schema;			/* these three are owned */
	char	   *table;
	char	   *column;
} cli_plan_args;

static void
cli_plan_args_free(cli_plan_args *args)
{
	free(args->schema);
	free(args->table);
	free(args->column);
}

/*
 * Options plan and run share: what to migrate and how to partition it, and
 * the common ones.  Each command's table adds its own.
 */
#define CLI_PLAN_OPTIONS \
	{"dbname", required_argument, NULL, 'd'}, \
	{"table", required_argument, NULL, 't'}, \
	{"partition-key", required_argument, NULL, 'k'}, \
	{"interval", required_argument, NULL, OPT_INTERVAL}, \
	{"premake", required_argument, NULL, OPT_PREMAKE}, \
	{"copy-order", required_argument, NULL, OPT_COPY_ORDER}, \
	{"default-partition", no_argument, NULL, OPT_DEFAULT_PARTITION}, \
	{"no-default-partition", no_argument, NULL, OPT_NO_DEFAULT_PARTITION}, \
	{"json", no_argument, NULL, OPT_JSON}, \
	{"verbose", no_argument, NULL, 'v'}, \
	{"quiet", no_argument, NULL, 'q'}, \
	{"help", no_argument, NULL, 'h'}

static const struct option cli_plan_options[] = {
	CLI_PLAN_OPTIONS,
	{"sql", no_argument, NULL, OPT_SQL},
	{"rate", required_argument, NULL, OPT_RATE},
	{NULL, 0, NULL, 0}
};

static const struct option cli_run_options[] = {
	CLI_PLAN_OPTIONS,
	{"batch-transactions", required_argument, NULL, OPT_BATCH},
	{"chunk-rows", required_argument, NULL, OPT_CHUNK_ROWS},
	{"rate", required_argument, NULL, OPT_RATE},
	{"jobs", required_argument, NULL, 'j'},
	{"max-replica-lag", required_argument, NULL, OPT_MAX_REPLICA_LAG},
	{"max-load", required_argument, NULL, OPT_MAX_LOAD},
	{"critical-load", required_argument, NULL, OPT_CRITICAL_LOAD},
	{"throttle-query", required_argument, NULL, OPT_THROTTLE_QUERY},
	{"cutover", required_argument, NULL, OPT_CUTOVER},
	{"lock-timeout", required_argument, NULL, OPT_LOCK_TIMEOUT},
	{"wait-for-snapshots", required_argument, NULL, OPT_WAIT_SNAPSHOTS},
	{"max-lock-hold", required_argument, NULL, OPT_MAX_LOCK_HOLD},
	{"cutover-retries", required_argument, NULL, OPT_CUTOVER_RETRIES},
	{"max-cutover-lag", required_argument, NULL, OPT_MAX_CUTOVER_LAG},
	{"old-name", required_argument, NULL, OPT_OLD_NAME},
	{"revert-window", required_argument, NULL, OPT_REVERT_WINDOW},
	{"rehearse", no_argument, NULL, OPT_REHEARSE},
	{"keep", no_argument, NULL, OPT_KEEP},
	{"no-verify", no_argument, NULL, OPT_NO_VERIFY},
	{"report", required_argument, NULL, OPT_REPORT},
	{NULL, 0, NULL, 0}
};

/*
 * An option getopt did not know for command: when the other of plan and run
 * takes it, say so (getopt has already said it is unrecognized).
 */
static int
cli_plan_run_unknown(const char *command, const struct option *other, const char *other_name,
					 const char *arg)
{
	const char *name = arg != NULL && strncmp(arg, "--", 2) == 0 ? arg + 2 : NULL;
	size_t		len = name != NULL ? strcspn(name, "=") : 0;

	for (int i = 0; name != NULL && other[i].name != NULL; i++)
		if (strlen(other[i].name) == len && strncmp(other[i].name, name, len) == 0)
			return cli_usage_error(command, "%s takes no --%s; it is an option of %s", command,
								   other[i].name, other_name);
	return cli_usage_error(command, "%s", "invalid option");
}

/*
 * The options plan and run share; -2 when c is none of them, -1 when it was
 * taken, else the exit code to return now.
 */
static int
cli_plan_option(const char *command, const char *help, int c, cli_plan_args *args)
{
	if (cli_common_option(c, &args->common))
		return -1;
	switch (c)
	{
		case 'k':
			args->o.partition_column = optarg;
			return -1;
		case OPT_INTERVAL:
			args->o.interval = optarg;
			args->o.given |= PLAN_GIVEN_INTERVAL;
			return -1;
		case OPT_RATE:
			if (!cli_parse_int(optarg, 0, INT_MAX, &args->rate))
				return cli_usage_error(command, "invalid --rate \"%s\": give rows per second, "
									   "0 for no cap", optarg);
			args->o.rate = args->rate;
			return -1;
		case OPT_PREMAKE:
			if (!cli_parse_int(optarg, 0, 1000, &args->o.premake))
				return cli_usage_error(command, "invalid --premake \"%s\": give a whole "
									   "number from 0 to 1000", optarg);
			args->o.given |= PLAN_GIVEN_PREMAKE;
			return -1;
		case OPT_COPY_ORDER:
			if (strcmp(optarg, "physical") == 0)
				args->o.copy_order = PLAN_COPY_PHYSICAL;
			else if (strcmp(optarg, "key") == 0)
				args->o.copy_order = PLAN_COPY_KEY;
			else
				return cli_usage_error(command, "invalid --copy-order \"%s\": give physical "
									   "or key", optarg);
			args->o.given |= PLAN_GIVEN_COPY_ORDER;
			return -1;
		case OPT_DEFAULT_PARTITION:
		case OPT_NO_DEFAULT_PARTITION:
			/* --default-partition, the default now, is still taken. */
			args->o.default_partition = c == OPT_DEFAULT_PARTITION;
			args->o.given |= PLAN_GIVEN_DEFAULT;
			return -1;
		case OPT_JSON:
			args->common.json = true;
			return -1;
		case 'h':
			fputs(help, stdout);
			return EXIT_OK;
		default:
			return -2;
	}
}

/* The options only run takes; as cli_plan_option. */
static int
cli_run_option(int c, cli_plan_args *args)
{
	switch (c)
	{
		case OPT_CHUNK_ROWS:
			if (!cli_parse_int(optarg, 1, 10000000, &args->chunk_rows))
				return cli_usage_error("run", "invalid --chunk-rows \"%s\": give a whole "
									   "number from 1 to 10000000", optarg);
			return -1;
		case OPT_CUTOVER:
			if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "manual") != 0)
				return cli_usage_error("run", "invalid --cutover \"%s\": give auto or manual",
									   optarg);
			args->cutover_manual = strcmp(optarg, "manual") == 0;
			return -1;
		case OPT_LOCK_TIMEOUT:
			if (!cli_parse_int(optarg, 1, 60000, &args->cutover.lock_timeout_ms))
				return cli_usage_error("run", "invalid --lock-timeout \"%s\": give "
									   "milliseconds from 1 to 60000", optarg);
			return -1;
		case OPT_WAIT_SNAPSHOTS:
			if (!cli_parse_int(optarg, 0, 3600000, &args->cutover.snapshot_wait_ms))
				return cli_usage_error("run", "invalid --wait-for-snapshots \"%s\": give "
									   "milliseconds from 0 to 3600000", optarg);
			return -1;
		case OPT_MAX_LOCK_HOLD:
			if (!cli_parse_int(optarg, 1, 600000, &args->cutover.max_lock_hold_ms))
				return cli_usage_error("run", "invalid --max-lock-hold \"%s\": give "
									   "milliseconds from 1 to 600000", optarg);
			return -1;
		case OPT_CUTOVER_RETRIES:
			if (!cli_parse_int(optarg, 1, 100000, &args->cutover.retries))
				return cli_usage_error("run", "invalid --cutover-retries \"%s\": give a "
									   "whole number from 1 to 100000", optarg);
			return -1;
		case OPT_MAX_CUTOVER_LAG:
			{
				int			lag;

				if (!cli_parse_int(optarg, 0, INT_MAX, &lag))
					return cli_usage_error("run", "invalid --max-cutover-lag \"%s\": give "
										   "bytes", optarg);
				args->cutover.max_lag_bytes = lag;
			}
			return -1;
		case OPT_OLD_NAME:
			if (strlen(optarg) == 0 || strlen(optarg) > 63)
				return cli_usage_error("run", "invalid --old-name \"%s\"", optarg);
			args->cutover.old_name = optarg;
			return -1;
		case OPT_REVERT_WINDOW:
			if (!cli_parse_duration(optarg, &args->cutover.revert_window_s))
				return cli_usage_error("run", "invalid --revert-window \"%s\": give a time "
									   "such as 3600, 30min, 12h or 2d (at most 365d)", optarg);
			return -1;
		case OPT_REPORT:
			args->report_path = optarg;
			return -1;
		case OPT_NO_VERIFY:
			args->skip_verify = true;
			return -1;
		case OPT_REHEARSE:
			args->cutover.rehearse = true;
			return -1;
		case OPT_KEEP:
			args->cutover.keep = true;
			return -1;
		case OPT_MAX_REPLICA_LAG:
			if (!cli_parse_lag(optarg, &args->limits))
				return cli_usage_error("run", "invalid --max-replica-lag \"%s\": give a time "
									   "(500ms, 10s, 2min), a size (64MB, 1GB), or 0 for none",
									   optarg);
			return -1;
		case OPT_MAX_LOAD:
			if (!cli_parse_int(optarg, 0, 1000000, &args->limits.max_load))
				return cli_usage_error("run", "invalid --max-load \"%s\": give a number of "
									   "active sessions, 0 for none", optarg);
			return -1;
		case OPT_CRITICAL_LOAD:
			if (!cli_parse_int(optarg, 0, 1000000, &args->limits.critical_load))
				return cli_usage_error("run", "invalid --critical-load \"%s\": give a number "
									   "of active sessions, 0 for none", optarg);
			return -1;
		case OPT_THROTTLE_QUERY:
			args->limits.query = optarg;
			return -1;
		case 'j':
			if (!cli_parse_int(optarg, 1, 64, &args->jobs))
				return cli_usage_error("run", "invalid --jobs \"%s\": give a whole number "
									   "from 1 to 64", optarg);
			return -1;
		case OPT_BATCH:
			if (!cli_parse_int(optarg, 1, 100000, &args->batch))
				return cli_usage_error("run", "invalid --batch-transactions \"%s\": give "
									   "a whole number from 1 to 100000", optarg);
			return -1;
		default:
			return -2;
	}
}

/* Defaults of what plan and run share, and of run's own options. */
static void
cli_plan_args_init(cli_plan_args *args)
{
	memset(args, 0, sizeof(*args));
	args->o.interval = "3 months";
	args->o.premake = 4;
	args->o.default_partition = true;
	args->batch = 2000;
	args->rate = -1;
	args->limits = (throttle_limits) THROTTLE_LIMITS_KEEP;
	args->cutover.lock_timeout_ms = 100;
	args->cutover.max_lock_hold_ms = 1000;
	args->cutover.retries = 30;
	args->cutover.max_lag_bytes = INT64_C(4) * 1024 * 1024;
}

/*
 * After the options: the table and partition column, given and parsed.
 * Returns -1 to go on, or the exit code to return now.
 */
static int
cli_plan_args_finish(const char *command, int argc, char **argv, cli_plan_args *args)
{
	char		err[256];
	char	   *column_schema = NULL;

	if (optind < argc)
		return cli_usage_error(command, "unexpected argument \"%s\"", argv[optind]);
	if (args->common.table == NULL)
		return cli_usage_error(command, "%s", "no table given (-t/--table)");
	if (args->cutover.keep && !args->cutover.rehearse)
		return cli_usage_error(command, "%s", "--keep goes with --rehearse");
	if (args->o.partition_column == NULL)
		return cli_usage_error(command, "%s", "no partition column given (-k/--partition-key)");
	if (args->sql_only && args->common.json)
		return cli_usage_error(command, "%s", "--sql and --json cannot be used together");
	if (!ident_parse_qualified(args->common.table, &args->schema, &args->table, err, sizeof(err)))
	{
		fprintf(stderr, "pgrepart: error: invalid table name \"%s\": %s\n", args->common.table, err);
		fprintf(stderr, "pgrepart: hint: Write it as SQL would: name, schema.name, or "
				"\"Quoted Name\" for mixed case and special characters.\n");
		return EXIT_USAGE;
	}
	if (!ident_parse_qualified(args->o.partition_column, &column_schema, &args->column, err,
							   sizeof(err)) || column_schema != NULL)
	{
		fprintf(stderr, "pgrepart: error: invalid partition column \"%s\": %s\n",
				args->o.partition_column, column_schema ? "give the column name alone" : err);
		fprintf(stderr, "pgrepart: hint: Write it as SQL would: created_at, or \"Created At\" "
				"for mixed case and special characters.\n");
		free(column_schema);
		return EXIT_USAGE;
	}
	args->o.partition_column = args->column;
	return -1;
}

/* plan's options; -1 to go on, or the exit code to return now. */
static int
cli_parse_plan_args(int argc, char **argv, cli_plan_args *args)
{
	int			c;

	cli_plan_args_init(args);
	while ((c = getopt_long(argc, argv, "d:t:k:vqh", cli_plan_options, NULL)) != -1)
	{
		int			rc = cli_plan_option("plan", plan_help, c, args);
		if (rc == -2 && c == OPT_SQL)
			args->sql_only = true;
		else if (rc == -2)
			return cli_plan_run_unknown("plan", cli_run_options, "run", argv[optind - 1]);
		else if (rc >= 0)
			return rc;
	}
	return cli_plan_args_finish("plan", argc, argv, args);
}

/* run's options; as cli_parse_plan_args. */
static int
cli_parse_run_args(int argc, char **argv, cli_plan_args *args)
{
	int			c;

	cli_plan_args_init(args);
	while ((c = getopt_long(argc, argv, "d:t:k:j:vqh", cli_run_options, NULL)) != -1)
	{
		int			rc = cli_plan_option("run", run_help, c, args);
		if (rc == -2)
			rc = cli_run_option(c, args);
		if (rc == -2)
			return cli_plan_run_unknown("run", cli_plan_options, "plan", argv[optind - 1]);
		if (rc >= 0)
			return rc;
	}
	return cli_plan_args_finish("run", argc, argv, args);
}

static int
cli_plan(int argc, char **argv)
{
	cli_plan_args args;
	db			d = {0};
	plan	   *p = NULL;
	bool		bad_interval;
	int			rc = cli_parse_plan_args(argc, argv, &args);

	if (rc >= 0)
		goto cleanup;
	rc = EXIT_FAIL;
	if (!db_connect(&d, args.common.dbname, "source"))
		goto cleanup;
	p = preflight_plan(&d, args.common.dbname, args.schema, args.table, &args.o, &bad_interval);
	if (p == NULL)
	{
		rc = bad_interval ? EXIT_USAGE : EXIT_FAIL;
		goto cleanup;
	}
	if (args.sql_only)
		plan_print_sql(p, stdout);
	else if (args.common.json)
		plan_print_json(p, stdout);
	else
		plan_print_text(p, stdout);
	fflush(stdout);

	rc = EXIT_OK;
	if (plan_count_findings(p, FINDING_BLOCK) > 0)
	{
		plan_log_blocked(p);
		rc = EXIT_BLOCKED;
	}

cleanup:
	plan_free(p);
	db_close(&d);
	ident_free_keywords();
	cli_plan_args_free(&args);
	return rc;
}

/* Set by SIGINT and SIGTERM; the run stops at the next safe point. */
static volatile sig_atomic_t stop_requested = 0;

static void
cli_handle_stop(int signo)
{
	(void) signo;
	stop_requested = 1;
}

/* SIGINT and SIGTERM set stop_requested, for a command that stops cleanly. */
static void
cli_catch_stop(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = cli_handle_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static int
cli_run(int argc, char **argv)
{
	cli_plan_args args;
	run_options ro = {0};
	report		rep;
	int			rc = cli_parse_run_args(argc, argv, &args);

	if (rc >= 0)
	{
		cli_plan_args_free(&args);
		return rc;
	}
	cli_catch_stop();
	ro.batch_transactions = args.batch;
	ro.chunk_rows = args.chunk_rows;
	ro.json = args.common.json;
	ro.terminal = !ro.json && isatty(STDERR_FILENO) && log_get_level() <= LOG_LEVEL_INFO;
	ro.rate = args.rate;
	ro.jobs = args.jobs;
	ro.limits = args.limits;
	ro.cutover_manual = args.cutover_manual;
	ro.skip_verify = args.skip_verify;
	ro.report_path = args.report_path;
	report_init(&rep, args.schema, args.table);
	ro.report = &rep;
	ro.cutover = args.cutover;
	ro.progress_seconds = 10;
	ro.max_reconnects = 10;
	ro.stop = &stop_requested;
	switch (run_migration(args.common.dbname, args.schema, args.table, &args.o, &ro))
	{
		case RUN_DONE:
			rc = EXIT_OK;
			break;
		case RUN_STOPPED:
			rc = EXIT_STOPPED;
			break;
		case RUN_BLOCKED:
			rc = EXIT_BLOCKED;
			break;
		case RUN_DIFFERENT:
			rc = EXIT_DIFFERENT;
			break;
		case RUN_USAGE:
			rc = EXIT_USAGE;
			break;
		case RUN_FAILED:
			rc = EXIT_FAIL;
			break;
	}
	report_free(&rep);
	ident_free_keywords();
	cli_plan_args_free(&args);
	return rc;
}

static int
cli_status(int argc, char **argv)
{
	static const struct option options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"table", required_argument, NULL, 't'},
		{"json", no_argument, NULL, OPT_JSON},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	cli_common common = {0};
	char	   *schema = NULL, *table = NULL;
	char		err[256];
	db			d = {0};
	bool		found = false;
	int			rc = EXIT_FAIL;
	int			c;

	while ((c = getopt_long(argc, argv, "d:t:vqh", options, NULL)) != -1)
	{
		if (cli_common_option(c, &common))
			continue;
		if (c == OPT_JSON)
			common.json = true;
		else if (c == 'h')
		{
			fputs(status_help, stdout);
			return EXIT_OK;
		}
		else
			return cli_usage_error("status", "%s", "invalid option");
	}
	if (optind < argc)
		return cli_usage_error("status", "unexpected argument \"%s\"", argv[optind]);
	if (common.table != NULL &&
		!ident_parse_qualified(common.table, &schema, &table, err, sizeof(err)))
		return cli_usage_error("status", "invalid table name \"%s\": %s", common.table, err);
	if (db_connect(&d, common.dbname, "source") &&
		status_report(&d, schema, table, common.json, stdout, &found))
		rc = found ? EXIT_OK : EXIT_NOTHING;
	db_close(&d);
	ident_free_keywords();
	free(schema);
	free(table);
	return rc;
}

/* Parse a table option of verify; false after printing the usage error. */
static bool
cli_parse_table(const char *command, const char *option, const char *value, char **schema,
				char **table)
{
	char		err[256];

	if (value == NULL)
	{
		cli_usage_error(command, "no table given (%s)", option);
		return false;
	}
	if (!ident_parse_qualified(value, schema, table, err, sizeof(err)))
	{
		cli_usage_error(command, "invalid table name \"%s\" in %s: %s", value, option, err);
		return false;
	}
	return true;
}

static int
cli_verify_exit(verify_result r)
{
	return r == VERIFY_EQUAL ? EXIT_OK : r == VERIFY_DIFFERENT ? EXIT_DIFFERENT : EXIT_FAIL;
}

static int
cli_verify(int argc, char **argv)
{
	static const struct option options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"source", required_argument, NULL, OPT_SOURCE},
		{"target", required_argument, NULL, OPT_TARGET},
		{"target-dbname", required_argument, NULL, OPT_TARGET_DBNAME},
		{"key", required_argument, NULL, OPT_KEY},
		{"where", required_argument, NULL, OPT_WHERE},
		{"chunk-rows", required_argument, NULL, OPT_CHUNK_ROWS},
		{"max-differences", required_argument, NULL, OPT_MAX_DIFFERENCES},
		{"live", no_argument, NULL, OPT_LIVE},
		{"table", required_argument, NULL, 't'},
		{"json", no_argument, NULL, OPT_JSON},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	cli_common	common = {0};
	verify_options vo = {0};
	const char *source = NULL, *target = NULL, *key = NULL;
	char	   *names[4] = {NULL, NULL, NULL, NULL};
	bool		live = false;
	char		err[256];
	int			rc = EXIT_FAIL;
	int			c;

	vo.chunk_rows = 1000;
	vo.max_differences = 20;
	while ((c = getopt_long(argc, argv, "d:t:vqh", options, NULL)) != -1)
	{
		if (cli_common_option(c, &common))
			continue;
		switch (c)
		{
			case OPT_LIVE:
				live = true;
				break;
			case OPT_SOURCE:
				source = optarg;
				break;
			case OPT_TARGET:
				target = optarg;
				break;
			case OPT_TARGET_DBNAME:
				vo.target_conninfo = cli_conninfo_arg(optarg);
				break;
			case OPT_KEY:
				key = optarg;
				break;
			case OPT_WHERE:
				vo.where = optarg;
				break;
			case OPT_CHUNK_ROWS:
				if (!cli_parse_int(optarg, 1, 100000000, &vo.chunk_rows))
					return cli_usage_error("verify", "invalid --chunk-rows \"%s\": give a whole "
										   "number from 1 to 100000000", optarg);
				break;
			case OPT_MAX_DIFFERENCES:
				if (!cli_parse_int(optarg, 0, INT_MAX, &vo.max_differences))
					return cli_usage_error("verify", "invalid --max-differences \"%s\": give a "
										   "whole number, 0 or more", optarg);
				break;
			case OPT_JSON:
				common.json = true;
				break;
			case 'h':
				fputs(verify_help, stdout);
				return EXIT_OK;
			default:
				return cli_usage_error("verify", "%s", "invalid option");
		}
	}
	if (optind < argc)
		return cli_usage_error("verify", "unexpected argument \"%s\"", argv[optind]);
	if (live || common.table != NULL)
	{
		if (!live || source != NULL || target != NULL)
			return cli_usage_error("verify", "%s", "give either --live with -t TABLE, or "
								   "--source and --target");
		if (!cli_parse_table("verify", "-t/--table", common.table, &names[0], &names[1]))
			return EXIT_USAGE;
		rc = cli_verify_exit(livecheck_request(common.dbname, names[0], names[1], common.json,
												 stdout));
		goto cleanup;
	}
	if (!cli_parse_table("verify", "--source", source, &names[0], &names[1]) ||
		!cli_parse_table("verify", "--target", target, &names[2], &names[3]))
	{
		rc = EXIT_USAGE;
		goto cleanup;
	}
	if (key != NULL && !ident_parse_list(key, &vo.key, &vo.nkey, err, sizeof(err)))
	{
		rc = cli_usage_error("verify", "invalid --key \"%s\": %s", key, err);
		goto cleanup;
	}
	vo.source_conninfo = common.dbname;
	vo.source_schema = names[0];
	vo.source_table = names[1];
	vo.target_schema = names[2];
	vo.target_table = names[3];
	vo.json = common.json;
	vo.progress = isatty(STDERR_FILENO) && log_get_level() <= LOG_LEVEL_INFO;
	rc = cli_verify_exit(verify_tables(&vo, stdout));

cleanup:
	for (int i = 0; i < 4; i++)
		free(names[i]);
	for (int i = 0; i < vo.nkey; i++)
		free(vo.key[i]);
	free(vo.key);
	ident_free_keywords();
	return rc;
}

/*
 * Parse -d and -t (and -v, -q, -h) for a command that takes only a table.
 * Returns -1 to go on with *schema and *table set (the caller frees them),
 * or the exit status to return now.
 */
static int
cli_parse_table_command(const char *command, const char *help, int argc, char **argv,
						cli_common *common, char **schema, char **table)
{
	static const struct option options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"table", required_argument, NULL, 't'},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	int			c;

	while ((c = getopt_long(argc, argv, "d:t:vqh", options, NULL)) != -1)
	{
		if (cli_common_option(c, common))
			continue;
		if (c == 'h')
		{
			fputs(help, stdout);
			return EXIT_OK;
		}
		return cli_usage_error(command, "%s", "invalid option");
	}
	if (optind < argc)
		return cli_usage_error(command, "unexpected argument \"%s\"", argv[optind]);
	return cli_parse_table(command, "-t/--table", common->table, schema, table) ? -1 : EXIT_USAGE;
}

static int
cli_cutover(int argc, char **argv)
{
	cli_common	common = {0};
	char	   *schema = NULL, *table = NULL;
	int			rc = cli_parse_table_command("cutover", cutover_help, argc, argv, &common,
											 &schema, &table);

	if (rc < 0)
		rc = cutover_request(common.dbname, schema, table) ? EXIT_OK : EXIT_FAIL;
	ident_free_keywords();
	free(schema);
	free(table);
	return rc;
}

/* pgrepart pause and pgrepart resume. */
static int
cli_set_paused(const char *command, const char *help, int argc, char **argv, bool pause)
{
	cli_common	common = {0};
	char	   *schema = NULL, *table = NULL;
	int			rc = cli_parse_table_command(command, help, argc, argv, &common, &schema, &table);

	if (rc < 0)
		rc = throttle_pause(common.dbname, schema, table, pause) ? EXIT_OK : EXIT_FAIL;
	ident_free_keywords();
	free(schema);
	free(table);
	return rc;
}

static int
cli_pause(int argc, char **argv)
{
	return cli_set_paused("pause", pause_help, argc, argv, true);
}

static int
cli_resume(int argc, char **argv)
{
	return cli_set_paused("resume", resume_help, argc, argv, false);
}

/* pgrepart revert and pgrepart finish. */
static int
cli_revert_or_finish(const char *command, const char *help, int argc, char **argv, bool revert)
{
	static const struct option options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"table", required_argument, NULL, 't'},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{"lock-timeout", required_argument, NULL, OPT_LOCK_TIMEOUT},
		{"max-lock-hold", required_argument, NULL, OPT_MAX_LOCK_HOLD},
		{"cutover-retries", required_argument, NULL, OPT_CUTOVER_RETRIES},
		{"partitioned-name", required_argument, NULL, OPT_PARTITIONED_NAME},
		{NULL, 0, NULL, 0}
	};
	cli_plan_args args;
	const char *partitioned_name = NULL;
	char	   *schema = NULL, *table = NULL;
	int			rc = -1;
	int			c;

	cli_plan_args_init(&args);
	while (rc < 0 && (c = getopt_long(argc, argv, "d:t:vqh", options, NULL)) != -1)
	{
		if (cli_common_option(c, &args.common))
			continue;
		if (c == 'h')
		{
			fputs(help, stdout);
			rc = EXIT_OK;
		}
		else if (revert && (c == OPT_LOCK_TIMEOUT || c == OPT_MAX_LOCK_HOLD || c == OPT_CUTOVER_RETRIES))
			rc = cli_run_option(c, &args);
		else if (revert && c == OPT_PARTITIONED_NAME)
		{
			if (strlen(optarg) == 0 || strlen(optarg) > IDENT_MAX_BYTES)
				rc = cli_usage_error(command, "invalid --partitioned-name \"%s\"", optarg);
			partitioned_name = optarg;
		}
		else
			rc = cli_usage_error(command, "%s", "invalid option");
	}
	if (rc < 0 && optind < argc)
		rc = cli_usage_error(command, "unexpected argument \"%s\"", argv[optind]);
	if (rc < 0 && !cli_parse_table(command, "-t/--table", args.common.table, &schema, &table))
		rc = EXIT_USAGE;
	if (rc < 0)
	{
		cli_catch_stop();
		rc = revert_command(args.common.dbname, schema, table, &args.cutover, partitioned_name,
							&stop_requested, revert);
	}
	ident_free_keywords();
	cli_plan_args_free(&args);
	free(schema);
	free(table);
	return rc;
}

static int
cli_revert(int argc, char **argv)
{
	return cli_revert_or_finish("revert", revert_help, argc, argv, true);
}

static int
cli_finish(int argc, char **argv)
{
	return cli_revert_or_finish("finish", finish_help, argc, argv, false);
}

static int
cli_abort(int argc, char **argv)
{
	cli_common	common = {0};
	char	   *schema = NULL, *table = NULL;
	int			rc = cli_parse_table_command("abort", abort_help, argc, argv, &common,
											 &schema, &table);

	if (rc < 0)
		rc = cutover_abort(common.dbname, schema, table);
	ident_free_keywords();
	free(schema);
	free(table);
	return rc;
}

static int
cli_partitions(int argc, char **argv)
{
	static const struct option options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"table", required_argument, NULL, 't'},
		{"ahead", required_argument, NULL, OPT_PREMAKE},
		{"interval", required_argument, NULL, OPT_INTERVAL},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	cli_common	common = {0};
	const char *interval = NULL;
	char	   *schema = NULL, *table = NULL;
	int			ahead = 4, created = 0;
	db			d = {0};
	int			rc = EXIT_FAIL;
	int			c;

	while ((c = getopt_long(argc, argv, "d:t:vqh", options, NULL)) != -1)
	{
		if (cli_common_option(c, &common))
			continue;
		if (c == OPT_PREMAKE)
		{
			if (!cli_parse_int(optarg, 0, 1000, &ahead))
				return cli_usage_error("partitions", "invalid --ahead \"%s\": give a whole number "
									   "from 0 to 1000", optarg);
		}
		else if (c == OPT_INTERVAL)
			interval = optarg;
		else if (c == 'h')
		{
			fputs(partitions_help, stdout);
			return EXIT_OK;
		}
		else
			return cli_usage_error("partitions", "%s", "invalid option");
	}
	if (optind < argc)
		return cli_usage_error("partitions", "unexpected argument \"%s\"", argv[optind]);
	if (!cli_parse_table("partitions", "-t/--table", common.table, &schema, &table))
		return EXIT_USAGE;
	if (db_connect(&d, common.dbname, "source") &&
		partition_ahead(&d, schema, table, interval, ahead, &created))
	{
		if (created == 0)
			log_info("no partition needed: every value up to %d widths ahead is covered", ahead);
		rc = EXIT_OK;
	}
	db_close(&d);
	ident_free_keywords();
	free(schema);
	free(table);
	return rc;
}

int
cli_main(int argc, char **argv)
{
	if (argc < 2)
	{
		cli_usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
		strcmp(argv[1], "help") == 0)
	{
		if (argc > 2)
		{
			for (size_t i = 0; i < NCOMMANDS; i++)
				if (strcmp(commands[i].name, argv[2]) == 0)
				{
					fputs(commands[i].help, stdout);
					return EXIT_OK;
				}
		}
		cli_usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0)
	{
		printf("pgrepart %s\n", PGREPART_VERSION);
		return EXIT_OK;
	}
	for (size_t i = 0; i < NCOMMANDS; i++)
	{
		if (strcmp(commands[i].name, argv[1]) == 0)
		{
			/* The command sees its own name as argv[0], as getopt expects. */
			return commands[i].run(argc - 1, argv + 1);
		}
	}
	return cli_usage_error(NULL, "unknown command \"%s\"", argv[1]);
}
