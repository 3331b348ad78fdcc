#!/usr/bin/env python3
"""Message content read straight into the message buffer (session_io.c's session_on_content):
the content arrives in pieces the client sends apart (TCP_NODELAY and a pause between them, so
each is its own read), cut in every awkward place — inside a line, between a CR and its LF,
right after a CRLF, between a line's "." and what follows, inside "..", around a bare LF or
CR and a NUL — and what reaches the backend is exactly the unstuffed (and, per the limits,
normalized or stripped) content. Also: a message that spills to the spool file half way, one
over max_message_size (552, and the next transaction on the connection delivered), and the
next transaction's commands in the same piece as the final dot. Peers: mxtest's recording
backend."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

PAUSE = 0.02


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=mt.slack(20))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b''
        self.reply()
        self.cmd(b'EHLO client.test')

    def reply(self):
        """The next whole reply's code."""
        while True:
            while b'\r\n' in self.buf:
                line, self.buf = self.buf.split(b'\r\n', 1)
                if line[3:4] != b'-':
                    return int(line[:3])
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def cmd(self, line):
        self.s.sendall(line + b'\r\n')
        return self.reply()

    def send(self, tag, pieces):
        """MAIL, RCPT, DATA in lock-step, then the pieces apart; the reply to the dot."""
        codes = [self.cmd(b'MAIL FROM:<a@example.org>'), self.cmd(b'RCPT TO:<%s@example.test>' % tag.encode()),
                 self.cmd(b'DATA')]
        if codes != [250, 250, 354]:
            return codes
        for p in pieces:
            self.s.sendall(p)
            time.sleep(PAUSE)
        return self.reply()

    def close(self):
        self.cmd(b'QUIT')
        self.s.close()


def unstuff(wire):
    """The content of wire (up to and without the final CRLF.CRLF), unstuffed."""
    assert wire.endswith(b'\r\n.\r\n')
    lines = wire[:-3].split(b'\r\n')[:-1]
    return b''.join((x[1:] if x.startswith(b'.') else x) + b'\r\n' for x in lines)


def cut(data, at):
    """data cut at the offsets in at (sorted, within data)."""
    out, prev = [], 0
    for a in sorted(set(at)):
        if 0 < a < len(data):
            out.append(data[prev:a])
            prev = a
    out.append(data[prev:])
    return out


def delivered(be, tag):
    """What the backend got for tag, from the client's first header on (mxgate's Received
    field before it left out)."""
    with be.lock:
        got = [m['data'] for m in be.messages if m['rcpts'] == ['%s@example.test' % tag]]
    if not got:
        return None
    at = got[-1].find(b'From: <sender@example.org>')
    return got[-1][at:] if at >= 0 else got[-1]


be = mt.Backend(name='reads')

# ------------------------------------------------------------------ cut in every awkward place
mx = mt.Mxgate(mt.config([be.url]), name='mxgate-reads')
c = Client(mx.port)
head = mt.message('reads-small').split(b'\r\n\r\n', 1)[0] + b'\r\n\r\n'
body = b'plain line\r\n..stuffed\r\n...two dots\r\n.x\r\nlast line\r\n'
wire = head + body + b'.\r\n'
marks = [wire.index(x) + d for x, d in ((b'plain', 3), (b'line\r\n..', 5), (b'line\r\n..', 6), (b'line\r\n..', 7),
                                        (b'..stuffed', 1), (b'...two', 2), (b'.x', 1), (b'last', 0),
                                        (b'line\r\n.\r\n', 5))]
for i, at in enumerate(marks):
    tag = 'cut%d' % i
    r = c.send(tag, cut(wire, [at]))
    mt.check(r == 250 and delivered(be, tag) == unstuff(wire), '%s: cut at %d (%r): delivered as sent (%r)'
             % (tag, at, wire[at - 3:at + 3], r))
# every place of the body, in one message each, pieces of 1 to 5 octets around it
for at in range(len(head), len(wire) - 1):
    tag = 'every%d' % at
    r = c.send(tag, cut(wire, [at, at + 1 + at % 5]))
    mt.check(r == 250 and delivered(be, tag) == unstuff(wire), '%s: delivered as sent (%r)' % (tag, r))
# large: 300 KiB of lines of every length 0-99, one in 7 stuffed, in pieces of 1-9000 octets
lines = []
for i in range(6000):
    x = b'%d:' % i + b'abcdefghij' * (i % 10) + b'x' * (i % 7)
    lines.append(b'.' + x if i % 7 == 3 else x)
wire = mt.message('reads-large').split(b'\r\n\r\n', 1)[0] + b'\r\n\r\n' + b'\r\n'.join(lines) + b'\r\n.\r\n'
at, n = [], 0
while n < len(wire):
    n += 1 + (n * 7919) % 9000
    at.append(n)
r = c.send('large', cut(wire, at))
got = delivered(be, 'large')
mt.check(r == 250 and got == unstuff(wire), 'large: %d octets in %d pieces delivered as sent (%r, %s)'
         % (len(wire), len(at), r, None if got is None else len(got)))
# the next transaction's commands in the same piece as the dot
wire = mt.message('reads-ahead')
c.cmd(b'MAIL FROM:<a@example.org>')
c.cmd(b'RCPT TO:<ahead1@example.test>')
c.cmd(b'DATA')
c.s.sendall(wire[:40])
time.sleep(PAUSE)
c.s.sendall(wire[40:] + b'.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<ahead2@example.test>\r\nDATA\r\n')
r = [c.reply() for _ in range(4)]
c.s.sendall(wire + b'.\r\n')
r.append(c.reply())
mt.check(r == [250, 250, 250, 354, 250] and delivered(be, 'ahead1') == wire and delivered(be, 'ahead2') == wire,
         'the next MAIL, RCPT and DATA behind the dot in one piece (%r)' % (r,))
c.close()
mx.stop()

# ------------------------------------------------------------------ bare LF and CR, NUL
mx = mt.Mxgate(mt.config([be.url], limits={'bare_lf': 'normalize', 'nul': 'strip'}), name='mxgate-reads-mend')
c = Client(mx.port)
head = mt.message('reads-mend').split(b'\r\n\r\n', 1)[0] + b'\r\n\r\n'
body = b'one\ntwo\r\nthree\rfour\r\nfi\x00ve\r\n\x00.six\r\n.\nseven\r\n'
want = head + b'one\r\ntwo\r\nthree\r\nfour\r\nfive\r\n.six\r\n..\r\nseven\r\n'   # ".\n": never a lone "."
wire = head + body + b'.\r\n'
for at in range(len(head) - 2, len(wire) - 1):
    tag = 'mend%d' % at
    r = c.send(tag, cut(wire, [at, at + 1 + at % 3]))
    got = delivered(be, tag)
    mt.check(r == 250 and got == want, '%s: mended as a whole message would be (%r%s)'
             % (tag, r, '' if got == want else ', got %r' % got))
c.close()
mx.stop()

# ------------------------------------------------------------------ spilled half way; too big
mx = mt.Mxgate(mt.config([be.url], limits={'memory_threshold': '16K', 'max_message_size': '64K'}),
               name='mxgate-reads-limits')
c = Client(mx.port)
wire = mt.message('reads-spill', size=40000) + b'.\r\n'
r = c.send('spill', cut(wire, range(3000, len(wire), 3000)))
mt.check(r == 250 and delivered(be, 'spill') == unstuff(wire), 'spilled to the file half way: delivered (%r)' % r)
n = len(be.messages)
wire = mt.message('reads-big', size=100000) + b'.\r\n'
r = c.send('big', cut(wire, range(5000, len(wire), 5000)))
mt.check(r == 552 and len(be.messages) == n, 'over max_message_size: 552, nothing delivered (%r)' % r)
wire = mt.message('reads-after') + b'.\r\n'
r = c.send('after', cut(wire, [30]))
mt.check(r == 250 and delivered(be, 'after') == unstuff(wire), 'the next message on the connection (%r)' % r)
c.close()
mx.stop()
mt.finish()
