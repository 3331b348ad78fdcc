#!/usr/bin/env python3
"""Which backend answers take a server out of the rotation, as an operator coming from
Postfix expects it: Postfix's smtp client marks a destination dead only on trouble with the
session itself (cannot connect, no or a 4xx greeting, lost connection, timeout:
smtp_site_fail and smtp_stream_except throttle the queue); a 4xx to MAIL, to DATA or after
the final dot is about that message (smtp_mesg_fail: the message goes to the next server,
the destination stays alive).

Before the fix every 4xx to DATA or after the dot counted towards `fall`: `fall` messages
in a row that a backend deferred for their content (one sender's mail, a filter's
tempfail) took a healthy server out, and with it every other sender's mail.
- content: smtp-sink -r . (450 after every dot) and a good server: every message is
  delivered through the good one; the deferring server stays up (logs, `mxgatectl
  backends`, metrics), its attempts count in mxgate_backend_failed_total.
- data: smtp-sink -r data (450 to DATA): the same.
- bothdefer: both servers defer one sender's messages (the client gets 451): neither goes
  down, /readyz stays 200, the next sender's mail is spread over both again.
- closing: 421 after the dot (the server is closing the connection, RFC 5321 4.2.3) is
  trouble with the session: it counts, `fall` of them take the server down.
- closingmail: 421 to MAIL (a Postfix whose smtpd is stopping, or out of process slots:
  "421 4.3.2 Service shutting down") is the same trouble with the session: it counts too
  (it did not: such a server stayed in the rotation for ever, every message's first try
  lost on it).
MX_POOL_ONLY=name,name runs only those cases.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

want = mt.case_wanted


mt.need('smtp-sink')
CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'defer-control.sock')


def cfg(servers, **kw):
    bk = {'health_check': {'interval': '1h', 'timeout': '%gs' % mt.slack(10), 'fall': 2, 'rise': 1}}
    bk.update(kw)
    return mt.config(servers, workers=1, control={'socket': SOCK},
                     metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}, backends=bk)


def rows():
    return mt.backends_rows(CTL, SOCK)


def metric(text, name, url):
    for line in text.splitlines():
        if line.startswith('%s{backend="%s"}' % (name, url)):
            return float(line.split()[-1])
    return None


def send(mx, tag, sender='s@example.org'):
    return mt.send_mail(mx.port, sender, ['r@example.test'], mt.message(tag)).code


def stays_up(case, mx, url, mp, attempts):
    downs = mx.count_log(r'event=backend_down backend=%s ' % url)
    row = rows().get(url, {})
    mt.check(downs == 0 and row.get('state') == 'up' and row.get('consecutive_failures') == 0,
             '%s: the deferring server stays in the rotation (%d backend_down; %s)' % (case, downs, row))
    st, text = mt.http_get(mp, '/metrics')
    up = metric(text, 'mxgate_backend_up', url)
    failed = metric(text, 'mxgate_backend_failed_total', url)
    mt.check(up == 1 and failed == attempts,
             '%s: metrics: up %s, its %d deferred attempts in mxgate_backend_failed_total (%s)'
             % (case, up, attempts, failed))


for case, arg in (('content', '.'), ('data', 'data')):
    if not want(case):
        continue
    bad = mt.Sink(name='defer-' + case, args=['-r', arg])
    good = mt.Backend(name='good-' + case)
    mx = mt.Mxgate(cfg([bad.url, good.url]), name='mx-' + case)
    mp = mx.metrics_port
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, '%s: started' % case)
    codes = [send(mx, '%s-%d' % (case, i)) for i in range(6)]
    tries = mx.count_log(r'event=backend_tempfail backend=%s ' % bad.url)
    mt.check(codes == [250] * 6 and len(good.messages) == 6 and tries >= 3,
             '%s: every message delivered through the good server after the deferring one '
             'answered 450 (%s; %d there, %d tried on the deferring one)' % (case, codes, len(good.messages), tries))
    stays_up(case, mx, bad.url, mp, tries)
    mx.stop()
    bad.stop()
    good.stop()

if want('bothdefer'):
    a, b = mt.Backend(name='A', mode='tempfail_data'), mt.Backend(name='B', mode='tempfail_data')
    mx = mt.Mxgate(cfg([a.url, b.url]), name='mx-bothdefer')
    mp = mx.metrics_port
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'bothdefer: started')
    codes = [send(mx, 'bd-%d' % i, sender='odd@example.net') for i in range(3)]
    mt.check(codes == [451] * 3, 'bothdefer: one sender\'s messages deferred by both servers: 451 (%s)' % codes)
    for s in (a, b):
        s.mode = 'ok'
    st = mt.http_get(mp, '/readyz')
    mt.check(st[0] == 200, 'bothdefer: /readyz still ready (%s %r)' % st)
    for s in (a, b):
        stays_up('bothdefer', mx, s.url, mp, 3)
    codes = [send(mx, 'bd-ok-%d' % i) for i in range(4)]
    mt.check(codes == [250] * 4 and len(a.messages) == 2 and len(b.messages) == 2,
             'bothdefer: the next sender\'s mail is spread over both (%s; %d/%d)' % (codes, len(a.messages), len(b.messages)))
    mx.stop()
    a.stop()
    b.stop()

if want('closing'):
    a = mt.Backend(name='closing', data_reply='421 4.3.2 Service shutting down')
    b = mt.Backend(name='other')
    mx = mt.Mxgate(cfg([a.url, b.url]), name='mx-closing')
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'closing: started')
    codes = [send(mx, 'cl-%d' % i) for i in range(6)]
    mt.check(codes == [250] * 6, 'closing: delivered through the other server (%s)' % codes)
    down = mx.wait_log(r'event=backend_down backend=%s reason="([^"]*)"' % a.url, 5)
    mt.check(down is not None and '421' in down.group(1),
             'closing: 421 after the dot counts: the server goes down (%s)' % (down.group(1) if down else None))
    mt.check(rows().get(a.url, {}).get('state') == 'down', 'closing: mxgatectl backends says down')
    mx.stop()
    a.stop()
    b.stop()

if want('closingmail'):
    a = mt.Backend(name='closingmail', mode='closing_mail')
    b = mt.Backend(name='other2')
    mx = mt.Mxgate(cfg([a.url, b.url]), name='mx-closingmail')
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'closingmail: started')
    codes = [send(mx, 'cm-%d' % i) for i in range(6)]
    mt.check(codes == [250] * 6, 'closingmail: delivered through the other server (%s)' % codes)
    down = mx.wait_log(r'event=backend_down backend=%s reason="([^"]*)"' % a.url, 5)
    mt.check(down is not None and '421' in down.group(1),
             'closingmail: 421 to MAIL counts: the server goes down (%s)\n%s' % (down.group(1) if down else None, mx.tail()))
    mt.check(rows().get(a.url, {}).get('state') == 'down', 'closingmail: mxgatectl backends says down')
    mx.stop()
    a.stop()
    b.stop()

mt.finish()
