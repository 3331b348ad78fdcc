#!/usr/bin/env python3
"""`mxgate -t` names the paths mxgate writes at run time that it could not write: a container
runs it as a non-root user on a read-only root file system, and each of limits.spool_dir,
quarantine, control.socket and an lmdb:/dir store (greylist, reputation, the pass stores)
needs a writable volume. -t and the start agree: an error (exit 1) where the start refuses,
a warning (exit 0) where it goes on. Each line starts FILE:LINE:COL: (the key's value), as
the loader's errors do.

- -t run by a user that cannot write the directory (the container's case): one line per
  key, naming the key, the path and the directory; control.socket, greylist.store and
  reputation.store are errors (the start exits 1: it cannot make the socket, nor open the
  store), limits.spool_dir and quarantine warnings (each such message gets 451). -t exits 1,
  and the start of the same config, as that user, exits 1 too.
- -t run as root with `user:` (the daemon drops to it before it makes the spool files,
  the quarantine and the LMDB stores, but makes the control socket before): the same for
  that user, nothing for control.socket; the start as root with that config exits 1 too.
- only the spool and quarantine unwritable: warnings, -t exits 0, and the start goes on.
- a directory they can write: no such line.

Before (session 31): every one was a warning and -t exited 0 ("ok") for a config whose
start then exited 1 (the control socket, an LMDB store that cannot open). Before session
33: the lines read `FILE: KEY: ...`, with no position.
Needs root (to run -t as another user): exit 77 otherwise.
"""
import os
import pwd
import re
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
                    control={'socket': '%s/control.sock' % d},
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


# the key's value in the file: lines read FILE:LINE:COL: [warning: ]KEY: ... as the loader's
VALUES = {'limits.spool_dir': ('spool_dir', '%s'), 'quarantine': ('quarantine', 'maildir:%s/quarantine'),
          'control.socket': ('socket', '%s/control.sock'), 'greylist.store': ('store', 'lmdb:%s/greylist'),
          'reputation.store': ('store', 'lmdb:%s/reputation')}


def at(path, key, d):
    k, v = VALUES[key]
    return '%s:%s' % (path, mt.yaml_position(path, k, v % d))


def warned(out, key, path=None, d=None):
    return [l for l in out.splitlines() if ': warning: %s: ' % key in l and
            (path is None or l.startswith('%s: warning: %s: ' % (at(path, key, d), key)))]


def refused(out, path, key, d=None):
    return [l for l in out.splitlines() if re.match(r'%s:\d+:\d+: %s: ' % (re.escape(path), re.escape(key)), l) and
            (d is None or l.startswith('%s: %s: ' % (at(path, key, d), key)))]


def start(path, as_nobody):
    """Starts mxgate with path (as nobody or as root): (its exit status, its log) when it exits
    before event=started, (None, its log) when it started (then stopped by SIGTERM)."""
    def drop():
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
    logp = path + '.log'
    with open(logp, 'w') as lf:
        p = subprocess.Popen([mt.BIN, '-c', path], stdout=lf, stderr=subprocess.STDOUT,
                             preexec_fn=drop if as_nobody else None)
    mt.at_finish(lambda: p.poll() is None and p.kill())

    def log():
        with open(logp, errors='replace') as f:
            return f.read()
    # a hang guard: it either exits or logs event=started
    mt.wait_for(lambda: p.poll() is not None or 'event=started' in log(), 60)
    if p.poll() is not None:
        return p.returncode, log()
    p.terminate()
    p.wait(30)
    return None, log()


def start_refused(path, as_nobody, keys):
    """Whether the start exits 1 naming one of keys (a store's config_error, the control
    socket's control_error); with (status, the log's tail) for the message."""
    rc, text = start(path, as_nobody)
    named = any(re.search(r'^%s:\d+:\d+: %s: ' % (re.escape(path), re.escape(k)), text, re.M) or
                'key=%s ' % k in text for k in keys)
    named = named or ('control.socket' in keys and 'event=control_error ' in text)
    return rc == 1 and named, (rc, text[-400:])


def said_ok(out):
    """-t's verdict line "FILE: ok" (not "ok" anywhere: the random temporary folder's name
    can hold it, as mxtest-writable-4e8pr0ok did in a CI run)."""
    return re.search(r': ok$', out, re.M) is not None


FATAL = ('control.socket', 'greylist.store', 'reputation.store')
path = conf(ro)
rc, out = check(path, True)
mt.check(rc == 1 and not said_ok(out), '-t as a user that cannot write the stores: exit 1 (%d)' % rc)
for key in KEYS:
    w, e = warned(out, key, path, ro), refused(out, path, key, ro)
    line = (e if key in FATAL else w)
    mt.check(len(line) == 1 and not (w if key in FATAL else e) and ro in line[0] and
             'cannot write in %s' % ro in line[0] and 'writable volume' in line[0],
             '-t as nobody: %s is %s (%s)' % (key, 'an error' if key in FATAL else 'a warning', line or out[-300:]))
ok, why = start_refused(path, True, FATAL)
mt.check(ok, 'the start of that config as nobody exits 1 too, for a store or the socket (%s)' % (why,))

path = conf(ro, user='nobody')
rc, out = check(path, False)
mt.check(rc == 1, '-t as root with user: nobody, stores not writable by nobody: exit 1 (%d)' % rc)
for key in KEYS:
    w, e = warned(out, key, path, ro), refused(out, path, key, ro)
    if key == 'control.socket':
        mt.check(not w and not e, 'the control socket is made as root, before the drop: nothing (%s)' % (w + e))
    else:
        line = (e if key in FATAL else w)
        mt.check(len(line) == 1 and 'nobody cannot write in %s' % ro in line[0],
                 '-t as root with user: nobody: %s (%s)' % (key, line or out[-300:]))
ok, why = start_refused(path, False, FATAL)
mt.check(ok, 'the start as root with user: nobody exits 1 too, for a store (%s)' % (why,))

# only the spool and the quarantine unwritable: warnings, exit 0, and the start goes on
cfg = mt.config(['smtp://127.0.0.1:2526'], listen=[{'address': '127.0.0.1:0'}],
                limits={'spool_dir': ro}, quarantine='maildir:%s/quarantine' % ro,
                greylist={'enabled': True, 'store': 'lmdb:%s/greylist' % rw})
holds = []
mt._fill_ports(cfg, holds)
for h in holds:          # nobody binds it: a port root holds with SO_REUSEPORT would refuse it
    h.release()
path = os.path.join(top, 'cfg-warn.yaml')
with open(path, 'w') as f:
    f.write(mt.to_yaml(cfg))
os.chmod(path, 0o644)
rc, out = check(path, True)
mt.check(rc == 0 and said_ok(out) and len(warned(out, 'limits.spool_dir')) == 1 and
         len(warned(out, 'quarantine')) == 1 and not refused(out, path, 'greylist.store'),
         '-t: the spool and quarantine are warnings, exit 0 (%d %s)' % (rc, out[-300:]))
rc, text = start(path, True)
mt.check(rc is None, 'the start of that config as nobody goes on (event=started): %s %s' % (rc, text[-400:]))

rc, out = check(conf(rw), True)
mt.check(rc == 0 and not any(warned(out, k) for k in KEYS),
         'a directory the user can write: no such warning (%s)' % out[-300:])
rc, out = check(conf(rw, user='nobody'), False)
mt.check(rc == 0 and not any(warned(out, k) for k in KEYS),
         'as root with user: nobody, writable by nobody: no such warning (%s)' % out[-300:])
mt.finish()
