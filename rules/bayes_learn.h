/* bayes_learn.h — the `learn` command: `mxgate -c FILE learn spam|ham PATH...` teaches the
 * classifier from files, maildirs and mbox files (mbox "From " lines stripped), offline,
 * into the store of the config's rules.bayes section. Learning a message twice as the same
 * class is a no-op; as the other class it moves. */
#ifndef MX_BAYES_LEARN_H
#define MX_BAYES_LEARN_H

#include <stdbool.h>
#include <stdio.h>

#include "rules/bayes.h"

/* argv: "learn", "spam"|"ham", PATH... Prints counts to out, problems to err. Returns the
 * process exit code: 0, 1 (errors: unreadable paths, store errors) or 2 (usage). */
int bayes_learn_main(const struct bayes_config *c, const struct cfg_strlist *files, int argc,
    char **argv, FILE *out, FILE *err);

/* What one learning run did. store_failed: the store failed a learn and the run stopped
 * there — the messages after it were not tried (behind a silent Redis each would wait
 * rules.bayes.timeout: an mbox of thousands, hours); errors counts that one failure. */
struct bayes_learn_counts {
	unsigned long learned, already, moved, skipped, errors;
	bool store_failed;
};

/* Learns the content of one file (buf, len): an mbox (two or more "From " separators) as
 * its messages, else one message; messages over max_size (0: no limit) are skipped.
 * Problems go to err (may be NULL) prefixed with where. Adds to *n. At the first store
 * error it stops (n->store_failed), and does nothing when n->store_failed is already set. The path of `mxgate
 * learn` and of the control socket's `learn spam|ham FILE`. */
void bayes_learn_buffer(struct bayes *b, enum bayes_class cls, const char *buf, size_t len,
    uint64_t max_size, const char *where, FILE *err, struct bayes_learn_counts *n);

/* "learned 3 spam (1 already known, 0 moved from ham, 0 too big), 0 errors" into buf;
 * after a store failure "..., 1 errors; stopped at a store error, the rest not tried". */
void bayes_learn_summary(char *buf, size_t size, enum bayes_class cls,
    const struct bayes_learn_counts *n);

#endif
