#!/usr/bin/env python3
"""A filter peer named by a host name with several addresses, the first one dead (a host that
drops SYNs: a listener on 127.0.0.4 whose full accept queue the test never drains), against
real clamd and a real milter on the second address (127.0.0.1). Each address gets the entry's
`connect_timeout` (here 1 s), then the next is tried, so the peer is reached well within the
call's `timeout` (10 s). Before, the connect had no bound of its own: the dead first address
ate the whole call's timeout and every message got on_error (451)."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()
t.need_python_milter()
if subprocess.run(['/usr/bin/python3', '-c', 'import dns.message'], capture_output=True).returncode != 0:
    t.skip('python3-dnspython not installed')

clam = t.clamd()
mil = t.milter(stall=10)
dns = t.dns_peer({
    'clamd.multi.test': [{'a': '127.0.0.4'}, {'a': '127.0.0.1'}, {'in_order': True}],
    'milter.multi.test': [{'a': '127.0.0.4'}, {'a': '127.0.0.1'}, {'in_order': True}],
}, name='dns-multi')

holes = [t.blackhole('127.0.0.4', port) for port in (clam.port, mil.port)]

be = t.Backend()
cfg = t.config([be.url], hostname='mx.example.test',
               dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '2s'},
               plugins=[{'name': 'clamd', 'address': 'clamd.multi.test:%d' % clam.port, 'on_error': 'tempfail',
                         'timeout': '%ds' % t.slack(10), 'connect_timeout': '1s'},
                        {'name': 'milter', 'address': 'inet:milter.multi.test:%d' % mil.port,
                         'on_error': 'tempfail', 'timeout': '%ds' % t.slack(10), 'connect_timeout': '1s'}])
mx = t.Mxgate(cfg)

t0 = time.monotonic()
r = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('ma-clean', 'clean body\r\n'),
                timeout=t.slack(60))
took = time.monotonic() - t0
got = be.find('Message-ID: <ma-clean@')
t.check(r.code == 250 and got and b'X-Test-Milter: passed' in got[0]['data'],
        'the milter and clamd reached through their second address, the message relayed (%s %s, %.1f s)'
        % (r.code, r.text, took))
t.check(took < t.slack(10), 'within the call\'s timeout: the dead address cost its connect_timeout (%.1f s)' % took)
r = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('ma-virus', t.EICAR + '\r\n'),
                timeout=t.slack(60))
t.check(r.code == 554 and 'Virus found' in r.text,
        'EICAR found by clamd on its second address: %s %s' % (r.code, r.text))
mx.stop()
for h in holes:
    h.close()
t.finish()
