#!/usr/bin/env python3
"""Where a milter's smfi_insheader puts a header, against real milters (python3-milter
filters scripted by the message, tests/peers/mx_milter_ops.py; opendkim).

Postfix (milter8.c passes index + 1, cleanup_milter.c inserts before that header of the
queue file, its own Received: counted and never shown to the milter), as Sendmail: index 0
is the top of the message as delivered, above the MTA's own Received:; index 1 just below
it; index n after n - 1 of the headers the milter was shown. Debian's opendkim inserts its
DKIM-Signature at 0, so with Postfix the signature heads the message. mxgate put index 0
below its own Received (and every index one header lower than Postfix)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()
t.need_python_milter()


def send(port, tag, ops, extra=()):
    hdrs = ['X-Ops-%s: %s' % (k, v) for k, v in ops.items()] + list(extra)
    data = t.message(tag, 'body of %s\r\n' % tag, headers=hdrs)
    return t.send_mail(port, 'a@example.org', ['b@example.test'], data, ehlo='client.example.org', timeout=30)


def names(be, tag):
    got = be.find('Message-ID: <%s@' % tag)
    t.check(len(got) == 1, '%s delivered once (%d)' % (tag, len(got)))
    if not got:
        return []
    hb = got[0]['data'].split(b'\r\n\r\n', 1)[0]
    return [x.split(b':', 1)[0].decode() for x in hb.split(b'\r\n') if x and x[:1] not in (b' ', b'\t')]


m1, m2 = t.milter_ops('one'), t.milter_ops('two')
be = t.Backend()
mx = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m1.port, 'on_error': 'tempfail', 'timeout': '10s'},
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m2.port, 'on_error': 'tempfail', 'timeout': '10s'}]))

# The message as sent starts with From (t.message puts X-Ops after its own headers).
code, text = send(mx.port, 'i0', {'one': 'ins,0,X-Zero,z ; noseen', 'two': 'noseen'})
n = names(be, 'i0')
t.check(code == 250 and n[:2] == ['X-Zero', 'Received'],
        'insheader 0: above mxgate\'s own Received, as Postfix puts it (%s %s)' % (code, n[:4]))

code, text = send(mx.port, 'i1', {'one': 'ins,1,X-One,1 ; ins,2,X-Two,2 ; noseen', 'two': 'noseen'})
n = names(be, 'i1')
t.check(code == 250 and n[:3] == ['Received', 'X-One', 'X-Two'],
        'insheader 1: just below the Received; 2 after 1 header counting X-One (%s)' % n[:5])

# Two milters: each inserts at 0; the second's lands above the first's (Postfix: before
# header 1 of the queue file, which is the first's by then). A chgheader index still counts
# the occurrences of that name only (the Received is not among them).
code, text = send(mx.port, 'i2', {'one': 'ins,0,X-A,a ; chg,X-Multi,1,changed ; noseen',
                                  'two': 'ins,0,X-B,b ; ins,1,X-C,c ; noseen'},
                  extra=('X-Multi: one', 'X-Multi: two'))
n = names(be, 'i2')
t.check(code == 250 and n[:4] == ['X-B', 'X-C', 'X-A', 'Received'],
        'two milters inserting at 0 and 1: all above the Received, the later first (%s)' % n[:6])
got = be.find('Message-ID: <i2@')
t.check(got and b'X-Multi: changed\r\nX-Multi: two' in got[0]['data'], 'chgheader 1 changed the first X-Multi')

# Past the end still appends; a header the first milter put on top is shown to the second
# (it counts it: index 1 goes just below it, above the Received).
code, text = send(mx.port, 'i3', {'one': 'ins,0,X-Top,t ; ins,1000,X-End,e ; noseen', 'two': 'ins,1,X-Next,n'})
n = names(be, 'i3')
t.check(code == 250 and n[:3] == ['X-Top', 'X-Next', 'Received'] and n[-2:] == ['X-End', 'X-Seen-two'],
        'past the end appends; the second milter counted the first one\'s top header (%s)' % n)
got = be.find('Message-ID: <i3@')
t.check(got and b'hdrs=X-Top,' in got[0]['data'], 'and it was shown that header first')
mx.stop()

# opendkim (Debian's inserts DKIM-Signature at 0): the signature heads the message, above
# mxgate's Received, as behind Postfix.
dk = t.opendkim()
mx = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%s' % dk.port, 'on_error': 'tempfail', 'timeout': '10s'}]),
    name='mx-dkim')
code, text = send(mx.port, 'dk1', {})
n = names(be, 'dk1')
t.check(code == 250 and 'DKIM-Signature' in n and n.index('DKIM-Signature') < n.index('Received'),
        'opendkim\'s DKIM-Signature above mxgate\'s Received (%s %s)' % (code, n[:4]))
mx.stop()
t.stop_proc(dk)
t.stop_proc(m1)
t.stop_proc(m2)
t.finish()
