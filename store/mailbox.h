/* mailbox.h — requests from any thread handed to the owners of a store, each on its own loop.
 *
 * A module whose store is written by its worker states (greylist's LMDB writers and Redis
 * queues, reputation's) sometimes must change that store from elsewhere — a control verb
 * on the main loop — in order with what each worker has already queued. Each worker state
 * keeps a struct mailbox (a uv_async_t on its loop and a bounded FIFO inbox) and joins its
 * module's struct mailbox_board (the live list); mailbox_post_all() puts one request in
 * every live inbox and wakes each loop, which runs the module's run callback per request,
 * oldest first, after whatever that worker queued before.
 *
 * Ownership: the caller owns the request (void *msg) and keeps it valid until every worker
 * it was posted to has run it (the module counts that: the request's own "parts"). The
 * mailbox is embedded in its worker state, which owns it; the board is static, one per
 * module. The board's mutex guards the live list and every inbox; run callbacks are called
 * without it.
 *
 * Bounded: an inbox holds MAILBOX_CAPACITY requests. A post that finds an inbox full (a
 * loop stuck for a long time, or a flood of control requests) skips that worker: it is not
 * counted in the return value, the caller's *full counts it, and it is logged at most once a
 * minute per board: `event=mailbox_full module=NAME capacity=N skipped=N` (warning). */
#ifndef MX_STORE_MAILBOX_H
#define MX_STORE_MAILBOX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/log.h"

#define MAILBOX_CAPACITY 256

struct mailbox;

/* Runs one request on the mailbox's loop (or in mailbox_drain's caller). owner is the
 * mailbox's owner as given to mailbox_open. */
typedef void (*mailbox_run_fn)(void *owner, void *msg);
/* Called in the async handle's close callback: the owner may be freed there. */
typedef void (*mailbox_closed_fn)(void *owner);

struct mailbox_board {
	const char *name;               /* the module, for the log */
	pthread_mutex_t mu;
	struct mailbox *live;
	struct log_rated full_rated;    /* event=mailbox_full: logged once a minute */
};
#define MAILBOX_BOARD_INIT(module) { .name = (module), .mu = PTHREAD_MUTEX_INITIALIZER }

struct mailbox {
	uv_async_t async;
	struct mailbox_board *board;
	mailbox_run_fn run;
	mailbox_closed_fn closed;
	void *owner;
	bool live;
	struct mailbox *next;           /* on the board's live list */
	void *inbox[MAILBOX_CAPACITY];  /* a ring, under board->mu */
	size_t head, count;
};

/* Sets mb up on loop (its owner's loop, on that loop's thread or before it runs) and puts it
 * on board's live list. The handle does not keep the loop alive. 0, or -1 (the async handle
 * could not be made: mb is not live, requests will not reach this owner). */
int mailbox_open(struct mailbox *mb, struct mailbox_board *board, uv_loop_t *loop,
    mailbox_run_fn run, void *owner);
/* Takes mb off its board: no post reaches it afterwards. True when mb was live (then what is
 * still in its inbox is to be drained, and mb closed with mailbox_close). */
bool mailbox_leave(struct mailbox *mb);
/* Runs and empties mb's inbox, oldest first (on the owner's loop thread). */
void mailbox_drain(struct mailbox *mb);
/* Calls fn(arg, msg) for each request in mb's inbox, oldest first, under the board's lock
 * (fn must not post). For an owner going away that must undo its own state first. */
void mailbox_foreach_queued(struct mailbox *mb, void (*fn)(void *arg, void *msg), void *arg);
/* Closes mb's handle (after mailbox_leave and mailbox_drain); closed(owner) is called from
 * the close callback, where the owner may free the memory mb lives in. */
void mailbox_close(struct mailbox *mb, mailbox_closed_fn closed);

/* Puts msg into every live mailbox of board and wakes each. parts (may be NULL) is raised by
 * one for each mailbox that took msg, before that mailbox's loop can run it (so a request
 * counting its completions cannot see them all done while it is still being posted).
 * Returns how many took it; *full (may be NULL) gets how many were skipped because their
 * inbox was full (logged). */
size_t mailbox_post_all(struct mailbox_board *board, void *msg, atomic_int *parts, size_t *full);

#endif
