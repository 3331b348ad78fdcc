/* rules_control.c — the rules engine's part of the control socket (proxy/control_verbs.h):
 * messages each scoring rule hit (status views), and `learn spam|ham FILE` (mxgatectl sends
 * the file as the request body) into the running daemon's classifier, by the same path as
 * `mxgate learn` (bayes_learn_buffer: one message or an mbox), in libuv's thread pool. */
#include "proxy/config.h"
#include "proxy/control_verbs.h"
#include "bayes_learn.h"
#include "log.h"
#include "rules.h"

#include <stdlib.h>
#include <string.h>

static void rule_hits_foreach(const struct mx_config *cfg,
    void (*cb)(const char *rule, uint64_t hits, void *arg), void *arg)
{
	(void)cfg;
	rules_foreach_counter(cb, arg);
}

const struct control_figures rule_hits_control_figures = { "rule_hits", rule_hits_foreach };

/* Learning runs in libuv's thread pool (an mbox of thousands of messages takes seconds,
 * longer on a slow Redis): the main loop keeps running the health checks, the metrics
 * listener and the other control connections meanwhile. Within learning's share of the
 * pool (bayes_learn_enter), else refused at once: busy. */
struct learn_job {
	uv_work_t req;
	struct control_reply *reply;
	struct bayes *b;
	enum bayes_class cls;
	char *body;
	size_t len;
	uint64_t max;
	bool json;
	struct bayes_learn_counts n;
};

static void learn_work_cb(uv_work_t *req)
{
	struct learn_job *j = req->data;

	bayes_learn_buffer(j->b, j->cls, j->body, j->len, j->max, "control", NULL, &j->n);
}

static void learn_after_cb(uv_work_t *req, int status)
{
	struct learn_job *j = req->data;
	struct strbuf *out = control_reply_out(j->reply);
	const char *cls = j->cls == BAYES_SPAM ? "spam" : "ham";
	char sum[256];

	if (status != 0)
		j->n.errors++;                  /* cancelled (the daemon is stopping) */
	/* a store error stopped the run (bayes_learn_buffer): the rest of the mbox untried */
	log_event(LOG_LVL_INFO, NULL, "event=bayes_learn via=control class=%s learned=%lu "
	    "already=%lu moved=%lu too_big=%lu errors=%lu%s", cls, j->n.learned, j->n.already,
	    j->n.moved, j->n.skipped, j->n.errors, j->n.store_failed ? " stopped=store_error" : "");
	if (j->json) {
		strbuf_printf(out, "{\"class\":\"%s\",\"learned\":%lu,\"already\":%lu,\"moved\":%lu,"
		    "\"too_big\":%lu,\"errors\":%lu,\"stopped\":%s}\n", cls, j->n.learned + j->n.moved,
		    j->n.already, j->n.moved, j->n.skipped, j->n.errors,
		    j->n.store_failed ? "true" : "false");
	} else {
		bayes_learn_summary(sum, sizeof(sum), j->cls, &j->n);
		strbuf_printf(out, "%s\n", sum);
	}
	control_reply_done(j->reply, j->n.errors ? -1 : 0);
	bayes_learn_leave();
	bayes_free(j->b);
	free(j->body);
	free(j);
}

static void learn_start(const struct mx_config *cfg, int argc, char **argv, const char *body,
    size_t body_len, bool json, struct control_reply *r)
{
	struct strbuf *out = control_reply_out(r);
	struct learn_job *j;
	struct bayes *b;
	uint64_t max;

	b = cfg->rules.bayes.enabled ? bayes_current() : NULL;
	if (b == NULL) {
		strbuf_printf(out, "learn: not available: %s\n", !cfg->rules.bayes.enabled ?
		    "no classifier configured (rules.bayes)" : !config_rules_engine_wanted(cfg) ?
		    "the rules module is off (rules.files is empty, no spamd plugin), and "
		    "the classifier with it" :
		    "the classifier's store is not open (see the log)");
		control_reply_done(r, -1);
		return;
	}
	if (argc != 1 || (strcmp(argv[0], "spam") != 0 && strcmp(argv[0], "ham") != 0) ||
	    body == NULL) {
		bayes_free(b);
		strbuf_printf(out, "usage: learn spam|ham FILE (the message or mbox as the body)\n");
		control_reply_done(r, -1);
		return;
	}
	max = bayes_get_config(b)->max_learn_size;
	if (max && body_len > max) {
		bayes_free(b);
		strbuf_printf(out, "learn: %zu bytes: over rules.bayes.max_learn_size (%llu)\n",
		    body_len, (unsigned long long)max);
		control_reply_done(r, -1);
		return;
	}
	{
		unsigned busy, share;

		if (!bayes_learn_enter(&busy, &share)) {
			bayes_free(b);
			log_event(LOG_LVL_WARNING, NULL, "event=bayes_learn_busy via=control running=%u "
			    "share=%u", busy, share);
			strbuf_printf(out, "learn: busy: %u learns running, learning's share of the "
			    "thread pool (%u): try again later\n", busy, share);
			control_reply_done(r, -1);
			return;
		}
	}
	j = calloc(1, sizeof(*j));
	if (j != NULL && (j->body = malloc(body_len + 1)) != NULL) {
		memcpy(j->body, body, body_len);  /* body is valid only during this call */
		j->body[body_len] = '\0';
		j->len = body_len;
		j->reply = r;
		j->b = b;
		j->cls = strcmp(argv[0], "spam") == 0 ? BAYES_SPAM : BAYES_HAM;
		j->max = max;
		j->json = json;
		j->req.data = j;
		if (uv_queue_work(control_reply_loop(r), &j->req, learn_work_cb, learn_after_cb) == 0)
			return;
	}
	if (j)
		free(j->body);
	free(j);
	bayes_learn_leave();
	bayes_free(b);
	strbuf_printf(out, "learn: out of memory\n");
	control_reply_done(r, -1);
}

const struct control_verb learn_control_verb = {
	.words = "learn", .usage = "learn spam|ham FILE", .start = learn_start
};
