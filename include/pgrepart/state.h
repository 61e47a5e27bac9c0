/*
 * state.h: a migration's durable state, in schema "pgrepart" of the source
 * database, so a stopped or crashed run resumes where it was.
 *
 * pgrepart.migration holds one row per table being migrated: its names
 * (shadow, slot, publication, origin) and its phase.  pgrepart.statement
 * holds the shadow DDL the plan decided, by phase, so a resumed run builds
 * exactly what the first one planned.  Slot and origin names carry the
 * database's OID, since both are cluster-wide.
 */
#ifndef PGREPART_STATE_H
#define PGREPART_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "pgrepart/buf.h"
#include "pgrepart/catalog.h"
#include "pgrepart/db.h"
#include "pgrepart/lsn.h"
#include "pgrepart/plan.h"

/* A migration's phases, in order; stored by name (state_phase_name). */
typedef enum state_phase
{
	STATE_NEW,					/* recorded; seen only inside the transaction that prepares */
	STATE_PREPARED,				/* publication and shadow table exist */
	STATE_COPYING,				/* slot exists; chunks are being copied */
	STATE_COPIED,				/* every row copied (chunks, or under the slot's snapshot) */
	STATE_INDEXED,				/* keys and indexes built */
	STATE_STREAMING,			/* changes applied from the slot */
	STATE_SYNCED,				/* consistent: unique constraints built; still streaming */
	STATE_DONE					/* swapped in; slot, publication and origin dropped */
} state_phase;

/* "prepared", "copying", ...: as pgrepart.migration.phase holds it. */
const char *state_phase_name(state_phase phase);

typedef enum state_home
{
	STATE_HOME_HERE,			/* this database of this cluster */
	STATE_HOME_DATABASE,		/* another database of this cluster */
	STATE_HOME_CLUSTER,			/* another cluster */
} state_home;

typedef struct state_migration
{
	int			id;
	char	   *schema;
	char	   *table;
	char	   *shadow;
	char	   *partition_column;
	char	   *interval;
	char	   *slot;
	char	   *publication;
	char	   *origin;
	state_phase phase;
	lsn_t		consistent_lsn; /* the slot's consistent point, once copied */
	uint64_t	next_xid;		/* the next xid read right after the slot's creation */
	bool		physical;		/* the copy goes in physical order (plan.h) */
	/*
	 * Where the migration belongs, when not here: its row was copied with
	 * the database (CREATE DATABASE ... TEMPLATE, pg_dump), and its slot and
	 * origin, named cluster-wide, are the original's.
	 */
	state_home	home;
	char	   *home_database;	/* STATE_HOME_DATABASE: its name, NULL if gone */
	char	   *home_system;	/* STATE_HOME_CLUSTER: the original's system identifier */
} state_migration;

/*
 * One copied chunk (pgrepart.chunk): the key range (previous chunk's hi_key,
 * hi_key], copied under snapshot; lsn is the WAL insert position read by
 * the statement that took the snapshot.  hi_key is NULL for the last, open-ended chunk; it holds the key's
 * binary values, each as a 4-byte big-endian length and the bytes.
 */
typedef struct state_chunk
{
	int			ord;
	uint8_t    *hi_key;			/* owned; NULL: open-ended */
	size_t		hi_key_len;
	char	   *snapshot;		/* pg_current_snapshot() text; owned */
	lsn_t		lsn;
	int64_t		rows;
	uint32_t	filenode;		/* in physical order: the table's file the chunk read; else 0 */
} state_chunk;

/*
 * Three columns of a pgrepart.migration row "m": its home as a state_home
 * (the cluster told by system identifier, the database by OID, or for rows
 * older than those columns by the OID in the slot's name), the name of its
 * home database on this cluster, and its cluster's system identifier.
 */
#define STATE_HOME_COLUMNS \
	"  CASE WHEN m.system_identifier <> (SELECT c.system_identifier::pg_catalog.text " \
	"         FROM pg_catalog.pg_control_system() c) THEN 2 " \
	"       WHEN COALESCE(m.database_oid, pg_catalog.substring(m.slot_name::pg_catalog.text, " \
	"         '^pgrepart_([0-9]+)_')::pg_catalog.oid) IS DISTINCT FROM (SELECT d.oid " \
	"         FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()) THEN 1 " \
	"       ELSE 0 END, " \
	"  (SELECT d.datname::pg_catalog.text FROM pg_catalog.pg_database d WHERE d.oid = " \
	"    COALESCE(m.database_oid, pg_catalog.substring(m.slot_name::pg_catalog.text, " \
	"      '^pgrepart_([0-9]+)_')::pg_catalog.oid)), m.system_identifier "

/*
 * Create schema pgrepart and its tables where missing, and add the columns
 * later versions added; in the caller's transaction, which holds a lock
 * against concurrent creations until it ends.
 */
bool		state_ensure(db *d);
/*
 * Where pgrepart's tables exist, bring them up to this version's columns,
 * in a transaction of its own; where they do not, nothing (and nothing is
 * created).  Once per command, before state_find.
 */
bool		state_upgrade(db *d);
/*
 * The migration of schema.table, or *out = NULL when there is none (also
 * when no migration was ever recorded here).
 */
bool		state_find(db *d, const char *schema, const char *table, state_migration **out);
/* Record a new migration from a plan, with its DDL; in the caller's transaction. */
bool		state_create(db *d, const plan *p, state_migration **out);
/* Move to phase (and record lsn when valid); in the caller's transaction. */
bool		state_set_phase(db *d, state_migration *m, state_phase phase, lsn_t lsn);
/* Run the recorded DDL of one plan phase. */
/*
 * Run the recorded DDL of a phase.  With tick, statements run
 * asynchronously and tick is called about every 100 ms while one runs (the
 * spooler reads the stream meanwhile); a tick returning false fails the
 * call once the statement is done.
 */
bool		state_run_statements(db *d, const state_migration *m, plan_phase phase,
								 bool (*tick) (void *arg), void *arg);
void		state_migration_free(state_migration *m);

/*
 * Connect to the source, read the table schema.table (schema NULL: the
 * search path) and its migration (*m NULL when there is none): what every
 * command about a migration starts with.  False after logging.
 */
bool		state_open(db *d, const char *conninfo, const char *schema, const char *table,
					   catalog_table **t, state_migration **m);

/*
 * Whether the migration may act here: its row was not copied from another
 * database or cluster, and its slot, once the copy has begun, is on this
 * server (a physical copy, pg_basebackup or a promoted standby, has the
 * rows but not the slot).  Logs why not, and what to do, when false.
 */
bool		state_check_home(db *d, const state_migration *m);

/*
 * Whether the migration's slot exists in this database (exists may be
 * NULL) and a run is consuming it.
 */
bool		state_slot_active(db *d, const state_migration *m, bool *exists, bool *active);
/* The same of the slot named slot (a migration's reverse slot, revert.h). */
bool		state_named_slot_active(db *d, const char *slot, bool *exists, bool *active);
/* The WAL m's slot retains (0 before it reserves any); *exists when it is on the server. */
bool		state_slot_retained(db *d, const state_migration *m, bool *exists, int64_t *bytes);

/*
 * For a command waiting on the run: *gone once no run has consumed the slot
 * for STATE_RUN_AWAY_US (a run reconnecting is away for less).  Call it in
 * the wait loop with *away_since starting at 0.
 */
#define STATE_RUN_AWAY_US INT64_C(60000000)
bool		state_run_gone(db *d, const state_migration *m, int64_t *away_since, bool *gone);

bool		state_set_next_xid(db *d, state_migration *m, uint64_t next_xid);
/*
 * The copy's cap in rows per second (0: none), in pgrepart.migration's
 * max_rows_per_second, which the copy reads before each chunk: an UPDATE of
 * it changes the rate of a running copy.
 */
bool		state_set_rate(db *d, const state_migration *m, int rows_per_second);
/* "pgrepart cutover" records a request; a run in --cutover=manual polls for it. */
bool		state_request_cutover(db *d, const state_migration *m);
bool		state_cutover_requested(db *d, const state_migration *m, bool *requested);
bool		state_read_rate(db *d, const state_migration *m, int *rows_per_second);

/*
 * "pgrepart pause" and "pgrepart resume": the run's copy and index build
 * wait while paused (throttle.h), its apply stops reading the stream.
 */
bool		state_set_paused(db *d, const state_migration *m, bool paused);
bool		state_paused(db *d, const state_migration *m, bool *paused);

/*
 * Whether a read of m's own row found it; if not, someone removed the
 * migration under the run: logs so and returns false.
 */
bool		state_row_present(const PGresult *res, const state_migration *m);
/* Record a chunk; in the caller's transaction (the one that loaded its rows). */
bool		state_add_chunk(db *d, const state_migration *m, const state_chunk *c);
/* The migration's chunks in order; *chunks (and its members) the caller frees. */
bool		state_read_chunks(db *d, const state_migration *m, state_chunk **chunks, int *count);
void		state_chunks_free(state_chunk *chunks, int count);
bool		state_drop_chunks(db *d, const state_migration *m);

/*
 * Ghosts (pgrepart.ghost): keys of rows the stream moved to a new key whose
 * unchanged TOASTed values could no longer be read, because the source had
 * removed the row again; see backfill_filter.h.  Read them, each key in
 * backfill_encode_key's form, into *keys (the caller frees each and the
 * array); state_ghost_sql gives the statement that records a change, with
 * $1 the migration id and $2 the key (none for STATE_GHOST_CLEAR), to run
 * in the transaction of the apply that decided it.
 */
typedef enum state_ghost_change
{
	STATE_GHOST_ADD,
	STATE_GHOST_REMOVE,
	STATE_GHOST_CLEAR
} state_ghost_change;

bool		state_read_ghosts(db *d, const state_migration *m, buf **keys, int *count);
const char *state_ghost_sql(state_ghost_change change);

/*
 * Live verifications (pgrepart.verification): "pgrepart verify --live"
 * records a request; the run streaming the migration takes the oldest
 * unfinished one, compares at a consistent point and records the result.
 */
typedef enum verify_outcome
{
	VERIFY_OUTCOME_EQUAL = 0,
	VERIFY_OUTCOME_DIFFERENT = 1,
	VERIFY_OUTCOME_FAILED = 2	/* could not compare: the text says why */
} verify_outcome;

typedef struct state_verification
{
	bool		finished;
	verify_outcome outcome;
	lsn_t		at;				/* the consistent point compared at */
	char	   *text;			/* the report, for people and as JSON; owned */
	char	   *json;
} state_verification;

bool		state_request_verification(db *d, const state_migration *m, int64_t *id);
/* The oldest unfinished request of the migration, *id = 0 when none. */
bool		state_pending_verification(db *d, const state_migration *m, int64_t *id);
bool		state_finish_verification(db *d, int64_t id, lsn_t at, verify_outcome outcome,
									  const char *text, const char *json);
bool		state_read_verification(db *d, int64_t id, state_verification *out);
void		state_verification_free(state_verification *v);

#endif
