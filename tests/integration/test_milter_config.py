#!/usr/bin/env python3
"""A plugin's unix socket given as a relative path (`local:relative.sock`): Postfix takes
it relative to its queue directory (smtpd_milters runs there); mxgate has none and its
working directory is whatever started it, so such a path connected somewhere else under
systemd than under a shell. It is refused at load (`mxgate -t` says so), for milter,
clamd, spamd and rspamd alike; an absolute path still loads."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

for kind, addr in (('milter', 'local:relative.sock'), ('milter', 'unix:run/milter.sock'), ('clamd', 'unix:clamd.ctl'),
                   ('spamd', 'local:./spamd.sock')):
    cfg = t.config(['smtp://127.0.0.1:2525'], listen=[{'address': '127.0.0.1:2500'}], plugins=[{'name': kind, 'address': addr}])
    rc, out = t.config_check(cfg, name='rel-%s' % kind)
    t.check(rc != 0 and 'must be absolute' in out and 'address' in out,
            '-t refuses %s address %s: rc %d, %s' % (kind, addr, rc, out.strip()[-200:]))
cfg = t.config(['smtp://127.0.0.1:2525'], listen=[{'address': '127.0.0.1:2500'}], plugins=[{'name': 'milter', 'address': 'unix:/run/mxtest-milter.sock'}])
rc, out = t.config_check(cfg, name='abs')
t.check(rc == 0, 'an absolute unix path loads (%d %s)' % (rc, out.strip()[-200:]))
t.finish()
