/* fuzz_milter_mods.c — a milter's replies to the end of message, applied to a message.
 *
 * The input is a message and a sequence of replies a filter sends after SMFIC_BODYEOB:
 * header edits (SMFIR_ADDHEADER, INSHEADER, CHGHEADER), recipients (ADDRCPT, ADDRCPT_PAR,
 * DELRCPT), a new sender (CHGFROM), body chunks (REPLBODY), QUARANTINE, PROGRESS, a verdict
 * (accept, continue, reject, tempfail, discard, a reply code, SKIP, SHUTDOWN) or a raw
 * frame. The harness frames them as a filter would and hands the stream to the milter
 * client's own reading (milter_eob_fuzz: milter_on_frame, its bounds, milter_apply_mods)
 * through the real host (plugins_eom_call_fuzz: plugins.c's output checks and value
 * cleaner, hook.c's recipient bounds); a stream without a verdict ends with a continue.
 * The edits are then applied to the message as smtp_tx.c sends it (mxgate's Received,
 * headers_apply_edits_at, the replaced body after the header block).
 *
 * Input: byte 0 = flags (bits 0-1: limits.max_message_size 300, 2000, 20000 or 1 MiB;
 * bit 2: limits.max_recipients 3 or 40; bit 3: the rest after the message is the raw reply
 * stream, not ops; bit 4: the filter negotiated only the actions of byte 3, SMFIF_* bits
 * 0-7, instead of all of them); bytes 1-2: the message's length (little-endian, cut to
 * what is there); byte 3 when bit 4 is set; the message; then the ops: a byte (mod 12) and its fields, each string a length byte
 * (under 200: that many; else (b - 199) times 61) and its octets (NUL-terminated on the wire by
 * the harness, so a NUL inside cuts it as it would a filter's), an index a byte (under 248
 * itself, then 0, 1, INT_MAX, 2^31, 2^32 - 1, 2^31 + 1, 65536, 1000000).
 *
 * Invariants (abort when broken):
 *   - no crash, leak or out-of-bounds read (ASan), no undefined behaviour (UBSan);
 *   - the verdict is reported exactly once;
 *   - a modification the filter did not negotiate (ops) is its error: the verdict is an
 *     error and nothing of its edits is applied; without one, no milter-unnegotiated;
 *   - a message accepted (continue, or the quarantine) has every REPLBODY chunk sent as its
 *     body, concatenated in order, and no new body when none was sent; a QUARANTINE sent
 *     and accepted is the quarantine with that reason;
 *   - bounded growth: at most limits.max_recipients recipients added, twice that deleted;
 *     the message as sent is within a bound of max_message_size (header edits past it
 *     are refused);
 *   - addresses and ESMTP arguments taken break no line (no CR, LF, NUL in an address, no
 *     '<' or '>' outside its quoted local part, no control character in the arguments);
 *   - the header block as sent, when the message's own was well formed (CRLF lines, a
 *     field name of visible characters before its colon, continuation lines starting with
 *     white space and holding a visible character, ending in the blank line), is well
 *     formed too: no bare CR or LF, no empty name, folds only onto visible text.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libmilter/mfdef.h>

#include "config.h"
#include "headers.h"
#include "hook.h"
#include "log.h"
#include "msgbuf.h"
#include "plugins/milter.h"
#include "plugins/milter_proto.h"
#include "plugins/plugins.h"
#include "smtp_reply.h"

#define FZ_MAX_FRAME (1024u * 1024u)

struct fz_verdict {
	int n;
	enum mxgate_action a;
	int code;
	char reason[64];
};

static struct fz_verdict fz_v;

static void fz_done(struct mxgate_call *c, enum mxgate_action a, int code, const char *reply,
    const char *reason)
{
	(void)c;
	(void)reply;
	fz_v.n++;
	fz_v.a = a;
	fz_v.code = code;
	snprintf(fz_v.reason, sizeof(fz_v.reason), "%s", reason ? reason : "");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_LVL_ERROR);
	return 0;
}

struct fz_in { const uint8_t *d; size_t n, p; };

static int fz_byte(struct fz_in *in)
{
	return in->p < in->n ? in->d[in->p++] : -1;
}

/* A string field: appends its octets and a NUL to b; s and sl: the octets (in the input). */
static void fz_str(struct fz_in *in, struct milter_buf *b, const uint8_t **s, size_t *sl)
{
	int c = fz_byte(in);
	size_t l = c < 0 ? 0 : c < 200 ? (size_t)c : (size_t)(c - 199) * 61;

	if (l > in->n - in->p)
		l = in->n - in->p;
	*s = in->d + in->p;
	*sl = l;
	milter_buf_append(b, in->d + in->p, l);
	milter_buf_append(b, "", 1);
	in->p += l;
}

static void fz_index(struct fz_in *in, struct milter_buf *b)
{
	static const uint32_t special[] = { 0, 1, INT_MAX, 0x80000000u, 0xffffffffu, 0x80000001u, 65536,
		1000000 };
	int c = fz_byte(in);
	uint32_t v = c < 0 ? 0 : c < 248 ? (uint32_t)c : special[c - 248];
	unsigned char w[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
		(unsigned char)v };

	milter_buf_append(b, w, 4);
}

/* What the harness sent, to check the outcome against. */
struct fz_sent {
	struct milter_buf body;      /* the REPLBODY chunks, concatenated */
	bool has_body;
	bool quarantine;
	char qreason[256];
	bool verdict;                /* a verdict frame ended the ops */
	uint32_t actions;            /* the actions negotiated (SMFIF_*) */
	bool unneg;                  /* a modification outside them was sent */
};

/* Frames the ops of in into out. */
static void fz_ops(struct fz_in *in, struct milter_buf *out, struct fz_sent *sent)
{
	static const char verdicts[] = { SMFIR_ACCEPT, SMFIR_CONTINUE, SMFIR_REJECT, SMFIR_TEMPFAIL,
		SMFIR_DISCARD, SMFIR_REPLYCODE, SMFIR_SKIP, SMFIR_SHUTDOWN };
	int op;

	while (!sent->verdict && (op = fz_byte(in)) >= 0) {
		struct milter_buf f;
		const uint8_t *s;
		size_t sl;
		char cmd;
		int c;

		milter_buf_init(&f);
		switch (op % 12) {
		case 0: cmd = SMFIR_ADDHEADER; fz_str(in, &f, &s, &sl); fz_str(in, &f, &s, &sl); break;
		case 1: cmd = SMFIR_INSHEADER; fz_index(in, &f); fz_str(in, &f, &s, &sl); fz_str(in, &f, &s, &sl); break;
		case 2: cmd = SMFIR_CHGHEADER; fz_index(in, &f); fz_str(in, &f, &s, &sl); fz_str(in, &f, &s, &sl); break;
		case 3: cmd = SMFIR_ADDRCPT; fz_str(in, &f, &s, &sl); break;
		case 4: cmd = SMFIR_ADDRCPT_PAR; fz_str(in, &f, &s, &sl); fz_str(in, &f, &s, &sl); break;
		case 5: cmd = SMFIR_DELRCPT; fz_str(in, &f, &s, &sl); break;
		case 6:
			cmd = SMFIR_REPLBODY;
			fz_str(in, &f, &s, &sl);
			f.len--;   /* a body chunk is octets, not a string */
			milter_buf_append(&sent->body, s, sl);
			sent->has_body = true;
			break;
		case 7: cmd = SMFIR_CHGFROM; fz_str(in, &f, &s, &sl); fz_str(in, &f, &s, &sl); break;
		case 8: {
			size_t k;

			cmd = SMFIR_QUARANTINE;
			fz_str(in, &f, &s, &sl);
			k = strnlen((const char *)f.data, sl);
			if (k >= sizeof(sent->qreason))
				k = sizeof(sent->qreason) - 1;
			memcpy(sent->qreason, f.data, k);
			sent->qreason[k] = '\0';
			smtp_reply_printable(sent->qreason, k);	/* the host's censor (plugins.c) */
			sent->quarantine = true;
			break;
		}
		case 9: cmd = SMFIR_PROGRESS; break;
		case 10:
			c = fz_byte(in);
			cmd = verdicts[(c < 0 ? 0 : c) % sizeof(verdicts)];
			if (cmd == SMFIR_REPLYCODE)
				fz_str(in, &f, &s, &sl);
			sent->verdict = true;
			break;
		default:
			c = fz_byte(in);
			cmd = (char)(c < 0 ? 'x' : c);
			fz_str(in, &f, &s, &sl);
			if (cmd == SMFIR_REPLBODY || cmd == SMFIR_QUARANTINE || cmd == SMFIC_OPTNEG) {
				milter_buf_free(&f);
				continue;   /* its effect is checked only from its own op */
			}
			sent->verdict = cmd != SMFIR_PROGRESS && cmd != SMFIR_ADDHEADER && cmd != SMFIR_INSHEADER &&
			    cmd != SMFIR_CHGHEADER && cmd != SMFIR_ADDRCPT && cmd != SMFIR_ADDRCPT_PAR &&
			    cmd != SMFIR_DELRCPT && cmd != SMFIR_CHGFROM && cmd != SMFIR_SETSYMLIST;
			break;
		}
		c = (int)milter_action_needed(cmd, NULL);
		if (c != 0 && !(sent->actions & (uint32_t)c))
			sent->unneg = true;
		milter_put_frame(out, cmd, f.data, f.len);
		milter_buf_free(&f);
	}
}

/* A header block of CRLF lines: fields "name:" (name of visible ASCII but ':'), or
 * continuations (a white space first, a visible character in it), then the empty line. */
static bool fz_block_ok(const char *h, size_t len)
{
	size_t i = 0;
	bool first = true;

	while (i < len) {
		const char *e = memchr(h + i, '\n', len - i);
		size_t l;

		if (e == NULL)
			return false;
		l = (size_t)(e - (h + i));
		if (l == 0 || h[i + l - 1] != '\r')
			return false;
		l--;
		if (memchr(h + i, '\r', l) != NULL || memchr(h + i, '\0', l) != NULL)
			return false;
		if (l == 0)
			return i + 2 == len;   /* the blank line ends the block */
		if (h[i] == ' ' || h[i] == '\t') {
			bool vis = false;

			if (first)
				return false;
			for (size_t k = 0; k < l; k++)
				if ((unsigned char)h[i + k] > ' ')
					vis = true;
			if (!vis)
				return false;
		} else {
			size_t k = 0;

			while (k < l && h[i + k] != ':') {
				unsigned char c = (unsigned char)h[i + k];

				if (c <= ' ' || c >= 0x7f)
					return false;
				k++;
			}
			if (k == 0 || k == l)
				return false;
		}
		first = false;
		i += l + 2;
	}
	return false;
}

/* No CR or LF, and no '<' or '>' but inside an RFC 5321 quoted local part (qtextSMTP has
 * them; host_addr_ok takes "a <b"@d as Postfix's cleanup does, fuzz_plugin_output checks
 * the same). */
static void fz_addr_ok(const char *a)
{
	const char *p = a;

	if (a == NULL || strpbrk(a, "\r\n") != NULL)
		abort();
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++)
			if (*p == '\\' && p[1])
				p++;
		if (*p != '"')
			abort();
		p++;
	}
	if (strpbrk(p, "<>") != NULL)
		abort();
}

static void fz_params_ok(const char *p)
{
	if (p == NULL)
		return;
	for (const unsigned char *q = (const unsigned char *)p; *q; q++)
		if (*q < 0x20 || *q == 0x7f)
			abort();
}

struct fz_run_arg { struct milter_buf *frames; uint32_t actions; };

static void fz_run(const struct mxgate_host *host, struct mxgate_call *c, void *arg)
{
	struct fz_run_arg *a = arg;

	milter_eob_fuzz(host, c, a->frames->data, a->frames->len, FZ_MAX_FRAME, a->actions);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t max_sizes[] = { 300, 2000, 20000, 1024 * 1024 };
	struct mx_config cfg;
	struct hook_env env;
	struct fz_in in = { data, size, 0 };
	struct milter_buf frames;
	struct fz_sent sent;
	struct strbuf out = { 0 };
	struct rcpt rcpt = { .addr = (char *)"b@example.test", .params = (char *)"" };
	const char *msg, *nb = NULL;
	size_t mlen, hlen, nblen = 0, rlen;
	int flags, l0, l1;
	size_t want;
	struct fz_run_arg ra;
	uint32_t actions = SMFI_CURR_ACTS;

	if (size < 3)
		return 0;
	flags = fz_byte(&in);
	l0 = fz_byte(&in);
	l1 = fz_byte(&in);
	if (flags & 16) {
		int a = fz_byte(&in);

		actions = a < 0 ? 0 : (uint32_t)a;
	}
	want = (size_t)l0 | (size_t)l1 << 8;
	if (want > in.n - in.p)
		want = in.n - in.p;

	memset(&cfg, 0, sizeof(cfg));
	cfg.hostname = (char *)"mx.example";
	cfg.limits.max_message_size = max_sizes[flags & 3];
	cfg.limits.max_recipients = flags & 4 ? 40 : 3;
	cfg.limits.memory_threshold = 64u * 1024 * 1024;
	memset(&env, 0, sizeof(env));
	env.session_id = "fz";
	env.cfg = &cfg;
	env.esmtp = true;
	snprintf(env.helo, sizeof(env.helo), "client.example");
	snprintf(env.client_ip, sizeof(env.client_ip), "192.0.2.1");
	snprintf(env.queue_id, sizeof(env.queue_id), "4XyZ1");
	env.mail_from = (char *)"a@example.org";
	env.mail_params = (char *)"";
	env.rcpts = &rcpt;
	env.nrcpts = 1;
	env.msg = msgbuf_new(cfg.limits.memory_threshold, NULL);
	if (env.msg == NULL || msgbuf_append(env.msg, data + in.p, want) < 0)
		abort();
	in.p += want;

	memset(&sent, 0, sizeof(sent));
	sent.actions = actions;
	milter_buf_init(&sent.body);
	milter_buf_init(&frames);
	if (flags & 8)
		milter_buf_append(&frames, data + in.p, in.n - in.p);
	else
		fz_ops(&in, &frames, &sent);

	memset(&fz_v, 0, sizeof(fz_v));
	ra.frames = &frames;
	ra.actions = actions;
	plugins_eom_call_fuzz(&env, "milter", fz_done, fz_run, &ra);
	if (fz_v.n != 1)
		abort();   /* the verdict, once */

	/* an action not negotiated: the filter's error, none of its edits applied */
	if (!(flags & 8) && sent.unneg &&
	    (fz_v.a != MXGATE_ERROR || env.nhdr_edits || env.new_body || env.nadd_rcpts || env.ndel_rcpts ||
	    env.new_mail_from || env.quarantine_reason[0]))
		abort();
	if (!(flags & 8) && !sent.unneg && strcmp(fz_v.reason, "milter-unnegotiated") == 0)
		abort();

	/* bounded growth */
	if (env.nadd_rcpts > (size_t)cfg.limits.max_recipients ||
	    env.ndel_rcpts > 2 * (size_t)cfg.limits.max_recipients)
		abort();
	for (size_t i = 0; i < env.nadd_rcpts; i++) {
		fz_addr_ok(env.add_rcpts[i].addr);
		fz_params_ok(env.add_rcpts[i].params);
	}
	for (size_t i = 0; i < env.ndel_rcpts; i++)
		fz_addr_ok(env.del_rcpts[i]);
	if (env.new_mail_from)
		fz_addr_ok(env.new_mail_from);

	if (!(flags & 8) && (fz_v.a == MXGATE_CONTINUE || fz_v.a == MXGATE_QUARANTINE)) {
		/* accepted: the body is the chunks sent, the quarantine the one asked for */
		if (sent.has_body != (env.new_body != NULL))
			abort();
		if (env.new_body) {
			nb = msgbuf_data(env.new_body, &nblen);
			if (nblen != sent.body.len || (nblen && memcmp(nb, sent.body.data, nblen) != 0))
				abort();
		}
		if (sent.quarantine != (fz_v.a == MXGATE_QUARANTINE) ||
		    (sent.quarantine && strcmp(env.quarantine_reason, sent.qreason) != 0))
			abort();
	}

	/* the message as smtp_tx.c sends it */
	msg = msgbuf_data(env.msg, &mlen);
	hlen = msgbuf_header_len(env.msg);
	if (msg == NULL)
		msg = "";
	headers_build_received(&out, &env, cfg.hostname, "ESMTP");
	rlen = out.len;
	if (env.nhdr_edits || env.new_body) {
		headers_apply_edits_at(msg, hlen, env.hdr_edits, env.nhdr_edits, &out, 0);
		if (env.new_body)
			headers_end_block(&out);
		if (fz_block_ok(msg, hlen) && !fz_block_ok(out.v, out.len))
			abort();   /* a well-formed block stays well formed */
		if (env.new_body)
			(void)msgbuf_data(env.new_body, &nblen);
		else
			nblen = mlen - hlen;
		/* within a bound of the limit: each edit's name and value counted, folding and
		 * the cleaner's CR before LF at most double them */
		if (out.len - rlen + nblen > hlen + (mlen - hlen) + 2 * cfg.limits.max_message_size + 64 * env.nhdr_edits)
			abort();
	}

	strbuf_free(&out);
	hook_env_free_outputs(&env);
	msgbuf_free(env.msg);
	milter_buf_free(&frames);
	milter_buf_free(&sent.body);
	return 0;
}
