#!/usr/bin/env python3
"""rspamd's rewritten body, inside limits.memory_budget (docs/operations.md, "When resources
run out").

With use_action mxgate asks rspamd for a body a Lua rule rewrote (Flags: milter,body_block):
the reply is the JSON, then the new body from its Message-Offset on (plugins/rspamd.c). The
whole reply used to grow in the scanner's plain buffer (plugins/scanner.c, by doubling, up to
limits.max_message_size + 1 MB), outside the budget, was parsed again on every read, and the
new body was copied once more into the message buffer the host relays: one rewritten message
cost about three times its size in memory, whatever limits.memory_budget and
limits.memory_threshold said. Now only the HTTP head and the JSON are kept (bounded, 1 MB);
the octets past the offset go straight into a message buffer (proxy/msgbuf.h: counted in the
budget, spooled past it or past limits.memory_threshold), handed to the host as it is.

Shown with one message and tests/peers/fake_rspamd.py (`BODYHOLD SIZE DIR`: rspamd's reply
shape, as test_rspamd_body_block.py checks against it and test_rspamd_real.py against rspamd
3.4, which sends its reply whole and cannot be held) sending a new body of 1.5 MB but for its
last octet, then holding it until the test says go. While it is held mxgate has read the rest
and nothing else holds it: it is in a spool file of limits.spool_dir (an unlinked file, seen
among mxgate's descriptors), the message-memory gauge stays within memory_threshold. On
main's code no spool file was open (the reply sat in the scanner's buffer). The message is
delivered with the new body (the recording Backend), then nothing is held. A reply that ends
early (the peer closes short of its Content-Length) is the entry's on_error (tempfail), and
its spool file goes with it.

Anonymous memory (RssAnon) with glibc's malloc told to keep what it frees (GLIBC_TUNABLES:
no trimming, nothing under 32 MB mapped alone) is the heap's high water: a first message held
the same way with an empty body block sets the level, the one
with the new body may raise it by less than 1 MB (memory_threshold, 256K, and slack); on
main's code it rose by the reply's buffer grown by doubling (2 MB). Under the sanitizers
their allocator replaces glibc's: only the spool file and the gauge are checked."""
import glob
import os
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import exhaustion as ex  # noqa: E402
import mxtest as mt  # noqa: E402

mt.need()
SIZE = 72 * 20834   # whole lines of the peer's (72 octets): the body ends in CRLF
THRESHOLD = 256 << 10
LINE = b'0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwx\r\n'
NEWBODY = (LINE * (SIZE // len(LINE) + 1))[:SIZE]

hold = os.path.join(mt.TMP, 'hold')
os.mkdir(hold)
spool = os.path.join(mt.TMP, 'spool')
os.mkdir(spool)
rs = mt.fake_rspamd()
be = mt.Backend()
entry = {'name': 'rspamd', 'address': '127.0.0.1:%d' % rs.port, 'on_error': 'tempfail', 'timeout': '300s',
         'options': {'use_action': True}}
limits = {'memory_budget': '2M', 'memory_threshold': str(THRESHOLD), 'spool_dir': spool}
os.environ['GLIBC_TUNABLES'] = 'glibc.malloc.trim_threshold=17179869184:glibc.malloc.mmap_threshold=33554432'
mx = mt.Mxgate(mt.config([be.url], workers=1, limits=limits, plugins=[entry],
                         metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}), name='mxgate')
del os.environ['GLIBC_TUNABLES']


def spool_sizes():
    """The sizes of the files of the spool directory mxgate has open (unlinked at once)."""
    return ex.spool_sizes(mx.pid, spool)


def spool_files():
    """mxgate's descriptors open on files of the spool directory."""
    return len(spool_sizes())


def held(tag, expect_spool, go='', size=SIZE):
    """One message whose reply the peer holds short of its last octet: (its SMTP code, the
    spool files and the gauge while held)."""
    for f in glob.glob(os.path.join(hold, '*')):
        os.unlink(f)
    res = {}
    data = mt.message(tag, 'BODYHOLD %d %s\r\n' % (size, hold))
    t = threading.Thread(target=lambda: res.setdefault('r', mt.send_mail(
        mx.port, 'a@example.org', ['b@example.test'], data, timeout=mt.slack(300))))
    t.start()
    mt.check(mt.wait_for(lambda: glob.glob(os.path.join(hold, 'sent-*')), mt.slack(60), step=0.1),
             '%s: rspamd holds the end of its reply' % tag)
    # the peer sent the rest before its hold file: it is read once mxgate's spool file grows
    # past memory_threshold (a bounded wait for that event, no timing). Not once the file is
    # open: the buffer spills by making its file, writing its content there (up to 256K) and
    # only then freeing it, and the gauge (the main thread's) counts both meanwhile, as
    # test_exhaustion_milter_body.py read once under load (270336). Past the threshold the
    # file holds more than the spill wrote: the memory is freed.
    if expect_spool:
        mt.wait_for(lambda: any(n > THRESHOLD for n in spool_sizes()), mt.slack(60), step=0.05)
    files = spool_files()
    gauge = ex.message_memory(mx)
    with open(os.path.join(hold, 'go'), 'w') as f:
        f.write(go)
    t.join(mt.slack(300))
    return res.get('r', (None,))[0], files, gauge


# the level: the same exchange with an empty body block (the JSON only, nothing replaced)
code, files, _ = held('level', False, size=0)
mt.check(code == 250 and files == 0, 'a reply without a new body: %s, no spool file (%d)' % (code, files))
level = ex.anon_kb(mx.pid)
code, files, gauge = held('new', True)
after = ex.anon_kb(mx.pid)
mt.check(code == 250, 'the message with a new body delivered: %s' % code)
mt.check(files == 1, 'while the reply is held, the new body of %d kB is in a spool file: %d open'
         % (SIZE // 1000, files))
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
mt.check(mt.wait_for(lambda: ex.message_memory(mx) == 0 and spool_files() == 0, mt.slack(10)),
         'nothing held after')

# a reply that ends early: the entry's on_error, the body read so far let go
start = mx.log_size()
code, files, _ = held('cut', True, go='cut')
mt.check(code == 451 and not be.by_tag('cut'), 'a reply cut short of its Content-Length: on_error (tempfail): %s'
         % code)
mt.check(mx.wait_log(r'event=rspamd_error ', start=start), 'logged as rspamd\'s error: %s' % mx.tail(3))
mt.check(mt.wait_for(lambda: ex.message_memory(mx) == 0 and spool_files() == 0, mt.slack(10)),
         'nothing held after the cut reply')
mx.stop()
mt.finish()
