/* status.c — text and JSON views of the daemon's state (see status.h). */
#include <math.h>
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend.h"
#include "config.h"
#include "control_verbs.h"
#include "counters.h"
#include "jsonw.h"
#include "ops.h"
#include "opstats.h"
#include "worker.h"

#ifndef MX_VERSION
#define MX_VERSION "unknown"
#endif

#define STATUS_TOP_ROWS 10

static const char *const status_series_names[OPS__NSERIES] = {
	[OPS_ACCEPTED] = "accepted", [OPS_REFUSED] = "refused", [OPS_TEMPFAILED] = "tempfailed",
	[OPS_DNSBL_ERRORS] = "dnsbl_errors",
};

static struct shared_gen *status_gen(void)
{
	const struct ops_host *h = ops_host();
	return h->current ? h->current() : NULL;
}

static const char *status_kind(const struct backend *b)
{
	switch (b->kind) {
	case BACKEND_LMTP: return "lmtp";
	case BACKEND_MAILDIR: return "maildir";
	default: return "smtp";
	}
}

/* ------------------------------------------------------------ backends */

static void status_backend_json(struct jsonw *j, const struct backend *b, bool route_only)
{
	jsonw_obj(j, NULL);
	jsonw_str(j, "url", b->url);
	jsonw_str(j, "host", b->host);
	jsonw_str(j, "kind", status_kind(b));
	jsonw_str(j, "state", ops_backend_state(b));
	jsonw_bool(j, "up", backend_is_up(b));
	jsonw_bool(j, "drained", backend_is_drained(b));
	long long us = atomic_load(&backend_health(b)->latency_us);
	/* Never probed successfully: unknown (null), as the text view's "-", not 0 ms. */
	jsonw_num(j, "latency_ms", us > 0 ? (double)us / 1000.0 : NAN);
	jsonw_int(j, "active", backend_active_all(b));
	jsonw_int(j, "delivered", backend_delivered(b));
	jsonw_int(j, "failed", backend_failed(b));
	jsonw_int(j, "consecutive_failures", atomic_load(&backend_health(b)->fails));
	jsonw_int(j, "weight", b->weight);
	jsonw_bool(j, "route_only", route_only);
	jsonw_bool(j, "backup", b->backup);
	jsonw_int(j, "max_connections", b->max_conns);
	jsonw_end(j);
}

/* The drain set's URLs that the current pool does not have (they apply if it comes back). */
static bool status_drain_unconfigured(const struct pool *p, const char *url)
{
	const char *err;
	struct backend *b = ops_find_backend(p, url, &err);
	return b == NULL || !backend_url_equal(b->url, url);
}

static void status_backends_json(struct jsonw *j)
{
	struct shared_gen *g = status_gen();
	struct backend *b;
	const char *url;

	jsonw_arr(j, "backends");
	for (size_t i = 0; g && (b = ops_pool_backend(g->pool, i)) != NULL; i++)
		status_backend_json(j, b, i >= g->pool->nservers);
	jsonw_end(j);
	jsonw_arr(j, "drained_unconfigured");
	for (size_t i = 0; (url = ops_drained_url(i)) != NULL; i++)
		if (!g || status_drain_unconfigured(g->pool, url))
			jsonw_str(j, NULL, url);
	jsonw_end(j);
}

static void status_backends_text(struct strbuf *out)
{
	struct shared_gen *g = status_gen();
	struct backend *b;
	const char *url;

	strbuf_printf(out, "%-40s %-9s %10s %6s %10s %8s %6s\n", "BACKEND", "STATE", "LATENCY", "ACTIVE",
	    "DELIVERED", "FAILED", "WEIGHT");
	for (size_t i = 0; g && (b = ops_pool_backend(g->pool, i)) != NULL; i++) {
		char lat[32];
		long long us = atomic_load(&backend_health(b)->latency_us);
		snprintf(lat, sizeof(lat), us > 0 ? "%.1f ms" : "-", (double)us / 1000.0);
		strbuf_printf(out, "%-40s %-9s %10s %6d %10lld %8lld %6d%s\n", b->url, ops_backend_state(b), lat,
		    backend_active_all(b), backend_delivered(b),
		    backend_failed(b), b->weight, i >= g->pool->nservers ? "  (route only)" : b->backup ? "  (backup)" : "");
	}
	for (size_t i = 0; (url = ops_drained_url(i)) != NULL; i++)
		if (!g || status_drain_unconfigured(g->pool, url))
			strbuf_printf(out, "%-40s %-9s (not in the config; drained if it comes back)\n", url, "drained");
}

void status_render_backends(struct strbuf *out, bool json)
{
	if (!json) {
		status_backends_text(out);
		return;
	}
	struct jsonw j;
	jsonw_init(&j, out);
	jsonw_obj(&j, NULL);
	status_backends_json(&j);
	jsonw_end(&j);
	strbuf_append(out, "\n", 1);
}

/* ------------------------------------------------------------ top tables */

struct status_rule { char name[TOPK_KEY_MAX]; uint64_t hits; };
struct status_rules { struct status_rule *v; size_t n, cap; };

static void status_rule_cb(const char *name, uint64_t hits, void *arg)
{
	struct status_rules *r = arg;

	if (hits == 0)
		return;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct status_rule *v = realloc(r->v, cap * sizeof(*v));
		if (v == NULL)
			return;
		r->v = v;
		r->cap = cap;
	}
	snprintf(r->v[r->n].name, sizeof(r->v[r->n].name), "%s", name);	/* valid only during the call */
	r->v[r->n++].hits = hits;
}

static int status_rule_cmp(const void *a, const void *b)
{
	const struct status_rule *x = a, *y = b;
	if (x->hits != y->hits)
		return x->hits > y->hits ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* The top n rules by hits as topk entries (count = hits). */
static size_t status_top_rules(struct topk_entry *out, size_t n)
{
	struct status_rules r = { 0 };
	const struct control_figures *f = control_figures_find("rule_hits");
	struct shared_gen *g = status_gen();
	size_t k;

	if (f && g && g->cfg)
		f->foreach(g->cfg, status_rule_cb, &r);
	if (r.n)
		qsort(r.v, r.n, sizeof(r.v[0]), status_rule_cmp);
	for (k = 0; k < r.n && k < n; k++) {
		memset(&out[k], 0, sizeof(out[k]));
		snprintf(out[k].key, sizeof(out[k].key), "%s", r.v[k].name);
		out[k].count = r.v[k].hits;
	}
	free(r.v);
	return k;
}

static void status_top_json(struct jsonw *j, const char *key, const char *name, const struct topk_entry *e, size_t n)
{
	jsonw_arr(j, key);
	for (size_t i = 0; i < n; i++) {
		jsonw_obj(j, NULL);
		jsonw_str(j, name, e[i].key);
		jsonw_int(j, "count", (long long)e[i].count);
		if (e[i].error)
			jsonw_int(j, "overcount_max", (long long)e[i].error);
		jsonw_end(j);
	}
	jsonw_end(j);
}

static void status_top_text(struct strbuf *out, const char *title, const struct topk_entry *e, size_t n)
{
	strbuf_printf(out, "%s:\n", title);
	if (n == 0)
		strbuf_printf(out, "  (none)\n");
	for (size_t i = 0; i < n; i++)
		strbuf_printf(out, "  %-44s %10llu%s\n", e[i].key, (unsigned long long)e[i].count,
		    e[i].error ? "  (approximate)" : "");
}

/* The mail views (`top senders|recipients|domains`): one table of opstats_top.mail each
 * by what opstats_mail_count counts, in that order. */
static const struct status_mail_view {
	const char *what;            /* the verb's word */
	const char *title;           /* the text's */
	const char *name;            /* a JSON row's key field */
	enum opstats_mail_key key;
} status_mail_views[] = {
	{ "senders", "sender domains", "domain", OPS_BY_SENDER_DOMAIN },
	{ "recipients", "recipients", "recipient", OPS_BY_RCPT },
	{ "domains", "recipient domains", "domain", OPS_BY_RCPT_DOMAIN },
};
static const char *const status_mail_counts[OPS__NCOUNTS][2] = {
	[OPS_RCPT_ACCEPTED] = { "rcpt_accepted", "RCPT accepted" },
	[OPS_RCPT_REFUSED] = { "rcpt_refused", "RCPT refused" },
	[OPS_MSG_DELIVERED] = { "delivered", "messages delivered" },
	[OPS_MSG_SPAM] = { "spam", "spam found" },
};

static void status_top_mail(struct strbuf *out, struct jsonw *j, const struct opstats_top *top,
    const struct status_mail_view *v, size_t n, bool json)
{
	struct topk_entry e[TOPK_CAP];
	char title[96];

	for (int c = 0; c < OPS__NCOUNTS; c++) {
		size_t ne = topk_sorted(&top->mail[v->key][c], e, n);
		if (json) {
			status_top_json(j, status_mail_counts[c][0], v->name, e, ne);
		} else {
			snprintf(title, sizeof(title), "%s by %s", v->title, status_mail_counts[c][1]);
			status_top_text(out, title, e, ne);
		}
	}
}

int status_render_top(struct strbuf *out, const char *what, size_t n, bool json)
{
	struct opstats_top *top = malloc(sizeof(*top));
	struct topk_entry a[TOPK_CAP], b[TOPK_CAP];
	size_t na = 0, nb = 0;
	struct jsonw j;
	int rc = 0;

	if (top == NULL) {
		strbuf_printf(out, "out of memory\n");
		return -1;
	}
	if (n < 1)
		n = 1;
	if (n > TOPK_CAP)
		n = TOPK_CAP;
	opstats_collect(top);
	jsonw_init(&j, out);
	if (json)
		jsonw_obj(&j, NULL);
	if (strcmp(what, "clients") == 0) {
		na = topk_sorted(&top->sessions, a, n);
		nb = topk_sorted(&top->refusals, b, n);
		if (json) {
			status_top_json(&j, "by_sessions", "client", a, na);
			status_top_json(&j, "by_refusals", "client", b, nb);
		} else {
			status_top_text(out, "clients by sessions", a, na);
			status_top_text(out, "clients by refusals", b, nb);
		}
	} else if (strcmp(what, "reasons") == 0) {
		na = topk_sorted(&top->reasons, a, n);
		if (json)
			status_top_json(&j, "reasons", "reason", a, na);
		else
			status_top_text(out, "refusal reasons (stage/reason)", a, na);
	} else if (strcmp(what, "rules") == 0) {
		na = status_top_rules(a, n);
		if (json)
			status_top_json(&j, "rules", "rule", a, na);
		else
			status_top_text(out, "rules by hits", a, na);
	} else {
		size_t v = 0;
		while (v < sizeof(status_mail_views) / sizeof(status_mail_views[0]) && strcmp(what, status_mail_views[v].what))
			v++;
		if (v < sizeof(status_mail_views) / sizeof(status_mail_views[0])) {
			status_top_mail(out, &j, top, &status_mail_views[v], n, json);
		} else {
			strbuf_printf(out, "top: expected clients, reasons, rules, senders, recipients or domains, got \"%s\"\n",
			    what);
			rc = -1;
		}
	}
	if (json && rc == 0) {
		jsonw_end(&j);
		strbuf_append(out, "\n", 1);
	}
	free(top);
	return rc;
}

/* ------------------------------------------------------------ status */

static void status_list_error_cb(const char *zone, uint64_t errors, void *arg)
{
	struct jsonw *j = arg;
	jsonw_obj(j, NULL);
	jsonw_str(j, "zone", zone);
	jsonw_int(j, "errors", (long long)errors);
	jsonw_end(j);
}

static void status_full_json(struct jsonw *j)
{
	const struct control_figures *errs = control_figures_find("dnsbl_errors");
	struct shared_gen *g = status_gen();
	long rows[OPS_MINUTES][OPS__NSERIES];
	size_t nrows = ophist_minutes(ops_history(), rows);
	struct opstats_top *top = malloc(sizeof(*top));
	struct topk_entry e[STATUS_TOP_ROWS];

	jsonw_obj(j, "history");
	jsonw_int(j, "bucket_seconds", 60);
	for (int k = 0; k < OPS__NSERIES; k++) {
		jsonw_arr(j, status_series_names[k]);
		for (size_t r = 0; r < nrows; r++)
			jsonw_int(j, NULL, rows[r][k]);
		jsonw_end(j);
	}
	jsonw_end(j);
	if (top) {
		opstats_collect(top);
		status_top_json(j, "top_refused_clients", "client", e, topk_sorted(&top->refusals, e, STATUS_TOP_ROWS));
		status_top_json(j, "top_refusal_reasons", "reason", e, topk_sorted(&top->reasons, e, STATUS_TOP_ROWS));
		status_top_json(j, "top_clients", "client", e, topk_sorted(&top->sessions, e, STATUS_TOP_ROWS));
		/* `mxgatectl top senders|domains`' messages delivered, the page's mail tables */
		status_top_json(j, "top_sender_domains", "domain", e,
		    topk_sorted(&top->mail[OPS_BY_SENDER_DOMAIN][OPS_MSG_DELIVERED], e, STATUS_TOP_ROWS));
		status_top_json(j, "top_recipient_domains", "domain", e,
		    topk_sorted(&top->mail[OPS_BY_RCPT_DOMAIN][OPS_MSG_DELIVERED], e, STATUS_TOP_ROWS));
		free(top);
	}
	status_top_json(j, "top_rules", "rule", e, status_top_rules(e, STATUS_TOP_ROWS));
	jsonw_arr(j, "dnsbl_errors");
	if (errs && g && g->cfg)
		errs->foreach(g->cfg, status_list_error_cb, j);
	jsonw_end(j);
}

void status_render_json(struct strbuf *out, bool full)
{
	struct shared_gen *g = status_gen();
	struct jsonw j;

	jsonw_init(&j, out);
	jsonw_obj(&j, NULL);
	jsonw_str(&j, "version", MX_VERSION);
	jsonw_num(&j, "uptime_seconds", ops_uptime());
	jsonw_int(&j, "generation", g ? g->id : 0);
	jsonw_str(&j, "config", g && g->cfg ? g->cfg->path : NULL);
	jsonw_str(&j, "hostname", g && g->cfg ? g->cfg->hostname : NULL);
	jsonw_bool(&j, "started", ops_is_started());
	jsonw_bool(&j, "ready", ops_is_ready());
	jsonw_bool(&j, "stopping", ops_is_stopping());
	{
		char failed[128];

		/* configured modules not running in some worker: /readyz is 503 meanwhile */
		shared_gen_failed(g, failed, sizeof(failed));
		jsonw_str(&j, "modules_not_running", failed);
	}
	jsonw_obj(&j, "sessions");
	jsonw_int(&j, "active", counter_get(COUNTER_SESSIONS_ACTIVE));
	jsonw_int(&j, "total", counter_get(COUNTER_SESSIONS_TOTAL));
	jsonw_end(&j);
	jsonw_obj(&j, "messages");
	jsonw_num(&j, "per_second", ophist_rate(ops_history()));
	jsonw_int(&j, "received", counter_get(COUNTER_MESSAGES_RECEIVED));
	jsonw_int(&j, "delivered", counter_get(COUNTER_MESSAGES_DELIVERED));
	jsonw_int(&j, "rejected", counter_get(COUNTER_MESSAGES_REJECTED));
	jsonw_int(&j, "tempfailed", counter_get(COUNTER_MESSAGES_TEMPFAILED));
	jsonw_end(&j);
	jsonw_obj(&j, "refusals");
	jsonw_int(&j, "rejected", counter_get(COUNTER_REFUSALS));
	jsonw_int(&j, "tempfailed", counter_get(COUNTER_TEMPFAILS));
	jsonw_int(&j, "dnsbl_errors", counter_get(COUNTER_DNSBL_ERRORS));
	jsonw_end(&j);
	jsonw_obj(&j, "connections_refused");
	for (int r = 0; r < CONN_REFUSED__COUNT; r++)
		jsonw_int(&j, counter_conn_refused_reason((enum conn_refusal)r),
		    counter_conn_refused_get((enum conn_refusal)r));
	jsonw_end(&j);
	status_backends_json(&j);
	if (full)
		status_full_json(&j);
	jsonw_end(&j);
	strbuf_append(out, "\n", 1);
}

static void status_duration(char *buf, size_t sz, double secs)
{
	unsigned long s = (unsigned long)secs;
	if (s >= 86400)
		snprintf(buf, sz, "%lud%02luh%02lum", s / 86400, s / 3600 % 24, s / 60 % 60);
	else
		snprintf(buf, sz, "%luh%02lum%02lus", s / 3600, s / 60 % 60, s % 60);
}

void status_render_text(struct strbuf *out)
{
	struct shared_gen *g = status_gen();
	char up[64];

	status_duration(up, sizeof(up), ops_uptime());
	strbuf_printf(out, "mxgate %s, up %s, config generation %u (%s)\n", MX_VERSION, up, g ? g->id : 0,
	    g && g->cfg && g->cfg->path ? g->cfg->path : "-");
	strbuf_printf(out, "ready: %s%s%s\n", ops_is_ready() ? "yes" : "no (", ops_is_ready() ? "" : ops_not_ready_reason(),
	    ops_is_ready() ? "" : ")");
	strbuf_printf(out, "sessions: %ld active, %ld since start\n", counter_get(COUNTER_SESSIONS_ACTIVE),
	    counter_get(COUNTER_SESSIONS_TOTAL));
	strbuf_printf(out, "messages: %.1f/s; %ld received, %ld delivered, %ld rejected, %ld tempfailed\n",
	    ophist_rate(ops_history()), counter_get(COUNTER_MESSAGES_RECEIVED),
	    counter_get(COUNTER_MESSAGES_DELIVERED), counter_get(COUNTER_MESSAGES_REJECTED),
	    counter_get(COUNTER_MESSAGES_TEMPFAILED));
	strbuf_printf(out, "refusals: %ld rejected, %ld tempfailed (connections, senders, recipients, messages)\n",
	    counter_get(COUNTER_REFUSALS), counter_get(COUNTER_TEMPFAILS));
	strbuf_printf(out, "connections refused: %ld (", counter_conn_refused_total());
	for (int r = 0; r < CONN_REFUSED__COUNT; r++)
		strbuf_printf(out, "%s%s %ld", r ? ", " : "", counter_conn_refused_reason((enum conn_refusal)r),
		    counter_conn_refused_get((enum conn_refusal)r));
	strbuf_printf(out, ")\n");
	strbuf_printf(out, "backends:\n");
	status_backends_text(out);
}
