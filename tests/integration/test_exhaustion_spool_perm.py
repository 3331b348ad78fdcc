#!/usr/bin/env python3
"""limits.spool_dir that mxgate's user cannot write (docs/operations.md, "When resources run
out"): a message above limits.memory_threshold must be held in a file there until a backend
took it. The tests run as root, which writes anywhere, so the case needs mxgate running as
someone else: started as root with `user: nobody` (privileges dropped after binding, as
deployed). Not root: skipped (77; under CI=true a failure).

The promise: the client gets 451 4.3.0 at the end of data, logged `event=tempfail stage=data
reason=spool detail="Permission denied"` and counted in mxgate_spool_errors_total; nothing
of it reaches the backend; a message held in memory (below the threshold) still goes
through; and once the permission is back the next message is delivered, nothing
restarted."""
import os
import pwd
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
import exhaustion as ex  # noqa: E402

mt.need('smtp-sink')
if os.geteuid() != 0:
    mt.skip('running mxgate as another user (user: nobody) needs root')
spool = os.path.join(mt.TMP, 'spool')
os.mkdir(spool, 0o755)      # root writes; nobody else
os.chmod(mt.TMP, 0o711)     # mkdtemp's 0700 would keep nobody out of the path altogether

sp = ex.SpoolDaemon(spool, user='nobody')
sink, mx, send, at_sink = sp.sink, sp.mx, sp.send, sp.at_sink
with open('/proc/%d/status' % mx.pid) as f:
    uid = int([ln for ln in f if ln.startswith('Uid:')][0].split()[1])
mt.say('mxgate runs as uid %d (%s)' % (uid, pwd.getpwuid(uid).pw_name))
mt.check(uid != 0, 'mxgate does not run as root (it would write anywhere)')

start = mx.log_size()
r = send('denied', 50000)
mt.check(r.stage == 'eom' and r[0] == 451 and '4.3.0' in r[1],
         'a spool it cannot write: 451 4.3.0 at the end of data: %s (%s)' % (r, r.stage))
mt.check(mx.wait_log(r'warning \S+ event=tempfail stage=data reason=spool detail="Permission denied" '
                     r'dir=%s size=\d+ client=127\.0\.0\.1 code=451 reply="4\.3\.0 Error: could not store the '
                     r'message, try again later"' % spool, mt.slack(5), start) is not None,
         'logged with the reason, code= and reply=: %s' % mx.tail(4))
r = send('small', 2000)
mt.check(r[0] == 250, 'a message below memory_threshold is still delivered: %s' % (r,))

# The permission back (the directory given to mxgate's user): delivered at once.
os.chown(spool, uid, -1)
r = send('back', 50000)
mt.check(r[0] == 250, 'permission back: the next message is delivered: %s (%s)' % (r, r.stage))
got = at_sink('back')
whole = mt.message('back', size=50000).replace(b'\r\n', b'\n')
mt.check(len(got) == 1 and whole in got[0]['data'], 'whole at the sink')
mt.check(mt.wait_for(lambda: sink.count() == 2, mt.slack(10)), 'two messages at the sink: %d' % sink.count())
mt.check(not at_sink('denied'), 'nothing of the refused one at the backend')
mt.check(mx.metric('spool_errors_total') == 1, 'counted: mxgate_spool_errors_total %s'
         % mx.metric('spool_errors_total'))
mx.stop()
mt.finish()
