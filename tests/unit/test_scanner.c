/* test_scanner.c — the scanner client (plugins/scanner.c) against scripted peers on loopback,
 * one labelled row per behaviour: a reply the codec calls complete while the peer stays, a
 * reply to the close, a close without a reply, a refused connect, a reply over the bound, a
 * malformed reply, a peer that never answers (the timeout), a reply followed by a reset, and a
 * scan freed before it ends; the same for a codec that keeps the reply itself (feed). The request the codec queued must reach the peer whole. */
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "plugins/scanner.h"

enum peer_mode {
	PEER_REPLY_NUL_STAY = 0,   /* "stream: OK\0", then waits for the client to close */
	PEER_REPLY_CLOSE,          /* "REPLY", then closes */
	PEER_CLOSE,                /* closes without a byte */
	PEER_BIG,                  /* 4096 bytes without the end marker, then waits */
	PEER_GARBAGE,              /* "XXX\0" (the codec calls it malformed) */
	PEER_SILENT,               /* reads, never answers */
	PEER_REPLY_RESET,          /* "REPLY" then an RST */
};

struct peer {
	int lfd, port;
	enum peer_mode mode;
	pthread_t th;
	char got[256];             /* the request received */
	size_t gotlen;
};

static const char request[] = "REQUEST 0123456789";

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	int c = accept(p->lfd, NULL, NULL);
	char buf[256];
	ssize_t n;

	if (c < 0)
		return NULL;
	while (p->gotlen < sizeof(request) - 1 &&
	    (n = read(c, p->got + p->gotlen, sizeof(p->got) - 1 - p->gotlen)) > 0)
		p->gotlen += (size_t)n;
	switch (p->mode) {
	case PEER_REPLY_NUL_STAY:
		(void)!write(c, "stream: OK", 11);          /* with its NUL */
		break;
	case PEER_REPLY_CLOSE:
		(void)!write(c, "REPLY", 5);
		break;
	case PEER_BIG:
		memset(buf, 'b', sizeof(buf));
		for (int i = 0; i < 16; i++)
			(void)!write(c, buf, sizeof(buf));
		break;
	case PEER_GARBAGE:
		(void)!write(c, "XXX", 4);
		break;
	case PEER_REPLY_RESET: {
		struct linger l = { 1, 0 };

		(void)!write(c, "REPLY", 5);
		usleep(50 * 1000);
		setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		close(c);
		return NULL;
	}
	default:
		break;
	}
	if (p->mode == PEER_REPLY_NUL_STAY || p->mode == PEER_BIG || p->mode == PEER_SILENT ||
	    p->mode == PEER_GARBAGE)
		while (read(c, buf, sizeof(buf)) > 0)   /* until the client goes */
			;
	close(c);
	return NULL;
}

static void peer_start(struct peer *p, enum peer_mode mode)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	memset(p, 0, sizeof(*p));
	p->mode = mode;
	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(p->lfd, 4), 0);
	getsockname(p->lfd, (struct sockaddr *)&sa, &len);
	p->port = ntohs(sa.sin_port);
	pthread_create(&p->th, NULL, peer_main, p);
}

static void peer_stop(struct peer *p)
{
	shutdown(p->lfd, SHUT_RDWR);
	close(p->lfd);
	pthread_join(p->th, NULL);
}

struct result {
	int calls;
	enum scanner_status st;
	char reply[64];
	size_t len;
	int err;
	struct scanner *s;
	bool free_in_done;
};

/* Sends the request in two pieces, one owned, one borrowed. */
static int t_send(struct scanner *s, void *arg)
{
	char *head = strdup("REQUEST ");

	if (head == NULL || scanner_write(s, head, 8, head) < 0)
		return -1;
	return scanner_write(s, request + 8, sizeof(request) - 1 - 8, NULL);
}

/* Complete at a NUL; "XXX" is malformed; at the close whatever came is the reply. */
static int t_complete(const char *reply, size_t len, bool eof, void *arg)
{
	if (len >= 3 && memcmp(reply, "XXX", 3) == 0)
		return -1;
	return eof || memchr(reply, '\0', len) ? 0 : 1;
}

static void t_done(void *arg, enum scanner_status st, char *reply, size_t len, int err)
{
	struct result *r = arg;

	r->calls++;
	r->st = st;
	r->err = err;
	r->len = len;
	if (reply)
		snprintf(r->reply, sizeof(r->reply), "%.*s", (int)(len < 63 ? len : 63), reply);
	if (r->free_in_done) {
		scanner_free(r->s);
		r->s = NULL;
	}
}

static const struct scanner_codec t_codec = { t_send, t_complete, t_done };

/* Runs loop until the result arrived (bounded; the scanner's handles keep it alive). */
static void run_until(uv_loop_t *loop, const int *calls)
{
	for (int i = 0; i < 20000 && *calls == 0; i++)
		uv_run(loop, UV_RUN_ONCE);
}

struct row {
	const char *label;
	enum peer_mode mode;
	bool refused;              /* nobody listens */
	size_t max;
	uint64_t timeout_ms;
	enum scanner_status want;
	const char *want_reply;    /* NULL: not checked */
};

static const struct row rows[] = {
	{ "reply complete while the peer stays", PEER_REPLY_NUL_STAY, false, 1024, 0, SCANNER_OK, "stream: OK" },
	{ "reply read to the close", PEER_REPLY_CLOSE, false, 1024, 0, SCANNER_OK, "REPLY" },
	{ "close without a reply", PEER_CLOSE, false, 1024, 0, SCANNER_CLOSED, NULL },
	{ "connection refused", PEER_CLOSE, true, 1024, 0, SCANNER_UNREACHABLE, NULL },
	{ "reply over the bound", PEER_BIG, false, 1024, 0, SCANNER_TOO_BIG, NULL },
	{ "malformed reply", PEER_GARBAGE, false, 1024, 0, SCANNER_BAD_REPLY, NULL },
	{ "silent peer: the timeout", PEER_SILENT, false, 1024, 100, SCANNER_TIMEOUT, NULL },
	{ "reply, then a reset: the reply stands", PEER_REPLY_RESET, false, 1024, 0, SCANNER_OK, "REPLY" },
};

static void test_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		for (int free_in_done = 0; free_in_done < 2; free_in_done++) {
			const struct row *rw = &rows[i];
			struct result r = { 0 };
			struct pconn_addr addr;
			const char *why;
			struct peer p;
			uv_loop_t loop;
			char text[32];

			peer_start(&p, rw->mode);
			snprintf(text, sizeof(text), "127.0.0.1:%d", p.port);
			if (rw->refused)
				peer_stop(&p);       /* the port is free again: refused */
			assert_int_equal(pconn_addr_parse(text, &addr, &why), 0);
			uv_loop_init(&loop);
			r.free_in_done = free_in_done;
			r.s = scanner_start(&loop, &addr, &t_codec, rw->max, rw->timeout_ms, &r);
			assert_non_null(r.s);
			run_until(&loop, &r.calls);
			if (r.calls != 1 || r.st != rw->want)
				fail_msg("%s: %d calls, status %s, want %s", rw->label, r.calls,
				    scanner_status_name(r.st), scanner_status_name(rw->want));
			if (rw->want_reply && strcmp(r.reply, rw->want_reply) != 0)
				fail_msg("%s: reply '%s'", rw->label, r.reply);
			if (rw->want == SCANNER_TOO_BIG && r.len != rw->max)
				fail_msg("%s: %zu bytes kept", rw->label, r.len);
			scanner_free(r.s);               /* NULL when freed in done */
			uv_run(&loop, UV_RUN_DEFAULT);
			assert_int_equal(r.calls, 1);    /* nothing after the outcome */
			assert_int_equal(uv_loop_close(&loop), 0);
			if (!rw->refused) {
				peer_stop(&p);
				if (rw->mode != PEER_CLOSE && (p.gotlen != sizeof(request) - 1 ||
				    memcmp(p.got, request, p.gotlen) != 0))
					fail_msg("%s: the peer got '%.*s'", rw->label, (int)p.gotlen, p.got);
			}
		}
	}
}

/* A codec that keeps the reply itself (scanner_codec.feed): every read reaches it as it
 * comes, once more at the close; the scanner keeps none (done gets NULL and the count). */
struct fed { struct result r; char got[64]; size_t len, total; int eofs; };

static int t_feed(const char *data, size_t len, bool eof, void *arg)
{
	struct fed *f = arg;

	if (eof) {
		f->eofs++;
		return f->len ? 0 : -1;
	}
	f->total += len;
	if (f->total > 1024)
		return -2;             /* the codec's own bound */
	memcpy(f->got + f->len, data, len < sizeof(f->got) - 1 - f->len ? len : sizeof(f->got) - 1 - f->len);
	f->len += len < sizeof(f->got) - 1 - f->len ? len : sizeof(f->got) - 1 - f->len;
	return t_complete(f->got, f->len, false, NULL);
}

static void t_feed_done(void *arg, enum scanner_status st, char *reply, size_t len, int err)
{
	struct fed *f = arg;

	assert_null(reply);
	t_done(&f->r, st, NULL, len, err);
}

static const struct scanner_codec t_feed_codec = { t_send, NULL, t_feed_done, t_feed };

static const struct row feed_rows[] = {
	{ "fed: complete while the peer stays", PEER_REPLY_NUL_STAY, false, 1, 0, SCANNER_OK, "stream: OK" },
	{ "fed: read to the close", PEER_REPLY_CLOSE, false, 1, 0, SCANNER_OK, "REPLY" },
	{ "fed: close without a reply", PEER_CLOSE, false, 1, 0, SCANNER_CLOSED, NULL },
	{ "fed: over the codec's bound", PEER_BIG, false, 1, 0, SCANNER_TOO_BIG, NULL },
	{ "fed: malformed", PEER_GARBAGE, false, 1, 0, SCANNER_BAD_REPLY, NULL },
};

static void test_feed(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(feed_rows) / sizeof(feed_rows[0]); i++) {
		const struct row *rw = &feed_rows[i];
		struct fed f = { .r = { 0 } };
		struct pconn_addr addr;
		const char *why;
		struct peer p;
		uv_loop_t loop;
		char text[32];

		peer_start(&p, rw->mode);
		snprintf(text, sizeof(text), "127.0.0.1:%d", p.port);
		assert_int_equal(pconn_addr_parse(text, &addr, &why), 0);
		uv_loop_init(&loop);
		f.r.s = scanner_start(&loop, &addr, &t_feed_codec, rw->max, 0, &f);
		assert_non_null(f.r.s);
		run_until(&loop, &f.r.calls);
		if (f.r.calls != 1 || f.r.st != rw->want)
			fail_msg("%s: %d calls, status %s, want %s", rw->label, f.r.calls,
			    scanner_status_name(f.r.st), scanner_status_name(rw->want));
		if (rw->want_reply && strcmp(f.got, rw->want_reply) != 0)
			fail_msg("%s: reply '%s'", rw->label, f.got);
		if (rw->want != SCANNER_CLOSED && f.r.len != f.total)
			fail_msg("%s: %zu octets counted, %zu fed", rw->label, f.r.len, f.total);
		/* the close reaches the codec only when it still needed more */
		if (f.eofs != (rw->mode == PEER_REPLY_CLOSE))
			fail_msg("%s: %d closes fed", rw->label, f.eofs);
		scanner_free(f.r.s);
		uv_run(&loop, UV_RUN_DEFAULT);
		assert_int_equal(f.r.calls, 1);
		assert_int_equal(uv_loop_close(&loop), 0);
		peer_stop(&p);
	}
}

/* Freed before the outcome (a cancelled call): nothing is called, nothing leaks. */
static void test_free_early(void **state)
{
	struct result r = { 0 };
	struct pconn_addr addr;
	const char *why;
	struct peer p;
	uv_loop_t loop;
	char text[32];

	(void)state;
	peer_start(&p, PEER_SILENT);
	snprintf(text, sizeof(text), "127.0.0.1:%d", p.port);
	assert_int_equal(pconn_addr_parse(text, &addr, &why), 0);
	uv_loop_init(&loop);
	r.s = scanner_start(&loop, &addr, &t_codec, 64, 60000, &r);
	for (int i = 0; i < 5; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	scanner_free(r.s);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(r.calls, 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	peer_stop(&p);
	scanner_free(NULL);
}

int main(void)
{
	/* As the daemon does (main.c): a peer that closes while we write must be an EPIPE the
	 * scanner reports, not a signal that kills the test. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_feed),
		cmocka_unit_test(test_free_early),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
