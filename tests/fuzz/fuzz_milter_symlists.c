/* fuzz_milter_symlists.c — the macro lists a milter sends in its option negotiation
 * (SMFIR_SETSYMLIST's data: a 32-bit stage and a NUL-terminated list of names, repeated)
 * taken as a session keeps them (plugins/milter.c milter_symlists_take, through
 * milter_symlists_take_fuzz): any bytes. Nothing may crash, leak or read out of bounds; every
 * name kept belongs to a known stage, is not empty, has no space, and a stage keeps at most
 * 32 names (what milter_put_stage_macros sends from). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/milter.h"

struct fuzz_count { size_t per_stage[7]; };

static void fuzz_each(int stage, const char *name, void *arg)
{
	struct fuzz_count *fc = arg;

	if (stage < 0 || stage >= 7 || name[0] == '\0' || strchr(name, ' ') != NULL ||
	    ++fc->per_stage[stage] > 32)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_count fc;
	unsigned char *copy = malloc(size ? size : 1);

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);	/* exact size: ASan sees any read past the reply */
	memset(&fc, 0, sizeof(fc));
	(void)milter_symlists_take_fuzz(copy, size, fuzz_each, &fc);
	free(copy);
	return 0;
}
