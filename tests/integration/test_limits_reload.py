#!/usr/bin/env python3
"""A concurrency limit changed by SIGHUP while sessions are open (the operator lowering it
during a flood, or raising it): the sessions already open keep counting against the new
limit, as Haraka's limit plugin and Postfix's anvil count them per client whatever the
limit is. Before, the counter's key held the limit's text, so a changed limit started from
zero: lowered from 3 to 2 with 3 sessions open, 2 more were admitted (5 at once). The same
with the shared Redis counter (two nodes with different limits during a rolling change
count one set of sessions). Rates (N/DURATION) still start over when their limit changes."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
red = mt.redis()
be = mt.Backend()


def cfg(store, limit):
    return mt.proxied_config([be.url], ratelimit={'store': store, 'rules': [
        {'key': 'ip', 'count': 'concurrency', 'limit': limit}]})


def greet(node, src):
    c = mt.Client(node.port, proxy_src=src)
    return c, c.greeting[0]


def reload(node, store, limit):
    start = node.log_size()
    node.reload(cfg(store, limit))
    mt.check(node.wait_log(r'event=reloaded', 10, start) is not None, 'reloaded with limit %s' % limit)


def sessions_ended(node, src, n):
    return mt.wait_for(lambda: node.count_log(r'event=disconnect client=%s ' % src.replace('.', r'\.')) >= n, 10)


for store in ('local', 'redis://127.0.0.1:%d' % red.port):
    kind = store.split(':')[0]
    src = '198.18.61.1' if kind == 'local' else '198.18.62.1'
    n = mt.Mxgate(cfg(store, 3), 'node-' + kind)
    held = [greet(n, src) for _ in range(3)]
    mt.check([g for _, g in held] == [220] * 3, '%s: three sessions with limit 3: %s' % (kind, [g for _, g in held]))
    # lowered to 2 with 3 open: a new session is refused
    reload(n, store, 2)
    c, g = greet(n, src)
    c.close()
    mt.check(g == 421, '%s: limit lowered to 2 with 3 sessions open: a 4th is refused (got %s)' % (kind, g))
    # one ends: 2 open, still at the limit
    held[0][0].cmd('QUIT')
    held[0][0].close()
    sessions_ended(n, src, 2)
    c, g = greet(n, src)
    c.close()
    mt.check(g == 421, '%s: 2 open at limit 2: refused (got %s)' % (kind, g))
    # raised to 4 with 2 open: two more, not four
    sessions_ended(n, src, 3)
    reload(n, store, 4)
    more = [greet(n, src) for _ in range(3)]
    mt.check([g for _, g in more] == [220, 220, 421],
             '%s: raised to 4 with 2 open: 2 more admitted, then 421: %s' % (kind, [g for _, g in more]))
    for c, _ in held[1:] + more:
        c.close()
    mt.check(sessions_ended(n, src, 7), '%s: every session ended' % kind)
    # every slot came back, including those taken under the older limits
    more = [greet(n, src) for _ in range(5)]
    mt.check([g for _, g in more] == [220] * 4 + [421],
             '%s: all closed: 4 admitted again at limit 4: %s' % (kind, [g for _, g in more]))
    for c, _ in more:
        c.close()
    n.stop()

# two nodes sharing Redis with different limits (a rolling change) count one set of sessions
store = 'redis://127.0.0.1:%d' % red.port
n1 = mt.Mxgate(cfg(store, 2), 'node1')
n2 = mt.Mxgate(cfg(store, 3), 'node2')
a = [greet(n1, '198.18.63.1') for _ in range(2)]
b = [greet(n2, '198.18.63.1') for _ in range(2)]
mt.check([g for _, g in a + b] == [220, 220, 220, 421],
         'limit 2 on node1 and 3 on node2: the sessions of node1 count on node2: %s' % [g for _, g in a + b])
for c, _ in a + b:
    c.close()
n1.stop()
n2.stop()

# two concurrency limits on one key would count each session twice in the one counter
bad = {'rules': [{'key': 'ip', 'count': 'concurrency', 'limit': 10},
                 {'key': 'ip', 'count': 'concurrency', 'limit': 5}]}
rc, out = mt.config_check(mt.config([be.url], listen=['127.0.0.1:2525'], ratelimit=bad), 'dup')
mt.check(rc == 1 and 'ratelimit.rules[1]' in out and 'second concurrency limit' in out,
         'mxgate -t refuses a second concurrency rule on key ip: rc=%s %r' % (rc, out))
ok = {'rules': [{'key': 'ip_prefix', 'count': 'concurrency', 'limit': 10, 'prefix_v4': 24},
                {'key': 'ip_prefix', 'count': 'concurrency', 'limit': 50, 'prefix_v4': 16},
                {'key': 'ip', 'count': 'concurrency', 'limit': 5}]}
rc, out = mt.config_check(mt.config([be.url], listen=['127.0.0.1:2525'], ratelimit=ok), 'prefixes')
mt.check(rc == 0, 'per-/24 and per-/16 concurrency limits together are fine: rc=%s %r' % (rc, out))
mt.finish()
