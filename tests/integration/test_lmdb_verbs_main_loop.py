#!/usr/bin/env python3
"""The greylist and reputation control verbs open no LMDB directory on the main loop
(docs/operations.md, control verbs), as the passcache verbs do not
(test_passcache_lmdb_verbs.py).

Before, `greylist show|pass|delete|list` and `flush reputation` over an LMDB store opened it
with lmdb_store_open on the main loop whenever this process did not have it open (its
workers' open failed, event=module_error): mkdir and mdb_env_open there, which waits without
a bound for lock.mdb's lock while another process holds it (one stopped inside its own
open: here the test holds that fcntl lock itself). The control socket and /metrics stalled
until it let go. Now the verbs take a reference to the environment the workers have open and
none other: with none, the greylist verbs fail naming the store ("not open in this
process"), `flush reputation` says no worker holds it, and status and /metrics answer
meanwhile. (The drain's end, when the last worker closed the map, opens it on a thread of its
own: test_reputation_control.)

`greylist allow|trap|disallow|untrap IP` (a client's own record, lc_ip_verb) still opened the
directory on the main loop (lmdb_store_open, to read the record, and again after a write from
there): with the lock held none of them answered, nor status and /metrics after them, and
once the lock went a map was made there. Now they too read only a map open here and answer
naming the store.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.mxgatectl()       # built, or the test is skipped
be = mt.Backend()
SOCK = os.path.join(mt.TMP, 'ctl.sock')
IN_WAY = os.path.join(mt.TMP, 'in-the-way')      # a file: the store cannot be opened
DIR = os.path.join(IN_WAY, 'db')
with open(IN_WAY, 'w') as f:
    f.write('a file where a directory should be\n')

cfg = mt.config([be.url], workers=1, control={'socket': SOCK},
                metrics={'listen': '127.0.0.1:%d' % mt.free_port()},
                greylist={'enabled': True, 'store': 'lmdb:' + DIR, 'delay': '1h', 'retry_window': '2h'},
                reputation={'store': 'lmdb:' + DIR})
mx = mt.Mxgate(cfg, 'mx')
mt.check(mx.wait_log(r'event=module_error module=greylist worker=\d+ reason=init', 10) is not None,
         "greylist's store does not open (a file in its way): logged")
mt.check(mx.wait_log(r'event=module_error module=reputation worker=\d+', 10) is not None,
         "reputation's store does not open: logged")


def ctl(*args):
    # bounded: on main the verb waited for the lock as long as it was held
    return mt.ctl_text(SOCK, *args)


# ---- another process holds lock.mdb's lock on the directory no worker has open
os.remove(IN_WAY)
TRIPLET = ('127.0.0.1', 'a@example.org', 'b@example.test')
IP_VERBS = ('allow', 'trap', 'disallow', 'untrap')
got = {}


def asks():
    got['show'] = ctl('greylist', 'show', *TRIPLET)
    got['pass'] = ctl('greylist', 'pass', *TRIPLET)
    got['list'] = ctl('greylist', 'list')
    got['reputation'] = ctl('flush', 'reputation', '192.0.2.1')
    for verb in IP_VERBS:
        got[verb] = ctl('greylist', verb, '192.0.2.7')
    got['status'] = ctl('status')
    got['metrics'] = mt.http_get(mx.metrics_port, '/metrics', timeout=20)


answered = mt.lmdb_lock_held(DIR, asks, mt.slack(150))
mt.say('while the lock is held: %r' % {k: (v[0], str(v[1])[:200]) for k, v in got.items()})
mt.check(answered, 'every verb answered while the lock was held')
for verb in ('show', 'pass', 'list') + IP_VERBS:
    rc, text = got[verb]
    mt.check(rc == 1 and 'not open in this process' in text and DIR in text,
             'greylist %s answers while the lock is held, naming the store not open: %s' % (verb, text))
rc, text = got['reputation']
mt.check(rc == 1 and 'no worker holds the reputation store' in text,
         'flush reputation answers while the lock is held: no worker holds the store: %s' % text)
mt.check(got['status'][0] == 0, 'mxgatectl status answers while the lock is held: %r' % (got['status'],))
mt.check(got['metrics'][0] == 200, '/metrics answers while the lock is held: %r' % (got['metrics'][0],))
mt.check(not os.path.exists(os.path.join(DIR, 'data.mdb')), 'no map was made in that directory')
mx.stop()
shutil.rmtree(DIR, ignore_errors=True)
mt.finish()
