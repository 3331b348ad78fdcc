#!/usr/bin/env python3
"""DNS lists for a client that is an IPv4 host seen through IPv6, against a real rbldnsd on
127.0.0.1 (clients set with PROXY v2 sources):

- a NAT64 client (the well-known prefix 64:ff9b::/96, RFC 6052 2.1: what an IPv6-only
  mxgate behind a NAT64 / SIIT-DC translator sees of an IPv4 client) is looked up as its
  IPv4 address: listed there, refused naming the IPv4 list (until session 24 it was looked
  up by 32 nibbles in ip6.arpa style, which no IPv4 list holds, and a listed host passed);
- so are the IPv4-translated (::ffff:0:a.b.c.d) and IPv4-compatible (::a.b.c.d) forms, as
  the v4-mapped one (::ffff:a.b.c.d) already was;
- an unlisted NAT64 client is delivered, an IPv6 client is still looked up by nibbles, and
  the client= of the log lines is the address as the client came (64:ff9b::...).
- nat64_prefixes (session 25) names the prefixes: with RFC 8215's local-use 64:ff9b:1::/48 and
  a network-specific /40 (RFC 6052 2.2: the IPv4 octets around bits 64-71), clients under them
  are looked up as their IPv4 address; the well-known prefix, left out of the list, is then an
  IPv6 network like another; `mxgate -t` refuses a length RFC 6052 has not, an IPv4 item, an
  overlap, with FILE:LINE:COL; a SIGHUP that changes the list keeps the running one (logged
  event=config_unchanged key=nat64_prefixes: a client's key at connect stays its key at close).
"""
import ipaddress
import re
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks', 'rbldnsd')

rbl = mt.rbldnsd({
    'bl.test': ('ip4set', ':127.0.0.2:Listed in bl.test for $\n198.18.1.0/24\n'),
    'bl6.test': ('ip6trie', ':127.0.0.2:IPv6 listed\n2001:db8:1::/48\n'),
})

be = mt.Backend()


def nat64_config(port=0, **kw):
    return mt.config([be.url], listen=[{'address': '127.0.0.1:%d' % port, 'proxy_protocol': True}],
                     trusted_proxies=['127.0.0.1/32'],
                     dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                     dnsbl={'threshold': 3, 'action': 'reject', 'lists': [
                         {'zone': 'bl.test', 'weight': 3},
                         {'zone': 'bl6.test', 'weight': 3}]}, **kw)


mx = mt.Mxgate(nat64_config(), name='mx-nat64')


def hexform(ip6):
    """ip6 with no dotted part (swaks takes 64:ff9b::198.18.1.7 for 64:ff9b::198)."""
    b = ipaddress.IPv6Address(ip6).packed
    return ':'.join('%x' % int.from_bytes(b[i:i + 2], 'big') for i in range(0, 16, 2))


def via(client, tag):
    """One swaks transaction from `client` (PROXY v2, IPv6); (delivered, first refusal)."""
    client = hexform(client)
    r = mt.swaks(mx.port, '--proxy-version', '2', '--proxy-family', 'AF_INET6',
                 '--proxy-source', client, '--proxy-source-port', '40000',
                 '--proxy-dest', '::1', '--proxy-dest-port', str(mx.port),
                 '--ehlo', 'client.example', '--from', 'a@example.org', '--to', 'b@example.test',
                 '--header', 'Subject: ' + tag)
    delivered = any(('Subject: ' + tag).encode() in m['data'] for m in be.messages)
    refusal = next((ln[4:] for ln in r.stdout.splitlines() if ln.startswith('<** ') and ln[4:5] in '45'), '')
    return delivered, refusal


for client, form in (('64:ff9b::198.18.1.7', 'NAT64 well-known prefix'),
                     ('::ffff:0:198.18.1.8', 'IPv4-translated'),
                     ('::198.18.1.9', 'IPv4-compatible'),
                     ('::ffff:198.18.1.10', 'v4-mapped')):
    d, r = via(client, 'listed ' + client)
    ip4 = client.rsplit(':', 1)[1]
    mt.check(not d and r.startswith('5') and 'bl.test' in r and 'Listed in bl.test for %s' % ip4 in r,
             '%s client %s listed as %s: refused naming bl.test (%s)' % (form, client, ip4, r[:120]))

mt.check(mx.wait_log(r'event=dnsbl stage=connect client=64:ff9b::c612:107 .*lists=bl\.test') is not None,
         'the NAT64 client is logged as it came (client=64:ff9b::c612:107), listed in bl.test')

d, r = via('64:ff9b::198.18.2.7', 'unlisted-nat64')
mt.check(d, 'an unlisted NAT64 client is delivered (%s)' % r[:100])
d, r = via('64:ff9b:1::198.18.1.7', 'local-use-prefix')
mt.check(d, 'a network-specific prefix (64:ff9b:1::/48) is not the well-known one: an IPv6 client (%s)' % r[:100])
d, r = via('2001:db8:1::7', 'listed6')
mt.check(not d and r.startswith('5') and 'bl6.test' in r, 'an IPv6 client is still looked up by nibbles (%s)' % r[:100])

mx.stop()

# nat64_prefixes: RFC 8215's local-use /48 and a network-specific /40, without the well-known one
listed = mt.Mxgate(nat64_config(nat64_prefixes=['64:ff9b:1::/48', '2001:db8:100::/40']), name='mx-nat64-list')
mx = listed
for client, form in (('64:ff9b:1:c612:1:700::', 'local-use /48 (RFC 8215)'),
                     ('2001:db8:1c6:1201:7::', 'network-specific /40')):
    d, r = via(client, 'listed ' + client)
    mt.check(not d and r.startswith('5') and 'Listed in bl.test for 198.18.1.7' in r,
             '%s: %s is 198.18.1.7, refused naming bl.test (%s)' % (form, client, r[:120]))
mt.check(mx.wait_log(r'event=dnsbl stage=connect client=64:ff9b:1:c612:1:700:: .*lists=bl\.test') is not None,
         'the /48 client is logged as it came (client=64:ff9b:1:c612:1:700::), listed in bl.test')
d, r = via('64:ff9b:1:c612:101:700::', 'u-octet')
mt.check(d, 'bits 64-71 set: no IPv4-embedded address (RFC 6052 2.2), an IPv6 client (%s)' % r[:100])
d, r = via('64:ff9b::198.18.1.7', 'wkp-not-listed')
mt.check(d, 'the well-known prefix left out of nat64_prefixes: an IPv6 client (%s)' % r[:100])
d, r = via('::ffff:0:198.18.1.8', 'translated-still')
mt.check(not d and 'bl.test' in r, 'IPv4-translated addresses whatever the list (%s)' % r[:100])

# a SIGHUP with the same list says nothing of it; one that changes it keeps the running one
start = mx.log_size()
mx.reload(nat64_config(nat64_prefixes=['64:ff9b:1::/48', '2001:db8:100::/40']))
mt.check(mx.wait_log(r'event=reloaded ', start=start) is not None, 'a reload with the same list')
mt.check('key=nat64_prefixes' not in mx.log()[start:], 'logs no config_unchanged for it')
start = mx.log_size()
cfg = nat64_config(nat64_prefixes=['64:ff9b::/96'])
mx.reload(cfg)
mt.check(mx.wait_log(r'event=config_unchanged key=nat64_prefixes ', start=start) is not None,
         'a reload changing nat64_prefixes logs event=config_unchanged key=nat64_prefixes')
mt.check(mx.wait_log(r'event=reloaded ', start=start) is not None, 'and the rest of the reload is in force')
d, r = via('64:ff9b:1:c612:1:700::', 'after-reload')
mt.check(not d and 'bl.test' in r, 'the running list stays until a restart (%s)' % r[:100])
mx.stop()

# mxgate -t: FILE:LINE:COL: key: reason
for items, why in ((['2001:db8::/33'], r'nat64_prefixes\[0\]: a NAT64 prefix is /32, /40, /48, /56, /64 or /96, not /33'),
                   (['64:ff9b::/96', '192.0.2.0/24'], r'nat64_prefixes\[1\]: not an IPv6 prefix'),
                   (['64:ff9b::/96', '64:ff9b::/32'], r'nat64_prefixes\[1\]: overlaps item 0'),
                   (['2001:db8:0:0:100::/96'], r'nat64_prefixes\[0\]: bits 64-71'),
                   (['nonsense'], r'nat64_prefixes\[0\]: not an IPv6 prefix')):
    rc, out = mt.config_check(nat64_config(2525, nat64_prefixes=items), 'nat64-bad')
    mt.check(rc == 1 and re.search(r'nat64-bad\.yaml:\d+:\d+: ' + why, out) is not None and out.count('\n') == 1,
             '-t refuses %s: %s' % (items, out.strip()[:200]))
rc, out = mt.config_check(nat64_config(2525, nat64_prefixes=[]), 'nat64-none')
mt.check(rc == 0, '-t takes an empty list (no NAT64 prefix): %s' % out.strip()[:200])
mt.finish()
