#!/usr/bin/env python3
"""The error limits of a session as a Postfix smtpd operator knows them (postconf(5)):

- smtpd_hard_error_limit is "the maximal number of errors a remote SMTP client is allowed
  to make without delivering mail": Postfix forgives the errors so far when a message is
  received. mxgate counted limits.max_errors over the whole session, so a legitimate relay
  sending many messages down one connection, each with a few unknown recipients (the
  backend's 550s count as errors), was cut off with 421 in its eleventh unknown recipient
  however much mail it had delivered. Now a delivered message starts the count over.
Peers: a scripted backend refusing a set of recipients."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()

be = mt.Backend(name='errlim', reject_rcpt={'nobody%d@example.test' % i for i in range(40)})
mx = mt.Mxgate(mt.config([be.url], limits={'max_errors': 3}, accept_domains=['example.test']),
               name='mx-errlim')


def client():
    c = mt.Client(mx.port)
    c.ehlo('client.test')
    return c


def message(c, tag, unknown):
    """One transaction: `unknown` refused recipients, one good one, the message; the codes
    up to the first 421 (the session closed)."""
    lines = ['MAIL FROM:<a@example.org>'] + ['RCPT TO:<nobody%d@example.test>' % u for u in unknown] + \
        ['RCPT TO:<good@example.test>', 'DATA']
    codes = []
    try:
        for line in lines:
            codes.append(c.cmd(line)[0])
            if codes[-1] == 421:
                return codes
        if codes[-1] == 354:
            c.send(mt.stuff(mt.message(tag)))
            codes.append(c.reply()[0])
    except OSError:
        codes.append('closed')
    return codes


def noop(c):
    try:
        return c.cmd('NOOP')[0]
    except OSError:
        return 'closed'


# ------------------------------------------------------------------ errors forgiven after a delivery
c = client()
got = [message(c, 'forgive-%d' % i, (2 * i, 2 * i + 1)) for i in range(4)]
mt.check(got == [[250, 550, 550, 250, 354, 250]] * 4,
         'two unknown recipients per message, four messages, max_errors 3: every message delivered (%r)' % got)
mt.check(noop(c) == 250, '... and the session goes on')
# without a delivery in between, the limit still holds
if got[-1][-1] == 250:
    codes = [c.cmd('MAIL FROM:<a@example.org>')[0]] + [c.cmd('RCPT TO:<nobody%d@example.test>' % i)[0]
                                                       for i in range(20, 23)]
    codes.append(c.reply()[0])
    mt.check(codes == [250, 550, 550, 550, 421] and c.is_closed(5),
             'three errors with no delivery between them: 421 and closed (%r)' % codes)
c.close()

mt.check(not mx.malformed_log_lines(), 'log lines keep the contract form')
mx.stop()
mt.finish()
