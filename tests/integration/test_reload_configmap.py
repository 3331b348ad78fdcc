#!/usr/bin/env python3
"""A configuration mounted from a Kubernetes ConfigMap: the file is a symlink through `..data`,
and an update swaps `..data` to a new timestamped directory (rename of a new symlink over the
old one), never writing the file in place. docs/operations.md "Running in containers".

- SIGHUP after a swap reads the new file (the new hostname greets);
- a swap to a broken file, then SIGHUP: refused with the FILE:LINE:COL error,
  event=reload_failed ... keeping=old, the running configuration still serves mail;
- a swap back to a good file reloads again.
Coverage of what the docs promise (it held before this test)."""
import os
import re
import signal
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

be = mt.Backend(name='be')
mx = mt.Mxgate(mt.config([be.url], workers=1, hostname='mx-a.example.test'), name='mx-cm')
cm = os.path.join(mt.TMP, 'configmap')
os.mkdir(cm)


def publish(stamp, text):
    """What the kubelet does: a new ..STAMP directory, a ..data_tmp link to it renamed over
    ..data; the mounted name links to ..data/mxgate.yaml."""
    d = os.path.join(cm, '..' + stamp)
    os.mkdir(d)
    with open(os.path.join(d, 'mxgate.yaml'), 'w') as f:
        f.write(text)
    tmp = os.path.join(cm, '..data_tmp')
    os.symlink('..' + stamp, tmp)
    os.replace(tmp, os.path.join(cm, '..data'))


publish('2026_12_06_a', mx.cfg_text)
os.replace(mx.conf, mx.conf + '.orig')
os.symlink(os.path.join(cm, '..data', 'mxgate.yaml'), mx.conf)


def greeting():
    c = mt.Client(mx.port)
    g = c.greeting
    c.cmd('QUIT')
    c.close()
    return g


def reload_and_wait():
    start = mx.log_size()
    mx.send_signal(signal.SIGHUP)
    return mx.wait_log(r'event=(reloaded|reload_failed)[^\n]*', mt.slack(15), start), start


publish('2026_12_06_b', mx.cfg_text.replace('mx-a.example.test', 'mx-b.example.test'))
m, _ = reload_and_wait()
mt.check(m is not None and 'event=reloaded' in m.group(0), 'SIGHUP after the ..data swap reloads (%s)' % (m and m.group(0)))
g = greeting()
mt.check(g[0] == 220 and 'mx-b.example.test' in g[1], 'the swapped-in file is the one read (%s)' % (g,))

publish('2026_12_06_c', 'listen: [\n  bogus: 1\n')
m, start = reload_and_wait()
mt.check(m is not None and 'event=reload_failed' in m.group(0) and 'keeping=old' in m.group(0),
         'a broken file is refused, the old configuration kept (%s)' % (m and m.group(0)))
mt.check(mx.wait_log(r'event=config_error error="%s:\d+:\d+: ' % re.escape(mx.conf), mt.slack(5), start)
         is not None, 'the error names FILE:LINE:COL')
g = greeting()
mt.check(g[0] == 220 and 'mx-b.example.test' in g[1], 'the running configuration still serves (%s)' % (g,))
code, _ = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('cm-after-broken'))
mt.check(code == 250, 'mail is relayed after the refused reload (%s)' % code)

publish('2026_12_06_d', mx.cfg_text.replace('mx-a.example.test', 'mx-d.example.test'))
m, _ = reload_and_wait()
mt.check(m is not None and 'event=reloaded' in m.group(0), 'a good file swapped in next reloads (%s)' % (m and m.group(0)))
g = greeting()
mt.check(g[0] == 220 and 'mx-d.example.test' in g[1], 'and is the one read (%s)' % (g,))
mt.check(mx.alive(), 'mxgate is alive')
mx.stop()
mt.finish()
