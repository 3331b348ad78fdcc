/* control_cmd.c — the control socket's verbs (see control.h). Each runs on the main loop
 * and writes its reply payload, at once or (reload, a module verb's start) later: nothing
 * here blocks the main loop. */
#include "control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "control_verbs.h"
#include "jsonw.h"
#include "log.h"
#include "ops.h"
#include "status.h"
#include "worker.h"

struct control_cmd {
	const char *name;
	const char *usage;
	int min_args, max_args;      /* words after the verb */
	int (*run)(const struct ctl_request *req, struct strbuf *out);
	/* instead of run: answers later (control_reply_done), as a module verb's start */
	void (*start)(const struct ctl_request *req, struct control_reply *r);
};

/* Verbs a module may offer; without it they answer "not available". */
static const char *const control_optional[][2] = {
	{ "learn", "no classifier in this build" },
};

/* A JSON object {"ok":true,<key>:<value>} or the text line. */
static void control_say(struct strbuf *out, bool json, const char *key, const char *value, const char *text)
{
	if (json) {
		struct jsonw j;
		jsonw_init(&j, out);
		jsonw_obj(&j, NULL);
		jsonw_str(&j, key, value);
		jsonw_end(&j);
		strbuf_append(out, "\n", 1);
	} else {
		strbuf_printf(out, "%s\n", text);
	}
}

static int cmd_status(const struct ctl_request *req, struct strbuf *out)
{
	if (req->json)
		status_render_json(out, true);
	else
		status_render_text(out);
	return 0;
}

static int cmd_backends(const struct ctl_request *req, struct strbuf *out)
{
	status_render_backends(out, req->json);
	return 0;
}

/* drain/enable: finds the backend in the current pool (a URL not configured now can still
 * be named exactly, for a backend about to come back with a reload). */
static int cmd_drain_enable(const struct ctl_request *req, struct strbuf *out)
{
	bool drain = strcmp(req->argv[0], "drain") == 0;
	const struct ops_host *h = ops_host();
	struct shared_gen *g = h->current ? h->current() : NULL;
	const char *err = "no such backend", *url = req->argv[1];
	struct backend *b = g ? ops_find_backend(g->pool, req->argv[1], &err) : NULL;
	char text[600];

	if (b)
		url = b->url;
	else if (!(ops_is_drained(url) && !drain)) {
		strbuf_printf(out, "%s: %s\n", req->argv[1], err);
		return -1;
	}
	int changed = drain ? ops_drain(url) : ops_enable(url);
	if (changed < 0) {
		strbuf_printf(out, "%s: too many drained backends\n", url);
		return -1;
	}
	if (drain)
		snprintf(text, sizeof(text), "%s: %s%s", url, changed ? "drained" : "already drained",
		    b && backend_active_all(b) > 0 ? " (open transactions finish)" : "");
	else
		snprintf(text, sizeof(text), "%s: %s", url, changed ? "enabled" : "was not drained");
	control_say(out, req->json, drain ? "drained" : "enabled", url, text);
	return 0;
}

/* The reply to `reload` (ops_host.reload's result): 0 or -1. Frees errors. */
static int control_reload_reply(struct strbuf *out, bool json, unsigned gen, char *errors)
{
	const struct ops_host *h = ops_host();

	if (gen == 0) {
		struct shared_gen *g = h->current ? h->current() : NULL;
		if (json) {
			struct jsonw j;
			jsonw_init(&j, out);
			jsonw_obj(&j, NULL);
			jsonw_bool(&j, "reloaded", false);
			jsonw_int(&j, "generation", g ? g->id : 0);
			jsonw_str(&j, "errors", errors ? errors : "");
			jsonw_end(&j);
			strbuf_append(out, "\n", 1);
		} else {
			strbuf_printf(out, "reload failed; generation %u stays in force\n%s", g ? g->id : 0,
			    errors ? errors : "");
		}
		free(errors);
		return -1;
	}
	/* errors: the keys that wait for the next start, comma-separated */
	if (json) {
		struct jsonw j;
		jsonw_init(&j, out);
		jsonw_obj(&j, NULL);
		jsonw_bool(&j, "reloaded", true);
		jsonw_int(&j, "generation", gen);
		if (errors && *errors) {   /* only then: {"reloaded":true,"generation":N} stays as it was */
			jsonw_arr(&j, "next_start");
			for (char *k = errors, *e; *k; k = e ? e + 1 : k + strlen(k)) {
				e = strchr(k, ',');
				if (e)
					*e = '\0';
				jsonw_str(&j, NULL, k);
			}
			jsonw_end(&j);
		}
		jsonw_end(&j);
		strbuf_append(out, "\n", 1);
	} else {
		strbuf_printf(out, "reloaded: generation %u\n", gen);
		if (errors && *errors)
			strbuf_printf(out, "changed but kept until the next start (restart to apply): %s\n", errors);
	}
	free(errors);
	return 0;
}

/* A `reload` waiting for its result (the backend names resolve off the main loop), then
 * for every worker to run the new generation: a worker takes it at its next loop pass, and
 * one held in a hook (a slow milter, a plugin) would still serve its next session under the
 * old config after an early answer. Polled, bounded: after CTL_RELOAD_WAIT_MS
 * (control_proto.h) the answer names the worker still behind (ERR) rather than keep the
 * client waiting. */
#define CTL_RELOAD_POLL_MS 5

struct control_reload_ask {
	struct control_reply *r;
	bool json;
	unsigned gen;
	char *errors;                /* the next-start keys, for the answer */
	uint64_t deadline;
	uv_timer_t timer;
};

static void cmd_reload_ask_free(uv_handle_t *h)
{
	struct control_reload_ask *ask = h->data;

	free(ask->errors);
	free(ask);
}

/* -1 when every worker runs ask->gen (or newer), else the index of one still behind. */
static int cmd_reload_behind(const struct control_reload_ask *ask, unsigned *runs)
{
	const struct ops_host *h = ops_host();

	*runs = 0;
	return h->behind ? h->behind(ask->gen, runs) : -1;
}

static void cmd_reload_poll(uv_timer_t *t)
{
	struct control_reload_ask *ask = t->data;
	unsigned runs;
	int k = cmd_reload_behind(ask, &runs);

	if (k >= 0 && uv_now(t->loop) < ask->deadline && !ops_is_stopping())
		return;
	uv_timer_stop(t);
	if (k < 0) {
		char *errors = ask->errors;
		ask->errors = NULL;
		control_reply_done(ask->r, control_reload_reply(control_reply_out(ask->r), ask->json,
		    ask->gen, errors));
	} else {
		struct strbuf *out = control_reply_out(ask->r);
		char text[200];
		if (ops_is_stopping())
			snprintf(text, sizeof(text), "generation %u is loaded but worker %d still runs generation %u (stopping)",
			    ask->gen, k, runs);
		else
			snprintf(text, sizeof(text), "generation %u is loaded but worker %d still runs generation %u after "
			    "%g s (a session holds it)", ask->gen, k, runs, CTL_RELOAD_WAIT_MS / 1000.0);
		if (ask->json) {
			struct jsonw j;
			jsonw_init(&j, out);
			jsonw_obj(&j, NULL);
			jsonw_bool(&j, "reloaded", false);
			jsonw_int(&j, "generation", ask->gen);
			jsonw_int(&j, "worker_behind", k);
			jsonw_str(&j, "errors", text);
			jsonw_end(&j);
			strbuf_append(out, "\n", 1);
		} else {
			strbuf_printf(out, "reload: %s\n", text);
		}
		log_event(LOG_LVL_WARNING, NULL, "event=reload_not_in_force generation=%u worker=%d runs=%u",
		    ask->gen, k, runs);
		control_reply_done(ask->r, -1);
	}
	uv_close((uv_handle_t *)t, cmd_reload_ask_free);
}

static void cmd_reload_done(void *arg, unsigned gen, char *errors)
{
	struct control_reload_ask *ask = arg;
	struct control_reply *r = ask->r;
	bool json = ask->json;
	unsigned runs;

	ask->gen = gen;
	if (gen == 0 || cmd_reload_behind(ask, &runs) < 0 ||
	    uv_timer_init(control_reply_loop(r), &ask->timer) != 0) {
		free(ask);
		control_reply_done(r, control_reload_reply(control_reply_out(r), json, gen, errors));
		return;
	}
	ask->errors = errors;
	ask->timer.data = ask;
	ask->deadline = uv_now(control_reply_loop(r)) + CTL_RELOAD_WAIT_MS;
	uv_timer_start(&ask->timer, cmd_reload_poll, CTL_RELOAD_POLL_MS, CTL_RELOAD_POLL_MS);
}

/* As SIGHUP: answered when the reload is over, the main loop serving meanwhile. */
static void cmd_reload(const struct ctl_request *req, struct control_reply *r)
{
	const struct ops_host *h = ops_host();
	struct control_reload_ask *ask;

	if (h->reload == NULL || (ask = calloc(1, sizeof(*ask))) == NULL) {
		strbuf_printf(control_reply_out(r), "reload: %s\n", h->reload ? "out of memory" : "not available");
		control_reply_done(r, -1);
		return;
	}
	ask->r = r;
	ask->json = req->json;
	h->reload(cmd_reload_done, ask);
}

static int cmd_top(const struct ctl_request *req, struct strbuf *out)
{
	long n = 10;

	if (req->argc > 2) {
		char *end;
		n = strtol(req->argv[2], &end, 10);
		if (*end || n < 1 || n > TOPK_CAP) {
			strbuf_printf(out, "top: N must be 1..%d\n", TOPK_CAP);
			return -1;
		}
	}
	return status_render_top(out, req->argv[1], (size_t)n, req->json);
}

static int cmd_help(const struct ctl_request *req, struct strbuf *out);

static const struct control_cmd control_cmds[] = {
	{ "status", "status", 0, 0, cmd_status },
	{ "backends", "backends", 0, 0, cmd_backends },
	{ "drain", "drain BACKEND", 1, 1, cmd_drain_enable },
	{ "enable", "enable BACKEND", 1, 1, cmd_drain_enable },
	{ "reload", "reload", 0, 0, NULL, cmd_reload },
	{ "top", "top clients|reasons|rules|senders|recipients|domains [N]", 1, 2, cmd_top },
	{ "help", "help", 0, 0, cmd_help },
};

static int cmd_help(const struct ctl_request *req, struct strbuf *out)
{
	strbuf_printf(out, "commands:\n");
	for (size_t i = 0; i < sizeof(control_cmds) / sizeof(control_cmds[0]); i++)
		strbuf_printf(out, "  %s\n", control_cmds[i].usage);
	for (const struct control_verb *const *v = control_module_verbs; *v; v++)
		strbuf_printf(out, "  %s\n", (*v)->usage);
	strbuf_printf(out, "options: --json (JSON reply), --length=N (N octets of body follow)\n");
	return 0;
}

/* How many leading words of req match the space-separated words (0 when not all). */
static int control_words_match(const struct ctl_request *req, const char *words)
{
	int k = 0;
	const char *w = words;

	while (*w) {
		size_t n = strcspn(w, " ");
		if (k >= req->argc || strlen(req->argv[k]) != n || strncmp(req->argv[k], w, n) != 0)
			return 0;
		k++;
		w += n;
		while (*w == ' ')
			w++;
	}
	return k;
}

/* ------------------------------------------------------------ replies given later */

struct control_reply {
	struct strbuf out;
	int rc;
	bool starting;               /* inside the verb's start: control_dispatch_start answers */
	bool done;
	uv_loop_t *loop;
	control_done_fn cb;          /* NULL once detached */
	void *arg;
};

struct strbuf *control_reply_out(struct control_reply *r)
{
	return &r->out;
}

uv_loop_t *control_reply_loop(struct control_reply *r)
{
	return r->loop;
}

void control_reply_done(struct control_reply *r, int rc)
{
	r->rc = rc;
	r->done = true;
	if (r->starting)
		return;
	if (r->cb)
		r->cb(r->arg, rc, &r->out);
	strbuf_free(&r->out);
	free(r);
}

void control_reply_detach(struct control_reply *r)
{
	if (r)
		r->cb = NULL;
}

/* A reply to be given later, for a verb's start; NULL (out says why) when out of memory. */
static struct control_reply *control_reply_new(uv_loop_t *loop, control_done_fn done, void *arg,
    struct strbuf *out)
{
	struct control_reply *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		strbuf_printf(out, "out of memory\n");
		return NULL;
	}
	r->starting = true;
	r->loop = loop;
	r->cb = done;
	r->arg = arg;
	return r;
}

/* After a verb's start returned: its answer when it gave one at once, else r pending (1).
 * Returns like control_dispatch_start. */
static int control_reply_started(struct control_reply *r, const char *words, struct strbuf *out,
    control_done_fn done, struct control_reply **pending)
{
	int rc;

	r->starting = false;
	if (r->done) {
		if (r->out.len)
			strbuf_append(out, r->out.v, r->out.len);
		rc = r->rc;
		strbuf_free(&r->out);
		free(r);
		return rc;
	}
	if (done == NULL || pending == NULL) {
		r->cb = NULL;            /* freed when the verb completes it */
		strbuf_printf(out, "%s: answers later (ask through the control socket)\n", words);
		return -1;
	}
	*pending = r;
	return 1;
}

int control_dispatch(const struct ctl_request *req, struct strbuf *out)
{
	return control_dispatch_start(req, out, uv_default_loop(), NULL, NULL, NULL);
}

int control_dispatch_start(const struct ctl_request *req, struct strbuf *out, uv_loop_t *loop,
    control_done_fn done, void *arg, struct control_reply **pending)
{
	const struct ops_host *h = ops_host();
	struct shared_gen *g = h->current ? h->current() : NULL;
	int rc = -1;

	if (pending)
		*pending = NULL;
	for (size_t i = 0; i < sizeof(control_cmds) / sizeof(control_cmds[0]); i++) {
		const struct control_cmd *c = &control_cmds[i];
		if (strcmp(req->argv[0], c->name) != 0)
			continue;
		if (req->argc - 1 < c->min_args || req->argc - 1 > c->max_args) {
			strbuf_printf(out, "usage: %s\n", c->usage);
			return -1;
		}
		if (req->body) {
			strbuf_printf(out, "%s takes no body\n", c->name);
			return -1;
		}
		if (c->run) {
			rc = c->run(req, out);
			goto logged;
		}
		struct control_reply *r = control_reply_new(loop, done, arg, out);
		if (r == NULL)
			return -1;
		c->start(req, r);
		rc = control_reply_started(r, c->name, out, done, pending);
		goto logged;
	}
	for (const struct control_verb *const *v = control_module_verbs; *v; v++) {
		int k = control_words_match(req, (*v)->words);
		if (k == 0)
			continue;
		if (g == NULL) {
			strbuf_printf(out, "not running\n");
			return -1;
		}
		if (ops_is_stopping() && !(*v)->during_drain) {
			/* a verb that would hold the exit past the drain (learn: an mbox takes
			 * seconds) */
			strbuf_printf(out, "%s: mxgate is shutting down\n", (*v)->words);
			return -1;
		}
		if ((*v)->start) {
			struct control_reply *r = control_reply_new(loop, done, arg, out);
			if (r == NULL)
				return -1;
			(*v)->start(g->cfg, req->argc - k, (char **)req->argv + k, req->body, req->body_len,
			    req->json, r);
			rc = control_reply_started(r, (*v)->words, out, done, pending);
		} else
			rc = (*v)->run(g->cfg, req->argc - k, (char **)req->argv + k, req->body, req->body_len,
			    req->json, out);
		goto logged;
	}
	for (size_t i = 0; i < sizeof(control_optional) / sizeof(control_optional[0]); i++) {
		if (control_words_match(req, control_optional[i][0])) {
			strbuf_printf(out, "%s: not available: %s\n", control_optional[i][0], control_optional[i][1]);
			return -1;
		}
	}
	if (strcmp(req->argv[0], "flush") == 0)
		strbuf_printf(out, "usage: flush dns|passcache|reputation IP\n");
	else
		strbuf_printf(out, "unknown command \"%.64s\" (try: help)\n", req->argv[0]);
	return -1;
logged:
	/* Changes are logged by what they change; the request itself at debug level. */
	if (log_is_debug())
		log_event(LOG_LVL_DEBUG, NULL, "event=control command=%s%s%s rc=%d", req->argv[0],
		    req->argc > 1 ? " " : "", req->argc > 1 ? req->argv[1] : "", rc);
	return rc;
}
