/* test_counters.c — counters, the Prometheus exposition text and the HTTP endpoint. */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/backend.h"
#include "proxy/counters.h"
#include "proxy/metrics.h"

/* ------------------------------------------------------------ counters */

static void test_counter_ops(void **state)
{
	counter_reset_all();
	assert_int_equal(counter_get(COUNTER_SESSIONS_TOTAL), 0);
	counter_inc(COUNTER_SESSIONS_TOTAL);
	counter_add(COUNTER_SESSIONS_TOTAL, 11);
	assert_int_equal(counter_get(COUNTER_SESSIONS_TOTAL), 12);
	counter_add(COUNTER_SESSIONS_ACTIVE, 3);
	counter_add(COUNTER_SESSIONS_ACTIVE, -1);
	assert_int_equal(counter_get(COUNTER_SESSIONS_ACTIVE), 2);
	assert_true(counter_is_gauge(COUNTER_SESSIONS_ACTIVE));
	assert_false(counter_is_gauge(COUNTER_SESSIONS_TOTAL));

	static const struct { const char *label; int code; enum counter c; } rows[] = {
		{ "250", 250, COUNTER_REPLIES_2XX }, { "221", 221, COUNTER_REPLIES_2XX },
		{ "354", 354, COUNTER_REPLIES_3XX }, { "421", 421, COUNTER_REPLIES_4XX },
		{ "451", 451, COUNTER_REPLIES_4XX }, { "550", 550, COUNTER_REPLIES_5XX },
		{ "599", 599, COUNTER_REPLIES_5XX },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		long before = counter_get(rows[i].c);
		counter_count_reply(rows[i].code);
		if (counter_get(rows[i].c) != before + 1)
			fail_msg("row %s", rows[i].label);
	}
	/* Out of range codes and counters are ignored. */
	long sum = 0;
	for (int c = 0; c < COUNTER__COUNT; c++)
		sum += counter_get((enum counter)c);
	counter_count_reply(199);
	counter_count_reply(600);
	counter_count_reply(-5);
	counter_add(COUNTER__COUNT, 5);
	counter_add((enum counter)-1, 5);
	counter_inc(COUNTER__COUNT);
	long sum2 = 0;
	for (int c = 0; c < COUNTER__COUNT; c++)
		sum2 += counter_get((enum counter)c);
	assert_int_equal(sum, sum2);
	assert_string_equal(counter_name(COUNTER__COUNT), "");
	assert_int_equal(counter_get(COUNTER__COUNT), 0);
	counter_reset_all();
	assert_int_equal(counter_get(COUNTER_SESSIONS_TOTAL), 0);
}

/* Every counter has a valid, unique name (counters end in _total, gauges do not) and help. */
static void test_counter_table(void **state)
{
	regex_t re;
	assert_int_equal(regcomp(&re, "^[a-z][a-z0-9_]*$", REG_EXTENDED | REG_NOSUB), 0);
	for (int c = 0; c < COUNTER__COUNT; c++) {
		const char *n = counter_name((enum counter)c);
		if (regexec(&re, n, 0, NULL, 0) != 0)
			fail_msg("counter %d has a bad name '%s'", c, n);
		size_t len = strlen(n);
		bool total = len > 6 && strcmp(n + len - 6, "_total") == 0;
		if (total == counter_is_gauge((enum counter)c))
			fail_msg("counter %s: _total suffix must match counter type", n);
		assert_true(strlen(counter_help((enum counter)c)) > 0);
		for (int k = 0; k < c; k++)
			assert_string_not_equal(n, counter_name((enum counter)k));
	}
	regfree(&re);
	assert_string_equal(counter_name(COUNTER_SESSIONS_TOTAL), "sessions_total");
}

/* docs/operations.md lists every counter with its type: the doc cannot drift. */
static void test_counters_documented(void **state)
{
	const char *src = getenv("MX_SOURCE_DIR");
	char path[1024];
#ifdef MX_SOURCE_DIR
	if (!src)
		src = MX_SOURCE_DIR;
#endif
	if (!src)
		skip();
	snprintf(path, sizeof path, "%s/docs/operations.md", src);
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s", path);
	/* The whole file: it outgrew a fixed 64 KiB buffer once (the rows past it went unseen). */
	static char doc[1 << 20];
	size_t n = fread(doc, 1, sizeof doc - 1, f);
	assert_true(feof(f));
	doc[n] = '\0';
	fclose(f);
	for (int c = 0; c < COUNTER__COUNT; c++) {
		char row[200];
		snprintf(row, sizeof row, "| `mxgate_%s` | %s |", counter_name((enum counter)c),
		    counter_is_gauge((enum counter)c) ? "gauge" : "counter");
		if (!strstr(doc, row))
			fail_msg("docs/operations.md lacks the row %s", row);
	}
}

struct bump_arg { int n; };
static void *bump_thread(void *arg)
{
	struct bump_arg *a = arg;
	for (int i = 0; i < a->n; i++) {
		counter_inc(COUNTER_MESSAGES_RECEIVED);
		counter_add(COUNTER_BYTES_RECEIVED, 10);
	}
	return NULL;
}

static void test_counter_threads(void **state)
{
	pthread_t t[4];
	struct bump_arg a = { 50000 };
	counter_reset_all();
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, bump_thread, &a);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(counter_get(COUNTER_MESSAGES_RECEIVED), 200000);
	assert_int_equal(counter_get(COUNTER_BYTES_RECEIVED), 2000000);
	counter_reset_all();
}

/* ------------------------------------------------------------ exposition text */

static struct pool g_pool;
static struct backend g_backends[2];
static struct backend g_extra[1];

static struct pool *get_pool(void) { return &g_pool; }
static struct backend_counts g_counts[2];

static void pool_setup(void)
{
	memset(&g_pool, 0, sizeof g_pool);
	memset(g_backends, 0, sizeof g_backends);
	memset(g_extra, 0, sizeof g_extra);
	memset(g_counts, 0, sizeof g_counts);
	g_backends[0].url = "smtp://127.0.0.1:2526";
	atomic_init(&g_counts[0].health.up, 1);
	atomic_init(&g_counts[0].health.latency_us, 1500);
	g_backends[0].counts = &g_counts[0];
	atomic_init(&g_counts[0].delivered, 7);
	atomic_init(&g_backends[0].active, 2);
	atomic_init(&g_counts[0].active, 2);	/* the gauge: by URL, every generation's */
	g_backends[1].url = "maildir:/var/spool/\"odd\"\\dir";
	atomic_init(&g_counts[1].health.up, 0);
	atomic_init(&g_counts[1].health.fails, 3);
	g_backends[1].counts = &g_counts[1];
	atomic_init(&g_counts[1].failed, 4);
	g_extra[0].url = "lmtp://127.0.0.1:2424";
	atomic_init(&g_extra[0].own.up, 1);
	g_pool.servers = g_backends;
	g_pool.nservers = 2;
	g_pool.extra = g_extra;
	g_pool.nextra = 1;
}

static long rules_loaded(void) { return 42; }

static void collect_rules(void *arg, struct metrics_out *out)
{
	int *hits = arg;
	metrics_out_sample(out, "rule", "RULE_A", hits[0]);
	metrics_out_sample(out, "rule", "RULE_\"B\"\nx", hits[1]);
}

/* Checks the whole text against the exposition format: every line is a HELP, a TYPE or a
 * sample; each family has one HELP then one TYPE before its samples; samples belong to the
 * family declared last; the text ends with a newline. */
static void check_format(const char *text)
{
	regex_t help, type, sample;
	char family[128] = "";
	char seen[200][128];
	int nseen = 0;

	assert_int_equal(regcomp(&help, "^# HELP (mxgate_[a-zA-Z0-9_]+) [^\n]*$", REG_EXTENDED), 0);
	assert_int_equal(regcomp(&type, "^# TYPE (mxgate_[a-zA-Z0-9_]+) (counter|gauge)$", REG_EXTENDED), 0);
	assert_int_equal(regcomp(&sample,
	    "^(mxgate_[a-zA-Z0-9_]+)(\\{[a-zA-Z_]+=\"([^\"\\\\]|\\\\.)*\"(,[a-zA-Z_]+=\"([^\"\\\\]|\\\\.)*\")*\\})? "
	    "(-?[0-9]+(\\.[0-9]+)?(e[-+]?[0-9]+)?|NaN|[-+]Inf)$", REG_EXTENDED), 0);
	assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
	const char *p = text;
	int expect_type = 0;
	while (*p) {
		const char *nl = strchr(p, '\n');
		char line[1024];
		size_t n = (size_t)(nl - p);
		assert_true(n < sizeof line);
		memcpy(line, p, n);
		line[n] = '\0';
		p = nl + 1;
		regmatch_t m[3];
		if (regexec(&help, line, 3, m, 0) == 0) {
			assert_false(expect_type);
			snprintf(family, sizeof family, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
			for (int i = 0; i < nseen; i++)
				if (strcmp(seen[i], family) == 0)
					fail_msg("family %s declared twice", family);
			assert_true(nseen < 200);
			snprintf(seen[nseen++], sizeof seen[0], "%s", family);
			expect_type = 1;
		} else if (regexec(&type, line, 3, m, 0) == 0) {
			assert_true(expect_type);
			expect_type = 0;
			if (strncmp(line + m[1].rm_so, family, strlen(family)) != 0)
				fail_msg("TYPE for another family: %s", line);
		} else if (regexec(&sample, line, 3, m, 0) == 0) {
			assert_false(expect_type);
			char name[128];
			snprintf(name, sizeof name, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
			if (strcmp(name, family) != 0)
				fail_msg("sample '%s' outside its family '%s'", line, family);
		} else {
			fail_msg("line not in exposition format: '%s'", line);
		}
	}
	regfree(&help);
	regfree(&type);
	regfree(&sample);
}

static void test_render(void **state)
{
	int hits[2] = { 5, 9 };
	size_t len = 0;

	counter_reset_all();
	counter_add(COUNTER_SESSIONS_TOTAL, 12);
	counter_add(COUNTER_SESSIONS_ACTIVE, 3);
	pool_setup();
	assert_int_equal(metrics_register("rules_loaded", "Rules in the active rule set.", rules_loaded), 0);
	assert_int_equal(metrics_register_family("rule_hits_total", "Hits per rule.", "counter", collect_rules, hits), 0);
	/* Bad registrations. */
	assert_int_equal(metrics_register("bad name", "x", rules_loaded), -1);
	assert_int_equal(metrics_register("9lives", "x", rules_loaded), -1);
	assert_int_equal(metrics_register("ok_name", "x", NULL), -1);
	assert_int_equal(metrics_register("sessions_total", "x", rules_loaded), -1);    /* built-in */
	assert_int_equal(metrics_register("backend_up", "x", rules_loaded), -1);
	assert_int_equal(metrics_register_family("build_info", "x", "gauge", collect_rules, hits), -1);
	assert_int_equal(metrics_register_family("fam", "x", "histogram", collect_rules, hits), -1);

	char *text = metrics_render(&g_pool, &len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	check_format(text);

	static const char *const expect[] = {
		"# HELP mxgate_sessions_total Client connections accepted.\n"
		"# TYPE mxgate_sessions_total counter\n"
		"mxgate_sessions_total 12\n",
		"# TYPE mxgate_sessions_active gauge\nmxgate_sessions_active 3\n",
		"mxgate_messages_delivered_total 0\n",
		"mxgate_replies_5xx_total 0\n",
		"# TYPE mxgate_backend_up gauge\n"
		"mxgate_backend_up{backend=\"smtp://127.0.0.1:2526\"} 1\n"
		"mxgate_backend_up{backend=\"maildir:/var/spool/\\\"odd\\\"\\\\dir\"} 0\n"
		"mxgate_backend_up{backend=\"lmtp://127.0.0.1:2424\"} 1\n",
		"mxgate_backend_latency_seconds{backend=\"smtp://127.0.0.1:2526\"} 0.0015\n",
		"mxgate_backend_active_connections{backend=\"smtp://127.0.0.1:2526\"} 2\n",
		"mxgate_backend_consecutive_failures{backend=\"maildir:/var/spool/\\\"odd\\\"\\\\dir\"} 3\n",
		"# TYPE mxgate_backend_delivered_total counter\n"
		"mxgate_backend_delivered_total{backend=\"smtp://127.0.0.1:2526\"} 7\n",
		"mxgate_backend_failed_total{backend=\"maildir:/var/spool/\\\"odd\\\"\\\\dir\"} 4\n",
		"# HELP mxgate_rules_loaded Rules in the active rule set.\n"
		"# TYPE mxgate_rules_loaded gauge\nmxgate_rules_loaded 42\n",
		"# TYPE mxgate_rule_hits_total counter\n"
		"mxgate_rule_hits_total{rule=\"RULE_A\"} 5\n"
		"mxgate_rule_hits_total{rule=\"RULE_\\\"B\\\"\\nx\"} 9\n",
		"mxgate_build_info{version=\"",
		"# TYPE mxgate_start_time_seconds gauge\n",
	};
	for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
		if (!strstr(text, expect[i]))
			fail_msg("missing:\n%s\n--- in:\n%s", expect[i], text);
	free(text);

	/* Replace, unregister, no pool. */
	hits[0] = 6;
	assert_int_equal(metrics_register_family("rule_hits_total", "Hits per rule.", "counter", collect_rules, hits), 0);
	text = metrics_render(NULL, NULL);
	assert_non_null(text);
	check_format(text);
	assert_non_null(strstr(text, "mxgate_rule_hits_total{rule=\"RULE_A\"} 6\n"));
	assert_null(strstr(text, "backend_up"));
	free(text);
	metrics_unregister("rule_hits_total");
	metrics_unregister("rules_loaded");
	metrics_unregister("never_registered");
	text = metrics_render(NULL, NULL);
	assert_null(strstr(text, "rule_hits"));
	assert_null(strstr(text, "rules_loaded"));
	free(text);
	counter_reset_all();
}

/* ------------------------------------------------------------ HTTP endpoint */

static void test_parse_request(void **state)
{
	static char big[5000];
	memset(big, 'a', sizeof big);
	memcpy(big, "GET /metrics HTTP/1.0\r\nX: ", 26);
	static const struct { const char *label; const char *req; size_t len; int status; bool head; } rows[] = {
		{ "GET /metrics", "GET /metrics HTTP/1.0\r\n\r\n", 0, 200, false },
		{ "HTTP/1.1 with headers", "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", 0, 200, false },
		{ "bare LF line ends", "GET /metrics HTTP/1.0\n\n", 0, 200, false },
		{ "query ignored", "GET /metrics?name[]=x HTTP/1.0\r\n\r\n", 0, 200, false },
		/* RFC 9112 3.2.2: a server accepts the absolute form (sent through proxies) */
		{ "absolute form", "GET http://mx1.example:9125/metrics HTTP/1.1\r\nHost: x\r\n\r\n", 0, 200, false },
		{ "absolute form, https, query", "GET https://mx1.example/metrics?x HTTP/1.1\r\n\r\n", 0, 200, false },
		{ "absolute form of another path", "GET http://mx1.example/x HTTP/1.1\r\n\r\n", 0, 404, false },
		{ "absolute form without a path", "GET http://mx1.example HTTP/1.1\r\n\r\n", 0, 404, false },
		{ "HEAD", "HEAD /metrics HTTP/1.0\r\n\r\n", 0, 200, true },
		{ "HEAD of another path", "HEAD /x HTTP/1.0\r\n\r\n", 0, 404, true },
		{ "other path", "GET /metrics/x HTTP/1.0\r\n\r\n", 0, 404, false },
		{ "root", "GET / HTTP/1.0\r\n\r\n", 0, 404, false },
		{ "POST", "POST /metrics HTTP/1.0\r\n\r\n", 0, 405, false },
		{ "lower-case method", "get /metrics HTTP/1.0\r\n\r\n", 0, 405, false },
		{ "HTTP/0.9 style", "GET /metrics\r\n\r\n", 0, 400, false },
		{ "not HTTP", "GET /metrics SMTP/1.0\r\n\r\n", 0, 400, false },
		{ "stray CR in the request line", "GET /metrics\rX HTTP/1.0\r\n\r\n", 0, 400, false },
		{ "empty line only", "\r\n\r\n", 0, 400, false },
		{ "incomplete head", "GET /metrics HTTP/1.0\r\nHost: x\r\n", 0, 0, false },
		{ "nothing yet", "", 0, 0, false },
		{ "head over 4 KiB", big, sizeof big, 431, false },
		{ "exactly at 4 KiB, incomplete", big, 4096, 431, false },
		{ "just under 4 KiB, incomplete", big, 4095, 0, false },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		bool head = !rows[i].head;
		size_t len = rows[i].len ? rows[i].len : strlen(rows[i].req);
		int r = metrics_parse_request(rows[i].req, len, &head);
		if (r != rows[i].status || (r && head != rows[i].head))
			fail_msg("row '%s': got %d head=%d", rows[i].label, r, head);
	}
}

/* A POST's head (metrics_post_head_parse): labelled rows. */
static void test_post_head(void **state)
{
	(void)state;
	static const struct {
		const char *label, *req;
		int rc, status;
		unsigned long long want;
		const char *path;
		bool cont;
	} rows[] = {
		{ "a learn POST", "POST /learn/spam HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 1, 0, 5, "/learn/spam", false },
		{ "bare LF, tabs around the length", "POST /l HTTP/1.0\nContent-length:\t7\t\n\nmessage", 1, 0, 7, "/l", false },
		{ "Expect: 100-continue", "POST /l HTTP/1.1\r\nContent-Length: 2000\r\nExpect: 100-Continue\r\n\r\n", 1, 0, 2000, "/l", true },
		{ "head incomplete", "POST /l HTTP/1.1\r\nContent-Length: 5\r\n", 0, 0, 0, "", false },
		{ "not a POST", "GET /metrics HTTP/1.1\r\n\r\n", 0, 0, 0, "", false },
		{ "no target", "POST  \r\n/l HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 0, 0, 0, "", false },
		{ "a control character in the target", "POST /l\x11x HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 0, 0, 0, "", false },
		{ "no length: 411", "POST /l HTTP/1.1\r\nHost: x\r\n\r\n", 1, 411, 0, "/l", false },
		{ "empty length, digits on the next line: 400", "POST /l HTTP/1.1\r\nContent-Length:\r\n\r\n12345", 1, 400, 0, "/l", false },
		{ "3x: 400", "POST /l HTTP/1.1\r\nContent-Length: 3x\r\n\r\nabc", 1, 400, 0, "/l", false },
		{ "-1: 400", "POST /l HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 1, 400, 0, "/l", false },
		{ "two that agree", "POST /l HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3 \r\n\r\nabc", 1, 0, 3, "/l", false },
		{ "two that differ: 400", "POST /l HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 1, 400, 0, "/l", false },
		{ "chunked: 501", "POST /l HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 1, 501, 0, "/l", false },
		{ "past 18 digits: the largest", "POST /l HTTP/1.1\r\nContent-Length: 1234567890123456789012\r\n\r\n", 1, 0, ULLONG_MAX, "/l", false },
		{ "a length in the body is not read", "POST /l HTTP/1.1\r\nHost: x\r\n\r\nContent-Length: 5\r\n", 1, 411, 0, "/l", false },
	};

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct metrics_post_head h;
		int rc = metrics_post_head_parse(rows[i].req, strlen(rows[i].req), &h);

		if (rc != rows[i].rc || (rc == 1 && (h.status != rows[i].status || strcmp(h.path, rows[i].path) != 0 ||
		    (h.status == 0 && h.want != rows[i].want) || h.expect_continue != rows[i].cont)))
			fail_msg("row '%s': got %d status=%d want=%llu path=%s continue=%d", rows[i].label, rc, h.status,
			    h.want, h.path, h.expect_continue);
	}
}

struct http_case {
	const char *label;
	const char *request;      /* NULL: send a large request head (431) */
	const char *status;       /* expected status line prefix */
	const char *body_has;     /* NULL = no body check */
};

struct http_client {
	int port;
	const struct http_case *cases;
	size_t ncases;
	char responses[8][65536];
	uv_async_t *done;
};

/* Sends one request, reads until the server closes. Returns bytes read or -1. */
static int http_roundtrip(int port, const char *req, size_t reqlen, char *out, size_t cap)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t n = 0;
	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0)
		return -1;
	for (size_t off = 0; off < reqlen;) {
		ssize_t w = write(fd, req + off, reqlen - off);
		if (w <= 0)
			break;   /* the server may answer (431) and stop reading */
		off += (size_t)w;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		if (poll(&pfd, 1, 3000) <= 0)
			break;
		ssize_t r = read(fd, out + n, cap - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	out[n] = '\0';
	close(fd);
	return (int)n;
}

static void *http_client_main(void *arg)
{
	struct http_client *c = arg;
	static char big[8192];
	memset(big, 'A', sizeof big);
	memcpy(big, "GET /metrics HTTP/1.0\r\nX-Pad: ", 30);
	for (size_t i = 0; i < c->ncases; i++) {
		const char *req = c->cases[i].request ? c->cases[i].request : big;
		size_t len = c->cases[i].request ? strlen(req) : sizeof big;
		http_roundtrip(c->port, req, len, c->responses[i], sizeof c->responses[i]);
	}
	uv_async_send(c->done);
	return NULL;
}

static void stop_loop_cb(uv_async_t *a) { uv_stop(a->loop); }

static void test_http(void **state)
{
	static const struct http_case cases[] = {
		{ "GET /metrics", "GET /metrics HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK\r\n",
		  "mxgate_backend_up{backend=\"smtp://127.0.0.1:2526\"} 1\n" },
		{ "GET /metrics HTTP/1.1 with headers and query, bare LF", "GET /metrics?x=1 HTTP/1.1\nHost: a\n\n",
		  "HTTP/1.0 200 OK\r\n", "mxgate_sessions_total 5\n" },
		{ "unknown path", "GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 404 ", NULL },
		{ "POST", "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n", "HTTP/1.0 405 ", NULL },
		{ "garbage", "\x01\x02\x03 hello\r\n\r\n", "HTTP/1.0 400 ", NULL },
		{ "request head too large", NULL, "HTTP/1.0 431 ", NULL },
		{ "HEAD /metrics", "HEAD /metrics HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK\r\n", NULL },
	};
	uv_loop_t loop;
	uv_async_t done;
	pthread_t t;
	static struct http_client client;

	counter_reset_all();
	counter_add(COUNTER_SESSIONS_TOTAL, 5);
	pool_setup();
	assert_int_equal(uv_loop_init(&loop), 0);
	struct metrics *m = metrics_start(&loop, "127.0.0.1:0", get_pool);
	assert_non_null(m);
	int port = metrics_port(m);
	assert_true(port > 0);

	/* The same port again: bind fails, NULL. Bad addresses too. */
	char addr[64];
	snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
	assert_null(metrics_start(&loop, addr, get_pool));
	assert_null(metrics_start(&loop, "127.0.0.1", get_pool));
	assert_null(metrics_start(&loop, "127.0.0.1:99999", get_pool));
	assert_null(metrics_start(&loop, "[::1:5", get_pool));
	assert_null(metrics_start(&loop, "", get_pool));

	memset(&client, 0, sizeof client);
	client.port = port;
	client.cases = cases;
	client.ncases = sizeof cases / sizeof cases[0];
	client.done = &done;
	uv_async_init(&loop, &done, stop_loop_cb);
	pthread_create(&t, NULL, http_client_main, &client);
	uv_run(&loop, UV_RUN_DEFAULT);
	pthread_join(t, NULL);

	for (size_t i = 0; i < client.ncases; i++) {
		const char *r = client.responses[i];
		print_message("row: %s\n", cases[i].label);
		if (strncmp(r, cases[i].status, strlen(cases[i].status)) != 0)
			fail_msg("row '%s': got '%.80s'", cases[i].label, r);
		const char *body = strstr(r, "\r\n\r\n");
		assert_non_null(body);
		body += 4;
		const char *cl = strstr(r, "Content-Length: ");
		assert_non_null(cl);
		size_t declared = (size_t)atol(cl + 16);
		if (strncmp(cases[i].request ? cases[i].request : "", "HEAD", 4) == 0)
			assert_int_equal(strlen(body), 0);
		else
			assert_int_equal(strlen(body), declared);
		if (cases[i].body_has && !strstr(body, cases[i].body_has))
			fail_msg("row '%s': body lacks %s", cases[i].label, cases[i].body_has);
		if (strstr(cases[i].status, "200") && cases[i].body_has) {
			assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4"));
			check_format(body);
		}
	}

	/* Stop with a connection still open: everything closes, the loop ends. */
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(write(fd, "GET /met", 8), 8);
	uv_run(&loop, UV_RUN_NOWAIT);
	uv_run(&loop, UV_RUN_NOWAIT);
	metrics_stop(m);
	metrics_stop(NULL);
	uv_close((uv_handle_t *)&done, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	close(fd);
	counter_reset_all();
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);	/* as the daemon does (main.c): a closed peer is EPIPE, not death */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_ops),
		cmocka_unit_test(test_counter_table),
		cmocka_unit_test(test_counter_threads),
		cmocka_unit_test(test_counters_documented),
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_parse_request),
		cmocka_unit_test(test_post_head),
		cmocka_unit_test(test_http),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
