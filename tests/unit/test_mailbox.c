/* test_mailbox.c — requests handed to store owners on their loops: order, every live owner
 * once, leave, the bound, and a post from another thread while the owners' loops run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "store/mailbox.h"

struct owner {
	int seen[MAILBOX_CAPACITY * 2];
	size_t n;
	bool closed;
};

static void run_record(void *owner, void *msg)
{
	struct owner *o = owner;

	o->seen[o->n++] = *(int *)msg;
}

/* One turn of loop with mb's handle counted (a mailbox alone keeps no loop alive). */
static void spin(uv_loop_t *loop, struct mailbox *mb)
{
	uv_ref((uv_handle_t *)&mb->async);
	uv_run(loop, UV_RUN_NOWAIT);
	uv_unref((uv_handle_t *)&mb->async);
}

static void closed_mark(void *owner)
{
	((struct owner *)owner)->closed = true;
}

/* "drained oldest first, on the owner's loop": three posts, one wake-up, in order */
static void test_mailbox_order(void **state)
{
	struct mailbox_board board = MAILBOX_BOARD_INIT("t");
	uv_loop_t loop;
	struct mailbox mb;
	struct owner o = { 0 };
	int v[3] = { 1, 2, 3 };
	atomic_int parts;

	(void)state;
	atomic_init(&parts, 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(mailbox_open(&mb, &board, &loop, run_record, &o), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(mailbox_post_all(&board, &v[i], &parts, NULL), 1);
	assert_int_equal(atomic_load(&parts), 3);
	assert_int_equal(o.n, 0);           /* nothing runs on the poster's side */
	spin(&loop, &mb);
	assert_int_equal(o.n, 3);
	assert_int_equal(o.seen[0], 1);
	assert_int_equal(o.seen[1], 2);
	assert_int_equal(o.seen[2], 3);
	assert_true(mailbox_leave(&mb));
	mailbox_close(&mb, closed_mark);
	uv_run(&loop, UV_RUN_DEFAULT);      /* the handle is unref'd: the close ends the run */
	assert_true(o.closed);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* "every live owner once; one that left gets nothing; what it held is drained by hand" */
static void test_mailbox_leave(void **state)
{
	struct mailbox_board board = MAILBOX_BOARD_INIT("t");
	uv_loop_t loop;
	struct mailbox a, b;
	struct owner oa = { 0 }, ob = { 0 };
	int v[2] = { 7, 8 };
	size_t full = 99;

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(mailbox_open(&a, &board, &loop, run_record, &oa), 0);
	assert_int_equal(mailbox_open(&b, &board, &loop, run_record, &ob), 0);
	assert_int_equal(mailbox_post_all(&board, &v[0], NULL, &full), 2);
	assert_int_equal(full, 0);
	assert_true(mailbox_leave(&b));
	assert_false(mailbox_leave(&b));   /* once */
	assert_int_equal(mailbox_post_all(&board, &v[1], NULL, NULL), 1);
	mailbox_drain(&b);                  /* as an owner going away does */
	assert_int_equal(ob.n, 1);
	assert_int_equal(ob.seen[0], 7);
	spin(&loop, &a);
	assert_int_equal(oa.n, 2);
	assert_int_equal(ob.n, 1);
	assert_true(mailbox_leave(&a));
	mailbox_close(&a, closed_mark);
	mailbox_close(&b, closed_mark);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_true(oa.closed && ob.closed);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* "full inbox: the post skips that owner and says so; the others still get it" */
static void test_mailbox_full(void **state)
{
	struct mailbox_board board = MAILBOX_BOARD_INIT("t");
	uv_loop_t loop;
	struct mailbox a, b;
	struct owner *oa = calloc(1, sizeof(*oa)), *ob = calloc(1, sizeof(*ob));
	int v = 5;
	size_t full = 0;
	atomic_int parts;

	(void)state;
	atomic_init(&parts, 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(mailbox_open(&a, &board, &loop, run_record, oa), 0);
	for (int i = 0; i < MAILBOX_CAPACITY; i++)
		assert_int_equal(mailbox_post_all(&board, &v, &parts, &full), 1);
	assert_int_equal(mailbox_open(&b, &board, &loop, run_record, ob), 0);
	assert_int_equal(mailbox_post_all(&board, &v, &parts, &full), 1);   /* b only */
	assert_int_equal(full, 1);
	assert_int_equal(atomic_load(&parts), MAILBOX_CAPACITY + 1);
	spin(&loop, &a);
	assert_int_equal(oa->n, MAILBOX_CAPACITY);
	assert_int_equal(ob->n, 1);
	/* room again once drained, and the ring wraps in order */
	for (int i = 0; i < 10; i++)
		mailbox_post_all(&board, &v, NULL, NULL);
	spin(&loop, &a);
	assert_int_equal(oa->n, MAILBOX_CAPACITY + 10);
	mailbox_leave(&a);
	mailbox_leave(&b);
	mailbox_close(&a, NULL);
	mailbox_close(&b, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(oa);
	free(ob);
}

/* "posted from another thread while the owner's loop runs": every request arrives, once,
 * in order, and the count raised by the post is never behind the runs */
struct xthread {
	struct mailbox_board board;
	struct mailbox mb;
	uv_loop_t loop;
	uv_async_t stop;
	atomic_int parts, runs;
	int last;
	bool order_ok, parts_ok;
};

static void run_count(void *owner, void *msg)
{
	struct xthread *x = owner;
	int v = *(int *)msg;

	if (v != x->last + 1)
		x->order_ok = false;
	x->last = v;
	/* the poster raised parts before this could run */
	if (atomic_load(&x->parts) <= atomic_load(&x->runs))
		x->parts_ok = false;
	atomic_fetch_add(&x->runs, 1);
}

static void stop_cb(uv_async_t *a)
{
	struct xthread *x = a->data;

	mailbox_drain(&x->mb);
	uv_close((uv_handle_t *)a, NULL);
	mailbox_leave(&x->mb);
	mailbox_close(&x->mb, NULL);
}

static void loop_thread(void *arg)
{
	struct xthread *x = arg;

	uv_run(&x->loop, UV_RUN_DEFAULT);
}

static void test_mailbox_threads(void **state)
{
	struct xthread *x = calloc(1, sizeof(*x));
	static int vals[5000];
	uv_thread_t th;

	(void)state;
	x->board = (struct mailbox_board)MAILBOX_BOARD_INIT("t");
	x->order_ok = x->parts_ok = true;
	atomic_init(&x->parts, 0);
	atomic_init(&x->runs, 0);
	assert_int_equal(uv_loop_init(&x->loop), 0);
	assert_int_equal(mailbox_open(&x->mb, &x->board, &x->loop, run_count, x), 0);
	assert_int_equal(uv_async_init(&x->loop, &x->stop, stop_cb), 0);
	x->stop.data = x;
	assert_int_equal(uv_thread_create(&th, loop_thread, x), 0);
	for (int i = 0; i < 5000; i++) {
		vals[i] = i + 1;
		while (mailbox_post_all(&x->board, &vals[i], &x->parts, NULL) == 0)
			uv_sleep(1);        /* full: the loop catches up */
	}
	uv_async_send(&x->stop);
	uv_thread_join(&th);
	assert_int_equal(atomic_load(&x->runs), 5000);
	assert_true(x->order_ok);
	assert_true(x->parts_ok);
	assert_int_equal(uv_loop_close(&x->loop), 0);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mailbox_order),
		cmocka_unit_test(test_mailbox_leave),
		cmocka_unit_test(test_mailbox_full),
		cmocka_unit_test(test_mailbox_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
