/* filters_control.c — the control socket verbs and status figures of filters/
 * (proxy/control_verbs.h): flush dns, flush passcache (the DNS lists' and the pregreet
 * test's pass caches), errors per DNS list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy/config.h"
#include "proxy/control_verbs.h"
#include "proxy/jsonw.h"
#include "proxy/pregreet.h"
#include "dns.h"
#include "dnsbl.h"
#include "passcache.h"
#include "store/lmdb_store.h"
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
 * pass_store_timeout, at least 1 s) — off the main loop when one is in Redis
 * (redis_store_job_start), with copies of the stores' URLs — then LMDB: the markers committed
 * by the directory's writer thread before the answer (passcache_flush_lmdb_start), so a
 * process killed right after an OK does not bring the passes back. */
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

static void pc_flush_reply(struct pc_flush *f, int lmdb_failed, const char *lmdb_err)
{
	struct strbuf *out = control_reply_out(f->reply);
	size_t el = strlen(f->err);
	int redis_failed = f->failed;

	if (lmdb_failed && el < sizeof(f->err))
		snprintf(f->err + el, sizeof(f->err) - el, "%s%s", el ? "; " : "", lmdb_err);
	f->failed += lmdb_failed;

	if (f->json)
		strbuf_printf(out, "{\"flushed\":\"passcache\",\"entries\":%zu,\"pregreet_entries\":%zu,"
		    "\"stores\":%zu,\"store_errors\":%d}\n", f->n, f->pg, f->stores, f->failed);
	else if (f->failed)
		/* what an unmarked store still knows: Redis, every other node; an LMDB map (this
		 * host only, no other node) gives its passes back to this process's next start */
		strbuf_printf(out, "DNS list pass cache flushed: %zu entries; pregreet pass cache: %zu entries; "
		    "pass stores: %d of %zu not reached (%s): %s%s%s; run it again once the store answers\n",
		    f->n, f->pg, f->failed, f->stores, f->err,
		    redis_failed ? "the other nodes still know the passes noted in Redis" : "",
		    redis_failed && lmdb_failed ? " and " : "",
		    lmdb_failed ? "the passes noted in LMDB may be known again after a restart" : "");
	else
		strbuf_printf(out, "DNS list pass cache flushed: %zu entries; pregreet pass cache: %zu entries; "
		    "pass stores: %zu forget what they held\n", f->n, f->pg, f->stores);
	control_reply_done(f->reply, f->failed ? -1 : 0);
	free(f);
}

static void pc_flush_lmdb_cb(void *arg, int failed, const char *err)
{
	pc_flush_reply(arg, failed, err);
}

/* Redis is marked (or could not be): the LMDB stores next, then the answer. */
static void pc_flush_answer(void *arg)
{
	struct pc_flush *f = arg;
	const char *specs[2] = { f->spec[0], f->spec[1] };

	static const char *const names[2] = { "dnsbl", "pregreet" };

	if (passcache_flush_lmdb_start(control_reply_loop(f->reply), specs, names, 2, LMDB_APPLY_VERB_MS,
	    pc_flush_lmdb_cb, f) == 0)
		pc_flush_reply(f, 0, "");
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

/* `passcache`: each pass cache (the DNS lists', the pregreet test's): on or off, the
 * clients this process's memory holds, its store (kind, spec, key prefix; LMDB: the map's
 * records and bytes), this process's answers from it and its last flush. No Redis round
 * trip: the main loop asks no peer for a listing. */
static void passcache_show_one(const struct mx_config *cfg, const char *name, bool on,
    size_t entries, const char *spec, bool json, struct jsonw *j, struct strbuf *out)
{
	struct passcache_desc d;
	struct passcache_stats st;
	bool stored = on && passcache_spec_shared(spec);

	passcache_describe(stored ? spec : "local", name, &d);
	passcache_stats(name, &st);
	(void)cfg;
	if (json) {
		jsonw_obj(j, NULL);
		jsonw_str(j, "module", name);
		jsonw_bool(j, "enabled", on);
		jsonw_int(j, "entries", (long long)entries);
		jsonw_str(j, "store", d.kind);
		jsonw_str(j, "spec", d.shown);
		jsonw_str(j, "prefix", stored ? d.prefix : NULL);
		if (d.map_records >= 0) {
			jsonw_int(j, "map_records", d.map_records);
			jsonw_int(j, "map_bytes", d.map_bytes);
		}
		jsonw_int(j, "store_hits", (long long)st.hits);
		jsonw_int(j, "store_misses", (long long)st.misses);
		jsonw_int(j, "store_errors", (long long)st.errors);
		if (st.flushed_ms)
			jsonw_int(j, "flushed_ms", (long long)st.flushed_ms);
		else
			jsonw_str(j, "flushed_ms", NULL);
		jsonw_end(j);
		return;
	}
	strbuf_printf(out, "%-8s %s entries=%zu store=%s", name, on ? "on " : "off", entries, d.kind);
	if (stored) {
		strbuf_printf(out, " spec=%s prefix=%s", d.shown, d.prefix);
		if (d.map_records >= 0)
			strbuf_printf(out, " map_records=%lld map_bytes=%lld", d.map_records, d.map_bytes);
	}
	strbuf_printf(out, " hits=%llu misses=%llu errors=%llu", st.hits, st.misses, st.errors);
	if (st.flushed_ms)
		strbuf_printf(out, " flushed_ms=%llu", (unsigned long long)st.flushed_ms);
	strbuf_printf(out, "\n");
}

static int passcache_show_run(const struct mx_config *cfg, int argc, char **argv, const char *body,
    size_t body_len, bool json, struct strbuf *out)
{
	const struct dnsbl_config *dc = &cfg->dnsbl;
	const struct pregreet_config *pg = &cfg->pregreet;
	struct jsonw j;

	(void)argv, (void)body, (void)body_len;
	if (argc != 0) {
		strbuf_printf(out, "usage: passcache (takes no argument)\n");
		return -1;
	}
	if (json) {
		jsonw_init(&j, out);
		jsonw_obj(&j, NULL);
		jsonw_arr(&j, "passcaches");
	}
	bool ip_lists = false;

	for (size_t i = 0; i < dc->lists.n; i++)
		ip_lists |= ((const struct dnsbl_list_config *)dc->lists.v)[i].type == DNSBL_TYPE_IP;
	passcache_show_one(cfg, "dnsbl", ip_lists && dc->pass_ttl >= 1000,
	    dnsbl_pass_cache_count(), dc->pass_store, json, &j, out);
	passcache_show_one(cfg, "pregreet", pg->delay > 0 && pg->pass_ttl > 0,
	    pregreet_pass_count(uv_hrtime()), pg->pass_store, json, &j, out);
	if (json) {
		jsonw_end(&j);
		jsonw_end(&j);
		strbuf_printf(out, "\n");
	}
	return 0;
}

const struct control_verb passcache_show_control_verb = {
	.words = "passcache", .usage = "passcache", .run = passcache_show_run, .during_drain = true,
};

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
