/* rules_hdr.c — the header view of a message, as SpamAssassin's $pms->get() gives it to
 * header rules and evals: fields unfolded and RFC 2047-decoded, selectors (:raw :addr :name
 * :first :last), the pseudo-headers (ALL, ToCc, MESSAGEID, EnvelopeFrom, X-Spam-Relays-*,
 * ALL-TRUSTED ...), and the relay path behind several of them (received.c). */
#include "eval_int.h"

#include "charset.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HDR_MAX_FIELDS 1000

/* ^[\041-\071\073-\176]+[ \t]*: — a line that starts a header field */
static bool hdr_field_line(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && s[i] >= 041 && s[i] <= 0176 && s[i] != ':')
		i++;
	if (i == 0)
		return false;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return i < n && s[i] == ':';
}

static void hdr_add_field(struct rules_scratch *sc, const char *m, size_t hs, size_t he)
{
	const char *colon = memchr(m + hs, ':', he - hs);
	struct rules_hfield *f;

	if (colon == NULL || sc->nh >= HDR_MAX_FIELDS)
		return;             /* SA's split(/:/, $header, 2) left no value: not a field */
	if (sc->nh == sc->hcap) {
		size_t nc = sc->hcap ? sc->hcap * 2 : 32;
		struct rules_hfield *h = realloc(sc->h, nc * sizeof(*h));

		if (h == NULL)
			abort();
		sc->h = h;
		sc->hcap = nc;
	}
	f = &sc->h[sc->nh++];
	memset(f, 0, sizeof(*f));
	f->name = m + hs;
	f->nlen = (size_t)(colon - (m + hs));
	while (f->nlen && (f->name[f->nlen - 1] == ' ' || f->name[f->nlen - 1] == '\t'))
		f->nlen--;
	if (f->nlen > 256)
		f->nlen = 256;          /* MAX_HEADER_KEY_LENGTH */
	f->raw = colon + 1;
	f->rlen = (size_t)(m + he - f->raw);
	f->field = m + hs;
	f->flen = he - hs;
}

/* The header block as SA's Message->new reads it: an mbox "From " line skipped, fields
 * with their continuation lines, up to three lines that are no field tolerated (a line with
 * a ':' still makes one), the body starting at the blank line, at a "--" line or at the
 * fourth bad line. Returns the offset where the body starts. */
size_t rules_parse_headers(struct rules_scratch *sc, const char *m, size_t len)
{
	size_t i = 0, errors = 0, hs = SIZE_MAX, he = 0;
	const char *nl = memchr(m, '\n', len);

	rules_scratch_clear_headers(sc);
	/* CRLF when the first or the last line ends so */
	sc->hcrlf = (nl && nl > m && nl[-1] == '\r');
	if (!sc->hcrlf && len >= 2) {
		size_t e = len - (m[len - 1] == '\n' ? 1 : 0), b = e;

		while (b > 0 && m[b - 1] != '\n')
			b--;
		sc->hcrlf = memmem(m + b, len - b, "\r\n", 2) != NULL;
	}
	if (len > 5 && strncmp(m, "From", 4) == 0 && isspace((unsigned char)m[4]))
		i = nl ? (size_t)(nl - m) + 1 : len;        /* /^From\s+/: the mbox separator */
	sc->hstart = i;
	for (;;) {
		size_t ls = i, le;
		const char *e;

		if (ls >= len) {
			if (hs != SIZE_MAX)
				hdr_add_field(sc, m, hs, he);
			sc->hend = len;
			return len;
		}
		e = memchr(m + ls, '\n', len - ls);
		le = e ? (size_t)(e - m) + 1 : len;
		i = le;
		if (m[ls] == ' ' || m[ls] == '\t') {
			if (hs == SIZE_MAX)
				hs = ls;            /* a field starting with a continuation */
			he = le;
			continue;
		}
		if (hs != SIZE_MAX) {
			hdr_add_field(sc, m, hs, he);
			hs = SIZE_MAX;
		}
		/* the blank line (in CRLF mode a bare LF counts too) */
		if ((le - ls == 1 && m[ls] == '\n') ||
		    (sc->hcrlf && le - ls == 2 && m[ls] == '\r' && m[ls + 1] == '\n')) {
			sc->hend = ls;
			return le;
		}
		if (le - ls >= 2 && m[ls] == '-' && m[ls + 1] == '-') {
			sc->hend = ls;
			return ls;
		}
		if (!hdr_field_line(m + ls, le - ls) && ++errors > 3) {
			sc->hend = ls;
			return ls;
		}
		hs = ls;
		he = le;
	}
}

/* Node::raw_header: the value as received after the ':' (leading blanks, folds and the
 * final line break kept; CRLF as LF in a CRLF message), at most 65536 bytes. */
const char *rules_hfield_raw(struct rules_scratch *sc, struct rules_hfield *f)
{
	if (f->saraw == NULL) {
		size_t n = f->rlen < 65536 ? f->rlen : 65536, o = 0;
		char *d = malloc(n + 1);

		if (d == NULL)
			abort();
		for (size_t i = 0; i < n; i++) {
			if (sc->hcrlf && f->raw[i] == '\r' && i + 1 < n && f->raw[i + 1] == '\n')
				continue;
			d[o++] = f->raw[i];
		}
		d[o] = '\0';
		f->saraw = d;
	}
	return f->saraw;
}

/* Node::header's value before decoding: s/\n[ \t]+/ /g on the raw value, trimmed. */
const char *rules_hfield_unfolded(struct rules_scratch *sc, struct rules_hfield *f)
{
	if (f->unfolded == NULL) {
		const char *r = rules_hfield_raw(sc, f);
		size_t n = strlen(r), o = 0, b = 0;
		char *d = malloc(n + 1);

		if (d == NULL)
			abort();
		for (size_t i = 0; i < n; i++) {
			if (r[i] == '\n' && i + 1 < n && (r[i + 1] == ' ' || r[i + 1] == '\t')) {
				while (i + 1 < n && (r[i + 1] == ' ' || r[i + 1] == '\t'))
					i++;
				d[o++] = ' ';
				continue;
			}
			d[o++] = r[i];
		}
		while (o && isspace((unsigned char)d[o - 1]))
			o--;
		d[o] = '\0';
		while (d[b] && isspace((unsigned char)d[b]))
			b++;
		memmove(d, d + b, o - b + 1);
		f->unfolded = d;
	}
	return f->unfolded;
}

const char *rules_hfield_decoded(struct rules_scratch *sc, struct rules_hfield *f)
{
	if (f->decoded == NULL) {
		const char *u = rules_hfield_unfolded(sc, f);

		bool high = false;

		for (const char *p = u; *p && !high; p++)
			high = (unsigned char)*p >= 0x80;
		if (strstr(u, "=?") || high) {
			char name[128];

			snprintf(name, sizeof(name), "%.*s", (int)f->nlen, f->name);
			f->decoded = charset_decode_header(u, name);
		} else {
			f->decoded = rules_xstrdup(u);
		}
	}
	return f->decoded;
}

bool rules_name_is(const struct rules_hfield *f, const char *name)
{
	size_t n = strlen(name);

	return f->nlen == n && strncasecmp(f->name, name, n) == 0;
}

/* ---------------------------------------------------------------- relays */

const struct rcvd_info *eval_relays(struct eval_ctx *c)
{
	struct eval_msg *m = c->m;
	struct rules_scratch *sc = c->sc;
	const struct eval_conf *conf = c->conf;
	const char *rcvd[256], *orig[16];
	size_t nr = 0, no = 0;
	struct rcvd_relay client;
	bool have_client = false;

	if (m->rcvd_done)
		return &m->rcvd;
	for (size_t i = 0; i < sc->nh && nr < 256; i++)
		if (rules_name_is(&sc->h[i], "Received"))
			rcvd[nr++] = rules_hfield_decoded(sc, &sc->h[i]);
	/* originating_ip_headers: the last field of each name (get_header in scalar context) */
	for (size_t k = 0; conf && k < conf->norig && no < 16; k++) {
		const char *v = NULL;

		for (size_t i = 0; i < sc->nh; i++)
			if (rules_name_is(&sc->h[i], conf->orig_ip_headers[k]))
				v = rules_hfield_decoded(sc, &sc->h[i]);
		if (v && *v)
			orig[no++] = v;
	}
	if (conf && conf->client_relay && c->envl && c->envl->client_ip && *c->envl->client_ip) {
		received_client_relay(&client, c->envl->client_ip, c->envl->rdns, c->envl->helo,
		    conf->hostname, c->envl->mail_from);
		have_client = true;
	}
	received_info_build(&m->rcvd, rcvd, nr, orig, no, have_client ? &client : NULL,
	    conf ? &conf->rcvd : &(struct rcvd_conf){ 0 }, c->ms);
	m->rcvd_offset = have_client ? 1 : 0;
	m->rcvd_done = true;
	return &m->rcvd;
}

/* ---------------------------------------------------------------- SA's get() */

struct hdr_req {
	char name[128];
	bool raw, addr, dname, first, last;
};

static void hdr_req_parse(const char *req, struct hdr_req *r)
{
	const char *colon = strchr(req, ':');
	size_t n = colon ? (size_t)(colon - req) : strlen(req);

	memset(r, 0, sizeof(*r));
	if (n >= sizeof(r->name))
		n = sizeof(r->name) - 1;
	memcpy(r->name, req, n);
	r->name[n] = '\0';
	while (colon) {
		const char *s = colon + 1, *e = strchr(s, ':');
		size_t l = e ? (size_t)(e - s) : strlen(s);

		if (l == 3 && strncmp(s, "raw", 3) == 0)
			r->raw = true;
		else if (l == 4 && strncmp(s, "addr", 4) == 0)
			r->addr = true;
		else if (l == 4 && strncmp(s, "name", 4) == 0)
			r->dname = true;
		else if (l == 5 && strncmp(s, "first", 5) == 0)
			r->first = true;
		else if (l == 4 && strncmp(s, "last", 4) == 0)
			r->last = true;
		colon = e;
	}
}

/* Is there a Received field before the last field named name? (SA's "header found after
 * one or more Received lines": /^Received:.*?^NAME:/smi over ALL) */
static bool hdr_received_before(struct rules_scratch *sc, const char *name)
{
	bool seen = false;

	for (size_t i = 0; i < sc->nh; i++) {
		if (rules_name_is(&sc->h[i], "Received"))
			seen = true;
		else if (seen && rules_name_is(&sc->h[i], name))
			return true;
	}
	return false;
}

/* get("NAME:first:addr"): the first address of the first field so named, or NULL. */
static const char *hdr_first_addr(struct eval_ctx *c, const char *name)
{
	char req[160];
	const char *v[4];

	snprintf(req, sizeof(req), "%s:first:addr", name);
	return eval_get_all(c, req, v, 4) ? v[0] : NULL;
}

const char *eval_envelope_from(struct eval_ctx *c)
{
	struct eval_msg *m = c->m;
	const struct rcvd_info *ri;
	const struct rcvd_relay *last;
	const char *v;

	if (m->envfrom_done)
		return m->envfrom;
	m->envfrom_done = true;
	m->envfrom = NULL;
	if (c->conf && c->conf->envelope_sender_header) {
		v = hdr_first_addr(c, c->conf->envelope_sender_header);
		if (v && (strchr(v, '@') > v || *v == '\0'))
			m->envfrom = v;
		return m->envfrom;
	}
	ri = eval_relays(c);
	last = ri->nuntrusted ? ri->untrusted[0] : ri->ntrusted ? ri->trusted[ri->ntrusted - 1] :
	    NULL;
	if (last && last->has_envfrom && (strchr(last->envfrom, '@') > last->envfrom ||
	    last->envfrom[0] == '\0')) {
		m->envfrom = last->envfrom;
		return m->envfrom;
	}
	v = hdr_first_addr(c, "X-Sender");
	if (v && strchr(v, '@')) {
		for (size_t i = 0; i < c->sc->nh; i++)
			if (rules_name_is(&c->sc->h[i], "Received") &&
			    strstr(rules_hfield_decoded(c->sc, &c->sc->h[i]), "(fetchmail"))
				return NULL;
	}
	if ((v = hdr_first_addr(c, "X-Envelope-From")) != NULL) {
		if (!hdr_received_before(c->sc, "X-Envelope-From"))
			m->envfrom = v;
		return m->envfrom;
	}
	if ((v = hdr_first_addr(c, "Envelope-Sender")) != NULL &&
	    !hdr_received_before(c->sc, "Envelope-Sender")) {
		m->envfrom = v;
		return m->envfrom;
	}
	if ((v = hdr_first_addr(c, "Return-Path")) != NULL &&
	    !hdr_received_before(c->sc, "Return-Path"))
		m->envfrom = v;
	return m->envfrom;
}

/* "Name: value\n" lines of the fields from the Received numbered start (counting every
 * Received field from the top) on, or up to the one numbered end; -1 = open. */
static void hdr_rcvd_range(struct eval_ctx *c, int start, int end, bool raw,
    struct rules_buf *out)
{
	struct rules_scratch *sc = c->sc;
	int cur = -1;

	if (end < -1)
		return;
	for (size_t i = 0; i < sc->nh; i++) {
		struct rules_hfield *f = &sc->h[i];
		const char *v = raw ? rules_hfield_unfolded(sc, f) : rules_hfield_decoded(sc, f);
		bool take;

		if (rules_name_is(f, "Received"))
			cur++;
		take = (start < 0 || start <= cur) && (end < 0 || cur < end);
		if (take || (end >= 0 && cur == end)) {
			rules_buf_put(out, f->name, f->nlen);
			rules_buf_put(out, ": ", 2);
			rules_buf_put(out, v, strlen(v));
			rules_buf_put(out, "\n", 1);
			if (!take)
				break;
		}
	}
}

/* :name without :raw: the phrase decoded, white space normalized, single quotes off. */
static const char *hdr_name_decoded(struct eval_ctx *c, const char *phrase, const char *hdr)
{
	char nm[160], *d, *o;
	const char *p;
	bool any = false;

	snprintf(nm, sizeof(nm), "PMS:get:%s", hdr);
	d = charset_decode_header(phrase, nm);
	for (p = d; *p && !any; p++)
		any = !isspace((unsigned char)*p);
	if (any) {
		/* s/\s+/ /gs; trim; s/^'(.*?)'$/$1/ */
		o = d;
		for (p = d; *p;) {
			if (isspace((unsigned char)*p)) {
				while (isspace((unsigned char)*p))
					p++;
				*o++ = ' ';
				continue;
			}
			*o++ = *p++;
		}
		*o = '\0';
		p = d;
		while (*p == ' ')
			p++;
		memmove(d, p, strlen(p) + 1);
		o = d + strlen(d);
		while (o > d && o[-1] == ' ')
			*--o = '\0';
		if (d[0] == '\'' && strlen(d) >= 2 && d[strlen(d) - 1] == '\'') {
			/* lazy (.*?) then '$: the last quote closes */
			memmove(d, d + 1, strlen(d));
			d[strlen(d) - 1] = '\0';
		}
	}
	{
		const char *r = eval_strndup(c, d, strlen(d));

		free(d);
		return r;
	}
}

/* SA's _get() for one request: each value in out (at most max), arena strings. Values of
 * ordinary fields end in "\n" unless :addr/:name. Returns the count; *single is set for
 * pseudo-headers that are one string. */
static size_t hdr_values(struct eval_ctx *c, const char *request, const char **out, size_t max)
{
	struct rules_scratch *sc = c->sc;
	struct hdr_req r;
	const char *names[5] = { NULL };
	size_t n = 0;

	hdr_req_parse(request, &r);
	if (max == 0)
		return 0;
	if (strcmp(r.name, "ALL") == 0) {
		struct rules_buf b = { 0 };

		if (r.raw) {
			/* the header block as received, the blank line after it left out */
			if (sc->hend > sc->hstart)
				rules_buf_put(&b, c->msg + sc->hstart, sc->hend - sc->hstart);
		} else {
			for (size_t i = 0; i < sc->nh; i++) {
				const char *v = rules_hfield_decoded(sc, &sc->h[i]);

				rules_buf_put(&b, sc->h[i].name, sc->h[i].nlen);
				rules_buf_put(&b, ": ", 2);
				rules_buf_put(&b, v, strlen(v));
				rules_buf_put(&b, "\n", 1);
			}
		}
		if (b.n)
			out[n++] = eval_strndup(c, b.p, b.n);
		free(b.p);
		return n;
	}
	if (strncmp(r.name, "ALL-", 4) == 0) {
		const struct rcvd_info *ri = eval_relays(c);
		int off = c->m->rcvd_offset, lt = ri->last_trusted_relay_index - off,
		    li = ri->last_internal_relay_index - off;
		struct rules_buf b = { 0 };

		if (strcmp(r.name, "ALL-TRUSTED") == 0)
			hdr_rcvd_range(c, -1, lt + 1, r.raw, &b);
		else if (strcmp(r.name, "ALL-INTERNAL") == 0)
			hdr_rcvd_range(c, -1, li + 1, r.raw, &b);
		else if (strcmp(r.name, "ALL-UNTRUSTED") == 0)
			hdr_rcvd_range(c, lt + 1 < 0 ? 0 : lt + 1, -1, r.raw, &b);
		else if (strcmp(r.name, "ALL-EXTERNAL") == 0)
			hdr_rcvd_range(c, li + 1 < 0 ? 0 : li + 1, -1, r.raw, &b);
		if (b.n)
			out[n++] = eval_strndup(c, b.p, b.n);
		free(b.p);
		return n;
	}
	if (strcasecmp(r.name, "EnvelopeFrom") == 0) {
		const char *e = eval_envelope_from(c);

		if (e)
			out[n++] = e;
		return n;
	}
	if (strncasecmp(r.name, "X-Spam-Relays-", 14) == 0) {
		const struct rcvd_info *ri = eval_relays(c);
		const char *w = r.name + 14, *v = NULL;

		if (strcasecmp(w, "Untrusted") == 0)
			v = ri->untrusted_str;
		else if (strcasecmp(w, "Trusted") == 0)
			v = ri->trusted_str;
		else if (strcasecmp(w, "External") == 0)
			v = ri->external_str;
		else if (strcasecmp(w, "Internal") == 0)
			v = ri->internal_str;
		if (v) {
			out[n++] = v;
			return n;
		}
	}
	if (strcasecmp(r.name, "ToCc") == 0) {
		names[0] = "To";
		names[1] = "Cc";
	} else if (strcmp(r.name, "MESSAGEID") == 0) {
		names[0] = "X-Message-Id";
		names[1] = "Resent-Message-Id";
		names[2] = "X-Original-Message-ID";
		names[3] = "Message-Id";
	} else {
		names[0] = r.name;
	}
	for (int k = 0; names[k]; k++)
		for (size_t i = 0; i < sc->nh && n < max; i++) {
			struct rules_hfield *f = &sc->h[i];
			const char *v;

			if (!rules_name_is(f, names[k]))
				continue;
			if (names[1]) {
				/* ToCc and MESSAGEID take get_header(NAME, raw): raw values unfolded */
				if (r.raw) {
					const char *rv = rules_hfield_raw(sc, f);
					char *d = eval_alloc(c, strlen(rv) + 1), *o = d;

					/* s/\015?\012\s+/ /gs */
					for (const char *p = rv; *p;) {
						const char *q = p + (*p == '\r' && p[1] == '\n' ? 1 : 0);

						if (*q == '\n' && q[1] && isspace((unsigned char)q[1])) {
							q++;
							while (*q && isspace((unsigned char)*q))
								q++;
							*o++ = ' ';
							p = q;
							continue;
						}
						*o++ = *p++;
					}
					*o = '\0';
					v = d;
				} else {
					const char *dv = rules_hfield_decoded(sc, f);
					size_t l = strlen(dv);
					char *d = eval_strndup(c, dv, l + 1);

					d[l] = '\n';
					d[l + 1] = '\0';
					v = d;
				}
				if (names[2] && !*v)
					continue;     /* MESSAGEID drops empty values */
			} else if (r.raw || r.addr || r.dname) {
				v = rules_hfield_raw(sc, f);    /* raw_header(): folded, with "\n" */
			} else {
				const char *dv = rules_hfield_decoded(sc, f);
				size_t l = strlen(dv);
				char *d = eval_strndup(c, dv, l + 1);

				d[l] = '\n';
				d[l + 1] = '\0';
				v = d;
			}
			out[n++] = v;
		}
	if (n && r.first)
		n = 1;
	else if (n && r.last) {
		out[0] = out[n - 1];
		n = 1;
	}
	if (r.addr || r.dname) {
		const char *vals[64];
		size_t nv = n < 64 ? n : 64;

		memcpy(vals, out, nv * sizeof(char *));
		n = 0;
		for (size_t i = 0; i < nv && n < max; i++) {
			struct hdr_address ad[64];
			size_t na = hdr_parse_addresses(c, vals[i], ad, 64);

			for (size_t k = 0; k < na && n < max; k++) {
				if (r.addr) {
					if (ad[k].address)
						out[n++] = ad[k].address;
				} else if (ad[k].phrase) {
					out[n++] = r.raw ? ad[k].phrase : hdr_name_decoded(c, ad[k].phrase, r.name);
				}
			}
		}
	}
	return n;
}

/* The cache's slot for hash h and request: its entry of this message, else the free slot
 * where it goes (entries of earlier messages are free), else NULL (every slot taken). */
static inline struct eval_hdr_cache *hdr_cache_slot(struct eval_msg *m, uint32_t h,
    const char *request)
{
	size_t mask = m->hslots - 1;

	for (size_t k = 0; k < m->hslots; k++) {
		struct eval_hdr_cache *e = &m->hcache[(h + k) & mask];

		if (e->gen != m->gen || (e->hash == h && strcmp(e->req, request) == 0))
			return e;
	}
	return NULL;
}

/* Doubles the cache (from EVAL_HDR_CACHE_FIRST slots, up to EVAL_HDR_CACHE) when half its
 * slots are taken, its entries of this message moved over. It had EVAL_HDR_CACHE slots
 * (49 kB) in every scratch whatever the rules asked; a rule set asks for a few dozen to a
 * few hundred fields. */
static void hdr_cache_grow(struct eval_msg *m)
{
	size_t ns = m->hslots ? m->hslots * 2 : EVAL_HDR_CACHE_FIRST;
	struct eval_hdr_cache *old = m->hcache, *t;
	size_t olds = m->hslots;

	if (m->hslots >= EVAL_HDR_CACHE || (m->hslots && m->hused * 2 < m->hslots))
		return;
	t = calloc(ns, sizeof(*t));
	if (t == NULL)
		return;                        /* the cache as it is, full sooner */
	m->hcache = t;
	m->hslots = ns;
	for (size_t i = 0; i < olds; i++)
		if (old[i].gen == m->gen)
			*hdr_cache_slot(m, old[i].hash, old[i].req) = old[i];
	free(old);
}

/* hdr_values() once per message and request (header rules ask for the same fields many
 * times); at most 256 values. The cache entry, or NULL when the cache is full. The values
 * are got before a slot is taken: getting them may ask for other fields. */
static struct eval_hdr_cache *hdr_cache_entry(struct eval_ctx *c, const char *request)
{
	struct eval_msg *m = c->m;
	uint32_t h = 2166136261u;
	struct eval_hdr_cache *e;
	const char *v[256];
	size_t n;

	for (const char *p = request; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	e = hdr_cache_slot(m, h, request);
	if (e != NULL && e->gen == m->gen)
		return e;
	if (m->hused >= EVAL_HDR_CACHE)
		return NULL;
	n = hdr_values(c, request, v, 256);
	hdr_cache_grow(m);
	e = hdr_cache_slot(m, h, request);
	if (e == NULL)
		return NULL;
	if (e->gen != m->gen)
		m->hused++;
	e->n = n;
	e->v = eval_alloc(c, (n ? n : 1) * sizeof(char *));
	memcpy(e->v, v, n * sizeof(char *));
	e->req = eval_strndup(c, request, strlen(request));
	e->hash = h;
	e->gen = m->gen;
	e->joined = NULL;
	e->jlen = 0;
	return e;
}

static size_t hdr_values_cached(struct eval_ctx *c, const char *request, const char ***out)
{
	struct eval_hdr_cache *e = hdr_cache_entry(c, request);

	if (e != NULL) {
		*out = e->v;
		return e->n;
	}
	/* full: no caching */
	{
		const char **v = eval_alloc(c, 256 * sizeof(char *));

		*out = v;
		return hdr_values(c, request, v, 256);
	}
}

size_t eval_get_all(struct eval_ctx *c, const char *request, const char **out, size_t max)
{
	const char **v;
	size_t n = hdr_values_cached(c, request, &v);

	if (n > max)
		n = max;
	memcpy(out, v, n * sizeof(char *));
	return n;
}

bool eval_exists(struct eval_ctx *c, const char *request)
{
	const char **v;

	return hdr_values_cached(c, request, &v) > 0;
}

const char *eval_get(struct eval_ctx *c, const char *request)
{
	const char **v;
	size_t n = hdr_values_cached(c, request, &v), len = 0, o = 0;
	char *s;

	if (n == 0)
		return "";
	/* :addr, :name and EnvelopeFrom give the first value; others all, joined */
	if (strstr(request, ":addr") || strstr(request, ":name") ||
	    strcasecmp(request, "EnvelopeFrom") == 0) {
		size_t l = strlen(v[0]);

		if (l && v[0][l - 1] == '\n')
			return eval_strndup(c, v[0], l - 1);
		return v[0];
	}
	if (n == 1)
		return v[0];
	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]);
	s = eval_alloc(c, len + 1);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(v[i]);

		memcpy(s + o, v[i], l);
		o += l;
	}
	s[o] = '\0';
	return s;
}

/* Check.pm: join(first value ends in "\n" ? "" : "\n", values) into b (reset first). */
static void hdr_join(struct rules_buf *b, const char **v, size_t n)
{
	size_t l0 = n ? strlen(v[0]) : 0;
	bool nl = l0 && v[0][l0 - 1] == '\n';

	b->n = 0;
	rules_buf_put(b, "", 0);
	for (size_t i = 0; i < n; i++) {
		if (i && !nl)
			rules_buf_put(b, "\n", 1);
		rules_buf_put(b, v[i], strlen(v[i]));
	}
}

/* What a header rule sees: *val (len *vlen, NUL-terminated; valid for the message) — the
 * values joined once per message and request; false (and "") when the header is unset.
 * SA 4's header rules join get()'s list: values ending in "\n" as they are, others with
 * "\n". */
bool rules_header_value(struct rules_scratch *sc, const char *req, const char **val,
    size_t *vlen)
{
	struct eval_hdr_cache *e = hdr_cache_entry(&sc->ctx, req);
	const char **v;
	size_t n;

	if (e == NULL) {
		/* the cache is full: join into sc->tmp */
		n = hdr_values_cached(&sc->ctx, req, &v);
		hdr_join(&sc->tmp, v, n);
		*val = sc->tmp.p;
		*vlen = sc->tmp.n;
		return n > 0;
	}
	if (e->n == 0) {
		*val = "";
		*vlen = 0;
		return false;
	}
	if (e->joined == NULL) {
		char *j;

		hdr_join(&sc->tmp, e->v, e->n);
		j = eval_alloc(&sc->ctx, sc->tmp.n + 1);
		memcpy(j, sc->tmp.p, sc->tmp.n);
		j[sc->tmp.n] = '\0';
		e->joined = j;
		e->jlen = sc->tmp.n;
	}
	*val = e->joined;
	*vlen = e->jlen;
	return true;
}

/* $pms->get(req, '') in scalar context: the first value without its "\n" for a request
 * /:(?:addr|name|host|domain|ip|revip)\b/ or EnvelopeFrom, else the values joined with
 * nothing. malloc'd. */
static char *hdr_get_scalar(struct rules_scratch *sc, const char *req)
{
	static const char *const one[] = { "addr", "name", "host", "domain", "ip", "revip", NULL };
	const char *v[64];
	size_t k, tot = 0;
	char *out;
	bool first = strcmp(req, "EnvelopeFrom") == 0;

	for (const char *c = strchr(req, ':'); c && !first; c = strchr(c + 1, ':'))
		for (const char *const *w = one; *w && !first; w++) {
			size_t wl = strlen(*w);

			first = strncmp(c + 1, *w, wl) == 0 && !isalnum((unsigned char)c[1 + wl]) &&
			    c[1 + wl] != '_';
		}
	k = eval_get_all(&sc->ctx, req, v, first ? 1 : sizeof(v) / sizeof(v[0]));
	for (size_t i = 0; i < k; i++)
		tot += strlen(v[i]);
	if ((out = malloc(tot + 1)) == NULL)
		abort();
	tot = 0;
	for (size_t i = 0; i < k; i++) {
		memcpy(out + tot, v[i], strlen(v[i]));
		tot += strlen(v[i]);
	}
	if (first && tot > 0 && out[tot - 1] == '\n')
		tot--;
	out[tot] = '\0';
	return out;
}

/* PerMsgStatus's tags over the header view (%common_tags HEADER, LASTEXTERNAL*; the
 * RELAYS* set_tag of extract_message_metadata: the X-Spam-Relays-* pseudo-headers'
 * strings), for the message sc scanned last. */
char *rules_message_tag(struct rules_scratch *sc, const char *tag)
{
	static const char *const relays[][2] = { { "RELAYSTRUSTED", "X-Spam-Relays-Trusted" },
		{ "RELAYSUNTRUSTED", "X-Spam-Relays-Untrusted" },
		{ "RELAYSINTERNAL", "X-Spam-Relays-Internal" },
		{ "RELAYSEXTERNAL", "X-Spam-Relays-External" } };
	const struct rcvd_info *ri;
	const char *s = "";

	if (strncmp(tag, "HEADER(", 7) == 0) {
		size_t n = strlen(tag + 7);
		char req[256];

		/* return '' if !$hdr */
		if (n < 2 || tag[7 + n - 1] != ')' || n - 1 >= sizeof(req))
			return rules_xstrdup("");
		memcpy(req, tag + 7, n - 1);
		req[n - 1] = '\0';
		return hdr_get_scalar(sc, req);
	}
	for (size_t i = 0; i < sizeof(relays) / sizeof(relays[0]); i++)
		if (strcmp(tag, relays[i][0]) == 0)
			return hdr_get_scalar(sc, relays[i][1]);
	ri = eval_relays(&sc->ctx);
	if (ri->nexternal > 0 && strcmp(tag, "LASTEXTERNALIP") == 0)
		s = ri->external[0]->ip;
	else if (ri->nexternal > 0 && strcmp(tag, "LASTEXTERNALRDNS") == 0)
		s = ri->external[0]->rdns;
	else if (ri->nexternal > 0 && strcmp(tag, "LASTEXTERNALHELO") == 0)
		s = ri->external[0]->helo;
	return rules_xstrdup(s);
}
