#!/usr/bin/env python3
"""The backend pool across a reload, as an operator coming from HAProxy's runtime API checks
it: `mxgatectl drain` must hold for every session, including the ones that began before a
SIGHUP (they run under the old configuration generation and its own pool), and
`mxgatectl backends` must not say "drained" (the signal to start maintenance) while a
transaction of such a session is still open on the server.

Before the fix a drain flagged only the current generation's pool: a client session that
began before a reload kept sending each new message to the drained server, and the server's
state read "drained", ACTIVE 0, while that session had a transaction open on it.

The same for up/down: the probes run on the current generation's pool, and before the fix
an old generation's pool never heard that a server died (its sessions kept trying it and
logged a second backend_down) or came back (they never used it again).
MX_POOL_ONLY=name,name runs only those cases.
"""
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

want = mt.case_wanted


def tags(b):
    return [t for m in b.messages for t in mt.message_ids([m['data']])]


mt.need()
CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'gen-control.sock')


def cfg(servers):
    return mt.config(servers, workers=1, control={'socket': SOCK},
                     backends={'health_check': {'interval': '1h', 'timeout': '1s', 'fall': 100, 'rise': 1}})


def ctl(*args):
    return mt.ctl(SOCK, *args)


def backend_row(url):
    rc, out, _ = ctl('--json', 'backends')
    try:
        rows = json.loads(out)
    except ValueError:
        return {}
    rows = rows.get('backends', rows) if isinstance(rows, dict) else rows
    return next((r for r in rows if r.get('url') == url or r.get('backend') == url), {})


def reload(mx, c):
    mark = mx.log_size()
    mx.reload(c)
    mt.check(mx.wait_log(r'event=reloaded', 10, start=mark) is not None, 'SIGHUP: event=reloaded')


class Session:
    """One client connection sending message after message (as Postfix's smtp client does
    with connection reuse)."""

    def __init__(self, port):
        self.c = mt.Client(port)
        self.c.ehlo()

    def open(self):
        code, _ = self.c.cmd('MAIL FROM:<s@example.org>')
        code2, _ = self.c.cmd('RCPT TO:<r@example.test>')
        return code, code2

    def finish(self, tag):
        code, _ = self.c.cmd('DATA')
        if code != 354:
            return code
        self.c.send(mt.stuff(mt.message(tag)))
        return self.c.reply()[0]

    def send(self, tag):
        self.open()
        return self.finish(tag)


# ---------------------------------------------------------------- drain holds for old sessions
if want('drainold'):
    a, b = mt.Backend(name='A'), mt.Backend(name='B')
    mx = mt.Mxgate(cfg([a.url, b.url]), name='mx-drainold')
    s = Session(mx.port)
    mt.check(s.send('g1-0') == 250, 'drainold: a first message before the reload')
    reload(mx, cfg([a.url, b.url]))
    rc, out, err = ctl('drain', a.url)
    mt.check(rc == 0, 'drainold: mxgatectl drain %s (%s%s)' % (a.url, out, err))
    codes = [s.send('g1-%d' % i) for i in range(1, 7)]
    at_a = [t for t in tags(a) if t.startswith('g1-') and t != 'g1-0']
    mt.check(codes == [250] * 6 and not at_a,
             'drainold: a session begun before the reload sends nothing to the drained server '
             '(%s; at the drained one: %s)' % (codes, at_a))
    mt.check(len([t for t in tags(b) if t.startswith('g1-')]) >= 6, 'drainold: ... the other server takes them')
    # new sessions too (the current generation)
    r = mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('g1-new'))
    mt.check(r.code == 250 and 'g1-new' in tags(b), 'drainold: a new session goes to the other server (%s)' % r.code)
    rc, out, err = ctl('enable', a.url)
    codes = [s.send('g1-back-%d' % i) for i in range(4)]
    back = [t for t in tags(a) if t.startswith('g1-back')]
    mt.check(codes == [250] * 4 and len(back) == 2,
             'drainold: enabled again, the old session uses it again (%s; %d of 4 there)' % (codes, len(back)))
    s.c.cmd('QUIT')
    s.c.close()
    mx.stop()
    a.stop()
    b.stop()

# ---------------------------------------------------------------- "draining" until the last one ends
if want('drainingold'):
    a = mt.Backend(name='A')
    b = mt.Backend(name='B')
    mx = mt.Mxgate(cfg([a.url]), name='mx-drainingold')
    s = Session(mx.port)
    codes = s.open()
    mt.check(codes == (250, 250), 'drainingold: a transaction is open on A (%s)' % (codes,))
    reload(mx, cfg([a.url, b.url]))
    rc, out, err = ctl('drain', a.url)
    mt.check(rc == 0 and 'open transactions finish' in out,
             'drainingold: drain says the open transaction finishes (%s%s)' % (out, err))
    row = backend_row(a.url)
    mt.check(row.get('state') == 'draining' and row.get('active') == 1,
             'drainingold: while a transaction of a session begun before the reload is open on A, '
             'mxgatectl backends says draining, active 1 (%s)' % row)
    mt.check(s.finish('old-open') == 250 and 'old-open' in tags(a), 'drainingold: the open transaction is delivered on A')
    s.c.cmd('QUIT')
    s.c.close()
    ok = mt.wait_for(lambda: backend_row(a.url).get('state') == 'drained', timeout=10)
    mt.check(ok, 'drainingold: then drained, active 0 (%s)' % backend_row(a.url))
    mx.stop()
    a.stop()
    b.stop()

# ---------------------------------------------------------------- one health state for every generation
def hcfg(servers, **backends):
    bk = {'health_check': {'interval': '200ms', 'timeout': '1s', 'fall': 1, 'rise': 1}}
    bk.update(backends)
    return mt.config(servers, workers=1, control={'socket': SOCK}, backends=bk)


if want('healthold'):
    # A session begun before a reload runs on the old generation's pool. The probes run on
    # the current one: before the fix the old pool never heard that A died (its session kept
    # trying A and logged a second backend_down of its own) nor that A came back (its session
    # never used A again).
    a, b = mt.Backend(name='A'), mt.Backend(name='B')
    mx = mt.Mxgate(hcfg([a.url, b.url]), name='mx-healthold')
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'healthold: started')
    s = Session(mx.port)
    mt.check(s.send('h-0') == 250, 'healthold: a first message before the reload')
    reload(mx, hcfg([a.url, b.url]))
    mark = mx.log_size()
    port = a.port
    a.stop()
    mt.check(mx.wait_log(r'event=backend_down backend=%s ' % a.url, 10, start=mark) is not None,
             'healthold: the probes take A down')
    codes = [s.send('h-down-%d' % i) for i in range(4)]
    errs = mx.count_log(r'event=backend_error backend=%s ' % a.url, start=mark)
    mt.check(codes == [250] * 4 and errs == 0,
             'healthold: the session begun before the reload does not try the dead server '
             '(%s; %d backend_error for A)' % (codes, errs))
    mt.check(backend_row(a.url).get('state') == 'down', 'healthold: mxgatectl backends: A down (%s)' % backend_row(a.url))
    a2 = mt.Backend(name='A2', port=port)
    mt.check(mx.wait_log(r'event=backend_up backend=%s ' % a.url, 10, start=mark) is not None,
             'healthold: the probes bring A back')
    codes = [s.send('h-up-%d' % i) for i in range(4)]
    back = [t for t in tags(a2) if t.startswith('h-up-')]
    mt.check(codes == [250] * 4 and len(back) == 2,
             'healthold: the session begun before the reload uses A again (%s; %d of 4 there)' % (codes, len(back)))
    downs = mx.count_log(r'event=backend_down backend=%s ' % a.url, start=mark)
    ups = mx.count_log(r'event=backend_up backend=%s ' % a.url, start=mark)
    mt.check(downs == 1 and ups == 1, 'healthold: one backend_down and one backend_up for A (%d, %d)' % (downs, ups))
    mt.check(backend_row(a.url).get('state') == 'up', 'healthold: mxgatectl backends: A up (%s)' % backend_row(a.url))
    s.c.cmd('QUIT')
    s.c.close()
    mx.stop()
    a2.stop()
    b.stop()

# ---------------------------------------------------------------- least_conn counts every generation
if want('leastconnold'):
    # A transaction of a session begun before a reload holds a connection to one server;
    # the new generation's least_conn must count it. Before the fix it counted only its own
    # pool's connections: both servers looked idle and the next transaction went to the
    # busy one (the schedule's first).
    a, b = mt.Backend(name='A'), mt.Backend(name='B')
    lc = lambda: mt.config([a.url, b.url], workers=1, control={'socket': SOCK},
                           backends={'balance': 'least_conn',
                                     'health_check': {'interval': '1h', 'timeout': '1s', 'fall': 100, 'rise': 1}})
    mx = mt.Mxgate(lc(), name='mx-leastconnold')
    s1 = Session(mx.port)
    mt.check(s1.open() == (250, 250), 'leastconnold: a transaction open before the reload')
    busy = [u for u in (a.url, b.url) if backend_row(u).get('active') == 1]
    mt.check(len(busy) == 1, 'leastconnold: it holds one server (%s)' % busy)
    reload(mx, lc())
    s2 = Session(mx.port)
    mt.check(s2.open() == (250, 250), 'leastconnold: a transaction of a new session')
    act = {u: backend_row(u).get('active') for u in (a.url, b.url)}
    mt.check(act == {a.url: 1, b.url: 1},
             'leastconnold: least_conn sends it to the idle server, counting the old session\'s '
             'connection (active %s)' % act)
    mt.check(s1.finish('lc-1') == 250 and s2.finish('lc-2') == 250, 'leastconnold: both delivered')
    for s in (s1, s2):
        s.c.cmd('QUIT')
        s.c.close()
    mx.stop()
    a.stop()
    b.stop()

mt.finish()
