#!/usr/bin/env python3
"""A milter's replacement body, inside limits.memory_budget (docs/operations.md, "When
resources run out").

A milter replaces the body with SMFIR_REPLBODY chunks at the end of the message
(plugins/milter.c). They used to grow in a plain buffer of the milter client, up to
limits.max_message_size and by doubling, outside the budget, then were copied once more into
the message buffer the host relays (host->replace_body): every message whose body a milter
replaced held the whole new body in memory, whatever limits.memory_budget and
limits.memory_threshold said. Now the chunks are appended straight into a message buffer
(proxy/msgbuf.h: counted in the budget, spooled past it or past limits.memory_threshold)
and that buffer is handed to the host as it is.

Shown with a real milter (tests/peers/mx_milter_ops.py, python3-milter) that replaces the
body of N messages at once and holds its verdict until every one of them sent its new body
(`hold`: the test sees a file per message, then lets them go): all N new bodies are in
mxgate together. Anonymous memory (RssAnon) with glibc's malloc told to keep what it frees
(GLIBC_TUNABLES: no trimming, nothing under 32 MB mapped alone) is the heap's high water; a
first round of N messages held the same way with no new body sets the level, the round with
the new bodies may raise it by less than the budget and one body. On main the N bodies
were in memory together: +6.2 MB for 4 new bodies of 1.5 MB, now +0.8 MB. Every message is delivered with its
new body (the recording Backend), the gauge mxgate_message_memory_bytes stays within the
budget. Under the sanitizers their allocator replaces glibc's: the gauge alone is
checked."""
import glob
import os
import re
import sys
import threading
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
mt.need_python_milter()
N, SIZE = 4, 72 * 20834   # whole lines of the milter's (72 octets): the body ends in CRLF
BUDGET = 2 << 20
LINE = b'0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwx\r\n'
NEWBODY = (LINE * (SIZE // len(LINE) + 1))[:SIZE]


def anon_kb(pid):
    for line in open('/proc/%d/status' % pid):
        if line.startswith('RssAnon:'):
            return int(line.split()[1])
    return 0


def gauge(mx):
    body = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mx.metrics_port,
                                  timeout=mt.slack(10)).read().decode()
    m = re.search(r'^mxgate_message_memory_bytes (\d+)', body, re.M)
    return int(m.group(1)) if m else -1


hold = os.path.join(mt.TMP, 'hold')
os.mkdir(hold)
spool = os.path.join(mt.TMP, 'spool')
os.mkdir(spool)
milter = mt.milter_ops('one')
be = mt.Backend()
cfg = mt.config([be.url], workers=2,
                limits={'max_connections_per_ip': 1000, 'memory_budget': str(BUDGET),
                        'spool_dir': spool},
                backends={'connect_timeout': '120s', 'reply_timeout': '120s', 'data_timeout': '120s'},
                plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % milter.port,
                          'on_error': 'tempfail', 'timeout': '300s'}],
                metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
os.environ['GLIBC_TUNABLES'] = 'glibc.malloc.trim_threshold=17179869184:glibc.malloc.mmap_threshold=33554432'
os.environ['UV_THREADPOOL_SIZE'] = '1'
mx = mt.Mxgate(cfg, name='mxgate')
del os.environ['GLIBC_TUNABLES'], os.environ['UV_THREADPOOL_SIZE']


def held_round(tag, ops):
    """N messages at once, the milter's verdicts held until all N were answered up to it:
    their codes, and the gauge's peak meanwhile."""
    for f in glob.glob(os.path.join(hold, '*')):
        os.unlink(f)
    codes, peak = [], {'gauge': 0}

    def one(i):
        data = mt.message('%s-%d' % (tag, i), headers=['X-Ops-one: %s ; noseen ; hold,%s' % (ops, hold)]
                          if ops else ['X-Ops-one: noseen ; hold,%s' % hold])
        r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], data, timeout=mt.slack(300))
        codes.append(r[0])

    def all_sent():
        peak['gauge'] = max(peak['gauge'], gauge(mx))
        return len(glob.glob(os.path.join(hold, 'sent-*'))) == N

    ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    for t in ts:
        t.start()
    mt.check(mt.wait_for(all_sent, mt.slack(120), step=0.1), '%s: the milter answered all %d' % (tag, N))
    open(os.path.join(hold, 'go'), 'w').close()
    for t in ts:
        t.join(mt.slack(300))
    mt.check(codes.count(250) == N, '%s: every message delivered: %s' % (tag, {c: codes.count(c) for c in set(codes)}))
    return peak['gauge']


held_round('level', '')
level = anon_kb(mx.pid)
peak = held_round('new', 'bodybig,%d' % SIZE)
after = anon_kb(mx.pid)
got = [m['data'] for m in be.messages if b'Message-ID: <new-' in m['data']]
mt.check(len(got) == N and all(d.split(b'\r\n\r\n', 1)[1] == NEWBODY for d in got),
         'the %d messages relayed with the new body' % N)
mt.say('%d new bodies of %d kB at once: anonymous memory %.1f MB before, %.1f MB after (+%.1f MB), '
       'message memory peak %.1f MB (budget %d MB)' % (N, SIZE // 1000, level / 1e3, after / 1e3,
                                                    (after - level) / 1e3, peak / 1e6, BUDGET >> 20))
if mt.SANITIZED:
    mt.say('anonymous memory not bounded under the sanitizers (their allocator)')
else:
    mt.check((after - level) * 1000 < BUDGET + SIZE,
             'the new bodies are held within the budget: +%.1f MB (the budget %.1f MB, a body %.1f MB)'
             % ((after - level) / 1e3, BUDGET / 1e6, SIZE / 1e6))
mt.check(peak <= BUDGET + 2 * (2 << 20), 'the message memory stays within the budget: %.1f MB' % (peak / 1e6))
mt.check(mt.wait_for(lambda: gauge(mx) == 0, mt.slack(10)), 'nothing held after')
mx.stop()
mt.finish()
