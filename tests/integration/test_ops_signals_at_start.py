#!/usr/bin/env python3
"""SIGHUP, SIGUSR1 and SIGUSR2 that arrive while mxgate is still starting (loading the
config: resolving a backend's host name, compiling rules, loading certificates) are not
fatal. logrotate's postrotate (`kill -USR1 $(pidof mxgate)`), a config tool's `kill -HUP`
or an old HAProxy habit (USR2) can land in that window; docs/operations.md and mxgate(8)
say SIGUSR1 "never ends the process" and USR2 is ignored with a warning.

Before the fix the handlers were installed only after the workers started: until then the
signals had their default action and ended the daemon at once (no log line, no drain).
Now they are held (blocked) from the first instruction of main and delivered once the
handlers are in place: the reload and the reopen happen after the start.

The window is made wide and certain here: the backend is a host name whose DNS answer
takes 2 s, and the signals are sent while mxgate waits for it."""
import os
import signal
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink()
dns = mt.dns_peer({'slow.test': [{'a': '127.0.0.1'}, {'delay': 2}]})
cfg = mt.config(['smtp://slow.test:%d' % sink.port], dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '5s'})
mx = mt.Mxgate(cfg, name='mx-early', wait=False)
mt.check(mt.wait_for(lambda: 'query slow.test' in open(os.path.join(mt.TMP, dns.name + '.log')).read(),
                     mt.slack(10)), 'mxgate is resolving the backend (starting)')
for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR2):
    mx.send_signal(sig)
mt.check(mx.wait_log(r'event=started', mt.slack(15)) is not None and mx.alive(),
         'the signals during the start did not end it (rc %s): %s' % (mx.proc.poll(), mx.tail(5)))
mt.check(mx.wait_log(r'event=log_reopen ', mt.slack(5)) is not None, 'SIGUSR1 was acted on once the start was done')
mt.check(mx.wait_log(r'event=reloaded generation=2', mt.slack(15)) is not None, 'and SIGHUP: a reload')
mt.check(mx.wait_log(r'warning - event=signal_ignored signal=USR2', mt.slack(5)) is not None, 'and SIGUSR2 ignored')
code, _ = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('after'))
mt.check(code == 250, 'mail flows (%s)' % code)
mx.stop()
mt.finish()
