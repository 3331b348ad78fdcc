#!/usr/bin/env python3
"""`flush passcache` with an LMDB pass_store is durable once the verb answers OK: a process
killed right after (SIGKILL: no writer gets to its end) comes back with the flush.

Before, the LMDB markers (pass:NAME:#flushed) were written lazily, by each worker's writer at
its next lookup or at its end: killed after the OK, the next process found the old passes
and greeted the flushed client at once (no teaser) and asked no list about it.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

CTL = mt.mxgatectl()
DELAY = 2.0
dnsp = mt.dns_peer({}, 'dns_peer')      # every name NXDOMAIN: nobody is listed
be = mt.Backend()
LDIR = os.path.join(mt.TMP, 'passdb')
STORE = 'lmdb:' + LDIR
SOCK = os.path.join(mt.TMP, 'ctl.sock')
IP = '198.18.72.1'
QNAME = '1.72.18.198.bl.test'


def cfg():
    return mt.proxied_config(
        [be.url], dns={'resolvers': ['127.0.0.1:%d' % dnsp.port], 'timeout': '2s'},
        pregreet={'delay': '%ds' % DELAY, 'action': 'score', 'pass_ttl': '1h', 'pass_store': STORE},
        dnsbl={'threshold': 3, 'pass_ttl': '1h', 'pass_store': STORE,
               'lists': [{'zone': 'bl.test', 'weight': 3}]},
        control={'socket': SOCK})


def first_line(mx):
    """The first line a client from IP reads (the teaser '220-' or the greeting '220 '), and
    the client, still connected."""
    c = mt.Client(mx.port, proxy_src=IP, greet=False, timeout=mt.slack(15))
    return c._line(), c


mx = mt.Mxgate(cfg(), 'kill1')
c = mt.Client(mx.port, proxy_src=IP, greet=True, timeout=mt.slack(15))
c.ehlo('client.example.org')
r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('k1'), client=c)
c.close()
mt.check(r[0] == 250, 'the client waits out the teaser and passes: %r' % (r,))
mx.stop()            # the writers apply the passes
mt.check(dnsp.queries(QNAME) == 1, 'the list was asked once')

mx = mt.Mxgate(cfg(), 'kill2')
line, c = first_line(mx)
c.close()
mt.check(line is not None and line.startswith('220 '), 'the next process knows the pass (no teaser): %r' % line)
mt.check(dnsp.queries(QNAME) == 1, 'and asks no list about the client')
out = subprocess.run([CTL, '-s', SOCK, '--json', 'flush', 'passcache'], capture_output=True, text=True,
                     timeout=mt.slack(30))
j = json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else {}
mt.check(j.get('flushed') == 'passcache' and j.get('stores') == 1 and j.get('store_errors') == 0,
         'flush passcache answers OK: %r %r' % (out.returncode, out.stdout + out.stderr))
mx.kill()            # SIGKILL right after the OK: no worker writes anything more

mx = mt.Mxgate(cfg(), 'kill3')
line, c = first_line(mx)
mt.check(line is not None and line.startswith('220-'),
         'after flush passcache and a SIGKILL the flushed pass stays forgotten (the teaser again): %r' % line)
mt.check(mt.wait_for(lambda: dnsp.queries(QNAME) == 2, 5),
         'and the list is asked about the client again: %d queries' % dnsp.queries(QNAME))
c.close()
mx.stop()
mt.finish()
