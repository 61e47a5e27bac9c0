/*
 * pgout.h: a decoder for the pgoutput logical replication protocol
 * (proto_version 1, as PostgreSQL 15 sends it with binary 'true').
 *
 * pgout_decode reads one message (the payload of one XLogData frame) with a
 * bounds-checked reader: every message type has its own reader, every
 * length is checked before use, tuple markers are checked, and trailing
 * bytes, unknown types or short input are errors that name the offset.  It
 * never crashes and never skips silently.
 *
 * A decoded message points into the input buffer and into the decoder's
 * scratch arrays: it stays valid until the next pgout_decode on the same
 * decoder or until the buffer is freed.  pgout_relation_copy makes a
 * Relation message into an owned pgout_relation for the relation cache.
 *
 * Layouts: docs/design.md ("Stream and apply") and PostgreSQL's
 * protocol-logicalrep-message-formats documentation.
 */
#ifndef PGREPART_PGOUT_H
#define PGREPART_PGOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pgout_kind
{
	PGOUT_BEGIN = 'B',
	PGOUT_COMMIT = 'C',
	PGOUT_ORIGIN = 'O',
	PGOUT_RELATION = 'R',
	PGOUT_TYPE = 'Y',
	PGOUT_INSERT = 'I',
	PGOUT_UPDATE = 'U',
	PGOUT_DELETE = 'D',
	PGOUT_TRUNCATE = 'T',
	PGOUT_MESSAGE = 'M'
} pgout_kind;

/* One column value of a tuple. */
typedef struct pgout_value
{
	char		kind;			/* 'n' null, 'u' unchanged TOAST, 't' text, 'b' binary */
	uint32_t	len;			/* 't' and 'b' only */
	const uint8_t *data;		/* 't' and 'b' only; not NUL-terminated */
} pgout_value;

typedef struct pgout_tuple
{
	int			ncols;
	pgout_value *values;
} pgout_tuple;

typedef struct pgout_column
{
	bool		is_key;			/* part of the replica identity */
	const char *name;
	uint32_t	type_oid;
	int32_t		typmod;
} pgout_column;

#define PGOUT_TRUNCATE_CASCADE 1
#define PGOUT_TRUNCATE_RESTART_IDENTITY 2

typedef struct pgout_message
{
	pgout_kind	kind;
	union
	{
		struct
		{
			uint64_t	final_lsn;
			int64_t		commit_time;	/* microseconds since 2000-01-01 */
			uint32_t	xid;
		}			begin;
		struct
		{
			uint8_t		flags;
			uint64_t	commit_lsn;
			uint64_t	end_lsn;
			int64_t		commit_time;
		}			commit;
		struct
		{
			uint64_t	lsn;
			const char *name;
		}			origin;
		struct
		{
			uint32_t	relid;
			const char *nspname;
			const char *relname;
			char		replident;
			int			ncols;
			pgout_column *columns;
		}			relation;
		struct
		{
			uint32_t	oid;
			const char *nspname;
			const char *typname;
		}			type;
		struct
		{
			uint32_t	relid;
			pgout_tuple newtuple;
		}			insert;
		struct
		{
			uint32_t	relid;
			char		oldkind;	/* 'K' key, 'O' old row, '\0' none */
			pgout_tuple oldtuple;
			pgout_tuple newtuple;
		}			update;
		struct
		{
			uint32_t	relid;
			char		oldkind;	/* 'K' or 'O' */
			pgout_tuple oldtuple;
		}			delete;
		struct
		{
			int			nrels;
			uint8_t		options;
			uint32_t   *relids;
		}			truncate;
		struct
		{
			uint8_t		flags;	/* 1 = transactional */
			uint64_t	lsn;
			const char *prefix;
			uint32_t	len;
			const uint8_t *content;
		}			message;
	};
} pgout_message;

typedef struct pgout_decoder
{
	pgout_value *values[2];		/* scratch for the old and new tuple */
	int			values_cap[2];
	pgout_column *columns;
	int			columns_cap;
	uint32_t   *relids;
	int			relids_cap;
	char		error[160];		/* why the last pgout_decode failed */
} pgout_decoder;

/* An owned copy of a Relation message, for the relation cache. */
typedef struct pgout_relation
{
	uint32_t	relid;
	char	   *nspname;
	char	   *relname;
	char		replident;
	int			ncols;
	struct
	{
		bool		is_key;
		char	   *name;
		uint32_t	type_oid;
		int32_t		typmod;
	}		   *columns;
} pgout_relation;

void		pgout_decoder_init(pgout_decoder *dec);
void		pgout_decoder_free(pgout_decoder *dec);

/* Decode one message; false with dec->error set ("... at offset N"). */
bool		pgout_decode(pgout_decoder *dec, const uint8_t *data, size_t len, pgout_message *out);

const char *pgout_kind_name(pgout_kind kind);

pgout_relation *pgout_relation_copy(const pgout_message *msg);
void		pgout_relation_free(pgout_relation *rel);

#endif
