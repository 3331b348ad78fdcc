#!/usr/bin/env python3
"""mxgatectl -c FILE run by an operator who is not root (README "Operating it": `mxgatectl
-s SOCKET status  # or -c FILE`).

The daemon reads its TLS key as root before it drops privileges (README's `user:`), so the
key is root's, mode 0600; the operator may use the control socket (its mode/group allow it)
and read the config file, but not the key. mxgatectl needs only control.socket from the
file: it must not fail on what the daemon alone has to read (TLS key, rule files, lists).
Before this test it loaded and checked the whole config and stopped at
"tls.key: cannot read ...: Permission denied" (exit 2, the daemon looked unreachable).

Runs mxgatectl through setpriv as user nobody: needs root (CI runs as root)."""
import json
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'setpriv', 'openssl')
if os.geteuid() != 0:
    mt.skip('runs mxgatectl as another user with setpriv: needs root')
CTL = mt.mxgatectl()

# the operator (nobody) can reach TMP, the config and the socket, not the key
os.chmod(mt.TMP, 0o755)
crt, key = mt.cert()
secret = os.path.join(mt.TMP, 'secret')
os.makedirs(secret, mode=0o700)
shutil.copy(crt, os.path.join(secret, 'cert.pem'))
shutil.copy(key, os.path.join(secret, 'key.pem'))
os.chmod(os.path.join(secret, 'key.pem'), 0o600)
sock = os.path.join(mt.TMP, 'control.sock')

a = mt.Sink(name='sink')
cfg = mt.config([a.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}],
                tls={'certificate': os.path.join(secret, 'cert.pem'), 'key': os.path.join(secret, 'key.pem')},
                control={'socket': sock, 'mode': '0666'})
mx = mt.Mxgate(cfg, name='mx-operator')
os.chmod(mx.conf, 0o644)


def as_nobody(*args):
    r = subprocess.run(['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', CTL] + list(args),
                       capture_output=True, text=True, timeout=mt.slack(30))
    return r.returncode, r.stdout, r.stderr


rc, out, err = as_nobody('-s', sock, 'status')
mt.check(rc == 0 and out.startswith('mxgate '), 'nobody: mxgatectl -s SOCKET status works (%s %s)' % (rc, err.strip()[:120]))
rc, out, err = as_nobody('-c', mx.conf, 'status')
mt.check(rc == 0 and out.startswith('mxgate '),
         'nobody: mxgatectl -c FILE status works although the TLS key is unreadable (%s %s)' % (rc, err.strip()[:160]))
rc, out, err = as_nobody('-c', mx.conf, '--json', 'backends')
try:
    urls = [b['url'] for b in json.loads(out)['backends']] if rc == 0 else []
except (ValueError, KeyError):
    urls = []
mt.check(urls == [a.url], 'nobody: mxgatectl -c FILE --json backends lists the backend (%s %s)' % (rc, err.strip()[:120]))

# a file without control.socket, and one that is not YAML: exit 2 with the reason
nosock = os.path.join(mt.TMP, 'nosock.yaml')
open(nosock, 'w').write('listen: [127.0.0.1:2525]\nbackends: { servers: ["%s"] }\n' % a.url)
r = subprocess.run([CTL, '-c', nosock, 'status'], capture_output=True, text=True, timeout=mt.slack(30))
mt.check(r.returncode == 2 and 'no control.socket' in r.stderr,
         'a config without control.socket: exit 2, "no control.socket" (%s %s)' % (r.returncode, r.stderr.strip()[:120]))
broken = os.path.join(mt.TMP, 'broken.yaml')
open(broken, 'w').write('control: { socket: [\n')
r = subprocess.run([CTL, '-c', broken, 'status'], capture_output=True, text=True, timeout=mt.slack(30))
mt.check(r.returncode == 2 and broken + ':' in r.stderr,
         'a config that is not YAML: exit 2 with FILE:LINE:COL (%s %s)' % (r.returncode, r.stderr.strip()[:120]))
mx.stop()
mt.finish()
