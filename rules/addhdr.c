/* addhdr.c — SpamAssassin's add_header fields: template tags, folding, RFC 2047 encoding of
 * a line that is not printable ASCII. Follows Mail::SpamAssassin 4.0.1's PerMsgStatus.pm
 * (%common_tags, _replace_tags, _process_header, mime_encode_header, check_cleanup's
 * REPORT) and Util.pm (wrap, time_to_rfc822_date). See addhdr.h. */
#include "addhdr.h"

#include "actions.h"
#include "headers.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- a growing string */

static void ah_puts(struct strbuf *b, const char *s)
{
	strbuf_append(b, s, strlen(s));
}

/* The string b holds ("" when nothing was appended), now the caller's. */
static char *ah_take(struct strbuf *b)
{
	if (b->v == NULL)
		strbuf_append(b, "", 0);
	return b->v;
}

/* ---------------------------------------------------------------- Util::wrap */

/* Columns as wrap counts them: a tab is 8. */
static size_t ah_cols(const char *s, size_t n)
{
	size_t c = n;

	for (const char *t = memchr(s, '\t', n); t; t = memchr(t + 1, '\t', n - (size_t)(t + 1 - s)))
		c += 7;
	return c;
}

static bool ah_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Util::wrap's state: its pieces are taken one at a time and the lines written as they are
 * decided, into one buffer (no copy of a piece, no list of them). */
struct ah_wrapper {
	struct strbuf out;
	size_t line;            /* where the line being filled ($arr[$pos]) starts in out */
	size_t cols;            /* its columns */
	size_t width;
	const char *prefix;
	size_t prefix_n, prefix_cols;
	bool started, pos_mod, fresh, overflow;
};

/* One piece of split(/($break)/, ...): the loop of wrap for $arr[$pos+1] */
static void ah_wrap_piece(struct ah_wrapper *w, const char *p, size_t n)
{
	size_t pc = ah_cols(p, n);

	if (!w->started) {
		strbuf_append(&w->out, p, n);
		w->cols = pc;
		w->started = true;
		return;
	}
	for (;;) {
		size_t l = w->cols;

		if (w->pos_mod && !w->overflow)
			l += pc;
		/* a prefix wider than width alone would be split off again and again (wrap
		 * loops there; no caller passes one): it takes the next piece */
		if (l <= w->width || w->fresh) {
			/* $arr[$pos] .= splice @arr, $pos+1, 1 */
			strbuf_append(&w->out, p, n);
			w->cols += pc;
			w->pos_mod = true;
			w->fresh = false;
			return;
		}
		/* $arr[$pos] =~ s/\s+$//; the prefix starts the next line */
		while (w->out.len > w->line && ah_space(w->out.v[w->out.len - 1]))
			w->out.v[--w->out.len] = '\0';
		strbuf_append(&w->out, "\n", 1);
		w->line = w->out.len;
		strbuf_append(&w->out, w->prefix, w->prefix_n);
		w->cols = w->prefix_cols;
		w->pos_mod = false;
		w->fresh = true;
	}
}

/* Util::wrap with overflow: true lets a line grow past width by its last piece. */
static char *ah_wrap(const char *s, const char *prefix, const char *first, size_t width,
    bool after_comma, bool overflow)
{
	struct ah_wrapper w = { .width = width, .prefix = prefix, .prefix_n = strlen(prefix),
	    .overflow = overflow };
	size_t len = strlen(s), start = 0;
	bool empty = false;     /* an empty piece after a comma or space, not yet taken */

	w.prefix_cols = ah_cols(prefix, w.prefix_n);
	if (first && *first)
		ah_wrap_piece(&w, first, strlen(first));
	/* split(/($break)/, $string): the fields and the captured separators between them
	 * (\s: the white-space character; (?<=[\s,]): an empty one); trailing empty fields
	 * dropped, so the empty one after the last comma or space waits for a field */
	for (size_t i = 0; i < len; i++) {
		if (!after_comma && ah_space(s[i])) {
			ah_wrap_piece(&w, s + start, i - start);
			ah_wrap_piece(&w, s + i, 1);
			start = i + 1;
		} else if (after_comma && (ah_space(s[i]) || s[i] == ',')) {
			if (empty)
				ah_wrap_piece(&w, "", 0);
			ah_wrap_piece(&w, s + start, i + 1 - start);
			empty = true;
			start = i + 1;
		}
	}
	if (start < len) {
		if (empty)
			ah_wrap_piece(&w, "", 0);
		ah_wrap_piece(&w, s + start, len - start);
	}
	return ah_take(&w.out);
}

char *addhdr_wrap(const char *s, const char *prefix, const char *first, size_t width,
    bool after_comma)
{
	return ah_wrap(s, prefix, first, width, after_comma, false);
}

/* ---------------------------------------------------------------- tags */

static const char *const ah_known[] = {
	"YESNO", "YESNOCAPS", "SCORE", "HITS", "REQD", "VERSION", "HOSTNAME", "BAYES", "DATE",
	"STARS", "AUTOLEARN", "TESTS", "TESTSSCORES", "REPORT", "SUMMARY", "PREVIEW",
	"CONTACTADDRESS", "SUBVERSION", NULL
};

/* PerMsgStatus's tags over the message's header view (get() and the relays) */
static const char *const ah_from_message[] = {
	"HEADER", "RELAYSTRUSTED", "RELAYSUNTRUSTED", "RELAYSINTERNAL", "RELAYSEXTERNAL",
	"LASTEXTERNALIP", "LASTEXTERNALRDNS", "LASTEXTERNALHELO", NULL
};

bool addhdr_tag_from_message(const char *tag, size_t n)
{
	for (int i = 0; ah_from_message[i]; i++)
		if (strlen(ah_from_message[i]) == n && memcmp(ah_from_message[i], tag, n) == 0)
			return true;
	return false;
}

bool addhdr_tag_known(const char *tag, size_t n)
{
	for (int i = 0; ah_known[i]; i++)
		if (strlen(ah_known[i]) == n && memcmp(ah_known[i], tag, n) == 0)
			return true;
	return addhdr_tag_from_message(tag, n);
}

/* Perl's number to string (%.15g), as _TESTSSCORES_ prints a score. */
static void ah_perl_num(char *buf, size_t len, double d)
{
	snprintf(buf, len, "%.15g", d == 0 ? 0 : d);
}

/* The value of tag (name n bytes, arg NULL or its text) into b; false when it is not one
 * mxgate knows (get_tag_raw: undef). */
static bool ah_tag_value(struct strbuf *b, const char *name, size_t n, const char *arg,
    size_t al, const struct addhdr_vals *v)
{
	char s[32], r[32], tmp[64];
	bool spam = actions_shown_score(s, r, v->score, v->required);

#define AH_IS(w) (n == strlen(w) && memcmp(name, w, n) == 0)
	if (AH_IS("YESNO") || AH_IS("YESNOCAPS")) {
		/* ($spam, $ham) = split(/,/, $arg, 2) */
		const char *c = arg ? memchr(arg, ',', al) : NULL;
		size_t st = b->len;

		if (spam && arg)
			strbuf_append(b, arg, c ? (size_t)(c - arg) : al);
		else if (!spam && c)
			strbuf_append(b, c + 1, al - (size_t)(c + 1 - arg));
		else
			ah_puts(b, spam ? "Yes" : "No");
		if (AH_IS("YESNOCAPS"))
			for (size_t i = st; i < b->len; i++)
				b->v[i] = (char)toupper((unsigned char)b->v[i]);
	} else if (AH_IS("SCORE") || AH_IS("HITS")) {
		/* _SCORE(PAD)_: PAD of zeros or spaces, to length(PAD) + 3 characters */
		bool pad = arg && al > 0;

		for (size_t i = 0; pad && i < al; i++)
			pad = arg[i] == arg[0] && (arg[0] == '0' || arg[0] == ' ');
		if (pad && al + 3 > strlen(s))   /* substr($pad, 0, $count) */
			strbuf_append(b, arg, al + 3 - strlen(s) < al ? al + 3 - strlen(s) : al);
		ah_puts(b, s);
	} else if (AH_IS("REQD")) {
		ah_puts(b, r);
	} else if (AH_IS("VERSION")) {
		ah_puts(b, v->version ? v->version : "");
	} else if (AH_IS("HOSTNAME")) {
		ah_puts(b, v->hostname ? v->hostname : "");
	} else if (AH_IS("BAYES")) {
		if (v->bayes >= 0) {
			snprintf(tmp, sizeof(tmp), "%3.4f", v->bayes);
			ah_puts(b, tmp);
		} else {
			ah_puts(b, "0.5");
		}
	} else if (AH_IS("DATE")) {
		/* Util::time_to_rfc822_date: local time and zone */
		static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
		static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
			"Aug", "Sep", "Oct", "Nov", "Dec" };
		struct tm tm;
		time_t t = v->now;
		long off;

		localtime_r(&t, &tm);
		off = tm.tm_gmtoff / 60;
		snprintf(tmp, sizeof(tmp), "%s, %02d %s %4d %02d:%02d:%02d %c%02ld%02ld",
		    days[tm.tm_wday], tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
		    tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
		ah_puts(b, tmp);
	} else if (AH_IS("STARS")) {
		/* my $arg = (shift || "*"): an empty or "0" argument is the star */
		int k = v->score >= 50 ? 50 : v->score > 0 ? (int)v->score : 0;
		bool dflt = arg == NULL || al == 0 || (al == 1 && arg[0] == '0');

		for (int i = 0; i < k; i++)
			strbuf_append(b, dflt ? "*" : arg, dflt ? 1 : al);
	} else if (AH_IS("AUTOLEARN")) {
		ah_puts(b, v->autolearn ? v->autolearn : "disabled");
	} else if (AH_IS("TESTS") || AH_IS("TESTSSCORES")) {
		bool dflt = arg == NULL || al == 0 || (al == 1 && arg[0] == '0');

		if (v->ntests == 0)
			ah_puts(b, "none");
		for (size_t i = 0; i < v->ntests; i++) {
			if (i)
				strbuf_append(b, dflt ? "," : arg, dflt ? 1 : al);
			ah_puts(b, v->tests[i]);
			if (AH_IS("TESTSSCORES")) {
				ah_perl_num(tmp, sizeof(tmp), v->test_scores ? v->test_scores[i] : 0);
				ah_puts(b, "=");
				ah_puts(b, tmp);
			}
		}
	} else if (AH_IS("REPORT")) {
		ah_puts(b, "\n");
		ah_puts(b, v->report ? v->report : "");
	} else if (AH_IS("SUMMARY")) {
		ah_puts(b, v->summary ? v->summary : "");
	} else if (AH_IS("PREVIEW") && v->preview) {
		ah_puts(b, v->preview);
	} else if (AH_IS("CONTACTADDRESS")) {
		ah_puts(b, v->contact ? v->contact : "the administrator of that system");
	} else if (AH_IS("SUBVERSION")) {
		ah_puts(b, v->subversion ? v->subversion : "");
	} else if (addhdr_tag_from_message(name, n)) {
		/* the value the caller read for this tag's exact text (name and argument) */
		size_t tl = arg ? (size_t)(arg + al + 1 - name) : n;

		for (size_t i = 0; i < v->nmtags; i++)
			if (v->mtags[i].value && strlen(v->mtags[i].tag) == tl &&
			    memcmp(v->mtags[i].tag, name, tl) == 0) {
				ah_puts(b, v->mtags[i].value);
				return true;
			}
		return false;
	} else {
		return false;
	}
#undef AH_IS
	return true;
}

/* At s[0] == '_': the length of _replace_tags' match
 * _([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*(?:\(.*?\))?)_ there (0: none), with the name's and the
 * argument's spans; Perl's backtracking over the (?:_...)* repeats reproduced (longest
 * first, the parenthesis before none). */
static size_t ah_match_tag(const char *s, size_t *nl, const char **arg, size_t *al)
{
	size_t ends[64], ne = 0, i = 1;

	if (!isupper((unsigned char)s[1]))
		return 0;
	while (isupper((unsigned char)s[i]) || isdigit((unsigned char)s[i]))
		i++;
	ends[ne++] = i;
	while (ne < 64 && s[i] == '_' && (isupper((unsigned char)s[i + 1]) ||
	    isdigit((unsigned char)s[i + 1]))) {
		i++;
		while (isupper((unsigned char)s[i]) || isdigit((unsigned char)s[i]))
			i++;
		ends[ne++] = i;
	}
	while (ne > 0) {
		size_t e = ends[--ne];

		if (s[e] == '(')
			for (size_t k = e + 1; s[k] && s[k] != '\n'; k++)
				if (s[k] == ')' && s[k + 1] == '_') {
					*nl = e - 1;
					*arg = s + e + 1;
					*al = k - (e + 1);
					return k + 2;
				}
		if (s[e] == '_') {
			*nl = e - 1;
			*arg = NULL;
			*al = 0;
			return e + 1;
		}
	}
	return 0;
}

char *addhdr_expand(const char *tmpl, const struct addhdr_vals *v)
{
	struct strbuf b = { 0 };

	for (const char *p = tmpl; *p;) {
		const char *arg = NULL;
		size_t nl = 0, al = 0, m = *p == '_' ? ah_match_tag(p, &nl, &arg, &al) : 0;

		if (m) {
			/* ADDEDHEADER*: SA refuses them in a template (bug 6278), left as written */
			if (!ah_tag_value(&b, p + 1, nl, arg, al, v))
				strbuf_append(&b, p, m);
			p += m;
		} else {
			strbuf_append(&b, p, 1);
			p++;
		}
	}
	return ah_take(&b);
}

void addhdr_mtags_collect(const char *tmpl, struct addhdr_mtag **v, size_t *n)
{
	for (const char *p = tmpl; p && *p;) {
		const char *arg = NULL;
		size_t nl = 0, al = 0, m = *p == '_' ? ah_match_tag(p, &nl, &arg, &al) : 0;
		bool have = false;

		if (m == 0) {
			p++;
			continue;
		}
		if (addhdr_tag_from_message(p + 1, nl)) {
			for (size_t i = 0; i < *n && !have; i++)
				have = strlen((*v)[i].tag) == m - 2 && memcmp((*v)[i].tag, p + 1, m - 2) == 0;
			if (!have) {
				if ((*v = realloc(*v, (*n + 1) * sizeof(**v))) == NULL ||
				    ((*v)[*n].tag = strndup(p + 1, m - 2)) == NULL)
					abort();
				(*v)[(*n)++].value = NULL;
			}
		}
		p += m;
	}
}

void addhdr_mtags_free(struct addhdr_mtag *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].tag);
		free(v[i].value);
	}
	free(v);
}

size_t addhdr_unknown_tags(const char *tmpl, char *buf, size_t len)
{
	size_t k = 0, o = 0;

	if (len)
		buf[0] = '\0';
	for (const char *p = tmpl; *p;) {
		const char *arg = NULL;
		size_t nl = 0, al = 0, m = *p == '_' ? ah_match_tag(p, &nl, &arg, &al) : 0;

		if (m == 0) {
			p++;
			continue;
		}
		if (!addhdr_tag_known(p + 1, nl)) {
			if (len > o + 1) {
				int w = snprintf(buf + o, len - o, "%s%.*s", k ? ", " : "", (int)m, p);

				o = w < 0 ? o : (size_t)w >= len - o ? len - 1 : o + (size_t)w;
			}
			k++;
		}
		p += m;
	}
	return k;
}

/* ---------------------------------------------------------------- the field */

static bool ah_printable(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c <= 0x7e);
}

static void ah_b64(struct strbuf *b, const unsigned char *s, size_t n)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
		    (i + 2 < n ? s[i + 2] : 0);
		char q[4] = { t[v >> 18 & 63], t[v >> 12 & 63],
			i + 1 < n ? t[v >> 6 & 63] : '=', i + 2 < n ? t[v & 63] : '=' };

		strbuf_append(b, q, 4);
	}
}

/* mime_encode_header on one line (its "\n" not included; nl: whether it had one). */
static void ah_encode_line(struct strbuf *b, const char *l, size_t n, bool nl)
{
	size_t ps = 0, ss = n, i;
	size_t qp = 0;

	for (i = 0; i < n && ah_printable((unsigned char)l[i]); i++)
		;
	if (i == n) {
		strbuf_append(b, l, n);
		if (nl)
			ah_puts(b, "\n");
		return;
	}
	/* suffix: ((?:^|[ \t])[\x09\x20-\x7E]*) at the end, leftmost; prefix:
	 * ^([\x09\x20-\x7E]*(?:[ \t]|\z)) of the rest */
	for (size_t k = 0; k <= n; k++) {
		size_t j = k;

		if (k > 0 && l[k] != ' ' && l[k] != '\t')
			continue;
		if (k == n)
			break;
		while (j < n && ah_printable((unsigned char)l[j]))
			j++;
		if (j == n) {
			ss = k;
			break;
		}
	}
	for (i = 0; i < ss && ah_printable((unsigned char)l[i]); i++)
		;
	/* backtrack to end at a blank or the end of the rest */
	if (i == ss)
		ps = i;
	else {
		while (i > 0 && l[i - 1] != ' ' && l[i - 1] != '\t')
			i--;
		ps = i;
	}
	strbuf_append(b, l, ps);
	if (ss > ps) {
		const unsigned char *m = (const unsigned char *)l + ps;
		size_t ml = ss - ps;

		for (size_t k = 0; k < ml; k++)
			qp += m[k] == '=' || m[k] == '?' || m[k] == '_' || m[k] < 0x20 || m[k] >= 0x7f;
		if ((double)ml + (double)qp * 2 <= 4.0 * (double)(ml + 2) / 3.0) {
			ah_puts(b, "=?UTF-8?Q?");
			for (size_t k = 0; k < ml; k++) {
				char h[4];

				if (m[k] == ' ')
					ah_puts(b, "_");
				else if (m[k] == '=' || m[k] == '?' || m[k] == '_' || m[k] < 0x20 ||
				    m[k] >= 0x7f) {
					snprintf(h, sizeof(h), "=%02X", m[k]);
					ah_puts(b, h);
				} else
					strbuf_append(b, (const char *)m + k, 1);
			}
		} else {
			ah_puts(b, "=?UTF-8?B?");
			ah_b64(b, m, ml);
		}
		ah_puts(b, "?=");
	}
	strbuf_append(b, l + ss, n - ss);
	if (nl)
		ah_puts(b, "\n");
}

char *addhdr_value(const char *name, const char *tmpl, const struct addhdr_vals *v)
{
	char *d = addhdr_expand(tmpl, v), *f;
	size_t dl = strlen(d);
	struct strbuf b = { 0 };

	/* s/(?:\r?\n)+$// */
	while (dl > 0 && d[dl - 1] == '\n') {
		dl--;
		if (dl > 0 && d[dl - 1] == '\r')
			dl--;
	}
	d[dl] = '\0';
	if (strchr(d, '\n')) {
		/* s/\s*\n\s*\/\n\t/g: a white-space run holding a line break is one fold */
		for (size_t i = 0; i < dl;) {
			size_t j = i;
			bool has_nl = false;

			while (j < dl && ah_space(d[j]))
				has_nl |= d[j++] == '\n';
			if (j > i) {
				if (has_nl)
					ah_puts(&b, "\n\t");
				else
					strbuf_append(&b, d + i, j - i);
				i = j;
			} else {
				strbuf_append(&b, d + i, 1);
				i++;
			}
		}
		f = ah_take(&b);
	} else {
		/* wrap("X-Spam-NAME!!VALUE", "\t", "", 79, 0, '(?<=[\s,])'), blank lines out,
		 * the part after "!!" */
		struct strbuf h = { 0 };
		char *w, *bang;

		ah_puts(&h, "X-Spam-");
		ah_puts(&h, name);
		ah_puts(&h, "!!");
		ah_puts(&h, d);
		w = addhdr_wrap(h.v, "\t", "", 79, true);
		free(h.v);
		/* s/^\s*\n//gm */
		for (char *p = w; *p;) {
			char *q = p;

			while (*q && *q != '\n' && ah_space(*q))
				q++;
			if (*q == '\n' && (p == w || p[-1] == '\n'))
				memmove(p, q + 1, strlen(q + 1) + 1);
			else {
				char *e = strchr(p, '\n');

				p = e ? e + 1 : p + strlen(p);
			}
		}
		bang = strstr(w, "!!");
		ah_puts(&b, bang ? bang + 2 : w);
		free(w);
		f = ah_take(&b);
	}
	free(d);
	/* mime_encode_header, line by line */
	{
		struct strbuf e = { 0 };

		for (const char *p = f; *p;) {
			const char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);

			ah_encode_line(&e, p, n, nl != NULL);
			p += n + (nl ? 1 : 0);
		}
		free(f);
		return ah_take(&e);
	}
}

/* The score as the report and the summary print it: ±10 and beyond "%4.0f", else "%4.1f". */
static void ah_report_score(char *buf, size_t len, double score)
{
	snprintf(buf, len, fabs(score) >= 10 ? "%4.0f" : "%4.1f", score);
}

/* _wrap_desc(desc, fl, prefix): wrap at 75 columns after fl blanks, leading blanks off.
 * malloc'd. */
static char *ah_wrap_desc(const char *desc, size_t fl, const char *prefix)
{
	char *first = malloc(fl + 1), *w, *ws;

	if (first == NULL)
		abort();
	memset(first, ' ', fl);
	first[fl] = '\0';
	w = addhdr_wrap(desc ? desc : "", prefix, first, 75, false);
	free(first);
	for (ws = w; *ws && ah_space(*ws); ws++)
		;
	memmove(w, ws, strlen(ws) + 1);
	return w;
}

void addhdr_summary_add(char **buf, size_t *len, double score, const char *rule,
    const char *area, const char *desc)
{
	struct strbuf b = { *buf, *len, *buf ? *len + 1 : 0 };
	char sc[32], *w;
	size_t rl = strlen(rule);

	ah_report_score(sc, sizeof(sc), score);
	/* sprintf("%s %-22s %s%s\n", ...) with 3 + length(rule, score, area) and 28 blanks */
	w = ah_wrap_desc(desc, 3 + rl + strlen(sc) + strlen(area),
	    "                            ");
	ah_puts(&b, sc);
	ah_puts(&b, " ");
	ah_puts(&b, rule);
	for (size_t i = rl; i < 22; i++)
		ah_puts(&b, " ");
	ah_puts(&b, " ");
	ah_puts(&b, area);
	ah_puts(&b, w);
	ah_puts(&b, "\n");
	free(w);
	*buf = b.v;
	*len = b.len;
}

char *addhdr_preview(const char *const *v, const size_t *lens, size_t n)
{
	struct strbuf a = { 0 }, c = { 0 };
	size_t taken = 0;
	char *w, *r;

	/* three lines at most, while under 200 characters */
	while (a.len < 200 && taken < n && taken < 3) {
		strbuf_append(&a, v[taken], lens[taken]);
		ah_puts(&a, "\n");
		taken++;
	}
	ah_take(&a);
	/* s/^(.{200}).+$/$1 [...]/gm, chomp, "\n" */
	for (size_t i = 0; i < a.len;) {
		const char *nl = memchr(a.v + i, '\n', a.len - i);
		size_t ll = nl ? (size_t)(nl - (a.v + i)) : a.len - i;

		if (ll > 200) {
			strbuf_append(&c, a.v + i, 200);
			ah_puts(&c, " [...]");
		} else {
			strbuf_append(&c, a.v + i, ll);
		}
		if (nl)
			ah_puts(&c, "\n");
		i += ll + (nl ? 1 : 0);
	}
	ah_take(&c);
	if (c.len && c.v[c.len - 1] == '\n')
		c.v[--c.len] = '\0';
	ah_puts(&c, "\n");
	strbuf_free(&a);
	/* s/-----Original Message-----.*$//gm (the text is a C string from here on: a NUL of
	 * the body text ends the preview, as a NUL of a DATA line cannot reach it anyway) */
	for (char *m; (m = strstr(c.v, "-----Original Message-----")) != NULL;) {
		char *e = strchr(m, '\n');

		if (e == NULL)
			e = m + strlen(m);
		memmove(m, e, strlen(e) + 1);
	}
	/* s/This is a multi-part message in MIME format\.//gs */
	for (char *m; (m = strstr(c.v, "This is a multi-part message in MIME format.")) != NULL;)
		memmove(m, m + 44, strlen(m + 44) + 1);
	/* s/[-_*.]{10,}//gs, then s/\s+/ /gs */
	{
		size_t o = 0, len = strlen(c.v);

		for (size_t i = 0; i < len;) {
			size_t j = i;

			while (j < len && strchr("-_*.", c.v[j]) && c.v[j])
				j++;
			if (j - i >= 10) {
				i = j;
				continue;
			}
			if (j == i)
				j++;
			memmove(c.v + o, c.v + i, j - i);
			o += j - i;
			i = j;
		}
		c.v[o] = '\0';
		len = o;
		o = 0;
		for (size_t i = 0; i < len;) {
			if (ah_space(c.v[i])) {
				while (i < len && ah_space(c.v[i]))
					i++;
				c.v[o++] = ' ';
			} else {
				c.v[o++] = c.v[i++];
			}
		}
		c.v[o] = '\0';
	}
	/* wrap($str, "  ", "Content preview:  ", 75, 1); s/^Content preview:\s+//gs */
	w = ah_wrap(c.v, "  ", "Content preview:  ", 75, false, true);
	strbuf_free(&c);
	r = w;
	if (strncmp(r, "Content preview:", 16) == 0) {
		r += 16;
		while (*r && ah_space(*r))
			r++;
	}
	memmove(w, r, strlen(r) + 1);
	return w;
}

void addhdr_report_add(char **buf, size_t *len, double score, const char *rule,
    const char *area, const char *desc)
{
	struct strbuf b = { *buf, *len, *buf ? *len + 1 : 0 };
	char sc[32], *first, *w, *ws;
	size_t fl;

	/* ±10 and beyond: "%4.0f", else "%4.1f" */
	snprintf(sc, sizeof(sc), fabs(score) >= 10 ? "%4.0f" : "%4.1f", score);
	/* _wrap_desc($desc, 4 + length($rule) + length($score) + length($area), "*      ") */
	fl = 4 + strlen(rule) + strlen(sc) + strlen(area);
	if ((first = malloc(fl + 1)) == NULL)
		abort();
	memset(first, ' ', fl);
	first[fl] = '\0';
	w = addhdr_wrap(desc ? desc : "", "*      ", first, 75, false);
	free(first);
	for (ws = w; *ws && ah_space(*ws); ws++)
		;
	ah_puts(&b, "* ");
	ah_puts(&b, sc);
	ah_puts(&b, " ");
	ah_puts(&b, rule);
	ah_puts(&b, " ");
	ah_puts(&b, area);
	ah_puts(&b, ws);
	ah_puts(&b, "\n");
	free(w);
	*buf = b.v;
	*len = b.len;
}

/* ---------------------------------------------------------------- report_safe 1 and 2 */

void addhdr_safe_clear(struct addhdr_safe *c)
{
	free(c->report);
	free(c->unsafe_report);
	free(c->contact);
	free(c->hostname);
	free(c->charset);
	free(c->rewrite_from);
	free(c->rewrite_to);
	for (size_t i = 0; i < c->ncopy; i++)
		free(c->copy[i]);
	free(c->copy);
	memset(c, 0, sizeof(*c));
}

static char *ah_dup(const char *s)
{
	char *d = s ? strdup(s) : NULL;

	if (s && d == NULL)
		abort();
	return d;
}

void addhdr_safe_copy(struct addhdr_safe *to, const struct addhdr_safe *c)
{
	to->mode = c->mode;
	to->report = ah_dup(c->report);
	to->unsafe_report = ah_dup(c->unsafe_report);
	to->contact = ah_dup(c->contact);
	to->hostname = ah_dup(c->hostname);
	to->charset = ah_dup(c->charset);
	to->rewrite_from = ah_dup(c->rewrite_from);
	to->rewrite_to = ah_dup(c->rewrite_to);
	to->ncopy = c->ncopy;
	to->copy = NULL;
	if (c->ncopy && (to->copy = calloc(c->ncopy, sizeof(char *))) == NULL)
		abort();
	for (size_t i = 0; i < c->ncopy; i++)
		to->copy[i] = ah_dup(c->copy[i]);
}

/* get_pristine_header: the values of the fields named name in the header block h (hl
 * octets), each from after /^NAME[ \t]*:[ \t]*\/ to its line end included (folds kept), into
 * *v (at most max); returns how many. */
static size_t ah_pristine(const char *h, size_t hl, const char *name, const char **v,
    size_t *vl, size_t max)
{
	size_t nl = strlen(name), k = 0;

	for (size_t i = 0; i < hl;) {
		const char *lf = memchr(h + i, '\n', hl - i);
		size_t e = lf ? (size_t)(lf - h) + 1 : hl, j = i + nl;

		if (e - i > nl && strncasecmp(h + i, name, nl) == 0) {
			while (j < e && (h[j] == ' ' || h[j] == '\t'))
				j++;
			if (j < e && h[j] == ':') {
				size_t f = e;

				j++;
				while (j < e && (h[j] == ' ' || h[j] == '\t'))
					j++;
				/* .*?\n(?![ \t]): on over the folds */
				while (f < hl && (h[f] == ' ' || h[f] == '\t')) {
					lf = memchr(h + f, '\n', hl - f);
					f = lf ? (size_t)(lf - h) + 1 : hl;
				}
				if (h[f - 1] == '\n' && k < max) {
					v[k] = h + j;
					vl[k++] = f - j;
				}
				e = f;
			}
		}
		i = e;
	}
	return k;
}

/* Appends s with each \r?\n as the line ending le (a CR not before an LF is kept), a line
 * at a time: one append per line and one per ending, not one per octet. */
static void ah_put_le(struct strbuf *b, const char *s, size_t n, const char *le)
{
	size_t lel = strlen(le);

	while (n > 0) {
		const char *lf = memchr(s, '\n', n);
		size_t span = lf ? (size_t)(lf - s) : n, keep = span;

		if (lf && keep > 0 && s[keep - 1] == '\r')
			keep--;
		if (keep)
			strbuf_append(b, s, keep);
		if (lf == NULL)
			break;
		strbuf_append(b, le, lel);
		s += span + 1;
		n -= span + 1;
	}
}

/* Would bd, as a boundary, be found in the original? SpamAssassin's /^\Q$boundary\E(?:--)?$/m,
 * and, stricter (a delimiter line "--" bd, or a CRLF message, which SA's test misses), any
 * line that starts with bd or with "--" bd. Fed in pieces (a line may go on in the next):
 * only the first octets of each line are kept, as many as the test reads. */
struct ah_bscan { const char *bd; size_t bl, n; bool found; char pre[132]; };

static void ah_bscan_line(struct ah_bscan *s)
{
	if ((s->n >= s->bl && memcmp(s->pre, s->bd, s->bl) == 0) || (s->n >= s->bl + 2 &&
	    s->pre[0] == '-' && s->pre[1] == '-' && memcmp(s->pre + 2, s->bd, s->bl) == 0))
		s->found = true;
	s->n = 0;
}

static void ah_bscan_feed(struct ah_bscan *s, const char *p, size_t len)
{
	while (len > 0 && !s->found) {
		const char *lf = memchr(p, '\n', len);
		size_t span = lf ? (size_t)(lf - p) : len;
		size_t take = span < sizeof(s->pre) - s->n ? span : sizeof(s->pre) - s->n;

		memcpy(s->pre + s->n, p, take);
		s->n += take;
		if (lf == NULL)
			return;
		ah_bscan_line(s);
		p += span + 1;
		len -= span + 1;
	}
}

static bool ah_boundary_in(const char *hdr, size_t hl, const char *body, size_t bl,
    const char *bd)
{
	struct ah_bscan s = { .bd = bd, .bl = strlen(bd) };

	ah_bscan_feed(&s, hdr, hl);
	ah_bscan_feed(&s, body, bl);
	if (!s.found && s.n)
		ah_bscan_line(&s);      /* the last line, without its line end */
	return s.found;
}

void addhdr_safe_build_parts(const struct addhdr_safe *c, const char *msg, size_t len,
    const char *body, size_t body_len, const char *report, const char *unsafe_report,
    const char *added, const struct addhdr_rewrite *rw, const char *received, unsigned long t,
    unsigned long rnd, struct addhdr_safe_parts *out)
{
	const char *subject_tag = rw ? rw->subject : NULL;
	static const char *const copied[] = { "From", "To", "Cc", "Subject", "Date",
		"Message-Id" };
	struct strbuf top = { 0 }, h = { 0 }, o = { 0 };
	const char *le = "\n", *v[64], *ct = NULL, *first_lf = memchr(msg, '\n', len);
	size_t vl[64], hl = 0, n, ctl = 0;
	char bd[128], *sv = NULL, prev, last[2];
	bool attach;

	if (body == NULL)
		body_len = 0;
	/* Message.pm: CRLF when the first or the last line has it (of msg and body as one) */
	if (first_lf == NULL && body_len && (first_lf = memchr(body, '\n', body_len)) != NULL)
		prev = first_lf > body ? first_lf[-1] : len ? msg[len - 1] : '\0';
	else
		prev = first_lf && first_lf > msg ? first_lf[-1] : '\0';
	last[0] = body_len >= 2 ? body[body_len - 2] : body_len == 1 ? (len ? msg[len - 1] : '\0') :
	    len >= 2 ? msg[len - 2] : '\0';
	last[1] = body_len ? body[body_len - 1] : len ? msg[len - 1] : '\0';
	if ((first_lf && prev == '\r') || (len + body_len >= 2 && last[0] == '\r' &&
	    last[1] == '\n'))
		le = "\r\n";
	/* the header block, to its blank line */
	while (hl < len && msg[hl] != '\n' && !(msg[hl] == '\r' && hl + 1 < len &&
	    msg[hl + 1] == '\n')) {
		const char *lf = memchr(msg + hl, '\n', len - hl);

		hl = lf ? (size_t)(lf - msg) + 1 : len;
	}
	for (size_t i = 0; i < sizeof(copied) / sizeof(*copied); i++) {
		const char *sp = NULL;
		size_t sl = 0;

		free(sv);       /* the field before's rewritten value, in h by now */
		sv = NULL;

		n = ah_pristine(msg, hl, copied[i], v, vl, 64);
		if (n) {
			sp = v[n - 1];
			sl = vl[n - 1];
		}
		if (i == 3 && subject_tag) {
			/* $subject = "\n" if undef; s/^(?:\Q$tag\E )?/$tag /; tag's newlines blanks */
			size_t tl = strlen(subject_tag);
			struct strbuf s = { 0 };

			if (sp == NULL) {
				sp = "\n";
				sl = 1;
			}
			ah_puts(&s, subject_tag);
			ah_puts(&s, " ");
			for (size_t k = 0; k < s.len; k++)
				if (s.v[k] == '\n')
					s.v[k] = ' ';
			if (sl > tl && memcmp(sp, s.v, tl + 1) == 0)
				strbuf_append(&s, sp + tl + 1, sl - tl - 1);
			else
				strbuf_append(&s, sp, sl);
			sv = ah_take(&s);
			sp = sv;
			sl = s.len;
		}
		if (i <= 1 && rw && (i == 0 ? rw->from : rw->to)) {
			/* $to = "\n" if undef; s/(?:\t\Q($tag)\E)?$/\t($tag)/: the comment at the
			 * end, before the value's line end, once; the tag's newlines dropped (From)
			 * or blanks (To) */
			const char *tag = i == 0 ? rw->from : rw->to;
			struct strbuf t = { 0 }, s = { 0 };
			size_t end, le;

			ah_puts(&t, "\t(");
			for (const char *q = tag; *q; q++)
				if (*q != '\n')
					strbuf_append(&t, q, 1);
				else if (i == 1)
					ah_puts(&t, " ");
			ah_puts(&t, ")");
			if (sp == NULL) {
				sp = "\n";
				sl = 1;
			}
			le = sl;        /* where the line end starts: CRLF as one, no bare CR made */
			if (le > 0 && sp[le - 1] == '\n' && --le > 0 && sp[le - 1] == '\r')
				le--;
			end = le;
			if (end >= t.len && memcmp(sp + end - t.len, t.v, t.len) == 0)
				end -= t.len;   /* already there: once */
			strbuf_append(&s, sp, end);
			strbuf_append(&s, t.v, t.len);
			strbuf_append(&s, sp + le, sl - le);
			strbuf_free(&t);
			sv = ah_take(&s);
			sp = sv;
			sl = s.len;
		}
		if (sp == NULL)
			continue;
		ah_puts(&h, copied[i]);
		ah_puts(&h, ": ");
		strbuf_append(&h, sp, sl);
	}
	free(sv);
	ah_puts(&h, added ? added : "");
	/* report_safe_copy_headers, each name once, those above not again; Received on top */
	for (size_t i = 0; i < c->ncopy; i++) {
		bool dup = false;

		for (size_t k = 0; k < sizeof(copied) / sizeof(*copied) && !dup; k++)
			dup = strcasecmp(c->copy[i], copied[k]) == 0;
		for (size_t k = 0; k < i && !dup; k++)
			dup = strcasecmp(c->copy[i], c->copy[k]) == 0;
		if (dup)
			continue;
		n = ah_pristine(msg, hl, c->copy[i], v, vl, 64);
		for (size_t k = 0; k < n; k++) {
			struct strbuf *b = strcasecmp(c->copy[i], "received") == 0 ? &top : &h;

			ah_puts(b, c->copy[i]);
			ah_puts(b, ": ");
			strbuf_append(b, v[k], vl[k]);
		}
	}
	/* the boundary, unique in the original */
	snprintf(bd, sizeof(bd), "----------=_%08lX.%08lX", t & 0xffffffffUL, rnd & 0xffffffffUL);
	for (unsigned long r = rnd; ah_boundary_in(msg, len, body, body_len, bd) && strlen(bd) + 10 < sizeof(bd);) {
		r = r * 6364136223846793005ULL + 1442695040888963407ULL;
		snprintf(bd + strlen(bd), sizeof(bd) - strlen(bd), "/%08lX", (r >> 16) & 0xffffffffUL);
	}
	/* get_header("Content-Type"): the last one, unfolded; attachment unless text/plain */
	n = ah_pristine(msg, hl, "Content-Type", v, vl, 64);
	if (n) {
		ct = v[n - 1];
		ctl = vl[n - 1];
		while (ctl > 0 && ah_space(ct[ctl - 1]))
			ctl--;
	}
	attach = false;
	if (ct && ctl > 0) {
		attach = true;
		for (size_t k = 0; k + 10 <= ctl && attach; k++)
			attach = strncasecmp(ct + k, "text/plain", 10) != 0;
	}
	ah_put_le(&o, received, strlen(received), le);
	ah_put_le(&o, top.v ? top.v : "", top.len, le);
	ah_put_le(&o, h.v ? h.v : "", h.len, le);
	{
		struct strbuf m = { 0 };
		char line[256];

		ah_puts(&m, "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"");
		ah_puts(&m, bd);
		ah_puts(&m, "\"\n\nThis is a multi-part message in MIME format.\n\n--");
		ah_puts(&m, bd);
		snprintf(line, sizeof(line), "\nContent-Type: text/plain; charset=%s\n",
		    c->charset && *c->charset ? c->charset : "UTF-8");
		ah_puts(&m, line);
		ah_puts(&m, "Content-Disposition: inline\nContent-Transfer-Encoding: 8bit\n\n");
		ah_puts(&m, report);
		if (attach)
			ah_puts(&m, unsafe_report ? unsafe_report : "");
		ah_puts(&m, "\n\n--");
		ah_puts(&m, bd);
		ah_puts(&m, c->mode > 1 ? "\nContent-Type: text/plain; x-spam-type=original\n" :
		    "\nContent-Type: message/rfc822; x-spam-type=original\n");
		ah_puts(&m, "Content-Description: original message before SpamAssassin\n");
		ah_puts(&m, attach ? "Content-Disposition: attachment\n" :
		    "Content-Disposition: inline\n");
		ah_puts(&m, "Content-Transfer-Encoding: 8bit\n\n");
		ah_put_le(&o, m.v, m.len, le);
		strbuf_free(&m);
	}
	ah_take(&o);
	out->head = o.v;
	out->head_len = o.len;
	o = (struct strbuf){ 0 };
	ah_puts(&o, le);
	ah_puts(&o, "--");
	ah_puts(&o, bd);
	ah_puts(&o, "--");
	ah_puts(&o, le);
	ah_puts(&o, le);
	ah_take(&o);
	out->tail = o.v;
	out->tail_len = o.len;
	strbuf_free(&top);
	strbuf_free(&h);
}

void addhdr_safe_parts_free(struct addhdr_safe_parts *p)
{
	free(p->head);
	free(p->tail);
	memset(p, 0, sizeof(*p));
}

char *addhdr_safe_build(const struct addhdr_safe *c, const char *msg, size_t len,
    const char *report, const char *unsafe_report, const char *added,
    const struct addhdr_rewrite *rw, const char *received, unsigned long t, unsigned long rnd,
    size_t *out_len)
{
	struct addhdr_safe_parts p = { 0 };
	struct strbuf o = { 0 };

	addhdr_safe_build_parts(c, msg, len, NULL, 0, report, unsafe_report, added, rw, received,
	    t, rnd, &p);
	strbuf_append(&o, p.head, p.head_len);
	strbuf_append(&o, msg, len);
	strbuf_append(&o, p.tail, p.tail_len);
	addhdr_safe_parts_free(&p);
	ah_take(&o);
	*out_len = o.len;
	return o.v;
}
