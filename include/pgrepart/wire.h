/*
 * wire.h: big-endian reading and writing for the replication protocol,
 * pgoutput messages and binary COPY.
 *
 * A wire_reader never reads past its buffer.  The first read that would is
 * recorded (what was wanted and at which offset) and makes every later read
 * return zero or NULL: the error is sticky, so a decoder reads a whole
 * message and checks r->failed once, and can never mistake short input for
 * a zero.
 */
#ifndef PGREPART_WIRE_H
#define PGREPART_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgrepart/buf.h"

typedef struct wire_reader
{
	const uint8_t *data;
	size_t		len;
	size_t		pos;
	bool		failed;
	size_t		error_pos;		/* offset of the first failed read */
	char		error[96];		/* what it wanted */
} wire_reader;

void		wire_reader_init(wire_reader *r, const void *data, size_t len);
uint8_t		wire_u8(wire_reader *r);
uint16_t	wire_u16(wire_reader *r);
uint32_t	wire_u32(wire_reader *r);
uint64_t	wire_u64(wire_reader *r);
/* A NUL-terminated string inside the buffer (pointer into it), or NULL. */
const char *wire_cstring(wire_reader *r);
/* n bytes inside the buffer (pointer into it), or NULL. */
const uint8_t *wire_bytes(wire_reader *r, size_t n);
size_t		wire_remaining(const wire_reader *r);
/* Mark the reader failed with a message of the caller's (first failure wins). */
void		wire_fail(wire_reader *r, const char *what);

void		wire_put_u8(buf *b, uint8_t v);
void		wire_put_u16(buf *b, uint16_t v);
void		wire_put_u32(buf *b, uint32_t v);
void		wire_put_u64(buf *b, uint64_t v);
/*
 * The header of a one-dimensional array of n elements of type element (an
 * OID) in binary send format; each element follows as a 4-byte length (-1
 * for NULL) and its bytes.
 */
void		wire_put_array_header(buf *b, uint32_t element, bool nulls, int n);

#endif
