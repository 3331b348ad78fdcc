/* filters_control.c — the control socket verbs and status figures of filters/
 * (proxy/control_verbs.h): flush dns, flush passcache (the DNS lists' and the pregreet
 * test's pass caches), errors per DNS list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/config.h"
#include "proxy/control_verbs.h"
#include "proxy/pregreet.h"
#include "dns.h"
#include "dnsbl.h"
#include "passcache.h"
#include "store/redis.h"
#include "store/store.h"

static int flush_reply(struct strbuf *out, bool json, const char *what, const char *text, size_t n)
{
	if (json)
		strbuf_printf(out, "{\"flushed\":\"%s\",\"entries\":%zu}\n", what, n);
	else
		strbuf_printf(out, "%s flushed: %zu entries\n", text, n);
	return 0;
}

/* Neither flush takes an argument: `flush dns bl.test` would otherwise empty the whole cache
 * while the operator meant one entry. */
static int flush_usage(struct strbuf *out, const char *what)
{
	strbuf_printf(out, "usage: flush %s (takes no argument: it empties the whole cache)\n", what);
	return -1;
}

static int dns_flush_run(const struct mx_config *cfg, int argc, char **argv, const char *body,
    size_t body_len, bool json, struct strbuf *out)
{
	if (argc != 0)
		return flush_usage(out, "dns");
	return flush_reply(out, json, "dns", "DNS cache", dns_cache_flush_shared());
}

/* flush passcache: the memory caches emptied on the main loop, then the pass stores
 * (passcache_flush_all: Redis marked on a connection of the verb's own, bounded by the larger
 * pass_store_timeout, at least 1 s; LMDB by its workers) — off the main loop when one is in
 * Redis (redis_store_job_start), with copies of the stores' URLs. */
struct pc_flush {
	struct control_reply *reply;
	bool json;
	size_t n, pg, stores;
	char spec[2][512];
	uint64_t timeout;
	int failed;
	char err[300];
};

static void pc_flush_work(void *arg)
{
	struct pc_flush *f = arg;
	const char *specs[2] = { f->spec[0], f->spec[1] };

	f->failed = passcache_flush_all(specs, 2, f->timeout, f->err, sizeof(f->err));
}

static void pc_flush_answer(void *arg)
{
	struct pc_flush *f = arg;
	struct strbuf *out = control_reply_out(f->reply);

	if (f->json)
		strbuf_printf(out, "{\"flushed\":\"passcache\",\"entries\":%zu,\"pregreet_entries\":%zu,"
		    "\"stores\":%zu,\"store_errors\":%d}\n", f->n, f->pg, f->stores, f->failed);
	else if (f->failed)
		strbuf_printf(out, "DNS list pass cache flushed: %zu entries; pregreet pass cache: %zu entries; "
		    "pass stores: %d of %zu not reached (%s): the other nodes still know the passes noted "
		    "there; run it again once the store answers\n", f->n, f->pg, f->failed, f->stores, f->err);
	else
		strbuf_printf(out, "DNS list pass cache flushed: %zu entries; pregreet pass cache: %zu entries; "
		    "pass stores: %zu forget what they held\n", f->n, f->pg, f->stores);
	control_reply_done(f->reply, f->failed ? -1 : 0);
	free(f);
}

static void passcache_flush_start(const struct mx_config *cfg, int argc, char **argv, const char *body,
    size_t body_len, bool json, struct control_reply *r)
{
	const char *specs[2] = { cfg->dnsbl.pass_store, cfg->pregreet.pass_store };
	uint64_t timeout = cfg->dnsbl.pass_store_timeout > cfg->pregreet.pass_store_timeout ?
	    cfg->dnsbl.pass_store_timeout : cfg->pregreet.pass_store_timeout;
	struct pc_flush *f;

	if (argc != 0) {
		control_reply_done(r, flush_usage(control_reply_out(r), "passcache"));
		return;
	}
	if ((f = calloc(1, sizeof(*f))) == NULL) {
		strbuf_printf(control_reply_out(r), "flush passcache: out of memory\n");
		control_reply_done(r, -1);
		return;
	}
	f->reply = r;
	f->json = json;
	f->timeout = timeout < 1000 ? 1000 : timeout;
	for (int i = 0; i < 2; i++)
		snprintf(f->spec[i], sizeof(f->spec[i]), "%s", specs[i] ? specs[i] : "");
	f->n = dnsbl_pass_cache_flush();
	f->pg = pregreet_pass_flush(uv_hrtime());
	/* the stores named, each once */
	f->stores = passcache_spec_shared(specs[0]) + (passcache_spec_shared(specs[1]) &&
	    !(passcache_spec_shared(specs[0]) && strcmp(specs[0], specs[1]) == 0));
	if ((store_kind_of(f->spec[0]) == STORE_REDIS || store_kind_of(f->spec[1]) == STORE_REDIS) &&
	    redis_store_job_start(control_reply_loop(r), pc_flush_work, pc_flush_answer, f) == 0)
		return;                 /* answered once Redis has the marks (or did not answer) */
	pc_flush_work(f);               /* no Redis: nothing waits (or no thread: here, bounded) */
	pc_flush_answer(f);
}

/* Both answer during the drain: they empty process-wide caches on the main loop. */
const struct control_verb dns_flush_control_verb = {
	.words = "flush dns", .usage = "flush dns", .run = dns_flush_run, .during_drain = true,
};
const struct control_verb passcache_flush_control_verb = {
	.words = "flush passcache", .usage = "flush passcache", .start = passcache_flush_start,
	.during_drain = true,
};

/* Errors per configured DNS list since start (the status page's table). */
static void dnsbl_errors_foreach(const struct mx_config *cfg,
    void (*cb)(const char *zone, uint64_t errors, void *arg), void *arg)
{
	const struct dnsbl_list_config *l = cfg->dnsbl.lists.v;

	for (size_t i = 0; i < cfg->dnsbl.lists.n; i++)
		cb(l[i].zone, dnsbl_list_errors(l[i].zone), arg);
}

const struct control_figures dnsbl_errors_control_figures = { "dnsbl_errors", dnsbl_errors_foreach };
