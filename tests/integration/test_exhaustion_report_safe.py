#!/usr/bin/env python3
"""report_safe's wrapped message, inside limits.memory_budget (docs/operations.md, "When
resources run out").

With `report_safe 1` or `2` in the rule files spam becomes a new message: a report and the
original inside (rules/rules.c, rules_wrap_apply). It used to be built in memory, outside the
budget: a copy of the original (rules_view) and the whole new message (addhdr_safe_build),
each in a buffer grown by doubling, before its body was written to a message buffer: about
twice the message on the loop thread for every spam wrapped, whatever the budget said, and
a spooled original read back into memory. Now only the new header block and the report are
built; the new body is written into a message buffer (counted in the budget, spooled past it
or past limits.memory_threshold) from those pieces and the original's own bytes, in place.

Measured as anonymous memory (RssAnon) with glibc's malloc told to keep what it frees
(GLIBC_TUNABLES: no trimming, nothing under 32 MB mapped alone), so RssAnon is the high
water of the heap, not a sample that could miss a short-lived buffer, and with one thread in
libuv's pool (UV_THREADPOOL_SIZE=1: the scans' memory in one arena, not a new arena's high
water for each message). One message at a time, an attachment in long lines (the scan
decodes no text of it): ham messages of SIZE (scanned, not wrapped) set the level; M spam
messages of the same size, wrapped, may raise it by less than three messages. The heap's
high water moves by about one message now and then with no wrap at all (the scan's own copy
of the message, rules/samsg.c, finding its old place taken, we think): 0, 1 or 2 such moves
were seen. On main the wrap holds two or three copies on each loop thread: +6.9 MB (three
runs) and +8.6 MB for 6 messages of 1.5 MB on 2 workers; now +0.1, +0.1, +1.5, +1.6 and
+3.0 MB. The spam arrives wrapped, its original intact inside (the recording Backend). Then N
spam messages at once: every one delivered and wrapped, the gauge
mxgate_message_memory_bytes within the budget, the anonymous memory printed. Under the
sanitizers their allocator replaces glibc's: the gauge alone is checked."""
import os
import re
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import exhaustion as ex  # noqa: E402
import mxtest as mt  # noqa: E402

mt.need()
M, N, SIZE = 6, 8, 1500 * 1000
BUDGET = 8 << 20
LOCAL = ('header LOC_SPAM X-Test-Spam =~ /yes/\ndescribe LOC_SPAM a local test rule\n'
         'score LOC_SPAM 20\nreport_safe 1\n')


def original_inside(data, sent):
    m = re.search(rb'x-spam-type=original\r\n(?:[^\r\n]+\r\n)*\r\n(.*)\r\n--(----------=_\S+)--\r\n\r\n$',
                  data, re.S)
    return m is not None and m.group(1) == sent


local = os.path.join(mt.TMP, 'local.cf')
with open(local, 'w') as f:
    f.write(LOCAL)
spool = os.path.join(mt.TMP, 'spool')
os.mkdir(spool)
be = mt.Backend()
cfg = mt.config([be.url], workers=2,
                limits={'max_connections_per_ip': 1000, 'memory_budget': str(BUDGET),
                        'spool_dir': spool},
                backends={'connect_timeout': '120s', 'reply_timeout': '120s', 'data_timeout': '120s'},
                rules={'files': [os.path.join(mt.SRC, 'rules', 'default.rules'), local]},
                metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
os.environ['GLIBC_TUNABLES'] = 'glibc.malloc.trim_threshold=17179869184:glibc.malloc.mmap_threshold=33554432'
os.environ['UV_THREADPOOL_SIZE'] = '1'
mx = mt.Mxgate(cfg, name='mxgate')
del os.environ['GLIBC_TUNABLES'], os.environ['UV_THREADPOOL_SIZE']


def msg(tag, spam):
    # an attachment's body in long lines: the scan decodes no text of it and indexes few
    # lines, its memory is small beside the wrap's
    line = ('%s ' % tag + 'x' * 990)[:990] + '\r\n'
    return mt.message(tag, body=line * (SIZE // len(line)),
                      headers=['Content-Type: application/octet-stream'] +
                      (['X-Test-Spam: yes'] if spam else []))


def deliver(data):
    n = len(be.messages)
    r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], data, timeout=mt.slack(120))
    mt.check(r[0] == 250, 'delivered: %s' % (r,))
    mt.check(mt.wait_for(lambda: len(be.messages) > n, mt.slack(60)), 'at the backend')
    return be.messages[-1]['data'] if len(be.messages) > n else b''


# ---- one at a time: ham sets the level, wrapped spam may not raise it by a copy
for i in range(M + 2):
    deliver(msg('ham-%d' % i, False))
ham = ex.anon_kb(mx.pid)
for i in range(M):
    sent = msg('spam-%d' % i, True)
    got = deliver(sent)
    mt.check(b'x-spam-type=original' in got and original_inside(got, sent),
             'spam %d wrapped, the original intact inside' % i)
spam = ex.anon_kb(mx.pid)
mt.check(mx.count_log(r'event=rules_report_safe report_safe=1') == M, 'logged event=rules_report_safe')
mt.say('%d messages of %d kB one at a time: anonymous memory after ham %.1f MB, after %d wrapped spam '
       '%.1f MB (+%.1f MB)' % (M + 2, SIZE // 1000, ham / 1e3, M, spam / 1e3, (spam - ham) / 1e3))
if mt.SANITIZED:
    mt.say('anonymous memory not bounded under the sanitizers (their allocator)')
else:
    mt.check((spam - ham) * 1000 < 3 * SIZE,
             'the wrap holds no copies of the message: +%.1f MB (a copy: %.1f MB)'
             % ((spam - ham) / 1e3, SIZE / 1e6))

# ---- N at once: delivered and wrapped, the message memory within the budget
codes, peak = [], {'gauge': 0}


def one(i):
    r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], msg('many-%d' % i, True),
                     timeout=mt.slack(300))
    codes.append(r[0])


def sample():
    peak['gauge'] = max(peak['gauge'], ex.message_memory(mx))
    return len(codes) == N


ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
for t in ts:
    t.start()
mt.wait_for(sample, mt.slack(300), step=0.1)
for t in ts:
    t.join(mt.slack(300))
mt.say('%d wrapped at once: message memory peak %.1f MB (budget %d MB), anonymous memory %.1f MB'
       % (N, peak['gauge'] / 1e6, BUDGET >> 20, ex.anon_kb(mx.pid) / 1e3))
mt.check(codes.count(250) == N, 'every message delivered: %s' % {c: codes.count(c) for c in set(codes)})
mt.check(mx.count_log(r'event=rules_report_safe report_safe=1') == M + N, 'every one wrapped')
mt.check(peak['gauge'] <= BUDGET + 2 * (2 << 20),
         'the message memory stays within the budget: %.1f MB' % (peak['gauge'] / 1e6))
mt.check(mt.wait_for(lambda: ex.message_memory(mx) == 0, mt.slack(10)), 'nothing held after')
mx.stop()
mt.finish()
