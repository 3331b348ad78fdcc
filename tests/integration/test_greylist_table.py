#!/usr/bin/env python3
"""The greylist's local triplet table (store: local, and the fallback while Redis is down) is
bounded by greylist.max_keys. It was fixed at 100,000 triplets in the code, with nothing said
when it was full. Here max_keys is 64: a triplet that was greylisted once is remembered (its
retry passes at once with delay 0s) until 1,000 other triplets flood the table; then it has
been evicted (the triplet closest to expiring goes first) and its retry is a new first
attempt. The evictions are logged (event=local_table_full table=greylist, once a minute) and
counted (mxgate_store_evictions_total{store="local:greylist"}). The bound's range is checked
by mxgate -t, and a reload that changes it is logged as waiting for the next start."""
import os
import re
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
MAX = 64
FLOOD = 1000


def cfg(max_keys):
    return mt.proxied_config(
        [be.url], limits={'max_recipients': 5000},
        greylist={'enabled': True, 'store': 'local', 'delay': '0s', 'retry_window': '1h',
                  'max_keys': max_keys},
        metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})


rc, out = mt.config_check(cfg(5), 'small')
mt.check(rc != 0 and 'greylist.max_keys: must be between 16' in out,
         'mxgate -t refuses greylist.max_keys 5 (at least 16): %s %s' % (rc, out.strip()[-200:]))

n = mt.Mxgate(cfg(MAX), 'node')
MPORT = n.metrics_port


def metric(name, store):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % MPORT, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'^mxgate_%s\{store="%s"\} (\S+)$' % (name, re.escape(store)), text, re.M)
    return float(m.group(1)) if m else None


def rcpts(src, sender, names):
    """One session from src: MAIL, then each RCPT (pipelined); the RCPT codes."""
    c = mt.Client(n.port, proxy_src=src)
    c.ehlo('mail.example.org')
    c.cmd('MAIL FROM:<%s>' % sender)
    c.send(''.join('RCPT TO:<%s>\r\n' % r for r in names))
    codes = [c.reply()[0] for _ in names]
    c.cmd('QUIT')
    c.close()
    return codes


codes = rcpts('198.18.90.1', 'a@example.org', ['keep@example.test', 'keep@example.test'])
mt.check(codes == [451, 250], 'a new triplet is greylisted, its retry (delay 0s) passes: %s' % codes)
codes = rcpts('198.18.90.1', 'a@example.org', ['old@example.test'])
mt.check(codes == [451], 'another triplet greylisted once: %s' % codes)
mt.check(metric('store_evictions_total', 'local:greylist') in (None, 0.0), 'nothing evicted yet')

codes = rcpts('198.18.91.1', 's@example.org', ['r%d@example.test' % i for i in range(FLOOD)])
mt.check(codes == [451] * FLOOD, '%d new triplets greylisted: %s' % (FLOOD, sorted(set(codes))))
m = n.wait_log(r'event=local_table_full table=greylist max_keys=%d evicted=(\d+)' % MAX, 10)
mt.check(m is not None, 'the evictions are logged: %s' % (m and m.group(0)))
mt.check(n.count_log(r'event=local_table_full table=greylist') == 1, 'once (a minute), not per eviction')
ev = metric('store_evictions_total', 'local:greylist')
mt.check(ev is not None and ev >= FLOOD - MAX, 'mxgate_store_evictions_total{store="local:greylist"} %s >= %d'
         % (ev, FLOOD - MAX))
codes = rcpts('198.18.90.1', 'a@example.org', ['old@example.test'])
mt.check(codes == [451], 'the triplet greylisted before the flood was evicted: its retry is a first attempt again: %s'
         % codes)

start = n.log_size()
n.reload(cfg(1000))
mt.check(n.wait_log(r'event=reloaded', 10, start) is not None, 'reloaded')
mt.check(n.wait_log(r'event=config_unchanged key=greylist\.max_keys reason="takes effect at the next start" '
                    r'running=%d' % MAX, 10, start) is not None,
         'a changed greylist.max_keys is logged as waiting for the next start')
n.stop()
mt.finish()
