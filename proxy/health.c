/* health.c — active SMTP/LMTP health checks (connect, 220, EHLO/LHLO, 250, QUIT) and
 * maildir writability checks, with fall/rise hysteresis on the backend's atomics.
 *
 * One probe per backend, each with its own handles; a probe runs at most one check at a
 * time (a check slower than the interval skips rounds rather than piling up). */
#include "health.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/un.h>

#include "backend.h"
#include "config.h"
#include "log.h"
#include "maildir.h"
#include "netaddr.h"
#include "proxyproto.h"
#include "smtp_reply.h"
#include "tls.h"

enum probe_stage { PROBE_IDLE = 0, PROBE_CONNECT, PROBE_GREETING, PROBE_EHLO, PROBE_STARTTLS, PROBE_TLS,
	PROBE_QUIT };

/* A check resumes the TLS session of the check before it for at most this long after a
 * full handshake (whose certificate was verified): a backend whose certificate changed
 * while its ticket keys did not (one process, a new certificate loaded) is verified again
 * within this time. A backend restarted with new keys refuses the ticket at once, and the
 * check does a full handshake (deliveries always do one). Postfix's smtp client keeps its
 * sessions an hour (smtp_tls_session_cache_timeout).
 *
 * Not the server's ticket lifetime (SSL_SESSION_get_ticket_lifetime_hint), capped: this is
 * how long a changed certificate may go unverified, mxgate's choice, not how long the
 * server would take the ticket. A server's lifetime is longer (Postfix's
 * smtpd_tls_session_cache_timeout 3600 s, OpenSSL's default 7200 s) and each check resumes
 * the newest ticket, a few seconds old, so it never binds. One shorter than this bound is
 * honoured already: OpenSSL's client offers no TLS 1.3 ticket past its lifetime hint
 * (tls_construct_ctos_psk: "Ticket is too old"), and a TLS 1.2 session the server has
 * dropped is refused by it: either way a full handshake, as it would be without offering. */
enum { HEALTH_TLS_RESUME_MS = 60 * 1000 };

static const char *const probe_stage_names[] = { "idle", "connect", "greeting", "ehlo", "starttls", "tls",
	"quit" };

struct health_probe {
	struct health *h;
	struct backend *b;            /* not dereferenced once h->stopping */
	enum backend_kind kind;
	struct sockaddr_storage sa;   /* copies: the checks never read the pool's strings */
	socklen_t salen;
	/* the host name's addresses (backend.h): a probe goes to addrs[addr_i], the one that
	 * last answered; one it cannot connect to moves the next probe to the next address, as
	 * deliveries try each in turn (relay.c) */
	struct sockaddr_storage addrs[BACKEND_MAX_ADDRS];
	size_t naddrs, addr_i;
	unsigned addr_gen;            /* b->addr_gen the copy was taken at: a re-resolution
	                               * (backendres.h) changed the set when it differs */
	size_t addr_tries;            /* addresses this check could not connect to */
	bool addr_next;               /* closing to try the next address in this check */
	bool addr_tries_keep;         /* probe_start goes on with this check (addr_tries kept) */
	/* event=backend_address_failed logged for addrs[i] and no check connected to it since:
	 * a probe every interval that meets the same dead address logs it once, not each time */
	bool addr_logged[BACKEND_MAX_ADDRS];
	char *path;                   /* maildir root or LMTP unix socket */
	bool busy;                    /* a check is running */
	bool reported;                /* this check's result is recorded */
	bool stream_open;             /* stream initialised and not yet closed */
	bool work_queued;
	bool seen;                    /* has had a first result */
	bool want_xclient;            /* client_identity: xclient, an smtp:// backend */
	bool need_xclient;            /* ... and backends.require_xclient: delivery fails without it */
	bool saw_xclient;             /* this check's EHLO reply announced XCLIENT */
	bool warned_xclient;          /* backend_no_xclient logged (again once it offers it) */
	bool want_starttls;           /* backends.require_tls: delivery fails without STARTTLS */
	bool saw_starttls;            /* this check's EHLO reply announced STARTTLS */
	/* backends.require_tls (tls_verify implies it): delivery fails without a TLS handshake
	 * (with tls_verify: one whose certificate verifies), so the check does STARTTLS and the
	 * handshake too, as HAProxy's check-ssl, with the client context deliveries use */
	struct tlsconn *tls;          /* this check's TLS, from the 220 to STARTTLS */
	/* the session the last check that passed left (a TLS 1.3 ticket), offered by the next
	 * one: a resumed handshake costs the backend no signature and mxgate no certificate
	 * chain to verify; every HEALTH_TLS_RESUME_MS, and after any failure, a full one */
	struct tls_session *tls_sess;
	uint64_t tls_sess_since;      /* uv_now of the full handshake tls_sess descends from */
	bool tls_resumed;             /* this check's handshake resumed tls_sess */
	char *sni;                    /* the backend's host (SNI, as relay.c sends) */
	char *verify_name;            /* NULL: no verification (the context does not verify) */
	char cbuf[4096];              /* what is read (ciphertext with TLS) */
	enum probe_stage stage;
	uint64_t t0;                  /* uv_hrtime at check start */
	union { uv_tcp_t tcp; uv_pipe_t pipe; } s;
	uv_connect_t conn;
	uv_write_t wr_proxy, wr_ehlo, wr_starttls, wr_quit;
	uint8_t proxy_hdr[16];        /* PROXY v2 LOCAL, sent first when proxy_hdr_len > 0 */
	size_t proxy_hdr_len;
	char ehlo[300];
	uv_timer_t timer;             /* the check's deadline */
	struct smtp_reply_reader rd;  /* the server's replies (the relay's reader, smtp_reply.h) */
	uv_work_t work;
	int work_status;
	char work_err[300];
};

struct health {
	uv_loop_t *loop;
	struct pool *pool;
	uint64_t interval_ms, timeout_ms;
	char *hostname;
	struct tls_ctx *tls_client;   /* a reference, or NULL: no TLS in the checks */
	int fall, rise;
	uv_timer_t tick;
	struct health_probe *probes;
	size_t nprobes;
	bool stopping;
	int pending;                  /* open handles + queued works; free at zero once stopping */
	size_t nseen;                 /* probes with a first result */
	void (*first_cb)(void *arg);  /* health_on_first_round; cleared once called */
	void *first_arg;
};

/* A probe got its first result: the round is complete when every probe has one. */
static void health_note_first(struct health *h, struct health_probe *p)
{
	if (p && !p->seen) {
		p->seen = true;
		h->nseen++;
	}
	if (h->first_cb && h->nseen >= h->nprobes) {
		void (*cb)(void *) = h->first_cb;
		h->first_cb = NULL;
		cb(h->first_arg);
	}
}

static void health_maybe_free(struct health *h)
{
	if (!h->stopping || h->pending > 0)
		return;
	for (size_t i = 0; i < h->nprobes; i++) {
		free(h->probes[i].path);
		free(h->probes[i].sni);
		free(h->probes[i].verify_name);
		tlsconn_free(h->probes[i].tls);
		tls_session_free(h->probes[i].tls_sess);
		smtp_reply_free(&h->probes[i].rd);
	}
	free(h->probes);
	free(h->hostname);
	tls_ctx_unref(h->tls_client);
	free(h);
}

static void health_handle_closed_cb(uv_handle_t *handle)
{
	struct health *h = handle->data;
	h->pending--;
	health_maybe_free(h);
}

/* Applies one check result to the backend (fall/rise hysteresis). */
static void probe_record(struct health_probe *p, bool ok, const char *reason)
{
	struct health *h = p->h;
	struct backend *b = p->b;

	if (p->reported || h->stopping)
		return;
	p->reported = true;
	/* the URL's record: every generation's pool reads this one state (backend.h) */
	struct backend_health *bh = backend_health(b);
	/* The first result for a backend (not a reload's first round: `checked` is the URL's,
	 * as the rest of the state) decides at once, as HAProxy's default init-state: a backend that
	 * refuses its first probe is down now, not after `fall` of them, so the start does not
	 * announce it as up (event=ready backends_up, READY=1, /readyz). */
	bool first = atomic_exchange(&bh->checked, 1) == 0;
	if (ok) {
		long long us = (long long)((uv_hrtime() - p->t0) / 1000);
		atomic_store(&bh->latency_us, us);
		if (atomic_load(&bh->up)) {
			atomic_store(&bh->fails, 0);
			atomic_store(&bh->oks, 0);
		} else if (backend_is_refused(b, (long long)(uv_hrtime() / 1000000))) {
			/* it refused the gateway at MAIL or RCPT, which a probe does not see */
			atomic_store(&bh->oks, 0);
		} else {
			int oks = atomic_fetch_add(&bh->oks, 1) + 1;
			if (oks >= h->rise) {
				int expect = 0;
				if (atomic_compare_exchange_strong(&bh->up, &expect, 1))
					log_event(LOG_LVL_INFO, NULL, "event=backend_up backend=%s latency_us=%lld",
					    b->url, us);
				atomic_store(&bh->fails, 0);
				atomic_store(&bh->oks, 0);
			}
		}
		if (log_is_debug())
			log_event(LOG_LVL_DEBUG, NULL, "event=health_check backend=%s result=ok latency_us=%lld%s",
			    b->url, us, !p->tls ? "" : p->tls_resumed ? " tls=resumed" : " tls=full");
	} else {
		int step = p->kind == BACKEND_MAILDIR ? BACKEND_PROBE_MAILDIR :
		    p->stage == PROBE_GREETING ? BACKEND_PROBE_GREETING : p->stage == PROBE_EHLO ? BACKEND_PROBE_EHLO :
		    p->stage == PROBE_STARTTLS ? BACKEND_PROBE_STARTTLS : p->stage == PROBE_TLS ? BACKEND_PROBE_TLS :
		    BACKEND_PROBE_CONNECT;
		atomic_fetch_add(&bh->probe_fails[step], 1);
		/* the next check's handshake is a full one, its certificate verified */
		tls_session_free(p->tls_sess);
		p->tls_sess = NULL;
		atomic_store(&bh->oks, 0);
		int f = atomic_fetch_add(&bh->fails, 1) + 1;
		if ((f >= h->fall || first) && atomic_exchange(&bh->up, 0) == 1)
			log_event(LOG_LVL_WARNING, NULL, "event=backend_down backend=%s reason=\"health check: %s\" fails=%d",
			    b->url, reason, f);
		else if (log_is_debug())
			log_event(LOG_LVL_DEBUG, NULL, "event=health_check backend=%s result=fail reason=\"%s\" fails=%d",
			    b->url, reason, f);
	}
	/* last: the first round's callback (readiness) sees this result applied */
	health_note_first(h, p);
}

static void probe_start(struct health_probe *p);

static void probe_stream_closed_cb(uv_handle_t *handle)
{
	struct health_probe *p = handle->data;
	struct health *h = p->h;
	p->stream_open = false;
	p->busy = false;
	p->stage = PROBE_IDLE;
	tlsconn_free(p->tls);
	p->tls = NULL;
	h->pending--;
	if (p->addr_next && !h->stopping) {
		p->addr_next = false;
		p->addr_tries_keep = true;
		probe_start(p);
		return;
	}
	p->addr_next = false;
	health_maybe_free(h);
}

/* Ends the current check: records a failure unless a result is in, closes the stream. */
static void probe_finish(struct health_probe *p, bool ok, const char *reason)
{
	probe_record(p, ok, reason);
	uv_timer_stop(&p->timer);
	if (p->stream_open && !uv_is_closing((uv_handle_t *)&p->s))
		uv_close((uv_handle_t *)&p->s, probe_stream_closed_cb);
}

/* The text of the probe's address i, "?" when it has none. */
static void probe_addr_string(const struct health_probe *p, size_t i, char *out, size_t outlen)
{
	if (netaddr_sockaddr_string((const struct sockaddr *)&p->addrs[i], out, outlen) < 0)
		snprintf(out, outlen, "?");
}

/* The check could not connect to address i of the backend's name and goes on to address
 * next: logged as a delivery's (relay.c, event=backend_address_failed) with stage=health,
 * so an operator sees a dead address while the check passes through another. Once until
 * a check connects to address i again (probe_addr_connected): the state's change, not
 * every probe. why: the reason in relay.c's words (uv_strerror, "timeout"); limit: the
 * config key of the bound when it was a timeout, or NULL. */
static void probe_addr_failed(struct health_probe *p, size_t i, size_t next, const char *why,
    const char *limit)
{
	char a1[INET6_ADDRSTRLEN], a2[INET6_ADDRSTRLEN];

	if (i >= BACKEND_MAX_ADDRS || p->addr_logged[i] || p->h->stopping || !p->b)
		return;
	p->addr_logged[i] = true;
	probe_addr_string(p, i, a1, sizeof a1);
	probe_addr_string(p, next, a2, sizeof a2);
	log_event(LOG_LVL_INFO, NULL, "event=backend_address_failed backend=%s address=%s reason=\"%s\" next=%s%s%s "
	    "stage=health", p->b->url, a1, why, a2, limit ? " limit=" : "", limit ? limit : "");
}

/* A check connected to address i: one logged failed (probe_addr_failed) is logged as back. */
static void probe_addr_connected(struct health_probe *p, size_t i)
{
	char a[INET6_ADDRSTRLEN];

	if (i >= BACKEND_MAX_ADDRS || !p->addr_logged[i] || p->h->stopping || !p->b)
		return;
	p->addr_logged[i] = false;
	probe_addr_string(p, i, a, sizeof a);
	log_event(LOG_LVL_INFO, NULL, "event=backend_address_recovered backend=%s address=%s stage=health",
	    p->b->url, a);
}

/* The check fails at its stage: what, for the check's reason ("ECONNREFUSED during
 * connect"); at the connect stage of a name with an address left to try, the next one
 * instead, the address's failure logged with why and limit (probe_addr_failed). */
static void probe_fail_stage_as(struct health_probe *p, const char *what, const char *why,
    const char *limit)
{
	char reason[256];
	snprintf(reason, sizeof reason, "%s during %s", what, probe_stage_names[p->stage]);
	if (p->stage == PROBE_CONNECT && p->naddrs > 0 && p->b && !p->h->stopping)
		backend_addr_result_gen(p->b, p->addr_i, p->addr_gen, false, (long long)(uv_hrtime() / 1000000));
	if (p->stage == PROBE_CONNECT && p->addr_tries + 1 < p->naddrs && !p->reported &&
	    p->stream_open && !uv_is_closing((uv_handle_t *)&p->s)) {
		/* this address does not take connections: the next one, in the same check, which
		 * fails only when every address did */
		size_t failed = p->addr_i;
		p->addr_tries++;
		p->addr_i = (p->addr_i + 1) % p->naddrs;
		probe_addr_failed(p, failed, p->addr_i, why, limit);
		p->addr_next = true;
		uv_timer_stop(&p->timer);
		uv_close((uv_handle_t *)&p->s, probe_stream_closed_cb);
		return;
	}
	/* After EHLO's 250 the check has succeeded; QUIT trouble does not count. */
	probe_finish(p, p->stage == PROBE_QUIT, reason);
}

static void probe_fail_stage(struct health_probe *p, const char *what)
{
	probe_fail_stage_as(p, what, what, NULL);
}

static void probe_timeout_cb(uv_timer_t *t)
{
	/* the whole check's bound (connect included), as relay.c names connect_timeout */
	probe_fail_stage_as(t->data, "timeout", "timeout", "health_check.timeout");
}

static void probe_write_cb(uv_write_t *req, int status)
{
	struct health_probe *p = req->data;
	if (status < 0 && status != UV_ECANCELED && p->stream_open) {
		char what[64];
		snprintf(what, sizeof what, "write %s", uv_err_name(status));
		probe_fail_stage(p, what);
	}
}

/* A ciphertext write: its own copy of the bytes, freed when written (or cancelled). */
struct probe_cwrite {
	uv_write_t req;
	struct health_probe *p;
	char data[];
};

static void probe_cwrite_cb(uv_write_t *req, int status)
{
	struct probe_cwrite *cw = req->data;
	struct health_probe *p = cw->p;
	free(cw);
	if (status < 0 && status != UV_ECANCELED && p->stream_open) {
		char what[64];
		snprintf(what, sizeof what, "write %s", uv_err_name(status));
		probe_fail_stage(p, what);
	}
}

static int probe_tls_cipher_cb(void *arg, const char *data, size_t len)
{
	struct health_probe *p = arg;
	if (!p->stream_open || uv_is_closing((uv_handle_t *)&p->s))
		return -1;
	struct probe_cwrite *cw = malloc(sizeof *cw + len);
	if (!cw)
		return -1;
	cw->p = p;
	cw->req.data = cw;
	memcpy(cw->data, data, len);
	uv_buf_t buf = uv_buf_init(cw->data, (unsigned)len);
	if (uv_write(&cw->req, (uv_stream_t *)&p->s, &buf, 1, probe_cwrite_cb) != 0) {
		free(cw);
		return -1;
	}
	return 0;
}

static int probe_send(struct health_probe *p, uv_write_t *req, const char *text)
{
	if (p->tls)
		return tlsconn_write(p->tls, text, strlen(text));
	uv_buf_t buf = uv_buf_init((char *)text, (unsigned)strlen(text));
	req->data = p;
	return uv_write(req, (uv_stream_t *)&p->s, &buf, 1, probe_write_cb);
}

static void probe_after_ehlo(struct health_probe *p);

/* The handshake is done (the certificate verified, when the context verifies; or a session
 * of a check whose handshake verified it resumed). */
static void probe_tls_established_cb(void *arg)
{
	struct health_probe *p = arg;

	p->tls_resumed = tlsconn_session_reused(p->tls);
	if (!p->tls_resumed)
		p->tls_sess_since = uv_now(p->h->loop);
	probe_after_ehlo(p);
}

static int probe_tls_plain_cb(void *arg, const char *data, size_t len);

static const struct tlsconn_ops probe_tls_ops = {
	.on_plain = probe_tls_plain_cb,
	.on_cipher = probe_tls_cipher_cb,
	.on_established = probe_tls_established_cb,
};

/* The 220 to STARTTLS: the handshake, within the check's timeout. */
static void probe_start_tls(struct health_probe *p)
{
	p->stage = PROBE_TLS;
	smtp_reply_reset(&p->rd);   /* anything sent in clear after the 220 is not read (RFC 3207 5) */
	p->tls = tlsconn_new(p->h->tls_client, false, p->sni, &probe_tls_ops, p);
	if (p->tls == NULL) {
		probe_fail_stage(p, "TLS setup failed");
		return;
	}
	if (p->verify_name && tlsconn_set_verify_name(p->tls, p->verify_name) != 0) {
		probe_fail_stage(p, "TLS: no name to verify the certificate against (backends.tls_verify)");
		return;
	}
	p->tls_resumed = false;
	if (p->tls_sess && uv_now(p->h->loop) - p->tls_sess_since >= HEALTH_TLS_RESUME_MS) {
		tls_session_free(p->tls_sess);
		p->tls_sess = NULL;
	}
	if (p->tls_sess && tlsconn_set_session(p->tls, p->tls_sess) != 0) {
		tls_session_free(p->tls_sess);   /* not one this context takes: a full handshake */
		p->tls_sess = NULL;
	}
	if (tlsconn_start(p->tls) != 0) {
		char what[200];
		snprintf(what, sizeof what, "TLS %.180s", tlsconn_error(p->tls));
		probe_fail_stage(p, what);
	}
}

/* EHLO answered 250 (and TLS is up when wanted): XCLIENT's warning, success, QUIT. */
static void probe_after_ehlo(struct health_probe *p)
{
	if (p->want_xclient && !p->saw_xclient && !p->warned_xclient && !p->h->stopping) {
		/* Without XCLIENT the backend judges and logs mxgate's address as every
		 * client (Postfix: permit_mynetworks then relays anything mxgate passes). */
		log_event(LOG_LVL_WARNING, NULL, "event=backend_no_xclient backend=%s "
		    "reason=\"client_identity is xclient but the backend offers no XCLIENT to "
		    "mxgate: it sees mxgate's address as the client (Postfix: "
		    "smtpd_authorized_xclient_hosts)\"", p->b->url);
		p->warned_xclient = true;
	} else if (p->saw_xclient) {
		p->warned_xclient = false;
	}
	if (p->need_xclient && !p->saw_xclient) {
		/* relay.c refuses to deliver to it as mxgate (a gateway refusal): up would be a
		 * lie (/readyz) */
		probe_fail_stage(p, "XCLIENT not offered (backends.require_xclient)");
		return;
	}
	probe_record(p, true, NULL);
	p->stage = PROBE_QUIT;
	if (probe_send(p, &p->wr_quit, "QUIT\r\n") != 0)
		probe_finish(p, true, NULL);
}

/* A complete reply arrived (rep->text: its lines). */
static void probe_on_reply(struct health_probe *p, const struct smtp_reply *rep)
{
	int code = rep->code;
	char what[64];
	switch (p->stage) {
	case PROBE_GREETING:
		if (code != 220)
			break;
		p->stage = PROBE_EHLO;
		if (probe_send(p, &p->wr_ehlo, p->ehlo) != 0)
			probe_fail_stage(p, "write");
		return;
	case PROBE_EHLO:
		if (code != 250)
			break;
		/* the keywords as the relay reads them (smtp_caps_parse) */
		struct smtp_caps caps;
		smtp_caps_parse(rep->text, &caps);
		p->saw_xclient = (caps.bits & SMTP_CAP_XCLIENT) != 0;
		p->saw_starttls = (caps.bits & SMTP_CAP_STARTTLS) != 0;
		if (p->want_starttls && !p->saw_starttls) {
			/* relay.c refuses to deliver to it in clear: up would be a lie (/readyz) */
			probe_fail_stage(p, "STARTTLS not offered (backends.require_tls)");
			return;
		}
		if (p->want_starttls && p->h->tls_client) {
			p->stage = PROBE_STARTTLS;
			if (probe_send(p, &p->wr_starttls, "STARTTLS\r\n") != 0)
				probe_fail_stage(p, "write");
			return;
		}
		probe_after_ehlo(p);
		return;
	case PROBE_STARTTLS:
		if (code != 220) {
			/* relay.c: "STARTTLS refused (backends.require_tls)" */
			snprintf(what, sizeof what, "STARTTLS refused (reply %d, backends.require_tls)", code);
			probe_fail_stage(p, what);
			return;
		}
		probe_start_tls(p);
		return;
	case PROBE_QUIT:
		if (p->tls && !p->h->stopping) {
			/* the latest ticket, read before this reply: the next check's to resume */
			tls_session_free(p->tls_sess);
			p->tls_sess = tlsconn_take_session(p->tls);
		}
		probe_finish(p, true, NULL);
		return;
	default:
		break;
	}
	snprintf(what, sizeof what, "reply %d", code);
	probe_fail_stage(p, what);
}

static void probe_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	struct health_probe *p = handle->data;
	(void)suggested;
	*buf = uv_buf_init(p->cbuf, (unsigned)sizeof p->cbuf);
}

/* Plain bytes from the server: its replies, each acted on (RFC 5321 4.2.1: "xyz-"
 * continues, "xyz " or a bare "xyz" ends a reply). A reply that breaks the protocol (a line
 * too long, no code, ...: smtp_reply.h) fails the check. Returns -1 once the check is over. */
static int probe_plain(struct health_probe *p, const char *data, size_t len)
{
	while (len > 0) {
		if (!p->stream_open || uv_is_closing((uv_handle_t *)&p->s) || p->stage == PROBE_TLS)
			return -1;	/* over, or the rest came in clear after STARTTLS's 220 */
		struct smtp_reply rep;
		size_t used = 0;
		int rc = smtp_reply_feed(&p->rd, data, len, &used, &rep);
		if (rc < 0) {
			probe_fail_stage(p, smtp_reply_strerror(rc));
			return -1;
		}
		if (rc == 0)
			break;
		data += used;
		len -= used;
		probe_on_reply(p, &rep);
	}
	return 0;
}

/* Decrypted bytes: to the reply reader. */
static int probe_tls_plain_cb(void *arg, const char *data, size_t len)
{
	return probe_plain(arg, data, len);
}

static void probe_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct health_probe *p = s->data;

	if (nread < 0) {
		char what[64];
		snprintf(what, sizeof what, "%s", nread == UV_EOF ? "connection closed" : uv_err_name((int)nread));
		probe_fail_stage(p, what);
		return;
	}
	if (nread == 0)
		return;
	if (p->tls) {
		int fr = tlsconn_feed(p->tls, buf->base, (size_t)nread);
		if (fr < 0 && p->stream_open && !uv_is_closing((uv_handle_t *)&p->s)) {
			char what[200];
			snprintf(what, sizeof what, "TLS %.180s", tlsconn_error(p->tls));
			probe_fail_stage(p, what);
		} else if (fr == 1 && p->stream_open && !uv_is_closing((uv_handle_t *)&p->s)) {
			probe_fail_stage(p, "connection closed");
		}
		return;
	}
	probe_plain(p, buf->base, (size_t)nread);
}

static void probe_connect_cb(uv_connect_t *req, int status)
{
	struct health_probe *p = req->data;
	if (status == UV_ECANCELED || !p->stream_open || uv_is_closing((uv_handle_t *)&p->s))
		return;
	if (status < 0) {
		/* the check's reason keeps its word (ECONNREFUSED); the address's line relay.c's */
		probe_fail_stage_as(p, uv_err_name(status), uv_strerror(status), NULL);
		return;
	}
	/* deliveries begin at the address that answered (backend.h) */
	if (p->naddrs > 0 && p->b && !p->h->stopping) {
		backend_addr_result_gen(p->b, p->addr_i, p->addr_gen, true, (long long)(uv_hrtime() / 1000000));
		probe_addr_connected(p, p->addr_i);
	}
	p->stage = PROBE_GREETING;
	if (p->proxy_hdr_len > 0) {
		/* A backend taking PROXY headers from mxgate (client_identity: proxy_v2, Postfix's
		 * smtpd_upstream_proxy_protocol) waits for one before its greeting: LOCAL says
		 * there is no client to announce (HAProxy's check-send-proxy does the same). */
		uv_buf_t hb = uv_buf_init((char *)p->proxy_hdr, (unsigned)p->proxy_hdr_len);
		p->wr_proxy.data = p;
		int w = uv_write(&p->wr_proxy, (uv_stream_t *)&p->s, &hb, 1, probe_write_cb);
		if (w != 0) {
			probe_fail_stage(p, uv_err_name(w));
			return;
		}
	}
	int r = uv_read_start((uv_stream_t *)&p->s, probe_alloc_cb, probe_read_cb);
	if (r != 0)
		probe_fail_stage(p, uv_err_name(r));
}

static void probe_work_cb(uv_work_t *req)
{
	struct health_probe *p = req->data;
	p->work_status = maildir_check_writable(p->path, p->work_err, sizeof p->work_err);
}

static void probe_after_work_cb(uv_work_t *req, int status)
{
	struct health_probe *p = req->data;
	struct health *h = p->h;
	p->work_queued = false;
	h->pending--;
	if (h->stopping) {
		health_maybe_free(h);
		return;
	}
	if (status == UV_ECANCELED)
		probe_record(p, false, "check cancelled");
	else
		probe_record(p, p->work_status == 0, p->work_err);
	p->busy = false;
}

/* Takes the backend's addresses again when a re-resolution changed them since the copy
 * (the next check goes to the new set; the old addresses' "logged" marks go with them). */
static void probe_addrs_take(struct health_probe *p)
{
	unsigned gen = atomic_load(&p->b->addr_gen);
	size_t n = 0;
	socklen_t len;

	if (gen == p->addr_gen)
		return;
	while (n < BACKEND_MAX_ADDRS && backend_addr_get(p->b, n, &p->addrs[n], &len))
		n++;
	if (n == 0)
		return;
	p->naddrs = n;
	p->addr_gen = gen;
	memset(p->addr_logged, 0, sizeof(p->addr_logged));
}

/* Starts one check of p unless one is still running. */
static void probe_start(struct health_probe *p)
{
	struct health *h = p->h;
	int r;

	if (p->busy)
		return;
	if (!p->addr_tries_keep) {
		p->addr_tries = 0;
		if (p->b && !h->stopping && p->naddrs > 0)
			probe_addrs_take(p);
		/* where deliveries begin: the address that last worked, one that failed passed over */
		if (p->naddrs > 0 && p->b)
			p->addr_i = backend_addr_first(p->b, (long long)(uv_hrtime() / 1000000)) % p->naddrs;
	}
	p->addr_tries_keep = false;
	p->busy = true;
	p->reported = false;
	p->saw_xclient = false;
	p->saw_starttls = false;
	smtp_reply_reset(&p->rd);
	p->t0 = uv_hrtime();
	if (p->kind == BACKEND_MAILDIR) {
		p->work.data = p;
		if (uv_queue_work(h->loop, &p->work, probe_work_cb, probe_after_work_cb) != 0) {
			probe_record(p, false, "cannot queue check");
			p->busy = false;
			return;
		}
		p->work_queued = true;
		h->pending++;
		return;
	}
	p->stage = PROBE_CONNECT;
	p->conn.data = p;
	if (p->path && p->salen == 0) {
		r = uv_pipe_init(h->loop, &p->s.pipe, 0);
		if (r == 0) {
			p->s.pipe.data = p;
			p->stream_open = true;
			h->pending++;
			uv_pipe_connect(&p->conn, &p->s.pipe, p->path, probe_connect_cb);
		}
	} else {
		r = uv_tcp_init(h->loop, &p->s.tcp);
		if (r == 0) {
			p->s.tcp.data = p;
			p->stream_open = true;
			h->pending++;
			uv_tcp_nodelay(&p->s.tcp, 1);
			r = uv_tcp_connect(&p->conn, &p->s.tcp, (const struct sockaddr *)(p->naddrs ?
			    &p->addrs[p->addr_i] : &p->sa), probe_connect_cb);
		}
	}
	if (r != 0) {
		if (backend_err_is_local(r) && !p->h->stopping) {
			/* mxgate's own shortage (descriptors gone, memory): no result either way
			 * this round, so the backend is not taken down for it nor kept down after */
			p->reported = true;
			log_event(LOG_LVL_DEBUG, NULL, "event=health_check backend=%s result=skipped reason=\"%s\"",
			    p->b->url, uv_err_name(r));
			health_note_first(h, p);
		} else {
			probe_record(p, false, uv_err_name(r));
		}
		if (p->stream_open)
			uv_close((uv_handle_t *)&p->s, probe_stream_closed_cb);
		else
			p->busy = false;
		return;
	}
	uv_timer_start(&p->timer, probe_timeout_cb, h->timeout_ms, 0);
}

static void health_tick_cb(uv_timer_t *t)
{
	struct health *h = t->data;
	for (size_t i = 0; i < h->nprobes && !h->stopping; i++)
		probe_start(&h->probes[i]);
	if (h->nprobes == 0 && !h->stopping)
		health_note_first(h, NULL);
}

/* See health.h. */
void health_on_first_round(struct health *h, void (*cb)(void *arg), void *arg)
{
	if (h == NULL)
		return;
	h->first_cb = cb;
	h->first_arg = arg;
}

/* See health.h. */
struct health *health_start(uv_loop_t *loop, struct pool *pool, uint64_t interval_ms,
    uint64_t timeout_ms, const char *hostname, struct tls_ctx *tls_client)
{
	struct health *h;
	size_t n;

	if (!loop || !pool)
		return NULL;
	h = calloc(1, sizeof *h);
	if (!h)
		return NULL;
	h->loop = loop;
	h->pool = pool;
	h->interval_ms = interval_ms ? interval_ms : 5000;
	h->timeout_ms = timeout_ms ? timeout_ms : 3000;
	h->fall = pool->fall > 0 ? pool->fall : 1;
	h->rise = pool->rise > 0 ? pool->rise : 1;
	if (pool->require_tls && tls_client) {
		tls_ctx_ref(tls_client);
		h->tls_client = tls_client;
	}
	char sysname[256] = "localhost";
	if (!hostname || !*hostname) {
		if (gethostname(sysname, sizeof sysname) != 0 || !sysname[0])
			snprintf(sysname, sizeof sysname, "localhost");
		sysname[sizeof sysname - 1] = '\0';
		hostname = sysname;
	}
	h->hostname = strdup(hostname);
	n = pool->nservers + pool->nextra;
	h->probes = calloc(n ? n : 1, sizeof *h->probes);
	if (!h->hostname || !h->probes)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		struct health_probe *p = &h->probes[i];
		struct backend *b = i < pool->nservers ? &pool->servers[i] : &pool->extra[i - pool->nservers];
		p->h = h;
		p->b = b;
		smtp_reply_init(&p->rd, 0);
		p->kind = b->kind;
		p->sa = b->sa;
		p->salen = b->salen;
		p->naddrs = b->naddrs;
		memcpy(p->addrs, b->addrs, sizeof(p->addrs));
		p->addr_gen = atomic_load(&b->addr_gen);
		if (b->path && !(p->path = strdup(b->path)))
			goto fail;
		if (!p->path && b->salen && b->sa.ss_family == AF_UNIX) {
			/* lmtp:unix:/path keeps the socket in sa: connect through a pipe handle. */
			const struct sockaddr_un *sun = (const struct sockaddr_un *)&b->sa;
			if (!(p->path = strndup(sun->sun_path, sizeof sun->sun_path)))
				goto fail;
			p->salen = 0;
		}
		if (b->kind == BACKEND_MAILDIR && !p->path)
			p->kind = BACKEND_SMTP;   /* unusable entry: checks will fail to connect */
		snprintf(p->ehlo, sizeof p->ehlo, "%s %.250s\r\n", b->kind == BACKEND_LMTP ? "LHLO" : "EHLO",
		    h->hostname);
		if (pool->client_identity == IDENTITY_PROXY_V2 && p->kind != BACKEND_MAILDIR)
			p->proxy_hdr_len = proxyproto_build_v2_local(p->proxy_hdr, sizeof p->proxy_hdr);
		p->want_xclient = pool->client_identity == IDENTITY_XCLIENT && p->kind == BACKEND_SMTP;
		p->need_xclient = p->want_xclient && pool->require_xclient;
		p->want_starttls = pool->require_tls && p->kind != BACKEND_MAILDIR;
		if (p->want_starttls && h->tls_client) {
			if (!(p->sni = strdup(b->host)))
				goto fail;
			if (pool->tls_verify && !(p->verify_name = strdup(b->verify_name ? b->verify_name : b->host)))
				goto fail;
		}
		h->nprobes = i + 1;
	}
	if (uv_timer_init(loop, &h->tick) != 0)
		goto fail;
	h->tick.data = h;
	h->pending++;
	for (size_t i = 0; i < h->nprobes; i++) {
		/* Cannot fail for a valid loop (uv_timer_init only records the loop). */
		uv_timer_init(loop, &h->probes[i].timer);
		h->probes[i].timer.data = &h->probes[i];
		h->pending++;
	}
	uv_timer_start(&h->tick, health_tick_cb, 0, h->interval_ms);
	return h;
fail:
	for (size_t i = 0; i < n && h->probes; i++) {
		free(h->probes[i].path);
		free(h->probes[i].sni);
		free(h->probes[i].verify_name);
	}
	free(h->probes);
	free(h->hostname);
	tls_ctx_unref(h->tls_client);
	free(h);
	return NULL;
}

static void probe_timer_closed_cb(uv_handle_t *handle)
{
	struct health_probe *p = handle->data;
	struct health *h = p->h;
	h->pending--;
	health_maybe_free(h);
}

/* See health.h. */
void health_stop(struct health *h)
{
	if (!h || h->stopping)
		return;
	h->stopping = true;
	uv_timer_stop(&h->tick);
	uv_close((uv_handle_t *)&h->tick, health_handle_closed_cb);
	for (size_t i = 0; i < h->nprobes; i++) {
		struct health_probe *p = &h->probes[i];
		p->b = NULL;
		uv_timer_stop(&p->timer);
		uv_close((uv_handle_t *)&p->timer, probe_timer_closed_cb);
		if (p->stream_open && !uv_is_closing((uv_handle_t *)&p->s))
			uv_close((uv_handle_t *)&p->s, probe_stream_closed_cb);
		if (p->work_queued)
			uv_cancel((uv_req_t *)&p->work);   /* fails harmlessly if already running */
	}
}
