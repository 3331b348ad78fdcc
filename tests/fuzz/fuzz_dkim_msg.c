/* fuzz_dkim_msg.c — a whole message through the verifier: header indexing, signature
 * parsing, body canonicalisation in random slices, header selection and hashing against a
 * fixed Ed25519 key, and the ARC chain plan / finish over the same fields.
 *
 * Input: byte 0 = body slice size (1..256); the rest is the message (header block, blank
 * line, body). Invariants: nothing crashes, leaks or reads outside the input; every field
 * lies inside the header block; the body canonicaliser gives the same hashes whether fed in
 * one piece or in slices (checked by verifying twice: results must agree). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/arc.h"
#include "filters/dkim.h"

static const char fz_key[] = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
static struct dkim_limits fz_lim;
static struct dkim_key fz_k;   /* parsed once: the runs are about the message */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	dkim_limits_default(&fz_lim);
	fz_lim.max_headers = 64;
	fz_lim.max_signatures = 3;
	fz_lim.max_arc_instances = 2;
	dkim_key_parse(fz_key, sizeof(fz_key) - 1, &fz_lim, &fz_k);
	return 0;
}

static const struct dkim_key *fz_key_cb(void *arg, const struct dkim_sig *sig)
{
	(void)sig;
	return arg;
}

static void fz_run(const char *msg, size_t len, size_t step, enum dkim_result *res, size_t *nres,
    enum arc_result *arc)
{
	struct dkim_msg *m;
	struct arc_chain c;
	const char *sep = NULL;
	size_t hl;

	for (size_t i = 0; i + 1 < len && sep == NULL; i++)
		if (msg[i] == '\n' && (msg[i + 1] == '\n' || (msg[i + 1] == '\r' && i + 2 < len && msg[i + 2] == '\n')))
			sep = msg + i + 1;
	hl = sep ? (size_t)(sep - msg) : len;
	m = dkim_msg_new(&fz_lim);
	if (m == NULL || dkim_msg_set_headers(m, msg, hl) != 0)
		goto out;
	for (size_t i = 0; i < dkim_msg_nfields(m); i++) {
		size_t rl;
		const char *raw = dkim_msg_field_raw(m, i, &rl);

		(void)raw;
		if (rl > hl)
			abort();
	}
	for (size_t o = hl; o < len; o += step)
		dkim_msg_feed_body(m, msg + o, len - o < step ? len - o : step);
	dkim_msg_end_body(m);
	*nres = 0;
	for (size_t i = 0; i < dkim_msg_nsigs(m) && *nres < 16; i++) {
		struct dkim_sig *s = dkim_msg_sig(m, i);

		if (s->kind == DKIM_SIG_DKIM)
			res[(*nres)++] = dkim_msg_verify(m, s, &fz_k, 1700000000LL);
	}
	arc_chain_plan(m, &c);
	arc_chain_finish(m, &c, fz_key_cb, &fz_k, 1700000000LL);
	*arc = c.result;
out:
	dkim_msg_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum dkim_result r1[16], r2[16];
	size_t n1 = 0, n2 = 0;
	enum arc_result a1 = ARC_RESULT_NONE, a2 = ARC_RESULT_NONE;
	char *msg;
	size_t step;

	if (size < 1)
		return 0;
	step = (size_t)data[0] + 1;
	msg = malloc(size - 1 ? size - 1 : 1);
	if (msg == NULL)
		return 0;
	memcpy(msg, data + 1, size - 1);
	fz_run(msg, size - 1, step, r1, &n1, &a1);
	fz_run(msg, size - 1, size, r2, &n2, &a2);
	if (n1 != n2 || memcmp(r1, r2, n1 * sizeof(r1[0])) != 0 || a1 != a2)
		abort();
	free(msg);
	return 0;
}
