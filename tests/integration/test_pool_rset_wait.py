#!/usr/bin/env python3
"""A session whose next MAIL comes before its own backend connection's RSET is answered waits
for that reply and goes on on that connection (issue 10 §5).

A transaction abandoned with RSET gives its connection back only once the backend answers the
RSET (it is kept for the session: test_pool_affine). The backend here holds that reply (its
RSET gate) until mxgate has shown what it does with the client's next transaction: it waits
for the reply (event=backend_rset_wait, debug), or (before: main) it opens a new connection
or takes another session's idle one, announcing the client there again. No timing: the gate
opens on what mxgate did, and the checks count connections and XCLIENTs at the backend.
- wait: the same connection, one XCLIENT per client, a second client's idle connection left
  to it.
- refused: the backend refuses the RSET: the waiting transaction gets a fresh connection
  (the refused one is sent QUIT), the message goes through.
- timeout: the RSET reply never comes within reply_timeout: a fresh connection, the message
  goes through (the bound is the relay's reply_timeout; the test does not time it).
MX_POOL_ONLY=name,name runs only those cases.
"""
import os
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

want = mt.case_wanted

mt.need()

WAIT = r'event=backend_rset_wait '


def mail_conns(b):
    """The backend's connections that carried mail (not the health probe's): number -> commands."""
    with b.lock:
        return {n: list(v) for n, v in b.conn_commands.items() if any(x.upper().startswith('MAIL') for x in v)}


def count(b, verb):
    return sum(1 for v in mail_conns(b).values() for x in v if x.upper().split(' ')[0] == verb)


def start(b, name, **backends):
    """mxgate on one worker at log level debug, once the start's health probe is done."""
    bk = {'pool_size': 2, 'health_check': {'interval': '1h', 'timeout': '10s', 'fall': 2, 'rise': 1}}
    bk.update(backends)
    cfg = mt.config([b.url], workers=1, backends=bk)
    cfg['log'] = {'level': 'debug'}
    mx = mt.Mxgate(cfg, name=name)
    mt.check(mt.wait_for(lambda: b.connections >= 1 and b.open_connections() == 0, 10),
             '%s: the start\'s health probe done' % name)
    return mx


def abandon_then_mail(mx, b, c, name, between=None):
    """c opens a transaction (a backend connection), abandons it with RSET while the backend
    holds its RSET reply, and sends its next MAIL. The gate opens once mxgate waits for the
    reply or has opened or taken another connection. The codes (MAIL, RCPT, RSET), the
    connections that carried mail before the next MAIL, and whether mxgate said it waited.
    between(): run once c's transaction holds its connection, before the RSET."""
    gate = threading.Event()
    b.rset_gate = gate
    codes = [c.cmd('MAIL FROM:<s@example.org>')[0], c.cmd('RCPT TO:<r@example.test>')[0]]
    if between:
        codes += between()
    before = len(mail_conns(b))
    n_rset = b.commands.count('RSET')
    codes.append(c.cmd('RSET')[0])
    mt.check(mt.wait_for(lambda: b.commands.count('RSET') > n_rset, 10), '%s: the backend has the RSET' % name)
    pos = mx.log_size()
    xc = count(b, 'XCLIENT')
    c.send(b'MAIL FROM:<s@example.org>\r\n')
    seen = mt.wait_for(lambda: mx.count_log(WAIT, pos) > 0 or len(mail_conns(b)) > before or
                       count(b, 'XCLIENT') > xc, 10)
    waited = mx.count_log(WAIT, pos) > 0
    gate.set()
    b.rset_gate = None
    mt.check(seen, '%s: mxgate waited for the RSET reply or went elsewhere' % name)
    return codes, before, waited


if want('wait'):
    b = mt.Backend(name='W')
    mx = start(b, 'mx-rsetwait')
    a = mt.Client(mx.port)
    o = mt.Client(mx.port)
    mt.check(a.ehlo('a.client.test')[0] == 250 and o.ehlo('o.client.test')[0] == 250, 'wait: EHLO')
    # While a's transaction holds its connection, the other client's message: its own
    # connection then waits idle, kept for it (another session's, which main's a took).
    codes, conns0, waited = abandon_then_mail(mx, b, a, 'wait', lambda: o.transaction('rw-o-0'))
    code, _ = a.reply()            # the reply to the MAIL sent before the RSET was answered
    codes += [code] + [a.cmd('RCPT TO:<r@example.test>')[0]]
    code, _ = a.cmd('DATA')
    codes.append(code)
    a.send(mt.stuff(mt.message('rw-a-1')))
    codes.append(a.reply()[0])
    codes += o.transaction('rw-o-1')
    mt.check(codes == [250, 250] + [250, 250, 354, 250] + [250] + [250, 250, 354, 250] + [250, 250, 354, 250],
             'wait: every command and message 250 (%s)' % codes)
    ma, mo = b.by_tag('rw-a-1'), b.by_tag('rw-o-1') + b.by_tag('rw-o-0')
    conns = mail_conns(b)
    mt.check(waited, 'wait: mxgate waited for the RSET reply (event=backend_rset_wait)')
    mt.check(len(conns) == 2 and conns0 == 2,
             'wait: no connection opened for the next MAIL: one per client (%d connections, %s)'
             % (len(conns), sorted(conns)))
    mt.check(count(b, 'XCLIENT') == 2, 'wait: one XCLIENT per client, none sent again (%d)' % count(b, 'XCLIENT'))
    a_conn = [n for n, v in conns.items() if 'RSET' in v]
    mt.check(len(ma) == 1 and a_conn == [ma[0]['conn']] and ma[0]['xclient'].get('HELO') == 'a.client.test',
             'wait: the message went on the connection whose RSET it waited for (%s, %s)'
             % ([m['conn'] for m in ma], a_conn))
    mt.check(len(mo) == 2 and len({m['conn'] for m in mo}) == 1 and mo[0]['conn'] not in a_conn,
             'wait: the other client kept its own connection (%s)' % [m['conn'] for m in mo])
    mt.check(count(b, 'QUIT') == 0, 'wait: no QUIT (%d)' % count(b, 'QUIT'))
    for c in (a, o):
        c.cmd('QUIT')
        c.close()
    mx.stop()
    b.stop()

if want('refused'):
    b = mt.Backend(name='F')
    mx = start(b, 'mx-rsetwait-refused')
    a = mt.Client(mx.port)
    mt.check(a.ehlo('a.client.test')[0] == 250, 'refused: EHLO')
    b.rset_reply = '451 4.3.0 not now'
    codes, _, waited = abandon_then_mail(mx, b, a, 'refused')
    code, _ = a.reply()
    codes += [code, a.cmd('RCPT TO:<r@example.test>')[0]]
    code, _ = a.cmd('DATA')
    codes.append(code)
    a.send(mt.stuff(mt.message('rf-1')))
    codes.append(a.reply()[0])
    mt.check(codes == [250, 250, 250, 250, 250, 354, 250], 'refused: every command and the message 250 (%s)' % codes)
    m = b.by_tag('rf-1')
    refused = [n for n, v in mail_conns(b).items() if 'RSET' in v]
    mt.check(waited and len(m) == 1 and refused and m[0]['conn'] not in refused and
             m[0]['xclient'].get('HELO') == 'a.client.test',
             'refused: the waiting transaction went on a fresh connection (waited %s, %s, refused %s)'
             % (waited, [x['conn'] for x in m], refused))
    mt.check(mt.wait_for(lambda: 'QUIT' in mail_conns(b).get(refused[0], []), 10),
             'refused: the connection whose RSET was refused got QUIT')
    a.cmd('QUIT')
    a.close()
    mx.stop()
    b.stop()

if want('timeout'):
    b = mt.Backend(name='T')
    mx = start(b, 'mx-rsetwait-timeout', reply_timeout='2s')
    a = mt.Client(mx.port)
    mt.check(a.ehlo('a.client.test')[0] == 250, 'timeout: EHLO')
    gate = threading.Event()
    b.rset_gate = gate
    codes = [a.cmd('MAIL FROM:<s@example.org>')[0], a.cmd('RCPT TO:<r@example.test>')[0], a.cmd('RSET')[0]]
    mt.check(mt.wait_for(lambda: 'RSET' in b.commands, 10), 'timeout: the backend has the RSET')
    codes += [a.cmd('MAIL FROM:<s@example.org>')[0], a.cmd('RCPT TO:<r@example.test>')[0]]
    code, _ = a.cmd('DATA')
    codes.append(code)
    a.send(mt.stuff(mt.message('rt-1')))
    codes.append(a.reply()[0])
    gate.set()
    b.rset_gate = None
    mt.check(codes == [250] * 5 + [354, 250], 'timeout: every command and the message 250 (%s)' % codes)
    m = b.by_tag('rt-1')
    held = [n for n, v in mail_conns(b).items() if 'RSET' in v]
    mt.check(len(m) == 1 and held and m[0]['conn'] not in held,
             'timeout: the message went on a fresh connection (%s, held %s)' % ([x['conn'] for x in m], held))
    a.cmd('QUIT')
    a.close()
    mx.stop()
    b.stop()

mt.finish()
