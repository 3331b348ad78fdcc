#!/usr/bin/env python3
"""Reproducer (not run by ctest; for proxy/session.c's owner): a TLS client that sends
close_notify and waits for the server's (what Python's asyncio does on close(), and what a
polite MTA does) keeps its session until command_timeout / data_timeout: session_on_read()
ignores tlsconn_feed()'s 1 (close_notify read). After close_notify the client can send no
more, so the session should end at once (answer close_notify with tlsconn_shutdown, close;
a transaction in DATA is abandoned like on a plain EOF). Found by the soak (tests/soak/):
two TLS clients that vanished mid-DATA held their sessions for the full data_timeout.

    MXGATE_BIN=build/mxgate tests/soak/repro_tls_close_notify.py     # exits 1 today
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
import mxtest as mt  # noqa: E402

crt, key = mt.cert()
be = mt.Backend()
mx = mt.Mxgate(mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}],
                         tls={'certificate': crt, 'key': key},
                         limits={'data_timeout': '30s', 'command_timeout': '30s'}))
for where in ('command', 'data'):
    c = mt.Client(mx.port)
    c.ehlo()
    c.starttls()
    c.ehlo()
    if where == 'data':
        c.cmd('MAIL FROM:<a@example.org>')
        c.cmd('RCPT TO:<b@example.test>')
        c.cmd('DATA')
        c.send(b'Subject: half\r\n\r\n' + b'line\r\n' * 50)
    start = mx.log_size()
    c.sock.settimeout(3)
    try:
        c.sock.unwrap()              # sends close_notify, waits for the server's
        answered = True
    except (OSError, socket.timeout):
        answered = False
    ended = mx.wait_log(r'event=(disconnect|timeout)', timeout=3, start=start)
    mt.check(answered, 'in %s state: the server answers close_notify with its own' % where)
    mt.check(ended is not None and ended.group(1) == 'disconnect',
             'in %s state: the session ends at once after close_notify (not at the timeout)' % where)
    c.close()
    time.sleep(0.2)
mx.stop()
mt.finish()
