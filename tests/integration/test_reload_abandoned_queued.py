#!/usr/bin/env python3
"""A SIGHUP queued behind a reload that is resolving backend names (event=reload_queued) and
then forgotten at SIGTERM is said to be forgotten: event=reload_abandoned reason=stopping
queued=yes. Before, the abandon line was the same with a queued reload or without one, and
nothing else ever mentioned the queued SIGHUP again: an operator who had edited the file and
sent it could not tell from the log that the file had not been read.

- a SIGHUP reload resolving a name the DNS never answers (dns.timeout 50 s), a second SIGHUP
  (queued), SIGTERM: the daemon exits without waiting for the DNS, its line says queued=yes;
- a second daemon with nothing queued behind its reload: queued=no.
"""
import os
import signal
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
LONG = 50   # dns.timeout: the SIGTERM comes long before it (the exit is waited for, not timed)
dns = mt.dns_peer({'drop.abandon.test': 'drop'}, name='dns-abandon')
a = mt.Backend(name='AB')
cfg = mt.config([a.url], workers=1,
                dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '%ds' % LONG, 'tries': 1})
dropped = dict(cfg, backends=dict(cfg['backends'], servers=['smtp://drop.abandon.test:%d' % a.port]))

for queued in ('yes', 'no'):
    mx = mt.Mxgate(cfg, name='mx-abandon-%s' % queued)
    mt.check(mx.wait_log(r'event=ready generation=1', 10) is not None, 'started\n%s' % mx.tail())
    n0 = dns.queries('drop.abandon.test')
    mx._write(dropped)
    mx.send_signal(signal.SIGHUP)
    mt.check(mt.wait_for(lambda: dns.queries('drop.abandon.test') > n0, timeout=mt.slack(10)),
             'queued=%s: the reload asks the DNS' % queued)
    if queued == 'yes':
        mx.send_signal(signal.SIGHUP)
        mt.check(mx.wait_log(r'event=reload_queued ', 10) is not None, 'the second SIGHUP is queued\n%s' % mx.tail())
    mx.stop(timeout=LONG - 10, settle=0)
    m = mx.wait_log(r'event=reload_abandoned reason=stopping queued=(\w+)', 0)
    mt.check(m is not None and m.group(1) == queued, 'the abandon line says queued=%s (%s)\n%s'
             % (queued, m and m.group(0), mx.tail(8)))
    mt.check(mx.count_log(r'event=reloaded ') == 0, 'queued=%s: nothing was put in force' % queued)
mt.finish()
