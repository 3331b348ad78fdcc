#!/usr/bin/env python3
"""A backend that answers 250 after the final dot and then closes the connection (Postfix's
smtpd at its smtpd_hard_error_limit, a sink that takes one message per connection) delivered
the message: the close is a normal end, not a failure of the backend. The client gets its 250
once, the backend is not counted failed (mxgate_backend_failures_total stays 0), never
marked down (health_check fall: 1 would take it out at the first failure), and the session's
next message goes on a fresh connection, delivered once; the same for a pipelining client
whose next transaction went ahead with the dot (the backend closes it unread: a stale
connection, retried on a fresh one). Whichever comes first at mxgate, the close or the
session's next command, no ordering may count a failure: no check waits on timing.""" 
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

be = mt.Backend(mode='close_after_250', xclient=False, name='close-after-250')
cfg = mt.config([be.url], workers=1, backends={
    'client_identity': 'none',
    # one failure marks it down: a close counted as one would show at once
    'health_check': {'interval': '1h', 'timeout': '%gs' % mt.slack(10), 'fall': 1, 'rise': 1}})
cfg['metrics'] = {'listen': '127.0.0.1:%d' % mt.hold_port().port}
mx = mt.Mxgate(cfg, 'mx-close-after-250')
URL = re.escape(be.url)


def failures():
    return mx.metric('backend_failures_total')


c = mt.Client(mx.port)
c.ehlo('client.test')
r = mt.send_mail(mx.port, 'alice@example.org', ['bob@example.test'], mt.message('close-first'), client=c)
mt.check(r.code == 250 and r.stage == 'eom', 'the message: 250 (%s %s at %s)' % (r.code, r.text, r.stage))
# the session's next message: a fresh connection (or the closed one found stale), 250 once
r = mt.send_mail(mx.port, 'alice@example.org', ['bob@example.test'], mt.message('close-second'), client=c)
mt.check(r.code == 250 and r.stage == 'eom', 'the next message in the session: 250 (%s %s at %s)'
         % (r.code, r.text, r.stage))

# a pipelining client: the next transaction comes with the dot (RFC 2920), so mxgate sends its
# MAIL and RCPT ahead with the message's dot; the backend answers the dot and closes unread
c.cmd('MAIL FROM:<alice@example.org>')
c.cmd('RCPT TO:<bob@example.test>')
c.cmd('DATA')
c.send(mt.stuff(mt.message('close-third')) + b'MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n')
replies = [c.reply()[0] for _ in range(4)]
c.send(mt.stuff(mt.message('close-fourth')))
replies.append(c.reply()[0])
mt.check(replies == [250, 250, 250, 354, 250],
         'pipelined: 250 to the message, the next transaction taken, 250 to it (%s)' % replies)
c.cmd('QUIT')
c.close()

tags = ('close-first', 'close-second', 'close-third', 'close-fourth')
mt.check(all(len(be.by_tag(t)) == 1 for t in tags) and len(be.attempts) == 4,
         'each message delivered exactly once (%s; %d attempts)' % ([len(be.by_tag(t)) for t in tags], len(be.attempts)))
mt.check(failures() == 0 and mx.count_log(r'event=backend_down') == 0 and
         mx.count_log(r'event=backend_error backend=%s (?!.*stale)' % URL) == 0,
         'a close after a 250 is no failure: failures 0, no backend_down (%s; %s)'
         % (failures(), [l for l in mx.log().splitlines() if 'backend_error' in l or 'backend_down' in l]))
mx.stop()
mt.finish()
