/* spf.c — SPF at MAIL FROM with libspf2, off the loop thread.
 *
 * Each check is a `struct spf_work` that owns its inputs and result. The session's context
 * points at the work in flight and arms a timer; whichever comes first — the result or the
 * timer — completes the hook call. A late result finds owner == NULL and is only freed. The
 * engine is refcounted so a check still running in the pool outlives a retired worker. */
#include <netinet/in.h>	/* before spf2/spf.h, which does not include it */
#include <arpa/nameser.h>

#include "filters/spf.h"
#include "filters/dns.h"
#include "filters/spf_dns.h"
#include "proxy/counters.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/netaddr.h"

#include <spf2/spf.h>
#include <spf2/spf_dns_zone.h>
#include <spf2/spf_dns_resolv.h>
#include <spf2/spf_dns_cache.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- config ------------------------------------------------------------------------- */

static const struct cfg_field spf_scores_fields[] = {
	{ "pass", CFG_DOUBLE, offsetof(struct spf_scores_config, pass), "0", -1000, 1000, .doc = "SPF_PASS" },
	{ "fail", CFG_DOUBLE, offsetof(struct spf_scores_config, fail), "3", -1000, 1000, .doc = "SPF_FAIL" },
	{ "softfail", CFG_DOUBLE, offsetof(struct spf_scores_config, softfail), "1", -1000, 1000, .doc = "SPF_SOFTFAIL" },
	{ "neutral", CFG_DOUBLE, offsetof(struct spf_scores_config, neutral), "0", -1000, 1000, .doc = "SPF_NEUTRAL" },
	{ "none", CFG_DOUBLE, offsetof(struct spf_scores_config, none), "0", -1000, 1000, .doc = "SPF_NONE" },
	{ "temperror", CFG_DOUBLE, offsetof(struct spf_scores_config, temperror), "0", -1000, 1000, .doc = "SPF_TEMPERROR" },
	{ "permerror", CFG_DOUBLE, offsetof(struct spf_scores_config, permerror), "0.5", -1000, 1000, .doc = "SPF_PERMERROR" },
	{ .key = NULL }
};

static const struct cfg_table spf_scores_table = {
	.name = "spf.scores", .size = sizeof(struct spf_scores_config), .fields = spf_scores_fields,
};

/* SpamAssassin's SPF_HELO_* scores are near zero (50_scores.cf: SOFTFAIL 0.7-0.9, the rest
 * 0.001): a HELO name is often not the sender's domain. These follow that, with fail kept. */
static const struct cfg_field spf_helo_scores_fields[] = {
	{ "pass", CFG_DOUBLE, offsetof(struct spf_scores_config, pass), "0", -1000, 1000, .doc = "SPF_HELO_PASS" },
	{ "fail", CFG_DOUBLE, offsetof(struct spf_scores_config, fail), "1", -1000, 1000, .doc = "SPF_HELO_FAIL" },
	{ "softfail", CFG_DOUBLE, offsetof(struct spf_scores_config, softfail), "0.7", -1000, 1000, .doc = "SPF_HELO_SOFTFAIL" },
	{ "neutral", CFG_DOUBLE, offsetof(struct spf_scores_config, neutral), "0", -1000, 1000, .doc = "SPF_HELO_NEUTRAL" },
	{ "none", CFG_DOUBLE, offsetof(struct spf_scores_config, none), "0", -1000, 1000, .doc = "SPF_HELO_NONE" },
	{ "temperror", CFG_DOUBLE, offsetof(struct spf_scores_config, temperror), "0", -1000, 1000, .doc = "SPF_HELO_TEMPERROR" },
	{ "permerror", CFG_DOUBLE, offsetof(struct spf_scores_config, permerror), "0", -1000, 1000, .doc = "SPF_HELO_PERMERROR" },
	{ .key = NULL }
};

static const struct cfg_table spf_helo_scores_table = {
	.name = "spf.helo_scores", .size = sizeof(struct spf_scores_config), .fields = spf_helo_scores_fields,
};

static const struct cfg_field spf_config_fields[] = {
	{ "enabled", CFG_BOOL, offsetof(struct spf_config, enabled), "false",
	  .doc = "check SPF at MAIL FROM (libspf2; asks dns.resolvers, else resolv.conf's servers)" },
	{ "reject_fail", CFG_BOOL, offsetof(struct spf_config, reject_fail), "false",
	  .doc = "refuse MAIL FROM with 550 5.7.23 when the result is fail" },
	{ "tempfail_temperror", CFG_BOOL, offsetof(struct spf_config, tempfail_temperror), "false",
	  .doc = "answer 451 4.7.24 when the result is temperror (default: score only)" },
	{ "helo", CFG_BOOL, offsetof(struct spf_config, helo), "true",
	  .doc = "check the HELO identity for the null sender <>" },
	{ "helo_always", CFG_BOOL, offsetof(struct spf_config, helo_always), "false",
	  .doc = "also check the HELO identity when MAIL FROM is not <> (symbols SPF_HELO_<RESULT>, once per HELO name), as policyd-spf and SpamAssassin do" },
	{ "reject_helo_fail", CFG_BOOL, offsetof(struct spf_config, reject_helo_fail), "false",
	  .doc = "refuse MAIL FROM with 550 5.7.23 when the HELO identity's result is fail (policyd-spf's HELO_reject), whatever MAIL FROM's" },
	{ "timeout", CFG_DURATION, offsetof(struct spf_config, timeout), "5s", 100, 120000,
	  .doc = "time limit for one check; then the result is temperror" },
	{ "scores", CFG_STRUCT, offsetof(struct spf_config, scores), NULL, .sub = &spf_scores_table,
	  .doc = "symbol scores per result" },
	{ "helo_scores", CFG_STRUCT, offsetof(struct spf_config, helo_scores), NULL, .sub = &spf_helo_scores_table,
	  .doc = "symbol scores per result of the HELO identity (helo_always)" },
	{ "records", CFG_STRLIST, offsetof(struct spf_config, records), NULL,
	  .doc = "static records answered before DNS: \"example.org TXT v=spf1 -all\"" },
	{ .key = NULL }
};

static SPF_server_t *spf_engine_server(struct spf_engine *e);

static int spf_config_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	const struct spf_config *c = obj;
	struct spf_engine *e;

	if (c->records.n == 0)
		return 0;
	e = spf_engine_new(NULL, true, NULL);
	if (e == NULL)
		return 0;
	for (size_t i = 0; i < c->records.n; i++) {
		const char *r = c->records.v[i];
		int kept, terms;
		bool redirect;

		if (spf_engine_add_record(e, r) < 0) {
			spf_engine_free(e);
			return cfg_error_key(p, n, "records", (long)i, "\"%s\": expected \"name TYPE data\"", r);
		}
		/* "name TXT data": a record libspf2 would cut short is refused now, not permerror
		 * (or a wrong neutral) for every message later */
		r += strspn(r, " \t");
		r += strcspn(r, " \t");
		r += strspn(r, " \t");
		if (strncasecmp(r, "TXT", 3) != 0 || (r[3] != ' ' && r[3] != '\t'))
			continue;
		r += 3 + strspn(r + 3, " \t");
		kept = spf_dns_size_kept(spf_engine_server(e), r, &terms, &redirect);
		if (kept >= 0 && kept < terms) {
			spf_engine_free(e);
			return cfg_error_key(p, n, "records", (long)i, "libspf2 keeps %d of its %d mechanisms "
			    "(511 compiled octets, about 63 ip4 terms): split it with include:", kept, terms);
		}
	}
	spf_engine_free(e);
	return 0;
}

const struct cfg_table spf_config_table = {
	.name = "spf", .size = sizeof(struct spf_config), .fields = spf_config_fields,
	.validate = spf_config_validate,
};

/* ---- the engine --------------------------------------------------------------------- */

struct spf_engine {
	SPF_server_t *srv;
	SPF_dns_server_t *zone;    /* our static records (owned by srv) */
	SPF_dns_server_t *top;     /* the size check above them, the layer srv asks */
	int refs;                  /* loop thread only */
};

static SPF_server_t *spf_engine_server(struct spf_engine *e)
{
	return e->srv;
}

const char *spf_result_name(enum spf_result r)
{
	switch (r) {
	case SPF_R_NONE: return "none";
	case SPF_R_NEUTRAL: return "neutral";
	case SPF_R_PASS: return "pass";
	case SPF_R_FAIL: return "fail";
	case SPF_R_SOFTFAIL: return "softfail";
	case SPF_R_TEMPERROR: return "temperror";
	case SPF_R_PERMERROR: return "permerror";
	}
	return "none";
}

/* libspf2 prints to stdout/stderr by default and its error handler exits: route them to
 * our log, and never let a library error end the process from a pool thread. */
static void spf_log_warning_cb(const char *file, int line, const char *msg)
{
	char mv[600];   /* libspf2's text holds what DNS answered (a record, a name): escaped */

	log_event(LOG_LVL_DEBUG, NULL, "event=spf_warning msg=%s", log_val(mv, sizeof(mv), msg ? msg : ""));
}

static void spf_log_quiet_cb(const char *file, int line, const char *msg)
{
}

static pthread_once_t spf_log_once = PTHREAD_ONCE_INIT;

static void spf_log_init(void)
{
	SPF_warning_handler = spf_log_warning_cb;
	SPF_info_handler = spf_log_quiet_cb;
	SPF_debug_handler = spf_log_quiet_cb;
}

struct spf_engine *spf_engine_new(const struct cfg_strlist *records, bool offline,
    const struct dns_config *dc)
{
	struct spf_engine *e;
	SPF_dns_server_t *below = NULL, *layer;

	pthread_once(&spf_log_once, spf_log_init);
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->refs = 1;
	if (!offline) {
		/* RFC 7208 4.6.4 lookups, cached; the resolver layer is blocking: the servers of
		 * dns.resolvers, else resolv.conf's IPv4 ones, each wait bounded (spf_dns.c);
		 * libspf2's own (glibc) only when none of those is usable */
		below = spf_dns_layer_new(dc != NULL ? &dc->resolvers : NULL,
		    dc && dc->timeout ? dc->timeout : 2000, dc && dc->tries ? (int)dc->tries : 2,
		    dns_cache_for(dc), dc != NULL ? dc->negative_ttl : 300000,
		    dc != NULL ? dc->max_ttl : 3600000);
		if (below == NULL)
			below = SPF_dns_resolv_new(NULL, "resolv", 0);
		if (below == NULL)
			goto fail;
		layer = SPF_dns_cache_new(below, "cache", 0, 10);
		if (layer == NULL)
			goto fail;	/* below is freed there */
		below = layer;
		/* above the cache, so a cached empty answer counts as a void lookup too */
		layer = spf_dns_void_layer_new(below);
		if (layer == NULL)
			goto fail;
		below = layer;
	}
	e->zone = SPF_dns_zone_new(below, "static", 0);
	if (e->zone == NULL)
		goto fail;
	/* on top, so the static records are checked too: a record libspf2 cuts short */
	e->top = spf_dns_size_layer_new(e->zone);
	if (e->top == NULL)
		goto fail;
	e->srv = SPF_server_new_dns(e->top, 0);
	if (e->srv == NULL)
		goto fail;
	spf_dns_size_layer_server(e->top, e->srv);
	for (size_t i = 0; records != NULL && i < records->n; i++)
		if (spf_engine_add_record(e, records->v[i]) < 0) {
			char rv[600];
			log_event(LOG_LVL_WARNING, NULL, "event=spf_error record=%s reason=unparsable",
			    log_val(rv, sizeof(rv), records->v[i]));
		}
	return e;
fail:
	if (e->top != NULL)
		SPF_dns_free(e->top);
	else if (e->zone != NULL)
		SPF_dns_free(e->zone);
	else if (below != NULL)
		SPF_dns_free(below);
	free(e);
	return NULL;
}

void spf_engine_free(struct spf_engine *e)
{
	if (e == NULL || --e->refs > 0)
		return;
	SPF_server_free(e->srv);	/* a server made by SPF_server_new_dns leaves the layers */
	if (e->top != NULL)
		SPF_dns_free(e->top);	/* frees the layers below it too */
	free(e);
}

int spf_engine_add_record(struct spf_engine *e, const char *rec)
{
	char name[256], type[16];
	const char *p = rec, *data;
	size_t n;
	ns_type t;

	if (e == NULL || rec == NULL)
		return -1;
	while (isspace((unsigned char)*p))
		p++;
	n = strcspn(p, " \t");
	if (n == 0 || n >= sizeof(name))
		return -1;
	memcpy(name, p, n);
	name[n] = '\0';
	p += n;
	while (isspace((unsigned char)*p))
		p++;
	n = strcspn(p, " \t");
	if (n == 0 || n >= sizeof(type))
		return -1;
	memcpy(type, p, n);
	type[n] = '\0';
	data = p + n;
	while (isspace((unsigned char)*data))
		data++;
	if (strcasecmp(type, "TXT") == 0)
		t = ns_t_txt;
	else if (strcasecmp(type, "A") == 0)
		t = ns_t_a;
	else if (strcasecmp(type, "AAAA") == 0)
		t = ns_t_aaaa;
	else if (strcasecmp(type, "MX") == 0)
		t = ns_t_mx;
	else if (strcasecmp(type, "PTR") == 0)
		t = ns_t_ptr;
	else
		return -1;
	if (*data == '\0')
		return -1;
	if (t == ns_t_a) {
		struct in_addr a;

		if (inet_pton(AF_INET, data, &a) != 1)
			return -1;
	} else if (t == ns_t_aaaa) {
		struct in6_addr a;

		if (inet_pton(AF_INET6, data, &a) != 1)
			return -1;
	}
	return SPF_dns_zone_add_str(e->zone, name, t, NETDB_SUCCESS, data) == SPF_E_SUCCESS ? 0 : -1;
}

const char *spf_check_domain(const struct spf_check *c)
{
	const char *at = strrchr(c->sender, '@');

	if (c->sender[0] == '\0')
		return c->helo;
	return at ? at + 1 : c->sender;
}

/* libspf2 leaves the result "invalid" when it gives up without a verdict. That is mostly a
 * record it could not compile (an unknown mechanism, a bad ip4 literal or CIDR length, an
 * unknown macro letter): a syntax error, permerror per RFC 7208 4.6. Only its own troubles
 * (memory, an internal error, DNS) stay temperror. */
static enum spf_result spf_invalid_result(SPF_response_t *resp)
{
	int n = SPF_response_messages(resp);

	for (int i = 0; i < n; i++) {
		SPF_error_t *err = SPF_response_message(resp, i);

		if (!SPF_error_errorp(err))
			continue;
		switch (SPF_error_code(err)) {
		case SPF_E_NO_MEMORY:
		case SPF_E_INTERNAL_ERROR:
		case SPF_E_NOT_CONFIG:
		case SPF_E_DNS_ERROR:
			return SPF_R_TEMPERROR;
		default:
			break;
		}
	}
	return SPF_response_errors(resp) > 0 ? SPF_R_PERMERROR : SPF_R_TEMPERROR;
}

/* The domain checked for sender (its domain, or helo for the null sender). */
static const char *spf_check_identity(const char *sender, const char *helo)
{
	const char *at = strrchr(sender, '@');

	return sender[0] == '\0' ? helo : at ? at + 1 : sender;
}

/* RFC 7208 4.3: a HELO name that is an address literal or a single label is no domain to
 * check ("none", without a lookup). */
static bool spf_helo_is_domain(const char *helo)
{
	return helo[0] != '\0' && helo[0] != '[' && strchr(helo, '.') != NULL &&
	    strspn(helo, ".") != strlen(helo);
}

/* One identity: sender, or the HELO name when sender is "". Blocks on DNS. */
static enum spf_result spf_engine_query(struct spf_engine *e, const struct netaddr *na,
    const char *helo, const char *sender, char *expl, size_t explsz)
{
	SPF_request_t *req;
	SPF_response_t *resp = NULL;
	enum spf_result r = SPF_R_TEMPERROR;
	const char *exp;
	struct in_addr a4;
	struct in6_addr a6;

	if (expl != NULL)
		expl[0] = '\0';
	/* "" makes libspf2 check postmaster@<helo> (RFC 7208 2.4) */
	if (sender[0] == '\0' && !spf_helo_is_domain(helo))
		return SPF_R_NONE;
	req = SPF_request_new(e->srv);
	if (req == NULL)
		return SPF_R_TEMPERROR;
	/* a v4-mapped client is checked as IPv4 (ip4 mechanisms, A records) */
	if (na->family == AF_INET) {
		memcpy(&a4, na->b, 4);
		SPF_request_set_ipv4(req, a4);
	} else {
		memcpy(&a6, na->b, 16);
		SPF_request_set_ipv6(req, a6);
	}
	if (helo[0] != '\0')
		SPF_request_set_helo_dom(req, helo);
	if (SPF_request_set_env_from(req, sender) != 0) {
		r = SPF_R_NONE;	/* no usable identity */
		goto done;
	}
	spf_dns_void_reset();
	SPF_request_query_mailfrom(req, &resp);
	if (resp == NULL)
		goto done;
	switch (SPF_response_result(resp)) {
	case SPF_RESULT_PASS: r = SPF_R_PASS; break;
	case SPF_RESULT_FAIL: r = SPF_R_FAIL; break;
	case SPF_RESULT_SOFTFAIL: r = SPF_R_SOFTFAIL; break;
	case SPF_RESULT_NEUTRAL: r = SPF_R_NEUTRAL; break;
	case SPF_RESULT_NONE: r = SPF_R_NONE; break;
	case SPF_RESULT_PERMERROR: r = SPF_R_PERMERROR; break;
	case SPF_RESULT_INVALID: r = spf_invalid_result(resp); break;
	case SPF_RESULT_TEMPERROR:
	default: r = SPF_R_TEMPERROR; break;
	}
	/* RFC 7208 4.6.4: more than two lookups that found nothing is permerror (libspf2 does
	 * not count them). A match before the third stops the evaluation, so it never gets here. */
	if (spf_dns_void_count() > 2 && r != SPF_R_TEMPERROR)
		r = SPF_R_PERMERROR;
	/* A record libspf2 cut short (more mechanisms than fit its 511 octets) was evaluated
	 * without its tail: falling off the end gave neutral (or the redirect=) where the whole
	 * record may say pass or -all. A pass from a mechanism before the cut is the whole
	 * record's too (first match wins); any other result is permerror, the processing limit
	 * of RFC 7208 4.6.4, never a verdict the record does not give. */
	{
		char big[256];
		bool redirect = false;

		if (spf_dns_size_cut(big, sizeof(big), &redirect)) {
			bool keep = r == SPF_R_PASS && !redirect;
			char dv[300], bv[300];	/* a name the record named (DNS data): escaped */

			log_event(LOG_LVL_WARNING, NULL,
			    "event=spf_record_too_large domain=%s record_of=%s result=%s action=%s",
			    log_val(dv, sizeof(dv), spf_check_identity(sender, helo)), log_val(bv, sizeof(bv), big),
			    spf_result_name(r), keep ? "kept" : "permerror");
			if (!keep && r != SPF_R_TEMPERROR)
				r = SPF_R_PERMERROR;
		}
	}
	exp = r == SPF_R_FAIL && expl != NULL ? SPF_response_get_explanation(resp) : NULL;
	/* libspf2's built-in default points at the defunct openspf.org: only a domain's own
	 * exp= text (RFC 7208 6.2) is worth passing on */
	if (exp != NULL && strstr(exp, "openspf.org") == NULL)
		snprintf(expl, explsz, "%s", exp);
done:
	SPF_response_free(resp);
	SPF_request_free(req);
	return r;
}

void spf_engine_check(struct spf_engine *e, struct spf_check *c)
{
	struct netaddr na;

	c->result = SPF_R_TEMPERROR;
	if (c->check_helo)
		c->helo_result = SPF_R_TEMPERROR;
	c->explanation[0] = '\0';
	if (netaddr_from_string(c->ip, &na) < 0)
		return;
	if (c->check_helo && c->sender[0] != '\0')
		c->helo_result = spf_engine_query(e, &na, c->helo, "", NULL, 0);
	c->result = spf_engine_query(e, &na, c->helo, c->sender, c->explanation,
	    sizeof(c->explanation));
	if (c->sender[0] == '\0')
		c->helo_result = c->result;
}

/* ---- the hook module ---------------------------------------------------------------- */

struct spf_worker {
	const struct mx_config *cfg;
	const struct spf_config *sc;
	struct spf_engine *engine;
	uv_loop_t *loop;
	struct spf_worker_stats stats;
};

struct spf_session;

struct spf_work {
	uv_work_t req;
	struct spf_engine *engine;   /* a reference */
	struct spf_session *owner;   /* NULL once abandoned (timeout, session gone) */
	uint64_t timeout_ms;         /* spf.timeout: the thread stops asking after it */
	struct spf_check chk;
};

struct spf_session {
	struct spf_worker *w;
	struct hook_env *env;
	struct hook_call *call;      /* in flight, or NULL */
	struct spf_work *work;       /* in flight, or NULL */
	struct spf_check in;         /* the inputs of the check in flight (the work's copy is the thread's) */
	uv_timer_t timer;
	bool timer_ready;
	/* the HELO identity's result, kept for the session while the HELO name is the same */
	bool helo_known;
	enum spf_result helo_result;
	char helo_name[256];
};

static int spf_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	struct spf_worker *w;

	*wstate = NULL;
	if (!cfg->spf.enabled)
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cfg = cfg;
	w->sc = &cfg->spf;
	w->loop = loop;
	w->engine = spf_engine_new(&cfg->spf.records, false, &cfg->dns);
	if (w->engine == NULL) {
		log_event(LOG_LVL_ERROR, NULL, "event=spf_error reason=\"libspf2 init failed\"");
		free(w);
		return -1;
	}
	/* %{r} in explanations (RFC 7208 7.3) is us */
	if (cfg->hostname != NULL)
		SPF_server_set_rec_dom(w->engine->srv, cfg->hostname);
	*wstate = w;
	return 0;
}

static void spf_worker_free(void *wstate)
{
	struct spf_worker *w = wstate;

	if (w == NULL)
		return;
	spf_engine_free(w->engine);	/* checks still in the pool hold their own reference */
	free(w);
}

void spf_worker_get_stats(void *wstate, struct spf_worker_stats *st)
{
	struct spf_worker *w = wstate;

	memset(st, 0, sizeof(*st));
	if (w != NULL)
		*st = w->stats;
}

static unsigned spf_stages(void *wstate)
{
	return wstate ? 1u << HOOK_MAIL : 0;
}

static uint64_t spf_timeout_ms(void *wstate)
{
	struct spf_worker *w = wstate;

	return w ? w->sc->timeout + 1000 : 0;	/* our timer fires first */
}

static enum verdict_action spf_on_error(void *wstate)
{
	return VERDICT_CONTINUE;
}

static double spf_score(const struct spf_scores_config *s, enum spf_result r)
{
	switch (r) {
	case SPF_R_PASS: return s->pass;
	case SPF_R_FAIL: return s->fail;
	case SPF_R_SOFTFAIL: return s->softfail;
	case SPF_R_NEUTRAL: return s->neutral;
	case SPF_R_NONE: return s->none;
	case SPF_R_TEMPERROR: return s->temperror;
	case SPF_R_PERMERROR: return s->permerror;
	}
	return 0;
}

static void spf_symbol_name(char *sym, size_t n, const char *prefix, enum spf_result r)
{
	size_t i = strlen(prefix);

	snprintf(sym, n, "%s%s", prefix, spf_result_name(r));
	for (; sym[i]; i++)
		sym[i] = (char)toupper((unsigned char)sym[i]);
}

/* Result -> symbol (for scoring and for senderauth's Authentication-Results), verdict;
 * completes the session's call. */
static void spf_session_complete(struct spf_session *s, const struct spf_check *c)
{
	struct hook_env *env = s->env;
	struct hook_call *call = s->call;
	const struct spf_config *sc = s->w->sc;
	const char *res = spf_result_name(c->result);
	const char *dom = spf_check_domain(c);
	bool helo_fail = false;
	char sym[32];
	struct verdict v;

	s->call = NULL;
	memset(&v, 0, sizeof(v));
	/* the HELO identity beside a sender (helo_always): its own symbol, kept for the session
	 * unless the check did not finish */
	if ((c->check_helo || c->helo_given) && c->sender[0] != '\0') {
		if (c->check_helo && c->helo_result != SPF_R_TEMPERROR) {
			s->helo_known = true;
			s->helo_result = c->helo_result;
			snprintf(s->helo_name, sizeof(s->helo_name), "%s", c->helo);
		}
		spf_symbol_name(sym, sizeof(sym), "SPF_HELO_", c->helo_result);
		hook_env_add_symbol(env, sym, spf_score(&sc->helo_scores, c->helo_result), c->helo);
		if (c->check_helo) {
			char hv[160];   /* the client's HELO text: escaped, as every module logs it */

			log_event(LOG_LVL_INFO, env->session_id,
			    "event=spf_helo result=%s helo=%s client=%s",
			    spf_result_name(c->helo_result), log_val(hv, sizeof(hv), c->helo), c->ip);
		}
		helo_fail = c->helo_result == SPF_R_FAIL;
	} else if (c->sender[0] == '\0') {
		helo_fail = c->result == SPF_R_FAIL;
	}
	spf_symbol_name(sym, sizeof(sym), "SPF_", c->result);
	hook_env_add_symbol(env, sym, spf_score(&sc->scores, c->result), dom);
	/* The symbol hands the result over (description = the domain checked; the identity is
	 * the HELO when MAIL FROM is <>): filters/senderauth.c writes the one
	 * Authentication-Results field with every method at end of data. */
	log_event(LOG_LVL_INFO, env->session_id, "event=spf result=%s domain=%s client=%s",
	    res, dom, c->ip);
	if (c->result == SPF_R_FAIL || c->result == SPF_R_SOFTFAIL)
		counter_inc(COUNTER_SPF_FAIL);	/* mxgate_spf_fail_total */
	if (helo_fail && sc->reject_helo_fail) {
		/* policyd-spf's HELO_reject: the HELO name's own policy refuses this client */
		verdict_set(&v, VERDICT_REJECT, 550, "spf",
		    "5.7.23 SPF validation failed: HELO %.200s does not permit [%s]", c->helo, c->ip);
	} else if (c->result == SPF_R_FAIL && sc->reject_fail) {
		/* RFC 7372 3.2: 5.7.23 SPF validation failed */
		verdict_set(&v, VERDICT_REJECT, 550, "spf",
		    "5.7.23 SPF validation failed: %.200s does not permit [%s]%s%.150s", dom, c->ip,
		    c->explanation[0] ? ": " : "", c->explanation);
	} else if (c->result == SPF_R_TEMPERROR && sc->tempfail_temperror) {
		verdict_set(&v, VERDICT_TEMPFAIL, 451, "spf",
		    "4.7.24 SPF temporary error for %.200s, try again later", dom);
	}
	if (call != NULL)
		hook_call_done(call, &v);
}

static void spf_work_cb(uv_work_t *req)
{
	struct spf_work *wk = req->data;

	spf_dns_check_deadline(wk->timeout_ms);
	spf_engine_check(wk->engine, &wk->chk);
	spf_dns_check_deadline(0);
}

static void spf_after_work_cb(uv_work_t *req, int status)
{
	struct spf_work *wk = req->data;
	struct spf_session *s = wk->owner;

	if (s != NULL) {
		s->work = NULL;
		uv_timer_stop(&s->timer);
		if (status == UV_ECANCELED)
			wk->chk.result = wk->chk.helo_result = SPF_R_TEMPERROR;
		spf_session_complete(s, &wk->chk);
	}
	spf_engine_free(wk->engine);
	free(wk);
}

static void spf_timeout_cb(uv_timer_t *t)
{
	struct spf_session *s = t->data;
	struct spf_check c;

	if (s->work == NULL)
		return;
	c = s->in;
	c.result = SPF_R_TEMPERROR;
	if (c.check_helo)
		c.helo_result = SPF_R_TEMPERROR;
	c.explanation[0] = '\0';
	s->work->owner = NULL;	/* the late result is freed, never applied */
	uv_cancel((uv_req_t *)&s->work->req);
	s->work = NULL;
	log_event(LOG_LVL_INFO, s->env->session_id, "event=spf_timeout domain=%s",
	    spf_check_domain(&c));
	spf_session_complete(s, &c);
}

static void spf_run(void *wstate, int slot, struct hook_call *call)
{
	struct spf_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	struct spf_session *s = env->module_ctx[slot];
	struct spf_work *wk;

	/* an authenticated client (SMTP AUTH) sends from wherever its user is: SPF judges
	 * other servers' mail, as Postfix's permit_sasl_authenticated comes before it */
	if (hook_call_stage(call) != HOOK_MAIL || env->mail_from == NULL || env->auth_user != NULL)
		goto pass;
	if (env->mail_from[0] == '\0' && (!w->sc->helo || env->helo[0] == '\0'))
		goto pass;
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			goto pass;
		s->w = w;
		s->env = env;
		if (uv_timer_init(env->loop, &s->timer) != 0) {
			free(s);
			goto pass;
		}
		s->timer.data = s;
		s->timer_ready = true;
		env->module_ctx[slot] = s;
	}
	if (s->work != NULL) {	/* an earlier check still running: abandon it */
		s->work->owner = NULL;
		s->work = NULL;
	}
	if (s->call != NULL) {
		/* the chain gave up on the earlier call (its timeout) and moved on: that call is
		 * an orphan, completing it is a no-op, and this MAIL gets its own check */
		struct hook_call *old = s->call;

		s->call = NULL;
		uv_timer_stop(&s->timer);
		hook_call_done(old, NULL);
	}
	wk = calloc(1, sizeof(*wk));
	if (wk == NULL)
		goto pass;
	wk->req.data = wk;
	wk->engine = w->engine;
	w->engine->refs++;
	wk->owner = s;
	wk->timeout_ms = w->sc->timeout ? w->sc->timeout : 5000;
	netaddr_sockaddr_string((const struct sockaddr *)&env->client, wk->chk.ip, sizeof(wk->chk.ip));
	snprintf(wk->chk.helo, sizeof(wk->chk.helo), "%s", env->helo);
	snprintf(wk->chk.sender, sizeof(wk->chk.sender), "%s", env->mail_from);
	if (w->sc->helo_always && env->mail_from[0] != '\0') {
		if (s->helo_known && strcmp(s->helo_name, env->helo) == 0) {
			/* known for this session: the symbol without a second check */
			wk->chk.helo_result = s->helo_result;
			wk->chk.helo_given = true;
		} else {
			wk->chk.check_helo = true;
			w->stats.helo_checks++;
		}
	}
	s->in = wk->chk;
	if (uv_queue_work(env->loop, &wk->req, spf_work_cb, spf_after_work_cb) != 0) {
		spf_engine_free(wk->engine);
		free(wk);
		goto pass;
	}
	s->call = call;
	s->work = wk;
	uv_timer_start(&s->timer, spf_timeout_cb, w->sc->timeout ? w->sc->timeout : 5000, 0);
	return;
pass:
	hook_call_done(call, NULL);
}

static void spf_session_close_cb(uv_handle_t *h)
{
	free(h->data);
}

static void spf_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct spf_session *s = env->module_ctx[slot];

	if (s == NULL)
		return;
	env->module_ctx[slot] = NULL;
	if (s->work != NULL) {
		s->work->owner = NULL;
		uv_cancel((uv_req_t *)&s->work->req);
	}
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, spf_session_close_cb);
}

const struct hook_module spf_module = {
	.name = "spf",
	.worker_init = spf_worker_init,
	.worker_free = spf_worker_free,
	.stages = spf_stages,
	.run = spf_run,
	.session_free = spf_session_free,
	.timeout_ms = spf_timeout_ms,
	.on_error = spf_on_error,
};
