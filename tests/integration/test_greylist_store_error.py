#!/usr/bin/env python3
"""Greylisting that cannot read its LMDB map lets the recipient through — never refuse mail
for greylisting's own failure — but it did so silently: no log line, no counter, the 250
looked like a passed triplet's. An operator whose map was damaged saw greylisting stop
working and nothing saying why.

The map is damaged under the running daemon: once a triplet is stored the main B-tree's
root page gets flags that are neither branch nor leaf, so every read of the map fails
(MDB_CORRUPTED) without LMDB touching anything out of bounds. Now:

- a new triplet's RCPT still passes (250, not greylisted, not refused);
- it is logged once: event=greylist_error reason=store_read store=lmdb action=pass;
- a second one is counted but not logged again (at most one line a minute per cause);
- /metrics: mxgate_greylist_errors_total{reason="store_read"} 2, and
  greylist_passed_total stays 0 (the error is not a pass).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
GL = os.path.join(mt.TMP, 'gl')
mx = mt.Mxgate(mt.proxied_config(
    [be.url], workers=1, metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
    greylist={'enabled': True, 'store': 'lmdb:' + GL, 'delay': '1h', 'retry_window': '2h'}), 'node')

# a triplet in the map (the worker's batch, flush_interval): the root page exists
mt.check(mt.rcpt_code(mx.port, '198.18.70.1', 'a@example.org', 'first@example.test') == 451,
         'a first attempt is greylisted')
mt.lmdb_damage(GL, 'a triplet')

code = mt.rcpt_code(mx.port, '198.18.71.1', 'b@example.org', 'second@example.test')
mt.check(code == 250, 'a new triplet with the map unreadable passes (fail open): %s' % code)
line = mx.wait_log(r'event=greylist_error reason=store_read store=lmdb client=198\.18\.71\.1 '
                   r'from=<b@example\.org> rcpt=<second@example\.test> action=pass errors=1 ', mt.slack(5))
mt.check(line is not None, 'and it says so: event=greylist_error reason=store_read (was: nothing)\n%s' % mx.tail())
code = mt.rcpt_code(mx.port, '198.18.72.1', 'c@example.org', 'third@example.test')
mt.check(code == 250, 'another passes too: %s' % code)
log = open(mx.logpath).read()
mt.check(log.count('event=greylist_error') == 1, 'logged once a minute at most per cause (%d lines)'
         % log.count('event=greylist_error'))
mt.check(mx.metric('greylist_errors_total{reason="store_read"}') == 2,
         'mxgate_greylist_errors_total{reason="store_read"} counts both: %s'
         % mx.metric('greylist_errors_total{reason="store_read"}'))
mt.check(mx.metric('greylist_errors_total{reason="no_memory"}') == 0 and
         mx.metric('greylist_errors_total{reason="triplet"}') == 0, 'the other causes are exposed at 0')
mt.check(mx.metric('greylist_passed_total') == 0, 'and neither is counted as a passed triplet: %s'
         % mx.metric('greylist_passed_total'))
mx.stop()
mt.finish()
