/* helo.c — HELO syntax, claims-to-be-us, address-literal mismatch, FCrDNS.
 *
 * FCrDNS (HOOK_CONNECT) judges the answer of filters/rdns.c (one lookup per session for
 * every consumer): no confirmed name scores NO_FCRDNS; temporary DNS failures are logged
 * and never scored. */
#include "filters/helo.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/netaddr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- config ------------------------------------------------------------------------- */

static const char *const helo_action_names[] = { "score", "reject", "tempfail", NULL };
static const char *const helo_on_error_names[] = { "accept", "tempfail", NULL };

/* The keys every test has. */
#define HELO_TEST_FIELDS(on, score_default, what)                                              \
		{ "enabled", CFG_BOOL, offsetof(struct helo_test_config, enabled), on,         \
		  .doc = "run this test" },                                                    \
		{ "action", CFG_ENUM, offsetof(struct helo_test_config, action), "score",     \
		  .choices = helo_action_names, .doc = "score | reject | tempfail" },         \
		{ "score", CFG_DOUBLE, offsetof(struct helo_test_config, score), score_default,\
		  -1000, 1000, .doc = "score of the symbol " what }

/* One table per test so that each can carry its own default score. */
#define HELO_TEST_TABLE(id, on, score_default, what)                                          \
	static const struct cfg_field helo_##id##_fields[] = {                                 \
		HELO_TEST_FIELDS(on, score_default, what),                                     \
		{ .key = NULL }                                                                \
	};                                                                                     \
	static const struct cfg_table helo_##id##_table = {                                   \
		.name = "helo_checks." #id, .size = sizeof(struct helo_test_config),          \
		.fields = helo_##id##_fields,                                                  \
	}

HELO_TEST_TABLE(syntax, "true", "2", "HELO_BAD_SYNTAX");
HELO_TEST_TABLE(not_fqdn, "true", "0.5", "HELO_NOT_FQDN");
HELO_TEST_TABLE(claims_us, "true", "3", "HELO_CLAIMS_US");
HELO_TEST_TABLE(literal_mismatch, "true", "1", "HELO_LITERAL_MISMATCH");

/* FCrDNS: also what a lookup that failed does (Postfix's reject_unknown_client_hostname
 * defers such a client: 450, whatever unknown_client_reject_code says). */
static const struct cfg_field helo_fcrdns_fields[] = {
	HELO_TEST_FIELDS("true", "1", "NO_FCRDNS"),
	{ "on_error", CFG_ENUM, offsetof(struct helo_test_config, on_error), "accept",
	  .choices = helo_on_error_names,
	  .doc = "the client's name could not be looked up (SERVFAIL or a timeout of the PTR or its A/AAAA query, "
		 "not NXDOMAIN): accept (logged event=fcrdns_tempfail, not scored: the resolver's own trouble holds "
		 "no mail back) or tempfail (450 4.7.25, at connect a 421 greeting, whatever action says: Postfix's "
		 "reject_unknown_client_hostname, which defers such a client until its lookup works)" },
	{ .key = NULL }
};
static const struct cfg_table helo_fcrdns_table = {
	.name = "helo_checks.fcrdns", .size = sizeof(struct helo_test_config), .fields = helo_fcrdns_fields,
};

static const struct cfg_field helo_config_fields[] = {
	{ "enabled", CFG_BOOL, offsetof(struct helo_config, enabled), "false",
	  .doc = "run the HELO checks and FCrDNS" },
	{ "syntax", CFG_STRUCT, offsetof(struct helo_config, syntax), NULL, .sub = &helo_syntax_table,
	  .doc = "HELO argument not a valid domain or address literal (RFC 5321 4.1.2)" },
	{ "not_fqdn", CFG_STRUCT, offsetof(struct helo_config, not_fqdn), NULL, .sub = &helo_not_fqdn_table,
	  .doc = "HELO name without a dot" },
	{ "claims_us", CFG_STRUCT, offsetof(struct helo_config, claims_us), NULL, .sub = &helo_claims_us_table,
	  .doc = "HELO is our hostname or our address literal" },
	{ "literal_mismatch", CFG_STRUCT, offsetof(struct helo_config, literal_mismatch), NULL,
	  .sub = &helo_literal_mismatch_table, .doc = "HELO address literal is not the client's address" },
	{ "fcrdns", CFG_STRUCT, offsetof(struct helo_config, fcrdns), NULL, .sub = &helo_fcrdns_table,
	  .doc = "client without forward-confirmed reverse DNS" },
	{ "timeout", CFG_DURATION, offsetof(struct helo_config, timeout), "0", 0, 60000,
	  .doc = "time limit per client-name query when rdns.timeout is 0 (0: dns.timeout)" },
	{ .key = NULL }
};

const struct cfg_table helo_config_table = {
	.name = "helo_checks", .size = sizeof(struct helo_config), .fields = helo_config_fields,
};

/* ---- syntax ------------------------------------------------------------------------- */

enum helo_syntax helo_syntax_classify(const char *helo, char *addr, size_t addrlen)
{
	size_t n, label = 0, labels = 1;
	bool digits_only = true;
	char buf[64];
	unsigned char tmp[16];

	if (helo == NULL || (n = strlen(helo)) == 0 || n > 255)
		return HELO_SYNTAX_BAD;
	if (helo[0] == '[') {
		/* RFC 5321 4.1.3: "[" IPv4 "]" or "[IPv6:" IPv6 "]" */
		const char *in = helo + 1;
		int fam = AF_INET;
		size_t len;

		if (helo[n - 1] != ']')
			return HELO_SYNTAX_BAD;
		if (strncasecmp(in, "IPv6:", 5) == 0) {
			in += 5;
			fam = AF_INET6;
		}
		len = (size_t)(helo + n - 1 - in);
		if (len == 0 || len >= sizeof(buf))
			return HELO_SYNTAX_BAD;
		memcpy(buf, in, len);
		buf[len] = '\0';
		if (inet_pton(fam, buf, tmp) != 1)
			return HELO_SYNTAX_BAD;
		if (addr != NULL && addrlen > 0)
			snprintf(addr, addrlen, "%s", buf);
		return fam == AF_INET ? HELO_SYNTAX_LITERAL4 : HELO_SYNTAX_LITERAL6;
	}
	if (helo[n - 1] == '.')	/* a trailing root dot is tolerated */
		n--;
	if (n == 0)
		return HELO_SYNTAX_BAD;
	for (size_t i = 0; i <= n; i++) {
		char c = i < n ? helo[i] : '.';

		if (c == '.') {
			/* sub-domain = Let-dig [Ldh-str]: no empty label, no '-' at either end */
			if (label == 0 || label > 63 || helo[i - 1] == '-')
				return HELO_SYNTAX_BAD;
			if (i < n) {
				labels++;
				digits_only = true;
			}
			label = 0;
			continue;
		}
		if (label == 0 && c == '-')
			return HELO_SYNTAX_BAD;
		/* '_' is not in RFC 5321's grammar but common in real host names: tolerated */
		if (!isalnum((unsigned char)c) && c != '-' && c != '_')
			return HELO_SYNTAX_BAD;
		if (!isdigit((unsigned char)c))
			digits_only = false;
		label++;
	}
	if (digits_only)	/* "192.0.2.1" without brackets, or an all-numeric TLD */
		return HELO_SYNTAX_BAD;
	return labels > 1 ? HELO_SYNTAX_FQDN : HELO_SYNTAX_NAME;
}

/* ---- per worker --------------------------------------------------------------------- */

struct helo_worker {
	const struct mx_config *cfg;
	const struct helo_config *hc;
};

static int helo_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	struct helo_worker *w;

	*wstate = NULL;
	if (!cfg->helo_checks.enabled)
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cfg = cfg;
	w->hc = &cfg->helo_checks;
	*wstate = w;
	return 0;
}

static void helo_worker_free(void *wstate)
{
	free(wstate);
}

static unsigned helo_stages(void *wstate)
{
	struct helo_worker *w = wstate;

	if (w == NULL)
		return 0;
	return (w->hc->fcrdns.enabled ? 1u << HOOK_CONNECT : 0) | 1u << HOOK_HELO;
}

static enum verdict_action helo_on_error(void *wstate)
{
	return VERDICT_CONTINUE;
}

/* ---- per session -------------------------------------------------------------------- */

/* Applies one fired test: symbol, and a verdict when its action is not `score`. A refused
 * name that is no domain or address literal at all is a syntax error of the command (RFC
 * 5321 4.1.1.1: 501; RFC 3463 X.5.2, as Postfix's reject_invalid_helo_hostname answers);
 * a refused dotless name gets Postfix's reject_non_fqdn_helo_hostname reply, 504 5.5.2
 * (non_fqdn_reject_code, as reject_non_fqdn_sender/recipient answer; until session 22
 * 550 5.7.1); the other tests refuse a well-formed name by policy (X.7.1), the FCrDNS test
 * a client (X.7.25). A tempfail is 450 with X.7.1 (X.7.25 for FCrDNS) whatever the test. */
static void helo_fire(struct hook_env *env, const struct helo_test_config *t, const char *sym,
    const char *why, struct verdict *v)
{
	bool syntax = strcmp(sym, "HELO_BAD_SYNTAX") == 0;
	bool not_fqdn = strcmp(sym, "HELO_NOT_FQDN") == 0;
	/* RFC 7372 3.3: X.7.25, reverse DNS validation failed (Postfix's
	 * reject_unknown_client_hostname answers with it) */
	const char *enh = strcmp(sym, "NO_FCRDNS") == 0 ? "7.25" : "7.1";

	/* a repeated EHLO (after STARTTLS) must not score the same test twice */
	if (hook_env_find_symbol(env, sym) == NULL)
		hook_env_add_symbol(env, sym, t->score, why);
	char hv[160];
	/* the FCrDNS test says what the lookup found (rdns.c), not only that it failed */
	const char *rdns = strcmp(sym, "NO_FCRDNS") == 0 && env->client_name_why ? env->client_name_why : NULL;
	log_event(LOG_LVL_INFO, env->session_id, "event=helo_check test=%s client=%s helo=%s%s%s",
	    sym, env->client_ip, log_val(hv, sizeof(hv), env->helo), rdns ? " rdns=" : "", rdns ? rdns : "");
	if (v->action != VERDICT_CONTINUE)
		return;	/* the first refusing test names the reply */
	if (t->action == HELO_ACTION_REJECT)
		verdict_set(v, VERDICT_REJECT, syntax ? 501 : not_fqdn ? 504 : 550, "helo", "5.%s %s",
		    syntax || not_fqdn ? "5.2" : enh, why);
	else if (t->action == HELO_ACTION_TEMPFAIL)
		verdict_set(v, VERDICT_TEMPFAIL, 450, "helo", "4.%s %s", enh, why);
	if (rdns && v->action != VERDICT_CONTINUE)
		snprintf(v->log_extra, sizeof(v->log_extra), "rdns=%s", rdns);   /* on the refusal line */
}

/* HOOK_CONNECT: the FCrDNS test, on the rdns module's answer (it runs earlier in the chain
 * and holds the connect stage until it has one). Temporary DNS failures never score; with
 * on_error: tempfail they defer the client (RFC 7372 3.3's X.7.25, as a refusal of the test
 * carries). */
static void helo_check_fcrdns(struct helo_worker *w, struct hook_env *env, struct verdict *v)
{
	bool defer = w->hc->fcrdns.on_error == HELO_ON_ERROR_TEMPFAIL;

	switch (env->client_name_status) {
	case HOOK_NAME_PERM:
		helo_fire(env, &w->hc->fcrdns, "NO_FCRDNS",
		    "Client host rejected: cannot find your hostname", v);
		break;
	case HOOK_NAME_TEMP:
		log_event(LOG_LVL_INFO, env->session_id, "event=fcrdns_tempfail client=%s action=%s rdns=%s",
		    env->client_ip, defer ? "tempfail" : "accept",
		    env->client_name_why ? env->client_name_why : "unknown");
		if (defer) {
			verdict_set(v, VERDICT_TEMPFAIL, 450, "helo",
			    "4.7.25 Client host rejected: cannot find your hostname, try again later");
			if (env->client_name_why)
				snprintf(v->log_extra, sizeof(v->log_extra), "rdns=%s", env->client_name_why);
		}
		break;
	default:
		break;	/* confirmed, or not looked up (rdns.lookup: never) */
	}
}

/* The client's address as text, v4-mapped IPv6 shown as IPv4; returns the family
 * (AF_UNSPEC with out "" for another one). */
static int helo_client_addr(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	int fam = netaddr_sockaddr_string((const struct sockaddr *)ss, out, outlen);

	return fam < 0 ? AF_UNSPEC : fam;
}

/* Same address? Both textual, either family (a v4-mapped one equals its IPv4 address). */
static bool helo_same_addr(const char *a, const char *b)
{
	struct netaddr x, y;

	return netaddr_from_string(a, &x) == 0 && netaddr_from_string(b, &y) == 0 &&
	    netaddr_equal(&x, &y);
}

static void helo_check_helo(struct helo_worker *w, struct hook_env *env, struct verdict *v)
{
	const struct helo_config *hc = w->hc;
	char lit[64] = "", client[INET6_ADDRSTRLEN], local[INET6_ADDRSTRLEN];
	enum helo_syntax syn = helo_syntax_classify(env->helo, lit, sizeof(lit));
	int fam = helo_client_addr(&env->client, client, sizeof(client));
	bool loopback = (fam == AF_INET && strncmp(client, "127.", 4) == 0) ||
	    (fam == AF_INET6 && strcmp(client, "::1") == 0);

	helo_client_addr(&env->local, local, sizeof(local));
	switch (syn) {
	case HELO_SYNTAX_BAD:
		if (hc->syntax.enabled)
			helo_fire(env, &hc->syntax, "HELO_BAD_SYNTAX",
			    "Helo command rejected: invalid hostname", v);
		return;
	case HELO_SYNTAX_NAME:
		if (hc->not_fqdn.enabled)
			helo_fire(env, &hc->not_fqdn, "HELO_NOT_FQDN",
			    "Helo command rejected: need fully-qualified hostname", v);
		break;
	case HELO_SYNTAX_FQDN:
		break;
	case HELO_SYNTAX_LITERAL4:
	case HELO_SYNTAX_LITERAL6:
		if (hc->claims_us.enabled && !loopback && local[0] && helo_same_addr(lit, local)) {
			helo_fire(env, &hc->claims_us, "HELO_CLAIMS_US",
			    "Helo command rejected: you are not me", v);
			return;
		}
		if (hc->literal_mismatch.enabled && !helo_same_addr(lit, client))
			helo_fire(env, &hc->literal_mismatch, "HELO_LITERAL_MISMATCH",
			    "Helo command rejected: address literal is not your address", v);
		return;
	}
	if (hc->claims_us.enabled && !loopback && w->cfg->hostname != NULL) {
		size_t n = strlen(env->helo);

		if (n > 0 && env->helo[n - 1] == '.')
			n--;
		if (strlen(w->cfg->hostname) == n && strncasecmp(env->helo, w->cfg->hostname, n) == 0)
			helo_fire(env, &hc->claims_us, "HELO_CLAIMS_US",
			    "Helo command rejected: you are not me", v);
	}
}

static void helo_run(void *wstate, int slot, struct hook_call *call)
{
	struct helo_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	struct verdict v;

	memset(&v, 0, sizeof(v));
	if (hook_call_stage(call) == HOOK_HELO)
		helo_check_helo(w, env, &v);
	else if (hook_call_stage(call) == HOOK_CONNECT)
		helo_check_fcrdns(w, env, &v);
	hook_call_done(call, &v);
}

const struct hook_module helo_module = {
	.name = "helo_checks",
	.worker_init = helo_worker_init,
	.worker_free = helo_worker_free,
	.stages = helo_stages,
	.run = helo_run,
	.on_error = helo_on_error,
};
