#!/usr/bin/env python3
"""Per-server timeouts, as an operator coming from HAProxy (`timeout server` per backend)
or Postfix (a transport of its own with its own smtp_data_done_timeout) sets them: one
slow server (an LMTP store running sieve scripts, a remote site) gets longer or shorter
times than the rest. `backends.servers[].connect_timeout`, `reply_timeout` and
`data_timeout` override the `backends.*` ones for that server only (0 or absent: those).
- slow: a server that answers the final dot after 3 s, with data_timeout 500ms on it and
  the default 10 s elsewhere: the message times out there and is delivered by the other;
  the same delay on a server without the override is waited for.
- deadline: a server that takes the message at a trickle (64 KB every 0.3 s: each part within
  data_timeout) with data_deadline 2s on it and the default 1 h elsewhere: the attempt there
  is cut off at its own deadline and the other delivers, well before the trickle would end.
- check: `mxgate -t` refuses a nonzero value under 100ms (data_deadline: under 1s).
MX_POOL_ONLY=name,name runs only those cases.
"""
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
import hostile_peer as hp  # noqa: E402

want = mt.case_wanted


mt.need()

if want('slow'):
    slow, other = mt.Backend(name='slow', delay=3), mt.Backend(name='other')
    cfg = mt.config([{'address': slow.url, 'data_timeout': '500ms'}, other.url], workers=1,
                    backends={'data_timeout': '%gs' % mt.slack(10)})
    mx = mt.Mxgate(cfg, name='mx-slow')
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'slow: started')
    codes = [mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('st-%d' % i)).code
             for i in range(2)]
    errs = mx.count_log(r'event=backend_error backend=%s [^\n]*reason="[^"]*timeout' % slow.url)
    mt.check(codes == [250, 250] and len(other.messages) == 2 and errs >= 1,
             'slow: the server\'s own data_timeout (500ms) ended the wait there, the other delivered '
             '(%s; %d at the other; %d timeouts)' % (codes, len(other.messages), errs))
    mx.stop()
    # the same slow server without the override: the 10 s default waits for it
    cfg = mt.config([slow.url], workers=1, backends={'data_timeout': '%gs' % mt.slack(10)})
    mx = mt.Mxgate(cfg, name='mx-slow-default')
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'slow: started without the override')
    r = mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('st-default'))
    mt.check(r.code == 250 and slow.by_tag('st-default'), 'slow: without it the backends.data_timeout applies (%s)' % r.code)
    mx.stop()
    slow.stop()
    other.stop()

if want('deadline'):
    TRICKLE_S = 40.0          # the 8 MB at 64 KB per 0.3 s
    slow, other = hp.scripted('bk-trickle', {'data': hp.slow_reader(0.3, TRICKLE_S)}), mt.Backend(name='other')
    cfg = mt.config([{'address': slow.url, 'data_deadline': '2s'}, other.url], workers=1,
                    backends={'data_timeout': '%gs' % mt.slack(10), 'balance': 'round_robin',
                              'health_check': {'interval': '60s', 'timeout': '10s'},
                              # the scripted server offers no XCLIENT (require_xclient would refuse it)
                              'client_identity': 'none'})
    mx = mt.Mxgate(cfg, name='mx-deadline')
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'deadline: started')
    t0 = time.time()
    codes = [mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('dl-%d' % i, size=8 << 20),
                          timeout=TRICKLE_S + 10).code for i in range(2)]
    took = time.time() - t0
    errs = mx.count_log(r'event=backend_error backend=%s [^\n]*reason="[^"]*data_deadline' % slow.url)
    mt.check(codes == [250, 250] and len(other.messages) == 2 and errs >= 1 and not slow.messages,
             'deadline: the server\'s own data_deadline (2s) ended the trickle there, the other delivered '
             '(%s; %d at the other; %d deadlines; %.1fs)' % (codes, len(other.messages), errs, took))
    mt.check(took < TRICKLE_S / 2, 'deadline: cut off at its deadline, not at the trickle\'s end (%.1fs)' % took)
    mx.stop()
    slow.stop()
    other.stop()

if want('check'):
    rc, out = mt.config_check(mt.config([{'address': 'smtp://127.0.0.1:25', 'reply_timeout': '50ms'}],
                                        listen=[{'address': '127.0.0.1:2525'}]),
                              name='timeout-bad')
    mt.check(rc == 1 and 'reply_timeout: at least 100ms' in out, 'check: a nonzero timeout under 100ms is refused (%d %s)' % (rc, out.strip()))
    rc, out = mt.config_check(mt.config([{'address': 'smtp://127.0.0.1:25', 'connect_timeout': '2s',
                                          'reply_timeout': '30s', 'data_timeout': '10m'}],
                                        listen=[{'address': '127.0.0.1:2525'}]), name='timeout-ok')
    mt.check(rc == 0, 'check: per-server timeouts accepted (%d %s)' % (rc, out.strip()))
    rc, out = mt.config_check(mt.config([{'address': 'smtp://127.0.0.1:25', 'data_deadline': '500ms'}],
                                        listen=[{'address': '127.0.0.1:2525'}]), name='deadline-bad')
    mt.check(rc == 1 and 'data_deadline: at least 1s' in out,
             'check: a nonzero data_deadline under 1s is refused (%d %s)' % (rc, out.strip()))
    rc, out = mt.config_check(mt.config([{'address': 'smtp://127.0.0.1:25', 'data_deadline': '2h'}],
                                        listen=[{'address': '127.0.0.1:2525'}]), name='deadline-ok')
    mt.check(rc == 0, 'check: a per-server data_deadline accepted (%d %s)' % (rc, out.strip()))

mt.finish()
