/* bayes_learn.h — the `learn` command: `mxgate -c FILE learn spam|ham PATH...` teaches the
 * classifier from files, maildirs and mbox files (mbox "From " lines stripped), offline,
 * into the store of the config's rules.bayes section. Learning a message twice as the same
 * class is a no-op; as the other class it moves. */
#ifndef MX_BAYES_LEARN_H
#define MX_BAYES_LEARN_H

#include <stdio.h>

#include "rules/bayes.h"

/* argv: "learn", "spam"|"ham", PATH... Prints counts to out, problems to err. Returns the
 * process exit code: 0, 1 (errors: unreadable paths, store errors) or 2 (usage). */
int bayes_learn_main(const struct bayes_config *c, int argc, char **argv, FILE *out, FILE *err);

#endif
