#!/usr/bin/env python3
"""Backend host names, as a Postfix or HAProxy operator writes them (`relayhost =
[mx1.example.org]`, `server mx1 mx1.example.org:25`), against a real DNS (dns_peer.py,
dnspython) named in `dns.resolvers`:

- a name is resolved through dns.resolvers (the resolver the rest of mxgate uses), once per
  load (`-t`, the start, a reload), and mail goes to its address;
- a DNS server that never answers (UDP dropped; or a truncated answer whose TCP server reads
  the query and says nothing) makes `mxgate -t` fail within dns.timeout with a
  FILE:LINE:COL line naming the server, the start fail the same way, and a SIGHUP reload
  keep the running pool (event=reload_failed, the reason logged) while mail flows. The
  system's getaddrinfo waited there for ever: -t, the start and the reload hung;
- a name with several addresses: a delivery that cannot connect to one tries the next (as
  Postfix's smtp client tries each address of a destination; HAProxy's `server` used one),
  and so does a health probe, so the server is up while one address takes connections;
  only when every address fails is it one failure of the server (the next server, `fall`);
- a filter peer's address (plugins[].address: milter, clamd, spamd, rspamd) takes a host
  name the same way, resolved at the load (it took IP addresses and localhost only).
MX_POOL_ONLY=name,name runs only those cases.
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

want = mt.case_wanted


mt.need()
if subprocess.run(['/usr/bin/python3', '-c', 'import dns.message'], capture_output=True).returncode != 0:
    mt.skip('python3-dnspython not installed')

dns = mt.dns_peer({
    'mx1.pool.test': [{'a': '127.0.0.1'}],
    'mx2.pool.test': [{'a': '127.0.0.1'}],
    'stall.pool.test': 'tcp_stall',
    'drop.pool.test': 'drop',
    'two.pool.test': [{'a': '127.0.0.2'}, {'a': '127.0.0.1'}, {'in_order': True}],
    'dead.pool.test': [{'a': '127.0.0.2'}, {'a': '127.0.0.3'}, {'in_order': True}],
    'hole.pool.test': [{'a': '127.0.0.4'}, {'a': '127.0.0.1'}, {'in_order': True}],
    'milter.pool.test': [{'a': '127.0.0.1'}],
    'milter2.pool.test': [{'a': '127.0.0.2'}, {'a': '127.0.0.1'}, {'in_order': True}],
}, name='dns-names')


def dns_section(timeout='1s'):
    return {'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': timeout, 'tries': 1}


def queries(name, qtype):
    return len(re.findall(r'(?m)^query %s %s$' % (re.escape(name), qtype), mt.log_of(dns.name)))


def send(mx, tag):
    return mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message(tag)).code


if want('check'):
    b = mt.Backend(name='N0')
    code, out = mt.config_check(mt.config(['smtp://mx1.pool.test:%d' % b.port], dns=dns_section(), listen=[{'address': '127.0.0.1:2525'}]),
                                name='names-ok')
    mt.check(code == 0, 'check: a name in dns.resolvers resolves for -t (rc %s):\n%s' % (code, out))
    for name in ('stall.pool.test', 'drop.pool.test'):
        t0 = time.monotonic()
        try:
            code, out = mt.config_check(mt.config(['smtp://127.0.0.1:%d' % b.port,
                                                   {'address': 'smtp://%s:25' % name}],
                                                  dns=dns_section(), listen=[{'address': '127.0.0.1:2525'}]),
                                                  name='names-stall')
        except subprocess.TimeoutExpired:
            code, out = 'timeout', ''
        took = time.monotonic() - t0
        mt.check(code == 1, 'check: -t on %s ends with 1 (got %s after %.1fs):\n%s' % (name, code, took, out))
        mt.check(re.search(r'names-stall\.yaml:\d+:\d+: backends\.servers\[1\]\.address: cannot resolve host: '
                           r'no answer from the DNS in time.*"smtp://%s:25"' % re.escape(name), out) is not None,
                 'check: %s: FILE:LINE:COL, the server and why:\n%s' % (name, out))
    # routes are resolved the same way, the error at its place (the quarantine is only ever
    # a maildir:/path: an smtp:// one is refused before any name is asked)
    code, out = mt.config_check(mt.config(['smtp://127.0.0.1:%d' % b.port], dns=dns_section(),
                                          backends={'routes': [{'domains': ['a.test'],
                                                                'servers': ['smtp://drop.pool.test:25']}]},
                                          quarantine='smtp://nosuch.pool.test:25',
                                          listen=[{'address': '127.0.0.1:2525'}]), name='names-route')
    mt.check(code == 1 and re.search(r'backends\.routes\[0\]\.servers\[0\]: cannot resolve host: no answer', out)
             and re.search(r'quarantine: expected maildir:/path', out)
             and 'nosuch.pool.test' not in out.replace('"smtp://nosuch.pool.test:25"', ''),
             'check: a route server and the quarantine, each at its place:\n%s' % out)

if want('start'):
    b = mt.Backend(name='N1')
    before_a = queries('mx1.pool.test', 'A')
    mx = mt.Mxgate(mt.config(['smtp://mx1.pool.test:%d' % b.port], workers=2, dns=dns_section()),
                   name='mx-names')
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'start: ready')
    mt.check(send(mx, 'name1') == 250, 'start: a message through a backend named by its host name')
    mt.check([m for m in b.messages if b'name1' in m['data']] != [], 'start: the backend has it')
    mt.check(queries('mx1.pool.test', 'A') - before_a == 1,
             'start: the name was asked once for the load (asked %d times)' % (queries('mx1.pool.test', 'A') - before_a))

    # a reload naming a server whose DNS never answers: bounded, the old pool stays
    start = mx.log_size()
    t0 = time.monotonic()
    mx.reload(mt.config(['smtp://mx1.pool.test:%d' % b.port, 'smtp://stall.pool.test:%d' % b.port],
                        workers=2, dns=dns_section()))
    mt.check(mx.wait_log(r'event=reload_failed', mt.slack(15), start) is not None,
             'reload: a name whose DNS stalls fails the reload in time (%.1fs)\n%s' % (time.monotonic() - t0, mx.tail()))
    mt.check(mx.wait_log(r'event=config_error error=".*backends\.servers\[1\].*cannot resolve host: no answer', 1, start)
             is not None, 'reload: the reason is logged\n%s' % mx.tail())
    mt.check(send(mx, 'name2') == 250, 'reload: mail flows on the old pool')

    # a good reload: the new name asked once, the old one once again (a new load)
    start = mx.log_size()
    a1, a2 = queries('mx1.pool.test', 'A'), queries('mx2.pool.test', 'A')
    mx.reload(mt.config(['smtp://mx1.pool.test:%d' % b.port, {'address': 'smtp://mx2.pool.test:%d' % b.port,
                                                               'weight': 2}],
                        workers=2, dns=dns_section()))
    mt.check(mx.wait_log(r'event=reloaded', mt.slack(15), start) is not None, 'reload: a good one applies\n%s' % mx.tail())
    mt.check(queries('mx1.pool.test', 'A') - a1 == 1 and queries('mx2.pool.test', 'A') - a2 == 1,
             'reload: each name asked once (%d, %d)' % (queries('mx1.pool.test', 'A') - a1,
                                                        queries('mx2.pool.test', 'A') - a2))
    mt.check(send(mx, 'name3') == 250, 'reload: mail flows on the new pool')
    mx.stop()

if want('startfail'):
    t0 = time.monotonic()
    mx = mt.Mxgate(mt.config(['smtp://stall.pool.test:25'], dns=dns_section()), name='mx-names-fail', wait=False)
    try:
        rc = mx.proc.wait(mt.slack(20))
    except subprocess.TimeoutExpired:
        rc = 'hung'
        mx.proc.send_signal(signal.SIGKILL)
        mx.proc.wait(5)
    mt.check(rc == 1, 'startfail: the start ends with 1 when the DNS does not answer (got %s after %.1fs)\n%s'
             % (rc, time.monotonic() - t0, mx.tail()))
    mt.check(re.search(r'mx-names-fail\.yaml:\d+:\d+: backends\.servers\[0\]: cannot resolve host', mx.log()) is not None,
             'startfail: the reason on standard error\n%s' % mx.tail())
    mx.stop(sig=None, expect_rc=None)

if want('next'):
    b = mt.Backend(name='N2')          # listens on 127.0.0.1 only: 127.0.0.2 refuses
    mx = mt.Mxgate(mt.config(['smtp://two.pool.test:%d' % b.port], workers=1, dns=dns_section(),
                             backends={'health_check': {'interval': '300ms', 'timeout': '2s', 'fall': 1, 'rise': 1}}),
                   name='mx-names-next')
    mt.check(mx.wait_log(r'event=ready generation=1 backends_up=yes', 10) is not None,
             'next: the probe found the address that answers: ready\n%s' % mx.tail())
    codes = [send(mx, 'next%d' % i) for i in range(3)]
    mt.check(codes == [250] * 3, 'next: every message delivered through the second address (%s)' % codes)
    mt.check(len([m for m in b.messages if b'next' in m['data']]) == 3, 'next: the backend has the 3 messages')
    # the probe found 127.0.0.2 refusing and 127.0.0.1 answering: deliveries begin at the
    # address that answered (backend_addr_first); a delivery that met the refusing one first
    # logs it with the next one, once, and passes it over afterwards
    failed = mx.count_log(r'event=backend_address_failed backend=smtp://two\.pool\.test:\d+ address=127\.0\.0\.2 '
                          r'reason="[^"]*" next=127\.0\.0\.1')
    mt.check(failed <= 1 and mx.count_log(r'event=backend_address_failed') == failed,
             'next: the refusing address is passed over, not tried per message (%d)\n%s' % (failed, mx.tail()))
    mt.check(mx.count_log(r'event=backend_down') == 0 and mx.count_log(r'event=backend_error') == 0,
             'next: no backend_down, no backend_error: the server works\n%s' % mx.tail())
    mx.stop()

    # every address refuses: the server is down (its probe tried both), and a delivery (a
    # pool whose every server is down still tries them) tries both, then fails once: 4xx
    mx = mt.Mxgate(mt.config(['smtp://dead.pool.test:%d' % b.port], workers=1, dns=dns_section(),
                             backends={'health_check': {'interval': '60s', 'timeout': '2s', 'fall': 5, 'rise': 1}}),
                   name='mx-names-dead')
    mt.check(mx.wait_log(r'event=backend_down backend=smtp://dead\.pool\.test:\d+ reason="health check: '
                         r'ECONNREFUSED during connect"', 10) is not None, 'dead: down after its probe\n%s' % mx.tail())
    start = mx.log_size()
    codes = [send(mx, 'dead%d' % i) for i in range(2)]
    mt.check(all(c is not None and 400 <= c < 500 for c in codes), 'dead: 4xx to the client (%s)' % codes)
    tried = mx.count_log(r'event=backend_address_failed backend=smtp://dead\.pool\.test:\d+ address=127\.0\.0\.2 '
                         r'reason="connection refused" next=127\.0\.0\.3', start)
    errs = mx.count_log(r'event=backend_error backend=smtp://dead\.pool\.test', start)
    mt.check(tried == 2 and errs == 2, 'dead: each message tried both addresses, then one backend_error '
             '(%d address failures, %d errors)\n%s' % (tried, errs, mx.tail()))
    mx.stop()

if want('plugin'):
    mi = mt.milter(stall=10)
    b = mt.Backend(name='N4')
    plug = {'name': 'milter', 'address': 'inet:milter.pool.test:%d' % mi.port, 'on_error': 'tempfail',
            'timeout': '5s'}
    code, out = mt.config_check(mt.config([b.url], listen=[{'address': '127.0.0.1:2525'}], dns=dns_section(),
                                          plugins=[plug]), name='names-plugin')
    mt.check(code == 0, 'plugin: -t takes a milter named by its host name (rc %s):\n%s' % (code, out))
    bad = dict(plug, address='inet:nosuch.pool.test:%d' % mi.port)
    code, out = mt.config_check(mt.config([b.url], listen=[{'address': '127.0.0.1:2525'}], dns=dns_section(),
                                          plugins=[bad]), name='names-plugin-bad')
    mt.check(code == 1 and re.search(r'names-plugin-bad\.yaml:\d+:\d+: plugins\[0\]\.address: cannot resolve host: '
                                     r'no such name', out), 'plugin: a name that does not resolve, at its place:\n%s' % out)
    mx = mt.Mxgate(mt.config([b.url], workers=2, dns=dns_section(), plugins=[plug]), name='mx-names-plugin')
    codes = [send(mx, 'plug%d' % i) for i in range(2)]
    got = [m for m in b.messages if b'plug' in m['data']]
    mt.check(codes == [250, 250] and len(got) == 2 and all(b'X-Test-Milter: passed' in m['data'] for m in got),
             'plugin: the milter found by its name filtered both messages (%s)\n%s' % (codes, mx.tail()))
    mx.stop()

# A first address that drops SYNs (a dead host, a firewall): each connection to it costs
# connect_timeout. Before the fix every message paid it again (each connection began at the
# first address); now a server remembers the address that last worked and a failed one is
# skipped for a while (backend.h: BACKEND_ADDR_RETRY_MS), deliveries and probes sharing it:
# the start's probe pays once (it finds the second address), the messages not at all (at
# most the first one, should it come before that probe's answer).
# The blackhole: a listener on 127.0.0.4 with backlog 0 whose queue the test fills and never
# accepts; Linux drops the SYNs that find the accept queue full (no RST, no answer).
if want('blackhole'):
    b = mt.Backend(name='N5')          # 127.0.0.1 only
    hole = mt.blackhole('127.0.0.4', b.port)
    mx = mt.Mxgate(mt.config(['smtp://hole.pool.test:%d' % b.port], workers=2, dns=dns_section(),
                             backends={'connect_timeout': '1s', 'pool_size': 0,   # a new connection each
                                       'health_check': {'interval': '1h', 'timeout': '3s', 'fall': 5, 'rise': 1}}),
                   name='mx-names-hole')
    mt.check(mx.wait_log(r'event=ready generation=1 backends_up=yes', 10) is not None,
             'blackhole: ready through the second address\n%s' % mx.tail())
    start = mx.log_size()
    codes = [send(mx, 'hole%d' % i) for i in range(4)]
    mt.check(codes == [250] * 4, 'blackhole: every message delivered (%s)' % codes)
    mt.check(len([m for m in b.messages if b'hole' in m['data']]) == 4, 'blackhole: the backend has the 4 messages')
    tried = mx.count_log(r'event=backend_address_failed backend=smtp://hole\.pool\.test:\d+ address=127\.0\.0\.4 ', start)
    mt.check(tried <= 1, 'blackhole: the dead first address was tried at most once for 4 messages, not once per '
             'message (%d times)\n%s' % (tried, mx.tail(40)))
    mt.check(mx.count_log(r'event=backend_down') == 0 and mx.count_log(r'event=backend_error') == 0,
             'blackhole: no backend_down, no backend_error\n%s' % mx.tail())
    mx.stop()
    hole.close()

# A filter peer named by a host name with several addresses: a connection that cannot be made
# to one goes to the next, as a backend's (plugins/pconn.c). Before the fix only the first
# address was used: the milter, listening on 127.0.0.1 only, was never reached through
# 127.0.0.2 (refused) and every message got on_error's tempfail.
if want('plugnext'):
    mi = mt.milter(stall=10)
    b = mt.Backend(name='N6')
    plug = {'name': 'milter', 'address': 'inet:milter2.pool.test:%d' % mi.port, 'on_error': 'tempfail',
            'timeout': '5s'}
    mx = mt.Mxgate(mt.config([b.url], workers=2, dns=dns_section(), plugins=[plug]), name='mx-names-plugnext')
    codes = [send(mx, 'plugnext%d' % i) for i in range(2)]
    got = [m for m in b.messages if b'plugnext' in m['data']]
    mt.check(codes == [250, 250] and len(got) == 2 and all(b'X-Test-Milter: passed' in m['data'] for m in got),
             'plugnext: the milter reached through its second address filtered both messages (%s)\n%s'
             % (codes, mx.tail()))
    mx.stop()

mt.finish()
