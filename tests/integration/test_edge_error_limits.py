#!/usr/bin/env python3
"""The error limits of a session as a Postfix smtpd operator knows them (postconf(5)):

- smtpd_hard_error_limit is "the maximal number of errors a remote SMTP client is allowed
  to make without delivering mail": Postfix forgives the errors so far when a message is
  received. mxgate counted limits.max_errors over the whole session, so a legitimate relay
  sending many messages down one connection, each with a few unknown recipients (the
  backend's 550s count as errors), was cut off with 421 in its eleventh unknown recipient
  however much mail it had delivered. Now a delivered message starts the count over.
- smtpd_junk_command_limit (100): NOOP, RSET and VRFY past it still get their answer and
  each counts as an error (HELP is Postfix's unknown command, an error at once; here it
  is answered, so it is junk). mxgate had no such limit: a client sending NOOPs (each resets
  limits.command_timeout) held its session, and a connection slot, for ever. Now
  limits.max_junk_commands (100); a delivered message starts that count over too.
- smtpd_recipient_overshoot_limit (1000): RCPT TO past smtpd_recipient_limit gets 452 and,
  past the overshoot, each counts as an error. mxgate answered 452 for ever: a client could
  hold its session with endless recipients. Now limits.max_recipient_overshoot (1000), per
  transaction; the recipients taken are relayed as before.
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


def message(c, tag, unknown, body='Hello.\r\n'):
    """One transaction: `unknown` refused recipients, one good one, the message (body); the
    codes up to the first 421 (the session closed)."""
    lines = ['MAIL FROM:<a@example.org>'] + ['RCPT TO:<nobody%d@example.test>' % u for u in unknown] + \
        ['RCPT TO:<good@example.test>', 'DATA']
    codes = []
    try:
        for line in lines:
            codes.append(c.cmd(line)[0])
            if codes[-1] == 421:
                return codes
        if codes[-1] == 354:
            c.send(mt.stuff(mt.message(tag, body=body)))
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


def flood(c, verbs, n):
    """Up to n junk commands pipelined; the replies' codes up to a 421 or the close."""
    c.send(''.join('%s\r\n' % verbs[i % len(verbs)] for i in range(n)))
    codes = []
    while len(codes) < n:
        code, text = c.reply()
        if code is None:
            break
        codes.append(code)
        if code == 421:
            break
    return codes


# ------------------------------------------------------------------ a discarded message forgives too
# A discard (a rule's discard action, a milter's SMFIR_DISCARD) answers the client 250: for
# the client the message was accepted, and Postfix, whose cleanup reports a discarded message
# as received, forgives the errors so far as for any other. mxgate kept counting them, so a
# client whose messages a rule discards was cut off with 421 as if it had delivered nothing.
mx.stop()
rules_file = os.path.join(mt.TMP, 'discard.rules')
with open(rules_file, 'w') as f:
    f.write('body     MX_TEST_DISCARD  /discard-this-message/\n'
            'score    MX_TEST_DISCARD  0.1\n'
            'action   MX_TEST_DISCARD  discard\n')
mx = mt.Mxgate(mt.config([be.url], limits={'max_errors': 3, 'max_junk_commands': 5},
                         accept_domains=['example.test'], rules={'files': [rules_file]}),
               name='mx-discard')
n0 = mx.log_size()
c = client()
got = [message(c, 'discard-%d' % i, (2 * i, 2 * i + 1), body='discard-this-message\r\n') for i in range(3)]
got.append(flood(c, ['NOOP'], 5) if got[-1][-1] == 250 else [])
c.close()
mt.check(got == [[250, 550, 550, 250, 354, 250]] * 3 + [[250] * 5],
         'two unknown recipients per discarded message, three messages, max_errors 3: every one 250, '
         'then five NOOPs (%r)' % got)
mt.check(mx.wait_log(r'event=discard ', 5, start=n0) is not None and not be.find('discard-this-message'),
         '... each one discarded, not delivered')
mt.check(mx.wait_log(r'event=disconnect client=\S+ commands=\d+ messages=3 errors=0 ', 5, start=n0) is not None,
         '... and the session counts three messages and no error at its end')

# ------------------------------------------------------------------ junk commands
mx.stop()
mx = mt.Mxgate(mt.config([be.url], limits={'max_errors': 3, 'max_junk_commands': 5},
                         accept_domains=['example.test']), name='mx-junk')


c = client()
got = flood(c, ['NOOP', 'RSET', 'VRFY postmaster'], 20)
mt.check(got == [250, 250, 252, 250, 250, 252, 250, 250, 421] and c.is_closed(5),
         'NOOP/RSET/VRFY: five taken, then each is answered and is an error; the third error: 421 (%r)' % got)
c.close()
n0 = mx.log_size()
c = client()
got = flood(c, ['HELP'], 100)
mt.check(got == [214] * 8 + [421] and c.is_closed(5), 'HELP counts as junk too (%r)' % got)
c.close()
c = client()
got = flood(c, ['NOOP'], 1000)
mt.check(got[-1] == 421 and len(got) == 9 and c.is_closed(5), 'a NOOP flood is cut off (%d replies, last %r)' % (len(got), got[-1:]))
mt.check(mx.wait_log(r'event=disconnect client=127\.0\.0\.1 .*reason=too_many_errors', 5, start=n0) is not None,
         '... logged as too_many_errors')
c.close()
# a delivered message starts the junk count over
n0 = mx.log_size()
c = client()
got = flood(c, ['NOOP'], 5) + message(c, 'junk-reset', ()) + flood(c, ['NOOP'], 5)
c.close()
mt.check(got == [250] * 5 + [250, 250, 354, 250] + [250] * 5 and
         mx.wait_log(r'event=disconnect client=\S+ commands=\d+ messages=1 errors=0 ', 5, start=n0) is not None,
         'five NOOPs, a message, five NOOPs: no error (%r)' % got)

# ------------------------------------------------------------------ recipients past the limit
mx.stop()
mx = mt.Mxgate(mt.config([be.url], limits={'max_errors': 3, 'max_recipients': 3, 'max_recipient_overshoot': 2},
                         accept_domains=['example.test']), name='mx-overshoot')
for how in ('one at a time', 'pipelined'):
    c = client()
    mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 250, '%s: MAIL' % how)
    rcpts = ['RCPT TO:<r%d@example.test>' % i for i in range(20)]
    if how == 'pipelined':
        c.send(''.join(r + '\r\n' for r in rcpts))
        got = []
        while len(got) < 20:
            code, text = c.reply()
            if code is None:
                break
            got.append(code)
            if code == 421:
                break
    else:
        got = [c.cmd(r)[0] for r in rcpts[:8]]
        got.append(c.reply()[0])        # what follows the eighth reply, unasked
    mt.check(got == [250] * 3 + [452] * 5 + [421] and c.is_closed(5),
             '%s: three taken, two 452 over, then each 452 is an error: 421 at the third (%r)' % (how, got))
    c.close()
# a new transaction starts the overshoot over; the recipients taken are relayed
c = client()
got = message(c, 'overshoot-1', ()) + [c.cmd('MAIL FROM:<a@example.org>')[0]] + \
    [c.cmd('RCPT TO:<s%d@example.test>' % i)[0] for i in range(5)] + [c.cmd('RSET')[0]] + \
    [c.cmd('MAIL FROM:<a@example.org>')[0]] + [c.cmd('RCPT TO:<t%d@example.test>' % i)[0] for i in range(5)]
mt.check(got == [250, 250, 354, 250] + [250] + [250] * 3 + [452] * 2 + [250] + [250] + [250] * 3 + [452] * 2,
         'two overshooting transactions, each within its overshoot: no error (%r)' % got)
c.close()

mt.check(not mx.malformed_log_lines(), 'log lines keep the contract form')
mx.stop()
mt.finish()
