#!/usr/bin/env python3
"""`mxgate -t` warns when auth.dovecot names a unix socket that `user:` cannot open.

mxgate opens the Dovecot socket after dropping to `user:`. A socket inside a directory that
user may not search — Postfix's `private/` (mode 0700, owner postfix), which the docs' example
used until session 15 — or one it may not write gets every AUTH a `454 4.7.0`, and nothing said
so before the first user tried (then `event=auth_service_error ... reason="permission
denied"`). `-t` now says which directory or socket is in the way; a path that does not exist
yet (Dovecot starts after mxgate) and a reachable socket say nothing.
Peers: none (the sockets are bound here; connect(2) permissions are what is checked)."""
import os
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
if os.geteuid() != 0:
    mt.skip('needs root: the sockets must belong to another user than user: nobody')

crt, key = mt.cert()


def unix_socket(path, mode):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    os.chmod(path, mode)
    return s


def check(sock_path):
    cfg = mt.config(['smtp://127.0.0.1:9'], listen=[{'address': '127.0.0.1:587', 'tls': 'starttls', 'submission': True}],
                    tls={'certificate': crt, 'key': key}, user='nobody', auth={'dovecot': 'unix:' + sock_path})
    return mt.config_check(cfg, name='auth-sock')


private = os.path.join(mt.TMP, 'private')
os.mkdir(private, 0o700)
held = [unix_socket(os.path.join(private, 'auth'), 0o666)]
rc, out = check(os.path.join(private, 'auth'))
mt.check(rc == 0 and 'warning: auth.dovecot: user nobody cannot open' in out and
         'the directory %s is not searchable' % private in out,
         'a socket in a 0700 directory of root: -t names the directory (%d: %s)' % (rc, out.strip()))

public = os.path.join(mt.TMP, 'public')
os.mkdir(public, 0o755)
held.append(unix_socket(os.path.join(public, 'root-only'), 0o600))
rc, out = check(os.path.join(public, 'root-only'))
mt.check(rc == 0 and 'the socket %s is not writable' % os.path.join(public, 'root-only') in out,
         'a socket of mode 0600 owned by root: -t names the socket (%s)' % out.strip())

held.append(unix_socket(os.path.join(public, 'auth-mxgate'), 0o666))
rc, out = check(os.path.join(public, 'auth-mxgate'))
mt.check(rc == 0 and 'auth.dovecot' not in out, 'a socket nobody can open: no warning (%s)' % out.strip())

rc, out = check(os.path.join(public, 'not-yet'))
mt.check(rc == 0 and 'auth.dovecot' not in out, 'a socket not made yet: no warning (%s)' % out.strip())

for s in held:
    s.close()
mt.finish()
