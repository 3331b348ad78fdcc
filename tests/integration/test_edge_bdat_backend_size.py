#!/usr/bin/env python3
"""A DATA client gets DATA's words when the backend refuses the BDAT chunk mxgate sent it.

mxgate sends a message to a backend that offers CHUNKING as one "BDAT <n> LAST" chunk,
whether the client sent DATA or BDAT. A real Postfix 3.x backend whose message_size_limit
is below mxgate's limits.max_message_size refuses that chunk with "552 5.3.4 Chunk exceeds
message size limit"; until session 23 a client that sent DATA (and no chunk) got those
words. Now it gets the codes the backend gave (552 5.3.4) with DATA's words, mxgate's own
for a DATA message over its limit ("Message size exceeds fixed limit"; Postfix, asked
directly, answers a DATA client "552 5.3.4 Error: message file too big": the same codes);
a client that sent BDAT still gets the backend's own text, and the session goes on after
the refusal in both (a smaller message is then delivered)."""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('postfix')
mt.need_postfix()

PF_LIMIT = 4096          # the backend's message_size_limit
BIG = mt.message('big', size=8192)
SMALL = mt.message('small')

pf_port = mt.hold_port().port
mt.postfix_instance('postfix', pf_port, '''relay_domains = example.test
default_transport = discard
relay_transport = discard
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_recipient_restrictions = permit_auth_destination, reject
message_size_limit = %d
smtpd_error_sleep_time = 0
in_flow_delay = 0
''' % PF_LIMIT, hostname='backend.test')

mx = mt.Mxgate(mt.config(['smtp://127.0.0.1:%d' % pf_port], workers=1, accept_domains=['example.test'],
                         limits={'max_message_size': '64K'}), name='mx-bdat-size')


def transaction(port, how, data):
    """EHLO, MAIL, RCPT, then data by DATA or one BDAT LAST: (client, final (code, text))."""
    c = mt.Client(port)
    c.ehlo('client.example.test')
    for line in ('MAIL FROM:<a@example.org>', 'RCPT TO:<u@example.test>'):
        code, text = c.cmd(line)
        if code != 250:
            mt.fail('%s: %s' % (line, text))
    if how == 'DATA':
        code, text = c.cmd('DATA')
        if code != 354:
            mt.fail('DATA: %s' % text)
        c.send(mt.stuff(data))
    else:
        c.send(b'BDAT %d LAST\r\n' % len(data) + data)
    return c, c.reply()


def words(text):
    """A reply's text after its code and enhanced code."""
    return re.sub(r'^\d{3}[ -](\d\.\d{1,3}\.\d{1,3} )?', '', text)


# the premise, asked of Postfix directly: CHUNKING offered, and its two wordings
c = mt.Client(pf_port)
code, ehlo = c.ehlo('client.example.test')
mt.check(code == 250 and 'CHUNKING' in ehlo, 'the Postfix backend offers CHUNKING')
c.close()
c, pf_data = transaction(pf_port, 'DATA', BIG)
c.close()
c, pf_bdat = transaction(pf_port, 'BDAT', BIG)
c.close()
mt.say('Postfix directly: DATA -> %r, BDAT -> %r' % (pf_data[1], pf_bdat[1]))
mt.check(pf_data[0] == 552 and pf_data[1].startswith('552 5.3.4 '), 'Postfix refuses the DATA message: 552 5.3.4')
mt.check(pf_bdat[0] == 552 and re.search(r'chunk', pf_bdat[1], re.I) is not None,
         'Postfix refuses the BDAT chunk in its chunk words (%s)' % pf_bdat[1])

# through mxgate, the client sending DATA: the backend's codes, DATA's words
c, (code, text) = transaction(mx.port, 'DATA', BIG)
mt.say('through mxgate, DATA: %r' % text)
mt.check(code == 552 and text.startswith('552 5.3.4 '), 'DATA through mxgate: 552 5.3.4 (%s)' % text)
mt.check(re.search(r'chunk|bdat', text, re.I) is None, 'DATA through mxgate: no word of chunks or BDAT (%s)' % text)
mt.check(text == '552 5.3.4 Message size exceeds fixed limit',
         'DATA through mxgate: the backend\'s codes, the words of mxgate\'s own size refusal (%r)' % text)
# the session goes on: the next message is delivered
mt.check(c.cmd('RSET')[0] == 250, 'RSET after the refusal')
r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], SMALL, client=c)
mt.check(r.code == 250, 'a small message after it through mxgate: 250 (%s)' % r.text)
c.close()

# the client sending BDAT: the backend's own text
c, (code, text) = transaction(mx.port, 'BDAT', BIG)
mt.say('through mxgate, BDAT: %r' % text)
mt.check(code == 552 and text.startswith('552 5.3.4 '), 'BDAT through mxgate: 552 5.3.4 (%s)' % text)
mt.check(words(text) == words(pf_bdat[1]), 'BDAT through mxgate: the backend\'s words (%r)' % words(text))
mt.check(c.cmd('NOOP')[0] == 250, 'the BDAT session goes on')
c.close()

mx.stop()
mt.finish()
