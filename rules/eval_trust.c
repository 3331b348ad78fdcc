/* eval_trust.c — SpamAssassin's RelayEval tests over the trust path (received.c): all relays
 * trusted, none, unparseable ones, HELO oddities of untrusted relays, forged Received trails.
 * Semantics of Mail::SpamAssassin::Plugin::RelayEval 4.0.1. */
#include "eval_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* SA's IS_IPV4_ADDRESS: exactly a dotted quad. */
static bool trust_is_ipv4(const char *s)
{
	struct in_addr a;
	int dots = 0;

	for (const char *p = s; *p; p++) {
		if (*p == '.')
			dots++;
		else if (!isdigit((unsigned char)*p))
			return false;
	}
	return dots == 3 && inet_pton(AF_INET, s, &a) == 1;
}

EVAL_FN(eval_check_all_trusted)
{
	const struct rcvd_info *ri = eval_relays(c);

	(void)call;
	return ri->ntrusted && !ri->nuntrusted && !ri->nunparseable;
}

EVAL_FN(eval_check_no_relays)
{
	const struct rcvd_info *ri = eval_relays(c);

	(void)call;
	return !ri->ntrusted && !ri->nuntrusted && !ri->nunparseable;
}

EVAL_FN(eval_check_relays_unparseable)
{
	(void)call;
	return eval_relays(c)->nunparseable ? 1 : 0;
}

EVAL_FN(eval_check_for_sender_no_reverse)
{
	const struct rcvd_info *ri = eval_relays(c);
	const struct rcvd_relay *r;

	(void)call;
	if (ri->nuntrusted == 0)
		return 0;
	r = ri->untrusted[ri->nuntrusted - 1];
	return strchr(r->rdns, '.') != NULL && !r->ip_private;
}

EVAL_FN(eval_check_for_numeric_helo)
{
	static struct eval_rx rx = { "\\bhelo=(" "(?:1\\d\\d|2[0-4]\\d|25[0-5]|[1-9]\\d|\\d)\\."
		"(?:1\\d\\d|2[0-4]\\d|25[0-5]|[1-9]\\d|\\d)\\.(?:1\\d\\d|2[0-4]\\d|25[0-5]|[1-9]\\d|\\d)\\."
		"(?:1\\d\\d|2[0-4]\\d|25[0-5]|[1-9]\\d|\\d))(?=[\\000-\\040,;\\[()<>]|\\z)", RULE_RE_I, NULL };
	const struct rcvd_info *ri = eval_relays(c);
	size_t ov[4];
	char ip[32];

	(void)call;
	if (!ri->untrusted_str[0] ||
	    !eval_rx_groups(c, &rx, ri->untrusted_str, strlen(ri->untrusted_str), ov, 2))
		return 0;
	snprintf(ip, sizeof(ip), "%.*s", (int)(ov[3] - ov[2]), ri->untrusted_str + ov[2]);
	return !received_ip_is_private(ip);
}

EVAL_FN(eval_check_for_illegal_ip)
{
	(void)c;
	(void)call;
	return 0;               /* SA: no longer available */
}

EVAL_FN(eval_helo_ip_mismatch)
{
	const struct rcvd_info *ri = eval_relays(c);

	(void)call;
	for (size_t i = 0; i < ri->nuntrusted; i++) {
		const struct rcvd_relay *r = ri->untrusted[i];
		const char *d;
		size_t pl;

		if (!trust_is_ipv4(r->helo) || received_ip_is_private(r->helo))
			continue;
		if (!trust_is_ipv4(r->ip) || received_ip_is_private(r->ip) ||
		    strcmp(r->helo, r->ip) == 0)
			continue;
		d = strrchr(r->helo, '.');         /* the first three octets and their dot */
		pl = (size_t)(d - r->helo) + 1;
		if (strncmp(r->ip, r->helo, pl) != 0)
			return 1;
	}
	return 0;
}

EVAL_FN(eval_check_for_no_rdns_dotcom_helo)
{
	static struct eval_rx rx = { "(?:\\.|^)(lycos\\.com|lycos\\.co\\.uk|hotmail\\.com"
		"|localhost\\.com|excite\\.com|caramail\\.com|cs\\.com|aol\\.com|msn\\.com|yahoo\\.com"
		"|drizzle\\.com)$", RULE_RE_I, NULL };
	const struct rcvd_info *ri = eval_relays(c);
	bool hit = false;

	(void)call;
	for (size_t i = 0; i < ri->nuntrusted; i++) {
		const struct rcvd_relay *r = ri->untrusted[i];

		if (r->ip_private)
			continue;
		hit = false;          /* SA resets the flag for every public untrusted relay */
		if (eval_rx_str(c, &rx, r->helo) && r->no_reverse_dns)
			hit = true;
	}
	return hit;
}

/* SA's hostname_to_domain(): the last two labels (three when the TLD is short). */
static void trust_host_domain(const char *host, char *out, size_t cap)
{
	const char *parts[128];
	size_t np = 0, l[128];
	const char *p = host;
	bool alpha = false;

	for (const char *q = host; *q; q++)
		if (isalpha((unsigned char)*q))
			alpha = true;
	if (!alpha) {
		snprintf(out, cap, "%s", host);
		return;
	}
	while (np < 128) {
		const char *d = strchr(p, '.');

		parts[np] = p;
		l[np] = d ? (size_t)(d - p) : strlen(p);
		np++;
		if (!d)
			break;
		p = d + 1;
	}
	while (np > 0 && l[np - 1] == 0)      /* split drops trailing empty fields */
		np--;
	if (np > 1) {
		const char *t = parts[np - 1];
		size_t tl = l[np - 1], run = 0;
		bool big = false;

		for (size_t i = 0; i < tl; i++) {
			run = isspace((unsigned char)t[i]) ? 0 : run + 1;
			if (run >= 3)
				big = true;
		}
		for (size_t i = 0; i + 1 < tl && !big; i++)
			if ((t[i] == 'i' && t[i + 1] == 'e') || (t[i] == 'f' && t[i + 1] == 'r') ||
			    (t[i] == 'd' && t[i + 1] == 'e'))
				big = true;
		if (big) {
			snprintf(out, cap, "%.*s.%.*s", (int)l[np - 2], parts[np - 2], (int)tl, t);
			return;
		}
	}
	if (np > 2) {
		snprintf(out, cap, "%.*s.%.*s.%.*s", (int)l[np - 3], parts[np - 3], (int)l[np - 2],
		    parts[np - 2], (int)l[np - 1], parts[np - 1]);
		return;
	}
	snprintf(out, cap, "%s", host);
}

static void trust_lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* SA's _check_for_forged_received: (mismatched "from" hops, massive HELO mismatches). */
static void trust_forged(struct eval_ctx *c, int *mismatch_from, int *mismatch_ip_helo)
{
	static struct eval_rx host = { "^\\w+(?:[\\w.-]+\\.)+\\w+$", 0, NULL };
	const struct rcvd_info *ri = eval_relays(c);
	char prev[256] = "";
	bool have_prev = false;

	*mismatch_from = *mismatch_ip_helo = 0;
	for (size_t i = 0; i < ri->nuntrusted; i++) {
		const struct rcvd_relay *r = ri->untrusted[i];
		char by[256], from[256], helo[256], lc[256];
		bool from_def = true;

		snprintf(lc, sizeof(lc), "%s", r->by);
		trust_lower(lc);
		trust_host_domain(lc, by, sizeof(by));
		snprintf(lc, sizeof(lc), "%s", r->rdns);
		trust_lower(lc);
		trust_host_domain(lc, from, sizeof(from));
		snprintf(lc, sizeof(lc), "%s", r->helo);
		trust_lower(lc);
		trust_host_domain(lc, helo, sizeof(helo));
		if (!eval_rx_str(c, &host, by))
			goto next;
		if ((strcmp(from, "localhost") == 0 || strcmp(from, "localhost.localdomain") == 0) &&
		    strcmp(r->ip, "127.0.0.1") == 0)
			from_def = false;
		if (trust_is_ipv4(helo) && trust_is_ipv4(r->ip) && strcmp(r->ip, helo) != 0) {
			const char *h2 = strchr(strchr(helo, '.') + 1, '.');
			const char *f2 = strchr(strchr(r->ip, '.') + 1, '.');

			if ((h2 - helo != f2 - r->ip || strncmp(helo, r->ip, (size_t)(h2 - helo)) != 0) &&
			    !received_ip_is_private(helo))
				(*mismatch_ip_helo)++;
		}
		if (have_prev && i > 0 && eval_rx_str(c, &host, prev) && strcmp(by, prev) != 0 &&
		    !(strcmp(by, "msn.com") == 0 && strcmp(prev, "hotmail.com") == 0))
			(*mismatch_from)++;
next:
		/* $from[$i-1] is the previous relay's domain (undef for localhost 127.0.0.1) */
		snprintf(prev, sizeof(prev), "%s", from);
		have_prev = from_def;
	}
}

EVAL_FN(eval_check_for_forged_received_trail)
{
	int f, h;

	(void)call;
	trust_forged(c, &f, &h);
	return f > 1;
}

EVAL_FN(eval_check_for_forged_received_ip_helo)
{
	int f, h;

	(void)call;
	trust_forged(c, &f, &h);
	return h > 0;
}

EVAL_FN(eval_check_for_from_domain_in_received_headers)
{
	const char *dom = call->arg[0];
	bool want = strcmp(call->arg[1], "true") == 0;
	const struct rcvd_info *ri;
	char *re, *rcvd, *pat;
	size_t n;
	bool found;

	n = strlen(dom) + 32;
	pat = eval_alloc(c, n);
	snprintf(pat, n, "\\b\\Q%s\\E", dom);
	if (strstr(dom, "\\E") || !eval_dyn_match(c, pat, RULE_RE_I, eval_get(c, "From:addr")))
		return 0;
	ri = eval_relays(c);
	n = strlen(dom) * 2 + 64;
	re = eval_alloc(c, n);
	/* SA interpolates the domain into the pattern unquoted */
	snprintf(re, n, " rdns=\\S*\\b%s [^\\]]*by=\\S*\\b%s ", dom, dom);
	n = strlen(ri->trusted_str) + strlen(ri->untrusted_str) + 2;
	rcvd = eval_alloc(c, n);
	snprintf(rcvd, n, "%s\n%s", ri->trusted_str, ri->untrusted_str);
	found = eval_dyn_match(c, re, 0, rcvd);
	return found ? want : !want;
}

/* WLBLEval's check_mailfrom_matches_rcvd: the envelope sender's registered domain is that
 * of the rDNS of the last untrusted relay (or of a trusted one when all are). */
EVAL_FN(eval_check_mailfrom_matches_rcvd)
{
	const char *sender = eval_get(c, "EnvelopeFrom:addr"), *at, *adrd;
	const struct rcvd_info *ri;
	struct rcvd_relay *one[1], **relays;
	size_t n;
	bool tried = false;

	(void)call;
	at = strrchr(sender, '@');
	if (!at || !strchr(at + 1, '.') || at[1] == '.' || at[strlen(at) - 1] == '.' ||
	    memchr(sender, '@', (size_t)(at - sender)))
		return 0;           /* / \@ ( [^\@]+ \. [^\@]+ ) \z/x */
	ri = eval_relays(c);
	if (ri->nuntrusted) {
		one[0] = ri->untrusted[0];
		relays = one;
		n = 1;
	} else {
		relays = ri->trusted;
		n = ri->ntrusted;
	}
	if (n == 0)
		return 0;
	adrd = eval_registered_domain(c, at + 1);
	for (size_t i = 0; i < n; i++) {
		if (!relays[i]->rdns[0])
			continue;
		tried = true;
		if (strcmp(adrd, eval_registered_domain(c, relays[i]->rdns)) == 0)
			return 1;
	}
	(void)tried;
	return 0;
}
