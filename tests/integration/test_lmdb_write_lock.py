#!/usr/bin/env python3
"""test_lmdb_write_lock — the shared LMDB store (reputation here) while another process holds
LMDB's write lock (python3-lmdb holding a write transaction: what a stopped `mxgate -c FILE
learn` or any LMDB tool does; mdb_txn_begin waits on that lock without a bound).

One worker, reputation on lmdb:DIR (flush_interval 100ms). With the lock held: mail is
delivered (a batch waits for the lock in the store's writer thread), then a SIGHUP reload
retires the generation, whose writer hands its last batch to that thread — and mail goes on
being answered on the same worker loop. Before, the retired writer waited on the worker's
loop for the lock (its batch in libuv's pool, then the rest written there): every session of
that loop stalled until the holder let go. The holder lets go only when the test has seen every
answer (no clock: a stalled loop would leave the client waiting until its own timeout, and the
check fails). Then every update lands (the records of both clients in the map), and the daemon
exits 0.
Peers: tests/peers/lmdb_hold.py under python3-lmdb (skipped when missing, a failure in CI), the recording Backend."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
py = mt.need_sys_python('lmdb')
HOLD = os.path.join(mt.PEERS, 'lmdb_hold.py')
store_dir = os.path.join(mt.TMP, 'rep')
be = mt.Backend()


def cfg():
    return mt.proxied_config([be.url], workers=1,
                             reputation={'store': 'lmdb:' + store_dir, 'flush_interval': '100ms'})


def send(src, tag):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src, timeout=mt.slack(30))


def keys():
    r = subprocess.run([py, HOLD, 'keys', store_dir, 'ip:'], capture_output=True, text=True,
                       timeout=30)
    return r.stdout.split()


mx = mt.Mxgate(cfg())
r = send('198.18.40.1', 'before')
mt.check(r[0] == 250, 'lock free: mail delivered: %s' % (r,))
mt.wait_for(lambda: 'ip:198.18.40.1' in keys(), timeout=mt.slack(10))
holder = subprocess.Popen([py, HOLD, 'write', store_dir], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
if holder.stdout.readline().strip() != b'held':
    mt.fail('the LMDB holder did not start: %r' % holder.stderr.read())
try:
    r = send('198.18.40.2', 'held')
    mt.check(r[0] == 250, 'the write lock held: mail delivered: %s' % (r,))
    time.sleep(0.5)                  # its update's batch is with the writer now, waiting
    mx.reload(cfg())
    # logged once the worker runs the new generation: the old one retired, its writer freed
    mt.check(mx.wait_log(r'event=reloaded', timeout=mt.slack(10)) is not None, 'reloaded')
    for i in range(3):
        r = send('198.18.40.3', 'after-%d' % i)
        mt.check(r[0] == 250, 'after the reload, lock still held: mail %d answered: %s' % (i, r))
    mt.check(holder.poll() is None, 'all of it while the lock was held (the holder still holds it)')
finally:
    holder.stdin.close()
    holder.wait(timeout=30)
# the holder gone: the waiting batches land, the retired generation's too
ok = mt.wait_for(lambda: {'ip:198.18.40.2', 'ip:198.18.40.3'} <= set(keys()), timeout=mt.slack(10))
mt.check(ok, 'the lock let go: every client recorded (%s)' % ' '.join(keys()))
mx.stop()
mt.finish()
