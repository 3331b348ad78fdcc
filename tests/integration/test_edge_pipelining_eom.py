#!/usr/bin/env python3
"""A pipelining client's DATA goes to the backend early (with the last RCPT) only when no
module judges the end of data, the rule the lock-step path keeps (test_edge_lockstep_data,
session_data_early_ok): a message refused at the end of data after the backend had DATA costs
the backend connection (only a close aborts an open DATA), for a verdict filters give often.
- milter: a real milter (python3-milter, scripted by the message) refuses the message at end
  of data: the backend never sees DATA, the transaction ends with RSET on a kept connection
  (main: DATA went with the RCPT, the connection was closed); the next message is delivered.
- clamd: a real clamd, an end-of-data module only: neither the first group's DATA nor the
  next group's sent ahead with the first message's dot (session_next_group) reaches the
  backend early; a virus then ends with RSET on the kept connection.
- plain: no end-of-data module: the backend has DATA before the client sends its content.
No timing: the checks wait (a hang guard) for what the backend received.
MX_POOL_ONLY=name,name runs only those cases.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

want = mt.case_wanted

mt.need()

GROUP = b'MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n'


def group(c):
    """MAIL, RCPT and DATA in one write (RFC 2920): their three codes."""
    c.send(GROUP)
    return [c.reply()[0] for _ in range(3)]


def mail_conns(b):
    with b.lock:
        return {n: list(v) for n, v in b.conn_commands.items() if any(x.upper().startswith('MAIL') for x in v)}


def verbs(b, verb):
    return sum(1 for v in mail_conns(b).values() for x in v if x.upper().split(' ')[0] == verb)


if want('milter'):
    m = mt.milter_ops('one')
    b = mt.Backend(name='E')
    mx = mt.Mxgate(mt.config([b.url], workers=1, plugins=[
        {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m.port, 'on_error': 'tempfail', 'timeout': '10s'}]),
        name='mx-pipe-eom')
    c = mt.Client(mx.port)
    mt.check(c.ehlo('client.example.org')[0] == 250, 'milter: EHLO')
    codes = group(c)
    c.send(mt.stuff(mt.message('pe-rej', headers=['X-Ops-one: reject ; noseen'])))
    codes.append(c.reply()[0])
    mt.check(codes[:3] == [250, 250, 354] and codes[3] // 100 == 5,
             'milter: the group answered, the message refused at end of data (%s)' % codes)
    ended = mt.wait_for(lambda: verbs(b, 'RSET') + verbs(b, 'DATA') > 0 or
                        (mail_conns(b) and b.open_connections() == 0), 10)
    mt.check(ended and verbs(b, 'DATA') == 0,
             'milter: the backend never saw DATA for the refused message (%d DATA, %s)'
             % (verbs(b, 'DATA'), list(mail_conns(b).values())))
    mt.check(verbs(b, 'RSET') == 1, 'milter: the transaction ended with RSET, the connection kept (%d RSET)'
             % verbs(b, 'RSET'))
    codes = group(c)
    c.send(mt.stuff(mt.message('pe-ok', headers=['X-Ops-one: noseen'])))
    codes.append(c.reply()[0])
    mt.check(codes == [250, 250, 354, 250] and len(b.by_tag('pe-ok')) == 1,
             'milter: the next message delivered (%s)' % codes)
    mt.check(len(mail_conns(b)) == 1, 'milter: on the same backend connection (%d)' % len(mail_conns(b)))
    c.cmd('QUIT')
    c.close()
    mx.stop()
    b.stop()

if want('clamd'):
    # clamd (a real one, EICAR signatures) judges only the end of data. Two groups: the
    # first alone, then the second pipelined behind the first message's dot (the look-ahead
    # that sends the next MAIL and RCPT with the dot, session_next_group): DATA goes early
    # in neither, so the second message, a virus, ends with RSET on the kept connection.
    cl = mt.clamd()
    b = mt.Backend(name='C')
    mx = mt.Mxgate(mt.config([b.url], workers=1, plugins=[
        {'name': 'clamd', 'address': '127.0.0.1:%d' % cl.port, 'timeout': '20s'}]), name='mx-pipe-clamd')
    c = mt.Client(mx.port)
    mt.check(c.ehlo('client.example.org')[0] == 250, 'clamd: EHLO')
    codes = group(c)
    mt.check(codes == [250, 250, 354], 'clamd: the first group answered (%s)' % codes)
    c.send(mt.stuff(mt.message('pc-ok')) + GROUP)
    codes = [c.reply()[0] for _ in range(4)]
    mt.check(codes == [250, 250, 250, 354] and len(b.by_tag('pc-ok')) == 1,
             'clamd: the clean message delivered, the next group answered (%s)' % codes)
    c.send(mt.stuff(mt.eicar_message('pc-virus')))
    code = c.reply()[0]
    mt.check(code // 100 == 5, 'clamd: the virus refused at end of data (%s)' % code)
    ended = mt.wait_for(lambda: verbs(b, 'RSET') + verbs(b, 'DATA') > 1 or
                        (mail_conns(b) and b.open_connections() == 0), 20)
    mt.check(ended and verbs(b, 'DATA') == 1,
             'clamd: the backend saw DATA for the clean message only, none sent ahead (%d DATA, %s)'
             % (verbs(b, 'DATA'), list(mail_conns(b).values())))
    mt.check(verbs(b, 'RSET') == 1 and b.open_connections() == 1,
             'clamd: the refused transaction ended with RSET, the connection kept (%d RSET, %d open)'
             % (verbs(b, 'RSET'), b.open_connections()))
    c.cmd('QUIT')
    c.close()
    mx.stop()
    b.stop()
    mt.stop_proc(cl)

if want('plain'):
    b = mt.Backend(name='P')
    mx = mt.Mxgate(mt.config([b.url], workers=1), name='mx-pipe-plain')
    c = mt.Client(mx.port)
    mt.check(c.ehlo('client.example.org')[0] == 250, 'plain: EHLO')
    codes = group(c)
    early = mt.wait_for(lambda: verbs(b, 'DATA') == 1, 10)
    mt.check(codes == [250, 250, 354] and early,
             'plain: no end-of-data module: the backend has DATA before the content (%s, %d DATA)'
             % (codes, verbs(b, 'DATA')))
    c.send(mt.stuff(mt.message('pp-1')))
    code = c.reply()[0]
    mt.check(code == 250 and len(b.by_tag('pp-1')) == 1, 'plain: delivered (%s)' % code)
    c.cmd('QUIT')
    c.close()
    mx.stop()
    b.stop()

mt.finish()
