#!/usr/bin/env python3
"""Reputation with the LMDB store (and Redis when redis-server is installed): deny list ->
5.7.1 refusal (at the greeting or, postscreen-style, at MAIL), allow list -> served; a client whose messages keep being rejected
(by a filter at end of data) turns bad and is refused at connect (421 4.7.0); the LMDB state survives a restart of
mxgate. The learning part needs the session to report outcomes (reputation_record)."""
import os, shutil, signal, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ratelimit_harness as h

h.need()
src = os.environ.get('MX_SOURCE_DIR', os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
wired = any('reputation_record(' in open(os.path.join(src, 'proxy', f), errors='replace').read()
            for f in os.listdir(os.path.join(src, 'proxy')) if f.endswith('.c'))
notes = []


def run(store, name):
    be_ok = h.Backend()
    extra = ('reputation:\n  store: "%s"\n  bad_action: tempfail\n  flush_interval: 100ms\n  timeout: 3s\n'
             '  allow: [198.18.77.0/24]\n  deny: [198.18.66.0/24, "2001:db8:66::/48"]\n') % store
    port = h.free_port()
    n = h.mxgate(h.config(port, be_ok.port, extra), name, port)
    # a refusal at connect: the session greets, then refuses MAIL with the reason
    r = h.send(port, '198.18.66.1', 'denied-' + name)
    if r[0] // 100 != 5 or r[2] not in ('connect', 'mail') or '5.7.1 deny list entry of 198.18.66.1' not in r[1]:
        h.fail('%s: deny list client got %r' % (store, r))
    r = h.send(port, '198.18.77.7', 'allowed-' + name)
    if r[0] != 250 or not be_ok.has('allowed-' + name):
        h.fail('%s: allow list client not served: %r' % (store, r))
    r = h.send(port, '198.18.5.1', 'unknown-' + name)
    if r[0] != 250:
        h.fail('%s: an unknown client was refused: %r' % (store, r))
    h.stop(n)

    if not wired:
        notes.append('%s: learning skipped (the session does not call reputation_record yet)' % store)
        return
    # a filter refusing at end of data: a byte limit that one message exhausts (reject)
    rl = ('ratelimit:\n  rules:\n    - { key: ip, count: bytes, limit: 1/1h, action: reject }\n')
    port2 = h.free_port()
    n = h.mxgate(h.config(port2, be_ok.port, extra + rl), name + '-rej', port2)
    codes = [h.send(port2, '198.18.5.5', 'bad%d' % i)[0] for i in range(9)]
    if n.poll() is not None:
        h.fail('%s: mxgate died (rc %r) after end-of-data refusals: %r' % (store, n.returncode, codes))
    # refused at end of data (550) until the history turns bad; then at connect (421)
    if codes[0] != 250 or codes[1] != 550 or any(c not in (550, 421) for c in codes[2:]):
        h.fail('%s: the byte limit did not refuse: %r' % (store, codes))
    # batched LMDB writes / async Redis updates: give them time on a busy machine
    for _ in range(20):
        time.sleep(0.5)
        c = h.Client(port2, '198.18.5.5')
        code, text = c.reply()
        c.close()
        if code == 421:
            break
    if code != 421 or 'poor reputation of 198.18.5.5' not in text:
        h.fail('%s: a client with 8 rejected messages got %d %r' % (store, code, text))
    h.stop(n)
    # restart: the history is still there
    n = h.mxgate(h.config(port2, be_ok.port, extra), name + '-restart', port2)
    time.sleep(0.5)   # Redis: the first lookups race the connect (an unknown client is served)
    c = h.Client(port2, '198.18.5.5')
    code, text = c.reply()
    c.close()
    if code != 421:
        h.fail('%s: after a restart the bad client got %d %r (state lost)' % (store, code, text))
    # its /24 neighbour is not refused outright (weighted network history only)
    h.stop(n)


run('lmdb:' + os.path.join(h.TMP, 'rep'), 'lmdb')
if not os.path.exists(os.path.join(h.TMP, 'rep', 'data.mdb')):
    h.fail('no LMDB database was created')
if shutil.which('redis-server'):
    red = h.redis()
    run('redis://127.0.0.1:%d' % red.port, 'redis')
else:
    notes.append('redis-server missing: Redis store not tested')
h.ok('deny/allow lists, learning and restart survival' + ('; ' + '; '.join(notes) if notes else ''))
