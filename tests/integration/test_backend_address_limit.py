#!/usr/bin/env python3
"""event=backend_address_failed names the bound when the cause was a timeout, as
event=backend_error does since session 26: `reason="timeout" ... limit=connect_timeout`. The
operator reads which key to look at (backends.connect_timeout) instead of guessing among the
relay's timers; a refusal (no bound involved) has no limit=.

Before the fix the line was `event=backend_address_failed backend=... address=127.0.0.4
reason="timeout" next=127.0.0.1` and nothing more.

The set-up: a backend named hole.limit.test whose first address (127.0.0.4) drops SYNs (a dead
host: mt.blackhole) and whose second (127.0.0.1) is the backend. The health probe's own wait
there is 60 s (health_check.timeout), so until then the first address is not known bad: a
message sent at once after the start connects there first, waits connect_timeout (1 s), logs
the line and is delivered through the second address. The order holds by construction (a
60 s timer against 1 s), whatever the load.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
dns = mt.dns_peer({'hole.limit.test': [{'a': '127.0.0.4'}, {'a': '127.0.0.1'}, {'in_order': True}]},
                  name='dns-addr-limit')
b = mt.Backend(name='AL')
hole = mt.blackhole('127.0.0.4', b.port)
mx = mt.Mxgate(mt.config(['smtp://hole.limit.test:%d' % b.port], workers=1,
                         dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '2s', 'tries': 1},
                         backends={'connect_timeout': '1s', 'pool_size': 0,
                                   'health_check': {'interval': '1h', 'timeout': '60s', 'fall': 5, 'rise': 1}}),
               name='mx-addr-limit')
r = mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('limit1'))
mt.check(r.code == 250, 'delivered through the second address (%s %s)' % (r.code, r.text))
m = mx.wait_log(r'event=backend_address_failed backend=smtp://hole\.limit\.test:\d+ address=127\.0\.0\.4 '
                r'reason="timeout" next=127\.0\.0\.1 limit=(\S+)', 5)
mt.check(m is not None and m.group(1) == 'connect_timeout',
         'the timed-out address names its bound: limit=connect_timeout (%s)\n%s' % (m and m.group(0), mx.tail()))
mt.check(mx.count_log(r'event=backend_address_failed .*reason="(?!timeout")[^"]*".* limit=') == 0,
         'no limit= on a failure that is no timeout')
mx.stop()
hole.close()
mt.finish()
