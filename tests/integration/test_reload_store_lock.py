#!/usr/bin/env python3
"""A reload that points greylist.store at a directory this process does not have open opens
it off the main loop (docs/operations.md "Running in containers", a store that cannot open).

Since session 31 a required LMDB store (greylist, reputation) is opened when a config
generation is built, so that one that cannot open stops the start or keeps the old config on a
reload (test_store_open_refused). On a reload that open ran on the main loop: mdb_env_open waits
without a bound for lock.mdb's lock while another process holds it (one stopped inside its own
open: here the test holds that fcntl lock itself), and the control socket and /metrics waited
with it. Now the reload opens such a store on a thread of the pool (as it resolves backend
names) and the main loop only takes a reference: status and /metrics answer while the lock is
held, the reload is put in force once it is let go, and greylisting then uses the new store.
"""
import os
import signal
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.mxgatectl()       # built, or the test is skipped
be = mt.Backend()
SOCK = os.path.join(mt.TMP, 'ctl.sock')
A = os.path.join(mt.TMP, 'grey-a')
B = os.path.join(mt.TMP, 'grey-b')
METRICS = mt.hold_port().port


def cfg(store):
    return mt.config([be.url], workers=1, control={'socket': SOCK},
                     metrics={'listen': '127.0.0.1:%d' % METRICS},
                     greylist={'enabled': True, 'store': 'lmdb:' + store, 'delay': '1h', 'retry_window': '2h'})


mx = mt.Mxgate(cfg(A), 'mx')
mt.check(mx.wait_log(r'event=ready generation=1 ', 10) is not None, 'started with the greylist store in grey-a')
got = {}


def asks():
    mx.reload(cfg(B))
    got['reload'] = mx.wait_log(r'event=reload file=', 20) is not None
    got['status'] = mt.ctl_text(SOCK, 'status')
    got['metrics'] = mt.http_get(mx.metrics_port, '/metrics', timeout=20)
    got['reloaded'] = 'event=reloaded generation=2' in mx.log()


answered = mt.lmdb_lock_held(B, asks, mt.slack(60))
mt.say('while the lock on grey-b was held: %r' % {k: (v if isinstance(v, bool) else (v[0], str(v[1])[:120]))
                                                  for k, v in got.items()})
mt.check(answered and got.get('reload'), 'the reload began and every request ended while the lock was held')
mt.check(got.get('status', (None,))[0] == 0, 'mxgatectl status answers while the lock is held: %r' % (got.get('status'),))
mt.check(got.get('metrics', (None,))[0] == 200, '/metrics answers while the lock is held: %r' % (got.get('metrics', (None,))[0],))
mt.check(got.get('reloaded') is False, 'the reload waits for the store meanwhile (not put in force yet)')
mt.check(mx.wait_log(r'event=reloaded generation=2 ', 30) is not None,
         'once the lock is let go the reload is put in force (%s)' % mx.tail(5))
code, _ = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('grey'))
mt.check(code == 451 or code == 450, 'greylisting works on the new store (%s)' % code)
mt.check(os.path.exists(os.path.join(B, 'data.mdb')), 'the map is in grey-b')
mx.stop()
mt.finish()
