#!/usr/bin/env python3
"""A module configured but not running says so: /readyz is 503 and `mxgatectl status`
names it, until a reload that sets it up (or drops it).

A worker whose module cannot be set up (out of memory, a thread that cannot start: since the
LMDB stores open with the generation, test_store_open_refused.py, nothing a test can cause;
MXGATE_TEST_MODULE_INIT_FAIL=greylist stands in for it) logs event=module_init_failed and
goes on without the module. Before, /readyz said ready and status said nothing, while
greylisting let every message through. Now:

- /readyz: 503 `not ready: module not running: greylist (event=module_init_failed)`;
- `mxgatectl status`: `ready: no (module not running: greylist ...)`; `--json`:
  "modules_not_running": "greylist";
- a reload whose generation has no such module (greylisting turned off here) is ready again.
"""
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.mxgatectl()       # built, or the test is skipped
be = mt.Backend()
SOCK = os.path.join(mt.TMP, 'ctl.sock')
MPORT = mt.hold_port().port
os.environ['MXGATE_TEST_MODULE_INIT_FAIL'] = 'greylist'
base = dict(workers=2, control={'socket': SOCK}, metrics={'listen': '127.0.0.1:%d' % MPORT})
mx = mt.Mxgate(mt.config([be.url], greylist={'enabled': True, 'store': 'lmdb:' + os.path.join(mt.TMP, 'gl')},
                         **base), 'mx')
del os.environ['MXGATE_TEST_MODULE_INIT_FAIL']
mt.check(mx.wait_log(r'event=ready generation=1', 30) is not None, 'the first health checks are in')
mt.check(mx.count_log(r'event=module_init_failed module=greylist') == 2,
         'each worker logs event=module_init_failed module=greylist')
code, body = mt.http_get(MPORT, '/readyz')
mt.check(code == 503 and 'module not running: greylist (event=module_init_failed)' in body,
         '/readyz is 503 naming the module: %s %r' % (code, body))
rc, text = mt.ctl_text(SOCK, 'status')
mt.check(rc == 0 and 'ready: no (module not running: greylist' in text,
         'mxgatectl status names the module: %r' % text[:300])
rc, text = mt.ctl_text(SOCK, '--json', 'status')
try:
    st = json.loads(text)
except ValueError:
    st = {}
mt.check(st.get('ready') is False and st.get('modules_not_running') == 'greylist',
         'status --json: ready false, modules_not_running "greylist": %r' % text[:300])

at = mx.log_size()
mx.reload(mt.config([be.url], **base))
mt.check(mx.wait_log(r'event=reloaded generation=2', 30, at) is not None, 'the reload without greylisting is in force')
mt.check(mt.wait_for(lambda: mt.http_get(MPORT, '/readyz')[0] == 200, 30), 'ready again: /readyz 200')
rc, text = mt.ctl_text(SOCK, '--json', 'status')
mt.check('"modules_not_running":""' in text.replace(' ', ''), 'modules_not_running is empty: %r' % text[:200])
mx.stop()
mt.finish()
