/* fuzz_control_verbs.c — the control socket's verbs and their arguments, as a request reaches
 * them: the input is read by the request parser (ctl_parser_feed, a newline added at its end)
 * and each request of the modules' verbs (filters/limits_control.c, filters/reputation_control.c, filters/filters_control.c: ratelimit show|reset KEY
 * VALUE with every rule key, greylist list [N], show|pass|delete IP SENDER RCPT and
 * allow|trap|disallow|untrap IP [TTL] (a client's record), flush
 * dns|passcache|reputation IP), drain|enable BACKEND (a URL or a host name, over a pool of
 * three backends; the drained set is emptied after each input), top clients|reasons|rules
 * [N] and help is dispatched as the socket dispatches it (control_dispatch_start) under a
 * config with local stores (the rate limiter's and the greylist's tables of worker 0, bounded
 * by max_keys). Not dispatched: learn (it reads a file named by the request), reload,
 * status, backends (no arguments).
 * Invariants: every request is answered at once (local stores), 0 or -1; the answer is text
 * ending in a newline, without NUL or control characters but newline and tab; a --json
 * answer that succeeded is one object ("{...}\n"); nothing crashes, leaks or is read out of
 * bounds. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "config.h"
#include "control.h"
#include "control_proto.h"
#include "headers.h"
#include "hook.h"
#include "log.h"
#include "ops.h"
#include "backend.h"
#include "worker.h"

extern const struct hook_module ratelimit_module, greylist_module;

static uv_loop_t loop;
static struct shared_gen gen;
static void *rl_ws, *gl_ws;   /* worker 0's states, kept for the process */
static bool fz_print;          /* MX_FUZZ_PRINT set: each answer on stderr (seeing a seed) */

static struct shared_gen *fz_current(void)
{
	return &gen;
}

static const char fz_config[] =
    "listen: [\"127.0.0.1:2525\"]\n"
    "backends: { servers: [\"smtp://127.0.0.1:2526\", \"smtp://[::1]:2527\", \"lmtp://127.0.0.1:2424\"] }\n"
    "greylist: { enabled: true, delay: 1m, max_keys: 1000 }\n"
    "ratelimit:\n"
    "  max_keys: 1000\n"
    "  rules:\n"
    "    - { key: ip, count: messages, limit: 2/1h }\n"
    "    - { key: ip, count: concurrency, limit: 5 }\n"
    "    - { key: ip_prefix, count: connections, limit: 10/1m }\n"
    "    - { key: helo, count: messages, limit: 3/1m }\n"
    "    - { key: sender, count: recipients, limit: 3/1m }\n"
    "    - { key: sender_domain, count: messages, limit: 3/1m }\n"
    "    - { key: recipient, count: messages, limit: 3/1m }\n"
    "    - { key: auth_domain, count: messages, limit: 3/1m }\n"
    "    - { key: auth_user, count: bytes, limit: 3000/1m }\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const struct ops_host host = { .current = fz_current };
	const char *err = NULL;

	(void)argc;
	(void)argv;
	log_set_level(LOG_LVL_ERROR);
	fz_print = getenv("MX_FUZZ_PRINT") != NULL;
	uv_loop_init(&loop);
	if (config_load_string("fuzz.yaml", fz_config, strlen(fz_config), &gen.cfg, stderr) != 0)
		abort();
	gen.id = 1;
	if ((gen.pool = pool_new(gen.cfg, &err)) == NULL) {
		fprintf(stderr, "pool_new: %s\n", err ? err : "?");
		abort();
	}
	ops_start(&loop, &host);
	if (ratelimit_module.worker_init(gen.cfg, &loop, 0, &rl_ws) != 0 ||
	    greylist_module.worker_init(gen.cfg, &loop, 0, &gl_ws) != 0)
		abort();
	return 0;
}

static bool fz_dispatched(const struct ctl_request *req)
{
	static const char *const ok[] = { "ratelimit", "greylist", "flush", "help", "drain", "enable", "top" };

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcmp(req->argv[0], ok[i]) == 0)
			return true;
	return false;
}

static void fz_done(void *arg, int rc, struct strbuf *out)
{
	(void)arg;
	(void)rc;
	(void)out;
	abort();   /* a local store answers at once */
}

static void fz_check(const struct ctl_request *req, int rc, const struct strbuf *out)
{
	if (rc != 0 && rc != -1)
		abort();
	if (out->len == 0 || out->v[out->len - 1] != '\n' || strlen(out->v) != out->len)
		abort();
	for (size_t i = 0; i < out->len; i++) {
		unsigned char c = (unsigned char)out->v[i];

		if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
			abort();
	}
	if (req->json && rc == 0 && strcmp(req->argv[0], "help") != 0 &&
	    (out->v[0] != '{' || out->len < 3 || out->v[out->len - 2] != '}'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	struct ctl_parser p;
	size_t off = 0;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size++] = '\n';
	ctl_parser_init(&p);
	while (off < size) {
		size_t used = 0;
		enum ctl_parse_status st = ctl_parser_feed(&p, buf + off, size - off, &used);

		off += used;
		if (st == CTL_BAD || (st == CTL_NEED_MORE && used == 0))
			break;
		if (st == CTL_REQUEST) {
			if (fz_dispatched(&p.req)) {
				struct strbuf out = { 0 };
				struct control_reply *pending = NULL;
				int rc = control_dispatch_start(&p.req, &out, &loop, fz_done, NULL, &pending);

				if (pending != NULL || rc == 1)
					abort();
				if (out.v == NULL)
					strbuf_append(&out, "", 0);
				if (fz_print)
					fprintf(stderr, "%s ... -> %d: %s", p.req.argv[0], rc, out.v);
				fz_check(&p.req, rc, &out);
				strbuf_free(&out);
			}
			ctl_parser_reset(&p);
		}
	}
	ctl_parser_reset(&p);
	ops_reset_drains();
	free(buf);
	return 0;
}
