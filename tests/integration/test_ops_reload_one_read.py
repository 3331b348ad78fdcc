#!/usr/bin/env python3
"""A reload reads and parses its config file once. Before the fix a SIGHUP reload parsed the
file twice: once for its backend names (resolved in a thread), then again to put it in
force. An operator's edit landing between the two (while the names resolve, up to
dns.timeout) was put in force without having been the file the reload was asked for, and its
new names were resolved on the main loop after all (the stall the thread was there to avoid).

- SIGHUP with a server named by a slow name; while it resolves, the file is rewritten to name
  another server: the reload puts the first file in force (its server), and the second
  file's name is never asked; a second SIGHUP then puts the second file in force.
- SIGHUP with a server whose name is never answered; while it resolves, the file is rewritten
  to name another server: the refusal reads the file again for its FILE:LINE:COL lines, and
  that reading (on the main loop) asked the edit's new name there, stalling the loop up to
  dns.timeout — now such a name is refused unasked ("the file changed while its names were
  resolved"), the running generation stays.
"""
import json
import os
import signal
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'one-read-control.sock')
dns = mt.dns_peer({
    'slow.once.test': [{'a': '127.0.0.1'}, {'delay': mt.slack(3)}],
    'other.once.test': [{'a': '127.0.0.1'}],
    'drop.once.test': 'drop',
    'late.once.test': [{'a': '127.0.0.1'}],
}, name='dns-one-read')
a = mt.Backend(name='OA')
b = mt.Backend(name='OB')
c = mt.Backend(name='OC')


def cfg_with(server):
    return mt.config([server], workers=1, control={'socket': SOCK},
                     dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '%ds' % mt.slack(10), 'tries': 1})


def backends():
    r = subprocess.run([CTL, '-s', SOCK, '--json', 'status'], capture_output=True, text=True, timeout=mt.slack(30))
    return [x['url'] for x in json.loads(r.stdout)['backends']] if r.returncode == 0 else r.stderr


mx = mt.Mxgate(cfg_with(a.url), name='mx-one-read')
mt.check(mx.wait_log(r'event=ready generation=1', 10) is not None, 'started\n%s' % mx.tail())
first = 'smtp://slow.once.test:%d' % b.port
second = 'smtp://other.once.test:%d' % c.port
mark = mx.log_size()
mx.reload(cfg_with(first))
mt.check(mt.wait_for(lambda: dns.queries('slow.once.test') > 0, timeout=mt.slack(10)), 'the reload asks for its name')
mx._write(cfg_with(second))
mt.check(mx.wait_log(r'event=reloaded generation=2', mt.slack(20), mark) is not None, 'reloaded\n%s' % mx.tail())
mt.check(backends() == [first], 'the file the reload was asked for is in force: %s' % backends())
mt.check(dns.queries('other.once.test') == 0, 'the later file\'s name was not asked by that reload (%d)'
         % dns.queries('other.once.test'))
mx.send_signal(signal.SIGHUP)
mt.check(mx.wait_log(r'event=reloaded generation=3', mt.slack(20), mark) is not None, 'reloaded again\n%s' % mx.tail())
mt.check(backends() == [second], 'the next reload puts the edited file in force: %s' % backends())

# --- the asked-for file's name does not resolve, and the file is edited meanwhile
mark = mx.log_size()
mx.reload(cfg_with('smtp://drop.once.test:%d' % b.port))
mt.check(mt.wait_for(lambda: dns.queries('drop.once.test') > 0, timeout=mt.slack(10)), 'the reload asks for the dropped name')
mx._write(cfg_with('smtp://late.once.test:%d' % c.port))
mt.check(mx.wait_log(r'event=reload_failed', mt.slack(40), mark) is not None, 'the reload is refused\n%s' % mx.tail())
mt.check(dns.queries('late.once.test') == 0, 'the edit\'s name was not asked on the main loop (%d)'
         % dns.queries('late.once.test'))
mt.check(mx.wait_log(r'the file changed while its names were resolved', mt.slack(5), mark) is not None,
         'the refusal says the file changed\n%s' % mx.tail())
mt.check(backends() == [second], 'the running generation stays: %s' % backends())
mx.stop()
mt.finish()
