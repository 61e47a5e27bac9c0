/*
 * libFuzzer target for the binary COPY reader: any input must read as rows
 * or be refused, never crash or read out of bounds.
 */
#include <stddef.h>
#include <stdint.h>

#include "pgrepart/copybin.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	wire_reader r;
	const uint8_t *fields[64];
	uint32_t	lens[64];
	int			n;

	wire_reader_init(&r, data, size);
	if (!copybin_read_header(&r))
		return 0;
	while ((n = copybin_read_row(&r, 64, fields, lens)) > 0)
	{
		/* Touch every byte the reader handed out. */
		volatile uint8_t sink = 0;

		for (int i = 0; i < n; i++)
			for (uint32_t j = 0; fields[i] != NULL && j < lens[i]; j++)
				sink ^= fields[i][j];
		(void) sink;
	}
	return 0;
}
