/* fuzz_milter_reply.c — the milter reply decoder: arbitrary bytes from a filter, fed to the
 * resumable frame parser in pieces whose sizes come from the input, every frame checked by
 * milter_reply_parse and milter_optneg_check (an OPTNEG's macro lists walked). Nothing may crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "plugins/milter_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct milter_parser p;
	size_t off = 0;
	unsigned step;

	if (size < 1)
		return 0;
	step = data[0] ? data[0] : 1;   /* first byte: feeding granularity */
	data++;
	size--;
	milter_parser_init(&p, 70000);
	while (off < size) {
		size_t n = size - off < step ? size - off : step, pos = 0;

		while (pos < n) {
			size_t used = 0, plen = 0;
			char cmd = 0;
			const unsigned char *pl = NULL;
			int rc = milter_parser_feed(&p, data + off + pos, n - pos, &used, &cmd, &pl, &plen);

			pos += used;
			if (rc < 0)
				goto out;
			if (rc == 0)
				break;
			{
				struct milter_reply r;
				const char *why;

				if (milter_reply_parse(cmd, pl, plen, &r) == 0) {
					if (r.name)
						(void)strlen(r.name);
					if (r.value)
						(void)strlen(r.value);
					if (r.text)
						(void)strlen(r.text);
					if (r.cmd == 'O') {
						size_t so = 0;
						uint32_t st;
						const char *names;

						(void)milter_optneg_check(&r, &why);
						while (milter_symlist_next(r.data, r.len, &so, &st, &names) == 1)
							(void)strlen(names);
					}
				}
			}
		}
		off += n;
	}
out:
	milter_parser_free(&p);
	return 0;
}
