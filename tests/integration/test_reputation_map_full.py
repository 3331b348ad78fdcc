#!/usr/bin/env python3
"""An LMDB map (reputation's, shared by greylisting) reaching its size. Before, every batch
failed once the map was full (event=lmdb_error reason="MDB_MAP_FULL", logged once a minute,
the updates dropped), and the hourly sweep ran inside those failing batches, so nothing was
ever removed: reputation stopped learning and greylisting stopped remembering, for good.
Now a writer whose map is full or near full evicts the stalest of its own records (the
oldest last update for reputation, the nearest expiry for greylisting), logged as
event=lmdb_evict and counted in mxgate_store_evictions_total{store="lmdb:<module>"}, and goes
on.

The map is 1 MiB (the smallest reputation.map_size; greylisting shares the directory, so
the first opener's size holds). One client floods it with 3,000 long greylist triplets
(451 each, delay 0s), 200 at a time, each lot committed before the next. Then: no batch failed, greylisting evicted its stalest triplets (the
first one of the flood is greylisted again, the last one passes), and a new client whose
messages keep being rejected still turns bad and is refused at connect (reputation learns)."""
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
DIR = os.path.join(mt.TMP, 'rep')
BAD = '2001:db8:ffff:1::7'
FLOOD = 3000
mx = mt.Mxgate(mt.proxied_config(
    [be.url], workers=1, limits={'max_recipients': 5000},
    reputation={'store': 'lmdb:' + DIR, 'map_size': '1M', 'flush_interval': '50ms',
                'bad_action': 'tempfail', 'bad_threshold': -0.45},
    greylist={'enabled': True, 'store': 'lmdb:' + DIR, 'delay': '0s', 'retry_window': '1h',
              'allow': ['2001:db8:ffff::/48', '198.18.96.0/24']},
    ratelimit={'rules': [{'key': 'ip', 'count': 'bytes', 'limit': '1/1h', 'action': 'reject'}]},
    metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}), 'node')
MPORT = mx.metrics_port
SENDER = 's' * 60 + '@' + 'sender-domain.' * 4 + 'example.org'


def rcpt(i):
    return 'r%05d' % i + 'x' * 50 + '@' + 'recipient-domain.' * 4 + 'example.test'


def metric(name, store):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % MPORT, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'^mxgate_%s\{store="%s"\} (\S+)$' % (name, re.escape(store)), text, re.M)
    return float(m.group(1)) if m else 0.0


def rcpts(names):
    """One session: MAIL, then the RCPTs pipelined 500 at a time; the RCPT codes."""
    c = mt.Client(mx.port, proxy_src='198.18.95.1', timeout=30)
    c.ehlo('mail.example.org')
    c.cmd('MAIL FROM:<%s>' % SENDER)
    codes = []
    for k in range(0, len(names), 500):
        part = names[k:k + 500]
        c.send(''.join('RCPT TO:<%s>\r\n' % r for r in part))
        codes += [c.reply()[0] for _ in part]
    c.cmd('QUIT')
    c.close()
    return codes


def send(src, tag):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src, timeout=15)[0]


# a little history first: a client delivers
mt.check(send('198.18.96.1', 'first') == 250, 'a first client delivers')
t0 = time.time()
codes = []
DATA = os.path.join(DIR, 'data.mdb')
for k in range(0, FLOOD, 200):
    # 200 at a time, each lot in a batch of its own (a commit writes the file: its mtime
    # moves), so the map fills with what was committed, as it does over days
    stamp = os.stat(DATA).st_mtime_ns
    errors = mx.count_log(r'event=lmdb_error')
    codes += rcpts([rcpt(i) for i in range(k, k + 200)])
    mt.wait_for(lambda: os.stat(DATA).st_mtime_ns != stamp or mx.count_log(r'event=lmdb_error') > errors,
                timeout=mt.slack(5))
mt.check(codes == [451] * FLOOD, '%d new triplets greylisted (%.1f s): %s' % (FLOOD, time.time() - t0, sorted(set(codes))))
got = mx.wait_log(r'event=lmdb_(evict|error)', mt.slack(20))
mt.check(got is not None, 'the 1 MiB map filled up (a log line about it)')
mt.check(mx.count_log(r'event=lmdb_error') == 0, 'no batch failed: %s'
         % (re.findall(r'.*event=lmdb_error.*', mx.log())[:2]))
m = mx.wait_log(r'event=lmdb_evict store=lmdb:\S+ module=greylist evicted=\d+ total=\d+ .*reason=\w+', 5)
mt.check(m is not None, 'the eviction is logged: %s' % (m and m.group(0)))
ev = metric('store_evictions_total', 'lmdb:greylist')
mt.check(ev > 0, 'and counted: mxgate_store_evictions_total{store="lmdb:greylist"} %s' % ev)
codes = rcpts([rcpt(0), rcpt(FLOOD - 1)])
mt.check(codes == [451, 250], 'the stalest triplet was evicted (greylisted again), the newest is kept (passes): %s'
         % codes)

# reputation still learns: a new client rejected again and again turns bad
bad = []
deadline = time.time() + mt.slack(30)
while time.time() < deadline and len(bad) < 500 and (not bad or bad[-1] != 421):
    bad.append(send(BAD, 'bad%d' % len(bad)))
mt.check(bad and bad[-1] == 421, 'after the map was full a new client whose messages are rejected is refused at '
         'connect after %d: %s' % (len(bad), bad[-5:]))
mt.check(mx.count_log(r'event=lmdb_error') == 0, 'still no batch failed')
for m in ('reputation', 'greylist'):
    mt.check(metric('store_writes_dropped_total', 'lmdb:' + m) == 0, 'no %s update dropped' % m)
mx.stop()
mt.finish()
