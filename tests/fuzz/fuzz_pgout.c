/*
 * libFuzzer target for the pgoutput decoder: any input must decode or be
 * refused with an error, never crash, read out of bounds or leak.  The
 * corpus starts from the captured stream (tests/fuzz/corpus/pgout).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pgrepart/pgout.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pgout_decoder dec;
	pgout_message m;

	pgout_decoder_init(&dec);
	if (pgout_decode(&dec, data, size, &m) && m.kind == PGOUT_RELATION)
		pgout_relation_free(pgout_relation_copy(&m));
	pgout_decoder_free(&dec);
	return 0;
}
