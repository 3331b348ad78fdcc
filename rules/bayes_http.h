/* bayes_http.h — learning through the running daemon: POST /learn/spam and POST
 * /learn/ham on the metrics listener, a message or an mbox as the request body (at most
 * rules.bayes.max_learn_size), from the clients rules.bayes.learn_from allows (localhost by
 * default). Answers 200 "learned" | "already" | "moved" for a message, 200 and the counts'
 * line ("learned 3 spam (...), 0 errors") for an mbox, 400 (an empty message), 403 (client
 * not allowed; 403, 404 and 503-no-classifier are answered at the head, before the body is
 * read), 404 (other path), 413 (too big), 503 (no classifier configured; busy; a store
 * error — learning stopped there, "store error: " and the counts so far for an mbox; the
 * listener's: a body that cannot be held in limits.spool_dir). The body is read where the
 * listener holds it (memory or the spool file, pinned: metrics.h), not copied. The
 * learning itself runs in libuv's thread pool, by the path of `mxgate learn`
 * (bayes_learn_buffer). */
#ifndef MX_BAYES_HTTP_H
#define MX_BAYES_HTTP_H

#include <stdint.h>

/* Registers the handler with the metrics endpoint (metrics_register_post), and the
 * classifier's counters (mxgate_bayes_scanned_total, _abstained_total, _errors_total,
 * _learned_spam_total, _learned_ham_total, _learned_already_total). max_body: the largest
 * body accepted (the config's max_learn_size at start). 0 or -1. */
int bayes_http_register(uint64_t max_body);

#endif
