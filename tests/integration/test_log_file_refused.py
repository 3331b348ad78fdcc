#!/usr/bin/env python3
"""A log.file the user starting mxgate cannot open: `mxgate -t` and the start agree, with the
same words. The start opens log.file (appending; made when absent) before it drops to `user:`
and exits 1 when it cannot; -t, run by the same user, refuses it too (exit 1), both with
`FILE:LINE:COL: log.file: cannot open PATH: REASON ...; the start fails`, LINE:COL the
value's. A directory that is not there is the config's own error (-t and the start: exit 1,
FILE:LINE:COL: log.file: directory ...).

- as a user (nobody) that cannot write the directory, the file absent: -t exits 1 with the
  line; the start exits 1 with the same line;
- the file there and writable by that user, in that same directory: -t exits 0 with no
  such line, and the start goes on (event=started), appending to it;
- the directory missing: both exit 1 naming log.file.

Before (session 32): -t said "ok" for the first config and the start then exited 1 with
`mxgate: cannot open log.file PATH: Permission denied`. Needs root (to run as nobody)."""
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
    mt.skip('needs root to run mxgate as another user')
nobody = pwd.getpwnam('nobody')

top = tempfile.mkdtemp(prefix='mxtest-logfile-')
mt.at_finish(lambda: shutil.rmtree(top, ignore_errors=True))
os.chmod(top, 0o755)
ro = os.path.join(top, 'ro')          # root's, 0755: nobody cannot make a file in it
os.mkdir(ro, 0o755)


def conf(name, logfile):
    cfg = mt.config(['smtp://127.0.0.1:2526'], listen=[{'address': '127.0.0.1:0'}], log={'file': logfile})
    holds = []
    mt._fill_ports(cfg, holds)
    for h in holds:      # nobody binds it: a port root holds would refuse it
        h.release()
    path = os.path.join(top, name + '.yaml')
    with open(path, 'w') as f:
        f.write(mt.to_yaml(cfg))
    os.chmod(path, 0o644)
    return path


def drop():
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)


def check(path):
    r = subprocess.run([mt.BIN, '-t', '-c', path], capture_output=True, text=True, timeout=30, preexec_fn=drop)
    return r.returncode, r.stdout + r.stderr


def start(path):
    """(exit status, output) when it exits before event=started, (None, output) when it
    started (then stopped by SIGTERM)."""
    outp = path + '.out'
    with open(outp, 'w') as of:
        p = subprocess.Popen([mt.BIN, '-c', path], stdout=of, stderr=subprocess.STDOUT, preexec_fn=drop)
    mt.at_finish(lambda: p.poll() is None and p.kill())

    def out():
        with open(outp, errors='replace') as f:
            return f.read()
    logf = re.search(r'file: "([^"]+)"', open(path).read()).group(1)

    def started():
        try:
            with open(logf, errors='replace') as f:
                return 'event=started' in f.read()
        except OSError:
            return False
    mt.wait_for(lambda: p.poll() is not None or started(), 60)   # a hang guard
    if p.poll() is not None:
        return p.returncode, out()
    p.terminate()
    p.wait(30)
    return None, out()


def refusal(out, path, logfile):
    where = '%s:%s' % (path, mt.yaml_position(path, 'file', logfile))
    return [l for l in out.splitlines() if l.startswith('%s: log.file: cannot open %s: ' % (where, logfile))]


# nobody cannot make the file: -t and the start refuse, the same line
logfile = os.path.join(ro, 'mxgate.log')
path = conf('ro', logfile)
rc, out = check(path)
lines = refusal(out, path, logfile)
mt.check(rc == 1 and len(lines) == 1 and 'Permission denied' in lines[0] and 'the start fails' in lines[0]
         and ': ok' not in out,
         '-t as nobody, log.file in a directory it cannot write: exit 1, FILE:LINE:COL: log.file: (%d %s)'
         % (rc, out[-400:]))
src, sout = start(path)
slines = refusal(sout, path, logfile)
mt.check(src == 1 and len(slines) == 1 and slines == lines, 'the start as nobody exits 1 with the same line (%s %r / %r)'
         % (src, slines, lines))

# the file there, nobody's: nothing said, and the start goes on
logfile2 = os.path.join(ro, 'nobody.log')
with open(logfile2, 'w'):
    pass
os.chown(logfile2, nobody.pw_uid, nobody.pw_gid)
path = conf('own', logfile2)
rc, out = check(path)
mt.check(rc == 0 and 'log.file' not in out and ': ok' in out,
         '-t: a log.file nobody can write in a directory it cannot: ok (%d %s)' % (rc, out[-300:]))
src, sout = start(path)
mt.check(src is None, 'the start of that config as nobody goes on (event=started in the file): %s %s'
         % (src, sout[-300:]))

# the directory is not there: the config's error, for both
logfile3 = os.path.join(top, 'nowhere', 'mxgate.log')
path = conf('nodir', logfile3)
rc, out = check(path)
mt.check(rc == 1 and re.search(r'^%s:\d+:\d+: log\.file: directory ' % re.escape(path), out, re.M),
         '-t: a log.file whose directory is missing: exit 1 (%d %s)' % (rc, out[-300:]))
src, sout = start(path)
mt.check(src == 1 and re.search(r'^%s:\d+:\d+: log\.file: directory ' % re.escape(path), sout, re.M),
         'the start: exit 1, the same error (%s %s)' % (src, sout[-300:]))
mt.finish()
