/* eval_header.c — SpamAssassin's HeaderEval tests: missing and forged headers, dates shifted
 * against the Received chain, recipients lists, subject case, charsets in headers, ratware
 * Message-Ids. Semantics of Mail::SpamAssassin::Plugin::HeaderEval 4.0.1. */
#include "eval_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HE_IP "(?:(?:1\\d\\d|2[0-4]\\d|25[0-5]|[1-9]\\d|\\d)\\.){3}(?:1\\d\\d|2[0-4]\\d|25[0-5]|[1-9]\\d|\\d)"

/* A copy of s with every whitespace run turned into one space (s/\s+/ /gs). */
static char *he_squash(struct eval_ctx *c, const char *s)
{
	size_t n = strlen(s), o = 0;
	char *d = eval_strndup(c, s, n);
	bool sp = false;

	for (size_t i = 0; i < n; i++) {
		if (isspace((unsigned char)s[i])) {
			sp = true;
			continue;
		}
		if (sp)
			d[o++] = ' ';
		sp = false;
		d[o++] = s[i];
	}
	if (sp)
		d[o++] = ' ';
	d[o] = '\0';
	return d;
}

static bool he_ends_with_ci(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* /\bDOMAIN$/i on an address */
static bool he_addr_domain(const char *addr, const char *dom)
{
	size_t n = strlen(addr), k = strlen(dom);

	if (n < k || strcasecmp(addr + n - k, dom) != 0)
		return false;
	return n == k || !(isalnum((unsigned char)addr[n - k - 1]) || addr[n - k - 1] == '_');
}

EVAL_FN(eval_check_for_fake_aol_relay_in_rcvd)
{
	static struct eval_rx rly = { " rly-[a-z][a-z]\\d\\d\\.", RULE_RE_I, NULL };
	static struct eval_rx aol = { "\\/AOL-\\d+\\.\\d+\\.\\d+\\)", 0, NULL };
	static struct eval_rx esmtp = { "ESMTP id (?:RELAY|MAILRELAY|MAILIN)", 0, NULL };
	const char *r = he_squash(c, eval_get(c, "Received"));

	(void)call;
	if (!eval_rx_str(c, &rly, r))
		return 0;
	if (eval_rx_str(c, &aol, r) || eval_rx_str(c, &esmtp, r))
		return 0;
	return 1;
}

EVAL_FN(eval_check_for_faraway_charset_in_headers)
{
	(void)c;
	(void)call;
	/* SA: with ok_locales "all" (the stock setting, the only one mxgate reads) every
	 * charset is fine */
	return 0;
}

EVAL_FN(eval_check_for_unique_subject_id)
{
	(void)c;
	(void)call;
	return 0;                /* SA 4: always 0 */
}

static bool he_valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char b = s[i];
		size_t k;
		unsigned long cp;

		if (b < 0x80) {
			i++;
			continue;
		}
		if ((b & 0xe0) == 0xc0) {
			k = 1;
			cp = b & 0x1f;
		} else if ((b & 0xf0) == 0xe0) {
			k = 2;
			cp = b & 0x0f;
		} else if ((b & 0xf8) == 0xf0) {
			k = 3;
			cp = b & 0x07;
		} else {
			return false;
		}
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (s[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

EVAL_FN(eval_check_illegal_chars)
{
	char req[128];
	const unsigned char *s;
	size_t n, illegal = 0, hi = 0, ctl = 0;
	bool subj;

	snprintf(req, sizeof(req), "%s%s", call->arg[0],
	    he_ends_with_ci(call->arg[0], ":raw") ? "" : ":raw");
	subj = strcasecmp(req, "subject:raw") == 0;
	s = (const unsigned char *)eval_get(c, req);
	n = strlen((const char *)s);
	{
		bool nonspace = false;

		for (size_t i = 0; i < n; i++)
			if (!isspace(s[i]))
				nonspace = true;
		if (!nonspace)
			return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] >= 0x80)
			hi++;
		if (s[i] <= 0x08 || s[i] == 0x0b || s[i] == 0x0c || (s[i] >= 0x0e && s[i] <= 0x1f))
			ctl++;
	}
	if (hi && he_valid_utf8(s, n) && ctl == 0)
		return 0;             /* non-ASCII, valid UTF-8, no controls */
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 0x08 || s[i] == 0x0b || s[i] == 0x0c || (s[i] >= 0x0e && s[i] <= 0x1f) ||
		    s[i] >= 0x7f)
			illegal++;
	if (illegal > 0 && subj) {
		size_t exempt = 0;

		for (size_t i = 0; i < n; i++)
			if (s[i] == 0xa2 || s[i] == 0xa3 || s[i] == 0xae)
				exempt++;
		if (exempt == 1)
			illegal--;
	}
	return ((double)illegal / (double)n) >= call->num[1] && (double)illegal >= call->num[2];
}

EVAL_FN(eval_gated_through_received_hdr_remover)
{
	static struct eval_rx ezmlm = { "^contact \\S+\\@\\S+\\; run by ezmlm$", RULE_RE_M, NULL };
	static struct eval_rx dlto = { "^mailing list \\S+\\@\\S+", RULE_RE_M, NULL };
	static struct eval_rx qmail = { "qmail \\d+ invoked (?:from network|by .{3,20})\\); \\d+ ... \\d+", 0, NULL };
	static struct eval_rx msn = { "from groups\\.msn\\.com \\(\\S+\\.msn\\.com ", 0, NULL };
	const char *rcvd;

	(void)call;
	if (eval_exists(c, "Mailing-List") && eval_rx_str(c, &ezmlm, eval_get(c, "Mailing-List")) &&
	    eval_rx_str(c, &dlto, eval_get(c, "Delivered-To")) &&
	    eval_rx_str(c, &qmail, eval_get(c, "Received")))
		return 1;
	if (!eval_exists(c, "Received"))
		return 1;              /* no Received headers at all */
	rcvd = eval_get(c, "Received");
	return eval_rx_str(c, &msn, rcvd);
}

EVAL_FN(eval_check_for_msn_groups_headers)
{
	static struct eval_rx to = { "<(\\S+)\\@groups\\.msn\\.com>", RULE_RE_I, NULL };
	static struct eval_rx pickup = { "from mail pickup service by ((?:p\\d\\d\\.)groups\\.msn\\.com)\\b", 0, NULL };
	const char *t = eval_get(c, "To"), *r = eval_get(c, "Received"), *mid;
	char list[256], server[256], pat[700];
	size_t ov[4];

	(void)call;
	if (!eval_rx_groups(c, &to, t, strlen(t), ov, 2))
		return 0;
	snprintf(list, sizeof(list), "%.*s", (int)(ov[3] - ov[2]), t + ov[2]);
	if (!eval_rx_groups(c, &pickup, r, strlen(r), ov, 2))
		return 0;
	snprintf(server, sizeof(server), "%.*s", (int)(ov[3] - ov[2]), r + ov[2]);
	if (strstr(list, "\\E"))
		return 0;
	mid = eval_get(c, "Message-Id");
	if (strcmp(list, "notifications") == 0) {
		snprintf(pat, sizeof(pat), "^<\\S+\\@\\Q%s\\E>", server);
		return eval_dyn_match(c, pat, 0, mid);
	}
	snprintf(pat, sizeof(pat), "^<\\Q%s\\E-\\S+\\@groups\\.msn\\.com>", list);
	if (!eval_dyn_match(c, pat, 0, mid))
		return 0;
	snprintf(pat, sizeof(pat), "\\Q%s\\E-bounce\\@groups\\.msn\\.com", list);
	return eval_dyn_match(c, pat, 0, eval_get(c, "EnvelopeFrom:addr"));
}

/* SA's _check_for_forged_hotmail_received_headers, once per message. */
static void he_hotmail(struct eval_ctx *c)
{
	static struct eval_rx pickup = { "from mail pickup service by hotmail\\.com with Microsoft SMTPSVC;", 0, NULL };
	static struct eval_rx ip = { HE_IP, 0, NULL };
	static struct eval_rx orig = { "hotmail\\.com|msonline\\-outlook", 0, NULL };
	static struct eval_rx r1 = { "from (?:\\S*\\.)?hotmail.com \\(\\S+\\.hotmail(?:\\.msn)?\\.com[ \\)]", 0, NULL };
	static struct eval_rx r2 = { "from \\S*\\.outbound\\.protection\\.outlook\\.com \\(\\S+\\.outbound\\.protection\\.outlook\\.com[ \\)]", 0, NULL };
	static struct eval_rx r3 = { "from \\S*\\.(?:eur|nam)prd\\d+\\.prod\\.outlook\\.com \\(" HE_IP "\\)", 0, NULL };
	static struct eval_rx r4 = { "from \\S*\\.hotmail.com \\(\\[" HE_IP "\\][ \\):]", 0, NULL };
	static struct eval_rx r5 = { "from \\S+ by \\S+\\.hotmail(?:\\.msn)?\\.com with HTTP\\;", 0, NULL };
	static struct eval_rx r6 = { "from \\[66\\.218.\\S+\\] by \\S+\\.yahoo\\.com", 0, NULL };
	static struct eval_rx helo = { "(?:from |HELO |helo=)\\S*hotmail\\.com\\b", 0, NULL };
	struct eval_msg *m = c->m;
	const char *rcvd;
	bool has_ip, has_orig;

	if (m->hotmail_state)
		return;
	m->hotmail_state = 1;
	m->hotmail_forged = m->hotmail_none = false;
	rcvd = he_squash(c, eval_get(c, "Received"));
	if (eval_rx_str(c, &pickup, rcvd))
		return;
	if (eval_check_for_msn_groups_headers(c, NULL))
		return;
	has_ip = eval_exists(c, "X-Originating-Ip") && eval_rx_str(c, &ip, eval_get(c, "X-Originating-Ip"));
	has_orig = eval_exists(c, "X-OriginatorOrg") &&
	    eval_rx_str(c, &orig, eval_get(c, "X-OriginatorOrg"));
	if (eval_gated_through_received_hdr_remover(c, NULL))
		return;
	if ((has_ip && (eval_rx_str(c, &r1, rcvd) || eval_rx_str(c, &r4, rcvd) ||
	    eval_rx_str(c, &r5, rcvd) || eval_rx_str(c, &r6, rcvd))) ||
	    (has_orig && (eval_rx_str(c, &r2, rcvd) || eval_rx_str(c, &r3, rcvd))))
		return;
	if (eval_rx_str(c, &helo, rcvd)) {
		m->hotmail_forged = true;
	} else {
		if (!he_addr_domain(eval_get(c, "From:addr"), "hotmail.com"))
			return;
		m->hotmail_none = true;
	}
}

EVAL_FN(eval_check_for_forged_hotmail_received_headers)
{
	(void)call;
	he_hotmail(c);
	return c->m->hotmail_forged;
}

EVAL_FN(eval_check_for_no_hotmail_received_headers)
{
	(void)call;
	he_hotmail(c);
	return c->m->hotmail_none;
}

EVAL_FN(eval_check_for_forged_eudoramail_received_headers)
{
	static struct eval_rx ip = { HE_IP, 0, NULL };
	static struct eval_rx ww = { "by \\S*whowhere.com\\;", 0, NULL };
	const char *rcvd;
	bool has_ip;

	(void)call;
	if (!he_addr_domain(eval_get(c, "From:addr"), "eudoramail.com"))
		return 0;
	rcvd = he_squash(c, eval_get(c, "Received"));
	has_ip = eval_exists(c, "X-Sender-Ip") && eval_rx_str(c, &ip, eval_get(c, "X-Sender-Ip"));
	if (eval_gated_through_received_hdr_remover(c, NULL))
		return 0;
	if (eval_rx_str(c, &ww, rcvd) && has_ip)
		return 0;
	return 1;
}

EVAL_FN(eval_check_for_forged_yahoo_received_headers)
{
	static struct eval_rx tr = { " rdns=\\S+\\.yahoo\\.com ", 0, NULL };
	static struct eval_rx ut = { "^[^\\]]+ rdns=\\S+\\.yahoo\\.com ", 0, NULL };
	static struct eval_rx y1 = { "by web\\S+\\.mail\\S*\\.yahoo\\.com via HTTP", 0, NULL };
	static struct eval_rx y2 = { "by sonic\\S+\\.consmr\\.mail\\S*\\.yahoo\\.com with HTTP", 0, NULL };
	static struct eval_rx y3 = { "by smtp\\S+\\.yahoo\\.com with SMTP", 0, NULL };
	static struct eval_rx y4 = { "from \\[" HE_IP "\\] by \\S+\\.(?:groups|scd|dcn)\\.yahoo\\.com with NNFMP", 0, NULL };
	static struct eval_rx y5 = { "\\bmailer\\d+\\.bulk\\.scd\\.yahoo\\.com\\b", 0, NULL };
	static struct eval_rx y6 = { "\\@reply\\.yahoo\\.com$", RULE_RE_I, NULL };
	static struct eval_rx y7 = { "by \\w+\\.\\w+\\.yahoo\\.com \\(\\d+\\.\\d+\\.\\d+\\/\\d+\\.\\d+\\.\\d+\\)(?: with ESMTP)? id \\w+", 0, NULL };
	const char *from = eval_get(c, "From:addr"), *rcvd;
	const struct rcvd_info *ri;

	(void)call;
	if (!he_addr_domain(from, "yahoo.com"))
		return 0;
	rcvd = eval_get(c, "Received");
	if (eval_get(c, "Resent-From")[0] && eval_get(c, "Resent-To")[0]) {
		const char *x = eval_get(c, "X-Received");

		if (x[0])
			rcvd = x;
	}
	rcvd = he_squash(c, rcvd);
	if (eval_gated_through_received_hdr_remover(c, NULL))
		return 0;
	ri = eval_relays(c);
	if (eval_rx_str(c, &tr, ri->trusted_str) || eval_rx_str(c, &ut, ri->untrusted_str))
		return 0;
	if (eval_rx_str(c, &y1, rcvd) || eval_rx_str(c, &y2, rcvd) || eval_rx_str(c, &y3, rcvd) ||
	    eval_rx_str(c, &y4, rcvd))
		return 0;
	if (eval_rx_str(c, &y5, rcvd) && eval_rx_str(c, &y6, from))
		return 0;
	if (eval_rx_str(c, &y7, rcvd))
		return 0;
	return 1;
}

EVAL_FN(eval_check_for_forged_juno_received_headers)
{
	static struct eval_rx j1 = { "from.*\\b(?:juno|untd)\\.com.*[\\[\\(]" HE_IP "[\\]\\)].*by", 0, NULL };
	static struct eval_rx j2 = { " cookie\\.(?:juno|untd)\\.com ", 0, NULL };
	static struct eval_rx j3 = { "from.*\\bmail\\.com.*\\[" HE_IP "\\].*by", 0, NULL };
	static struct eval_rx j4 = { "\\bmail\\.com", 0, NULL };
	static struct eval_rx j5 = { "from (webmail\\S+\\.untd\\.com) \\(\\1 \\[" HE_IP "\\]\\) by", 0, NULL };
	static struct eval_rx j6 = { "^Webmail Version \\d", 0, NULL };
	static struct eval_rx ip = { HE_IP, 0, NULL };
	const char *xorig, *xmailer, *rcvd;

	(void)call;
	if (!he_addr_domain(eval_get(c, "From:addr"), "juno.com"))
		return 0;
	if (eval_gated_through_received_hdr_remover(c, NULL))
		return 0;
	xorig = eval_get(c, "X-Originating-IP");
	xmailer = eval_get(c, "X-Mailer");
	rcvd = eval_get(c, "Received");
	if (xorig[0]) {
		if (!eval_rx_str(c, &j1, rcvd) && !eval_rx_str(c, &j2, rcvd))
			return 1;
		if (strstr(xmailer, "Juno ") == NULL)
			return 1;
	} else {
		if (eval_rx_str(c, &j3, rcvd)) {
			if (!eval_rx_str(c, &j4, xmailer))
				return 1;
		} else if (eval_rx_str(c, &j5, rcvd)) {
			if (!eval_rx_str(c, &j6, xmailer))
				return 1;
		} else {
			return 1;
		}
		if (!eval_rx_str(c, &ip, xorig))
			return 1;
	}
	return 0;
}

EVAL_FN(eval_check_for_forged_gmail_received_headers)
{
	static struct eval_rx x1 = { "by 10\\.\\S+ with SMTP id \\S+", 0, NULL };
	static struct eval_rx x2 = { "by 2002\\:a\\d\\d\\:\\w+\\:\\S+ with SMTP id \\S+", 0, NULL };
	static struct eval_rx r1 = { "by smtp\\.googlemail\\.com with ESMTPSA id \\S+", 0, NULL };
	const char *xr, *r;

	(void)call;
	if (!he_addr_domain(eval_get(c, "From:addr"), "gmail.com"))
		return 0;
	xr = eval_get(c, "X-Received");
	r = eval_get(c, "Received");
	if (eval_rx_str(c, &x1, xr) || eval_rx_str(c, &x2, xr) || eval_rx_str(c, &r1, r))
		return 0;
	if (strlen(eval_get(c, "X-Gm-Message-State")) >= 60 &&
	    strlen(eval_get(c, "X-Google-Smtp-Source")) >= 60)
		return 0;
	return 1;
}

EVAL_FN(eval_check_for_matching_env_and_hdr_from)
{
	(void)call;
	return strcasecmp(eval_get(c, "EnvelopeFrom:addr"), eval_get(c, "From:addr")) == 0;
}

static int he_strcmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* SA's _check_recipients: To/Cc (and Bcc) addresses, consecutive duplicates dropped. */
static void he_recipients(struct eval_ctx *c)
{
	const char *in[512], *addr[256], *sorted[256];
	size_t nin, n = 0;
	struct eval_msg *m = c->m;

	if (m->recip_state)
		return;
	m->recip_state = 1;
	nin = eval_get_all(c, "ToCc:addr", in, 256);
	if (nin < 5)
		nin += eval_get_all(c, "Bcc:addr", in + nin, 256);
	for (size_t i = 0; i < nin && n < 256; i++) {
		if (in[i][0] == '\0')
			break;              /* while (my $current = shift @inputs): a false value ends it */
		if (n == 0 || strcasecmp(in[i], addr[n - 1]) != 0)
			addr[n++] = in[i];
	}
	memcpy(sorted, addr, n * sizeof(char *));
	qsort(sorted, n, sizeof(char *), he_strcmp);
	m->tocc_sorted = n >= 7;
	for (size_t i = 0; i < n && m->tocc_sorted; i++)
		if (strcmp(addr[i], sorted[i]) != 0)
			m->tocc_sorted = false;
	m->tocc_similar = 0;
	if (n >= 5) {
		unsigned hits = 0, comb = 0;

		for (size_t i = 0; i < n; i++)
			for (size_t j = i + 1; j < n; j++) {
				const char *hi = strchr(addr[i], '@'), *hj = strchr(addr[j], '@');

				if (strncmp(addr[i], addr[j], 2) == 0)
					hits++;
				/* the first two characters of the hosts, and the hosts differ */
				if (hi && hj && strncmp(hi + 1, hj + 1, 2) == 0 && strcmp(hi + 1, hj + 1) != 0)
					hits++;
				comb++;
			}
		m->tocc_similar = comb ? (double)hits / comb : 0;
	}
}

EVAL_FN(eval_sorted_recipients)
{
	(void)call;
	he_recipients(c);
	return c->m->tocc_sorted;
}

EVAL_FN(eval_similar_recipients)
{
	double v;

	he_recipients(c);
	v = c->m->tocc_similar;
	return (isnan(call->num[0]) || v >= call->num[0]) && (isnan(call->num[1]) || v < call->num[1]);
}

EVAL_FN(eval_check_for_missing_to_header)
{
	(void)call;
	if (eval_get(c, "To")[0])
		return 0;
	return eval_get(c, "Apparently-To")[0] ? 0 : 1;
}

EVAL_FN(eval_check_for_forged_gw05_received_headers)
{
	static struct eval_rx rx = { "\\nfrom\\s(\\S+)\\sby\\s(\\S+)\\swith\\sESMTP\\;\\s+\\S\\S\\S,\\s+\\d+\\s+\\S\\S\\S\\s+"
		"\\d{4}\\s+\\d\\d:\\d\\d:\\d\\d\\s+[-+]*\\d{4}\\n$", RULE_RE_S, NULL };
	const char *r = eval_get(c, "Received");
	size_t ov[6];

	(void)call;
	if (!eval_rx_groups(c, &rx, r, strlen(r), ov, 3))
		return 0;
	return memchr(r + ov[4], '.', ov[5] - ov[4]) == NULL;
}

/* SA's _get_received_header_times: dates of the Received headers, the fetchmail ones
 * apart. Returns the count in times[]. */
static size_t he_received_times(struct eval_ctx *c, double *times, size_t max, double *fetch)
{
	static struct eval_rx local = { "\\bfrom (?:localhost\\s|(?:\\S+ ){1,2}\\S*\\b127\\.0\\.0\\.1\\b)", 0, NULL };
	static struct eval_rx qmail = { "qmail \\d+ invoked by uid \\d+", 0, NULL };
	static struct eval_rx fetchm = { "\\bby localhost with \\w+ \\(fetchmail-[\\d.]+", 0, NULL };
	static struct eval_rx date = { "(\\s.?\\d+ \\S\\S\\S \\d+ \\d+:\\d+:\\d+ \\S+)", 0, NULL };
	const char *all[256], *rcv[256], *loc[4];
	size_t nall = eval_get_all(c, "Received", all, 256), n = 0, nloc = 0, nt = 0;
	size_t ov[4];

	*fetch = NAN;
	for (size_t i = 0; i < nall; i++) {
		/* split /\n/, keep lines with a non-space */
		const char *s = all[i];

		while (*s) {
			const char *e = strchr(s, '\n');
			size_t l = e ? (size_t)(e - s) : strlen(s);
			bool ns = false;

			for (size_t k = 0; k < l; k++)
				if (!isspace((unsigned char)s[k]))
					ns = true;
			if (ns && n < 256)
				rcv[n++] = eval_strndup(c, s, l);
			s += l + (e ? 1 : 0);
		}
	}
	if (n == 0)
		return 0;
	if (eval_rx_str(c, &local, rcv[0]) || eval_rx_str(c, &qmail, rcv[0])) {
		loc[nloc++] = rcv[0];
		memmove(rcv, rcv + 1, --n * sizeof(char *));
	}
	if (n && eval_rx_str(c, &fetchm, rcv[0])) {
		loc[nloc++] = rcv[0];
		memmove(rcv, rcv + 1, --n * sizeof(char *));
	} else if (nloc) {
		memmove(rcv + 1, rcv, n * sizeof(char *));
		rcv[0] = loc[--nloc];
		n++;
	}
	if (nloc) {
		double best = NAN;
		time_t now = c->now;

		for (size_t i = 0; i < nloc; i++) {
			char d[128];
			double t;

			if (!eval_rx_groups(c, &date, loc[i], strlen(loc[i]), ov, 2))
				continue;
			snprintf(d, sizeof(d), "%.*s", (int)(ov[3] - ov[2]), loc[i] + ov[2]);
			t = eval_parse_date(c, d);
			if (!isnan(t) && (double)now >= t && (isnan(best) || t > best))
				best = t;
		}
		*fetch = best;
	}
	for (size_t i = 0; i < n && nt < max; i++) {
		char d[128];
		double t;

		if (!eval_rx_groups(c, &date, rcv[i], strlen(rcv[i]), ov, 2))
			continue;
		snprintf(d, sizeof(d), "%.*s", (int)(ov[3] - ov[2]), rcv[i] + ov[2]);
		t = eval_parse_date(c, d);
		if (!isnan(t))
			times[nt++] = t;
	}
	return nt;
}

/* Date: (or Resent-Date:) as a time, NAN when none parses. */
static double he_date_header_time(struct eval_ctx *c)
{
	static const char *const names[] = { "Resent-Date", "Date" };

	for (int k = 0; k < 2; k++) {
		const char *v[32];
		size_t n = eval_get_all(c, names[k], v, 32);

		for (size_t i = 0; i < n; i++) {
			double t;

			if (!v[i][0])
				continue;
			t = eval_parse_date(c, v[i]);
			if (!isnan(t))
				return t;
		}
	}
	return NAN;
}

static int he_absdiff_cmp(const void *a, const void *b)
{
	double x = fabs(*(const double *)a), y = fabs(*(const double *)b);

	return x < y ? -1 : x > y;
}

/* SA's _check_date_diff: the Date: header against the Received dates. */
static void he_date_diff(struct eval_ctx *c)
{
	struct eval_msg *m = c->m;
	double times[256], diffs[256], fetch;
	size_t n;

	if (m->date_state)
		return;
	m->date_state = 1;
	m->date_diff = 0;
	m->date_header_time = he_date_header_time(c);
	m->have_date = !isnan(m->date_header_time);
	if (!m->have_date)
		return;
	n = he_received_times(c, times, 256, &fetch);
	if (n == 0)
		return;
	for (size_t i = 0; i < n; i++)
		diffs[i] = m->date_header_time - times[i];
	if (n > 1 && diffs[n - 1] == 0)
		n--;
	qsort(diffs, n, sizeof(double), he_absdiff_cmp);
	m->date_diff = diffs[0];
}

EVAL_FN(eval_check_for_shifted_date)
{
	double d;

	he_date_diff(c);
	d = c->m->date_diff;
	return (isnan(call->num[0]) || d >= 3600 * call->num[0]) &&
	    (isnan(call->num[1]) || d < 3600 * call->num[1]);
}

EVAL_FN(eval_received_within_months)
{
	double times[256], fetch, poss[4], diff, received = 0;
	size_t n, np = 0;

	he_date_diff(c);
	if (c->m->have_date)
		poss[np++] = c->m->date_header_time;
	n = he_received_times(c, times, 256, &fetch);
	if (n)
		poss[np++] = times[0];
	if (!isnan(fetch))
		poss[np++] = fetch;
	if (c->m->have_date && n)
		poss[np++] = c->m->date_header_time - c->m->date_diff;
	if (np) {
		/* the median: sorted descending, element int($#/2) */
		for (size_t i = 0; i < np; i++)
			for (size_t j = i + 1; j < np; j++)
				if (poss[j] > poss[i]) {
					double t = poss[i];

					poss[i] = poss[j];
					poss[j] = t;
				}
		received = poss[(np - 1) / 2];
	}
	diff = (double)c->now - received;
	return (isnan(call->num[0]) || diff >= 31556952.0 * (call->num[0] / 12)) &&
	    (isnan(call->num[1]) || diff < 31556952.0 * (call->num[1] / 12));
}

EVAL_FN(eval_subject_is_all_caps)
{
	static struct eval_rx prefix = { "^(?:(?:Re|Fwd|Fw|Aw|Antwort|WG|SV|VB|VS|VL):\\s*)+", RULE_RE_I, NULL };
	/* SA's CHARSETS_LIKELY_TO_FP_AS_CAPS */
	/* SA's CHARSETS_LIKELY_TO_FP_AS_CAPS */
	static struct eval_rx fpcs = { "=\\?[-_a-z0-9]*(?:koi|jp|jis|euc|gb|big5|isoir|cp1251|"
		"windows-1251|georgianps|pt154|tis)[-_a-z0-9]*\\?", RULE_RE_I, NULL };
	const char *s = eval_get(c, "Subject");
	size_t n = strlen(s), b = 0, e = n, ov[2], letters = 0;
	bool space = false, upper = true;

	(void)call;
	while (b < e && isspace((unsigned char)s[b]))
		b++;
	while (e > b && isspace((unsigned char)s[e - 1]))
		e--;
	if (eval_rx_groups(c, &prefix, s + b, e - b, ov, 1))
		b += ov[1];
	for (size_t i = b; i < e; i++)
		if (isspace((unsigned char)s[i]))
			space = true;
	if (!space)
		return 0;
	if (e - b < 10)            /* length() counts characters; bytes are close enough */
		return 0;
	if (eval_rx_str(c, &fpcs, eval_get(c, "Subject:raw")))
		return 0;
	for (size_t i = b; i < e; i++)
		if (isalpha((unsigned char)s[i]) && (unsigned char)s[i] < 0x80) {
			letters++;
			if (islower((unsigned char)s[i]))
				upper = false;
		}
	return letters && upper;
}

EVAL_FN(eval_check_for_to_in_subject)
{
	const char *to = eval_get(c, "To:addr"), *subj;
	char pat[2400], user[512];
	unsigned flags = RULE_RE_I | RULE_RE_X;

	if (!to[0] || strstr(to, "\\E") || strlen(to) > 500)
		return 0;             /* \Q..\E quoting would break */
	subj = eval_get(c, "Subject");
	if (strcmp(call->arg[0], "address") == 0) {
		snprintf(pat, sizeof(pat), "\\b\\Q%s\\E\\b", to);
		flags = RULE_RE_I;
	} else if (strcmp(call->arg[0], "user") == 0) {
		const char *at = strchr(to, '@');

		snprintf(user, sizeof(user), "%.*s", (int)(at ? (size_t)(at - to) : strlen(to)), to);
		snprintf(pat, sizeof(pat), "^(?:(?:re|fw):\\s*(?:\\w+\\s+)?\\Q%s\\E$|(?-i:\\Q%s\\E)\\s*"
		    "[,:;!?-](?:$|\\s)|\\Q%s\\E$|,\\s*\\Q%s\\E[,:;!?-]$)", user, user, user, user);
	} else {
		return 0;
	}
	return eval_dyn_match(c, pat, flags, subj);
}

EVAL_FN(eval_check_outlook_message_id)
{
	static struct eval_rx id = { "^<[0-9a-f]{4}([0-9a-f]{8})\\$[0-9a-f]{8}\\$[0-9a-f]{8}\\@", 0, NULL };
	const double x = 0.0023283064365387, y = 27111902.8329849, fudge = 250;
	const char *mid = eval_get(c, "MESSAGEID"), *r;
	size_t ov[4];
	double token, t, expected;
	char hex[9];

	(void)call;
	if (!eval_rx_groups(c, &id, mid, strlen(mid), ov, 2))
		return 0;
	memcpy(hex, mid + ov[2], 8);
	hex[8] = '\0';
	token = (double)strtoul(hex, NULL, 16);
	t = eval_parse_date(c, eval_get(c, "Date"));
	if (isnan(t))
		t = 0;
	expected = floor(t * x + y);
	if (fabs(token - expected) < fudge)
		return 0;
	/* SA matches a date pattern but then parses all of $_, the Received text */
	r = eval_get(c, "Received");
	t = eval_parse_date(c, r);
	if (isnan(t))
		t = 0;
	expected = floor(t * x + y);
	return fabs(token - expected) >= fudge;
}

EVAL_FN(eval_check_messageid_not_usable)
{
	static struct eval_rx lu = { "<mailto:(?:leave-\\S+|\\S+-unsubscribe)\\@\\S+>$", RULE_RE_I, NULL };
	static struct eval_rx cwt = { "\\/CWT\\/DCE\\)", 0, NULL };
	static struct eval_rx ipl = { "iPlanet Messaging Server", 0, NULL };
	const char *r;

	(void)call;
	if (eval_rx_str(c, &lu, eval_get(c, "List-Unsubscribe")))
		return 1;
	if (eval_gated_through_received_hdr_remover(c, NULL))
		return 1;
	r = eval_get(c, "Received");
	return eval_rx_str(c, &cwt, r) || eval_rx_str(c, &ipl, r);
}

EVAL_FN(eval_check_header_count_range)
{
	const char *v[512];
	size_t n = eval_get_all(c, call->arg[0], v, 512), uniq = 0;

	for (size_t i = 0; i < n; i++) {
		bool dup = false;

		for (size_t j = 0; j < i && !dup; j++)
			if (strcmp(v[i], v[j]) == 0)
				dup = true;
		if (!dup)
			uniq++;
	}
	return (double)uniq >= call->num[1] && (double)uniq <= call->num[2];
}

EVAL_FN(eval_check_unresolved_template)
{
	static struct eval_rx tmpl = { "%[A-Z][A-Z_-]", 0, NULL };
	static struct eval_rx ok = { "^(?:X-VMS-To|X-UIDL|X-Face|To|Cc|From|Subject|References|"
		"In-Reply-To|(?:X-|Resent-|X-Original-)?Message-Id):", RULE_RE_I, NULL };
	const char *all = eval_get(c, "ALL");

	(void)call;
	while (*all) {
		const char *e = strchr(all, '\n');
		size_t l = e ? (size_t)(e - all) : strlen(all);

		if (eval_rx_match(c, &tmpl, all, l) && !eval_rx_match(c, &ok, all, l))
			return 1;
		all += l + (e ? 1 : 0);
	}
	return 0;
}

EVAL_FN(eval_check_ratware_name_id)
{
	static struct eval_rx mid = { "<[A-Z]{28}\\.([^>]+?)>", 0, NULL };
	const char *m = eval_get(c, "MESSAGEID");
	char pat[600], part[512];
	size_t ov[4];

	(void)call;
	if (!eval_rx_groups(c, &mid, m, strlen(m), ov, 2))
		return 0;
	snprintf(part, sizeof(part), "%.*s", (int)(ov[3] - ov[2]), m + ov[2]);
	if (strstr(part, "\\E"))
		return 0;
	snprintf(pat, sizeof(pat), "\"[^\"]+\"\\s*<\\Q%s\\E>", part);
	return eval_dyn_match(c, pat, 0, eval_get(c, "From"));
}

EVAL_FN(eval_check_ratware_envelope_from)
{
	const char *to = eval_get(c, "To:addr"), *from = eval_get(c, "EnvelopeFrom:addr"), *at;
	char pat[1200];

	(void)call;
	if (!from[0] || !to[0] || strstr(to, "\\E") || strlen(to) > 500)
		return 0;
	if (strncasecmp(from, "SRS", 3) == 0 && isdigit((unsigned char)from[3]) &&
	    (from[4] == '=' || from[4] == '+' || from[4] == '-'))
		return 0;
	at = strchr(to, '@');
	if (at == NULL || at == to || strchr(at + 1, '@'))
		return 0;
	/* SA trims the domain to its registered part and requires a known TLD; the full
	 * domain is used here */
	snprintf(pat, sizeof(pat), "\\b\\Q%s\\E.\\Q%.*s\\E@", at + 1, (int)(at - to), to);
	return eval_dyn_match(c, pat, RULE_RE_I, from);
}

/* The second-level domain: "a.b.example.org" -> "example.org" (s/^.+\.([^\.]+\.[^\.]+)$/$1/) */
static const char *he_sld(const char *dom)
{
	const char *last = strrchr(dom, '.'), *p;

	if (last == NULL || last == dom)
		return dom;
	for (p = last - 1; p > dom && *p != '.'; p--)
		;
	if (*p != '.' || p == dom)
		return dom;
	return p + 1;
}

EVAL_FN(eval_check_equal_from_domains)
{
	const char *from = eval_get(c, "From:addr"), *env = eval_get(c, "EnvelopeFrom:addr");
	const char *fa = strrchr(from, '@'), *ea = strrchr(env, '@'), *fd, *ed;

	(void)call;
	if (fa == NULL || fa[1] == '\0')
		return 0;
	fd = he_sld(fa + 1);
	if (ea == NULL || ea[1] == '\0')
		return 0;
	ed = he_sld(ea + 1);
	return strcasecmp(fd, ed) != 0;
}
