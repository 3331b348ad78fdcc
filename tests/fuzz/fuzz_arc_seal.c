/* fuzz_arc_seal.c — the ARC sealer over any message: arc_seal_ar_result on the
 * Authentication-Results value, arc_seal_build over the header block and body.
 *
 * Input: up to the first LF = the Authentication-Results value mxgate would have written;
 * the rest = the message (header block, blank line, body). Invariants: nothing crashes, leaks
 * or reads outside the input; a set is only added with cv none / pass / fail and i in
 * 1..50; and mxgate's own verifier accepts the ARC-Message-Signature it made over the sealed
 * message (whatever the header block looks like, signer and verifier select, canonicalise
 * and hash the same fields). A 1024-bit key made once keeps the runs fast. */
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/arc_seal.h"
#include "filters/dkim.h"
#include "proxy/headers.h"

static EVP_PKEY *fz_pkey;
static struct dkim_key fz_pub;
static char *fz_names[] = { "from", "to", "subject", "date", "message-id", "received" };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_pkey = EVP_RSA_gen(1024);
	if (fz_pkey == NULL)
		abort();
	fz_pub.result = DKIM_RESULT_PASS;
	fz_pub.type = DKIM_KEY_RSA;
	fz_pub.bits = 1024;
	fz_pub.pkey = fz_pkey;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data, *nl = memchr(in, '\n', size);
	size_t arlen = nl ? (size_t)(nl - in) : size;
	const char *msg = nl ? nl + 1 : in + size;
	size_t len = size - (size_t)(msg - in), hl = len;
	struct arc_seal_params p;
	struct arc_seal_result res;
	struct strbuf out = { 0 };
	const char *r;

	r = arc_seal_ar_result(in, arlen);
	if (r != NULL && strcmp(r, "none") != 0 && strcmp(r, "pass") != 0 && strcmp(r, "fail") != 0)
		abort();
	for (size_t i = 0; i + 1 < len; i++)
		if (msg[i] == '\n' && (msg[i + 1] == '\n' || (msg[i + 1] == '\r' && i + 2 < len && msg[i + 2] == '\n'))) {
			hl = i + 1;
			break;
		}
	memset(&p, 0, sizeof(p));
	p.domain = "seal.example";
	p.selector = "fz";
	p.pkey = fz_pkey;
	p.headers = fz_names;
	p.nheaders = sizeof(fz_names) / sizeof(fz_names[0]);
	p.max_instances = 50;
	p.now = 1800000000LL;
	arc_seal_build(&p, in, arlen, msg, hl, msg + hl, len - hl, &out, &res);
	if (res.status != ARC_SEAL_SEALED) {
		if (out.len != 0)
			abort();
		strbuf_free(&out);
		return 0;
	}
	if (res.instance < 1 || res.instance > 50 || (strcmp(res.cv, "none") != 0 &&
	    strcmp(res.cv, "pass") != 0 && strcmp(res.cv, "fail") != 0))
		abort();
	/* the sealed header block through the verifier: the new AMS must verify */
	{
		struct dkim_limits lim;
		struct dkim_msg *m;
		size_t set_len = out.len;
		bool found = false;

		strbuf_append(&out, msg, hl);
		dkim_limits_default(&lim);
		lim.max_signatures = 0;
		lim.max_arc_instances = 51;
		lim.max_headers = 100000;
		lim.min_rsa_bits = 1024;
		m = dkim_msg_new(&lim);
		if (m == NULL || dkim_msg_set_headers(m, out.v, out.len) != 0)
			abort();
		dkim_msg_feed_body(m, msg + hl, len - hl);
		dkim_msg_end_body(m);
		for (size_t i = 0; i < dkim_msg_nsigs(m); i++) {
			struct dkim_sig *s = dkim_msg_sig(m, i);

			if (s->kind != DKIM_SIG_ARC_MS || s->field != 1)
				continue;
			found = true;
			if (s->instance != res.instance || dkim_msg_verify(m, s, &fz_pub, p.now) != DKIM_RESULT_PASS)
				abort();
		}
		if (!found || set_len == 0)
			abort();
		dkim_msg_free(m);
	}
	strbuf_free(&out);
	return 0;
}
