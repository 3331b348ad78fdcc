#!/usr/bin/env python3
"""The AUTH exchange's corners (RFC 4954) against a real Dovecot, by hand.

- an empty line answering a 334 is an empty response (RFC 4954 8: `*(CRLF [base64])`): it
  goes to the mechanism, which judges it (PLAIN and LOGIN refuse it: 535 5.7.8, counted as a
  failure, logged event=auth_failed), as Postfix (xsasl_dovecot_server_next) and Dovecot's own
  submission server pass it on. 501 5.5.2 stays for a response that cannot be decoded.
  Before the fix the empty line got 501 5.5.2 "invalid base64 data" and never reached Dovecot;
- "=" as the initial response is an empty one (535 for PLAIN; LOGIN asks for the user);
- AUTH and its response in one write (a pipelining client) authenticate;
- an over-long response line: 500 5.5.6, the session goes on;
- MAIL's AUTH= parameter (RFC 4954 5) is taken where AUTH is offered, not passed on;
- the Received: header of an authenticated TLS session says ESMTPSA (RFC 3848).

Each case that fails comes from its own address (127.0.0.2x): Dovecot delays an address
after a failure (its anvil penalty), which would otherwise slow the cases behind it."""
import base64
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('dovecot')

dv = mt.dovecot({'alice': 'secret'})
crt, key = mt.cert()
be = mt.Backend(name='auth-x')
cfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls', 'submission': True},
                                  {'address': '127.0.0.1:0'}],
                tls={'certificate': crt, 'key': key},
                auth={'dovecot': dv.sock, 'timeout': '10s', 'max_failures': 20,
                      'failure_delay': '10ms', 'max_delay': '20ms'})
mx = mt.Mxgate(cfg, name='mx-auth-x')
PORT25 = mx.ports[1]


def b64(s):
    return base64.b64encode(s.encode()).decode()


def client(source):
    c = mt.Client(mx.port, source=source)
    c.ehlo()
    mt.check(c.starttls()[0] == 220, 'STARTTLS 220')
    c.ehlo()
    return c


# ---------------------------------------------------------------- the empty continuation
c = client('127.0.0.21')
code, text = c.cmd('AUTH PLAIN')
mt.check(code == 334, 'AUTH PLAIN without initial response: 334 (%s)' % text)
code, text = c.cmd('')
mt.check(code == 535 and '5.7.8' in text, 'PLAIN: an empty line is an empty response, refused by Dovecot: 535 5.7.8 (%s)' % text)
mt.check(mx.wait_log(r'event=auth_failed client=127\.0\.0\.21 user=- mech=PLAIN ', 3) is not None,
         'the empty PLAIN response is a counted failure (event=auth_failed)')
mt.check(c.cmd('NOOP')[0] == 250, 'the session goes on')
c.close()

c = client('127.0.0.22')
code, text = c.cmd('AUTH LOGIN ' + b64('alice'))
mt.check(code == 334, 'LOGIN with the user: 334 Password: (%s)' % text)
code, text = c.cmd('')
mt.check(code == 535, 'LOGIN: an empty password line reaches Dovecot: 535 (%s)' % text)
c.close()

c = client('127.0.0.23')
code, text = c.cmd('AUTH LOGIN')
code, text = c.cmd('')
mt.check(code == 334 or code == 535, 'LOGIN: an empty user name line reaches Dovecot (%s)' % text)
if code == 334:
    code, text = c.cmd(b64('secret'))
    mt.check(code == 535, '... and the empty user does not log in (%s)' % text)
c.close()

c = client('127.0.0.24')
code, text = c.cmd('AUTH PLAIN')
code, text = c.cmd('not base64!')
mt.check(code == 501 and '5.5.2' in text, 'a response that cannot be decoded is still 501 5.5.2 (%s)' % text)
code, text = c.cmd('AUTH PLAIN')
code, text = c.cmd('A' * 1200)
mt.check(code == 500 and '5.5.6' in text, 'an over-long response line: 500 5.5.6 (%s)' % text)
mt.check(c.cmd('NOOP')[0] == 250, 'the session goes on after both')
c.close()

# ---------------------------------------------------------------- "=" and pipelining
c = client('127.0.0.25')
code, text = c.cmd('AUTH PLAIN =')
mt.check(code == 535, 'AUTH PLAIN = (an empty initial response): 535 (%s)' % text)
c.close()

c = client('127.0.0.1')
c.send('AUTH PLAIN\r\n' + b64('\0alice\0secret') + '\r\n')
code, text = c.reply()
mt.check(code == 334, 'AUTH and its response in one write: 334 first (%s)' % text)
code, text = c.reply()
mt.check(code == 235, '... then 235 (%s)' % text)

# ---------------------------------------------------------------- MAIL's AUTH= parameter (RFC 4954 5)
# An extension announced is an extension whose parameters are taken: sendmail and other MTAs
# relaying through a smarthost send AUTH=<> or AUTH=<the original submitter> with MAIL. Before
# the fix mxgate answered 555 5.5.4 "Unsupported option: AUTH" and such a client could not
# send at all. The value is not passed on (the backend learns the user by XCLIENT LOGIN=), as
# RFC 4954 5 allows: not passing it is the same as AUTH=<>.
for param, want in (('AUTH=<>', 250), ('AUTH=alice+40example.org', 250), ('AUTH=<alice@example.org>', 250),
                    ('AUTH=bad+zz', 501), ('AUTH=', 501)):
    code, text = c.cmd('MAIL FROM:<alice@example.org> %s' % param)
    mt.check(code == want, 'after AUTH, MAIL ... %s: %d (%s)' % (param, want, text))
    c.cmd('RSET')
mt.check(c.cmd('MAIL FROM:<alice@example.org> AUTH=<>')[0] == 250, 'MAIL with AUTH=<> for a message')
mt.check(c.cmd('RCPT TO:<rcpt@example.test>')[0] == 250, 'RCPT')
mt.check(c.cmd('DATA')[0] == 354, 'DATA')
c.send(mt.stuff(mt.message('pipeauth')))
code, text = c.reply()
mt.check(code == 250 and len(be.by_tag('pipeauth')) == 1, 'the message with AUTH=<> is delivered (%s)' % text)
c.close()
mt.check(not any('AUTH=' in x for x in be.commands if x.upper().startswith('MAIL')),
         'the backend got no AUTH= parameter: %s' % [x for x in be.commands if x.upper().startswith('MAIL')][-3:])
# where AUTH is not offered, its parameter is not taken either (as Postfix without SASL)
c = mt.Client(PORT25)
c.ehlo()
code, text = c.cmd('MAIL FROM:<a@example.org> AUTH=<>')
mt.check(code == 555, 'on a listener without AUTH, MAIL ... AUTH=<>: 555 (%s)' % text)
c.close()

# ---------------------------------------------------------------- Received: ESMTPSA (RFC 3848)
# The backend's filters read the protocol of mxgate's Received: header to tell a user's mail
# from the world's (SpamAssassin's and rspamd's Received parsers take ESMTPA/ESMTPSA as
# "authenticated", as Postfix writes it). Before the fix an authenticated session said ESMTPS.
head = be.by_tag('pipeauth')[0]['data'].split(b'\r\n\r\n')[0]
mt.check(b'with ESMTPSA id' in head, 'Received: says "with ESMTPSA" after AUTH over TLS (%r)' % head[:200])
c = client('127.0.0.1')
code, text = mt.send_mail(mx.port, 'alice@example.org', ['rcpt@example.test'], mt.message('noauth'), client=c)
c.close()
got = be.by_tag('noauth')
mt.check(code == 530 and not got, 'without AUTH the submission port refuses the mail (%s)' % text)

mx.stop()
mt.finish()
