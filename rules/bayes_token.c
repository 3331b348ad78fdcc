/* bayes_token.c — the classifier's tokenizer; see bayes_token.h. The token rules follow
 * SpamAssassin's Plugin/Bayes.pm (tokenize, _tokenize_line, _tokenize_headers and the
 * pre-chew helpers) so that what it learned to be good clues are clues here too. */
#include "bayes_token.h"

#include "headers.h"
#include "mime.h"
#include "match.h"
#include "uri.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOK_MAX_TEXT     (512u << 10)
#define TOK_MAX_UNIQUE   20000u
#define TOK_MAX_BODY     50000u      /* tokens per region, as SA */
#define TOK_MAX_URI      10000u
#define TOK_MAX_HEADER   10000u
#define TOK_MAX_LEN      15u         /* SA's bayes_max_token_length */
#define TOK_MAX_HDRS     200u        /* header fields examined */

/* byte buffers: proxy/headers.h's strbuf (grows, aborts when out of memory, NUL-ends) */
static void tok_put(struct strbuf *b, const char *s, size_t n) { strbuf_append(b, s, n); }

static void tok_putc(struct strbuf *b, char c)
{
	if (b->len + 2 > b->cap)
		strbuf_append(b, &c, 1);
	else {
		b->v[b->len++] = c;
		b->v[b->len] = '\0';
	}
}

/* One tokenizer run: the sink, per-region budgets and the pair state. */
struct tok_ctx {
	bayes_token_cb cb;
	void *arg;
	size_t emitted;
	size_t budget;                 /* tokens left in the current region */
	bool pairs;
	int window;                   /* OSB window: pairs with up to window - 1 words back */
	int footer;                   /* bayes_token_opts.footer */
	int meta;
	bool in_footer;               /* past a list footer separator in this text part */
	bool list_mail;               /* the message came through a list (List-Id ...) */
	struct strbuf prev;           /* previous body word (lower case) for pairs */
	char hist[4][64];             /* the last window - 1 body words (lower case), newest first */
	size_t histn;
	struct strbuf tmp, line, word;
};

static void tok_emit(struct tok_ctx *t, const char *prefix, const char *s, size_t n)
{
	size_t pl = strlen(prefix);

	if (t->budget == 0 || n == 0)
		return;
	t->budget--;
	t->tmp.len = 0;
	tok_put(&t->tmp, prefix, pl);
	tok_put(&t->tmp, s, n);
	t->cb(t->tmp.v, t->tmp.len, t->arg);
	t->emitted++;
}

static bool tok_is_word(unsigned char c)
{
	return isalnum(c) || c == '_' || c >= 0x80;
}

/* SA's default English stop list (bayes_stopword_en), matched case-insensitively. */
static const char *const tok_stopwords[] = {
	"able", "already", "all", "and", "any", "are", "because", "both", "can", "come",
	"each", "email", "even", "few", "first", "for", "from", "give", "have", "has", "http",
	"information", "into", "it's", "just", "know", "like", "long", "look", "made", "mail",
	"mailing", "mailto", "make", "many", "more", "most", "much", "need", "not", "now",
	"number", "off", "only", "one", "out", "own", "people", "place", "right", "same", "see",
	"such", "that", "this", "through", "the", "time", "using", "web", "where", "why",
	"with", "without", "world", "work", "year", "years", "you", "you're", "your", NULL
};

static bool tok_is_stopword(const char *s, size_t n)
{
	char c = (char)tolower((unsigned char)s[0]);

	if (n > 11)
		return false;
	for (int i = 0; tok_stopwords[i]; i++)
		if (tok_stopwords[i][0] == c && strlen(tok_stopwords[i]) == n &&
		    strncasecmp(tok_stopwords[i], s, n) == 0)
			return true;
	return false;
}

/* Length of the UTF-8 sequence at s (2..4) when well formed, else 0. */
static size_t tok_utf8_len(const unsigned char *s, size_t n)
{
	size_t k;

	if (s[0] >= 0xC0 && s[0] <= 0xDF)
		k = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		k = 3;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		k = 4;
	else
		return 0;
	if (k > n)
		return 0;
	for (size_t i = 1; i < k; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return k;
}

/* U*user D*domain D*parent... for local@domain (SA's _tokenize_mail_addrs). */
static void tok_mail_addr(struct tok_ctx *t, const char *s, size_t n, struct strbuf *out)
{
	const char *at = NULL;

	for (size_t i = n; i > 0; i--)
		if (s[i - 1] == '@') {
			at = s + i - 1;
			break;
		}
	if (at == NULL || at == s || at + 1 >= s + n)
		return;
	tok_put(out, " U*", 3);
	tok_put(out, s, (size_t)(at - s));
	{
		const char *d = at + 1, *e = s + n;

		tok_put(out, " D*", 3);
		tok_put(out, d, (size_t)(e - d));
		for (;;) {
			const char *dot = memchr(d, '.', (size_t)(e - d));

			if (dot == NULL || dot + 1 >= e || dot == d)
				break;
			d = dot + 1;
			tok_put(out, " D*", 3);
			tok_put(out, d, (size_t)(e - d));
		}
	}
	(void)t;
}

static void tok_emit_pair(struct tok_ctx *t, const char *s, size_t n)
{
	char lc[64];

	if (n >= sizeof(lc))
		n = sizeof(lc) - 1;
	for (size_t i = 0; i < n; i++)
		lc[i] = (char)tolower((unsigned char)s[i]);
	lc[n] = '\0';
	if (t->window > 2) {
		/* rspamd's OSB: the word with each of the window - 1 before it, the distance in
		 * the token ("P2:a b": one word skipped) */
		char pre[8];

		for (size_t d = 0; d < t->histn; d++) {
			t->word.len = 0;
			tok_put(&t->word, t->hist[d], strlen(t->hist[d]));
			tok_putc(&t->word, ' ');
			tok_put(&t->word, lc, n);
			snprintf(pre, sizeof(pre), d ? "P%zu:" : "P:", d + 1);
			tok_emit(t, pre, t->word.v, t->word.len);
		}
		if (t->histn < (size_t)t->window - 1 && t->histn < 4)
			t->histn++;
		memmove(t->hist[1], t->hist[0], sizeof(t->hist[0]) * (t->histn - 1));
		memcpy(t->hist[0], lc, n + 1);
		return;
	}
	if (t->prev.len) {
		t->word.len = 0;
		tok_put(&t->word, t->prev.v, t->prev.len);
		tok_putc(&t->word, ' ');
		tok_put(&t->word, lc, n);
		tok_emit(t, "P:", t->word.v, t->word.len);
	}
	t->prev.len = 0;
	tok_put(&t->prev, lc, n);
}

/* One whitespace-separated token of a line; see _tokenize_line's loop. */
static void tok_one(struct tok_ctx *t, char *s, size_t n, const char *prefix, int region)
{
	bool body = region == 1 || region == 2;
	char sk[40];

	while (n && strchr("-'\".,", s[0])) {
		s++;
		n--;
	}
	while (n && strchr("-'\".,", s[n - 1]))
		n--;
	if (n < 3 || tok_is_stopword(s, n))
		return;
	if (body) {
		const char *at = memchr(s, '@', n);
		bool addr = at && at > s && at + 1 < s + n && !isspace((unsigned char)at[1]);

		if (addr) {
			struct strbuf a = { 0 };

			tok_mail_addr(t, s, n, &a);
			for (size_t i = 0; i < a.len;) {
				size_t e = i + 1;

				while (e < a.len && a.v[e] != ' ')
					e++;
				if (e > i + 1)
					tok_emit(t, "", a.v + i + 1, e - i - 1);
				i = e;
			}
			free(a.v);
		} else {
			for (size_t i = 1; i + 1 < n; i++)
				if (s[i] == '.' && isalpha((unsigned char)s[i + 1])) {
					const char *d = s, *e = s + n;

					tok_emit(t, "UD:", s, n);
					for (;;) {
						const char *dot = memchr(d, '.', (size_t)(e - d));

						if (dot == NULL || dot + 1 >= e)
							break;
						d = dot + 1;
						tok_emit(t, "UD:", d, (size_t)(e - d));
					}
					break;
				}
		}
	}
	if (n > TOK_MAX_LEN && memchr(s, '*', n) == NULL) {
		bool cont2 = false;

		for (size_t i = 0; i + 1 < n; i++)
			if ((unsigned char)s[i] >= 0x80 && (unsigned char)s[i] <= 0xBF &&
			    (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0xBF) {
				cont2 = true;
				break;
			}
		if (cont2) {
			/* Bug 7135: 3- and 4-byte UTF-8 characters become tokens of their own */
			bool any = false;

			for (size_t i = 0; i < n;) {
				size_t k = tok_utf8_len((const unsigned char *)s + i, n - i);

				if (k >= 3) {
					char u[8] = "u8:";

					memcpy(u + 3, s + i, k);
					tok_emit(t, prefix, u, 3 + k);
					any = true;
					i += k;
				} else {
					i++;
				}
			}
			if (any)
				return;
		}
		if (region != 2) {
			/* "sk:" + the first 7 characters, when at least 2 more bytes follow */
			size_t i = 0;

			for (int c = 0; c < 7 && i < n; c++) {
				size_t k = tok_utf8_len((const unsigned char *)s + i, n - i);

				i += k ? k : 1;
			}
			if (i + 2 <= n) {
				memcpy(sk, "sk:", 3);
				memcpy(sk + 3, s, i);
				s = sk;
				n = i + 3;
			}
		}
	}
	if (body) {
		bool nonword = false, upper = false;

		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)s[i];

			if (!tok_is_word(c) && c != ':' && c != '*')
				nonword = true;
			if (c >= 'A' && c <= 'Z')
				upper = true;
		}
		if (nonword || upper) {
			char d[64], l[64];
			size_t dn = 0, ln = 0;

			for (size_t i = 0; i < n && i < sizeof(d); i++) {
				unsigned char c = (unsigned char)s[i];

				l[ln++] = (char)tolower(c);
				if (tok_is_word(c) || c == ':' || c == '*')
					d[dn++] = s[i];
			}
			if (nonword)
				tok_emit(t, prefix, d, dn);       /* "Foo!" -> "Foo" */
			if (upper) {
				tok_emit(t, prefix, l, ln);       /* "foo!" */
				if (nonword) {
					size_t o = 0;

					for (size_t i = 0; i < dn; i++)
						d[o++] = (char)tolower((unsigned char)d[i]);
					tok_emit(t, prefix, d, o);        /* "foo" */
				}
			}
		}
		if (t->pairs && region == 1)
			tok_emit_pair(t, s, n);
	}
	tok_emit(t, prefix, s, n);
}

static void tok_line(struct tok_ctx *t, const char *s, size_t n, const char *prefix, int region)
{
	struct strbuf *b = &t->line;

	/* keep [A-Za-z0-9,@*!_'"$. -] runs, UTF-8 characters and Latin-1 letters; the rest
	 * becomes a space (Bug 7130) */
	b->len = 0;
	tok_put(b, "", 0);
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t k;

		if (isalnum(c) || (c < 0x80 && strchr(",@*!_'\"$. -", c) && c != '\0')) {
			tok_putc(b, (char)c);
			i++;
		} else if ((k = tok_utf8_len((const unsigned char *)s + i, n - i)) > 0) {
			tok_put(b, s + i, k);
			i += k;
		} else if (c >= 0xA1) {
			tok_putc(b, (char)c);
			i++;
		} else {
			tok_putc(b, ' ');
			i++;
		}
	}
	/* "..." and "--" between words split them and stay tokens themselves (one pass into
	 * t->word, then back: linear in the line) */
	t->word.len = 0;
	tok_put(&t->word, "", 0);
	for (size_t i = 0; i < b->len;) {
		char c = b->v[i];
		size_t j = i;

		if ((c != '.' && c != '-') || i == 0 || !tok_is_word((unsigned char)b->v[i - 1])) {
			tok_putc(&t->word, c);
			i++;
			continue;
		}
		while (j < b->len && b->v[j] == c)
			j++;
		if (j < b->len && tok_is_word((unsigned char)b->v[j]) &&
		    ((c == '.' && j - i >= 3 && j - i <= 6) || (c == '-' && j - i >= 2 && j - i <= 6))) {
			tok_putc(&t->word, ' ');
			tok_put(&t->word, b->v + i, j - i);
			tok_putc(&t->word, ' ');
		} else {
			tok_put(&t->word, b->v + i, j - i);
		}
		i = j;
	}
	{
		struct strbuf x = *b;

		*b = t->word;
		t->word = x;
	}
	/* Title Case at the start of a sentence is lower-cased (IGNORE_TITLE_CASE): at the
	 * start, or after a '.' and blanks. Each forward scan stops at the next capital, so
	 * the scans together stay linear. */
	if (region == 1 || region == 2) {
		char last = '\0';          /* the last non-blank character before i */
		bool blank = false;         /* blanks since it */

		for (size_t i = 0; i < b->len; i++) {
			bool start = i == 0 || (last == '.' && blank && b->v[i] != ' ');

			if (start && b->v[i] >= 'A' && b->v[i] <= 'Z' && i + 1 < b->len &&
			    !(b->v[i + 1] >= 'A' && b->v[i + 1] <= 'Z')) {
				size_t j = i + 1;
				bool ok = false;

				while (j < b->len && !(b->v[j] >= 'A' && b->v[j] <= 'Z')) {
					if (b->v[j] == ' ') {
						ok = true;
						break;
					}
					j++;
				}
				if (ok || j == b->len)
					b->v[i] = (char)tolower((unsigned char)b->v[i]);
			}
			if (b->v[i] == ' ') {
				blank = true;
			} else {
				last = b->v[i];
				blank = false;
			}
		}
	}
	for (size_t i = 0; i < b->len;) {
		size_t e;

		while (i < b->len && b->v[i] == ' ')
			i++;
		e = i;
		while (e < b->len && b->v[e] != ' ')
			e++;
		if (e > i)
			tok_one(t, b->v + i, e - i, prefix, region);
		i = e;
	}
}

void bayes_tokenize_line(const char *line, size_t len, const char *prefix, int region,
    bayes_token_cb cb, void *arg)
{
	struct tok_ctx t = { .cb = cb, .arg = arg, .budget = (size_t)-1 };

	tok_line(&t, line, len, prefix ? prefix : "", region);
	free(t.prev.v);
	free(t.tmp.v);
	free(t.line.v);
	free(t.word.v);
}

/* ---------------------------------------------------------------- headers */

/* Headers that give spurious clues (SA's $IGNORED_HDRS), lower case; a trailing '*'
 * matches any rest. */
static const char *const tok_ignored_hdrs[] = {
	"sender", "x-sender", "delivered-to", "delivery-date", "envelope-to", "x-envelope-to",
	"x-mime-autoconverted", "x-converted-to-plain-text", "subject", "date",
	"x-list", "mailing-list", "x-mailing-list", "list-*", "x-list-*", "x-unsub",
	"x-unsubscribe", "x-mailman-version", "x-beenthere", "x-loop", "mail-followup-to",
	"x-egroups-return", "x-egroups-from", "x-mdmailing-list", "x-xemacs-list", "x-sympa-to",
	"resent-from", "resent-to", "resent-date", "x-resent-from", "x-resent-to",
	"x-resent-date", "original-from", "original-to", "original-date", "x-original-from",
	"x-original-to", "x-original-date", "x-mailscanner*", "x-spam", "x-spam-*",
	"x-antispam", "x-rbl-warning", "x-mdaemon-deliver-to", "x-virus-scanned",
	"x-mass-check-id", "x-pyzor", "x-dcc-*", "x-filtered-by", "x-scanned-by", "x-scanner",
	"x-ap-spam-*", "x-ripe-spam-status", "x-spamcop-*", "x-smtpd", "spam-apparently-to",
	"x-spam-apparently-to", "spam", "x-perlmx-spam", "x-bogosity", "content-class",
	"thread-index", "thread-topic", "x-originalarrivaltime", "status", "x-status",
	"x-flags", "x-keywords", "replied", "forwarded", "lines", "content-length", "x-uid",
	"x-uidl", "x-imapbase", "x-bugzilla-*", "x-vm-*", "x-gnus-mail-source", "xref", NULL
};

/* Only their presence counts (they create lots of hapaxes). */
static const char *const tok_presence_hdrs[] = {
	"x-face", "x-pgp-fingerprint", "x-pgp-key-fingerprint", "x-gpg-fingerprint",
	"x-gpg-key-fingerprint", "x-gnupg-fingerprint", "x-gnupg-key-fingerprint",
	"x-gnu-pg-fingerprint", "dkim-signature", "domainkey-signature",
	"x-google-dkim-signature", "arc-message-signature", "arc-seal", "autocrypt", NULL
};

static bool tok_name_in(const char *name, size_t nl, const char *const *list)
{
	for (int i = 0; list[i]; i++) {
		size_t l = strlen(list[i]);

		if (list[i][l - 1] == '*') {
			if (nl >= l - 1 && strncasecmp(name, list[i], l - 1) == 0)
				return true;
		} else if (l == nl && strncasecmp(name, list[i], nl) == 0) {
			return true;
		}
	}
	return false;
}

/* SA's HEADER_NAME_COMPRESSION (case-sensitive, as there) */
static const char *tok_hdr_short(const char *name, size_t nl)
{
	static const char *const map[][2] = {
		{ "Message-Id", "*m" }, { "Message-ID", "*M" }, { "Received", "*r" },
		{ "User-Agent", "*u" }, { "References", "*f" }, { "In-Reply-To", "*i" },
		{ "From", "*F" }, { "Reply-To", "*R" }, { "Return-Path", "*p" },
		{ "Return-path", "*rp" }, { "X-Mailer", "*x" },
		{ "X-Authentication-Warning", "*a" }, { "Organization", "*o" },
		{ "Organisation", "*o" }, { "Content-Type", "*ct" },
		{ "Content-Disposition", "*cd" }, { "Content-Transfer-Encoding", "*ce" },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strlen(map[i][0]) == nl && strncmp(map[i][0], name, nl) == 0)
			return map[i][1];
	return NULL;
}

struct tok_hdr { char name[64]; struct strbuf v; };
struct tok_hdrs { struct tok_hdr *h; size_t n, cap; };

static void tok_hdrs_add(struct tok_hdrs *hs, const char *name, size_t nl, const char *v,
    size_t vl)
{
	struct tok_hdr *h = NULL;

	if (nl >= sizeof(h->name))
		nl = sizeof(h->name) - 1;
	for (size_t i = 0; i < hs->n; i++)
		if (strlen(hs->h[i].name) == nl && memcmp(hs->h[i].name, name, nl) == 0) {
			h = &hs->h[i];
			break;
		}
	if (h == NULL) {
		if (hs->n == hs->cap) {
			size_t nc = hs->cap ? hs->cap * 2 : 32;

			hs->h = realloc(hs->h, nc * sizeof(*hs->h));
			if (hs->h == NULL)
				abort();
			hs->cap = nc;
		}
		h = &hs->h[hs->n++];
		memset(h, 0, sizeof(*h));
		memcpy(h->name, name, nl);
		h->name[nl] = '\0';
	} else {
		tok_putc(&h->v, ' ');
	}
	tok_put(&h->v, v, vl);
}

static bool tok_is_month(const char *s, size_t n)
{
	static const char *const m[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
		"Aug", "Sep", "Oct", "Nov", "Dec", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun",
		NULL };

	if (n > 0 && s[n - 1] == ',')
		n--;
	for (int i = 0; m[i]; i++)
		if (n == 3 && strncmp(s, m[i], 3) == 0)
			return true;
	return false;
}

/* Received: ids, dates and with/from/for/SMTP words dropped; IPs cut to /24 plus an
 * "ip*a.b.c.d" token (full IPs kept in 10/8 and 192.168/16). */
static void tok_chew_received(const char *v, size_t n, struct strbuf *out)
{
	bool skip_next = false;

	for (size_t i = 0; i < n;) {
		size_t e;
		const char *w;
		size_t wl;
		unsigned a, b, c, d;
		int used = 0;

		while (i < n && isspace((unsigned char)v[i]))
			i++;
		e = i;
		while (e < n && !isspace((unsigned char)v[e]))
			e++;
		w = v + i;
		wl = e - i;
		i = e;
		if (wl == 0)
			continue;
		if (skip_next) {
			skip_next = false;
			continue;
		}
		if (wl == 2 && strncmp(w, "id", 2) == 0) {
			skip_next = true;
			continue;
		}
		if ((wl == 4 && (strncmp(w, "with", 4) == 0 || strncmp(w, "from", 4) == 0 ||
		    strncmp(w, "SMTP", 4) == 0)) || (wl == 3 && strncmp(w, "for", 3) == 0) ||
		    (wl == 5 && strncmp(w, "ESMTP", 5) == 0) || tok_is_month(w, wl))
			continue;
		/* dates: times, time zones, day numbers and years */
		{
			size_t digits = 0, colons = 0;

			for (size_t k = 0; k < wl; k++) {
				if (isdigit((unsigned char)w[k]))
					digits++;
				else if (w[k] == ':')
					colons++;
			}
			if ((colons && digits + colons == wl) || (digits == wl && wl <= 4) ||
			    ((w[0] == '+' || w[0] == '-') && digits == wl - 1 && wl == 5))
				continue;
		}
		for (size_t k = 0; k < wl && wl < 256; k++) {
			char ip[64], word[256];
			size_t il;

			if (!isdigit((unsigned char)w[k]) || (k > 0 && isdigit((unsigned char)w[k - 1])))
				continue;
			memcpy(word, w + k, wl - k);
			word[wl - k] = '\0';
			used = 0;
			if (sscanf(word, "%3u.%3u.%3u.%3u%n", &a, &b, &c, &d, &used) != 4 || used <= 0 ||
			    (size_t)used > wl - k)
				continue;
			if (k + (size_t)used < wl && isdigit((unsigned char)w[k + used]))
				continue;
			tok_putc(out, ' ');
			tok_put(out, w, k);
			if (a == 10 || (a == 192 && b == 168))
				il = (size_t)snprintf(ip, sizeof(ip), "%u.%u.%u.%u", a, b, c, d);
			else
				il = (size_t)snprintf(ip, sizeof(ip), "%u.%u.%u", a, b, c);
			tok_put(out, ip, il);
			il = (size_t)snprintf(ip, sizeof(ip), " ip*%u.%u.%u.%u ", a, b, c, d);
			tok_put(out, ip, il);
			tok_put(out, w + k + used, wl - k - (size_t)used);
			used = -1;
			break;
		}
		if (used == -1)
			continue;
		tok_putc(out, ' ');
		tok_put(out, w, wl);
	}
}

/* Message-Id: split at every non-word character. */
static void tok_chew_msgid(const char *v, size_t n, struct strbuf *out)
{
	for (size_t i = 0; i < n; i++)
		tok_putc(out, isalnum((unsigned char)v[i]) || v[i] == '_' ? v[i] : ' ');
}

/* Content-Type: the boundary's shape (hex digits as H), without text/charset words. */
static void tok_chew_ctype(const char *v, size_t n, struct strbuf *out)
{
	const char *b = NULL;
	size_t bl = 0, i = 0;

	for (size_t k = 0; k + 9 < n; k++)
		if (strncasecmp(v + k, "boundary=", 9) == 0) {
			size_t s = k + 9, e;
			char q = v[s];

			if (q == '"' || q == '\'') {
				s++;
				for (e = s; e < n && v[e] != q; e++)
					;
			} else {
				for (e = s; e < n && v[e] != ';' && !isspace((unsigned char)v[e]); e++)
					;
			}
			tok_put(out, v + i, k - i);
			b = v + s;
			bl = e - s;
			i = e < n ? e + 1 : n;
			break;
		}
	tok_put(out, v + i, n - i);
	/* drop the gray words */
	for (size_t k = 0; k < out->len; k++) {
		bool lb = k == 0 || !isalnum((unsigned char)out->v[k - 1]);

		if (lb && k + 4 <= out->len && strncmp(out->v + k, "text", 4) == 0 &&
		    (k + 4 == out->len || !isalnum((unsigned char)out->v[k + 4])))
			memset(out->v + k, ' ', 4);
		if (lb && k + 7 <= out->len && strncmp(out->v + k, "charset", 7) == 0 &&
		    (k + 7 == out->len || !isalnum((unsigned char)out->v[k + 7])))
			memset(out->v + k, ' ', 7);
	}
	if (b) {
		tok_putc(out, ' ');
		for (size_t k = 0; k < bl; k++) {
			char c = b[k];

			if (isxdigit((unsigned char)c))
				tok_putc(out, 'H');
			else if (c == '-' || c == '_' || c == '.' || c == '=') {
				tok_putc(out, ' ');
				while (k < bl && (b[k] == '-' || b[k] == '_' || b[k] == '.' || b[k] == '='))
					tok_putc(out, b[k++]);
				k--;
				tok_putc(out, ' ');
			} else {
				tok_putc(out, c);
			}
		}
	}
}

/* From/To/Cc...: "N*word" for display-name words, "U*user D*domain" for the address. */
static void tok_chew_addrs(struct tok_ctx *t, const char *v, size_t n, struct strbuf *out)
{
	size_t i = 0;

	while (i < n) {
		size_t e = i;
		bool q = false;
		int angle = 0;

		/* one address: up to a comma outside quotes and <> */
		while (e < n) {
			if (v[e] == '"')
				q = !q;
			else if (!q && v[e] == '<')
				angle++;
			else if (!q && v[e] == '>' && angle)
				angle--;
			else if (!q && !angle && v[e] == ',')
				break;
			e++;
		}
		{
			const char *lt = memchr(v + i, '<', e - i), *gt = NULL;
			const char *as = NULL, *ae = NULL;

			if (lt)
				gt = memchr(lt, '>', (size_t)(v + e - lt));
			if (lt && gt) {
				as = lt + 1;
				ae = gt;
			} else {
				/* a bare address: the word with an '@' */
				for (size_t k = i; k < e; k++)
					if (v[k] == '@') {
						size_t b = k, f = k;

						while (b > i && !isspace((unsigned char)v[b - 1]) && v[b - 1] != '(')
							b--;
						while (f < e && !isspace((unsigned char)v[f]) && v[f] != ')')
							f++;
						as = v + b;
						ae = v + f;
						break;
					}
			}
			/* phrase words: everything outside the address and comments' parentheses */
			for (size_t k = i; k < e;) {
				size_t we;

				while (k < e && (isspace((unsigned char)v[k]) || v[k] == '"' ||
				    v[k] == '(' || v[k] == ')'))
					k++;
				if (as && v + k >= as - (lt ? 1 : 0) && v + k < ae + (gt ? 1 : 0)) {
					k = (size_t)(ae - v) + (gt ? 1 : 0);
					continue;
				}
				we = k;
				while (we < e && !isspace((unsigned char)v[we]) && v[we] != '"' &&
				    v[we] != '<' && v[we] != '(' && v[we] != ')')
					we++;
				if (we > k) {
					tok_put(out, " N*", 3);
					tok_put(out, v + k, we - k);
				} else {
					we = k + 1;
				}
				k = we;
			}
			if (as && ae > as)
				tok_mail_addr(t, as, (size_t)(ae - as), out);
		}
		i = e + 1;
	}
}

/* Collects the header fields SA tokenizes into hs (merged per mapped name). */
/* Whether name is one of o's bayes_ignore_header fields (SA: exact, any case). */
static bool tok_user_ignored(const struct bayes_token_opts *o, const char *name, size_t nl)
{
	for (size_t i = 0; o && i < o->nignore; i++)
		if (strlen(o->ignore[i]) == nl && strncasecmp(o->ignore[i], name, nl) == 0)
			return true;
	return false;
}

static size_t tok_collect_headers(struct tok_ctx *t, const struct bayes_token_opts *o,
    const char *m, size_t len, struct tok_hdrs *hs)
{
	const char *rcvd[2] = { NULL, NULL };     /* the last two Received values */
	size_t rlen[2] = { 0, 0 };
	struct strbuf val = { 0 }, chew = { 0 };
	size_t i = 0, nfields = 0;

	while (i < len) {
		size_t ls = i, colon, ve, nl;
		const char *name;

		if (m[i] == '\n') {
			i++;
			break;
		}
		if (m[i] == '\r' && i + 1 < len && m[i + 1] == '\n') {
			i += 2;
			break;
		}
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
		if (colon >= len || m[colon] != ':' || colon == ls || ++nfields > TOK_MAX_HDRS)
			continue;
		name = m + ls;
		nl = colon - ls;
		while (nl && (name[nl - 1] == ' ' || name[nl - 1] == '\t'))
			nl--;
		if ((nl == 7 && strncasecmp(name, "List-Id", 7) == 0) ||
		    (nl == 16 && strncasecmp(name, "List-Unsubscribe", 16) == 0) ||
		    (nl == 12 && strncasecmp(name, "Mailing-List", 12) == 0) ||
		    (nl == 17 && strncasecmp(name, "X-Mailman-Version", 17) == 0))
			t->list_mail = true;
		if (tok_user_ignored(o, name, nl))   /* Received too, as in SA */
			continue;
		/* the value, unfolded */
		val.len = 0;
		tok_put(&val, "", 0);
		for (size_t k = colon + 1; k < ve; k++)
			if (m[k] != '\r' && m[k] != '\n')
				tok_putc(&val, m[k]);
		{
			size_t s = 0;

			while (s < val.len && (val.v[s] == ' ' || val.v[s] == '\t'))
				s++;
			memmove(val.v, val.v + s, val.len - s + 1);
			val.len -= s;
		}
		if (nl == 8 && strncasecmp(name, "Received", 8) == 0) {
			rcvd[1] = rcvd[0];
			rlen[1] = rlen[0];
			rcvd[0] = m + colon + 1;
			rlen[0] = ve - colon - 1;
			continue;
		}
		if (tok_name_in(name, nl, tok_ignored_hdrs))
			continue;
		{
			char *dec = NULL;
			const char *v = val.v;
			size_t vn = val.len;
			const char *sh;

			if (strstr(val.v, "=?")) {
				dec = mime_decode_header(val.v);
				v = dec;
				vn = strlen(dec);
			}
			chew.len = 0;
			tok_put(&chew, "", 0);
			if ((nl == 10 && strncasecmp(name, "Message-Id", 10) == 0) ||
			    (nl == 12 && strncasecmp(name, "X-Message-Id", 12) == 0) ||
			    (nl == 17 && strncasecmp(name, "Resent-Message-Id", 17) == 0)) {
				tok_chew_msgid(v, vn, &chew);
			} else if (tok_name_in(name, nl, (const char *const[]){ "return-path", "from",
			    "to", "cc", "reply-to", "errors-to", "mail-followup-to", "sender",
			    "x-return-path", "x-from", "x-to", "x-cc", "x-reply-to", "x-errors-to",
			    "resent-return-path", "resent-from", "resent-to", "resent-cc",
			    "resent-reply-to", "resent-sender", NULL })) {
				tok_chew_addrs(t, v, vn, &chew);
			} else if (nl == 12 && strncmp(name, "Content-Type", 12) == 0) {
				tok_chew_ctype(v, vn, &chew);
			} else if (nl == 12 && strncasecmp(name, "MIME-Version", 12) == 0) {
				for (size_t k = 0; k < vn; k++)
					if (!(k + 3 <= vn && strncmp(v + k, "1.0", 3) == 0))
						tok_putc(&chew, v[k]);
					else
						k += 2;
			} else if (tok_name_in(name, nl, tok_presence_hdrs)) {
				tok_put(&chew, "1", 1);
			} else {
				tok_put(&chew, v, vn);
			}
			if ((nl == 11 && strncasecmp(name, "In-Reply-To", 11) == 0) ||
			    (nl == 10 && strncasecmp(name, "References", 10) == 0) ||
			    (nl == 10 && strncasecmp(name, "Message-ID", 10) == 0))
				tok_hdrs_add(hs, "*MI", 3, chew.v, chew.len);
			if ((nl == 4 && strncasecmp(name, "From", 4) == 0) ||
			    (nl == 2 && strncasecmp(name, "To", 2) == 0) ||
			    (nl == 2 && strncasecmp(name, "Cc", 2) == 0))
				tok_hdrs_add(hs, "*Ad", 3, chew.v, chew.len);
			if ((nl == 8 && strncasecmp(name, "X-Mailer", 8) == 0) ||
			    (nl == 10 && strncasecmp(name, "User-Agent", 10) == 0))
				tok_hdrs_add(hs, "*UA", 3, chew.v, chew.len);
			sh = tok_hdr_short(name, nl);
			if (sh)
				tok_hdrs_add(hs, sh, strlen(sh), chew.v, chew.len);
			else
				tok_hdrs_add(hs, name, nl, chew.v, chew.len);
			free(dec);
		}
	}
	/* the last two Received lines (the oldest hops): spamware names and HELOs */
	for (int k = 0; k < 2; k++) {
		if (rcvd[k] == NULL)
			continue;
		val.len = 0;
		tok_put(&val, "", 0);
		for (size_t j = 0; j < rlen[k]; j++)
			if (rcvd[k][j] != '\r' && rcvd[k][j] != '\n')
				tok_putc(&val, rcvd[k][j]);
		chew.len = 0;
		tok_put(&chew, "", 0);
		tok_chew_received(val.v, val.len, &chew);
		tok_hdrs_add(hs, "*r", 2, chew.v, chew.len);
	}
	free(val.v);
	free(chew.v);
	return i;
}

/* ---------------------------------------------------------------- the message */

/* A link target of an HTML part: trimmed, fragments alone left out, www. as http://. */
static void tok_uri_cb(const char *uri, size_t len, void *arg)
{
	struct uri_list *l = arg;

	while (len && isspace((unsigned char)*uri)) {
		uri++;
		len--;
	}
	while (len && isspace((unsigned char)uri[len - 1]))
		len--;
	if (len == 0 || uri[0] == '#')
		return;
	if (len > 4 && strncasecmp(uri, "www.", 4) == 0 && len < 8192) {
		char buf[8200];

		memcpy(buf, "http://", 7);
		memcpy(buf + 7, uri, len);
		uri_list_push(l, buf, len + 7);
	} else {
		uri_list_push(l, uri, len);
	}
}

/* The URIs of rendered text as SpamAssassin's text finder sees them (uri_find.c), with
 * no rule-file TLD list (a last label of two or more letters). */
static struct uri_conf *tok_uri_conf;
static pthread_once_t tok_uri_once = PTHREAD_ONCE_INIT;

static void tok_uri_init(void)
{
	tok_uri_conf = uri_conf_new(NULL, 0, NULL, 0);
}

static void tok_text_uris(struct uri_list *l, struct match_scratch *ms, const char *s, size_t n)
{
	struct uri_details d = { 0 };

	if (ms == NULL)
		return;
	pthread_once(&tok_uri_once, tok_uri_init);
	uri_details_text(tok_uri_conf, ms, &d, s, n);
	for (size_t i = 0; i < d.n; i++)
		uri_list_push(l, d.v[i].raw, strlen(d.v[i].raw));
	uri_details_free(&d);
}

/* SpamAssassin 3's heuristic (Node.pm _html_render): a text/plain part that opens with an
 * HTML tag is what a reader's client renders as HTML. */
static bool tok_looks_html(const char *s, size_t n)
{
	static const char *const tags[] = { "body", "head", "html", "img", "pre", "table",
		"title", NULL };

	for (size_t i = 0; i < n && i <= 18; i++) {
		if (s[i] != '<')
			continue;
		for (int k = 0; tags[k]; k++) {
			size_t l = strlen(tags[k]);

			if (i + 1 + l < n && strncasecmp(s + i + 1, tags[k], l) == 0 &&
			    (s[i + 1 + l] == '>' || isspace((unsigned char)s[i + 1 + l])))
				return true;
		}
	}
	return false;
}

/* A list footer separator: a line of 20 or more '_' or '=' (Mailman's), "-- " (the
 * signature separator, which lists' footers follow) or a line that says how to
 * unsubscribe. */
static bool tok_footer_line(const char *s, size_t n)
{
	size_t k = 0;

	while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 2 && s[0] == '-' && s[1] == '-')
		return true;
	while (k < n && (s[k] == '_' || s[k] == '='))
		k++;
	if (k >= 20 && k == n)
		return true;
	for (size_t i = 0; i + 11 <= n; i++)
		if ((s[i] == 'u' || s[i] == 'U') && strncasecmp(s + i, "unsubscribe", 11) == 0)
			return true;
	return false;
}

/* Tokenizes text (a part's or the Subject's) line by line as body text; footers: a list
 * footer separator may start there (not in the Subject). */
static void tok_text_lines(struct tok_ctx *t, const char *s, size_t n, bool footers)
{
	size_t nlines = 0, line = 0;
	int mode = t->footer & BAYES_FOOTER_MODE;
	bool may = mode && (!(t->footer & BAYES_FOOTER_LISTS) || t->list_mail);

	t->in_footer = false;
	if (may && (t->footer & BAYES_FOOTER_LAST20))
		for (size_t i = 0; i < n; i++)
			nlines += s[i] == '\n';
	for (size_t i = 0; i < n && t->budget; line++) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - s) : n;

		if (may && footers && !t->in_footer && (!(t->footer & BAYES_FOOTER_LAST20) ||
		    line + 20 >= nlines) && tok_footer_line(s + i, e - i))
			t->in_footer = true;
		if (!t->in_footer)
			tok_line(t, s + i, e - i, "", 1);
		else if (mode == BAYES_FOOTER_PREFIX)
			tok_line(t, s + i, e - i, "F:", 1);
		t->prev.len = 0;          /* pairs do not cross lines */
		t->histn = 0;
		i = e + 1;
	}
}

/* ---------------------------------------------------------------- meta tokens */

/* The bucket of v among ascending bounds (index of the first bound >= v; n past them). */
static size_t tok_bucket(size_t v, const size_t *bounds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v <= bounds[i])
			return i;
	return n;
}

static void tok_emit_meta(struct tok_ctx *t, const char *fmt, size_t v)
{
	char b[64];
	int n = snprintf(b, sizeof(b), fmt, v);

	tok_emit(t, "M:", b, (size_t)n);
}

/* A Date value's shape: "ok" (RFC 5322 with a numeric zone), "zonename" (a named zone),
 * "nozone", "2digit" (a two-digit year) or "odd". */
static const char *tok_date_shape(const char *v, size_t n)
{
	char buf[128], wd[8], mon[8], zone[16];
	unsigned d, y, hh, mm;
	int used = 0;
	const char *p = buf;

	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	while (*p == ' ' || *p == '\t')
		p++;
	if (isalpha((unsigned char)*p) && sscanf(p, "%7[A-Za-z],%n", wd, &used) == 1 && used > 0)
		p += used;
	zone[0] = '\0';
	if (sscanf(p, "%u %7s %u %u:%u%n", &d, mon, &y, &hh, &mm, &used) != 5 ||
	    !tok_is_month(mon, strlen(mon)))
		return "odd";
	p += used;
	if (*p == ':')
		while (*++p && isdigit((unsigned char)*p))
			;
	sscanf(p, " %15s", zone);
	if (y < 100)
		return "2digit";
	if (zone[0] == '\0')
		return "nozone";
	if ((zone[0] == '+' || zone[0] == '-') && strlen(zone) == 5)
		return "ok";
	return "zonename";
}

/* Structural evidence that does not drift with vocabulary (rspamd's meta tokens): the
 * size, the header count and the order of a few structural fields, missing MIME-Version,
 * mailer, Date or Message-ID and the Date's shape, the MIME structure (top type, leaf
 * parts, images, attachments), the URL count and HTML's text share. */
static void tok_meta(struct tok_ctx *t, const char *msg, size_t len, const struct mime_result *mr,
    bool parsed, size_t nurls, size_t html_len, size_t html_text)
{
	static const size_t sizes[] = { 100, 200, 500, 1000, 2000, 4000, 10000, 20000, 30000,
		100000, 200000, 400000, 800000, 1000000, 2000000, 8000000 };
	static const size_t hdrs[] = { 4, 9, 14, 19, 29, 49 };
	static const size_t urls[] = { 0, 1, 3, 7, 15 };
	static const size_t few[] = { 0, 1, 2 };
	char order[16], ct[48] = "none", date[16] = "none";
	size_t no = 0, nh = 0, i = 0, nimg = 0, napp = 0, natt = 0;
	bool mailer = false, mimever = false, msgid = false;

	tok_emit_meta(t, "size%zu", tok_bucket(len, sizes, sizeof(sizes) / sizeof(sizes[0])));
	while (i < len && nh < TOK_MAX_HDRS) {
		const char *e = memchr(msg + i, '\n', len - i);
		size_t le = e ? (size_t)(e - msg) : len, colon;
		static const struct { const char *n; char c; } st[] = { { "From", 'F' }, { "To", 'T' },
			{ "Subject", 'S' }, { "Date", 'D' }, { "Message-ID", 'I' },
			{ "MIME-Version", 'V' }, { "Received", 'R' }, { "Content-Type", 'C' } };

		if (le == i || (le == i + 1 && msg[i] == '\r'))
			break;
		if (msg[i] == ' ' || msg[i] == '\t') {
			i = le + 1;
			continue;
		}
		for (colon = i; colon < le && msg[colon] != ':'; colon++)
			;
		if (colon < le) {
			size_t nl = colon - i;

			nh++;
			for (size_t k = 0; k < sizeof(st) / sizeof(st[0]); k++)
				if (strlen(st[k].n) == nl && strncasecmp(msg + i, st[k].n, nl) == 0 &&
				    memchr(order, st[k].c, no) == NULL && no + 1 < sizeof(order))
					order[no++] = st[k].c;
			if ((nl == 8 && strncasecmp(msg + i, "X-Mailer", 8) == 0) ||
			    (nl == 10 && strncasecmp(msg + i, "User-Agent", 10) == 0))
				mailer = true;
			if (nl == 12 && strncasecmp(msg + i, "MIME-Version", 12) == 0)
				mimever = true;
			if (nl == 10 && strncasecmp(msg + i, "Message-ID", 10) == 0)
				msgid = true;
			if (nl == 4 && strncasecmp(msg + i, "Date", 4) == 0)
				snprintf(date, sizeof(date), "%s", tok_date_shape(msg + colon + 1, le - colon - 1));
			if (nl == 12 && strncasecmp(msg + i, "Content-Type", 12) == 0) {
				size_t s = colon + 1, k = 0;

				while (s < le && isspace((unsigned char)msg[s]))
					s++;
				while (s < le && k + 1 < sizeof(ct) && msg[s] != ';' &&
				    !isspace((unsigned char)msg[s]))
					ct[k++] = (char)tolower((unsigned char)msg[s++]);
				ct[k] = '\0';
			}
		}
		i = le + 1;
	}
	order[no] = '\0';
	if (!(t->meta & BAYES_META_NO_HDRS))
		tok_emit_meta(t, "hdrs%zu", tok_bucket(nh, hdrs, sizeof(hdrs) / sizeof(hdrs[0])));
	if (!(t->meta & BAYES_META_NO_ORDER))
		tok_emit(t, "M:order:", order, no);
	if (!mailer)
		tok_emit(t, "M:", "nomailer", 8);
	if (!mimever)
		tok_emit(t, "M:", "nomimeversion", 13);
	if (!msgid)
		tok_emit(t, "M:", "nomessageid", 11);
	tok_emit(t, "M:date:", date, strlen(date));
	tok_emit(t, "M:ct:", ct, strlen(ct));
	if (parsed) {
		size_t ntext = 0, nhtml = 0;

		for (size_t p = 0; p < mr->nparts; p++)
			*(mr->parts[p].html ? &nhtml : &ntext) += 1;
		for (size_t h = 0; h < mr->nhdrs && h < 256; h++) {
			const char *v = mr->hdrs[h].value;

			while (isspace((unsigned char)*v))
				v++;
			if (strcasecmp(mr->hdrs[h].name, "Content-Type") == 0) {
				if (strncasecmp(v, "image/", 6) == 0)
					nimg++;
				else if (strncasecmp(v, "application/", 12) == 0)
					napp++;
			} else if (strcasecmp(mr->hdrs[h].name, "Content-Disposition") == 0 &&
			    strncasecmp(v, "attachment", 10) == 0) {
				natt++;
			}
		}
		tok_emit_meta(t, "leaves%zu", mr->nleaves < 5 ? mr->nleaves : 5);
		tok_emit_meta(t, "text%zu", tok_bucket(ntext, few, 3));
		tok_emit_meta(t, "html%zu", tok_bucket(nhtml, few, 3));
		tok_emit_meta(t, "img%zu", tok_bucket(nimg, few, 3));
		tok_emit_meta(t, "app%zu", tok_bucket(napp, few, 3));
		tok_emit_meta(t, "att%zu", tok_bucket(natt, few, 3));
	}
	tok_emit_meta(t, "urls%zu", tok_bucket(nurls, urls, sizeof(urls) / sizeof(urls[0])));
	if (html_len && !(t->meta & BAYES_META_NO_HTMLTEXT))
		tok_emit_meta(t, "htmltext%zu", html_text * 10 / html_len);
}

size_t bayes_tokenize_cb(const char *msg, size_t len, const struct bayes_token_opts *o,
    bayes_token_cb cb, void *arg)
{
	struct tok_ctx t = { .cb = cb, .arg = arg };
	struct tok_hdrs hs = { 0 };
	struct mime_result mr;
	struct mime_limits lim = { 0 };
	struct uri_list ul = { .max = 1000 };
	struct match_scratch *ms = match_scratch_new();
	size_t body_off, html_len = 0, html_text = 0;
	bool parsed = false;

	t.pairs = o && o->pairs;
	t.window = o ? o->window : 0;
	t.footer = o ? o->footer : 0;
	t.meta = o ? o->meta : 0;
	lim.max_text = o && o->max_text ? o->max_text : TOK_MAX_TEXT;
	/* an mbox separator is not part of the message */
	if (len > 5 && strncmp(msg, "From ", 5) == 0) {
		const char *nl = memchr(msg, '\n', len);
		size_t skip = nl ? (size_t)(nl - msg) + 1 : len;

		msg += skip;
		len -= skip;
	}
	body_off = tok_collect_headers(&t, o, msg, len, &hs);
	(void)body_off;
	/* body: the Subject first, then every text part rendered (SA's visible text) */
	t.budget = TOK_MAX_BODY;
	{
		const char *m = msg;
		size_t i = 0;

		while (i < len && m[i] != '\n' && !(m[i] == '\r' && i + 1 < len && m[i + 1] == '\n')) {
			const char *e = memchr(m + i, '\n', len - i);
			size_t le = e ? (size_t)(e - m) : len;

			if (le - i > 8 && strncasecmp(m + i, "Subject:", 8) == 0) {
				struct strbuf s = { 0 };
				char *dec;

				tok_put(&s, "", 0);
				for (size_t k = i + 8;;) {
					size_t ke = k;

					while (ke < len && m[ke] != '\n')
						ke++;
					for (; k < ke; k++)
						if (m[k] != '\r')
							tok_putc(&s, m[k]);
					if (ke + 1 < len && (m[ke + 1] == ' ' || m[ke + 1] == '\t')) {
						k = ke + 1;
						continue;
					}
					break;
				}
				dec = mime_decode_header(s.v);
				tok_text_lines(&t, dec, strlen(dec), false);
				free(dec);
				free(s.v);
				break;
			}
			i = le + 1;
		}
	}
	if (mime_parse(msg, len, &lim, &mr) == 0) {
		for (size_t p = 0; p < mr.nparts; p++) {
			struct mime_text *mt = &mr.parts[p];

			if (mt->html || tok_looks_html(mt->text, mt->len)) {
				size_t rl;
				char *r = mime_html_to_text(mt->text, mt->len, &rl, tok_uri_cb, &ul);

				html_len += mt->len;
				html_text += rl;
				tok_text_lines(&t, r, rl, true);
				tok_text_uris(&ul, ms, r, rl);
				free(r);
			} else {
				tok_text_lines(&t, mt->text, mt->len, true);
				tok_text_uris(&ul, ms, mt->text, mt->len);
			}
		}
		/* MIME parts: content types and attachment name extensions */
		t.budget = TOK_MAX_HEADER;
		for (size_t h = 0; h < mr.nhdrs && h < 256; h++) {
			const char *n = mr.hdrs[h].name, *v = mr.hdrs[h].value;

			while (isspace((unsigned char)*v))
				v++;                   /* raw values keep their leading blank */

			if (strcasecmp(n, "Content-Type") == 0) {
				size_t e = 0;

				while (v[e] && v[e] != ';' && !isspace((unsigned char)v[e]))
					e++;
				if (e) {
					char ct[64];
					size_t k;

					for (k = 0; k < e && k + 1 < sizeof(ct); k++)
						ct[k] = (char)tolower((unsigned char)v[k]);
					tok_emit(&t, "MIME:", ct, k);
				}
			}
			if (strcasecmp(n, "Content-Disposition") == 0 || strcasecmp(n, "Content-Type") == 0) {
				const char *fn = strcasestr(v, "name=");

				if (fn) {
					const char *dot = NULL;

					for (const char *q = fn + 5; *q && *q != ';' && *q != '"' && *q != '\r' &&
					    *q != '\n'; q++)
						if (*q == '.')
							dot = q;
						else if (q == fn + 5 && *q == '"')
							continue;
					if (dot) {
						size_t e = 1;

						while (isalnum((unsigned char)dot[e]) && e < 10)
							e++;
						tok_emit(&t, "MIME:ext:", dot + 1, e - 1);
					}
				}
			}
		}
		parsed = true;
	}
	t.budget = TOK_MAX_HEADER;
	if (t.meta & BAYES_META_ON)
		tok_meta(&t, msg, len, &mr, parsed, ul.n, html_len, html_text);
	if (parsed)
		mime_result_free(&mr);
	t.budget = TOK_MAX_URI;
	for (size_t u = 0; u < ul.n; u++)
		tok_line(&t, ul.v[u], strlen(ul.v[u]), "", 2);
	uri_list_free(&ul);
	match_scratch_free(ms);
	t.budget = TOK_MAX_HEADER;
	for (size_t h = 0; h < hs.n; h++) {
		char prefix[72];

		snprintf(prefix, sizeof(prefix), "H%s:", hs.h[h].name);
		if (hs.h[h].v.v)
			tok_line(&t, hs.h[h].v.v, hs.h[h].v.len, prefix, 0);
		free(hs.h[h].v.v);
	}
	free(hs.h);
	free(t.prev.v);
	free(t.tmp.v);
	free(t.line.v);
	free(t.word.v);
	return t.emitted;
}

/* ---------------------------------------------------------------- hashing */

uint64_t bayes_token_hash(const char *tok, size_t len)
{
	/* FNV-1a over the bytes, then MurmurHash3's 64-bit finalizer for avalanche */
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)tok[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h ? h : 1;           /* 0 is reserved for "no token" */
}

struct tok_hash_sink { struct bayes_tokens *out; size_t max; };

static void tok_hash_cb(const char *tok, size_t len, void *arg)
{
	struct tok_hash_sink *s = arg;
	struct bayes_tokens *o = s->out;

	if (o->n == o->cap) {
		size_t nc = o->cap ? o->cap * 2 : 512;

		o->v = realloc(o->v, nc * sizeof(uint64_t));
		if (o->v == NULL)
			abort();
		o->cap = nc;
	}
	o->v[o->n++] = bayes_token_hash(tok, len);
}

static int tok_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

size_t bayes_tokenize(const char *msg, size_t len, const struct bayes_token_opts *o,
    struct bayes_tokens *out)
{
	struct tok_hash_sink s = { .out = out };
	size_t max = o && o->max_tokens ? o->max_tokens : TOK_MAX_UNIQUE;
	size_t u = 0;

	memset(out, 0, sizeof(*out));
	bayes_tokenize_cb(msg, len, o, tok_hash_cb, &s);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(uint64_t), tok_cmp);
	for (size_t i = 0; i < out->n; i++)
		if (u == 0 || out->v[u - 1] != out->v[i])
			out->v[u++] = out->v[i];
	out->n = u;
	if (out->n > max) {
		/* the smallest hashes: an unbiased sample, as the hash is uniform */
		out->n = max;
		out->truncated = true;
	}
	return out->n;
}

void bayes_tokens_free(struct bayes_tokens *t)
{
	if (t == NULL)
		return;
	free(t->v);
	memset(t, 0, sizeof(*t));
}
