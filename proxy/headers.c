/* headers.c — Received: and header edits. */
#include "headers.h"
#include "ownfields.h"
#include "growbuf.h"
#include "tls.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		strbuf_append(b, tmp, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (big == NULL)
		abort();
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	strbuf_append(b, big, (size_t)n);
	free(big);
}

void strbuf_free(struct strbuf *b)
{
	free(b->v);
	b->v = NULL;
	b->len = b->cap = 0;
}

static bool headers_name_ok(const char *name);

/* The length of the line break at v (CRLF, LF or a bare CR), 0 if none. */
static size_t headers_break_len(const char *v)
{
	if (v[0] == '\r')
		return v[1] == '\n' ? 2 : 1;
	return v[0] == '\n' ? 1 : 0;
}

/* True when the line break at v is an RFC 5322 fold as mxgate may emit one: white space,
 * then a visible character on that same continuation line. A break onto a line of white
 * space alone (obs-FWS, which RFC 5322 3.2.2 says must not be generated, and which some
 * readers take for the blank line ending the header block), or onto nothing, is no fold. */
static bool headers_is_fold(const char *v)
{
	const char *c = v + headers_break_len(v);

	if (c == v || (*c != ' ' && *c != '\t'))
		return false;
	while (*c == ' ' || *c == '\t')
		c++;
	return *c != '\0' && *c != '\r' && *c != '\n';
}

/* True when v holds a fold its author made (a milter's DKIM-Signature, say). */
static bool headers_has_fold(const char *v)
{
	for (const char *c = v; *c; c++)
		if ((*c == '\r' || *c == '\n') && headers_is_fold(c))
			return true;
	return false;
}

void headers_append_field(struct strbuf *out, const char *name, const char *value)
{
	size_t col = strlen(name) + 2;
	const char *p = value ? value : "";

	/* leading white space dropped, but a fold onto the value's first text is kept, as a
	 * value that starts on the next line is written (SpamAssassin's "X-Spam-Report: " and
	 * its report lines below) */
	while (*p == ' ' || *p == '\t')
		p++;
	if (!((*p == '\r' || *p == '\n') && headers_is_fold(p)))
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
	if (!headers_name_ok(name)) {
		strbuf_append(out, "", 0);	/* out stays a valid (possibly empty) string */
		return;	/* an empty name, or one that could inject or forge a field */
	}
	if (strpbrk(p, "\r\n") && headers_has_fold(p)) {
		/* A value folded by its author (a milter's DKIM-Signature, say) keeps its exact
		 * folds, or signatures over it break (DKIM's simple header canonicalization, the
		 * default of OpenDKIM). Any other line break becomes a space: one not followed by
		 * white space would start a field of its own, and one onto a line of white space
		 * alone could end the header block for some readers. So no CR or LF of the value
		 * ever starts a line, or folds onto anything but visible text. */
		strbuf_append(out, name, strlen(name));
		strbuf_append(out, ": ", 2);
		size_t end = strlen(p);
		while (end > 0 && (p[end - 1] == '\r' || p[end - 1] == '\n' || p[end - 1] == ' ' || p[end - 1] == '\t'))
			end--;
		for (size_t i = 0; i < end; i++) {
			size_t bl = headers_break_len(p + i);
			if (bl > 0) {
				/* the visible character a fold needs lies before end: end trims only
				 * line breaks and white space */
				if (headers_is_fold(p + i))
					strbuf_append(out, "\r\n", 2);
				else
					strbuf_append(out, " ", 1);
				i += bl - 1;
				continue;
			}
			strbuf_append(out, p + i, 1);
		}
		strbuf_append(out, "\r\n", 2);
		return;
	}
	strbuf_append(out, name, strlen(name));
	strbuf_append(out, ": ", 2);
	/* Copy words; fold before a word that would pass column 78 (RFC 5322 2.1.1). The
	 * space between words is written only once we know the next word stays on the line,
	 * so a fold never leaves a trailing blank. A bare CR or LF is never emitted. */
	bool space = false;
	while (*p) {
		const char *w = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			p++;
		size_t wl = (size_t)(p - w);
		if (wl) {
			if (col + wl + (space ? 1 : 0) > 78 && col > strlen(name) + 2) {
				strbuf_append(out, "\r\n\t", 3);
				col = 1;
			} else if (space) {
				strbuf_append(out, " ", 1);
				col++;
			}
			strbuf_append(out, w, wl);
			col += wl;
			space = false;
		}
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			if (*p == ' ' || *p == '\t')
				space = true;
			p++;
		}
	}
	strbuf_append(out, "\r\n", 2);
}

/* The RFC 5322 date of `now` in local time, formatted once per second per thread (localtime_r
 * and strftime cost more than the rest of the field); the string is what strftime gives,
 * *len its length. */
static const char *headers_date(time_t now, size_t *len)
{
	static _Thread_local bool cached_ok;
	static _Thread_local time_t cached_sec;
	static _Thread_local char cached[64];
	static _Thread_local size_t cached_len;
	struct tm tm;

	if (!cached_ok || now != cached_sec) {
		localtime_r(&now, &tm);
		cached_len = strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S %z", &tm);
		if (cached_len == 0)
			cached[0] = '\0';
		cached_sec = now;
		cached_ok = true;
	}
	*len = cached_len;
	return cached;
}

/* Copies s[0..n) to o; returns the octet after it (a constant n: a few stores). */
static inline char *headers_put(char *o, const char *s, size_t n)
{
	memcpy(o, s, n);
	return o + n;
}

#define HEADERS_PUT_LIT(o, lit) headers_put((o), (lit), sizeof(lit) - 1)

/* What headers_put_helo writes for each octet: '?' for 0x00-0x20, '"', '(', ')', ';',
 * '<', '>', '@', '\\' and DEL; the octet itself otherwise (0x80 and up too). */
#define HELO_OUT(c) ((c) <= 0x20 || (c) == 0x7f || (c) == '"' || (c) == '(' || (c) == ')' || (c) == ';' || \
    (c) == '<' || (c) == '>' || (c) == '@' || (c) == '\\' ? '?' : (c))
#define HELO_OUT4(c) HELO_OUT(c), HELO_OUT((c) + 1), HELO_OUT((c) + 2), HELO_OUT((c) + 3)
#define HELO_OUT16(c) HELO_OUT4(c), HELO_OUT4((c) + 4), HELO_OUT4((c) + 8), HELO_OUT4((c) + 12)
#define HELO_OUT64(c) HELO_OUT16(c), HELO_OUT16((c) + 16), HELO_OUT16((c) + 32), HELO_OUT16((c) + 48)
static const unsigned char headers_helo_out[256] = {
	HELO_OUT64(0), HELO_OUT64(64), HELO_OUT64(128), HELO_OUT64(192),
};

/* The client's HELO name as the Received field shows it, written at o (n octets): space,
 * <>()\";@ and control characters become '?', as Postfix's smtpd writes it (smtpd.c,
 * NEUTER_CHARACTERS), so that a name such as "x (mail.example [192.0.2.1])" cannot pose
 * as the relay to a Received parser downstream. Returns the octet after it. */
static char *headers_put_helo(char *o, const char *helo, size_t n)
{
	for (size_t i = 0; i < n; i++)
		o[i] = (char)headers_helo_out[(unsigned char)helo[i]];	/* one load an octet */
	return o + n;
}

/* The Received field's constant parts, each as HEADERS_PUT_LIT writes it; their lengths
 * together (RECEIVED_FIXED) bound what the field adds to its variable parts. */
#define R_FROM "Received: from "
#define R_NAME " ("
#define R_IP " ["
#define R_BY "])\r\n\tby "
#define R_WITH " (mxgate) with "
#define R_ID " id "
#define R_TLS "\r\n\t(using "
#define R_CIPHER " with cipher "
#define R_TLS_END ")"
/* the client's certificate when one was asked for, in the words of Postfix's
 * smtpd_tls_received_header */
#define R_CC "\r\n\t(Client CN \""
#define R_CC_ISS "\", Issuer \""
#define R_CC_OK "\" (verified OK))"
#define R_CC_NOT "\" (not verified))"
#define R_CC_NONE "\r\n\t(Client did not present a certificate)"
#define R_FOR "\r\n\tfor <"
#define R_FOR_END ">"
#define R_DATE "; "
#define R_END "\r\n"
#define RECEIVED_FIXED (sizeof(R_FROM R_NAME R_IP R_BY R_WITH R_ID R_TLS R_CIPHER R_TLS_END R_FOR R_FOR_END \
    R_DATE R_END R_CC R_CC_ISS R_CC_NOT R_CC_NONE) - 1)

/* The field's parts that stay the same for a session's messages, written at o: the head,
 * "Received: from HELO (NAME [IP])\r\n\tby HOST (mxgate) with WITH id ", and the TLS part
 * that follows the id (nothing without TLS). The lengths are the strings' (l*). */
struct received_parts {
	const char *helo, *name, *ip, *host, *with;
	size_t lh, ln, li, lo, lw;
	bool cert;             /* a client certificate to name */
	size_t lv, lc, lcs, lci;
};

static void received_parts_get(struct received_parts *p, const struct hook_env *env, const char *hostname,
    const char *with)
{
	p->helo = env->helo[0] ? env->helo : "unknown";
	p->name = env->client_name[0] ? env->client_name : "unknown";
	p->ip = env->client_ip;
	p->host = hostname;
	p->with = with;
	p->lh = strlen(p->helo);
	p->ln = strlen(p->name);
	p->li = strlen(p->ip);
	p->lo = strlen(hostname);
	p->lw = strlen(with);
	p->cert = env->tls && env->tls_cert >= TLSCONN_CERT_UNVERIFIED;
	p->lv = p->lc = p->lcs = p->lci = 0;
	if (env->tls) {
		p->lv = strlen(env->tls_version);
		p->lc = strlen(env->tls_cipher);
	}
	if (p->cert) {
		p->lcs = strlen(env->tls_cert_subject);
		p->lci = strlen(env->tls_cert_issuer);
	}
}

/* Room the head and the TLS part take at most (their constant parts: RECEIVED_FIXED). */
static size_t received_parts_len(const struct received_parts *p)
{
	return p->lh + p->ln + p->li + p->lo + p->lw + p->lv + p->lc + p->lcs + p->lci;
}

static char *received_put_head(char *o, const struct received_parts *p)
{
	o = HEADERS_PUT_LIT(o, R_FROM);
	o = headers_put_helo(o, p->helo, p->lh);
	o = HEADERS_PUT_LIT(o, R_NAME);
	o = headers_put(o, p->name, p->ln);
	o = HEADERS_PUT_LIT(o, R_IP);
	o = headers_put(o, p->ip, p->li);
	o = HEADERS_PUT_LIT(o, R_BY);
	o = headers_put(o, p->host, p->lo);
	o = HEADERS_PUT_LIT(o, R_WITH);
	o = headers_put(o, p->with, p->lw);
	return HEADERS_PUT_LIT(o, R_ID);
}

static char *received_put_tls(char *o, const struct received_parts *p, const struct hook_env *env)
{
	if (!env->tls)
		return o;
	o = HEADERS_PUT_LIT(o, R_TLS);
	o = headers_put(o, env->tls_version, p->lv);
	o = HEADERS_PUT_LIT(o, R_CIPHER);
	o = headers_put(o, env->tls_cipher, p->lc);
	o = HEADERS_PUT_LIT(o, R_TLS_END);
	if (p->cert) {
		/* the names are printable ASCII without '"', '(' or ')' (tls.h) */
		o = HEADERS_PUT_LIT(o, R_CC);
		o = headers_put(o, env->tls_cert_subject, p->lcs);
		o = HEADERS_PUT_LIT(o, R_CC_ISS);
		o = headers_put(o, env->tls_cert_issuer, p->lci);
		if (env->tls_cert == TLSCONN_CERT_VERIFIED)
			o = HEADERS_PUT_LIT(o, R_CC_OK);
		else
			o = HEADERS_PUT_LIT(o, R_CC_NOT);
	} else if (env->tls_cert == TLSCONN_CERT_NONE) {
		o = HEADERS_PUT_LIT(o, R_CC_NONE);
	}
	return o;
}

/* The per-message tail: " for <RCPT>" when one recipient, "; DATE\r\n". */
static char *received_put_tail(char *o, const char *rcpt, size_t lr, const char *date, size_t ld)
{
	if (rcpt) {
		o = HEADERS_PUT_LIT(o, R_FOR);
		o = headers_put(o, rcpt, lr);
		o = HEADERS_PUT_LIT(o, R_FOR_END);
	}
	o = HEADERS_PUT_LIT(o, R_DATE);
	o = headers_put(o, date, ld);
	o = HEADERS_PUT_LIT(o, R_END);
	*o = '\0';
	return o;
}

void headers_build_received_at(struct strbuf *out, const struct hook_env *env, const char *hostname,
    const char *with, time_t now)
{
	/* No stdio, and the room for the whole field made once: the bytes are those of
	 * "Received: from %s (%s [%s])\r\n\tby %s (mxgate) with %s id %s" and so on. */
	struct received_parts p;
	const char *rcpt = env->nrcpts == 1 ? env->rcpts[0].addr : NULL;
	size_t ld, lq = strlen(env->queue_id), lr = rcpt ? strlen(rcpt) : 0;
	const char *date = headers_date(now, &ld);

	received_parts_get(&p, env, hostname, with);
	size_t need = out->len + received_parts_len(&p) + lq + lr + ld + RECEIVED_FIXED + 1;
	if (need > out->cap)
		growbuf_grow(&out->v, &out->cap, 256, need);
	char *o = out->v + out->len;
	o = received_put_head(o, &p);
	o = headers_put(o, env->queue_id, lq);
	o = received_put_tls(o, &p, env);
	o = received_put_tail(o, rcpt, lr, date, ld);
	out->len = (size_t)(o - out->v);
}

void headers_build_received(struct strbuf *out, const struct hook_env *env, const char *hostname,
    const char *with)
{
	headers_build_received_at(out, env, hostname, with, time(NULL));
}

/* The session-constant parts and what they were built from. The inputs held in env's own
 * arrays (helo, client_name, client_ip, tls_version, tls_cipher) are kept as copies and
 * compared with memcmp over the copy's length and its NUL, which reads inside env's array;
 * the certificate's names (heap strings of any length) with strcmp; hostname (the session's
 * configuration's, fixed for the session) and with (a literal) by pointer. */
enum { RC_HELO, RC_NAME, RC_IP, RC_TLSV, RC_TLSC, RC_CS, RC_CI, RC__N };
struct received_cache {
	const char *hostname, *with;
	bool tls;
	int tls_cert;
	size_t koff[RC__N], klen[RC__N];   /* the inputs' copies in buf */
	size_t head_off, head_len, tls_off, tls_len;
	size_t cap;
	char buf[];
};

/* The inputs of the session-constant parts, "" for those env's state does not show. */
static void received_cache_keys(const struct hook_env *env, const char *k[RC__N])
{
	bool cert = env->tls && env->tls_cert >= TLSCONN_CERT_UNVERIFIED;

	k[RC_HELO] = env->helo;
	k[RC_NAME] = env->client_name;
	k[RC_IP] = env->client_ip;
	k[RC_TLSV] = env->tls ? env->tls_version : "";
	k[RC_TLSC] = env->tls ? env->tls_cipher : "";
	k[RC_CS] = cert ? env->tls_cert_subject : "";
	k[RC_CI] = cert ? env->tls_cert_issuer : "";
}

static bool received_cache_fits(const struct received_cache *c, const struct hook_env *env, const char *hostname,
    const char *with)
{
	if (c == NULL || c->hostname != hostname || c->with != with || c->tls != env->tls ||
	    c->tls_cert != env->tls_cert)
		return false;
	/* the arrays of env: memcmp reads at most klen + 1 <= the array's size */
	if (memcmp(env->helo, c->buf + c->koff[RC_HELO], c->klen[RC_HELO] + 1) != 0 ||
	    memcmp(env->client_name, c->buf + c->koff[RC_NAME], c->klen[RC_NAME] + 1) != 0 ||
	    memcmp(env->client_ip, c->buf + c->koff[RC_IP], c->klen[RC_IP] + 1) != 0)
		return false;
	if (env->tls) {
		if (memcmp(env->tls_version, c->buf + c->koff[RC_TLSV], c->klen[RC_TLSV] + 1) != 0 ||
		    memcmp(env->tls_cipher, c->buf + c->koff[RC_TLSC], c->klen[RC_TLSC] + 1) != 0)
			return false;
		if (env->tls_cert >= TLSCONN_CERT_UNVERIFIED &&
		    (strcmp(env->tls_cert_subject, c->buf + c->koff[RC_CS]) != 0 ||
		    strcmp(env->tls_cert_issuer, c->buf + c->koff[RC_CI]) != 0))
			return false;
	}
	return true;
}

/* Builds the parts for env into *cp (grown or allocated when short). */
static void received_cache_fill(struct received_cache **cp, const struct hook_env *env, const char *hostname,
    const char *with)
{
	struct received_cache *c = *cp;
	struct received_parts p;
	const char *k[RC__N];
	size_t kl[RC__N], need = 0;

	received_cache_keys(env, k);
	for (int i = 0; i < RC__N; i++) {
		kl[i] = strlen(k[i]);
		need += kl[i] + 1;
	}
	received_parts_get(&p, env, hostname, with);
	need += received_parts_len(&p) + RECEIVED_FIXED;
	if (c == NULL || c->cap < need) {
		free(c);
		c = malloc(sizeof(*c) + need);
		if (c == NULL)
			abort();
		c->cap = need;
		*cp = c;
	}
	c->hostname = hostname;
	c->with = with;
	c->tls = env->tls;
	c->tls_cert = env->tls_cert;
	char *o = c->buf;
	for (int i = 0; i < RC__N; i++) {
		c->koff[i] = (size_t)(o - c->buf);
		c->klen[i] = kl[i];
		memcpy(o, k[i], kl[i] + 1);
		o += kl[i] + 1;
	}
	c->head_off = (size_t)(o - c->buf);
	o = received_put_head(o, &p);
	c->head_len = (size_t)(o - c->buf) - c->head_off;
	c->tls_off = (size_t)(o - c->buf);
	o = received_put_tls(o, &p, env);
	c->tls_len = (size_t)(o - c->buf) - c->tls_off;
}

void headers_build_received_cached_at(struct strbuf *out, struct received_cache **cache,
    const struct hook_env *env, const char *hostname, const char *with, time_t now)
{
	if (!received_cache_fits(*cache, env, hostname, with))
		received_cache_fill(cache, env, hostname, with);

	const struct received_cache *c = *cache;
	const char *rcpt = env->nrcpts == 1 ? env->rcpts[0].addr : NULL;
	size_t ld, lq = strlen(env->queue_id), lr = rcpt ? strlen(rcpt) : 0;
	const char *date = headers_date(now, &ld);
	size_t need = out->len + c->head_len + lq + c->tls_len + lr + ld + RECEIVED_FIXED + 1;

	if (need > out->cap)
		growbuf_grow(&out->v, &out->cap, 256, need);
	char *o = out->v + out->len;
	o = headers_put(o, c->buf + c->head_off, c->head_len);
	o = headers_put(o, env->queue_id, lq);
	o = headers_put(o, c->buf + c->tls_off, c->tls_len);
	o = received_put_tail(o, rcpt, lr, date, ld);
	out->len = (size_t)(o - out->v);
}

void headers_build_received_cached(struct strbuf *out, struct received_cache **cache,
    const struct hook_env *env, const char *hostname, const char *with)
{
	headers_build_received_cached_at(out, cache, env, hostname, with, time(NULL));
}

void headers_received_cache_free(struct received_cache **cache)
{
	free(*cache);
	*cache = NULL;
}

/* A field name per RFC 5322 2.2: printable US-ASCII but ':'; never empty. */
static bool headers_name_ok(const char *name)
{
	if (name == NULL || *name == '\0' || strlen(name) > 200)
		return false;
	for (const char *c = name; *c; c++)
		if (*c < 33 || *c > 126 || *c == ':')
			return false;
	return true;
}

/* One header field in the output list: either a slice of the original block or owned text
 * (added or changed), always ending in CRLF. */
struct hfield {
	const char *text;
	size_t len;
	char *owned;           /* non-NULL when text is ours */
	bool deleted;
	bool top;              /* above our Received (HDR_INSERT_DELIVERED); these lead the list */
};

struct hlist { struct hfield *v; size_t n, cap; };

static void hlist_insert(struct hlist *l, size_t at, struct hfield f)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 32;
		struct hfield *nv = realloc(l->v, l->cap * sizeof(*nv));
		if (nv == NULL)
			abort();
		l->v = nv;
	}
	if (at > l->n)
		at = l->n;
	memmove(&l->v[at + 1], &l->v[at], (l->n - at) * sizeof(*l->v));
	l->v[at] = f;
	l->n++;
}

static struct hfield hfield_make(const char *name, const char *value)
{
	struct strbuf t = { 0 };
	struct hfield f = { 0 };

	headers_append_field(&t, name, value);
	f.owned = t.v;
	f.text = t.v;
	f.len = t.len;
	return f;
}

/* Splits the header block into fields; returns the offset of the blank line (or len). A
 * last field without a line ending gets one (owned copy), so nothing added after it is glued
 * onto it. */
static size_t headers_split(const char *h, size_t len, struct hlist *l)
{
	size_t i = 0;

	while (i < len) {
		if ((h[i] == '\r' && i + 1 < len && h[i + 1] == '\n') || h[i] == '\n')
			return i;	/* the empty line */
		size_t s = i;
		/* A field runs to the LF not followed by WSP. */
		for (;;) {
			const char *nl = memchr(h + i, '\n', len - i);
			i = nl ? (size_t)(nl - h) + 1 : len;
			if (i >= len || (h[i] != ' ' && h[i] != '\t'))
				break;
		}
		struct hfield f = { .text = h + s, .len = i - s };
		if (h[i - 1] != '\n') {
			f.owned = malloc(f.len + 3);
			if (f.owned == NULL)
				abort();
			memcpy(f.owned, h + s, f.len);
			memcpy(f.owned + f.len, "\r\n", 3);
			f.text = f.owned;
			f.len += 2;
		}
		hlist_insert(l, l->n, f);
	}
	return len;
}

size_t headers_field_name_len(const char *line, size_t len)
{
	size_t n = 0;

	if (len == 0 || line[0] == ' ' || line[0] == '\t')
		return 0;
	while (n < len && line[n] != ':' && line[n] != '\n')
		n++;
	if (n >= len || line[n] != ':')
		return 0;
	while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
		n--;
	return n;
}

static bool hfield_is(const struct hfield *f, const char *name)
{
	size_t fl = headers_field_name_len(f->text, f->len), nl = strlen(name);

	return fl > 0 && fl == nl && strncasecmp(f->text, name, nl) == 0;
}

/* The field's name starts with prefix (any case); "" is every line, a field or not. */
static bool hfield_has_prefix(const struct hfield *f, const char *prefix)
{
	const char *colon = memchr(f->text, ':', f->len);
	size_t pl = strlen(prefix);

	if (pl == 0)
		return true;
	return colon != NULL && (size_t)(colon - f->text) >= pl && strncasecmp(f->text, prefix, pl) == 0;
}

static void hfield_clear(struct hfield *f)
{
	free(f->owned);
	f->owned = NULL;
}

void headers_end_block(struct strbuf *out)
{
	size_t n = out->len;

	if ((n >= 3 && memcmp(out->v + n - 3, "\n\r\n", 3) == 0) || (n >= 2 && memcmp(out->v + n - 2, "\n\n", 2) == 0) ||
	    (n == 2 && memcmp(out->v, "\r\n", 2) == 0))
		return;
	if (n > 0 && out->v[n - 1] != '\n')
		strbuf_append(out, "\r\n", 2);   /* a last header line without its line end */
	strbuf_append(out, "\r\n", 2);
}

static int headers_apply(const char *hdr, size_t len, const struct hdr_edit *e, size_t n, struct strbuf *out,
    size_t top_at, bool drop_owned);

int headers_apply_edits(const char *hdr, size_t len, const struct hdr_edit *e, size_t n, struct strbuf *out)
{
	return headers_apply(hdr, len, e, n, out, out->len, false);
}

int headers_apply_edits_at(const char *hdr, size_t len, const struct hdr_edit *e, size_t n, struct strbuf *out,
    size_t top_at)
{
	return headers_apply(hdr, len, e, n, out, top_at, false);
}

int headers_apply_edits_owned(const char *hdr, size_t len, const struct hdr_edit *e, size_t n, struct strbuf *out,
    size_t top_at)
{
	return headers_apply(hdr, len, e, n, out, top_at, true);
}

/* The list position before which a field goes to be the want-th (0-based) of the fields
 * present (deleted ones are not counted, nor a sender's field mxgate owns: no filter is shown
 * one, smtp_tx_data_end), from position from on. */
static size_t hlist_position(const struct hlist *l, size_t from, size_t want)
{
	size_t at = from, seen = 0;

	while (at < l->n && seen < want) {
		if (!l->v[at].deleted)
			seen++;
		at++;
	}
	return at;
}

static int headers_apply(const char *hdr, size_t len, const struct hdr_edit *e, size_t n, struct strbuf *out,
    size_t top_at, bool drop_owned)
{
	struct hlist l = { 0 };
	size_t sep, ntop = 0, toplen = 0;	/* fields above our Received: l.v[0..ntop) */

	if (n == 0 && (!drop_owned || !ownfields_block_has(hdr, len))) {
		strbuf_append(out, hdr, len);
		return 0;
	}
	sep = headers_split(hdr, len, &l);
	/* the sender's copies of mxgate's fields go first: an edit (mxgate's own field among
	 * them) adds after this, whatever stage asked for it */
	for (size_t i = 0; drop_owned && i < l.n; i++)
		if (ownfields_is(l.v[i].text, headers_field_name_len(l.v[i].text, l.v[i].len)))
			l.v[i].deleted = true;
	/* Edits apply in order, each seeing the result of the ones before it. */
	for (size_t k = 0; k < n; k++) {
		const struct hdr_edit *x = &e[k];
		if (!headers_name_ok(x->name) &&
		    !(x->op == HDR_DELETE_PREFIX && x->name && x->name[0] == '\0'))
			continue;	/* a name that could inject or forge a field is dropped;
					 * the empty prefix (every line) injects nothing */
		switch (x->op) {
		case HDR_ADD:
			hlist_insert(&l, l.n, hfield_make(x->name, x->value));
			break;
		case HDR_INSERT:
			/* index counts the fields present now (deleted ones are not counted), below
			 * our Received */
			hlist_insert(&l, hlist_position(&l, ntop, x->index < 0 ? 0 : (size_t)x->index),
			    hfield_make(x->name, x->value));
			break;
		case HDR_INSERT_DELIVERED: {
			/* index counts the block as delivered: the fields above our Received, the
			 * Received, the rest (Postfix's cleanup inserts relative to the message as
			 * delivered). At most as many as are above it: the new one goes there too. */
			size_t want = x->index < 0 ? 0 : (size_t)x->index, above = 0;
			struct hfield f = hfield_make(x->name, x->value);

			for (size_t i = 0; i < ntop; i++)
				above += !l.v[i].deleted;
			if (want <= above) {
				f.top = true;
				hlist_insert(&l, hlist_position(&l, 0, want), f);
				ntop++;
			} else {
				hlist_insert(&l, hlist_position(&l, ntop, want - above - 1), f);
			}
			break;
		}
		case HDR_CHANGE: {
			int seen = 0, want = x->index > 0 ? x->index : 1;
			bool done = false;
			for (size_t i = 0; i < l.n && !done; i++) {
				if (l.v[i].deleted || !hfield_is(&l.v[i], x->name) || ++seen != want)
					continue;
				if (x->value == NULL) {
					hfield_clear(&l.v[i]);
					l.v[i].deleted = true;
				} else {
					/* Keep the field's own spelling of its name. */
					char nm[256];
					size_t nl = (size_t)((const char *)memchr(l.v[i].text, ':', l.v[i].len) - l.v[i].text);
					while (nl > 0 && (l.v[i].text[nl - 1] == ' ' || l.v[i].text[nl - 1] == '\t'))
						nl--;
					if (nl >= sizeof(nm))
						nl = sizeof(nm) - 1;
					memcpy(nm, l.v[i].text, nl);
					nm[nl] = '\0';
					struct hfield f = hfield_make(headers_name_ok(nm) ? nm : x->name, x->value);
					f.top = l.v[i].top;
					hfield_clear(&l.v[i]);
					l.v[i] = f;
				}
				done = true;
			}
			/* Changing a header that is not there adds it (milter semantics). */
			if (!done && x->value)
				hlist_insert(&l, l.n, hfield_make(x->name, x->value));
			break;
		}
		case HDR_DELETE_ALL:
			for (size_t i = 0; i < l.n; i++)
				if (!l.v[i].deleted && hfield_is(&l.v[i], x->name))
					l.v[i].deleted = true;
			break;
		case HDR_DELETE_PREFIX:
			for (size_t i = 0; i < l.n; i++)
				if (!l.v[i].deleted && hfield_has_prefix(&l.v[i], x->name) &&
				    !(x->value && hfield_has_prefix(&l.v[i], x->value)))
					l.v[i].deleted = true;
			break;
		}
	}
	for (size_t i = 0; i < l.n; i++) {
		if (!l.v[i].deleted)
			strbuf_append(out, l.v[i].text, l.v[i].len);
		if (!l.v[i].deleted && i < ntop)
			toplen += l.v[i].len;
	}
	strbuf_append(out, hdr + sep, len - sep);
	if (toplen > 0) {
		/* The top fields were written first of this call's fields, at start: moved to
		 * top_at, above what lies between (our Received). */
		size_t start = out->len - (len - sep);
		char *tmp;

		for (size_t i = 0; i < l.n; i++)
			if (!l.v[i].deleted)
				start -= l.v[i].len;
		if (top_at < start) {
			if ((tmp = malloc(toplen)) == NULL)
				abort();
			memcpy(tmp, out->v + start, toplen);
			memmove(out->v + top_at + toplen, out->v + top_at, start - top_at);
			memcpy(out->v + top_at, tmp, toplen);
			free(tmp);
		}
	}
	for (size_t i = 0; i < l.n; i++)
		hfield_clear(&l.v[i]);
	free(l.v);
	return 0;
}
