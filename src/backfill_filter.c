/* backfill_filter.c: the visibility rule on the change stream; see backfill_filter.h. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "pgrepart/backfill.h"
#include "pgrepart/backfill_filter.h"
#include "pgrepart/ident.h"
#include "pgrepart/keyset.h"
#include "pgrepart/log.h"
#include "pgrepart/mem.h"
#include "pgrepart/reconcile.h"
#include "pgrepart/visibility.h"
#include "pgrepart/wire.h"

/* A message ends one ghost and begins another at most (or ends them all). */
#define GHOST_CHANGES_MAX 2

typedef struct filter_chunk
{
	visibility_snapshot snapshot;
	uint8_t    *hi_blob;		/* owned; NULL: open-ended */
	const uint8_t **hi;			/* key values, pointing into hi_blob */
	uint32_t   *hi_lens;
} filter_chunk;

/*
 * One key the lookahead asked about: its side of a chunk's upper key; or,
 * after a copy in physical order, whether the change at (lsn, ord) is the
 * key's first among those reconciled.
 */
typedef struct filter_answer
{
	int			chunk;
	size_t		key_at;			/* in look_keys */
	uint32_t	key_len;
	uint64_t	hash;
	lsn_t		lsn;
	int32_t		ord;
	bool		above;			/* or: first */
	/*
	 * In physical order, an update with unchanged TOASTed values: its new
	 * key (in look_keys; length 0: none) and, once a first change's row is
	 * read, its row in the prefetch (-1: the source has no such row; -2:
	 * not read).
	 */
	size_t		fetch_at;
	uint32_t	fetch_len;
	int			fetched_row;
} filter_answer;

struct backfill_filter
{
	db		   *source;
	char	   *qtable;
	int			nkeys;
	char	  **key_names;		/* owned copies */
	Oid		   *key_types;
	filter_chunk *chunks;
	int			nchunks;
	/*
	 * For a key the client cannot order (text under a collation, numeric,
	 * ...): "SELECT (key) > (hi)", asked of the source in the columns' own
	 * types and collations.
	 */
	bool		server_order;
	buf			above_sql;

	/*
	 * The lookahead (server order only): the messages of a read of the
	 * spool are looked at before they are decided, and the keys they will
	 * need placed are asked of the source in one query; the answers serve
	 * until the next read's lookahead begins.
	 */
	pgout_decoder look_dec;
	int		   *look_key_pos;
	int			look_boundary;	/* of the transaction being looked at; -1: none needed */
	int32_t		look_ord;		/* physical order: the next change's number in it */
	buf			look_keys;		/* the keys asked about, in backfill_encode_key's form */
	filter_answer *answers;
	int			nanswers;
	int			answers_cap;
	int		   *slots;			/* a hash table of answers, -1 free */
	int			nslots;
	bool		answered;		/* the answers are in; the next look starts afresh */
	Oid		   *key_array_types;
	buf			look_sql;
	buf			probe;			/* scratch: the key looked up */
	lsn_t		retire_lsn;		/* after every chunk's WAL position: no snapshot sees it */
	bool		retired;

	/*
	 * After a copy in physical order (reconcile.h): whether a change is its
	 * key's first among those reconciled, asked of pgrepart.reconcile_<id>
	 * for one key or, by the lookahead, for a read's.  Changes are numbered
	 * in their transaction as reconcile.c numbers them.
	 */
	bool		physical;
	buf			first_sql;
	buf			look_first_sql;
	lsn_t		look_commit;
	/*
	 * The rows a read's first updates need their unchanged TOASTed values
	 * from, read from the source in one query once the read is looked at
	 * (by the columns of the Relation message the lookahead saw last).
	 */
	buf			look_columns;
	PGresult   *prefetched;

	/* The source transaction being read. */
	lsn_t		commit;
	uint32_t	xid;
	int32_t		ord;			/* the next change's number in it */
	int32_t		change_ord;		/* the change being decided's */
	int			boundary;		/* the first chunk whose snapshot sees it, or nchunks */
	bool		filtering;		/* it committed before retire_lsn */

	/* The relation, from its latest Relation message. */
	int			ncols;
	int		   *key_pos;		/* each key column's position in the relation */
	buf			fetch_sql;		/* all columns by key, for unchanged TOASTed values */

	/* Scratch: keys of the change, and the rewritten message's tuple. */
	const uint8_t **key[2];
	uint32_t   *key_lens[2];
	pgout_value *values;
	PGresult   *fetched;

	/*
	 * Ghosts (see backfill_filter.h), each key in backfill_encode_key's
	 * form, and the changes to them the last message made, which the caller
	 * records in the apply's transaction.
	 */
	buf		   *ghosts;
	int			nghosts;
	buf			ghost_key;		/* scratch: the key looked up */
	struct
	{
		state_ghost_change change;
		buf			key;
	}			ghost_changes[GHOST_CHANGES_MAX];
	int			nghost_changes;
	int			ghost_changes_taken;
};

/*
 * "(K1::type COLLATE c, ...) > (H1::type, ...)": a key against a chunk's
 * upper key in the key columns' types and collations, each operand named
 * by a prefix and a number counting from key_from or hi_from.
 */
static void
filter_compare_sql(buf *out, const catalog_table *t, const char *key, int key_from,
				   const char *hi, int hi_from)
{
	buf_append(out, "(");
	for (int k = 0; k < t->nkey_columns; k++)
	{
		const catalog_column *c = catalog_find_column(t, t->key_columns[k]);

		buf_appendf(out, "%s%s%d::%s", k > 0 ? ", " : "", key, key_from + k, c->type);
		catalog_append_collate(out, c);
	}
	buf_append(out, ") > (");
	for (int k = 0; k < t->nkey_columns; k++)
		buf_appendf(out, "%s%s%d::%s", k > 0 ? ", " : "", hi, hi_from + k,
					catalog_find_column(t, t->key_columns[k])->type);
	buf_append(out, ")");
}

/*
 * The source's answers for keys the client cannot order: one key and one
 * upper key as parameters, and the lookahead's arrays of them, pair by pair.
 */
static void
filter_above_sql(backfill_filter *f, const catalog_table *t)
{
	buf_append(&f->above_sql, "SELECT ");
	filter_compare_sql(&f->above_sql, t, "$", 1, "$", f->nkeys + 1);
	buf_append(&f->look_sql, "SELECT ");
	filter_compare_sql(&f->look_sql, t, "u.k", 1, "u.h", 1);
	buf_append(&f->look_sql, " FROM ROWS FROM (");
	for (int i = 0; i < 2 * f->nkeys; i++)
		buf_appendf(&f->look_sql, "%spg_catalog.unnest($%d)", i > 0 ? ", " : "", i + 1);
	buf_append(&f->look_sql, ") WITH ORDINALITY AS u(");
	for (int k = 0; k < f->nkeys; k++)
		buf_appendf(&f->look_sql, "k%d, ", k + 1);
	for (int k = 0; k < f->nkeys; k++)
		buf_appendf(&f->look_sql, "h%d, ", k + 1);
	buf_append(&f->look_sql, "ord) ORDER BY u.ord");
}

/*
 * Whether a change, at (commit position, number), is the first recorded for
 * its key: for one key as parameters, and the lookahead's arrays of them.
 */
static void
filter_first_sql(backfill_filter *f, const state_migration *m, const catalog_table *t)
{
	buf			cond;

	buf_init(&cond);
	buf_append(&cond, "NOT EXISTS (SELECT FROM ");
	reconcile_table(&cond, m);
	buf_append(&cond, " r WHERE (");
	reconcile_key_list(&cond, t, "r.");
	buf_append(&cond, ") = (");
	buf_append(&f->first_sql, "SELECT ");
	buf_append_len(&f->first_sql, cond.data, cond.len);
	buf_append(&f->look_first_sql, "SELECT ");
	buf_append_len(&f->look_first_sql, cond.data, cond.len);
	for (int k = 0; k < t->nkey_columns; k++)
	{
		buf_appendf(&f->first_sql, "%s$%d::%s", k > 0 ? ", " : "", k + 1,
					catalog_find_column(t, t->key_columns[k])->type);
		buf_appendf(&f->look_first_sql, "%su.k%d", k > 0 ? ", " : "", k + 1);
	}
	buf_appendf(&f->first_sql, ") AND (r.commit_lsn, r.ord) < ($%d::pg_catalog.pg_lsn, "
				"$%d::pg_catalog.int4))", t->nkey_columns + 1, t->nkey_columns + 2);
	buf_append(&f->look_first_sql, ") AND (r.commit_lsn, r.ord) < (u.l, u.o)) FROM ROWS FROM (");
	for (int i = 0; i < t->nkey_columns + 2; i++)
		buf_appendf(&f->look_first_sql, "%spg_catalog.unnest($%d)", i > 0 ? ", " : "", i + 1);
	buf_append(&f->look_first_sql, ") WITH ORDINALITY AS u(");
	for (int k = 0; k < t->nkey_columns; k++)
		buf_appendf(&f->look_first_sql, "k%d, ", k + 1);
	buf_append(&f->look_first_sql, "l, o, ord) ORDER BY u.ord");
	buf_free(&cond);
}

backfill_filter *
backfill_filter_create(db *source, const state_migration *m, const catalog_table *t)
{
	backfill_filter *f = xcalloc(1, sizeof(*f));
	state_chunk *chunks = NULL;
	int			n = 0;

	f->source = source;
	f->qtable = ident_qualified(m->schema, m->table);
	buf_init(&f->fetch_sql);
	buf_init(&f->above_sql);
	buf_init(&f->look_sql);
	buf_init(&f->look_keys);
	buf_init(&f->probe);
	buf_init(&f->first_sql);
	buf_init(&f->look_first_sql);
	buf_init(&f->look_columns);
	f->physical = m->physical;
	pgout_decoder_init(&f->look_dec);
	f->look_boundary = -1;
	f->nkeys = t->nkey_columns;
	f->key_names = xcalloc((size_t) f->nkeys, sizeof(char *));
	f->key_types = xcalloc((size_t) f->nkeys, sizeof(Oid));
	f->key_pos = xcalloc((size_t) f->nkeys, sizeof(int));
	for (int i = 0; i < 2; i++)
	{
		f->key[i] = xcalloc((size_t) f->nkeys, sizeof(uint8_t *));
		f->key_lens[i] = xcalloc((size_t) f->nkeys, sizeof(uint32_t));
	}
	for (int k = 0; k < f->nkeys; k++)
	{
		const catalog_column *c = catalog_find_column(t, t->key_columns[k]);

		f->key_names[k] = xstrdup(t->key_columns[k]);
		f->key_types[k] = c ? c->base_type : InvalidOid;
		f->key_pos[k] = -1;
		f->server_order = f->server_order || !visibility_orderable_type(f->key_types[k]);
	}
	f->look_key_pos = xcalloc((size_t) f->nkeys, sizeof(int));
	/* In physical order no key is placed among the chunks. */
	if (f->physical)
	{
		f->server_order = false;
		filter_first_sql(f, m, t);
	}
	if (f->server_order || f->physical)
	{
		bool	   *compressible = NULL;

		if (f->server_order)
			filter_above_sql(f, t);
		if (!catalog_array_types(source, f->key_types, f->nkeys, &f->key_array_types, &compressible))
		{
			backfill_filter_free(f);
			return NULL;
		}
		free(compressible);
	}
	buf_init(&f->ghost_key);
	for (int i = 0; i < GHOST_CHANGES_MAX; i++)
		buf_init(&f->ghost_changes[i].key);
	if (!state_read_chunks(source, m, &chunks, &n) ||
		!state_read_ghosts(source, m, &f->ghosts, &f->nghosts))
	{
		state_chunks_free(chunks, n);
		backfill_filter_free(f);
		return NULL;
	}
	f->chunks = xcalloc((size_t) n + 1, sizeof(filter_chunk));
	f->nchunks = n;
	f->retired = n == 0;
	for (int i = 0; i < n; i++)
	{
		filter_chunk *c = &f->chunks[i];

		if (!visibility_parse_snapshot(chunks[i].snapshot, &c->snapshot))
		{
			log_error("chunk %d has a malformed snapshot \"%s\"", i, chunks[i].snapshot);
			state_chunks_free(chunks, n);
			backfill_filter_free(f);
			return NULL;
		}
		if (chunks[i].lsn > f->retire_lsn)
			f->retire_lsn = chunks[i].lsn;
		/* In physical order a chunk's upper bound is a page, which no key is compared with. */
		if (chunks[i].hi_key == NULL || f->physical)
			continue;
		c->hi_blob = chunks[i].hi_key;
		chunks[i].hi_key = NULL;
		c->hi = xcalloc((size_t) f->nkeys, sizeof(uint8_t *));
		c->hi_lens = xcalloc((size_t) f->nkeys, sizeof(uint32_t));
		if (!backfill_decode_key(c->hi_blob, chunks[i].hi_key_len, f->nkeys, c->hi, c->hi_lens))
		{
			log_error("chunk %d has a malformed key", i);
			state_chunks_free(chunks, n);
			backfill_filter_free(f);
			return NULL;
		}
	}
	state_chunks_free(chunks, n);
	return f;
}

void
backfill_filter_free(backfill_filter *f)
{
	if (f == NULL)
		return;
	for (int i = 0; i < f->nchunks; i++)
	{
		visibility_snapshot_free(&f->chunks[i].snapshot);
		free(f->chunks[i].hi_blob);
		free(f->chunks[i].hi);
		free(f->chunks[i].hi_lens);
	}
	free(f->chunks);
	for (int k = 0; k < f->nkeys; k++)
		free(f->key_names[k]);
	free(f->key_names);
	free(f->key_types);
	free(f->key_pos);
	for (int i = 0; i < 2; i++)
	{
		free(f->key[i]);
		free(f->key_lens[i]);
	}
	free(f->values);
	PQclear(f->fetched);
	buf_free(&f->fetch_sql);
	buf_free(&f->above_sql);
	buf_free(&f->look_sql);
	buf_free(&f->look_keys);
	buf_free(&f->probe);
	buf_free(&f->first_sql);
	buf_free(&f->look_first_sql);
	buf_free(&f->look_columns);
	PQclear(f->prefetched);
	pgout_decoder_free(&f->look_dec);
	free(f->look_key_pos);
	free(f->answers);
	free(f->slots);
	free(f->key_array_types);
	for (int i = 0; i < f->nghosts; i++)
		buf_free(&f->ghosts[i]);
	free(f->ghosts);
	buf_free(&f->ghost_key);
	for (int i = 0; i < GHOST_CHANGES_MAX; i++)
		buf_free(&f->ghost_changes[i].key);
	free(f->qtable);
	free(f);
}

/* Where the key columns are in the relation, and the query that fetches a whole row. */
static bool
filter_relation(backfill_filter *f, const pgout_message *in)
{
	f->ncols = in->relation.ncols;
	free(f->values);
	f->values = xcalloc((size_t) f->ncols + 1, sizeof(pgout_value));
	buf_reset(&f->fetch_sql);
	buf_append(&f->fetch_sql, "SELECT ");
	for (int i = 0; i < f->ncols; i++)
	{
		if (i > 0)
			buf_append(&f->fetch_sql, ", ");
		ident_quote(&f->fetch_sql, in->relation.columns[i].name);
	}
	buf_appendf(&f->fetch_sql, " FROM %s WHERE ", f->qtable);
	for (int k = 0; k < f->nkeys; k++)
	{
		f->key_pos[k] = -1;
		for (int i = 0; i < f->ncols; i++)
			if (strcmp(in->relation.columns[i].name, f->key_names[k]) == 0)
				f->key_pos[k] = i;
		if (f->key_pos[k] < 0)
		{
			log_error("the stream's relation has no key column \"%s\"", f->key_names[k]);
			return false;
		}
		buf_appendf(&f->fetch_sql, "%s", k > 0 ? " AND " : "");
		ident_quote(&f->fetch_sql, f->key_names[k]);
		buf_appendf(&f->fetch_sql, " = $%d", k + 1);
	}
	return true;
}

/* The key of a tuple into f->key[which]. */
static bool
filter_key(backfill_filter *f, const pgout_tuple *t, int which)
{
	for (int k = 0; k < f->nkeys; k++)
	{
		const pgout_value *v;

		if (f->key_pos[k] < 0 || f->key_pos[k] >= t->ncols)
		{
			log_error("a change came before the Relation message of its table");
			return false;
		}
		v = &t->values[f->key_pos[k]];
		if (v->kind != 'b')
		{
			log_error("key column \"%s\" of a change is not a binary value", f->key_names[k]);
			return false;
		}
		f->key[which][k] = v->data;
		f->key_lens[which][k] = v->len;
	}
	return true;
}

/*
 * The first chunk whose snapshot sees the transaction f->xid, or nchunks.
 * Snapshots are taken in chunk order, and one that sees a committed
 * transaction is followed only by snapshots that see it too: the chunks
 * that see it are a suffix.
 */
static int
filter_boundary(const backfill_filter *f, uint32_t xid)
{
	int			lo = 0, hi = f->nchunks;

	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (visibility_visible(&f->chunks[mid].snapshot, xid))
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static uint64_t
filter_answer_hash(int chunk, const char *key, size_t len)
{
	return keyset_hash(key, len) ^ ((uint64_t) (chunk + 1) * UINT64_C(0x9E3779B97F4A7C15));
}

/* The lookahead's answer for the encoded key at chunk, or -1. */
static int
filter_answer_find(const backfill_filter *f, int chunk, const buf *key)
{
	uint64_t	h;

	if (f->nslots == 0)
		return -1;
	h = filter_answer_hash(chunk, key->data, key->len);
	for (size_t i = h & (size_t) (f->nslots - 1);; i = (i + 1) & (size_t) (f->nslots - 1))
	{
		const filter_answer *a;

		if (f->slots[i] < 0)
			return -1;
		a = &f->answers[f->slots[i]];
		if (a->hash == h && a->chunk == chunk && a->key_len == key->len &&
			memcmp(f->look_keys.data + a->key_at, key->data, key->len) == 0)
			return f->slots[i];
	}
}

/* A question's n binary parameters, the first of them f->key[which]. */
typedef struct filter_params
{
	const char **values;
	int		   *lens;
	Oid		   *types;
} filter_params;

static void
filter_params_init(filter_params *p, const backfill_filter *f, int which, int n)
{
	p->values = xcalloc((size_t) n, sizeof(char *));
	p->lens = xcalloc((size_t) n, sizeof(int));
	p->types = xcalloc((size_t) n, sizeof(Oid));
	for (int k = 0; k < f->nkeys; k++)
	{
		p->values[k] = (const char *) f->key[which][k];
		p->lens[k] = (int) f->key_lens[which][k];
		p->types[k] = f->key_types[k];
	}
}

/*
 * Ask the source a question of one boolean with the n parameters p (freed
 * here): 1 or 0, or -1 after logging.
 */
static int
filter_ask(backfill_filter *f, const char *sql, int n, filter_params *p, const char *what)
{
	int		   *formats = xcalloc((size_t) n, sizeof(int));
	PGresult   *res;
	int			answer = -1;

	for (int i = 0; i < n; i++)
		formats[i] = 1;
	res = PQexecParams(f->source->conn, sql, n, p->types, p->values, p->lens, formats, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		answer = PQgetvalue(res, 0, 0)[0] == 't';
	else
		db_log_error(f->source->conn, "source", what, res, f->source->sqlstate);
	PQclear(res);
	free(formats);
	free(p->values);
	free(p->lens);
	free(p->types);
	return answer;
}

/*
 * Whether f->key[which] lies above the upper key of chunk `chunk`, in the
 * server's order: 1 or 0, or -1 after logging.  Where the client cannot
 * order the key, the lookahead's answer, else a query of its own.
 */
static int
filter_above(backfill_filter *f, int which, int chunk)
{
	const filter_chunk *c = &f->chunks[chunk];
	filter_params p;
	int			n = 2 * f->nkeys, answer;

	if (!f->server_order)
		return visibility_compare_key(f->nkeys, f->key_types, f->key[which], f->key_lens[which],
									  c->hi, c->hi_lens) > 0;
	buf_reset(&f->probe);
	backfill_encode_key(&f->probe, f->nkeys, f->key[which], f->key_lens[which]);
	if ((answer = filter_answer_find(f, chunk, &f->probe)) >= 0)
		return f->answers[answer].above;
	filter_params_init(&p, f, which, n);
	for (int k = 0; k < f->nkeys; k++)
	{
		p.values[f->nkeys + k] = (const char *) c->hi[k];
		p.lens[f->nkeys + k] = (int) c->hi_lens[k];
		p.types[f->nkeys + k] = f->key_types[k];
	}
	return filter_ask(f, f->above_sql.data, n, &p, "place a key among the chunks");
}

/*
 * Whether the chunk holding f->key[which] already holds the transaction's
 * effect: 1 or 0, or -1 after logging.  Chunks before the boundary do not
 * see the transaction and the rest do, so the key's side of the upper key
 * of the chunk before the boundary decides.  After a copy in physical
 * order a key some chunks saw the transaction change is not in the shadow
 * (reconcile.h): 0.
 */
static int
filter_seen(backfill_filter *f, int which)
{
	if (f->boundary == 0)
		return 1;
	if (f->boundary == f->nchunks || f->physical)
		return 0;
	return filter_above(f, which, f->boundary - 1);
}

static bool
filter_same_key(const backfill_filter *f)
{
	for (int k = 0; k < f->nkeys; k++)
		if (f->key_lens[0][k] != f->key_lens[1][k] ||
			memcmp(f->key[0][k], f->key[1][k], f->key_lens[0][k]) != 0)
			return false;
	return true;
}

/* ---- the physical order ---- */

static filter_action filter_insert_moved(backfill_filter *f, const pgout_message *in,
										 pgout_message *out);

static uint64_t
filter_position_hash(lsn_t lsn, int32_t ord)
{
	return (lsn * UINT64_C(0x9E3779B97F4A7C15)) ^ ((uint64_t) (uint32_t) ord * UINT64_C(0xC2B2AE3D27D4EB4F));
}

/* The lookahead's answer for the change at (lsn, ord), or -1. */
static int
filter_first_find(const backfill_filter *f, lsn_t lsn, int32_t ord)
{
	uint64_t	h;

	if (f->nslots == 0)
		return -1;
	h = filter_position_hash(lsn, ord);
	for (size_t i = h & (size_t) (f->nslots - 1);; i = (i + 1) & (size_t) (f->nslots - 1))
	{
		const filter_answer *a;

		if (f->slots[i] < 0)
			return -1;
		a = &f->answers[f->slots[i]];
		if (a->hash == h && a->lsn == lsn && a->ord == ord)
			return f->slots[i];
	}
}

/*
 * Whether the change being decided is the first recorded for f->key[which]
 * (reconcile.h): 1 or 0, or -1 after logging.  The lookahead's answer, else
 * a query of its own.
 */
static int
filter_first(backfill_filter *f, int which)
{
	int			n = f->nkeys + 2;
	filter_params p;
	int			answer;
	buf			position;		/* the commit position, then the number: 8 and 4 bytes */

	if ((answer = filter_first_find(f, f->commit, f->change_ord)) >= 0)
		return f->answers[answer].above;
	filter_params_init(&p, f, which, n);
	buf_init(&position);
	wire_put_u64(&position, f->commit);
	wire_put_u32(&position, (uint32_t) f->change_ord);
	p.values[f->nkeys] = position.data;
	p.lens[f->nkeys] = 8;
	p.types[f->nkeys] = CATALOG_PG_LSNOID;
	p.values[f->nkeys + 1] = position.data + 8;
	p.lens[f->nkeys + 1] = 4;
	p.types[f->nkeys + 1] = CATALOG_INT4OID;
	answer = filter_ask(f, f->first_sql.data, n, &p, "look up a key to reconcile");
	buf_free(&position);
	return answer;
}

/*
 * A change after a copy in physical order (backfill_filter.h): by whether
 * every chunk, none, or some saw its transaction; for some, by whether it
 * is its key's first change among those the reconciliation recorded.
 */
static filter_action
filter_physical(backfill_filter *f, const pgout_message *in, pgout_message *out)
{
	const pgout_tuple *old;
	int			first;

	if (f->boundary == 0)
		return FILTER_SKIP;
	if (f->boundary == f->nchunks || in->kind == PGOUT_INSERT)
		return FILTER_APPLY;
	if (in->kind == PGOUT_DELETE)
		old = &in->delete.oldtuple;
	else
	{
		old = in->update.oldkind != '\0' ? &in->update.oldtuple : &in->update.newtuple;
		if (!filter_key(f, &in->update.newtuple, 1))
			return FILTER_FAILED;
	}
	if (!filter_key(f, old, 0) || (first = filter_first(f, 0)) < 0)
		return FILTER_FAILED;
	if (!first)
		return FILTER_APPLY;
	/* The row is not in the shadow: a delete has nothing to do, an update puts it in. */
	return in->kind == PGOUT_DELETE ? FILTER_SKIP : filter_insert_moved(f, in, out);
}

/* ---- ghosts ---- */

/* Note a ghost change for the caller to record. */
static void
filter_ghost_note(backfill_filter *f, state_ghost_change change, const buf *key)
{
	int			i = f->nghost_changes++;

	f->ghost_changes[i].change = change;
	buf_reset(&f->ghost_changes[i].key);
	if (key != NULL)
		buf_append_len(&f->ghost_changes[i].key, key->data, key->len);
}

/* The ghost whose key is f->key[which], or -1; the key is left in f->ghost_key. */
static int
filter_ghost_find(backfill_filter *f, int which)
{
	buf_reset(&f->ghost_key);
	backfill_encode_key(&f->ghost_key, f->nkeys, f->key[which], f->key_lens[which]);
	for (int i = 0; i < f->nghosts; i++)
		if (f->ghosts[i].len == f->ghost_key.len &&
			memcmp(f->ghosts[i].data, f->ghost_key.data, f->ghost_key.len) == 0)
			return i;
	return -1;
}

static void
filter_ghost_add(backfill_filter *f, int which)
{
	if (filter_ghost_find(f, which) >= 0)
		return;
	f->ghosts = xrealloc(f->ghosts, sizeof(buf) * (size_t) (f->nghosts + 1));
	buf_init(&f->ghosts[f->nghosts]);
	buf_append_len(&f->ghosts[f->nghosts], f->ghost_key.data, f->ghost_key.len);
	f->nghosts++;
	filter_ghost_note(f, STATE_GHOST_ADD, &f->ghost_key);
	log_info("a row that transaction %u moved to a new key is gone from the source again: "
			 "the changes of that key up to its removal are skipped", f->xid);
}

static void
filter_ghost_remove(backfill_filter *f, int at)
{
	filter_ghost_note(f, STATE_GHOST_REMOVE, &f->ghosts[at]);
	buf_free(&f->ghosts[at]);
	f->ghosts[at] = f->ghosts[--f->nghosts];
}

/* The row under f->key[1], read from the source into f->fetched, for its unchanged values. */
static bool
filter_fetch(backfill_filter *f)
{
	int		   *formats = xcalloc((size_t) f->nkeys, sizeof(int));
	int		   *lens = xcalloc((size_t) f->nkeys, sizeof(int));

	for (int k = 0; k < f->nkeys; k++)
	{
		formats[k] = 1;
		lens[k] = (int) f->key_lens[1][k];
	}
	PQclear(f->fetched);
	f->fetched = PQexecParams(f->source->conn, f->fetch_sql.data, f->nkeys, f->key_types,
							  (const char *const *) f->key[1], lens, formats, 1);
	free(formats);
	free(lens);
	if (PQresultStatus(f->fetched) != PGRES_TUPLES_OK)
	{
		db_log_error(f->source->conn, "source", "read a moved row's unchanged values",
					 f->fetched, f->source->sqlstate);
		return false;
	}
	return true;
}

/*
 * The row an update moved out of a chunk that saw it into one that did not:
 * insert its new version.  Unchanged TOASTed values are not in the stream;
 * they are read from the source by key (a newer value converges, since the
 * changes that made it follow in the stream).
 */
static filter_action
filter_insert_moved(backfill_filter *f, const pgout_message *in, pgout_message *out)
{
	const pgout_tuple *t = &in->update.newtuple;
	bool		needs_fetch = false;

	for (int i = 0; i < t->ncols && i < f->ncols; i++)
	{
		f->values[i] = t->values[i];
		needs_fetch |= t->values[i].kind == 'u';
	}
	if (needs_fetch)
	{
		int			answer = f->physical ? filter_first_find(f, f->commit, f->change_ord) : -1;
		const PGresult *rows;
		int			row, from = 0;

		if (answer >= 0 && f->answers[answer].fetched_row > -2)
		{
			/* Read ahead with the rest of the read (filter_prefetch). */
			rows = f->prefetched;
			row = f->answers[answer].fetched_row;
			from = 1;
		}
		else if (!filter_fetch(f))
			return FILTER_FAILED;
		else
		{
			rows = f->fetched;
			row = PQntuples(f->fetched) > 0 ? 0 : -1;
		}
		if (row < 0)
		{
			/*
			 * Gone since: a later change in the stream deletes the row or
			 * moves it to another key, and until then its changes have no
			 * row to go to.
			 */
			filter_ghost_add(f, 1);
			return FILTER_SKIP;
		}
		for (int i = 0; i < t->ncols && i < f->ncols; i++)
		{
			if (f->values[i].kind != 'u')
				continue;
			if (PQgetisnull(rows, row, from + i))
				f->values[i].kind = 'n';
			else
			{
				f->values[i].kind = 'b';
				f->values[i].data = (const uint8_t *) PQgetvalue(rows, row, from + i);
				f->values[i].len = (uint32_t) PQgetlength(rows, row, from + i);
			}
		}
	}
	memset(out, 0, sizeof(*out));
	out->kind = PGOUT_INSERT;
	out->insert.relid = in->update.relid;
	out->insert.newtuple.ncols = t->ncols;
	out->insert.newtuple.values = f->values;
	return FILTER_REWRITTEN;
}

/* A TRUNCATE is skipped when every chunk saw it, applied when none did. */
static filter_action
filter_truncate(const backfill_filter *f)
{
	int			seen = 0;

	for (int i = 0; i < f->nchunks; i++)
		seen += visibility_visible(&f->chunks[i].snapshot, f->xid);
	if (seen == f->nchunks)
		return FILTER_SKIP;
	if (seen > 0)
	{
		log_error("the table was truncated while it was being copied");
		log_hint("Abort the migration and start it again.");
		return FILTER_FAILED;
	}
	return FILTER_APPLY;
}

/* The rule for a change to one key (f->key[which]). */
static filter_action
filter_decide(backfill_filter *f, int which)
{
	int			seen = filter_seen(f, which);

	return seen < 0 ? FILTER_FAILED : seen ? FILTER_SKIP : FILTER_APPLY;
}

static filter_action
filter_update(backfill_filter *f, const pgout_message *in, pgout_message *out)
{
	int			seen_old, seen_new;

	if (!filter_key(f, &in->update.newtuple, 1))
		return FILTER_FAILED;
	if (in->update.oldkind == '\0')
		return filter_decide(f, 1);
	if (!filter_key(f, &in->update.oldtuple, 0))
		return FILTER_FAILED;
	seen_old = filter_seen(f, 0);
	seen_new = filter_seen(f, 1);
	if (seen_old < 0 || seen_new < 0)
		return FILTER_FAILED;
	if (filter_same_key(f) || seen_old == seen_new)
		return seen_new ? FILTER_SKIP : FILTER_APPLY;
	if (seen_old)
		return filter_insert_moved(f, in, out);
	/* Only the new key's chunk saw it: the old row is still in the shadow. */
	memset(out, 0, sizeof(*out));
	out->kind = PGOUT_DELETE;
	out->delete.relid = in->update.relid;
	out->delete.oldkind = in->update.oldkind;
	out->delete.oldtuple = in->update.oldtuple;
	return FILTER_REWRITTEN;
}

/*
 * A change to a ghost's key: an update of it goes nowhere, a delete removes
 * the ghost, and a move to another key removes it and puts the row in
 * under the new key as a moved row (unless the new key's chunk holds it).
 * *action is set when the change touches a ghost.
 */
static bool
filter_ghost_change(backfill_filter *f, const pgout_message *in, pgout_message *out,
					filter_action *action)
{
	const pgout_tuple *old = in->kind == PGOUT_DELETE ? &in->delete.oldtuple :
		in->update.oldkind != '\0' ? &in->update.oldtuple : &in->update.newtuple;
	int			at;

	if (!filter_key(f, old, 0))
	{
		*action = FILTER_FAILED;
		return true;
	}
	if ((at = filter_ghost_find(f, 0)) < 0)
		return false;
	*action = FILTER_SKIP;
	if (in->kind == PGOUT_DELETE)
		filter_ghost_remove(f, at);
	else if (in->update.oldkind != '\0')
	{
		if (!filter_key(f, &in->update.newtuple, 1))
			*action = FILTER_FAILED;
		else if (!filter_same_key(f))
		{
			int			seen = f->filtering ? filter_seen(f, 1) : 0;

			filter_ghost_remove(f, at);
			if (seen < 0)
				*action = FILTER_FAILED;
			else if (!seen)
				*action = filter_insert_moved(f, in, out);
		}
	}
	return true;
}

filter_action
backfill_filter_message(backfill_filter *f, const pgout_message *in, pgout_message *out)
{
	filter_action action;

	f->nghost_changes = 0;
	f->ghost_changes_taken = 0;
	/* Numbered as reconcile.c numbers them. */
	if (in->kind == PGOUT_INSERT || in->kind == PGOUT_UPDATE || in->kind == PGOUT_DELETE)
		f->change_ord = f->ord++;
	if (f->nghosts > 0 && (in->kind == PGOUT_UPDATE || in->kind == PGOUT_DELETE) &&
		filter_ghost_change(f, in, out, &action))
		return action;
	/* A TRUNCATE ends every ghost; so does an insert of its key (defensive: one comes first). */
	if (in->kind == PGOUT_TRUNCATE && f->nghosts > 0)
	{
		for (int i = 0; i < f->nghosts; i++)
			buf_free(&f->ghosts[i]);
		f->nghosts = 0;
		filter_ghost_note(f, STATE_GHOST_CLEAR, NULL);
	}
	if (in->kind == PGOUT_INSERT && f->nghosts > 0)
	{
		int			at;

		if (!filter_key(f, &in->insert.newtuple, 0))
			return FILTER_FAILED;
		if ((at = filter_ghost_find(f, 0)) >= 0)
			filter_ghost_remove(f, at);
	}
	switch (in->kind)
	{
		case PGOUT_RELATION:
			return filter_relation(f, in) ? FILTER_APPLY : FILTER_FAILED;
		case PGOUT_BEGIN:
			f->xid = in->begin.xid;
			f->commit = in->begin.final_lsn;
			f->ord = 0;
			/* A transaction committed after every chunk's WAL position: no chunk saw it. */
			if (!f->retired && in->begin.final_lsn > f->retire_lsn)
			{
				char		lsn[LSN_TEXT_SIZE];

				f->retired = true;
				log_info("the backfill's visibility filter retires at %s",
						 lsn_format(in->begin.final_lsn, lsn));
			}
			f->filtering = !f->retired;
			if (f->filtering)
				f->boundary = filter_boundary(f, f->xid);
			return FILTER_APPLY;
		case PGOUT_INSERT:
			if (!f->filtering)
				return FILTER_APPLY;
			if (f->physical)
				return filter_physical(f, in, out);
			if (!filter_key(f, &in->insert.newtuple, 1))
				return FILTER_FAILED;
			return filter_decide(f, 1);
		case PGOUT_DELETE:
			if (!f->filtering)
				return FILTER_APPLY;
			if (f->physical)
				return filter_physical(f, in, out);
			if (!filter_key(f, &in->delete.oldtuple, 1))
				return FILTER_FAILED;
			return filter_decide(f, 1);
		case PGOUT_UPDATE:
			if (f->filtering && f->physical)
				return filter_physical(f, in, out);
			return f->filtering ? filter_update(f, in, out) : FILTER_APPLY;
		case PGOUT_TRUNCATE:
			return f->filtering ? filter_truncate(f) : FILTER_APPLY;
		default:
			return FILTER_APPLY;
	}
}

/* ---- the lookahead ---- */

/* Append the key of t (at the lookahead's positions) to look_keys; false when it has none. */
static bool
filter_look_encode(backfill_filter *f, const pgout_tuple *t)
{
	for (int k = 0; k < f->nkeys; k++)
	{
		int			pos = f->look_key_pos[k];

		/* The decision reports what is wrong with such a change. */
		if (pos < 0 || pos >= t->ncols || t->values[pos].kind != 'b')
			return false;
	}
	for (int k = 0; k < f->nkeys; k++)
	{
		const pgout_value *v = &t->values[f->look_key_pos[k]];

		wire_put_u32(&f->look_keys, v->len);
		buf_append_len(&f->look_keys, v->data, v->len);
	}
	return true;
}

/* Note the key of t (at the lookahead's positions) to be asked about. */
static void
filter_look_key(backfill_filter *f, const pgout_tuple *t)
{
	size_t		at = f->look_keys.len;
	filter_answer *a;

	if (!filter_look_encode(f, t))
		return;
	if (f->nanswers == f->answers_cap)
	{
		f->answers_cap = f->answers_cap > 0 ? 2 * f->answers_cap : 256;
		f->answers = xrealloc(f->answers, (size_t) f->answers_cap * sizeof(filter_answer));
	}
	a = &f->answers[f->nanswers++];
	a->chunk = f->look_boundary - 1;
	a->key_at = at;
	a->key_len = (uint32_t) (f->look_keys.len - at);
	a->hash = filter_answer_hash(a->chunk, f->look_keys.data + at, a->key_len);
	a->above = false;
	a->fetch_len = 0;
	a->fetched_row = -2;
}

/*
 * In physical order: note the key of t, and the change's position, to be
 * asked about; for an update (newt) with unchanged TOASTed values, its new
 * key too, for the row to be read if the change is the first.
 */
static void
filter_look_first(backfill_filter *f, const pgout_tuple *t, const pgout_tuple *newt)
{
	int			before = f->nanswers;
	filter_answer *a;
	size_t		at;
	bool		unchanged = false;

	filter_look_key(f, t);
	if (f->nanswers == before)
		return;
	a = &f->answers[before];
	a->lsn = f->look_commit;
	a->ord = f->look_ord;
	a->hash = filter_position_hash(a->lsn, a->ord);
	for (int i = 0; newt != NULL && i < newt->ncols; i++)
		unchanged = unchanged || newt->values[i].kind == 'u';
	at = f->look_keys.len;
	if (unchanged && filter_look_encode(f, newt))
	{
		a->fetch_at = at;
		a->fetch_len = (uint32_t) (f->look_keys.len - at);
	}
}

bool
backfill_filter_look(backfill_filter *f, const uint8_t *data, size_t len)
{
	pgout_message msg;

	if (!(f->server_order || f->physical) || f->retired)
		return true;
	if (f->answered)
	{
		f->answered = false;
		f->nanswers = 0;
		f->nslots = 0;
		buf_reset(&f->look_keys);
	}
	/* A message that does not decode is reported when it is decided. */
	if (!pgout_decode(&f->look_dec, data, len, &msg))
		return true;
	switch (msg.kind)
	{
		case PGOUT_RELATION:
			for (int k = 0; k < f->nkeys; k++)
			{
				f->look_key_pos[k] = -1;
				for (int i = 0; i < msg.relation.ncols; i++)
					if (strcmp(msg.relation.columns[i].name, f->key_names[k]) == 0)
						f->look_key_pos[k] = i;
			}
			buf_reset(&f->look_columns);
			for (int i = 0; i < msg.relation.ncols; i++)
			{
				buf_append(&f->look_columns, ", t.");
				ident_quote(&f->look_columns, msg.relation.columns[i].name);
			}
			break;
		case PGOUT_BEGIN:
			{
				int			b = msg.begin.final_lsn > f->retire_lsn ? 0 :
					filter_boundary(f, msg.begin.xid);

				/* Only a transaction some chunks see and some do not needs keys placed. */
				f->look_boundary = b > 0 && b < f->nchunks ? b : -1;
				f->look_commit = msg.begin.final_lsn;
				f->look_ord = 0;
				break;
			}
		case PGOUT_INSERT:
			if (f->look_boundary > 0 && !f->physical)
				filter_look_key(f, &msg.insert.newtuple);
			f->look_ord++;
			break;
		case PGOUT_UPDATE:
			if (f->look_boundary > 0 && f->physical)
				filter_look_first(f, msg.update.oldkind != '\0' ? &msg.update.oldtuple :
								  &msg.update.newtuple, &msg.update.newtuple);
			else if (f->look_boundary > 0)
			{
				filter_look_key(f, &msg.update.newtuple);
				if (msg.update.oldkind != '\0')
					filter_look_key(f, &msg.update.oldtuple);
			}
			f->look_ord++;
			break;
		case PGOUT_DELETE:
			if (f->look_boundary > 0 && f->physical)
				filter_look_first(f, &msg.delete.oldtuple, NULL);
			else if (f->look_boundary > 0)
				filter_look_key(f, &msg.delete.oldtuple);
			f->look_ord++;
			break;
		default:
			break;
	}
	return true;
}

/* The keys asked about (which 0) or their chunks' upper keys (which 1), column k, as an array. */
static void
filter_look_array(backfill_filter *f, int k, int which, buf *out)
{
	const uint8_t **values = xcalloc((size_t) f->nkeys, sizeof(uint8_t *));
	uint32_t   *lens = xcalloc((size_t) f->nkeys, sizeof(uint32_t));

	wire_put_array_header(out, f->key_types[k], false, f->nanswers);
	for (int i = 0; i < f->nanswers; i++)
	{
		const filter_answer *a = &f->answers[i];
		const filter_chunk *c = &f->chunks[a->chunk];

		if (which == 0)
			(void) backfill_decode_key((const uint8_t *) f->look_keys.data + a->key_at, a->key_len,
									   f->nkeys, values, lens);
		else
		{
			values[k] = c->hi[k];
			lens[k] = c->hi_lens[k];
		}
		wire_put_u32(out, lens[k]);
		buf_append_len(out, values[k], lens[k]);
	}
	free(values);
	free(lens);
}

/* The changes' commit positions (lsn) or their numbers in their transactions, as an array. */
static void
filter_look_positions(const backfill_filter *f, bool lsn, buf *out)
{
	wire_put_array_header(out, lsn ? CATALOG_PG_LSNOID : CATALOG_INT4OID, false, f->nanswers);
	for (int i = 0; i < f->nanswers; i++)
	{
		wire_put_u32(out, lsn ? 8 : 4);
		if (lsn)
			wire_put_u64(out, f->answers[i].lsn);
		else
			wire_put_u32(out, (uint32_t) f->answers[i].ord);
	}
}

/*
 * In physical order: the rows of a read's first updates with unchanged
 * TOASTed values, from the source in one query (what filter_insert_moved
 * would read row by row).  A row read now is as new as one read when the
 * update is decided or newer: the update is spooled, so committed, and
 * the changes that make the row newer follow it in the stream.
 */
static bool
filter_prefetch(backfill_filter *f)
{
	int		   *wanted = xcalloc((size_t) f->nanswers + 1, sizeof(int));
	int			n = 0;
	buf		   *arrays = NULL;
	const char **values = NULL;
	int		   *lens = NULL, *formats = NULL;
	Oid		   *types = NULL;
	const uint8_t **keys = xcalloc((size_t) f->nkeys, sizeof(uint8_t *));
	uint32_t   *key_lens = xcalloc((size_t) f->nkeys, sizeof(uint32_t));
	bool		ok = true;
	buf			sql;

	buf_init(&sql);
	PQclear(f->prefetched);
	f->prefetched = NULL;
	for (int i = 0; i < f->nanswers; i++)
		if (f->answers[i].above && f->answers[i].fetch_len > 0)
			wanted[n++] = i;
	if (n == 0)
		goto cleanup;
	arrays = xcalloc((size_t) f->nkeys, sizeof(buf));
	values = xcalloc((size_t) f->nkeys, sizeof(char *));
	lens = xcalloc((size_t) f->nkeys, sizeof(int));
	formats = xcalloc((size_t) f->nkeys, sizeof(int));
	types = xcalloc((size_t) f->nkeys, sizeof(Oid));
	for (int k = 0; k < f->nkeys; k++)
	{
		buf_init(&arrays[k]);
		wire_put_array_header(&arrays[k], f->key_types[k], false, n);
	}
	for (int i = 0; i < n; i++)
	{
		const filter_answer *a = &f->answers[wanted[i]];

		(void) backfill_decode_key((const uint8_t *) f->look_keys.data + a->fetch_at, a->fetch_len,
								   f->nkeys, keys, key_lens);
		for (int k = 0; k < f->nkeys; k++)
		{
			wire_put_u32(&arrays[k], key_lens[k]);
			buf_append_len(&arrays[k], keys[k], key_lens[k]);
		}
	}
	buf_append(&sql, "SELECT u.ord");
	buf_append_len(&sql, f->look_columns.data, f->look_columns.len);
	buf_append(&sql, " FROM ROWS FROM (");
	for (int k = 0; k < f->nkeys; k++)
		buf_appendf(&sql, "%spg_catalog.unnest($%d)", k > 0 ? ", " : "", k + 1);
	buf_append(&sql, ") WITH ORDINALITY AS u(");
	for (int k = 0; k < f->nkeys; k++)
		buf_appendf(&sql, "k%d, ", k + 1);
	buf_appendf(&sql, "ord) JOIN ONLY %s t ON (", f->qtable);
	for (int k = 0; k < f->nkeys; k++)
	{
		buf_append(&sql, k > 0 ? ", t." : "t.");
		ident_quote(&sql, f->key_names[k]);
	}
	buf_append(&sql, ") = (");
	for (int k = 0; k < f->nkeys; k++)
		buf_appendf(&sql, "%su.k%d", k > 0 ? ", " : "", k + 1);
	buf_append(&sql, ")");
	for (int k = 0; k < f->nkeys; k++)
	{
		values[k] = arrays[k].data;
		lens[k] = (int) arrays[k].len;
		formats[k] = 1;
		types[k] = f->key_array_types[k];
	}
	f->prefetched = PQexecParams(f->source->conn, sql.data, f->nkeys, types, values, lens, formats, 1);
	if (PQresultStatus(f->prefetched) != PGRES_TUPLES_OK)
	{
		db_log_error(f->source->conn, "source", "read the unchanged values of the spool's rows",
					 f->prefetched, f->source->sqlstate);
		ok = false;
		goto cleanup;
	}
	for (int i = 0; i < n; i++)
		f->answers[wanted[i]].fetched_row = -1;
	for (int r = 0; r < PQntuples(f->prefetched); r++)
	{
		wire_reader rd;
		uint64_t	ord;

		wire_reader_init(&rd, PQgetvalue(f->prefetched, r, 0), (size_t) PQgetlength(f->prefetched, r, 0));
		ord = wire_u64(&rd);
		if (!rd.failed && ord >= 1 && ord <= (uint64_t) n)
			f->answers[wanted[ord - 1]].fetched_row = r;
	}

cleanup:
	for (int k = 0; arrays != NULL && k < f->nkeys; k++)
		buf_free(&arrays[k]);
	free(arrays);
	free(values);
	free(lens);
	free(formats);
	free(types);
	free(keys);
	free(key_lens);
	free(wanted);
	buf_free(&sql);
	return ok;
}

bool
backfill_filter_look_resolve(backfill_filter *f)
{
	const int	nkeys = f->nkeys;
	int			n = f->physical ? nkeys + 2 : 2 * nkeys;
	buf		   *arrays;
	const char **values;
	int		   *lens, *formats;
	Oid		   *types;
	PGresult   *res;
	bool		ok;

	if (!(f->server_order || f->physical) || f->answered || nkeys == 0)
		return true;
	f->answered = true;
	if (f->nanswers == 0)
		return true;
	arrays = xcalloc((size_t) n, sizeof(buf));
	values = xcalloc((size_t) n, sizeof(char *));
	lens = xcalloc((size_t) n, sizeof(int));
	formats = xcalloc((size_t) n, sizeof(int));
	types = xcalloc((size_t) n, sizeof(Oid));
	for (int i = 0; i < n; i++)
	{
		int			k = i % nkeys;

		buf_init(&arrays[i]);
		if (f->physical && i >= nkeys)
			filter_look_positions(f, i == nkeys, &arrays[i]);
		else
			filter_look_array(f, k, i / nkeys, &arrays[i]);
		values[i] = arrays[i].data;
		lens[i] = (int) arrays[i].len;
		formats[i] = 1;
		types[i] = !f->physical || i < nkeys ? f->key_array_types[k] :
			i == nkeys ? CATALOG_PG_LSNARRAYOID : CATALOG_INT4ARRAYOID;
	}
	res = PQexecParams(f->source->conn, f->physical ? f->look_first_sql.data : f->look_sql.data,
					   n, types, values, lens, formats, 0);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == f->nanswers;
	if (!ok)
		db_log_error(f->source->conn, "source", f->physical ? "look up the spool's keys to "
					 "reconcile" : "place the spool's keys among the chunks", res,
					 f->source->sqlstate);
	for (int i = 0; ok && i < f->nanswers; i++)
		f->answers[i].above = PQgetvalue(res, i, 0)[0] == 't';
	PQclear(res);
	ok = ok && (!f->physical || filter_prefetch(f));
	for (int i = 0; i < n; i++)
		buf_free(&arrays[i]);
	free(arrays);
	free(values);
	free(lens);
	free(formats);
	free(types);
	if (!ok)
	{
		f->nanswers = 0;
		return false;
	}
	/* A hash table of the answers, at most half full. */
	for (f->nslots = 16; f->nslots < 2 * f->nanswers; f->nslots *= 2)
		;
	f->slots = xrealloc(f->slots, (size_t) f->nslots * sizeof(int));
	for (int i = 0; i < f->nslots; i++)
		f->slots[i] = -1;
	for (int i = 0; i < f->nanswers; i++)
	{
		size_t		at = f->answers[i].hash & (size_t) (f->nslots - 1);

		while (f->slots[at] >= 0)
			at = (at + 1) & (size_t) (f->nslots - 1);
		f->slots[at] = i;
	}
	return true;
}

bool
backfill_filter_ghost_change(backfill_filter *f, state_ghost_change *change, const buf **key)
{
	if (f->ghost_changes_taken >= f->nghost_changes)
		return false;
	*change = f->ghost_changes[f->ghost_changes_taken].change;
	*key = &f->ghost_changes[f->ghost_changes_taken].key;
	f->ghost_changes_taken++;
	return true;
}

filter_seen_by
backfill_filter_seen_by(const backfill_filter *f, uint32_t xid, lsn_t final_lsn)
{
	int			b;

	if (f->nchunks == 0 || final_lsn > f->retire_lsn)
		return FILTER_SEEN_BY_NONE;
	b = filter_boundary(f, xid);
	return b == 0 ? FILTER_SEEN_BY_ALL : b == f->nchunks ? FILTER_SEEN_BY_NONE : FILTER_SEEN_BY_SOME;
}

lsn_t
backfill_filter_retire_lsn(const backfill_filter *f)
{
	return f->retire_lsn;
}

bool
backfill_filter_settled(const backfill_filter *f, lsn_t position)
{
	return f->retired || position > f->retire_lsn;
}
