/* fuzz_rspamd_reply.c — rspamd's HTTP reply splitter and the bounded JSON reader (the
 * result, the symbols and the "milter" block's operations, read once: every part of them
 * reported, the strings kept no longer than the JSON, at most RSPAMD_REPLY_ENTRIES_MAX symbols
 * and as many operations) over arbitrary bytes (first byte: 1 =
 * treat input as complete/EOF). And the reply read as it comes
 * (rspamd_reader): fed in reads cut where a generator seeded by the input says, it must end
 * as fed whole — the same outcome, status, offset, JSON and body block — within its bounds
 * (the head and JSON kept at most head_max, the block at most body_max, both made small by
 * the first byte's top bits to reach them). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
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

/* The body block as the sink gets it: appended to a buffer of the input's size. */
struct fuzz_block { char *p; size_t len, cap; };

static int fuzz_block_cb(void *arg, const char *data, size_t len)
{
	struct fuzz_block *b = arg;

	if (len == 0 || len > b->cap - b->len)
		__builtin_trap();       /* never empty, never more than the reply holds */
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

/* The reply fed in reads of 1..64 octets (seed's generator), or whole (seed 0), then the
 * close when eof; the outcome. */
static int fuzz_reader(const char *reply, size_t len, bool eof, size_t head_max, uint64_t body_max,
    uint32_t seed, struct rspamd_reader *r, struct fuzz_block *b)
{
	size_t at = 0;
	int rc = 1;

	rspamd_reader_init(r, head_max, body_max, fuzz_block_cb, b);
	while (at < len && rc == 1) {
		size_t n = len - at;

		if (seed) {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % 64;
			if (n > len - at)
				n = len - at;
		}
		rc = rspamd_reader_feed(r, reply + at, n, false);
		at += n;
	}
	rc = rspamd_reader_feed(r, NULL, 0, eof);
	if (r->len > head_max || r->block_len > body_max || r->block_len != b->len)
		__builtin_trap();
	return rc;
}

/* Whole and cut must agree. */
static void fuzz_reader_cuts(const char *reply, size_t len, bool eof, size_t head_max, uint64_t body_max,
    uint32_t seed)
{
	struct rspamd_reader w, c;
	struct fuzz_block bw = { malloc(len + 1), 0, len }, bc = { malloc(len + 1), 0, len };
	int rw, rc;

	if (bw.p == NULL || bc.p == NULL)
		goto out;
	rw = fuzz_reader(reply, len, eof, head_max, body_max, 0, &w, &bw);
	rc = fuzz_reader(reply, len, eof, head_max, body_max, seed | 1, &c, &bc);
	if (rw != rc)
		__builtin_trap();
	if (rw == 0) {
		size_t jw, jc;
		const char *pw = rspamd_reader_json(&w, &jw), *pc = rspamd_reader_json(&c, &jc);

		if (w.status != c.status || w.offset != c.offset || jw != jc || memcmp(pw, pc, jw) != 0 ||
		    pw[jw] != '\0' || bw.len != bc.len || memcmp(bw.p, bc.p, bw.len) != 0 ||
		    (w.offset >= 0 && jw != (size_t)w.offset))
			__builtin_trap();
	}
	rspamd_reader_free(&w);
	rspamd_reader_free(&c);
out:
	free(bw.p);
	free(bc.p);
}

/* The reply read once: its result's strings, its symbols and every part of its operations;
 * its strings within the JSON's length (rspamd.h). */
static void fuzz_json(const char *json, size_t len, size_t *acc)
{
	struct rspamd_reply rp;
	const struct rspamd_result *r = &rp.r;

	if (rspamd_reply_parse(json, len, &rp) < 0) {
		if (rp.str != NULL || rp.syms != NULL || rp.ops != NULL)
			__builtin_trap();
		return;
	}
	/* the strings within the JSON's length, the symbols and operations within their bound
	 * (a reply of tiny entries held seven times its size) */
	if (rp.str_len > len || rp.syms_len > RSPAMD_REPLY_ENTRIES_MAX * 16 ||
	    rp.ops_len > RSPAMD_REPLY_ENTRIES_MAX * 20)
		__builtin_trap();
	(void)strlen(r->action);
	(void)strlen(r->smtp_message);
	/* "subject" (the rewrite subject action's value): NUL-terminated, and cut only when
	 * the next character did not fit (a \uXXXX escape is up to 4 octets of UTF-8, never
	 * split) */
	if (r->subject_cut && strlen(r->subject) + 4 < sizeof(r->subject) - 1)
		__builtin_trap();
	rspamd_reply_symbols(&rp, fuzz_sym_cb, acc);
	for (int part = RSPAMD_MILTER_ADDS; part <= RSPAMD_MILTER_DKIM; part++)
		rspamd_reply_ops(&rp, (enum rspamd_milter_part)part, fuzz_hdr_cb, acc);
	rspamd_reply_free(&rp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body;
	size_t blen, acc = 0;
	long off;
	int status;

	if (size < 1)
		return 0;
	/* the JSON reader on its own */
	fuzz_json((const char *)data + 1, size - 1, &acc);
	/* and behind the HTTP splitter */
	if (rspamd_http_parse((const char *)data + 1, size - 1, data[0] & 1, &status, &body, &blen, &off) == 0) {
		/* the body, and rspamd's body block's offset within it */
		if (body < (const char *)data + 1 || body + blen > (const char *)data + size || off < -1 ||
		    off > (long)blen)
			__builtin_trap();
		fuzz_json(body, blen, &acc);
	}
	/* read as it comes: unbounded but for the input, then with small bounds */
	uint32_t seed = (uint32_t)size * 2654435761u ^ data[0];

	for (size_t i = 1; i < size && i < 64; i++)
		seed = seed * 31 + data[i];
	fuzz_reader_cuts((const char *)data + 1, size - 1, data[0] & 1, size, UINT64_MAX, seed);
	fuzz_reader_cuts((const char *)data + 1, size - 1, data[0] & 1, 1 + (data[0] >> 4) * 8, (data[0] >> 4) & 7, seed);
	return 0;
}
