/* sasl_dovecot.c — Dovecot authentication protocol v1.x, client side (see sasl_dovecot.h).
 *
 * Ownership: the client owns its requests and one connection object at a time. A
 * connection that is dropped is detached from the client (conn->d = NULL) and closed; its
 * memory goes in the close callback, so a late libuv callback never reaches the client. The
 * client itself is freed in its timer's close callback. */
#include "sasl_dovecot.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define SD_RETRY_MS 1000      /* after a failed connection, new requests fail at once this long */

/* ---- addresses ------------------------------------------------------------------------- */

/* See sasl_dovecot.h. */
int sasl_dovecot_parse_addr(const char *s, struct sasl_dovecot_addr *out, const char **why)
{
	unsigned char tmp[16];

	memset(out, 0, sizeof(*out));
	if (strncmp(s, "unix:", 5) == 0) {
		if (s[5] != '/' || strlen(s + 5) >= sizeof(out->path)) {
			*why = "unix: needs an absolute socket path of at most 107 octets";
			return -1;
		}
		out->unix_socket = true;
		snprintf(out->path, sizeof(out->path), "%s", s + 5);
		return 0;
	}
	if (strncmp(s, "inet:", 5) != 0) {
		*why = "expected unix:/path or inet:host:port";
		return -1;
	}
	const char *h = s + 5, *colon;
	size_t hl;
	if (*h == '[') {
		const char *e = strchr(h, ']');
		if (e == NULL || e[1] != ':') {
			*why = "expected inet:[ipv6]:port";
			return -1;
		}
		h++;
		hl = (size_t)(e - h);
		colon = e + 1;
	} else {
		colon = strrchr(h, ':');
		if (colon == NULL) {
			*why = "expected inet:host:port";
			return -1;
		}
		hl = (size_t)(colon - h);
	}
	if (hl == 0 || hl >= sizeof(out->host)) {
		*why = "bad host";
		return -1;
	}
	memcpy(out->host, h, hl);
	out->host[hl] = '\0';
	if (inet_pton(AF_INET, out->host, tmp) != 1 && inet_pton(AF_INET6, out->host, tmp) != 1) {
		*why = "the host must be a numeric IPv4 or IPv6 address";
		return -1;
	}
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 1 || port > 65535) {
		*why = "bad port";
		return -1;
	}
	out->port = (uint16_t)port;
	return 0;
}

/* ---- the parser ------------------------------------------------------------------------ */

/* See sasl_dovecot.h. */
void sd_parser_init(struct sd_parser *p)
{
	memset(p, 0, sizeof(*p));
}

/* Dovecot's tab-escaping (\001 + 0,1,t,r,n/l) undone into out (cap octets); control
 * characters left over become '?': the value goes into logs and XCLIENT. */
static void sd_unescape(const char *in, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 1 < cap; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == 0x01 && i + 1 < n) {
			i++;
			switch (in[i]) {
			case '1': c = 0x01; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'n': case 'l': c = '\n'; break;
			case '0': c = 0; break;
			default: c = (unsigned char)in[i]; break;
			}
		}
		out[o++] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
	}
	out[o] = '\0';
}

/* Parses a request id (1..10 digits, no sign) of n octets. 0 or -1. */
static int sd_parse_id(const char *s, size_t n, unsigned *id)
{
	unsigned long v = 0;

	if (n == 0 || n > 10)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > UINT_MAX)
		return -1;
	*id = (unsigned)v;
	return 0;
}

static bool sd_is_b64(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/' || c == '='))
			return false;
	}
	return true;
}

static enum sd_event sd_error(struct sd_reply *r, const char *why)
{
	r->error = why;
	return SD_EV_ERROR;
}

#define SD_MAX_FIELDS 32

/* See sasl_dovecot.h. */
enum sd_event sd_parse_line(struct sd_parser *p, const char *line, size_t len, struct sd_reply *r)
{
	const char *f[SD_MAX_FIELDS];
	size_t fl[SD_MAX_FIELDS], nf = 0, start = 0;

	memset(r, 0, sizeof(*r));
	r->data = "";
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > SASL_DOVECOT_MAX_LINE)
		return sd_error(r, "line too long");
	if (memchr(line, '\0', len) != NULL)
		return sd_error(r, "NUL in a line");
	for (size_t i = 0; i <= len && nf < SD_MAX_FIELDS; i++) {
		if (i == len || line[i] == '\t') {
			f[nf] = line + start;
			fl[nf++] = i - start;
			start = i + 1;
		}
	}
#define IS(k, s) (fl[k] == sizeof(s) - 1 && memcmp(f[k], s, sizeof(s) - 1) == 0)
	bool reply = IS(0, "OK") || IS(0, "CONT") || IS(0, "FAIL");
	if (!p->ready) {
		if (reply)
			return sd_error(r, "a reply before the handshake ended");
		if (IS(0, "VERSION")) {
			if (nf < 3 || !IS(1, "1"))
				return sd_error(r, "not protocol version 1.x");
			p->version_ok = true;
		} else if (IS(0, "MECH") && nf >= 2) {
			if (fl[1] == 5 && strncasecmp(f[1], "PLAIN", 5) == 0)
				p->mechs |= 1u << SASL_MECH_PLAIN;
			else if (fl[1] == 5 && strncasecmp(f[1], "LOGIN", 5) == 0)
				p->mechs |= 1u << SASL_MECH_LOGIN;
		} else if (IS(0, "DONE")) {
			if (!p->version_ok)
				return sd_error(r, "DONE without VERSION");
			p->ready = true;
			return SD_EV_READY;
		}
		return SD_EV_NONE;       /* SPID, CUID, COOKIE, anything new: ignored */
	}
	if (!reply)
		return SD_EV_NONE;
	if (nf < 2 || sd_parse_id(f[1], fl[1], &r->id) != 0)
		return sd_error(r, "a reply without a valid id");
	if (IS(0, "CONT")) {
		if (nf < 3 || !sd_is_b64(f[2], fl[2]))
			return sd_error(r, "CONT without base64 data");
		r->data = f[2];
		r->data_len = fl[2];
		return SD_EV_CONT;
	}
	for (size_t k = 2; k < nf; k++) {
		if (fl[k] > 5 && memcmp(f[k], "user=", 5) == 0)
			sd_unescape(f[k] + 5, fl[k] - 5, r->user, sizeof(r->user));
		else if (fl[k] > 7 && memcmp(f[k], "reason=", 7) == 0)
			sd_unescape(f[k] + 7, fl[k] - 7, r->reason, sizeof(r->reason));
		else if (IS(k, "temp"))
			r->temp = true;
	}
#undef IS
	return line[0] == 'O' ? SD_EV_OK : SD_EV_FAIL;
}

/* ---- the client ------------------------------------------------------------------------ */

enum sd_state { SD_DOWN = 0, SD_CONNECTING, SD_HANDSHAKE, SD_READY };

struct sd_conn {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} h;
	uv_connect_t req;
	struct sasl_dovecot *d;      /* NULL once detached */
	char in[SASL_DOVECOT_MAX_LINE + 2];
	size_t inlen;
};

struct sasl_dovecot_req {
	struct sasl_dovecot *d;
	struct sasl_dovecot_req *next, *prev;
	unsigned id;
	enum sasl_mech mech;
	sasl_dovecot_cb cb;
	void *arg;
	uint64_t deadline;           /* uv_now() ms */
	char *line;                  /* the AUTH line until it is sent */
	bool waiting;                /* a challenge went to the caller: continue() expected */
};

struct sasl_dovecot {
	uv_loop_t *loop;
	struct sasl_dovecot_addr addr;
	char address[128];
	uint64_t timeout;
	enum sd_state state;
	struct sd_conn *conn;
	struct sd_parser parser;
	uv_timer_t timer;
	struct sasl_dovecot_req *reqs;
	size_t nreqs;
	unsigned next_id;
	uint64_t retry_at;           /* no connection attempt before this (uv_now ms) */
	unsigned mechs;              /* the last completed handshake's MECH lines (0: none yet) */
	bool freeing;
	bool idle_drop_logged;       /* a drop with nothing in flight was logged since the last handshake */
};

static void sd_conn_close_cb(uv_handle_t *h)
{
	free(h->data);
}

static void sd_req_unlink(struct sasl_dovecot_req *q)
{
	struct sasl_dovecot *d = q->d;

	if (q->prev)
		q->prev->next = q->next;
	else
		d->reqs = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->next = q->prev = NULL;
	d->nreqs--;
}

static void sd_req_free(struct sasl_dovecot_req *q)
{
	if (q->line != NULL) {
		sasl_wipe(q->line, strlen(q->line));  /* may hold a password */
		free(q->line);
	}
	free(q);
}

/* Ends q with a final status: unlinked first, so the callback may start new requests. */
static void sd_req_finish(struct sasl_dovecot_req *q, enum sasl_dovecot_status st,
    const char *user, const char *reason)
{
	struct sasl_dovecot_result res = { st, NULL, user, reason };

	sd_req_unlink(q);
	q->cb(q->arg, &res);
	sd_req_free(q);
}

static void sd_arm_timer(struct sasl_dovecot *d);

/* Drops the connection; every request in flight gets TEMPFAIL with why. */
static void sd_drop(struct sasl_dovecot *d, const char *why, bool retry_later)
{
	struct sd_conn *c = d->conn;

	if (c != NULL) {
		c->d = NULL;
		d->conn = NULL;
		if (!uv_is_closing(&c->h.handle))
			uv_close(&c->h.handle, sd_conn_close_cb);
	}
	d->state = SD_DOWN;
	sd_parser_init(&d->parser);
	if (retry_later)
		d->retry_at = uv_now(d->loop) + SD_RETRY_MS;
	/* With nothing in flight the drop is logged too (Dovecot restarted or gone: no session
	 * has told yet), once until a handshake completes again: sasl_dovecot_prepare tries
	 * again at each EHLO, a service that stays away is one line, not one a second. */
	if (d->nreqs > 0 || !d->idle_drop_logged)
		log_event(LOG_LVL_WARNING, NULL, "event=auth_service_error service=%s reason=\"%s\" requests=%zu",
		    d->address, why, d->nreqs);
	if (d->nreqs == 0)
		d->idle_drop_logged = true;
	while (d->reqs != NULL)
		sd_req_finish(d->reqs, SASL_DOVECOT_TEMPFAIL, NULL, why);
	sd_arm_timer(d);
}

struct sd_wreq { uv_write_t req; size_t len; char data[]; };

static void sd_write_cb(uv_write_t *req, int status)
{
	struct sd_wreq *w = (struct sd_wreq *)req;

	(void)status;           /* a failed write shows up as a read error or EOF */
	sasl_wipe(w->data, w->len);
	free(w);
}

/* Queues text on the connection. 0 or -1 (then the connection is dropped by the caller). */
static int sd_write(struct sasl_dovecot *d, const char *text)
{
	size_t n = strlen(text);
	struct sd_wreq *w = malloc(sizeof(*w) + n);

	if (w == NULL || d->conn == NULL) {
		free(w);
		return -1;
	}
	w->len = n;
	memcpy(w->data, text, n);
	uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
	if (uv_write(&w->req, &d->conn->h.stream, &b, 1, sd_write_cb) != 0) {
		sasl_wipe(w->data, n);
		free(w);
		return -1;
	}
	return 0;
}

/* Sends the AUTH lines of requests waiting for the handshake. */
static void sd_flush(struct sasl_dovecot *d)
{
	struct sasl_dovecot_req *q = d->reqs, *next;

	for (; q != NULL && d->state == SD_READY; q = next) {
		next = q->next;
		if (q->line == NULL)
			continue;
		if (!(d->parser.mechs & (1u << q->mech))) {
			sd_req_finish(q, SASL_DOVECOT_TEMPFAIL, NULL, "mechanism not offered by Dovecot");
			continue;
		}
		if (sd_write(d, q->line) != 0) {
			sd_drop(d, "write failed", true);
			return;
		}
		sasl_wipe(q->line, strlen(q->line));
		free(q->line);
		q->line = NULL;
	}
}

static struct sasl_dovecot_req *sd_find(struct sasl_dovecot *d, unsigned id)
{
	for (struct sasl_dovecot_req *q = d->reqs; q != NULL; q = q->next)
		if (q->id == id)
			return q;
	return NULL;
}

/* One line from the server. */
static void sd_on_line(struct sasl_dovecot *d, const char *line, size_t len)
{
	struct sd_reply r;
	struct sasl_dovecot_req *q;
	char challenge[SASL_DOVECOT_MAX_LINE + 1];

	switch (sd_parse_line(&d->parser, line, len, &r)) {
	case SD_EV_NONE:
		return;
	case SD_EV_READY:
		d->state = SD_READY;
		d->idle_drop_logged = false;
		d->mechs = d->parser.mechs;
		sd_flush(d);
		return;
	case SD_EV_ERROR:
		sd_drop(d, r.error, true);
		return;
	case SD_EV_OK:
		if ((q = sd_find(d, r.id)) != NULL)
			sd_req_finish(q, SASL_DOVECOT_OK, r.user, NULL);
		return;
	case SD_EV_FAIL:
		if ((q = sd_find(d, r.id)) != NULL)
			sd_req_finish(q, r.temp ? SASL_DOVECOT_TEMPFAIL : SASL_DOVECOT_FAIL,
			    r.user[0] ? r.user : NULL, r.reason[0] ? r.reason : (r.temp ? "temporary failure" : "refused"));
		return;
	case SD_EV_CONT:
		if ((q = sd_find(d, r.id)) == NULL)
			return;
		memcpy(challenge, r.data, r.data_len);
		challenge[r.data_len] = '\0';
		q->waiting = true;
		{
			struct sasl_dovecot_result res = { SASL_DOVECOT_CONTINUE, challenge, NULL, NULL };
			q->cb(q->arg, &res);    /* may continue or cancel q: not touched after */
		}
		return;
	}
}

static void sd_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct sd_conn *c = h->data;

	(void)hint;
	buf->base = c->in + c->inlen;
	buf->len = sizeof(c->in) - c->inlen;
}

static void sd_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct sd_conn *c = s->data;
	struct sasl_dovecot *d = c->d;

	(void)buf;
	if (d == NULL)
		return;
	if (n < 0) {
		/* an idle connection Dovecot closed (a restart) is no reason to wait before the next */
		sd_drop(d, n == UV_EOF ? "connection closed by Dovecot" : uv_strerror((int)n), d->nreqs > 0);
		return;
	}
	c->inlen += (size_t)n;
	size_t start = 0;
	for (size_t i = c->inlen - (size_t)n; i < c->inlen && c->d == d && d->conn == c; i++) {
		if (c->in[i] != '\n')
			continue;
		sd_on_line(d, c->in + start, i - start);
		start = i + 1;
	}
	if (c->d != d || d->conn != c)
		return;                 /* dropped while handling a line */
	memmove(c->in, c->in + start, c->inlen - start);
	c->inlen -= start;
	if (c->inlen == sizeof(c->in)) {
		/* an over-long line: a protocol error */
		sd_drop(d, "line too long", true);
	}
}

static void sd_connect_cb(uv_connect_t *req, int status)
{
	struct sd_conn *c = req->data;
	struct sasl_dovecot *d = c->d;
	char hello[64];

	if (d == NULL)
		return;
	if (status != 0) {
		sd_drop(d, uv_strerror(status), true);
		return;
	}
	d->state = SD_HANDSHAKE;
	snprintf(hello, sizeof(hello), "VERSION\t1\t2\nCPID\t%ld\n", (long)getpid());
	if (sd_write(d, hello) != 0 || uv_read_start(&c->h.stream, sd_alloc_cb, sd_read_cb) != 0)
		sd_drop(d, "cannot talk to Dovecot", true);
}

/* Opens the connection. 0, or -1 (the caller fails its request). */
static int sd_connect(struct sasl_dovecot *d)
{
	struct sd_conn *c = calloc(1, sizeof(*c));
	int rc;

	if (c == NULL)
		return -1;
	c->d = d;
	c->req.data = c;
	if (d->addr.unix_socket) {
		if (uv_pipe_init(d->loop, &c->h.pipe, 0) != 0) {
			free(c);
			return -1;
		}
		c->h.handle.data = c;
		uv_pipe_connect(&c->req, &c->h.pipe, d->addr.path, sd_connect_cb);
		rc = 0;
	} else {
		struct sockaddr_storage ss;
		if (uv_tcp_init(d->loop, &c->h.tcp) != 0) {
			free(c);
			return -1;
		}
		c->h.handle.data = c;
		if (strchr(d->addr.host, ':'))
			uv_ip6_addr(d->addr.host, d->addr.port, (struct sockaddr_in6 *)&ss);
		else
			uv_ip4_addr(d->addr.host, d->addr.port, (struct sockaddr_in *)&ss);
		rc = uv_tcp_connect(&c->req, &c->h.tcp, (const struct sockaddr *)&ss, sd_connect_cb);
	}
	d->conn = c;
	d->state = SD_CONNECTING;
	if (rc != 0) {
		sd_drop(d, uv_strerror(rc), true);
		return -1;
	}
	return 0;
}

static void sd_timer_cb(uv_timer_t *t)
{
	struct sasl_dovecot *d = t->data;
	uint64_t now = uv_now(d->loop);
	bool expired = false;

	for (struct sasl_dovecot_req *q = d->reqs; q != NULL; q = q->next)
		expired |= !q->waiting && q->deadline <= now;
	if (!expired) {
		sd_arm_timer(d);
		return;
	}
	if (d->state != SD_READY) {
		/* no handshake in time: the service is not working */
		sd_drop(d, "timeout", true);
		return;
	}
	for (struct sasl_dovecot_req *q = d->reqs, *next; q != NULL; q = next) {
		next = q->next;
		if (!q->waiting && q->deadline <= now) {
			log_event(LOG_LVL_WARNING, NULL, "event=auth_service_error service=%s reason=timeout id=%u",
			    d->address, q->id);
			sd_req_finish(q, SASL_DOVECOT_TEMPFAIL, NULL, "timeout");
			next = d->reqs;     /* the callback may have changed the list */
		}
	}
	sd_arm_timer(d);
}

static void sd_arm_timer(struct sasl_dovecot *d)
{
	uint64_t first = 0, now;

	if (d->freeing)
		return;
	for (struct sasl_dovecot_req *q = d->reqs; q != NULL; q = q->next)
		if (!q->waiting && (first == 0 || q->deadline < first))
			first = q->deadline;
	if (first == 0) {
		uv_timer_stop(&d->timer);
		return;
	}
	now = uv_now(d->loop);
	uv_timer_start(&d->timer, sd_timer_cb, first > now ? first - now : 0, 0);
}

/* See sasl_dovecot.h. */
struct sasl_dovecot *sasl_dovecot_new(uv_loop_t *loop, const char *address, uint64_t timeout_ms)
{
	struct sasl_dovecot *d;
	const char *why;

	if (address == NULL || strlen(address) >= sizeof(d->address))
		return NULL;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	if (sasl_dovecot_parse_addr(address, &d->addr, &why) != 0) {
		free(d);
		return NULL;
	}
	snprintf(d->address, sizeof(d->address), "%s", address);
	d->loop = loop;
	d->timeout = timeout_ms ? timeout_ms : 10000;
	d->next_id = 1;
	sd_parser_init(&d->parser);
	uv_timer_init(loop, &d->timer);
	d->timer.data = d;
	return d;
}

static void sd_timer_close_cb(uv_handle_t *h)
{
	free(h->data);
}

/* See sasl_dovecot.h. */
void sasl_dovecot_free(struct sasl_dovecot *d)
{
	if (d == NULL)
		return;
	d->freeing = true;
	while (d->reqs != NULL) {
		struct sasl_dovecot_req *q = d->reqs;
		sd_req_unlink(q);
		sd_req_free(q);
	}
	if (d->conn != NULL) {
		d->conn->d = NULL;
		uv_close(&d->conn->h.handle, sd_conn_close_cb);
		d->conn = NULL;
	}
	uv_close((uv_handle_t *)&d->timer, sd_timer_close_cb);
}


/* See sasl_dovecot.h. */
void sasl_dovecot_prepare(struct sasl_dovecot *d)
{
	if (d == NULL || d->freeing || d->state != SD_DOWN || uv_now(d->loop) < d->retry_at)
		return;
	sd_connect(d);              /* a failure is a drop: retry_at is set, nobody waits */
}

/* See sasl_dovecot.h. */
unsigned sasl_dovecot_mechs(const struct sasl_dovecot *d)
{
	return d ? d->mechs : 0;
}

/* See sasl_dovecot.h. */
size_t sasl_dovecot_pending(const struct sasl_dovecot *d)
{
	return d ? d->nreqs : 0;
}

/* See sasl_dovecot.h. */
struct sasl_dovecot_req *sasl_dovecot_auth(struct sasl_dovecot *d, enum sasl_mech mech,
    const struct sasl_dovecot_info *info, const char *initial_b64, sasl_dovecot_cb cb, void *arg)
{
	struct sasl_dovecot_result fail = { SASL_DOVECOT_TEMPFAIL, NULL, NULL, NULL };
	struct sasl_dovecot_req *q;
	char extra[200] = "";
	size_t o = 0;

	if (d->freeing || (mech != SASL_MECH_PLAIN && mech != SASL_MECH_LOGIN) ||
	    (initial_b64 != NULL && (strlen(initial_b64) > SASL_MAX_B64 ||
	     !sd_is_b64(initial_b64, strlen(initial_b64))))) {
		fail.reason = "bad request";
		cb(arg, &fail);
		return NULL;
	}
	if (d->state == SD_DOWN && uv_now(d->loop) < d->retry_at) {
		fail.reason = "Dovecot unreachable a moment ago";
		cb(arg, &fail);
		return NULL;
	}
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		fail.reason = "out of memory";
		cb(arg, &fail);
		return NULL;
	}
	q->d = d;
	q->id = d->next_id++;
	if (d->next_id == 0)
		d->next_id = 1;
	q->mech = mech;
	q->cb = cb;
	q->arg = arg;
	q->deadline = uv_now(d->loop) + d->timeout;
	/* Only addresses and numbers go into the line: no TAB or LF can get in. */
	if (info != NULL && info->local_ip != NULL && strspn(info->local_ip, "0123456789abcdefABCDEF.:") == strlen(info->local_ip))
		o += (size_t)snprintf(extra + o, sizeof(extra) - o, "\tlip=%s", info->local_ip);
	if (info != NULL && info->remote_ip != NULL && strspn(info->remote_ip, "0123456789abcdefABCDEF.:") == strlen(info->remote_ip))
		o += (size_t)snprintf(extra + o, sizeof(extra) - o, "\trip=%s", info->remote_ip);
	if (info != NULL && info->local_port)
		o += (size_t)snprintf(extra + o, sizeof(extra) - o, "\tlport=%u", info->local_port);
	if (info != NULL && info->remote_port)
		o += (size_t)snprintf(extra + o, sizeof(extra) - o, "\trport=%u", info->remote_port);
	if (info != NULL && info->secured)
		snprintf(extra + o, sizeof(extra) - o, "\tsecured");
	size_t cap = strlen(extra) + (initial_b64 ? strlen(initial_b64) : 0) + 128;
	q->line = malloc(cap);
	if (q->line == NULL) {
		free(q);
		fail.reason = "out of memory";
		cb(arg, &fail);
		return NULL;
	}
	/* RFC 4954 4: "=" is an empty initial response, which Dovecot takes as "resp=" */
	const char *svc = info != NULL && info->service != NULL && info->service[0] &&
	    strspn(info->service, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(info->service) &&
	    strlen(info->service) < 32 ? info->service : "smtp";
	snprintf(q->line, cap, "AUTH\t%u\t%s\tservice=%s\tnologin%s%s%s\n", q->id, sasl_mech_name(mech), svc, extra,
	    initial_b64 ? "\tresp=" : "", initial_b64 && strcmp(initial_b64, "=") != 0 ? initial_b64 : "");
	q->next = d->reqs;
	if (d->reqs)
		d->reqs->prev = q;
	d->reqs = q;
	d->nreqs++;
	sd_arm_timer(d);
	if (d->state == SD_DOWN) {
		if (sd_connect(d) != 0)
			return NULL;        /* q was failed (TEMPFAIL) by the drop */
	} else if (d->state == SD_READY) {
		sd_flush(d);
		if (sd_find(d, q->id) != q)
			return NULL;        /* failed at once (mechanism, write) */
	}
	return q;
}

/* See sasl_dovecot.h. */
int sasl_dovecot_continue(struct sasl_dovecot_req *q, const char *response_b64)
{
	struct sasl_dovecot *d = q->d;
	char line[SASL_MAX_B64 + 64];
	size_t n = strlen(response_b64);

	if (!q->waiting || d->state != SD_READY || n > SASL_MAX_B64 || !sd_is_b64(response_b64, n))
		return -1;
	q->waiting = false;
	/* the service's time runs again (the client's answer had the session's own timeout) */
	q->deadline = uv_now(d->loop) + d->timeout;
	sd_arm_timer(d);
	snprintf(line, sizeof(line), "CONT\t%u\t%s\n", q->id, response_b64);
	int rc = sd_write(d, line);
	sasl_wipe(line, sizeof(line));
	if (rc != 0) {
		sd_drop(d, "write failed", true);
		return 0;               /* q got its TEMPFAIL through cb */
	}
	return 0;
}

/* See sasl_dovecot.h. */
void sasl_dovecot_cancel(struct sasl_dovecot_req *q)
{
	struct sasl_dovecot *d;

	if (q == NULL)
		return;
	d = q->d;
	sd_req_unlink(q);
	sd_req_free(q);
	sd_arm_timer(d);
}
