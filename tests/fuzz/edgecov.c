/* edgecov.c — a driver for one libFuzzer harness (linked in place of libFuzzer's main by
 * tests/fuzz/edgecov.py): runs every input file named or in a named directory once, ORs the
 * inline 8-bit counters over them and prints, for each counter, its block's address (PC
 * table) and 0 or 1. libFuzzer's -print_coverage names the lines of the blocks no input hit
 * but not which of them are sanitizer traps (a UBSan or ASan report call: only a defect
 * reaches one); edgecov.py sets those apart by the address. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static uint8_t *ec_cb, *ec_ce, *ec_hit;
static const uintptr_t *ec_pcs;

/* the instrumentation's constructors hand over the tables (the sanitizer runtime's weak
 * definitions otherwise) */
void __sanitizer_cov_8bit_counters_init(uint8_t *b, uint8_t *e)
{
	ec_cb = b;
	ec_ce = e;
}

void __sanitizer_cov_pcs_init(const uintptr_t *b, const uintptr_t *e)
{
	(void)e;
	ec_pcs = b;
}

static void ec_run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0, r;

	if (f == NULL)
		return;
	do {
		if (n == cap && (buf = realloc(buf, cap = cap ? 2 * cap : 4096)) == NULL)
			abort();
		r = fread(buf + n, 1, cap - n, f);
		n += r;
	} while (r > 0);
	fclose(f);
	buf = realloc(buf, n ? n : 1);	/* exact size: ASan sees a read past the input */
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	for (uint8_t *p = ec_cb; p < ec_ce; p++) {
		if (*p)
			ec_hit[p - ec_cb] = 1;
		*p = 0;
	}
}

int main(int argc, char **argv)
{
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	if (ec_cb == NULL || ec_pcs == NULL || (ec_hit = calloc((size_t)(ec_ce - ec_cb) + 1, 1)) == NULL) {
		fprintf(stderr, "edgecov: no inline 8-bit counters or PC table\n");
		return 2;
	}
	memset(ec_cb, 0, (size_t)(ec_ce - ec_cb));	/* what LLVMFuzzerInitialize ran counts not */
	for (int a = 1; a < argc; a++) {
		DIR *d = opendir(argv[a]);
		struct dirent *e;

		if (d == NULL) {
			ec_run_file(argv[a]);
			continue;
		}
		while ((e = readdir(d)) != NULL) {
			char p[4096];

			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", argv[a], e->d_name);
			ec_run_file(p);
		}
		closedir(d);
	}
	printf("main %lx\n", (unsigned long)(uintptr_t)&main);
	for (size_t i = 0; i < (size_t)(ec_ce - ec_cb); i++)
		printf("%lx %d\n", (unsigned long)ec_pcs[2 * i], ec_hit[i]);
	return 0;
}
