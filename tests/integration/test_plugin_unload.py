#!/usr/bin/env python3
"""A plugin that keeps libuv handles of its own — a per-worker connection or timer opened in
init() and closed in fini(), as a Haraka plugin keeps one Redis client per process, and a
per-session timer closed in on_close() — must not outlive its code: uv_close() calls its
close callback on a later turn of the loop, so the object may not be unloaded (dlclose) in
the same turn. SIGHUP with the plugin taken out of the config, and SIGHUP after it was
rebuilt at its path while a session held the old generation, each retire the old object:
the process lives. And a reload in the middle of an asynchronous call (the example plugin's
delayed RCPT): the call completes on the instance it started on, and the session keeps
that generation's instance (its options) to its end; new sessions get the new one."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

SRC = r'''#include <stdlib.h>
#include "plugin.h"
static const struct mxgate_host *host;
struct inst { uv_timer_t *tick; };
static void tick_cb(uv_timer_t *t) { (void)t; }
static void close_cb(uv_handle_t *h) { free(h); }
static int k_init(const struct mxgate_host *h, const struct mxgate_plugin_args *a, void **i,
    char *e, size_t el)
{
	struct inst *in = calloc(1, sizeof(*in));
	host = h;
	if (a->loop) {   /* a worker: a handle on its loop for the instance's life */
		in->tick = malloc(sizeof(*in->tick));
		uv_timer_init(a->loop, in->tick);
		uv_timer_start(in->tick, tick_cb, 50, 50);
	}
	*i = in;
	return 0;
}
static void k_fini(void *i)
{
	struct inst *in = i;
	if (in->tick)
		uv_close((uv_handle_t *)in->tick, close_cb);
	free(in);
}
static void k_helo(void *i, struct mxgate_call *c)
{
	void **slot = host->session_slot(c);
	if (*slot == NULL) {
		uv_timer_t *t = malloc(sizeof(*t));
		uv_timer_init(host->loop(c), t);
		*slot = t;
	}
	host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}
static void k_eom(void *i, struct mxgate_call *c)
{
	host->add_header(c, "X-Keep-Version", VERSION);
	host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}
static void k_close(void *i, struct mxgate_call *c)
{
	void **slot = host->session_slot(c);
	if (*slot)
		uv_close((uv_handle_t *)*slot, close_cb);
	*slot = NULL;
}
const struct mxgate_plugin mxgate_plugin = { .abi_version = MXGATE_PLUGIN_ABI_VERSION,
    .name = "keep", .init = k_init, .fini = k_fini, .on_helo = k_helo, .on_eom = k_eom,
    .on_close = k_close };
'''

so = os.path.join(t.TMP, 'keep.so')


def build(version):
    """Builds version into keep.so.new and renames it over keep.so (a new inode)."""
    t.build_plugin('keep', SRC, ['-DVERSION="%s"' % version], out=so)


be = t.Backend()


def cfg(with_plugin=True):
    return t.config([be.url], hostname='mx.example.test', workers=2,
                    plugins=[{'name': 'keep', 'path': so}] if with_plugin else [])


def send(tag):
    code, text = t.send_mail(m.port, 'a@example.org', ['b@example.test'], t.message(tag, 'body of %s\r\n' % tag),
                             timeout=30)
    got = be.find('body of ' + tag)
    t.check(code == 250 and len(got) == 1, '%s delivered: %s %s' % (tag, code, text))
    return got[0]['data'] if got else b''


build('one')
m = t.Mxgate(cfg())

# 1. Taken out of the config before any mail (no pooled backend connection holds the old
#    generation): it retires at once, its fini closes the instance's timer, and the last
#    reference to the object goes in the same turn of the loop.
m.reload(cfg(False))
t.check(t.wait_for(lambda: m.log().count('event=reloaded') >= 1 or not m.alive(), 10), 'SIGHUP reloaded')
time.sleep(0.5)
t.check(m.alive(), 'the plugin taken out of the config: the process lives (its timers\' close callbacks ran)')
t.check(b'X-Keep-Version' not in send('k2'), 'and the plugin no longer runs')

# 2. Back in, then rebuilt while a session holds the old generation: that session ends
#    after the reload, closing its per-session timer in on_close as the generation retires.
m.reload(cfg())
t.check(t.wait_for(lambda: m.log().count('event=reloaded') >= 2 or not m.alive(), 10), 'SIGHUP reloaded again')
t.check(m.alive() and b'X-Keep-Version: one' in send('k3'), 'the plugin back in runs')
t.check(m.alive() and b'X-Keep-Version: one' in send('k3b'), 'on either worker')
held = t.Client(m.port, timeout=10)
held.ehlo('held.example.org')
build('two')
m.reload(cfg())
t.check(t.wait_for(lambda: m.log().count('event=reloaded') >= 3 or not m.alive(), 10), 'SIGHUP after the rebuild')
t.check(m.alive() and b'X-Keep-Version: two' in send('k4'), 'the new build runs')
held.cmd('QUIT')
held.close()
time.sleep(0.5)
t.check(m.alive(), 'the session of the old build ended after the reload: the process lives')
t.check(m.alive() and b'X-Keep-Version: two' in send('k5'), 'and goes on serving')
m.stop()

# 3. SIGHUP while an asynchronous call is in flight (the example plugin answers RCPT from a
#    timer 1.5 s later); the reload changes the plugin's option `word`.
ex = os.path.join(t.BUILD, 'example_plugin.so')


def excfg(word):
    return t.config([be.url], hostname='mx.example.test', workers=1, plugins=[
        {'name': 'ex', 'path': ex, 'timeout': '10s', 'options': {'word': word, 'rcpt_delay_ms': '1500'}}])


m = t.Mxgate(excfg('OLDWORD'), name='mxgate-inflight')
c = t.Client(m.port, timeout=15)
c.ehlo('client.example.org')
c.cmd('MAIL FROM:<a@example.org>')
c.send('RCPT TO:<b@example.test>\r\n')
time.sleep(0.3)
m.reload(excfg('NEWWORD'))
t.check(t.wait_for(lambda: m.log().count('event=reloaded') >= 1, 10), 'SIGHUP during the pending RCPT reloaded')
rep = c.reply()
t.check(rep[0] == 250, 'the call in flight completes on its instance: %r' % (rep,))
c.cmd('DATA')
rep = c.cmd(t.message('inflight', 'body with NEWWORD\r\n').decode().rstrip('\r\n').replace('\r\n.', '\r\n..') +
            '\r\n.')
t.check(rep[0] == 250, 'the session started before the reload keeps the old instance (word OLDWORD): %r' % (rep,))
c.cmd('QUIT')
c.close()
code, text = t.send_mail(m.port, 'a@example.org', ['b@example.test'], t.message('after', 'body with NEWWORD\r\n'),
                         timeout=30)
t.check(code == 550 and 'NEWWORD' in text, 'a new session gets the new instance (word NEWWORD): %s %s' % (code, text))
t.check(m.alive(), 'the process lives')
m.stop()
t.finish()
