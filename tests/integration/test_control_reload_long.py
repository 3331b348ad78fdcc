#!/usr/bin/env python3
"""A `mxgatectl reload` that waits longer than the control socket's idle timeout gets its
answer: the connection is held for as long as the reload runs, not closed at the idle timeout
(60 s by default; 5 s here, so that the wait passes it by construction: the queued reload
alone waits DNS_TIMEOUT, 35 s, on the daemon's own timer, whatever the load).

Before the fix the idle timer kept running while a reload was pending: a `mxgatectl reload`
queued behind a SIGHUP reload, each resolving a name the DNS never answers (dns.timeout 35 s;
here 80 s in all), lost its connection before the answer: mxgatectl exited 2 ("connection
closed before the answer was complete") while the reload went on and failed unheard.

- SIGHUP reload resolving a name never answered, then `mxgatectl -t 200 reload` naming
  another one: queued, answered after both (> 35 s), exit 1 with the FILE:LINE:COL reason;
- then `mxgatectl status` answers as before.
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'reload-long-control.sock')
DNS_TIMEOUT = 35   # a reload of a name never answered takes 35-70 s: far past the 5 s idle timeout
                  # (two in a row also pass the default 60 s); not scaled (a fixed DNS bound)
IDLE = 5           # control.idle_timeout

dns = mt.dns_peer({'drop.long.test': 'drop', 'drop2.long.test': 'drop'}, name='dns-reload-long')
a = mt.Backend(name='LA')
cfg = mt.config([a.url], workers=1, control={'socket': SOCK, 'idle_timeout': '%ds' % IDLE},
                dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '%ds' % DNS_TIMEOUT, 'tries': 1},
                backends={'health_check': {'interval': '500ms', 'timeout': '1s'}})


def with_server(name):
    return dict(cfg, backends=dict(cfg['backends'], servers=['smtp://%s:%d' % (name, a.port)]))


mx = mt.Mxgate(cfg, name='mx-reload-long')
mt.check(mx.wait_log(r'event=ready generation=1', 10) is not None, 'started\n%s' % mx.tail())

mark = mx.log_size()
mx._write(with_server('drop.long.test'))
mx.send_signal(signal.SIGHUP)
mt.check(mt.wait_for(lambda: dns.queries('drop.long.test') > 0, timeout=mt.slack(10)),
         'the SIGHUP reload asks the DNS')
mx._write(with_server('drop2.long.test'))
t0 = time.time()
p = subprocess.Popen([CTL, '-s', SOCK, '-t', '200', 'reload'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     text=True)
mt.check(mx.wait_log(r'event=reload_queued ', 10, mark) is not None, 'the control reload is queued\n%s' % mx.tail())
out, err = p.communicate(timeout=250)
took = time.time() - t0
# how long it waited is the set-up's doing (the queued reload starts after t0 and waits
# DNS_TIMEOUT, 7 x the idle timeout), not the daemon's to prove: said, not checked
mt.say('the reload waited %.1f s (control.idle_timeout %d s)' % (took, IDLE))
mt.check(p.returncode == 1 and re.search(r'backends\.servers\[0\]: cannot resolve host: no answer', out + err)
         is not None and 'generation 1 stays' in out + err,
         'mxgatectl reload gets the reload\'s own answer after %.1f s (rc %s, want 1)\n%s%s'
         % (took, p.returncode, out, err))
mt.check(mx.count_log(r'event=reload_failed ', mark) == 2, 'both reloads failed\n%s' % mx.tail())

# --- after the long answer the connection works as before: status answers at once
r = subprocess.run([CTL, '-s', SOCK, '-t', '10', 'status'], capture_output=True, text=True, timeout=30)
mt.check(r.returncode == 0 and 'generation' in r.stdout, 'status answers (rc %s)\n%s%s'
         % (r.returncode, r.stdout, r.stderr))
mx.stop()
mt.finish()
