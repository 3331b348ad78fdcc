#!/usr/bin/env python3
"""clamd at its limits, against a real clamd (StreamMaxLength 10M, tests/peers/clamav):
max_size equal to StreamMaxLength scans a larger message up to the limit (EICAR near the
top still caught, a clean one delivered whole), max_size above it makes clamd answer
"INSTREAM size limit exceeded" (on_error, never a silent pass), and EICAR two MIME levels
deep (a base64 part inside a forwarded message/rfc822 inside multipart/mixed) is found."""
import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('clamd')

cl = mt.clamd()
be = mt.Backend()
MAX = 10 * 1024 * 1024    # clamd.conf.in: StreamMaxLength 10M


def gate(max_size, on_error, name):
    return mt.Mxgate(mt.config([be.url], hostname='mx.example.test', limits={'max_message_size': '30M'},
                               plugins=[{'name': 'clamd', 'address': '127.0.0.1:%d' % cl.port, 'on_error': on_error,
                                         'timeout': '30s', 'max_size': max_size}]), name=name)


def send(port, data):
    return mt.send_mail(port, 'a@example.org', ['b@example.test'], data, timeout=60)


def eicar_top(tag, size):
    """EICAR in a base64 attachment at the top, then size bytes of text after it."""
    m = mt.eicar_message(tag)
    return m + (b'filler line for the size of this message, no virus here at all.......\r\n' * (size // 72 + 1))


m = gate('10M', 'tempfail', 'mx-eq')
code, text = send(m.port, eicar_top('big-virus', 12 * 1024 * 1024))
mt.check(code == 554 and 'MxGate.Test.EICAR' in text and not be.find('Message-ID: <big-virus@'),
         'max_size = StreamMaxLength: a 12 MB message with EICAR at the top is refused (%s %s)' % (code, text))
code, text = send(m.port, mt.message('big-clean', 'body of big-clean\r\n', size=12 * 1024 * 1024))
got = be.find('Message-ID: <big-clean@')
mt.check(code == 250 and len(got) == 1 and len(got[0]['data']) > 12 * 1024 * 1024,
         'max_size = StreamMaxLength: a 12 MB clean message is scanned up to the limit and delivered whole (%s %s)'
         % (code, text))
m.stop()

for on_error, want in (('tempfail', 451), ('accept', 250)):
    m = gate('20M', on_error, 'mx-over-' + on_error)
    tag = 'over-' + on_error
    code, text = send(m.port, mt.message(tag, 'body\r\n', size=12 * 1024 * 1024))
    mt.check(code == want and bool(be.find('Message-ID: <%s@' % tag)) == (want == 250),
             'max_size above StreamMaxLength: clamd refuses the stream -> on_error %s -> %s (%s %s)'
             % (on_error, want, code, text))
    mt.check('event=plugin_error' in m.log(), 'the refused stream is logged as a plugin error')
    m.stop()

# EICAR inside a forwarded message inside multipart/mixed.
inner = ('From: <x@example.org>\r\nSubject: inner\r\nMIME-Version: 1.0\r\n'
         'Content-Type: multipart/mixed; boundary="IN"\r\n\r\n--IN\r\nContent-Type: text/plain\r\n\r\nhi\r\n'
         '--IN\r\nContent-Type: application/octet-stream; name="e.com"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
         '%s\r\n--IN--\r\n' % base64.b64encode(mt.EICAR.encode()).decode())
outer = mt.message('nested1', '--OUT\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--OUT\r\n'
                   'Content-Type: message/rfc822\r\n\r\n%s\r\n--OUT--\r\n' % inner,
                   headers=('MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="OUT"'))
m = gate('10M', 'tempfail', 'mx-nested')
code, text = send(m.port, outer)
mt.check(code == 554 and 'MxGate.Test.EICAR' in text and not be.find('Message-ID: <nested1@'),
         'EICAR in a base64 part of a forwarded message/rfc822 is refused: %s %s' % (code, text))
m.stop()
mt.finish()
