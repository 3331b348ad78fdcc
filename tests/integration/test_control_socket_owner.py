#!/usr/bin/env python3
"""The control socket cannot be taken over by another local user (docs/operations.md
"Control socket"). Before, mxgate removed any socket file at control.socket that did not
answer, whoever owned it, and made its own in any directory, even one every user can write
to: there another user could put a socket of theirs at the name first (mxgatectl would then
talk to it) or, without the sticky bit, rename mxgate's away between its bind and its chmod.
Now the start stops with event=control_error when the directory is writable by every user,
or when a socket there belongs to a user other than mxgate's or control.owner; a stale one
of its own (or control.owner's) is still replaced.

The other user's socket is made with chown: needs root (CI runs as root)."""
import os
import pwd
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
if os.geteuid() != 0:
    mt.skip('makes a socket owned by another user (chown): needs root')
NOBODY = pwd.getpwnam('nobody').pw_uid
a = mt.Sink(name='sink-own')


def stale_socket(path, uid):
    """A socket file nobody answers on (its process gone), owned by uid."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    os.chown(path, uid, -1)


def start(name, sock, **control):
    control['socket'] = sock
    mx = mt.Mxgate(mt.config([a.url], control=control), name=name, wait=False)
    mt.wait_for(lambda: mx.wait_log(r'event=started', 0) or not mx.alive(), 30)
    return mx


def refused(mx, sock, reason, what):
    mt.wait_for(lambda: not mx.alive(), 30)
    line = mx.wait_log(r'event=control_error socket=%s reason="[^"]*%s' % (sock, reason), 5)
    mt.check(not mx.alive() and line, '%s: the start stops, event=control_error names it (%s)'
             % (what, mx.tail(3).strip()[-300:]))
    mx.stop(expect_rc=None)


# a directory every user may write to, sticky (as /tmp) or not
for mode in (0o777, 0o1777):
    d = os.path.join(mt.TMP, 'open-%o' % mode)
    os.mkdir(d)
    os.chmod(d, mode)
    sock = os.path.join(d, 'control.sock')
    mx = start('mx-open-%o' % mode, sock)
    refused(mx, sock, 'is writable by every user', 'the socket\'s directory mode %o' % mode)
    mt.check(not os.path.exists(sock), '... and no socket made there')

# a stale socket of another user in mxgate's own directory: not removed, not taken over
d = os.path.join(mt.TMP, 'run')
os.mkdir(d, 0o755)
sock = os.path.join(d, 'control.sock')
stale_socket(sock, NOBODY)
mx = start('mx-theirs', sock)
refused(mx, sock, 'a socket of uid %d is there' % NOBODY, 'a socket of another user at the name')
mt.check(os.path.exists(sock) and os.stat(sock).st_uid == NOBODY, '... left as it was')

# the same socket when that user is control.owner (mxgate made it so before): replaced
mx = start('mx-owner', sock, owner='nobody')
mt.check(mx.alive() and mx.wait_log(r'event=started', 0), 'a stale socket of control.owner: replaced, mxgate starts')
rc, _, _ = mt.ctl(sock, 'status')
mt.check(rc == 0, 'and answers there (%s)' % rc)
mx.stop()

# a stale socket of mxgate's own user: replaced, as before
stale_socket(sock, os.geteuid())
mx = start('mx-own', sock)
mt.check(mx.alive() and mx.wait_log(r'event=started', 0), 'a stale socket of its own user: replaced, mxgate starts')
mx.stop()
mt.finish()
