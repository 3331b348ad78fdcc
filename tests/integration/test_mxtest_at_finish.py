#!/usr/bin/env python3
"""The harness's own cleanup: mt.at_finish(fn) runs fn however a test ends.

A test leaves by os._exit (mt.finish, mt.skip, a signal), so handlers registered with
atexit never ran: test_exhaustion_spool.py registered its tmpfs's umount there and every
run left a tmpfs mounted on a removed directory (`mount | grep mxtest`, dozens on this
machine). Shown with a child test (a script using mxtest.py, run here) for each way out:
finish() with its checks held (exit 0) and with one failed (exit 1), skip() (exit 77), an
uncaught exception (exit 1), a plain end of the script without finish(). Each registers two
functions that append to a file of ours: both ran, the last registered first, while the
child's TMP was still there, and the child's TMP is gone afterwards unless a check failed.
On main's harness there is no at_finish (the child dies of AttributeError, nothing ran)."""
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

CHILD = '''
import os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, %(here)r)
import mxtest as mt
out = %(out)r
def note(what):
    def fn():
        with open(out, 'a') as f:
            f.write('%%s tmp=%%s\\n' %% (what, os.path.isdir(mt.TMP)))
    return fn
with open(out, 'a') as f:
    f.write('TMP %%s\\n' %% mt.TMP)
mt.at_finish(note('first'))
mt.at_finish(note('second'))
way = sys.argv[1]
if way == 'pass':
    mt.check(True, 'holds')
    mt.finish()
elif way == 'fail':
    mt.check(False, 'does not hold (on purpose)')
    mt.finish()
elif way == 'skip':
    mt.skip('on purpose')
elif way == 'raise':
    raise RuntimeError('on purpose')
'''

script = os.path.join(mt.TMP, 'child.py')
for way, code in (('pass', 0), ('fail', 1), ('skip', 77), ('raise', 1), ('end', 0)):
    out = os.path.join(mt.TMP, 'out-' + way)
    with open(script, 'w') as f:
        f.write(CHILD % {'here': os.path.dirname(os.path.abspath(__file__)), 'out': out})
    env = dict(os.environ, CI='')      # a skip is the way out tested here, not a CI failure
    env.pop('MX_KEEP_TMP', None)
    r = subprocess.run([sys.executable, script, way], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=mt.slack(60))
    lines = open(out).read().splitlines() if os.path.exists(out) else []
    tmp = lines[0].split(' ', 1)[1] if lines and lines[0].startswith('TMP ') else None
    mt.check(r.returncode == code, '%s: the child exits %d: %d' % (way, code, r.returncode))
    mt.check(lines[1:] == ['second tmp=True', 'first tmp=True'],
             '%s: both ran, the last registered first, before TMP went: %r%s'
             % (way, lines[1:], '' if lines[1:] else ' (child: %r)' % r.stdout[-300:]))
    kept = way in ('fail', 'raise')    # a failed check keeps the logs
    mt.check(tmp is not None and os.path.isdir(tmp) == kept,
             '%s: the child\'s TMP %s' % (way, 'kept' if kept else 'removed'))
    if tmp and os.path.basename(tmp).startswith('mxtest-child-') and os.path.isdir(tmp):
        subprocess.run(['rm', '-rf', tmp])     # ours: the child's, kept on purpose
mt.finish()
