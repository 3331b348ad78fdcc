#!/usr/bin/env python3
"""A client a rate limit kept in Redis refuses at connect hears the 421 alone, with the
pregreet test on.

Session 25 held the pregreet teaser (`220-`) until the connect stage's synchronous part had
run, and session 26 put ratelimit first in the chain (test_pregreet_rdns_refusal.py), so a
client a *local* rate limit refuses hears `421` alone. With `ratelimit.store: redis://...`
the check itself answers asynchronously (an EVALSHA on the shared bucket): the question is
whether the teaser goes out while Redis answers, and the client reads `220-`, then `421`.

A real redis-server; `count: connections, limit: 1/1h, action: tempfail`; the first
connection of a client is teased and stays in the pregreet delay, the second must hear the
`421 4.7.0 rate limit exceeded ...` and nothing before it; the refusal went through Redis
(store=redis in event=ratelimit); a client within the limit is teased and served. No timing
decides a check."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
red = mt.redis()
be = mt.Backend()
LIMIT = {'store': 'redis://127.0.0.1:%d' % red.port, 'timeout': '3s',
         'rules': [{'key': 'ip', 'count': 'connections', 'limit': '1/1h', 'action': 'tempfail'}]}
mx = mt.Mxgate(mt.proxied_config([be.url], pregreet={'delay': '2s', 'action': 'reject'}, ratelimit=LIMIT), 'mx')

ip = '198.18.97.1'
first = mt.Client(mx.port, proxy_src=ip, greet=False, timeout=mt.slack(15))
line = first._line()
mt.check(line is not None and line.startswith('220-'), 'the first connection is teased: %r' % (line,))
heard = mt.proxy_hears(mx.port, ip, 15)
lines = heard.splitlines()
mt.check(len(lines) == 1 and lines[0].startswith('421 4.7.0 rate limit exceeded'),
         'the second connection: the 421 alone, no teaser before it: %r' % heard)
mt.check(mx.wait_log(r'event=ratelimit key=ip value=198\.18\.97\.1 count=connections .*store=redis ', 5) is not None,
         'decided by Redis: event=ratelimit ... store=redis')
mt.check(mx.wait_log(r'event=tempfail stage=connect reason=ratelimit client=198\.18\.97\.1 code=421 ', 5) is not None,
         'logged: event=tempfail stage=connect reason=ratelimit ... code=421')
first.close()

first, waited, r = mt.patient_mail(mx.port, '198.18.97.2', 'within')
mt.check(first is not None and first.startswith('220-') and r[0] == 250 and be.by_tag('within'),
         'a client within the limit is teased and served: %r %r' % (first, r))
mx.stop()
mt.finish()
