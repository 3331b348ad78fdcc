/* fuzz_headers.c — headers_apply_edits over random header blocks and random edit lists.
 *
 * Input: byte 0 = number of edits (mod 8); then per edit: op (mod 4), index (int8),
 * name length (mod 32) + name, value length (255 = NULL, else mod 128) + value; the rest is
 * the header block. Invariants:
 *   - never crashes, never reads outside the block (ASan);
 *   - without edits the output is the input;
 *   - the block ends the same way: when it has a blank line, the output ends with exactly
 *     the input's bytes from that blank line on; when it ends with LF, so does the output;
 *   - no bare CR and no bare LF that the input did not have (counts never grow);
 *   - an added field starts at the beginning of a line;
 *   - a field encoded from a value (headers_append_field) continues only onto lines that
 *     start with white space and hold a visible character;
 *   - the output stays within a bound of input + encoded edits.
 * The block's first line (up to 255 octets, to a NUL or LF) is also a client's HELO name in
 * mxgate's Received field (headers_build_received_at): the field holds it in place, octet for
 * octet, with space, <>()\";@ and control characters as '?' (a HELO cannot forge the relay's
 * name and address for a Received parser), and it adds no line of its own. The session's
 * cached builder (headers_build_received_cached_at, what smtp_tx.c writes) gives the same
 * octets as the field built whole, for that HELO and through the same cache after each
 * session change that must rebuild its parts (a shorter HELO as a second EHLO would send, a
 * reverse name, another protocol, STARTTLS without and with a client certificate, its
 * names, TLS and the name gone again): a part kept past a change of what it was built from
 * would be a stale Received.
 * Two known bugs (see tests/unit/test_headers.c) are kept out of the way unless
 * MX_KNOWN_BUGS is set: CR/LF in edit names are dropped before the call, and the
 * "added field starts a line" check is skipped for a block whose last line is
 * unterminated. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "headers.h"
#include "hook.h"
#include "ownfields.h"
#include "tls.h"

static bool fz_known_bugs;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_known_bugs = getenv("MX_KNOWN_BUGS") != NULL;
	return 0;
}

/* Bare CR (not before LF) and bare LF (not after CR) in s[0..n). */
static void count_bare(const char *s, size_t n, size_t *cr, size_t *lf)
{
	*cr = *lf = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' && (i + 1 >= n || s[i + 1] != '\n'))
			(*cr)++;
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			(*lf)++;
	}
}

/* Where the blank line starts (a line that is empty: CRLF or LF at a line start), or len. */
static size_t blank_line_at(const char *h, size_t len)
{
	size_t i = 0;

	while (i < len) {
		if (h[i] == '\n' || (h[i] == '\r' && i + 1 < len && h[i + 1] == '\n'))
			return i;
		const char *nl = memchr(h + i, '\n', len - i);
		if (nl == NULL)
			return len;
		i = (size_t)(nl - h) + 1;
	}
	return len;
}

/* True when name could be a header field name: visible ASCII, no colon (RFC 5322 2.2). */
static bool is_field_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s <= 32 || *s >= 127 || *s == ':')
			return false;
	return true;
}

struct fz_edits {
	struct hdr_edit e[8];
	char names[8][33];
	char values[8][129];
	size_t n;
};

/* Reads the edit list; returns the bytes used. */
static size_t fz_read_edits(const uint8_t *d, size_t size, struct fz_edits *x)
{
	size_t p = 0, want;

	memset(x, 0, sizeof(*x));
	if (size == 0)
		return 0;
	want = d[p++] % 8;
	while (x->n < want && p + 3 <= size) {
		struct hdr_edit *e = &x->e[x->n];
		size_t nl, vl;

		e->op = (enum hdr_edit_op)(d[p++] % 6);
		e->index = (int8_t)d[p++];
		nl = d[p++] % 32;
		if (p + nl > size)
			break;
		size_t k = 0;
		for (size_t i = 0; i < nl; i++) {
			char c = (char)d[p + i];
			if (c == '\0')
				continue;    /* a C string name */
			if (!fz_known_bugs && (c == '\r' || c == '\n'))
				continue;    /* known bug: names are emitted unchecked */
			x->names[x->n][k++] = c;
		}
		x->names[x->n][k] = '\0';
		p += nl;
		e->name = x->names[x->n];
		e->value = NULL;
		if (p < size) {
			uint8_t b = d[p++];
			if (b != 255) {
				vl = b % 128;
				if (p + vl > size)
					vl = size - p;
				k = 0;
				for (size_t i = 0; i < vl; i++)
					if (d[p + i] != 0)
						x->values[x->n][k++] = (char)d[p + i];
				x->values[x->n][k] = '\0';
				p += vl;
				e->value = x->values[x->n];
			}
		}
		if (e->op != HDR_CHANGE && e->value == NULL && e->op != HDR_DELETE_ALL &&
		    e->op != HDR_DELETE_PREFIX)
			e->value = x->values[x->n];   /* add/insert always carry a value ("") */
		x->n++;
	}
	return p;
}

/* The cached builder against the whole one, env's HELO n octets long, over a session's
 * changes; env is left as it came. */
static void fz_received_cached(struct hook_env *env, size_t n)
{
	struct received_cache *rc = NULL;
	struct strbuf a = { 0 }, b = { 0 };
	const char *with = "ESMTP";
	char helo[sizeof(env->helo)];

	memcpy(helo, env->helo, n + 1);
	for (int step = 0; step < 11; step++) {
		switch (step) {
		case 1:     /* a second EHLO with a prefix of the name: the copy's NUL differs */
			env->helo[n / 2] = '\0';
			break;
		case 2:     /* a reverse name found later: the HELO's second half */
			memcpy(env->client_name, helo + n / 2, n - n / 2 + 1);
			break;
		case 3:
			with = "ESMTPA";
			break;
		case 4:     /* STARTTLS, a certificate asked for and none sent */
			env->tls = true;
			strcpy(env->tls_version, "TLSv1.3");
			strcpy(env->tls_cipher, "TLS_AES_256_GCM_SHA384");
			env->tls_cert = TLSCONN_CERT_NONE;
			break;
		case 5:
			env->tls_cert = TLSCONN_CERT_VERIFIED;
			env->tls_cert_subject = "client.example";
			env->tls_cert_issuer = "Example CA";
			break;
		case 6:     /* names of the same length */
			env->tls_cert_subject = "client.exampl2";
			break;
		case 7:
			env->tls_cert = TLSCONN_CERT_UNVERIFIED;
			break;
		case 8:
			strcpy(env->tls_cipher, "TLS_AES_128_GCM_SHA256");
			break;
		case 9:     /* the first HELO again, TLS gone */
			memcpy(env->helo, helo, n + 1);
			env->tls = false;
			env->tls_cert = TLSCONN_CERT_NOT_ASKED;
			break;
		case 10:
			env->client_name[0] = '\0';
			with = "ESMTP";
			break;
		}
		a.len = b.len = 0;
		headers_build_received_cached_at(&a, &rc, env, "mx.example", with, 0);
		headers_build_received_at(&b, env, "mx.example", with, 0);
		if (a.len != b.len || memcmp(a.v, b.v, a.len) != 0)
			abort();
	}
	env->tls_cert_subject = env->tls_cert_issuer = NULL;
	headers_received_cache_free(&rc);
	strbuf_free(&a);
	strbuf_free(&b);
}

/* The HELO name in the Received field, sanitised as Postfix's smtpd writes it. */
static void fz_received_helo(const char *hdr, size_t len)
{
	static struct hook_env env;
	struct strbuf out = { 0 };
	size_t n = 0, crlf = 0;

	while (n < len && n < sizeof(env.helo) - 1 && hdr[n] != '\0' && hdr[n] != '\n')
		n++;
	memcpy(env.helo, hdr, n);
	env.helo[n] = '\0';
	strcpy(env.client_ip, "192.0.2.1");
	strcpy(env.queue_id, "4XyZ1");
	headers_build_received_at(&out, &env, "mx.example", "ESMTP", 0);
	const char *h = n > 0 ? env.helo : "unknown";
	size_t lh = n > 0 ? n : 7;
	static const char after[] = " (unknown [192.0.2.1])\r\n\tby mx.example (mxgate) with ESMTP id 4XyZ1; ";
	if (out.len < 15 + lh + sizeof(after) || memcmp(out.v, "Received: from ", 15) != 0 ||
	    memcmp(out.v + 15 + lh, after, sizeof(after) - 1) != 0)
		abort();
	for (size_t i = 0; i < lh; i++) {
		unsigned char c = (unsigned char)out.v[15 + i];
		if (c <= ' ' || c == 0x7f || strchr("<>()\\\";@", c) != NULL)
			abort();
		if (c != '?' && c != (unsigned char)h[i])
			abort();
	}
	for (size_t i = 0; i < out.len; i++)
		if (out.v[i] == '\r' || out.v[i] == '\n')
			crlf++;
	if (crlf != 4 || out.v[out.len - 2] != '\r' || out.v[out.len - 1] != '\n' || strlen(out.v) != out.len)
		abort();
	strbuf_free(&out);
	fz_received_cached(&env, n);
}

/* One field as headers_append_field encodes a (peer's) value: "name: " first, CRLF line ends
 * only, and every further line a fold onto visible text — never a line of white space alone
 * (RFC 5322 3.2.2), never one that starts a field of its own. */
static void fz_field(const char *name, const char *value)
{
	struct strbuf f = { 0 };
	size_t nl = strlen(name);

	headers_append_field(&f, name, value);
	if (!is_field_name(name)) {
		if (f.len != 0)
			abort();
		strbuf_free(&f);
		return;
	}
	if (f.len < nl + 4 || memcmp(f.v, name, nl) != 0 || memcmp(f.v + nl, ": ", 2) != 0 ||
	    memcmp(f.v + f.len - 2, "\r\n", 2) != 0 || strlen(f.v) != f.len)
		abort();
	for (size_t i = 0; i + 2 < f.len; i++) {
		if (f.v[i] == '\r' && f.v[i + 1] != '\n')
			abort();
		if (f.v[i] == '\n' && f.v[i - 1] != '\r')
			abort();
		if (f.v[i] != '\n')
			continue;
		size_t k = i + 1;
		if (f.v[k] != ' ' && f.v[k] != '\t')
			abort();    /* a line that would start a field */
		while (f.v[k] == ' ' || f.v[k] == '\t')
			k++;
		if (f.v[k] == '\r' || f.v[k] == '\n')
			abort();    /* a line of white space alone */
	}
	strbuf_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_edits x;
	size_t used = fz_read_edits(data, size, &x);
	size_t len = size - used;
	/* A copy of exactly len bytes, so ASan sees any read past the block. */
	char *hdr = malloc(len ? len : 1);
	struct strbuf out = { 0 };

	if (hdr == NULL)
		return 0;
	memcpy(hdr, data + used, len);
	fz_received_helo(hdr, len);
	for (size_t i = 0; i < x.n; i++)
		if (x.e[i].value)
			fz_field(x.e[i].name, x.e[i].value);
	headers_apply_edits(hdr, len, x.e, x.n, &out);
	const char *o = out.v ? out.v : "";
	{
		/* behind a Received (the fields a milter put above it moved there): the same
		 * octets plus the Received, which ends the top fields or starts the block */
		struct strbuf at = { 0 };

		strbuf_append(&at, "Received: r\r\n", 13);
		headers_apply_edits_at(hdr, len, x.e, x.n, &at, 0);
		if (at.len != out.len + 13 || (memcmp(at.v, "Received: r\r\n", 13) != 0 &&
		    memmem(at.v, at.len, "\nReceived: r\r\n", 14) == NULL))
			abort();
		strbuf_free(&at);
	}
	{
		/* a sender's fields mxgate owns left out first (ownfields.h): the same octets
		 * when the block holds none; without edits, none is left */
		struct strbuf own = { 0 };
		bool has = ownfields_block_has(hdr, len);

		headers_apply_edits_owned(hdr, len, x.e, x.n, &own, 0);
		if (!has && (own.len != out.len || (own.len && memcmp(own.v, o, own.len) != 0)))
			abort();
		if (x.n == 0 && own.len && ownfields_block_has(own.v, own.len))
			abort();
		/* the edits' indexes count the block the filters were shown, the one without
		 * those fields (smtp_tx_data_end): the same octets as the edits applied to it */
		struct strbuf shown = { 0 }, again = { 0 };

		headers_apply_edits_owned(hdr, len, NULL, 0, &shown, 0);
		headers_apply_edits(shown.v ? shown.v : "", shown.len, x.e, x.n, &again);
		if (again.len != own.len || (own.len && memcmp(again.v, own.v, own.len) != 0))
			abort();
		strbuf_free(&shown);
		strbuf_free(&again);
		strbuf_free(&own);
	}

	if (x.n == 0) {
		if (out.len != len || memcmp(o, hdr, len) != 0)
			abort();
		goto done;
	}
	/* the block's end */
	size_t sep = blank_line_at(hdr, len);
	if (sep < len) {
		size_t tail = len - sep;
		if (out.len < tail || memcmp(o + out.len - tail, hdr + sep, tail) != 0)
			abort();
	} else if (len > 0 && hdr[len - 1] == '\n') {
		if (out.len > 0 && o[out.len - 1] != '\n')
			abort();
	}
	/* no new bare CR / LF */
	size_t icr, ilf, ocr, olf;
	count_bare(hdr, len, &icr, &ilf);
	count_bare(o, out.len, &ocr, &olf);
	if (ocr > icr || olf > ilf)
		abort();
	/* bounded growth: each edit encodes to at most name + ": " + 3 bytes per value byte + CRLF */
	size_t bound = len;
	for (size_t i = 0; i < x.n; i++)
		bound += strlen(x.e[i].name) + 4 + 3 * (x.e[i].value ? strlen(x.e[i].value) : 0) + 2;
	if (out.len > bound)
		abort();
	/* an added field starts a line (unless a later edit may remove it again) */
	bool unterminated = sep == len && len > 0 && hdr[len - 1] != '\n';
	if (!unterminated || fz_known_bugs) {
		for (size_t i = 0; i < x.n; i++) {
			const struct hdr_edit *e = &x.e[i];
			if (e->op != HDR_ADD || !is_field_name(e->name))
				continue;
			bool later_removal = false;
			for (size_t j = i + 1; j < x.n; j++)
				if (x.e[j].op == HDR_DELETE_ALL || x.e[j].op == HDR_CHANGE ||
				    x.e[j].op == HDR_DELETE_PREFIX)
					later_removal = true;
			if (later_removal)
				continue;
			size_t nl = strlen(e->name);
			bool found = false;
			for (size_t k = 0; k + nl + 1 < out.len + 1 && !found; k++) {
				if ((k == 0 || o[k - 1] == '\n') && k + nl + 1 <= out.len &&
				    strncasecmp(o + k, e->name, nl) == 0 && o[k + nl] == ':')
					found = true;
			}
			if (!found)
				abort();
		}
	}
done:
	strbuf_free(&out);
	free(hdr);
	return 0;
}
