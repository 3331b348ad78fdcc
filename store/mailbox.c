/* mailbox.c — requests handed to the owners of a store on their loops (mailbox.h). */
#include <string.h>

#include "proxy/log.h"
#include "mailbox.h"

static void mailbox_async_cb(uv_async_t *a)
{
	mailbox_drain(a->data);
}

int mailbox_open(struct mailbox *mb, struct mailbox_board *board, uv_loop_t *loop,
    mailbox_run_fn run, void *owner)
{
	mb->board = board;
	mb->run = run;
	mb->owner = owner;
	mb->live = false;
	mb->head = mb->count = 0;
	if (uv_async_init(loop, &mb->async, mailbox_async_cb) != 0)
		return -1;
	mb->async.data = mb;
	uv_unref((uv_handle_t *)&mb->async);   /* a mailbox alone keeps no loop running */
	pthread_mutex_lock(&board->mu);
	mb->live = true;
	mb->next = board->live;
	board->live = mb;
	pthread_mutex_unlock(&board->mu);
	return 0;
}

bool mailbox_leave(struct mailbox *mb)
{
	if (!mb->live)
		return false;
	pthread_mutex_lock(&mb->board->mu);
	for (struct mailbox **pp = &mb->board->live; *pp; pp = &(*pp)->next)
		if (*pp == mb) {
			*pp = mb->next;
			break;
		}
	mb->live = false;
	pthread_mutex_unlock(&mb->board->mu);
	return true;
}

void mailbox_drain(struct mailbox *mb)
{
	void *batch[MAILBOX_CAPACITY];
	size_t n;

	/* taken under the lock, run without it: a run may post to another board */
	pthread_mutex_lock(&mb->board->mu);
	n = mb->count;
	for (size_t i = 0; i < n; i++)
		batch[i] = mb->inbox[(mb->head + i) % MAILBOX_CAPACITY];
	mb->head = mb->count = 0;
	pthread_mutex_unlock(&mb->board->mu);
	for (size_t i = 0; i < n; i++)
		mb->run(mb->owner, batch[i]);
}

void mailbox_foreach_queued(struct mailbox *mb, void (*fn)(void *arg, void *msg), void *arg)
{
	pthread_mutex_lock(&mb->board->mu);
	for (size_t i = 0; i < mb->count; i++)
		fn(arg, mb->inbox[(mb->head + i) % MAILBOX_CAPACITY]);
	pthread_mutex_unlock(&mb->board->mu);
}

static void mailbox_closed_cb(uv_handle_t *h)
{
	struct mailbox *mb = h->data;

	if (mb->closed)
		mb->closed(mb->owner);
}

void mailbox_close(struct mailbox *mb, mailbox_closed_fn closed)
{
	mb->closed = closed;
	uv_close((uv_handle_t *)&mb->async, mailbox_closed_cb);
}

size_t mailbox_post_all(struct mailbox_board *board, void *msg, atomic_int *parts, size_t *full)
{
	size_t n = 0, skipped = 0;

	pthread_mutex_lock(&board->mu);
	for (struct mailbox *mb = board->live; mb; mb = mb->next) {
		if (mb->count == MAILBOX_CAPACITY) {
			skipped++;
			continue;
		}
		mb->inbox[(mb->head + mb->count) % MAILBOX_CAPACITY] = msg;
		mb->count++;
		if (parts)
			atomic_fetch_add(parts, 1);
		uv_async_send(&mb->async);
		n++;
	}
	if (skipped) {
		bool now;

		log_rated_note(&board->full_rated, 60000, &now);
		if (now)
			log_event(LOG_LVL_WARNING, NULL, "event=mailbox_full module=%s capacity=%d skipped=%zu",
			    board->name, MAILBOX_CAPACITY, skipped);
	}
	pthread_mutex_unlock(&board->mu);
	if (full)
		*full = skipped;
	return n;
}
