#!/usr/bin/env python3
"""The example plugin (plugins/examples/example_plugin.c) loaded with dlopen by the real
daemon: its header reaches the backend once, its magic word rejects, its async rcpt hook
(a libuv timer) works and is cut by the timeout; a plugin built for another ABI version is
refused by `mxgate -t` with a clear error."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()


def plugin_cfg(plugin, name):
    """A minimal config with one plugin, through `mxgate -t`."""
    return t.config_check(t.config(['smtp://127.0.0.1:2526'], hostname='mx.example.test',
                                   listen=['127.0.0.1:2525'], plugins=[plugin]), name)


def gate(plugin, name='mxgate'):
    return t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[plugin]), name=name)


def send(port, data):
    return t.send_mail(port, 'a@example.org', ['b@example.test'], data, timeout=30)


def msg(tag, body=''):
    return t.message(tag, 'body of %s\r\n%s\r\n' % (tag, body))


so = os.path.join(t.BUILD, 'example_plugin.so')
bad = os.path.join(t.BUILD, 'bad_abi_plugin.so')
if not os.path.exists(so):
    t.fail('example_plugin.so not built (it is part of the build): ' + so)

rc, out = plugin_cfg({'name': 'ex', 'path': so, 'options': {'word': 'SECRETWORD'}}, 'good')
t.check(rc == 0, 'config with the example plugin validates: %s' % out.strip())
t.check(os.path.exists(bad), 'bad_abi_plugin.so is built')
if os.path.exists(bad):
    rc, out = plugin_cfg({'name': 'bad', 'path': bad}, 'bad')
    t.check(rc == 1 and 'ABI version' in out and 'bad.yaml:' in out, 'wrong ABI refused at config check: %s' % out.strip())
rc, out = plugin_cfg({'name': 'ex', 'path': so, 'options': {'nope': 1}}, 'badopt')
t.check(rc == 1 and 'nope' in out, 'unknown plugin option refused at config check: %s' % out.strip())
rc, out = plugin_cfg({'name': 'ex', 'path': '/nonexistent/x.so'}, 'missing')
t.check(rc == 1 and 'cannot load plugin' in out, 'missing shared object refused: %s' % out.strip())

be = t.Backend()
m = gate({'name': 'ex', 'path': so, 'options': {'word': 'SECRETWORD', 'rcpt_delay_ms': 50}})
code, text = send(m.port, msg('ex1'))
got = be.find('body of ex1')
t.check(code == 250 and len(got) == 1, 'clean message delivered: %s %s' % (code, text))
if got:
    t.check(got[0]['data'].count(b'X-Example-Plugin: seen by ex') == 1, 'plugin header present exactly once')
code, text = send(m.port, msg('ex2', 'the SECRETWORD is here'))
t.check(code == 550 and 'SECRETWORD' in text and not be.find('body of ex2'), 'magic word rejected: %s %s' % (code, text))

# The async rcpt hook slower than its timeout: on_error reject at RCPT, bounded.
m2 = gate({'name': 'ex', 'path': so, 'on_error': 'reject', 'timeout': '1s', 'options': {'rcpt_delay_ms': 5000}},
          'mx-slow')
r = send(m2.port, msg('ex3'))
code, text, rc = r[0], r[1], r.rcpt_codes
t.check(rc == [550] and m2.count_log(r'event=plugin_error plugin=ex stage=rcpt error=timeout on_error=reject') == 1,
        'slow async hook cut by its timeout (logged error=timeout), on_error reject: %s' % rc)
code, text = send(m2.port, msg('ex4'))
t.check(m2.alive() and code == 550, 'daemon alive after cancelled calls, the next message gets the same verdict: %s' % code)
m.stop()
m2.stop()
t.finish()
