/* fuzz_control.c — the control socket's request parser and reply-head parser: any input,
 * fed whole, byte by byte and in steps of 2 + size % 62, gives the same requests; nothing is read past the
 * input; words are printable; the body has the announced length. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control_proto.h"

/* Parses all of buf in chunks of step; returns a hash of what came out. */
static uint64_t run(const char *buf, size_t size, size_t step)
{
	struct ctl_parser p;
	uint64_t h = 1469598103934665603ULL;
	size_t off = 0;

	ctl_parser_init(&p);
	while (off < size) {
		size_t n = size - off < step ? size - off : step, used = 0;
		enum ctl_parse_status st = ctl_parser_feed(&p, buf + off, n, &used);
		if (used > n)
			abort();
		off += used;
		if (st == CTL_BAD) {
			h = h * 31 + 7 + off;
			break;
		}
		if (st == CTL_REQUEST) {
			if (p.req.argc < 1 || p.req.argc > CTL_MAX_ARGS)
				abort();
			for (int i = 0; i < p.req.argc; i++) {
				size_t wl = strlen(p.req.argv[i]);
				if (wl == 0 || wl >= CTL_MAX_LINE)
					abort();
				for (size_t k = 0; k < wl; k++) {
					unsigned char c = (unsigned char)p.req.argv[i][k];
					if (c < 0x21 || c > 0x7e)
						abort();
					h = h * 1099511628211ULL ^ c;
				}
				h = h * 31 + 1;
			}
			if ((p.req.body == NULL) != (p.req.body_len == 0 && p.req.body == NULL))
				abort();
			for (size_t k = 0; k < p.req.body_len; k++)
				h = h * 1099511628211ULL ^ (unsigned char)p.req.body[k];
			h = h * 31 + p.req.json + off;
			ctl_parser_reset(&p);
		}
	}
	ctl_parser_reset(&p);
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);   /* exact size so ASan sees over-reads */
	memcpy(buf, data, size);
	uint64_t whole = run(buf, size, size ? size : 1);
	/* byte by byte, and one more step that follows the input's length (2..63): every split
	 * size is tried over a campaign without paying six parses per input */
	if (size > 1 && run(buf, size, 1) != whole)
		abort();
	if (size > 2 && run(buf, size, 2 + size % 62) != whole)
		abort();
	bool ok;
	size_t plen, hlen;
	int rc = ctl_reply_parse_head(buf, size, &ok, &plen, &hlen);
	if (rc == 1 && (hlen > size || hlen < 4 || buf[hlen - 1] != '\n'))
		abort();
	if (rc == 0 && size >= 32)
		abort();
	free(buf);
	return 0;
}
