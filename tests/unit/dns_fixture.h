/* dns_fixture.h — a test's loop with the fake DNS server of fake_dns.h on it and an
 * mx_config's dns section pointed at that server, for the unit tests of hook modules that
 * look names up (test_dnsbl.c, test_helo.c, test_rdns.c, test_senderauth.c,
 * test_senderdom.c). Header-only (static), included after cmocka.h; test_dns.c drives
 * fake_dns.h without a config and does not use it.
 *
 *     struct fixture { struct dns_fixture dns; struct mx_config cfg; ... };
 *     dns_fixture_start(&f->dns, &f->cfg, zone, sizeof(zone) / sizeof(zone[0]));
 *     f->cfg.dns.timeout = 400;                  // where a test wants other values
 *     ... worker_init(&f->cfg, &f->dns.loop, ...), chain_init(..., &f->dns.timer) ...
 *     ... worker_free(...);
 *     dns_fixture_stop(&f->dns); */
#ifndef DNS_FIXTURE_H
#define DNS_FIXTURE_H

#include <stdio.h>
#include <uv.h>

#include "proxy/config.h"
#include "fake_dns.h"

struct dns_fixture {
	uv_loop_t loop;
	uv_timer_t timer;        /* the chain's (chain_init) */
	struct fake_dns fd;
	char resolver[64];       /* "127.0.0.1:PORT" of fd; a test may point it elsewhere */
	char *resolvers[1];
};

/* Starts the loop, the server answering from zone (n records; the table is borrowed for
 * the fixture's life) and the timer, and points cfg at the server: hostname
 * "mx.example.test"; dns: the one resolver, timeout 300 ms, 1 try, no cache, negative TTL
 * 60 s, max TTL 1 h. cfg borrows d's resolver list: d outlives it. Fails the test when the
 * server cannot bind. */
static inline void dns_fixture_start(struct dns_fixture *d, struct mx_config *cfg,
    const struct fake_rr *zone, size_t n)
{
	uv_loop_init(&d->loop);
	assert_int_equal(fake_dns_start(&d->fd, &d->loop, zone, n), 0);
	uv_timer_init(&d->loop, &d->timer);
	snprintf(d->resolver, sizeof(d->resolver), "127.0.0.1:%d", d->fd.port);
	d->resolvers[0] = d->resolver;
	cfg->hostname = "mx.example.test";
	cfg->dns.resolvers.v = d->resolvers;
	cfg->dns.resolvers.n = 1;
	cfg->dns.timeout = 300;
	cfg->dns.tries = 1;
	cfg->dns.cache_size = 0;
	cfg->dns.negative_ttl = 60000;
	cfg->dns.max_ttl = 3600000;
}

/* After the modules' worker_free: closes the timer and the server, runs the loop until
 * nothing is left on it and closes it (fails the test when a handle is still open). */
static inline void dns_fixture_stop(struct dns_fixture *d)
{
	uv_close((uv_handle_t *)&d->timer, NULL);
	fake_dns_stop(&d->fd);
	uv_run(&d->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&d->loop), 0);
}

#endif
