/* control_verbs.h — control socket verbs and status figures offered by modules outside
 * proxy/ (filters/, rules/, plugins/), so the control socket and the status page reach
 * their state without proxy/ including their headers.
 *
 * A module defines `const struct control_verb <name>_control_verb = { ... };` in its own
 * file and adds `extern` + an entry to the list in proxy/control_verbs.c. A request whose
 * first words equal the verb's `words` (e.g. "flush dns", "learn") runs it; when no module
 * offers "learn", the control socket says so ("not available").
 *
 * A verb answers at once (`run`) or later (`start`: work on the workers' loops, a peer's
 * answer); the socket holds that connection's next requests until it has answered. */
#ifndef MX_CONTROL_VERBS_H
#define MX_CONTROL_VERBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "headers.h"

struct mx_config;

/* A reply a verb gives later (struct control_verb.start). */
struct control_reply;
/* Where the reply's payload goes (text, or JSON when the request asked for it); valid until
 * control_reply_done. */
struct strbuf *control_reply_out(struct control_reply *r);
/* The main loop, for the verb's own handles (a uv_async_t its workers wake). */
uv_loop_t *control_reply_loop(struct control_reply *r);
/* Completes r: rc 0 (OK) or -1 (ERR, the payload says why). Exactly once, on the main
 * loop's thread, from inside start or later; r is gone afterwards. When the asker went
 * away meanwhile the reply is dropped. */
void control_reply_done(struct control_reply *r, int rc);

struct control_verb {
	const char *words;           /* "flush dns": the request's leading words */
	const char *usage;           /* "flush dns" / "learn spam|ham (message on stdin)" */
	/* Runs on the main loop's thread with the config in force; argv[0] is the first word
	 * after `words`, body/body_len the request's body (NULL/0 without one). Writes the
	 * reply payload to out (text, or JSON when json). Returns 0 (OK) or -1 (ERR, out says
	 * why). Must not block for long: the main loop runs health checks and metrics too. */
	int (*run)(const struct mx_config *cfg, int argc, char **argv, const char *body, size_t body_len,
	    bool json, struct strbuf *out);
	/* Instead of run (which is then NULL), a verb that answers later: called like run on
	 * the main loop's thread (cfg, argv and body are valid only during the call: copy what
	 * the work needs), it completes r with control_reply_done, at once or later. The work
	 * must be bounded in time (timeouts on peers): the connection waits for it. */
	void (*start)(const struct mx_config *cfg, int argc, char **argv, const char *body,
	    size_t body_len, bool json, struct control_reply *r);
	/* Answers during the drain after SIGTERM too (else refused: "mxgate is shutting
	 * down"). Only for a verb whose work is bounded and completes whatever the workers
	 * do meanwhile: a request a worker has taken is done before its module's state is
	 * freed (mailbox_drain, lmdb_writer_free, redis_store_free's NULL replies), so the
	 * main loop, which outlives the workers, gets every answer. */
	bool during_drain;
};

/* NULL-terminated list (control_verbs.c). */
extern const struct control_verb *const control_module_verbs[];

/* Figures a module keeps that the status views show (status.h): a name and a walk over
 * (key, count) pairs, e.g. "rule_hits" (rule -> messages it hit) or "dnsbl_errors" (list ->
 * errors). Called on the main loop's thread with the config in force; cb's key is only
 * valid during the call. */
struct control_figures {
	const char *name;
	void (*foreach)(const struct mx_config *cfg, void (*cb)(const char *key, uint64_t n, void *arg),
	    void *arg);
};
/* NULL-terminated list (control_verbs.c). */
extern const struct control_figures *const control_module_figures[];
/* The figures called name, or NULL when no module offers them. */
const struct control_figures *control_figures_find(const char *name);

#endif
