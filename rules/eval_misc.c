/* eval_misc.c — SpamAssassin's FreeMail tests: a sender, Reply-To or other header address
 * at a free mail provider (freemail_domains in the rule files), and Reply-To addresses
 * that differ from the freemail addresses in the body. Semantics of
 * Mail::SpamAssassin::Plugin::FreeMail 4.0.1. At the end, Bayes's check_bayes over the
 * learning classifier's verdict (bayes.c). */
#include "eval_int.h"

#include "bayes.h"
#include "uri.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* SA's default welcomelist of role and bounce addresses */
static struct eval_rx fm_welcome = { "^(?:abuse|support|sales|info|helpdesk|contact|kontakt"
	"|(?:post|host|domain)master|undisclosed.*|request-[a-f0-9]{16}|bounced?-"
	"|[a-f0-9]{8}(?:\\.[a-f0-9]{8}|-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})"
	"|.+=.+=.+)\\@", RULE_RE_I, NULL };

/* envelope senders of bulk mail: the Reply-To check is skipped for them */
static struct eval_rx fm_bulk_envfrom = { "(?:^(?:post|host|domain)master|^double-bounce"
	"|^(?:sentto|owner|return|(?:gr)?bounced?)-.+|-(?:request|bounces?|admin|owner)"
	"|\\b(?:do[._-t]?)?no[._-t]?repl(?:y|ies)|.+=.+)\\@", RULE_RE_I, NULL };

bool eval_is_freemail(struct eval_ctx *c, const char *email)
{
	const struct eval_conf *conf = c->conf;
	const char *at, *dom;

	if (email[0] == '\0')
		return false;
	if (eval_strset_has(&conf->freemail_welcome, email, strlen(email)))
		return false;
	at = strrchr(email, '@');
	dom = at ? at + 1 : email;
	if (eval_strset_has(&conf->freemail_welcome, dom, strlen(dom)))
		return false;
	if (eval_rx_str(c, &fm_welcome, email))
		return false;
	if (eval_strset_has(&conf->freemail, dom, strlen(dom)))
		return true;
	return conf->freemail_re && at &&
	    match_re_exec(conf->freemail_re, at, strlen(at), c->ms, 1) > 0;
}

static char *fm_lower(struct eval_ctx *c, const char *s)
{
	char *d = eval_strndup(c, s, strlen(s));

	for (char *p = d; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

/* check_freemail_header(HEADER[, REGEX]) */
EVAL_FN(eval_check_freemail_header)
{
	char req[160];
	const char *v[64];
	size_t n;

	if (c->conf->freemail.n == 0 && c->conf->freemail_re == NULL)
		return 0;
	snprintf(req, sizeof(req), "%s:addr", call->arg[0]);
	n = eval_get_all(c, req, v, 64);
	for (size_t i = 0; i < n; i++) {
		const char *e = fm_lower(c, v[i]);

		if (!eval_is_freemail(c, e))
			continue;
		if (call->data && match_re_exec(call->data, e, strlen(e), c->ms, 1) <= 0)
			continue;
		return 1;
	}
	return 0;
}

/* SA's all_from_addrs(): Resent-From when present, else From, Envelope-Sender,
 * Resent-Sender, X-Envelope-From and EnvelopeFrom; dots squeezed, duplicates dropped. */
size_t eval_all_from_addrs(struct eval_ctx *c, const char **out, size_t max)
{
	static const char *const reqs[] = { "From:addr", "Envelope-Sender:addr",
		"Resent-Sender:addr", "X-Envelope-From:addr", "EnvelopeFrom:addr", NULL };
	const char *v[64];
	size_t n = 0, nv;

	nv = eval_get_all(c, "Resent-From:first:addr", v, 64);
	if (nv == 0) {
		for (int k = 0; reqs[k] && n < 64; k++) {
			const char *t[64];
			size_t m = eval_get_all(c, reqs[k], t, 64 - n);

			for (size_t i = 0; i < m; i++)
				if (t[i][0])
					v[n++] = t[i];
		}
		nv = n;
	}
	n = 0;
	for (size_t i = 0; i < nv && n < max; i++) {
		char *e = fm_lower(c, v[i]), *o = e;
		bool dup = false;

		for (const char *p = e; *p; p++)          /* tr/././s */
			if (!(*p == '.' && o > e && o[-1] == '.'))
				*o++ = *p;
		*o = '\0';
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(out[j], e) == 0;
		if (!dup && e[0])
			out[n++] = e;
	}
	return n;
}

/* check_freemail_from([REGEX]) */
EVAL_FN(eval_check_freemail_from)
{
	const char *v[64];
	size_t n;

	if (c->conf->freemail.n == 0 && c->conf->freemail_re == NULL)
		return 0;
	n = eval_all_from_addrs(c, v, 64);
	for (size_t i = 0; i < n; i++) {
		if (!eval_is_freemail(c, v[i]))
			continue;
		if (call->data && match_re_exec(call->data, v[i], strlen(v[i]), c->ms, 1) <= 0)
			continue;
		return 1;
	}
	return 0;
}

/* Blanks out (one space each) the matches of re in s: a Perl s/RE/ /g. */
static char *fm_subst(struct eval_ctx *c, const struct match_re *re, const char *s, size_t n,
    size_t *outn)
{
	struct rules_buf b = { 0 };
	size_t off = 0, ov[2];
	char *r;

	rules_buf_put(&b, "", 0);
	while (re && off <= n && match_re_groups(re, s, n, off, c->ms, ov, 1) == 1) {
		rules_buf_put(&b, s + off, ov[0] - off);
		rules_buf_put(&b, " ", 1);
		off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
		if (ov[1] == ov[0] && ov[0] < n)
			rules_buf_put(&b, s + ov[0], 1);
	}
	if (off < n)
		rules_buf_put(&b, s + off, n - off);
	r = eval_strndup(c, b.p, b.n);
	*outn = b.n;
	free(b.p);
	return r;
}

/* SA's _parse_body, once per message: the addresses of <a href="mailto:..."> links, then
 * of the body text — which it blanks URLs with an '@' and "<address>" / "address wrote:"
 * out of, in the body array itself (so body rules that run after it, SA's priority order,
 * see the text changed: c->m->fm_mutated). False when there are too many to judge. */
static bool fm_body(struct eval_ctx *c, const char ***out, size_t *nout)
{
	static struct eval_rx url_at = { "<?https?://\\S{0,255}(?:\\@|%40)\\S{0,255}", RULE_RE_I,
		NULL };
	struct eval_msg *m = c->m;
	const struct match_re *email = uri_conf_email_re(c->conf->uri, false);
	const struct match_re *strip = uri_conf_email_re(c->conf->uri, true);
	const char *emails[64];
	size_t ne = 0, all = 0, fm = 0;

	if (m->fm_done) {
		*out = m->fm_list;
		*nout = m->fm_n;
		return !m->fm_skip;
	}
	m->fm_done = true;
	m->fm_list = eval_alloc(c, 64 * sizeof(char *));
	m->fm_n = 0;
	/* mailto: links of <a> tags (SA: types a, not parsed from text; a <form action>
	 * mailto is type form) */
	{
		const struct uri_details *d = eval_uri_details(c);

		for (size_t i = 0; i < d->n && ne < 20; i++) {
			const char *u = d->v[i].raw;
			size_t ov[4];

			if (!d->v[i].html || d->v[i].parsed || strncasecmp(u, "mailto:", 7) != 0 || !email ||
			    match_re_groups(email, u + 7, strlen(u + 7), 0, c->ms, ov, 2) != 1 || ov[0] != 0 ||
			    !eval_html_is_anchor(c, u))
				continue;
			{
				char *e = fm_lower(c, eval_strndup(c, u + 7 + ov[2], ov[3] - ov[2]));
				bool dup = false;

				for (size_t j = 0; j < ne && !dup; j++)
					dup = strcmp(emails[j], e) == 0;
				if (!dup)
					emails[ne++] = e;
			}
		}
	}
	/* the body text, changed in place */
	{
		struct rules_lines *body = &c->sc->body;
		struct rules_lines nb = { 0 };
		bool stop = false;

		for (size_t i = 0; i < body->nlines; i++) {
			const char *s;
			size_t len, n1, n2, off = 0, ov[4];
			char *l1, *l2;

			rules_line_at(body, i, &s, &len);
			if (stop) {
				rules_lines_add(&nb, s, len);
				continue;
			}
			l1 = fm_subst(c, eval_rx_get(&url_at), s, len, &n1);
			l2 = fm_subst(c, strip, l1, n1, &n2);
			rules_lines_add(&nb, l2, n2);
			if (n2 != len || memcmp(l2, s, len) != 0)
				m->fm_mutated = true;
			while (email && off < n2 && match_re_groups(email, l2, n2, off, c->ms, ov, 2) == 1) {
				char *e = fm_lower(c, eval_strndup(c, l2 + ov[2], ov[3] - ov[2]));
				bool dup = false;

				for (size_t j = 0; j < ne && !dup; j++)
					dup = strcmp(emails[j], e) == 0;
				if (!dup)
					emails[ne++] = e;
				off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
				if (ne >= 40) {
					stop = true;
					break;
				}
			}
		}
		if (m->fm_mutated)
			rules_lines_swap(body, &nb);
		rules_lines_free(&nb);
	}
	for (size_t i = 0; i < ne; i++) {
		if (++all == 5) {
			m->fm_skip = true;     /* freemail_max_body_emails, skip when over */
			break;
		}
		if (!eval_is_freemail(c, emails[i]))
			continue;
		if (++fm == 3) {
			m->fm_skip = true;     /* freemail_max_body_freemails */
			break;
		}
		m->fm_list[m->fm_n++] = emails[i];
	}
	if (m->fm_skip)
		m->fm_n = 0;
	*out = m->fm_list;
	*nout = m->fm_n;
	return !m->fm_skip;
}

/* check_freemail_replyto(['replyto' | 'reply']) */
EVAL_FN(eval_check_freemail_replyto)
{
	const char *what = call->nargs ? call->arg[0] : "replyto", *env;
	const char *from[64], *rto[64], **body, **reply;
	size_t nf, nr, nb, nreply;
	bool from_fm = false, rto_fm = false, not_in = true;

	if (c->conf->freemail.n == 0 && c->conf->freemail_re == NULL)
		return 0;
	if (strcmp(what, "replyto") != 0 && strcmp(what, "reply") != 0)
		return 0;
	env = eval_envelope_from(c);
	if (env && eval_rx_str(c, &fm_bulk_envfrom, env))
		return 0;
	nf = eval_get_all(c, "From:addr", from, 64);
	nr = eval_get_all(c, "Reply-To:addr", rto, 64);
	for (size_t i = 0; i < nf; i++) {
		from[i] = fm_lower(c, from[i]);
		from_fm |= eval_is_freemail(c, from[i]);
	}
	for (size_t i = 0; i < nr; i++) {
		rto[i] = fm_lower(c, rto[i]);
		rto_fm |= eval_is_freemail(c, rto[i]);
	}
	for (size_t i = 0; i < nf; i++)
		for (size_t j = 0; j < nr; j++)
			if (strcmp(from[i], rto[j]) == 0)
				not_in = false;
	if (from_fm && rto_fm && not_in)
		return 1;
	if (strcmp(what, "replyto") == 0) {
		if (!rto_fm)
			return 0;
	} else if (nr && !rto_fm) {
		return 0;
	} else if (!from_fm) {
		return 0;
	}
	if (!fm_body(c, &body, &nb) || nb == 0)
		return 0;
	if (strcmp(what, "replyto") == 0 || rto_fm) {
		reply = rto;
		nreply = nr;
	} else {
		reply = from;
		nreply = nf;
	}
	for (size_t i = 0; i < nb; i++)
		for (size_t j = 0; j < nreply; j++)
			if (strcmp(body[i], reply[j]) != 0)
				return 1;
	return 0;
}

EVAL_FN(eval_check_freemail_body)
{
	const char **body;
	size_t nb;

	if (c->conf->freemail.n == 0 && c->conf->freemail_re == NULL)
		return 0;
	if (!fm_body(c, &body, &nb))
		return 0;
	if (call->data) {
		for (size_t i = 0; i < nb; i++)
			if (match_re_exec(call->data, body[i], strlen(body[i]), c->ms, 1) > 0)
				return 1;
		return 0;
	}
	return nb > 0;
}

/* The optional regex argument of the freemail tests, compiled once per rule. */
int eval_prepare_regex_arg(struct eval_call *call, const char **err)
{
	int k = strcmp(call->def->name, "check_freemail_header") == 0 ? 1 : 0;
	struct match_re *re = NULL;
	char ebuf[160];

	if (call->nargs <= k)
		return 0;
	if (match_re_compile(call->arg[k], 0, &re, ebuf, sizeof(ebuf)) < 0) {
		*err = "bad regex argument";
		return -1;
	}
	call->data = re;
	return 0;
}

void eval_release_regex_arg(struct eval_call *call)
{
	match_re_free(call->data);
	call->data = NULL;
}

/* Bayes's check_bayes(min, max): the classifier's probability (computed before the scan,
 * rules.c) in (min, max] — [0, max] when min is 0; max 'undef' has no upper end. False
 * when the classifier is off, untrained or abstained (Plugin/Bayes.pm 4.0.1). */
EVAL_FN(eval_check_bayes)
{
	double lo = call->num[0], hi = call->nargs > 1 ? call->num[1] : NAN;

	if (c->bayes == NULL || isnan(lo))
		return 0;
	return bayes_check_range(c->bayes, lo, isnan(hi) ? INFINITY : hi);
}
