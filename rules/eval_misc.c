/* eval_misc.c — SpamAssassin's FreeMail tests: a sender, Reply-To or other header address
 * at a free mail provider (freemail_domains in the rule files), and Reply-To addresses
 * that differ from the freemail addresses in the body. Semantics of
 * Mail::SpamAssassin::Plugin::FreeMail 4.0.1. */
#include "eval_int.h"

#include <ctype.h>
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

/* an address in text (the user part at most 64 bytes, a known-looking TLD) */
static struct eval_rx fm_email = { "(?=.{0,64}\\@)(?<![a-z0-9!#\\$%&'*+\\/=?^_`{|}~-])"
	"([a-z0-9!#\\$%&'*+\\/=?^_`{|}~-]+(?:\\.[a-z0-9!#\\$%&'*+\\/=?^_`{|}~-]+)*\\@"
	"(?:[a-z0-9](?:[a-z0-9-]{0,59}[a-z0-9])?\\.){1,4}(?:[a-z]{2,24}|xn--[a-z0-9-]{2,59}))"
	"(?![a-z0-9-])", RULE_RE_I, NULL };

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

/* SA's _parse_body: the freemail addresses in the body (mailto: links and text), or
 * false when there are too many addresses to judge. */
static bool fm_body(struct eval_ctx *c, const char ***out, size_t *nout)
{
	static struct eval_rx mailto = { "^(?i:mailto):", 0, NULL };
	static struct eval_rx url_at = { "<?https?://\\S{0,255}(?:\\@|%40)\\S{0,255}", RULE_RE_I, NULL };
	const struct rules_lines *body = &c->sc->body, *uris = &c->sc->uris;
	const char *emails[64];
	size_t ne = 0, all = 0, fm = 0;
	const char **res = eval_alloc(c, 64 * sizeof(char *));
	size_t nres = 0;

	for (size_t i = 0; i < uris->nlines && ne < 20; i++) {
		const char *s;
		size_t len, ov[4];

		rules_line_at(uris, i, &s, &len);
		if (!eval_rx_match(c, &mailto, s, len))
			continue;
		if (eval_rx_groups(c, &fm_email, s + 7, len - 7, ov, 2) && ov[2] == 0) {
			char *e = eval_strndup(c, s + 7, ov[3]);
			bool dup = false;

			e = fm_lower(c, e);
			for (size_t j = 0; j < ne && !dup; j++)
				dup = strcmp(emails[j], e) == 0;
			if (!dup)
				emails[ne++] = e;
		}
	}
	for (size_t i = 0; i < body->nlines && ne < 40; i++) {
		const char *s;
		size_t len, off = 0, ov[4];
		char *line;

		rules_line_at(body, i, &s, &len);
		line = eval_strndup(c, s, len);
		/* drop URLs carrying an '@' */
		while (eval_rx_groups(c, &url_at, line + off, strlen(line + off), ov, 1)) {
			memset(line + off + ov[0], ' ', ov[1] - ov[0]);
			off += ov[1];
		}
		off = 0;
		while (ne < 40 && eval_rx_groups(c, &fm_email, line + off, strlen(line + off), ov, 2)) {
			char *e = fm_lower(c, eval_strndup(c, line + off + ov[2], ov[3] - ov[2]));
			bool dup = false;

			for (size_t j = 0; j < ne && !dup; j++)
				dup = strcmp(emails[j], e) == 0;
			if (!dup)
				emails[ne++] = e;
			off += ov[1] > ov[0] ? ov[1] : ov[1] + 1;
		}
	}
	for (size_t i = 0; i < ne; i++) {
		if (++all == 5)
			return false;          /* freemail_max_body_emails, skip when over */
		if (!eval_is_freemail(c, emails[i]))
			continue;
		if (++fm == 3)
			return false;          /* freemail_max_body_freemails */
		res[nres++] = emails[i];
	}
	*out = res;
	*nout = nres;
	return true;
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
