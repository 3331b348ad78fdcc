/* rules_control.c — the rules engine's part of the control socket (proxy/control_verbs.h):
 * messages each scoring rule hit (status views), and `learn spam|ham FILE` (mxgatectl sends
 * the file as the request body) into the running daemon's classifier, by the same path as
 * `mxgate learn` (bayes_learn_buffer: one message or an mbox). */
#include "proxy/config.h"
#include "proxy/control_verbs.h"
#include "bayes_learn.h"
#include "log.h"
#include "rules.h"

#include <string.h>

static void rule_hits_foreach(const struct mx_config *cfg,
    void (*cb)(const char *rule, uint64_t hits, void *arg), void *arg)
{
	(void)cfg;
	rules_foreach_counter(cb, arg);
}

const struct control_figures rule_hits_control_figures = { "rule_hits", rule_hits_foreach };

/* Learning runs on the main loop (verbs answer synchronously): bounded by
 * rules.bayes.max_learn_size, a few ms per message. */
static int learn_run(const struct mx_config *cfg, int argc, char **argv, const char *body,
    size_t body_len, bool json, struct strbuf *out)
{
	struct bayes_learn_counts n = { 0 };
	enum bayes_class cls;
	struct bayes *b;
	uint64_t max;
	char sum[256];

	b = cfg->rules.bayes.enabled ? bayes_current() : NULL;
	if (b == NULL) {
		strbuf_printf(out, "learn: not available: %s\n", !cfg->rules.bayes.enabled ?
		    "no classifier configured (rules.bayes)" : cfg->rules.files.n == 0 ?
		    "the rules module is off (rules.files is empty), and the classifier with it" :
		    "the classifier's store is not open (see the log)");
		return -1;
	}
	if (argc != 1 || (strcmp(argv[0], "spam") != 0 && strcmp(argv[0], "ham") != 0) ||
	    body == NULL) {
		bayes_free(b);
		strbuf_printf(out, "usage: learn spam|ham FILE (the message or mbox as the body)\n");
		return -1;
	}
	cls = strcmp(argv[0], "spam") == 0 ? BAYES_SPAM : BAYES_HAM;
	max = bayes_get_config(b)->max_learn_size;
	if (max && body_len > max) {
		bayes_free(b);
		strbuf_printf(out, "learn: %zu bytes: over rules.bayes.max_learn_size (%llu)\n",
		    body_len, (unsigned long long)max);
		return -1;
	}
	bayes_learn_buffer(b, cls, body, body_len, max, "control", NULL, &n);
	bayes_free(b);
	log_event(LOG_LVL_INFO, NULL, "event=bayes_learn via=control class=%s learned=%lu "
	    "already=%lu moved=%lu too_big=%lu errors=%lu", argv[0], n.learned, n.already, n.moved,
	    n.skipped, n.errors);
	if (json) {
		strbuf_printf(out, "{\"class\":\"%s\",\"learned\":%lu,\"already\":%lu,\"moved\":%lu,"
		    "\"too_big\":%lu,\"errors\":%lu}\n", argv[0], n.learned + n.moved, n.already,
		    n.moved, n.skipped, n.errors);
	} else {
		bayes_learn_summary(sum, sizeof(sum), cls, &n);
		strbuf_printf(out, "%s\n", sum);
	}
	return n.errors ? -1 : 0;
}

const struct control_verb learn_control_verb = {
	"learn", "learn spam|ham FILE", learn_run
};
