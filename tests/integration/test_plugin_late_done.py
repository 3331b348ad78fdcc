#!/usr/bin/env python3
"""A call handle used after its call ended, the way a Haraka author's plugin does it (two
event handlers that both call next(), an answer that arrives after the timeout or after the
client left): done() again after a done() inside the hook, a second and a third done() after
an asynchronous one, done() after the entry's timeout answered (the plugin built with and
without cancel(): one that ignores its cancel), done() after the session ended. Each was a
use of freed memory (the handle was freed by the first end); a stale done() could even land
on the next call, whose handle took the freed memory, and answer it. Now each is ignored,
logged once per handle (event=plugin_bad_output what=done_twice|late_done), the first
verdict stands, the next call of the session gets its own, and nothing is reported under
ASan (MX_SANITIZED=1)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

SRC = r'''#include <stdlib.h>
#include <string.h>
#include "plugin.h"
static const struct mxgate_host *host;
static int l_init(const struct mxgate_host *h, const struct mxgate_plugin_args *a, void **i,
    char *e, size_t el) { host = h; *i = 0; return 0; }
struct later { uv_timer_t t; struct mxgate_call *c; enum mxgate_action a; };
static void later_cb(uv_timer_t *t)
{
	struct later *l = t->data;
	host->done(l->c, l->a, l->a == MXGATE_REJECT ? 550 : 0,
	    l->a == MXGATE_REJECT ? "5.7.1 stale verdict" : NULL, "late");
	uv_close((uv_handle_t *)t, (uv_close_cb)free);
}
/* done(c, a) in ms, on loop lp (taken while the call is live: host->loop of an ended call is NULL) */
static void later(uv_loop_t *lp, struct mxgate_call *c, uint64_t ms, enum mxgate_action a)
{
	struct later *l = malloc(sizeof(*l));
	uv_timer_init(lp, &l->t);
	l->t.data = l;
	l->c = c;
	l->a = a;
	uv_timer_start(&l->t, later_cb, ms, 0);
}
static int is(const char *r, const char *w) { return r && strncmp(r, w, strlen(w)) == 0; }
static void l_rcpt(void *i, struct mxgate_call *c)
{
	const char *r = host->get(c, MXGATE_RCPT);
	uv_loop_t *lp = host->loop(c);
	if (is(r, "again")) {          /* answered in the hook, and again once it returned */
		host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
		later(lp, c, 100, MXGATE_REJECT);
		return;
	}
	if (is(r, "async2")) {         /* answered later, then twice more */
		later(lp, c, 50, MXGATE_CONTINUE);
		later(lp, c, 400, MXGATE_REJECT);
		later(lp, c, 450, MXGATE_REJECT);
		return;
	}
	if (is(r, "slow"))             /* the next call, pending while the stale ones come */
		return later(lp, c, 800, MXGATE_CONTINUE);
	if (is(r, "late")) {           /* after the 1 s timeout answered, twice */
		later(lp, c, 1500, MXGATE_REJECT);
		later(lp, c, 1700, MXGATE_REJECT);
		return;
	}
	if (is(r, "gone")) {           /* after the timeout, the client gone by then, twice */
		later(lp, c, 1500, MXGATE_REJECT);
		later(lp, c, 1700, MXGATE_REJECT);
		return;
	}
	host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}
#ifdef WITH_CANCEL
/* told to stop, it does not: its timers answer all the same */
static void l_cancel(void *i, struct mxgate_call *c) { host->log(c, 1, "event=cancelled"); }
#endif
const struct mxgate_plugin mxgate_plugin = { .abi_version = MXGATE_PLUGIN_ABI_VERSION,
    .name = "late", .init = l_init, .on_rcpt = l_rcpt,
#ifdef WITH_CANCEL
    .cancel = l_cancel,
#endif
};
'''

be = t.Backend()

for variant, defines in (('nocancel', ()), ('cancel', ('-DWITH_CANCEL',))):
    so = t.build_plugin('late_' + variant, SRC, defines)
    m = t.Mxgate(t.config([be.url], hostname='mx.example.test', workers=1, plugins=[
        {'name': 'late', 'path': so, 'on_error': 'tempfail', 'timeout': '1s'}]), name='mx_' + variant)

    c = t.Client(m.port, timeout=15)
    c.ehlo('client.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    r1 = c.cmd('RCPT TO:<again@example.test>')
    r2 = c.cmd('RCPT TO:<async2@example.test>')
    r3 = c.cmd('RCPT TO:<slow@example.test>')
    c.cmd('QUIT')
    c.close()
    t.check(m.alive(), '%s: done() again after the hook and after an asynchronous done(): the process lives' % variant)
    t.check(r1[0] == 250 and r2[0] == 250, '%s: the first verdicts (continue) stand: %r %r' % (variant, r1, r2))
    t.check(r3[0] == 250, '%s: the next call gets its own verdict, not a stale done() of an earlier handle: %r'
            % (variant, r3))
    t.check(m.wait_log(r'event=plugin_bad_output plugin=late what=done_twice ended=answered', 10) and
            t.wait_for(lambda: m.count_log(r'what=done_twice') == 2, 10),
            '%s: each handle answered twice is logged once (the third done() of async2 not again): %d'
            % (variant, m.count_log(r'what=done_twice')))

    c = t.Client(m.port, timeout=15)
    c.ehlo('client.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    r = c.cmd('RCPT TO:<late@example.test>')
    t.check(r[0] == 451, '%s: a call not answered within the timeout: on_error tempfail: %r' % (variant, r))
    ended = 'cancelled' if variant == 'cancel' else 'given_up'
    t.check(m.wait_log(r'event=plugin_bad_output plugin=late what=late_done ended=%s' % ended, 10),
            '%s: the done() after the timeout is logged (%s) and ignored' % (variant, ended))
    r = c.cmd('RCPT TO:<ok@example.test>')
    t.check(r[0] == 250, '%s: the session goes on: %r' % (variant, r))
    c.cmd('QUIT')
    c.close()

    c = t.Client(m.port, timeout=15)
    c.ehlo('client.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    r = c.cmd('RCPT TO:<gone@example.test>')
    c.close()   # the client leaves after the timeout's 451: the session ends before the answers
    t.check(r[0] == 451 and m.wait_log(r'event=disconnect .*reason=client_closed', 10),
            '%s: the session of the call ended: %r' % (variant, r))
    t.check(t.wait_for(lambda: m.count_log(r'what=late_done') == 2, 10),
            '%s: done() after the session ended: logged once per handle (late, gone): %d'
            % (variant, m.count_log(r'what=late_done')))
    time.sleep(t.slack(0.5))   # the third done()s of late and gone: not logged again
    t.check(m.count_log(r'what=late_done') == 2 and m.count_log(r'what=done_twice') == 2,
            '%s: no handle logged twice' % variant)
    if variant == 'cancel':
        t.check(m.count_log(r'event=cancelled plugin=late') == 2, 'cancel: told at the timeout and at the session end')
    t.check(m.alive() and t.send_mail(m.port, 'a@example.org', ['ok@example.test'],
                                      t.message('m-' + variant))[0] == 250, '%s: mail as usual' % variant)
    t.check(m.malformed_log_lines() == [], '%s: every log line of the key=value form' % variant)
    m.stop()

t.finish()
