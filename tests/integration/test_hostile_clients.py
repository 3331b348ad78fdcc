#!/usr/bin/env python3
"""Hostile clients against a real mxgate: slowloris, a pipelining client that never reads,
endless lines, oversized DATA, binary junk, RSET storms, too many recipients, half-closed
sockets, connection floods, TLS junk and stalls, hostile PROXY headers.

Whatever a client sends, the daemon must not crash (no sanitizer report), must keep its
memory bounded, must end or throttle an abusive session within the configured timeouts and
must keep serving everybody else.
"""
import os
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

CMD_TIMEOUT = 3          # limits.command_timeout (s)
DATA_TIMEOUT = 5         # limits.data_timeout (s), per read
DATA_DEADLINE = 8        # limits.data_deadline (s), the whole DATA phase
T0 = time.time()


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def daemon_holds(pid, server_port, client_port):
    """True while process pid still has an open socket for 127.0.0.1:server_port <->
    127.0.0.1:client_port (so a closed-but-unread connection is not mistaken for open)."""
    inodes = set()
    for path in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    lport = int(p[1].rsplit(':', 1)[1], 16)
                    rport = int(p[2].rsplit(':', 1)[1], 16)
                    if lport == server_port and rport == client_port:
                        inodes.add(p[9])
        except OSError:
            pass
    if not inodes:
        return False
    try:
        for fd in os.listdir('/proc/%d/fd' % pid):
            try:
                link = os.readlink('/proc/%d/fd/%s' % (pid, fd))
            except OSError:
                continue
            if link.startswith('socket:[') and link[8:-1] in inodes:
                return True
    except OSError:
        pass
    return False


def raw(port, greet=True, timeout=10):
    s = socket.create_connection(('127.0.0.1', port), timeout)
    if greet:
        s.recv(4096)
    return s


def recv_all(s, wait=2.0, limit=1 << 20):
    """Everything the server sends until EOF or `wait` seconds of silence."""
    s.settimeout(wait)
    out = b''
    try:
        while len(out) < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, OSError):
        pass
    return out


def closed_within(s, seconds):
    """True when the server closes s within `seconds` (reads and drops what comes)."""
    end = time.time() + seconds
    s.settimeout(0.2)
    while time.time() < end:
        try:
            chunk = s.recv(65536)
            if not chunk:
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def still_serves(mx, tag):
    code, _ = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], mt.message(tag))
    return code == 250


mt.need()
be = mt.Backend()
crt, key = mt.cert()
cfg = mt.config([be.url], workers=2,
                listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'},
                        {'address': '127.0.0.1:0', 'proxy_protocol': True}],
                limits={'max_connections': 50, 'max_connections_per_ip': 1000,
                        'max_message_size': '1M', 'max_recipients': 100,
                        'command_timeout': '%ds' % CMD_TIMEOUT, 'data_timeout': '%ds' % DATA_TIMEOUT,
                        'data_deadline': '%ds' % DATA_DEADLINE,
                        'max_errors': 10, 'bare_lf': 'reject',
                        # the floods below test memory and timers, not the junk limit
                        # (test_edge_error_limits.py): NOOP/RSET never count as errors here,
                        # nor the RSET storm's 5,000 MAILs (test_limits_mail_commands.py)
                        'max_junk_commands': 100000, 'max_mail_commands': 100000},
                trusted_proxies=['127.0.0.0/8'],
                tls={'certificate': crt, 'key': key})
mx = mt.Mxgate(cfg)
PORT, PPORT = mx.ports[0], mx.ports[1]
mt.check(still_serves(mx, 'baseline'), 'baseline message delivered')


# ----------------------------------------------------------------------------- slow, in threads
# The long waits (timeouts) run in the background while the quick cases run.

results = {}


def slowloris():
    """One byte per second of a never-ending command line: the command timeout bounds it."""
    s = raw(PORT)
    cport = s.getsockname()[1]
    t = time.time()
    line = b'EHLO ' + b'a' * 200
    closed = False
    for i in range(len(line)):
        try:
            s.send(line[i:i + 1])
        except OSError:
            closed = True
            break
        if closed_within(s, 1.0):
            closed = True
            break
        if time.time() - t > 3 * CMD_TIMEOUT + 4:
            break
    results['slowloris'] = (closed or not daemon_holds(mx.pid, PORT, cport), time.time() - t)
    s.close()


def slow_data_open():
    """The slow-DATA client's session up to its 354, before the other slow clients start.
    Its MAIL and RCPT need the backend, a thread of this process: with the 100,000-NOOP
    flood and the rest sharing it, that backend may answer late (past a reply timeout)
    and RCPT is answered 4xx, as it should be. The session
    then never enters DATA, and the trickle below would be a command line ended by
    command_timeout: not what this case is about. Returns (socket, the replies read)."""
    s = raw(PORT)
    s.sendall(b'EHLO slow.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n')
    s.settimeout(30)   # bounds a broken daemon only: mxgate answers within its reply_timeout
    got = b''
    while not re.search(rb'(^|\n)(354|[45]\d\d) ', got):
        try:
            chunk = s.recv(65536)
        except OSError:
            chunk = b''
        if not chunk:
            break
        got += chunk
    return s, got


def slow_data(s):
    """One byte per second inside DATA: each read comes well within data_timeout, so only
    the whole-DATA deadline can end it."""
    t = time.time()
    closed = False
    while time.time() - t < 3 * DATA_DEADLINE + 4:
        try:
            s.send(b'x')
        except OSError:
            closed = True
            break
        if closed_within(s, 1.0):
            closed = True
            break
    results['slow_data'] = (closed, time.time() - t)
    s.close()


def steady_commands():
    """A NOOP a second for twice the command timeout: each comes well within it, so the
    session stays (the timer started at the first command fires at its first due time and
    runs on for the rest); then silence: the timeout's 421 4.4.2 and the close."""
    s = raw(PORT)
    codes = []
    # A fixed number of NOOPs, not "until 2 * CMD_TIMEOUT + 1 s have passed": with a second's
    # pause after each, 2 * CMD_TIMEOUT + 1 of them span more than twice the timeout however
    # slowly the machine answers (under ASan and load a loop bounded by the clock sent only 4).
    for _ in range(2 * CMD_TIMEOUT + 1):
        try:
            s.sendall(b'NOOP\r\n')
            s.settimeout(CMD_TIMEOUT + 30)
            codes.append(s.recv(4096)[:3])
        except OSError:
            codes.append(b'err')
            break
        time.sleep(1.0)     # the client's pace, well inside command_timeout
    t = time.time()
    tail = recv_all(s, wait=mt.slack(CMD_TIMEOUT + 10))
    results['steady_commands'] = (codes, tail, time.time() - t)
    s.close()


def noop_flood():
    """100,000 pipelined NOOPs from a client that never reads a reply."""
    r0 = rss_kib(mx.pid)
    s = raw(PORT)
    cport = s.getsockname()[1]
    s.settimeout(CMD_TIMEOUT + 30)
    blob = b'NOOP\r\n' * 100000
    t = time.time()
    try:
        s.sendall(blob)
        sent = 'all'
    except OSError as e:
        sent = 'stopped: %s' % e.__class__.__name__
    r1 = rss_kib(mx.pid)
    # The session must end (timeout) even though its replies are never read.
    gone = mt.wait_for(lambda: not daemon_holds(mx.pid, PORT, cport), CMD_TIMEOUT + 5 + 10, 0.25)
    results['noop_flood'] = (r0, r1, sent, bool(gone), time.time() - t)
    s.close()


def unread_replies():
    """A client with a small receive window that pipelines NOOPs and never reads: the
    replies back up in the daemon's write queue, which stops reading it. The command
    timeout's 421 cannot go out either; the session must still end (it used to linger for
    ever in closing, and held up the daemon's shutdown with it)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(('127.0.0.1', PORT))
    s.settimeout(10)
    s.recv(512)
    cport = s.getsockname()[1]
    s.setblocking(False)
    blob = b'NOOP\r\n' * 10000
    t = time.time()
    blocked_since = None
    while time.time() - t < CMD_TIMEOUT:
        try:
            s.send(blob)
            blocked_since = None
        except BlockingIOError:
            blocked_since = blocked_since or time.time()
            if time.time() - blocked_since > 1.0:
                break          # the daemon stopped reading us
            time.sleep(0.05)
        except OSError:
            break
    gone = mt.wait_for(lambda: not daemon_holds(mx.pid, PORT, cport), mt.slack(CMD_TIMEOUT + 5 + 10), 0.25)
    results['unread_replies'] = (bool(gone), time.time() - t)
    s.close()


slow_sock, slow_replies = slow_data_open()
in_data = re.search(rb'(^|\n)354 ', slow_replies) is not None
mt.check(in_data, 'DATA at 1 byte/s: the session reached DATA (%r)' % slow_replies[-120:])
threads = [threading.Thread(target=f, daemon=True) for f in (slowloris, noop_flood, unread_replies,
                                                             steady_commands)]
if in_data:
    threads.append(threading.Thread(target=slow_data, args=(slow_sock,), daemon=True))
for th in threads:
    th.start()


# ----------------------------------------------------------------------------- quick cases

# A 10 MB line without a newline: discarded in bounded memory; the session goes on or ends.
r0 = rss_kib(mx.pid)
s = raw(PORT)
try:
    chunk = b'A' * 65536
    for _ in range(160):
        s.sendall(chunk)
    s.sendall(b'\r\nNOOP\r\n')
    got = recv_all(s, 2.0)
except OSError:
    got = b'(closed)'
r1 = rss_kib(mx.pid)
mt.check(got.startswith(b'500') or got.startswith(b'421') or got == b'(closed)',
         '10 MB line: answered 500/421 or closed (got %r)' % got[:60])
mt.check(r1 - r0 < 20 * 1024, '10 MB line: RSS grew %d KiB (< 20 MiB)' % (r1 - r0))
s.close()

# DATA of 100 MB with max_message_size 1M: memory bounded, 552 after the dot, nothing
# delivered, and the body is not read as commands afterwards (it was, then memmove(negative)
# crashed the daemon: fixed in 7460131).
before = len(be.messages)
r0 = rss_kib(mx.pid)
c = mt.Client(PORT, timeout=60)
c.ehlo()
c.cmd('MAIL FROM:<big@example.org>')
c.cmd('RCPT TO:<rcpt@example.test>')
code, _ = c.cmd('DATA')
t = time.time()
line = b'0123456789' * 99 + b'\r\n'
block = line * 1024            # ~1 MB
code, text = None, ''
try:
    c.send(mt.message('huge'))
    for _ in range(100):
        c.send(block)
    r1 = rss_kib(mx.pid)
    c.send(b'RSET\r\nNOOP\r\n.\r\n')
    code, text = c.reply()
    code2, _ = c.cmd('NOOP')
except OSError as e:
    r1 = rss_kib(mx.pid)
    code, text, code2 = None, str(e), None
mt.check(r1 - r0 < 40 * 1024, '100 MB DATA over a 1M limit: RSS grew %d KiB (< 40 MiB), %.1fs' % (r1 - r0, time.time() - t))
mt.check(code == 552, '100 MB DATA: 552 after the dot (got %s %s)' % (code, text[:60]))
mt.check(code2 == 250 and c.pending(0.5) == b'', 'after 552 the session goes on; the body was not read as commands')
c.close()
time.sleep(0.3)
mt.check(len(be.messages) == before, '100 MB DATA: nothing delivered')
mt.check(mx.alive(), 'daemon alive after the 100 MB message')

# A bare LF in DATA (bare_lf: reject): 550 after the dot; the body lines that look like
# commands are not executed afterwards.
c = mt.Client(PORT)
c.ehlo()
c.cmd('MAIL FROM:<lf@example.org>')
c.cmd('RCPT TO:<rcpt@example.test>')
c.cmd('DATA')
c.send(b'Subject: lf\r\n\r\nbare\nLF\r\nRSET\r\nMAIL FROM:<smuggled@example.org>\r\n.\r\n')
code, _ = c.reply()
mt.check(code == 550, 'bare LF in DATA: 550 after the dot (got %s)' % code)
mt.check(c.pending(0.5) == b'' and c.cmd('NOOP')[0] == 250, 'bare LF: the body was not read as commands')
c.close()

# Binary garbage and NULs.
rnd = random.Random(7)
for i in range(5):
    s = raw(PORT)
    junk = bytes(rnd.getrandbits(8) for _ in range(20000)) + b'\x00' * 5000 + b'\r\n\x00QUIT\x00\r\n'
    try:
        s.sendall(junk)
        recv_all(s, 1.0)
    except OSError:
        pass
    s.close()
s = raw(PORT)
s.sendall(b'EHLO \x00\x01\x02\r\nMAIL FROM:<a\x00b@example.org>\r\n\x00\x00\x00\r\nRCPT TO:<\xff\xfe>\r\nQUIT\r\n')
got = recv_all(s, 2.0)
s.close()
mt.check(mx.alive() and still_serves(mx, 'after-junk'), 'binary garbage and NULs: daemon alive and serving')

# Thousands of RSETs (pipelined in batches, read back).
c = mt.Client(PORT)
c.ehlo()
ok = 0
for batch in range(10):
    c.send(b'MAIL FROM:<r@example.org>\r\nRSET\r\n' * 250)
    for _ in range(500):
        code, _ = c.reply()
        ok += code == 250
mt.check(ok == 5000, '5,000 MAIL+RSET pipelined: all 250 (got %d)' % ok)
code, _ = c.cmd('NOOP')
mt.check(code == 250, 'session fine after the RSET storm')
c.close()

# 1,000 recipients with max_recipients 100: 100 accepted, the rest 452, the message carries 100.
c = mt.Client(PORT, timeout=30)
c.ehlo()
c.cmd('MAIL FROM:<many@example.org>')
c.send(''.join('RCPT TO:<u%d@example.test>\r\n' % i for i in range(1000)))
codes = [c.reply()[0] for _ in range(1000)]
mt.check(codes.count(250) == 100 and codes.count(452) == 900,
         '1,000 RCPT with max_recipients 100: 100 x 250, 900 x 452 (got %d / %d)' % (codes.count(250), codes.count(452)))
code, _ = c.cmd('DATA')
if code == 354:
    c.send(mt.stuff(mt.message('many-rcpts')))
    code, _ = c.reply()
mt.check(code == 250, '... and the message is delivered (%s)' % code)
m = [x for x in be.messages if b'many-rcpts' in x['data']]
mt.check(len(m) == 1 and len(m[0]['rcpts']) == 100, '... to exactly 100 recipients at the backend')
c.close()

# Half-closed socket right after DATA's dot: no crash, the log stays sane.
log0 = mx.log_size()
s = raw(PORT)
s.sendall(b'EHLO half.test\r\nMAIL FROM:<half@example.org>\r\nRCPT TO:<rcpt@example.test>\r\nDATA\r\n')
time.sleep(0.3)
s.sendall(mt.stuff(mt.message('halfclosed')))
s.shutdown(socket.SHUT_WR)
got = recv_all(s, 5.0)
s.close()
mx.wait_log(r'event=disconnect', 10, log0)
at_backend = any(b'halfclosed' in x['data'] for x in be.messages)
newlog = mx.log()[log0:]
delivered_logged = 'event=delivered' in newlog
mt.check(mx.alive(), 'half-closed after the dot: daemon alive')
mt.check('event=disconnect' in newlog, 'half-closed: the session is logged as ended')
mt.check(not delivered_logged or at_backend, 'half-closed: a logged delivery is really at the backend')
mt.say('note: half-closed client: %s; client saw %r' % (
    'delivered (250 %s)' % ('seen' if b'250 2.0.0 Ok: queued' in got else 'not seen') if at_backend
    else 'not delivered (session aborted on EOF)', got[-80:]))

# TLS garbage after STARTTLS.
c = mt.Client(PORT)
c.ehlo()
code, _ = c.cmd('STARTTLS')
mt.check(code == 220, 'STARTTLS offered (220)')
c.send(bytes(rnd.getrandbits(8) for _ in range(4000)))
mt.check(c.is_closed(3), 'TLS garbage after STARTTLS: connection closed promptly')
c.close()
# A TLS record header promising a huge record, then silence: the command timeout ends it.
c = mt.Client(PORT)
c.ehlo()
c.cmd('STARTTLS')
t = time.time()
c.send(b'\x16\x03\x01\x40\x00' + b'\x01' * 100)
closed = c.is_closed(CMD_TIMEOUT + 5)
mt.check(closed, 'stalled TLS handshake: closed after %.1fs (command_timeout %ds)' % (time.time() - t, CMD_TIMEOUT))
c.close()
mt.check(still_serves(mx, 'after-tls'), 'still serving after TLS abuse')

# PROXY v1 header split byte by byte; v2 likewise.
hdr = b'PROXY TCP4 198.18.0.7 127.0.0.1 40000 25\r\n'
s = socket.create_connection(('127.0.0.1', PPORT), 10)
for i in range(len(hdr)):
    s.send(hdr[i:i + 1])
    time.sleep(0.01)
s.settimeout(5)
g = s.recv(512)
mt.check(g.startswith(b'220'), 'PROXY v1 split byte by byte: greeted (%r)' % g[:40])
s.close()
mt.check(mx.wait_log(r'event=connect client=198\.18\.0\.7 ', 5) is not None, 'PROXY v1: client address taken from the header')
v2 = (b'\r\n\r\n\x00\r\nQUIT\n' + bytes([0x21, 0x11]) + struct.pack('!H', 12) +
      socket.inet_aton('198.18.0.8') + socket.inet_aton('127.0.0.1') + struct.pack('!HH', 40001, 25))
s = socket.create_connection(('127.0.0.1', PPORT), 10)
for i in range(len(v2)):
    s.send(v2[i:i + 1])
    time.sleep(0.01)
s.settimeout(5)
g = s.recv(512)
mt.check(g.startswith(b'220'), 'PROXY v2 split byte by byte: greeted (%r)' % g[:40])
s.close()

# PROXY garbage: closed, no greeting.
for junk in (b'PROXY GARBAGE GARBAGE\r\n', b'PROXY TCP4 999.1.1.1 1.2.3.4 99999 -1\r\n',
             b'\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff' + b'\x00' * 64,
             bytes(rnd.getrandbits(8) for _ in range(700))):
    s = socket.create_connection(('127.0.0.1', PPORT), 10)
    try:
        s.sendall(junk)
    except OSError:
        pass
    got = recv_all(s, 3.0)
    s.close()
    mt.check(not got.startswith(b'220'), 'PROXY garbage %r...: no greeting (got %r)' % (junk[:16], got[:40]))

# A PROXY listener fed plain SMTP: refused, never served.
s = socket.create_connection(('127.0.0.1', PPORT), 10)
s.sendall(b'EHLO plain.test\r\nMAIL FROM:<a@example.org>\r\n')
got = recv_all(s, 3.0)
s.close()
mt.check(b'250' not in got, 'plain SMTP on a PROXY listener: not served (got %r)' % got[:40])
# A PROXY listener's peer that sends nothing, or half a header, and waits: closed without a
# reply once the documented 10 s are over (listen[].proxy_protocol), never held for ever.
for part in (b'', b'PROXY TCP4 198.18.0.9 127.0.0.1 4'):
    s = socket.create_connection(('127.0.0.1', PPORT), 10)
    s.sendall(part)
    s.settimeout(mt.slack(20))
    got, shut = b'', False
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                shut = True
                break
            got += chunk
    except socket.timeout:
        pass
    except OSError:
        shut = True
    s.close()
    mt.check(shut and not got, 'a PROXY listener, %r and silence: closed within the header timeout, no reply'
             % part[:20])
mt.check(mx.alive() and still_serves(mx, 'after-proxy'), 'still serving after PROXY abuse')

# ----------------------------------------------------------------------------- the slow ones

for th in threads:
    th.join(60)

ok, secs = results.get('slowloris', (None, 0))
mt.check(ok is not None and ok and secs <= mt.slack(2 * CMD_TIMEOUT + 2),
         'slowloris (1 byte/s): ended within about command_timeout (%.1fs)' % secs)
ok, secs = results.get('slow_data', (None, 0))
mt.check(ok is not None and ok and secs <= mt.slack(DATA_DEADLINE + 3),
         'DATA at 1 byte/s: cut off by the %ds data_deadline (%.1fs)' % (DATA_DEADLINE, secs))
mt.check(mx.count_log(r'event=timeout state=data') >= 1, 'the DATA deadline is logged as a timeout')
codes, tail, secs = results.get('steady_commands', ([], b'', 0))
mt.check(len(codes) >= 2 * CMD_TIMEOUT and all(c == b'250' for c in codes),
         'a NOOP a second for twice command_timeout: every one answered 250 (%r)' % codes)
mt.check(tail.startswith(b'421 4.4.2'),
         'then silent: 421 4.4.2 after command_timeout and the close (%r after %.1fs)' % (tail[:40], secs))
r = results.get('noop_flood')
mt.check(r is not None, 'NOOP flood finished')
if r:
    r0, r1, sent, gone, secs = r
    mt.check(r1 - r0 < 20 * 1024, 'NOOP flood (never reads): RSS %d -> %d KiB (< 20 MiB growth); send %s' % (r0, r1, sent))
    mt.check(gone, 'NOOP flood: the daemon closed the session after command_timeout (%.1fs)' % secs)
gone, secs = results.get('unread_replies', (None, 0))
mt.check(gone is not None and gone,
         'replies never read (small window): the session is dropped after the timeout and the linger (%.1fs)' % secs)

# Connection flood: max_connections 50 -> the 51st gets 421; after closing, new ones served.
held = []
for i in range(50):
    try:
        held.append(raw(PORT))
    except OSError:
        break
mt.check(len(held) == 50, '50 connections open (%d)' % len(held))
extra = socket.create_connection(('127.0.0.1', PORT), 10)
extra.settimeout(5)
try:
    first = extra.recv(512)
except OSError:
    first = b''
extra.close()
mt.check(first.startswith(b'421'), 'the 51st connection gets 421 (got %r)' % first[:60])
for h in held:
    h.close()
time.sleep(0.5)
after = mt.wait_for(lambda: still_serves(mx, 'after-flood-%f' % time.time()), 5, 0.2)
mt.check(after, 'after the flood closed, new clients are served')

mt.check(mx.alive(), 'daemon alive at the end')
mx.stop()

mt.say('took %.1fs' % (time.time() - T0))
mt.finish()
