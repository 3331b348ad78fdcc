/* gwrefuse.c — a backend's refusal of the gateway itself, told from a refusal of the
 * message. See gwrefuse.h. */
#include "gwrefuse.h"
#include "backend.h"
#include "cfg.h"
#include "log.h"
#include "smtp_reply.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

/* Exchange Online (learn.microsoft.com "Email non-delivery reports and SMTP errors in
 * Exchange Online"): 5.7.606-5.7.649 "Access denied, banned sending IP [IP]" (the sending
 * address is on its block list: the gateway's, never the client's, which Exchange does not
 * see as the connecting host); 5.7.57 "Client not authenticated to send anonymous mail
 * during MAIL FROM" (the server named is a submission endpoint, smtp.office365.com:587,
 * not the tenant's MX). */
/* And "530 5.7.0 Must issue a STARTTLS command first" (Postfix's smtpd, Sendmail and Exchange
 * word it so), the answer to MAIL of a server that takes mail only over TLS when mxgate did
 * not use it (backends.starttls false, or a handshake that failed: no STARTTLS for 10
 * minutes): the gateway's connection is refused, never the sender's message. */
const char *const gwrefuse_builtin[] = { "5.7.606-5.7.649", "5.7.57", "Must issue a STARTTLS command first", NULL };

/* An enhanced status code at s (RFC 3463 2: class "." subject "." detail, subject and
 * detail 1*3DIGIT), class 2, 4 or 5: its parts, and the octets it takes. 0 when s does not
 * start with one. */
static size_t gwrefuse_parse_code(const char *s, int part[3])
{
	size_t i = 0;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	part[0] = s[0] - '0';
	i = 1;
	for (int k = 1; k < 3; k++) {
		int n = 0, d = 0;

		if (s[i] != '.')
			return 0;
		i++;
		while (isdigit((unsigned char)s[i]) && d < 4) {
			n = n * 10 + (s[i] - '0');
			i++;
			d++;
		}
		if (d == 0 || d > 3)
			return 0;
		part[k] = n;
	}
	return i;
}

/* pat as a code or a range (lo, hi): true when it is one (the rest of the text then does
 * not matter); valid: whether it is a well-formed one of class 5. */
static bool gwrefuse_pattern_code(const char *pat, int lo[3], int hi[3], bool *valid)
{
	size_t n = gwrefuse_parse_code(pat, lo), m;

	*valid = false;
	if (n == 0 || (pat[n] != '\0' && pat[n] != '-'))
		return false;
	memcpy(hi, lo, 3 * sizeof(int));
	if (pat[n] == '-') {
		m = gwrefuse_parse_code(pat + n + 1, hi);
		if (m == 0 || pat[n + 1 + m] != '\0')
			return true;	/* "5.7.1-" or "5.7.1-x": meant as a range, malformed */
	}
	*valid = lo[0] == 5 && hi[0] == 5 && lo[1] == hi[1] && lo[2] <= hi[2];
	return true;
}

int gwrefuse_check_pattern(const char *pat, const char **why)
{
	int lo[3], hi[3];
	bool valid;
	size_t len = strlen(pat);

	if (len == 0 || len > GWREFUSE_PATTERN_MAX) {
		*why = "a pattern is 1 to 200 octets";
		return -1;
	}
	if (gwrefuse_pattern_code(pat, lo, hi, &valid) && !valid) {
		*why = "an enhanced status code of class 5 (\"5.7.57\") or a range of one class and subject "
		       "(\"5.7.606-5.7.649\")";
		return -1;
	}
	return 0;
}

/* Whether reply text (its enhanced code parsed into have, or hn == 0 without one) matches
 * pat. */
static bool gwrefuse_match_one(const char *pat, const char *text, const int have[3], size_t hn)
{
	int lo[3], hi[3];
	bool valid;

	if (gwrefuse_pattern_code(pat, lo, hi, &valid)) {
		return valid && hn > 0 && have[0] == lo[0] && have[1] == lo[1] && have[2] >= lo[2] &&
		    have[2] <= hi[2];
	}
	return strcasestr(text, pat) != NULL;	/* pat: 1 octet or more (gwrefuse_check_pattern) */
}

const char *gwrefuse_match(int code, const char *text, const struct cfg_strlist *extra)
{
	int have[3] = { 0, 0, 0 };
	size_t hn = 0;
	char enh[12];

	if (code / 100 != 5 || text == NULL)
		return NULL;
	/* the reply's enhanced code as every module reads it (its last line's) */
	struct smtp_reply rep = { .code = code, .text = text, .len = strlen(text), .nlines = 1 };
	if (smtp_reply_enhanced(&rep, enh))
		hn = gwrefuse_parse_code(enh, have);
	for (size_t i = 0; gwrefuse_builtin[i]; i++)
		if (gwrefuse_match_one(gwrefuse_builtin[i], text, have, hn))
			return gwrefuse_builtin[i];
	for (size_t i = 0; extra && i < extra->n; i++)
		if (gwrefuse_match_one(extra->v[i], text, have, hn))
			return extra->v[i];
	return NULL;
}

void gwrefuse_report(struct pool *p, struct backend *b, const char *sid, const char *stage, int code,
    const char *text, const char *pattern)
{
	char rv[256], pv[256];
	long long unlogged = backend_refused_log_due(b, (long long)(uv_hrtime() / 1000000));

	if (unlogged >= 0)
		log_event(LOG_LVL_ERROR, sid, "event=gateway_refused backend=%s stage=%s code=%d reply=%s%s%s action=next_backend unlogged=%lld",
		    b->url, stage, code, log_val(rv, sizeof(rv), text ? text : ""), pattern ? " pattern=" : "",
		    pattern ? log_val(pv, sizeof(pv), pattern) : "", unlogged);
	backend_report_refused(p, b, "refused the gateway");
}
