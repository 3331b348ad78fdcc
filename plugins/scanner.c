/* scanner.c — one request/reply exchange with a content scanner, see scanner.h. */
#include "scanner.h"

#include <stdlib.h>
#include <string.h>

struct scanner {
	struct pconn *conn;
	const struct scanner_codec *codec;
	void *arg;
	uv_timer_t timer;
	bool timer_open, connected, finished;
	char *reply;                 /* cap + 1 bytes, grown as the reply comes (cap <= max);
	                              * none with codec->feed */
	size_t len, cap, max;        /* len: the octets read (with feed, counted only) */
};

static const char *const scanner_status_names[] = { "ok", "unreachable", "closed", "io_error",
	"too_big", "bad_reply", "timeout", "send_failed" };

const char *scanner_status_name(enum scanner_status st)
{
	return (unsigned)st < sizeof(scanner_status_names) / sizeof(scanner_status_names[0]) ?
	    scanner_status_names[st] : "?";
}

static void scanner_timer_close_cb(uv_handle_t *h)
{
	struct scanner *s = h->data;

	free(s->reply);
	free(s);
}

void scanner_free(struct scanner *s)
{
	if (s == NULL)
		return;
	s->finished = true;
	pconn_close(s->conn);
	s->conn = NULL;
	if (s->timer_open) {
		s->timer_open = false;
		uv_close((uv_handle_t *)&s->timer, scanner_timer_close_cb);
		return;
	}
	free(s->reply);
	free(s);
}

/* The one outcome; the owner may free s inside done, so this is the caller's last step. */
static void scanner_finish(struct scanner *s, enum scanner_status st, int err)
{
	if (s->finished)
		return;
	s->finished = true;
	if (s->timer_open)
		uv_timer_stop(&s->timer);
	s->codec->done(s->arg, st, s->len && s->reply ? s->reply : NULL, s->len, err);
}

/* The reply is over (the peer closed, or failed after sending some): complete or not? */
static void scanner_end_of_reply(struct scanner *s, int err)
{
	int rc;

	if (s->len == 0) {
		scanner_finish(s, err ? (s->connected ? SCANNER_IO_ERROR : SCANNER_UNREACHABLE) :
		    SCANNER_CLOSED, err);
		return;
	}
	if (s->codec->feed) {
		rc = s->codec->feed(NULL, 0, true, s->arg);
		scanner_finish(s, rc == 0 ? SCANNER_OK : err ? SCANNER_IO_ERROR :
		    rc == -2 ? SCANNER_TOO_BIG : SCANNER_BAD_REPLY, err);
		return;
	}
	if (s->codec->complete == NULL) {
		/* read to the end: a reply cut by an error is not a reply */
		scanner_finish(s, err ? SCANNER_IO_ERROR : SCANNER_OK, err);
		return;
	}
	rc = s->codec->complete(s->reply, s->len, true, s->arg);
	if (rc == 0)
		scanner_finish(s, SCANNER_OK, err);
	else
		scanner_finish(s, err ? SCANNER_IO_ERROR : SCANNER_BAD_REPLY, err);
}

/* Appends reply bytes (at most max in all) and asks the codec whether that is all. */
static void scanner_data(struct scanner *s, const char *data, size_t n)
{
	size_t take = n;
	int rc;

	if (s->codec->feed) {        /* the codec keeps what it needs: nothing here */
		s->len += n;
		rc = s->codec->feed(data, n, false, s->arg);
		if (rc != 1)
			scanner_finish(s, rc == 0 ? SCANNER_OK : rc == -2 ? SCANNER_TOO_BIG : SCANNER_BAD_REPLY, 0);
		return;
	}
	if (take > s->max - s->len)
		take = s->max - s->len;
	/* grown by doubling, not max + 1 at once: rspamd's max is its JSON plus a body of
	 * limits.max_message_size, which a reply seldom holds */
	if (s->reply == NULL || s->len + take > s->cap) {
		size_t cap = s->cap ? s->cap : 16384;
		char *nr;

		while (cap < s->len + take)
			cap = cap > s->max / 2 ? s->max : cap * 2;
		if (cap > s->max)
			cap = s->max;
		if ((nr = realloc(s->reply, cap + 1)) == NULL) {
			scanner_finish(s, SCANNER_IO_ERROR, UV_ENOMEM);
			return;
		}
		s->reply = nr;
		s->cap = cap;
	}
	memcpy(s->reply + s->len, data, take);
	s->len += take;
	s->reply[s->len] = '\0';
	if (s->codec->complete == NULL) {
		if (take < n)
			scanner_finish(s, SCANNER_TOO_BIG, 0);
		return;
	}
	rc = s->codec->complete(s->reply, s->len, false, s->arg);
	if (rc == 0)
		scanner_finish(s, SCANNER_OK, 0);
	else if (rc < 0)
		scanner_finish(s, SCANNER_BAD_REPLY, 0);
	else if (take < n || s->len == s->max)
		scanner_finish(s, SCANNER_TOO_BIG, 0);
}

static void scanner_event_cb(struct pconn *c, enum pconn_event ev, const char *data, size_t len,
    int err, void *arg)
{
	struct scanner *s = arg;

	if (s->finished)
		return;
	switch (ev) {
	case PCONN_CONNECTED:
		s->connected = true;
		if (s->codec->send(s, s->arg) < 0)
			scanner_finish(s, SCANNER_SEND_FAILED, 0);
		return;
	case PCONN_DATA:
		scanner_data(s, data, len);
		return;
	case PCONN_EOF:
		scanner_end_of_reply(s, 0);
		return;
	default:
		scanner_end_of_reply(s, err ? err : UV_EIO);
		return;
	}
}

static void scanner_timeout_cb(uv_timer_t *t)
{
	struct scanner *s = t->data;

	scanner_finish(s, SCANNER_TIMEOUT, UV_ETIMEDOUT);
}

struct scanner *scanner_start(uv_loop_t *loop, const struct pconn_addr *addr,
    const struct scanner_codec *codec, size_t max_reply, uint64_t timeout_ms, void *arg)
{
	struct scanner *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->codec = codec;
	s->arg = arg;
	s->max = max_reply ? max_reply : 1;
	s->conn = pconn_new(loop, addr, scanner_event_cb, s);
	if (s->conn == NULL) {
		free(s);
		return NULL;
	}
	if (timeout_ms) {
		uv_timer_init(loop, &s->timer);
		s->timer.data = s;
		s->timer_open = true;
		uv_timer_start(&s->timer, scanner_timeout_cb, timeout_ms, 0);
	}
	return s;
}

int scanner_write(struct scanner *s, const void *data, size_t len, void *owned)
{
	if (s->conn == NULL || s->finished) {
		free(owned);
		return -1;
	}
	return pconn_write(s->conn, data, len, owned);
}
