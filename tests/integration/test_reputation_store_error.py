#!/usr/bin/env python3
"""Reputation that cannot read its LMDB map treats the client as unknown — never refuse a
client for reputation's own failure — but it did so silently: no log line, no counter, an
operator whose map was damaged saw reputation stop scoring and nothing saying why.

The map is damaged under the running daemon (mt.lmdb_damage: the main B-tree's root page
gets flags that are neither branch nor leaf, so every read fails with MDB_CORRUPTED). Now:

- the next client is still served (its message delivered, not refused);
- it is logged once: event=reputation_error reason=store_read store=lmdb stage=connect;
- a second client is counted but not logged again (at most one line a minute per cause);
- /metrics: mxgate_reputation_errors_total{reason="store_read"} 2, reason="redis" 0.
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
REP = os.path.join(mt.TMP, 'rep')
mx = mt.Mxgate(mt.proxied_config(
    [be.url], workers=1, metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
    reputation={'store': 'lmdb:' + REP, 'flush_interval': '50ms'}), 'node')


def deliver(client, tag):
    r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag), proxy_src=client)
    return r[0]


# one message's outcome in the map (the worker's batch, flush_interval): the root page exists
mt.check(deliver('198.18.73.1', 'rep1') == 250, 'a first message is delivered (its outcome recorded)')
mt.lmdb_damage(REP, 'an outcome')

mt.check(deliver('198.18.74.1', 'rep2') == 250, 'a client with the map unreadable is served (fail open)')
line = mx.wait_log(r'event=reputation_error reason=store_read store=lmdb stage=connect client=198\.18\.74\.1 '
                   r'action=unknown_client errors=1 ', mt.slack(5))
mt.check(line is not None, 'and it says so: event=reputation_error reason=store_read (was: nothing)\n%s' % mx.tail())
mt.check(deliver('198.18.75.1', 'rep3') == 250, 'another is served too')
mt.check(mx.count_log(r'event=reputation_error') == 1, 'logged once a minute at most per cause (%d lines)'
         % mx.count_log(r'event=reputation_error'))
mt.check(mx.metric('reputation_errors_total{reason="store_read"}') == 2,
         'mxgate_reputation_errors_total{reason="store_read"} counts both: %s'
         % mx.metric('reputation_errors_total{reason="store_read"}'))
mt.check(mx.metric('reputation_errors_total{reason="redis"}') == 0, 'the other cause is exposed at 0')
mx.stop()
mt.finish()
