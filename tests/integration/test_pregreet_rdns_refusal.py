#!/usr/bin/env python3
"""A client a local rate limit refuses at connect hears the 421 alone, with the pregreet test
on and the client's name looked up at connect (helo_checks.fcrdns, or a plugin).

Session 25 held the pregreet teaser (`220-`) until the connect stage's synchronous part had
run, so a client refused there hears `421` alone (test_pregreet_connect_refusal.py). But the
rdns module came first in the chain and, with helo_checks.fcrdns or a plugin configured, holds
the connect stage for the PTR answer: the ratelimit entry after it ran only once the answer
was in, the teaser went out meanwhile, and the refused client heard `220-`, `220 ` and then
`421`. Now the checks that decide at once (ratelimit, reputation) come before rdns in the
chain; its PTR query still goes out when the stage begins (hook_module.prefetch), and what it
provides later is the same:

- helo_checks.fcrdns, `count: connections` 1/1h: a client's second connection, while its
  first still sits in the pregreet delay, hears `421 ...` alone; another client, served,
  reaches the backend with XCLIENT NAME= its confirmed name
- a milter (plugins:), the same limit: `421 ...` alone; a served message's milter saw the
  confirmed name at connect (its `_` macro: the PTR name, the address, not "may be forged")

- reputation with a Redis store (its connect lookup answers asynchronously), the same
  limit: `421 ...` alone (until late in session 26 reputation came before ratelimit and the
  teaser went out while Redis answered: `220-`, `220 `, `421`); a client in reputation.allow
  is still not counted by the connection limit (its second connection is greeted), and a
  client neither allowed nor over the limit is served

Peers: dns_peer.py (the PTR and A records; dns.cache_size 0, so each connection asks and
waits), the recording Backend (XCLIENT), tests/peers/mx_milter.py, redis-server. No timing
decides a check.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

CLIENTS = {'198.18.96.1': 'one.example.org', '198.18.96.2': 'two.example.org',
           '198.18.96.3': 'three.example.org', '198.18.96.4': 'four.example.org'}


def rev(ip):
    return '.'.join(reversed(ip.split('.'))) + '.in-addr.arpa'


zone = {}
for ip, host in CLIENTS.items():
    zone[rev(ip)] = [{'ptr': host}, {'delay': 0.2}]
    zone[host] = [{'a': ip}]
dnsp = mt.dns_peer(zone, 'dns_peer')
be = mt.Backend(xclient=True)
LIMIT = {'rules': [{'key': 'ip', 'count': 'connections', 'limit': '1/1h', 'action': 'tempfail'}]}


def gate(name, **kw):
    return mt.Mxgate(mt.proxied_config(
        [be.url], pregreet={'delay': '2s', 'action': 'reject'}, ratelimit=LIMIT,
        dns={'resolvers': ['127.0.0.1:%d' % dnsp.port], 'timeout': '3s', 'cache_size': 0}, **kw), name)




def only_421(what, heard):
    lines = heard.splitlines()
    mt.check(len(lines) == 1 and lines[0].startswith('421 4.7.0'),
             '%s: the 421 alone, no teaser or greeting before it: %r' % (what, heard))


def held(port, src):
    """A client from src that has read the teaser (its connect stage passed the limit) and
    stays connected, in the pregreet delay: it has not passed the test (no pass cache)."""
    c = mt.Client(port, proxy_src=src, greet=False, timeout=mt.slack(15))
    first = c._line()
    mt.check(first is not None and first.startswith('220-'), 'the first client from %s is teased: %r' % (src, first))
    return c


def served(port, src, tag):
    """A client's only connection: teased, greeted after the delay, one message."""
    first, waited, r = mt.patient_mail(port, src, tag)
    mt.check(first is not None and first.startswith('220-') and r[0] == 250,
             '%s: teased and served: %r %r' % (src, first, r))
    got = be.by_tag(tag)
    return got[0] if got else None


# helo_checks.fcrdns: rdns holds the connect stage for the client's name
mx = gate('mx-fcrdns', helo_checks={'enabled': True, 'fcrdns': {'enabled': True, 'action': 'score'}})
ip = '198.18.96.1'
first = held(mx.port, ip)
only_421('fcrdns on, connections 1/1h, the second connection', mt.proxy_hears(mx.port, ip, 15))
mt.check(mx.wait_log(r'event=tempfail stage=connect reason=ratelimit client=198\.18\.96\.1 code=421 ') is not None,
         'logged: event=tempfail stage=connect reason=ratelimit ... code=421')
first.close()
ip = '198.18.96.3'
m = served(mx.port, ip, 'fcrdns1')
mt.check(m is not None and m['xclient'].get('NAME') == CLIENTS[ip],
         'the backend hears XCLIENT NAME=%s, the confirmed name: %r' % (CLIENTS[ip], m and m['xclient']))
mx.stop()

# a plugin (a milter): rdns holds the connect stage for its {client_name}
mt.need_python_milter()
mil = mt.milter()
mx = gate('mx-plugin', plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % mil.port,
                                 'on_error': 'tempfail'}])
ip = '198.18.96.2'
first = held(mx.port, ip)
only_421('a milter, connections 1/1h, the second connection', mt.proxy_hears(mx.port, ip, 15))
first.close()
ip = '198.18.96.4'
m = served(mx.port, ip, 'plugin1')
macros = [ln for ln in (m['data'].decode(errors='replace') if m else '').splitlines() if ln.startswith('X-Milter-Macros:')]
want = '_=%s [%s]' % (CLIENTS[ip], ip)
mt.check(len(macros) == 1 and want in macros[0] and 'may be forged' not in macros[0],
         'the milter saw the confirmed name at connect (%s, not "may be forged"): %r' % (want, macros))
mx.stop()

# reputation in Redis: its connect stage waits for the store's answer
mt.need('redis-server')
red = mt.redis()
mx = gate('mx-reputation', reputation={'store': 'redis://127.0.0.1:%d' % red.port, 'allow': ['198.18.96.6/32']})
ip = '198.18.96.5'
first = held(mx.port, ip)
only_421('reputation in Redis, connections 1/1h, the second connection', mt.proxy_hears(mx.port, ip, 15))
mt.check(mx.wait_log(r'event=tempfail stage=connect reason=ratelimit client=198\.18\.96\.5 code=421 ') is not None,
         'logged: event=tempfail stage=connect reason=ratelimit client=198.18.96.5 ... code=421')
first.close()
ip = '198.18.96.6'
a = mt.Client(mx.port, proxy_src=ip, timeout=mt.slack(15))
b = mt.Client(mx.port, proxy_src=ip, timeout=mt.slack(15))
mt.check(a.greeting[0] == 220 and b.greeting[0] == 220,
         'reputation.allow: not counted by the connection limit, both connections greeted: %r %r'
         % (a.greeting, b.greeting))
a.close()
b.close()
m = served(mx.port, '198.18.96.7', 'rep1')
mt.check(m is not None, 'a client within the limit is served behind the Redis reputation')
mx.stop()
mt.finish()
