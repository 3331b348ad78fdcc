/* fuzz_rspamd_reply.c — rspamd's HTTP reply splitter and the bounded JSON reader (the
 * result and the "milter" block's header operations) over arbitrary bytes (first byte: 1 =
 * treat input as complete/EOF; the rest, shifted right once, modulo 5: the part of the
 * reply's operations read, enum rspamd_milter_part). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "plugins/rspamd.h"

static void fuzz_sym_cb(void *arg, const char *name, double score)
{
	*(size_t *)arg += strlen(name) + (score > 0);
}

/* The "milter" block's operations: a name, a value NUL-terminated (or a remove). */
static void fuzz_hdr_cb(void *arg, const struct rspamd_header_op *op)
{
	*(size_t *)arg += (op->name ? strlen(op->name) : 0) + (op->value ? strlen(op->value) : 0);
	if (op->name == NULL && op->kind != RSPAMD_OP_SPAM_HEADER)
		__builtin_trap();
	if (op->remove != (op->value == NULL) || (!op->remove && !op->insert && op->index != -1) ||
	    (op->insert && (op->remove || op->index < -10000 || op->index > 10000)))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rspamd_result r;
	const char *body;
	size_t blen, acc = 0;
	long off;
	int status;

	if (size < 1)
		return 0;
	/* the JSON reader on its own */
	(void)rspamd_json_parse((const char *)data + 1, size - 1, &r, fuzz_sym_cb, &acc);
	(void)strlen(r.action);
	(void)strlen(r.smtp_message);
	/* "subject" (the rewrite subject action's value): NUL-terminated, and cut only when
	 * the next character did not fit (a \uXXXX escape is up to 4 octets of UTF-8, never
	 * split) */
	if (r.subject_cut && strlen(r.subject) + 4 < sizeof(r.subject) - 1)
		__builtin_trap();
	(void)rspamd_json_milter((const char *)data + 1, size - 1, (enum rspamd_milter_part)((data[0] >> 1) % 5), fuzz_hdr_cb, &acc);
	/* and behind the HTTP splitter */
	if (rspamd_http_parse((const char *)data + 1, size - 1, data[0] & 1, &status, &body, &blen, &off) == 0) {
		/* the body, and rspamd's body block's offset within it */
		if (body < (const char *)data + 1 || body + blen > (const char *)data + size || off < -1 ||
		    off > (long)blen)
			__builtin_trap();
		(void)rspamd_json_parse(body, blen, &r, fuzz_sym_cb, &acc);
	}
	return 0;
}
