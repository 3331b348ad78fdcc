#!/usr/bin/env python3
"""`mxgate -t` as root, and a start as root, warn when `user:` cannot read a TLS file.

Root reads tls.certificate/tls.key (and tls.sni[], tls.client_ca_file, backends.tls_ca_file)
at the config's check, so -t passed a key only root can read; the start loads them again
after dropping to `user:` and failed with OpenSSL's "system lib", and so does every reload
(SIGHUP, `mxgatectl reload`: "Permission denied"). Now -t and the start name the key, why
(the file or the directory in the way, with its mode and owner) and the fix; the start logs
event=config_notice key=tls too. A file that user can read (group-readable) says nothing.
Peers: none (the daemon started here must fail before it reaches a backend)."""
import os
import pwd
import shutil
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
if os.geteuid() != 0:
    mt.skip('needs root: -t and the start check the files as root for user: nobody')

nobody = pwd.getpwnam('nobody')
crt, key = mt.cert()
keys = os.path.join(mt.TMP, 'keys')
os.mkdir(keys, 0o755)
kcrt, kkey, kca = (os.path.join(keys, n) for n in ('cert.pem', 'key.pem', 'ca.pem'))
shutil.copy(crt, kcrt)
shutil.copy(key, kkey)
shutil.copy(crt, kca)
os.chmod(kcrt, 0o644)
os.chmod(kca, 0o644)


def conf(sink_url='smtp://127.0.0.1:9', **kw):
    return mt.config([sink_url], listen=[{'address': '127.0.0.1:587', 'tls': 'starttls'}],
                     tls={'certificate': kcrt, 'key': kkey}, user='nobody', **kw)


# 1. the key of mode 0600, root's: -t names tls.key and the file; the certificate says nothing
os.chown(kkey, 0, 0)
os.chmod(kkey, 0o600)
rc, out = mt.config_check(conf(), name='key0600')
mt.check(rc == 0 and 'warning: tls.key: user nobody cannot read %s: the file %s is not readable by it (mode 0600'
         % (kkey, kkey) in out and 'chgrp nobody' in out and 'tls.certificate' not in out,
         'a key of mode 0600 owned by root: -t names tls.key, the file and the fix (%d: %s)' % (rc, out.strip()))

# 2. a readable key in a directory nobody may search: -t names the directory, for both files
os.chmod(kkey, 0o644)
os.chmod(keys, 0o700)
rc, out = mt.config_check(conf(), name='dir0700')
mt.check(rc == 0 and 'warning: tls.key: user nobody cannot read' in out and
         'warning: tls.certificate: user nobody cannot read' in out and
         'the directory %s is not searchable by it (mode 0700' % keys in out,
         'files in a 0700 directory of root: -t names the directory (%d: %s)' % (rc, out.strip()))

# 3. backends.tls_ca_file too
os.chmod(keys, 0o755)
os.chmod(kca, 0o600)
rc, out = mt.config_check(conf(backends={'tls_verify': True, 'tls_ca_file': kca}), name='cafile')
mt.check(rc == 0 and 'warning: backends.tls_ca_file: user nobody cannot read %s' % kca in out and
         'tls.key' not in out,
         'a backends.tls_ca_file only root can read: -t names it (%d: %s)' % (rc, out.strip()))

# 4. the key group-readable by nobody's group: no warning
os.chown(kkey, 0, nobody.pw_gid)
os.chmod(kkey, 0o640)
rc, out = mt.config_check(conf(), name='keygroup')
mt.check(rc == 0 and 'cannot read' not in out, 'a key readable by the group of user: no warning (%d: %s)' % (rc, out.strip()))

# 5. the start says so too (standard error and the log) before it fails loading the key as
# nobody (where OpenSSL said only "system lib")
os.chown(kkey, 0, 0)
os.chmod(kkey, 0o600)
cfg = mt.config(['smtp://127.0.0.1:9'], tls={'certificate': kcrt, 'key': kkey}, user='nobody')
mx = mt.Mxgate(cfg, name='mx-start', wait=False)
mt.check(mt.wait_for(lambda: not mx.alive(), mt.slack(15)), 'a start with a key nobody cannot read fails')
log = mx.log()
mt.check('warning: tls.key: user nobody cannot read %s' % kkey in log and
         'event=config_notice key=tls files=1 reason="user nobody cannot read' in log,
         'a start as root names the key on standard error and logs event=config_notice key=tls (%s)' % mx.tail(8))
mx.stop(expect_rc=1, settle=0)
mt.finish()
