#!/usr/bin/env python3
"""`mxgatectl greylist list` with the Redis store runs on the main loop (health checks,
metrics, the status page, every other control request wait meanwhile) and its steps were
bounded one by one (each within greylist.timeout), not as a whole: up to 200 SCAN calls and
two commands per triplet listed, 10,000 at most. Behind a Redis that answers each command
in 60 ms (under the 500 ms timeout: nothing failed), listing 150 triplets held the main loop
for 150 x 2 x 60 ms = 18 s. Now the walk stops after one second of Redis work and says so
(truncated: "more not listed"), with what it found by then.

The slow Redis: a python relay in front of a real redis-server that holds each reply 60 ms."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
CTL = mt.mxgatectl()
red = mt.redis()
be = mt.Backend()
N = 150
for i in range(N):
    key = 'mxgate:gl:198.18.%d.0/24|a@example.org|u%d@example.test' % (i % 200, i)
    mt.redis_cmd(red.port, 'HSET', key, 'first', str(int(time.time() * 1000)))
    mt.redis_cmd(red.port, 'PEXPIRE', key, 3600000)

relay = mt.TcpForwarder(red.port, reply_delay=0.06)   # Redis, each reply 60 ms late
sock = os.path.join(mt.TMP, 'ctl.sock')
mx = mt.Mxgate(mt.proxied_config(
    [be.url], control={'socket': sock},
    greylist={'enabled': True, 'store': 'redis://127.0.0.1:%d' % relay.port, 'timeout': '500ms'}), 'node')
r = subprocess.run([CTL, '-s', sock, 'greylist', 'list', '1000'], capture_output=True, text=True,
                   timeout=mt.slack(60))
lines = [x for x in r.stdout.splitlines() if '|' in x]
mt.check(r.returncode == 0 and 'more not listed' in r.stdout,
         'the list stops on its time budget and says so: rc=%s %r %r' % (r.returncode, r.stdout[-200:], r.stderr))
mt.check(0 < len(lines) < N, 'with what it found by then: %d of %d' % (len(lines), N))
mx.stop()
relay.lsock.close()
mt.finish()
