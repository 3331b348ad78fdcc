#!/usr/bin/env python3
"""Every MAIL and RCPT refusal mxgate decides itself is logged once, in the house form
(`event=reject|tempfail stage=mail|rcpt reason=... from=|rcpt= client= code= reply=`), for a
client that waits for each reply and for one that pipelines (RFC 2920) the next transaction
behind a message's final dot, where the look-ahead (session_next_group) asks the same checks
quietly before the commands run.

Until session 22 a refused non-FQDN sender (`reject_non_fqdn_sender`, 504 5.5.2), a MAIL
whose SIZE= is over limits.max_message_size (552), a RCPT past limits.max_recipients (452)
and a RCPT of unknown parameters got no log line at all: the refusal was in the client's
reply only."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink()
mx = mt.Mxgate(mt.config([sink.url], limits={'max_message_size': 20480, 'max_recipients': 2},
                         accept_domains=['example.test'], reject_non_fqdn_sender=True,
                         reject_non_fqdn_recipient=True))


def expect(c, want, what):
    got = [c.reply()[0] for _ in want]
    mt.check(got == want, '%s: replies %s (%s)' % (what, want, got))


# (tag, reason, event, address field, the refused command with {t} for the client's tag)
REFUSALS = [
    ('fqdn-from', 'non_fqdn_sender', 'reject', 'from', 'MAIL FROM:<{t}@localname>', 504),
    ('size', 'size', 'reject', 'from', 'MAIL FROM:<{t}-size@example.org> SIZE=999999', 552),
    ('fqdn-rcpt', 'non_fqdn_recipient', 'reject', 'rcpt', 'RCPT TO:<{t}@localname>', 504),
    ('param', 'param', 'reject', 'rcpt', 'RCPT TO:<{t}-param@example.test> NOTIFY=SOMETIMES', 501),
    ('too-many', 'too_many_recipients', 'tempfail', 'rcpt', 'RCPT TO:<{t}-third@example.test>', 452),
]


def before(ref, t):
    """The commands before the refused one in its transaction, and their replies."""
    if ref[3] == 'from':
        return [], []
    lines = ['MAIL FROM:<%s@example.org>' % t]
    if ref[0] == 'too-many':
        lines += ['RCPT TO:<%s-1@example.test>' % t, 'RCPT TO:<%s-2@example.test>' % t]
    return lines, [250] * len(lines)


# one at a time: each command waits for its reply
c = mt.Client(mx.port)
mt.check(c.ehlo()[0] == 250, 'one at a time: EHLO')
for ref in REFUSALS:
    lines, codes = before(ref, 'np')
    for ln in lines:
        c.send(ln + '\r\n')
        expect(c, [250], 'one at a time, %s: %s' % (ref[0], ln))
    c.send(ref[4].format(t='np') + '\r\n')
    expect(c, [ref[5]], 'one at a time, %s' % ref[0])
    c.send('RSET\r\n')
    expect(c, [250], 'one at a time, %s: RSET' % ref[0])
c.close()

# pipelined: each refused transaction behind a message's final dot, in the same write
c = mt.Client(mx.port)
mt.check(c.ehlo()[0] == 250, 'pipelined: EHLO')
for i, ref in enumerate(REFUSALS):
    c.send('MAIL FROM:<pl%d@example.org>\r\nRCPT TO:<pl%d@example.test>\r\nDATA\r\n' % (i, i))
    expect(c, [250, 250, 354], 'pipelined, %s: the message before' % ref[0])
    lines, codes = before(ref, 'pl')
    c.send(mt.stuff(mt.message('pl%d' % i)) + ''.join(ln + '\r\n' for ln in lines + [ref[4].format(t='pl'),
                                                                                        'RSET']).encode())
    expect(c, [250] + codes + [ref[5], 250], 'pipelined, %s' % ref[0])
c.close()
mt.check(mt.wait_for(lambda: sink.count() == len(REFUSALS), 10), 'the pipelined client\'s messages delivered')

for t in ('np', 'pl'):
    for tag, reason, event, field, line, code in REFUSALS:
        addr = line.format(t=t).split('<', 1)[1].split('>', 1)[0]
        rx = (r' event=%s stage=%s reason=%s %s=<%s> client=127\.0\.0\.1 code=%d reply=\S'
              % (event, 'mail' if field == 'from' else 'rcpt', reason, field, addr.replace('.', r'\.'), code))
        # the lines come as the replies go out: all there by now
        n = mx.count_log(r'(?m)^.*' + rx)
        mt.check(n == 1, '%s, %s: one log line for the refusal (%d: %s)'
                 % ('pipelined' if t == 'pl' else 'one at a time', tag, n, rx))
mt.check(mx.malformed_log_lines() == [], 'every log line in the house form')
mx.stop()
mt.finish()
