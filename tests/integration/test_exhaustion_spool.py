#!/usr/bin/env python3
"""limits.spool_dir running out while mxgate runs (docs/operations.md, "When resources run
out"): a message above limits.memory_threshold is held in an unlinked file there until a
backend took it. A small tmpfs (256 KiB) is the spool; it is filled, freed, remounted
read-only, removed, made again.

The promise: a message that cannot be held is never relayed in part and never acknowledged:
the client gets 4xx at the end of data (a full file system: 452 4.3.1, RFC 5321's
"insufficient system storage"; any other error 451 4.3.0), a message held in memory (below
the threshold) still goes through, and the next message after the space came back is
delivered, nothing restarted.

Before the fix the client got 451 4.3.0 for a full spool and nothing was logged at all: the
session's log said `messages=0` and no reason. Now each is logged, warning, `event=tempfail
stage=data reason=spool detail="No space left on device" dir=... size=N client=...`, and
counted in mxgate_spool_errors_total.

MAIL SIZE=N for a message that goes to the spool (N above memory_threshold) is refused
`452 4.3.1` at once when N is half or more of the spool's free space (Postfix's rule for its
queue file system), logged `event=tempfail stage=mail reason=spool_space size= avail= dir=`;
before, the client was let send it all and got 452 at the end of data.

Needs root (mount); CI runs as root."""
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
import exhaustion as ex  # noqa: E402

mt.need('smtp-sink')
if os.geteuid() != 0:
    mt.skip('mounting a tmpfs needs root')
spool = os.path.join(mt.TMP, 'spool')
os.mkdir(spool)


def mount(opts='size=256k'):
    subprocess.run(['mount', '-t', 'tmpfs', '-o', opts, 'tmpfs', spool], check=True)


def umount():
    subprocess.run(['umount', spool], stderr=subprocess.DEVNULL)


mount()
mt.at_finish(umount)     # once mxgate (its spool files) is stopped, before TMP's removal

sp = ex.SpoolDaemon(spool)
sink, mx, send, at_sink = sp.sink, sp.mx, sp.send, sp.at_sink

r = send('fits', 100000)
mt.check(r[0] == 250, 'a 100 kB message fits the spool: %s' % (r,))

# Filled up: nothing above the threshold can be held.
fill = os.path.join(spool, 'fill')
with open(fill, 'wb') as f:
    try:
        f.write(b'x' * 400000)
    except OSError:
        pass
start = mx.log_size()
r = send('full', 50000)
mt.check(r.stage == 'eom' and r[0] == 452 and '4.3.1' in r[1],
         'the spool full: 452 4.3.1 at the end of data: %s (%s)' % (r, r.stage))
mt.check(mx.wait_log(r'warning \S+ event=tempfail stage=data reason=spool detail="No space left on device" '
                     r'dir=%s size=\d+ client=127\.0\.0\.1 code=452 reply="4\.3\.1 Insufficient system storage, try '
                     r'again later"' % spool, mt.slack(5), start) is not None,
         'logged with the reason, code= and reply=: %s' % mx.tail(4))
mt.check(not at_sink('full'), 'nothing of it reached the backend')
r = send('small', 2000)
mt.check(r[0] == 250, 'a message below memory_threshold is still delivered: %s' % (r,))

# MAIL SIZE= announcing a message for the spool (above memory_threshold) that would take more
# than half its free space: 452 4.3.1 at MAIL (RFC 1870 6.2; Postfix's rule for its queue),
# before the client sends it for nothing. One held in memory is let through.
c = mt.Client(mx.port, timeout=mt.slack(10))
c.ehlo()
start = mx.log_size()
r = c.cmd('MAIL FROM:<a@example.org> SIZE=50000')
mt.check(r[0] == 452 and '4.3.1' in r[1], 'the spool full, SIZE=50000: 452 4.3.1 at MAIL: %s' % (r,))
mt.check(mx.wait_log(r'(?m)warning \S+ event=tempfail stage=mail reason=spool_space size=50000 avail=\d+ '
                     r'dir=%s client=127\.0\.0\.1 code=452 reply="4\.3\.1 Insufficient system storage"$' % spool,
                     mt.slack(5), start) is not None,
         'logged with the sizes, code= and reply= as every refusal line: %s' % mx.tail(3))
r = c.cmd('MAIL FROM:<a@example.org> SIZE=2000')
mt.check(r[0] == 250, 'SIZE below memory_threshold (held in memory): 250: %s' % (r,))
c.cmd('RSET')
c.close()

# Space for part of a message: it runs out in the middle.
os.truncate(fill, 0)
with open(fill, 'wb') as f:
    f.write(b'x' * (256 * 1024 - 120 * 1024))
r = send('half', 200000)
mt.check(r[0] == 452, 'the spool full in the middle of a message: 452: %s' % (r,))
mt.check(not at_sink('half'), 'no truncated copy at the backend')

os.unlink(fill)
c = mt.Client(mx.port, timeout=mt.slack(10))
c.ehlo()
r = c.cmd('MAIL FROM:<a@example.org> SIZE=200000')
mt.check(r[0] == 452, 'the spool empty (256 KiB), SIZE=200000 is more than half of it: 452: %s' % (r,))
codes = [c.cmd('MAIL FROM:<a@example.org> SIZE=100000')[0], c.cmd('RCPT TO:<b@example.test>')[0],
         c.cmd('DATA')[0]]
c.send(mt.stuff(mt.message('sized', size=100000)))
codes.append(c.reply()[0])
mt.check(codes == [250, 250, 354, 250], 'SIZE=100000 within half of it: accepted, delivered: %s' % codes)
c.close()
r = send('back', 200000)
mt.check(r[0] == 250, 'the space back: the next message is delivered: %s' % (r,))
got = at_sink('back')
whole = mt.message('back', size=200000).replace(b'\r\n', b'\n')
mt.check(len(got) == 1 and whole in got[0]['data'], 'whole at the sink')

# Read-only (EROFS even for root), then removed: 451 4.3.0, logged with the error.
subprocess.run(['mount', '-o', 'remount,ro', spool], check=True)
start = mx.log_size()
r = send('ro', 50000)
mt.check(r[0] == 451 and '4.3.0' in r[1], 'a read-only spool: 451 4.3.0: %s' % (r,))
mt.check(mx.wait_log(r'event=tempfail stage=data reason=spool detail="Read-only file system"', mt.slack(5), start)
         is not None, 'logged as such')
umount()
os.rmdir(spool)
start = mx.log_size()
r = send('gone', 50000)
mt.check(r[0] == 451, 'the spool directory removed: 451: %s' % (r,))
mt.check(mx.wait_log(r'event=tempfail stage=data reason=spool detail="No such file or directory"',
                     mt.slack(5), start) is not None, 'logged as such')
os.mkdir(spool)
mount()
r = send('again', 50000)
mt.check(r[0] == 250, 'made again: delivered: %s' % (r,))
mt.check(not at_sink('ro') and not at_sink('gone'), 'nothing of the refused ones at the backend')
mt.check(mx.metric('spool_errors_total') == 6, 'each counted (4 at the end of data, 2 at MAIL): mxgate_spool_errors_total %s'
         % mx.metric('spool_errors_total'))
mt.check(mt.wait_for(lambda: sink.count() == 5, mt.slack(10)), 'five messages at the sink: %d' % sink.count())
mx.stop()
mt.finish()
