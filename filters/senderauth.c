/* senderauth.c — the hook module driving dkim.c, arc.c, dmarc.c and authres.c at HOOK_EOM.
 *
 * One `struct sa_session` per SMTP session (its timer and idle handles live as long as the
 * session); per message it holds the verifier, the ARC chain and the lookups in flight.
 * The key and DMARC lookups start as soon as the header block has arrived (the chain's
 * headers notification, while the body is still coming), or at HOOK_EOM for a message
 * that had none. Every lookup start does pending++, every answer pending--; the message is
 * judged at HOOK_EOM when pending is 0 and the body hash is done, or when the timer (started
 * at HOOK_EOM) fires (lookups still out are cancelled and count as temperror). session_free
 * cancels everything and frees the context in the last close callback. */
#include "filters/senderauth.h"
#include "filters/arc.h"
#include "filters/authres.h"
#include "filters/dkim.h"
#include "filters/dmarc.h"
#include "filters/dns.h"
#include "filters/spf.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/msgbuf.h"

#include <libfyaml.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SA_AUTH_SYMBOL "AUTH_DOMAIN"
#define SA_SLICE (256u * 1024u)
#define SA_MAX_FROM_DOMAINS 8     /* From domains checked (RFC 7489 6.6.1); more: refused */   /* body bytes hashed per loop iteration */

/* ---- config ------------------------------------------------------------------------------ */

static const char *const sa_on_error_names[] = { "accept", "tempfail", "reject", NULL };
static const char *const sa_dmarc_action_names[] = { "honor", "log", NULL };
static const char *const sa_temperror_names[] = { "accept", "tempfail", "policy", NULL };

static const struct cfg_field dkim_scores_fields[] = {
	{ "signed", CFG_DOUBLE, offsetof(struct dkim_scores_config, is_signed), "0.1", -1000, 1000, .doc = "DKIM_SIGNED: the message has a DKIM signature" },
	{ "valid", CFG_DOUBLE, offsetof(struct dkim_scores_config, valid), "-0.1", -1000, 1000, .doc = "DKIM_VALID: at least one signature verifies" },
	{ "valid_au", CFG_DOUBLE, offsetof(struct dkim_scores_config, valid_au), "-0.1", -1000, 1000, .doc = "DKIM_VALID_AU: a valid signature from the author's (From) domain" },
	{ "valid_ef", CFG_DOUBLE, offsetof(struct dkim_scores_config, valid_ef), "-0.1", -1000, 1000, .doc = "DKIM_VALID_EF: a valid signature from the envelope sender's domain" },
	{ "invalid", CFG_DOUBLE, offsetof(struct dkim_scores_config, invalid), "0.1", -1000, 1000, .doc = "DKIM_INVALID: signed, but no signature verifies" },
	{ .key = NULL }
};
static const struct cfg_table dkim_scores_table = {
	.name = "dkim.scores", .size = sizeof(struct dkim_scores_config), .fields = dkim_scores_fields,
};

static const struct cfg_field dkim_fields[] = {
	{ "enabled", CFG_BOOL, offsetof(struct dkim_config, enabled), "false",
	  .doc = "verify DKIM signatures at end of data (RSA-SHA256, Ed25519-SHA256); a dkim: section written without this key (a mapping, or `dkim:` alone) turns it on" },
	{ "action", CFG_ENUM, offsetof(struct dkim_config, action), "honor", .choices = sa_dmarc_action_names,
	  .doc = "honor | log, as for dmarc: accepted alike; DKIM has no policy of its own, so both verify, score and record the result (dmarc.action decides refusals)" },
	{ "timeout", CFG_DURATION, offsetof(struct dkim_config, timeout), "5s", 100, 120000,
	  .doc = "time for all key / DMARC lookups of a message; later answers count as temperror" },
	{ "on_error", CFG_ENUM, offsetof(struct dkim_config, on_error), "accept", .choices = sa_on_error_names,
	  .doc = "verdict when sender authentication cannot finish (internal failure, overrun)" },
	{ "max_signatures", CFG_INT, offsetof(struct dkim_config, max_signatures), "8", 1, 64,
	  .doc = "DKIM-Signature fields verified per message; later ones are ignored" },
	{ "max_headers", CFG_INT, offsetof(struct dkim_config, max_headers), "1000", 16, 100000,
	  .doc = "header fields indexed per message; more make every signature permerror" },
	{ "min_key_bits", CFG_INT, offsetof(struct dkim_config, min_key_bits), "1024", 512, 16384,
	  .doc = "smallest RSA key accepted (RFC 8301: 1024)" },
	{ "max_key_bits", CFG_INT, offsetof(struct dkim_config, max_key_bits), "4096", 1024, 16384,
	  .doc = "largest RSA key accepted (bounds the verification work)" },
	{ "clock_skew", CFG_DURATION, offsetof(struct dkim_config, clock_skew), "300s", 0, 86400000,
	  .doc = "tolerance around a signature's t= and x=" },
	{ "scores", CFG_STRUCT, offsetof(struct dkim_config, scores), NULL, .sub = &dkim_scores_table,
	  .doc = "symbol scores (SpamAssassin's names and defaults)" },
	{ .key = NULL }
};

/* INTERFACE.md names the sections as `dkim:`, `arc:`, `dmarc: { action: honor | log }`: an
 * operator who writes one means it on. A section written as a mapping without an `enabled`
 * key is on (`dmarc: { action: honor }` used to leave DMARC off without a word), and so is
 * one written with nothing after it (`dkim:` alone, `~`: n is NULL then, as for an absent
 * section, hence cfg_section_written); `enabled: false` keeps it off, and an absent section
 * is off. */
static void sa_section_on(struct cfg_parse *p, struct fy_node *n, bool *enabled)
{
	if (n ? fy_node_is_mapping(n) && cfg_map_pair(n, "enabled") == NULL : cfg_section_written(p))
		*enabled = true;
}

static int dkim_config_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct dkim_config *c = obj;

	sa_section_on(p, n, &c->enabled);

	if (c->min_key_bits > c->max_key_bits)
		return cfg_error_key(p, n, "min_key_bits", -1, "larger than max_key_bits");
	return 0;
}

const struct cfg_table dkim_config_table = {
	.name = "dkim", .size = sizeof(struct dkim_config), .fields = dkim_fields,
	.validate = dkim_config_validate,
};

static const struct cfg_field arc_scores_fields[] = {
	{ "signed", CFG_DOUBLE, offsetof(struct arc_scores_config, is_signed), "0", -1000, 1000, .doc = "ARC_SIGNED: the message carries ARC sets" },
	{ "valid", CFG_DOUBLE, offsetof(struct arc_scores_config, valid), "-0.1", -1000, 1000, .doc = "ARC_VALID: the chain validates (cv=pass)" },
	{ "invalid", CFG_DOUBLE, offsetof(struct arc_scores_config, invalid), "0.1", -1000, 1000, .doc = "ARC_INVALID: ARC sets present, chain fails" },
	{ .key = NULL }
};
static const struct cfg_table arc_scores_table = {
	.name = "arc.scores", .size = sizeof(struct arc_scores_config), .fields = arc_scores_fields,
};

static const struct cfg_field arc_fields[] = {
	{ "enabled", CFG_BOOL, offsetof(struct arc_config, enabled), "false",
	  .doc = "validate ARC chains (RFC 8617) for mail from lists and forwarders; an arc: section written without this key (a mapping, or `arc:` alone) turns it on" },
	{ "action", CFG_ENUM, offsetof(struct arc_config, action), "honor", .choices = sa_dmarc_action_names,
	  .doc = "honor | log, as for dmarc: accepted alike; ARC has no policy of its own, so both validate, score and record the result (dmarc.trusted_arc_sealers decides what a chain overrides)" },
	{ "max_instances", CFG_INT, offsetof(struct arc_config, max_instances), "16", 1, 50,
	  .doc = "ARC sets looked at; a longer chain fails" },
	{ "scores", CFG_STRUCT, offsetof(struct arc_config, scores), NULL, .sub = &arc_scores_table,
	  .doc = "symbol scores" },
	{ "seal", CFG_STRUCT, offsetof(struct arc_config, seal), NULL, .sub = &arc_seal_config_table,
	  .doc = "ARC sealing of the messages passed on (RFC 8617 5.1), for a trusted-sealer setup in front of Microsoft 365 / Google Workspace" },
	{ .key = NULL }
};

static int arc_config_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct arc_config *c = obj;

	sa_section_on(p, n, &c->enabled);

	/* the seal records the chain's result and mxgate's Authentication-Results */
	if (c->seal.enabled && !c->enabled)
		return cfg_error_key(p, n, "enabled", -1, "must be true when arc.seal is enabled");
	return 0;
}

const struct cfg_table arc_config_table = {
	.name = "arc", .size = sizeof(struct arc_config), .fields = arc_fields,
	.validate = arc_config_validate,
};

static const struct cfg_field dmarc_scores_fields[] = {
	{ "pass", CFG_DOUBLE, offsetof(struct dmarc_scores_config, pass), "-0.001", -1000, 1000, .doc = "DMARC_PASS" },
	{ "reject", CFG_DOUBLE, offsetof(struct dmarc_scores_config, reject), "1.797", -1000, 1000, .doc = "DMARC_REJECT: fails, policy reject" },
	{ "quarantine", CFG_DOUBLE, offsetof(struct dmarc_scores_config, quarantine), "1.198", -1000, 1000, .doc = "DMARC_QUAR: fails, policy quarantine" },
	{ "none", CFG_DOUBLE, offsetof(struct dmarc_scores_config, none), "0.898", -1000, 1000, .doc = "DMARC_NONE: fails, policy none" },
	{ "missing", CFG_DOUBLE, offsetof(struct dmarc_scores_config, missing), "0.001", -1000, 1000, .doc = "DMARC_MISSING: no DMARC record" },
	{ .key = NULL }
};
static const struct cfg_table dmarc_scores_table = {
	.name = "dmarc.scores", .size = sizeof(struct dmarc_scores_config), .fields = dmarc_scores_fields,
};

static const struct cfg_field dmarc_fields[] = {
	{ "enabled", CFG_BOOL, offsetof(struct dmarc_config, enabled), "false",
	  .doc = "evaluate DMARC (RFC 7489; implies DKIM verification); no reports are sent; a dmarc: section written without this key (dmarc: { action: honor }, or `dmarc:` alone) turns it on" },
	{ "action", CFG_ENUM, offsetof(struct dmarc_config, action), "honor", .choices = sa_dmarc_action_names,
	  .doc = "honor: p=reject -> 550 5.7.1, p=quarantine -> the quarantine (or the score); log: only log and score" },
	{ "on_temperror", CFG_ENUM, offsetof(struct dmarc_config, on_temperror), "policy",
	  .choices = sa_temperror_names, .doc = "with action honor, DMARC temperror (the policy lookup failed, or an aligned DKIM/SPF check had a temporary error and nothing aligned passed): policy = 451 4.4.3 when the policy that would apply is reject or quarantine (after pct), else accept; tempfail = always 451 4.4.3; accept = never" },
	{ "override_domains", CFG_STRLIST, offsetof(struct dmarc_config, override_domains), NULL,
	  .doc = "local override: From domains (and subdomains) whose DMARC policy is not enforced" },
	{ "trusted_arc_sealers", CFG_STRLIST, offsetof(struct dmarc_config, trusted_arc_sealers), NULL,
	  .doc = "a passing ARC chain last sealed by one of these domains overrides a DMARC failure" },
	{ "psl_file", CFG_STRING, offsetof(struct dmarc_config, psl_file), NULL,
	  .doc = "Public Suffix List file (default: libpsl's, Debian's publicsuffix package)" },
	{ "scores", CFG_STRUCT, offsetof(struct dmarc_config, scores), NULL, .sub = &dmarc_scores_table,
	  .doc = "symbol scores (SpamAssassin's DMARC plugin names)" },
	{ .key = NULL }
};

static int dmarc_config_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct dmarc_config *c = obj;

	sa_section_on(p, n, &c->enabled);

	if (c->enabled && dmarc_psl_load(c->psl_file) != 0)
		return cfg_error_key(p, n, "psl_file", -1, "cannot load the Public Suffix List");
	return 0;
}

const struct cfg_table dmarc_config_table = {
	.name = "dmarc", .size = sizeof(struct dmarc_config), .fields = dmarc_fields,
	.validate = dmarc_config_validate,
};

/* ---- per worker, per session ------------------------------------------------------------- */

/* Parsed keys by (DNS name, record text): decoding a public key is the costliest step of a
 * verification under OpenSSL 3 (decoder lookups under locks), and a few signers send most
 * mail. The DNS cache decides freshness: an entry is used only for the same record text. */
#define SA_KEYCACHE 128
struct sa_keycache_entry { char *name, *txt; struct dkim_key key; };

struct sa_worker {
	const struct mx_config *cfg;
	struct dns_resolver *dns;
	struct dkim_limits lim;
	bool dkim, arc, dmarc, spf;
	struct sa_keycache_entry keys[SA_KEYCACHE];
	size_t keys_next;          /* round-robin replacement */
};

/* SA_LK_EXISTS: the From domain's A record, asked when it is a subdomain: NXDOMAIN makes
 * the organisational domain's np= apply (RFC 9091) */
enum sa_lookup_kind { SA_LK_KEY = 0, SA_LK_DMARC_FROM, SA_LK_DMARC_ORG, SA_LK_EXISTS };

struct sa_session;

struct sa_lookup {
	struct sa_session *s;
	struct dns_query *q;        /* in flight, or NULL */
	enum sa_lookup_kind kind;
	bool started, done;
	char name[256];
	struct dkim_key key;        /* SA_LK_KEY */
	enum dmarc_dns dstatus;     /* SA_LK_DMARC_*; SA_LK_EXISTS: NONE = NXDOMAIN */
	char **txt;
	size_t ntxt;
};

struct sa_session {
	struct sa_worker *w;
	struct hook_env *env;
	struct hook_call *call;     /* in flight, or NULL */
	struct dkim_msg *m;
	struct arc_chain arc;
	struct sa_lookup *lk;
	size_t nlk, pending;
	size_t body_off;            /* next body byte to hash */
	size_t body_start;          /* where the body begins (the header block's length) */
	bool starting, handles_ok;
	int open_handles;
	char from_domain[256];
	int from_status;            /* 0 ok, -1 none / unusable, -2 several addresses, -3 several From */
	char org_domain[256];
	/* RFC 7489 6.6.1: the From domains when there is not exactly one (several addresses in
	 * different domains, several From fields, a mailbox without a domain beside others):
	 * each is checked and the strictest result applies */
	char from_doms[SA_MAX_FROM_DOMAINS][256];
	size_t nfrom_doms;
	bool from_toomany;          /* more than SA_MAX_FROM_DOMAINS distinct domains */
	char msg_qid[24];           /* the message whose header block m holds (its queue id) */
	uv_timer_t timer;
	uv_idle_t idle;
};

static int sa_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	struct sa_worker *w;

	*wstate = NULL;
	if (!cfg->dkim.enabled && !cfg->arc.enabled && !cfg->dmarc.enabled && !cfg->spf.enabled)
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cfg = cfg;
	w->dmarc = cfg->dmarc.enabled;
	w->dkim = cfg->dkim.enabled || w->dmarc;	/* DMARC needs the DKIM results */
	w->arc = cfg->arc.enabled;
	w->spf = cfg->spf.enabled;
	dkim_limits_default(&w->lim);
	w->lim.max_signatures = (size_t)cfg->dkim.max_signatures;
	w->lim.max_headers = (size_t)cfg->dkim.max_headers;
	w->lim.min_rsa_bits = (unsigned)cfg->dkim.min_key_bits;
	w->lim.max_rsa_bits = (unsigned)cfg->dkim.max_key_bits;
	w->lim.clock_skew = cfg->dkim.clock_skew / 1000;
	w->lim.max_arc_instances = w->arc ? (size_t)cfg->arc.max_instances : 0;
	if (w->dkim || w->arc) {
		w->dns = dns_resolver_for_loop(loop, cfg);
		if (w->dns == NULL) {
			log_event(LOG_LVL_ERROR, NULL, "event=senderauth_error reason=\"no resolver\"");
			free(w);
			return -1;
		}
	}
	if (w->dmarc && dmarc_psl_load(cfg->dmarc.psl_file) != 0)
		log_event(LOG_LVL_WARNING, NULL, "event=senderauth_error reason=\"no public suffix list\"");
	*wstate = w;
	return 0;
}

static void sa_worker_free(void *wstate)
{
	struct sa_worker *w = wstate;

	if (w == NULL)
		return;
	for (size_t i = 0; i < SA_KEYCACHE; i++) {
		free(w->keys[i].name);
		free(w->keys[i].txt);
		dkim_key_clear(&w->keys[i].key);
	}
	dns_resolver_release(w->dns);
	free(w);
}

static unsigned sa_stages(void *wstate)
{
	return wstate ? 1u << HOOK_EOM : 0;
}

static uint64_t sa_timeout_ms(void *wstate)
{
	struct sa_worker *w = wstate;

	/* our own timer (sa_run: the same fallback) fires first */
	return w ? (w->cfg->dkim.timeout ? w->cfg->dkim.timeout : 5000) + 1000 : 0;
}

static enum verdict_action sa_on_error(void *wstate)
{
	struct sa_worker *w = wstate;

	if (w == NULL)
		return VERDICT_CONTINUE;
	switch (w->cfg->dkim.on_error) {
	case SENDERAUTH_ON_ERROR_TEMPFAIL: return VERDICT_TEMPFAIL;
	case SENDERAUTH_ON_ERROR_REJECT: return VERDICT_REJECT;
	default: return VERDICT_CONTINUE;
	}
}

/* Is d a domain name as sa_judge publishes it (an organisational domain: LDH labels,
 * at least two, at most 253 octets)? */
static bool sa_domain_ok(const char *d)
{
	size_t n = 0, label = 0;
	bool dot = false;

	for (; d[n] != '\0'; n++) {
		unsigned char ch = (unsigned char)d[n];

		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			dot = true;
		} else if (isalnum(ch) || ch == '-' || ch == '_') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return dot && label > 0 && n <= 253;
}

const char *senderauth_auth_domain(const struct hook_env *env)
{
	/* Only the transaction's symbols (this module adds it at HOOK_EOM), and only a domain
	 * name: a leftover of an earlier message, or a rule or plugin symbol of that name with
	 * some other description, is not an authenticated domain. */
	for (size_t i = env->txn_symbols_start; i < env->nsymbols; i++) {
		const struct hook_symbol *s = &env->symbols[i];

		if (strcmp(s->name, SA_AUTH_SYMBOL) == 0)
			return s->desc != NULL && sa_domain_ok(s->desc) ? s->desc : NULL;
	}
	return NULL;
}

/* ---- per message state ----------------------------------------------------------------------- */

static void sa_message_clear(struct sa_session *s)
{
	for (size_t i = 0; i < s->nlk; i++) {
		struct sa_lookup *l = &s->lk[i];

		dns_query_cancel(l->q);
		dkim_key_clear(&l->key);
		for (size_t k = 0; k < l->ntxt; k++)
			free(l->txt[k]);
		free(l->txt);
	}
	free(s->lk);
	s->lk = NULL;
	s->nlk = s->pending = 0;
	dkim_msg_free(s->m);
	s->m = NULL;
	memset(&s->arc, 0, sizeof(s->arc));
	s->body_off = 0;
	s->from_domain[0] = s->org_domain[0] = s->msg_qid[0] = '\0';
	s->from_status = -1;
	s->nfrom_doms = 0;
	s->from_toomany = false;
	if (s->handles_ok) {
		uv_timer_stop(&s->timer);
		uv_idle_stop(&s->idle);
	}
}

static const struct sa_lookup *sa_find_lookup(const struct sa_session *s, enum sa_lookup_kind k,
    const char *name)
{
	for (size_t i = 0; i < s->nlk; i++)
		if (s->lk[i].kind == k && strcasecmp(s->lk[i].name, name) == 0)
			return &s->lk[i];
	return NULL;
}

/* Adds a lookup (deduplicated); the queries start later, all at once. */
static int sa_add_lookup(struct sa_session *s, enum sa_lookup_kind k, const char *name)
{
	struct sa_lookup *nl;

	if (sa_find_lookup(s, k, name) != NULL)
		return 0;
	nl = realloc(s->lk, (s->nlk + 1) * sizeof(*nl));
	if (nl == NULL)
		return -1;
	s->lk = nl;
	memset(&s->lk[s->nlk], 0, sizeof(s->lk[0]));
	s->lk[s->nlk].kind = k;
	snprintf(s->lk[s->nlk].name, sizeof(s->lk[0].name), "%s", name);
	s->nlk++;
	return 0;
}

static const struct dkim_key *sa_key_for(void *arg, const struct dkim_sig *sig)
{
	struct sa_session *s = arg;
	char name[300];
	const struct sa_lookup *l;

	if (dkim_sig_key_name(sig, name, sizeof(name)) != 0)
		return NULL;
	l = sa_find_lookup(s, SA_LK_KEY, name);
	return l != NULL && l->done ? &l->key : NULL;
}

/* ---- judging ------------------------------------------------------------------------------ */

struct sa_spf { const char *result; const char *domain; bool helo; bool pass; };

/* The SPF result spf.c left as a symbol (SPF_<RESULT>, description = the domain checked). */
static void sa_spf_from_symbols(const struct hook_env *env, struct sa_spf *out)
{
	static const char *const names[] = { "pass", "fail", "softfail", "neutral", "none",
		"temperror", "permerror" };
	char sym[32];

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct hook_symbol *h;
		size_t k;

		snprintf(sym, sizeof(sym), "SPF_%s", names[i]);
		for (k = 4; sym[k]; k++)
			sym[k] = (char)toupper((unsigned char)sym[k]);
		h = hook_env_find_symbol(env, sym);
		if (h == NULL)
			continue;
		out->result = names[i];
		out->domain = h->desc ? h->desc : "";
		out->helo = env->mail_from != NULL && env->mail_from[0] == '\0';
		out->pass = i == 0;
		return;
	}
}

static bool sa_domain_listed(const struct cfg_strlist *l, const char *dom)
{
	for (size_t i = 0; i < l->n; i++)
		if (dkim_domain_within(dom, l->v[i]))
			return true;
	return false;
}

static void sa_dkim_comment(const struct dkim_sig *sig, const struct dkim_key *k, char *out, size_t cap)
{
	if (sig->result == DKIM_RESULT_PASS)
		snprintf(out, cap, "%u-bit %s key%s", k ? k->bits : 0,
		    sig->alg == DKIM_ALG_ED25519_SHA256 ? "ed25519" : "rsa", sig->testing ? "; test mode" : "");
	else
		snprintf(out, cap, "%s", sig->reason ? sig->reason : "");
}

/* What the checks of one message found, for the policy, the symbols and the log line. */
struct sa_outcome {
	struct sa_spf spf;
	const char *dkim_pass[64];      /* d= of the passing, non-testing signatures */
	size_t ndkim_pass, nsigned;
	bool aligned_auth;              /* a DKIM pass or SPF pass aligned with From (relaxed) */
	bool aligned_temperror;         /* an aligned DKIM or SPF check failed for now */
	struct dmarc_outcome dm;
	bool dm_done, overridden;
	const char *override_why;
	char logdkim[400];
};

/* Verifies every DKIM signature (header order) into the field, the symbols and o. */
static void sa_judge_dkim(struct sa_session *s, struct sa_outcome *o, struct authres_builder *ar,
    long long now)
{
	const struct mx_config *cfg = s->w->cfg;
	struct hook_env *env = s->env;
	const char *ef = env->mail_from && env->mail_from[0] ? strrchr(env->mail_from, '@') : NULL;
	bool valid_au = false, valid_ef = false;
	char comment[300], one[300];
	size_t lo = 0;

	for (size_t i = 0; i < dkim_msg_nsigs(s->m); i++) {
		struct dkim_sig *sig = dkim_msg_sig(s->m, i);
		const struct dkim_key *k = NULL;
		bool aligned;

		if (sig->kind != DKIM_SIG_DKIM)
			continue;
		o->nsigned++;
		if (sig->result == DKIM_RESULT_NONE) {
			k = sa_key_for(s, sig);
			dkim_msg_verify(s->m, sig, k, now);
		}
		sa_dkim_comment(sig, k, comment, sizeof(comment));
		authres_method(ar, "dkim", dkim_result_name(sig->result), comment);
		/* OpenDKIM's properties in OpenDKIM's order (RFC 8601 2.7.1): the AUID (i=, "@d"
		 * when absent, RFC 6376 3.5) and the algorithm too, which rules downstream match;
		 * header.b last, where every parser has met it (python3-authres drops a quoted
		 * value that other properties follow) */
		if (sig->d[0]) {
			char auid[300];

			authres_prop(ar, "header.d", sig->d);
			snprintf(auid, sizeof(auid), "%s%s", sig->auid[0] ? "" : "@", sig->auid[0] ? sig->auid : sig->d);
			authres_prop(ar, "header.i", auid);
		}
		if (sig->alg_known)
			authres_prop(ar, "header.a", sig->alg == DKIM_ALG_ED25519_SHA256 ? "ed25519-sha256" :
			    sig->alg == DKIM_ALG_RSA_SHA1 ? "rsa-sha1" : "rsa-sha256");
		if (sig->s[0])
			authres_prop(ar, "header.s", sig->s);
		if (sig->b_prefix[0])
			authres_prop(ar, "header.b", sig->b_prefix);
		snprintf(one, sizeof(one), "%s%s:%s", lo ? "," : "", dkim_result_name(sig->result),
		    sig->d[0] ? sig->d : "?");
		if (lo + strlen(one) < sizeof(o->logdkim)) {
			memcpy(o->logdkim + lo, one, strlen(one) + 1);
			lo += strlen(one);
		}
		aligned = s->from_status == 0 && dmarc_aligned(sig->d, s->from_domain, false);
		if (sig->result == DKIM_RESULT_TEMPERROR && aligned)
			o->aligned_temperror = true;
		/* RFC 6376 3.6.1 t=y: treat as unsigned mail (no credit) */
		if (sig->result != DKIM_RESULT_PASS || sig->testing)
			continue;
		if (o->ndkim_pass < sizeof(o->dkim_pass) / sizeof(o->dkim_pass[0]))
			o->dkim_pass[o->ndkim_pass++] = sig->d;
		if (s->from_status == 0 && dkim_domain_within(s->from_domain, sig->d))
			valid_au = true;
		if (ef != NULL && dkim_domain_within(ef + 1, sig->d))
			valid_ef = true;
		if (aligned)
			o->aligned_auth = true;
	}
	if (o->nsigned == 0) {
		authres_method(ar, "dkim", "none", NULL);
		return;
	}
	/* SpamAssassin's DKIM plugin names */
	hook_env_add_symbol(env, "DKIM_SIGNED", cfg->dkim.scores.is_signed, NULL);
	if (o->ndkim_pass > 0)
		hook_env_add_symbol(env, "DKIM_VALID", cfg->dkim.scores.valid, o->dkim_pass[0]);
	else
		hook_env_add_symbol(env, "DKIM_INVALID", cfg->dkim.scores.invalid, NULL);
	if (valid_au)
		hook_env_add_symbol(env, "DKIM_VALID_AU", cfg->dkim.scores.valid_au, s->from_domain);
	if (valid_ef)
		hook_env_add_symbol(env, "DKIM_VALID_EF", cfg->dkim.scores.valid_ef, ef + 1);
}

/* Validates the ARC chain into the field and the symbols. */
static void sa_judge_arc(struct sa_session *s, struct authres_builder *ar, long long now)
{
	const struct mx_config *cfg = s->w->cfg;
	struct hook_env *env = s->env;
	char buf[300];

	arc_chain_finish(s->m, &s->arc, sa_key_for, s, now);
	if (s->arc.result == ARC_RESULT_PASS) {
		snprintf(buf, sizeof(buf), "i=%u, sealed by %s", s->arc.n, s->arc.sealer);
		authres_method(ar, "arc", "pass", buf);
		snprintf(buf, sizeof(buf), "%u", s->arc.oldest_pass);
		authres_prop(ar, "header.oldest-pass", buf);
		authres_prop(ar, "smtp.remote-ip", env->client_ip);
	} else {
		authres_method(ar, "arc", arc_result_name(s->arc.result), s->arc.reason);
	}
	if (s->arc.result == ARC_RESULT_NONE)
		return;
	hook_env_add_symbol(env, "ARC_SIGNED", cfg->arc.scores.is_signed, NULL);
	if (s->arc.result == ARC_RESULT_PASS)
		hook_env_add_symbol(env, "ARC_VALID", cfg->arc.scores.valid, s->arc.sealer);
	else
		hook_env_add_symbol(env, "ARC_INVALID", cfg->arc.scores.invalid, s->arc.reason);
}

/* One DMARC answer as dmarc_evaluate takes it; a lookup still out (timeout) is TEMPFAIL, one
 * never made is NONE. */
static void sa_dmarc_answer(const struct sa_session *s, enum sa_lookup_kind k, const char *domain,
    struct dmarc_answer *a)
{
	const struct sa_lookup *l;
	char qn[300];

	snprintf(qn, sizeof(qn), "_dmarc.%s", domain);
	l = sa_find_lookup(s, k, qn);
	memset(a, 0, sizeof(*a));
	a->status = l == NULL ? DMARC_DNS_NONE : l->done ? l->dstatus : DMARC_DNS_TEMPFAIL;
	if (l != NULL && l->done) {
		a->txt = (const char *const *)l->txt;
		a->n = l->ntxt;
	}
}

/* How strict an outcome is, to pick among several From domains (RFC 7489 6.6.1: the strictest
 * policy among those that fail): a failure by its disposition, then a temperror by the one
 * it would get, then pass, none, permerror. */
static int sa_dmarc_rank(const struct dmarc_outcome *d)
{
	switch (d->result) {
	case DMARC_RESULT_FAIL: return 40 + (int)d->disposition;
	case DMARC_RESULT_TEMPERROR: return 30 + (int)d->disposition;
	case DMARC_RESULT_PASS: return 20;
	case DMARC_RESULT_NONE: return 10;
	default: return 0;
	}
}

/* DMARC for one From domain dom (its organisational domain org) into out. */
static void sa_dmarc_one(const struct sa_session *s, const struct sa_outcome *o, const char *dom,
    const char *org, bool aligned_temperror, bool nonexistent, struct dmarc_outcome *out)
{
	struct dmarc_input in;

	memset(&in, 0, sizeof(in));
	in.from_domain = dom;
	in.org_domain = org;
	sa_dmarc_answer(s, SA_LK_DMARC_FROM, dom, &in.at_from);
	sa_dmarc_answer(s, SA_LK_DMARC_ORG, org, &in.at_org);
	in.dkim_pass = o->dkim_pass;
	in.ndkim_pass = o->ndkim_pass;
	in.spf_domain = o->spf.pass ? o->spf.domain : NULL;
	in.aligned_temperror = aligned_temperror;
	in.from_nonexistent = nonexistent;
	in.roll = (int)arc4random_uniform(100);
	dmarc_evaluate(&in, out);
}

/* Whether a DKIM signature or the SPF check aligned (relaxed) with dom ended in temperror. */
static bool sa_temperror_aligned(const struct sa_session *s, const struct sa_outcome *o, const char *dom)
{
	if (o->spf.result != NULL && strcmp(o->spf.result, "temperror") == 0 &&
	    dmarc_aligned(o->spf.domain, dom, false))
		return true;
	for (size_t i = 0; s->m != NULL && s->w->dkim && i < dkim_msg_nsigs(s->m); i++) {
		const struct dkim_sig *sig = dkim_msg_sig(s->m, i);

		if (sig->kind == DKIM_SIG_DKIM && sig->result == DKIM_RESULT_TEMPERROR &&
		    dmarc_aligned(sig->d, dom, false))
			return true;
	}
	return false;
}

/* Applies DMARC (RFC 7489) with the overrides into o, the field and the symbols. */
static void sa_judge_dmarc(struct sa_session *s, struct sa_outcome *o, struct authres_builder *ar)
{
	const struct mx_config *cfg = s->w->cfg;
	struct hook_env *env = s->env;
	struct dmarc_outcome *dm = &o->dm;
	const char *several = NULL;
	char polc[200];

	memset(dm, 0, sizeof(*dm));
	if (s->from_status == 0) {
		const struct sa_lookup *ex = sa_find_lookup(s, SA_LK_EXISTS, s->from_domain);

		sa_dmarc_one(s, o, s->from_domain, s->org_domain, o->aligned_temperror,
		    ex != NULL && ex->done && ex->dstatus == DMARC_DNS_NONE, dm);
	} else if (s->from_toomany) {
		dm->result = DMARC_RESULT_PERMERROR;
		dm->reason = "From names too many domains";
	} else if (s->nfrom_doms > 0) {
		/* RFC 7489 6.6.1: every author domain is checked, the strictest result applies;
		 * from_domain becomes the domain that decided (the field, the reply, the log) */
		size_t best = 0;

		for (size_t i = 0; i < s->nfrom_doms; i++) {
			struct dmarc_outcome one;
			char org[256];

			if (dmarc_org_domain(s->from_doms[i], org, sizeof(org)) != 0)
				snprintf(org, sizeof(org), "%s", s->from_doms[i]);
			sa_dmarc_one(s, o, s->from_doms[i], org, sa_temperror_aligned(s, o, s->from_doms[i]),
			    false, &one);
			if (i == 0 || sa_dmarc_rank(&one) > sa_dmarc_rank(dm)) {
				*dm = one;
				best = i;
			}
		}
		snprintf(s->from_domain, sizeof(s->from_domain), "%s", s->from_doms[best]);
		several = s->from_status == -3 ? "several From fields" :
		    s->from_status == -2 ? "From names several domains" : "a From mailbox without a domain";
	} else {
		dm->result = DMARC_RESULT_PERMERROR;
		dm->reason = "no usable From";
	}
	o->dm_done = true;
	if (dm->result == DMARC_RESULT_FAIL || dm->result == DMARC_RESULT_TEMPERROR) {
		if (sa_domain_listed(&cfg->dmarc.override_domains, s->from_domain))
			o->override_why = "local override";
		else if (s->arc.result == ARC_RESULT_PASS &&
		    sa_domain_listed(&cfg->dmarc.trusted_arc_sealers, s->arc.sealer))
			o->override_why = "trusted ARC sealer";
		o->overridden = o->override_why != NULL;
	}
	if (dm->result == DMARC_RESULT_PASS || dm->result == DMARC_RESULT_FAIL)
		snprintf(polc, sizeof(polc), "p=%s dis=%s%s%s%s%s%s", dmarc_policy_name(dm->policy),
		    o->overridden ? "none" : dmarc_policy_name(dm->disposition),
		    dm->sampled_out ? " pct" : "", o->overridden ? "; " : "",
		    o->overridden ? o->override_why : "", several ? "; " : "", several ? several : "");
	else
		snprintf(polc, sizeof(polc), "%s%s%s", dm->reason ? dm->reason : "", several ? "; " : "",
		    several ? several : "");
	authres_method(ar, "dmarc", dmarc_result_name(dm->result), polc);
	if (s->from_domain[0] != '\0')
		authres_prop(ar, "header.from", s->from_domain);
	/* SpamAssassin's DMARC plugin names: the published policy of a failing message */
	if (dm->result == DMARC_RESULT_PASS)
		hook_env_add_symbol(env, "DMARC_PASS", cfg->dmarc.scores.pass, s->from_domain);
	else if (dm->no_record)
		hook_env_add_symbol(env, "DMARC_MISSING", cfg->dmarc.scores.missing, s->from_domain);
	else if (dm->result == DMARC_RESULT_FAIL && dm->policy == DMARC_POLICY_REJECT)
		hook_env_add_symbol(env, "DMARC_REJECT", cfg->dmarc.scores.reject, s->from_domain);
	else if (dm->result == DMARC_RESULT_FAIL && dm->policy == DMARC_POLICY_QUARANTINE)
		hook_env_add_symbol(env, "DMARC_QUAR", cfg->dmarc.scores.quarantine, s->from_domain);
	else if (dm->result == DMARC_RESULT_FAIL)
		hook_env_add_symbol(env, "DMARC_NONE", cfg->dmarc.scores.none, s->from_domain);
}

/* The verdict under `dmarc.action: honor`. */
static void sa_policy(const struct sa_session *s, const struct sa_outcome *o, struct verdict *v)
{
	const struct mx_config *cfg = s->w->cfg;
	const struct dmarc_outcome *dm = &o->dm;

	memset(v, 0, sizeof(*v));
	/* an authenticated client's mail (SMTP AUTH) is the domain's own, signed after mxgate */
	if (!o->dm_done || cfg->dmarc.action != DMARC_ACTION_HONOR || o->overridden || s->env->auth_user != NULL)
		return;
	if (dm->result == DMARC_RESULT_FAIL && dm->disposition == DMARC_POLICY_REJECT)
		verdict_set(v, VERDICT_REJECT, 550, "dmarc",
		    "5.7.1 Email rejected per DMARC policy for %.200s", s->from_domain);
	else if (s->from_toomany)
		verdict_set(v, VERDICT_REJECT, 550, "dmarc",
		    "5.7.1 Email rejected: From names more than %d domains", SA_MAX_FROM_DOMAINS);
	else if (dm->result == DMARC_RESULT_FAIL && dm->disposition == DMARC_POLICY_QUARANTINE &&
	    cfg->quarantine != NULL)
		verdict_set(v, VERDICT_QUARANTINE, 0, "dmarc", "DMARC policy quarantine for %.200s",
		    s->from_domain);
	else if (dm->result == DMARC_RESULT_TEMPERROR &&
	    (cfg->dmarc.on_temperror == DMARC_TEMPERROR_TEMPFAIL ||
	     (cfg->dmarc.on_temperror == DMARC_TEMPERROR_POLICY &&
	      (dm->disposition == DMARC_POLICY_REJECT || dm->disposition == DMARC_POLICY_QUARANTINE))))
	{
		if (dm->policy == DMARC_POLICY_UNSET)
			verdict_set(v, VERDICT_TEMPFAIL, 451, "dmarc",
			    "4.4.3 DMARC policy lookup for %.200s failed, try again later", s->from_domain);
		else
			verdict_set(v, VERDICT_TEMPFAIL, 451, "dmarc",
			    "4.4.3 DMARC check for %.200s could not be completed, try again later",
			    s->from_domain);
	}
}

/* Hands the relaxed whole-body hash, when a signature made us compute one, to the ARC sealer
 * (env->body_hash): one hash per message instead of two, and the seal's bh= is the very
 * digest the verifier found. A body not hashed to its end (timeout) is not handed over. */
static void sa_share_body_hash(struct sa_session *s)
{
	struct hook_env *env = s->env;
	struct msgbuf *msg = hook_env_msg_sent(env);   /* signatures cover the message as sent */
	size_t len = msg != NULL ? msgbuf_len(msg) : 0;

	env->body_hash_set = false;
	if (!env->cfg->arc.seal.enabled || s->m == NULL || msg == NULL || s->body_start > len ||
	    s->body_off < len)
		return;
	env->body_hash_set = dkim_msg_body_hash(s->m, DKIM_CANON_RELAXED, env->body_hash);
	env->body_hash_len = len - s->body_start;
}

/* Everything is in (or the time is up): results, field, symbols, verdict; completes the call. */
static void sa_judge(struct sa_session *s)
{
	struct sa_worker *w = s->w;
	struct hook_env *env = s->env;
	struct hook_call *call = s->call;
	long long now = (long long)time(NULL);
	struct authres_builder ar;
	struct sa_outcome *o = calloc(1, sizeof(*o));
	struct verdict v;
	char *hdr;

	s->call = NULL;
	if (s->handles_ok) {
		uv_timer_stop(&s->timer);
		uv_idle_stop(&s->idle);
	}
	memset(&v, 0, sizeof(v));
	if (o == NULL) {
		v.action = sa_on_error(w);
		goto done;
	}
	sa_spf_from_symbols(env, &o->spf);
	authres_begin(&ar, w->cfg->hostname);
	if (o->spf.result != NULL) {
		authres_method(&ar, "spf", o->spf.result, NULL);
		authres_prop(&ar, o->spf.helo ? "smtp.helo" : "smtp.mailfrom", o->spf.domain);
		if (s->from_status == 0 && dmarc_aligned(o->spf.domain, s->from_domain, false)) {
			o->aligned_auth |= o->spf.pass;
			o->aligned_temperror |= strcmp(o->spf.result, "temperror") == 0;
		}
	}
	if (w->dkim && s->m != NULL)
		sa_judge_dkim(s, o, &ar, now);
	if (w->arc && s->m != NULL)
		sa_judge_arc(s, &ar, now);
	if (w->dmarc)
		sa_judge_dmarc(s, o, &ar);
	/* the authenticated sender domain: never an unauthenticated From */
	if (o->aligned_auth) {
		char org[256];

		if (dmarc_org_domain(s->from_domain, org, sizeof(org)) == 0)
			hook_env_add_symbol(env, SA_AUTH_SYMBOL, 0, org);
	}
	sa_share_body_hash(s);
	hdr = authres_finish(&ar);
	if (hdr != NULL) {
		/* RFC 8601 5: prepended, above what earlier hops added */
		hook_env_insert_header(env, 0, "Authentication-Results", hdr);
		free(hdr);
	}
	sa_policy(s, o, &v);
	log_event(LOG_LVL_INFO, env->session_id,
	    "event=senderauth queue_id=%s from_domain=%s spf=%s dkim=%s arc=%s dmarc=%s policy=%s "
	    "disposition=%s%s auth_domain=%s action=%s",
	    env->queue_id, s->from_domain[0] ? s->from_domain : "-",
	    o->spf.result ? o->spf.result : "-", w->dkim ? (o->logdkim[0] ? o->logdkim : "none") : "-",
	    w->arc ? arc_result_name(s->arc.result) : "-",
	    o->dm_done ? dmarc_result_name(o->dm.result) : "-",
	    o->dm_done ? dmarc_policy_name(o->dm.policy) : "-",
	    o->dm_done ? dmarc_policy_name(o->dm.disposition) : "-", o->overridden ? " override=yes" : "",
	    senderauth_auth_domain(env) ? senderauth_auth_domain(env) : "-",
	    v.action == VERDICT_REJECT ? "reject" : v.action == VERDICT_QUARANTINE ? "quarantine" :
	    v.action == VERDICT_TEMPFAIL ? "tempfail" : "continue");
done:
	free(o);
	sa_message_clear(s);
	if (call != NULL)
		hook_call_done(call, &v);
}

/* Judges once nothing is outstanding. */
static void sa_maybe_judge(struct sa_session *s)
{
	if (s->starting || s->call == NULL || s->pending > 0)
		return;
	if (s->m != NULL && !dkim_msg_body_done(s->m))
		return;
	sa_judge(s);
}

/* ---- lookups and body ---------------------------------------------------------------------- */

/* Parses txt for name into *k, through the worker's cache of parsed keys. */
static enum dkim_result sa_key_parse_cached(struct sa_worker *w, const char *name, const char *txt,
    struct dkim_key *k)
{
	struct sa_keycache_entry *e;

	for (size_t i = 0; i < SA_KEYCACHE; i++) {
		e = &w->keys[i];
		if (e->name != NULL && strcmp(e->name, name) == 0 && strcmp(e->txt, txt) == 0) {
			dkim_key_copy(k, &e->key);
			return k->result;
		}
	}
	dkim_key_parse(txt, strlen(txt), &w->lim, k);
	e = &w->keys[w->keys_next];
	w->keys_next = (w->keys_next + 1) % SA_KEYCACHE;
	free(e->name);
	free(e->txt);
	dkim_key_clear(&e->key);
	e->name = strdup(name);
	e->txt = strdup(txt);
	if (e->name == NULL || e->txt == NULL) {
		free(e->name);
		free(e->txt);
		e->name = e->txt = NULL;
	} else {
		dkim_key_copy(&e->key, k);
	}
	return k->result;
}

static void sa_dns_cb(void *arg, const struct dns_result *res)
{
	struct sa_lookup *l = arg;
	struct sa_session *s = l->s;

	l->q = NULL;
	l->done = true;
	if (l->kind == SA_LK_KEY) {
		if (res->status == DNS_S_OK) {
			/* several TXT records: the first that parses (RFC 6376 3.6.2.2 leaves it open) */
			dkim_key_set_error(&l->key, DKIM_RESULT_PERMERROR, "no usable key record");
			for (size_t i = 0; i < res->n; i++) {
				dkim_key_clear(&l->key);
				if (sa_key_parse_cached(s->w, l->name, res->v[i], &l->key) == DKIM_RESULT_PASS)
					break;
			}
		} else if (res->status == DNS_S_NXDOMAIN || res->status == DNS_S_NODATA) {
			dkim_key_set_error(&l->key, DKIM_RESULT_PERMERROR, "no key");
		} else {
			dkim_key_set_error(&l->key, DKIM_RESULT_TEMPERROR,
			    res->status == DNS_S_TIMEOUT ? "key lookup timed out" : "key lookup failed");
		}
	} else if (l->kind == SA_LK_EXISTS) {
		/* only NXDOMAIN: NODATA (an MX or TXT only name), a failure or no answer may
		 * well be a name that exists */
		l->dstatus = res->status == DNS_S_NXDOMAIN ? DMARC_DNS_NONE : DMARC_DNS_RECORDS;
	} else {
		if (res->status == DNS_S_OK) {
			l->dstatus = DMARC_DNS_RECORDS;
			l->txt = calloc(res->n ? res->n : 1, sizeof(char *));
			for (size_t i = 0; l->txt != NULL && i < res->n; i++) {
				l->txt[i] = strdup(res->v[i]);
				if (l->txt[i] != NULL)
					l->ntxt++;
			}
			if (l->txt == NULL)
				l->dstatus = DMARC_DNS_TEMPFAIL;
		} else if (res->status == DNS_S_NXDOMAIN || res->status == DNS_S_NODATA) {
			l->dstatus = DMARC_DNS_NONE;
		} else {
			l->dstatus = DMARC_DNS_TEMPFAIL;
		}
	}
	s->pending--;
	sa_maybe_judge(s);
}

/* Hashes up to SA_SLICE body bytes; true when the body is done. */
static bool sa_hash_slice(struct sa_session *s)
{
	size_t len, n;
	const char *d = msgbuf_data(hook_env_msg_sent(s->env), &len);

	if (d == NULL || s->body_off >= len) {
		dkim_msg_end_body(s->m);
		return true;
	}
	n = len - s->body_off < SA_SLICE ? len - s->body_off : SA_SLICE;
	dkim_msg_feed_body(s->m, d + s->body_off, n);
	s->body_off += n;
	if (s->body_off >= len) {
		dkim_msg_end_body(s->m);
		return true;
	}
	return false;
}

static void sa_idle_cb(uv_idle_t *h)
{
	struct sa_session *s = h->data;

	if (s->m == NULL || sa_hash_slice(s)) {
		uv_idle_stop(&s->idle);
		sa_maybe_judge(s);
	}
}

static void sa_timeout_cb(uv_timer_t *t)
{
	struct sa_session *s = t->data;

	/* answers still out are temperror (sa_key_for: not done -> NULL key; DMARC: TEMPFAIL);
	 * an unfinished body hash makes its signatures temperror */
	for (size_t i = 0; i < s->nlk; i++)
		if (s->lk[i].q != NULL) {
			dns_query_cancel(s->lk[i].q);
			s->lk[i].q = NULL;
			s->pending--;
			if (s->lk[i].kind == SA_LK_KEY) {
				s->lk[i].done = true;
				dkim_key_set_error(&s->lk[i].key, DKIM_RESULT_TEMPERROR, "key lookup timed out");
			}
		}
	log_event(LOG_LVL_INFO, s->env->session_id, "event=senderauth_timeout queue_id=%s",
	    s->env->queue_id);
	uv_idle_stop(&s->idle);
	s->pending = 0;
	if (s->call != NULL)
		sa_judge(s);
}

static void sa_close_cb(uv_handle_t *h)
{
	struct sa_session *s = h->data;

	if (--s->open_handles == 0)
		free(s);
}

static struct sa_session *sa_session_get(struct sa_worker *w, struct hook_env *env, int slot)
{
	struct sa_session *s = env->module_ctx[slot];

	if (s != NULL)
		return s;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->w = w;
	s->env = env;
	s->from_status = -1;
	if (uv_timer_init(env->loop, &s->timer) != 0) {
		free(s);
		return NULL;
	}
	s->timer.data = s;
	s->open_handles = 1;
	if (uv_idle_init(env->loop, &s->idle) != 0) {
		uv_close((uv_handle_t *)&s->timer, sa_close_cb);
		return NULL;
	}
	s->idle.data = s;
	s->open_handles = 2;
	s->handles_ok = true;
	env->module_ctx[slot] = s;
	return s;
}

/* Removes the Authentication-Results fields of the header block that claim our
 * authserv-id (RFC 8601 5: they did not come from us). */
static void sa_strip_forged(struct sa_session *s)
{
	struct hook_env *env = s->env;
	const char *hostname = s->w->cfg->hostname ? s->w->cfg->hostname : "localhost";
	size_t nf = dkim_msg_nfields(s->m), nar = 0, nours = 0;
	int ours[64];

	for (size_t i = 0; i < nf; i++) {
		const char *name, *value;
		size_t nl, vl;

		if (!dkim_msg_field_is(s->m, i, "Authentication-Results"))
			continue;
		nar++;
		dkim_msg_field(s->m, i, &name, &nl, &value, &vl);
		if (authres_is_ours(value, vl, hostname) && nours < sizeof(ours) / sizeof(ours[0]))
			ours[nours++] = (int)nar;
	}
	/* delete from the last one up: the edits count the fields still present */
	while (nours > 0) {
		hook_env_change_header(env, "Authentication-Results", ours[--nours], NULL);
		log_event(LOG_LVL_INFO, env->session_id, "event=senderauth_strip queue_id=%s "
		    "reason=\"Authentication-Results claiming %s\"", env->queue_id, hostname);
	}
}

/* Reads the header block hdr[0..hl) (From, signatures) and plans the lookups; the message
 * is env's current one. 0 or -1. */
static int sa_prepare(struct sa_session *s, const char *hdr, size_t hl)
{
	struct hook_env *env = s->env;
	struct sa_worker *w = s->w;
	size_t nf, nfrom = 0;

	s->m = dkim_msg_new(&w->lim);
	if (s->m == NULL || dkim_msg_set_headers(s->m, hdr, hl) != 0)
		return -1;
	snprintf(s->msg_qid, sizeof(s->msg_qid), "%s", env->queue_id);
	s->body_off = s->body_start = hl;
	nf = dkim_msg_nfields(s->m);
	for (size_t i = 0; i < nf; i++) {
		const char *name, *value;
		size_t nl, vl;

		if (!dkim_msg_field_is(s->m, i, "From"))
			continue;
		dkim_msg_field(s->m, i, &name, &nl, &value, &vl);
		if (dmarc_from_domains(value, vl, s->from_doms, SA_MAX_FROM_DOMAINS, &s->nfrom_doms) != 0)
			s->from_toomany = true;
		if (nfrom++ == 0)
			s->from_status = dmarc_from_domain(value, vl, s->from_domain, sizeof(s->from_domain));
		else
			s->from_status = -3;	/* RFC 7489 6.6.1: several From fields */
	}
	if (s->from_status != 0)
		s->from_domain[0] = '\0';
	/* the lookups */
	if (w->dkim) {
		for (size_t i = 0; i < dkim_msg_nsigs(s->m); i++) {
			struct dkim_sig *sig = dkim_msg_sig(s->m, i);
			char name[300];

			if (sig->kind == DKIM_SIG_DKIM && sig->result == DKIM_RESULT_NONE &&
			    dkim_sig_key_name(sig, name, sizeof(name)) == 0 &&
			    sa_add_lookup(s, SA_LK_KEY, name) != 0)
				return -1;
		}
	}
	if (w->arc) {
		arc_chain_plan(s->m, &s->arc);
		for (size_t i = 0; i < arc_chain_nsigs(&s->arc); i++) {
			struct dkim_sig *sig = arc_chain_sig(&s->arc, i);
			char name[300];

			if (sig->result == DKIM_RESULT_NONE && dkim_sig_key_name(sig, name, sizeof(name)) == 0 &&
			    sa_add_lookup(s, SA_LK_KEY, name) != 0)
				return -1;
		}
	}
	if (w->dmarc && s->from_status == 0) {
		char qn[300];

		if (dmarc_org_domain(s->from_domain, s->org_domain, sizeof(s->org_domain)) != 0)
			snprintf(s->org_domain, sizeof(s->org_domain), "%s", s->from_domain);
		snprintf(qn, sizeof(qn), "_dmarc.%s", s->from_domain);
		if (sa_add_lookup(s, SA_LK_DMARC_FROM, qn) != 0)
			return -1;
		/* the organisational domain's record is asked for at once, in parallel: it is
		 * only used when the From domain has none (RFC 7489 6.6.3) */
		if (strcmp(s->org_domain, s->from_domain) != 0) {
			snprintf(qn, sizeof(qn), "_dmarc.%s", s->org_domain);
			if (sa_add_lookup(s, SA_LK_DMARC_ORG, qn) != 0)
				return -1;
			/* whether the From domain exists at all, for an np= there (RFC 9091) */
			if (sa_add_lookup(s, SA_LK_EXISTS, s->from_domain) != 0)
				return -1;
		}
	} else if (w->dmarc && !s->from_toomany) {
		/* several authors: each domain's record, and its organisational domain's */
		for (size_t i = 0; i < s->nfrom_doms; i++) {
			char qn[300], org[256];

			snprintf(qn, sizeof(qn), "_dmarc.%s", s->from_doms[i]);
			if (sa_add_lookup(s, SA_LK_DMARC_FROM, qn) != 0)
				return -1;
			if (dmarc_org_domain(s->from_doms[i], org, sizeof(org)) == 0 &&
			    strcmp(org, s->from_doms[i]) != 0) {
				snprintf(qn, sizeof(qn), "_dmarc.%s", org);
				if (sa_add_lookup(s, SA_LK_DMARC_ORG, qn) != 0)
					return -1;
			}
		}
	}
	return 0;
}

/* A new message: an earlier one's call the chain gave up on is an orphan, its state goes. */
static void sa_message_begin(struct sa_session *s)
{
	if (s->call != NULL) {
		struct hook_call *old = s->call;

		s->call = NULL;
		hook_call_done(old, NULL);
	}
	sa_message_clear(s);
}

/* Starts every planned lookup not started yet, all at once; answers from the cache may
 * come back inside dns_query_start. */
static void sa_start_lookups(struct sa_session *s)
{
	s->starting = true;
	for (size_t i = 0; i < s->nlk; i++) {
		struct sa_lookup *l = &s->lk[i];

		if (l->started)
			continue;
		l->s = s;
		l->started = true;
		s->pending++;
		l->q = dns_query_start(s->w->dns, l->kind == SA_LK_EXISTS ? DNS_T_A : DNS_T_TXT, l->name,
		    0, sa_dns_cb, l);
	}
	s->starting = false;
}

/* The header block is complete, the body still arriving: the lookups start now. HOOK_EOM
 * takes them over (the same queue id), or prepares the message itself when this failed. */
static void sa_headers(void *wstate, int slot, struct hook_env *env, const char *hdr, size_t len)
{
	struct sa_session *s = sa_session_get(wstate, env, slot);

	if (s == NULL)
		return;
	sa_message_begin(s);
	if (sa_prepare(s, hdr, len) != 0) {
		sa_message_clear(s);
		return;
	}
	sa_start_lookups(s);
	log_event(LOG_LVL_DEBUG, env->session_id, "event=senderauth_lookups_early queue_id=%s lookups=%zu "
	    "answered=%zu", env->queue_id, s->nlk, s->nlk - s->pending);
}

static void sa_run(void *wstate, int slot, struct hook_call *call)
{
	struct sa_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	struct sa_session *s;
	struct verdict v;

	if (hook_call_stage(call) != HOOK_EOM || env->msg == NULL) {
		hook_call_done(call, NULL);
		return;
	}
	s = sa_session_get(w, env, slot);
	if (s == NULL)
		goto error;
	if (s->call != NULL || s->m == NULL || s->msg_qid[0] == '\0' || strcmp(s->msg_qid, env->queue_id) != 0) {
		/* no early start for this message (or an orphan call in the way) */
		const char *d;
		size_t len;

		sa_message_begin(s);
		d = msgbuf_data(hook_env_msg_sent(env), &len);
		if (d == NULL || sa_prepare(s, d, msgbuf_header_len(hook_env_msg_sent(env))) != 0) {
			sa_message_clear(s);
			goto error;
		}
	}
	s->call = call;
	sa_strip_forged(s);
	uv_timer_start(&s->timer, sa_timeout_cb, w->cfg->dkim.timeout ? w->cfg->dkim.timeout : 5000, 0);
	sa_start_lookups(s);
	/* the body: small ones at once, big ones a slice per loop iteration; without a
	 * signature there is nothing to hash */
	if (dkim_msg_nsigs(s->m) == 0)
		dkim_msg_end_body(s->m);
	else if (!sa_hash_slice(s))
		uv_idle_start(&s->idle, sa_idle_cb);
	sa_maybe_judge(s);
	return;
error:
	log_event(LOG_LVL_WARNING, env->session_id, "event=senderauth_error queue_id=%s reason=internal",
	    env->queue_id);
	memset(&v, 0, sizeof(v));
	v.action = sa_on_error(w);
	if (v.action != VERDICT_CONTINUE)
		verdict_set(&v, v.action, 0, "senderauth", NULL);
	hook_call_done(call, &v);
}

static void sa_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct sa_session *s = env->module_ctx[slot];

	if (s == NULL)
		return;
	env->module_ctx[slot] = NULL;
	s->call = NULL;
	sa_message_clear(s);	/* cancels the queries: their callbacks never run */
	uv_close((uv_handle_t *)&s->timer, sa_close_cb);
	uv_close((uv_handle_t *)&s->idle, sa_close_cb);
}

/* Named after the section it hangs on in modules.def; it reads `arc:` and `dmarc:` too. */
const struct hook_module senderauth_module = {
	.name = "dkim",
	.worker_init = sa_worker_init,
	.worker_free = sa_worker_free,
	.stages = sa_stages,
	.run = sa_run,
	.session_free = sa_session_free,
	.timeout_ms = sa_timeout_ms,
	.on_error = sa_on_error,
	.headers = sa_headers,
};
