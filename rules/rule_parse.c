/* rule_parse.c — SpamAssassin-syntax rule files into rule definitions; see rule_parse.h.
 *
 * Mirrors Mail::SpamAssassin::Conf where it matters: an unescaped '#' starts a comment and
 * "\#" becomes '#', the first word is the directive, later lines for the same rule name
 * override earlier ones, `if`/`ifplugin` blocks nest, unknown directives are ignored (they
 * configure SA features we do not emulate). */
#include "rule_src_int.h"
#include "hook.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- small lexing helpers */

struct rule_line {
	struct rule_src *s;
	const char *file;
	int lineno;
	const char *start;   /* the line as stored (after comment removal), for columns */
};

static int rule_col(const struct rule_line *l, const char *p) { return (int)(p - l->start) + 1; }

const char *rule_skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static const char *rule_word_end(const char *p)
{
	while (*p && *p != ' ' && *p != '\t')
		p++;
	return p;
}

static bool rule_is_name_char(int c) { return isalnum(c) || c == '_' || c == '.' || c == '-'; }

bool rule_word_is(const char *p, const char *e, const char *w)
{
	size_t n = strlen(w);

	return (size_t)(e - p) == n && strncasecmp(p, w, n) == 0;
}

/* Parses a Perl match operator: /re/flags or m<delim>re<delim>flags. */
int rule_parse_regex(const char **pp, char **re, unsigned *flags, const char **err)
{
	const char *p = *pp, *b;
	char open, close;
	int depth = 0;

	*re = NULL;
	*flags = 0;
	if (*p == '/') {
		open = close = '/';
	} else if (*p == 'm' && p[1] && !isalnum((unsigned char)p[1]) && p[1] != ' ' &&
	    p[1] != '\t' && p[1] != '_') {
		p++;
		open = *p;
		switch (open) {
		case '{': close = '}'; break;
		case '(': close = ')'; break;
		case '[': close = ']'; break;
		case '<': close = '>'; break;
		default: close = open; break;
		}
	} else {
		*err = "expected /regex/ or m{regex}";
		return -1;
	}
	b = ++p;
	for (; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (open != close && *p == open) {
			depth++;
		} else if (*p == close) {
			if (depth == 0)
				break;
			depth--;
		}
	}
	if (*p != close) {
		*err = "unterminated regex";
		return -1;
	}
	*re = rule_strndup(b, (size_t)(p - b));
	for (p++; isalpha((unsigned char)*p); p++) {
		switch (*p) {
		case 'i': *flags |= RULE_RE_I; break;
		case 'm': *flags |= RULE_RE_M; break;
		case 's': *flags |= RULE_RE_S; break;
		case 'x': *flags |= RULE_RE_X; break;
		case 'g': case 'o': case 'u': case 'a': case 'l': case 'd': case 'p': break;
		default:
			free(*re);
			*re = NULL;
			*err = "unknown regex modifier";
			return -1;
		}
	}
	*pp = p;
	return 0;
}


/* ---------------------------------------------------------------- directives */

static bool rule_active(const struct rule_src *s)
{
	for (int i = 0; i < s->depth; i++)
		if (!s->cond[i])
			return false;
	return true;
}

static void rule_set_where(struct rule_def *d, const struct rule_line *l, const char *p)
{
	free(d->file);
	d->file = rule_strdup(l->file);
	d->line = l->lineno;
	d->col = rule_col(l, p);
}

static void rule_reset_body(struct rule_def *d)
{
	free(d->re); d->re = NULL;
	free(d->hdr); d->hdr = NULL;
	free(d->hdr_req); d->hdr_req = NULL;
	free(d->if_unset); d->if_unset = NULL;
	free(d->expr); d->expr = NULL;
	free(d->cidr); d->cidr = NULL;
	free(d->eval_fn); d->eval_fn = NULL;
	free(d->eval_args); d->eval_args = NULL;
	free(d->re_compact); d->re_compact = NULL;
	d->re_flags = 0;
	d->negate = false;
	d->sel = HDR_SEL_VALUE;
	d->skip = SKIP_NONE;
	d->defined = true;
}

static bool rule_is_eval(const char *p)
{
	return strncmp(p, "eval:", 5) == 0 || strncmp(p, "rbleval:", 8) == 0 ||
	    strncmp(p, "check_", 6) == 0;
}

/* eval:NAME(ARGS) (also rbleval:, or a bare check_NAME(...)): keeps the function name and
 * the argument text for the compiler, which knows which functions exist (rules/eval.c).
 * rbleval: rules are DNS list lookups: network tests, skipped as such. */
static int rule_parse_eval(const struct rule_line *l, struct rule_def *d, const char *p)
{
	const char *b, *e, *a, *ae;

	if (strncmp(p, "rbleval:", 8) == 0) {
		d->skip = SKIP_NET;
		return 0;
	}
	if (strncmp(p, "eval:", 5) == 0)
		p += 5;
	b = p;
	while (isalnum((unsigned char)*p) || *p == '_')
		p++;
	e = p;
	p = rule_skip_ws(p);
	if (e == b || (*p != '(' && *p != '\0')) {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, b),
		    "%s: expected eval:function(arguments)", d->name);
		return -1;
	}
	a = ae = p;
	if (*p == '(') {
		a = p + 1;
		ae = strrchr(a, ')');
		if (ae == NULL || *rule_skip_ws(ae + 1) != '\0') {
			rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, p),
			    "%s: unbalanced parentheses in eval arguments", d->name);
			return -1;
		}
	}
	d->eval_fn = rule_strndup(b, (size_t)(e - b));
	d->eval_args = rule_strndup(a, (size_t)(ae - a));
	return 0;
}

/* " [if-unset: X]" after a header regex, as SpamAssassin's s/\s+\[if-unset:\s+(.+)\]$//
 * reads it: white space before it and after the colon, a value of at least one character
 * (kept as written, trailing blanks too), the ']' last on the line; anything else after the
 * regex makes SA's regex invalid and drops the rule: an error here too. */
static int rule_parse_if_unset(const struct rule_line *l, struct rule_def *d, const char *p)
{
	const char *q = rule_skip_ws(p), *v, *e;

	if (*q == '\0')
		return 0;
	if (q == p || strncmp(q, "[if-unset:", 10) != 0) {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, q),
		    "%s: unexpected text after regex", d->name);
		return -1;
	}
	v = q + 10;
	e = v + strlen(v);
	if (e == v || e[-1] != ']') {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, q),
		    "%s: unterminated [if-unset:", d->name);
		return -1;
	}
	e--;
	if (e - v < 2 || (*v != ' ' && *v != '\t')) {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, q),
		    "%s: [if-unset: needs a space and a value before ']'", d->name);
		return -1;
	}
	v = rule_skip_ws(v);
	if (v >= e)
		v = e - 1;                 /* all blanks: \s+ leaves .+ the last one */
	d->if_unset = rule_strndup(v, (size_t)(e - v));
	return 0;
}

static int rule_parse_re_at(const struct rule_line *l, struct rule_def *d, const char **p)
{
	const char *err = NULL, *at = *p;

	if (rule_parse_regex(p, &d->re, &d->re_flags, &err) < 0) {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, at), "%s: %s", d->name, err);
		d->defined = false;
		return -1;
	}
	return 0;
}

/* header NAME Hdr[:sel] =~ /re/ [if-unset: X] | exists:Hdr | eval:... */
static int rule_parse_header(const struct rule_line *l, struct rule_def *d, const char *p)
{
	const char *b = p, *e;

	if (rule_is_eval(p))
		return rule_parse_eval(l, d, p);
	if (strncmp(p, "exists:", 7) == 0) {
		p += 7;
		e = rule_word_end(p);
		if (e == p) {
			rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, p),
			    "%s: exists: needs a header name", d->name);
			return -1;
		}
		d->hdr = rule_strndup(p, (size_t)(e - p));
		d->sel = HDR_SEL_EXISTS;
		if (*rule_skip_ws(e) != '\0') {
			rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, rule_skip_ws(e)),
			    "%s: unexpected text after header name", d->name);
			return -1;
		}
		return 0;
	}
	while (*p && *p != ' ' && *p != '\t' && *p != '=' && *p != '!')
		p++;
	if (p == b) {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, b),
		    "%s: missing header name", d->name);
		return -1;
	}
	e = memchr(b, ':', (size_t)(p - b));
	d->hdr = rule_strndup(b, (size_t)((e ? e : p) - b));
	d->hdr_req = rule_strndup(b, (size_t)(p - b));
	/* selectors, possibly chained: From:name:raw */
	while (e && e < p) {
		const char *sel = e + 1, *se = memchr(sel, ':', (size_t)(p - sel));
		size_t sl;

		if (se == NULL)
			se = p;
		sl = (size_t)(se - sel);
		if (sl == 3 && strncmp(sel, "raw", 3) == 0) {
			if (d->sel == HDR_SEL_VALUE)
				d->sel = HDR_SEL_RAW;
		} else if (sl == 4 && strncmp(sel, "addr", 4) == 0) {
			d->sel = HDR_SEL_ADDR;
		} else if (sl == 4 && strncmp(sel, "name", 4) == 0) {
			d->sel = HDR_SEL_NAME;
		} else if (!(sl == 0 || (sl == 4 && strncmp(sel, "host", 4) == 0) ||
		    (sl == 6 && strncmp(sel, "domain", 6) == 0) ||
		    (sl == 2 && strncmp(sel, "ip", 2) == 0) ||
		    (sl == 5 && strncmp(sel, "revip", 5) == 0) ||
		    (sl == 5 && strncmp(sel, "first", 5) == 0) ||
		    (sl == 4 && strncmp(sel, "last", 4) == 0))) {
			/* host/domain/ip/... are approximated by the value */
			rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, sel),
			    "%s: unknown header selector", d->name);
			return -1;
		}
		e = se;
	}
	p = rule_skip_ws(p);
	if (p[0] == '=' && p[1] == '~') {
		d->negate = false;
	} else if (p[0] == '!' && p[1] == '~') {
		d->negate = true;
	} else {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, p),
		    "%s: expected =~ or !~", d->name);
		return -1;
	}
	p = rule_skip_ws(p + 2);
	if (rule_parse_re_at(l, d, &p) < 0)
		return -1;
	return rule_parse_if_unset(l, d, p);
}

static int rule_parse_plain_re(const struct rule_line *l, struct rule_def *d, const char *p)
{
	if (rule_is_eval(p))
		return rule_parse_eval(l, d, p);
	if (rule_parse_re_at(l, d, &p) < 0)
		return -1;
	p = rule_skip_ws(p);
	if (*p) {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, p),
		    "%s: unexpected text after regex", d->name);
		return -1;
	}
	return 0;
}

/* envelope NAME helo|from|rcpt|rdns =~ /re/ ;  envelope NAME ip =~ /re/ | ip CIDR */
static int rule_parse_envelope(const struct rule_line *l, struct rule_def *d, const char *p)
{
	const char *e = rule_word_end(p);

	if (rule_word_is(p, e, "helo"))
		d->env_field = ENV_HELO;
	else if (rule_word_is(p, e, "from") || rule_word_is(p, e, "mail_from"))
		d->env_field = ENV_FROM;
	else if (rule_word_is(p, e, "rcpt") || rule_word_is(p, e, "to"))
		d->env_field = ENV_RCPT;
	else if (rule_word_is(p, e, "ip"))
		d->env_field = ENV_IP;
	else if (rule_word_is(p, e, "rdns"))
		d->env_field = ENV_RDNS;
	else {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, p),
		    "%s: envelope field must be helo, from, rcpt, ip or rdns", d->name);
		return -1;
	}
	p = rule_skip_ws(e);
	if (p[0] == '=' && p[1] == '~') {
		d->negate = false;
	} else if (p[0] == '!' && p[1] == '~') {
		d->negate = true;
	} else if (d->env_field == ENV_IP && *p) {
		e = rule_word_end(p);
		d->env_field = ENV_IP_CIDR;
		d->cidr = rule_strndup(p, (size_t)(e - p));
		if (*rule_skip_ws(e)) {
			rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, rule_skip_ws(e)),
			    "%s: unexpected text after CIDR", d->name);
			return -1;
		}
		return 0;
	} else {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, p),
		    "%s: expected =~ or !~", d->name);
		return -1;
	}
	p = rule_skip_ws(p + 2);
	return rule_parse_plain_re(l, d, p);
}

static int rule_parse_score(const struct rule_line *l, struct rule_def *d, const char *p)
{
	double v[4];
	int n = 0;

	while (*p && n < 4) {
		char *e;

		if (*p == '(')
			p++;
		v[n] = strtod(p, &e);
		if (e == p) {
			rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, p),
			    "%s: bad score", d->name);
			return -1;
		}
		p = e;
		if (*p == ')')
			p++;
		n++;
		p = rule_skip_ws(p);
	}
	if (n == 0 || *p || n == 3 || n == 2) {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, p),
		    "%s: score takes 1 or 4 numbers", d->name);
		return -1;
	}
	/* Score set 0 (no Bayes, no network tests) is the first value: SA's choice with
	 * use_bayes 0 and network tests off, which is how mxgate runs the rules. */
	d->score = v[0];
	d->score_bayes = n == 4 ? v[2] : v[0];
	d->has_score = true;
	return 0;
}

/* The tflags words that mean something here (publish, domains_only, a, ...: nothing). */
static const struct { const char *word; unsigned flag; } rule_tflag_words[] = {
	{ "net", RULE_TF_NET },
	{ "nice", RULE_TF_NICE },
	{ "multiple", RULE_TF_MULTIPLE },
	{ "noscore", RULE_TF_NOSCORE },
	{ "learn", RULE_TF_LEARN },
	{ "userconf", RULE_TF_USERCONF },
	{ "nosubject", RULE_TF_NOSUBJECT },
	{ "noautolearn", RULE_TF_NOAUTOLEARN },
	{ "autolearn_force", RULE_TF_AL_FORCE },
	{ "autolearn_header", RULE_TF_AL_HEADER },
	{ "autolearn_body", RULE_TF_AL_BODY },
	{ NULL, 0 }
};

static int rule_parse_tflags(const struct rule_line *l, struct rule_def *d, const char *p)
{
	d->tflags = 0;
	d->maxhits = 0;
	while (*p) {
		const char *e = rule_word_end(p);

		for (size_t i = 0; rule_tflag_words[i].word; i++)
			if (rule_word_is(p, e, rule_tflag_words[i].word))
				d->tflags |= rule_tflag_words[i].flag;
		if (e - p > 8 && strncmp(p, "maxhits=", 8) == 0)
			d->maxhits = atoi(p + 8);
		p = rule_skip_ws(e);
	}
	return 0;
}

static int rule_parse_action(const struct rule_line *l, struct rule_def *d, const char *p)
{
	const char *e = rule_word_end(p);

	if (rule_word_is(p, e, "reject"))
		d->action = RULE_ACT_REJECT;
	else if (rule_word_is(p, e, "tempfail"))
		d->action = RULE_ACT_TEMPFAIL;
	else if (rule_word_is(p, e, "discard"))
		d->action = RULE_ACT_DISCARD;
	else if (rule_word_is(p, e, "quarantine"))
		d->action = RULE_ACT_QUARANTINE;
	else if (rule_word_is(p, e, "accept"))
		d->action = RULE_ACT_ACCEPT;
	else if (rule_word_is(p, e, "none"))
		d->action = RULE_ACT_NONE;
	else {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, p),
		    "%s: action must be reject, tempfail, discard, quarantine, accept or none",
		    d->name);
		return -1;
	}
	if (*rule_skip_ws(e)) {
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, rule_skip_ws(e)),
		    "%s: unexpected text after action", d->name);
		return -1;
	}
	return 0;
}


/* bayes_ignore_header NAME: the first word is the header field's name, kept as written (the
 * stock 72_active.cf has "X-OVH-SPAMCAUSE:" and "x-purgate-eavas: clean": names no field
 * has, harmless, not errors that would fail `mxgate -t` on the stock rules). */
static void rule_parse_ignore_header(const struct rule_line *l, const char *p)
{
	const char *e = rule_word_end(p);

	if (e == p)
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, p),
		    "bayes_ignore_header: missing header name");
	else if (rule_add_ignore_header(l->s, p, (size_t)(e - p)) < 0)
		rule_src_add_error(l->s, l->file, l->lineno, rule_col(l, p),
		    "bayes_ignore_header: more than %d names", RULE_MAX_IGNORE);
}

enum rule_directive {
	DIR_HEADER = 0, DIR_BODY, DIR_RAWBODY, DIR_FULL, DIR_URI, DIR_MIMEHEADER, DIR_META,
	DIR_ENVELOPE, DIR_SCORE, DIR_DESCRIBE, DIR_TFLAGS, DIR_ACTION, DIR_REPLACE_RULES,
	DIR_PRIORITY, DIR_BAYES_IGNORE_HEADER, DIR_OTHER,
};

static const struct { const char *word; enum rule_directive dir; } rule_directives[] = {
	{ "header", DIR_HEADER }, { "body", DIR_BODY }, { "rawbody", DIR_RAWBODY },
	{ "full", DIR_FULL }, { "uri", DIR_URI }, { "mimeheader", DIR_MIMEHEADER },
	{ "meta", DIR_META }, { "envelope", DIR_ENVELOPE }, { "score", DIR_SCORE },
	{ "describe", DIR_DESCRIBE }, { "tflags", DIR_TFLAGS }, { "action", DIR_ACTION },
	{ "replace_rules", DIR_REPLACE_RULES }, { "priority", DIR_PRIORITY },
	{ "bayes_ignore_header", DIR_BAYES_IGNORE_HEADER },
	{ NULL, DIR_OTHER }
};

/* include FILE (SpamAssassin's Conf::Parser): relative to the including file's directory. */
static void rule_parse_include(struct rule_line *l, const char *p)
{
	struct rule_src *s = l->s;
	const char *slash = strrchr(l->file, '/');
	size_t dl = p[0] == '/' || slash == NULL ? 0 : (size_t)(slash - l->file) + 1;
	char *path;

	if (*p == '\0') {
		rule_src_add_error(s, l->file, l->lineno, rule_col(l, p), "include: missing file name");
		return;
	}
	if (s->include_fn == NULL) {
		rule_src_add_error(s, l->file, l->lineno, rule_col(l, p),
		    "include: not available here (only in rule files)");
		return;
	}
	if (s->include_depth >= RULE_MAX_INCLUDE) {
		rule_src_add_error(s, l->file, l->lineno, rule_col(l, p),
		    "include: nested more than %d deep", RULE_MAX_INCLUDE);
		return;
	}
	path = malloc(dl + strlen(p) + 1);
	if (path == NULL)
		abort();
	memcpy(path, l->file, dl);
	strcpy(path + dl, p);
	s->include_depth++;
	s->include_fn(s, path, l->file, l->lineno, rule_col(l, p), s->include_arg);
	s->include_depth--;
	free(path);
}

/* uri_detail NAME KEY =~ /re/ ... (SpamAssassin's URIDetail): a body eval,
 * check_uri_detail over the definition (rules/eval_list.c), true when one URI meets every
 * criterion. Keys raw, type, cleaned, text, domain and host (SA's URIDetail). 1 when the
 * line was taken as a rule. */
static int rule_parse_uri_detail(struct rule_line *l, const char *p)
{
	struct rule_src *s = l->s;
	const char *name = p, *ne = rule_word_end(p), *def = rule_skip_ws(ne), *q = def;
	int n = 0;
	struct rule_def *d;
	char *args, *o;

	while (*(q = rule_skip_ws(q))) {
		const char *k = q, *ke, *err = NULL, *at;
		char *re = NULL;
		unsigned fl = 0;

		while (isalnum((unsigned char)*q) || *q == '_')
			q++;
		ke = q;
		q = rule_skip_ws(q);
		if (ke == k || !((q[0] == '=' || q[0] == '!') && q[1] == '~')) {
			rule_src_add_error(s, l->file, l->lineno, rule_col(l, k),
			    "uri_detail %.*s: expected KEY =~ /regex/", (int)(ne - name), name);
			return -1;
		}
		at = q = rule_skip_ws(q + 2);
		if (q[0] == 'm' && (q[1] == '{' || q[1] == '(' || q[1] == '[' || q[1] == '<')) {
			/* URIDetail reads /re/ or m<c>re<c> with one delimiter twice: SA drops
			 * the rule ("failed to add invalid rule") */
			rule_src_add_error(s, l->file, l->lineno, rule_col(l, at), "uri_detail %.*s: "
			    "bracket delimiters are not read by SpamAssassin here, write /re/",
			    (int)(ne - name), name);
			return -1;
		}
		if (rule_parse_regex(&q, &re, &fl, &err) < 0) {
			rule_src_add_error(s, l->file, l->lineno, rule_col(l, at), "uri_detail %.*s: %s",
			    (int)(ne - name), name, err);
			return -1;
		}
		free(re);
		if (!rule_word_is(k, ke, "raw") && !rule_word_is(k, ke, "cleaned") &&
		    !rule_word_is(k, ke, "domain") && !rule_word_is(k, ke, "host") &&
		    !rule_word_is(k, ke, "type") && !rule_word_is(k, ke, "text")) {
			rule_src_add_error(s, l->file, l->lineno, rule_col(l, k),
			    "uri_detail %.*s: unknown key %.*s", (int)(ne - name), name,
			    (int)(ke - k), k);
			return -1;
		}
		n++;
	}
	if (ne == name || n == 0) {
		rule_src_add_error(s, l->file, l->lineno, rule_col(l, def),
		    "uri_detail: a name and KEY =~ /regex/ criteria expected");
		return -1;
	}
	d = rule_get_or_add(s, name, (size_t)(ne - name));
	if (d == NULL) {
		rule_src_add_error(s, l->file, l->lineno, 1, "too many rules");
		return -1;
	}
	rule_reset_body(d);
	rule_set_where(d, l, def);
	d->kind = RULE_BODY;
	d->eval_fn = rule_strdup("check_uri_detail");
	/* one single-quoted argument: \ and \' escaped (eval.c's argument reader) */
	args = malloc(2 * strlen(def) + 3);
	if (args == NULL)
		abort();
	o = args;
	*o++ = '\'';
	for (const char *c = def; *c; c++) {
		if (*c == '\\' || *c == '\'')
			*o++ = '\\';
		*o++ = *c;
	}
	*o++ = '\'';
	*o = '\0';
	d->eval_args = args;
	return 1;
}

/* SpamAssassin settings an operator's local.cf uses to act on spam, which mxgate reads
 * but does not apply: a warning naming what does it here (the stock files set
 * required_score 5, mxgate's default threshold: no warning for that). */
/* The add_header lines of SpamAssassin's 10_default_prefs.cf, white space runs as one
 * space: what mxgate writes (X-Spam-Status in that template since the autolearn= change,
 * -Flag, -Level) or what names SpamAssassin alone (Checker-Version). */
static bool rule_add_header_is_stock(const char *v)
{
	static const char *const stock[] = {
		"all Checker-Version SpamAssassin _VERSION_ (_SUBVERSION_) on _HOSTNAME_",
		"spam Flag _YESNOCAPS_",
		"all Level _STARS(*)_",
		"all Status \"_YESNO_, score=_SCORE_ required=_REQD_ tests=_TESTS_ "
		    "autolearn=_AUTOLEARN_ version=_VERSION_\"",
		NULL
	};
	char norm[256];
	size_t o = 0;

	for (; *v && o + 1 < sizeof(norm); v++)
		if (!isspace((unsigned char)*v) || (o > 0 && norm[o - 1] != ' '))
			norm[o++] = isspace((unsigned char)*v) ? ' ' : *v;
	while (o > 0 && norm[o - 1] == ' ')
		o--;
	norm[o] = '\0';
	for (int i = 0; stock[i]; i++)
		if (strcmp(norm, stock[i]) == 0)
			return true;
	return false;
}

/* Conf.pm's add_header STRING: the quotes around it dropped, then, between double
 * backslashes (each one backslash), \t a tab, \n a line break, any other escaped
 * character removed. malloc'd. */
static char *rule_header_template(const char *h, size_t n)
{
	char *out = malloc(n + 1), *o = out;

	if (out == NULL)
		abort();
	if (n >= 2 && h[0] == '"' && h[n - 1] == '"') {
		h++;
		n -= 2;
	}
	for (size_t i = 0; i < n; i++) {
		if (h[i] != '\\' || i + 1 >= n) {
			*o++ = h[i];
			continue;
		}
		i++;
		if (h[i] == '\\')
			*o++ = '\\';
		else if (h[i] == 't')
			*o++ = '\t';
		else if (h[i] == 'n')
			*o++ = '\n';
	}
	*o = '\0';
	return out;
}

/* add_header { spam | ham | all } NAME STRING and remove_header { spam | ham | all } NAME
 * (Conf.pm's syntax; anything else is its lint's "invalid value"), applied to the lists as
 * SpamAssassin applies them; -t warns of a tag in STRING mxgate does not expand and of an
 * X-Spam-Checker-Version mxgate does not write. */
static void rule_parse_header_line(struct rule_line *l, bool add, const char *v)
{
	struct rule_src *s = l->s;
	const char *te = rule_word_end(v), *n = rule_skip_ws(te), *ne = n, *h;
	int which = rule_word_is(v, te, "ham") ? 1 : rule_word_is(v, te, "spam") ? 2 :
	    rule_word_is(v, te, "all") ? 3 : 0;

	while (isalnum((unsigned char)*ne) || *ne == '_' || *ne == '-')
		ne++;
	h = rule_skip_ws(ne);
	/* Conf.pm matches ham|spam|all case-sensitively */
	if (which && strncmp(v, which == 1 ? "ham" : which == 2 ? "spam" : "all",
	    (size_t)(te - v)) != 0)
		which = 0;
	if (which == 0 || n == te || ne == n || (add ? (h == ne || *h == '\0') : *h != '\0')) {
		rule_src_add_error(s, l->file, l->lineno, rule_col(l, v), "%s: invalid value "
		    "(SpamAssassin's syntax: %s { spam | ham | all } NAME%s)",
		    add ? "add_header" : "remove_header", add ? "add_header" : "remove_header",
		    add ? " STRING" : "");
		return;
	}
	if (!add) {
		rule_src_set_header(s, which, n, (size_t)(ne - n), NULL);
		return;
	}
	{
		char *t = rule_header_template(h, strlen(h)), unk[256];

		rule_src_set_header(s, which, n, (size_t)(ne - n), t);
		if ((size_t)(ne - n) == 15 && strncasecmp(n, "Checker-Version", 15) == 0) {
			if (!rule_add_header_is_stock(v))
				rule_src_add_warning(s, l->file, l->lineno, 1, "add_header %.*s "
				    "Checker-Version is not applied: mxgate writes no "
				    "X-Spam-Checker-Version (version= in X-Spam-Status names mxgate's)",
				    (int)(te - v), v);
		} else if (addhdr_unknown_tags(t, unk, sizeof(unk))) {
			rule_src_add_warning(s, l->file, l->lineno, 1, "add_header %.*s %.*s: %s is "
			    "not expanded by mxgate (written as is)", (int)(te - v), v,
			    (int)(ne - n), n, unk);
		}
		free(t);
	}
}

static void rule_warn_setting(struct rule_line *l, const char *p, const char *e,
    const char *v)
{
	if (rule_word_is(p, e, "shortcircuit")) {
		rule_src_add_warning(l->s, l->file, l->lineno, 1, "shortcircuit %s is not applied: "
		    "mxgate does not run the Shortcircuit plugin, every rule runs and the total "
		    "decides", v);
	} else if ((rule_word_is(p, e, "loadplugin") || rule_word_is(p, e, "tryplugin")) &&
	    !rule_has_plugin(l->s, v, (size_t)(rule_word_end(v) - v))) {
		/* SpamAssassin loads it and its ifplugin blocks apply; mxgate runs the plugins
		 * Debian's spamd loads by default, no others */
		rule_src_add_warning(l->s, l->file, l->lineno, 1, "%.*s %.*s: mxgate does not run "
		    "this plugin; its ifplugin blocks are skipped", (int)(e - p), p,
		    (int)(rule_word_end(v) - v), v);
	} else if (rule_word_is(p, e, "rewrite_header"))
		rule_src_add_warning(l->s, l->file, l->lineno, 1, "rewrite_header %.*s is not "
		    "applied: mxgate rewrites the Subject only, but on spam it wraps into a report "
		    "(whose From and To it tags); the backend can file on "
		    "X-Spam-Status: Yes (rules.actions.add_header)",
		    (int)(rule_word_end(v) - v), v);
	else if ((rule_word_is(p, e, "required_score") || rule_word_is(p, e, "required_hits")) &&
	    strtod(v, NULL) != 5.0)
		rule_src_add_warning(l->s, l->file, l->lineno, 1, "%.*s %s is not applied: "
		    "mxgate's thresholds are rules.actions (add_header, tempfail, reject)",
		    (int)(e - p), p, v);
}

/* One logical line, comments removed, trimmed; l->start points at it. */
static void rule_parse_line(struct rule_line *l, char *line)
{
	struct rule_src *s = l->s;
	const char *p = line, *e, *name, *name_end;
	enum rule_directive dir = DIR_OTHER;
	struct rule_def *d;

	e = rule_word_end(p);
	/* "lang xx LINE": LINE for SpamAssassin running in locale xx (Conf/Parser.pm, before
	 * any other reading of the line). mxgate is SpamAssassin in the C.UTF-8 locale, where no
	 * lang line applies (nor in the stock files' de, fr, nl, pl, pt_BR texts): skipped, and
	 * not listed among the directives not applied, since SpamAssassin skips them too. */
	if (rule_word_is(p, e, "lang"))
		return;
	/* conditionals first: they apply even inside inactive blocks */
	if (rule_word_is(p, e, "if") || rule_word_is(p, e, "ifplugin")) {
		int v;

		if (s->depth >= RULE_MAX_DEPTH) {
			rule_src_add_error(s, l->file, l->lineno, 1, "if nested too deep");
			return;
		}
		if (*rule_skip_ws(e) == '\0') {
			/* an error, as in SpamAssassin; the block is taken as false so that its
			 * endif still closes it */
			rule_src_add_error(s, l->file, l->lineno, 1, "missing '%.*s' condition",
			    (int)(e - p), p);
			v = 0;
		} else if (rule_word_is(p, e, "ifplugin")) {
			const char *a = rule_skip_ws(e), *ae = rule_word_end(a);

			v = rule_has_plugin(s, a, (size_t)(ae - a));
		} else {
			v = rule_cond_eval(s, rule_skip_ws(e));
			if (v < 0) {
				rule_src_add_error(s, l->file, l->lineno, rule_col(l, rule_skip_ws(e)),
				    "bad if expression");
				v = 0;
			}
		}
		s->cond[s->depth++] = v;
		return;
	}
	if ((rule_word_is(p, e, "else") || rule_word_is(p, e, "endif")) && *rule_skip_ws(e) != '\0')
		rule_src_add_error(s, l->file, l->lineno, rule_col(l, rule_skip_ws(e)),
		    "'%.*s' must be standalone", (int)(e - p), p);
	if (rule_word_is(p, e, "else")) {
		if (s->depth == 0)
			rule_src_add_error(s, l->file, l->lineno, 1, "else without if");
		else
			s->cond[s->depth - 1] = !s->cond[s->depth - 1];
		return;
	}
	if (rule_word_is(p, e, "endif")) {
		if (s->depth == 0)
			rule_src_add_error(s, l->file, l->lineno, 1, "endif without if");
		else
			s->depth--;
		return;
	}
	if (!rule_active(s))
		return;
	if (rule_word_is(p, e, "include")) {
		rule_parse_include(l, rule_skip_ws(e));
		return;
	}

	for (size_t i = 0; rule_directives[i].word; i++)
		if (rule_word_is(p, e, rule_directives[i].word)) {
			dir = rule_directives[i].dir;
			break;
		}
	if (dir == DIR_BAYES_IGNORE_HEADER) {
		rule_parse_ignore_header(l, rule_skip_ws(e));
		return;
	}
	if (dir == DIR_OTHER) {
		/* ReplaceTags configuration */
		const char *a = rule_skip_ws(e), *ae = rule_word_end(a), *v = rule_skip_ws(ae);
		int kind = -1;

		if (rule_word_is(p, e, "replace_tag"))
			kind = 0;
		else if (rule_word_is(p, e, "replace_pre"))
			kind = 1;
		else if (rule_word_is(p, e, "replace_post"))
			kind = 2;
		else if (rule_word_is(p, e, "replace_inter"))
			kind = 3;
		else if (rule_word_is(p, e, "replace_start") && ae - a < 7 && ae > a) {
			memcpy(s->tag_start, a, (size_t)(ae - a));
			s->tag_start[ae - a] = '\0';
			return;
		} else if (rule_word_is(p, e, "replace_end") && ae - a < 7 && ae > a) {
			memcpy(s->tag_end, a, (size_t)(ae - a));
			s->tag_end[ae - a] = '\0';
			return;
		}
		if (kind >= 0) {
			if (ae == a || *v == '\0')
				rule_src_add_error(s, l->file, l->lineno, rule_col(l, a),
				    "replace tag needs a name and a value");
			else
				rule_add_tag(s, kind, a, (size_t)(ae - a), v);
			return;
		}
		if (rule_word_is(p, e, "uri_detail")) {
			if (rule_parse_uri_detail(l, a) == 0) {
				rule_note_ignored(s, p, (size_t)(e - p));
				s->ignored++;
			}
			return;
		}
		if (rule_word_is(p, e, "enable_compat")) {
			if (*rule_skip_ws(ae) != '\0' || rule_enable_compat(s, a, (size_t)(ae - a)) < 0)
				rule_src_add_error(s, l->file, l->lineno, rule_col(l, a),
				    "enable_compat: one name of letters, digits and _ expected");
			return;
		}
		if (!rule_sa_directive_known(p, (size_t)(e - p))) {
			/* SpamAssassin's lint: "failed to parse line" (a typo such as
			 * whitelist_form would otherwise be a list silently never applied) */
			rule_src_add_error(s, l->file, l->lineno, 1, "unknown directive '%.*s'",
			    (int)(e - p), p);
			return;
		}
		if (rule_word_is(p, e, "rewrite_header") && ae - a == 7 &&
		    strncasecmp(a, "subject", 7) == 0) {
			/* SpamAssassin's Conf.pm: split(/\s+/, $value, 2); a STRING with no visible
			 * character removes the rewrite; the last line wins */
			const char *t = rule_skip_ws(ae);

			free(s->rewrite_subject);
			s->rewrite_subject = *t ? rule_strdup(t) : NULL;
			return;
		}
		if (rule_word_is(p, e, "rewrite_header") && ((ae - a == 4 &&
		    strncasecmp(a, "from", 4) == 0) || (ae - a == 2 && strncasecmp(a, "to", 2) == 0))) {
			/* report_safe 1 or 2's wrapper tags its From or To (rewrite_report_safe);
			 * with report_safe 0 it is not applied (warned below). Conf.pm: () become
			 * [] in a From or To STRING; none removes it; the last line wins */
			const char *t = rule_skip_ws(ae);
			char **to = ae - a == 4 ? &s->safe.rewrite_from : &s->safe.rewrite_to;

			free(*to);
			*to = *t ? rule_strdup(t) : NULL;
			for (char *q = *to; q && *q; q++)
				*q = *q == '(' ? '[' : *q == ')' ? ']' : *q;
		}
		if (rule_word_is(p, e, "add_header") || rule_word_is(p, e, "remove_header")) {
			rule_parse_header_line(l, rule_word_is(p, e, "add_header"), a);
			return;
		}
		if (rule_word_is(p, e, "clear_headers")) {
			if (*a != '\0')
				rule_src_add_error(s, l->file, l->lineno, rule_col(l, a),
				    "clear_headers: invalid value (it takes none)");
			else
				rule_src_clear_headers(s);
			return;
		}
		if (rule_word_is(p, e, "report_safe")) {
			/* Conf.pm: /^[012]$/; 0 with no Report field in the spam list adds
			 * "Report _REPORT_" to it, as SpamAssassin's report_safe code does */
			bool has = false;

			if (!(a[0] >= '0' && a[0] <= '2' && a[1] == '\0')) {
				rule_src_add_error(s, l->file, l->lineno, rule_col(l, a),
				    "report_safe: invalid value (0, 1 or 2)");
				return;
			}
			s->report_safe = a[0] - '0';
			free(s->report_safe_file);
			s->report_safe_file = rule_strdup(l->file ? l->file : "-");
			s->report_safe_line = l->lineno;
			for (size_t i = 0; i < s->nhdrs[1]; i++)
				has |= strcasecmp(s->hdrs[1][i].name, "Report") == 0;
			if (s->report_safe == 0 && !has)
				rule_src_set_header(s, 2, "Report", 6, "_REPORT_");
			return;
		}
		if (rule_word_is(p, e, "report") || rule_word_is(p, e, "unsafe_report")) {
			/* Parser.pm's set_template_append: a value in double quotes loses them,
			 * each line appends itself and "\n" */
			char **t = rule_word_is(p, e, "report") ? &s->safe.report :
			    &s->safe.unsafe_report;
			size_t al = strlen(a), ol = *t ? strlen(*t) : 0;
			if (al >= 2 && a[0] == '"' && a[al - 1] == '"') {
				a++;
				al -= 2;
			}
			if ((*t = realloc(*t, ol + al + 2)) == NULL)
				abort();
			memcpy(*t + ol, a, al);
			memcpy(*t + ol + al, "\n", 2);
			return;
		}
		if (rule_word_is(p, e, "clear_report_template") ||
		    rule_word_is(p, e, "clear_unsafe_report_template")) {
			char **t = rule_word_is(p, e, "clear_report_template") ? &s->safe.report :
			    &s->safe.unsafe_report;

			if (*a != '\0') {
				rule_src_add_error(s, l->file, l->lineno, rule_col(l, a),
				    "%.*s: invalid value (it takes none)", (int)(e - p), p);
				return;
			}
			free(*t);
			*t = rule_strdup("");
			return;
		}
		if (rule_word_is(p, e, "report_contact") || rule_word_is(p, e, "report_charset") ||
		    rule_word_is(p, e, "report_hostname")) {
			char **t = rule_word_is(p, e, "report_contact") ? &s->safe.contact :
			    rule_word_is(p, e, "report_hostname") ? &s->safe.hostname :
			    &s->safe.charset;

			free(*t);
			*t = rule_strdup(a);
			return;
		}
		if (rule_word_is(p, e, "report_safe_copy_headers")) {
			/* push split(/\s+/, $value) */
			if (*a == '\0') {
				rule_src_add_error(s, l->file, l->lineno, rule_col(l, a),
				    "report_safe_copy_headers: missing value");
				return;
			}
			for (const char *w = a; *w; w = rule_skip_ws(rule_word_end(w))) {
				s->safe.copy = realloc(s->safe.copy, (s->safe.ncopy + 1) * sizeof(char *));
				if (s->safe.copy == NULL)
					abort();
				s->safe.copy[s->safe.ncopy++] = rule_strndup(w,
				    (size_t)(rule_word_end(w) - w));
			}
			return;
		}
		rule_warn_setting(l, p, e, a);
		if (!rule_keep_setting(s, p, (size_t)(e - p), a))
			rule_note_ignored(s, p, (size_t)(e - p));
		s->ignored++;
		return;
	}

	name = rule_skip_ws(e);
	name_end = name;
	while (rule_is_name_char((unsigned char)*name_end))
		name_end++;
	if (name_end == name || (*name_end && *name_end != ' ' && *name_end != '\t')) {
		rule_src_add_error(s, l->file, l->lineno, rule_col(l, name), "bad rule name");
		return;
	}
	if (name_end - name > HOOK_SYMBOL_NAME_MAX) {
		/* SpamAssassin's hard limit (Conf/Parser.pm), the longest symbol name */
		rule_src_add_error(s, l->file, l->lineno, rule_col(l, name),
		    "rule name too long (more than %d characters)", HOOK_SYMBOL_NAME_MAX);
		return;
	}
	if (dir == DIR_REPLACE_RULES) {
		/* replace_rules A B C */
		while (*name) {
			name_end = rule_word_end(name);
			d = rule_get_or_add(s, name, (size_t)(name_end - name));
			if (d)
				d->replace_tags = true;
			name = rule_skip_ws(name_end);
		}
		return;
	}
	d = rule_get_or_add(s, name, (size_t)(name_end - name));
	if (d == NULL) {
		rule_src_add_error(s, l->file, l->lineno, 1, "too many rules");
		return;
	}
	p = rule_skip_ws(name_end);
	switch (dir) {
	case DIR_HEADER: case DIR_BODY: case DIR_RAWBODY: case DIR_FULL: case DIR_URI:
	case DIR_MIMEHEADER: case DIR_META: case DIR_ENVELOPE:
		if (*p == '\0') {
			rule_src_add_error(s, l->file, l->lineno, rule_col(l, p),
			    "%s: missing rule definition", d->name);
			return;
		}
		rule_reset_body(d);
		rule_set_where(d, l, p);
		break;
	default:
		break;
	}
	switch (dir) {
	case DIR_HEADER:
		d->kind = RULE_HEADER;
		if (rule_parse_header(l, d, p) < 0)
			d->defined = false;
		break;
	case DIR_MIMEHEADER:
		d->kind = RULE_MIMEHEADER;
		if (rule_parse_header(l, d, p) < 0)
			d->defined = false;
		break;
	case DIR_BODY: d->kind = RULE_BODY; goto plain;
	case DIR_RAWBODY: d->kind = RULE_RAWBODY; goto plain;
	case DIR_FULL: d->kind = RULE_FULL; goto plain;
	case DIR_URI: d->kind = RULE_URI;
	plain:
		if (rule_parse_plain_re(l, d, p) < 0)
			d->defined = false;
		break;
	case DIR_META:
		d->kind = RULE_META;
		d->expr = rule_strdup(p);
		break;
	case DIR_ENVELOPE:
		d->kind = RULE_ENVELOPE;
		if (rule_parse_envelope(l, d, p) < 0)
			d->defined = false;
		break;
	case DIR_SCORE:
		rule_parse_score(l, d, p);
		break;
	case DIR_DESCRIBE:
		free(d->desc);
		d->desc = rule_strdup(p);
		break;
	case DIR_TFLAGS:
		rule_parse_tflags(l, d, p);
		break;
	case DIR_PRIORITY:
		d->priority = (int)strtol(p, NULL, 10);
		break;
	case DIR_ACTION:
		rule_parse_action(l, d, p);
		break;
	default:
		break;
	}
	if (!d->defined && (dir == DIR_HEADER || dir == DIR_BODY || dir == DIR_RAWBODY ||
	    dir == DIR_FULL || dir == DIR_URI || dir == DIR_MIMEHEADER || dir == DIR_ENVELOPE))
		d->kind = RULE_SYMBOL;
}

/* Feeds one file. Lines end at LF (a CR before it is dropped). */
int rule_src_feed(struct rule_src *s, const char *file, const char *text, size_t len)
{
	size_t before = s->nerrors, off = 0;
	struct rule_line l = { .s = s, .file = file ? file : "-" };
	int depth0 = s->depth;
	char *buf = malloc(RULE_MAX_LINE + 1);

	if (buf == NULL)
		abort();
	while (off < len) {
		const char *ln = text + off, *nl = memchr(ln, '\n', len - off);
		size_t n = nl ? (size_t)(nl - ln) : len - off, o = 0;
		bool esc = false;

		off += n + (nl ? 1 : 0);
		l.lineno++;
		if (n > RULE_MAX_LINE) {
			rule_src_add_error(s, l.file, l.lineno, 1, "line too long");
			continue;
		}
		if (n && ln[n - 1] == '\r')
			n--;
		if (memchr(ln, '\0', n)) {
			rule_src_add_error(s, l.file, l.lineno, 1, "NUL byte in line");
			continue;
		}
		/* SA: `s/(?<!\\)#.*$//; s/\\#/#/g` */
		for (size_t i = 0; i < n; i++) {
			if (ln[i] == '#' && !esc)
				break;
			if (ln[i] == '#' && esc) {
				buf[o - 1] = '#';
				esc = false;
				continue;
			}
			esc = ln[i] == '\\' && !esc;
			buf[o++] = ln[i];
		}
		while (o && (buf[o - 1] == ' ' || buf[o - 1] == '\t'))
			o--;
		buf[o] = '\0';
		{
			char *p = buf;

			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == '\0')
				continue;
			/* columns count from the line start: keep the indentation in l.start */
			l.start = buf;
			rule_parse_line(&l, p);
		}
	}
	if (s->depth != depth0) {
		rule_src_add_error(s, l.file, l.lineno, 1, "missing endif (%d open)",
		    s->depth - depth0);
		s->depth = depth0;
	}
	free(buf);
	return (int)(s->nerrors - before);
}
