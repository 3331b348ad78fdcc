#!/usr/bin/env python3
"""A plugin without cancel() that never answers a call, or answers after the entry's timeout:
the client gets on_error at the timeout (Haraka: DENYSOFT "plugin timeout"), a late answer is
ignored (logged what=late_done ended=given_up), and nothing is kept for a call never
answered: its handle is retired at the timeout (a token, test_plugin_late_done), not kept for
the life of the process. Under ASan (MX_SANITIZED=1), LeakSanitizer at exit once reported each
one never answered. And one
that blocks its worker in a hook (sleep): what docs/plugins.md says it costs."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

SRC = r'''#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "plugin.h"
static const struct mxgate_host *host;
static int n_init(const struct mxgate_host *h, const struct mxgate_plugin_args *a, void **i,
    char *e, size_t el) { host = h; *i = 0; return 0; }
static void late_cb(uv_timer_t *t)
{
	host->done(t->data, MXGATE_REJECT, 550, "5.7.1 too late", "never");
	uv_close((uv_handle_t *)t, (uv_close_cb)free);
}
static void n_rcpt(void *i, struct mxgate_call *c)
{
	const char *r = host->get(c, MXGATE_RCPT);
	if (r && strncmp(r, "never", 5) == 0)
		return;   /* forgets the call */
	if (r && strncmp(r, "block", 5) == 0) {   /* synchronous I/O in the hook: what not to do */
		host->log(c, 1, "event=blocking");
		sleep(2);
		host->log(c, 1, "event=unblocked");
		return host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
	}
	if (r && strncmp(r, "late", 4) == 0) {
		uv_timer_t *t = malloc(sizeof(*t));
		uv_timer_init(host->loop(c), t);
		t->data = c;
		uv_timer_start(t, late_cb, 1500, 0);
		return;
	}
	host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}
const struct mxgate_plugin mxgate_plugin = { .abi_version = MXGATE_PLUGIN_ABI_VERSION,
    .name = "never", .init = n_init, .on_rcpt = n_rcpt };
'''

so = t.build_plugin('never', SRC)

be = t.Backend()


def cfg(timeout):
    return t.config([be.url], hostname='mx.example.test', workers=1, plugins=[
        {'name': 'never', 'path': so, 'on_error': 'tempfail', 'timeout': timeout}])


m = t.Mxgate(cfg('1s'))


def rcpt(local):
    c = t.Client(m.port, timeout=15)
    c.ehlo('client.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    rep = c.cmd('RCPT TO:<%s@example.test>' % local)
    c.cmd('QUIT')
    c.close()
    return rep


for i in range(3):
    rep = rcpt('never%d' % i)
    t.check(rep == (451, '451 4.3.0 Recipient check unavailable, please try again later'),
            'a call never answered: on_error at the timeout, worded for RCPT: %r' % (rep,))
rep = rcpt('late')
t.check(rep[0] == 451, 'a call answered after the timeout: on_error at the timeout: %r' % (rep,))
time.sleep(1.5)
t.check(m.alive() and rcpt('ok')[0] == 250, 'the late answer is ignored; the next call as usual')
t.check(m.wait_log(r'event=plugin_bad_output plugin=never what=late_done ended=given_up', 10) and
        m.count_log(r'what=late_done') == 1,
        'and logged once, at info (a plugin without cancel may answer late)')
t.check(m.count_log(r'event=plugin_error plugin=never stage=rcpt error=timeout on_error=tempfail') == 4,
        'each timeout logged')
# A hook that blocks (sleep(2), with timeout 1s) holds its worker: its own verdict, given
# before the loop could run the timer, stands, and another client of the worker is not
# even greeted until it returns (docs/plugins.md: Never block; Haraka's event loop the same).
import threading  # noqa: E402
box = {}


def blocked():
    box['rep'] = rcpt('block')


th = threading.Thread(target=blocked)
th.start()
t.check(m.wait_log(r'event=blocking plugin=never', 10), 'the hook blocks')
other = t.Client(m.port, timeout=15)
other.close()
th.join(20)
t.check(box.get('rep', (None,))[0] == 250, 'a blocking hook\'s own verdict stands (no timeout fired): %r' % (box.get('rep'),))
# the worker took the other client only once the hook returned: its session's first line comes
# after the hook's last (the log's order, not a clock: a late look at event=blocking under
# load left less than the 1 s the test asked for)
log = m.log()
unblocked, connected = log.find('event=unblocked'), log.rfind('event=connect ')
t.check(0 <= unblocked < connected,
        'another client of the worker waited for its greeting while the hook blocked (unblocked at %d, '
        'its connect at %d)' % (unblocked, connected))
# The generation retires at the reload (its sessions are gone), with nothing left of the
# calls never answered.
m.reload(cfg('2s'))
t.check(t.wait_for(lambda: m.log().count('event=reloaded') >= 1, 10), 'SIGHUP reloaded')
rep = rcpt('never9')
t.check(rep[0] == 451, 'the new generation the same: %r' % (rep,))
m.stop()
t.finish()
