#!/usr/bin/env python3
"""`flush passcache` and `passcache` over LMDB pass stores (docs/operations.md, control verbs):

- the main loop opens no LMDB directory for them. Before, a store the process did not have
  open (its module off, or its workers' open failed) was opened by the verb on the main loop:
  mkdir and mdb_env_open there, which waits without a bound for lock.mdb's lock while another
  process holds it (a process stopped inside its own open: here the test holds that fcntl
  lock itself). The control socket and /metrics then stalled until it let go. Now such a
  store is not marked — the verb fails naming it — and `passcache` shows no map figures;
  both answer, and /metrics too, while the lock is held;
- each module's marker is written by a writer of that module's name: the metrics label
  store="lmdb:dnsbl_pass" for the DNS lists' store (it said lmdb:pregreet_pass whatever it
  flushed);
- /metrics says how full each open LMDB map is: mxgate_store_map_used_bytes and
  mxgate_store_map_size_bytes{store="lmdb:DIR"} (nothing told an operator before the map
  filled);
- a failed LMDB flush does not speak of "other nodes" (that is Redis: an LMDB map is this
  host's): it says the passes may be known again after a restart.
"""
import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.mxgatectl()       # built, or the test is skipped
be = mt.Backend()
SOCK = os.path.join(mt.TMP, 'ctl.sock')
DNSBL_DIR = os.path.join(mt.TMP, 'dnsbl-pass')
IN_WAY = os.path.join(mt.TMP, 'in-the-way')      # a file: pregreet's store cannot be opened
PG_DIR = os.path.join(IN_WAY, 'db')
with open(IN_WAY, 'w') as f:
    f.write('a file where a directory should be\n')

cfg = mt.config([be.url], control={'socket': SOCK},
                metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                dns={'resolvers': ['127.0.0.1:%d' % mt.dead_port()], 'timeout': '1s'},
                pregreet={'delay': '1s', 'action': 'score', 'pass_ttl': '1h', 'pass_store': 'lmdb:' + PG_DIR},
                dnsbl={'threshold': 3, 'pass_ttl': '1h', 'pass_store': 'lmdb:' + DNSBL_DIR,
                       'lists': [{'zone': 'bl.test', 'weight': 3}]})
mx = mt.Mxgate(cfg, 'mx')
mt.check(mx.wait_log(r'event=module_error module=pregreet worker=\d+ reason=pass_store', 10) is not None,
         "pregreet's store does not open (a file in its way): logged")


def ctl(*args):
    # bounded: on main the verb waited for the lock as long as it was held
    return mt.ctl_text(SOCK, *args)


# ---- a failed LMDB flush: its words; the markers' writers: their labels
rc, text = ctl('flush', 'passcache')
mt.say('flush passcache: rc=%r %s' % (rc, text))
mt.check(rc == 1 and 'pass stores: 1 of 2 not reached' in text and PG_DIR in text,
         'flush passcache fails, naming the store it could not mark: %s' % text)
mt.check('other nodes' not in text and 'known again after a restart' in text,
         'an LMDB store not marked: no "other nodes" (Redis wording), the restart instead: %s' % text)
mt.check(not os.path.exists(PG_DIR), 'the verb made nothing of that store')
status, metrics = mt.http_get(mx.metrics_port, '/metrics')
mt.check(status == 200 and 'store="lmdb:dnsbl_pass"' in metrics,
         "the DNS lists' store is labelled lmdb:dnsbl_pass")
# how full the map is, per directory (every user of it together), and how much it can hold
used = re.search(r'^mxgate_store_map_used_bytes\{store="lmdb:%s"\} (\S+)$' % re.escape(DNSBL_DIR), metrics, re.M)
size = re.search(r'^mxgate_store_map_size_bytes\{store="lmdb:%s"\} (\S+)$' % re.escape(DNSBL_DIR), metrics, re.M)
mt.check(used is not None and size is not None and 0 < float(used.group(1)) < float(size.group(1)) and
         float(size.group(1)) == 256 << 20,
         "the DNS lists' map: bytes in use and map_size (256 MiB) in /metrics: %s %s"
         % (used and used.group(0), size and size.group(0)))
mt.check('mxgate_store_map_used_bytes{store="lmdb:%s"' % PG_DIR not in metrics,
         'no map figures for a directory this process does not have open')
mt.check('lmdb:pregreet_pass' not in metrics,
         "the flush's marker in the DNS lists' store is not labelled pregreet_pass (pregreet has "
         "no store open here): %s" % [ln for ln in metrics.splitlines() if 'pregreet_pass' in ln][:3])

# ---- another process holds lock.mdb's lock on a directory the process does not have open
os.remove(IN_WAY)
got = {}


def asks():
    got['show'] = ctl('--json', 'passcache')
    got['flush'] = ctl('flush', 'passcache')
    got['status'] = ctl('status')
    got['metrics'] = mt.http_get(mx.metrics_port, '/metrics', timeout=20)


answered = mt.lmdb_lock_held(PG_DIR, asks, mt.slack(90))
mt.say('while the lock is held: %r' % {k: (v[0], v[1][:160]) for k, v in got.items()})
rc, text = got['show']
try:
    caches = {c['module']: c for c in json.loads(text)['passcaches']} if rc == 0 else {}
except ValueError:
    caches = {}
mt.check(answered and rc == 0 and 'pregreet' in caches and 'map_records' not in caches['pregreet'],
         'passcache answers while the lock is held, without map figures for the store not open: %s'
         % text[:300])
mt.check('map_records' in caches.get('dnsbl', {}), "and with them for the DNS lists' store (open)")
rc, text = got['flush']
mt.check(rc == 1 and 'not reached' in text and PG_DIR in text and 'not open in this process' in text,
         'flush passcache answers while the lock is held: that store is not marked, it says so: %s' % text)
mt.check(got['status'][0] == 0, 'mxgatectl status answers while the lock is held: %r' % (got['status'],))
mt.check(got['metrics'][0] == 200, '/metrics answers while the lock is held: %r' % (got['metrics'][0],))
mt.check(not os.path.exists(os.path.join(PG_DIR, 'data.mdb')), 'no map was made in that directory')
mx.stop()
shutil.rmtree(PG_DIR, ignore_errors=True)
mt.finish()
