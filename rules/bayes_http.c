/* bayes_http.c — POST /learn/{spam,ham} on the metrics listener; see bayes_http.h. */
#include "bayes_http.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bayes.h"
#include "bayes_learn.h"
#include "log.h"
#include "metrics.h"
#include "msgbuf.h"

struct bayes_http_job {
	uv_work_t req;
	struct bayes *b;
	struct msgbuf_pin *pin;         /* holds msg[0..len) (memory or the spool file) */
	const char *msg;
	size_t len;
	enum bayes_class cls;
	bool mbox;                      /* the body starts with a From_ line */
	struct bayes_learn_counts n;
	struct metrics_post_reply *reply;
};

/* One message or an mbox, by the path of `mxgate learn` and `mxgatectl learn`: it stops at
 * the first store error (the messages after it are not tried). */
static void bayes_http_work_cb(uv_work_t *req)
{
	struct bayes_http_job *j = req->data;

	bayes_learn_buffer(j->b, j->cls, j->msg, j->len, bayes_get_config(j->b)->max_learn_size,
	    "http", NULL, &j->n);
}

/* One message: 200 learned|already|moved, 503 "store error" when the store failed. An
 * mbox: 200 and the counts' line, or 503 "store error: " and the counts so far. */
static void bayes_http_after_cb(uv_work_t *req, int status)
{
	struct bayes_http_job *j = req->data;
	const struct bayes_learn_counts *n = &j->n;
	const char *result;
	char text[320], sum[256];

	if (status != 0) {
		j->n.errors++;                  /* cancelled: the daemon is stopping */
		j->n.store_failed = true;
	}
	bayes_learn_summary(sum, sizeof(sum), j->cls, n);
	if (n->store_failed) {
		result = "error";
		if (j->mbox)
			snprintf(text, sizeof(text), "store error: %s\n", sum);
		else
			snprintf(text, sizeof(text), "store error\n");
	} else if (!j->mbox && n->learned + n->already + n->moved == 1) {
		result = n->learned ? "learned" : n->already ? "already" : "moved";
		snprintf(text, sizeof(text), "%s\n", result);
	} else {
		result = "mbox";
		snprintf(text, sizeof(text), "%s\n", sum);
	}
	metrics_post_reply(j->reply, n->store_failed ? 503 : 200, text);
	log_event(LOG_LVL_INFO, NULL, "event=bayes_learn via=http class=%s result=%s learned=%lu "
	    "already=%lu moved=%lu too_big=%lu errors=%lu%s", j->cls == BAYES_SPAM ? "spam" : "ham",
	    result, n->learned, n->already, n->moved, n->skipped, n->errors,
	    n->store_failed ? " stopped=store_error" : "");
	bayes_learn_leave();
	bayes_free(j->b);
	msgbuf_unpin(j->pin);
	free(j);
}

static void bayes_http_post_cb(void *arg, uv_loop_t *loop, const char *path, struct msgbuf_pin *pin,
    const char *body, size_t len, const struct sockaddr *client, struct metrics_post_reply *reply)
{
	struct bayes *b = bayes_current();
	struct bayes_http_job *j;
	enum bayes_class cls;

	if (b == NULL) {
		metrics_post_reply(reply, 503, "no classifier configured (rules.bayes)\n");
		goto out;
	}
	if (!cfg_cidrlist_match(&bayes_get_config(b)->learn_from, client)) {
		metrics_post_reply(reply, 403, "not allowed (rules.bayes.learn_from)\n");
		goto out;
	}
	if (strcmp(path, "/learn/spam") == 0)
		cls = BAYES_SPAM;
	else if (strcmp(path, "/learn/ham") == 0)
		cls = BAYES_HAM;
	else {
		metrics_post_reply(reply, 404, "POST /learn/spam or /learn/ham\n");
		goto out;
	}
	{
		size_t k = 0;

		while (k < len && isspace((unsigned char)body[k]))
			k++;
		if (k == len) {
			/* nothing to learn: it would count a message with no tokens */
			metrics_post_reply(reply, 400, "empty message\n");
			goto out;
		}
	}
	if (len > bayes_get_config(b)->max_learn_size) {
		metrics_post_reply(reply, 413, "message too big (rules.bayes.max_learn_size)\n");
		goto out;
	}
	{
		unsigned busy, share;
		char text[160];

		if (!bayes_learn_enter(&busy, &share)) {
			snprintf(text, sizeof(text), "busy: %u learns running, learning's share of the "
			    "thread pool (%u): try again later\n", busy, share);
			log_event(LOG_LVL_WARNING, NULL, "event=bayes_learn_busy via=http running=%u "
			    "share=%u", busy, share);
			metrics_post_reply(reply, 503, text);
			goto out;
		}
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		bayes_learn_leave();
		metrics_post_reply(reply, 500, "out of memory\n");
		goto out;
	}
	j->b = b;
	j->pin = pin;
	j->msg = body;
	j->len = len;
	j->cls = cls;
	j->mbox = len > 5 && strncmp(body, "From ", 5) == 0;
	j->reply = reply;
	j->req.data = j;
	if (uv_queue_work(loop, &j->req, bayes_http_work_cb, bayes_http_after_cb) != 0) {
		bayes_learn_leave();
		free(j);
		metrics_post_reply(reply, 500, "cannot queue\n");
		goto out;
	}
	return;
out:
	bayes_free(b);
	msgbuf_unpin(pin);
}

/* At the head, before the body is read: what bayes_http_post_cb would refuse without
 * looking at the body (no classifier, a client outside learn_from, another path), so only
 * a client it would teach may take the body's time (metrics_set_post_check). */
static int bayes_http_check_cb(void *arg, const char *path, const struct sockaddr *client,
    const char **text)
{
	struct bayes *b = bayes_current();
	int code = 0;

	(void)arg;
	if (b == NULL) {
		*text = "no classifier configured (rules.bayes)\n";
		return 503;
	}
	if (!cfg_cidrlist_match(&bayes_get_config(b)->learn_from, client)) {
		*text = "not allowed (rules.bayes.learn_from)\n";
		code = 403;
	} else if (strcmp(path, "/learn/spam") != 0 && strcmp(path, "/learn/ham") != 0) {
		*text = "POST /learn/spam or /learn/ham\n";
		code = 404;
	}
	bayes_free(b);
	return code;
}

/* The classifier's counters as mxgate_bayes_*_total: the i-th of bayes_foreach_counter. */
struct bayes_http_pick { int want, i; uint64_t v; const char *name, *help; };

static void bayes_http_pick_cb(const char *name, const char *help, uint64_t v, void *arg)
{
	struct bayes_http_pick *p = arg;

	if (p->i++ == p->want) {
		p->v = v;
		p->name = name;
		p->help = help;
	}
}

static void bayes_http_collect(void *arg, struct metrics_out *out)
{
	struct bayes_http_pick p = { .want = (int)(intptr_t)arg };

	bayes_foreach_counter(bayes_http_pick_cb, &p);
	metrics_out_sample(out, NULL, NULL, (double)p.v);
}

int bayes_http_register(uint64_t max_body)
{
	for (int i = 0;; i++) {
		struct bayes_http_pick p = { .want = i };

		bayes_foreach_counter(bayes_http_pick_cb, &p);
		if (p.name == NULL)
			break;
		metrics_register_family(p.name, p.help, "counter", bayes_http_collect,
		    (void *)(intptr_t)i);
	}
	if (metrics_register_post("/learn/", (size_t)(max_body ? max_body : 10u << 20),
	    bayes_http_post_cb, NULL) != 0)
		return -1;
	return metrics_set_post_check("/learn/", bayes_http_check_cb);
}
