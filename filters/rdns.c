/* rdns.c — the client's PTR name and its forward confirmation, once per session (see
 * rdns.h). Every query goes through filters/dns.c: c-ares on the worker's loop, answers
 * cached process-wide, so a busy client costs one lookup per TTL. */
#include "filters/rdns.h"
#include "filters/dns.h"
#include "filters/greylist.h"
#include "filters/reputation.h"
#include "proxy/config.h"
#include "proxy/domain.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- config ------------------------------------------------------------------------- */

static const char *const rdns_lookup_names[] = { "auto", "always", "never", NULL };

static const struct cfg_field rdns_config_fields[] = {
	{ "lookup", CFG_ENUM, offsetof(struct rdns_config, lookup), "auto",
	  .choices = rdns_lookup_names,
	  .doc = "look up the client's PTR name and confirm it forward: auto (when XCLIENT, a plugin, helo_checks.fcrdns, or a name rule of greylist.allow_names or reputation.forwarders uses it), always, never" },
	{ "timeout", CFG_DURATION, offsetof(struct rdns_config, timeout), "0", 0, 60000,
	  .doc = "time limit per query (0: helo_checks.timeout, else dns.timeout)" },
	{ .key = NULL }
};

const struct cfg_table rdns_config_table = {
	.name = "rdns", .size = sizeof(struct rdns_config), .fields = rdns_config_fields,
};

/* See rdns.h. */
bool rdns_waits_at_connect(const struct mx_config *cfg)
{
	return (cfg->helo_checks.enabled && cfg->helo_checks.fcrdns.enabled) || cfg->plugins.n > 0;
}

/* See rdns.h. */
bool rdns_wanted(const struct mx_config *cfg)
{
	switch (cfg->rdns.lookup) {
	case RDNS_LOOKUP_ALWAYS: return true;
	case RDNS_LOOKUP_NEVER: return false;
	default: break;
	}
	return cfg->backends.client_identity == IDENTITY_XCLIENT || rdns_waits_at_connect(cfg) ||
	    (cfg->greylist.enabled && greylist_wants_client_name(&cfg->greylist)) ||
	    reputation_wants_client_name(&cfg->reputation);
}

/* See rdns.h. */
uint64_t rdns_query_timeout(const struct mx_config *cfg)
{
	return cfg->rdns.timeout ? cfg->rdns.timeout : cfg->helo_checks.timeout ? cfg->helo_checks.timeout :
	    cfg->dns.timeout ? cfg->dns.timeout : 2000;
}

/* ---- per worker --------------------------------------------------------------------- */

struct rdns_worker {
	struct dns_resolver *r;
	uint64_t timeout;
	bool at_connect;            /* hold the connect stage until the answer is in */
};

static int rdns_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	struct rdns_worker *w;

	*wstate = NULL;
	if (!rdns_wanted(cfg))
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->timeout = rdns_query_timeout(cfg);
	w->at_connect = rdns_waits_at_connect(cfg);
	w->r = dns_resolver_for_loop(loop, cfg);
	if (w->r == NULL) {
		free(w);
		log_event(LOG_LVL_ERROR, NULL, "event=rdns_error reason=\"no resolver\"");
		return -1;
	}
	*wstate = w;
	return 0;
}

static void rdns_worker_free(void *wstate)
{
	struct rdns_worker *w = wstate;

	if (w == NULL)
		return;
	dns_resolver_release(w->r);
	free(w);
}

static unsigned rdns_stages(void *wstate)
{
	struct rdns_worker *w = wstate;

	if (w == NULL)
		return 0;
	return 1u << HOOK_CONNECT | (w->at_connect ? 0 : 1u << HOOK_MAIL);
}

static uint64_t rdns_timeout_ms(void *wstate)
{
	struct rdns_worker *w = wstate;

	/* the PTR, then the forward lookups in parallel; each query ends by its own timeout */
	return w ? 2 * w->timeout + 1000 : 0;
}

static enum verdict_action rdns_on_error(void *wstate)
{
	return VERDICT_CONTINUE;   /* a name is information, never a reason to refuse here */
}

/* ---- per session -------------------------------------------------------------------- */

struct rdns_session;

struct rdns_fwd {
	struct rdns_session *s;
	struct dns_query *q;
	char name[256];
	bool match, temp;
	enum dns_status st;         /* the forward query's status */
};

struct rdns_session {
	struct rdns_worker *w;
	struct hook_env *env;
	struct hook_call *call;       /* a stage waiting for the answer, or NULL */
	struct dns_query *ptr_q;
	struct rdns_fwd fwd[RDNS_MAX_NAMES];
	size_t nfwd;
	int outstanding;              /* queries in flight */
	int starting;                 /* > 0 while queries are being started */
	bool started, done;
	enum dns_status ptr_st;       /* the PTR query's status */
	void (*waiter)(void *arg);    /* rdns_wait_name's, called once when done */
	void *waiter_arg;
	char ip[INET6_ADDRSTRLEN];    /* the client, v4-mapped shown as v4 */
	int family;
};

/* A PTR answer usable as a host name: ASCII LDH labels (domain.c), not an address. */
static bool rdns_is_hostname(const char *name)
{
	bool utf8 = false;
	unsigned char tmp[16];
	size_t n = strlen(name);

	if (n == 0 || n > DOMAIN_MAX || name[0] == '[' ||
	    domain_check(name, n, &utf8) != DOMAIN_OK || utf8)
		return false;
	return inet_pton(AF_INET, name, tmp) != 1 && inet_pton(AF_INET6, name, tmp) != 1;
}

/* Why the client's name is not confirmed, as static text for the refusal lines
 * (env->client_name_why): the PTR query's failure ("ptr_nxdomain", "ptr_servfail",
 * "ptr_timeout" ...: dns_status_name's words), a PTR naming no usable host name
 * ("ptr_not_hostname"), a forward answer without the client's address ("forward_mismatch"),
 * or the forward queries' failure ("forward_timeout" ...: a temporary one first). */
static const char *rdns_why(const struct rdns_session *s)
{
	static const char *const ptr[] = {
		[DNS_S_OK] = "ptr_ok", [DNS_S_NXDOMAIN] = "ptr_nxdomain", [DNS_S_NODATA] = "ptr_nodata",
		[DNS_S_SERVFAIL] = "ptr_servfail", [DNS_S_TIMEOUT] = "ptr_timeout", [DNS_S_ERROR] = "ptr_error",
		[DNS_S_FAILED] = "ptr_failed",
	};
	static const char *const fwd[] = {
		[DNS_S_OK] = "forward_mismatch", [DNS_S_NXDOMAIN] = "forward_nxdomain",
		[DNS_S_NODATA] = "forward_nodata", [DNS_S_SERVFAIL] = "forward_servfail",
		[DNS_S_TIMEOUT] = "forward_timeout", [DNS_S_ERROR] = "forward_error", [DNS_S_FAILED] = "forward_failed",
	};
	enum dns_status f = DNS_S_NXDOMAIN;

	if (s->ptr_st != DNS_S_OK)
		return (unsigned)s->ptr_st < sizeof(ptr) / sizeof(ptr[0]) ? ptr[s->ptr_st] : "ptr_error";
	if (s->nfwd == 0)
		return "ptr_not_hostname";
	for (size_t i = 0; i < s->nfwd; i++) {
		if (s->fwd[i].temp) {
			f = s->fwd[i].st;
			break;
		}
		if (s->fwd[i].st == DNS_S_OK || (s->fwd[i].st == DNS_S_NODATA && f != DNS_S_OK))
			f = s->fwd[i].st;
	}
	return (unsigned)f < sizeof(fwd) / sizeof(fwd[0]) ? fwd[f] : "forward_error";
}

/* All answers are in: fill env, release a waiting stage. */
static void rdns_finish(struct rdns_session *s)
{
	struct hook_env *env = s->env;
	struct hook_call *call = s->call;
	bool temp = false;

	for (size_t i = 0; i < s->nfwd; i++) {
		if (s->fwd[i].match && env->client_name_status != HOOK_NAME_OK) {
			snprintf(env->client_name, sizeof(env->client_name), "%s", s->fwd[i].name);
			snprintf(env->client_ptr, sizeof(env->client_ptr), "%s", s->fwd[i].name);
			env->client_name_status = HOOK_NAME_OK;
		}
		temp |= s->fwd[i].temp;
	}
	if (env->client_name_status != HOOK_NAME_OK) {
		env->client_name[0] = '\0';
		if (env->client_name_status == HOOK_NAME_UNKNOWN)
			env->client_name_status = temp ? HOOK_NAME_TEMP : HOOK_NAME_PERM;
	}
	s->done = true;
	env->client_name_why = env->client_name_status == HOOK_NAME_OK ? NULL : rdns_why(s);
	log_event(LOG_LVL_DEBUG, env->session_id, "event=rdns client=%s ptr=%s name=%s status=%d",
	    s->ip, env->client_ptr[0] ? env->client_ptr : "-",
	    env->client_name[0] ? env->client_name : "-", env->client_name_status);
	if (s->waiter != NULL) {
		void (*cb)(void *) = s->waiter;

		s->waiter = NULL;
		cb(s->waiter_arg);
	}
	if (call != NULL) {
		s->call = NULL;
		hook_call_done(call, NULL);
	}
}

/* See rdns.h. */
int rdns_wait_name(struct hook_env *env, void (*cb)(void *arg), void *arg)
{
	struct rdns_session *s = env->rdns_lookup;

	if (env->client_name_status != HOOK_NAME_UNKNOWN || (s != NULL && s->done))
		return 1;
	if (s == NULL || !s->started || s->waiter != NULL)
		return -1;
	s->waiter = cb;
	s->waiter_arg = arg;
	return 0;
}

/* See rdns.h. */
void rdns_wait_cancel(struct hook_env *env)
{
	struct rdns_session *s = env->rdns_lookup;

	if (s != NULL)
		s->waiter = NULL;
}

static void rdns_settle(struct rdns_session *s)
{
	if (--s->outstanding == 0 && s->starting == 0)
		rdns_finish(s);
}

static void rdns_fwd_cb(void *arg, const struct dns_result *res)
{
	struct rdns_fwd *f = arg;
	struct netaddr want, got;

	f->q = NULL;
	f->st = res->status;
	if (res->status == DNS_S_OK) {
		if (netaddr_from_string(f->s->ip, &want) == 0)
			for (size_t i = 0; i < res->n; i++)
				if (netaddr_from_string(res->v[i], &got) == 0 && netaddr_equal(&want, &got))
					f->match = true;
	} else if (res->status != DNS_S_NXDOMAIN && res->status != DNS_S_NODATA) {
		f->temp = true;
	}
	rdns_settle(f->s);
}

static void rdns_ptr_cb(void *arg, const struct dns_result *res)
{
	struct rdns_session *s = arg;
	struct hook_env *env = s->env;

	s->ptr_q = NULL;
	s->ptr_st = res->status;
	if (res->status == DNS_S_OK) {
		s->starting++;
		for (size_t i = 0; i < res->n && s->nfwd < RDNS_MAX_NAMES; i++) {
			struct rdns_fwd *f = &s->fwd[s->nfwd];
			size_t len = strlen(res->v[i]);

			if (len == 0 || len >= sizeof(f->name))
				continue;
			memcpy(f->name, res->v[i], len + 1);
			if (f->name[len - 1] == '.')
				f->name[len - 1] = '\0';
			if (!rdns_is_hostname(f->name))
				continue;     /* Postfix: a malformed name is no name */
			if (env->client_ptr[0] == '\0') {
				snprintf(env->client_ptr, sizeof(env->client_ptr), "%s", f->name);
				env->client_ptr_status = HOOK_NAME_OK;
			}
			f->s = s;
			s->nfwd++;
			s->outstanding++;
			f->q = dns_query_start(s->w->r, s->family == AF_INET ? DNS_T_A : DNS_T_AAAA,
			    f->name, s->w->timeout, rdns_fwd_cb, f);
		}
		s->starting--;
		if (env->client_ptr_status != HOOK_NAME_OK)
			env->client_ptr_status = HOOK_NAME_PERM;
	} else if (res->status == DNS_S_NXDOMAIN || res->status == DNS_S_NODATA) {
		env->client_ptr_status = HOOK_NAME_PERM;
	} else {
		/* the PTR itself failed: neither name is known for now */
		env->client_ptr_status = HOOK_NAME_TEMP;
		env->client_name_status = HOOK_NAME_TEMP;
	}
	rdns_settle(s);
}

/* A loopback client (127.0.0.0/8, ::1) is "localhost" (RFC 6761 6.3), as the system
 * resolver of an MTA in front of it would say from /etc/hosts: no DNS is asked. */
static bool rdns_is_loopback(const char *ip)
{
	struct netaddr a, lo;

	if (netaddr_from_string(ip, &a) != 0)
		return false;
	if (a.family == AF_INET)
		return a.b[0] == 127;
	return netaddr_from_string("::1", &lo) == 0 && netaddr_equal(&a, &lo);
}

/* Starts the lookup for env's client (once). False when there is nothing to look up. */
static bool rdns_start(struct rdns_session *s)
{
	char name[128];

	s->started = true;
	s->family = netaddr_sockaddr_string((const struct sockaddr *)&s->env->client, s->ip, sizeof(s->ip));
	if (s->family >= 0 && rdns_is_loopback(s->ip)) {
		snprintf(s->env->client_name, sizeof(s->env->client_name), "localhost");
		snprintf(s->env->client_ptr, sizeof(s->env->client_ptr), "localhost");
		s->env->client_name_status = s->env->client_ptr_status = HOOK_NAME_OK;
		s->done = true;
		return false;
	}
	if (s->family < 0 || dns_name_reverse_str(s->ip, NULL, name, sizeof(name)) < 0) {
		s->done = true;
		return false;
	}
	s->outstanding = 1;
	s->starting++;
	s->ptr_q = dns_query_start(s->w->r, DNS_T_PTR, name, s->w->timeout, rdns_ptr_cb, s);
	s->starting--;
	if (s->outstanding == 0 && !s->done)
		rdns_finish(s);       /* answered from the cache, all the way */
	return true;
}

static void rdns_run(void *wstate, int slot, struct hook_call *call)
{
	struct rdns_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	struct rdns_session *s = env->module_ctx[slot];
	enum hook_stage st = hook_call_stage(call);

	if (s == NULL) {
		if (env->client_name_status != HOOK_NAME_UNKNOWN)
			goto pass;        /* already known (set by whoever knew better) */
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			goto pass;
		s->w = w;
		s->env = env;
		env->module_ctx[slot] = s;
		env->rdns_lookup = s;
	}
	if (!s->started)
		rdns_start(s);
	if (s->done || s->call != NULL || (st == HOOK_CONNECT && !w->at_connect))
		goto pass;
	s->call = call;             /* completed by rdns_finish */
	return;
pass:
	hook_call_done(call, NULL);
}

/* The connect stage begins: the PTR query goes out now, together with the entries before
 * this one (the pregreet test's pass store), not after them; rdns_run takes it from there. */
static void rdns_prefetch(void *wstate, int slot, struct hook_env *env, enum hook_stage st)
{
	struct rdns_session *s;

	if (st != HOOK_CONNECT || wstate == NULL || env->module_ctx[slot] != NULL ||
	    env->client_name_status != HOOK_NAME_UNKNOWN)
		return;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return;                 /* rdns_run tries again */
	s->w = wstate;
	s->env = env;
	env->module_ctx[slot] = s;
	env->rdns_lookup = s;
	rdns_start(s);
}

/* The name is known (or the lookups are done): a stage of ours passes at once. */
static bool rdns_settled(void *wstate, int slot, const struct hook_env *env, enum hook_stage st)
{
	const struct rdns_session *s = env->module_ctx[slot];

	(void)wstate;
	(void)st;
	return s ? s->done : env->client_name_status != HOOK_NAME_UNKNOWN;
}

/* The chain gave up waiting (timeout): the answer, when it comes, completes nothing. */
static void rdns_cancel(void *wstate, int slot, struct hook_call *call)
{
	struct rdns_session *s = hook_call_env(call)->module_ctx[slot];

	if (s != NULL && s->call == call)
		s->call = NULL;
}

static void rdns_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct rdns_session *s = env->module_ctx[slot];

	if (s == NULL)
		return;
	dns_query_cancel(s->ptr_q);
	for (size_t i = 0; i < s->nfwd; i++)
		dns_query_cancel(s->fwd[i].q);
	if (env->rdns_lookup == s)
		env->rdns_lookup = NULL;
	free(s);
	env->module_ctx[slot] = NULL;
}

const struct hook_module rdns_module = {
	.name = "rdns",
	.worker_init = rdns_worker_init,
	.worker_free = rdns_worker_free,
	.stages = rdns_stages,
	.run = rdns_run,
	.prefetch = rdns_prefetch,
	.session_free = rdns_session_free,
	.timeout_ms = rdns_timeout_ms,
	.on_error = rdns_on_error,
	.cancel = rdns_cancel,
	.settled = rdns_settled,
};
