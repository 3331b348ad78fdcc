#!/usr/bin/env python3
"""An `lmtp:unix:/path` backend (docs/config.md, INTERFACE.md; Dovecot's and Cyrus's LMTP
are usually on a unix socket, Postfix's `lmtp_destination = unix:...`), against a real peer:
Postfix's smtp-sink speaking LMTP on a unix socket (`-L unix:PATH`).

Before the fix the health probe (a pipe handle) said the backend was up, /readyz said
ready, and every delivery failed at once with "invalid argument" (the relay opened a TCP
handle and connected it to the unix address): every message got 451, for ever.
"""
import os
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')

d = os.path.join(mt.TMP, 'lmtpsock')
os.makedirs(d)
os.chmod(d, 0o1777)   # smtp-sink dumps as nobody
path = os.path.join(d, 'lmtp.sock')
sink = mt.spawn([mt.tool('smtp-sink'), '-L', '-c', '-u', 'nobody', '-d', os.path.join(d, 'msg.'),
                 'unix:' + path, '64'], 'sink-unix')


def listening():
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
        return True
    except OSError:
        return False


if not mt.wait_for(listening, timeout=10):
    mt.peer_failed('sink-unix', 'smtp-sink -L on unix:%s did not start' % path)


def dumps():
    return [open(os.path.join(d, f), 'rb').read() for f in sorted(os.listdir(d)) if f.startswith('msg.')]


url = 'lmtp:unix:' + path
mx = mt.Mxgate(mt.config([url], workers=1), name='mx-lmtp-unix')
mt.check(mx.wait_log(r'event=ready generation=1 backends_up=yes', 10) is not None, 'lmtp:unix: the probe finds it up')
for i in range(3):
    tag = 'unix-%d' % i
    r = mt.send_mail(mx.port, 's@example.org', ['a@example.test', 'b@example.test'], mt.message(tag))
    n = sum(1 for x in dumps() if tag in mt.message_ids([x]))
    mt.check(r.code == 250 and n == 1, 'lmtp:unix: message %d delivered, one copy at the socket (%s %s, %d copies)'
             % (i, r.code, r.text[:60], n))
mt.check(mx.count_log(r'event=backend_error') == 0, 'lmtp:unix: no backend_error logged')
mx.stop()
mt.finish()
