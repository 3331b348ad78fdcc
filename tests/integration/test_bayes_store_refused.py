#!/usr/bin/env python3
"""The classifier's LMDB store (rules.bayes.store: lmdb:/dir) that cannot be opened stops the
start, and a reload keeps the running config, as greylist.store and reputation.store do
(test_store_open_refused.py): a classifier without its tokens classifies and learns nothing.

- rules.bayes.store at a path where a regular file stands: mxgate exits 1 before it starts;
  standard error names the key, the directory and LMDB's reason (`FILE:LINE:COL:
  rules.bayes.store: cannot open the LMDB store in DIR: REASON ...`, the store's position), the log event=config_error
  key=rules.bayes.store; `mxgate -t` of that config exits 1 naming the key too.
- SIGHUP to such a config: event=reload_failed, no event=reloaded; `mxgatectl reload`
  exits 1 with the same line; the running generation stays.

Before: each worker logged event=bayes_error and went on without the classifier (/readyz
ready, every message unclassified); a reload put such a config in force the same way."""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink()

blocker = os.path.join(mt.TMP, 'not-a-dir')
with open(blocker, 'w') as f:
    f.write('a file where the store directory should be\n')
SOCK = os.path.join(mt.TMP, 'ctl.sock')


def rules(store):
    return {'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
            'bayes': {'enabled': True, 'store': store}}


mx = mt.Mxgate(mt.config([sink.url], workers=1, rules=rules('lmdb:' + blocker)), name='refused', wait=False)
mt.wait_for(lambda: not mx.alive() or 'event=started' in mx.log(), 60)   # a hang guard
started = mx.alive()
rc = mx.stop(expect_rc=None, settle=0)
log = mx.log()
mt.check(not started and rc == 1, 'mxgate exits 1 at start (rc=%s, started=%s)\n%s' % (rc, started, mx.tail(10)))
where = '%s:%s' % (mx.conf, mt.yaml_position(mx.conf, 'store', 'lmdb:' + blocker))   # the value's
lines = [l for l in log.splitlines() if l.startswith(where + ': rules.bayes.store: cannot open the LMDB store in ')]
mt.check(len(lines) == 1 and blocker in lines[0] and 'Not a directory' in lines[0],
         'stderr names rules.bayes.store, the directory and why: %s' % (lines or mx.tail(10)))
mt.check(re.search(r'event=config_error key=rules.bayes.store store=lmdb:%s reason="cannot open the LMDB store'
                   % re.escape(blocker), log) is not None, 'event=config_error key=rules.bayes.store')

# -t agrees with the start: an error, exit 1
r = mt.subprocess.run([mt.BIN, '-t', '-c', mx.conf], capture_output=True, text=True, timeout=60)
mt.check(r.returncode == 1 and (where + ': rules.bayes.store: ') in r.stderr,
         '-t of that config: exit 1 naming rules.bayes.store (%d %s)' % (r.returncode, r.stderr[-300:]))

# a reload to such a store keeps the running generation
good = 'lmdb:' + os.path.join(mt.TMP, 'bayes')
mx = mt.Mxgate(mt.config([sink.url], workers=1, rules=rules(good), control={'socket': SOCK}), name='node')
mt.check('event=bayes_error' not in mx.log(), 'a store that opens: no bayes_error')
at = mx.log_size()
mx.reload(mt.config([sink.url], workers=1, rules=rules('lmdb:' + blocker), control={'socket': SOCK}))
mt.check(mx.wait_log(r'event=reload_failed', timeout=30, start=at) is not None,
         'a reload whose rules.bayes.store cannot open: event=reload_failed\n' + mx.tail(10))
mt.check(re.search(r'event=config_error key=rules.bayes.store store=lmdb:%s reason="cannot open'
                   % re.escape(blocker), mx.log()[at:]) is not None, '... with event=config_error key=rules.bayes.store')
mt.check('event=reloaded' not in mx.log()[at:], '... and no event=reloaded')
rc, text = mt.ctl_text(SOCK, 'reload')
mt.check(rc == 1 and 'rules.bayes.store: cannot open the LMDB store in %s: Not a directory' % blocker in text,
         'mxgatectl reload exits 1 naming the store and why: %r' % text)
code = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('after'))[0]
mt.check(code == 250, 'the running generation still relays (%s)' % code)
mx.stop()
mt.finish()
