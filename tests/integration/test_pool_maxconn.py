#!/usr/bin/env python3
"""Per-server connection limits, as an operator coming from HAProxy (`server ... maxconn`)
sets them: `backends.servers[].max_connections` caps the connections in use to a server
(from every worker and configuration generation). A transaction that would pass it goes
to another server; when every server is full the client gets a 4xx at once (HAProxy
queues the connection instead; an SMTP client retries, its queue is the queue), and the
log says why (`event=backends_full`). mxgatectl backends --json shows the limit.
MX_POOL_ONLY=name,name runs only those cases.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

want = mt.case_wanted


mt.need()
CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'maxconn-control.sock')


def rows():
    return mt.backends_rows(CTL, SOCK)


class Session:
    def __init__(self, port):
        self.c = mt.Client(port)
        self.c.ehlo()

    def open(self):
        code, text = self.c.cmd('MAIL FROM:<s@example.org>')
        if code != 250:
            return code, None, text
        code2, text = self.c.cmd('RCPT TO:<r@example.test>')
        return code, code2, text

    def finish(self, tag):
        code, _ = self.c.cmd('DATA')
        if code != 354:
            return code
        self.c.send(mt.stuff(mt.message(tag)))
        return self.c.reply()[0]

    def close(self):
        self.c.cmd('QUIT')
        self.c.close()


if want('maxconn'):
    a, b = mt.Backend(name='A'), mt.Backend(name='B')
    cfg = mt.config([{'address': a.url, 'max_connections': 1}, {'address': b.url, 'max_connections': 2}],
                    workers=1, control={'socket': SOCK})
    mx = mt.Mxgate(cfg, name='mx-maxconn')
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'maxconn: started')
    r = rows()
    mt.check(r.get(a.url, {}).get('max_connections') == 1 and r.get(b.url, {}).get('max_connections') == 2,
             'maxconn: mxgatectl backends --json shows the limits (%s)' % r)
    ss = [Session(mx.port) for _ in range(4)]
    opened = [ss[i].open() for i in range(3)]
    act = {u: rows().get(u, {}).get('active') for u in (a.url, b.url)}
    mt.check([o[:2] for o in opened] == [(250, 250)] * 3 and act == {a.url: 1, b.url: 2},
             'maxconn: three transactions open, A holds 1, B 2 (%s; %s)' % (opened, act))
    mark = mx.log_size()
    code, code2, text = ss[3].open()
    mt.check(code == 451 and '4.4.1' in text,
             'maxconn: every server full: the fourth gets a 4xx to MAIL at once (%s %r)' % (code, text))
    mt.check(mx.wait_log(r'event=backends_full ', 5, start=mark) is not None, 'maxconn: logged event=backends_full')
    act = {u: rows().get(u, {}).get('active') for u in (a.url, b.url)}
    mt.check(act == {a.url: 1, b.url: 2}, 'maxconn: no server passed its limit (%s)' % act)
    mt.check(ss[0].finish('mc-0') == 250, 'maxconn: the first delivered')
    code, code2, text = ss[3].open()
    mt.check((code, code2) == (250, 250) and ss[3].finish('mc-3') == 250,
             'maxconn: a connection given back, the next transaction goes through (%s %s %r)' % (code, code2, text))
    for i in (1, 2):
        mt.check(ss[i].finish('mc-%d' % i) == 250, 'maxconn: transaction %d delivered' % i)
    downs = mx.count_log(r'event=backend_down ')
    mt.check(downs == 0, 'maxconn: a full server is not a down one (%d backend_down)' % downs)
    for s in ss:
        s.close()
    mx.stop()
    a.stop()
    b.stop()

mt.finish()
