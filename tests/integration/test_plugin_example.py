#!/usr/bin/env python3
"""The example plugin (plugins/examples/example_plugin.c) loaded with dlopen by the real
daemon: its header reaches the backend once, its magic word rejects, its async rcpt hook
(a libuv timer) works and is cut by the timeout; a plugin built for another ABI version is
refused by `mxgate -t` with a clear error."""
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'peers'))
import mxpeers as t

so = os.path.join(t.BUILD, 'example_plugin.so')
bad = os.path.join(t.BUILD, 'bad_abi_plugin.so')
if not os.path.exists(so):
    t.skip('example_plugin.so not built')

rc, out = t.config_check('  - { name: ex, path: "%s", options: { word: SECRETWORD } }' % so, 'good')
t.check(rc == 0, 'config with the example plugin validates: %s' % out.strip())
if os.path.exists(bad):
    rc, out = t.config_check('  - { name: bad, path: "%s" }' % bad, 'bad')
    t.check(rc == 1 and 'ABI version' in out and 'bad.yaml:' in out, 'wrong ABI refused at config check: %s' % out.strip())
rc, out = t.config_check('  - { name: ex, path: "%s", options: { nope: 1 } }' % so, 'badopt')
t.check(rc == 1 and 'nope' in out, 'unknown plugin option refused at config check: %s' % out.strip())
rc, out = t.config_check('  - { name: ex, path: "/nonexistent/x.so" }', 'missing')
t.check(rc == 1 and 'cannot load plugin' in out, 'missing shared object refused: %s' % out.strip())

be = t.Backend()
m = t.mxgate('  - { name: ex, path: "%s", options: { word: SECRETWORD, rcpt_delay_ms: 50 } }' % so, be.port)
code, text, _ = t.send(m.port, t.message('ex1'))
got = be.find('body of ex1')
t.check(code == 250 and len(got) == 1, 'clean message delivered: %d %s' % (code, text))
if got:
    t.check(got[0]['data'].count(b'X-Example-Plugin: seen by ex') == 1, 'plugin header present exactly once')
code, text, _ = t.send(m.port, t.message('ex2', 'the SECRETWORD is here'))
t.check(code == 550 and 'SECRETWORD' in text and not be.find('body of ex2'), 'magic word rejected: %d %s' % (code, text))

# The async rcpt hook slower than its timeout: on_error reject at RCPT, bounded.
m2 = t.mxgate('  - { name: ex, path: "%s", on_error: reject, timeout: 1s, options: { rcpt_delay_ms: 5000 } }' % so,
              be.port, name='mx-slow')
start = time.time()
code, text, rc = t.send(m2.port, t.message('ex3'))
took = time.time() - start
t.check(rc == [550] and took < 3, 'slow async hook cut by timeout, on_error reject: %s after %.1fs' % (rc, took))
code, text, _ = t.send(m2.port, t.message('ex4'))
t.check(m2.poll() is None, 'daemon alive after cancelled calls')
t.finish()
