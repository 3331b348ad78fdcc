/* senderdom.c — MAIL FROM's domain must resolve (see senderdom.h).
 *
 * One check per MAIL FROM, on the worker's c-ares resolver (filters/dns.c), each query with
 * its own deadline and every answer cached process-wide, so a domain seen again costs no
 * query. A check is a small state (struct senderdom_facts) fed by the answers; the pure
 * decision table senderdom_decide() says after each one whether the result is known or
 * which queries come next. At most 1 + 2 queries (MX, then A and AAAA), and with
 * check_mx_hosts 2 more per MX host, for at most SENDERDOM_MX_HOSTS_MAX hosts. */
#include "filters/senderdom.h"
#include "filters/dnsbl.h"
#include "proxy/config.h"
#include "proxy/domain.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/netaddr.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- config ------------------------------------------------------------------------- */

static const char *const senderdom_action_names[] = { "reject", "score", NULL };
static const char *const senderdom_on_error_names[] = { "tempfail", "accept", NULL };

static const struct cfg_field senderdom_scores_fields[] = {
	{ "unknown", CFG_DOUBLE, offsetof(struct senderdom_scores_config, unknown), "3", -1000, 1000,
	  .doc = "SENDER_DOMAIN_UNKNOWN: no MX, A or AAAA record (NXDOMAIN or NODATA)" },
	{ "null_mx", CFG_DOUBLE, offsetof(struct senderdom_scores_config, null_mx), "5", -1000, 1000,
	  .doc = "SENDER_DOMAIN_NULL_MX: the domain sends no mail (RFC 7505)" },
	{ "bad_mx", CFG_DOUBLE, offsetof(struct senderdom_scores_config, bad_mx), "2", -1000, 1000,
	  .doc = "SENDER_DOMAIN_BAD_MX: no MX host with a public address (check_mx_hosts)" },
	{ "temperror", CFG_DOUBLE, offsetof(struct senderdom_scores_config, temperror), "0", -1000, 1000,
	  .doc = "SENDER_DOMAIN_TEMPERROR: the lookup failed (on_error: accept)" },
	{ .key = NULL }
};

static const struct cfg_table senderdom_scores_table = {
	.name = "sender_domain.scores", .size = sizeof(struct senderdom_scores_config),
	.fields = senderdom_scores_fields,
};

static const struct cfg_field senderdom_config_fields[] = {
	{ "enabled", CFG_BOOL, offsetof(struct senderdom_config, enabled), "false",
	  .doc = "look up MAIL FROM's domain: refuse (or score) a domain with no MX, A or AAAA record, or a null MX (Postfix's reject_unknown_sender_domain)" },
	{ "action", CFG_ENUM, offsetof(struct senderdom_config, action), "reject",
	  .choices = senderdom_action_names,
	  .doc = "reject: refuse with the codes below; score: only add the SENDER_DOMAIN_* symbol for the rules" },
	{ "unknown_code", CFG_INT, offsetof(struct senderdom_config, unknown_code), "450", 400, 599,
	  .doc = "reply to a domain not found or without a usable MX (Postfix's unknown_address_reject_code): 450 lets a sender whose DNS is briefly broken retry, 550 refuses for good" },
	{ "check_mx_hosts", CFG_BOOL, offsetof(struct senderdom_config, check_mx_hosts), "false",
	  .doc = "also require a public address (not loopback or private) of an MX host, or of the domain itself when it has no MX (Haraka's MX and implicit-MX checks)" },
	{ "on_error", CFG_ENUM, offsetof(struct senderdom_config, on_error), "tempfail",
	  .choices = senderdom_on_error_names,
	  .doc = "a DNS failure or timeout: tempfail (451 4.4.3) or accept (symbol SENDER_DOMAIN_TEMPERROR)" },
	{ "timeout", CFG_DURATION, offsetof(struct senderdom_config, timeout), "0", 0, 60000,
	  .doc = "time limit per query (0: dns.timeout)" },
	{ "allow", CFG_CIDRLIST, offsetof(struct senderdom_config, allow), NULL,
	  .doc = "clients whose senders are not checked (your own relays)" },
	{ "skip_allowed", CFG_BOOL, offsetof(struct senderdom_config, skip_allowed), "true",
	  .doc = "no check for clients allow-listed by reputation or the DNS lists (REP_ALLOW, DNSBL_ALLOW)" },
	{ "scores", CFG_STRUCT, offsetof(struct senderdom_config, scores), NULL,
	  .sub = &senderdom_scores_table, .doc = "symbol scores per result" },
	{ .key = NULL }
};

const struct cfg_table senderdom_config_table = {
	.name = "sender_domain", .size = sizeof(struct senderdom_config),
	.fields = senderdom_config_fields,
};

/* ---- results and counts ------------------------------------------------------------- */

const char *senderdom_result_name(enum senderdom_result r)
{
	switch (r) {
	case SENDERDOM_OK: return "ok";
	case SENDERDOM_UNKNOWN: return "unknown";
	case SENDERDOM_NULL_MX: return "null_mx";
	case SENDERDOM_BAD_MX: return "bad_mx";
	case SENDERDOM_TEMPERROR: return "temperror";
	case SENDERDOM_PENDING: return "pending";
	}
	return "pending";
}

/* Checks by result, and those skipped (the last slot); process-wide. */
#define SD_COUNT_SKIPPED SENDERDOM_PENDING
static atomic_ullong sd_counts[SD_COUNT_SKIPPED + 1];

static void sd_collect(void *arg, struct metrics_out *out)
{
	(void)arg;
	for (int i = 0; i <= SD_COUNT_SKIPPED; i++)
		metrics_out_sample(out, "result", i == SD_COUNT_SKIPPED ? "skipped" :
		    senderdom_result_name((enum senderdom_result)i), (double)atomic_load(&sd_counts[i]));
}

void senderdom_metrics(void)
{
	metrics_register_family("sender_domain_checks_total",
	    "MAIL FROM domains looked up, by result (event=sender_domain), and senders not checked (skipped)",
	    "counter", sd_collect, NULL);
}

/* ---- the decision table ------------------------------------------------------------- */

static bool sd_temp(enum dns_status s)
{
	return s != DNS_S_OK && s != DNS_S_NXDOMAIN && s != DNS_S_NODATA;
}

enum senderdom_result senderdom_decide(const struct senderdom_facts *f, bool check_mx_hosts,
    enum senderdom_phase *next)
{
	*next = f->phase;
	if (f->phase == SENDERDOM_PHASE_MX) {
		if (f->mx == DNS_S_OK && f->null_mx)
			return SENDERDOM_NULL_MX;
		if (f->mx == DNS_S_OK && !check_mx_hosts)
			return SENDERDOM_OK;          /* Postfix asks no more of an MX */
		if (f->mx == DNS_S_OK && f->hosts == 0)
			return SENDERDOM_BAD_MX;      /* only "." beside others, or addresses */
		if (f->mx == DNS_S_OK) {
			*next = SENDERDOM_PHASE_HOSTS;
			return SENDERDOM_PENDING;
		}
		/* NXDOMAIN: the name does not exist, no A or AAAA either (RFC 8020) */
		if (f->mx == DNS_S_NXDOMAIN)
			return SENDERDOM_UNKNOWN;
		/* NODATA, or a failed MX query: an address still proves the domain (Postfix's
		 * lookup of MX, A and AAAA stops at the first found) */
		*next = SENDERDOM_PHASE_ADDR;
		return SENDERDOM_PENDING;
	}
	if (f->found_public > 0 || (!check_mx_hosts && f->found_private > 0))
		return SENDERDOM_OK;
	if (f->pending > 0)
		return SENDERDOM_PENDING;
	if (f->temp > 0)
		return SENDERDOM_TEMPERROR;   /* a public address may be behind the failure */
	if (f->phase == SENDERDOM_PHASE_HOSTS || f->found_private > 0)
		return SENDERDOM_BAD_MX;
	return f->mx == DNS_S_NODATA ? SENDERDOM_UNKNOWN : SENDERDOM_TEMPERROR;
}

bool senderdom_addr_is_public(const char *ip)
{
	static const struct { const char *net; int prefix; } unusable[] = {
		{ "0.0.0.0", 8 }, { "10.0.0.0", 8 }, { "100.64.0.0", 10 }, { "127.0.0.0", 8 },
		{ "169.254.0.0", 16 }, { "172.16.0.0", 12 }, { "192.168.0.0", 16 },
		{ "224.0.0.0", 4 }, { "240.0.0.0", 4 },        /* multicast, reserved, broadcast */
		{ "::", 128 }, { "::1", 128 }, { "fc00::", 7 }, { "fe80::", 10 }, { "ff00::", 8 },
	};
	struct netaddr a, net;

	if (ip == NULL || netaddr_from_string(ip, &a) != 0)
		return false;
	for (size_t i = 0; i < sizeof(unusable) / sizeof(unusable[0]); i++)
		if (netaddr_from_string(unusable[i].net, &net) == 0 &&
		    netaddr_in_prefix(&a, &net, unusable[i].prefix))
			return false;
	return true;
}

int senderdom_mx_item(const char *item, unsigned *pref, char *name, size_t cap)
{
	char *end;
	unsigned long p;
	size_t n;

	if (item == NULL || *item < '0' || *item > '9')
		return -1;
	p = strtoul(item, &end, 10);
	if (p > 65535 || *end != ' ' || end[1] == '\0')
		return -1;
	n = strlen(end + 1);
	if (n >= cap)
		return -1;
	memcpy(name, end + 1, n + 1);
	*pref = (unsigned)p;
	return 0;
}

/* ---- per worker --------------------------------------------------------------------- */

struct sd_worker {
	const struct mx_config *cfg;
	const struct senderdom_config *c;
	struct dns_resolver *r;
	uint64_t timeout;           /* ms per query */
};

static int sd_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	struct sd_worker *w;

	(void)worker;
	*wstate = NULL;
	if (!cfg->sender_domain.enabled)
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cfg = cfg;
	w->c = &cfg->sender_domain;
	w->timeout = w->c->timeout ? w->c->timeout : cfg->dns.timeout ? cfg->dns.timeout : 2000;
	w->r = dns_resolver_for_loop(loop, cfg);
	if (w->r == NULL) {
		free(w);
		log_event(LOG_LVL_ERROR, NULL, "event=sender_domain_error reason=\"no resolver\"");
		return -1;
	}
	*wstate = w;
	return 0;
}

static void sd_worker_free(void *wstate)
{
	struct sd_worker *w = wstate;

	if (w == NULL)
		return;
	dns_resolver_release(w->r);
	free(w);
}

static unsigned sd_stages(void *wstate)
{
	return wstate ? 1u << HOOK_MAIL : 0;
}

/* The chain's bound over the whole check, behind each query's own: MX, then the addresses
 * of the domain or of its MX hosts. */
static uint64_t sd_timeout_ms(void *wstate)
{
	const struct sd_worker *w = wstate;

	return w ? (w->c->check_mx_hosts ? 3 : 2) * w->timeout + 2000 : 0;
}

static enum verdict_action sd_on_error(void *wstate)
{
	const struct sd_worker *w = wstate;

	return w && w->c->on_error == SENDERDOM_ON_ERROR_ACCEPT ? VERDICT_CONTINUE : VERDICT_TEMPFAIL;
}

/* ---- per session -------------------------------------------------------------------- */

struct sd_session;

struct sd_query {
	struct sd_session *s;
	struct dns_query *q;
};

struct sd_session {
	struct sd_worker *w;
	struct hook_env *env;
	struct hook_call *call;     /* the MAIL stage waiting, or NULL */
	struct senderdom_facts f;
	struct sd_query mxq;
	struct sd_query aq[2 * SENDERDOM_MX_HOSTS_MAX];
	size_t naq;
	char hosts[SENDERDOM_MX_HOSTS_MAX][DNS_NAME_TEXT_MAX];
	int starting;               /* > 0 while queries are being started */
	enum dns_status failed;     /* the last failed query's status (a temperror's dns=) */
	char domain[DOMAIN_MAX + 1];
};

static void sd_cancel_all(struct sd_session *s)
{
	dns_query_cancel(s->mxq.q);
	s->mxq.q = NULL;
	for (size_t i = 0; i < s->naq; i++) {
		dns_query_cancel(s->aq[i].q);
		s->aq[i].q = NULL;
	}
	s->naq = 0;
}

/* Only [A-Za-z0-9.-_] goes into a reply: the normal form of a name that was looked up is
 * that, but one that was not (no A-label form) may hold anything. */
static bool sd_domain_printable(const char *d)
{
	return d[0] != '\0' && strspn(d, "abcdefghijklmnopqrstuvwxyz0123456789.-_") == strlen(d);
}

/* The check's result r: symbol, counter, log line and the verdict into v. */
static void sd_judge(const struct sd_worker *w, struct hook_env *env, const char *domain,
    enum senderdom_result r, enum dns_status failed, struct verdict *v)
{
	const struct senderdom_config *c = w->c;
	const struct senderdom_scores_config *sc = &c->scores;
	bool score = c->action == SENDERDOM_ACTION_SCORE;
	const char *sym = NULL, *what = "score";
	double pts = 0;
	char dv[300];
	int code = (int)c->unknown_code;
	bool temp = code < 500;

	atomic_fetch_add_explicit(&sd_counts[r], 1, memory_order_relaxed);
	switch (r) {
	case SENDERDOM_UNKNOWN:
		sym = "SENDER_DOMAIN_UNKNOWN";
		pts = sc->unknown;
		if (!score)
			verdict_set(v, temp ? VERDICT_TEMPFAIL : VERDICT_REJECT, code, "sender_domain",
			    "%c.1.8 Sender address rejected: Domain not found", temp ? '4' : '5');
		break;
	case SENDERDOM_NULL_MX:
		sym = "SENDER_DOMAIN_NULL_MX";
		pts = sc->null_mx;
		/* RFC 7505 4.2: a null MX domain sends no mail; 550 5.7.27 */
		if (!score && sd_domain_printable(domain))
			verdict_set(v, VERDICT_REJECT, 550, "sender_domain",
			    "5.7.27 Sender address rejected: Domain %s does not accept mail (nullMX)", domain);
		else if (!score)
			verdict_set(v, VERDICT_REJECT, 550, "sender_domain",
			    "5.7.27 Sender address rejected: Domain does not accept mail (nullMX)");
		break;
	case SENDERDOM_BAD_MX:
		sym = "SENDER_DOMAIN_BAD_MX";
		pts = sc->bad_mx;
		if (!score)
			verdict_set(v, temp ? VERDICT_TEMPFAIL : VERDICT_REJECT, code, "sender_domain",
			    "%c.1.8 Sender address rejected: Domain has no usable mail exchanger",
			    temp ? '4' : '5');
		break;
	case SENDERDOM_TEMPERROR:
		sym = "SENDER_DOMAIN_TEMPERROR";
		pts = sc->temperror;
		score = c->on_error == SENDERDOM_ON_ERROR_ACCEPT;
		what = score ? "accept" : "tempfail";
		/* RFC 3463 3.5 X.4.3, directory server failure ("the inability to connect to an
		 * Internet DNS server"), and not Postfix's 450 4.1.8: a lookup that failed has not
		 * shown the domain bad (docs/postfix-parity.md, dns-sender-servfail) */
		if (!score)
			verdict_set(v, VERDICT_TEMPFAIL, 451, "sender_domain",
			    "4.4.3 Sender address rejected: Domain lookup failed, try again later");
		break;
	default:
		log_event(LOG_LVL_DEBUG, env->session_id, "event=sender_domain result=ok domain=%s client=%s",
		    log_val(dv, sizeof(dv), domain), env->client_ip);
		return;
	}
	if (v->action != VERDICT_CONTINUE) {
		what = v->action == VERDICT_REJECT ? "reject" : "tempfail";
		snprintf(v->log_extra, sizeof(v->log_extra), "result=%s", senderdom_result_name(r));
	}
	if (hook_env_find_symbol(env, sym) == NULL)
		hook_env_add_symbol(env, sym, pts, domain);
	/* a temperror says which failure it was (servfail, timeout, failed: every server
	 * refused), as event=dnsbl_error's answer= does: a resolver down and a zone's broken
	 * servers are an operator's two different calls */
	log_event(LOG_LVL_INFO, env->session_id,
	    "event=sender_domain result=%s domain=%s client=%s action=%s%s%s",
	    senderdom_result_name(r), log_val(dv, sizeof(dv), domain), env->client_ip, what,
	    r == SENDERDOM_TEMPERROR ? " dns=" : "", r == SENDERDOM_TEMPERROR ? dns_status_name(failed) : "");
}

/* The result is known: cancel what is still asked, complete the waiting call. */
static void sd_finish(struct sd_session *s, enum senderdom_result r)
{
	struct hook_call *call = s->call;
	struct verdict v;

	sd_cancel_all(s);
	s->call = NULL;
	if (call == NULL)
		return;         /* the chain gave up already (its timeout, its on_error) */
	verdict_clear(&v);
	sd_judge(s->w, s->env, s->domain, r, s->failed != DNS_S_OK ? s->failed : s->f.mx, &v);
	hook_call_done(call, &v);
}

static void sd_step(struct sd_session *s);

static void sd_addr_cb(void *arg, const struct dns_result *res)
{
	struct sd_query *aq = arg;
	struct sd_session *s = aq->s;
	bool pub = false, any = false;

	aq->q = NULL;
	s->f.pending--;
	if (res->status == DNS_S_OK) {
		for (size_t i = 0; i < res->n; i++) {
			any = true;
			pub |= senderdom_addr_is_public(res->v[i]);
		}
	}
	if (pub)
		s->f.found_public++;
	else if (any)
		s->f.found_private++;
	else if (sd_temp(res->status)) {
		s->f.temp++;
		s->failed = res->status;
	}
	else
		s->f.none++;
	if (s->starting == 0)
		sd_step(s);
}

/* Asks A and AAAA of name (a slot each). */
static void sd_ask_addr(struct sd_session *s, const char *name)
{
	for (int t = 0; t < 2 && s->naq < sizeof(s->aq) / sizeof(s->aq[0]); t++) {
		struct sd_query *aq = &s->aq[s->naq++];

		aq->s = s;
		aq->q = NULL;
		s->f.pending++;
		aq->q = dns_query_start(s->w->r, t == 0 ? DNS_T_A : DNS_T_AAAA, name, s->w->timeout,
		    sd_addr_cb, aq);
	}
}

/* Starts the queries of phase p (ADDR: the domain; HOSTS: its MX hosts). */
static void sd_start_phase(struct sd_session *s, enum senderdom_phase p)
{
	s->f.phase = p;
	s->f.pending = s->f.found_public = s->f.found_private = s->f.temp = s->f.none = 0;
	s->starting++;
	if (p == SENDERDOM_PHASE_ADDR)
		sd_ask_addr(s, s->domain);
	else
		for (size_t i = 0; i < s->f.hosts; i++)
			sd_ask_addr(s, s->hosts[i]);
	s->starting--;
}

/* Decides on what is known; starts the next phase or finishes. */
static void sd_step(struct sd_session *s)
{
	enum senderdom_phase next;
	enum senderdom_result r;

	for (;;) {
		r = senderdom_decide(&s->f, s->w->c->check_mx_hosts, &next);
		if (r != SENDERDOM_PENDING) {
			sd_finish(s, r);
			return;
		}
		if (next == s->f.phase)
			return;                 /* answers to come */
		sd_start_phase(s, next);    /* answers from the cache are in already */
	}
}

/* Keeps the MX hosts of an answer, lowest preference first, at most SENDERDOM_MX_HOSTS_MAX;
 * sets null_mx when every record is the root. */
static void sd_take_mx(struct sd_session *s, const struct dns_result *res)
{
	unsigned prefs[SENDERDOM_MX_HOSTS_MAX];
	size_t roots = 0, records = 0;

	s->f.hosts = 0;
	for (size_t i = 0; i < res->n; i++) {
		char name[DNS_NAME_TEXT_MAX];
		unsigned pref;
		struct netaddr na;
		size_t k;

		if (senderdom_mx_item(res->v[i], &pref, name, sizeof(name)) < 0)
			continue;
		records++;
		if (strcmp(name, ".") == 0) {
			roots++;
			continue;
		}
		/* an address as exchange is no host name (RFC 5321 5.1; Haraka's allow_mx_ip
		 * off): not looked up */
		if (netaddr_from_string(name, &na) == 0)
			continue;
		k = s->f.hosts;
		if (k == SENDERDOM_MX_HOSTS_MAX) {
			if (pref >= prefs[k - 1])
				continue;
			k--;                    /* the worst kept one makes room */
		} else {
			s->f.hosts++;
		}
		while (k > 0 && prefs[k - 1] > pref) {
			prefs[k] = prefs[k - 1];
			memcpy(s->hosts[k], s->hosts[k - 1], sizeof(s->hosts[k]));
			k--;
		}
		prefs[k] = pref;
		memcpy(s->hosts[k], name, strlen(name) + 1);
	}
	/* RFC 7505 3: the null MX is the only MX of its domain; a "." beside real hosts is
	 * just no host */
	s->f.null_mx = records > 0 && roots == records;
}

static void sd_mx_cb(void *arg, const struct dns_result *res)
{
	struct sd_session *s = ((struct sd_query *)arg)->s;

	s->mxq.q = NULL;
	s->f.mx = res->status;
	if (res->status == DNS_S_OK)
		sd_take_mx(s, res);
	if (s->f.mx == DNS_S_OK && res->n == 0)
		s->f.mx = DNS_S_NODATA;
	if (s->starting == 0)
		sd_step(s);
}

/* Why the sender of env is not checked, or NULL. */
static const char *sd_skip_reason(const struct sd_worker *w, const struct hook_env *env)
{
	const struct senderdom_config *c = w->c;

	if (env->auth_user != NULL)
		return "auth";
	if (c->allow.n && cfg_cidrlist_match(&c->allow, (const struct sockaddr *)&env->client))
		return "allow";
	if (c->skip_allowed && (hook_env_find_symbol(env, "REP_ALLOW") ||
	    hook_env_find_symbol(env, DNSBL_ALLOW_SYMBOL)))
		return "allow_listed";
	return NULL;
}

/* A client not checked whatever its sender (authenticated, allowed, allow-listed): its MAIL
 * stage completes at once, so a pipelining client's next transaction may go ahead. */
static bool sd_settled(void *wstate, int slot, const struct hook_env *env, enum hook_stage st)
{
	(void)slot;
	return st != HOOK_MAIL || sd_skip_reason(wstate, env) != NULL;
}

static void sd_run(void *wstate, int slot, struct hook_call *call)
{
	struct sd_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	struct sd_session *s = env->module_ctx[slot];
	const char *dom = env->mail_from ? domain_of_address(env->mail_from) : NULL;
	const char *skip;
	char dv[300];
	int n;

	/* the null sender, an address without a domain: nothing to look up (Postfix) */
	if (dom == NULL || *dom == '\0') {
		hook_call_done(call, NULL);
		return;
	}
	skip = sd_skip_reason(w, env);
	/* an address literal is no name (Postfix skips it); nor is a domain of ours one we
	 * need to look up (Postfix skips its final destinations) */
	if (skip == NULL && dom[0] == '[')
		skip = "literal";
	if (skip == NULL && w->cfg->accept_set != NULL && domain_set_match(w->cfg->accept_set, dom))
		skip = "accept_domains";
	if (skip != NULL) {
		atomic_fetch_add_explicit(&sd_counts[SD_COUNT_SKIPPED], 1, memory_order_relaxed);
		log_event(LOG_LVL_DEBUG, env->session_id, "event=sender_domain_skip reason=%s domain=%s",
		    skip, log_val(dv, sizeof(dv), dom));
		hook_call_done(call, NULL);
		return;
	}
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL) {
			struct verdict v;

			verdict_set(&v, VERDICT_ERROR, 0, "out of memory", NULL);
			hook_call_done(call, &v);
			return;
		}
		s->w = w;
		s->env = env;
		env->module_ctx[slot] = s;
	}
	sd_cancel_all(s);       /* a check the chain gave up on */
	memset(&s->f, 0, sizeof(s->f));
	s->failed = DNS_S_OK;
	s->call = call;
	n = domain_normalize(dom, strlen(dom), s->domain, sizeof(s->domain));
	if (n < 0 || strspn(s->domain, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != (size_t)n) {
		/* no A-label form (not valid IDNA) or no name at all: no such name in the DNS
		 * (Postfix looks the raw name up, and finds nothing) */
		if (n < 0)
			snprintf(s->domain, sizeof(s->domain), "%s", "");
		sd_finish(s, SENDERDOM_UNKNOWN);
		return;
	}
	s->mxq.s = s;
	s->starting++;
	s->mxq.q = dns_query_start(w->r, DNS_T_MX, s->domain, w->timeout, sd_mx_cb, &s->mxq);
	s->starting--;
	if (s->mxq.q == NULL)
		sd_step(s);     /* answered at once (the cache, a name that cannot exist) */
}

/* The chain gave up (its timeout): the answers, when they come, complete nothing. */
static void sd_cancel(void *wstate, int slot, struct hook_call *call)
{
	struct sd_session *s = hook_call_env(call)->module_ctx[slot];

	(void)wstate;
	if (s != NULL && s->call == call) {
		s->call = NULL;
		sd_cancel_all(s);
	}
}

static void sd_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct sd_session *s = env->module_ctx[slot];

	(void)wstate;
	if (s == NULL)
		return;
	sd_cancel_all(s);
	free(s);
	env->module_ctx[slot] = NULL;
}

const struct hook_module senderdom_module = {
	.name = "sender_domain",
	.worker_init = sd_worker_init,
	.worker_free = sd_worker_free,
	.stages = sd_stages,
	.run = sd_run,
	.session_free = sd_session_free,
	.timeout_ms = sd_timeout_ms,
	.on_error = sd_on_error,
	.cancel = sd_cancel,
	.settled = sd_settled,
};
