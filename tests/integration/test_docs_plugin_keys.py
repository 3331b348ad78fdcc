#!/usr/bin/env python3
"""docs/plugins.md, "Keys of an entry": `max_size` is "the same as options.max_size". A
milter has no such option (it is sent every message whole: mxgate has no per-milter size
limit, as Postfix has none for its smtpd_milters), so a `max_size:` on a milter entry is a
setting that does nothing. It was accepted without a word (while `action:` on a milter is
an error); `mxgate -t` now warns at it, and a milter without it, or a spamd with it, gets
no such warning."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

BASE = '''listen: [127.0.0.1:2525]
backends: { servers: ["smtp://127.0.0.1:2526"] }
plugins:
'''


def check(name, entries):
    path = os.path.join(mt.TMP, name + '.yaml')
    open(path, 'w').write(BASE + entries)
    r = mt.run_mxgate('-t', '-c', path)
    return r.returncode, r.stdout + r.stderr


rc, out = check('milter-max', '  - { name: milter, address: "inet:127.0.0.1:8891", max_size: 1M }\n')
mt.check(rc == 0 and re.search(r'warning: plugins\[0\] \(milter\): max_size has no effect', out),
         'max_size on a milter: -t warns that it does nothing (rc=%d: %s)' % (rc, out.strip()[:300]))
rc, out = check('milter', '  - { name: milter, address: "inet:127.0.0.1:8891" }\n'
                '  - { name: spamd, address: "127.0.0.1:783", max_size: 1M }\n')
mt.check(rc == 0 and 'max_size' not in out,
         'a milter without max_size, a spamd with it: no warning (%s)' % out.strip()[:300])

# docs/plugins.md, `address`: HOST is an IP address, localhost or a host name resolved when the
# file is loaded, as a backend's. One that does not resolve (RFC 6761: .invalid never does) is
# a -t error at plugins[0].address, the name in the line (was: host names were refused, "not
# looked up").
for addr in ('inet:milter.invalid:8891', 'spamd.invalid:783', 'inet:8891@milter.invalid'):
    rc, out = check('named', '  - { name: milter, address: "%s" }\n' % addr)
    mt.check(rc == 1 and re.search(r'plugins\[0\]\.address: cannot resolve host', out) and addr in out,
             'address %s: -t says the host name does not resolve (rc=%d: %s)' % (addr, rc, out.strip()[:300]))
for addr in ('inet:127.0.0.1:8891', 'localhost:8891', '[::1]:8891', 'inet:8891@127.0.0.1', 'unix:/run/m.sock'):
    rc, out = check('numeric', '  - { name: milter, address: "%s" }\n' % addr)
    mt.check(rc == 0, 'address %s passes -t (%s)' % (addr, out.strip()[:200]))
mt.finish()
