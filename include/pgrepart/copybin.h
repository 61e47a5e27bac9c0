/*
 * copybin.h: PostgreSQL's binary COPY format, written and read.
 *
 * Header: the 11-byte signature "PGCOPY\n\377\r\n\0", Int32 flags, Int32
 * header-extension length (and that many bytes).  Each row: Int16 field
 * count, then per field Int32 length (-1 for NULL) and the value in its
 * type's send format.  Trailer: Int16 -1.  The values are the same bytes
 * pgoutput sends with binary 'true', so rows pass through without parsing.
 */
#ifndef PGREPART_COPYBIN_H
#define PGREPART_COPYBIN_H

#include <stdbool.h>
#include <stdint.h>

#include "pgrepart/buf.h"
#include "pgrepart/wire.h"

void		copybin_put_header(buf *out);
void		copybin_put_row_start(buf *out, int nfields);
/* One field; data NULL writes SQL NULL. */
void		copybin_put_field(buf *out, const void *data, uint32_t len);
void		copybin_put_trailer(buf *out);

/* Read and check the header; false with r failed and its error set. */
bool		copybin_read_header(wire_reader *r);

/*
 * Read the next row into up to max fields (data NULL for SQL NULL).
 * Returns the field count, 0 at the trailer, or -1 with r failed on
 * malformed input (including more fields than max).
 */
int			copybin_read_row(wire_reader *r, int max, const uint8_t **data, uint32_t *lens);

#endif
