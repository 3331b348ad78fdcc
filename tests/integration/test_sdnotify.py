#!/usr/bin/env python3
"""systemd readiness with the real daemon and a fake $NOTIFY_SOCKET (an abstract datagram
socket the test binds): READY=1 comes only after the listeners are bound and the backends'
first health check ran; STATUS= lines; WATCHDOG=1 at half $WATCHDOG_USEC; RELOADING=1 with
MONOTONIC_USEC and READY=1 around a reload; STOPPING=1 on SIGTERM.

The backend is a scripted SMTP server that holds its greeting until the test lets it go, so
the first health check cannot finish before the test has looked: the order is checked, not
the time anything took."""
import os
import signal
import socket
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()


class HeldBackend(mt.Backend):
    """mxtest's scripted backend, except that each connection waits for `release` before
    the greeting."""

    def __init__(self):
        self.release = threading.Event()
        self.connected = threading.Event()
        super().__init__()

    def _serve(self, c):
        self.connected.set()
        self.release.wait()
        super()._serve(c)


notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
name = 'mxtest-notify-%d' % os.getpid()
notify.bind('\0' + name)
notify.settimeout(0.2)
got = []


def drain():
    """Everything received so far (non-blocking beyond a short poll)."""
    while True:
        try:
            got.append(notify.recv(4096).decode())
        except socket.timeout:
            return got


def wait_msg(pred, timeout=15):
    def look():
        drain()
        return next((m for m in got if pred(m)), None)
    return mt.wait_for(look, timeout)


be = HeldBackend()
os.environ['NOTIFY_SOCKET'] = '@' + name
os.environ['WATCHDOG_USEC'] = '400000'
os.environ.pop('WATCHDOG_PID', None)
cfg = mt.config([be.url],
                backends={'health_check': {'interval': '1s', 'timeout': '30s', 'fall': 1, 'rise': 1}})
mx = mt.Mxgate(cfg)
del os.environ['NOTIFY_SOCKET'], os.environ['WATCHDOG_USEC']

mt.check(be.connected.wait(mt.slack(15)), 'the first health check reaches the backend')
mt.check(mt.wait_port(mx.port, 5), 'the SMTP listener is bound and accepting')
drain()
mt.check(any(m.startswith('STATUS=') for m in got), 'a STATUS= line while starting (%r)' % got[:3])
mt.check(not any('READY=1' in m for m in got),
         'no READY=1 while the first health check is still waiting for the backend (%r)' % got[:5])
be.release.set()
ready = wait_msg(lambda m: 'READY=1' in m)
mt.check(ready is not None, 'READY=1 once the first health check completed (%r)' % ready)
mt.check(be.connections >= 1 and be.release.is_set(), 'the backend had been let go by then')
mt.check(ready is not None and 'STATUS=ready' in ready, 'READY=1 comes with a STATUS= line (%r)' % ready)
mt.check(wait_msg(lambda m: m == 'WATCHDOG=1') is not None, 'WATCHDOG=1 pings with WATCHDOG_USEC set')

# reload: RELOADING=1 + MONOTONIC_USEC, then READY=1 again
got.clear()
mx.send_signal(signal.SIGHUP)
rel = wait_msg(lambda m: m.startswith('RELOADING=1'))
mt.check(rel is not None and 'MONOTONIC_USEC=' in rel and int(rel.split('MONOTONIC_USEC=')[1].split()[0]) > 0,
         'SIGHUP: RELOADING=1 with MONOTONIC_USEC (%r)' % rel)
after = wait_msg(lambda m: 'READY=1' in m and 'generation 2' in m)
mt.check(after is not None and got.index(after) > got.index(rel), 'then READY=1 for generation 2 (%r)' % after)

# a bad reload still ends in READY=1 (the old generation serves)
got.clear()
good = open(mx.conf).read()
with open(mx.conf, 'w') as f:
    f.write(good + '\nbogus_key: 1\n')
mx.send_signal(signal.SIGHUP)
bad = wait_msg(lambda m: 'READY=1' in m)
mt.check(bad is not None and 'reload failed' in bad, 'a failed reload: READY=1 with STATUS=reload failed (%r)' % bad)
with open(mx.conf, 'w') as f:
    f.write(good)

got.clear()
mx.send_signal(signal.SIGTERM)
stop = wait_msg(lambda m: 'STOPPING=1' in m)
mt.check(stop is not None, 'SIGTERM: STOPPING=1 (%r)' % stop)
mx.stop(sig=None)
mt.finish()
