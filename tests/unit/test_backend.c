/* test_backend.c — proxy/backend.c: URL parsing, pool_new from a YAML config, balancing
 * (weighted round robin, least_conn, source_hash by rendezvous), routes with "*." wildcards,
 * the `tried` mask, the all-down fallback and passive failure tracking (fall). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <pthread.h>

#include "proxy/backend.h"
#include "proxy/config.h"

/* ------------------------------------------------------------ helpers */

/* Loads listen + the given backends section; fails the test on a config error. */
static struct pool *pool_from(const char *backends, struct mx_config **cfgp)
{
	char text[8192];
	char *errs = NULL;
	size_t elen = 0;
	const char *err = NULL;
	FILE *ef = open_memstream(&errs, &elen);

	snprintf(text, sizeof(text), "listen: [\"127.0.0.1:2525\"]\n%s", backends);
	int rc = config_load_string("t.yaml", text, strlen(text), cfgp, ef);
	fclose(ef);
	if (rc != 0)
		fail_msg("config rejected: %s\n%s", errs, text);
	free(errs);
	struct pool *p = pool_new(*cfgp, &err);
	if (p == NULL)
		fail_msg("pool_new: %s", err ? err : "?");
	return p;
}

static void pool_done(struct pool *p, struct mx_config *cfg)
{
	/* The health state and the connections in use are the URL's, for the whole process
	 * (backend.h): the next test's pool naming the same URL starts from a healthy, idle
	 * server, as a fresh process would. */
	for (size_t i = 0; i < p->nservers + p->nextra; i++) {
		struct backend *b = i < p->nservers ? &p->servers[i] : &p->extra[i - p->nservers];
		struct backend_health *h = backend_health(b);
		atomic_store(&h->up, 1);
		atomic_store(&h->fails, 0);
		atomic_store(&h->oks, 0);
		if (b->counts)
			atomic_store(&b->counts->active, 0);
	}
	pool_free(p);
	config_free(cfg);
}

/* Index of b in the default set, or 100 + index in extra, -1 for NULL. */
static int which(const struct pool *p, const struct backend *b)
{
	if (b == NULL)
		return -1;
	if (b >= p->servers && b < p->servers + p->nservers)
		return (int)(b - p->servers);
	if (b >= p->extra && b < p->extra + p->nextra)
		return 100 + (int)(b - p->extra);
	fail_msg("backend pointer %p is not in the pool", (const void *)b);
	return -2;
}

/* ------------------------------------------------------------ backend_parse_url */

struct url_row {
	const char *label, *url;
	int rc;
	enum backend_kind kind;
	int family;
	const char *addr;    /* numeric address, or unix path */
	int port;
};

static const struct url_row url_rows[] = {
	{ "smtp v4", "smtp://127.0.0.1:2526", 0, BACKEND_SMTP, AF_INET, "127.0.0.1", 2526 },
	{ "scheme is case-insensitive", "SMTP://127.0.0.1:25", 0, BACKEND_SMTP, AF_INET, "127.0.0.1", 25 },
	{ "lmtp v4", "lmtp://10.1.2.3:24", 0, BACKEND_LMTP, AF_INET, "10.1.2.3", 24 },
	{ "smtp v6 in brackets", "smtp://[::1]:2526", 0, BACKEND_SMTP, AF_INET6, "::1", 2526 },
	{ "lmtp v6 in brackets", "lmtp://[2001:db8::5]:24", 0, BACKEND_LMTP, AF_INET6, "2001:db8::5", 24 },
	{ "leading zeros in port", "smtp://127.0.0.1:0025", 0, BACKEND_SMTP, AF_INET, "127.0.0.1", 25 },
	{ "port 65535", "smtp://127.0.0.1:65535", 0, BACKEND_SMTP, AF_INET, "127.0.0.1", 65535 },
	{ "localhost resolves", "smtp://localhost:25", 0, BACKEND_SMTP, -1, NULL, 25 },
	{ "lmtp unix socket", "lmtp:unix:/run/dovecot/lmtp", 0, BACKEND_LMTP, AF_UNIX, "/run/dovecot/lmtp", 0 },
	{ "maildir", "maildir:/var/spool/mx/Maildir", 0, BACKEND_MAILDIR, 0, "/var/spool/mx/Maildir", 0 },
	{ "no port: smtp defaults to 25", "smtp://127.0.0.1", 0, BACKEND_SMTP, AF_INET, "127.0.0.1", 25 },
	{ "no port: lmtp defaults to 24", "lmtp://127.0.0.1", 0, BACKEND_LMTP, AF_INET, "127.0.0.1", 24 },
	{ "empty port", "smtp://127.0.0.1:", -1, 0, 0, NULL, 0 },
	{ "port 0", "smtp://127.0.0.1:0", -1, 0, 0, NULL, 0 },
	{ "port 65536", "smtp://127.0.0.1:65536", -1, 0, 0, NULL, 0 },
	{ "huge port", "smtp://127.0.0.1:99999999999999999999", -1, 0, 0, NULL, 0 },
	{ "signed port", "smtp://127.0.0.1:+25", -1, 0, 0, NULL, 0 },
	{ "port with path", "smtp://127.0.0.1:25/", -1, 0, 0, NULL, 0 },
	{ "empty host", "smtp://:25", -1, 0, 0, NULL, 0 },
	{ "v6 without brackets has no unambiguous port", "smtp://[::1]25", -1, 0, 0, NULL, 0 },
	{ "v6 unclosed bracket", "smtp://[::1:25", -1, 0, 0, NULL, 0 },
	{ "unresolvable name", "smtp://nosuch.invalid:25", -1, 0, 0, NULL, 0 },
	{ "relative unix path", "lmtp:unix:run/lmtp", -1, 0, 0, NULL, 0 },
	{ "empty unix path", "lmtp:unix:", -1, 0, 0, NULL, 0 },
	{ "maildir without path", "maildir:", -1, 0, 0, NULL, 0 },
	{ "unknown scheme", "http://127.0.0.1:80", -1, 0, 0, NULL, 0 },
	{ "empty", "", -1, 0, 0, NULL, 0 },
	{ "scheme only", "smtp://", -1, 0, 0, NULL, 0 },
};

static void test_parse_url(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(url_rows) / sizeof(url_rows[0]); i++) {
		const struct url_row *r = &url_rows[i];
		struct backend b;
		const char *err = NULL;
		int rc = backend_parse_url(r->url, &b, &err);

		if (rc != r->rc)
			fail_msg("row \"%s\" (%s): rc %d, want %d (%s)", r->label, r->url, rc, r->rc, err ? err : "");
		if (rc != 0) {
			if (err == NULL || err[0] == '\0')
				fail_msg("row \"%s\": no reason", r->label);
			continue;
		}
		if (b.kind != r->kind)
			fail_msg("row \"%s\": kind %d", r->label, (int)b.kind);
		assert_int_equal(b.weight, 1);
		assert_true(b.host[0] != '\0');
		char buf[INET6_ADDRSTRLEN] = "";
		if (r->family == AF_INET) {
			const struct sockaddr_in *in = (const struct sockaddr_in *)&b.sa;
			assert_int_equal(in->sin_family, AF_INET);
			assert_int_equal(b.salen, sizeof(*in));
			inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
			if (strcmp(buf, r->addr) != 0 || ntohs(in->sin_port) != r->port)
				fail_msg("row \"%s\": %s:%d", r->label, buf, ntohs(in->sin_port));
		} else if (r->family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&b.sa;
			assert_int_equal(in6->sin6_family, AF_INET6);
			assert_int_equal(b.salen, sizeof(*in6));
			inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
			if (strcmp(buf, r->addr) != 0 || ntohs(in6->sin6_port) != r->port)
				fail_msg("row \"%s\": [%s]:%d", r->label, buf, ntohs(in6->sin6_port));
		} else if (r->family == -1) {
			/* a name: either family, the port as given */
			int port = b.sa.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&b.sa)->sin_port)
			    : ntohs(((struct sockaddr_in6 *)&b.sa)->sin6_port);
			assert_true(b.sa.ss_family == AF_INET || b.sa.ss_family == AF_INET6);
			assert_int_equal(port, r->port);
		} else if (r->family == AF_UNIX) {
			const struct sockaddr_un *un = (const struct sockaddr_un *)&b.sa;
			assert_int_equal(un->sun_family, AF_UNIX);
			assert_string_equal(un->sun_path, r->addr);
			assert_string_equal(b.host, r->addr);
		} else {
			assert_string_equal(b.host, r->addr);
		}
	}
}

static void test_parse_url_long_unix_path(void **state)
{
	char url[300];
	struct backend b;
	const char *err = NULL;

	(void)state;
	memcpy(url, "lmtp:unix:/", 11);
	memset(url + 11, 'a', sizeof(url) - 12);
	url[sizeof(url) - 1] = '\0';
	assert_int_equal(backend_parse_url(url, &b, &err), -1);
	assert_non_null(err);
	/* exactly the longest path sun_path holds */
	url[10 + sizeof(((struct sockaddr_un *)0)->sun_path) - 1] = '\0';
	assert_int_equal(backend_parse_url(url, &b, &err), 0);
}

/* ------------------------------------------------------------ pool_new */

static void test_pool_new(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from(
	    "backends:\n"
	    "  health_check: { fall: 3, rise: 4 }\n"
	    "  servers:\n"
	    "    - { address: \"smtp://127.0.0.1:2526\", weight: 5 }\n"
	    "    - \"lmtp://127.0.0.1:2424\"\n"
	    "    - \"maildir:/var/spool/mx/Maildir\"\n"
	    "  routes:\n"
	    "    - { domains: [Example.ORG, \"*.Example.NET\"], servers: [\"smtp://127.0.0.1:2530\", \"SMTP://127.0.0.1:2526\"] }\n"
	    "    - { domains: [other.test], servers: [\"smtp://127.0.0.1:2530\"] }\n",
	    &cfg);

	(void)state;
	assert_int_equal(p->nservers, 3);
	assert_int_equal(p->fall, 3);
	assert_int_equal(p->rise, 4);
	assert_int_equal(p->balance, BALANCE_ROUND_ROBIN);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(p->servers[i].index, (int)i);
		assert_int_equal(atomic_load(&backend_health(&p->servers[i])->up), 1);
		assert_int_equal(backend_active_all(&p->servers[i]), 0);
	}
	assert_int_equal(p->servers[0].weight, 5);
	assert_int_equal(p->servers[1].weight, 1);
	assert_string_equal(p->servers[0].url, "smtp://127.0.0.1:2526");
	assert_int_equal(p->servers[1].kind, BACKEND_LMTP);
	assert_int_equal(p->servers[2].kind, BACKEND_MAILDIR);
	assert_string_equal(p->servers[2].path, "/var/spool/mx/Maildir");
	assert_null(p->servers[0].path);
	/* a route-only server is built once, shared by both routes; a route naming a default
	 * server (URL case differs) shares that server's state */
	assert_int_equal(p->nextra, 1);
	assert_int_equal(p->nroutes, 2);
	assert_int_equal(p->routes[0].ndomains, 2);
	assert_string_equal(p->routes[0].domains[0], "example.org");
	assert_string_equal(p->routes[0].domains[1], "*.example.net");
	assert_int_equal(p->routes[0].nservers, 2);
	assert_ptr_equal(p->routes[0].servers[0], &p->extra[0]);
	assert_ptr_equal(p->routes[0].servers[1], &p->servers[0]);
	assert_ptr_equal(p->routes[1].servers[0], &p->extra[0]);
	assert_int_equal(atomic_load(&backend_health(&p->extra[0])->up), 1);
	pool_done(p, cfg);
}

static void test_pool_new_defaults(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends: { servers: [\"smtp://127.0.0.1:2526\"] }\n", &cfg);

	(void)state;
	assert_int_equal(p->nservers, 1);
	assert_int_equal(p->nroutes, 0);
	assert_int_equal(p->nextra, 0);
	assert_int_equal(p->fall, 2);
	assert_int_equal(p->rise, 2);
	/* no routes: every domain goes to the default set */
	assert_int_equal(pool_route_for(p, "example.org"), 0);
	assert_ptr_equal(pool_pick_backend(p, "example.org", "192.0.2.1", 0), &p->servers[0]);
	pool_done(p, cfg);
	pool_free(NULL);
}

/* A name that passes config validation but does not resolve: pool_new fails cleanly (ASan
 * checks that the partial pool is freed). */
static void test_pool_new_unresolvable(void **state)
{
	static const char *texts[] = {
		"listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:25\", \"smtp://nosuch.invalid:25\"] }\n",
		"listen: [\"127.0.0.1:2525\"]\nbackends:\n  servers: [\"smtp://127.0.0.1:25\"]\n"
		"  routes: [ { domains: [a.test], servers: [\"smtp://127.0.0.2:25\", \"smtp://nosuch.invalid:25\"] } ]\n",
	};
	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct mx_config *cfg = NULL;
		const char *err = NULL;
		FILE *devnull = fopen("/dev/null", "w");
		int rc = config_load_string("t.yaml", texts[i], strlen(texts[i]), &cfg, devnull);
		fclose(devnull);
		if (rc != 0)
			continue;      /* the config layer refused it already: fine too */
		assert_null(pool_new(cfg, &err));
		assert_non_null(err);
		config_free(cfg);
	}
}

/* ------------------------------------------------------------ balancing */

#define THREE "    - \"smtp://127.0.0.1:2601\"\n    - \"smtp://127.0.0.1:2602\"\n    - \"smtp://127.0.0.1:2603\"\n"

static void count_picks(struct pool *p, const char *dom, const char *ip, uint64_t tried, int n, int *hits, size_t nhits)
{
	memset(hits, 0, nhits * sizeof(*hits));
	for (int i = 0; i < n; i++) {
		int w = which(p, pool_pick_backend(p, dom, ip, tried));
		if (w < 0 || (size_t)w >= nhits)
			fail_msg("pick %d: backend %d", i, w);
		hits[w]++;
	}
}

static void test_round_robin(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends:\n  servers:\n" THREE, &cfg);
	int hits[3];

	(void)state;
	/* plain: strict rotation */
	int prev = which(p, pool_pick_backend(p, NULL, NULL, 0));
	for (int i = 0; i < 30; i++) {
		int w = which(p, pool_pick_backend(p, NULL, NULL, 0));
		assert_int_equal(w, (prev + 1) % 3);
		prev = w;
	}
	count_picks(p, NULL, NULL, 0, 300, hits, 3);
	assert_int_equal(hits[0], 100);
	assert_int_equal(hits[1], 100);
	assert_int_equal(hits[2], 100);
	/* a down server leaves the rotation; the others share evenly */
	atomic_store(&backend_health(&p->servers[1])->up, 0);
	count_picks(p, NULL, NULL, 0, 300, hits, 3);
	assert_int_equal(hits[1], 0);
	assert_int_equal(hits[0], 150);
	assert_int_equal(hits[2], 150);
	/* tried: never the tried ones */
	atomic_store(&backend_health(&p->servers[1])->up, 1);
	count_picks(p, NULL, NULL, 1u << 0, 100, hits, 3);
	assert_int_equal(hits[0], 0);
	assert_int_equal(hits[1], 50);
	assert_int_equal(hits[2], 50);
	count_picks(p, NULL, NULL, (1u << 0) | (1u << 2), 10, hits, 3);
	assert_int_equal(hits[1], 10);
	assert_null(pool_pick_backend(p, NULL, NULL, 7));
	/* bits of servers that do not exist change nothing */
	count_picks(p, NULL, NULL, ~(uint64_t)7, 30, hits, 3);
	assert_int_equal(hits[0], 10);
	pool_done(p, cfg);
}

static void test_weighted_round_robin(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends:\n  servers:\n"
	    "    - { address: \"smtp://127.0.0.1:2601\", weight: 1 }\n"
	    "    - { address: \"smtp://127.0.0.1:2602\", weight: 3 }\n"
	    "    - { address: \"smtp://127.0.0.1:2603\", weight: 6 }\n", &cfg);
	int hits[3];

	(void)state;
	count_picks(p, NULL, NULL, 0, 1000, hits, 3);
	assert_int_equal(hits[0], 100);
	assert_int_equal(hits[1], 300);
	assert_int_equal(hits[2], 600);
	/* the heavy one down: 1:3 between the others */
	atomic_store(&backend_health(&p->servers[2])->up, 0);
	count_picks(p, NULL, NULL, 0, 400, hits, 3);
	assert_int_equal(hits[0], 100);
	assert_int_equal(hits[1], 300);
	assert_int_equal(hits[2], 0);
	pool_done(p, cfg);
}

/* backend.c promises a virtual list "interleaved by position": equal weights should not
 * send runs of `weight` consecutive messages to one backend. */
static void test_weighted_round_robin_interleaves(void **state)
{
	struct mx_config *cfg;
	struct pool *p;
	int run = 0, maxrun = 0, prev = -1;

	(void)state;
	p = pool_from("backends:\n  servers:\n"
	    "    - { address: \"smtp://127.0.0.1:2601\", weight: 5 }\n"
	    "    - { address: \"smtp://127.0.0.1:2602\", weight: 5 }\n", &cfg);
	for (int i = 0; i < 20; i++) {
		int w = which(p, pool_pick_backend(p, NULL, NULL, 0));
		run = w == prev ? run + 1 : 1;
		prev = w;
		if (run > maxrun)
			maxrun = run;
	}
	pool_done(p, cfg);
	if (maxrun > 1)
		fail_msg("weights 5:5 gave a run of %d picks of one backend (want alternation)", maxrun);
}

static void test_least_conn(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends:\n  balance: least_conn\n  servers:\n" THREE, &cfg);
	int hits[3];

	(void)state;
	assert_int_equal(p->balance, BALANCE_LEAST_CONN);
	atomic_store(&p->servers[0].counts->active, 5);
	atomic_store(&p->servers[1].counts->active, 1);
	atomic_store(&p->servers[2].counts->active, 3);
	count_picks(p, NULL, NULL, 0, 10, hits, 3);
	assert_int_equal(hits[1], 10);
	/* the least loaded one tried: next least */
	count_picks(p, NULL, NULL, 1u << 1, 10, hits, 3);
	assert_int_equal(hits[2], 10);
	/* the least loaded one down */
	atomic_store(&backend_health(&p->servers[1])->up, 0);
	count_picks(p, NULL, NULL, 0, 10, hits, 3);
	assert_int_equal(hits[2], 10);
	atomic_store(&backend_health(&p->servers[1])->up, 1);
	/* simulated sessions: each pick opens a connection; the loads stay level */
	atomic_store(&p->servers[0].counts->active, 0);
	atomic_store(&p->servers[1].counts->active, 0);
	atomic_store(&p->servers[2].counts->active, 0);
	for (int i = 0; i < 30; i++)
		atomic_fetch_add(&pool_pick_backend(p, NULL, NULL, 0)->counts->active, 1);
	assert_int_equal(atomic_load(&p->servers[0].counts->active), 10);
	assert_int_equal(atomic_load(&p->servers[1].counts->active), 10);
	assert_int_equal(atomic_load(&p->servers[2].counts->active), 10);
	pool_done(p, cfg);
}

static void test_least_conn_weighted(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends:\n  balance: least_conn\n  servers:\n"
	    "    - { address: \"smtp://127.0.0.1:2601\", weight: 1 }\n"
	    "    - { address: \"smtp://127.0.0.1:2602\", weight: 4 }\n", &cfg);

	(void)state;
	/* 2/1 > 5/4: the heavier one although it has more connections */
	atomic_store(&p->servers[0].counts->active, 2);
	atomic_store(&p->servers[1].counts->active, 5);
	assert_ptr_equal(pool_pick_backend(p, NULL, NULL, 0), &p->servers[1]);
	/* level by load: 40 sessions end 8:32 */
	atomic_store(&p->servers[0].counts->active, 0);
	atomic_store(&p->servers[1].counts->active, 0);
	for (int i = 0; i < 40; i++)
		atomic_fetch_add(&pool_pick_backend(p, NULL, NULL, 0)->counts->active, 1);
	assert_int_equal(atomic_load(&p->servers[0].counts->active), 8);
	assert_int_equal(atomic_load(&p->servers[1].counts->active), 32);
	/* light load (each connection ended before the next pick): only ties, which follow
	 * the weights, 1:4 */
	atomic_store(&p->servers[0].counts->active, 0);
	atomic_store(&p->servers[1].counts->active, 0);
	int hits[2];
	count_picks(p, NULL, NULL, 0, 40, hits, 2);
	assert_int_equal(hits[0], 8);
	assert_int_equal(hits[1], 32);
	/* a tie at a load above zero too: 1/1 and 4/4 */
	atomic_store(&p->servers[0].counts->active, 1);
	atomic_store(&p->servers[1].counts->active, 4);
	count_picks(p, NULL, NULL, 0, 40, hits, 2);
	assert_int_equal(hits[0], 8);
	assert_int_equal(hits[1], 32);
	pool_done(p, cfg);
}

/* Equal loads (e.g. every connection idle or pooled): picks should still rotate, like
 * HAProxy's leastconn does among equals; the code starts a rotating scan for that. */
static void test_least_conn_ties_rotate(void **state)
{
	struct mx_config *cfg;
	struct pool *p;
	int hits[3];

	(void)state;
	p = pool_from("backends:\n  balance: least_conn\n  servers:\n" THREE, &cfg);
	count_picks(p, NULL, NULL, 0, 30, hits, 3);
	pool_done(p, cfg);
	if (hits[0] != 10 || hits[1] != 10 || hits[2] != 10)
		fail_msg("least_conn with equal loads: %d/%d/%d (want 10/10/10)", hits[0], hits[1], hits[2]);
}

static void ip_of(int i, char *buf, size_t cap)
{
	if (i % 3 == 2)
		snprintf(buf, cap, "2001:db8:%x::%x", i / 7, i);
	else
		snprintf(buf, cap, "198.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
}

static void test_source_hash(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends:\n  balance: source_hash\n  servers:\n" THREE, &cfg);
	enum { N = 3000 };
	static int first[N];
	int hits[3] = { 0 };
	char ip[64];

	(void)state;
	assert_int_equal(p->balance, BALANCE_SOURCE_HASH);
	/* stable per client, spread over clients */
	for (int i = 0; i < N; i++) {
		ip_of(i, ip, sizeof(ip));
		first[i] = which(p, pool_pick_backend(p, NULL, ip, 0));
		assert_int_equal(which(p, pool_pick_backend(p, NULL, ip, 0)), first[i]);
		hits[first[i]]++;
	}
	for (int k = 0; k < 3; k++)
		if (hits[k] < N / 3 - N / 15 || hits[k] > N / 3 + N / 15)
			fail_msg("source_hash spread %d/%d/%d over %d clients", hits[0], hits[1], hits[2], N);
	/* rendezvous: backend 1 leaving moves only its own clients */
	atomic_store(&backend_health(&p->servers[1])->up, 0);
	for (int i = 0; i < N; i++) {
		ip_of(i, ip, sizeof(ip));
		int w = which(p, pool_pick_backend(p, NULL, ip, 0));
		assert_int_not_equal(w, 1);
		if (first[i] != 1 && w != first[i])
			fail_msg("client %s moved from %d to %d when backend 1 left", ip, first[i], w);
	}
	/* ... and comes back to it when it returns */
	atomic_store(&backend_health(&p->servers[1])->up, 1);
	for (int i = 0; i < N; i++) {
		ip_of(i, ip, sizeof(ip));
		assert_int_equal(which(p, pool_pick_backend(p, NULL, ip, 0)), first[i]);
	}
	/* tried: a retry of the same client goes to its second choice, stably */
	for (int i = 0; i < 100; i++) {
		ip_of(i, ip, sizeof(ip));
		uint64_t t = 1ull << first[i];
		int second = which(p, pool_pick_backend(p, NULL, ip, t));
		assert_int_not_equal(second, first[i]);
		assert_int_equal(which(p, pool_pick_backend(p, NULL, ip, t)), second);
	}
	/* no client address: still a pick, always the same */
	int w0 = which(p, pool_pick_backend(p, NULL, NULL, 0));
	assert_true(w0 >= 0);
	assert_int_equal(which(p, pool_pick_backend(p, NULL, NULL, 0)), w0);
	pool_done(p, cfg);
}

/* Weighted rendezvous should share clients in proportion to the weights (1:3 -> 25%:75%).
 * Scoring with U * weight gives 1/6 : 5/6 instead; -weight / ln(U) is proportional. */
static void test_source_hash_weighted(void **state)
{
	struct mx_config *cfg;
	struct pool *p;
	int hits[2] = { 0 };
	char ip[64];

	(void)state;
	p = pool_from("backends:\n  balance: source_hash\n  servers:\n"
	    "    - { address: \"smtp://127.0.0.1:2601\", weight: 1 }\n"
	    "    - { address: \"smtp://127.0.0.1:2602\", weight: 3 }\n", &cfg);
	for (int i = 0; i < 4000; i++) {
		ip_of(i, ip, sizeof(ip));
		hits[which(p, pool_pick_backend(p, NULL, ip, 0))]++;
	}
	pool_done(p, cfg);
	if (hits[0] < 850 || hits[0] > 1150)
		fail_msg("weights 1:3 gave %d:%d of 4000 clients (want about 1000:3000)", hits[0], hits[1]);
}

/* ------------------------------------------------------------ routes */

#define ROUTED \
	"backends:\n  servers:\n" THREE \
	"  routes:\n" \
	"    - { domains: [example.org, \"*.example.net\"], servers: [\"smtp://127.0.0.1:2701\", \"smtp://127.0.0.1:2702\"] }\n" \
	"    - { domains: [\"*.sub.example.org\", other.test], servers: [\"smtp://127.0.0.1:2703\"] }\n" \
	"    - { domains: [\"deep.example.net\"], servers: [\"smtp://127.0.0.1:2704\"] }\n"

struct route_row { const char *label, *domain; int route; };

static const struct route_row route_rows[] = {
	{ "no domain", NULL, 0 },
	{ "empty domain", "", 0 },
	{ "unrouted domain", "example.com", 0 },
	{ "exact", "example.org", 1 },
	{ "exact, other case", "EXAMPLE.Org", 1 },
	{ "subdomain of an exact entry is not routed", "www.example.org", 0 },
	{ "wildcard: one label", "a.example.net", 1 },
	{ "wildcard: two labels", "a.b.example.net", 1 },
	{ "wildcard, other case", "A.Example.NET", 1 },
	{ "wildcard does not match the bare domain", "example.net", 0 },
	{ "wildcard needs a dot boundary", "badexample.net", 0 },
	{ "wildcard does not match a suffix of the label", "a.xexample.net", 0 },
	{ "second route, exact", "other.test", 2 },
	{ "second route, wildcard", "x.sub.example.org", 2 },
	{ "the bare domain of a wildcard entry is not routed", "sub.example.org", 0 },
	{ "first matching route wins over a later exact entry", "deep.example.net", 1 },
	{ "a domain that is only a dot", ".", 0 },
	{ "a domain ending in the pattern without its dot", "net", 0 },
};

static void test_routes(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from(ROUTED, &cfg);
	int hits[110];

	(void)state;
	for (size_t i = 0; i < sizeof(route_rows) / sizeof(route_rows[0]); i++) {
		const struct route_row *r = &route_rows[i];
		int got = pool_route_for(p, r->domain);
		if (got != r->route)
			fail_msg("row \"%s\" (%s): route %d, want %d", r->label, r->domain ? r->domain : "NULL", got, r->route);
	}
	/* a routed domain picks only its route's servers, in turn */
	assert_int_equal(p->nextra, 4);
	count_picks(p, "a.example.net", NULL, 0, 100, hits, 110);
	assert_int_equal(hits[100], 50);
	assert_int_equal(hits[101], 50);
	count_picks(p, "other.test", NULL, 0, 10, hits, 110);
	assert_int_equal(hits[102], 10);
	count_picks(p, "example.com", NULL, 0, 30, hits, 110);
	assert_int_equal(hits[0] + hits[1] + hits[2], 30);
	/* tried bits name backends by their pool-wide index */
	const struct backend_route *rt = &p->routes[pool_route_for(p, "example.org") - 1];
	uint64_t t0 = 1ULL << rt->servers[0]->index, t1 = 1ULL << rt->servers[1]->index;
	count_picks(p, "example.org", NULL, t0, 10, hits, 110);
	assert_int_equal(hits[101], 10);
	assert_null(pool_pick_backend(p, "example.org", NULL, t0 | t1));
	const struct backend_route *ro = &p->routes[pool_route_for(p, "other.test") - 1];
	assert_null(pool_pick_backend(p, "other.test", NULL, 1ULL << ro->servers[0]->index));
	/* a route whose servers are all down falls back to its own servers, never the
	 * default set */
	atomic_store(&backend_health(&p->extra[0])->up, 0);
	atomic_store(&backend_health(&p->extra[1])->up, 0);
	count_picks(p, "example.org", NULL, 0, 10, hits, 110);
	assert_int_equal(hits[100] + hits[101], 10);
	assert_true(hits[100] > 0 && hits[101] > 0);
	pool_done(p, cfg);
}

/* Messages alternating between a routed domain and the default set: each set should still
 * rotate over its servers. One cursor shared by every set aliases: with two servers in
 * each, the default set gets the even ticks (always server 0) and the route the odd ones
 * (always its second server). */
static void test_round_robin_per_set(void **state)
{
	struct mx_config *cfg;
	struct pool *p;
	int dflt[110] = { 0 }, routed[110] = { 0 };

	(void)state;
	p = pool_from("backends:\n  servers: [\"smtp://127.0.0.1:2601\", \"smtp://127.0.0.1:2602\"]\n"
	    "  routes:\n    - { domains: [example.org], servers: [\"smtp://127.0.0.1:2701\", \"smtp://127.0.0.1:2702\"] }\n",
	    &cfg);
	for (int i = 0; i < 40; i++) {
		dflt[which(p, pool_pick_backend(p, "example.com", NULL, 0))]++;
		routed[which(p, pool_pick_backend(p, "example.org", NULL, 0))]++;
	}
	pool_done(p, cfg);
	if (dflt[0] != 20 || dflt[1] != 20 || routed[100] != 20 || routed[101] != 20)
		fail_msg("alternating sets: default %d/%d, route %d/%d (want 20 each)", dflt[0], dflt[1],
		    routed[100], routed[101]);
}

/* The session marks a failed backend with `tried |= 1ULL << b->index` (session.c), while
 * pool_pick_backend reads bit i as position i within the chosen set. For a route the two
 * differ: route-only servers are numbered within pool->extra, default servers within
 * pool->servers. A retry must never get a backend already tried, and must reach every
 * other server of the set. */
static void test_tried_by_index_in_routes(void **state)
{
	struct mx_config *cfg;
	struct pool *p;
	static const char *doms[] = { "one.test", "two.test", "mixed.test" };
	int bad = 0;

	(void)state;
	static const char *modes[] = { "round_robin", "least_conn", "source_hash" };
	for (size_t m = 0; m < 3; m++) {
		char text[1024];
		snprintf(text, sizeof(text), "backends:\n  balance: %s\n"
		    "  servers: [\"smtp://127.0.0.1:2601\", \"smtp://127.0.0.1:2602\"]\n"
		    "  routes:\n"
		    "    - { domains: [one.test], servers: [\"smtp://127.0.0.1:2701\", \"smtp://127.0.0.1:2702\"] }\n"
		    "    - { domains: [two.test], servers: [\"smtp://127.0.0.1:2703\", \"smtp://127.0.0.1:2704\"] }\n"
		    "    - { domains: [mixed.test], servers: [\"smtp://127.0.0.1:2601\", \"smtp://127.0.0.1:2701\"] }\n",
		    modes[m]);
		p = pool_from(text, &cfg);
		for (size_t d = 0; d < 3; d++) {
			for (int round = 0; round < 4; round++) {
				char ip[32];
				uint64_t tried = 0;
				struct backend *seen[2] = { NULL, NULL };
				snprintf(ip, sizeof(ip), "192.0.2.%d", round * 37 + 1);
				for (int k = 0; k < 2; k++) {
					struct backend *b = pool_pick_backend(p, doms[d], ip, tried);
					if (b == NULL || (k == 1 && b == seen[0])) {
						print_error("%s %s client %s attempt %d: %s\n", modes[m], doms[d], ip, k + 1,
						    b == NULL ? "no backend although one is untried" : "the tried backend again");
						bad++;
						break;
					}
					seen[k] = b;
					tried |= 1ULL << b->index;    /* as session.c does */
				}
			}
		}
		pool_done(p, cfg);
	}
	if (bad)
		fail_msg("%d retries went wrong", bad);
}

/* ------------------------------------------------------------ all down, failures */

static void test_all_down_fallback(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends:\n  servers:\n" THREE, &cfg);
	int hits[3];

	(void)state;
	for (int i = 0; i < 3; i++)
		atomic_store(&backend_health(&p->servers[i])->up, 0);
	/* all down: offered in turn anyway */
	count_picks(p, NULL, NULL, 0, 30, hits, 3);
	assert_int_equal(hits[0], 10);
	assert_int_equal(hits[1], 10);
	assert_int_equal(hits[2], 10);
	/* and the tried mask still applies */
	count_picks(p, NULL, NULL, 1u << 1, 10, hits, 3);
	assert_int_equal(hits[1], 0);
	assert_null(pool_pick_backend(p, NULL, NULL, 7));
	/* one down and untried, the up ones tried: the down one is offered */
	atomic_store(&backend_health(&p->servers[0])->up, 1);
	atomic_store(&backend_health(&p->servers[1])->up, 1);
	assert_ptr_equal(pool_pick_backend(p, NULL, NULL, 3), &p->servers[2]);
	pool_done(p, cfg);
}

/* backends.servers[].backup: only when no non-backup server of the set can take the
 * message (down, drained or tried), for every balance mode. */
static void test_backup_servers(void **state)
{
	static const char *const modes[] = { "round_robin", "least_conn", "source_hash" };
	int hits[3];

	(void)state;
	for (size_t m = 0; m < 3; m++) {
		char text[512];
		struct mx_config *cfg;
		snprintf(text, sizeof(text), "backends:\n  balance: %s\n  servers:\n"
		    "    - \"smtp://127.0.0.1:2611\"\n    - \"smtp://127.0.0.1:2612\"\n"
		    "    - { address: \"smtp://127.0.0.1:2613\", backup: true }\n", modes[m]);
		struct pool *p = pool_from(text, &cfg);
		print_message("balance: %s\n", modes[m]);
		assert_true(p->servers[2].backup);
		assert_false(p->servers[0].backup);
		count_picks(p, NULL, "192.0.2.1", 0, 20, hits, 3);
		assert_int_equal(hits[2], 0);
		if (m == 0)
			assert_int_equal(hits[0], 10);
		/* one down: the other, not the backup */
		atomic_store(&backend_health(&p->servers[0])->up, 0);
		count_picks(p, NULL, "192.0.2.1", 0, 10, hits, 3);
		assert_int_equal(hits[1], 10);
		/* the other tried for this message: the backup */
		assert_ptr_equal(pool_pick_backend(p, NULL, "192.0.2.1", 1u << 1), &p->servers[2]);
		/* the other drained: the backup */
		backend_drain_url("smtp://127.0.0.1:2612", 1);
		count_picks(p, NULL, "192.0.2.1", 0, 10, hits, 3);
		assert_int_equal(hits[2], 10);
		backend_drain_url("smtp://127.0.0.1:2612", 0);
		/* both down: the backup */
		atomic_store(&backend_health(&p->servers[1])->up, 0);
		count_picks(p, NULL, "192.0.2.1", 0, 10, hits, 3);
		assert_int_equal(hits[2], 10);
		/* everything down: the non-backup ones in turn, then the backup */
		atomic_store(&backend_health(&p->servers[2])->up, 0);
		count_picks(p, NULL, "192.0.2.1", 0, 10, hits, 3);
		assert_int_equal(hits[2], 0);
		assert_ptr_equal(pool_pick_backend(p, NULL, "192.0.2.1", 3), &p->servers[2]);
		assert_null(pool_pick_backend(p, NULL, "192.0.2.1", 7));
		pool_done(p, cfg);
	}
}

/* backends.servers[].max_connections: a full server is skipped in every pass (the others,
 * then the backup, never past the limit even when everything is down). */
static void test_max_connections(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends:\n  servers:\n"
	    "    - { address: \"smtp://127.0.0.1:2621\", max_connections: 2 }\n"
	    "    - \"smtp://127.0.0.1:2622\"\n"
	    "    - { address: \"smtp://127.0.0.1:2623\", backup: true, max_connections: 1 }\n", &cfg);
	int hits[3];

	(void)state;
	assert_int_equal(p->servers[0].max_conns, 2);
	assert_int_equal(p->servers[1].max_conns, 0);
	backend_active_add(&p->servers[0], 2);
	assert_true(backend_is_full(&p->servers[0]));
	count_picks(p, NULL, NULL, 0, 10, hits, 3);
	assert_int_equal(hits[1], 10);
	/* the unlimited one down: the backup, not the full one */
	atomic_store(&backend_health(&p->servers[1])->up, 0);
	count_picks(p, NULL, NULL, 0, 10, hits, 3);
	assert_int_equal(hits[2], 10);
	/* the backup full too: the down one (all-down pass), never the full ones */
	backend_active_add(&p->servers[2], 1);
	count_picks(p, NULL, NULL, 0, 10, hits, 3);
	assert_int_equal(hits[1], 10);
	assert_null(pool_pick_backend(p, NULL, NULL, 1u << 1));
	backend_active_add(&p->servers[0], -1);
	assert_false(backend_is_full(&p->servers[0]));
	assert_ptr_equal(pool_pick_backend(p, NULL, NULL, 1u << 1), &p->servers[0]);
	pool_done(p, cfg);
}

/* Two workers picking at the same moment, before either opened its connection: the first
 * pick takes the server's last place (a reservation its connection then takes over, in
 * backend_active_add), so the second sees it full. Without the reservation both got it and
 * max_connections was passed by one per worker. */
struct pick_arg { struct pool *p; struct backend *got; };

static void *pick_thread(void *arg)
{
	struct pick_arg *a = arg;

	a->got = pool_pick_backend(a->p, NULL, NULL, 0);
	return NULL;
}

static void test_max_connections_two_workers(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends:\n  servers:\n"
	    "    - { address: \"smtp://127.0.0.1:2641\", max_connections: 1 }\n"
	    "    - { address: \"smtp://127.0.0.1:2642\", backup: true }\n", &cfg);
	struct pick_arg a1 = { p, NULL }, a2 = { p, NULL };
	pthread_t t;

	(void)state;
	/* worker 1 picks (and has not opened yet), then worker 2 picks */
	assert_int_equal(pthread_create(&t, NULL, pick_thread, &a1), 0);
	pthread_join(t, NULL);
	assert_int_equal(pthread_create(&t, NULL, pick_thread, &a2), 0);
	pthread_join(t, NULL);
	assert_ptr_equal(a1.got, &p->servers[0]);
	assert_ptr_equal(a2.got, &p->servers[1]);
	assert_int_equal(backend_active_all(&p->servers[0]), 1);
	/* this thread: a pick of the limited server, then its connection counted: one, not two */
	atomic_store(&p->servers[0].counts->active, 0);
	assert_ptr_equal(pool_pick_backend(p, NULL, NULL, 0), &p->servers[0]);
	backend_active_add(&p->servers[0], 1);
	assert_int_equal(backend_active_all(&p->servers[0]), 1);
	backend_active_add(&p->servers[0], -1);
	assert_int_equal(backend_active_all(&p->servers[0]), 0);
	/* a pick never followed by a connection (none opened): the next pick gives its place
	 * back */
	assert_ptr_equal(pool_pick_backend(p, NULL, NULL, 0), &p->servers[0]);
	assert_int_equal(backend_active_all(&p->servers[0]), 1);
	assert_ptr_equal(pool_pick_backend(p, NULL, NULL, 0), &p->servers[0]);
	assert_int_equal(backend_active_all(&p->servers[0]), 1);
	pool_done(p, cfg);
}

/* backends.servers[]'s own timeouts: a copy of backends.* with them, for that server only. */
static void test_server_timeouts(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends:\n  reply_timeout: 20s\n  data_timeout: 40s\n  servers:\n"
	    "    - { address: \"smtp://127.0.0.1:2631\", data_timeout: 900s }\n"
	    "    - \"smtp://127.0.0.1:2632\"\n", &cfg);
	const struct backends_config *bc = &cfg->backends;

	(void)state;
	assert_non_null(p->servers[0].tcfg);
	assert_null(p->servers[1].tcfg);
	assert_int_equal(backend_config(&p->servers[0], bc)->data_timeout, 900000);
	assert_int_equal(backend_config(&p->servers[0], bc)->reply_timeout, 20000);
	assert_int_equal(backend_config(&p->servers[0], bc)->pool_size, bc->pool_size);
	assert_ptr_equal(backend_config(&p->servers[1], bc), bc);
	pool_done(p, cfg);
}

/* Two generations' pools of the same servers (a reload while sessions of the old one run):
 * a drain by URL holds in both, and the connections in use are counted by URL for both. */
static void test_drain_every_generation(void **state)
{
	struct mx_config *c1, *c2;
	struct pool *old = pool_from("backends:\n  servers:\n    - \"smtp://127.0.0.1:2601\"\n    - \"smtp://127.0.0.1:2602\"\n", &c1);
	struct pool *cur = pool_from("backends:\n  servers:\n    - \"smtp://127.0.0.1:2601\"\n    - \"smtp://127.0.0.1:2602\"\n", &c2);

	(void)state;
	backend_drain_url("SMTP://127.0.0.1:2601", 1);
	assert_true(backend_is_drained(&old->servers[0]));
	assert_true(backend_is_drained(&cur->servers[0]));
	assert_false(backend_is_drained(&old->servers[1]));
	for (int i = 0; i < 10; i++) {
		assert_ptr_equal(pool_pick_backend(old, NULL, NULL, 0), &old->servers[1]);
		assert_ptr_equal(pool_pick_backend(cur, NULL, NULL, 0), &cur->servers[1]);
	}
	/* a connection of the old generation's session is in use: both pools' views count it */
	backend_active_add(&old->servers[0], 1);
	assert_int_equal(backend_active_all(&cur->servers[0]), 1);
	/* and least_conn in the new generation's pool counts it: the other server is picked */
	cur->balance = BALANCE_LEAST_CONN;
	backend_drain_url("smtp://127.0.0.1:2601", 0);
	for (int i = 0; i < 10; i++)
		assert_ptr_equal(pool_pick_backend(cur, NULL, NULL, 0), &cur->servers[1]);
	backend_drain_url("smtp://127.0.0.1:2601", 1);
	backend_active_add(&old->servers[0], -1);
	assert_int_equal(backend_active_all(&cur->servers[0]), 0);
	backend_drain_url("smtp://127.0.0.1:2601", 0);
	assert_false(backend_is_drained(&old->servers[0]));
	pool_done(old, c1);
	pool_done(cur, c2);
}

/* A refusal of the gateway is logged once per hold period and backend, the rest counted
 * for the next line's unlogged= (gwrefuse_report). */
static void test_refused_log_due(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends:\n  servers:\n" THREE, &cfg);
	struct backend *a = &p->servers[0], *b = &p->servers[2];
	long long t = 1000000;

	(void)state;
	assert_int_equal(backend_refused_log_due(a, t), 0);
	assert_int_equal(backend_refused_log_due(a, t + 1), -1);
	assert_int_equal(backend_refused_log_due(a, t + BACKEND_REFUSED_HOLD_MS - 1), -1);
	/* another backend has its own line */
	assert_int_equal(backend_refused_log_due(b, t + 2), 0);
	/* the next period: logged, naming the two counted since */
	assert_int_equal(backend_refused_log_due(a, t + BACKEND_REFUSED_HOLD_MS), 2);
	assert_int_equal(backend_refused_log_due(a, t + BACKEND_REFUSED_HOLD_MS + 1), -1);
	assert_int_equal(backend_refused_log_due(a, t + 2 * BACKEND_REFUSED_HOLD_MS), 1);
	atomic_store(&backend_health(a)->refused_logged_until, 0);
	atomic_store(&backend_health(b)->refused_logged_until, 0);
	pool_done(p, cfg);
}

static void test_report_failure(void **state)
{
	struct mx_config *cfg;
	struct pool *p = pool_from("backends:\n  health_check: { fall: 3 }\n  servers:\n" THREE, &cfg);
	struct backend *b = &p->servers[1];
	/* the counts are the URL's since the start of the process: other tests count too */
	long long d0 = backend_delivered(b), f0 = backend_failed(b);

	(void)state;
	backend_report_failure(p, b, "connect refused");
	backend_report_failure(p, b, NULL);
	assert_int_equal(atomic_load(&backend_health(b)->up), 1);
	assert_int_equal(atomic_load(&backend_health(b)->fails), 2);
	/* a success resets the run */
	backend_report_success(p, b);
	assert_int_equal(atomic_load(&backend_health(b)->fails), 0);
	assert_int_equal(backend_delivered(b), d0 + 1);
	backend_report_failure(p, b, "timeout");
	backend_report_failure(p, b, "timeout");
	assert_int_equal(atomic_load(&backend_health(b)->up), 1);
	backend_report_failure(p, b, "timeout");
	assert_int_equal(atomic_load(&backend_health(b)->up), 0);
	assert_int_equal(backend_failed(b), f0 + 5);
	assert_int_equal(atomic_load(&backend_health(b)->oks), 0);
	{
		/* a reload's new pool naming the same URL keeps counting from there */
		struct mx_config *cfg2;
		struct pool *p2 = pool_from("backends:\n  servers:\n" THREE, &cfg2);
		struct backend *b2 = &p2->servers[1];
		assert_int_equal(backend_delivered(b2), d0 + 1);
		assert_int_equal(backend_failed(b2), f0 + 5);
		/* ... and sees it down: the state is the URL's, every generation's */
		assert_false(backend_is_up(b2));
		backend_report_success(p2, b2);
		assert_int_equal(backend_delivered(b), d0 + 2);
		pool_free(p2);	/* not pool_done: p's state is this one, still wanted */
		config_free(cfg2);
	}
	/* a deferred message (4xx to DATA or after the dot) counts as a failed attempt, ends
	 * the run of failures and never takes a server out */
	{
		struct backend *c = &p->servers[2];
		long long fc = backend_failed(c);
		backend_report_failure(p, c, "timeout");
		backend_report_failure(p, c, "timeout");
		for (int i = 0; i < 10; i++)
			backend_report_deferral(c);
		assert_true(backend_is_up(c));
		assert_int_equal(atomic_load(&backend_health(c)->fails), 0);
		assert_int_equal(backend_failed(c), fc + 12);
	}
	/* out of the rotation */
	for (int i = 0; i < 20; i++)
		assert_ptr_not_equal(pool_pick_backend(p, NULL, NULL, 0), b);
	/* more failures while down: stays down, no second "down" event needed */
	backend_report_failure(p, b, "timeout");
	assert_int_equal(atomic_load(&backend_health(b)->up), 0);
	/* a passive success does not bring it back (rise is the health checker's job) */
	backend_report_success(p, b);
	assert_int_equal(atomic_load(&backend_health(b)->up), 0);
	assert_int_equal(atomic_load(&backend_health(b)->fails), 0);
	/* the others are untouched */
	assert_int_equal(atomic_load(&backend_health(&p->servers[0])->fails), 0);
	assert_int_equal(atomic_load(&backend_health(&p->servers[0])->up), 1);
	pool_done(p, cfg);
}

/* More than 64 servers: the tried mask has 64 bits. Servers past the 64th are never
 * picked; either the config should refuse more than 64 or the picker should use them. */
static void test_many_servers(void **state)
{
	struct mx_config *cfg = NULL;
	struct { char v[8192]; size_t len; } t;
	static int hits[70];
	const char *err = NULL;

	(void)state;
	/* 64 is the most a pool holds (the per-message `tried` mask); 70 is refused. */
	t.len = (size_t)snprintf(t.v, sizeof(t.v), "backends:\n  servers:\n");
	for (int i = 0; i < 64; i++)
		t.len += (size_t)snprintf(t.v + t.len, sizeof(t.v) - t.len, "    - \"smtp://127.0.0.1:%d\"\n", 3000 + i);
	struct pool *p = pool_from(t.v, &cfg);
	assert_int_equal(p->nservers, 64);
	memset(hits, 0, sizeof(hits));
	for (int i = 0; i < 640; i++)
		hits[which(p, pool_pick_backend(p, NULL, NULL, 0))]++;
	for (int i = 0; i < 64; i++)
		assert_true(hits[i] > 0);
	pool_done(p, cfg);
	for (int i = 64; i < 70; i++)
		t.len += (size_t)snprintf(t.v + t.len, sizeof(t.v) - t.len, "    - \"smtp://127.0.0.1:%d\"\n", 3000 + i);
	char text[sizeof(t.v) + 64];
	snprintf(text, sizeof(text), "listen: [\"127.0.0.1:2525\"]\n%s", t.v);
	cfg = NULL;
	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &cfg, stderr), 0);
	assert_null(pool_new(cfg, &err));
	assert_non_null(err);
	config_free(cfg);
}

/* backend_addr_first: the address that last worked; a failed one passed over for
 * BACKEND_ADDR_RETRY_MS; all failed: the last that worked. */
static void test_addr_first(void **state)
{
	(void)state;
	struct backend b;
	memset(&b, 0, sizeof b);
	assert_int_equal(backend_addr_first(&b, 1000), 0);   /* no addresses */
	b.naddrs = 3;
	assert_int_equal(backend_addr_first(&b, 1000), 0);
	backend_addr_result(&b, 0, false, 1000);             /* the first drops SYNs */
	assert_int_equal(backend_addr_first(&b, 1001), 1);
	backend_addr_result(&b, 1, true, 1001);
	assert_int_equal(backend_addr_first(&b, 1002), 1);
	/* the window over: still the one that works */
	assert_int_equal(backend_addr_first(&b, 1000 + BACKEND_ADDR_RETRY_MS + 1), 1);
	backend_addr_result(&b, 1, false, 2000);             /* it fails too: the next */
	assert_int_equal(backend_addr_first(&b, 2001), 2);
	backend_addr_result(&b, 2, false, 2001);
	backend_addr_result(&b, 0, false, 2001);
	assert_int_equal(backend_addr_first(&b, 2002), 1);   /* all failed: the last that worked */
	assert_int_equal(backend_addr_first(&b, 2000 + BACKEND_ADDR_RETRY_MS), 1);
	assert_int_equal(backend_addr_first(&b, 2001 + BACKEND_ADDR_RETRY_MS - 1), 1);
	backend_addr_result(&b, 7, true, 3000);              /* out of range: ignored */
	assert_int_equal(atomic_load(&b.addr_pref), 1);
	/* a connection that took address 2 before a re-resolution changed the set: its
	 * result names an index of the old set, so it changes nothing */
	atomic_store(&b.addr_gen, 5);
	backend_addr_result_gen(&b, 2, 4, true, 3001);
	assert_int_equal(atomic_load(&b.addr_pref), 1);
	long long was = atomic_load(&b.addr_retry_at[0]);
	backend_addr_result_gen(&b, 0, 4, false, 9000);
	assert_int_equal(atomic_load(&b.addr_retry_at[0]), was);
	backend_addr_result_gen(&b, 2, 5, true, 3002);      /* of the set in force: taken */
	assert_int_equal(atomic_load(&b.addr_pref), 2);
}

static struct sockaddr_storage v4(const char *ip)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	((struct sockaddr_in *)&ss)->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr);
	return ss;
}

/* backend_addrs_update (a re-resolution, backendres.h): a new set replaces the old one with
 * the URL's port, the preference starts afresh; the same set in another order, an empty
 * answer: no change. */
static void test_addrs_update(void **state)
{
	(void)state;
	struct backend b;
	const char *err = NULL;
	assert_int_equal(backend_parse_url("smtp://127.0.0.1:2526", &b, &err), 0);
	assert_string_equal(b.dns_name, "");	/* numeric: nothing to resolve again */
	struct sockaddr_storage sa[3] = { v4("10.0.0.2"), v4("10.0.0.1"), v4("10.0.0.2") };
	socklen_t len[3] = { sizeof(struct sockaddr_in), sizeof(struct sockaddr_in), sizeof(struct sockaddr_in) };
	char text[200];
	struct sockaddr_storage got;
	socklen_t glen;

	backend_addr_result(&b, 0, false, 1000);
	assert_int_equal(backend_addrs_update(&b, sa, len, 0), 0);	/* empty answer: kept */
	assert_int_equal(b.naddrs, 1);
	assert_int_equal(backend_addrs_update(&b, sa, len, 3), 1);	/* duplicate dropped */
	assert_int_equal(b.naddrs, 2);
	assert_int_equal(atomic_load(&b.addr_gen), 1);
	assert_int_equal(atomic_load(&b.addr_retry_at[0]), 0);	/* afresh */
	backend_addrs_format(&b, text, sizeof text);
	assert_string_equal(text, "10.0.0.2,10.0.0.1");
	assert_true(backend_addr_get(&b, 1, &got, &glen));
	assert_int_equal(ntohs(((struct sockaddr_in *)&got)->sin_port), 2526);
	assert_false(backend_addr_get(&b, 2, &got, &glen));
	assert_true(backend_addr_is_current(&b, &got, glen));
	struct sockaddr_storage swapped[2] = { v4("10.0.0.1"), v4("10.0.0.2") };
	assert_int_equal(backend_addrs_update(&b, swapped, len, 2), 0);	/* order only */
	assert_int_equal(atomic_load(&b.addr_gen), 1);
	struct sockaddr_storage moved[1] = { v4("10.0.0.9") };
	assert_int_equal(backend_addrs_update(&b, moved, len, 1), 1);
	assert_int_equal(b.naddrs, 1);
	assert_false(backend_addr_is_current(&b, &got, glen));	/* 10.0.0.1 left */
	backend_addrs_format(&b, text, sizeof text);
	assert_string_equal(text, "10.0.0.9");
	assert_int_equal(backend_parse_url("smtp://localhost:25", &b, &err), 0);
	assert_string_equal(b.dns_name, "localhost");
	assert_int_equal(b.port, 25);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_url),
		cmocka_unit_test(test_addrs_update),
		cmocka_unit_test(test_parse_url_long_unix_path),
		cmocka_unit_test(test_pool_new),
		cmocka_unit_test(test_pool_new_defaults),
		cmocka_unit_test(test_pool_new_unresolvable),
		cmocka_unit_test(test_round_robin),
		cmocka_unit_test(test_weighted_round_robin),
		cmocka_unit_test(test_weighted_round_robin_interleaves),
		cmocka_unit_test(test_least_conn),
		cmocka_unit_test(test_least_conn_weighted),
		cmocka_unit_test(test_least_conn_ties_rotate),
		cmocka_unit_test(test_source_hash),
		cmocka_unit_test(test_source_hash_weighted),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_round_robin_per_set),
		cmocka_unit_test(test_tried_by_index_in_routes),
		cmocka_unit_test(test_all_down_fallback),
		cmocka_unit_test(test_backup_servers),
		cmocka_unit_test(test_max_connections),
		cmocka_unit_test(test_max_connections_two_workers),
		cmocka_unit_test(test_server_timeouts),
		cmocka_unit_test(test_drain_every_generation),
		cmocka_unit_test(test_report_failure),
		cmocka_unit_test(test_refused_log_due),
		cmocka_unit_test(test_many_servers),
		cmocka_unit_test(test_addr_first),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
