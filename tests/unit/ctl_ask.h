/* ctl_ask.h — a control verb asked in a unit test the way the control socket asks it (one
 * request line parsed, proxy/control.c's control_dispatch_start), for the tests of the
 * modules' verbs without a daemon (test_greylist_control, test_reputation_control). */
#ifndef MX_TEST_CTL_ASK_H
#define MX_TEST_CTL_ASK_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "proxy/control.h"

/* The verb's answer: done once it is there, rc its status, text its payload (cut at 599). */
struct ctl_answer { bool done; int rc; char text[600]; };

static inline void ctl_answer_cb(void *arg, int rc, struct strbuf *payload)
{
	struct ctl_answer *a = arg;

	a->done = true;
	a->rc = rc;
	snprintf(a->text, sizeof(a->text), "%.*s", (int)payload->len, payload->v ? payload->v : "");
}

/* Starts line (without its newline) through the control verbs on loop. Returns 1 when the
 * verb answers later (a is filled then, on the loop: run it until a->done), else what
 * control_dispatch_start returned, with a filled now. */
static inline int ctl_ask_start(uv_loop_t *loop, const char *line, struct ctl_answer *a)
{
	struct ctl_parser p;
	struct strbuf out = { 0 };
	struct control_reply *pending = NULL;
	char buf[256];
	size_t used;
	int rc;

	memset(a, 0, sizeof(*a));
	snprintf(buf, sizeof(buf), "%s\n", line);
	ctl_parser_init(&p);
	assert_int_equal(ctl_parser_feed(&p, buf, strlen(buf), &used), CTL_REQUEST);
	rc = control_dispatch_start(&p.req, &out, loop, ctl_answer_cb, a, &pending);
	ctl_parser_reset(&p);
	if (rc != 1) {
		a->done = true;
		a->rc = rc;
		snprintf(a->text, sizeof(a->text), "%.*s", (int)out.len, out.v ? out.v : "");
	}
	strbuf_free(&out);
	return rc;
}

#endif
