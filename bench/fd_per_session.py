#!/usr/bin/env python3
"""Descriptors one session holds at its heaviest, counted in /proc/PID/fd (the figure behind
main.c's file-limit sizing (main_fd_budget) and the default limits.max_connections: docs/operations.md,
"File descriptors").

mxgate with a backend, STARTTLS, a milter (tests/peers/mx_milter.py), rspamd's protocol
(tests/peers/fake_rspamd.py) and, when installed, clamd and spamd; N clients each send a
message whose body says SLOWME, which the milter holds at its end of message for a while:
meanwhile each session holds its client connection, its backend connection (opened at MAIL
FROM), its milter connection and whatever scanner ran before. The count during the hold,
less the count before, over N.

    bench/fd_per_session.py [N]          (MXGATE_BIN: the binary, as the tests)
"""
import os
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))
import mxtest as mt  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 40
HOLD = 15


def fds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


be = mt.Backend(name='FB')
mil = mt.milter(stall=HOLD)
rs = mt.fake_rspamd()
plugins = [{'name': 'rspamd', 'address': '127.0.0.1:%d' % rs.port}]
for name, start in (('clamd', mt.clamd), ('spamd', mt.spamd)):
    if mt.tool(name):
        p = start()
        plugins.append({'name': name, 'address': '127.0.0.1:%d' % p.port})
plugins.append({'name': 'milter', 'address': 'inet:%d@127.0.0.1' % mil.port, 'timeout': '%ds' % (HOLD * 3)})
crt, key = mt.cert()
cfg = mt.config([be.url], workers=2, plugins=plugins,
                listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}],
                tls={'certificate': crt, 'key': key})
mx = mt.Mxgate(cfg, name='mx-fds')
time.sleep(1.5)
before = fds(mx.pid)
clients = []


def one(i):
    c = mt.Client(mx.port, timeout=HOLD * 4)
    c.ehlo()
    c.starttls()
    c.ehlo()
    c.cmd('MAIL FROM:<s%d@example.org>' % i)
    c.cmd('RCPT TO:<r@example.test>')
    c.cmd('DATA')
    c.send(b'Subject: fds %d\r\n\r\nSLOWME\r\n.\r\n' % i)
    clients.append(c)


threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
for t in threads:
    t.start()
for t in threads:
    t.join()
peak = before
end = time.time() + HOLD * 0.8
while time.time() < end:
    peak = max(peak, fds(mx.pid))
    time.sleep(0.05)
per = (peak - before) / N
print('plugins: %s' % ', '.join(p['name'] for p in plugins))
print('descriptors before: %d, with %d sessions held at the milter\'s end of message: %d' % (before, N, peak))
print('per session: %.2f' % per)
for c in clients:
    c.close()
mx.stop(expect_rc=None)
mt.finish()
