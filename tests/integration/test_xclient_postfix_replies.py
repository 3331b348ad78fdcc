#!/usr/bin/env python3
"""mxgate's replies to an inbound XCLIENT next to Postfix's smtpd's, on the same lines.

A real Postfix (smtpd_authorized_xclient_hosts = 127.0.0.1) and mxgate (xclient_hosts:
[127.0.0.1]) get the same XCLIENT lines, each on a fresh connection after EHLO; the codes
must match and, for the refusals, the texts too. The differences docs/smtp-edge.md names
(ADDR=[UNAVAILABLE] and a PORT above 65535 refused by mxgate) are checked as such. A peer not listed gets the
same 550 5.7.0 from both.
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need_postfix()

pport = mt.hold_port().port
mt.postfix_instance('pf-xclient', pport, 'smtpd_authorized_xclient_hosts = 127.0.0.1\n')
be = mt.Backend(name='be')
mx = mt.Mxgate(mt.config([be.url], workers=1, xclient_hosts=['127.0.0.1/32']), name='mx-xclient-replies')


def answer(port, line, source=None, mail=False):
    c = mt.Client(port, source=source)
    c.ehlo('front.example.test')
    if mail:
        c.cmd('MAIL FROM:<a@example.org>')
    r = c.cmd(line)
    c.close()
    return r


LINES = [
    ('XCLIENT ADDR=198.51.100.7 NAME=[UNAVAILABLE] LOGIN=user', True),
    ('XCLIENT addr=198.51.100.7 proto=SMTP helo=x.example', True),
    ('XCLIENT ADDR', True),
    ('XCLIENT ADDR=', True),
    ('XCLIENT FOO=bar', True),
    ('XCLIENT ADDR=300.1.2.3', True),
    ('XCLIENT PROTO=HTTP', True),
    ('XCLIENT NAME=a..b', True),
    ('XCLIENT HELO=' + 'a' * 256, True),
]
for line, texts in LINES:
    (pc, pt), (mc, mtext) = answer(pport, line), answer(mx.port, line)
    same = pc == mc and (not texts or pc == 220 or pt == mtext)
    mt.check(same, '%s: mxgate %s %r, Postfix %s %r' % (line[:60], mc, mtext[:70], pc, pt[:70]))

(pc, pt), (mc, mtext) = answer(pport, 'XCLIENT ADDR=198.51.100.7', mail=True), answer(mx.port, 'XCLIENT ADDR=198.51.100.7', mail=True)
mt.check(pc == mc == 503 and pt == mtext, 'inside a transaction: mxgate %s %r, Postfix %s %r' % (mc, mtext, pc, pt))
(pc, pt), (mc, mtext) = (answer(pport, 'XCLIENT ADDR=198.51.100.7', source='127.0.0.3'),
                         answer(mx.port, 'XCLIENT ADDR=198.51.100.7', source='127.0.0.3'))
mt.check(pc == mc == 550 and pt == mtext, 'a peer not listed: mxgate %s %r, Postfix %s %r' % (mc, mtext, pc, pt))
# the documented difference: Postfix takes an unknown address, mxgate refuses it
(pc, pt), (mc, mtext) = answer(pport, 'XCLIENT ADDR=[UNAVAILABLE]'), answer(mx.port, 'XCLIENT ADDR=[UNAVAILABLE]')
mt.check(pc == 220 and mc == 501, 'ADDR=[UNAVAILABLE]: Postfix %s, mxgate 501 as docs/smtp-edge.md says (%s %r)'
         % (pc, mc, mtext))
# PORT: Postfix takes any 1 to 5 digits; mxgate no more than 65535 (a port is 16 bits)
(pc, pt), (mc, mtext) = answer(pport, 'XCLIENT PORT=70000'), answer(mx.port, 'XCLIENT PORT=70000')
mt.check(pc == 220 and mc == 501, 'PORT=70000: Postfix %s, mxgate 501 as docs/smtp-edge.md says (%s %r)' % (pc, mc, mtext))
# (IPV6: addresses are not compared: this Postfix instance is inet_protocols = ipv4, which
# refuses them, 501 Bad ADDR syntax; test_xclient_inbound delivers them through mxgate)
mx.stop()
mt.finish()
