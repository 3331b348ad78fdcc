#!/usr/bin/env python3
"""`mxgate -t` names the paths mxgate writes at run time that it could not write: a container
runs it as a non-root user on a read-only root file system, and each of limits.spool_dir,
quarantine, control.socket and an lmdb:/dir store (greylist, reputation, the pass stores)
needs a writable volume.

- -t run by a user that cannot write the directory (the container's case): one warning per
  key, naming the key, the path and the directory; exit 0 (a warning, as the others).
- -t run as root with `user:` (the daemon drops to it before it makes the spool files,
  the quarantine and the LMDB stores, but makes the control socket before): the same
  warnings for that user, none for control.socket.
- a directory they can write: no such warning.

Before: -t said `ok`; the start then failed on the control socket, logged
event=module_init_failed for the LMDB stores, and every large or quarantined message got 451.
Needs root (to run -t as another user): exit 77 otherwise.
"""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

if os.geteuid() != 0:
    mt.skip('needs root to run mxgate -t as another user')
nobody = pwd.getpwnam('nobody')

top = tempfile.mkdtemp(prefix='mxtest-writable-')
mt.at_finish(lambda: shutil.rmtree(top, ignore_errors=True))
os.chmod(top, 0o755)
ro = os.path.join(top, 'ro')          # root's, 0755: nobody cannot write in it
rw = os.path.join(top, 'rw')          # nobody's
os.mkdir(ro, 0o755)
os.mkdir(rw, 0o755)
os.chown(rw, nobody.pw_uid, nobody.pw_gid)

KEYS = ('limits.spool_dir', 'quarantine', 'control.socket', 'greylist.store', 'reputation.store')


def conf(d, user=None):
    cfg = mt.config(['smtp://127.0.0.1:2526'], listen=[{'address': '127.0.0.1:2525'}],
                    limits={'spool_dir': d}, quarantine='maildir:%s/quarantine' % d,
                    control={'socket': '%s/run/control.sock' % d},
                    greylist={'enabled': True, 'store': 'lmdb:%s/greylist' % d},
                    reputation={'store': 'lmdb:%s/reputation' % d})
    if user:
        cfg['user'] = user
    path = os.path.join(top, 'cfg-%d.yaml' % len(os.listdir(top)))
    with open(path, 'w') as f:
        f.write(mt.to_yaml(cfg))
    os.chmod(path, 0o644)
    return path


def check(path, as_nobody):
    def drop():
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
    r = subprocess.run([mt.BIN, '-t', '-c', path], capture_output=True, text=True, timeout=30,
                       preexec_fn=drop if as_nobody else None)
    return r.returncode, r.stdout + r.stderr


def warned(out, key):
    return [l for l in out.splitlines() if ': warning: %s: ' % key in l]


rc, out = check(conf(ro), True)
mt.check(rc == 0 and 'ok' in out, '-t as a user that cannot write: still ok, exit 0 (%d)' % rc)
for key in KEYS:
    w = warned(out, key)
    mt.check(len(w) == 1 and ro in w[0] and 'cannot write in %s' % ro in w[0] and 'writable volume' in w[0],
             '-t as nobody warns of %s (%s)' % (key, w or out[-300:]))

rc, out = check(conf(ro, user='nobody'), False)
mt.check(rc == 0, '-t as root with user: nobody: exit 0 (%d)' % rc)
for key in KEYS:
    w = warned(out, key)
    if key == 'control.socket':
        mt.check(not w, 'the control socket is made as root, before the drop: no warning (%s)' % w)
    else:
        mt.check(len(w) == 1 and 'nobody cannot write in %s' % ro in w[0],
                 '-t as root with user: nobody warns of %s (%s)' % (key, w or out[-300:]))

rc, out = check(conf(rw), True)
mt.check(rc == 0 and not any(warned(out, k) for k in KEYS),
         'a directory the user can write: no such warning (%s)' % out[-300:])
rc, out = check(conf(rw, user='nobody'), False)
mt.check(rc == 0 and not any(warned(out, k) for k in KEYS),
         'as root with user: nobody, writable by nobody: no such warning (%s)' % out[-300:])
mt.finish()
