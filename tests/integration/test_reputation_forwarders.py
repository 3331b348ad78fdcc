#!/usr/bin/env python3
"""reputation.forwarders: a forwarder (by forward-confirmed name, or by address) whose
history is bad is not refused for it, and its messages' outcomes are not added to it; a
client that only claims a forwarder's name — a PTR that does not resolve back, a HELO, or a
PTR lookup that times out — is judged by its history as before.

Clients are made bad without timing: a first daemon (no forwarders) relays to a backend that
refuses every message after the dot (rejected outcomes), and is stopped (the LMDB writer
writes its last batch then); the next ones, on the same store, have `forwarders`.
Peers: dns_peer (PTR and A records, a PTR query it drops), the recording Backend, LMDB."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402


def rev(ip):
    return '.'.join(reversed(ip.split('.'))) + '.in-addr.arpa'


NAMED = '198.18.30.1'     # PTR mail1.out.fwd.example, whose A is it: a forwarder by name
SPOOF = '198.18.30.2'     # PTR mail2.out.fwd.example, whose A is another address
HELO = '198.18.30.3'      # no PTR; says EHLO mail3.out.fwd.example
SLOW = '198.18.30.4'      # its PTR query is never answered (rdns.timeout)
BYADDR = '198.18.31.5'    # in 198.18.31.0/24, an address rule
CLIENTS = [NAMED, SPOOF, HELO, SLOW, BYADDR]
zone = {'in-addr.arpa': [{'txt': ['zone']}],
        rev(NAMED): [{'ptr': 'mail1.out.fwd.example'}], 'mail1.out.fwd.example': [{'a': NAMED}],
        rev(SPOOF): [{'ptr': 'mail2.out.fwd.example'}], 'mail2.out.fwd.example': [{'a': '192.0.2.1'}],
        rev(SLOW): 'drop'}
dns = mt.dns_peer(zone)
STORE = 'lmdb:' + os.path.join(mt.TMP, 'rep')
REP = {'store': STORE, 'prior': 0.5, 'bad_threshold': -0.45, 'flush_interval': '100ms', 'bad_action': 'reject'}
DNS = {'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '2s'}


def send(mx, ip, tag):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message(tag),
                        ehlo='mail3.out.fwd.example' if ip == HELO else 'mail.example.org', proxy_src=ip, timeout=20)


refusing = mt.Backend(mode='reject_data')
mx = mt.Mxgate(mt.proxied_config([refusing.url], reputation=REP, dns=DNS), 'learn')
for ip in CLIENTS:
    r = send(mx, ip, 'learn-' + ip)
    mt.check(r[0] == 554, '%s: the backend refuses its message after the dot: %r' % (ip, r))
mx.stop()

rep = dict(REP, forwarders=['out.fwd.example', '198.18.31.0/24'])
be = mt.Backend()
for round_ in ('first', 'again'):
    mx = mt.Mxgate(mt.proxied_config([be.url], reputation=rep, dns=DNS, rdns={'timeout': '1s'}), round_)
    for ip in CLIENTS:
        r = send(mx, ip, '%s-%s' % (round_, ip))
        if ip in (NAMED, BYADDR):
            mt.check(r[0] == 250, '%s %s: a forwarder is not refused for its history: %r' % (round_, ip, r))
        else:
            mt.check(r[0] == 550 and r.stage == 'mail' and 'poor reputation of %s' % ip in r[1],
                     '%s %s: no confirmed forwarder name: refused for its history: %r' % (round_, ip, r))
    mx.stop()
    log = mx.log()
    mt.check(mx.count_log(r'event=reputation client=%s score=\S+ class=forwarder client_name=mail1\.out\.fwd\.example '
                          r'action=none' % NAMED.replace('.', r'\.')) == 1, '%s: the named forwarder logged' % round_)
    mt.check(mx.count_log(r'event=reputation client=%s score=\S+ class=forwarder client_name=unknown action=none'
                          % BYADDR.replace('.', r'\.')) == 1, '%s: the forwarder by address logged' % round_)
    for ip in (SPOOF, HELO, SLOW):
        mt.check(mx.count_log(r'event=reputation client=%s score=\S+ class=bad action=reject' % ip.replace('.', r'\.')) == 1,
                 '%s %s: judged bad' % (round_, ip))

# Without the rules the forwarders' histories are as the first daemon left them: bad. Their
# delivered messages were not counted (two each, against one rejected, would have made
# them neutral: (2 - 1) / (3 + prior 0.5) = 0.29, not bad).
mx = mt.Mxgate(mt.proxied_config([be.url], reputation=REP, dns=DNS), 'without')
for ip in (NAMED, BYADDR):
    r = send(mx, ip, 'without-' + ip)
    mt.check(r[0] == 550 and 'poor reputation' in r[1], '%s: without forwarders it is bad: %r' % (ip, r))
mt.check(len(be.messages) == 4, 'the forwarders\' messages were delivered: %d' % len(be.messages))

# -t: a rule of bad syntax is refused where it stands; rdns.lookup never leaves the name rules
# nothing to match (a warning)
bad = mt.proxied_config([be.url], reputation=dict(REP, forwarders=['google.com', 'not a name']))
bad['listen'] = [{'address': '127.0.0.1:%d' % mt.free_port(), 'proxy_protocol': True}]
rc, err = mt.config_check(bad, 'badrule')
mt.check(rc == 1 and re.search(r'badrule\.yaml:\d+:\d+: reputation\.forwarders\[1\]: expected a host name', err),
         '-t: the bad rule at its line and column: %r' % err)
never = mt.proxied_config([be.url], reputation=rep, rdns={'lookup': 'never'})
never['listen'] = bad['listen']
rc, out = mt.config_check(never, 'never')
mt.check(rc == 0 and 'warning: reputation.forwarders names hosts but rdns.lookup is never' in out,
         '-t warns when rdns.lookup: never leaves the name rules nothing to match: %r' % out)
mx.stop()
mt.finish()
