/* copybin.c: PostgreSQL's binary COPY format; see copybin.h. */
#include <string.h>

#include "pgrepart/copybin.h"

static const char copybin_signature[11] = "PGCOPY\n\377\r\n";	/* + the NUL */

void
copybin_put_header(buf *out)
{
	buf_append_len(out, copybin_signature, sizeof(copybin_signature));
	wire_put_u32(out, 0);		/* flags: no OIDs */
	wire_put_u32(out, 0);		/* no header extension */
}

void
copybin_put_row_start(buf *out, int nfields)
{
	wire_put_u16(out, (uint16_t) nfields);
}

void
copybin_put_field(buf *out, const void *data, uint32_t len)
{
	if (data == NULL)
	{
		wire_put_u32(out, UINT32_MAX);	/* -1 */
		return;
	}
	wire_put_u32(out, len);
	buf_append_len(out, data, len);
}

void
copybin_put_trailer(buf *out)
{
	wire_put_u16(out, UINT16_MAX);	/* -1 */
}

bool
copybin_read_header(wire_reader *r)
{
	const uint8_t *sig = wire_bytes(r, sizeof(copybin_signature));
	uint32_t	flags;
	uint32_t	extension;

	if (sig != NULL && memcmp(sig, copybin_signature, sizeof(copybin_signature)) != 0)
		wire_fail(r, "not a binary COPY signature");
	flags = wire_u32(r);
	/* Bits 0-15 are reserved for flags a reader must understand; bit 16 is OIDs. */
	if (!r->failed && (flags & 0x0001ffff) != 0)
		wire_fail(r, "unsupported binary COPY flags");
	extension = wire_u32(r);
	if (!r->failed && extension > wire_remaining(r))
		wire_fail(r, "header extension longer than the data");
	else
		(void) wire_bytes(r, extension);
	return !r->failed;
}

int
copybin_read_row(wire_reader *r, int max, const uint8_t **data, uint32_t *lens)
{
	uint16_t	n = wire_u16(r);

	if (r->failed)
		return -1;
	if (n == UINT16_MAX)
		return 0;
	if ((int) n > max)
	{
		wire_fail(r, "row has more fields than expected");
		return -1;
	}
	for (int i = 0; i < n; i++)
	{
		uint32_t	len = wire_u32(r);

		if (len == UINT32_MAX)
		{
			data[i] = NULL;
			lens[i] = 0;
			continue;
		}
		if (len > INT32_MAX)
		{
			wire_fail(r, "negative field length");
			return -1;
		}
		lens[i] = len;
		data[i] = wire_bytes(r, len);
	}
	return r->failed ? -1 : (int) n;
}
