#!/usr/bin/env python3
"""SMTP edge replies compared with Postfix smtpd's, against the running daemon (the corners
the other test_edge_* files leave out). Postfix's answer is the reference unless mxgate's
docs say otherwise (docs/smtp-edge.md).

- HELO/EHLO: without an argument 501 5.5.4; repeated, or after MAIL, they reset the
  transaction (RFC 5321 4.1.4: RCPT then 503), and the backend hears each new name (XCLIENT
  HELO= and the Received: header of the next message); MAIL before any HELO: 503 5.5.1
  (mxgate's smtpd_helo_required: yes); a HELO name's spaces, <>()\\";@ and control
  characters are "?" in the Received: field, as Postfix writes it (a name such as
  "x (mail.trusted.example [192.0.2.1])" forged a relay for downstream Received parsers);
- keywords in any case (mail from:, Rcpt To:, bdat 4 last), a space after the colon, extra
  spaces between parameters, trailing white space;
- RCPT TO:<Postmaster> without a domain is taken (RFC 5321 4.5.1) and passed as sent;
  RCPT TO:<> is 501 5.1.3; the null sender with several recipients is one message;
- address literals: [IPv6:...] and [192.0.2.1] in accept_domains match any equal spelling,
  a leading-zero IPv4 literal is a syntax error (501 5.1.3);
- VRFY 252 (501 without argument), EXPN 502, ETRN and TURN 500 at every state, XCLIENT
  from a client 550 5.7.0, a PROXY line on a plain listener 500;
- unknown MAIL/RCPT parameters 555 5.5.4, BODY=BINARYMIME 555 5.5.4 (not announced),
  SMTPUTF8=value 501, SIZE= empty or over 20 digits 501, SIZE over the limit 552 5.3.4, a
  message of exactly max_message_size (dot-stuffed or not, DATA or BDAT) taken, one octet
  more 552;
- BDAT: BDAT 0 LAST before MAIL 503, after DATA's message 503 (a new transaction is
  needed), BDAT LAST with no valid recipient 554 5.5.1, a chunk declared larger than sent
  and a hang-up: nothing delivered; a chunk over max_message_size 552 (read, dropped, the
  session goes on), over twice that the same (until session 13 the connection was closed);
- the backend's recipient refusals count toward limits.max_errors (a harvesting client is
  cut off, 421 4.7.0), as Postfix counts each 5xx toward smtpd_hard_error_limit.
Peers: two scripted backends (one refusing a set of recipients)."""
import os
import re
import socket
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()

be = mt.Backend(name='replies', reject_rcpt={'nobody%d@example.test' % i for i in range(20)})
mx = mt.Mxgate(mt.config([be.url], limits={'max_errors': 6, 'max_message_size': '10K'},
                         accept_domains=['example.test', '[192.0.2.1]', '[IPv6:2001:db8::1]']), name='mx-replies')


def client(ehlo='client.test'):
    c = mt.Client(mx.port)
    if ehlo:
        c.ehlo(ehlo)
    return c


def codes(c, lines):
    return [c.cmd(l)[0] for l in lines]


def tagged(tag):
    return [m for m in be.messages if b'Subject: %s\r\n' % tag.encode() in m['data']]


def deliver(c, tag, verb='DATA'):
    if verb == 'DATA':
        mt.check(c.cmd('DATA')[0] == 354, '%s: DATA 354' % tag)
        c.send(mt.stuff(b'Subject: %s\r\n\r\nbody\r\n' % tag.encode()))
        return c.reply()
    body = 'Subject: %s\r\n\r\nbody\r\n' % tag
    return c.cmd('bdat %d last\r\n%s' % (len(body), body[:-2]))


# ---------------------------------------------------------------- HELO / EHLO
c = client(ehlo=None)
mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 503, 'MAIL before HELO/EHLO: 503')
mt.check(c.cmd('HELO')[0] == 501 and c.cmd('EHLO')[0] == 501, 'HELO / EHLO without a name: 501')
mt.check(c.cmd('EHLO first.test')[0] == 250, 'EHLO 250')
mt.check(codes(c, ['MAIL FROM:<a@example.org>', 'EHLO again.test', 'RCPT TO:<r@example.test>']) == [250, 250, 503],
         'EHLO after MAIL resets the transaction: RCPT 503')
mt.check(codes(c, ['MAIL FROM:<a@example.org>', 'HELO old.test', 'RCPT TO:<r@example.test>']) == [250, 250, 503],
         'HELO after MAIL resets the transaction too')
for name in ('one.test', 'two.test'):
    mt.check(c.cmd('EHLO ' + name)[0] == 250, 'EHLO %s' % name)
    mt.check(codes(c, ['MAIL FROM:<a@example.org>', 'RCPT TO:<r@example.test>']) == [250, 250], '%s: MAIL, RCPT' % name)
    code, text = deliver(c, 'helo-' + name)
    mt.check(code == 250, 'helo-%s: delivered (%s)' % (name, text))
    got = tagged('helo-' + name)
    mt.check(len(got) == 1 and got[0]['xclient'].get('HELO') == name and
             got[0]['data'].startswith(b'Received: from %s ' % name.encode()),
             'the backend hears the new name: XCLIENT HELO=%s and the Received: header (%r)'
             % (name, got and (got[0]['xclient'], got[0]['data'][:40])))
c.close()

# A HELO name made to look like a relay in the Received: field: Postfix's smtpd writes the
# name with space, <, >, (, ), backslash, ", ;, @ and control characters as "?" there
# (smtpd.c, NEUTER_CHARACTERS), so that a Received parser downstream (SpamAssassin, rspamd)
# never takes the client's words for the relay's name and address; the backend still hears
# the name as sent (XCLIENT HELO=, xtext).
for tag, name, shown in (
        ('helo-fake-relay', 'x (mail.trusted.example [192.0.2.1])', 'x??mail.trusted.example?[192.0.2.1]?'),
        ('helo-specials', 'a<b>c"d\\e;f@g\th', 'a?b?c?d?e?f?g?h')):
    c = client(ehlo=None)
    mt.check(c.cmd('HELO ' + name)[0] == 250, '%s: HELO 250' % tag)
    mt.check(codes(c, ['MAIL FROM:<a@example.org>', 'RCPT TO:<r@example.test>']) == [250, 250], '%s: MAIL, RCPT' % tag)
    code, text = deliver(c, tag)
    got = tagged(tag)
    mt.check(code == 250 and len(got) == 1 and
             got[0]['data'].startswith(b'Received: from %s (localhost [127.0.0.1])\r\n' % shown.encode()),
             '%s: Received: from %s (%r)' % (tag, shown, got and got[0]['data'][:90]))
    helo = got and re.sub(r'\+([0-9A-F]{2})', lambda m: chr(int(m.group(1), 16)), got[0]['xclient'].get('HELO', ''))
    mt.check(helo == name, '%s: XCLIENT HELO= as sent, xtext (%r)' % (tag, helo))
    c.close()

# ---------------------------------------------------------------- case, spaces, Postmaster, <>
c = client()
mt.check(codes(c, ['mail from: <a@example.org>  ', 'Rcpt To:<POSTMASTER>', 'rcpt TO:<postmaster@EXAMPLE.TEST>',
                   'RCPT TO:<>', 'RCPT TO:<r@example.test>  NOTIFY=NEVER  ']) == [250, 250, 250, 501, 250],
         'keywords in any case, spaces; <Postmaster> taken, <> 501')
code, text = deliver(c, 'case', verb='BDAT')
mt.check(code == 250, 'bdat N last in lower case delivers (%s)' % text)
got = tagged('case')
mt.check(len(got) == 1 and got[0]['rcpts'] == ['POSTMASTER', 'postmaster@EXAMPLE.TEST', 'r@example.test'],
         'the recipients reach the backend as sent (%r)' % (got and got[0]['rcpts']))
mt.check(codes(c, ['MAIL FROM:<>', 'RCPT TO:<x@example.test>', 'RCPT TO:<y@example.test>']) == [250, 250, 250],
         'the null sender with two recipients')
code, text = deliver(c, 'nullsender')
got = tagged('nullsender')
mt.check(code == 250 and len(got) == 1 and got[0]['mail'] == '<>' and len(got[0]['rcpts']) == 2,
         'one message from <> to both (%s, %r)' % (text, got and (got[0]['mail'], got[0]['rcpts'])))
c.close()

# ---------------------------------------------------------------- address literals
c = client()
mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 250, 'MAIL 250')
for rcpt, want in (('r@[192.0.2.1]', 250), ('r@[IPv6:2001:db8::1]', 250), ('r@[IPv6:2001:DB8:0:0:0:0:0:1]', 250),
                   ('r@[IPv6:2001:db8::2]', 550), ('r@[192.0.2.01]', 501), ('r@[192.0.2.2]', 550)):
    code, text = c.cmd('RCPT TO:<%s>' % rcpt)
    mt.check(code == want, 'RCPT TO:<%s>: %d (%s)' % (rcpt, want, text))
c.close()

# ---------------------------------------------------------------- other verbs at each state
for state, setup in (('idle', []), ('after MAIL', ['MAIL FROM:<a@example.org>']),
                     ('after RCPT', ['MAIL FROM:<a@example.org>', 'RCPT TO:<r@example.test>'])):
    c = client()     # four errors each: a session of its own (max_errors 6)
    mt.check(codes(c, setup) == [250] * len(setup), '%s: set up' % state)
    got = codes(c, ['VRFY postmaster', 'VRFY', 'EXPN staff', 'ETRN example.test', 'TURN', 'NOOP', 'HELP'])
    mt.check(got == [252, 501, 502, 500, 500, 250, 214], '%s: VRFY 252, VRFY 501, EXPN 502, ETRN/TURN 500, '
             'NOOP 250, HELP 214 (%r)' % (state, got))
    if setup:
        mt.check(c.cmd('RCPT TO:<s@example.test>')[0] == 250, '%s: the transaction goes on' % state)
    mt.check(c.cmd('RSET')[0] == 250, 'RSET 250')
    c.close()
c = client()
mt.check(c.cmd('XCLIENT ADDR=192.0.2.9')[0] == 550, 'XCLIENT from a client: 550 5.7.0')
mt.check(c.cmd('PROXY TCP4 192.0.2.9 127.0.0.1 1234 25')[0] == 500, 'a PROXY line on a plain listener: 500')
c.close()

# ---------------------------------------------------------------- parameters and sizes
for i, (line, want) in enumerate((
        ('MAIL FROM:<a@example.org> FOO=bar', 555), ('MAIL FROM:<a@example.org> BODY=BINARYMIME', 555),
        ('MAIL FROM:<a@example.org> SMTPUTF8=yes', 501), ('MAIL FROM:<a@example.org> SIZE=', 501),
        ('MAIL FROM:<a@example.org> SIZE=999999999999999999999', 501),
        ('MAIL FROM:<a@example.org> SIZE=10241', 552))):
    if i % 3 == 0:
        c = client()     # each refusal is an error (max_errors 6)
    code, text = c.cmd(line)
    mt.check(code == want, '%s: %d (%s)' % (line, want, text))
    if i % 3 == 2:
        c.close()
c = client()
mt.check(codes(c, ['MAIL FROM:<a@example.org> SIZE=10240 BODY=8BITMIME', 'RCPT TO:<r@example.test> FOO=1']) == [250, 555],
         'SIZE at the limit 250; an unknown RCPT parameter 555')
c.cmd('RSET')


def exact(n, dots):
    head = b'Subject: size-%d-%s\r\n\r\n' % (n, b'dots' if dots else b'plain')
    line = (b'.' if dots else b'x') + b'y' * 76 + b'\r\n'
    body = line * ((n - len(head) - 2) // len(line))
    return head + body + b'z' * (n - len(head) - len(body) - 2) + b'\r\n'


for n, want in ((10240, 250), (10241, 552)):
    for dots in (False, True):
        for verb in ('DATA', 'BDAT'):
            m = exact(n, dots)
            mt.check(len(m) == n, 'message of %d octets built' % n)
            mt.check(codes(c, ['MAIL FROM:<a@example.org>', 'RCPT TO:<r@example.test>']) == [250, 250], 'MAIL, RCPT')
            if verb == 'DATA':
                c.cmd('DATA')
                code, text = c.cmd((m.replace(b'\r\n.', b'\r\n..') + b'.').decode())
            else:
                code, text = c.cmd('BDAT %d LAST\r\n%s' % (n, m[:-2].decode()))
            mt.check(code == want, '%d octets (%s, %s): %d (%s)' % (n, 'dot-stuffed' if dots else 'plain', verb,
                                                                    want, text))
            c.cmd('RSET')
c.close()

# ---------------------------------------------------------------- BDAT corners
c = client()
mt.check(c.cmd('BDAT 0 LAST')[0] == 503, 'BDAT 0 LAST before MAIL: 503')
mt.check(codes(c, ['MAIL FROM:<a@example.org>', 'RCPT TO:<x@elsewhere.test>', 'BDAT 0 LAST']) == [250, 550, 554],
         'BDAT LAST with no valid recipient: 554')
mt.check(codes(c, ['RSET', 'MAIL FROM:<a@example.org>', 'RCPT TO:<r@example.test>']) == [250, 250, 250], 'a new transaction')
code, text = deliver(c, 'bdat-after-data')
mt.check(code == 250, 'DATA delivers (%s)' % text)
mt.check(c.cmd('BDAT 0 LAST')[0] == 503, 'BDAT after the message: 503 (a new MAIL first)')
c.close()
c = client()
mt.check(codes(c, ['MAIL FROM:<a@example.org>', 'RCPT TO:<r@example.test>']) == [250, 250], 'MAIL, RCPT')
c.send('BDAT 100 LAST\r\nSubject: hangup\r\n\r\nshort')
c.sock.shutdown(socket.SHUT_WR)
mt.check(c.is_closed(10), 'a chunk declared longer than sent, then a hang-up: the session ends')
c.close()
mt.check(not tagged('hangup') and not [a for a in be.attempts if b'hangup' in a.get('data', b'')],
         'nothing of the cut chunk reached the backend')

c = client()
mt.check(codes(c, ['MAIL FROM:<a@example.org>', 'RCPT TO:<r@example.test>']) == [250, 250], 'MAIL, RCPT')
c.send('BDAT 15000\r\n' + 'x' * 15000)
mt.check(c.reply()[0] == 552, 'BDAT over max_message_size: 552 5.3.4, the chunk read and dropped')
mt.check(c.cmd('RSET')[0] == 250 and c.cmd('NOOP')[0] == 250, '... and the session goes on')
mt.check(codes(c, ['MAIL FROM:<a@example.org>', 'RCPT TO:<r@example.test>']) == [250, 250], 'MAIL, RCPT')
c.send('BDAT 30000\r\n' + 'y' * 30000)
code, text = c.reply()
mt.check(code == 552, 'BDAT over twice max_message_size: 552 (%s)' % text)
mt.check(c.cmd('RSET')[0] == 250 and c.cmd('NOOP')[0] == 250,
         '... the chunk read and dropped as Postfix does, the session goes on')
c.close()

# ---------------------------------------------------------------- harvesting
c = client()
mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 250, 'MAIL 250')
c.send(''.join('RCPT TO:<nobody%d@example.test>\r\n' % i for i in range(8)))
got = []
while len(got) < 8:
    code, text = c.reply()
    if code is None:
        break
    got.append(text)
mt.check(got == ['550 5.1.1 <nobody%d@example.test>: no such user' % i for i in range(6)] +
         ['421 4.7.0 mx.test Error: too many errors'],
         "the backend's recipient refusals count toward max_errors: 421 after the sixth (%r)" % got)
mt.check(c.is_closed(5), '... and the session is closed')
c.close()

mt.check(not mx.malformed_log_lines(), 'log lines keep the contract form')
mx.stop()
mt.finish()
