#!/usr/bin/env python3
"""The after-220 protocol tests' actions, as postscreen's postscreen_pipelining_action,
postscreen_bare_newline_action and postscreen_non_smtp_command_action: enforce (the session
goes on, every MAIL is refused 550 5.5.1), drop (521 and the connection closes), ignore
(logged only), score (the symbol only: the default for pipelining and bare newline, as
before). Before, pipelining and bare LF could only score and an HTTP command always closed
the session: an operator coming from postscreen could not enforce or drop, nor keep a
client that sends one proxy probe line.

Node A: pipelining enforce, bare_newline drop, non_smtp_command ignore.
Node B: pipelining drop, bare_newline ignore, non_smtp_command enforce.
Each failure is logged, event=protocol_test test=NAME client=IP action=ACTION."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()


def node(name, **pg):
    return mt.Mxgate(mt.proxied_config([be.url], pregreet=pg), name)


def replies(c, n):
    return [c.reply() for _ in range(n)]


a = node('a', pipelining_action='enforce', bare_newline_action='drop', non_smtp_command_action='ignore')
b = node('b', pipelining_action='drop', bare_newline_action='ignore', non_smtp_command_action='enforce')

# pipelining without EHLO, enforce: greeted on, the MAIL in the batch and every later one 550
c = mt.Client(a.port, proxy_src='198.18.50.1')
c.send('HELO bot.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<u@example.test>\r\n')
r = replies(c, 3)
mt.check(r[0][0] == 250 and r[1][0] == 550 and '5.5.1 Protocol error' in r[1][1],
         'a: pipelining enforce: HELO 250, MAIL 550 5.5.1: %r' % r)
mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 550, 'a: every later MAIL of the session too')
c.cmd('QUIT')
c.close()
mt.check(a.wait_log(r'event=protocol_test test=pipelining client=198\.18\.50\.1 action=enforce', 5) is not None,
         'a: logged (pipelining, enforce)')

# bare LF, drop: 521 and closed
c = mt.Client(a.port, proxy_src='198.18.50.2')
c.send('EHLO bot.example\n')
r = c.reply()
mt.check(r[0] == 521 and 'Protocol error' in r[1], 'a: bare newline drop: 521: %r' % (r,))
mt.check(c.reply()[0] is None, 'a: and the connection is closed')
c.close()

# a proxy probe line, ignore: answered as a bad command, the session goes on and delivers
c = mt.Client(a.port, proxy_src='198.18.50.3')
r = c.cmd('CONNECT 10.0.0.1:25 HTTP/1.0')
mt.check(r[0] is not None and r[0] // 100 == 5, 'a: non-SMTP command ignored: an error reply, not closed: %r' % (r,))
c.ehlo('client.example.org')
r = mt.send_mail(a.port, 'a@example.org', ['u@example.test'], mt.message('ign'), client=c)
mt.check(r[0] == 250 and be.by_tag('ign'), 'a: and the session delivers: %r' % (r,))
c.close()
mt.check(a.wait_log(r'event=protocol_test test=non_smtp_command client=198\.18\.50\.3 action=ignore', 5) is not None,
         'a: logged (non_smtp_command, ignore)')

# pipelining, drop: 521 at the first pipelined line
c = mt.Client(b.port, proxy_src='198.18.51.1')
c.send('HELO bot.example\r\nMAIL FROM:<a@example.org>\r\n')
r = c.reply()
mt.check(r[0] == 521, 'b: pipelining drop: 521: %r' % (r,))
mt.check(c.reply()[0] is None, 'b: and the connection is closed')
c.close()

# bare LF, ignore: delivered
c = mt.Client(b.port, proxy_src='198.18.51.2')
c.send('EHLO bot.example\n')
r = c.reply()
mt.check(r[0] == 250, 'b: bare newline ignored: EHLO 250: %r' % (r,))
r = mt.send_mail(b.port, 'a@example.org', ['u@example.test'], mt.message('bare'), client=c)
mt.check(r[0] == 250 and be.by_tag('bare'), 'b: delivered: %r' % (r,))
c.close()

# non-SMTP, enforce: the session goes on, its MAIL is refused
c = mt.Client(b.port, proxy_src='198.18.51.3')
r = c.cmd('GET / HTTP/1.0')
mt.check(r[0] is not None and r[0] // 100 == 5, 'b: non-SMTP command enforce: an error reply, not closed: %r' % (r,))
c.ehlo('client.example.org')
r = c.cmd('MAIL FROM:<a@example.org>')
mt.check(r[0] == 550 and '5.5.1 Protocol error' in r[1], 'b: its MAIL is refused 550 5.5.1: %r' % (r,))
c.close()
mt.check(b.wait_log(r'event=protocol_test test=non_smtp_command client=198\.18\.51\.3 action=enforce', 5) is not None,
         'b: logged (non_smtp_command, enforce)')

rc, out = mt.config_check(mt.proxied_config([be.url], pregreet={'pipelining_action': 'reject'}), 'bad')
mt.check(rc != 0 and 'pregreet.pipelining_action' in out, 'mxgate -t refuses an unknown action: %s' % out.strip()[-200:])
a.stop()
b.stop()
mt.finish()
