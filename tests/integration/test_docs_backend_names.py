#!/usr/bin/env python3
"""README: "Check it, then run it": `mxgate -t` is the operator's word that the file will
start. docs/config.md: a backend URL is `smtp://host[:port]` — a host name is allowed and
resolved once when the configuration is loaded.

- a backend host name that does not resolve (RFC 6761's .invalid never does) is a -t error
  at its place, FILE:LINE:COL: backends.servers[1]: cannot resolve host: "smtp://...", as for a
  route's server; an smtp:// quarantine is refused at its place as not maildir:/path (was: -t
  said ok, then the start died with event=config_error reason="backends: smtp://mail.invalid:25:
  cannot resolve host", no place, and a SIGHUP to such a file said nothing of where);
- a host name that resolves (localhost) passes -t and the daemon delivers through it."""
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks')


def check_text(name, text):
    path = os.path.join(mt.TMP, name + '.yaml')
    open(path, 'w').write(text)
    r = mt.run_mxgate('-t', '-c', path)
    return path, r.returncode, r.stdout + r.stderr


path, rc, out = check_text('server', '''listen: [127.0.0.1:2525]
backends:
  servers:
    - "smtp://127.0.0.1:2526"
    - "smtp://mail.invalid:25"
''')
mt.check(rc == 1 and re.search(re.escape(path) + r':5:7: backends\.servers\[1\](\.address)?: cannot resolve host', out),
         'a server whose name does not resolve: -t exits 1 at its place (rc=%d: %s)' % (rc, out.strip()[:200]))

path, rc, out = check_text('route', '''listen: [127.0.0.1:2525]
backends:
  servers: ["smtp://127.0.0.1:2526"]
  routes:
    - { domains: [example.net], servers: ["lmtp://lmtp.invalid:24"] }
''')
mt.check(rc == 1 and re.search(re.escape(path) + r':5:\d+: backends\.routes\[0\]\.servers\[0\]: cannot resolve host', out),
         'a route server whose name does not resolve: -t exits 1 at its place (rc=%d: %s)' % (rc, out.strip()[:200]))

path, rc, out = check_text('quarantine', '''listen: [127.0.0.1:2525]
backends: { servers: ["smtp://127.0.0.1:2526"] }
quarantine: "smtp://quarantine.invalid:25"
''')
mt.check(rc == 1 and re.search(re.escape(path) + r':3:\d+: quarantine: expected maildir:/path', out),
         'an smtp:// quarantine (only maildir:/path holds a message): -t exits 1 at its place (rc=%d: %s)'
         % (rc, out.strip()[:200]))

# A name that resolves: -t ok, and the daemon delivers through it.
be = mt.Sink(name='named')
cfg = mt.config([be.url.replace('127.0.0.1', 'localhost')], workers=1)
rc, out = mt.config_check(dict(cfg, listen=['127.0.0.1:%d' % mt.free_port()]), 'named')
mt.check(rc == 0, 'smtp://localhost:PORT passes -t (%s)' % out.strip()[:200])
mx = mt.Mxgate(cfg, name='mx-named')
r = mt.swaks(mx.port, '--from', 'a@example.net', '--to', 'b@example.org')
mt.check(r.returncode == 0 and mt.wait_for(lambda: be.count() == 1, 10),
         'delivered through a backend named by host name (rc=%d)' % r.returncode)
mt.finish()
