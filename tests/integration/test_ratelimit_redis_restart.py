#!/usr/bin/env python3
"""Redis restarted empty while sessions hold concurrency slots. The slots of the live
sessions were only put back by their renewal, every third of concurrency_ttl (20 minutes
with the default 1h): until then the shared count was 0 and up to the limit more sessions
got in on every node. Now each worker puts back the slots of its live sessions as soon as
its connection is up again (the renewal script, through the write queue, after what waited
for the outage). The restart is seen as a dropped connection (event=redis_down), then
event=redis_up; the slots are back in Redis right after, and a client at its limit is
refused again. Ending a session still gives its slot back."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
red = mt.redis()
PORT = red.port
KEY = 'mxgate:rl:concurrency:ip:198.18.81.1'
be = mt.Backend()
mx = mt.Mxgate(mt.proxied_config(
    [be.url], workers=2,
    ratelimit={'store': 'redis://127.0.0.1:%d' % PORT, 'timeout': '1s', 'rules': [
        {'key': 'ip', 'count': 'concurrency', 'limit': 2}]}), 'node')


def slots():
    try:
        return mt.redis_cmd(PORT, 'ZCARD', KEY)
    except OSError:
        return None


def greet():
    c = mt.Client(mx.port, proxy_src='198.18.81.1', timeout=15)
    return c, c.greeting[0]


held = [greet(), greet()]
mt.check([g for _, g in held] == [220, 220], 'two sessions in (limit 2): %s' % [g for _, g in held])
mt.check(mt.wait_for(lambda: slots() == 2, timeout=10), 'their slots are in Redis: %s' % slots())
c, g = greet()
c.close()
mt.check(g == 421, 'a third is over the limit: %s' % g)

start = mx.log_size()
mt.stop_proc(red, signal.SIGKILL)
red = mt.redis(PORT)          # the same port, no data
mt.check(slots() == 0, 'Redis came back empty')
mt.check(mt.wait_for(lambda: mx.count_log(r'event=redis_up store=\S+ worker=\d+ module=ratelimit', start) >= 2,
                     timeout=mt.slack(40)), 'both workers are connected again')
mt.check(mt.wait_for(lambda: slots() == 2, timeout=10),
         'the live sessions\' slots were put back at once (not at their renewal, 20 min away): %s' % slots())
c, g = greet()
c.close()
mt.check(g == 421, 'the client at its limit is refused again: %s' % g)
held[0][0].close()
mt.check(mt.wait_for(lambda: slots() == 1, timeout=10), 'an ended session gives its slot back: %s' % slots())
c, g = greet()
mt.check(g == 220, 'and one more gets in: %s' % g)
c.close()
for x, _ in held[1:]:
    x.close()
mx.stop()
mt.finish()
