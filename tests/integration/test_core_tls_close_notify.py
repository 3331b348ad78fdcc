#!/usr/bin/env python3
"""A TLS client that sends close_notify (SSLSocket.unwrap(): what a polite MTA or asyncio's
close() does) sends nothing more: the session ends at once, answered with our close_notify,
not at command_timeout / data_timeout (30 s here). In command state the disconnect is a
client_closed; mid-DATA the transaction is abandoned (nothing was acknowledged, nothing
delivered).

The same towards a backend: a backend that sends close_notify after the final dot (and
keeps TCP open) fails the transaction at once with a 4xx ("connection closed"), not at
reply_timeout (60 s)."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('openssl')
crt, key = mt.cert()
be = mt.Backend()
mx = mt.Mxgate(mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}],
                         tls={'certificate': crt, 'key': key},
                         limits={'data_timeout': '30s', 'command_timeout': '30s'}))
for where in ('command', 'data'):
    c = mt.Client(mx.port)
    c.ehlo()
    mt.check(c.starttls()[0] == 220, '%s: STARTTLS' % where)
    c.ehlo()
    if where == 'data':
        c.cmd('MAIL FROM:<a@example.org>')
        c.cmd('RCPT TO:<b@example.test>')
        mt.check(c.cmd('DATA')[0] == 354, 'data: 354')
        c.send(b'Subject: half\r\n\r\n' + b'line\r\n' * 50)
    start = mx.log_size()
    # unwrap() sends close_notify and returns once the server's close_notify is read; the
    # 20 s bound only keeps a broken server from hanging the test (command_timeout is 30 s).
    c.sock.settimeout(20)
    try:
        c.sock.unwrap()
        answered = True
    except (OSError, socket.timeout):
        answered = False
    mt.check(answered, '%s: the server answers close_notify with its own' % where)
    ended = mx.wait_log(r'event=(disconnect|timeout)[^\n]*', timeout=20, start=start)
    mt.check(ended is not None and ended.group(1) == 'disconnect' and 'reason=client_closed' in ended.group(0),
             '%s: the session ends after close_notify as client_closed, not at a timeout (%s)'
             % (where, ended.group(0) if ended else None))
    c.close()
mt.check(not be.messages, 'the abandoned DATA delivered nothing')
mx.stop()

bad = mt.Backend(mode='close_notify_after_data', starttls=True, xclient=False)
mx2 = mt.Mxgate(mt.config([bad.url], backends={'client_identity': 'none', 'reply_timeout': '60s'}), name='mxgate-backend')
c = mt.Client(mx2.port)
c.ehlo()
mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 250, 'backend: MAIL 250')
mt.check(c.cmd('RCPT TO:<b@example.test>')[0] == 250, 'backend: RCPT 250')
mt.check(c.cmd('DATA')[0] == 354, 'backend: DATA 354')
c.sock.settimeout(30)
c.send(mt.stuff(mt.message('notify')))
code, text = c.reply()
mt.check(code is not None and code // 100 == 4, 'backend: close_notify after the dot answers 4xx (%s %s)' % (code, text))
mt.check(mx2.wait_log(r'event=backend_error [^\n]*reason="connection closed"') is not None,
         'backend: logged as the backend closing, not as a timeout')
mt.check(bad.attempts and bad.attempts[0]['tls'], 'backend: the message went over TLS')
c.close()
mx2.stop()
mt.finish()
