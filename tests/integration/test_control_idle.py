#!/usr/bin/env python3
"""The control socket's slots against clients that keep their connection between requests
(a monitoring script asking `status` once a minute, a dashboard): 16 such clients held
every slot for good (each answer started the 60 s idle timeout again) and the operator's
mxgatectl got "too many control connections".

- takeover: 16 clients, each asked once and waits; `mxgatectl status` answers (the slot of
  the one idle longest is taken over: that client reads EOF, event=control_takeover), and
  the other 15 still get answers on their connections.
- busy: 16 clients each owed replies they do not read are not taken over: the 17th is
  refused with ERR too many, as before.
- idle_timeout: control.idle_timeout 1s closes a connection idle 1 s (the default, 60 s,
  would hold it), logged event=control_closed reason=idle; a reload to 3s applies to the next
  wait.
"""
import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'control.sock')
SLOTS = 16


def reply(s):
    """One reply ("OK|ERR LEN\\n" + payload) from s: (head, payload), or (None, b'') at EOF."""
    head = b''
    while not head.endswith(b'\n'):
        c = s.recv(1)
        if not c:
            return None, b''
        head += c
    n = int(head.split()[1])
    body = b''
    while len(body) < n:
        c = s.recv(n - len(body))
        if not c:
            break
        body += c
    return head.decode().strip(), body


def wait_eof(s, t0=None):
    """Reads s until the daemon closes it: (what was read: b'' at EOF, b'?' on an error,
    seconds since t0, by default now)."""
    t0 = time.time() if t0 is None else t0
    try:
        got = s.recv(10)
    except OSError:
        got = b'?'
    return got, time.time() - t0


def client():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(mt.slack(10))
    s.connect(SOCK)
    return s


be = mt.Backend()
cfg = mt.config([be.url], control={'socket': SOCK, 'idle_timeout': '1h'})
mx = mt.Mxgate(cfg, name='mx-ctl-idle')

# ---------------------------------------------------------------- takeover
slow = []
for i in range(SLOTS):
    s = client()
    s.sendall(b'status\n')
    h, _ = reply(s)
    mt.check(h is not None and h.startswith('OK '), 'takeover: slow client %d answered (%s)' % (i, h))
    slow.append(s)
rc, out, err = mt.ctl(SOCK, 'status')
mt.check(rc == 0 and 'generation' in out,
         'takeover: with %d clients idle between requests, mxgatectl status answers (rc %d %r)'
         % (SLOTS, rc, (out or err)[:80]))
m = mx.wait_log(r'event=control_takeover idle_ms=(\d+)', 5)
mt.check(m is not None, 'takeover: logged event=control_takeover')
# the first slow client (idle the longest) lost its slot: it reads EOF; the others carry on
slow[0].settimeout(mt.slack(5))
first, _ = wait_eof(slow[0])
mt.check(first == b'', 'takeover: the client idle the longest was closed (%r)' % first)
answered = 0
for s in slow[1:]:
    s.sendall(b'status\n')
    h, _ = reply(s)
    answered += h is not None and h.startswith('OK ')
mt.check(answered == SLOTS - 1, 'takeover: the other %d slow clients are still answered (%d)' % (SLOTS - 1, answered))
for s in slow:
    s.close()

# ---------------------------------------------------------------- busy
# Each pipelines requests and reads no reply: its replies stay in flight (owed), so its
# slot is not taken; the 17th connection is refused.
busy = []
for i in range(SLOTS):
    s = client()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b'help\n' * 2000)
    busy.append(s)
extra = None
deadline = time.time() + mt.slack(10)
while time.time() < deadline:
    s = client()
    h, body = reply(s)
    s.close()
    extra = (h, body)
    if h is not None and h.startswith('ERR') and b'too many' in body:
        break
    time.sleep(0.1)
mt.check(extra is not None and extra[0] is not None and extra[0].startswith('ERR') and b'too many' in extra[1],
         'busy: with every slot owed replies, a new connection is refused: ERR too many (%r)' % (extra,))
for s in busy:
    s.close()
mt.check(mt.wait_for(lambda: mt.ctl(SOCK, 'status')[0] == 0, timeout=mt.slack(10)),
         'busy: once they are gone, status answers again')
mx.stop()

# ---------------------------------------------------------------- idle_timeout
# The EOF can only be the daemon's idle timer: the client says nothing and waits slack(10)
# for it, and the default (60 s) or the old value would not close the connection in that
# time or not yet. The lower bounds prove the configured wait: counted from before what
# starts the daemon's timer (the request answered, the connection accepted), a late client
# cannot make them short, nor load a timer early; no clock bounds it from above (a loaded
# machine closes late).
cfg = mt.config([be.url], control={'socket': SOCK, 'idle_timeout': '1s'})
mx = mt.Mxgate(cfg, name='mx-ctl-idle-1s')
s = client()
s.settimeout(mt.slack(10))
t0 = time.time()
s.sendall(b'status\n')
h, _ = reply(s)
eof, took = wait_eof(s, t0)
mt.check(h is not None and h.startswith('OK ') and eof == b'' and 0.8 <= took,
         'idle_timeout: 1s closes an idle connection after 1 s (%s, %r after %.2fs)' % (h, eof, took))
s.close()
m = mx.wait_log(r'event=control_closed reason=idle idle_ms=(\d+)', 5)
mt.check(m is not None and int(m.group(1)) >= 1000,
         'idle_timeout: the close is logged, event=control_closed reason=idle idle_ms>=1000 (%s)' % (m and m.group(0)))
cfg['control']['idle_timeout'] = '3s'
mx.reload(cfg)
mt.check(mx.wait_log(r'event=reloaded ', 10) is not None, 'idle_timeout: reloaded')
t0 = time.time()
s = client()
eof, took = wait_eof(s, t0)
mt.check(eof == b'' and 2.8 <= took,
         'idle_timeout: a reload to 3s applies to the next wait (%r after %.2fs)' % (eof, took))
s.close()
rc, out = mt.config_check(mt.config([be.url], control={'socket': SOCK, 'idle_timeout': '100ms'},
                                    listen=[{'address': '127.0.0.1:2525'}]),
                          name='idle-bad')
mt.check(rc == 1 and out.count(':') >= 3 and out.strip().count('\n') == 0 and 'control.idle_timeout: must be between 1s and 1h' in out,
         'idle_timeout: under 1s is refused by -t (%d %s)' % (rc, out.strip()))
mx.stop()
be.stop()
mt.finish()
