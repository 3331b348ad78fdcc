#!/usr/bin/env python3
"""A SIGHUP reload whose backend names take the DNS its whole dns.timeout to answer (or never
answer) must not stop the daemon meanwhile: as nginx or HAProxy reload, the running
configuration serves until the new one is ready. Before the fix the main loop resolved the
names itself (hostres.c's poll loop, up to dns.timeout): /readyz, /metrics, the status page
and the control socket (`mxgatectl backends`) did not answer until the resolution ended.

- a reload naming a server whose DNS drops the query: while the query is unanswered, /readyz
  answers 200, `mxgatectl backends` answers, a message is delivered to the running pool;
  then the reload fails (event=reload_failed, the reason logged) and the old pool stays;
- a SIGHUP while a reload resolves is queued (event=reload_queued) and done after it;
- a reload naming a slow name (answered after a delay): the same, then the new pool is in
  force (event=reloaded) and takes the mail; the name was asked once for the reload.
"""
import os
import re
import signal
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'reload-dns-control.sock')

dns = mt.dns_peer({
    'drop.reload.test': 'drop',
    # the checks below run while the answer is awaited: time enough for them on a loaded machine
    'slow.reload.test': [{'a': '127.0.0.1'}, {'delay': mt.slack(7)}],
}, name='dns-reload')


def send(mx, tag):
    return mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message(tag)).code


a = mt.Backend(name='RA')
b = mt.Backend(name='RB')
cfg = mt.config([a.url], workers=1, control={'socket': SOCK},
                metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '%ds' % mt.slack(10), 'tries': 1},
                backends={'health_check': {'interval': '500ms', 'timeout': '1s'}})
mx = mt.Mxgate(cfg, name='mx-reload-dns')
mp = mx.metrics_port
mt.check(mx.wait_log(r'event=ready generation=1 backends_up=yes', 10) is not None, 'started\n%s' % mx.tail())


def during_resolution(label, name, tag):
    """Reloads with a server named name; while its query is unanswered, the daemon answers."""
    mark = mx.log_size()
    n0 = dns.queries(name)
    mx.reload(dict(cfg, backends=dict(cfg['backends'], servers=['smtp://%s:%d' % (name, b.port)])))
    mt.check(mt.wait_for(lambda: dns.queries(name) > n0, timeout=mt.slack(10)),
             '%s: the reload asks the DNS for %s' % (label, name))
    st = mt.http_get(mp, '/readyz')
    ctl = subprocess.run([CTL, '-s', SOCK, 'backends'], capture_output=True, text=True, timeout=mt.slack(30))
    code = send(mx, tag)
    done = mx.count_log(r'event=(reloaded|reload_failed)', mark)
    mt.check(done == 0, '%s: the checks below ran while the name was being resolved (%d results already)'
             % (label, done))
    mt.check(st[0] == 200, '%s: /readyz answers during the resolution (%s %r)' % (label, st[0], st[1][:60]))
    mt.check(ctl.returncode == 0 and a.url in ctl.stdout,
             '%s: mxgatectl backends answers during the resolution (rc %s)\n%s%s'
             % (label, ctl.returncode, ctl.stdout, ctl.stderr))
    mt.check(code == 250 and any(tag.encode() in m['data'] for m in a.messages),
             '%s: a message during the resolution goes to the running pool (%s)' % (label, code))
    return mark


mark = during_resolution('drop', 'drop.reload.test', 'rd-drop')
# a second SIGHUP while the first resolves: queued, done once the first ends
mx.proc.send_signal(signal.SIGHUP)
mt.check(mx.wait_log(r'event=reload_queued ', 10, mark) is not None, 'drop: a SIGHUP meanwhile is queued\n%s' % mx.tail())
mt.check(mx.count_log(r'event=(reloaded|reload_failed)', mark) == 0, 'drop: the first reload is still resolving')
mt.check(mt.wait_for(lambda: mx.count_log(r'event=reload_failed ', mark) == 2, timeout=mt.slack(40)),
         'drop: the reload fails once dns.timeout is over, then the queued one too\n%s' % mx.tail())
mt.check(re.search(r'event=config_error error="[^"]*backends\.servers\[0\]: cannot resolve host: no answer',
                   mx.log()[mark:]) is not None, 'drop: the reason is logged\n%s' % mx.tail())
code = send(mx, 'rd-after-drop')
mt.check(code == 250 and any(b'rd-after-drop' in m['data'] for m in a.messages),
         'drop: the old pool stays in force (%s)' % code)

mark = during_resolution('slow', 'slow.reload.test', 'rd-slow')
mt.check(mx.wait_log(r'event=reloaded generation=2', mt.slack(20), mark) is not None,
         'slow: reloaded once the answer came\n%s' % mx.tail())
mt.check(dns.queries('slow.reload.test') == 1, 'slow: the name was asked once for the reload (%d)'
         % dns.queries('slow.reload.test'))
mt.check(mt.wait_for(lambda: mt.http_get(mp, '/readyz')[0] == 200, timeout=mt.slack(10)), 'slow: ready on the new pool')
code = send(mx, 'rd-new')
mt.check(code == 250 and any(b'rd-new' in m['data'] for m in b.messages),
         'slow: the new pool (the slow name) takes the mail (%s)' % code)
mx.stop()
mt.finish()
