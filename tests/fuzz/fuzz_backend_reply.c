/* fuzz_backend_reply.c — what an SMTP/LMTP backend (or a health check's peer) sends back, read
 * by the reply reader relay.c and health.c share (proxy/smtp_reply.c), and each reply's text
 * through the EHLO keyword parser. Differential: the bytes fed whole, octet by octet and in
 * pieces of 2 + size % 62 must give the same replies and the same error (or the same
 * pending octets). Every reply must be well formed: its code 100-599, its text within the
 * bounds, every line of it beginning with that code, no octet of it a control or no UTF-8;
 * bdat_reply_for_data's words for a DATA client are the text or one line of its fixed
 * words. The first octet picks the bare-LF policy; the rest is the stream. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bdat.h"
#include "domain.h"
#include "smtp_reply.h"

struct outcome {
	uint64_t hash;      /* over every reply, in order */
	size_t nreplies;
	int err;
	size_t pending;
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ull;
	return h;
}

static void check_reply(const struct smtp_reply *rep)
{
	if (rep->code < 100 || rep->code > 599 || rep->nlines < 1 || rep->nlines > SMTP_REPLY_LINES_MAX)
		abort();
	/* a NUL from the peer is '?': the text is one C string, all of it */
	if (rep->text[rep->len] != '\0' || strlen(rep->text) != rep->len || rep->len + 1 > SMTP_REPLY_TEXT_MAX)
		abort();
	/* and no other octet that is no text: printable ASCII, UTF-8 past the C1 controls, and
	 * the CRLFs that join the lines */
	for (size_t i = 0; i < rep->len;) {
		const unsigned char *u = (const unsigned char *)rep->text + i;
		size_t k = 1;
		if (u[0] == '\r' && i + 1 < rep->len && u[1] == '\n')
			k = 2;
		else if (u[0] >= 0x80 && ((k = domain_utf8_seq(u, rep->len - i)) == 0 || (u[0] == 0xc2 && u[1] < 0xa0)))
			abort();
		else if (u[0] < 0x80 && (u[0] < 0x20 || u[0] == 0x7f))
			abort();
		i += k;
	}
	char enh[12];
	bool has = smtp_reply_enhanced(rep, enh);
	if (has != (enh[0] != '\0') ||
	    (enh[0] && (enh[0] != '0' + rep->code / 100 || strlen(enh) > 9)))
		abort();
	/* each line: the code, then SP, "-" (not on the last) or its end; at most LINE_MAX */
	const char *p = rep->text, *end = rep->text + rep->len;
	unsigned lines = 0;
	while (p <= end) {
		const char *e = memmem(p, (size_t)(end - p), "\r\n", 2);
		const char *le = e ? e : end;
		lines++;
		if (le - p < 3 || (size_t)(le - p) > SMTP_REPLY_LINE_MAX || (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0') != rep->code)
			abort();
		if ((le - p > 3 && p[3] != (e ? '-' : ' ')) || (e && le - p == 3))
			abort();
		if (!e)
			break;
		p = e + 2;
	}
	if (lines != rep->nlines)
		abort();
	/* bdat.c's words for a DATA client when the reply refused a BDAT chunk (smtp_tx.c): the
	 * text itself, or one line of DATA's words after the enhanced code of the reply's class */
	char w[64];
	const char *x = bdat_reply_for_data(rep->code, rep->text, w, sizeof(w));
	if (x != rep->text) {
		const char *words = w;
		if (x != w || strlen(w) >= sizeof(w) || strpbrk(w, "\r\n") != NULL)
			abort();
		if (w[0] >= '0' && w[0] <= '9') {
			if (w[0] != '0' + rep->code / 100 || (words = strchr(w, ' ')) == NULL)
				abort();
			words++;
		}
		if (strcmp(words, "Message size exceeds fixed limit") != 0 && strcmp(words, "Message not accepted") != 0)
			abort();
	}
	struct smtp_caps caps;
	smtp_caps_parse(rep->text, &caps);
	if (caps.bits & ~0x1ffu)
		abort();
	if (!(caps.bits & SMTP_CAP_XCLIENT) && caps.xclient_attrs[0])
		abort();
	/* the list is the last XCLIENT line's text after the keyword, upper case, whole or cut
	 * at a word's end (the line's next octet a blank): never a part of a word */
	const char *xl = NULL;
	size_t xn = 0;
	for (const char *l = strstr(rep->text, "\r\n"); l;) {
		l += 2;
		const char *le = strstr(l, "\r\n");
		size_t ln = le ? (size_t)(le - l) : strlen(l);
		size_t k = 0;
		while (ln > 4 && k < 7 && 4 + k < ln && l[4 + k] != ' ' && toupper((unsigned char)l[4 + k]) == "XCLIENT"[k])
			k++;
		if (k == 7 && (ln == 11 || l[11] == ' ')) {
			xl = l + 11;
			xn = ln - 11;
		}
		l = le;
	}
	size_t al = strlen(caps.xclient_attrs);
	if ((xl != NULL) != ((caps.bits & SMTP_CAP_XCLIENT) != 0) || al > xn || (al < xn && xl[al] != ' '))
		abort();
	for (size_t i = 0; i < al; i++)
		if ((unsigned char)caps.xclient_attrs[i] != toupper((unsigned char)xl[i]))
			abort();
	/* an attribute is offered exactly when it is a word of the list (a reference split at
	 * blanks); "" and a text with a blank never are */
	static const char *const attrs[] = { "NAME", "ADDR", "NA", "", " NAME", "NAME ADDR" };
	for (size_t a = 0; a < sizeof(attrs) / sizeof(attrs[0]); a++) {
		size_t n = strlen(attrs[a]);
		bool want = false;
		for (const char *w = caps.xclient_attrs; *w && n && !strchr(attrs[a], ' ');) {
			size_t k = strcspn(w, " ");
			if (k == n && memcmp(w, attrs[a], n) == 0)
				want = true;
			w += k;
			w += *w == ' ';
		}
		if (smtp_caps_xclient_has(&caps, attrs[a]) != want)
			abort();
	}
}

static struct outcome run(unsigned flags, const char *data, size_t size, size_t step)
{
	struct smtp_reply_reader rd;
	struct outcome o = { 0xcbf29ce484222325ull, 0, 0, 0 };

	smtp_reply_init(&rd, flags);
	for (size_t pos = 0; pos < size && o.err == 0;) {
		size_t n = size - pos < step ? size - pos : step;
		const char *p = data + pos;
		while (n > 0) {
			struct smtp_reply rep;
			size_t used = 0;
			int rc = smtp_reply_feed(&rd, p, n, &used, &rep);
			if (rc < 0) {
				o.err = rc;
				/* an error stays: the reader takes nothing more and says it again */
				size_t u2 = 1;
				if (smtp_reply_feed(&rd, "250 ok\r\n", 8, &u2, &rep) != rc || u2 != 0)
					abort();
				break;
			}
			if (used > n || (rc == 1 && used == 0) || (rc == 0 && used != n))
				abort();
			if (rc == 1) {
				check_reply(&rep);
				o.nreplies++;
				o.hash = mix(o.hash, &rep.code, sizeof(rep.code));
				o.hash = mix(o.hash, &rep.nlines, sizeof(rep.nlines));
				o.hash = mix(o.hash, &rep.bare_lf, sizeof(rep.bare_lf));
				o.hash = mix(o.hash, rep.text, rep.len + 1);
			}
			p += used;
			n -= used;
			pos += used;
		}
	}
	if (o.err == 0) {
		o.pending = smtp_reply_pending(&rd);
		if (o.pending > SMTP_REPLY_LINE_MAX + 1 + SMTP_REPLY_TEXT_MAX)
			abort();
	} else if (smtp_reply_strerror(o.err)[0] == '\0') {
		abort();
	}
	/* a reset reader (health.c's next check, after STARTTLS) reads a new reply */
	struct smtp_reply rep;
	size_t used;
	smtp_reply_reset(&rd);
	if (smtp_reply_pending(&rd) != 0 || smtp_reply_feed(&rd, "250 ok\r\n", 8, &used, &rep) != 1 ||
	    used != 8 || rep.code != 250)
		abort();
	smtp_reply_free(&rd);
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned flags = data[0] & 1 ? SMTP_REPLY_STRICT_LF : 0;
	size_t len = size - 1;
	/* an exact-size copy: ASan sees any read past the bytes */
	char *copy = malloc(len ? len : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data + 1, len);
	struct outcome whole = run(flags, copy, len, len ? len : 1);
	struct outcome bytes = run(flags, copy, len, 1);
	struct outcome piece = run(flags, copy, len, 2 + size % 62);
	if (whole.hash != bytes.hash || whole.nreplies != bytes.nreplies || whole.err != bytes.err ||
	    whole.pending != bytes.pending)
		abort();
	if (whole.hash != piece.hash || whole.nreplies != piece.nreplies || whole.err != piece.err ||
	    whole.pending != piece.pending)
		abort();
	free(copy);
	return 0;
}
