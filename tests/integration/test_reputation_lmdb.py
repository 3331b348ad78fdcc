#!/usr/bin/env python3
"""Reputation with the LMDB store and with Redis: deny list -> 5.7.1 refusal (at the greeting
or, postscreen-style, at MAIL), allow list -> served; a client whose messages keep being
rejected (by a filter at end of data) turns bad and is refused at connect (421 4.7.0), and
stays refused; the state survives a restart of mxgate. Learning comes from the module's
outcome notifier. Near max_connections (over 9/10 of it) a known-good client (allow list,
or a history of delivered messages) is still served while an unknown or denied one gets
421 4.7.0 Service busy (reputation sheds them in its connect run).

Timing: LMDB writes are batched (flush_interval) and Redis updates are sent without waiting
for a reply, so the tests wait for what they can observe (the refusal at connect, the
record in Redis), never for a fixed time."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
BAD = '198.18.5.5'
GOOD = '198.18.9.9'   # delivers a few messages: known good afterwards


def reputation(store):
    # bad_threshold -0.45: no score this test can produce lands exactly on it. A score
    # exactly on the threshold is bad only until the next lookup, whose decay (however
    # small) moves it up by a hair: with the default -0.5, 1 + 0.25 x 2 accepted against 6
    # rejected is such a tie, and made this test flaky over Redis.
    return {'store': store, 'bad_action': 'tempfail', 'bad_threshold': -0.45, 'flush_interval': '100ms',
            'timeout': '3s', 'allow': ['198.18.77.0/24'], 'deny': ['198.18.66.0/24', '2001:db8:66::/48']}


def send(mx, src, tag):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='client.example.org', proxy_src=src, timeout=15)


def greeting(mx, src):
    c = mt.Client(mx.port, proxy_src=src, timeout=15)
    c.close()
    return c.greeting


def run(store, name, stored=None):
    """stored(): the client's record as the store has it (Redis), or None (LMDB)."""
    be = mt.Backend()
    mx = mt.Mxgate(mt.proxied_config([be.url], reputation=reputation(store)), name)
    r = send(mx, '198.18.66.1', 'denied-' + name)
    mt.check(r[0] is not None and r[0] // 100 == 5 and r.stage in ('connect', 'mail')
             and '5.7.1 deny list entry of 198.18.66.1' in r[1], '%s: deny list client refused: %r' % (name, r))
    r = send(mx, '198.18.77.7', 'allowed-' + name)
    mt.check(r[0] == 250 and be.by_tag('allowed-' + name), '%s: allow list client served: %r' % (name, r))
    for i in range(2):
        r = send(mx, '198.18.5.1', 'unknown-%s-%d' % (name, i))
        mt.check(r[0] == 250, '%s: an unknown client is served: %r' % (name, r))
    for i in range(4):
        r = send(mx, GOOD, 'good-%s-%d' % (name, i))
        mt.check(r[0] == 250, '%s: the future known-good client is served: %r' % (name, r))
    mx.stop()

    # A filter refusing at end of data: a byte limit that one message exhausts (reject).
    # The client sends until it is refused at connect: with Redis each update is visible at
    # once, with LMDB after the next batch, so how many 550s it takes varies; it is bounded.
    rl = {'rules': [{'key': 'ip', 'count': 'bytes', 'limit': '1/1h', 'action': 'reject'}]}
    mx = mt.Mxgate(mt.proxied_config([be.url], reputation=reputation(store), ratelimit=rl), name + '-rej')
    codes = []
    deadline = time.time() + mt.slack(20)
    while time.time() < deadline and len(codes) < 500 and (not codes or codes[-1] != 421):
        codes.append(send(mx, BAD, 'bad%d' % len(codes))[0])
    mt.check(mx.alive(), '%s: mxgate alive after end-of-data refusals' % name)
    mt.check(codes[:2] == [250, 550] and all(c == 550 for c in codes[1:-1]),
             '%s: the byte limit refuses at end of data: %s' % (name, codes))
    mt.check(codes[-1] == 421, '%s: a client whose messages keep being rejected is refused at connect after %d: %s'
             % (name, codes.count(550), codes))
    if stored:
        mt.check(stored() is not None, '%s: its record is in the store: %s' % (name, stored()))
    code, text = greeting(mx, BAD)
    mt.check(code == 421 and 'poor reputation of %s' % BAD in text, '%s: and stays refused: %s %r' % (name, code, text))
    mx.stop()
    # restart: the history is still there (Redis: the first lookups wait for the connect)
    mx = mt.Mxgate(mt.proxied_config([be.url], reputation=reputation(store)), name + '-restart')
    code, text = greeting(mx, BAD)
    mt.check(code == 421, '%s: after a restart the bad client is still refused: %s %r' % (name, code, text))
    mx.stop()
    overload(store, name, be)


def overload(store, name, be):
    """36 sessions held of max_connections 40: the next one is over 9/10 of the limit. A few
    probes that closed but are not released yet keep the count within (36, 40]: never over
    max_connections itself."""
    mx = mt.Mxgate(mt.proxied_config([be.url], reputation=reputation(store), limits={'max_connections': 40}),
                   name + '-overload')
    held = []
    for i in range(36):
        c = mt.Client(mx.port, proxy_src='198.18.77.%d' % (100 + i), timeout=15)
        held.append(c)
        mt.check(c.greeting[0] == 220, '%s: held session %d greeted: %r' % (name, i, c.greeting))
    for src, want, who in (('198.18.3.3', 421, 'an unknown client'), ('198.18.77.7', 220, 'an allow-listed client'),
                           (GOOD, 220, 'a client with delivered messages'), ('198.18.66.1', 421, 'a denied client')):
        # the good history reaches the store through batched LMDB writes / Redis updates
        got = mt.wait_for(lambda: (lambda g: g if g[0] == want else None)(greeting(mx, src)), timeout=10)
        code, text = got or greeting(mx, src)
        mt.check(code == want and (want == 220 or 'Service busy' in text),
                 '%s: near max_connections %s gets %d: %s %r' % (name, who, want, code, text))
    mt.check(mx.wait_log(r'reason=overload') is not None, '%s: the shedding is logged with reason=overload' % name)
    for c in held:
        c.close()
    got = mt.wait_for(lambda: greeting(mx, '198.18.3.3')[0] == 220, timeout=10)
    mt.check(got, '%s: with the held sessions gone the unknown client is served again' % name)
    mx.stop()


run('lmdb:' + os.path.join(mt.TMP, 'rep'), 'lmdb')
mt.check(os.path.exists(os.path.join(mt.TMP, 'rep', 'data.mdb')), 'an LMDB database was created')
red = mt.redis()


def redis_record():
    return mt.redis_cmd(red.port, 'HGETALL', 'mxgate:rep:ip:' + BAD) or None


run('redis://127.0.0.1:%d' % red.port, 'redis', redis_record)
mt.finish()
