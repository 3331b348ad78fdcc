#!/usr/bin/env python3
"""limits.max_mail_commands: transactions a client may begin without a delivered message.

Each MAIL runs the sender's checks (SPF, sender_domain: DNS lookups for a domain the client
chose). Until session 24 only max_junk_commands (the RSETs) and max_errors bounded a client
looping MAIL/RSET, so one connection began about 110 transactions, each with its lookups,
and delivered nothing. Now the MAIL past the bound (default 20) is answered 421 4.7.0, the
connection closes, and the refusal is one event=tempfail stage=mail
reason=too_many_transactions line. A delivered message starts the count over: a client
sending many messages down one connection is not affected.
Peers: the scripted backend."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()

be = mt.Backend(name='mailcmds')
mx = mt.Mxgate(mt.config([be.url], accept_domains=['example.test']), name='mx-mailcmds')   # default 20


def client():
    c = mt.Client(mx.port)
    c.ehlo('client.test')
    return c


def loop(c, n, tag):
    """n x MAIL (each a new sender domain) / RSET; the MAIL codes up to a 421 or the close."""
    codes = []
    for i in range(n):
        try:
            code, text = c.cmd('MAIL FROM:<a@s%d-%s.example>' % (i, tag))
        except OSError:
            codes.append('closed')
            break
        codes.append(code)
        if code != 250:
            codes.append(text)
            break
        c.cmd('RSET')
    return codes


def deliver(c, tag):
    """One message; the codes up to the first unexpected one."""
    codes = []
    for line, want in (('MAIL FROM:<a@example.org>', 250), ('RCPT TO:<u@example.test>', 250), ('DATA', 354)):
        codes.append(c.cmd(line)[0])
        if codes[-1] != want:
            return codes
    c.send(mt.stuff(mt.message(tag)))
    codes.append(c.reply()[0])
    return codes


# A client looping MAIL/RSET: 20 begun, the 21st answered 421 and the connection closed.
n0 = mx.log_size()
c = client()
got = loop(c, 40, 'loop')
mt.check(got[:20] == [250] * 20 and got[20] == 421 and '4.7.0' in got[21] and 'too many transactions' in got[21],
         'MAIL/RSET loop: 20 transactions, then 421 4.7.0 (%r)' % got[18:])
mt.check(c.is_closed(5), '... and the connection is closed')
c.close()
mt.check(mx.wait_log(r'event=tempfail stage=mail reason=too_many_transactions from=<a@s20-loop\.example> '
                     r'client=127\.0\.0\.1 code=421', 5, start=n0) is not None,
         '... one refusal line: event=tempfail stage=mail reason=too_many_transactions from= client= code=421')
mt.check(mx.count_log(r'reason=too_many_transactions', start=n0) == 1, '... exactly one')

# A legitimate client: 30 messages down one connection, with 19 abandoned transactions
# before each, is never cut off (a delivered message starts the count over).
c = client()
got = []
for m in range(3):
    got.append(loop(c, 19, 'legit%d' % m))
    got.append(deliver(c, 'legit-%d' % m))
got.append([tuple(deliver(c, 'more-%d' % m)) for m in range(27)])
mt.check(got[:6] == [[250] * 19, [250, 250, 354, 250]] * 3 and got[6] == [(250, 250, 354, 250)] * 27,
         '19 abandoned transactions then a message, three times, then 27 messages: all taken (%r)'
         % [g for g in got[:6] if g not in ([250] * 19, [250, 250, 354, 250])])
mt.check(c.cmd('NOOP')[0] == 250, '... and the session goes on')
c.close()
mt.check(all(be.by_tag('legit-%d' % m) for m in range(3)) and all(be.by_tag('more-%d' % m) for m in range(27)),
         '... every message delivered')

# The bound is configured (1 .. 100000): 2 here; the third MAIL is refused, after a
# delivered message two more are taken.
mx.stop()
mx = mt.Mxgate(mt.config([be.url], accept_domains=['example.test'], limits={'max_mail_commands': 2}),
               name='mx-mailcmds-2')
c = client()
got = loop(c, 2, 'two') + deliver(c, 'two-a')
mt.check(got == [250, 250, 421], 'max_mail_commands 2: two begun, the third refused (%r)' % got)
c.close()
c = client()
got = loop(c, 1, 'one') + deliver(c, 'two-b') + loop(c, 2, 'again') + [c.cmd('MAIL FROM:<a@example.org>')[0]]
mt.check(got == [250, 250, 250, 354, 250, 250, 250, 421],
         'max_mail_commands 2: one begun, one delivered (the count starts over), two more, then 421 (%r)' % got)
c.close()
mx.stop()
mt.finish()
