#!/usr/bin/env python3
"""mxgate's Received field across the messages of one session, byte for byte.

The field's session-constant parts (client name and address, HELO, protocol, TLS) are built
once and kept between a session's messages (proxy/headers.c, received_cache); whatever they
were built from that changes must show in the next message's field:
- EHLO again with another name, then HELO (protocol SMTP): the new name and protocol;
- RSET: nothing changes;
- two recipients: no "for <...>"; one again: named;
- XCLIENT ADDR/NAME/LOGIN from a trusted front end: the new client (its NAME not
  forward-confirmed: "unknown"), ESMTPA (RFC 3848); XCLIENT again without LOGIN: ESMTP;
- STARTTLS: ESMTPS and the "(using ... with cipher ...)" line.
Each field is compared whole with the one the old per-message builder wrote (every part
fixed, the date taken from the field itself), and its id with the queue id of the 250."""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

FROM, RCPT, RCPT2 = 'sender@example.org', 'rcpt@example.test', 'other@example.test'
crt, key = mt.cert()
be = mt.Backend(name='be')
mx = mt.Mxgate(mt.config([be.url], workers=1, listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}],
                         tls={'certificate': crt, 'key': key}, xclient_hosts=['127.0.0.1/32']),
               name='mx-received')


def send(c, tag, rcpts=(RCPT,)):
    """One message on the open session; returns (final code, queue id)."""
    for line in ['MAIL FROM:<%s>' % FROM] + ['RCPT TO:<%s>' % r for r in rcpts]:
        code, text = c.cmd(line)
        if code != 250:
            return code, None
    code, _ = c.cmd('DATA')
    if code != 354:
        return code, None
    c.send('Message-ID: <%s@mxtest.example>\r\nSubject: x\r\n\r\nHello.\r\n.\r\n' % tag)
    code, text = c.reply()
    m = re.search(r'queued as (\w+)', text)
    return code, m.group(1) if m else None


def field(tag):
    """Our Received field (the first field, continuation lines included) of the message tag."""
    got = [m for m in be.messages if ('<%s@' % tag).encode() in m['data']]
    if len(got) != 1:
        return None
    m = re.match(rb'Received: [^\r]*\r\n(?:[ \t][^\r]*\r\n)*', got[0]['data'])
    return m.group(0).decode('utf-8', 'replace') if m else None


def expect(tag, helo, name, ip, proto, rcpt=RCPT, tls=None):
    """Checks message tag's Received field against the one built from these parts."""
    code, qid = send(c, tag, (rcpt,) if rcpt else (RCPT, RCPT2))
    mt.check(code == 250 and qid, '%s: delivered (%s)' % (tag, code))
    got = field(tag) or ''
    date = re.search(r'; ([^;\r]+)\r\n$', got)
    want = 'Received: from %s (%s [%s])\r\n\tby mx.test (mxgate) with %s id %s' % (helo, name, ip, proto, qid)
    if tls:
        want += '\r\n\t(using %s with cipher %s)' % tls
    if rcpt:
        want += '\r\n\tfor <%s>' % rcpt
    want += '; %s\r\n' % (date.group(1) if date else '?')
    mt.check(got == want, '%s: the Received field is %r (%r)' % (tag, want, got))


c = mt.Client(mx.port)
c.ehlo('first.example')
expect('m1', 'first.example', 'localhost', '127.0.0.1', 'ESMTP')
expect('m2', 'first.example', 'localhost', '127.0.0.1', 'ESMTP')
c.ehlo('second.example')
expect('m3', 'second.example', 'localhost', '127.0.0.1', 'ESMTP')
c.cmd('HELO third(x).example')    # HELO: protocol SMTP; the name neutered as Postfix does
expect('m4', 'third?x?.example', 'localhost', '127.0.0.1', 'SMTP')
code, _ = c.cmd('RSET')
mt.check(code == 250, 'RSET: 250 (%s)' % code)
expect('m5', 'third?x?.example', 'localhost', '127.0.0.1', 'SMTP')
expect('m6', 'third?x?.example', 'localhost', '127.0.0.1', 'SMTP', rcpt=None)
code, text = c.cmd('XCLIENT ADDR=198.18.0.9 NAME=front.example LOGIN=alice')
mt.check(code == 220, 'XCLIENT: 220 (%s %s)' % (code, text))
c.ehlo('behind.example')
expect('m7', 'behind.example', 'unknown', '198.18.0.9', 'ESMTPA')   # NAME unconfirmed
code, text = c.cmd('XCLIENT NAME=[UNAVAILABLE] LOGIN=[UNAVAILABLE]')
mt.check(code == 220, 'XCLIENT again: 220 (%s %s)' % (code, text))
c.ehlo('behind.example')
expect('m8', 'behind.example', 'unknown', '198.18.0.9', 'ESMTP')
code, _ = c.starttls()
mt.check(code == 220, 'STARTTLS: 220 (%s)' % code)
c.ehlo('behind.example')
tls = (c.sock.version(), c.sock.cipher()[0])
expect('m9', 'behind.example', 'unknown', '198.18.0.9', 'ESMTPS', tls=tls)
c.ehlo('inside.example')
expect('m10', 'inside.example', 'unknown', '198.18.0.9', 'ESMTPS', tls=tls)
c.cmd('QUIT')
c.close()

mt.finish()
