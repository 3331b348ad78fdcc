#!/usr/bin/env python3
"""An enforced after-220 protocol test that trips inside a transaction refuses that
transaction's recipients, not only the next MAIL.

pregreet.pipelining_action: enforce and pregreet.bare_newline_action: enforce set the
session's refusal (550 5.5.1 Protocol error) when the test fails; test_screen_protocol_actions
shows it at MAIL. Here MAIL was already answered 250 when the client fails: it pipelines its
RCPTs after HELO (no PIPELINING offered) or ends an RCPT line with a bare LF. Every RCPT of
that transaction gets the 550 5.5.1, the DATA that follows finds no recipient, nothing reaches
the backend (smtp-sink), and the log says why: event=protocol_test test=NAME action=enforce,
then event=reject stage=rcpt reason=NAME for each RCPT.

Postfix's postscreen does the same: its built-in SMTP engine answers MAIL 250 and refuses at
RCPT with the enforce reply (postscreen_smtpd.c psc_rcpt_cmd sends state->rcpt_reply, set to
"550 5.5.1 Protocol error" by PSC_ENFORCE_SESSION_STATE whenever the pipelining or bare
newline test fails, before or inside the transaction); its DATA answers 554 5.5.1.

Before session 26 (w-exempt, 3ec510c4a: session_check_rcpt_in consults conn_verdict) the
refusal set after MAIL refused only the later MAILs: these RCPTs were taken and the message
delivered. Run against the binary of main before that merge (3147ed8dd^1) this test fails.

A recipient accepted before the test tripped does not carry the message either: DATA (and
BDAT) of a session whose refusal stands are refused as its RCPTs are."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink()
mx = mt.Mxgate(mt.proxied_config([sink.url], pregreet={'pipelining_action': 'enforce',
                                                        'bare_newline_action': 'enforce'}), 'mx')


def replies(c, n):
    return [c.reply() for _ in range(n)]


def refused(r):
    return r[0] == 550 and '5.5.1 Protocol error' in r[1]


def rejects(name, ip):
    return mx.count_log(r'event=reject stage=rcpt reason=%s .*client=%s ' % (name, ip.replace('.', r'\.')))


# A clean session delivers to this sink: "nothing reached it" below means something.
r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('clean'), proxy_src='198.18.60.1')
mt.check(r[0] == 250 and sink.count() == 1, 'a clean session delivers: %r, %d at the sink' % (r, sink.count()))

# Pipelining after HELO, after MAIL was taken: the RCPTs and DATA in one write.
ip = '198.18.60.2'
c = mt.Client(mx.port, proxy_src=ip)
mt.check(c.cmd('HELO bot.example')[0] == 250, 'pipelining: HELO 250')
mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 250, 'pipelining: MAIL alone: 250')
c.send('RCPT TO:<u1@example.test>\r\nRCPT TO:<u2@example.test>\r\nDATA\r\n')
r = replies(c, 3)
mt.check(refused(r[0]) and refused(r[1]), 'pipelining: each RCPT of the transaction 550 5.5.1: %r' % r[:2])
mt.check(r[2][0] is not None and r[2][0] // 100 == 5, 'pipelining: DATA refused (no recipient): %r' % (r[2],))
if r[2][0] == 354:
    c.send(mt.stuff(mt.message('pipe')))
    c.reply()
mt.check(c.cmd('QUIT')[0] == 221, 'pipelining: the session goes on to QUIT')
c.close()
mt.check(mx.wait_log(r'event=protocol_test test=pipelining client=198\.18\.60\.2 action=enforce', 5) is not None,
         'pipelining: logged: event=protocol_test test=pipelining action=enforce')
mt.check(mt.wait_for(lambda: rejects('pipelining', ip) == 2, mt.slack(5)),
         'pipelining: each RCPT logged event=reject stage=rcpt reason=pipelining (%d)' % rejects('pipelining', ip))

# A bare LF on the first RCPT after EHLO and MAIL: that RCPT and the next (CRLF) refused.
ip = '198.18.60.3'
c = mt.Client(mx.port, proxy_src=ip)
mt.check(c.ehlo('bot.example')[0] == 250, 'bare LF: EHLO 250')
mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 250, 'bare LF: MAIL 250')
c.send('RCPT TO:<u1@example.test>\n')
r1 = c.reply()
r2 = c.cmd('RCPT TO:<u2@example.test>')
mt.check(refused(r1) and refused(r2), 'bare LF: each RCPT of the transaction 550 5.5.1: %r %r' % (r1, r2))
r = c.cmd('DATA')
mt.check(r[0] is not None and r[0] // 100 == 5, 'bare LF: DATA refused (no recipient): %r' % (r,))
if r[0] == 354:
    c.send(mt.stuff(mt.message('barelf')))
    c.reply()
c.cmd('QUIT')
c.close()
mt.check(mx.wait_log(r'event=protocol_test test=bare_newline client=198\.18\.60\.3 action=enforce', 5) is not None,
         'bare LF: logged: event=protocol_test test=bare_newline action=enforce')
mt.check(mt.wait_for(lambda: rejects('bare_newline', ip) == 2, mt.slack(5)),
         'bare LF: each RCPT logged event=reject stage=rcpt reason=bare_newline (%d)' % rejects('bare_newline', ip))

# One recipient taken before the test trips (HELO, MAIL, RCPT one at a time), then a
# pipelined RCPT and DATA: the refusal holds at DATA too, the taken recipient gets nothing.
ip = '198.18.60.4'
c = mt.Client(mx.port, proxy_src=ip)
c.cmd('HELO bot.example')
c.cmd('MAIL FROM:<a@example.org>')
mt.check(c.cmd('RCPT TO:<u1@example.test>')[0] == 250, 'taken first: RCPT alone 250')
c.send('RCPT TO:<u2@example.test>\r\nDATA\r\n')
r = replies(c, 2)
mt.check(refused(r[0]), 'taken first: the pipelined RCPT 550 5.5.1: %r' % (r[0],))
mt.check(refused(r[1]), 'taken first: DATA refused 550 5.5.1 too, not 354: %r' % (r[1],))
if r[1][0] == 354:
    c.send(mt.stuff(mt.message('taken')))
    c.reply()
c.cmd('QUIT')
c.close()
mt.check(mx.wait_log(r'event=reject stage=data reason=pipelining .*client=198\.18\.60\.4 ', 5) is not None,
         'taken first: logged event=reject stage=data reason=pipelining')

# The same with a bare LF and BDAT (EHLO offers CHUNKING): the chunk is refused.
ip = '198.18.60.5'
c = mt.Client(mx.port, proxy_src=ip)
c.ehlo('bot.example')
c.cmd('MAIL FROM:<a@example.org>')
mt.check(c.cmd('RCPT TO:<u1@example.test>')[0] == 250, 'taken first, BDAT: RCPT 250')
c.send('NOOP\n')
mt.check(c.reply()[0] == 250, 'taken first, BDAT: a bare-LF NOOP is answered')
body = mt.message('bdat')
c.send(b'BDAT %d LAST\r\n' % len(body) + body)
r = c.reply()
mt.check(refused(r), 'taken first, BDAT: BDAT LAST refused 550 5.5.1: %r' % (r,))
r = c.cmd('QUIT')
mt.check(r[0] == 221, 'taken first, BDAT: the chunk was read and thrown away, QUIT is a command: %r' % (r,))
c.close()
mt.check(mx.wait_log(r'event=reject stage=bdat reason=bare_newline .*client=198\.18\.60\.5 ', 5) is not None,
         'taken first, BDAT: logged event=reject stage=bdat reason=bare_newline')

mx.stop()
mt.check(sink.count() == 1 and mt.message_ids(m['data'] for m in sink.messages()) == {'clean'},
         'no message of a failing client reached the sink: %r' %
         mt.message_ids(m['data'] for m in sink.messages()))
mt.finish()
