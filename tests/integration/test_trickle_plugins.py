#!/usr/bin/env python3
"""No content filter can hold a session by trickling (docs/operations.md, "Timeouts: what
bounds each peer"). Each peer is a scripted one on 127.0.0.1 that answers at a trickle: a
frame or an octet every TICK seconds, well inside the plugin's `timeout` (TIMEOUT), never a
complete answer. What ends it is a bound counted from the call's start, not from the last
read; the entry's on_error (tempfail here) is what the client is told, a 4xx, and nothing is
relayed.
- milter: SMFIR_PROGRESS frames at a stage before end of message (libmilter sends them only
  at end of message, smfi_progress) — they restart nothing there; the option negotiation's
  reply an octet at a time; at end of message, modifications trickled (each restarts the
  call's timeout, as SMFIR_PROGRESS does: limits.filter_deadline bounds them together);
- clamd: its reply an octet at a time; spamd: its reply an octet at a time;
- rspamd: its HTTP reply an octet at a time;
- a .so plugin calling the ABI's progress() every TICK at RCPT, never answering.
Each case prints how long it took (the figure in the docs' table). What is checked is the
daemon's own line for the bound that ended it: event=plugin_error error=timeout (the entry's
timeout) or event=filter_deadline (the deadline), with the client's 4xx — a bound reset on
every read never fires: the peer's reply would end complete (a 250) or the peer's own end
after LIMIT would be another error.
"""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'peers'))
import mxtest as mt  # noqa: E402
import hostile_peer as hp  # noqa: E402
from bad_peer import frame, read_frame  # noqa: E402

TIMEOUT, FILTER_DEADLINE = 1.0, 2.0
TICK = 0.3
LIMIT = 10.0        # the case's own end: a trickle not bounded runs this long, and fails
figures = {}

# SMFIP_NR_* for every stage but connect (replied), and no HELO/MAIL/RCPT/... steps
NR_ALL_BUT_CONN = 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x80 | 0x40000 | 0x80000


def trickling_milter(mode):
    """mode: 'progress' (SMFIR_PROGRESS every TICK at connect), 'optneg_bytes' (the option
    negotiation's reply an octet every TICK), 'eom_headers' (a header added every TICK at
    end of message, never a verdict)."""
    def handler(srv, p, n):
        c = p.sock
        c.settimeout(LIMIT + 5)
        t0 = time.time()
        optneg = frame(b'O', struct.pack('>III', 6, 0x1ff, NR_ALL_BUT_CONN))
        while time.time() - t0 < LIMIT + 5:
            cmd, data = read_frame(c)
            if cmd == b'O':
                if mode == 'optneg_bytes':
                    mt.drip(c, optneg, TICK, LIMIT + 5)
                    return
                c.sendall(optneg)
            elif cmd == b'C':
                if mode == 'progress':
                    while time.time() - t0 < LIMIT + 5:
                        c.sendall(frame(b'p'))
                        time.sleep(TICK)
                    return
                c.sendall(frame(b'c'))
            elif cmd == b'E':
                i = 0
                while time.time() - t0 < LIMIT + 5:
                    c.sendall(frame(b'h', b'X-Trickle-%d\0%d\0' % (i, i)))
                    i += 1
                    time.sleep(TICK)
                return
            elif cmd == b'Q':
                return
    return hp.Script(handler, 'milter-' + mode)


def drip_peer(name, read_request, reply):
    """A TCP peer that reads one request (read_request(peer)) and drips `reply`."""
    def handler(srv, p, n):
        p.sock.settimeout(LIMIT + 5)
        if read_request(p):
            mt.drip(p.sock, reply, TICK, LIMIT + 5)
    return hp.Script(handler, name)


def read_until(c, buf, done):
    """Reads from c onto buf until done(buf); the bytes, or None at EOF."""
    while not done(buf):
        d = c.recv(65536)
        if not d:
            return None
        buf += d
    return buf


def read_clamd(p):
    """zINSTREAM\\0, then chunks (4-octet length, data) to the zero length."""
    buf = read_until(p.sock, b'', lambda b: b'\0' in b)
    if buf is None:
        return False
    buf = buf.split(b'\0', 1)[1]
    while True:
        buf = read_until(p.sock, buf, lambda b: len(b) >= 4)
        if buf is None:
            return False
        (n,) = struct.unpack('>I', buf[:4])
        if n == 0:
            return True
        buf = read_until(p.sock, buf, lambda b: len(b) >= 4 + n)
        if buf is None:
            return False
        buf = buf[4 + n:]


def read_http_like(p):
    """Headers to the empty line, then Content-length octets (spamd, rspamd's HTTP)."""
    buf = read_until(p.sock, b'', lambda b: b'\r\n\r\n' in b)
    if buf is None:
        return False
    head, body = buf.split(b'\r\n\r\n', 1)
    n = 0
    for ln in head.split(b'\r\n'):
        if ln.lower().startswith(b'content-length:'):
            n = int(ln.split(b':', 1)[1])
    return read_until(p.sock, body, lambda b: len(b) >= n) is not None


SPAMD_REPLY = b'SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 1.0 / 5.0\r\n\r\n'
RSPAMD_BODY = b'{"action":"no action","score":0.0,"required_score":15.0,"symbols":{}}'
RSPAMD_REPLY = (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n'
                % len(RSPAMD_BODY)) + RSPAMD_BODY


def case(name, plugin, stage, bound, per_call_reply=None):
    """One mxgate with one plugin entry; a message sent (stage 'connect': the greeting is
    what is timed, else the reply to the final dot). The session must end the wait by its
    bound (the entry's timeout, or filter_deadline: the daemon's line for it) with a 4xx, the
    backend must not have the message."""
    be = mt.Backend(name='be-' + name)
    entry = dict(plugin, on_error='tempfail', timeout='%gs' % TIMEOUT)
    mx = mt.Mxgate(mt.config([be.url], plugins=[entry],
                             limits={'filter_deadline': '%gs' % FILTER_DEADLINE}), name='mx-' + name)
    t0 = time.time()
    if stage == 'connect':
        c = mt.Client(mx.port, timeout=LIMIT + 5)
        took = time.time() - t0
        code, text = c.greeting
        if code is not None and code < 400:
            # the connect stage's verdict may be applied at the first command: ask one
            code, text = c.ehlo()
            took = time.time() - t0
        c.close()
    else:
        c = mt.Client(mx.port, timeout=LIMIT + 5)
        c.ehlo()
        c.cmd('MAIL FROM:<a@example.org>')
        c.cmd('RCPT TO:<b@example.test>')
        c.cmd('DATA')
        t0 = time.time()
        c.send(mt.stuff(mt.message('trickle-' + name)))
        code, text = c.reply()
        took = time.time() - t0
        c.close()
    figures[name] = took
    mt.say('%s: %s %s after %.2fs (bound %.1fs)' % (name, code, text.splitlines()[-1] if text else '', took, bound))
    mt.check(code is not None and 400 <= code < 500, '%s: a 4xx (on_error tempfail) (%s %s)' % (name, code, text))
    if bound == FILTER_DEADLINE:
        rx = r'event=filter_deadline stage=eom plugin=%s elapsed_ms=\d+ deadline_ms=%d ' % (plugin['name'], bound * 1000)
    else:
        rx = r'event=plugin_error plugin=%s stage=\S+ error=timeout on_error=tempfail' % plugin['name']
    m = mx.wait_log(rx, 5)
    mt.check(m is not None, '%s: ended by its bound %.1fs: %s' % (name, bound, m.group(0) if m else 'no ' + rx))
    mt.check(not be.by_tag('trickle-' + name), '%s: nothing relayed' % name)
    mx.stop()


# ------------------------------------------------------------------- milter
m = trickling_milter('progress')
case('milter_progress_connect', {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m.port}, 'connect', TIMEOUT)
m = trickling_milter('optneg_bytes')
case('milter_optneg_bytes', {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m.port}, 'connect', TIMEOUT)
m = trickling_milter('eom_headers')
case('milter_eom_headers', {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m.port}, 'eom', FILTER_DEADLINE)

# ------------------------------------------------------------------- clamd, spamd, rspamd
p = drip_peer('clamd-drip', read_clamd, b'stream: OK\0')
case('clamd_reply', {'name': 'clamd', 'address': '127.0.0.1:%d' % p.port}, 'eom', TIMEOUT)
p = drip_peer('spamd-drip', read_http_like, SPAMD_REPLY)
case('spamd_reply', {'name': 'spamd', 'address': '127.0.0.1:%d' % p.port}, 'eom', TIMEOUT)
p = drip_peer('rspamd-drip', read_http_like, RSPAMD_REPLY)
case('rspamd_reply', {'name': 'rspamd', 'address': '127.0.0.1:%d' % p.port}, 'eom', TIMEOUT)

# ------------------------------------------------------------------- a .so plugin calling progress()
# The ABI's progress() ("the peer is alive and working: restart this call's timeout"), called
# every TICK at RCPT without ever answering: before end of message it restarts nothing (as a
# milter's SMFIR_PROGRESS), at end of message limits.filter_deadline bounds it.
PROGRESS_SRC = r'''#include <stdlib.h>
#include "plugin.h"
static const struct mxgate_host *host;
struct tick { uv_timer_t t; struct mxgate_call *c; };
static struct tick *running;
static int p_init(const struct mxgate_host *h, const struct mxgate_plugin_args *a, void **i,
    char *e, size_t el) { host = h; *i = 0; return 0; }
static void tick_cb(uv_timer_t *t) { host->progress(((struct tick *)t->data)->c); }
static void start(struct mxgate_call *c)
{
	struct tick *k = malloc(sizeof(*k));
	uv_timer_init(host->loop(c), &k->t);
	k->t.data = k;
	k->c = c;
	running = k;
	uv_timer_start(&k->t, tick_cb, 300, 300);
}
static void p_cancel(void *i, struct mxgate_call *c)
{
	if (running && running->c == c) {
		uv_timer_stop(&running->t);
		uv_close((uv_handle_t *)&running->t, (uv_close_cb)free);
		running = NULL;
	}
}
static void p_rcpt(void *i, struct mxgate_call *c) { start(c); }
const struct mxgate_plugin mxgate_plugin = { .abi_version = MXGATE_PLUGIN_ABI_VERSION,
    .name = "ticker", .init = p_init, .on_rcpt = p_rcpt, .cancel = p_cancel };
'''
so = mt.build_plugin('ticker', PROGRESS_SRC)
be = mt.Backend(name='be-ticker')
mx = mt.Mxgate(mt.config([be.url], workers=1, plugins=[{'name': 'ticker', 'path': so, 'on_error': 'tempfail',
                                                         'timeout': '%gs' % TIMEOUT}]), name='mx-ticker')
c = mt.Client(mx.port, timeout=LIMIT + 5)
c.ehlo()
c.cmd('MAIL FROM:<a@example.org>')
t0 = time.time()
code, text = c.cmd('RCPT TO:<b@example.test>')
took = time.time() - t0
c.close()
figures['so_progress_rcpt'] = took
mt.say('so_progress_rcpt: %s %s after %.2fs (bound %.1fs)' % (code, text, took, TIMEOUT))
m = mx.wait_log(r'event=plugin_error plugin=ticker stage=rcpt error=timeout on_error=tempfail', 5)
mt.check(code is not None and 400 <= code < 500 and m is not None,
         'a .so plugin calling progress() at RCPT: on_error at its timeout (%s %s after %.2fs; %s)'
         % (code, text, took, m.group(0) if m else 'no event=plugin_error error=timeout'))
mx.stop()

mt.say('figures: ' + ' '.join('%s=%.2fs' % kv for kv in figures.items()))
mt.finish()
