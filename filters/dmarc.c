/* dmarc.c — RFC 7489 policy evaluation. */
#include "filters/dmarc.h"
#include "filters/dkim_tags.h"

#include <idn2.h>
#include <libpsl.h>

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *dmarc_policy_name(enum dmarc_policy p)
{
	switch (p) {
	case DMARC_POLICY_UNSET: return "unset";
	case DMARC_POLICY_NONE: return "none";
	case DMARC_POLICY_QUARANTINE: return "quarantine";
	case DMARC_POLICY_REJECT: return "reject";
	}
	return "unset";
}

const char *dmarc_result_name(enum dmarc_result r)
{
	switch (r) {
	case DMARC_RESULT_NONE: return "none";
	case DMARC_RESULT_PASS: return "pass";
	case DMARC_RESULT_FAIL: return "fail";
	case DMARC_RESULT_TEMPERROR: return "temperror";
	case DMARC_RESULT_PERMERROR: return "permerror";
	}
	return "none";
}

/* ---- records ---------------------------------------------------------------------------- */

/* RFC 7489 6.4: v=DMARC1 first, the value matched exactly. */
static bool dmarc_has_version(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i >= len || (s[i] != 'v' && s[i] != 'V'))
		return false;
	i++;
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i >= len || s[i] != '=')
		return false;
	i++;
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (len - i < 6 || memcmp(s + i, "DMARC1", 6) != 0)
		return false;
	i += 6;
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return i == len || s[i] == ';';
}

static const struct dkim_tag *dmarc_tag(const struct dkim_tags *t, const char *name)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].name_len == nl && strncasecmp(t->v[i].name, name, nl) == 0)
			return &t->v[i];
	return NULL;
}

static enum dmarc_policy dmarc_policy_word(const struct dkim_tag *t)
{
	if (dkim_tag_value_is(t, "none", true))
		return DMARC_POLICY_NONE;
	if (dkim_tag_value_is(t, "quarantine", true))
		return DMARC_POLICY_QUARANTINE;
	if (dkim_tag_value_is(t, "reject", true))
		return DMARC_POLICY_REJECT;
	return DMARC_POLICY_UNSET;
}

int dmarc_record_parse(const char *txt, size_t len, struct dmarc_record *r)
{
	struct dkim_tags tags;
	const struct dkim_tag *t;
	unsigned long long u;

	memset(r, 0, sizeof(*r));
	r->pct = 100;
	if (!dmarc_has_version(txt, len))
		return DMARC_REC_NOT_DMARC;
	if (dkim_tags_parse(txt, len, &tags) != DKIM_TAGS_OK)
		return DMARC_REC_INVALID;
	r->p = dmarc_policy_word(dmarc_tag(&tags, "p"));
	if (r->p == DMARC_POLICY_UNSET) {
		t = dmarc_tag(&tags, "rua");
		if (t == NULL || t->value_len == 0)
			return DMARC_REC_INVALID;
		r->p = DMARC_POLICY_NONE;	/* 6.6.3: a bad p= with a rua= is p=none */
	}
	r->sp = dmarc_policy_word(dmarc_tag(&tags, "sp"));
	r->np = dmarc_policy_word(dmarc_tag(&tags, "np"));
	t = dmarc_tag(&tags, "pct");
	if (t != NULL && dkim_tag_uint(t, 3, &u) == 0 && u <= 100)
		r->pct = (int)u;
	r->adkim_strict = dkim_tag_value_is(dmarc_tag(&tags, "adkim"), "s", true);
	r->aspf_strict = dkim_tag_value_is(dmarc_tag(&tags, "aspf"), "s", true);
	return DMARC_REC_OK;
}

/* ---- organisational domains ---------------------------------------------------------------- */

static pthread_mutex_t dmarc_psl_lock = PTHREAD_MUTEX_INITIALIZER;
static psl_ctx_t *dmarc_psl;

int dmarc_psl_load(const char *path)
{
	int rc = 0;

	pthread_mutex_lock(&dmarc_psl_lock);
	if (dmarc_psl == NULL) {
		dmarc_psl = path && *path ? psl_load_file(path) : psl_latest(NULL);
		if (dmarc_psl == NULL && (path == NULL || *path == '\0'))
			dmarc_psl = (psl_ctx_t *)psl_builtin();
		if (dmarc_psl == NULL)
			rc = -1;
	}
	pthread_mutex_unlock(&dmarc_psl_lock);
	return rc;
}

static const psl_ctx_t *dmarc_psl_get(void)
{
	const psl_ctx_t *p;

	pthread_mutex_lock(&dmarc_psl_lock);
	p = dmarc_psl;
	pthread_mutex_unlock(&dmarc_psl_lock);
	if (p == NULL && dmarc_psl_load(NULL) == 0) {
		pthread_mutex_lock(&dmarc_psl_lock);
		p = dmarc_psl;
		pthread_mutex_unlock(&dmarc_psl_lock);
	}
	return p;
}

int dmarc_org_domain(const char *domain, char *out, size_t cap)
{
	char low[256];
	size_t n = strlen(domain);
	const char *reg = NULL;
	const psl_ctx_t *psl;

	if (n == 0 || n >= sizeof(low))
		return -1;
	for (size_t i = 0; i <= n; i++)
		low[i] = (char)tolower((unsigned char)domain[i]);
	if (low[n - 1] == '.')
		low[--n] = '\0';
	psl = dmarc_psl_get();
	if (psl != NULL)
		reg = psl_registrable_domain(psl, low);
	if (reg == NULL)
		reg = low;	/* a public suffix itself, or no list: the domain stands for itself */
	if (strlen(reg) >= cap)
		return -1;
	snprintf(out, cap, "%s", reg);
	return 0;
}

bool dmarc_aligned(const char *a, const char *b, bool strict)
{
	char oa[256], ob[256];

	if (a == NULL || b == NULL || *a == '\0' || *b == '\0')
		return false;
	if (strcasecmp(a, b) == 0)
		return true;
	if (strict)
		return false;
	return dmarc_org_domain(a, oa, sizeof(oa)) == 0 && dmarc_org_domain(b, ob, sizeof(ob)) == 0 &&
	    strcmp(oa, ob) == 0;
}

/* ---- From: ------------------------------------------------------------------------------- */

struct from_scan {
	char plain[512];   /* the mailbox outside comments (display name + address) */
	size_t np;
	char angle[512];   /* inside <...> */
	size_t na;
	bool has_angle, overflow;
	int ndomains;
	char first[256];
	bool differ, unusable;
	char (*list)[256];  /* dmarc_from_domains: every distinct domain, *nlist of max */
	size_t *nlist, max;
	bool toomany;
};

static void from_put(char *buf, size_t *n, size_t cap, char c, bool *overflow)
{
	if (*n + 1 >= cap) {
		*overflow = true;
		return;
	}
	buf[(*n)++] = c;
}

/* One mailbox collected: take the domain of its address. */
static void from_mailbox_end(struct from_scan *s)
{
	char *addr = s->has_angle ? s->angle : s->plain;
	size_t n = s->has_angle ? s->na : s->np;
	char dom[256];
	const char *at;
	size_t a, b, o = 0;
	bool utf8 = false;

	addr[n] = '\0';
	if (n == 0 && !s->has_angle)
		goto reset;	/* an empty element: "a@b, , c@d" or a group's end */
	at = strrchr(addr, '@');
	if (s->overflow || at == NULL) {
		s->unusable = true;
		goto reset;
	}
	a = (size_t)(at + 1 - addr);
	b = n;
	while (a < b && isspace((unsigned char)addr[a]))
		a++;
	while (b > a && isspace((unsigned char)addr[b - 1]))
		b--;
	if (b > a && addr[b - 1] == '.')
		b--;
	for (size_t i = a; i < b && o + 1 < sizeof(dom); i++) {
		unsigned char c = (unsigned char)addr[i];

		if (c >= 0x80) {
			utf8 = true;	/* U-labels (SMTPUTF8): converted below */
		} else if (!(isalnum(c) || c == '-' || c == '.' || c == '_')) {
			s->unusable = true;	/* a domain literal, spaces, ... */
			goto reset;
		}
		dom[o++] = (char)tolower(c);
	}
	dom[o] = '\0';
	/* RFC 8616 5: a From domain in U-labels is the domain of its A-labels, for the policy
	 * lookup and for alignment with d= (always A-labels). Not valid UTF-8 / IDNA: unusable. */
	if (utf8) {
		char *ascii = NULL;

		if (idn2_to_ascii_8z(dom, &ascii, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK ||
		    strlen(ascii) >= sizeof(dom)) {
			idn2_free(ascii);
			s->unusable = true;
			goto reset;
		}
		/* NFC can map a U-label's character to ASCII that is no host name (U+037E -> ';'):
		 * the A-label form is held to the same octets as an ASCII domain */
		o = 0;
		for (const char *p = ascii; *p != '\0'; p++) {
			unsigned char c = (unsigned char)*p;

			if (!(isalnum(c) || c == '-' || c == '.' || c == '_')) {
				idn2_free(ascii);
				s->unusable = true;
				goto reset;
			}
			dom[o++] = (char)tolower(c);
		}
		dom[o] = '\0';
		idn2_free(ascii);
	}
	if (o == 0 || dom[0] == '.') {
		s->unusable = true;
		goto reset;
	}
	if (s->ndomains++ == 0)
		snprintf(s->first, sizeof(s->first), "%s", dom);
	else if (strcmp(s->first, dom) != 0)
		s->differ = true;
	if (s->list != NULL) {
		size_t i;

		for (i = 0; i < *s->nlist && strcmp(s->list[i], dom) != 0; i++)
			;
		if (i == *s->nlist && *s->nlist < s->max)
			snprintf(s->list[(*s->nlist)++], sizeof(s->list[0]), "%s", dom);
		else if (i == *s->nlist)
			s->toomany = true;
	}
reset:
	s->np = s->na = 0;
	s->has_angle = s->overflow = false;
}

static void from_scan_run(const char *v, size_t len, struct from_scan *sp)
{
	struct from_scan s = *sp;
	int comment = 0;
	bool quoted = false, in_angle = false;

	for (size_t i = 0; i < len; i++) {
		char c = v[i];

		if (comment > 0) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '(')
				comment++;
			else if (c == ')')
				comment--;
			continue;
		}
		if (quoted) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '"')
				quoted = false;
			continue;	/* a quoted display name or local part: not part of the domain */
		}
		if (c == '(') {
			comment = 1;
			continue;
		}
		if (c == '"') {
			quoted = true;
			if (in_angle)
				from_put(s.angle, &s.na, sizeof(s.angle), 'q', &s.overflow);
			else
				from_put(s.plain, &s.np, sizeof(s.plain), 'q', &s.overflow);
			continue;
		}
		if (in_angle) {
			if (c == '>')
				in_angle = false;
			else if (c != '\r' && c != '\n')
				from_put(s.angle, &s.na, sizeof(s.angle), c, &s.overflow);
			continue;
		}
		if (c == '<') {
			in_angle = true;
			s.has_angle = true;
			s.na = 0;
			continue;
		}
		if (c == ',' || c == ';') {
			from_mailbox_end(&s);
			continue;
		}
		if (c == ':') {
			s.np = 0;	/* "group name:" — the mailboxes follow */
			continue;
		}
		if (c != '\r' && c != '\n' && c != ' ' && c != '\t')
			from_put(s.plain, &s.np, sizeof(s.plain), c, &s.overflow);
	}
	from_mailbox_end(&s);
	*sp = s;
}

int dmarc_from_domain(const char *v, size_t len, char *out, size_t cap)
{
	struct from_scan s;

	memset(&s, 0, sizeof(s));
	from_scan_run(v, len, &s);
	if (s.differ)
		return -2;
	if (s.unusable || s.ndomains == 0 || strlen(s.first) >= cap)
		return -1;
	snprintf(out, cap, "%s", s.first);
	return 0;
}

int dmarc_from_domains(const char *v, size_t len, char (*doms)[256], size_t max, size_t *n)
{
	struct from_scan s;

	memset(&s, 0, sizeof(s));
	s.list = doms;
	s.nlist = n;
	s.max = max;
	from_scan_run(v, len, &s);
	return s.toomany ? -1 : 0;
}

/* ---- the decision ---------------------------------------------------------------------------- */

/* Picks the one valid DMARC record from an answer: 1 found, 0 none, -1 several. */
static int dmarc_pick(const struct dmarc_answer *a, struct dmarc_record *rec)
{
	int found = 0;
	struct dmarc_record r;

	if (a->status != DMARC_DNS_RECORDS)
		return 0;
	for (size_t i = 0; i < a->n; i++) {
		if (a->txt[i] == NULL || dmarc_record_parse(a->txt[i], strlen(a->txt[i]), &r) != DMARC_REC_OK)
			continue;
		if (found++ == 0)
			*rec = r;
	}
	return found > 1 ? -1 : found;
}

void dmarc_evaluate(const struct dmarc_input *in, struct dmarc_outcome *out)
{
	int got;
	bool at_org = false;

	memset(out, 0, sizeof(*out));
	if (in->from_domain == NULL || in->from_domain[0] == '\0') {
		out->result = DMARC_RESULT_PERMERROR;
		out->reason = "no usable From domain";
		return;
	}
	/* 6.6.3: the From domain's record, else the organisational domain's */
	if (in->at_from.status == DMARC_DNS_TEMPFAIL) {
		out->result = DMARC_RESULT_TEMPERROR;
		out->reason = "DNS failure";
		return;
	}
	got = dmarc_pick(&in->at_from, &out->rec);
	if (got == 0 && in->org_domain != NULL && strcasecmp(in->org_domain, in->from_domain) != 0) {
		if (in->at_org.status == DMARC_DNS_TEMPFAIL) {
			out->result = DMARC_RESULT_TEMPERROR;
			out->reason = "DNS failure";
			return;
		}
		got = dmarc_pick(&in->at_org, &out->rec);
		at_org = true;
	}
	if (got < 0) {
		out->result = DMARC_RESULT_NONE;
		out->reason = "several DMARC records";
		return;
	}
	if (got == 0) {
		out->result = DMARC_RESULT_NONE;
		out->no_record = true;
		out->reason = "no DMARC record";
		return;
	}
	snprintf(out->policy_domain, sizeof(out->policy_domain), "%s",
	    at_org ? in->org_domain : in->from_domain);
	/* RFC 9091 4: np= for a From domain that does not exist, else sp=, else p= */
	if (at_org && in->from_nonexistent && out->rec.np != DMARC_POLICY_UNSET)
		out->policy = out->rec.np;
	else
		out->policy = at_org && out->rec.sp != DMARC_POLICY_UNSET ? out->rec.sp : out->rec.p;
	/* 3.1: identifier alignment */
	for (size_t i = 0; i < in->ndkim_pass && !out->dkim_aligned; i++)
		if (dmarc_aligned(in->dkim_pass[i], in->from_domain, out->rec.adkim_strict)) {
			out->dkim_aligned = true;
			snprintf(out->aligned_domain, sizeof(out->aligned_domain), "%s", in->dkim_pass[i]);
		}
	if (in->spf_domain != NULL && dmarc_aligned(in->spf_domain, in->from_domain, out->rec.aspf_strict)) {
		out->spf_aligned = true;
		if (!out->dkim_aligned)
			snprintf(out->aligned_domain, sizeof(out->aligned_domain), "%s", in->spf_domain);
	}
	if (out->dkim_aligned || out->spf_aligned) {
		out->result = DMARC_RESULT_PASS;
		out->disposition = DMARC_POLICY_NONE;
		return;
	}
	/* a DNS hiccup at the signer is not a failure: temperror, with the disposition a
	 * failure would get, so that the caller can defer (RFC 7489 6.6.2) where the policy
	 * would refuse, instead of letting it through */
	out->result = in->aligned_temperror ? DMARC_RESULT_TEMPERROR : DMARC_RESULT_FAIL;
	out->reason = in->aligned_temperror ? "aligned identifier had a temporary error" :
	    "no aligned identifier";
	out->disposition = out->policy;
	/* 6.6.4: outside the pct sample, one step milder */
	if (out->rec.pct < 100 && in->roll >= out->rec.pct &&
	    (out->policy == DMARC_POLICY_REJECT || out->policy == DMARC_POLICY_QUARANTINE)) {
		out->disposition = out->policy == DMARC_POLICY_REJECT ? DMARC_POLICY_QUARANTINE :
		    DMARC_POLICY_NONE;
		out->sampled_out = true;
	}
}
