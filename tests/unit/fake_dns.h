/* fake_dns.h — a tiny authoritative DNS server on 127.0.0.1 (UDP) running in the test's own
 * libuv loop, for the DNS unit tests. Header-only (static), included by test_dns*.c and
 * test_dnsbl.c.
 *
 * Records come from a table; names not in it get NXDOMAIN with an SOA (TTL 60, MINIMUM 30)
 * in the authority section. Names starting with "drop." are never answered, names starting
 * with "servfail." get SERVFAIL, with "nosoa." NXDOMAIN without an SOA. Names starting
 * with "tc." get an empty truncated answer (TC), so the client asks again over TCP, where
 * fake_dns_start_tcp's listener reads the query and closes unanswered. Names starting with
 * "hold." are not answered the first time (one held in all), answered from the table after.
 * Every query received is counted. */
#ifndef FAKE_DNS_H
#define FAKE_DNS_H

#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

struct fake_rr { const char *name; int type; const char *data; uint32_t ttl; };

struct fake_dns {
	uv_udp_t udp;
	int port;
	const struct fake_rr *rrs;
	size_t nrrs;
	int queries;
	bool held;              /* a "hold." query went unanswered */
	uv_tcp_t tcp;           /* fake_dns_start_tcp */
	bool tcp_on;
	int tcp_closed;         /* TCP connections closed unanswered */
};

static void fake_dns_alloc_cb(uv_handle_t *h, size_t sugg, uv_buf_t *b)
{
	static char buf[2048];

	(void)h; (void)sugg;
	b->base = buf;
	b->len = sizeof(buf);
}

static size_t fake_dns_put_name(unsigned char *out, const char *name)
{
	size_t o = 0;

	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);

		out[o++] = (unsigned char)l;
		memcpy(out + o, name, l);
		o += l;
		name += l;
		if (*name == '.')
			name++;
	}
	out[o++] = 0;
	return o;
}

static void fake_dns_send_cb(uv_udp_send_t *req, int status)
{
	(void)status;
	free(req);
}

static void fake_dns_recv_cb(uv_udp_t *u, ssize_t n, const uv_buf_t *b, const struct sockaddr *from,
    unsigned flags)
{
	struct fake_dns *fd = u->data;
	const unsigned char *q = (const unsigned char *)b->base;
	unsigned char *out;
	char name[256];
	size_t off = 12, no = 0, o, qend;
	int qtype, nans = 0, rcode = 0;
	uv_udp_send_t *req;
	uv_buf_t ob;

	(void)flags;
	if (n < 17 || from == NULL)
		return;
	fd->queries++;
	while (off < (size_t)n && q[off] != 0 && no < sizeof(name) - 70) {
		size_t l = q[off++];

		if (no)
			name[no++] = '.';
		for (size_t i = 0; i < l && off < (size_t)n; i++)
			name[no++] = (char)tolower(q[off++]);
	}
	name[no] = '\0';
	off++;
	if (off + 4 > (size_t)n)
		return;
	qtype = q[off] << 8 | q[off + 1];
	qend = off + 4;
	if (strncmp(name, "drop.", 5) == 0)
		return;
	if (strncmp(name, "hold.", 5) == 0 && !fd->held) {
		fd->held = true;
		return;
	}
	req = malloc(sizeof(*req) + 2048);
	out = (unsigned char *)(req + 1);
	memcpy(out, q, qend);
	o = qend;
	if (strncmp(name, "servfail.", 9) == 0) {
		rcode = 2;
	} else if (strncmp(name, "tc.", 3) == 0) {
		out[2] = 0x86 | (q[2] & 0x01);	/* QR, AA, TC */
	} else if (strncmp(name, "nosoa.", 6) == 0) {
		rcode = 3;		/* NXDOMAIN without the SOA RFC 2308 asks for */
	} else {
		bool exists = false;

		for (size_t i = 0; i < fd->nrrs; i++) {
			const struct fake_rr *rr = &fd->rrs[i];

			if (strcasecmp(rr->name, name) != 0)
				continue;
			exists = true;
			if (rr->type != qtype)
				continue;
			out[o++] = 0xc0; out[o++] = 12;
			out[o++] = 0; out[o++] = (unsigned char)rr->type;
			out[o++] = 0; out[o++] = 1;
			out[o++] = (unsigned char)(rr->ttl >> 24); out[o++] = (unsigned char)(rr->ttl >> 16);
			out[o++] = (unsigned char)(rr->ttl >> 8); out[o++] = (unsigned char)rr->ttl;
			if (rr->type == 1) {
				out[o++] = 0; out[o++] = 4;
				inet_pton(AF_INET, rr->data, out + o);
				o += 4;
			} else if (rr->type == 28) {
				out[o++] = 0; out[o++] = 16;
				inet_pton(AF_INET6, rr->data, out + o);
				o += 16;
			} else if (rr->type == 16) {
				size_t l = strlen(rr->data);

				out[o++] = 0; out[o++] = (unsigned char)(l + 1);
				out[o++] = (unsigned char)l;
				memcpy(out + o, rr->data, l);
				o += l;
			} else if (rr->type == 12) {
				size_t l = fake_dns_put_name(out + o + 2, rr->data);

				out[o++] = (unsigned char)(l >> 8); out[o++] = (unsigned char)l;
				o += l;
			}
			nans++;
		}
		if (!exists) {
			/* NXDOMAIN with an SOA in the authority section (RFC 2308) */
			size_t rdstart, l;

			rcode = 3;
			out[o++] = 0xc0; out[o++] = 12;
			out[o++] = 0; out[o++] = 6; out[o++] = 0; out[o++] = 1;
			out[o++] = 0; out[o++] = 0; out[o++] = 0; out[o++] = 60;
			rdstart = o;
			o += 2;
			o += fake_dns_put_name(out + o, "ns.test");
			o += fake_dns_put_name(out + o, "hostmaster.test");
			for (int i = 0; i < 4; i++) {
				out[o++] = 0; out[o++] = 0; out[o++] = 0x0e; out[o++] = 0x10;
			}
			out[o++] = 0; out[o++] = 0; out[o++] = 0; out[o++] = 30;	/* MINIMUM */
			l = o - rdstart - 2;
			out[rdstart] = (unsigned char)(l >> 8);
			out[rdstart + 1] = (unsigned char)l;
		}
	}
	if (strncmp(name, "tc.", 3) != 0)
		out[2] = 0x84 | (q[2] & 0x01);	/* QR, AA, RD copied */
	out[3] = (unsigned char)(0x80 | rcode);
	out[6] = 0; out[7] = (unsigned char)nans;
	out[8] = 0; out[9] = rcode == 3 && strncmp(name, "nosoa.", 6) != 0 ? 1 : 0;
	out[10] = 0; out[11] = 0;
	ob = uv_buf_init((char *)out, (unsigned)o);
	if (uv_udp_send(req, u, &ob, 1, from, fake_dns_send_cb) != 0)
		free(req);
}

/* Starts the server on loop; returns 0 and fills fd->port. */
static int fake_dns_start(struct fake_dns *fd, uv_loop_t *loop, const struct fake_rr *rrs, size_t n)
{
	struct sockaddr_in sa;
	struct sockaddr_storage bound;
	int len = sizeof(bound);

	memset(fd, 0, sizeof(*fd));
	fd->rrs = rrs;
	fd->nrrs = n;
	uv_udp_init(loop, &fd->udp);
	fd->udp.data = fd;
	uv_ip4_addr("127.0.0.1", 0, &sa);
	if (uv_udp_bind(&fd->udp, (const struct sockaddr *)&sa, 0) != 0)
		return -1;
	uv_udp_getsockname(&fd->udp, (struct sockaddr *)&bound, &len);
	fd->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
	return uv_udp_recv_start(&fd->udp, fake_dns_alloc_cb, fake_dns_recv_cb);
}

static void fake_dns_tcp_free_cb(uv_handle_t *h)
{
	free(h);
}

/* A TCP query read (or the connection ended): closed, never answered. */
static void fake_dns_tcp_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct fake_dns *fd = s->data;

	(void)b;
	if (n == 0)
		return;
	fd->tcp_closed++;
	uv_read_stop(s);
	uv_close((uv_handle_t *)s, fake_dns_tcp_free_cb);
}

static void fake_dns_tcp_conn_cb(uv_stream_t *l, int status)
{
	uv_tcp_t *c;

	if (status != 0)
		return;
	c = malloc(sizeof(*c));
	uv_tcp_init(l->loop, c);
	c->data = l->data;
	if (uv_accept(l, (uv_stream_t *)c) != 0 ||
	    uv_read_start((uv_stream_t *)c, fake_dns_alloc_cb, fake_dns_tcp_read_cb) != 0)
		uv_close((uv_handle_t *)c, fake_dns_tcp_free_cb);
}

/* fake_dns_start with a TCP listener on the same port. The pair is picked while both sockets
 * are held: a UDP port the kernel gave is no promise its TCP twin is free (tests run in
 * parallel; the listener's EADDRINUSE failed test_dns once in CI). 0 or -1. */
static inline int fake_dns_start_tcp(struct fake_dns *fd, uv_loop_t *loop, const struct fake_rr *rrs,
    size_t n)
{
	for (int i = 0; i < 64; i++) {
		struct sockaddr_in sa;
		socklen_t len = sizeof(sa);
		int t = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);

		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (t < 0 || u < 0 || bind(t, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
		    getsockname(t, (struct sockaddr *)&sa, &len) != 0) {
			if (t >= 0)
				close(t);
			if (u >= 0)
				close(u);
			return -1;
		}
		if (bind(u, (struct sockaddr *)&sa, sizeof(sa)) != 0) {   /* UDP twin taken: another pair */
			close(t);
			close(u);
			continue;
		}
		memset(fd, 0, sizeof(*fd));
		fd->rrs = rrs;
		fd->nrrs = n;
		fd->port = ntohs(sa.sin_port);
		uv_udp_init(loop, &fd->udp);
		fd->udp.data = fd;
		uv_tcp_init(loop, &fd->tcp);
		fd->tcp.data = fd;
		fd->tcp_on = true;
		if (uv_udp_open(&fd->udp, u) != 0 || uv_tcp_open(&fd->tcp, t) != 0 ||
		    uv_listen((uv_stream_t *)&fd->tcp, 8, fake_dns_tcp_conn_cb) != 0)
			return -1;
		return uv_udp_recv_start(&fd->udp, fake_dns_alloc_cb, fake_dns_recv_cb);
	}
	return -1;
}

static void fake_dns_stop(struct fake_dns *fd)
{
	uv_udp_recv_stop(&fd->udp);
	uv_close((uv_handle_t *)&fd->udp, NULL);
	if (fd->tcp_on)
		uv_close((uv_handle_t *)&fd->tcp, NULL);
}

#endif
