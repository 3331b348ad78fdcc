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

/* Splits the header block into fields. Returns the offset where the body starts. */
size_t rules_parse_headers(struct rules_scratch *sc, const char *m, size_t len)
{
	size_t i = 0;

	rules_scratch_clear_headers(sc);
	while (i < len) {
		size_t ls = i, colon, ve;

		if (m[i] == '\n')
			return i + 1;
		if (m[i] == '\r' && i + 1 < len && m[i + 1] == '\n')
			return i + 2;
		/* one logical field: this line plus continuation lines */
		colon = i;
		while (colon < len && m[colon] != ':' && m[colon] != '\n')
			colon++;
		ve = colon;
		for (;;) {
			while (ve < len && m[ve] != '\n')
				ve++;
			if (ve + 1 < len && (m[ve + 1] == ' ' || m[ve + 1] == '\t')) {
				ve++;
				continue;
			}
			break;
		}
		i = ve < len ? ve + 1 : len;
		if (colon >= len || m[colon] != ':' || colon == ls)
			continue;         /* not a header line (an mbox separator ...): skipped */
		if (sc->nh == sc->hcap) {
			size_t nc = sc->hcap ? sc->hcap * 2 : 32;
			struct rules_hfield *h = realloc(sc->h, nc * sizeof(*h));

			if (h == NULL)
				abort();
			sc->h = h;
			sc->hcap = nc;
		}
		{
			struct rules_hfield *f = &sc->h[sc->nh++];
			size_t vs = colon + 1, e = ve;

			f->name = m + ls;
			f->nlen = colon - ls;
			while (f->nlen && (f->name[f->nlen - 1] == ' ' || f->name[f->nlen - 1] == '\t'))
				f->nlen--;
			while (vs < e && (m[vs] == ' ' || m[vs] == '\t'))
				vs++;
			while (e > vs && (m[e - 1] == '\r' || m[e - 1] == '\n'))
				e--;
			f->raw = m + vs;
			f->rlen = e > vs ? e - vs : 0;
			f->unfolded = NULL;
			f->decoded = NULL;
		}
		if (sc->nh >= HDR_MAX_FIELDS)
			break;
	}
	return len;
}

/* SA unfolds with s/\n[ \t]+/ /: a line break and the blanks after it become one space. */
const char *rules_hfield_unfolded(struct rules_hfield *f)
{
	if (f->unfolded == NULL) {
		char *d = malloc(f->rlen + 1);
		size_t o = 0;

		if (d == NULL)
			abort();
		for (size_t i = 0; i < f->rlen; i++) {
			if (f->raw[i] == '\r' && i + 1 < f->rlen && f->raw[i + 1] == '\n')
				continue;
			if (f->raw[i] == '\n') {
				while (i + 1 < f->rlen && (f->raw[i + 1] == ' ' || f->raw[i + 1] == '\t'))
					i++;
				d[o++] = ' ';
				continue;
			}
			d[o++] = f->raw[i];
		}
		while (o && isspace((unsigned char)d[o - 1]))
			o--;
		d[o] = '\0';
		f->unfolded = d;
	}
	return f->unfolded;
}

const char *rules_hfield_decoded(struct rules_hfield *f)
{
	if (f->decoded == NULL) {
		const char *u = rules_hfield_unfolded(f);

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

/* :addr — the first address of a value: inside <>, else the first word with '@'. */
static void hdr_sel_addr(const char *v, struct rules_buf *out)
{
	const char *lt = strchr(v, '<'), *gt;

	if (lt && (gt = strchr(lt, '>')) != NULL) {
		rules_buf_put(out, lt + 1, (size_t)(gt - lt - 1));
		return;
	}
	while (*v) {
		const char *b;

		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		b = v;
		while (*v && *v != ' ' && *v != '\t' && *v != ',')
			v++;
		if (memchr(b, '@', (size_t)(v - b)) || *v == '\0') {
			while (b < v && (*b == '(' || *b == '"'))
				b++;
			rules_buf_put(out, b, (size_t)(v - b));
			return;
		}
	}
}

/* Every address of a value (a comma-separated list), for list-context :addr. */
static size_t hdr_all_addrs(struct eval_ctx *c, const char *v, const char **out, size_t max)
{
	size_t n = 0;
	int depth = 0;
	bool quote = false;
	const char *b = v;

	for (const char *p = v;; p++) {
		if (*p == '"' && (p == v || p[-1] != '\\'))
			quote = !quote;
		else if (!quote && *p == '(')
			depth++;
		else if (!quote && *p == ')' && depth)
			depth--;
		if (*p == '\0' || (*p == ',' && !quote && depth == 0)) {
			struct rules_buf t = { 0 };
			char *one = eval_strndup(c, b, (size_t)(p - b));

			hdr_sel_addr(one, &t);
			if (t.p && t.n && n < max)
				out[n++] = eval_strndup(c, t.p, t.n);
			free(t.p);
			if (*p == '\0')
				break;
			b = p + 1;
		}
	}
	return n;
}

/* :name — the display name: before <> (unquoted), else a (comment). */
static void hdr_sel_name(const char *v, struct rules_buf *out)
{
	const char *lt = strchr(v, '<'), *b, *e;

	if (lt) {
		b = v;
		e = lt;
	} else if ((b = strchr(v, '(')) != NULL && (e = strchr(b, ')')) != NULL) {
		b++;
	} else {
		return;
	}
	while (b < e && (*b == ' ' || *b == '\t' || *b == '"'))
		b++;
	while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '"'))
		e--;
	rules_buf_put(out, b, (size_t)(e - b));
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
			rcvd[nr++] = rules_hfield_decoded(&sc->h[i]);
	/* originating_ip_headers: the last field of each name (get_header in scalar context) */
	for (size_t k = 0; conf && k < conf->norig && no < 16; k++) {
		const char *v = NULL;

		for (size_t i = 0; i < sc->nh; i++)
			if (rules_name_is(&sc->h[i], conf->orig_ip_headers[k]))
				v = rules_hfield_decoded(&sc->h[i]);
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

/* The first address of the first field so named, or NULL when there is none. */
static const char *hdr_first_addr(struct eval_ctx *c, const char *name)
{
	struct rules_scratch *sc = c->sc;

	for (size_t i = 0; i < sc->nh; i++)
		if (rules_name_is(&sc->h[i], name)) {
			struct rules_buf t = { 0 };
			const char *r;

			hdr_sel_addr(rules_hfield_unfolded(&sc->h[i]), &t);
			r = eval_strndup(c, t.p ? t.p : "", t.n);
			free(t.p);
			return r;
		}
	return NULL;
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
			    strstr(rules_hfield_decoded(&c->sc->h[i]), "(fetchmail"))
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
		const char *v = raw ? rules_hfield_unfolded(f) : rules_hfield_decoded(f);
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

		for (size_t i = 0; i < sc->nh; i++) {
			rules_buf_put(&b, sc->h[i].name, sc->h[i].nlen);
			rules_buf_put(&b, ": ", 2);
			if (r.raw)
				rules_buf_put(&b, sc->h[i].raw, sc->h[i].rlen);
			else {
				const char *v = rules_hfield_decoded(&sc->h[i]);

				rules_buf_put(&b, v, strlen(v));
			}
			rules_buf_put(&b, "\n", 1);
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
			const char *v;

			if (!rules_name_is(&sc->h[i], names[k]))
				continue;
			v = r.raw || r.addr ? rules_hfield_unfolded(&sc->h[i]) :
			    rules_hfield_decoded(&sc->h[i]);
			if (names[2] && !*v)
				continue;     /* MESSAGEID drops empty values; ToCc keeps them */
			if (r.addr || r.dname) {
				out[n++] = v;
				continue;
			}
			{
				size_t l = strlen(v);
				char *d = eval_strndup(c, v, l + 1);

				d[l] = '\n';
				d[l + 1] = '\0';
				out[n++] = d;
			}
		}
	if (n && r.first)
		n = 1;
	else if (n && r.last) {
		out[0] = out[n - 1];
		n = 1;
	}
	if (r.addr) {
		const char *vals[64];
		size_t nv = n < 64 ? n : 64;

		memcpy(vals, out, nv * sizeof(char *));
		n = 0;
		for (size_t i = 0; i < nv && n < max; i++)
			n += hdr_all_addrs(c, vals[i], out + n, max - n);
	} else if (r.dname) {
		for (size_t i = 0; i < n; i++) {
			struct rules_buf t = { 0 };

			hdr_sel_name(out[i], &t);
			out[i] = eval_strndup(c, t.p ? t.p : "", t.n);
			free(t.p);
		}
	}
	return n;
}

/* hdr_values() once per message and request (header rules ask for the same fields many
 * times); at most 256 values. */
static size_t hdr_values_cached(struct eval_ctx *c, const char *request, const char ***out)
{
	struct eval_msg *m = c->m;
	uint32_t h = 2166136261u;
	size_t slot;

	for (const char *p = request; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (size_t k = 0; k < EVAL_HDR_CACHE; k++) {
		struct eval_hdr_cache *e;

		slot = (h + k) & (EVAL_HDR_CACHE - 1);
		e = &m->hcache[slot];
		if (e->gen != m->gen) {
			const char *v[256];

			e->n = hdr_values(c, request, v, 256);
			e->v = eval_alloc(c, (e->n ? e->n : 1) * sizeof(char *));
			memcpy(e->v, v, e->n * sizeof(char *));
			e->req = eval_strndup(c, request, strlen(request));
			e->hash = h;
			e->gen = m->gen;
			*out = e->v;
			return e->n;
		}
		if (e->hash == h && strcmp(e->req, request) == 0) {
			*out = e->v;
			return e->n;
		}
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

/* What a header rule sees: sc->tmp holds the value; false when the header is unset. Header
 * rules get SA's get() in scalar context, except that :addr and :name give the first
 * field's first address / name. */
bool rules_header_value(struct rules_scratch *sc, const char *hdr, enum rule_hdr_sel sel,
    const struct rules_envelope *envl)
{
	char req[160];
	const char **v;
	size_t n;

	(void)envl;
	snprintf(req, sizeof(req), "%s%s", hdr, sel == HDR_SEL_RAW ? ":raw" :
	    sel == HDR_SEL_ADDR ? ":addr" : sel == HDR_SEL_NAME ? ":name" : "");
	sc->tmp.n = 0;
	rules_buf_put(&sc->tmp, "", 0);
	n = hdr_values_cached(&sc->ctx, req, &v);
	if (n == 0)
		return false;
	if (sel == HDR_SEL_ADDR || sel == HDR_SEL_NAME) {
		rules_buf_put(&sc->tmp, v[0], strlen(v[0]));
		return true;
	}
	for (size_t i = 0; i < n; i++)
		rules_buf_put(&sc->tmp, v[i], strlen(v[i]));
	return true;
}
