#!/usr/bin/env python3
"""A module's LMDB store that cannot be opened stops the start, and a reload keeps the
running config: greylisting without its store passed every message, reputation forgot.

- greylist.store / reputation.store / backends.retry_ledger.store at a path where a regular file stands: mxgate exits 1
  before it starts, and standard error names the key, the directory and LMDB's reason
  (`FILE:LINE:COL: greylist.store: cannot open the LMDB store in DIR: REASON ...`, the
  position of the store's value: before session 33 `FILE: KEY: ...`).
- as root with `user: nobody` and a root-owned 0755 directory (a container's read-only
  volume: the daemon opens its stores as that user): the same refusal, "Permission denied".
- SIGHUP to a config whose greylist.store cannot be opened: event=reload_failed, and the
  running generation stays: a new triplet is still greylisted (451); `mxgatectl reload`
  exits 1 with the same line.

Before: the start logged event=module_init_failed and ran without the module (every
message passed greylisting, /readyz said ready); a reload put the module-less config in
force the same way."""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
SRC = '198.18.71.1'

blocker = os.path.join(mt.TMP, 'not-a-dir')
with open(blocker, 'w') as f:
    f.write('a file where the store directory should be\n')


def refused(name, key, cfg, reason, store):
    """Starts mxgate with cfg; it must exit 1 before event=started, naming key on stderr."""
    mx = mt.Mxgate(cfg, name=name, wait=False)
    # a hang guard: the daemon either exits or logs event=started
    mt.wait_for(lambda: not mx.alive() or 'event=started' in mx.log(), 60)
    started = mx.alive()
    rc = mx.stop(expect_rc=None, settle=0)
    log = mx.log()
    mt.check(not started and rc == 1, '%s: mxgate exits 1 at start (rc=%s, started=%s)\n%s'
             % (name, rc, started, mx.tail(10)))
    mt.check('event=started' not in log, '%s: no event=started' % name)
    # FILE:LINE:COL of the store's value, as the loader's errors
    where = '%s:%s' % (mx.conf, mt.yaml_position(mx.conf, 'store', 'lmdb:' + store))
    lines = [l for l in log.splitlines()
             if l.startswith(where + ': ' + key + ': cannot open the LMDB store in ')]
    mt.check(len(lines) == 1 and reason in lines[0], '%s: stderr names %s and why (%r)\n%s'
             % (name, key, reason, lines or mx.tail(10)))
    mt.check(re.search(r'event=config_error key=%s store=lmdb:\S+ reason="cannot open the LMDB store'
                       % re.escape(key), log) is not None, '%s: event=config_error key=%s' % (name, key))


refused('gl-file', 'greylist.store', mt.proxied_config(
    [be.url], workers=1, greylist={'enabled': True, 'store': 'lmdb:' + blocker}), 'Not a directory', blocker)
refused('rep-file', 'reputation.store', mt.proxied_config(
    [be.url], workers=1, reputation={'store': 'lmdb:' + blocker}), 'Not a directory', blocker)
refused('ledger-file', 'backends.retry_ledger.store', mt.proxied_config(
    [be.url], workers=1, backends={'retry_ledger': {'store': 'lmdb:' + blocker}}), 'Not a directory', blocker)

if os.geteuid() == 0:
    ro = os.path.join(mt.TMP, 'ro')       # root's, 0755: nobody cannot make its files there
    os.mkdir(ro, 0o755)
    os.chmod(mt.TMP, 0o755)               # nobody reads the config and reaches ro
    for name, key, section in (('gl-ro', 'greylist.store', 'greylist'),
                               ('rep-ro', 'reputation.store', 'reputation')):
        sec = {'store': 'lmdb:' + ro}
        if section == 'greylist':
            sec['enabled'] = True
        cfg = mt.proxied_config([be.url], workers=1, user='nobody', **{section: sec})
        refused(name, key, cfg, 'Permission denied', ro)
else:
    mt.say('not root: the `user: nobody` read-only directory cases are left out')

# A reload that cannot open the store keeps the running generation.
SOCK = os.path.join(mt.TMP, 'ctl.sock')
gl = {'enabled': True, 'store': 'lmdb:' + os.path.join(mt.TMP, 'gl'), 'delay': '1h'}
mx = mt.Mxgate(mt.proxied_config([be.url], workers=1, greylist=gl, control={'socket': SOCK}), 'node')


def rcpt(r):
    return mt.send_mail(mx.port, 'a@example.org', [r], mt.message('m'), ehlo='client.example.org',
                        proxy_src=SRC)[0]


mt.check(rcpt('p@example.test') == 451, 'greylisting is on: a new triplet gets 451')
at = mx.log_size()
mx.reload(mt.proxied_config([be.url], workers=1, greylist=dict(gl, store='lmdb:' + blocker),
                            control={'socket': SOCK}))
mt.check(mx.wait_log(r'event=reload_failed', timeout=30, start=at) is not None,
         'a reload whose greylist.store cannot open: event=reload_failed\n' + mx.tail(10))
mt.check(re.search(r'event=config_error key=greylist.store store=lmdb:%s reason="cannot open'
                   % re.escape(blocker), mx.log()[at:]) is not None, '... with event=config_error key=greylist.store')
mt.check('event=reloaded' not in mx.log()[at:], '... and no event=reloaded')
mt.check(rcpt('q@example.test') == 451, 'the running generation stays: a new triplet is still greylisted')
# `mxgatectl reload` (systemctl reload) of the same file says why, and exits 1
rc, text = mt.ctl_text(SOCK, 'reload')
mt.check(rc == 1 and 'reload failed; generation 1 stays in force' in text and
         'greylist.store: cannot open the LMDB store in %s: Not a directory' % blocker in text,
         'mxgatectl reload exits 1 naming the store and why: %r' % text)
mx.stop()
mt.finish()
