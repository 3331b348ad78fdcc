#!/usr/bin/env python3
"""Memory held by many concurrent messages (docs/operations.md, "When resources run out").
Each message is held in memory up to limits.memory_threshold and in limits.spool_dir past
it, until a backend took it; with a slow backend every session holds its message at once.
Before, nothing bounded the sum: sessions x memory_threshold (the defaults: 16000 x 256 KiB,
4 GiB) of memory for messages just under the threshold.

Now limits.memory_budget (default 256M) bounds the sum over the process: a message whose
buffer would pass it goes to the spool at once, below its threshold, and the gauge
mxgate_message_memory_bytes shows what is held. Run twice against an smtp-sink that holds
each reply to the final dot for 20 s, N concurrent clients each with one message under the
threshold: without a budget (0) the gauge reaches about N x the message size; with a budget
it stays within it (plus the growth of one buffer per worker racing past it) while every
message is still delivered. RSS (anonymous memory) is printed as a figure. Before the fix
the key did not exist (mxgate -t refused the config)."""
import os
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
import exhaustion as ex  # noqa: E402

mt.need('smtp-sink')
N, SIZE = 60, 300 * 1000
BUDGET = 4 << 20
GROWTH = 2 * 512 * 1024     # a buffer per worker growing past the budget at the same moment


def run(budget, name):
    sink = mt.Sink(args=['-w', '20'], name='sink-' + name, backlog=1024)
    spool = os.path.join(mt.TMP, 'spool-' + name)
    os.mkdir(spool)
    mx = mt.Mxgate(mt.config([sink.url], workers=2,
                             limits={'max_connections_per_ip': 1000, 'memory_threshold': '1M',
                                     'memory_budget': budget, 'spool_dir': spool},
                             backends={'reply_timeout': '120s', 'data_timeout': '120s'},
                             metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}), name=name)
    base = ex.anon_kb(mx.pid)
    codes = []

    def one(i):
        r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'],
                         mt.message('%s-%d' % (name, i), size=SIZE), timeout=mt.slack(180))
        codes.append(r[0])

    ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    for t in ts:
        t.start()
    peak = {'gauge': 0, 'anon': 0}

    def sample():
        g = ex.message_memory(mx)
        peak['gauge'] = max(peak['gauge'], g)
        peak['anon'] = max(peak['anon'], ex.anon_kb(mx.pid) - base)
        return not any(t.is_alive() for t in ts)
    # the sink holds every message 20 s: all N are held at once, each sampled until done
    mt.wait_for(sample, mt.slack(240), step=0.1)
    for t in ts:
        t.join(mt.slack(60))
    mt.say('memory_budget %s: %d messages of %d kB at once; message memory peak %.1f MB, RSS (anonymous) '
           'above idle %.1f MB; replies %s' % (budget, N, SIZE // 1000, peak['gauge'] / 1e6, peak['anon'] / 1e3,
                                                {c: codes.count(c) for c in set(codes)}))
    mt.check(codes.count(250) == N, '%s: every message delivered' % name)
    mt.check(mt.wait_for(lambda: ex.message_memory(mx) == 0, mt.slack(10)), '%s: nothing held after' % name)
    mx.stop()
    sink.stop()
    return peak


unbounded = run('0', 'unbounded')
mt.check(unbounded['gauge'] >= N * SIZE // 2, 'without a budget the messages held in memory add up: %.1f MB'
         % (unbounded['gauge'] / 1e6))
bounded = run(str(BUDGET), 'bounded')
mt.check(0 < bounded['gauge'] <= BUDGET + GROWTH, 'with memory_budget 4M the message memory stays within it: '
         '%.1f MB' % (bounded['gauge'] / 1e6))
mt.finish()
