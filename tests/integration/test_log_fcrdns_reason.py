#!/usr/bin/env python3
"""helo_checks.fcrdns's refusal says what the client's lookup found: `rdns=` on the
event=helo_check test=NO_FCRDNS line and on the refusal's event=reject / event=tempfail line,
and on event=fcrdns_tempfail. Until now the status was logged only at debug (event=rdns
... status=N, a number): an operator tracking why a client was refused saw "NO_FCRDNS" and
had to guess between no PTR, a PTR whose name points elsewhere and a DNS server down.

Against a real DNS server (dns_peer.py) named in dns.resolvers, clients posing as
198.18.0.x through the PROXY protocol (helo_checks.fcrdns action: reject, on_error: tempfail):
- .8, no PTR: rdns=ptr_nxdomain;
- .9, a PTR whose name has another address: rdns=forward_mismatch;
- .12, a PTR whose name does not exist: rdns=forward_nxdomain;
- .10, the PTR query answered SERVFAIL: event=fcrdns_tempfail ... rdns=ptr_servfail (it was
  ptr_failed with c-ares 1.18, which ends a SERVFAIL as it does a refusal), and the
  deferral's (421 4.7.25 at connect) tempfail line the same;
- .11, the PTR query never answered: rdns=ptr_timeout (dns.timeout 1 s, one try).
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
dns = mt.dns_peer({
    '7.0.18.198.in-addr.arpa': [{'ptr': 'mail.client.test'}], 'mail.client.test': [{'a': '198.18.0.7'}],
    '9.0.18.198.in-addr.arpa': [{'ptr': 'liar.client.test'}], 'liar.client.test': [{'a': '192.0.2.1'}],
    '10.0.18.198.in-addr.arpa': 'servfail',
    '11.0.18.198.in-addr.arpa': 'drop',
    '12.0.18.198.in-addr.arpa': [{'ptr': 'ghost.client.test'}],
}, name='dns-fcrdns-reason')
be = mt.Backend(name='FR')
mx = mt.Mxgate(mt.proxied_config([be.url], workers=1, accept_domains=['example.test'],
                                  dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '1s', 'tries': 1,
                                       'cache_size': 0},
                                  helo_checks={'enabled': True,
                                               'fcrdns': {'action': 'reject', 'on_error': 'tempfail'},
                                               'syntax': {'enabled': False}, 'not_fqdn': {'enabled': False},
                                               'claims_us': {'enabled': False},
                                               'literal_mismatch': {'enabled': False}}),
               name='mx-fcrdns-reason')

r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('fc7'), proxy_src='198.18.0.7')
mt.check(r.code == 250, 'the forward-confirmed client is served (%s %s)' % (r.code, r.text))
mt.check(mx.count_log(r'test=NO_FCRDNS client=198\.18\.0\.7 ') == 0, '... and not refused')

for ip, why in (('198.18.0.8', 'ptr_nxdomain'), ('198.18.0.9', 'forward_mismatch'),
                ('198.18.0.12', 'forward_nxdomain')):
    r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('fc'), proxy_src=ip)
    mt.check(r.code == 550, '%s refused by the FCrDNS test (%s %s)' % (ip, r.code, r.text))
    hit = mx.wait_log(r'event=helo_check test=NO_FCRDNS client=%s helo=\S+ rdns=(\S+)' % re.escape(ip), 5)
    mt.check(hit is not None and hit.group(1) == why, '%s: the test\'s line says rdns=%s (%s)'
             % (ip, why, hit and hit.group(0)))
    ref = mx.wait_log(r'event=reject stage=\w+ reason=helo rdns=(\S+) client=%s ' % re.escape(ip), 5)
    mt.check(ref is not None and ref.group(1) == why, '%s: the refusal line says rdns=%s (%s)\n%s'
             % (ip, why, ref and ref.group(0), '\n'.join(l for l in mx.log().splitlines() if ip in l)))

# a SERVFAIL from the one server is ptr_servfail (c-ares 1.18 ends it as it does a refusal:
# it was ptr_failed before filters/dns.c told them apart)
for ip, why in (('198.18.0.10', ('ptr_servfail',)), ('198.18.0.11', ('ptr_timeout',))):
    r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('fc'), proxy_src=ip)
    # at the connect stage a tempfail is 421 (the connection closes); 4.7.25 either way
    mt.check(r.code in (421, 450) and '4.7.25' in r.text, '%s deferred: its name could not be looked up (%s %s)'
             % (ip, r.code, r.text))
    tf = mx.wait_log(r'event=fcrdns_tempfail client=%s action=tempfail rdns=(\S+)' % re.escape(ip), 5)
    mt.check(tf is not None and tf.group(1) in why, '%s: event=fcrdns_tempfail says rdns=%s (%s)\n%s'
             % (ip, '|'.join(why), tf and tf.group(0), '\n'.join(l for l in mx.log().splitlines() if ip in l)))
    ref = mx.wait_log(r'event=tempfail stage=\w+ reason=helo rdns=(\S+) client=%s ' % re.escape(ip), 5)
    mt.check(ref is not None and tf is not None and ref.group(1) == tf.group(1),
             '%s: the deferral\'s tempfail line says the same rdns= (%s)' % (ip, ref and ref.group(0)))
mx.stop()
mt.finish()
