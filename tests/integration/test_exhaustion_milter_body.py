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

Shown with one message and a real milter (tests/peers/mx_milter_ops.py, python3-milter) that
replaces its body by 1.5 MB and holds its verdict (`hold`: a file once every chunk was sent,
then it waits for the test's `go`). While it is held, mxgate has received the whole new body
and nothing else holds it: it is in a spool file of limits.spool_dir (an unlinked file, seen
among mxgate's descriptors), the message-memory gauge stays within memory_threshold. On
main's code no spool file was open (the body was in the milter client's own buffer). The
message is delivered with the new body (the recording Backend), then nothing is held.

Anonymous memory (RssAnon) with glibc's malloc told to keep what it frees (GLIBC_TUNABLES:
no trimming, nothing under 32 MB mapped alone) is the heap's high water: a first message held
the same way without a new body sets the level, the one with the new body may raise it by
less than 1 MB (memory_threshold, 256K, and slack); on main's code it rose by the new body's
buffer grown by doubling (2 MB). Under the sanitizers their allocator replaces glibc's: only
the spool file and the gauge are checked.

One message at a time on purpose: libmilter's worker pool (Debian builds it with
_FFR_WORKERS_POOL) gives a session's command to a worker it counts idle, which another
session may take first; with every worker in a held callback that command stays unread (4
held at once, session 23's test: 3 held, the 4th milter socket with 31 octets unread, the
pool's controller polling its pipe alone), so verdicts held for several messages at once
test libmilter, not mxgate."""
import glob
import os
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import exhaustion as ex  # noqa: E402
import mxtest as mt  # noqa: E402

mt.need()
mt.need_python_milter()
SIZE = 72 * 20834   # whole lines of the milter's (72 octets): the body ends in CRLF
THRESHOLD = 256 << 10
LINE = b'0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwx\r\n'
NEWBODY = (LINE * (SIZE // len(LINE) + 1))[:SIZE]

hold = os.path.join(mt.TMP, 'hold')
os.mkdir(hold)
spool = os.path.join(mt.TMP, 'spool')
os.mkdir(spool)
milter = mt.milter_ops('one')
be = mt.Backend()
cfg = mt.config([be.url], workers=1,
                limits={'memory_budget': '2M', 'memory_threshold': str(THRESHOLD), 'spool_dir': spool},
                plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % milter.port,
                          'on_error': 'tempfail', 'timeout': '300s'}],
                metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
os.environ['GLIBC_TUNABLES'] = 'glibc.malloc.trim_threshold=17179869184:glibc.malloc.mmap_threshold=33554432'
mx = mt.Mxgate(cfg, name='mxgate')
del os.environ['GLIBC_TUNABLES']


def spool_sizes():
    """The sizes of the files of the spool directory mxgate has open (unlinked at once)."""
    return ex.spool_sizes(mx.pid, spool)


def held(tag, ops):
    """One message whose verdict the milter holds: (its code, the sizes of its spool files
    and the gauge while held)."""
    for f in glob.glob(os.path.join(hold, '*')):
        os.unlink(f)
    res = {}
    data = mt.message(tag, headers=['X-Ops-one: %snoseen ; hold,%s' % (ops + ' ; ' if ops else '', hold)])
    t = threading.Thread(target=lambda: res.setdefault('r', mt.send_mail(
        mx.port, 'a@example.org', ['b@example.test'], data, timeout=mt.slack(300))))
    t.start()
    mt.check(mt.wait_for(lambda: glob.glob(os.path.join(hold, 'sent-*')), mt.slack(60), step=0.1),
             '%s: the milter holds its verdict' % tag)
    # the milter wrote every chunk before its hold file; mxgate has read them all once its
    # spool file holds the whole new body (a bounded wait for that event, no timing). Not
    # once a spool file is open: the buffer spills by making its file, writing its content
    # there (memory_threshold's 256K) and only then freeing it, and the gauge, read on the
    # main thread, counted that buffer with the message's own while the worker wrote:
    # 270336 = 256K + 8K under load, once; every time the write(2) is slow (strace -D
    # -e inject=write:delay_enter=100000 on mxgate: 3 runs in 4). Within what the daemon
    # promises: each buffer within its threshold, the spilled one freed once in its file.
    if ops:
        mt.wait_for(lambda: SIZE in spool_sizes(), mt.slack(60), step=0.05)
    files = spool_sizes()
    gauge = ex.message_memory(mx)
    open(os.path.join(hold, 'go'), 'w').close()
    t.join(mt.slack(300))
    return res.get('r', (None,))[0], files, gauge


code, files, _ = held('level', '')
mt.check(code == 250 and files == [], 'a message without a new body: %s, no spool file (%s)' % (code, files))
level = ex.anon_kb(mx.pid)
code, files, gauge = held('new', 'bodybig,%d' % SIZE)
after = ex.anon_kb(mx.pid)
mt.check(code == 250, 'the message with a new body delivered: %s' % code)
mt.check(files == [SIZE], 'while its verdict is held, the new body of %d kB is in a spool file: %s open'
         % (SIZE // 1000, files))
# What the daemon promises (proxy/msgbuf.h): a buffer holds at most its threshold in memory,
# a spilled one nothing. Once the new body's buffer is spilled, only the message's own
# buffer (a small message: a few kB) is in memory: within memory_threshold.
mt.check(0 <= gauge <= THRESHOLD, 'the message memory meanwhile within memory_threshold: %d' % gauge)
got = [m['data'] for m in be.messages if b'Message-ID: <new' in m['data']]
mt.check(len(got) == 1 and got[0].split(b'\r\n\r\n', 1)[1] == NEWBODY, 'relayed with the new body')
mt.say('a new body of %d kB held: anonymous memory %.1f MB before, %.1f MB after (+%.2f MB)'
       % (SIZE // 1000, level / 1e3, after / 1e3, (after - level) / 1e3))
if mt.SANITIZED:
    mt.say('anonymous memory not bounded under the sanitizers (their allocator)')
else:
    mt.check((after - level) * 1000 < 1000000,
             'the new body is not held in memory: +%.2f MB (memory_threshold %d kB)'
             % ((after - level) / 1e3, THRESHOLD >> 10))
mt.check(mt.wait_for(lambda: ex.message_memory(mx) == 0 and spool_sizes() == [], mt.slack(10)),
         'nothing held after')
mx.stop()
mt.finish()
