/* actions.c — score to verdict, and the X-Spam-* header values; see actions.h. */
#include "actions.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int actions_rank(enum rule_action a)
{
	switch (a) {
	case RULE_ACT_REJECT: return 5;
	case RULE_ACT_TEMPFAIL: return 4;
	case RULE_ACT_QUARANTINE: return 3;
	case RULE_ACT_DISCARD: return 2;
	case RULE_ACT_ACCEPT: return 1;
	default: return 0;
	}
}

void actions_greylist_verdict(struct verdict *v)
{
	verdict_set(v, VERDICT_TEMPFAIL, 451, "greylist", "4.7.1 greylisted, try again later");
	v->not_an_error = true;    /* every first sight gets it: not the client's error */
}

const char *actions_decide(const struct actions_thresholds *t, double score,
    enum rule_action immediate, const char *immediate_rule, struct verdict *v)
{
	const char *rule = immediate_rule ? immediate_rule : "";

	score = round(score * 1000) / 1000;     /* SA decides on the score to 3 decimals */
	verdict_set(v, VERDICT_CONTINUE, 0, NULL, NULL);
	switch (immediate) {
	case RULE_ACT_REJECT:
		verdict_set(v, VERDICT_REJECT, 550, "rules", "5.7.1 message rejected (%s)", rule);
		return "reject";
	case RULE_ACT_TEMPFAIL:
		verdict_set(v, VERDICT_TEMPFAIL, 451, "rules",
		    "4.7.1 message deferred (%s), try again later", rule);
		return "tempfail";
	case RULE_ACT_QUARANTINE:
		verdict_set(v, VERDICT_QUARANTINE, 0, "rules", NULL);
		return "quarantine";
	case RULE_ACT_DISCARD:
		verdict_set(v, VERDICT_DISCARD, 0, "rules", NULL);
		return "discard";
	case RULE_ACT_ACCEPT:
		/* an allow-list rule: deliver whatever the score */
		return "accept";
	default:
		break;
	}
	if (t->reject > 0 && score >= t->reject) {
		verdict_set(v, VERDICT_REJECT, 550, "spam", "5.7.1 spam message rejected");
		return "reject";
	}
	bool quarantine = t->quarantine > 0 && score >= t->quarantine;
	bool tempfail = t->tempfail > 0 && score >= t->tempfail;

	if (quarantine && (!tempfail || t->quarantine >= t->tempfail)) {
		/* amavis's kill_level with $spam_quarantine_to: kept, not delivered */
		verdict_set(v, VERDICT_QUARANTINE, 0, "spam", NULL);
		return "quarantine";
	}
	if (tempfail) {
		verdict_set(v, VERDICT_TEMPFAIL, 451, "spam",
		    "4.7.1 message looks like spam, try again later");
		return "tempfail";
	}
	if (t->greylist > 0 && score >= t->greylist) {
		/* rspamd's greylist action: below the refusals, above add_header (whose headers
		 * the retry that passes still gets) */
		actions_greylist_verdict(v);
		return "greylist";
	}
	if (t->add_header > 0 && score >= t->add_header)
		return "add_header";
	return "none";
}

/* How much of the message a decision keeps from its recipients: deliveries 0 (the word
 * "add_header" below "none"), greylist 2 (delivered on its retry), quarantine 3, tempfail
 * 4, reject 5. */
static int actions_severity(const struct verdict *v, const char *word)
{
	switch (v->action) {
	case VERDICT_QUARANTINE: return 3;
	case VERDICT_TEMPFAIL: return strcmp(word, "greylist") == 0 ? 2 : 4;
	case VERDICT_REJECT: return 5;
	case VERDICT_DISCARD: return 6;  /* immediate only: every recipient's */
	default: return strcmp(word, "add_header") == 0 ? 0 : 1;
	}
}

const char *actions_decide_recipients(const struct actions_thresholds *t, size_t n, double score,
    enum rule_action immediate, const char *immediate_rule, struct verdict *v, double *required)
{
	const char *word = actions_decide(&t[0], score, immediate, immediate_rule, v);
	int sev = actions_severity(v, word);
	double req = t[0].required;

	for (size_t i = 1; i < n; i++) {
		struct verdict vi;
		const char *wi = actions_decide(&t[i], score, immediate, immediate_rule, &vi);
		int si = actions_severity(&vi, wi);

		if (si < sev) {
			*v = vi;
			word = wi;
			sev = si;
		}
		if (t[i].required < req)
			req = t[i].required;
	}
	if (required != NULL)
		*required = req;
	return word;
}

void actions_format_score(char *buf, size_t len, double score)
{
	/* SA prints with %2.1f; avoid "-0.0" */
	double r = round(score * 10) / 10;

	if (r == 0)
		r = 0;
	snprintf(buf, len, "%.1f", r);
}

/* Appends items with a separator, folding with "\n\t" when the line passes 78 columns. */
static size_t actions_fold_list(char *buf, size_t len, size_t o, size_t col,
    const char *const *items, size_t n, const char *sep)
{
	for (size_t i = 0; i < n && o + 1 < len; i++) {
		size_t il = strlen(items[i]) + (i + 1 < n ? strlen(sep) : 0);
		int w;

		if (i > 0 && col + il > 78) {
			while (o > 0 && buf[o - 1] == ' ')
				o--;	/* no white space at the end of a folded line */
			w = snprintf(buf + o, len - o, "\n\t");
			if (w < 0 || (size_t)w >= len - o)
				break;
			o += (size_t)w;
			col = 8;
		}
		w = snprintf(buf + o, len - o, "%s%s", items[i], i + 1 < n ? sep : "");
		if (w < 0 || (size_t)w >= len - o) {
			o = len - 1;
			break;
		}
		o += (size_t)w;
		col += (size_t)w;
	}
	return o;
}

/* Columns of n bytes at p as SpamAssassin's Util::wrap counts them: a tab is 8. */
static size_t actions_cols(const char *p, size_t n)
{
	size_t c = n;

	for (size_t i = 0; i < n; i++)
		c += p[i] == '\t' ? 7 : 0;
	return c;
}

/* The bytes of the piece of s that SA's split(/((?<=[\s,]))/) yields first: up to and
 * including the next white-space character or comma, or to the end. */
static size_t actions_piece(const char *s)
{
	size_t n = 0;

	while (s[n] != '\0' && s[n] != ',' && !isspace((unsigned char)s[n]))
		n++;
	return s[n] != '\0' ? n + 1 : n;
}

/* SpamAssassin's folding of an X-Spam-* field (PerMsgStatus::_process_header): Util::wrap
 * of "X-Spam-NAME!!VALUE" at 79 columns, breaking after white space or a comma, "\t" before
 * a continuation line, white space at the end of a folded line dropped. The split keeps an
 * empty separator between two pieces, which wrap merges like a piece: reproduced as is, so
 * the lines break where SpamAssassin's do. name_cols: "X-Spam-Status!!" is 15. Writes the
 * value (NUL-terminated, truncated to len-1) to out; returns bytes written. */
static size_t actions_sa_wrap(char *out, size_t len, const char *s, size_t name_cols)
{
	size_t o = 0, cur, n = actions_piece(s);
	bool sep, pos_mod = false;

	if (len == 0)
		return 0;
	n = n < len - 1 ? n : len - 1;
	memcpy(out, s, n);
	o = n;
	cur = name_cols + actions_cols(s, n);
	s += n;
	sep = *s != '\0';
	while ((sep || *s != '\0') && o + 2 < len) {
		size_t pn = sep ? 0 : actions_piece(s), pc = sep ? 0 : actions_cols(s, pn);

		if (cur + (pos_mod ? pc : 0) <= 79) {
			if (!sep) {
				pn = pn < len - 1 - o ? pn : len - 1 - o;
				memcpy(out + o, s, pn);
				o += pn;
				cur += pc;
				s += pn;
			}
			sep = !sep && *s != '\0';
			pos_mod = true;
			continue;
		}
		while (o > 0 && isspace((unsigned char)out[o - 1]))
			o--;
		out[o++] = '\n';
		out[o++] = '\t';
		cur = 8;
		pos_mod = false;
	}
	out[o] = '\0';
	return o;
}

bool actions_shown_score(char *s, char *r, double score, double required)
{
	double s3 = round(score * 1000) / 1000, shown;
	bool spam = s3 >= required;

	/* SA's $score = (sprintf "%0.3f", $score) + 0, then sprintf("%2.1f"): -0.002 is "-0.0"
	 * as SpamAssassin writes it, only an exact zero is "0.0" */
	if (s3 == 0)
		s3 = 0;
	snprintf(s, 32, "%.1f", s3);
	snprintf(r, 32, "%.1f", required);
	shown = strtod(s, NULL);
	if (spam && shown < strtod(r, NULL))
		snprintf(s, 32, "%s", r);
	else if (!spam && shown >= strtod(r, NULL))
		snprintf(s, 32, "%.1f", strtod(r, NULL) - 0.1);
	return spam;
}

size_t actions_format_status(char *buf, size_t len, double score, double required,
    const char *const *tests, size_t ntests, const char *tail)
{
	char s[32], r[32], *flat;
	size_t fl = 64, o;
	int w;
	bool spam;

	if (len == 0)
		return 0;
	spam = actions_shown_score(s, r, score, required);
	/* the unfolded value first, then SA's folding of it */
	for (size_t i = 0; i < ntests; i++)
		fl += strlen(tests[i]) + 1;
	fl += tail ? strlen(tail) + 1 : 0;
	if ((flat = malloc(fl)) == NULL) {
		buf[0] = '\0';
		return 0;
	}
	w = snprintf(flat, fl, "%s, score=%s required=%s tests=", spam ? "Yes" : "No", s, r);
	o = w > 0 ? (size_t)w : 0;
	if (ntests == 0)
		o += (size_t)snprintf(flat + o, fl - o, "none");
	for (size_t i = 0; i < ntests; i++)
		o += (size_t)snprintf(flat + o, fl - o, "%s%s", i ? "," : "", tests[i]);
	if (tail && *tail)
		snprintf(flat + o, fl - o, " %s", tail);
	o = actions_sa_wrap(buf, len, flat, strlen("X-Spam-Status!!"));
	free(flat);
	return o;
}

size_t actions_format_symbols(char *buf, size_t len, const char *const *names,
    const double *scores, size_t n)
{
	char items[64][HOOK_SYMBOL_NAME_MAX + 32];
	const char *ptrs[64];
	size_t o = 0;

	if (len == 0)
		return 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i += 64) {
		size_t k = n - i < 64 ? n - i : 64;

		for (size_t j = 0; j < k; j++) {
			snprintf(items[j], sizeof(items[j]), "%s=%.3f", names[i + j], scores[i + j]);
			ptrs[j] = items[j];
		}
		if (i > 0 && o + 3 < len) {
			memcpy(buf + o, ",\n\t", 3);
			o += 3;
			buf[o] = '\0';
		}
		o = actions_fold_list(buf, len, o, i ? 8 : 16, ptrs, k, ", ");
	}
	return o;
}

char *actions_rewrite_subject(const char *tmpl, double score, double required, const char *old)
{
	static const char *const names[] = { "SCORE", "HITS", "REQD", "YESNO", "YESNOCAPS", NULL };
	char s[32], r[32];
	const char *vals[5];
	bool spam = actions_shown_score(s, r, score, required);
	size_t tl = 0, cap = strlen(tmpl) * 8 + 64, ol = old ? strlen(old) : 0;
	char *tag = malloc(cap), *out;

	if (tag == NULL)
		abort();
	vals[0] = s;
	vals[1] = s;
	vals[2] = r;
	vals[3] = spam ? "Yes" : "No";
	vals[4] = spam ? "YES" : "NO";
	/* _replace_tags: _NAME_ of a known tag becomes its value, any other stays as written */
	for (const char *p = tmpl; *p;) {
		bool done = false;

		if (*p == '_')
			for (int k = 0; names[k] && !done; k++) {
				size_t nl = strlen(names[k]);

				if (strncmp(p + 1, names[k], nl) == 0 && p[1 + nl] == '_') {
					tl += (size_t)snprintf(tag + tl, cap - tl, "%s", vals[k]);
					p += nl + 2;
					done = true;
				}
			}
		if (!done) {
			/* $tag =~ s/\n/ /gs */
			tag[tl++] = (*p == '\n' || *p == '\r') ? ' ' : *p;
			p++;
		}
	}
	tag[tl] = '\0';
	/* s/^([^:]+:)[ \t]*(?:\Q$tag\E )?/$1 $tag /i on the field's first line */
	if (old != NULL) {
		while (*old == ' ' || *old == '\t')
			old++;
		if (strncasecmp(old, tag, tl) == 0 && old[tl] == ' ')
			old += tl + 1;
		ol = strlen(old);
	}
	out = malloc(tl + ol + 2);
	if (out == NULL)
		abort();
	memcpy(out, tag, tl);
	out[tl] = ' ';
	memcpy(out + tl + 1, old ? old : "", ol + 1);
	free(tag);
	return out;
}
