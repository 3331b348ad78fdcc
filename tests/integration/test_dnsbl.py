#!/usr/bin/env python3
"""DNS lists against a real rbldnsd on 127.0.0.1, clients made realistic with PROXY v2
sources in 198.18.0.0/15 (swaks --proxy-source):

- listed: 5xx naming the zone and its TXT reason, nothing delivered
- unlisted: delivered;  whitelisted (weight -5) although listed: delivered
- 127.255.255.254 ("query refused") answer: never a listing, logged as dnsbl_error
- domain list: the HELO name and the MAIL FROM domain (5xx naming dbl.test)
- tempfail action: 4xx
- rbldnsd killed: clients are served at once, errors logged, the list flagged as failing
- a resolver that never answers: the client waits no longer than dns.timeout, then is served
- the pass cache: a passed client is not queried again (rbldnsd gone, still fast, no error)
"""
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks', 'rbldnsd')


ZONES = {
    'bl.test': ('ip4set', ':127.0.0.2:Listed in bl.test for $\n198.18.1.0/24\n198.18.3.0/24\n'
                '198.18.6.0/24\n198.18.4.0/24 :127.255.255.254:refused\n'),
    'wl.test': ('ip4set', ':127.0.0.2:whitelisted\n198.18.3.0/24\n'),
    'dbl.test': ('dnset', ':127.0.1.2:Domain $ is listed in dbl.test\nspam.example\n'),
    'bl6.test': ('ip6trie', ':127.0.0.2:IPv6 listed\n2001:db8:1::/48\n'),
}
rbl = mt.rbldnsd(ZONES)
rbl_port = rbl.port


def dnsbl_config(port, action='reject', timeout='2s', pass_ttl='1h'):
    return {
        'dns': {'resolvers': ['127.0.0.1:%d' % port], 'timeout': timeout},
        'dnsbl': {
            'threshold': 3, 'action': action, 'pass_ttl': pass_ttl, 'error_flag_after': 2,
            'lists': [
                {'zone': 'bl.test', 'weight': 3, 'codes': ['127.0.0.2-127.0.0.11']},
                {'zone': 'wl.test', 'weight': -5},
                {'zone': 'dbl.test', 'type': 'domain', 'weight': 3},
                {'zone': 'bl6.test', 'weight': 3},
            ],
        },
    }


def gate_config(be, extra):
    return mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                     trusted_proxies=['127.0.0.1/32'], **extra)


def gate(extra, name):
    be = mt.Backend()
    return be, mt.Mxgate(gate_config(be, extra), name=name)


def via(mx, be, client, tag, helo='client.example', sender='a@example.org'):
    """One swaks transaction from `client` (PROXY v2); (delivered, stdout, seconds)."""
    t0 = time.time()
    v6 = ':' in client
    r = mt.swaks(mx.port, '--proxy-version', '2', '--proxy-family', 'AF_INET6' if v6 else 'AF_INET',
                 '--proxy-source', client, '--proxy-source-port', '40000',
                 '--proxy-dest', '::1' if v6 else '127.0.0.1', '--proxy-dest-port', str(mx.port),
                 '--ehlo', helo, '--from', sender, '--to', 'b@example.test',
                 '--header', 'Subject: ' + tag)
    took = time.time() - t0
    delivered = any(('Subject: ' + tag).encode() in m['data'] for m in be.messages)
    return delivered, r.stdout, took


def lookups_failed(mx, client):
    """(list, subject, answer) of each dnsbl_error line logged for client: a lookup that
    ended without an answer, and how (failed, timeout)."""
    pat = r'event=dnsbl_error list=(\S+) answer=(\S+) client=%s subject=(\S+)' % re.escape(client)
    return [(li, su, an) for li, an, su in re.findall(pat, mx.log())]


def refusal(out):
    """The first 4xx/5xx reply line swaks saw, or ''."""
    for line in out.splitlines():
        if line.startswith('<** ') and line[4:5] in ('4', '5'):
            return line[4:]
    return ''


# ---------------------------------------------------------------- reject action
be, mx = gate(dnsbl_config(rbl_port), 'mx-reject')

d, out, _ = via(mx, be, '198.18.1.7', 'listed')
r = refusal(out)
mt.check(not d, 'a listed client is not delivered')
mt.check(r.startswith('5') and 'bl.test' in r, 'listed: 5xx naming the list (%s)' % r[:120])
mt.check('Listed in bl.test for 198.18.1.7' in r, 'listed: the reply carries the TXT reason')
mt.check(mx.wait_log(r'event=dnsbl stage=connect client=198\.18\.1\.7 .*lists=bl\.test'),
         'listed: logged with the list')

d, out, _ = via(mx, be, '198.18.2.7', 'unlisted')
mt.check(d, 'an unlisted client is delivered')

d, out, _ = via(mx, be, '198.18.3.7', 'whitelisted')
mt.check(d, 'a whitelisted client (weight -5) is delivered although listed (%s)' % refusal(out)[:80])

d, out, _ = via(mx, be, '198.18.4.7', 'errcode')
mt.check(d, 'a 127.255.255.254 answer never counts as a listing')
mt.check(mx.wait_log(r'event=dnsbl_error list=bl\.test answer=127\.255\.255\.254'),
         'the error answer is logged as dnsbl_error')

d, out, _ = via(mx, be, '2001:db8:1::7', 'listed6')
r = refusal(out)
mt.check(not d and r.startswith('5') and 'bl6.test' in r, 'an IPv6 client listed by nibbles is refused (%s)' % r[:100])
d, out, _ = via(mx, be, '2001:db8:2::7', 'unlisted6')
mt.check(d, 'an unlisted IPv6 client is delivered')

d, out, _ = via(mx, be, '198.18.2.8', 'badhelo', helo='spam.example')
r = refusal(out)
mt.check(not d and r.startswith('5') and 'dbl.test' in r, 'a listed HELO name is refused naming dbl.test (%s)' % r[:100])

d, out, _ = via(mx, be, '198.18.2.9', 'badsender', sender='x@spam.example')
r = refusal(out)
mt.check(not d and r.startswith('5') and 'dbl.test' in r, 'a listed MAIL FROM domain is refused naming dbl.test (%s)' % r[:100])

d, out, _ = via(mx, be, '198.18.2.10', 'goodsender', sender='x@fine.example')
mt.check(d, 'an unlisted sender domain is delivered')

# ---------------------------------------------------------------- tempfail action
be2, mx2 = gate(dnsbl_config(rbl_port, action='tempfail'), 'mx-tempfail')
d, out, _ = via(mx2, be2, '198.18.6.7', 'tempfailed')
r = refusal(out)
mt.check(not d and r.startswith('4') and 'bl.test' in r, 'action tempfail: 4xx naming the list (%s)' % r[:100])
mx2.stop()

# ---------------------------------------------------------------- reload: new lists, old resolvers retired
be2b, mx2b = gate(dnsbl_config(rbl_port), 'mx-reload')
d, out, _ = via(mx2b, be2b, '198.18.6.8', 'beforereload')
mt.check(not d, 'before the reload a bl.test listing is refused')
cfg = gate_config(be2b, dnsbl_config(rbl_port))
cfg['dnsbl']['lists'][0]['weight'] = 1
cfg['listen'] = [{'address': '127.0.0.1:%d' % mx2b.port, 'proxy_protocol': True}]
reloads = mx2b.log().count('event=reloaded')
mx2b.reload(cfg)
mt.check(mt.wait_for(lambda: mx2b.log().count('event=reloaded') > reloads, 10) is True, 'SIGHUP reloaded')
d, out, _ = via(mx2b, be2b, '198.18.6.9', 'afterreload')
mt.check(d, 'after SIGHUP with weight 1 the same listing is only scored (%s)' % refusal(out)[:80])
mt.check(mx2b.alive(), 'the daemon survived retiring the old generation')
mx2b.stop()

# ---------------------------------------------------------------- rbldnsd goes away
# 198.18.2.7 passed above: the pass cache answers without asking anyone.
rbl.terminate()
rbl.wait(5)
d, out, _ = via(mx, be, '198.18.2.7', 'passcache')
# (the pass cache holds the IP lists' verdict; HELO and MAIL domains are still looked up)
ip_tried = [e for e in lookups_failed(mx, '198.18.2.7') if e[1] == '198.18.2.7']
mt.check(d and not ip_tried, 'a passed client is served from the pass cache, its IP not looked up (%r)' % ip_tried)
d, out, _ = via(mx, be, '198.18.9.7', 'rbldown1')
mt.check(d, 'with rbldnsd down a new client is still served')
ended = lookups_failed(mx, '198.18.9.7')
mt.check(len(ended) > 0 and len(ended) == len(set((li, su) for li, su, _ in ended)),
         'and each of its lookups ended once, as failed or timed out (%r)' % ended)
via(mx, be, '198.18.9.8', 'rbldown2')
# rbldnsd's port now refuses (ICMP): failed at once, not a timeout
mt.check(mx.wait_log(r'event=dnsbl_error list=bl\.test answer=failed'), 'the failures are logged per list')
mt.check(mx.wait_log(r'event=dnsbl_list_failing list=bl\.test'), 'a list that keeps failing is flagged')
mx.stop()

# ---------------------------------------------------------------- a resolver that never answers
silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent.bind(('127.0.0.1', 0))   # bound, never read: queries vanish
be3, mx3 = gate(dnsbl_config(silent.getsockname()[1], timeout='1s'), 'mx-silent')
d, out, took = via(mx3, be3, '198.18.1.7', 'silentdns')
mt.check(d, 'with a silent resolver the client is served (listings unknown)')
# three stages look something up (connect: the IP lists; HELO and MAIL: the domain list),
# each ended by dns.timeout: one timeout line a list and name, none tried again
ended = lookups_failed(mx3, '198.18.1.7')
mt.check(sorted(ended) == sorted([('bl.test', '198.18.1.7', 'timeout'), ('wl.test', '198.18.1.7', 'timeout'),
                                  ('bl6.test', '198.18.1.7', 'timeout'), ('dbl.test', 'client.example', 'timeout'),
                                  ('dbl.test', 'example.org', 'timeout')]),
         'each stage\'s lookups ended once by dns.timeout (%r)' % ended)
# clients that hang up while their lookups are in flight: the lookups are cancelled with
# the session, nothing fires into freed memory, the daemon goes on
for i in range(20):
    c = socket.create_connection(('127.0.0.1', mx3.port), 5)
    c.sendall(mt.proxy_v2('198.18.7.%d' % (i + 1), mx3.port))
    time.sleep(0.02)
    c.close()
time.sleep(mt.slack(1.5))
mt.check(mx3.alive(), 'clients hanging up mid-lookup do not hurt the daemon')
d, out, took = via(mx3, be3, '198.18.8.1', 'afterhangups')
mt.check(d, 'and the next client is served')
mx3.stop()
silent.close()

mt.finish()
