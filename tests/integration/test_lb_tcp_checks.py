#!/usr/bin/env python3
"""A cloud load balancer's health checks on a proxy_protocol listener, as they come: an AWS
NLB's or HAProxy's plain `check` is a TCP connect from the balancer that closes at once
without a byte (no PROXY header); HAProxy's `check-send-proxy` with a v1 server line sends
`PROXY UNKNOWN` (the spec's older advice for checks, and what HAProxy sends for a client it
cannot name), a v2 one a `LOCAL` header.

- a trusted proxy that connects and hangs up without a byte: nothing at info (its
  event=disconnect at debug). Before: one `event=disconnect` line at info for every check,
  with no `event=connect` before it (every 10 s from each of an NLB's zones).
- v1 `PROXY UNKNOWN` is the balancer's own connection, as v2 LOCAL is (docs/balancing.md):
  greeted without the pregreet teaser (`220 ` at once, not `220-`), its connect and
  disconnect at debug, not a pregreet test of the balancer's address. Before: the teaser
  (HAProxy's `option smtpchk` reads `220-` as a failed check) and two info lines.
- v2 LOCAL closing at once: nothing at info (held before too).
- the same header followed by mail is logged at info, and a relayed client still gets the
  pregreet teaser.
"""
import os
import re
import socket
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

SIG = b'\r\n\r\n\x00\r\nQUIT\n'
FROM = 'sender@example.org'
RCPT = 'rcpt@example.test'

be = mt.Backend(name='be')
mx = mt.Mxgate(mt.proxied_config([be.url], workers=1, pregreet={'delay': '1s'}), name='mx-lbtcp')


def end_marker(tag):
    """A relayed client's whole session, QUIT included: its event=disconnect line comes
    after every line of the checks made before it (one worker, one loop)."""
    c = mt.Client(mx.port, greet=False)
    c.send(b'PROXY TCP4 198.18.7.%d 127.0.0.1 4000 25\r\n' % tag)
    mt.check(c.reply()[0] == 220, 'a relayed client is greeted after the teaser')
    c.cmd('QUIT')
    c.close()
    mt.check(mx.wait_log(r'event=disconnect client=198\.18\.7\.%d ' % tag, mt.slack(10)) is not None,
             'the relayed client\'s disconnect is logged')


def info_lines_of_127(start):
    return [l for l in mx.log()[start:].splitlines()
            if re.search(r' info \S+ event=(connect|disconnect) client=127\.0\.0\.1 ', l)]


# ---------------------------------------------------------------- a TCP check: connect, close
start = mx.log_size()
for _ in range(3):
    s = socket.create_connection(('127.0.0.1', mx.port))
    s.close()
end_marker(1)
got = info_lines_of_127(start)
mt.check(not got, 'a trusted proxy\'s bare TCP connect and close logs nothing at info (%s)' % got[:2])

# ---------------------------------------------------------------- v1 UNKNOWN
start = mx.log_size()
raw = socket.create_connection(('127.0.0.1', mx.port))
raw.settimeout(mt.slack(10))
raw.sendall(b'PROXY UNKNOWN\r\n')
line = raw.recv(4)
mt.check(line == b'220 ', 'PROXY UNKNOWN (a v1 check) gets no pregreet teaser: %r' % line)
raw.close()
c = mt.Client(mx.port, greet=False)
c.send(b'PROXY UNKNOWN\r\n')
code, text = c.reply()
mt.check(code == 220, 'PROXY UNKNOWN is greeted (%s %r)' % (code, text))
c.cmd('QUIT')
c.close()
end_marker(2)
got = info_lines_of_127(start)
mt.check(not got, 'PROXY UNKNOWN checks log nothing at info (%s)' % got[:2])
mt.check(mx.count_log(r'event=pregreet ', start) == 0, 'no pregreet verdict on the balancer\'s address')

# ---------------------------------------------------------------- v2 LOCAL, closed at once
start = mx.log_size()
s = socket.create_connection(('127.0.0.1', mx.port))
s.sendall(SIG + b'\x20\x00\x00\x00')
s.close()
end_marker(3)
got = info_lines_of_127(start)
mt.check(not got, 'a v2 LOCAL check that closes at once logs nothing at info (%s)' % got[:2])

# ---------------------------------------------------------------- mail after UNKNOWN: at info
start = mx.log_size()
c = mt.Client(mx.port, greet=False)
c.send(b'PROXY UNKNOWN\r\n')
c.greeting = c.reply()
c.ehlo()
code, _ = mt.send_mail(mx.port, FROM, [RCPT], mt.message('unknown-mail'), client=c)
c.cmd('QUIT')
c.close()
mt.check(code == 250, 'mail after PROXY UNKNOWN is delivered (%s)' % code)
mt.check(mx.wait_log(r' info \S+ event=disconnect client=127\.0\.0\.1 \S+ messages=1 ', mt.slack(10), start)
         is not None, 'a session that carried mail is logged at info')

mt.check(mx.alive(), 'mxgate is alive')
mt.check(not mx.malformed_log_lines(), 'every log line is well formed')
mx.stop()
mt.finish()
